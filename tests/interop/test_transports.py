"""Real peers over TCP and TLS against the console script (SPEC §9, issue 14).

The responder listens on UDP, TCP and TLS at once (``--listen udp:… --listen tcp:…
--listen tls:…``, one engine behind all three); the certificates are made at test time
(tests/certs.py, ``openssl``):

* SIPp ``-t t1`` (one TCP connection for every call) and ``-t tn`` (a connection per call):
  OPTIONS and whole calls (INVITE with SDP, 100/180/200 with the answer, ACK, BYE), 0 failed.
  Debian's SIPp is built without OpenSSL (``-t l1`` says "you must compile SIPp with
  OpenSSL"), so TLS is shown by baresip here and by Python's ``ssl`` client in
  tests/test_stream_io.py (mutual TLS too); sipsak 0.9.8's TLS client reads nothing back
  from any server here ("select returned error"), so it is used over TCP only;
* sipsak OPTIONS over TCP (``--transport=tcp``);
* baresip calls over TCP and over TLS (trusting our CA): INVITE, our 200, and the ACK to our
  Contact (which names the transport) all on the stream, and the echo reaches it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from baresip_peer import Baresip
from certs import Certs
from interop_support import run_sipp, tool
from support import ResponderProcess

pytestmark = pytest.mark.interop

HERE = Path(__file__).resolve().parent
CALL = HERE.parents[1] / "scripts" / "sipp" / "uac_call.xml"


def fresh(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.fixture
def server(certs: Certs) -> Iterator[ResponderProcess]:
    with ResponderProcess("-q", "--tls-cert", str(certs.server_cert), "--tls-key",
                          str(certs.server_key),
                          listen=("udp:127.0.0.1:0", "tcp:127.0.0.1:0",
                                  "tls:127.0.0.1:0")) as running:
        yield running
        assert running.stop() == 0
        assert "Traceback" not in running.stderr_text()


@pytest.mark.parametrize("mode", ["t1", "tn"])
def test_sipp_over_tcp_options_and_calls(server: ResponderProcess, tmp_path: Path,
                                         mode: str) -> None:
    run = run_sipp("options.xml", server, fresh(tmp_path / "options"), calls=20, rate=50, limit=10,
                   extra=["-t", mode, "-max_socket", "1000"], scheme="tcp")
    assert run.stats["FailedCall(C)"] == "0"
    calls = run_sipp(str(CALL), server, fresh(tmp_path / "calls"), calls=10, rate=20, limit=5,
                     extra=["-t", mode, "-max_socket", "1000", "-mi", "127.0.0.1"],
                     scheme="tcp")
    assert calls.stats["SuccessfulCall(C)"] == "10"


def sipsak_options(scheme: str, host: str, port: int, *extra: str
                   ) -> subprocess.CompletedProcess[str]:
    sipsak = tool("sipsak", "sipsak")
    return subprocess.run([sipsak, "-vv", f"--transport={scheme}", *extra,
                           "-s", f"sip:test@{host}:{port}"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
                          check=False)


def test_sipsak_options_over_tcp(server: ResponderProcess) -> None:
    result = sipsak_options("tcp", *server.listener("tcp"))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "SIP/2.0 200 OK" in output and "SIP/2.0/TCP" in output, output


@pytest.mark.parametrize("scheme", ["tcp", "tls"])
def test_baresip_calls_over_a_stream_and_media_flows(server: ResponderProcess, certs: Certs,
                                                     tmp_path: Path, scheme: str) -> None:
    """baresip dials ``;transport=tcp`` / ``;transport=tls`` (trusting our CA): the call
    is established over the stream and our echo reaches it (CALL_RTPESTAB)."""
    host, port = server.listener(scheme)
    extra = (f"sip_cafile {certs.ca}",) if scheme == "tls" else ()
    with Baresip(tmp_path / "baresip", extra=extra) as phone:
        phone.command("dial", f"sip:test@{host}:{port};transport={scheme}")
        phone.wait_event("CALL_ESTABLISHED", timeout=15.0)
        phone.wait_event("CALL_RTPESTAB", timeout=15.0)
        # baresip's -s trace: the INVITE and the ACK went over the stream (the ACK follows our
        # Contact, which names the transport), and our 200 came back on it.
        up = rf"{scheme.upper()} 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:{port}\s+"
        phone.wait_output(up + r"INVITE sip:test@")
        phone.wait_output(up + rf"ACK sip:127\.0\.0\.1:{port};transport={scheme} ")
        phone.wait_output(rf"{scheme.upper()} 127\.0\.0\.1:{port} -> 127\.0\.0\.1:\d+\s+"
                          r"SIP/2\.0 200 OK")
        phone.command("hangup")
        phone.wait_event("CALL_CLOSED")
