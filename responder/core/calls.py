"""Calls that connect: which body a response to an offer carries (SPEC §8.1), sans-I/O.

The engine asks :func:`offer_of` what a request offers (an SDP offer, none, or an offer
it cannot read), and :func:`session_body` what a response of a given code carries:

* a 2xx to an INVITE or UPDATE with an offer: the answer (:mod:`responder.sip.sdp`); a 183
  too (early media) unless the media config turns that off; a step's own ``body:`` always
  wins;
* a 2xx (and 183) to an INVITE without a body (delayed offer): our offer;
* an offer with nothing we can accept: :data:`NOT_ACCEPTABLE` (the engine answers 488 with
  ``Warning: 305``, whatever the rule said, unless the rule names 488 or ``sdp: ignore``).

The session id is a keyed hash of the dialog (Call-ID and From tag) and the version is the
CSeq number, so a re-INVITE's answer has a higher version and nothing keeps a table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, NamedTuple

from responder.core.limits import Expiring
from responder.core.media import Media
from responder.rules.model import ECHO, NONE, SINK, T1, T2, MediaConfig, Reply, Step
from responder.sip import sdp
from responder.sip.builder import MIN_SE, Context, session_timer
from responder.sip.message import Request

OFFER_METHODS = frozenset({"INVITE", "UPDATE", "PRACK"})  # PRACK: RFC 3262 §5
SDP_TYPE = "application/sdp"
NOT_ACCEPTABLE: Final = b""  # no m= line can be accepted: 488
WARNING_305 = '305 {host} "Incompatible media format"'
NO_MEDIA_PORT = 9  # answered with the discard port when no media socket is open


# Offers read, and answer bodies built (all but the o= line), by what they depend on: a
# caller sends the same offer call after call, so reading and answering it is done once.
# Bounded: past CACHE_LIMIT entries a cache starts over.
CACHE_LIMIT = 1024
_OFFERS: dict[bytes, sdp.Offer | sdp.BadSdp] = {}
_BODIES: dict[tuple[object, ...], bytes | None] = {}


def offer_of(req: Request) -> tuple[bytes | None, sdp.Offer | None]:
    """The SDP offer of an INVITE or UPDATE and its bytes (what the answer cache keys on);
    (None, None) when it has none; :class:`~responder.sip.sdp.BadSdp` for an offer we
    cannot read."""
    if req.method not in OFFER_METHODS or not req.body:
        return None, None
    body = sdp.sdp_of(req.header("content-type"), req.body)
    if body is None:
        return None, None
    got = _OFFERS.get(body)
    if got is None:
        try:
            got = sdp.read_offer(body)
        except sdp.BadSdp as exc:
            got = exc
        if len(_OFFERS) >= CACHE_LIMIT:
            _OFFERS.clear()
        _OFFERS[body] = got
    if isinstance(got, sdp.BadSdp):
        raise got
    return body, got


def session_id(tag: str) -> int:
    """The SDP session id of a dialog: our To tag (12 hex digits of a keyed hash of Call-ID
    and From tag, SPEC §4) read as a number, 48 bits (RFC 4566 §5.2: it fits an NTP
    timestamp's integer part's range loosely and is positive)."""
    return int(tag, 16)


def carries_session(req: Request, code: int, cfg: MediaConfig) -> bool:
    """Whether a response of ``code`` to ``req`` carries SDP (an answer or our offer)."""
    if req.method == "INVITE":
        return 200 <= code < 300 or (code == 183 and cfg.early)
    return (req.method == "UPDATE" or req.method == "PRACK") and 200 <= code < 300


def session_body(
    req: Request,
    offer: sdp.Offer | None,
    cfg: MediaConfig,
    *,
    offer_sdp: bytes | None,
    session: int,
    address: str,
    port: int | None,
) -> bytes:
    """The SDP of a response that carries one: our answer to ``offer``, or our offer when
    ``req`` had none (an INVITE's delayed offer); :data:`NOT_ACCEPTABLE` when nothing of
    ``offer`` can be accepted. ``offer_sdp``: the offer's bytes, as :func:`offer_of` read
    them (None with no offer)."""
    media_port = port if port else NO_MEDIA_PORT
    inactive = cfg.mode == NONE
    # Cached by the offer's bytes (their hash is kept by the bytes object), never by the
    # parsed Offer (hashing its nested tuples would cost more than the answer).
    key = (offer_sdp, cfg.codecs, address, media_port, inactive)
    if key in _BODIES:
        body = _BODIES[key]
    else:
        body = (sdp.offer_body(cfg.codecs, address, media_port, inactive) if offer is None
                else sdp.answer_body(offer, cfg.codecs, address, media_port, inactive))
        if len(_BODIES) >= CACHE_LIMIT:
            _BODIES.clear()
        _BODIES[key] = body
    if body is None:
        return NOT_ACCEPTABLE
    return sdp.origin(session, req.cseq_num, address) + body


def events_pt(answer: bytes) -> int | None:
    """The telephone-event payload type of an answer we built (for DTMF counting)."""
    at = answer.find(b" telephone-event/")
    if at < 0:
        return None
    start = answer.rfind(b"a=rtpmap:", 0, at) + 9
    pt = answer[start:at]
    return int(pt) if start >= 9 and pt.isdigit() and len(pt) <= 3 else None


# --- the engine's side of a call ------------------------------------------------------------
def resend_times(t1: float = T1, t2: float = T2, until: float = 64 * T1) -> tuple[float, ...]:
    """When a 2xx to INVITE is sent again, after the first (RFC 3261 §13.3.1.4: T1,
    doubling to T2, until 64·T1): 0.5, 1.5, 3.5, 7.5, 11.5, ... 31.5 s."""
    out: list[float] = []
    at, step = 0.0, t1
    while at + step <= until:
        at += step
        out.append(at)
        step = min(2 * step, t2)
    return tuple(out)


RESEND_2XX = resend_times()


class Talk(NamedTuple):
    """What the responses to one offer-bearing request need to carry SDP."""

    offer: sdp.Offer | None  # None: the INVITE had none (its 2xx carries our offer)
    sdp: bytes | None        # the offer as sent (hashed once: the answer cache's key)
    session: int             # the SDP session id of the dialog
    address: str             # c= and o=: the address the request was sent to
    port: int | None         # the media socket of that address (None: none open)


def listen_address(local: tuple[str, int] | None, req: Request) -> str:
    """The address a request was sent to, as far as the socket tells (a wildcard listen
    address: the Request-URI's host, as our Contact does)."""
    host = local[0] if local else ""
    if host in ("", "0.0.0.0", "::"):
        host = req.uri_host or "127.0.0.1"
        if host.startswith("["):
            host = host[1:-1]
    return host.partition("%")[0]


def session_of(talk: Talk, req: Request, cfg: MediaConfig) -> bytes:
    return session_body(req, talk.offer, cfg, offer_sdp=talk.sdp, session=talk.session,
                        address=talk.address, port=talk.port)


def media_mode(cfg: MediaConfig, body: bytes) -> str:
    """What the media socket does for a call we answered with ``body``: what the config
    says, but nothing is sent back when our answer says we do not send (hold: recvonly,
    inactive)."""
    if cfg.mode == ECHO and (b"a=recvonly" in body or b"a=inactive" in body):
        return SINK
    return cfg.mode


def too_short(req: Request, reply: Reply, supported: tuple[str, ...]) -> bool:
    """RFC 4028 §8.1: with ``timer`` supported, an INVITE whose Session-Expires is below our
    Min-SE gets 422 instead of a 2xx."""
    if req.method != "INVITE" or "timer" not in supported or not req.header("session-expires"):
        return False
    timer = session_timer(req)
    return (timer is not None and timer[0] < int(MIN_SE)
            and any(200 <= s.code < 300 for s in reply))


class Answers(NamedTuple):
    """The SDP a request's responses carry: per step (``id(step)``) the body and the media
    config it was made with, and where the caller's RTP comes from (the offer's)."""

    bodies: dict[int, tuple[bytes, MediaConfig]]
    target: tuple[str, int] | None


class Dialogs:
    """Dialogs that a BYE ended (a second BYE gets 481, SPEC §8.2), remembered for
    ``ttl`` seconds, at most ``limit`` of them (the oldest forgotten first)."""

    def __init__(self, limit: int, ttl: float) -> None:
        # (Call-ID, From tag) -> the CSeq number of the BYE that ended it
        self.ended: Expiring[tuple[str | None, str | None], int] = Expiring(limit, ttl)

    def end(self, call_id: str | None, from_tag: str | None, cseq: int, now: float) -> bool:
        """A BYE (CSeq ``cseq``) ends the dialog: False when another BYE already had (the
        same BYE again is a retransmission, answered again)."""
        key = (call_id, from_tag)
        by = self.ended.get(key, now)
        if by is not None:
            return by == cseq
        self.ended.put(key, cseq, now)
        return True

    def clear(self) -> None:
        self.ended.clear()


def media_port(media_ports: Mapping[str, int], host: str) -> int | None:
    """The media socket for a request that reached ``host``: the one opened for that listen
    address, or for the wildcard address it was reached through (IP_PKTINFO)."""
    port = media_ports.get(host)
    if port is None:
        port = media_ports.get("::" if ":" in host else "0.0.0.0")
    return port


def answers_for(req: Request, ctx: Context, reply: Reply, base: MediaConfig, tag: str,
                media_ports: Mapping[str, int]) -> Answers | Step | None:
    """The SDP of ``reply``'s steps to an INVITE or UPDATE (SPEC §8.1), with ``base`` the
    rule's media settings and ``tag`` our To tag of the dialog (a keyed hash of Call-ID and
    From tag: the session id is read from it): None when no step carries any; a Step to
    send instead: 400 Bad SDP, or 488 when nothing of the offer is acceptable (unless the
    rule answers 488)."""
    carrying = [s for s in reply if not s.body and carries_session(req, s.code, s.media or base)]
    if not carrying:
        return None
    local = listen_address(ctx.local, req)
    try:
        offer_sdp, offer = offer_of(req)
    except sdp.BadSdp as exc:
        why = str(exc).replace('"', "'")
        return Step.make(400, reason="Bad SDP", headers=(("Warning", f'399 {local} "{why}"'),))
    if offer is None and req.method != "INVITE":
        return None  # an UPDATE without an offer: nothing to answer
    talk = Talk(offer, offer_sdp, session_id(tag), local,
                media_port(media_ports, ctx.local[0] if ctx.local else local))
    bodies: dict[int, tuple[bytes, MediaConfig]] = {}
    for step in carrying:
        cfg = step.media or base
        body = session_of(talk, req, cfg)
        if body is NOT_ACCEPTABLE:
            if any(s.code == 488 for s in reply):
                return None
            return Step.make(488, headers=(("Warning", WARNING_305.format(host=local)),))
        bodies[id(step)] = (body, cfg)
    return Answers(bodies, offer.audio_target() if offer is not None else None)


def late_answer(media: Media, req: Request) -> None:
    """The ACK of a delayed offer carries the caller's answer: where its RTP comes from."""
    call = media.calls.get(req.call_id or "")
    if call is None:
        return
    try:
        body = sdp.sdp_of(req.header("content-type"), req.body)
        target = sdp.read_offer(body).audio_target() if body is not None else None
    except sdp.BadSdp:
        return
    if target is not None:
        media.expect(call.call_id, target, call.mode, call.events_pt)
