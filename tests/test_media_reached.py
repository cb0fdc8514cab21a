"""The RTP echo leaves from the address its packet was sent to (SPEC §4 and §8.3, issue 14).

With a wildcard listen address the media socket is bound to the wildcard too; a phone that
sends its RTP to one of the host's addresses and ``connect()``-s its RTP socket there (or
drops what comes from elsewhere: symmetric RTP, a NAT, a stateful firewall) must get the
echo from that address, not from the one the kernel would pick. A connected UDP socket only
receives datagrams from the address it is connected to, so a wrong source is a lost echo.

Each test runs a real responder, with the compiled fast path and with
``SIP_RESPONDER_PURE=1``. IPv4 uses 127.0.0.5 and 127.0.0.6 (all of 127/8 is on ``lo``; a
reply to 127.0.0.1 would leave from 127.0.0.1). IPv6 has one loopback address, where the
kernel's choice is the right one anyway: the ``::1`` test shows the IPv6 path works, and the
one that tells right from wrong runs in a network namespace of its own with fd00::5 added
to its ``lo``, the caller on ``::1`` (root, ``unshare`` and ``ip`` needed).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from sip import read_response, request
from support import ResponderProcess, has_ipv6_loopback

from responder.core import media as media_module

PACKETS = 20
SSRC = 0xCAFE0001
TESTS = Path(__file__).resolve().parent


@pytest.fixture(params=["compiled", "pure"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The responder's echo path: the compiled EchoTable, or pure Python."""
    if request.param == "compiled":
        if media_module.ECHO_TABLE is None:
            pytest.skip("the compiled EchoTable is not built (or is off)")
    else:
        monkeypatch.setenv("SIP_RESPONDER_PURE", "1")
    return str(request.param)


def rtp(seq: int, pt: int = 0) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, seq * 160, SSRC) + bytes(160)


def bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def call(host: str, sip_port: int, media: socket.socket, call_id: str) -> tuple[int, str]:
    """An INVITE to ``host`` from a socket connect()-ed there, its offer naming ``media``;
    the 200 is ACKed. The answer's m= port and c= address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    mine, media_port = media.getsockname()[:2]
    ip = "IP6" if family == socket.AF_INET6 else "IP4"
    offer = (f"v=0\r\no=- 1 1 IN {ip} {mine}\r\ns=-\r\nc=IN {ip} {mine}\r\nt=0 0\r\n"
             f"m=audio {media_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    uri = f"sip:1000@{bracket(host)}:{sip_port}"
    with socket.socket(family, socket.SOCK_DGRAM) as sip:
        sip.bind((mine, 0))
        sip.connect((host, sip_port))
        sip.settimeout(5.0)
        via = f"{bracket(mine)}:{sip.getsockname()[1]}"
        sip.send(request("INVITE", uri, call_id=call_id, via_host=via, body=offer,
                         extra="Content-Type: application/sdp\r\n"))
        ok = read_response(sip.recv(65535))
        while ok.status < 200:
            ok = read_response(sip.recv(65535))
        assert ok.status == 200, ok.status
        sip.send(request("ACK", uri, call_id=call_id, via_host=via, branch="z9hG4bK-ack-1",
                         to=ok.one("To")))
    body = ok.body.decode()
    m = re.search(r"^m=audio (\d+) ", body, re.M)
    c = re.search(r"^c=IN IP[46] (\S+)", body, re.M)
    assert m is not None and c is not None, body
    return int(m.group(1)), c.group(1)


def echoed(media: socket.socket, host: str, port: int) -> list[bytes]:
    """RTP from ``media`` connect()-ed to host:port: the echoes it receives (each within
    5 s, or the test fails: a connected socket drops an echo from another address)."""
    media.connect((host, port))
    media.settimeout(5.0)
    got = []
    for seq in range(PACKETS):
        media.send(rtp(seq))
        if seq == 0:  # the first packet of a call goes through Python, then batches
            got.append(media.recv(2048))
    while len(got) < PACKETS:
        got.append(media.recv(2048))
    return got


def check(got: list[bytes]) -> None:
    assert sorted(struct.unpack("!H", p[2:4])[0] for p in got) == list(range(PACKETS))
    assert all(struct.unpack("!I", p[8:12])[0] != SSRC for p in got)  # ours, not its own


def exchange(server: ResponderProcess, wildcard: str, hosts: list[str], caller: str) -> None:
    """One call per address in ``hosts``, from ``caller``, to a responder listening on
    ``wildcard``: each answer names the address called, and its RTP is echoed from there."""
    family = socket.AF_INET6 if ":" in wildcard else socket.AF_INET
    announced = server.wait_for_stderr(
        rf"media on udp://{re.escape(bracket(wildcard))}:(\d+)").group(1)
    sip_port = server.address[1]
    for n, host in enumerate(hosts):
        with socket.socket(family, socket.SOCK_DGRAM) as media:
            media.bind((caller, 0))
            media_port, c = call(host, sip_port, media, f"reached-{n}@test")
            assert (media_port, c) == (int(announced), host)
            check(echoed(media, host, media_port))


def test_an_ipv4_wildcard_echoes_from_each_address_called(path: str) -> None:
    with ResponderProcess("-q", listen=("0.0.0.0:0",)) as server:
        exchange(server, "0.0.0.0", ["127.0.0.5", "127.0.0.6", "127.0.0.1"], "127.0.0.1")
        assert server.stop() == 0


def test_an_ipv6_wildcard_echoes_over_loopback(path: str) -> None:
    if not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    with ResponderProcess("-q", listen=("[::]:0",)) as server:
        exchange(server, "::", ["::1"], "::1")
        assert server.stop() == 0


def in_namespace() -> None:
    """Run by the namespace test inside its own network namespace (``unshare --net``)."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "-6", "addr", "add", "fd00::5/128", "dev", "lo", "nodad"],
                   check=True)
    with ResponderProcess("-q", listen=("[::]:0",)) as server:
        exchange(server, "::", ["fd00::5", "::1"], "::1")
        assert server.stop() == 0


def test_an_ipv6_wildcard_echoes_from_the_address_called_in_a_namespace(path: str) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        if os.environ.get("CI"):
            pytest.fail("the IPv6 test needs root, unshare and ip (iproute2)")
        pytest.skip("needs root, unshare and ip (iproute2) for a network namespace")
    code = (f"import sys; sys.path[:0] = [{str(TESTS)!r}]; "
            "import test_media_reached; test_media_reached.in_namespace()")
    done = subprocess.run(["unshare", "--net", sys.executable, "-c", code],
                          capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
