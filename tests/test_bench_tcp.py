"""The TCP benchmarks run (scripts/bench_tcp.py, scripts/bench_idle.py), in a tiny smoke mode.

The numbers are for the README and the closing notes, not assertions (a shared machine's
timings are not test results). What is asserted: tcpgen.c builds, the responder and Kamailio
are measured side by side over persistent TCP connections with nothing lost (Kamailio
missing skips cleanly, and fails under CI=1, where it must be installed), the table and the
ratio are printed; and held idle connections are accepted, measured, and do not stop the
responder answering over UDP and over a new TCP connection.
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


def kamailio_here() -> bool:
    """Whether Kamailio is installed; absent: False, or a failure under CI=1."""
    if shutil.which("kamailio") or Path("/usr/sbin/kamailio").exists():
        return True
    if os.environ.get("CI"):
        pytest.fail("kamailio is not installed (Debian: apt-get install kamailio); CI must "
                    "install it")
    return False


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPTS / script), *args],
                          capture_output=True, text=True, timeout=120)


@needs_tools
def test_bench_tcp_measures_responder_and_kamailio_side_by_side(tmp_path: Path) -> None:
    out = tmp_path / "tcp.json"
    done = run("bench_tcp.py", "--connections", "20", "--inflight", "2", "--duration", "0.4",
               "--warmup", "0.1", "--grace", "0.3", "--idle", "0.05", "--repeat", "1",
               "--json", str(out), "--cache-dir", str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr + done.stdout
    report = json.loads(out.read_text())
    summary = {row["server"]: row for row in report["summary"]}
    expected = {"responder", "kamailio"} if kamailio_here() else {"responder"}
    assert set(summary) == expected, report["notes"]
    for row in summary.values():
        assert row["lost"] == 0 and row["closed"] == 0 and row["per_cpu_s"] > 0
    assert "resp/CPU-s" in done.stdout and "vs kam" in done.stdout
    if "kamailio" not in expected:
        assert any("kamailio: skipped" in note for note in report["notes"])
        pytest.skip("kamailio is not installed: only the responder was measured")
    assert summary["responder"]["vs_kamailio"] is not None


@needs_tools
def test_bench_idle_holds_connections_and_still_answers(tmp_path: Path) -> None:
    out = tmp_path / "idle.json"
    done = run("bench_idle.py", "--connections", "300", "--json", str(out))
    assert done.returncode == 0, done.stderr + done.stdout
    report = json.loads(out.read_text())
    assert report["accepted"] == 300 and report["answered_on_held"] == 300
    assert report["udp_probe"].startswith("SIP/2.0 200")
    assert report["tcp_probe"].startswith("SIP/2.0 200")
    assert report["held_closed_by_responder"] == 0 and report["responder_alive"]
    assert report["rss_kib"]["connected"] > 0 and report["responder_nofile"]["soft"]
    assert "bytes per connection" in done.stdout
