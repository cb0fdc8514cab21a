"""A rule's step -> response bytes, fast: the part after CSeq cached per step, the head
compiled where the extension is built (:mod:`responder._accel`).

:mod:`responder.sip.builder` builds every response; this module only knows which parts of
it can be kept between requests and where the compiled head applies.
"""

from __future__ import annotations

from collections.abc import Callable

from responder.core.counters import Counters
from responder.core.effects import Exchange, Inbound, Send
from responder.rules.model import RuleSet, Step
from responder.sip.builder import (
    DIALOG_METHODS,
    Addr,
    Context,
    Identity,
    build,
    head,
    malform,
    our_contact,
    tail,
)
from responder.sip.message import Request
from responder.sip.parser import COMPILED
from responder.sip.seeded import Seeded

_new = tuple.__new__  # a NamedTuple from all its fields, without its Python __new__

# build_step's cache: (id(step), method, Contact or None) -> (step, identity, tail). The
# entry keeps its step alive, so an id is never reused while its entry exists.
_TAILS: dict[tuple[int, str, str | None], tuple[Step, Identity, bytes]] = {}
TAILS_LIMIT = 4096  # distinct (step, method, Contact) tails kept; then the cache starts over


def build_step(req: Request, ctx: Context, step: Step, tag: str | None,
               session: bytes | None = None) -> bytes:
    """:func:`~responder.sip.builder.build` for a rule's step, with the part after CSeq cached.

    That part depends on the request only through its method (and, for a dialog-creating
    response, our Contact), except for REGISTER bindings and challenges: those are built
    every time.
    """
    method = req.method
    code = step.code
    dialog = 100 < code < 300 and method in DIALOG_METHODS  # Contact and Record-Route
    contact = our_contact(req, ctx) if dialog else None
    key = (id(step), method, contact)
    hit = _TAILS.get(key)
    if hit is not None and hit[0] is step and hit[1] is ctx.identity:
        rest = hit[2]
    else:
        rest, static = tail(req, ctx, code, step.headers, step.body, step.content_type)
        if static:
            if len(_TAILS) >= TAILS_LIMIT:
                _TAILS.clear()
            _TAILS[key] = (step, ctx.identity, rest)
    if session is not None:  # the SDP answer (or offer) instead of the step's empty body
        rest = with_body(rest, session)
    if _respond is not None:
        data = _respond(req, code, step.reason, tag, ctx.source, dialog, rest)
        if data is not None:
            return data
    return head(req, ctx, code, step.reason, tag).encode("utf-8", "surrogateescape") + rest


_NO_BODY = b"Content-Length: 0\r\n\r\n"


def with_body(rest: bytes, session: bytes) -> bytes:
    """A cached tail without a body, given an SDP body (SPEC §8.1)."""
    assert rest.endswith(_NO_BODY)
    return (rest[: -len(_NO_BODY)] + b"Content-Type: application/sdp\r\nContent-Length: %d"
            b"\r\n\r\n" % len(session) + session)


# The compiled head (responder/_accel/_speedups.c), status line to Record-Route: when it is
# built and the parser found its assumptions about Request and TopVia to hold (it shares them).
_respond: Callable[[Request, int, str, str | None, Addr, bool, bytes], bytes | None] | None = (
    COMPILED.respond if COMPILED else None)


def build_fault(req: Request, ctx: Context, step: Step, tag: str | None,
                session: bytes | None = None) -> bytes:
    """The response of a step with a ``fault`` (docs/faults.md), malformed on purpose.

    ``garbage`` is drawn from the seed and the transaction (and the status code), so a
    retransmitted request gets the same bytes.
    """
    fault = step.fault or ""
    body, ctype = (step.body, step.content_type) if session is None else (session,
                                                                           "application/sdp")
    data = build(req, ctx, step.code, step.reason, None if fault == "no-to-tag" else tag,
                 step.headers, body, ctype)
    txn = req.transaction_key
    return malform(data, fault, lambda n: ctx.seeded.noise(txn, f"garbage{step.code}", n))




# --- the express way (Engine._handle) ---------------------------------------------------------
Express = tuple[Step, str]  # the one step of a plain rule, and the rule's name


def express_table(ruleset: RuleSet, call_methods: frozenset[str]) -> dict[str, Express]:
    """Per method outside ``call_methods``, the plain rule (``RuleSet.plain``) whose reply is
    one immediate step with no fault, hangup or reliability: a request of it with no To tag,
    no Require and no problem is answered by those bytes alone, nothing kept."""
    return {method: (rule.reply[0], rule.name) for method, rule in ruleset.plain.items()
            if method not in call_methods and len(rule.reply) == 1
            and rule.reply[0].plain and rule.reply[0].after <= 0
            and rule.reply[0].hangup is None and not rule.reply[0].reliable}


def express(req: Request, inbound: Inbound, now: float, ruleset: RuleSet, seeded: Seeded,
            how: Express, counters: Counters) -> Send:
    """What ``Engine._answer`` sends for an express rule's step, the same bytes and events."""
    step, rule = how
    source = inbound.source
    ctx = _new(Context, (ruleset.identity, seeded, now, source, inbound.local, ruleset.auth,
                         inbound.transport, inbound.conn))
    data = build_step(req, ctx, step, seeded.to_tag(req.call_id, req.from_tag))
    counters.answered += 1
    exch = _new(Exchange, (now, source, req.method, req.uri, req.call_id, step.code,
                           step.reason, rule, 0.0, False, 0, counters.received, None,
                           inbound.transport))
    return _new(Send, (source, data, exch, inbound.local, inbound.conn))
