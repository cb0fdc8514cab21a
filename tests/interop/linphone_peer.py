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

import math
import os
import re
import struct
import subprocess
import time
import wave
from pathlib import Path

from interop_support import PeerProcess, Traced, tool
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


_HEAD_END = re.compile(r"\r?\n\r?\n")
_LENGTH = re.compile(r"^(?:Content-Length|l)[ \t]*:[ \t]*(\d+)", re.MULTILINE | re.IGNORECASE)


def split_messages(text: str) -> list[str]:
    """The SIP messages of one logged read, by Content-Length: a read from a stream (TCP,
    TLS) may hold several (100, 180 and 200 in one), a datagram holds one."""
    out = []
    rest = text
    while rest.strip():
        end = _HEAD_END.search(rest)
        length = _LENGTH.search(rest, 0, end.start()) if end else None
        if end is None or length is None:
            out.append(rest)
            break
        # The body's size as sent; the log file is read with LF line ends (CRLF on the wire).
        cut = end.end()
        size = int(length.group(1))
        while size > 0 and cut < len(rest):
            size -= 2 if rest[cut] == "\n" and rest[cut - 1] != "\r" else 1
            cut += 1
        out.append(rest[:cut])
        rest = rest[cut:]
    return out


class Linphone(PeerProcess):
    """One linphonec process, identity ``sip:alice@127.0.0.1``, no proxy, no registration.

    ``delayed_offer``: ``[sip] sdp_200_ack=1`` (INVITE without SDP, the answer in the ACK).
    ``nortp_timeout``: seconds without RTP before linphone hangs up.
    ``streams``: open TCP and TLS too (random local ports), for ``;transport=tcp|tls``
    targets: belle-sip connects out only over a transport it has a listening point for.
    ``root_ca``: the CA file its TLS client trusts (``[sip] root_ca``; server certificates
    are verified, name included: ``verify_server_certs``/``verify_server_cn``).
    """

    def __init__(self, directory: Path, *, delayed_offer: bool = False,
                 nortp_timeout: int = 5, streams: bool = False,
                 root_ca: Path | None = None) -> None:
        super().__init__()
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
            # 0: no TCP, no TLS; -1: a random port
            f"sip_tcp_port={-1 if streams else 0}",
            f"sip_tls_port={-1 if streams else 0}",
            *([f"root_ca={root_ca}", "verify_server_certs=1", "verify_server_cn=1"]
              if root_ca is not None else []),
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

    # --- life cycle -------------------------------------------------------------------
    def __enter__(self) -> Linphone:
        env = {**os.environ, "HOME": str(self.directory)}
        self.start([self.binary, "-c", str(self.config), "-d", "6", "-l", str(self.log)],
                   self.directory, env)
        try:
            # Its last line at start (readline prints the prompt only with the next line).
            self.wait_line(r"video is disabled in linphonec", START_TIMEOUT)
            self.command("soundcard use files", r"Using wav files instead of soundcard")
            self.command(f"play {self.tone}")
        except BaseException:
            self.close()
            raise
        return self

    def quit(self, proc: subprocess.Popen[bytes]) -> bool:
        if proc.stdin is None:
            return False
        self.send_line("quit")
        return True

    # --- commands and output ------------------------------------------------------------
    def command(self, text: str, expect: str | None = None,
                timeout: float = 10.0) -> re.Match[str] | None:
        """Send one command line; with ``expect``, wait for a line after it that matches."""
        mark = self.mark()
        self.send_line(text)
        return self.wait_line(expect, timeout, after=mark) if expect is not None else None

    def mark(self) -> int:
        """The index of the next output line (for :meth:`wait_line`'s ``after``)."""
        with self.cond:
            return len(self.lines)

    def wait_line(self, pattern: str, timeout: float = 10.0, after: int = 0) -> re.Match[str]:
        """The first line (at index ``after`` or later) where ``pattern`` is found."""
        regex = re.compile(pattern)

        def found() -> re.Match[str] | None:
            return next((m for line in self.lines[after:] if (m := regex.search(line))), None)

        with self.cond:
            self.cond.wait_for(lambda: found() is not None or self.eof, timeout)
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
            return self.eof or any(regex.search(line) for line in self.lines[after:])

        with self.cond:
            appeared = self.cond.wait_for(found, seconds)
        assert not appeared, (f"linphonec printed {pattern!r} (or exited) within {seconds} s:\n"
                              + self.tail())

    def seen(self, pattern: str, after: int = 0) -> list[str]:
        """The lines (at index ``after`` or later) where ``pattern`` is found, now."""
        regex = re.compile(pattern)
        with self.cond:
            return [line for line in self.lines[after:] if regex.search(line)]

    def sip(self) -> list[Traced]:
        """Every SIP message in liblinphone's log so far, in order."""
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [Traced(what.startswith("message sent"), message)
                for what, body in _LOGGED.findall(text) for message in split_messages(body)]

    def wait_sip(self, sent: bool, first_line: str, cseq: str | None = None,
                 body: str | None = None, timeout: float = 5.0, after: int = 0) -> Traced:
        """The first logged message (index ``after`` or later in :meth:`sip`) linphone sent
        (``sent``) or received whose first line starts with ``first_line``, with that CSeq
        (if given) and ``body`` in its body."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((m for m in self.sip()[after:]
                          if m.matches(sent, first_line, cseq, body)), None)
            if found is not None:
                return found
            assert time.monotonic() < deadline, (
                Traced.missing("linphone", sent, first_line, cseq, body, timeout)
                + f" (its log, {self.log}, has "
                f"{[(m.sent, m.first_line, m.cseq) for m in self.sip()]})")
            time.sleep(0.05)  # the log file has no event to wait on (it is written in bursts)

    def tail(self, count: int = 60) -> str:
        with self.cond:
            return "\n".join(self.lines[-count:])

