"""Real SIP peers against the console script: SIPp (Debian ``sip-tester``) and sipsak.

Missing tools skip these tests locally with a clear reason; with ``CI`` set they fail,
because CI installs both from apt.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from support import Message, ResponderProcess, free_udp_port, norm, parse_message, tag_of

pytestmark = pytest.mark.interop

SCENARIOS = Path(__file__).resolve().parent / "sipp"
CALLS = 100
RATE = 200  # calls per second: 100 calls take about half a second


def tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not on PATH (Debian: apt-get install {package})"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must install it")
        pytest.skip(message)
    return found


def sipp_stats(path: Path) -> dict[str, str]:
    """The last (cumulative) row of SIPp's ';'-separated statistics file."""
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    assert len(lines) >= 2, f"{path}: no statistics rows:\n{path.read_text()}"
    header = lines[0].rstrip(";").split(";")
    row = lines[-1].rstrip(";").split(";")
    return dict(zip(header, row, strict=False))


def sipp_messages(path: Path) -> list[tuple[str, Message]]:
    """(``sent``/``received``, message) from SIPp's -trace_msg file."""
    out = []
    for block in path.read_text(errors="replace").split("\n-----"):
        head, _, text = block.partition("\n\n")
        direction = "sent" if "message sent" in head else "received"
        if "message" not in head:
            continue
        raw = text.strip("\n").replace("\r\n", "\n").replace("\n", "\r\n") + "\r\n\r\n"
        out.append((direction, parse_message(raw.encode("latin-1", "replace"))))
    return out


def run_sipp(scenario: str, server: ResponderProcess, tmp_path: Path) -> dict[str, str]:
    sipp = tool("sipp", "sip-tester")
    host, port = server.address
    stat_file = tmp_path / "stat.csv"
    error_file = tmp_path / "errors.log"
    screen_file = tmp_path / "screen.log"
    argv = [
        sipp, f"{host}:{port}",
        "-sf", str(SCENARIOS / scenario),
        "-m", str(CALLS), "-r", str(RATE), "-l", "50",
        "-i", "127.0.0.1", "-p", str(free_udp_port()), "-mp", str(free_udp_port()),
        "-timeout", "60s", "-timeout_error", "-nostdin",
        "-trace_err", "-error_file", str(error_file),
        "-trace_stat", "-stf", str(stat_file),
        "-trace_screen", "-screen_file", str(screen_file),
        "-trace_msg", "-message_file", str(tmp_path / "messages.log"),
    ]
    result = subprocess.run(
        argv, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=90, check=False,
    )
    errors = error_file.read_text(errors="replace") if error_file.exists() else ""
    context = (
        f"argv: {argv}\nexit: {result.returncode}\nstdout tail:\n{result.stdout[-3000:]}\n"
        f"stderr:\n{result.stderr[-2000:]}\nerrors.log:\n{errors[-3000:]}\n"
        f"responder stderr:\n{server.stderr_text()}"
    )
    assert result.returncode == 0, context
    stats = sipp_stats(stat_file)
    assert stats.get("FailedCall(C)") == "0", f"{stats.get('FailedCall(C)')} failed\n{context}"
    assert stats.get("SuccessfulCall(C)") == str(CALLS), context
    return stats


def test_sipp_options_gets_200(tmp_path: Path) -> None:
    tool("sipp", "sip-tester")
    with ResponderProcess("--rule", "INVITE->486", "-q") as server:
        run_sipp("options.xml", server, tmp_path)
        assert server.stop() == 0


def test_sipp_invite_gets_486_and_the_ack_is_absorbed(tmp_path: Path) -> None:
    tool("sipp", "sip-tester")
    with ResponderProcess("--rule", "INVITE->486", "-q") as server:
        run_sipp("invite_486.xml", server, tmp_path)
        # The scenario itself follows RFC 3261 section 17.1.1.3: each ACK repeats its INVITE's
        # branch and carries the To tag of the 486.
        invites: dict[str, Message] = {}
        finals: dict[str, Message] = {}
        acks: dict[str, Message] = {}
        for direction, msg in sipp_messages(tmp_path / "messages.log"):
            call_id = norm(msg.get("call-id") or "")
            if direction == "received" and msg.status == 486:
                finals[call_id] = msg
            elif direction == "sent" and not msg.is_response:
                (invites if msg.method == "INVITE" else acks)[call_id] = msg
        assert len(invites) == len(finals) == len(acks) == CALLS
        for call_id, ack in acks.items():
            assert ack.values("via")[0] == invites[call_id].values("via")[0]
            assert tag_of(ack.get("to")) == tag_of(finals[call_id].get("to")) is not None
        # The responder is still well: the ACKs were absorbed, nothing answered them.
        with server.client() as client:
            assert client.exchange() == []
        assert server.stop() == 0


def test_sipsak_options_gets_200() -> None:
    sipsak = tool("sipsak", "sipsak")
    with ResponderProcess("-q") as server:
        host, port = server.address
        result = subprocess.run(
            [sipsak, "-vv", "-s", f"sip:test@{host}:{port}"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=False,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert "SIP/2.0 200 OK" in output, output
        assert server.stop() == 0
