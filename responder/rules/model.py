"""The rule model: frozen values, built once at load time with every per-rule
computation done (patterns compiled, reasons resolved, bodies encoded).

Nothing here parses text or touches YAML; :mod:`.oneline` and :mod:`.loader`
build these values, :mod:`.matcher` reads them.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from responder.rules.allow import allow
from responder.rules.errors import RuleError as RuleError
from responder.rules.media import DEFAULT_MEDIA as DEFAULT_MEDIA
from responder.rules.media import ECHO as ECHO
from responder.rules.media import MEDIA_MODES as MEDIA_MODES
from responder.rules.media import NONE as NONE
from responder.rules.media import SINK as SINK
from responder.rules.media import MediaConfig as MediaConfig
from responder.rules.media import MediaPatch as MediaPatch
from responder.rules.media import validate_media as validate_media
from responder.rules.patterns import MAX_PATTERN_INPUT as MAX_PATTERN_INPUT
from responder.rules.patterns import MAX_PATTERN_REPEATS as MAX_PATTERN_REPEATS
from responder.rules.patterns import Pattern as Pattern
from responder.rules.patterns import check_regex as check_regex
from responder.rules.patterns import make_pattern as make_pattern
from responder.sip import codes
from responder.sip.auth import AuthConfig
from responder.sip.builder import Identity as Identity

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

# A locator: (step index, key) -> where that key is written, e.g. "FILE:LINE:COL" or
# "--rule 'SPEC'". Step index -1 is the rule itself (probability, drop_first). Keys name
# a value ("code", "after", "jitter", "repeat", "fault", "body", "reason"); a key ending in
# ":" names the key itself ("repeat:"); "step" is the step as a whole; a dotted key is a
# path ("media.codecs.2": the third name of the media codecs).
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
    # SPEC §8: the step's ``media:`` as written, and resolved over its rule's (RuleSet).
    media_given: MediaPatch | None = None
    media: MediaConfig | None = field(default=None, compare=False)
    # SPEC §8.4/§8.5: a provisional sent reliably (RFC 3262); BYE this long after a 2xx.
    reliable: bool = False
    hangup: float | None = None

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
        media: MediaPatch | None = None,
        reliable: bool = False,
        hangup: float | None = None,
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
            media_given=media,
            reliable=reliable,
            hangup=hangup,
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
class Match:
    methods: frozenset[str] | None = None  # None: any method but ACK and CANCEL
    user: Pattern | None = None
    from_user: Pattern | None = None
    to_user: Pattern | None = None
    source: tuple[IPNetwork, ...] = ()
    headers: tuple[tuple[str, Pattern], ...] = ()  # canonical lower-case long header name
    # SPEC §8.2: True only requests with a To tag, False only without, None both.
    in_dialog: bool | None = None


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
    sdp_ignore: bool = False  # ``sdp: ignore``: the body is opaque (no answer, 488 or 400)
    # SPEC §8: ``media:`` as written; ``media`` is it resolved over the rule set's (by
    # RuleSet), None when the rule writes none (then the set's applies).
    media_given: MediaPatch | None = None
    media: MediaConfig | None = field(default=None, compare=False)
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
    media: MediaConfig = DEFAULT_MEDIA  # top-level ``media:`` (SPEC §8)
    media_port: int = 0  # top-level ``media: {port:}``: the media socket's port, 0 a free one
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
        object.__setattr__(self, "rules", tuple(resolve_media(r, self.media)
                                                for r in self.rules))
        object.__setattr__(self, "default", resolve_steps(self.default, self.media))
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
        # Allow (405, 501, 200 to OPTIONS): what the rules serve, once per set (rules/allow.py)
        object.__setattr__(self, "identity", replace(self.identity, allow=allow(
            candidates, self.other_candidates, self.default)))

    def media_for(self, rule: Rule | None, step: Step) -> MediaConfig:
        """The finished media settings of ``step`` of ``rule`` (None: the default reply or
        an answer of the engine's own): the step's, else the rule's, else the set's."""
        if step.media is not None:
            return step.media
        if rule is not None and rule.media is not None:
            return rule.media
        return self.media


def resolve_steps(reply: Reply, base: MediaConfig) -> Reply:
    """``reply`` with each step's ``media`` resolved over ``base``."""
    if all(s.media_given is None for s in reply):
        return reply
    return tuple(s if s.media_given is None else replace(s, media=s.media_given.over(base))
                 for s in reply)


def resolve_media(rule: Rule, base: MediaConfig) -> Rule:
    """``rule`` with its media and its steps' resolved (partial settings inherit: the
    rule's over ``base``, a step's over its rule's); the same object when it writes none."""
    if rule.media_given is None and all(s.media_given is None for s in rule.reply):
        return rule
    media = None if rule.media_given is None else rule.media_given.over(base)
    return replace(rule, media=media, reply=resolve_steps(rule.reply, media or base))


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
            and not match.source and not match.headers and match.in_dialog is None)


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
    """Check a whole rule (its reply with :func:`validate_reply`, its probability,
    drop_first and ``media:`` with :func:`validate_media`); raise RuleError, return
    warnings. The one place rules are validated: :mod:`.oneline`, :mod:`.loader` and the
    test toolkit build values, this judges them."""
    at = locate(where)
    if not (0.0 <= rule.probability <= 1.0):  # also NaN
        raise RuleError(f"{at(-1, 'probability')}: probability must be a number from 0 to 1, "
                        f"not {rule.probability!r}")
    if rule.drop_first < 0:
        raise RuleError(f"{at(-1, 'drop_first')}: drop_first must be 0 or more")
    if rule.drop_first and not rule.reply:
        raise RuleError(f"{at(-1, 'drop_first:')}: drop_first makes no sense with "
                        "respond: drop")
    warnings = [f"{at(-1, 'method')}: {w}" for w in method_warnings(rule.match.methods)]
    if rule.media_given is not None:
        if not rule.reply:
            raise RuleError(f"{at(-1, 'media:')}: media makes no sense with respond: drop")
        warnings += validate_media(rule.media_given, media_at(at, -1))
    return warnings + validate_reply(rule.reply, rule.match.methods, at)


def shadowed(rules: Sequence[Rule]) -> list[str]:
    """Rules that can never be reached: an earlier rule takes every request they could
    match (no condition but its methods, which cover theirs; probability 1). Meant for the
    rules of one file: ``--rule`` rules in front of a file shadow it on purpose."""
    out = []
    for i, rule in enumerate(rules):
        for earlier in rules[:i]:
            m = earlier.match
            if (m.user or m.from_user or m.to_user or m.source or m.headers
                    or m.in_dialog is not None or earlier.probability < 1.0
                    or earlier.drop_first):
                continue
            theirs = rule.match.methods
            if m.methods is None:
                covered = theirs is None or not (theirs & NOT_BY_STAR)
            else:
                covered = theirs is not None and theirs <= m.methods
            if covered:
                out.append(f"{rule.origin or rule.name}: rule {rule.name!r} is never reached: "
                           f"{earlier.origin or earlier.name} ({earlier.name!r}) takes every "
                           f"request it could match")
                break
    return out


# The methods of the SIP specifications (RFC 3261, 3262, 3265, 3311, 3428, 3515, 3903, 6086).
SIP_METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE",
               "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE")


def method_warnings(methods: frozenset[str] | None) -> list[str]:
    """Why a rule's methods can never match: SIP methods are case-sensitive (``invite``
    matches no INVITE), ACK is never answered, and a name one letter away from a SIP
    method is probably a typo (other names are extension methods, and fine)."""
    out = []
    for method in sorted(methods or ()):
        if method.upper() in SIP_METHODS and method != method.upper():
            out.append(f"method {method!r} matches no {method.upper()}: SIP methods are "
                       f"case-sensitive (RFC 3261 §7.1); write {method.upper()}")
        elif method == "ACK":
            out.append("a rule for ACK never applies: ACK is never answered")
        elif method not in SIP_METHODS:
            close = difflib.get_close_matches(method.upper(), SIP_METHODS, n=1, cutoff=0.8)
            if close:
                out.append(f"method {method!r} is no SIP method: did you mean {close[0]}?")
    return out


def media_at(at: Where, i: int) -> Callable[[str], str]:
    """The locator of the ``media:`` keys of step ``i`` (-1: of the rule)."""
    return lambda key: at(i, f"media.{key}")


def validate_reply(
    steps: Reply, methods: frozenset[str] | None, where: Sequence[str] | str | Where
) -> list[str]:
    """Check a list of steps (SPEC §3.2, §10); raise RuleError, return warnings.

    Any number of provisional responses (at most MAX_STEPS steps in all), at most one
    final response and only last, delays that never decrease, finite and at most
    MAX_DELAY (jitter included); at most MAX_STEP_BYTES of body, header lines and reason
    per step and MAX_REPLY_BYTES for all of them (copies sent by repeat counted);
    ``repeat`` only on the final response, 1 to REPEAT_MAX; ``fault`` a known
    name; a step's ``media:`` (:func:`validate_media`). ``where`` locates a step's keys in
    messages (see :data:`Where`).
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
    for i, step in enumerate(steps):
        if step.media_given is not None:
            warnings += validate_media(step.media_given, media_at(at, i))
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
