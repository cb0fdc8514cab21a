"""linphonec (Debian ``linphone-cli``, liblinphone 5.1), driven headless over its stdin.

>>> with Linphone(tmp_path) as phone:
...     phone.command("call sip:bob@127.0.0.1:5060", r"Call \\d+ .* connected")
...     phone.wait_line(r"Media streams established")   # the call's StreamsRunning

What makes it run headless on loopback (found the hard way):

* ``HOME`` is the test's directory and ``$HOME/.local/share/linphone`` must exist: when its
  SQLite database cannot be opened, ``linphone_core_start`` fails quietly and the SIP
  transports are never opened ("No listening point matching for [udp://...]").
* ``soundcard use files`` replaces the (absent) sound card; the caller then sends RTP only
  while a file plays, so ``play FILE.wav`` comes before ``call`` (a 440 Hz tone, written
  here, longer than any call of the tests).
* ``[rtp] nortp_timeout``: linphone hangs up ("ended (IO error)") when no RTP arrived for
  that many seconds; a short one shows that our echo is what keeps the call up.

Commands and the lines linphonec prints for them (with or without its ``linphonec> `` prompt
in front) are matched by regular expressions; every wait is bounded. All output (its log
lines at ``-d 1`` included) is kept in :attr:`lines`.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import struct
import subprocess
import threading
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from interop_support import tool
from support import free_udp_port

START_TIMEOUT = 10.0
TONE_SECONDS = 40  # longer than any call: the file player does not loop


def write_tone(path: Path, seconds: int = TONE_SECONDS, rate: int = 8000) -> None:
    """A mono 16-bit 440 Hz sine, the audio the caller sends."""
    period = [struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
              for i in range(rate // 40)]  # 440 Hz repeats exactly every 1/40 s at 8 kHz
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(period) * (40 * seconds))


# belle-sip logs each SIP message after one of these lines, up to the next timestamped line.
_LOGGED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d:\d{3} belle-sip-message-channel \[\w+\]: "
                     r"(message sent to|received \[\d+\] new bytes from) .*\n"
                     r"((?:(?!\d{4}-\d\d-\d\d \d\d:\d\d:\d\d:\d{3} ).*\n)*)", re.MULTILINE)


@dataclass(frozen=True)
class Traced:
    """One SIP message from liblinphone's log."""

    sent: bool  # True: linphone sent it; False: linphone received it
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    @property
    def cseq(self) -> str:
        found = re.search(r"^CSeq:\s*(.+?)\s*$", self.text, re.MULTILINE | re.IGNORECASE)
        return found.group(1) if found else ""

    @property
    def content_length(self) -> int:
        found = re.search(r"^Content-Length:\s*(\d+)", self.text, re.MULTILINE | re.IGNORECASE)
        return int(found.group(1)) if found else 0

    @property
    def body(self) -> str:
        return self.text.replace("\r\n", "\n").partition("\n\n")[2].strip()


class Linphone:
    """One linphonec process, identity ``sip:alice@127.0.0.1``, no proxy, no registration.

    ``delayed_offer``: ``[sip] sdp_200_ack=1`` (INVITE without SDP, the answer in the ACK).
    ``nortp_timeout``: seconds without RTP before linphone hangs up.
    """

    def __init__(self, directory: Path, *, delayed_offer: bool = False,
                 nortp_timeout: int = 5) -> None:
        self.binary = tool("linphonec", "linphone-cli")
        self.directory = directory
        self.sip_port = free_udp_port()
        (directory / ".local" / "share" / "linphone").mkdir(parents=True, exist_ok=True)
        self.tone = directory / "tone.wav"
        write_tone(self.tone)
        self.config = directory / "linphonerc"
        self.log = directory / "linphonec.log"  # liblinphone's own log, SIP messages included
        self.config.write_text("\n".join([
            "[sip]",
            f"sip_port={self.sip_port}",
            "sip_tcp_port=0",  # 0: no TCP, no TLS (-1 would pick a random port)
            "sip_tls_port=0",
            "bind_address=127.0.0.1",
            "ipv6_migration_done=1",
            "use_ipv6=0",
            f'contact="alice" <sip:alice@127.0.0.1:{self.sip_port}>',
            "guess_hostname=0",
            "default_proxy=-1",
            f"sdp_200_ack={int(delayed_offer)}",
            "",
            "[rtp]",
            "bind_address=127.0.0.1",  # RTP on loopback, and the offer's c= says so
            "audio_rtp_port=20000-39999",  # a random port of the range, per call
            f"nortp_timeout={nortp_timeout}",
            "",
            "[sound]",
            "echocancellation=0",
            "",
            "[video]",
            "display=0",
            "capture=0",
            "automatically_initiate=0",
            "",
        ]))
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    # --- life cycle -------------------------------------------------------------------
    def __enter__(self) -> Linphone:
        env = {**os.environ, "HOME": str(self.directory)}
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.config), "-d", "6", "-l", str(self.log)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.directory, env=env)
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()
        try:
            # Its last line at start (readline prints the prompt only with the next line).
            self.wait_line(r"video is disabled in linphonec", START_TIMEOUT)
            self.command("soundcard use files", r"Using wav files instead of soundcard")
            self.command(f"play {self.tone}")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None and proc.stdin is not None:
            try:
                proc.stdin.write(b"quit\n")
                proc.stdin.flush()
                proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if proc.poll() is None:
            proc.kill()  # our own child, by its handle
            proc.wait(5)
        if self._reader is not None:
            self._reader.join(5)  # the process is gone: its stdout ends
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):  # stdin: a broken pipe on its last flush
                    stream.close()
        self._proc = None

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    # --- commands and output ------------------------------------------------------------
    def command(self, text: str, expect: str | None = None,
                timeout: float = 10.0) -> re.Match[str] | None:
        """Send one command line; with ``expect``, wait for a line after it that matches."""
        assert self._proc is not None and self._proc.stdin is not None
        with self._cond:
            mark = len(self.lines)
        self._proc.stdin.write(text.encode() + b"\n")
        self._proc.stdin.flush()
        return self.wait_line(expect, timeout, after=mark) if expect is not None else None

    def mark(self) -> int:
        """The index of the next output line (for :meth:`wait_line`'s ``after``)."""
        with self._cond:
            return len(self.lines)

    def wait_line(self, pattern: str, timeout: float = 10.0, after: int = 0) -> re.Match[str]:
        """The first line (at index ``after`` or later) where ``pattern`` is found."""
        regex = re.compile(pattern)

        def found() -> re.Match[str] | None:
            return next((m for line in self.lines[after:] if (m := regex.search(line))), None)

        with self._cond:
            self._cond.wait_for(lambda: found() is not None or self._eof, timeout)
            match = found()
        assert match is not None, (
            f"linphonec printed no line matching {pattern!r} within {timeout} s:\n"
            + self.tail())
        return match

    def wait_absent(self, pattern: str, seconds: float, after: int = 0) -> None:
        """Fail if a line matching ``pattern`` appears (index ``after`` or later) within
        ``seconds`` (or linphonec exits): a bounded wait for something that must not happen."""
        regex = re.compile(pattern)

        def found() -> bool:
            return self._eof or any(regex.search(line) for line in self.lines[after:])

        with self._cond:
            appeared = self._cond.wait_for(found, seconds)
        assert not appeared, (f"linphonec printed {pattern!r} (or exited) within {seconds} s:\n"
                              + self.tail())

    def seen(self, pattern: str, after: int = 0) -> list[str]:
        """The lines (at index ``after`` or later) where ``pattern`` is found, now."""
        regex = re.compile(pattern)
        with self._cond:
            return [line for line in self.lines[after:] if regex.search(line)]

    def sip(self) -> list[Traced]:
        """Every SIP message in liblinphone's log so far, in order."""
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [Traced(what.startswith("message sent"), body)
                for what, body in _LOGGED.findall(text)]

    def wait_sip(self, sent: bool, first_line: str, cseq: str | None = None,
                 body: str | None = None, timeout: float = 5.0, after: int = 0) -> Traced:
        """The first logged message (index ``after`` or later in :meth:`sip`) linphone sent
        (``sent``) or received whose first line starts with ``first_line``, with that CSeq
        (if given) and ``body`` in its body."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((m for m in self.sip()[after:] if m.sent == sent
                          and m.first_line.startswith(first_line)
                          and (cseq is None or m.cseq == cseq)
                          and (body is None or body in m.body)), None)
            if found is not None:
                return found
            assert time.monotonic() < deadline, (
                f"linphone {'sent' if sent else 'received'} no {first_line!r}"
                f"{f' (CSeq {cseq})' if cseq else ''}{f' with {body!r}' if body else ''} "
                f"in {timeout} s (its log, {self.log}, has "
                f"{[(m.sent, m.first_line, m.cseq) for m in self.sip()]})")
            time.sleep(0.05)  # the log file has no event to wait on (it is written in bursts)

    def tail(self, count: int = 60) -> str:
        with self._cond:
            return "\n".join(self.lines[-count:])

    _eof = False

    def _read_output(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        stream = self._proc.stdout
        try:
            for raw in iter(stream.readline, b""):
                with self._cond:
                    self.lines.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

