"""Running real SIP peers (SIPp, sipsak) against the console script, and reading their files.

* :func:`tool` finds a peer on PATH; a missing one skips the test with the apt package to
  install, or fails it when ``CI`` is set (CI installs both from apt).
* :func:`run_sipp` runs one SIPp scenario from ``sipp/`` against a
  :class:`~support.ResponderProcess` (127.0.0.1 only, free local ports), with the error,
  statistics, screen and message traces in the test's ``tmp_path``; it fails unless SIPp
  exits 0 and its ``-trace_stat`` file says every call succeeded and none failed.
* :func:`sipp_stats`, :func:`sipp_messages`, :func:`sipp_rtt` read those files back.
* :class:`Traced`: one SIP message a peer sent or received, as its trace shows it (SIPp's
  ``-trace_msg`` file, baresip's ``-s`` trace, liblinphone's log).
* :class:`PeerProcess`: a peer program run as our child (baresip, linphonec, twinkle): its
  output read by a thread, every wait on it bounded, and its stop (quit, else kill).
* :class:`ResponderAdmin`: the responder's ``--admin`` API as the call tests read it (the
  media facts of ``GET /journal``).
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import IO

import pytest
from support import (
    Message,
    ResponderProcess,
    free_udp_and_tcp_port,
    free_udp_port,
    parse_message,
)

SCENARIOS = Path(__file__).resolve().parent / "sipp"
CALLS = 100
RATE = 200  # calls per second: 100 calls take about half a second
LIMIT = 50  # simultaneous calls


def tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not on PATH (Debian: apt-get install {package})"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must install it")
        pytest.skip(message)
    return found


# --------------------------------------------------------------------------- SIPp files


def sipp_stats(path: Path) -> dict[str, str]:
    """The last (cumulative) row of SIPp's ';'-separated statistics file."""
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    assert len(lines) >= 2, f"{path}: no statistics rows:\n{path.read_text()}"
    header = lines[0].rstrip(";").split(";")
    row = lines[-1].rstrip(";").split(";")
    return dict(zip(header, row, strict=False))


def sipp_duration_ms(value: str) -> float:
    """A duration column of the statistics file (``HH:MM:SS:USEC``) in milliseconds."""
    hours, minutes, seconds, micros = (int(part) for part in value.split(":"))
    return ((hours * 60 + minutes) * 60 + seconds) * 1000.0 + micros / 1000.0


@dataclass(frozen=True)
class Traced:
    """One SIP message a peer sent or received, as its trace or log shows it."""

    sent: bool  # True: the peer sent it; False: the peer received it
    text: str
    stamp: datetime | None = None  # when, where the trace says (SIPp's -trace_msg does)

    @property
    def direction(self) -> str:
        return "sent" if self.sent else "received"

    @property
    def at(self) -> datetime:
        assert self.stamp is not None, f"this trace has no times: {self.first_line!r}"
        return self.stamp

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
        return self.text.replace("\r\n", "\n").partition("\n\n")[2]

    def matches(self, sent: bool, first_line: str, cseq: str | None = None,
                body: str | None = None) -> bool:
        """Sent (``sent``) or received by the peer, its first line starting with
        ``first_line``, its CSeq ``cseq`` (if given), ``body`` in its body (if given)."""
        return (self.sent == sent and self.first_line.startswith(first_line)
                and (cseq is None or self.cseq == cseq) and (body is None or body in self.body))

    @staticmethod
    def missing(peer: str, sent: bool, first_line: str, cseq: str | None, body: str | None,
                timeout: float) -> str:
        """The start of the message of a failed wait for a match (:meth:`matches`)."""
        return (f"{peer} {'sent' if sent else 'received'} no {first_line!r}"
                f"{f' (CSeq {cseq})' if cseq else ''}{f' with {body!r}' if body else ''} "
                f"in {timeout} s")

    @cached_property
    def message(self) -> Message:
        return parse_message(self.text.encode("latin-1", "replace"))


_TRACE_HEAD = re.compile(r"^-+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\s*$", re.MULTILINE)


def sipp_trace(path: Path) -> list[Traced]:
    """Every message of SIPp's -trace_msg file, in file order, with its timestamp."""
    text = path.read_text(errors="replace")
    heads = list(_TRACE_HEAD.finditer(text))
    out = []
    for head, following in zip(heads, [*heads[1:], None], strict=True):
        block = text[head.end() : following.start() if following else len(text)]
        title, _, body = block.lstrip("\n").partition("\n\n")
        if "message sent" not in title and "message received" not in title:
            continue
        raw = body.strip("\n").replace("\r\n", "\n").replace("\n", "\r\n") + "\r\n\r\n"
        at = datetime.strptime(head.group(1), "%Y-%m-%d %H:%M:%S.%f")
        traced = Traced("message sent" in title, raw, at)
        out.append(traced)
        assert isinstance(traced.message, Message)  # parsed (and kept) now: not SIP fails here
    return out


def sipp_messages(path: Path) -> list[tuple[str, Message]]:
    """(``sent``/``received``, message) from SIPp's -trace_msg file."""
    return [(t.direction, t.message) for t in sipp_trace(path)]


def sipp_rtt(directory: Path) -> list[tuple[int, float]]:
    """(rtd number, response time in ms) rows of the -trace_rtt file SIPp wrote in
    ``directory`` (``<scenario>_<pid>_rtt.csv``, header ``Date_ms;response_time_ms;rtd_no``)."""
    files = sorted(directory.glob("*_rtt.csv"))
    assert len(files) == 1, f"expected one -trace_rtt file in {directory}, found {files}"
    rows = []
    for line in files[0].read_text(errors="replace").splitlines()[1:]:
        fields = line.strip().rstrip(";").split(";")
        if len(fields) >= 3 and fields[1]:
            rows.append((int(fields[2]), float(fields[1])))
    return rows


# --------------------------------------------------------------------------- running SIPp


@dataclass
class SippRun:
    stats: dict[str, str]
    directory: Path
    seconds: float  # wall-clock time of the SIPp process

    @property
    def message_file(self) -> Path:
        return self.directory / "messages.log"


def run_sipp(
    scenario: str,
    server: ResponderProcess,
    tmp_path: Path,
    *,
    calls: int = CALLS,
    rate: int = RATE,
    limit: int = LIMIT,
    extra: Sequence[str] = (),
    timeout: float = 90,
    scheme: str = "udp",
) -> SippRun:
    """Run ``sipp/SCENARIO`` for ``calls`` calls; fail unless all of them succeed.
    ``scheme``: the responder's listener to call (``tcp``/``tls`` with SIPp's ``-t t1``,
    ``-t tn`` or ``-t l1`` in ``extra``)."""
    sipp = tool("sipp", "sip-tester")
    host, port = server.listener(scheme)
    stat_file = tmp_path / "stat.csv"
    error_file = tmp_path / "errors.log"
    screen_file = tmp_path / "screen.log"
    argv = [
        sipp, f"{host}:{port}",
        "-sf", str(SCENARIOS / scenario),
        "-m", str(calls), "-r", str(rate), "-l", str(limit),
        "-i", "127.0.0.1", "-p", str(free_udp_and_tcp_port()), "-mp", str(free_udp_port()),
        "-timeout", "60s", "-timeout_error", "-nostdin",
        "-trace_err", "-error_file", str(error_file),
        "-trace_stat", "-stf", str(stat_file),
        "-trace_screen", "-screen_file", str(screen_file),
        "-trace_msg", "-message_file", str(tmp_path / "messages.log"),
        *extra,
    ]
    started = time.monotonic()
    result = subprocess.run(
        argv, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=timeout, check=False,
    )
    seconds = time.monotonic() - started
    errors = error_file.read_text(errors="replace") if error_file.exists() else ""
    context = (
        f"argv: {argv}\nexit: {result.returncode} after {seconds:.1f} s\n"
        f"stdout tail:\n{result.stdout[-3000:]}\n"
        f"stderr:\n{result.stderr[-2000:]}\nerrors.log:\n{errors[:3000]}\n"
        f"responder stderr:\n{server.stderr_text()}"
    )
    assert result.returncode == 0, context
    assert stat_file.exists(), f"SIPp wrote no statistics file\n{context}"
    stats = sipp_stats(stat_file)
    assert stats.get("FailedCall(C)") == "0", f"{stats.get('FailedCall(C)')} failed\n{context}"
    assert stats.get("SuccessfulCall(C)") == str(calls), context
    return SippRun(stats, tmp_path, seconds)


# --------------------------------------------------------------------------- peer processes


class PeerProcess:
    """A peer program run as our child, stdout and stderr together in :attr:`output` (its
    complete lines also in :attr:`lines`), read by a thread that notifies :attr:`cond`;
    every wait is bounded. A subclass starts it with :meth:`start` and may :meth:`quit` it."""

    name = "peer"

    def __init__(self) -> None:
        self.output = ""
        self.lines: list[str] = []
        self.eof = False  # its output ended (it exited)
        self.cond = threading.Condition()
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def start(self, argv: list[str], cwd: Path, env: dict[str, str] | None = None,
              stdin: int = subprocess.PIPE) -> subprocess.Popen[bytes]:
        self._proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, cwd=cwd, env=env)
        assert self._proc.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self._proc.stdout,),
                                        daemon=True)
        self._reader.start()
        return self._proc

    def quit(self, proc: subprocess.Popen[bytes]) -> bool:
        """Ask the running peer to exit; False: it cannot be asked (it is killed at once)."""
        return False

    def close(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                if self.quit(proc):
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

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def send_line(self, text: str) -> None:
        """Type one line on its stdin."""
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(text.encode() + b"\n")
        self._proc.stdin.flush()

    def wait_for(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until ``done()`` holds, tested on every output."""
        with self.cond:
            return self.cond.wait_for(done, timeout)

    def wait_output(self, pattern: str, timeout: float = 10.0, after: int = 0) -> re.Match[str]:
        """The first match of the regex ``pattern`` in the output from offset ``after``."""
        regex = re.compile(pattern)
        with self.cond:
            self.cond.wait_for(lambda: self.eof or regex.search(self.output, after) is not None,
                               timeout)
            found = regex.search(self.output, after)
            assert found is not None, (
                f"{self.name} never printed {pattern!r} within {timeout} s (exit status "
                f"{self.returncode}); output:\n{self.output[-3000:]}")
            return found

    def _read(self, stream: IO[bytes]) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        rest = ""
        fd = stream.fileno()
        try:
            while True:
                chunk = os.read(fd, 65536)
                text = decoder.decode(chunk, final=not chunk)
                with self.cond:
                    self.output += text
                    *complete, rest = (rest + text).split("\n")
                    if not chunk and rest:
                        complete.append(rest)
                    self.lines.extend(line.rstrip("\r") for line in complete)
                    self.cond.notify_all()
                if not chunk:
                    return
        finally:
            with self.cond:
                self.eof = True
                self.cond.notify_all()


# --------------------------------------------------------------------------- the admin API


MEDIA_ON = re.compile(r"media on udp://127\.0\.0\.1:(\d+)")
ADMIN_ON = re.compile(r"admin on (http://127\.0\.0\.1:\d+)")


class ResponderAdmin:
    """The responder (started with ``--admin``) as the call tests see it: the address a peer
    dials, its media port, and a call's facts from ``GET /journal`` (of one call when
    :attr:`call_id` is set, else of the only one)."""

    def __init__(self, process: ResponderProcess) -> None:
        self.process = process
        self.admin = process.wait_for_stderr(ADMIN_ON).group(1)
        self.media_port = int(process.wait_for_stderr(MEDIA_ON).group(1))
        host, port = process.address
        self.uri = f"sip:bob@{host}:{port}"
        self.call_id: str | None = None

    def journal(self) -> list[dict[str, object]]:
        query = "" if self.call_id is None else f"?call_id={self.call_id}"
        with urllib.request.urlopen(f"{self.admin}/journal{query}", timeout=5) as resp:
            entries: list[dict[str, object]] = json.load(resp)["entries"]
        return entries

    def media(self) -> dict[str, object]:
        """The call's media facts (on its initial INVITE's entry)."""
        facts = [e["media"] for e in self.journal() if e["media"] is not None]
        assert len(facts) == 1, f"one INVITE with media expected: {self.journal()}"
        media = facts[0]
        assert isinstance(media, dict)
        return media

    def wait_media(self, wanted: Callable[[dict[str, object]], bool], what: str,
                   timeout: float = 5.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while True:
            media = self.media()
            if wanted(media):
                return media
            assert time.monotonic() < deadline, f"{what} within {timeout} s; media: {media}"
            time.sleep(0.05)  # polling GET /journal: the media socket has no event to wait on


def count(media: dict[str, object], key: str) -> int:
    """A counter of the media facts (``packets_in`` ...)."""
    value = media[key]
    assert isinstance(value, int)
    return value
