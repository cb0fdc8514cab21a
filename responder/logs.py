"""One line per exchange (SPEC §7), text or JSON, written straight to a stream.

No ``logging`` on the hot path: a line is formatted with plain string
operations and written with one call.
"""

from __future__ import annotations

import json
import time
from typing import TextIO

from .engine import Exchange


def _addr(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _clock(wall: float) -> str:
    t = time.localtime(wall)
    return f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{int(wall * 1000) % 1000:03d}"


def text_line(ex: Exchange, wall: float) -> str:
    """``12:00:01.234 192.0.2.10:5062 INVITE sip:1000@lab -> 486 Busy Here [rule busy-1000]``"""
    answer = "drop" if ex.status is None else f"{ex.status} {ex.reason}"
    extra = " (retransmission)" if ex.retransmission else ""
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
        "delay": ex.delay,
        "retransmission": ex.retransmission,
    }, ensure_ascii=False) + "\n"


class ExchangeLog:
    """Writes exchange lines to ``stream`` (nothing when ``quiet``)."""

    def __init__(self, stream: TextIO, fmt: str = "text", quiet: bool = False) -> None:
        self.stream = stream
        self.quiet = quiet
        self._format = json_line if fmt == "json" else text_line

    def write(self, exchanges: list[Exchange]) -> None:
        if self.quiet or not exchanges:
            return
        wall = time.time()
        self.stream.write("".join(self._format(ex, wall) for ex in exchanges))
        self.stream.flush()

    def note(self, message: str) -> None:
        """A line about the server itself (start, reload, errors); never silenced."""
        self.stream.write(f"sip-responder: {message}\n")
        self.stream.flush()
