"""The rule model: frozen values, built once at load time with every per-rule
computation done (patterns compiled, reasons resolved, bodies encoded).

Nothing here parses text or touches YAML; :mod:`.oneline` and :mod:`.loader`
build these values, :mod:`.matcher` reads them.
"""

from __future__ import annotations

import fnmatch
import importlib
import ipaddress
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from responder.sip import codes
from responder.sip.auth import AuthConfig
from responder.sip.builder import Identity as Identity
from responder.sip.sdp import DEFAULT_CODECS

# Methods a "*" rule never answers (SPEC §5): ACK is never answered at all, and only a
# rule that names CANCEL answers one.
NOT_BY_STAR = frozenset({"ACK", "CANCEL"})

# RFC 3261 §17.1.1.1 timers: the spacing of ``repeat`` (Timer G: T1, 2·T1, ... capped at T2).
T1 = 0.5
T2 = 4.0
# Timer G retransmits a final response until Timer H (64·T1 = 32 s): at 0, 0.5, 1.5, 3.5,
# 7.5, 11.5, ... 31.5 s, 11 copies in all. More would outlive any client transaction.
REPEAT_MAX = 11

# Bounds on what rules may ask for (docs/limits.md, "Rules"): they cap the bytes and
# datagrams one request can draw (amplification), the time a pending entry lives, and
# the cost of loading a rule set and of matching a request.
MAX_STEPS = 10            # steps in one reply (provisional responses and the final one)
MAX_STEP_BYTES = 8 * 1024  # bytes a step adds: its body, header lines and reason phrase
MAX_REPLY_BYTES = 16 * 1024  # bytes the steps of one reply add in all (repeats counted)
MAX_DELAY = 3600.0         # seconds: a step's after (+ jitter) and a delay option, finite
MAX_RULES = 10_000         # rules in one rule set (file, --rule and PUT /rules together)
MAX_METHODS = 64           # distinct method names the rules of one set name
MAX_PATTERN_INPUT = 256    # characters: a longer value never matches a re: pattern
MAX_PATTERN_REPEATS = 2    # variable repeats (*, +, {m,n}) in one re: pattern

# A locator: (step index, key) -> where that key is written, e.g. "FILE:LINE:COL" or
# "--rule 'SPEC'". Step index -1 is the rule itself (probability, drop_first). Keys name
# a value ("code", "after", "jitter", "repeat", "fault", "body", "reason"); a key ending in
# ":" names the key itself ("repeat:"); "step" is the step as a whole.
Where = Callable[[int, str], str]

# Malformed responses on purpose (``fault:``), name -> what the client receives.
FAULTS = {
    "wrong-content-length": "Content-Length is 10 more than the body really has",
    "no-to-tag": "To is copied without the tag we would add (a tag the request had stays)",
    "no-via": "no Via header field at all (RFC 3261 §18.1.2: the client must discard it)",
    "truncated": "only the first half of the header block: no empty line, no body",
    "garbage": "seeded random bytes, as many as the response has, instead of the response",
}

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# --- media of answered calls (SPEC §8): ``media:`` globally, per rule, per step ----------
ECHO, SINK, NONE = "echo", "sink", "none"
MEDIA_MODES = (ECHO, SINK, NONE)


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """How a call's media is answered: the codecs we accept (in the offer's order), what the
    media socket does with its RTP (``echo``, ``sink``, ``none``: ``a=inactive``), and
    whether a 183 carries the answer (early media)."""

    codecs: tuple[str, ...] = DEFAULT_CODECS
    mode: str = ECHO
    early: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MEDIA_MODES:
            raise RuleError(f"media mode {self.mode!r}: one of {', '.join(MEDIA_MODES)}")


DEFAULT_MEDIA = MediaConfig()


class RuleError(Exception):
    """A rule that cannot be loaded; ``str()`` is the full message with its location."""


@dataclass(frozen=True, slots=True)
class Step:
    """One response of a reply: code, time after the request arrived, and overrides."""

    code: int
    after: float = 0.0
    reason: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    content_type: str | None = None
    reason_given: bool = False  # the rule wrote the reason (shown by --check)
    # Fault injection (docs/faults.md); the defaults are a plain step.
    jitter: float = 0.0        # the delay is drawn from [after - jitter, after + jitter], >= 0
    repeat: int = 1            # the final response is sent this many times (Timer G spacing)
    fault: str | None = None   # a FAULTS name: the response is malformed on purpose

    @staticmethod
    def make(
        code: int,
        after: float = 0.0,
        reason: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
        content_type: str | None = None,
        *,
        jitter: float = 0.0,
        repeat: int = 1,
        fault: str | None = None,
    ) -> Step:
        return Step(
            code=code,
            after=after,
            reason=reason if reason is not None else codes.reason_for(code),
            headers=headers,
            body=body,
            content_type=content_type,
            reason_given=reason is not None,
            jitter=jitter,
            repeat=repeat,
            fault=fault,
        )

    @property
    def final(self) -> bool:
        return self.code >= 200

    @property
    def plain(self) -> bool:
        """No jitter, no repeat, no fault: the engine's fast path can send it."""
        return self.jitter == 0.0 and self.repeat == 1 and self.fault is None


Reply = tuple[Step, ...]  # the steps of one answer; () means "drop" (no answer at all)


def is_plain(reply: Reply) -> bool:
    return all(step.plain for step in reply)


def schedule(reply: Reply, draw: Callable[[int], float]) -> list[tuple[float, Step | None]]:
    """When each step goes out, in seconds after the request arrived; ``None`` stands for
    a copy of the final response (``repeat``).

    A step with ``jitter`` goes out at ``after + (2u - 1) * jitter`` (at least 0, and
    never before the step ahead of it), ``u = draw(step index)`` in [0, 1).
    """
    plan: list[tuple[float, Step | None]] = []
    at = 0.0
    for i, step in enumerate(reply):
        delay = step.after
        if step.jitter:
            delay = max(0.0, delay + (2.0 * draw(i) - 1.0) * step.jitter)
        at = max(at, delay)
        plan.append((at, step))
        plan.extend((at + offset, None) for offset in repeat_offsets(step.repeat))
    return plan


def repeat_offsets(repeat: int) -> tuple[float, ...]:
    """When the copies 2..``repeat`` of a final response go out, after the first one.

    RFC 3261 §17.2.1 Timer G: T1, then doubling, capped at T2: 0.5, 1.5, 3.5, 7.5, 11.5 s...
    """
    out, at, gap = [], 0.0, T1
    for _ in range(repeat - 1):
        at += gap
        out.append(at)
        gap = min(gap * 2, T2)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Pattern:
    """A glob or ``re:REGEX`` as written, and its compiled form.

    ``literal``: a glob without wildcards, matched by equality (no regex run). ``bounded``:
    a ``re:`` pattern, which never matches a value longer than MAX_PATTERN_INPUT.
    """

    text: str
    regex: re.Pattern[str] | None  # None: ``literal``
    literal: str | None = None
    bounded: bool = True

    def matches(self, value: str | None) -> bool:
        if value is None:
            return False
        if self.regex is None:
            return value == self.literal
        if self.bounded and len(value) > MAX_PATTERN_INPUT:
            return False
        return self.regex.search(value) is not None


def make_pattern(text: str) -> Pattern:
    """A shell-style glob (fnmatch, case-sensitive, the whole value) or ``re:REGEX`` (a
    search), checked (:func:`check_regex`); raises ValueError saying what is wrong."""
    if text.startswith("re:"):
        source = text[3:]
        try:
            regex = re.compile(source)
        except re.error as exc:
            raise ValueError(f"bad regular expression {source!r}: {exc}") from None
        check_regex(source)
        return Pattern(text, regex)
    # fnmatch.translate anchors only the end; a glob matches the whole value. Its
    # translation of several * cannot backtrack (lookahead and a backreference).
    if not any(c in text for c in "*?["):
        return Pattern(text, None, text, bounded=False)
    return Pattern(text, re.compile(r"\A" + fnmatch.translate(text)), bounded=False)


# The standard library's own regular-expression parser (re._parser, ``sre_parse`` before
# 3.11): the tree it builds is what the matcher walks, so it is what backtracks.
_sre: Any = importlib.import_module("re._parser")
_REPEATS = {"MAX_REPEAT", "MIN_REPEAT"}


def check_regex(source: str) -> None:
    """Refuse the shapes that make Python's backtracking matcher exponential or steeply
    polynomial on a value an attacker chooses (SPEC §10; docs/limits.md):

    * a repeat inside a repeat (nested quantifiers: ``(a+)+``, ``(\\d*){2,}``);
    * an alternation or a backreference inside a repeat (``(a|ab)*``, ``(a)\\1*``);
    * more than MAX_PATTERN_REPEATS variable repeats in the whole pattern.

    With these, and values of at most MAX_PATTERN_INPUT characters, one search costs at
    most a few milliseconds (tests/test_rules_limits.py measures the worst shape).
    Possessive repeats and atomic groups never backtrack and are not counted.
    """
    variable = 0

    def walk(items: Any, inside: bool) -> None:
        nonlocal variable
        for op, av in items:
            name = str(op)
            if name in _REPEATS:
                low, high, body = av
                if inside and high > low:
                    raise ValueError(f"the regular expression {source!r} repeats a repeat "
                                     "(nested quantifiers backtrack exponentially)")
                if high > low and high > 1:
                    variable += 1
                walk(body, inside or high > 1)
            elif name == "BRANCH":
                if inside:
                    raise ValueError(f"the regular expression {source!r} repeats an "
                                     "alternation (a|b): write a character class [ab] or "
                                     "repeat each alternative on its own")
                for branch in av[1]:
                    walk(branch, inside)
            elif name in ("GROUPREF", "GROUPREF_EXISTS") and inside:
                raise ValueError(f"the regular expression {source!r} repeats a "
                                 "backreference")
            elif name == "SUBPATTERN":
                walk(av[3], inside)
            elif name in ("ASSERT", "ASSERT_NOT"):
                walk(av[1], inside)
            elif name == "GROUPREF_EXISTS":
                walk(av[1], inside)
                if av[2] is not None:
                    walk(av[2], inside)
            # POSSESSIVE_REPEAT and ATOMIC_GROUP never backtrack into their body.

    walk(_sre.parse(source), False)
    if variable > MAX_PATTERN_REPEATS:
        raise ValueError(f"the regular expression {source!r} has {variable} variable repeats "
                         f"(*, +, {{m,n}}): at most {MAX_PATTERN_REPEATS}")


@dataclass(frozen=True, slots=True)
class Match:
    methods: frozenset[str] | None = None  # None: any method but ACK and CANCEL
    user: Pattern | None = None
    from_user: Pattern | None = None
    to_user: Pattern | None = None
    source: tuple[IPNetwork, ...] = ()
    headers: tuple[tuple[str, Pattern], ...] = ()  # canonical lower-case long header name


@dataclass(frozen=True, slots=True)
class Rule:
    match: Match
    reply: Reply
    name: str
    probability: float = 1.0
    origin: str = ""  # "FILE:LINE" or "--rule 'SPEC'"
    auth: bool = False       # ``auth: digest``: only valid credentials get ``reply``
    proxy_challenge: bool = False  # ``challenge: proxy``: 407 + Proxy-Authenticate
    drop_first: int = 0      # the first N transmissions of a transaction get no answer
    # Precomputed: the rule needs the engine's fault-injection path (not a plain reply, or
    # drop_first). The hot path branches on this one flag.
    lab: bool = field(init=False, repr=False, compare=False, default=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lab", self.drop_first > 0 or not is_plain(self.reply))


# (position in RuleSet.rules, rule, the method is all it asks)
Candidate = tuple[int, Rule, bool]


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...]
    default: Reply = (Step.make(200),)
    identity: Identity = field(default_factory=Identity)
    warnings: tuple[str, ...] = ()
    auth: AuthConfig | None = None
    default_lab: bool = field(init=False, repr=False, compare=False, default=False)
    # Precomputed for the matcher: per method a rule names (and ACK, CANCEL), the rules
    # that can take it, in order; ``other_candidates`` for every other method.
    candidates: dict[str, tuple[Candidate, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict)
    other_candidates: tuple[Candidate, ...] = field(init=False, repr=False, compare=False,
                                                    default=())
    plain: dict[str, Rule] = field(init=False, repr=False, compare=False,
                                   default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "default_lab", not is_plain(self.default))
        check_size(self.rules)
        # One pass over the rules (linear): a rule naming methods joins their lists, a "*"
        # rule joins every list but ACK's and CANCEL's (at most MAX_METHODS of them).
        lists: dict[str, list[Candidate]] = {
            m: [] for r in self.rules for m in (r.match.methods or ())}
        lists.update((m, []) for m in NOT_BY_STAR if m not in lists)
        by_star = [lst for m, lst in lists.items() if m not in NOT_BY_STAR]
        other: list[Candidate] = []
        for i, rule in enumerate(self.rules):
            candidate = (i, rule, _method_only(rule.match))
            if rule.match.methods is None:
                other.append(candidate)
                for lst in by_star:
                    lst.append(candidate)
            else:
                for m in rule.match.methods:
                    lists[m].append(candidate)
        candidates = {m: tuple(lst) for m, lst in lists.items()}
        object.__setattr__(self, "candidates", candidates)
        object.__setattr__(self, "other_candidates", tuple(other))
        # The engine's short way: per method, the rule that takes every request of it
        # outright (the first candidate asks only for the method, always applies, needs
        # no credentials or fault memory, and sends all its steps at once).
        plain = {}
        for method, cands in candidates.items():
            if method in NOT_BY_STAR or not cands:
                continue
            _, rule, method_only = cands[0]
            if (method_only and rule.probability >= 1.0 and not rule.auth and not rule.lab
                    and all(step.after <= 0 for step in rule.reply)):
                plain[method] = rule
        object.__setattr__(self, "plain", plain)


def check_size(rules: Sequence[Rule]) -> None:
    """At most MAX_RULES rules naming at most MAX_METHODS methods; the error names the
    first rule past a bound (its origin: ``FILE:LINE:COL``, ``--rule 'SPEC'`` ...)."""
    if len(rules) > MAX_RULES:
        raise RuleError(f"{rules[MAX_RULES].origin or '<rules>'}: more than {MAX_RULES} "
                        f"rules ({len(rules)}): a rule set holds at most {MAX_RULES}")
    seen: set[str] = set()
    for rule in rules:
        seen.update(rule.match.methods or ())
        if len(seen - NOT_BY_STAR) > MAX_METHODS:
            raise RuleError(f"{rule.origin or '<rules>'}: the rules name more than "
                            f"{MAX_METHODS} different methods")


def _method_only(match: Match) -> bool:
    return (match.user is None and match.from_user is None and match.to_user is None
            and not match.source and not match.headers)


def locate(where: Sequence[str] | str | Where) -> Where:
    """A :data:`Where` from a locator, one location for everything, or one per step."""
    if callable(where):
        return where
    if isinstance(where, str):
        text = where
        return lambda _i, _key: text
    each = list(where)
    return lambda i, _key: each[i] if 0 <= i < len(each) else (each[0] if each else "")


def check_delay(seconds: float, what: str) -> str | None:
    """What is wrong with a delay (None: nothing): finite, from 0 to MAX_DELAY seconds."""
    if not (math.isfinite(seconds) and 0.0 <= seconds <= MAX_DELAY):
        return f"{what} must be from 0 to {MAX_DELAY:g}s, not {seconds:g}s"
    return None


def validate_rule(rule: Rule, where: Sequence[str] | str | Where) -> list[str]:
    """Check a whole rule (its reply with :func:`validate_reply`, its probability and
    drop_first); raise RuleError, return warnings. The one place rules are validated:
    :mod:`.oneline`, :mod:`.loader` and the test toolkit build values, this judges them."""
    at = locate(where)
    if not (0.0 <= rule.probability <= 1.0):  # also NaN
        raise RuleError(f"{at(-1, 'probability')}: probability must be a number from 0 to 1, "
                        f"not {rule.probability!r}")
    if rule.drop_first < 0:
        raise RuleError(f"{at(-1, 'drop_first')}: drop_first must be 0 or more")
    if rule.drop_first and not rule.reply:
        raise RuleError(f"{at(-1, 'drop_first:')}: drop_first makes no sense with "
                        "respond: drop")
    return validate_reply(rule.reply, rule.match.methods, at)


def validate_reply(
    steps: Reply, methods: frozenset[str] | None, where: Sequence[str] | str | Where
) -> list[str]:
    """Check a list of steps (SPEC §3.2, §10); raise RuleError, return warnings.

    Any number of provisional responses (at most MAX_STEPS steps in all), at most one
    final response and only last, delays that never decrease, finite and at most
    MAX_DELAY (jitter included); at most MAX_STEP_BYTES of body, header lines and reason
    per step and MAX_REPLY_BYTES for all of them (copies sent by repeat counted);
    ``repeat`` only on the final response, 1 to REPEAT_MAX; ``fault`` a known
    name. ``where`` locates a step's keys in messages (see :data:`Where`).
    """
    at = locate(where)
    if len(steps) > MAX_STEPS:
        raise RuleError(f"{at(MAX_STEPS, 'step')}: {len(steps)} steps: a reply has at most "
                        f"{MAX_STEPS}")
    total = 0
    for i, step in enumerate(steps):
        if not codes.is_valid_code(step.code):
            raise RuleError(f"{at(i, 'code')}: bad response code {step.code!r}: a number "
                            "from 100 to 699")
        wrong = check_delay(step.after, "a delay")
        if wrong is None and not (math.isfinite(step.jitter) and step.jitter >= 0.0):
            wrong = f"jitter must be a delay >= 0, not {step.jitter:g}s"
        if wrong is None and check_delay(step.after + step.jitter, "") is not None:
            wrong = (f"a delay with its jitter must be at most {MAX_DELAY:g}s, not "
                     f"{step.after:g}s + {step.jitter:g}s")
        if wrong is not None:
            key = "jitter" if step.jitter and check_delay(step.after, "") is None else "after"
            raise RuleError(f"{at(i, key)}: {wrong}")
        if i and step.after < steps[i - 1].after:
            raise RuleError(f"{at(i, 'step')}: step delays must not decrease "
                            f"({steps[i - 1].after:g}s then {step.after:g}s)")
        if step.final and i != len(steps) - 1:
            raise RuleError(f"{at(i, 'step')}: only the last step may be a final response "
                            f"(step {i + 1} is {step.code})")
        size = step_bytes(step)
        if size > MAX_STEP_BYTES:
            key = "body" if step.body else "step"
            raise RuleError(f"{at(i, key)}: the step adds {size} bytes of body, header lines "
                            f"and reason: at most {MAX_STEP_BYTES}")
        if step.repeat != 1:
            if not step.final:
                raise RuleError(f"{at(i, 'repeat:')}: repeat is for a final response "
                                f"(step {i + 1} is {step.code})")
            if not 1 <= step.repeat <= REPEAT_MAX:
                raise RuleError(f"{at(i, 'repeat')}: repeat must be from 1 to {REPEAT_MAX} "
                                f"(Timer G sends at most {REPEAT_MAX} copies before Timer H), "
                                f"not {step.repeat}")
        total += size * step.repeat
        if total > MAX_REPLY_BYTES:
            raise RuleError(f"{at(i, 'step')}: the steps add {total} bytes of body, header "
                            f"lines and reason in all (repeats counted): at most "
                            f"{MAX_REPLY_BYTES}")
        if step.fault is not None and step.fault not in FAULTS:
            raise RuleError(f"{at(i, 'fault')}: unknown fault {step.fault!r} "
                            f"(known: {', '.join(FAULTS)})")
    warnings = []
    non_invite = methods is None or any(m != "INVITE" for m in methods)
    odd = [i for i, s in enumerate(steps) if 100 < s.code < 200]
    if odd and non_invite:
        warnings.append(
            f"{at(odd[0], 'step')}: provisional "
            f"{', '.join(str(steps[i].code) for i in odd)} to a "
            "non-INVITE request is forbidden by RFC 4320 §4.1 (sent anyway, as asked)"
        )
    return warnings


def step_bytes(step: Step) -> int:
    """What a step adds to a response beyond the copied headers: body, its own header
    lines (``Name: value``), Content-Type and reason phrase, in UTF-8 bytes."""
    extra = sum(len(n.encode()) + len(v.encode()) + 4 for n, v in step.headers)
    ctype = len(step.content_type.encode()) if step.content_type else 0
    return len(step.body) + extra + ctype + len(step.reason.encode())
