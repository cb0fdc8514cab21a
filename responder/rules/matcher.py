"""Which rule answers a request: the first that matches and whose draw passes.

Pure: the request, the source address and the seeded draws in, a rule out.
"""

from __future__ import annotations

import ipaddress

from ..message import Request
from ..seeded import Seeded
from .model import NOT_BY_STAR, Match, Rule, RuleSet


def matches(match: Match, req: Request, source_host: str) -> bool:
    """Every key given must match (SPEC §3.2)."""
    if match.methods is None:
        if req.method in NOT_BY_STAR:
            return False
    elif req.method not in match.methods:
        return False
    if match.user is not None and not match.user.matches(req.target_user):
        return False
    if match.from_user is not None and not match.from_user.matches(req.from_user):
        return False
    if match.to_user is not None and not match.to_user.matches(req.to_user):
        return False
    if match.source:
        try:
            addr = ipaddress.ip_address(source_host.partition("%")[0])
        except ValueError:
            return False
        if not any(addr in net for net in match.source):
            return False
    for key, pattern in match.headers:
        if not any(pattern.matches(h.value) for h in req.headers if h.key == key):
            return False
    return True


def select(ruleset: RuleSet, req: Request, source_host: str, seeded: Seeded) -> Rule | None:
    """The rule that answers ``req``; None means the rule set's ``default``.

    A rule with probability p < 1 applies when the seeded draw for this
    transaction and this rule falls below p (SPEC §3.4); otherwise later rules
    are tried. The draw depends only on the seed, the transaction and the rule's
    position, so a retransmission is decided the same way.
    """
    for index, rule in enumerate(ruleset.rules):
        if not matches(rule.match, req, source_host):
            continue
        if rule.probability >= 1.0:
            return rule
        if seeded.draw(req.transaction_key, f"rule{index}") < rule.probability:
            return rule
    return None
