"""The rule model: frozen values, built once at load time with every per-rule
computation done (patterns compiled, reasons resolved, bodies encoded).

Nothing here parses text or touches YAML; :mod:`.oneline` and :mod:`.loader`
build these values, :mod:`.matcher` reads them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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

# Malformed responses on purpose (``fault:``), name -> what the client receives.
FAULTS = {
    "wrong-content-length": "Content-Length is 10 more than the body really has",
    "no-to-tag": "To is copied without the tag we would add (a tag the request had stays)",
    "no-via": "no Via header field at all (RFC 3261 §18.1.2: the client must discard it)",
    "truncated": "only the first half of the header block: no empty line, no body",
    "garbage": "seeded random bytes, as many as the response has, instead of the response",
}

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


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
    """A glob or ``re:REGEX`` as written, and its compiled form."""

    text: str
    regex: re.Pattern[str]

    def matches(self, value: str | None) -> bool:
        return value is not None and self.regex.search(value) is not None


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
        indexed = [(i, r, _method_only(r.match)) for i, r in enumerate(self.rules)]
        named = {m for r in self.rules for m in (r.match.methods or ())} | NOT_BY_STAR
        object.__setattr__(self, "candidates", {
            m: tuple(c for c in indexed if _takes(c[1].match, m)) for m in named})
        object.__setattr__(self, "other_candidates",
                           tuple(c for c in indexed if c[1].match.methods is None))
        # The engine's short way: per method, the rule that takes every request of it
        # outright (the first candidate asks only for the method, always applies, needs
        # no credentials or fault memory, and sends all its steps at once).
        plain = {}
        for method, cands in self.candidates.items():
            if method in NOT_BY_STAR or not cands:
                continue
            _, rule, method_only = cands[0]
            if (method_only and rule.probability >= 1.0 and not rule.auth and not rule.lab
                    and all(step.after <= 0 for step in rule.reply)):
                plain[method] = rule
        object.__setattr__(self, "plain", plain)


def _takes(match: Match, method: str) -> bool:
    """Can a rule with ``match`` answer ``method`` at all (SPEC §3.2, §5)?"""
    if match.methods is None:
        return method not in NOT_BY_STAR
    return method in match.methods


def _method_only(match: Match) -> bool:
    return (match.user is None and match.from_user is None and match.to_user is None
            and not match.source and not match.headers)


def validate_reply(
    steps: Reply, methods: frozenset[str] | None, where: Sequence[str]
) -> list[str]:
    """Check a list of steps (SPEC §3.2); raise RuleError, return warnings.

    Any number of provisional responses, at most one final response and only
    last, delays that never decrease; ``repeat`` only on the final response,
    ``fault`` a known name. ``where[i]`` locates step i in messages.
    """
    for i, step in enumerate(steps):
        if step.final and i != len(steps) - 1:
            raise RuleError(f"{where[i]}: only the last step may be a final response "
                            f"(step {i + 1} is {step.code})")
        if i and step.after < steps[i - 1].after:
            raise RuleError(f"{where[i]}: step delays must not decrease "
                            f"({steps[i - 1].after:g}s then {step.after:g}s)")
        if not 0.0 <= step.jitter < float("inf"):
            raise RuleError(f"{where[i]}: jitter must be a delay >= 0")
        if step.repeat != 1:
            if not step.final:
                raise RuleError(f"{where[i]}: repeat is for the final response "
                                f"(step {i + 1} is {step.code})")
            if not 1 <= step.repeat <= REPEAT_MAX:
                raise RuleError(f"{where[i]}: repeat must be from 1 to {REPEAT_MAX} (Timer G "
                                f"sends at most {REPEAT_MAX} copies before Timer H)")
        if step.fault is not None and step.fault not in FAULTS:
            raise RuleError(f"{where[i]}: unknown fault {step.fault!r} "
                            f"(known: {', '.join(FAULTS)})")
    warnings = []
    non_invite = methods is None or any(m != "INVITE" for m in methods)
    odd = [i for i, s in enumerate(steps) if 100 < s.code < 200]
    if odd and non_invite:
        warnings.append(
            f"{where[odd[0]]}: provisional {', '.join(str(steps[i].code) for i in odd)} to a "
            "non-INVITE request is forbidden by RFC 4320 §4.1 (sent anyway, as asked)"
        )
    return warnings
