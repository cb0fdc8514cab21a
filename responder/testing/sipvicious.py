"""Run SIPVicious (svmap, svwar, svcrack) against a responder on loopback; read what it found.

Standalone: only the standard library, the tools run as child processes. Nothing else of
``responder`` is imported, so a test suite (or the ``sipvicious`` pytest fixture) can use it
against any SIP server listening on 127.0.0.1 or ::1.

API
---
``svmap(host, port, *, method="OPTIONS", extension=None, compact=False, timeout=60.0,
extra_args=()) -> list[MapHost]``
    One svmap scan of ``host:port``. Every device that answered, as svmap's table shows it:
    ``MapHost(address="127.0.0.1:5060", host="127.0.0.1", port=5060, user_agent="LabPBX 1.0",
    fingerprint=None)``. ``user_agent`` is svmap's "User Agent" column: the first
    comma-separated token of the response's Server header, else of its User-Agent, else
    ``"unknown"``. ``fingerprint`` is the "Fingerprint" column of old svmap versions (0.3.x
    has none: ``None``). svmap waits 3 s for late answers, so a scan takes at least 3 s.

``svwar(host, port, extensions="100-999", *, method="REGISTER", compact=False,
force=False, timeout=60.0, extra_args=()) -> list[Extension]``
    One svwar scan. ``extensions``: a numeric range as svwar writes it (``"1000-1010"``,
    ``"100-199,300"``), a ``range``, a list of names (written to a dictionary file), or a
    ``pathlib.Path`` of a dictionary file. Returns ``Extension(extension="1000",
    state="reqauth")`` for every extension svwar reports; ``state`` is ``"reqauth"``
    (401/403/407), ``"noauth"`` (200) or ``"weird"`` (anything else that differs from the
    answer to svwar's first request, which goes to a random extension).

``svcrack(host, port, username, passwords="100-999", *, extension=None, compact=False,
reuse_nonce=False, method="REGISTER", timeout=60.0, extra_args=()) -> list[Cracked]``
    One svcrack run on ``username``. ``passwords``: a numeric range, a ``range``, a list of
    words (written to a dictionary file) or a ``pathlib.Path`` of a dictionary file. svcrack
    always tries the username itself first. Returns ``Cracked(username="1001",
    password="1234")``; ``password`` is ``None`` when the server let the user in without
    authentication. A failed crack returns ``[]`` after svcrack's own 10 s wait for late
    answers.

Errors (all :class:`SipviciousError`, which carries the :class:`ToolRun`: argv, exit
status, stdout, stderr):

* :class:`SipviciousMissing`: the tool is not installed (``pip install sipvicious``).
* :class:`SipviciousTimeout`: the tool ran longer than ``timeout`` seconds (it is killed).
* :class:`SipviciousError`: a usage or internal error (exit status 10 or 20), or the tool
  logged an ERROR or CRITICAL line, e.g. svwar's "SIP server replied with an authentication
  request for an unknown extension" or svcrack's "no server response".
* ``ValueError``: a host other than 127.0.0.1 / ::1, a bad port or a bad range.

Also: :func:`run_tool` (one raw run, for anything the wrappers do not cover),
:func:`parse_table` (svmap/svwar/svcrack's result table -> rows), :func:`version`,
:func:`available` and :func:`tool_command`.

How the tools are run
---------------------
* Command: the console script ``sipvicious_<tool>`` next to ``sys.executable`` or on PATH,
  else ``python -m sipvicious.<tool>`` when the package is importable.
* In a fresh temporary directory that is also ``HOME`` (the tools keep sessions under
  ``~/.sipvicious`` and random-scan state in ``~/.sipviciousrandomtmp``): nothing leaks, and
  the directory is removed afterwards.
* ``-P 0``: the tool binds an ephemeral port (its default, 5060, may be the server's).
* ``-x`` (the address the tool writes in Via and Contact) is the loopback address, bracketed
  for IPv6, which also spares the tool its ``gethostbyname(gethostname())`` look-up; ``-b``
  binds svmap to it (svwar and svcrack ignore ``-b`` and bind every interface).
* Output is read from the result table on stdout, by column position from its border line,
  so a value holding ``|`` or spaces is read whole.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

__all__ = [
    "TOOLS",
    "Cracked",
    "Extension",
    "MapHost",
    "SipviciousError",
    "SipviciousMissing",
    "SipviciousTimeout",
    "ToolRun",
    "available",
    "parse_table",
    "run_tool",
    "svcrack",
    "svmap",
    "svwar",
    "tool_command",
    "version",
]

TOOLS = ("svmap", "svwar", "svcrack")
DEFAULT_TIMEOUT = 60.0
EXIT_FOUND = 40          # svwar / svcrack: something was found
EXIT_NETWORK = 30        # lost packets, no answer (svmap: not every target answered)
EXIT_FAILED = (10, 20)   # usage error, internal error
_LOOPBACK = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
_NUMERIC_RANGE = re.compile(r"[0-9]+(?:-[0-9]+)?(?:,[0-9]+(?:-[0-9]+)?)*")
_ERROR_LINE = re.compile(r"^(?:ERROR|CRITICAL):.*$", re.MULTILINE)
_BORDER = re.compile(r"\+(?:-+\+)+")
_VERSION = re.compile(r"\bv(\d+(?:\.\d+)+\S*)")

Words = Iterable[str | int]
Candidates = str | range | Path | Words


# --------------------------------------------------------------------------- findings


@dataclass(frozen=True, slots=True)
class MapHost:
    """One device svmap found."""

    address: str              # as svmap prints it: "127.0.0.1:5060", "::1:5060"
    host: str
    port: int
    user_agent: str           # first comma token of Server, else User-Agent, else "unknown"
    fingerprint: str | None   # svmap's Fingerprint column (versions that have one)


@dataclass(frozen=True, slots=True)
class Extension:
    """One extension svwar found."""

    extension: str
    state: str                # "reqauth", "noauth" or "weird"


@dataclass(frozen=True, slots=True)
class Cracked:
    """One password svcrack found."""

    username: str
    password: str | None      # None: the server did not ask for authentication


@dataclass(frozen=True, slots=True)
class ToolRun:
    """One finished run of a tool."""

    tool: str
    argv: tuple[str, ...]
    returncode: int | None    # None: killed after the timeout
    stdout: str
    stderr: str
    duration: float

    def describe(self) -> str:
        return (f"{' '.join(self.argv)}\nexit status {self.returncode} after "
                f"{self.duration:.1f} s\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}")


class SipviciousError(RuntimeError):
    """A SIPVicious tool failed; ``run`` holds what it printed (None if it never ran)."""

    def __init__(self, message: str, run: ToolRun | None = None) -> None:
        super().__init__(message if run is None else f"{message}\n{run.describe()}")
        self.run = run


class SipviciousMissing(SipviciousError):
    """The SIPVicious tools are not installed."""


class SipviciousTimeout(SipviciousError):
    """A tool ran longer than its timeout and was killed."""


# --------------------------------------------------------------------------- running


def tool_command(tool: str) -> list[str]:
    """The command that runs ``tool`` (svmap, svwar, svcrack); raises SipviciousMissing."""
    if tool not in TOOLS and tool not in ("svreport", "svcrash"):
        raise ValueError(f"unknown SIPVicious tool {tool!r} (known: {', '.join(TOOLS)})")
    script = f"sipvicious_{tool}"
    search = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    found = shutil.which(script, path=search)
    if found is not None:
        return [found]
    import importlib.util

    try:
        spec = importlib.util.find_spec(f"sipvicious.{tool}")
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        return [sys.executable, "-m", f"sipvicious.{tool}"]
    raise SipviciousMissing(
        f"SIPVicious is not installed: no {script} next to {sys.executable} or on PATH, and "
        f"no importable sipvicious.{tool} (install it with `pip install sipvicious`)")


def available() -> bool:
    """True when all of svmap, svwar and svcrack can be run."""
    try:
        for tool in TOOLS:
            tool_command(tool)
    except SipviciousMissing:
        return False
    return True


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", "replace")


def run_tool(
    tool: str,
    args: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    files: Callable[[Path], Sequence[str]] | None = None,
) -> ToolRun:
    """Run ``tool ARGS`` in a fresh temporary directory that is also its HOME.

    ``files``, if given, is called with that directory before the run and returns more
    arguments (e.g. ``["-d", str(written_dictionary)]``). Raises SipviciousMissing and
    SipviciousTimeout; the exit status is not judged here.
    """
    command = tool_command(tool)
    with tempfile.TemporaryDirectory(prefix=f"sipvicious-{tool}-") as tmp:
        home = Path(tmp)
        argv = [*command, *(files(home) if files is not None else ()), *args]
        env = dict(os.environ, HOME=tmp, PYTHONUTF8="1", PYTHONIOENCODING="utf-8",
                   PYTHONDONTWRITEBYTECODE="1")
        started = time.monotonic()
        try:
            proc = subprocess.run(argv, cwd=tmp, env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, encoding="utf-8",
                                  errors="replace", timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            run = ToolRun(tool, tuple(argv), None, _text(exc.stdout), _text(exc.stderr),
                          time.monotonic() - started)
            raise SipviciousTimeout(f"{tool} did not finish within {timeout} s", run) from None
        except FileNotFoundError as exc:
            raise SipviciousMissing(f"cannot run {argv[0]}: {exc}") from None
        return ToolRun(tool, tuple(argv), proc.returncode, proc.stdout, proc.stderr,
                       time.monotonic() - started)


def version() -> str:
    """SIPVicious's version as its tools report it (``--version``), e.g. ``"0.3.8"``."""
    run = run_tool("svmap", ["--version"], timeout=30.0)
    m = _VERSION.search(run.stdout)
    if m is None:
        raise SipviciousError("svmap --version printed no version", run)
    return m.group(1)


# --------------------------------------------------------------------------- output


def parse_table(text: str) -> list[dict[str, str]]:
    """The first result table in ``text`` (svmap/svwar/svcrack stdout) as rows by label.

    The table looks like::

        +-----------+----------------+
        | Extension | Authentication |
        +===========+================+
        | 1000      | reqauth        |
        +-----------+----------------+

    Columns are cut at the ``+`` positions of the border, so a cell may hold ``|``.
    Returns [] when there is no table (the tools print none when they found nothing).
    """
    lines = [line.rstrip("\r") for line in text.splitlines()]
    for i, line in enumerate(lines):
        if _BORDER.fullmatch(line.strip()) and i + 1 < len(lines) \
                and lines[i + 1].lstrip().startswith("|"):
            break
    else:
        return []
    start = line.index("+")
    cuts = [start + j for j, ch in enumerate(line.strip()) if ch == "+"]

    def cells(row: str) -> list[str]:
        return [row[a + 1 : b].strip() for a, b in pairwise(cuts)]

    labels = cells(lines[i + 1])
    rows: list[dict[str, str]] = []
    for row in lines[i + 2 :]:
        stripped = row.strip()
        if not stripped:
            break
        if stripped.startswith("+"):
            continue  # the ==== line under the labels, and the borders between rows
        if not stripped.startswith("|"):
            break
        rows.append(dict(zip(labels, cells(row), strict=False)))
    return rows


def _column(row: dict[str, str], label: str, run: ToolRun) -> str:
    for key, value in row.items():
        if key.lower() == label.lower():
            return value
    raise SipviciousError(f"{run.tool}'s table has no column {label!r}: {list(row)}", run)


def _judge(run: ToolRun) -> list[dict[str, str]]:
    """The table of a finished run; raises SipviciousError for a failed one."""
    if run.returncode in EXIT_FAILED or (run.returncode or 0) < 0:
        raise SipviciousError(f"{run.tool} failed (exit status {run.returncode})", run)
    errors = _ERROR_LINE.findall(run.stderr)
    if errors:
        raise SipviciousError(f"{run.tool} reported: {errors[0]}", run)
    rows = parse_table(run.stdout)
    if not rows and run.returncode == EXIT_FOUND:
        raise SipviciousError(f"{run.tool} says it found something but printed no table",
                              run)
    return rows


# --------------------------------------------------------------------------- arguments


def _target(host: str, port: int) -> tuple[str, list[str]]:
    """(the host as the tools want it, the arguments for address family and our address)."""
    if not isinstance(host, str):
        raise ValueError(f"host must be text, not {type(host).__name__}")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        addr = ipaddress.ip_address(bare)
    except ValueError:
        addr = None
    if addr is None or addr not in _LOOPBACK:
        raise ValueError(f"SIPVicious runs only against 127.0.0.1 or ::1, not {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be a number from 1 to 65535, not {port!r}")
    if addr.version == 6:
        return "::1", ["-6", "-x", "[::1]", "-b", "::1"]
    return "127.0.0.1", ["-x", "127.0.0.1", "-b", "127.0.0.1"]


def _common(host: str, port: int, compact: bool) -> tuple[str, list[str]]:
    target, family = _target(host, port)
    args = [*family, "-P", "0", "-p", str(port)]
    if compact:
        args.append("-c")
    return target, args


def _candidates(option: str, value: Candidates, what: str
                ) -> tuple[list[str], Callable[[Path], list[str]] | None]:
    """``option RANGE`` (``-e``/``-r``) or ``-d FILE`` for ``value``, and a writer of that
    file into the run's directory when ``value`` is a list of words."""
    if isinstance(value, Path):
        if not value.is_file():
            raise ValueError(f"{what} dictionary {str(value)!r} is not a file")
        return ["-d", str(value.resolve())], None
    if isinstance(value, str):
        text = value.replace(" ", "")
        if not _NUMERIC_RANGE.fullmatch(text):
            raise ValueError(f"{what} {value!r} is not a numeric range such as 1000-1010 or "
                             f"100-199,300; pass a list of {what} or a pathlib.Path of a "
                             f"dictionary file")
        return [option, text], None
    if isinstance(value, range) and value.step == 1:
        if len(value) == 0 or value.start < 0:
            raise ValueError(f"{what} range {value!r} is empty or negative")
        return [option, f"{value.start}-{value.stop - 1}"], None
    words = [str(w) for w in value]
    if not words:
        raise ValueError(f"no {what} given")
    for w in words:
        if "\n" in w or "\r" in w or w != w.strip():
            raise ValueError(f"{what} entry {w!r}: one line without surrounding spaces")

    def write(home: Path) -> list[str]:
        path = home / f"{what}.txt"
        path.write_text("".join(f"{w}\n" for w in words), encoding="utf-8")
        return ["-d", str(path)]

    return [], write


# --------------------------------------------------------------------------- the tools


def svmap(
    host: str,
    port: int,
    *,
    method: str = "OPTIONS",
    extension: str | None = None,
    compact: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    extra_args: Sequence[str] = (),
) -> list[MapHost]:
    """Scan ``host:port`` with svmap; the devices that answered."""
    target, args = _common(host, port, compact)
    args += ["-m", method]
    if extension is not None:
        args += ["-e", str(extension)]
    run = run_tool("svmap", [*args, *extra_args, target], timeout=timeout)
    found = []
    for row in _judge(run):
        address = _column(row, "SIP Device", run)
        dev_host, _, dev_port = address.rpartition(":")
        if not dev_port.isdigit():
            raise SipviciousError(f"svmap printed a device without a port: {address!r}", run)
        fingerprint = next((v for k, v in row.items() if k.lower() == "fingerprint"), None)
        found.append(MapHost(address=address, host=dev_host.strip("[]"), port=int(dev_port),
                             user_agent=_column(row, "User Agent", run),
                             fingerprint=fingerprint))
    return found


def svwar(
    host: str,
    port: int,
    extensions: Candidates = "100-999",
    *,
    method: str = "REGISTER",
    compact: bool = False,
    force: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    extra_args: Sequence[str] = (),
) -> list[Extension]:
    """Enumerate ``extensions`` on ``host:port`` with svwar; the extensions it reports."""
    target, args = _common(host, port, compact)
    ext_args, write = _candidates("-e", extensions, "extensions")
    args += ["-m", method, *ext_args]
    if force:
        args.append("--force")
    run = run_tool("svwar", [*args, *extra_args, target], timeout=timeout, files=write)
    return [Extension(extension=_column(row, "Extension", run),
                      state=_column(row, "Authentication", run)) for row in _judge(run)]


def svcrack(
    host: str,
    port: int,
    username: str,
    passwords: Candidates = "100-999",
    *,
    extension: str | None = None,
    method: str = "REGISTER",
    compact: bool = False,
    reuse_nonce: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    extra_args: Sequence[str] = (),
) -> list[Cracked]:
    """Guess ``username``'s password on ``host:port`` with svcrack; what it cracked."""
    if not isinstance(username, str) or not username or any(c.isspace() for c in username):
        raise ValueError(f"username must be text without spaces, not {username!r}")
    target, args = _common(host, port, compact)
    pw_args, write = _candidates("-r", passwords, "passwords")
    args += ["-u", username, "-m", method, *pw_args]
    if extension is not None:
        args += ["-e", str(extension)]
    if reuse_nonce:
        args.append("-n")
    run = run_tool("svcrack", [*args, *extra_args, target], timeout=timeout, files=write)
    found = []
    for row in _judge(run):
        password = _column(row, "Password", run)
        found.append(Cracked(username=_column(row, "Extension", run),
                             password=None if password == "[no password]" else password))
    return found
