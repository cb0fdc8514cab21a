"""Ctrl-C while the responder starts (issue 12): no traceback, ever.

Importing the command line takes a while (0.2 s on a quiet machine, more on a busy one); a
SIGINT in that time used to print a ``KeyboardInterrupt`` traceback. ``responder.launch``
imports it inside a ``try``: an interrupt before the server runs ends the program with status
130 (128 + SIGINT), one while it serves stops it cleanly with status 0 (SPEC §2).

The moments are found, not guessed: the child runs with ``PYTHONPROFILEIMPORTTIME=1``, so it
writes a line to stderr as each import finishes, and the SIGINT goes out when a chosen module
has been imported -- the first module of ours after ``responder.launch`` (so inside the
``try``), YAML, asyncio, the engine -- or when the server says it is listening.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

import pytest
from support import responder_script

TIMEOUT = 60.0  # generous: the machine may be busy; a hang fails, it never stalls the run
ARGS = ("--listen", "127.0.0.1:0", "-q")

# Where the SIGINT goes out: a regex on the child's stderr (import-time lines are
# "import time: SELF | CUMULATIVE | NAME"), and the exit statuses that are right then.
MOMENTS = [
    pytest.param(r"\|\s+responder\.(?!launch\b)\w", (130,), id="first-import-inside-the-try"),
    pytest.param(r"\|\s+yaml$", (130,), id="after-yaml"),
    pytest.param(r"\|\s+asyncio$", (130,), id="after-asyncio"),
    pytest.param(r"\|\s+responder\.core\.engine$", (130,), id="after-the-engine"),
    # Serving: the server's own handler stops it, cleanly (0). The listening line comes
    # after the handlers are in place.
    pytest.param(r"listening on udp://", (0,), id="serving"),
]


class Child:
    """The console script (or ``python -m responder``) with its stderr read line by line."""

    def __init__(self, argv: Sequence[str]) -> None:
        env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
        self.proc = subprocess.Popen([*argv, *ARGS], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=env)
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.lines.append("<eof>")
            self.cond.notify_all()

    def wait_for(self, pattern: str) -> None:
        regex = re.compile(pattern)
        deadline = time.monotonic() + TIMEOUT
        with self.cond:
            while not any(regex.search(line) for line in self.lines):
                left = deadline - time.monotonic()
                assert left > 0 and "<eof>" not in self.lines, (
                    f"no stderr line matches {pattern!r}:\n" + "\n".join(self.lines[-20:]))
                self.cond.wait(left)

    def interrupt(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(TIMEOUT)
        self.reader.join(TIMEOUT)
        with self.cond:
            return code, "\n".join(self.lines)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *_: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(TIMEOUT)
        self.reader.join(TIMEOUT)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


@pytest.mark.parametrize(("moment", "codes"), MOMENTS)
def test_ctrl_c_while_starting_exits_quietly(moment: str, codes: tuple[int, ...]) -> None:
    with Child([responder_script()]) as child:
        child.wait_for(moment)
        code, stderr = child.interrupt()
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-2000:]
    assert code in codes, stderr[-2000:]


def test_ctrl_c_at_once_exits_quietly() -> None:
    """SIGINT right after the process exists: Python has not put its SIGINT handler in place
    yet, so the signal ends the process as it would any program (-SIGINT here; a shell shows
    130), or, a little later, ``launch`` catches it (130). Never a traceback."""
    for _ in range(3):
        with Child([responder_script()]) as child:
            code, stderr = child.interrupt()
        assert "Traceback" not in stderr, stderr[-2000:]
        assert code in (-signal.SIGINT, 130), stderr[-2000:]


def test_python_m_responder_exits_quietly_too() -> None:
    with Child([sys.executable, "-m", "responder"]) as child:
        child.wait_for(r"\|\s+responder\.(?!launch\b)\w")
        code, stderr = child.interrupt()
    assert "Traceback" not in stderr and code == 130, stderr[-2000:]


def test_the_console_script_enters_through_launch() -> None:
    with open(responder_script(), encoding="utf-8") as script:
        assert "from responder.launch import main" in script.read()
