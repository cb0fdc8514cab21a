"""Replies leave from the address the request was sent to (SPEC §4, issue 14): with a
wildcard listen address the responder reads each datagram's destination (IP_PKTINFO /
IPV6_PKTINFO) and sends the reply from it, so a client that ``connect()``-ed to one of the
host's addresses gets its answer (a connected UDP socket drops datagrams from any other
address, as a NAT or a stateful firewall does). The address also becomes our Contact and
the SDP's ``c=``.

IPv4 uses 127.0.0.5 (all of 127/8 is on ``lo``); IPv6 has one loopback address, so its test
runs in a network namespace of its own with fd00::5 added to its ``lo``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sip import read_response, request
from support import ResponderProcess, free_udp_port, responder_script

from responder.io.udp import pktinfo_local, pktinfo_message, recv_pktinfo

OFFER = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.5\r\ns=-\r\nc=IN IP4 127.0.0.5\r\nt=0 0\r\n"
         b"m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


def invite(uri: str) -> bytes:
    head = request("INVITE", uri, extra="Contact: <sip:alice@127.0.0.5:40000>\r\n"
                                         "Content-Type: application/sdp\r\n")
    return head.replace(b"Content-Length: 0\r\n", b"Content-Length: %d\r\n" % len(OFFER)) \
        + OFFER


def ask(host: str, port: int, data: bytes, family: int = socket.AF_INET) -> list[bytes]:
    """Send from a socket connect()-ed to host:port; what came back within 5 s."""
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((host, port))
        sock.settimeout(5.0)
        sock.send(data)
        got = [sock.recv(65535)]
        sock.settimeout(0.5)
        try:
            while True:
                got.append(sock.recv(65535))
        except TimeoutError:
            return got


def test_a_wildcard_listener_answers_from_the_address_the_request_reached() -> None:
    port = free_udp_port("0.0.0.0")
    with ResponderProcess("-q", listen=(f"0.0.0.0:{port}",)) as server:
        media = server.wait_for_stderr(r"media on udp://0\.0\.0\.0:(\d+)").group(1)
        (only,) = ask("127.0.0.5", port, request("OPTIONS"))
        assert read_response(only).status == 200
        answers = [read_response(d) for d in ask("127.0.0.5", port,
                                                 invite(f"sip:1000@127.0.0.5:{port}"))]
        ok = answers[-1]
        assert ok.status == 200
        assert ok.one("Contact") == f"<sip:127.0.0.5:{port}>"
        assert "c=IN IP4 127.0.0.5" in ok.body.decode()
        # ... and m= names the wildcard's media socket (its port, found through 0.0.0.0)
        assert f"m=audio {media} RTP/AVP 0" in ok.body.decode()
        # ... and from 127.0.0.1 when that is where it was sent.
        assert read_response(ask("127.0.0.1", port, request("OPTIONS"))[0]).status == 200
        assert server.stop() == 0


def test_the_destination_is_read_from_the_control_message_both_ways() -> None:
    v4 = pktinfo_message("127.0.0.5")  # sent: the source in ipi_spec_dst
    assert v4 is not None and v4[2][4:8] == socket.inet_aton("127.0.0.5")
    reached = (socket.IPPROTO_IP, 8, bytes(4) + bytes(4) + socket.inet_aton("127.0.0.5"))
    assert pktinfo_local([reached], 5060) == ("127.0.0.5", 5060)
    six = pktinfo_message("fd00::5")
    assert six is not None and pktinfo_local([six], 5060) == ("fd00::5", 5060)
    assert pktinfo_message("not an address") is None
    assert pktinfo_local([], 5060) is None


def test_recv_pktinfo_names_each_datagrams_destination() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        server.bind(("0.0.0.0", 0))
        server.setsockopt(socket.IPPROTO_IP, 8, 1)
        port = server.getsockname()[1]
        for host in ("127.0.0.5", "127.0.0.1"):
            client.sendto(b"x" + host.encode(), (host, port))
        server.settimeout(5.0)
        got: list[tuple[bytes, tuple[str, int], tuple[str, int] | None]] = []
        while len(got) < 2:
            server.recv(1, socket.MSG_PEEK)  # wait for the next one (bounded by the timeout)
            server.setblocking(False)
            got += recv_pktinfo(server, port)
            server.settimeout(5.0)
        assert {(d, reached) for d, _, reached in got} == {
            (b"x127.0.0.5", ("127.0.0.5", port)), (b"x127.0.0.1", ("127.0.0.1", port))}


IN_NAMESPACE = textwrap.dedent("""
    import socket, subprocess, sys, time
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "-6", "addr", "add", "fd00::5/128", "dev", "lo", "nodad"],
                   check=True)
    server = subprocess.Popen([sys.argv[1], "-q", "--listen", "[::]:5060"],
                              stderr=subprocess.PIPE, text=True)
    line = server.stderr.readline()
    while "listening on" not in line:
        line = server.stderr.readline()
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        # from ::1: a reply left to the kernel's choice of source would come from ::1 too,
        # and this connected socket would drop it
        sock.bind(("::1", 0))
        sock.connect(("fd00::5", 5060))
        sock.settimeout(5.0)
        sock.send(sys.stdin.buffer.read())
        try:
            sys.stdout.buffer.write(sock.recv(65535))
        finally:
            server.terminate()
            server.wait(10)
""")


def test_ipv6_wildcard_answers_from_the_address_reached_in_a_namespace(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        if os.environ.get("CI"):
            pytest.fail("the IPv6 test needs root, unshare and ip (iproute2)")
        pytest.skip("needs root, unshare and ip (iproute2) for a network namespace")
    script = tmp_path / "in_namespace.py"
    script.write_text(IN_NAMESPACE)
    done = subprocess.run(["unshare", "--net", sys.executable, str(script),
                           responder_script()],
                          input=request("OPTIONS", "sip:1000@[fd00::5]:5060"),
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert read_response(done.stdout).status == 200


def wildcard_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))
    sock.setsockopt(socket.IPPROTO_IP, 8, 1)  # IP_PKTINFO
    sock.setblocking(False)
    return sock


def test_the_compiled_and_python_paths_read_and_answer_alike() -> None:
    """recv_reached/send_many(reached=True) (the C extension) against recv_pktinfo and
    send_many(reached=True) (Python): the same destinations read, and each reply leaves
    from the address its request reached (a connect()-ed client gets it)."""
    from responder._accel import SPEEDUPS
    from responder.core.effects import Effect, Send
    from responder.io.udp import send_many

    if SPEEDUPS is None:
        pytest.skip("the C extension is not built")
    got: dict[str, list[tuple[bytes, str | None]]] = {}
    for name in ("compiled", "python"):
        with wildcard_socket() as server, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            port = server.getsockname()[1]
            client.connect(("127.0.0.5", port))
            client.send(b"ping")
            server.settimeout(5.0)
            server.recv(1, socket.MSG_PEEK)
            server.setblocking(False)
            batch = (SPEEDUPS.recv_reached(server.fileno(), port) if name == "compiled"
                     else recv_pktinfo(server, port))
            got[name] = [(data, reached[0] if reached else None) for data, _, reached in batch]
            assert all(reached is None or reached[1] == port for _, _, reached in batch)
            (_, source, reached) = batch[0]
            reply: list[Effect] = [Send(source, b"pong " + name.encode(), None, reached)]
            failed = (SPEEDUPS.send_many(server.fileno(), socket.AF_INET, reply, Send, True)
                      if name == "compiled" else send_many(server, reply, reached=True))
            assert failed == 0
            client.settimeout(5.0)
            assert client.recv(100) == b"pong " + name.encode()  # from 127.0.0.5, or dropped
    assert got["compiled"] == got["python"] == [(b"ping", "127.0.0.5")]
