"""One line per exchange (SPEC §7), text or JSON, written straight to a stream.

No ``logging`` on the hot path: a line is formatted with plain string
operations and written with one call.
"""

from __future__ import annotations

import json
import time
from typing import BinaryIO, TextIO

from responder.core.effects import Exchange


def _addr(addr: tuple[str, int]) -> str:
    host, port = addr
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
    """``12:00:01.234 192.0.2.10:5062 INVITE sip:1000@lab -> 486 Busy Here [rule busy-1000]``"""
    answer = "drop" if ex.status is None else f"{ex.status} {ex.reason}"
    extra = " (retransmission)" if ex.retransmission else ""
    if ex.repeat:
        extra += f" (repeat {ex.repeat})"
    return (f"{_clock(wall)} {_addr(ex.source)} {ex.method} {ex.uri} -> {answer} "
            f"[rule {ex.rule}]{extra}\n")


def json_line(ex: Exchange, wall: float) -> str:
    """The same facts as :func:`text_line`, as one JSON object."""
    return json.dumps({
        "time": round(wall, 3),
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
    }, ensure_ascii=False) + "\n"


class ExchangeLog:
    """Writes exchange lines to ``stream`` (not when ``quiet``) and to ``path`` if given.

    The file (``--log-file``) is opened for appending and written unbuffered, one
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
        self.file_errors = 0
        self._format = json_line if fmt == "json" else text_line
        self._file: BinaryIO | None = _open_append(path) if path is not None else None

    @property
    def silent(self) -> bool:
        """Nothing is ever written (``-q`` and no log file): no need to collect exchanges."""
        return self.quiet and self.path is None

    def write(self, exchanges: list[Exchange]) -> None:
        if not exchanges or (self.quiet and self._file is None):
            return
        wall = time.time()
        text = "".join(self._format(ex, wall) for ex in exchanges)
        if not self.quiet:
            self.stream.write(text)
            self.stream.flush()
        if self._file is not None:
            self._append(self._file, text.encode("utf-8", "surrogateescape"))

    def _append(self, file: BinaryIO, data: bytes) -> None:
        try:
            while data:
                written = file.write(data)
                data = data[written:] if written else b""
        except OSError as exc:
            self.file_errors += 1
            if self.file_errors == 1:
                self.note(f"cannot write the log file {self.path}: {exc} "
                          "(further errors are not reported)")

    def reopen(self) -> None:
        """Open the log file afresh (after rotation); on failure the old one stays."""
        if self.path is None:
            return
        try:
            new = _open_append(self.path)
        except OSError as exc:
            self.note(f"cannot reopen the log file, still writing the old one: {exc}")
            return
        old, self._file = self._file, new
        self.file_errors = 0
        if old is not None:
            old.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def note(self, message: str) -> None:
        """A line about the server itself (start, reload, errors); never silenced."""
        self.stream.write(f"sip-responder: {message}\n")
        self.stream.flush()


def _open_append(path: str) -> BinaryIO:
    return open(path, "ab", buffering=0)  # kept open until close()
