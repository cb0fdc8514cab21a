"""The methods we say we allow, from what the rules answer (issue 12).

``Allow`` goes in every 405 and 501 (RFC 3261 §21.4.6: the methods the server does allow)
and in the 200 to OPTIONS (§11.2). It is :data:`~responder.sip.builder.ALLOW` minus every
method that the rules answer with 405 or 501 whatever the request: a 405 to MESSAGE that
lists MESSAGE in its Allow contradicts itself. Worked out once per rule set
(:class:`~responder.rules.model.RuleSet` fills ``identity.allow``), never per request.

This module reads the rule set's per-method candidate lists (``RuleSet.candidates``)
through the small protocols below, so that it needs nothing from :mod:`.model`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from responder.sip.builder import ALLOW

# The answers that say "this method is not served here" (RFC 3261 §21.4.6, §21.5.2).
REFUSALS = frozenset({405, 501})
# Never taken out: ACK is never answered (no rule applies to it), and a CANCEL of an INVITE
# whose answer is pending gets 200 whatever the rules say (SPEC §5).
ALWAYS = frozenset({"ACK", "CANCEL"})


class StepLike(Protocol):
    @property
    def code(self) -> int: ...


class RuleLike(Protocol):
    @property
    def reply(self) -> Sequence[StepLike]: ...
    @property
    def probability(self) -> float: ...
    @property
    def auth(self) -> bool: ...


# (position, rule, the method is all it asks): model.Candidate
CandidateLike = tuple[int, RuleLike, bool]


def refuses(reply: Sequence[StepLike]) -> bool:
    """The reply ends in 405 or 501 (a drop, or any other answer, does not)."""
    return bool(reply) and reply[-1].code in REFUSALS


def refused(candidates: Sequence[CandidateLike], default: Sequence[StepLike]) -> bool:
    """Every request of one method gets 405 or 501: the rules that can take it, in order,
    all answer so, up to one that takes all of them (no condition but the method,
    probability 1, no credentials asked); without such a rule the default answers the rest
    and must refuse too. A rule with a condition (``MESSAGE@1000->405``, a probability,
    ``in_dialog``) refuses only some requests: the method stays."""
    for _, rule, method_only in candidates:
        if rule.auth or not refuses(rule.reply):
            return False  # it answers some requests otherwise (a 401 challenge, a 200 ...)
        if method_only and rule.probability >= 1.0:
            return True
    return refuses(default)


def allow(candidates: Mapping[str, Sequence[CandidateLike]],
          other: Sequence[CandidateLike], default: Sequence[StepLike]) -> str:
    """The Allow header value: :data:`ALLOW`'s methods, in its order, minus those the rules
    refuse. ``candidates``: per method a rule names, its rules in order; ``other``: the
    rules of every other method (``*`` rules), as ``RuleSet`` keeps them."""
    return ", ".join(m for m in ALLOW.split(", ")
                     if m in ALWAYS or not refused(candidates.get(m, other), default))
