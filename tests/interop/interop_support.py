"""Running real SIP peers (SIPp, sipsak) against the console script, and reading their files.

* :func:`tool` finds a peer on PATH; a missing one skips the test with the apt package to
  install, or fails it when ``CI`` is set (CI installs both from apt).
* :func:`run_sipp` runs one SIPp scenario from ``sipp/`` against a
  :class:`~support.ResponderProcess` (127.0.0.1 only, free local ports), with the error,
  statistics, screen and message traces in the test's ``tmp_path``; it fails unless SIPp
  exits 0 and its ``-trace_stat`` file says every call succeeded and none failed.
* :func:`sipp_stats`, :func:`sipp_messages`, :func:`sipp_rtt` read those files back.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from support import Message, ResponderProcess, free_udp_port, parse_message

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
    """One message of SIPp's -trace_msg file: when SIPp sent or received it, and what."""

    at: datetime
    direction: str  # "sent" or "received"
    message: Message


_TRACE_HEAD = re.compile(r"^-+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\s*$", re.MULTILINE)


def sipp_trace(path: Path) -> list[Traced]:
    """Every message of SIPp's -trace_msg file, in file order, with its timestamp."""
    text = path.read_text(errors="replace")
    heads = list(_TRACE_HEAD.finditer(text))
    out = []
    for head, following in zip(heads, [*heads[1:], None], strict=True):
        block = text[head.end() : following.start() if following else len(text)]
        title, _, body = block.lstrip("\n").partition("\n\n")
        if "message sent" in title:
            direction = "sent"
        elif "message received" in title:
            direction = "received"
        else:
            continue
        raw = body.strip("\n").replace("\r\n", "\n").replace("\n", "\r\n") + "\r\n\r\n"
        at = datetime.strptime(head.group(1), "%Y-%m-%d %H:%M:%S.%f")
        out.append(Traced(at, direction, parse_message(raw.encode("latin-1", "replace"))))
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
) -> SippRun:
    """Run ``sipp/SCENARIO`` for ``calls`` calls; fail unless all of them succeed."""
    sipp = tool("sipp", "sip-tester")
    host, port = server.address
    stat_file = tmp_path / "stat.csv"
    error_file = tmp_path / "errors.log"
    screen_file = tmp_path / "screen.log"
    argv = [
        sipp, f"{host}:{port}",
        "-sf", str(SCENARIOS / scenario),
        "-m", str(calls), "-r", str(rate), "-l", str(limit),
        "-i", "127.0.0.1", "-p", str(free_udp_port()), "-mp", str(free_udp_port()),
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
