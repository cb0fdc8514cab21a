"""The rule model: frozen values, built once at load time with every per-rule
computation done (patterns compiled, reasons resolved, bodies encoded).

Nothing here parses text or touches YAML; :mod:`.oneline` and :mod:`.loader`
build these values, :mod:`.matcher` reads them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import codes
from ..auth import AuthConfig

# Methods a "*" rule never answers (SPEC §5): ACK is never answered at all, and only a
# rule that names CANCEL answers one.
NOT_BY_STAR = frozenset({"ACK", "CANCEL"})

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

    @staticmethod
    def make(
        code: int,
        after: float = 0.0,
        reason: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Step:
        return Step(
            code=code,
            after=after,
            reason=reason if reason is not None else codes.reason_for(code),
            headers=headers,
            body=body,
            content_type=content_type,
            reason_given=reason is not None,
        )

    @property
    def final(self) -> bool:
        return self.code >= 200


Reply = tuple[Step, ...]  # the steps of one answer; () means "drop" (no answer at all)


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


@dataclass(frozen=True, slots=True)
class Identity:
    server: str = "sip-responder"
    supported: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...]
    default: Reply = (Step.make(200),)
    identity: Identity = field(default_factory=Identity)
    warnings: tuple[str, ...] = ()
    auth: AuthConfig | None = None


def validate_reply(
    steps: Reply, methods: frozenset[str] | None, where: Sequence[str]
) -> list[str]:
    """Check a list of steps (SPEC §3.2); raise RuleError, return warnings.

    Any number of provisional responses, at most one final response and only
    last, delays that never decrease. ``where[i]`` locates step i in messages.
    """
    for i, step in enumerate(steps):
        if step.final and i != len(steps) - 1:
            raise RuleError(f"{where[i]}: only the last step may be a final response "
                            f"(step {i + 1} is {step.code})")
        if i and step.after < steps[i - 1].after:
            raise RuleError(f"{where[i]}: step delays must not decrease "
                            f"({steps[i - 1].after:g}s then {step.after:g}s)")
    warnings = []
    non_invite = methods is None or any(m != "INVITE" for m in methods)
    odd = [i for i, s in enumerate(steps) if 100 < s.code < 200]
    if odd and non_invite:
        warnings.append(
            f"{where[odd[0]]}: provisional {', '.join(str(steps[i].code) for i in odd)} to a "
            "non-INVITE request is forbidden by RFC 4320 §4.1 (sent anyway, as asked)"
        )
    return warnings
