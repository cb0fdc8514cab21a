"""scripts/bench_wakeup.py runs, in a tiny smoke mode: the C echo builds, the three servers
(C echo, Python echo on uvloop, sip-responder) answer every datagram of a paced client, and
the table and the per-call line are printed. The numbers are for the notes, not asserted."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.mark.skipif(shutil.which("gcc") is None, reason="the C echo is built with gcc")
def test_the_wakeup_benchmark_measures_three_servers_side_by_side() -> None:
    run = subprocess.run([sys.executable, str(SCRIPTS / "bench_wakeup.py"), "--repeat", "1",
                          "--duration", "0.5", "--rate", "200", "--idle", "0.1", "--no-pin"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    for name in ("c", "python", "responder"):
        row = re.search(rf"^{name} +([\d.]+) +([\d.]+) .*answered (\d+)$", run.stdout, re.M)
        assert row is not None, run.stdout
        assert float(row.group(1)) > 0
        assert int(row.group(3)) == 100  # 200 datagrams/s for 0.5 s, every one answered
    assert "three per call (INVITE, ACK, BYE)" in run.stdout
