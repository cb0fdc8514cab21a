"""Stream framing (RFC 3261 §18.3, RFC 5626 §3.5.1): bytes of a TCP or TLS connection in,
whole messages out. Sans-I/O, like h11's connection: :meth:`Framer.feed` takes whatever a
read gave and returns what it completed, in order:

* ``bytes`` -- one whole message (header section and exactly Content-Length bytes of body),
  parsed by the engine as it parses a datagram;
* :data:`PING` -- a double CRLF between messages (RFC 5626 keep-alive ping): the transport
  answers a single CRLF (the pong);
* :class:`FrameError` -- the stream cannot be framed any further: the last item, the framer
  takes nothing more, the transport answers (when :attr:`FrameError.status` says so) and
  closes the connection.

Leading CRLFs before a message are skipped (RFC 3261 §7.5). On a stream Content-Length is
mandatory (RFC 3261 §18.3, §20.14): without it, ``400 Missing Content-Length``. A message is
at most :data:`MAX_MESSAGE` bytes, header section and body, as a datagram is: what is buffered
for a connection is bounded by it. Line ends in the header section may be LF-only, as the
parser reads them. WebSocket carries one message per frame and needs none of this but the
keep-alive rule (:func:`is_ping`).

The hot case -- from a point between messages, the whole messages, line ends and pings
that follow -- is also compiled (``_speedups.frame``, responder/_accel/_framing.h): it stops
before anything else (a message not whole yet, any error, a lone CR) and this code goes on
from there, so both give the same frames (tests/test_framing_accel.py). ``Framer(compiled=
False)`` or ``SIP_RESPONDER_PURE=1``: this code alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, NamedTuple

from responder._accel import SPEEDUPS, adopt
from responder.sip.builder import Context, build
from responder.sip.errors import Discard
from responder.sip.parser import parse

MAX_MESSAGE: Final = 65535  # header section + body, the largest datagram the engine takes
PONG: Final = b"\r\n"       # RFC 5626 §4.4.1: a double-CRLF ping gets a single CRLF


# FrameError reasons (counter keys)
NO_LENGTH = "no-content-length"
BAD_LENGTH = "bad-content-length"
TOO_LARGE = "too-large"
NOT_FRAMED = "not-framed"  # a CR not followed by LF between messages


class Ping:
    """A double CRLF between messages: answer :data:`PONG`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PING"


PING: Final = Ping()


class FrameError(NamedTuple):
    """The stream cannot be framed past this point (the framer's last item).

    ``status``/``phrase``: the answer a server should send before closing (h11's
    ``error_status_hint``), None when nothing can be answered; ``head``: the header section
    of the message at fault, to build that answer from (b"" when it never ended)."""

    reason: str
    status: int | None
    phrase: str | None
    head: bytes


Frame = bytes | Ping | FrameError


# A Content-Length line (``l`` its compact form), any case: the literal "\n" first lets the
# regular expression engine jump from line to line.
_LENGTH = re.compile(rb"\n(?:content-length|l)[ \t]*:([^\r\n]*)", re.IGNORECASE)


def content_length(buf: bytes | bytearray, start: int = 0, end: int | None = None
                   ) -> int | FrameError:
    """The one Content-Length of the header section ``buf[start:end]`` (``l:`` is its
    compact form), or why there is none to frame by: missing, not digits, conflicting, or
    too large."""
    end = len(buf) if end is None else end
    values = {v.strip(b" \t") for v in _LENGTH.findall(buf, start, end)}
    if len(values) == 1:
        value = values.pop()
        if value.isdigit() and len(value) <= 6 and end - start + int(value) <= MAX_MESSAGE:
            return int(value)  # the common case, first
        values.add(value)
    head = bytes(buf[start:end])
    if not values:
        return FrameError(NO_LENGTH, 400, "Missing Content-Length", head)
    if len(values) > 1:
        return FrameError(BAD_LENGTH, 400, "Conflicting Content-Length", head)
    if not values.pop().isdigit():
        return FrameError(BAD_LENGTH, 400, "Bad Content-Length", head)
    return FrameError(TOO_LARGE, 513, None, head)


def head_end(buf: bytes | bytearray, start: int) -> tuple[int, int] | None:
    """Where the header section from ``start`` ends: (its end, where the body begins), at
    the first empty line, CRLF or LF line ends alike (as the parser reads them)."""
    mixed = buf.find(b"\n\r\n", start)  # the end of every CRLF CRLF too
    lf = buf.find(b"\n\n", start, mixed + 2 if mixed >= 0 else len(buf))
    if lf >= 0:
        return lf, lf + 2
    if mixed < 0:
        return None
    return (mixed - 1 if buf[mixed - 1] == 13 else mixed), mixed + 3


class Framer:
    """One connection's inbound bytes; at most :data:`MAX_MESSAGE` of them held.
    ``compiled``: use ``_speedups.frame`` for the hot case when it is there."""

    __slots__ = ("_buf", "_crlfs", "_failed", "_frame", "_need", "_scan")

    def __init__(self, compiled: bool = True) -> None:
        self._buf = bytearray()
        self._scan = 0          # where the search for the header section's end resumes
        self._need = -1         # a whole message's length, once its header section ended
        self._crlfs = 0         # line ends seen since the last message (two make a ping)
        self._failed = False
        self._frame = FRAME if compiled else None

    @property
    def buffered(self) -> int:
        """Bytes held for a message not yet complete."""
        return len(self._buf)

    @property
    def failed(self) -> bool:
        return self._failed

    @property
    def compiled(self) -> bool:
        """Whether the compiled hot case is used."""
        return self._frame is not None

    def feed(self, data: bytes) -> list[Frame]:
        """What ``data`` completes, in order (see the module's docstring)."""
        if self._failed:
            return []
        held = self._buf
        frame = self._frame
        buf: bytes | bytearray
        out: list[Frame]
        handed = -1  # where the compiled code last stopped (Python goes on from there)
        if held:
            held += data  # amortised: a peer that sends a byte at a time costs no copies
            buf = held
            out = []
            pos = 0
        else:
            buf = data  # the common case: a read that starts with a message, not copied
            if frame is not None:  # between messages (nothing held): the compiled hot case
                out, pos, self._crlfs = frame(data, 0, self._crlfs, PING)
                if pos == len(data):
                    return out
                handed = pos
            else:
                out = []
                pos = 0
        end = len(buf)
        while pos < end:
            if self._need < 0 and self._scan == 0:  # between messages: CRLFs and pings
                if frame is not None and pos != handed:
                    more, pos, self._crlfs = frame(buf, pos, self._crlfs, PING)
                    out += more
                    handed = pos
                    continue
                first = buf[pos]
                if first == 13 or first == 10:  # CR, LF
                    if first == 10:
                        pos += 1
                    elif pos + 1 == end:
                        break  # a lone CR: its LF may come with the next read
                    elif buf[pos + 1] == 10:
                        pos += 2
                    else:
                        return self._fail(out, FrameError(NOT_FRAMED, None, None, b""))
                    self._crlfs += 1
                    if self._crlfs == 2:
                        self._crlfs = 0
                        out.append(PING)
                    continue
                self._crlfs = 0
            if self._need < 0:
                found = head_end(buf, max(self._scan - 3, pos))
                if found is None:
                    if end - pos > MAX_MESSAGE:
                        return self._fail(out, FrameError(TOO_LARGE, None, None, b""))
                    self._scan = end
                    break
                length = content_length(buf, pos, found[0])
                if type(length) is not int:
                    assert isinstance(length, FrameError)
                    return self._fail(out, length)
                self._need = found[1] + length  # an offset in buf
            if end < self._need:
                break
            # (a whole bytes read is its own message: bytes(data[0:len]) is data, no copy)
            out.append(bytes(buf[pos:self._need]))
            pos = self._need
            self._need = -1
            self._scan = 0
        if held:
            del held[:pos]
        elif pos < end:
            held += buf[pos:]
        if self._need >= 0:
            self._need -= pos
        if self._scan:
            self._scan -= pos
        return out

    def _fail(self, out: list[Frame], error: FrameError) -> list[Frame]:
        self._failed = True
        self._buf = bytearray()
        out.append(error)
        return out


# --- the compiled hot case (responder/_accel/_framing.h): probed, then used ------------

CompiledFrame = Callable[[bytes | bytearray, int, int, Ping],
                         tuple[list[Frame], int, int]]


def _probes() -> list[bytes]:
    """Inputs on which the compiled code must frame as this module does before it is used:
    the bound (a message at MAX_MESSAGE, one byte past it), pings, the compact form."""
    head = b"OPTIONS sip:a@b SIP/2.0\r\nl: %d"
    edge = MAX_MESSAGE - len(head % MAX_MESSAGE) + len(b"%d" % MAX_MESSAGE) - 5
    at = head % edge + b"\r\n\r\n" + b"x" * edge
    past = head % (edge + 1) + b"\r\n\r\n" + b"x" * (edge + 1)
    small = b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\nContent-Length: 2\r\n\r\nok\n\n"
    return [at, past, small, small * 3, small[:-9]]


def _check(ext: object) -> str | None:
    frame = getattr(ext, "frame", None)
    if frame is None:
        return "no frame() (built from older source?)"
    for probe in _probes():
        want = Framer(compiled=False).feed(probe)
        framer = Framer(compiled=False)
        framer._frame = frame
        try:
            got = framer.feed(probe)
        except Exception as exc:  # any failure: not used
            return f"frame() raised {exc!r}"
        if got != want:
            return f"frame() frames a {len(probe)}-byte probe differently"
    return None


def compiled_frame() -> CompiledFrame | None:
    """``_speedups.frame`` when it is built and frames the probes as this module does."""
    ext = SPEEDUPS
    if ext is None or not hasattr(ext, "frame"):
        return None  # not built, or built from older source: quietly pure
    ext, _why = adopt(ext, "framer", _check)
    return None if ext is None else getattr(ext, "frame", None)


FRAME: CompiledFrame | None = compiled_frame()


def is_ping(message: bytes) -> bool:
    """A WebSocket message that is only line ends, two or more (RFC 5626 §3.5.1 carried in
    a frame, as RFC 7118 §6 allows): answered with :data:`PONG`, never parsed."""
    return len(message) >= 2 and not message.strip(b"\r\n") and message.count(b"\n") >= 2


def refusal(error: FrameError, ctx: Context, tag: str | None = None) -> bytes | None:
    """The answer to a message that cannot be framed (``400 Missing Content-Length``, ``513
    Message Too Large``), built from its header section like any answer (Via with
    received/rport, From, To, Call-ID, CSeq copied); None when there is nothing to answer:
    no status, or the header section is not a request the parser can answer. ``tag``: the
    To tag the engine would give (``Seeded.to_tag``); None: computed from ``ctx.seeded``."""
    if error.status is None or not error.head:
        return None
    try:
        req = parse(error.head.lstrip(b"\r\n") + b"\r\n\r\n")
    except Discard:
        return None
    if tag is None:
        tag = ctx.seeded.to_tag(req.call_id, req.from_tag)
    reason = error.phrase or "Message Too Large"
    return build(req, ctx, error.status, reason, tag)
