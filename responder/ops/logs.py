"""One line per exchange (SPEC §7), text or JSON, written without ever blocking.

No ``logging`` on the hot path: a line is formatted with plain string
operations and written with one call.

With ``--log-format json`` every line on the stream is JSON (SPEC §7): the exchange lines
(:data:`EXCHANGE_KEYS`) and the lines about the server itself (:func:`note_line`: start,
stop, summaries, reloads, warnings, errors; :data:`NOTE_KEYS`), so the stream can be piped
into ``jq``. docs/operations.md lists every key; a test compares the list with these.

Two promises of SPEC §10 live here:

* the text log never writes a character taken from a message raw when it is not printable:
  control bytes, DEL, C1 controls and bytes that were not UTF-8 are written ``\\xNN``, other
  unprintable characters (bidi overrides, line separators) ``\\uNNNN``, and a backslash
  ``\\x5c``, so every ``\\x`` in a line is an escape (:func:`clean`); a JSON line falls back
  to ``ensure_ascii`` when it would carry such a character;
* a sink that stops reading (a pipe nobody reads, a FIFO, a stopped terminal) never stops
  answering: every sink is written with non-blocking writes (:class:`Sink`); what it does
  not take waits in a backlog of at most :data:`BACKLOG_BYTES`, and past that exchange
  lines are dropped and counted (:attr:`ExchangeLog.dropped`).
"""

from __future__ import annotations

import errno
import json
import os
import select
import socket
import stat
import time
from typing import TextIO

from responder.core.effects import Exchange

BACKLOG_BYTES = 1 << 20    # bytes of exchange lines held for a sink that is full, then dropped
NOTE_RESERVE = 64 << 10    # ... and room beyond that kept for the server's own lines
CLOSE_TIMEOUT = 2.0        # seconds close() waits for a slow sink to take its backlog


def _escape(char: str) -> str:
    n = ord(char)
    if 0xDC80 <= n <= 0xDCFF:  # a byte that was not UTF-8 (decoded with surrogateescape)
        return f"\\x{n - 0xDC00:02x}"
    if n < 0x100:
        return f"\\x{n:02x}"
    return f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def clean(text: str) -> str:
    """``text`` with every unprintable character and the backslash escaped (``\\xNN``)."""
    if text.isprintable() and "\\" not in text:
        return text  # the usual case, checked in C
    return "".join(c if c.isprintable() and c != "\\" else _escape(c) for c in text)


def _addr(addr: tuple[str, int]) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# The last second _clock turned into HH:MM:SS: time.localtime costs more than the rest
# of a log line, and every line of a second shares it.
_second: list[object] = [None, ""]


def _clock(wall: float) -> str:
    second = int(wall)
    if second != _second[0]:
        t = time.localtime(wall)
        _second[:] = [second, f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"]
    return f"{_second[1]}.{int(wall * 1000) % 1000:03d}"


def text_line(ex: Exchange, wall: float) -> str:
    """``12:00:01.234 192.0.2.10:5062 INVITE sip:1000@lab -> 486 Busy Here [rule busy-1000]``

    Everything a message or a rule chose is passed through :func:`clean` (the line as a
    whole: the parts the server writes are printable and have no backslash)."""
    answer = "drop" if ex.status is None else f"{ex.status} {ex.reason}"
    extra = " (retransmission)" if ex.retransmission else ""
    if ex.repeat:
        extra += f" (repeat {ex.repeat})"
    if ex.fault is not None:
        extra += f" (fault {ex.fault})"
    line = (f"{_clock(wall)} {_addr(ex.source)} {ex.method} {ex.uri} -> {answer} "
            f"[rule {ex.rule}]{extra}")
    return f"{clean(line)}\n"


def json_line(ex: Exchange, wall: float) -> str:
    """The same facts as :func:`text_line`, as one JSON object (keys: :data:`EXCHANGE_KEYS`)."""
    fields = {
        "time": round(wall, 3),
        "event": "exchange",
        "source": _addr(ex.source),
        "method": ex.method,
        "uri": ex.uri,
        "call_id": ex.call_id,
        "status": ex.status,
        "reason": ex.reason,
        "rule": ex.rule,
        "delay": round(ex.delay, 6),  # seconds after the request arrived
        "retransmission": ex.retransmission,
        "repeat": ex.repeat,
        "fault": ex.fault,  # the fault that malformed the response on purpose, else null
    }
    return _dumps(fields)


def _dumps(fields: dict[str, object]) -> str:
    line = json.dumps(fields, ensure_ascii=False)
    if not line.isprintable():  # C1 controls, bidi overrides, bytes that were not UTF-8
        line = json.dumps(fields)
    return line + "\n"


# Every key a JSON exchange line has (docs/operations.md lists them; a test compares).
EXCHANGE_KEYS = ("time", "event", "source", "method", "uri", "call_id", "status", "reason",
                 "rule", "delay", "retransmission", "repeat", "fault")

# The lines about the server itself, by event: the keys each has beyond ``time``, ``event``
# and ``message`` (docs/operations.md lists them; a test compares). ``message`` is the
# text line's words (``listening on udp://127.0.0.1:5060``), so a script that waits for a
# line works with either format.
NOTE_KEYS: dict[str, tuple[str, ...]] = {
    "seed": ("seed",),
    "listening": ("url", "worker"),
    "media": ("url", "worker"),
    "metrics": ("url",),
    "admin": ("url",),
    "worker": ("worker", "pid"),
    "reload": (),
    "warning": (),
    "error": (),
    "discards": ("interval", "total", "counts", "worker"),
    "overflow": ("interval", "refused", "limit", "worker"),
    "stopped": ("worker", "received", "answered", "discarded", "unsent", "log_dropped",
                "trace_dropped"),
}
NOTE_COMMON = ("time", "event", "message")


def note_line(fmt: str, message: str, event: str = "warning",
              fields: dict[str, object] | None = None, wall: float | None = None) -> str:
    """A line about the server itself: ``sip-responder: MESSAGE`` (escaped), or with
    ``fmt`` json one object with :data:`NOTE_COMMON` and the event's :data:`NOTE_KEYS`
    (a key not given is null)."""
    if fmt != "json":
        return f"sip-responder: {clean(message)}\n"
    given = fields or {}
    obj: dict[str, object] = {"time": round(time.time() if wall is None else wall, 3),
                              "event": event, "message": message}
    for key in NOTE_KEYS.get(event, ()):
        obj[key] = given.get(key)
    return _dumps(obj)


class Sink:
    """One destination (a stream's file descriptor or a ``--log-file``) written without
    blocking.

    * a pipe, FIFO or terminal is opened afresh through ``/proc/self/fd`` with
      ``O_NONBLOCK`` (its own open file description: the flag does not leak to the shell or
      the other readers of the terminal); a ``--log-file`` that is a FIFO is opened
      ``O_NONBLOCK`` too, so one with no reader fails at once instead of blocking start-up;
    * a socket is sent to with ``MSG_DONTWAIT``;
    * a regular file is written as it is (writes to it do not wait for a reader).

    What the sink does not take waits in :attr:`backlog`, sent first on the next write or
    :meth:`flush`; exchange lines that would grow it past :data:`BACKLOG_BYTES` are dropped
    and counted in :attr:`dropped` (the server's own lines may use :data:`NOTE_RESERVE`
    more). A write error is counted too; :attr:`error` keeps the first one.
    """

    def __init__(self, fd: int, owned: bool, sock: socket.socket | None = None,
                 name: str = "") -> None:
        self.fd = fd
        self.owned = owned
        self.sock = sock
        self.name = name
        self.backlog = bytearray()
        self.dropped = 0  # lines
        self.errors = 0
        self.error: OSError | None = None

    @classmethod
    def for_fd(cls, fd: int, name: str) -> Sink:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode):
            return cls(fd, False, name=name)
        if stat.S_ISSOCK(mode):
            return cls(fd, False, socket.socket(fileno=os.dup(fd)), name)
        try:
            own = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK
                          | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError:  # no /proc, or a pipe with no reader left: write it as it is
            return cls(fd, False, name=name)
        return cls(own, True, name=name)

    @classmethod
    def for_path(cls, path: str) -> Sink:
        """Open ``path`` for appending (raises OSError, with a clear one for a FIFO that
        has no reader)."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK
                         | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                raise OSError(errno.ENXIO, f"{path} is a FIFO with no reader (start the "
                                           "reader first)") from None
            raise
        return cls(fd, True, name=path)

    def write(self, data: bytes, note: bool = False) -> None:
        if self.backlog:
            self.flush()
            if self.backlog:
                room = BACKLOG_BYTES + (NOTE_RESERVE if note else 0) - len(self.backlog)
                if len(data) <= room:
                    self.backlog += data
                else:
                    self.dropped += self._units(data, 0)
                return
        sent = self._send(data)
        if sent < len(data):
            rest = data[sent:]
            if len(rest) > BACKLOG_BYTES:  # finish the line begun, drop the others
                end = rest.find(b"\n") + 1
                self.dropped += rest.count(b"\n", end)
                rest = rest[:end]
            self.backlog += rest

    def _units(self, data: bytes, start: int) -> int:
        """What ``data[start:]`` holds, in the unit :attr:`dropped` counts (lines here)."""
        return data.count(b"\n", start)

    def flush(self) -> None:
        """Send what the backlog holds, as much as the sink takes now."""
        if self.backlog:
            sent = self._send(bytes(self.backlog))
            del self.backlog[:sent]

    def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the sink to take the backlog; count the rest
        as dropped."""
        deadline = time.monotonic() + timeout
        poll = select.poll()
        poll.register(self.fd, select.POLLOUT)
        while self.backlog and self.error is None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            poll.poll(left * 1000)
            self.flush()
        self.dropped += self._units(bytes(self.backlog), 0)
        self.backlog.clear()

    def _send(self, data: bytes) -> int:
        """Bytes of ``data`` the sink took (0 when it is full or failed)."""
        done = 0
        try:
            while done < len(data):
                if self.sock is not None:
                    n = self.sock.send(data[done:], socket.MSG_DONTWAIT)
                else:
                    n = os.write(self.fd, data[done:])
                if n <= 0:
                    break
                done += n
        except BlockingIOError:
            pass
        except OSError as exc:  # EPIPE, ENOSPC, EIO...: these lines are lost
            self.errors += 1
            self.error = self.error or exc
            self.dropped += self._units(data, done)
            return len(data)
        return done

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        elif self.owned and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1


def stream_sink(stream: TextIO) -> Sink | None:
    """A non-blocking sink on ``stream``'s file descriptor; None for a stream without one
    (an in-memory stream, written as it is)."""
    try:
        return Sink.for_fd(stream.fileno(), str(getattr(stream, "name", "")))
    except (OSError, ValueError):  # no descriptor (io.StringIO), or a closed one
        return None


class ExchangeLog:
    """Writes exchange lines to ``stream`` (not when ``quiet``) and to ``path`` if given.

    Both are :class:`Sink`: never a blocking write, lines dropped and counted when a sink
    is full (:attr:`dropped`). The file (``--log-file``) is opened for appending, one
    ``write(2)`` per batch of whole lines, so ``tail -f`` sees every line at once and
    workers sharing it do not split each other's lines; ``quiet`` silences only the
    stream. :meth:`reopen` (SIGHUP) opens the path afresh, for log rotation. Opening
    raises OSError; a later write error is reported once and the line is lost.
    """

    def __init__(self, stream: TextIO, fmt: str = "text", quiet: bool = False,
                 path: str | None = None) -> None:
        self.stream = stream
        self.quiet = quiet
        self.path = path
        self.fmt = fmt
        self._format = json_line if fmt == "json" else text_line
        self._file: Sink | None = Sink.for_path(path) if path is not None else None
        self._out = stream_sink(stream)
        self._lost = 0  # dropped by sinks closed since (reopen)
        self._reported = False

    @property
    def silent(self) -> bool:
        """Nothing is ever written (``-q`` and no log file): no need to collect exchanges."""
        return self.quiet and self.path is None

    @property
    def dropped(self) -> int:
        """Lines (exchange lines and notes) a full or failing sink did not take, since the
        start, over every sink."""
        return self._lost + sum(s.dropped for s in self._sinks())

    @property
    def backlog(self) -> int:
        """Bytes the sinks have not taken yet (waiting for :meth:`flush`)."""
        return sum(len(s.backlog) for s in self._sinks())

    @property
    def file_errors(self) -> int:
        return self._file.errors if self._file is not None else 0

    def _sinks(self) -> list[Sink]:
        return [s for s in (self._out, self._file) if s is not None]

    def write(self, exchanges: list[Exchange]) -> None:
        if not exchanges or (self.quiet and self._file is None):
            return
        wall = time.time()
        text = "".join(self._format(ex, wall) for ex in exchanges)
        data = text.encode("utf-8", "backslashreplace")
        if not self.quiet:
            if self._out is not None:
                self._out.write(data)
            else:
                self.stream.write(text)
                self.stream.flush()
        if self._file is not None:
            self._file.write(data)
            self._report(self._file)

    def _report(self, file: Sink) -> None:
        if file.error is not None and not self._reported:
            self._reported = True
            self.note(f"cannot write the log file {self.path}: {file.error} "
                      "(further errors are not reported)", "error")

    def flush(self) -> None:
        """Send what the sinks hold back, as much as they take now (never waits)."""
        for sink in self._sinks():
            sink.flush()

    def reopen(self) -> None:
        """Open the log file afresh (after rotation); on failure the old one stays."""
        if self.path is None:
            return
        try:
            new = Sink.for_path(self.path)
        except OSError as exc:
            self.note(f"cannot reopen the log file, still writing the old one: {exc}")
            return
        old, self._file = self._file, new
        self._reported = False
        if old is not None:
            old.drain(0)
            self._lost += old.dropped
            old.close()

    def forked(self) -> None:
        """In a new worker process: what the parent held back is the parent's to send."""
        for sink in self._sinks():
            sink.backlog.clear()
            sink.dropped = 0
        self._lost = 0

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Give the sinks up to ``timeout`` seconds to take their backlog, then close."""
        for sink in self._sinks():
            sink.drain(timeout)
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._out is not None:
            self._out.close()
            self._out = None

    def note(self, message: str, event: str = "warning", **fields: object) -> None:
        """A line about the server itself (start, reload, errors); never silenced. With
        ``--log-format json`` a JSON object (:func:`note_line`): ``event`` one of
        :data:`NOTE_KEYS`, ``fields`` its keys."""
        line = note_line(self.fmt, message, event, fields)
        if self._out is not None:
            self._out.write(line.encode("utf-8", "backslashreplace"), note=True)
        else:
            self.stream.write(line)
            self.stream.flush()
