"""The call and RTP-echo benchmarks run (scripts/bench_calls.py, scripts/bench_rtp.py), in a
tiny smoke mode: a second or so of load per server.

The numbers are for the README and the closing notes, not assertions (a shared machine's
timings are not test results). What is asserted: the scripts build and start what they
need, both servers are measured side by side (SIPp missing skips cleanly, and fails under
CI=1, where it must be installed), every call is answered, echoes come back, and the table
is printed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
needs_tools = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("taskset") is None,
                                 reason="the benchmarks build C with gcc and pin with taskset")


def sipp_or_skip() -> bool:
    """Whether SIPp is here; absent: a skip, or a failure under CI=1."""
    if shutil.which("sipp") is not None:
        return True
    if os.environ.get("CI"):
        pytest.fail("sipp is not on PATH (Debian: apt-get install sip-tester); CI must install it")
    return False


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPTS / script), *args],
                          capture_output=True, text=True, timeout=60)


@needs_tools
def test_bench_calls_measures_responder_and_sipp_side_by_side(tmp_path: Path) -> None:
    out = tmp_path / "calls.json"
    done = run("bench_calls.py", "--rate", "100", "--duration", "0.5", "--warmup", "0",
               "--idle", "0.05", "--repeat", "1", "--json", str(out))
    if not sipp_or_skip():
        assert done.returncode == 3 and "sipp not installed" in done.stderr
        pytest.skip("sipp is not installed: bench_calls.py has no client")
    assert done.returncode == 0, done.stderr + done.stdout
    summary = {row["server"]: row for row in json.loads(out.read_text())["summary"]}
    assert set(summary) == {"responder", "sipp"}
    for row in summary.values():
        assert row["failed"] == 0 and row["calls_per_cpu_s"] > 0
    assert summary["responder"]["vs_sipp"] is not None
    assert "calls/CPU-s" in done.stdout and "vs sipp" in done.stdout


@needs_tools
def test_bench_rtp_echoes_at_both_servers_and_the_big_run(tmp_path: Path) -> None:
    out = tmp_path / "rtp.json"
    done = run("bench_rtp.py", "--streams", "20", "--big", "40", "--duration", "0.5",
               "--warmup", "0.2", "--grace", "0.2", "--repeat", "1", "--json", str(out),
               "--cache-dir", str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr + done.stdout
    report = json.loads(out.read_text())
    rows = {(row["server"], row["streams"]): row for row in report["summary"]}
    expected = {("responder", 20), ("responder", 40)}
    if sipp_or_skip():
        expected.add(("sipp", 20))
        assert rows[("responder", 20)]["vs_sipp"] is not None
    else:
        assert any("sipp: skipped" in note for note in report["notes"])
    assert set(rows) == expected
    for row in rows.values():
        assert row["echoed_per_s"] > 0 and row["per_cpu_s"] > 0
    assert "pkt/CPU-s" in done.stdout and "loss %" in done.stdout
    if len(expected) == 2:
        pytest.skip("sipp is not installed: only the responder was measured")
