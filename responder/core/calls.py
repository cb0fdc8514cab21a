"""Calls that connect: which body a response to an offer carries (SPEC §8.1), sans-I/O.

The engine asks :func:`read_session` what a request offers (an SDP offer, none, or an offer
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

from typing import Final

from responder.rules.model import NONE, MediaConfig
from responder.sip import sdp
from responder.sip.message import Request

OFFER_METHODS = frozenset({"INVITE", "UPDATE"})
SDP_TYPE = "application/sdp"
NOT_ACCEPTABLE: Final = b""  # no m= line can be accepted: 488
WARNING_305 = '305 {host} "Incompatible media format"'
NO_MEDIA_PORT = 9  # answered with the discard port when no media socket is open


def read_session(req: Request) -> sdp.Offer | None:
    """The SDP offer of an INVITE or UPDATE, None when it has none; raises
    :class:`~responder.sip.sdp.BadSdp` for an offer we cannot read."""
    if req.method not in OFFER_METHODS or not req.body:
        return None
    body = sdp.sdp_of(req.header("content-type"), req.body)
    return None if body is None else sdp.read_offer(body)


def session_id(digest: bytes) -> int:
    """An SDP session id from a keyed digest of the dialog (at most 62 bits, RFC 4566 §5.2
    wants it to fit an NTP timestamp's integer and be positive)."""
    return int.from_bytes(digest[:8], "big") >> 2


def carries_session(req: Request, code: int, cfg: MediaConfig) -> bool:
    """Whether a response of ``code`` to ``req`` carries SDP (an answer or our offer)."""
    if req.method == "INVITE":
        return 200 <= code < 300 or (code == 183 and cfg.early)
    return req.method == "UPDATE" and 200 <= code < 300


def session_body(
    req: Request,
    offer: sdp.Offer | None,
    cfg: MediaConfig,
    *,
    session: int,
    address: str,
    port: int | None,
) -> bytes:
    """The SDP of a response that carries one: our answer to ``offer``, or our offer when
    ``req`` had none (an INVITE's delayed offer); :data:`NOT_ACCEPTABLE` when nothing of
    ``offer`` can be accepted."""
    media_port = port if port else NO_MEDIA_PORT
    inactive = cfg.mode == NONE
    if offer is None:
        return sdp.offer(cfg.codecs, session_id=session, version=req.cseq_num,
                         address=address, port=media_port, inactive=inactive)
    answer = sdp.answer(offer, cfg.codecs, session_id=session, version=req.cseq_num,
                        address=address, port=media_port, inactive=inactive)
    return NOT_ACCEPTABLE if answer is None else answer


def events_pt(answer: bytes) -> int | None:
    """The telephone-event payload type of an answer we built (for DTMF counting)."""
    for line in answer.split(b"\r\n"):
        if line.startswith(b"a=rtpmap:") and b" telephone-event/" in line:
            pt = line[9:].split(b" ", 1)[0]
            return int(pt) if pt.isdigit() and len(pt) <= 3 else None
    return None
