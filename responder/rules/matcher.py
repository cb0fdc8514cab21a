"""Which rule answers a request: the first that matches and whose draw passes.

Pure: the request, the source address and the seeded draws in, a rule out.
"""

from __future__ import annotations

import ipaddress

from responder.rules.model import NOT_BY_STAR, Match, Rule, RuleSet
from responder.sip.message import Request
from responder.sip.seeded import Seeded


def matches(match: Match, req: Request, source_host: str) -> bool:
    """Every key given must match (SPEC §3.2)."""
    if match.methods is None:
        if req.method in NOT_BY_STAR:
            return False
    elif req.method not in match.methods:
        return False
    # SPEC §8.2: a request with a To tag is in a dialog.
    if match.in_dialog is not None and match.in_dialog is (req.to_tag is None):
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
        if not any(pattern.matches(v) for v in req.header_values(key)):
            return False
    return True


def explain(match: Match, req: Request, source_host: str) -> list[str]:
    """Why ``match`` does not take ``req``: one phrase per key that fails ([] = it matches).

    The slow, talkative twin of :func:`matches`, for near-miss reports in tests.
    """
    why = []
    if match.methods is None:
        if req.method in NOT_BY_STAR:
            why.append(f"method {req.method} is only answered by a rule that names it")
    elif req.method not in match.methods:
        why.append(f"method {req.method} is not {'/'.join(sorted(match.methods))}")
    if match.in_dialog is not None and match.in_dialog is (req.to_tag is None):
        why.append("in_dialog: true, and the request has no To tag" if match.in_dialog
                   else f"in_dialog: false, and the request has a To tag ({req.to_tag!r})")
    for key, pattern, value in (("user", match.user, req.target_user),
                                ("from_user", match.from_user, req.from_user),
                                ("to_user", match.to_user, req.to_user)):
        if pattern is not None and not pattern.matches(value):
            why.append(f"{key} {value!r} does not match {pattern.text!r}")
    if match.source and not matches(Match(source=match.source), req, source_host):
        nets = ", ".join(str(n) for n in match.source)
        why.append(f"source {source_host} is not in {nets}")
    for key, pattern in match.headers:
        values = req.header_values(key)
        if not any(pattern.matches(v) for v in values):
            seen = f"values {values!r}" if values else "no such header"
            why.append(f"header {key}: {seen} do not match {pattern.text!r}")
    return why


def select(ruleset: RuleSet, req: Request, source_host: str, seeded: Seeded) -> Rule | None:
    """The rule that answers ``req``; None means the rule set's ``default``.

    A rule with probability p < 1 applies when the seeded draw for this
    transaction and this rule falls below p (SPEC §3.4); otherwise later rules
    are tried. The draw depends only on the seed, the transaction and the rule's
    position, so a retransmission is decided the same way.
    """
    method = req.method
    candidates = ruleset.candidates.get(method)
    if candidates is None:
        candidates = () if method in NOT_BY_STAR else ruleset.other_candidates
    for index, rule, method_only in candidates:
        if not method_only and not matches(rule.match, req, source_host):
            continue
        if rule.probability >= 1.0:
            return rule
        if seeded.draw(req.transaction_key, f"rule{index}") < rule.probability:
            return rule
    return None


def select_in_dialog(ruleset: RuleSet, req: Request, source_host: str,
                     seeded: Seeded) -> Rule | None:
    """For a request the engine answers by itself in a dialog (SPEC §8.2: a re-INVITE or
    an UPDATE with a To tag): the first rule with ``match: {in_dialog: true}`` that takes
    it, its draw made as :func:`select` makes it; None: the engine's own answer."""
    candidates = ruleset.candidates.get(req.method, ruleset.other_candidates)
    for index, rule, _ in candidates:
        if rule.match.in_dialog is not True or not matches(rule.match, req, source_host):
            continue
        if rule.probability >= 1.0 or \
                seeded.draw(req.transaction_key, f"rule{index}") < rule.probability:
            return rule
    return None
