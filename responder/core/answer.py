"""A rule's step -> response bytes, fast: the part after CSeq cached per step, the head
compiled where the extension is built (:mod:`responder._accel`).

:mod:`responder.sip.builder` builds every response; this module only knows which parts of
it can be kept between requests and where the compiled head applies.
"""

from __future__ import annotations

from collections.abc import Callable

from responder.rules.model import Step
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


