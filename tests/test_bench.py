"""The benchmarks run (scripts/README.md): a short bench.py and soak.py, as a smoke test.

What they measure is reported in notes and the README, not asserted here (timings on a
shared machine are not test results); what is asserted is that they work: the load
generator builds, the servers start pinned, every request is answered, and the reports
carry the numbers the issue asks for.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
needs_tools = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("taskset") is None,
                                 reason="bench.py builds its generator with gcc, pins with "
                                        "taskset")


@needs_tools
def test_bench_measures_the_responder_and_the_reflector(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench.py"), "--servers", "responder,reflector",
         "--repeat", "1", "--duration", "0.5", "--warmup", "0.2", "--idle", "0.1",
         "--grace", "0.3", "--json", str(out), "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr + run.stdout
    summary = {row["server"]: row for row in json.loads(out.read_text())["summary"]}
    assert set(summary) == {"responder", "reflector"}
    for row in summary.values():
        assert row["loss_pct"] == 0 and row["rate"] > 0 and row["per_cpu_s"] > 0
    assert "generator ceiling" in run.stdout and "resp/CPU-s" in run.stdout


@needs_tools
def test_soak_reports_memory_and_loss(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPTS / "soak.py"), "--duration", "1.5", "--every", "0.5",
         "--rate", "2000", "--json", str(out)],
        capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr + run.stdout
    report = json.loads(out.read_text())
    assert report["loadgen"]["sent"] > 0 and report["loadgen"]["lost"] == 0
    assert report["samples"] and all(s["rss_kib"] for s in report["samples"][:-1])
    assert "RSS:" in run.stdout
