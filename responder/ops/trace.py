"""``--trace`` and ``--trace-file PATH``: every message received and sent, whole (SPEC §7).

The block form SIP engineers know from SIPp's ``-trace_msg`` and baresip's ``-s``: one
header line with the time, transport, direction, both addresses and the size, then the
message as it went over the wire, then an empty line::

    ----- 2026-12-06 07:40:01.123456 UDP received from 127.0.0.1:5070 at 127.0.0.1:5060,
    412 bytes -----                                            (one line, cut here to fit)
    OPTIONS sip:1000@127.0.0.1 SIP/2.0
    Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1
    ...

An observer of the engine's effects, like the journal: an :class:`Arrived` event is a
message received (an ACK, a discarded datagram -- marked with the reason -- too), a
:class:`Send` a message sent (delayed steps, 2xx resends and repeats from ``Engine.due``
too). Off by default, and then nothing of it runs: the engine emits arrival events only
for someone who records them.

What is shown:

* a message is split at its CRLFs, each line written as a line; every other control
  byte, a bare LF or CR, DEL, bytes that were not UTF-8 and a backslash are escaped as
  ``\\xNN`` (:func:`responder.ops.logs.clean`), so nothing in a message drives the terminal
  and a bare LF shows as ``\\x0a`` at the end of its line;
* a received or sent message, whole up to :data:`SHOWN` bytes (the largest datagram);
  a discarded datagram, its first :data:`SHOWN_DISCARD` bytes; the header line says when
  the rest is not shown.

Never a blocking write: each destination is a :class:`~responder.ops.logs.Sink` (pipes and
terminals reopened non-blocking), one ``write(2)`` per block so workers tracing into one
file (``O_APPEND``) never split each other's blocks; what a full sink does not take waits
in a backlog of at most :data:`BACKLOG_BYTES`, then whole blocks are dropped and counted
(:attr:`Tracer.dropped`).
"""

from __future__ import annotations

import socket
import time
from collections import deque
from typing import TextIO

from responder.core.effects import Arrived, Effect, Send
from responder.ops.logs import CLOSE_TIMEOUT, Sink, clean, stream_sink
from responder.sip.addr import Addr, hostport

SHOWN = 65_535          # bytes of a received or sent message shown (the largest datagram)
SHOWN_DISCARD = 2_048   # bytes of a discarded datagram shown
BACKLOG_BYTES = 4 << 20  # bytes of blocks held for a sink that is full, then blocks dropped
CONNECTIONS = 4_096     # stream connections whose transport is remembered (for their sends)


def _stamp(wall: float) -> str:
    """``2026-12-06 07:40:01.123456`` (local time, microseconds)."""
    t = time.localtime(wall)
    micro = int(wall * 1_000_000) % 1_000_000
    return (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{micro:06d}")


def show(data: bytes) -> str:
    """The message's text as lines: split at CRLF, everything unprintable escaped."""
    text = data.decode("utf-8", "surrogateescape")
    lines = text.split("\r\n")
    if text.endswith("\r\n"):
        lines.pop()  # the last CRLF ends the last line (a message without body: "" after it)
    out = []
    for line in lines:
        # A bare LF (or CR) is escaped, then ends the shown line: exact and readable.
        line = clean(line).replace("\\x0a", "\\x0a\n")
        out.append(line)
    return "\n".join(out) + "\n"


def block(wall: float, transport: str, received: bool, peer: Addr, local: Addr | None,
          data: bytes, discard: str | None = None, extra: str = "") -> bytes:
    """One traced message: the header line, the message's lines, an empty line."""
    limit = SHOWN_DISCARD if discard is not None else SHOWN
    size = len(data)
    where = (f"received from {hostport(peer)}" if received else f"sent to {hostport(peer)}")
    if local is not None:
        where += f" {'at' if received else 'from'} {hostport(local)}"
    notes = f", {size} bytes"
    if discard is not None:
        notes += f", discarded: {clean(discard)}"
    notes += extra
    if size > limit:
        notes += f", first {limit} shown"
        data = data[:limit]
    head = f"----- {_stamp(wall)} {transport.upper()} {where}{notes} -----\n"
    return (head + show(data) + "\n").encode("utf-8", "backslashreplace")


class BlockSink(Sink):
    """A :class:`Sink` whose unit is a block (one per :meth:`write`), not a line: a block is
    written whole or waits whole in the backlog (at most :data:`BACKLOG_BYTES`), never cut,
    and :attr:`dropped` counts blocks."""

    def __init__(self, fd: int, owned: bool, sock: socket.socket | None = None,
                 name: str = "") -> None:
        super().__init__(fd, owned, sock, name)
        self._sizes: deque[int] = deque()  # the length of each block (or its rest) held back

    @classmethod
    def wrap(cls, sink: Sink) -> BlockSink:
        """The same destination, counted in blocks."""
        return cls(sink.fd, sink.owned, sink.sock, sink.name)

    def write(self, data: bytes, note: bool = False) -> None:
        if self.backlog:
            self.flush()
            if self.backlog:
                if len(self.backlog) + len(data) <= BACKLOG_BYTES:
                    self.backlog += data
                    self._sizes.append(len(data))
                else:
                    self.dropped += 1
                return
        sent = self._send(data)
        if sent < len(data):
            self.backlog += data[sent:]  # the rest of a block begun: whole blocks only
            self._sizes.append(len(data) - sent)

    def flush(self) -> None:
        if self.backlog:
            sent = self._send(bytes(self.backlog))
            del self.backlog[:sent]
            sizes = self._sizes
            while sizes and sent >= sizes[0]:
                sent -= sizes.popleft()
            if sizes and sent:
                sizes[0] -= sent

    def drain(self, timeout: float) -> None:
        super().drain(timeout)
        self._sizes.clear()

    def forget(self) -> None:
        """Empty the backlog uncounted (a new worker: the parent's blocks are its own)."""
        self.backlog.clear()
        self._sizes.clear()
        self.dropped = 0

    def _units(self, data: bytes, start: int) -> int:
        if self.backlog:  # the backlog's blocks (written from flush or drain)
            return len(self._sizes)
        return 1 if start < len(data) else 0  # the one block being written


class Tracer:
    """Writes a block per message received and sent to ``stream`` and/or ``path``.

    ``stream``: standard output for ``--trace`` (the log lines stay on stderr); ``path``:
    ``--trace-file``, opened for appending, reopened by :meth:`reopen` (SIGHUP). Opening
    raises OSError."""

    def __init__(self, stream: TextIO | None = None, path: str | None = None) -> None:
        self.stream = stream
        self.path = path
        self._out: BlockSink | None = None
        self._text: TextIO | None = None  # a stream without a descriptor (written as is)
        if stream is not None:
            sink = stream_sink(stream)
            if sink is None:
                self._text = stream
            else:
                self._out = BlockSink.wrap(sink)
        self._file = BlockSink.wrap(Sink.for_path(path)) if path is not None else None
        self._lost = 0  # blocks dropped by sinks closed since (reopen)
        self._transports: dict[int, str] = {}  # stream connection -> its transport

    def _sinks(self) -> list[BlockSink]:
        return [s for s in (self._out, self._file) if s is not None]

    @property
    def dropped(self) -> int:
        """Blocks a full or failing sink did not take, since the start."""
        return self._lost + sum(s.dropped for s in self._sinks())

    @property
    def backlog(self) -> int:
        return sum(len(s.backlog) for s in self._sinks())

    def observe(self, effects: list[Effect]) -> None:
        """Trace one batch of effects (arrivals and sends, in the engine's order)."""
        wall = time.time()
        for e in effects:
            kind = type(e)
            if kind is Arrived:
                assert isinstance(e, Arrived)
                inbound = e.inbound
                if inbound.conn is not None:
                    self._remember(inbound.conn, inbound.transport)
                self._write(block(wall, inbound.transport, True, inbound.source,
                                  inbound.local, inbound.data,
                                  e.discard if e.request is None else None))
            elif kind is Send:
                assert isinstance(e, Send)
                transport = ("udp" if e.conn is None
                             else self._transports.get(e.conn, "tcp"))
                extra = ""
                ex = e.exchange
                if ex is not None:
                    if ex.retransmission:
                        extra += ", retransmission"
                    if ex.repeat:
                        extra += f", repeat {ex.repeat}"
                    if ex.fault is not None:
                        extra += f", fault {clean(ex.fault)}"
                self._write(block(wall, transport, False, e.dest, e.local, e.data,
                                  extra=extra))

    def _remember(self, conn: int, transport: str) -> None:
        known = self._transports
        if conn not in known and len(known) >= CONNECTIONS:
            del known[next(iter(known))]  # the oldest connection seen
        known[conn] = transport

    def _write(self, data: bytes) -> None:
        if self._out is not None:
            self._out.write(data)
        elif self._text is not None:
            try:
                self._text.write(data.decode("utf-8"))
                self._text.flush()
            except (OSError, ValueError):  # a closed stream: lost, counted, never raised
                self._lost += 1
        if self._file is not None:
            self._file.write(data)

    def flush(self) -> None:
        for sink in self._sinks():
            sink.flush()

    def reopen(self) -> str | None:
        """Open the trace file afresh (after rotation); on failure the old one stays and
        the reason is returned."""
        if self.path is None:
            return None
        try:
            new = BlockSink.wrap(Sink.for_path(self.path))
        except OSError as exc:
            return f"cannot reopen the trace file, still writing the old one: {exc}"
        old, self._file = self._file, new
        if old is not None:
            old.drain(0)
            self._lost += old.dropped
            old.close()
        return None

    def forked(self) -> None:
        """In a new worker process: what the parent held back is the parent's to send."""
        for sink in self._sinks():
            sink.forget()
        self._lost = 0

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        for sink in self._sinks():
            sink.drain(timeout)
            sink.close()
        self._out = self._file = None
