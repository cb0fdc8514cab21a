"""The wheel builds, installs into a fresh virtual environment and runs (docs/testing.md's
"pip wheel ... && pip install dist/sip_responder-*.whl")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=300, cwd=cwd)
    assert done.returncode == 0, f"{argv}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_the_wheel_builds_installs_into_a_fresh_venv_and_runs(tmp_path: Path) -> None:
    dist, env = tmp_path / "dist", tmp_path / "env"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, ROOT)
    (wheel,) = dist.glob("sip_responder-*.whl")
    run(sys.executable, "-m", "venv", env)
    run(env / "bin" / "pip", "install", "-q", wheel)
    # Run away from the checkout, so that nothing of it is on the path.
    checked = run(env / "bin" / "sip-responder", "--check", "--rule", "INVITE->486",
                  cwd=tmp_path)
    assert "INVITE->486" in checked.stdout
    # The installed package is the wheel's (not this checkout), with its compiled path.
    where = run(env / "bin" / "python", "-c",
                "import responder, responder._accel as a; "
                "print(responder.__file__); print(a.SPEEDUPS is not None)", cwd=tmp_path)
    path, compiled = where.stdout.split()
    assert str(env) in path and not path.startswith(str(ROOT))
    assert compiled == "True"
