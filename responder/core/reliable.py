"""Reliable provisional responses (RFC 3262, SPEC §8.4), without a table.

With ``100rel`` in ``identity.supported``, an INVITE that has ``Require: 100rel`` (or
``Supported: 100rel`` and a step that says ``reliable: true``) gets its provisionals
other than 100 with ``Require: 100rel`` and ``RSeq``. The RSeq values of a dialog start
at a number read from our To tag (itself a keyed hash of the dialog), so a PRACK is
checked (:func:`rack_ok`) with nothing kept: its RAck must name one of them and INVITE.
On UDP the provisional is sent again (T1 doubling, RFC 3262 §3) until its PRACK or the
next step, whichever comes first.
"""

from __future__ import annotations

import zlib
from dataclasses import replace

from responder.core.calls import resend_times
from responder.rules.model import T1, Reply
from responder.sip.builder import supports
from responder.sip.message import Request

RSEQ_SPAN = 64  # the RSeq values a dialog's provisionals may take (and a PRACK may name)
# RFC 3262 §3: T1 doubling, no T2 cap, for 64·T1
PROVISIONAL_RESEND = resend_times(T1, 64 * T1, 64 * T1)
TAG = "100rel"


def first_rseq(tag: str) -> int:
    """The RSeq of a dialog's first reliable provisional: 1 .. 2**28 (RFC 3262 §3 asks for
    a start below 2**31; ours leaves room for every increment)."""
    try:
        return int(tag[:7], 16) + 1
    except ValueError:
        return (zlib.crc32(tag.encode("utf-8", "surrogateescape")) >> 4) + 1


def reliable_reply(req: Request, reply: Reply, tag: str) -> Reply:
    """``reply`` with its reliable provisionals marked (the caller checked that we support
    100rel and that ``req`` is an INVITE); ``reply`` itself when none is."""
    required = TAG in req.require
    if not required and not (any(s.reliable for s in reply) and supports(req, TAG)):
        return reply
    rseq = first_rseq(tag)
    out = []
    for step in reply:
        if 100 < step.code < 200 and (required or step.reliable):
            given = {name.lower() for name, _ in step.headers}
            extra = (() if "require" in given else (("Require", TAG),)) + (
                () if "rseq" in given else (("RSeq", str(rseq)),))
            step = replace(step, headers=step.headers + extra, reliable=True)
            rseq += 1
        out.append(step)
    return tuple(out)


def rack(req: Request) -> tuple[int, int] | None:
    """A PRACK's RAck: (RSeq, CSeq number) when it names an INVITE, else None."""
    value = req.header("rack")
    parts = value.split() if value else []
    if len(parts) != 3 or parts[2] != "INVITE" or not (parts[0].isdigit() and
                                                         parts[1].isdigit()):
        return None
    if len(parts[0]) > 10 or len(parts[1]) > 10:
        return None
    return int(parts[0]), int(parts[1])


def rack_ok(req: Request, tag: str) -> bool:
    """Does this PRACK acknowledge a provisional we could have sent in its dialog?"""
    got = rack(req)
    if got is None:
        return False
    first = first_rseq(tag)
    return first <= got[0] < first + RSEQ_SPAN
