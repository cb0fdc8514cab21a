"""baresip, driven headless over its ``ctrl_tcp`` module (netstring-framed JSON).

>>> with Baresip(tmp_path) as phone:
...     phone.command("dial", "sip:bob@127.0.0.1:5060")
...     phone.wait_event("CALL_ESTABLISHED")

Commands and events are baresip's own (``ctrl_tcp``); the console output (its ``-v``-less
log, with the RTP statistics of ``rtcpsummary`` at hang-up) is kept in :attr:`output`.
baresip runs with ``-s`` (SIP trace): every message it sends or receives is in that output
too, and :meth:`Baresip.sip` / :meth:`Baresip.wait_sip` read them back.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from interop_support import PeerProcess, Traced, tool

START_TIMEOUT = 10.0


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# One traced message: "\x1b[36;1m#\nUDP SRC -> DST\n<message>\x1b[;m" (colours around it);
# TCP, TLS, WS, WSS in place of UDP on the streams. (On a stream baresip opened, its side is
# the connection's port, not sip_port: Traced.sent is then False both ways.)
_TRACE = re.compile(r"#\r?\n(?:UDP|TCP|TLS|WSS?) (\S+) -> (\S+)\r?\n(.*?)\x1b\[;m", re.DOTALL)


def free_sip_port() -> int:
    """A port P where UDP P, TCP P and TCP P+1 were free a moment ago: baresip 1.0 listens
    on all three (SIP over UDP, TCP, and TLS on the next port) and fails to start if any
    is taken."""
    for _ in range(100):
        port = free_port(socket.SOCK_DGRAM)
        try:
            with socket.socket() as tcp, socket.socket() as tls:
                tcp.bind(("127.0.0.1", port))
                tls.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port P with P+1 free too for baresip")


def netstring(data: bytes) -> bytes:
    return str(len(data)).encode() + b":" + data + b","


class Baresip(PeerProcess):
    """One baresip process with one account (``sip:alice@127.0.0.1``, no registration)."""

    name = "baresip"

    def __init__(self, directory: Path, *, modules: tuple[str, ...] = (),
                 extra: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.binary = tool("baresip", "baresip")
        self.directory = directory
        self.sip_port = free_sip_port()
        self.ctrl_port = free_port()
        directory.mkdir(parents=True, exist_ok=True)
        lines = [
            "poll_method epoll",
            f"sip_listen 127.0.0.1:{self.sip_port}",
            f"audio_player aufile,{directory / 'heard.wav'}",
            # The headless source needs 48 kHz stereo, else the call ends as media starts.
            "audio_source ausine,440",
            "audio_alert aufile,/dev/null",
            "ausrc_srate 48000",
            "ausrc_channels 2",
            "rtp_stats yes",
            "module_path /usr/lib/baresip/modules",
            *(f"module {m}.so" for m in ("ctrl_tcp", "g711", "ausine", "aufile", "account",
                                         "menu", "rtcpsummary", *modules)),
            f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}",
            *extra,
        ]
        (directory / "config").write_text("\n".join(lines) + "\n")
        (directory / "accounts").write_text(
            "<sip:alice@127.0.0.1>;regint=0;answermode=manual\n")
        self.events: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []
        self._sock: socket.socket | None = None
        self._token = 0

    def __enter__(self) -> Baresip:
        proc = self.start([self.binary, "-s", "-f", str(self.directory)], self.directory,
                          stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                self._sock = socket.create_connection(("127.0.0.1", self.ctrl_port), 1.0)
                self._sock.settimeout(None)  # else the reader stops after 1 s without events
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    self.close()
                    raise RuntimeError(f"baresip did not start:\n{self.output}") from None
                time.sleep(0.05)
        threading.Thread(target=self._read_ctrl, args=(self._sock,), daemon=True).start()
        return self

    def quit(self, proc: subprocess.Popen[bytes]) -> bool:
        if self._sock is None:
            return False
        self._sock.sendall(netstring(json.dumps({"command": "quit"}).encode()))
        return True

    def close(self) -> None:
        super().close()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # --- commands and events -------------------------------------------------------------
    def command(self, name: str, params: str = "", timeout: float = 5.0) -> dict[str, Any]:
        assert self._sock is not None
        self._token += 1
        token = str(self._token)
        message = {"command": name, "params": params, "token": token}
        self._sock.sendall(netstring(json.dumps(message).encode()))
        with self.cond:
            found = self.cond.wait_for(
                lambda: any(r.get("token") == token for r in self.responses), timeout)
            assert found, f"baresip did not answer {name!r}:\n{self.output[-2000:]}"
            return next(r for r in self.responses if r.get("token") == token)

    def wait_event(self, kind: str, timeout: float = 10.0, after: int = 0) -> dict[str, Any]:
        """The first event of type ``kind`` (at index ``after`` or later)."""
        def found() -> dict[str, Any] | None:
            return next((e for e in self.events[after:] if e.get("type") == kind), None)

        with self.cond:
            self.cond.wait_for(lambda: found() is not None, timeout)
            event = found()
        assert event is not None, (
            f"no {kind} event from baresip in {timeout} s; events: "
            f"{[e.get('type') for e in self.events]}\n{self.output[-3000:]}")
        return event

    def wait_until(self, done: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        """Wait (bounded) until ``done()`` holds; it is tested on every event and output."""
        assert self.wait_for(done, timeout), (f"{what}: not within {timeout} s; events: "
                    f"{[(e.get('type'), e.get('param')) for e in self.events]}"
                    f"\n{self.output[-3000:]}")

    def sip(self) -> list[Traced]:
        """Every SIP message traced so far, in order."""
        with self.cond:
            text = self.output
        return [Traced(source.endswith(f":{self.sip_port}"), body)
                for source, _, body in _TRACE.findall(text)]

    def wait_sip(self, sent: bool, first_line: str, cseq: str | None = None,
                 body: str | None = None, timeout: float = 5.0, after: int = 0) -> Traced:
        """The first traced message (index ``after`` or later in :meth:`sip`) baresip sent
        (``sent``) or received, whose first line starts with ``first_line``, whose CSeq is
        ``cseq`` (if given) and whose body contains ``body`` (if given)."""
        def found() -> Traced | None:
            return next((m for m in self.sip()[after:]
                         if m.matches(sent, first_line, cseq, body)), None)

        with self.cond:
            self.cond.wait_for(lambda: found() is not None, timeout)
        message = found()
        assert message is not None, (
            Traced.missing("baresip", sent, first_line, cseq, body, timeout)
            + f"; traced: {[(m.sent, m.first_line, m.cseq) for m in self.sip()]}"
            f"\n{self.output[-3000:]}")
        return message

    def _read_ctrl(self, sock: socket.socket) -> None:
        """Events and command responses, until the connection ends. ``sock`` is given, not
        read from ``self._sock``: close() sets that to None while this thread may read."""
        buf = b""
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            while b":" in buf:
                size, _, rest = buf.partition(b":")
                if not size.isdigit() or len(rest) < int(size) + 1:
                    break
                message = json.loads(rest[: int(size)])
                buf = rest[int(size) + 1:]
                with self.cond:
                    (self.events if message.get("event") else self.responses).append(message)
                    self.cond.notify_all()
