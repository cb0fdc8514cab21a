"""Real SIP peers against the console script: SIPp (Debian ``sip-tester``) and sipsak.

Missing tools skip these tests locally with a clear reason; with ``CI`` set they fail,
because CI installs both from apt.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from interop_support import CALLS, run_sipp, sipp_messages, tool
from support import Message, ResponderProcess, norm, tag_of

pytestmark = pytest.mark.interop


def test_sipp_options_gets_200(tmp_path: Path) -> None:
    tool("sipp", "sip-tester")
    with ResponderProcess("--rule", "INVITE->486", "-q") as server:
        run_sipp("options.xml", server, tmp_path)
        assert server.stop() == 0


def test_sipp_invite_gets_486_and_the_ack_is_absorbed(tmp_path: Path) -> None:
    tool("sipp", "sip-tester")
    with ResponderProcess("--rule", "INVITE->486", "-q") as server:
        run = run_sipp("invite_486.xml", server, tmp_path)
        # The scenario itself follows RFC 3261 section 17.1.1.3: each ACK repeats its INVITE's
        # branch and carries the To tag of the 486.
        invites: dict[str, Message] = {}
        finals: dict[str, Message] = {}
        acks: dict[str, Message] = {}
        for direction, msg in sipp_messages(run.message_file):
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
