"""``auth: digest`` rules (SPEC §5): the credentials decide between the rule's reply and a
fresh challenge; nothing is remembered (the nonces are stateless, :mod:`responder.sip.auth`)."""

from __future__ import annotations

from responder.rules.model import Reply, Rule, Step
from responder.sip.addr import Addr
from responder.sip.auth import AuthConfig, Verdict, challenge, new_nonce, verify
from responder.sip.message import Request
from responder.sip.seeded import Seeded


def authorize(rule: Rule, cfg: AuthConfig, req: Request, source: Addr, now: float,
              seeded: Seeded) -> tuple[Reply, str]:
    """Valid credentials get the rule's reply (and its name), others a fresh challenge.

    SPEC §5: no credentials or wrong ones (an unknown user included) get 401 (407 with
    ``challenge: proxy``); a right answer to an expired nonce gets a challenge with
    ``stale=true`` (RFC 2617 §3.2.1).
    """
    key = "proxy-authorization" if rule.proxy_challenge else "authorization"
    verdict = verify(cfg, req, key, seeded, now, source[0])
    if verdict is Verdict.OK:
        return rule.reply, rule.name
    value = challenge(cfg, new_nonce(cfg, seeded, now, source[0]), verdict is Verdict.STALE)
    if rule.proxy_challenge:
        step = Step.make(407, headers=(("Proxy-Authenticate", value),))
    else:
        step = Step.make(401, headers=(("WWW-Authenticate", value),))
    return (step,), f"{rule.name} {verdict.value}-credentials"
