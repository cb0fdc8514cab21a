"""What the tables keep of a request, and what it weighs (SPEC §10: every table is bounded
in bytes as well as entries, and keeps what it needs, not the whole parsed request).

A parsed :class:`~responder.sip.message.Request` holds every header line as three objects;
a 64 KB request of short lines is well over a megabyte of them. So:

* a pending transaction keeps :func:`for_answers`: the fields the builder copies into a
  response (Via, From, To, Call-ID, CSeq, Timestamp, Record-Route, REGISTER's Contact and
  Expires, the Require tags a 420 names) -- the same strings, so every later response is
  byte-identical to one built from the whole request;
* the journal keeps :func:`for_journal`: the request as parsed when its datagram is small,
  else a copy cut to :data:`JOURNAL_LINES` header lines of at most :data:`JOURNAL_VALUE`
  characters each, and at most :data:`JOURNAL_DATA` bytes of the datagram and of each
  response.

The weights are estimates of the memory held (CPython object overheads included), close
enough that a byte budget means what it says (``scripts/bench_memory.py`` prints both).
"""

from __future__ import annotations

from responder.sip.message import Request, TopVia

JOURNAL_DATA = 4096   # bytes of a datagram, and of each response, the journal keeps
JOURNAL_LINES = 100   # header lines of a large request the journal keeps
JOURNAL_VALUE = 512   # characters of each value of a large request the journal keeps

STR = 64        # a str or bytes object's own size, about (CPython: 33-49 + alignment)
LINE = 136      # a header line beyond its value: the tuple, the list slot, the value's str
REQUEST = 600   # a Request, its lists and its TopVia, beyond their text
TAIL = 512      # a response's bytes after CSeq (Contact, Server, Content-Length ...)

# Header lines a response copies or reads (responder.sip.builder): Record-Route for the
# dialog-creating 1xx/2xx, and for REGISTER's 200 the Contact bindings and their Expires.
_KEYS = frozenset({"record-route"})
_REGISTER_KEYS = frozenset({"record-route", "contact", "expires"})


def for_answers(req: Request) -> Request:
    """``req`` with only what building its responses reads (the same strings, no copies)."""
    # (an INVITE's Contact too: the BYE of a ``hangup:`` goes to it, SPEC §8.5)
    keys = _REGISTER_KEYS if req.method in ("REGISTER", "INVITE") else _KEYS
    lines = [h for h in req.header_lines if h[0] in keys]
    return Request(req.method, req.uri, req.version, lines, req.vias, req.top_via,
                   req.via_rest, req.from_, req.to, req.call_id, req.cseq, req.cseq_num,
                   req.from_tag, req.to_tag, None, None, None, req.require, req.timestamp,
                   req.uri_host)


def weight(req: Request) -> int:
    """What ``req`` holds, in bytes, counted string by string (for kept copies)."""
    text = (len(req.uri) + len(req.top_via.value) + len(req.via_rest or "")
            + sum(map(len, req.vias)) + len(req.from_ or "") + len(req.to or "")
            + len(req.call_id or "") + len(req.cseq or "") + len(req.timestamp or "")
            + len(req.body) + sum(len(v) for _, _, v in req.header_lines))
    return REQUEST + text + STR * (len(req.vias) + 8) + LINE * len(req.header_lines)


def answer_weight(kept: Request, body: int) -> int:
    """A pending transaction: its :func:`for_answers` copy and the last response it sent
    (about the copied header text, plus a tail and a body of up to ``body`` bytes)."""
    own = weight(kept)
    return own + (own - REQUEST) + TAIL + body + STR


def for_pending(req: Request, size: int, body: int) -> tuple[Request, int]:
    """What a pending entry keeps of ``req`` (parsed from a datagram of ``size`` bytes) and
    its weight with a response of up to ``body`` bytes: a small request as parsed (no copy:
    copying costs more CPU than the few hundred bytes it saves), else :func:`for_answers`."""
    lines = req.header_lines
    if size and size <= JOURNAL_DATA and len(lines) <= JOURNAL_LINES:
        own = REQUEST + size + STR * (len(req.vias) + 8) + LINE * len(lines)
        return req, own + (own - REQUEST) + TAIL + body + STR
    kept = for_answers(req)
    return kept, answer_weight(kept, body)


def for_journal(req: Request, size: int) -> tuple[Request, int]:
    """What the journal keeps of ``req`` (parsed from ``size`` bytes), and its weight."""
    lines = req.header_lines
    if size <= JOURNAL_DATA and len(lines) <= JOURNAL_LINES:
        # Small: kept as parsed (no copy on the hot path); its text is at most ``size``.
        return req, REQUEST + size + STR * (len(req.vias) + 8) + LINE * len(lines)
    top = req.top_via
    kept = Request(
        req.method[:JOURNAL_VALUE], req.uri[:JOURNAL_VALUE], req.version[:JOURNAL_VALUE],
        [(k[:JOURNAL_VALUE], n[:JOURNAL_VALUE], v[:JOURNAL_VALUE])
         for k, n, v in lines[:JOURNAL_LINES]],
        [v[:JOURNAL_VALUE] for v in req.vias[:JOURNAL_LINES]],
        TopVia(top.value[:JOURNAL_VALUE], top.host[:JOURNAL_VALUE], top.port,
               _cut(top.branch), top.rport, top.rport_empty, top.received),
        _cut(req.via_rest), _cut(req.from_), _cut(req.to), _cut(req.call_id), _cut(req.cseq),
        req.cseq_num, _cut(req.from_tag), _cut(req.to_tag), _cut(req.target_user),
        _cut(req.from_uri), _cut(req.to_uri),
        tuple(t[:JOURNAL_VALUE] for t in req.require[:JOURNAL_LINES]), _cut(req.timestamp),
        _cut(req.uri_host), req.body[:JOURNAL_VALUE], req.problem)
    return kept, weight(kept) + LINE * len(kept.require)


def _cut(text: str | None) -> str | None:
    return text if text is None or len(text) <= JOURNAL_VALUE else text[:JOURNAL_VALUE]
