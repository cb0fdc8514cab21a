"""baresip, driven headless over its ``ctrl_tcp`` module (netstring-framed JSON).

>>> with Baresip(tmp_path) as phone:
...     phone.command("dial", "sip:bob@127.0.0.1:5060")
...     phone.wait_event("CALL_ESTABLISHED")

Commands and events are baresip's own (``ctrl_tcp``); the console output (its ``-v``-less
log, with the RTP statistics of ``rtcpsummary`` at hang-up) is kept in :attr:`output`.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from interop_support import tool

START_TIMEOUT = 10.0


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def netstring(data: bytes) -> bytes:
    return str(len(data)).encode() + b":" + data + b","


class Baresip:
    """One baresip process with one account (``sip:alice@127.0.0.1``, no registration)."""

    def __init__(self, directory: Path, *, modules: tuple[str, ...] = (),
                 extra: tuple[str, ...] = ()) -> None:
        self.binary = tool("baresip", "baresip")
        self.directory = directory
        self.sip_port = free_port(socket.SOCK_DGRAM)
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
        self.output = ""
        self._cond = threading.Condition()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._token = 0

    def __enter__(self) -> Baresip:
        self._proc = subprocess.Popen([self.binary, "-f", str(self.directory)],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, cwd=self.directory)
        threading.Thread(target=self._read_output, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                self._sock = socket.create_connection(("127.0.0.1", self.ctrl_port), 1.0)
                break
            except OSError:
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    self.close()
                    raise RuntimeError(f"baresip did not start:\n{self.output}") from None
                time.sleep(0.05)
        threading.Thread(target=self._read_ctrl, daemon=True).start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None and self._sock is not None:
            try:
                self._sock.sendall(netstring(json.dumps({"command": "quit"}).encode()))
                proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if proc.poll() is None:
            proc.kill()  # our own child, by its handle
            proc.wait(5)
        if self._sock is not None:
            self._sock.close()
        self._proc = None

    # --- commands and events -------------------------------------------------------------
    def command(self, name: str, params: str = "", timeout: float = 5.0) -> dict[str, Any]:
        assert self._sock is not None
        self._token += 1
        token = str(self._token)
        message = {"command": name, "params": params, "token": token}
        self._sock.sendall(netstring(json.dumps(message).encode()))
        with self._cond:
            found = self._cond.wait_for(
                lambda: any(r.get("token") == token for r in self.responses), timeout)
            assert found, f"baresip did not answer {name!r}:\n{self.output[-2000:]}"
            return next(r for r in self.responses if r.get("token") == token)

    def wait_event(self, kind: str, timeout: float = 10.0, after: int = 0) -> dict[str, Any]:
        """The first event of type ``kind`` (at index ``after`` or later)."""
        def found() -> dict[str, Any] | None:
            return next((e for e in self.events[after:] if e.get("type") == kind), None)

        with self._cond:
            self._cond.wait_for(lambda: found() is not None, timeout)
            event = found()
        assert event is not None, (
            f"no {kind} event from baresip in {timeout} s; events: "
            f"{[e.get('type') for e in self.events]}\n{self.output[-3000:]}")
        return event

    def wait_output(self, text: str, timeout: float = 10.0) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: text in self.output, timeout)
        assert ok, f"baresip never printed {text!r}:\n{self.output[-3000:]}"

    def _read_ctrl(self) -> None:
        assert self._sock is not None
        buf = b""
        while True:
            try:
                data = self._sock.recv(65536)
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
                with self._cond:
                    (self.events if message.get("event") else self.responses).append(message)
                    self._cond.notify_all()

    def _read_output(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for chunk in iter(lambda: self._proc.stdout.read1(65536)  # type: ignore[union-attr]
                          if self._proc and self._proc.stdout else b"", b""):
            with self._cond:
                self.output += chunk.decode("utf-8", "replace")
                self._cond.notify_all()
