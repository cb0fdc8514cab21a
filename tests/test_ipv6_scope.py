"""IPv6 link-local sources keep their scope (issue 11 item 6; SPEC §4).

Three network namespaces we create (and delete): the responder's, R, with two links, each a
veth pair to namespace A or B. Both far ends have the SAME link-local address, fe80::2, and
use the same port: only the zone (the link) tells them apart. A request from A must be
answered over R's link to A and one from B over the link to B; a reply without its zone
cannot even be sent (Linux refuses a link-local destination without a scope id).
Compiled receive/send and the pure-Python twins alike.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVER = [sys.executable, "-c", "import sys; from responder.ops.cli import main; sys.exit(main())"]
CLIENT = r"""
import socket, sys
link, port, call_id = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(5.0)
s.bind(("fe80::2", 5070, 0, socket.if_nametoindex(link)))
s.sendto((f"OPTIONS sip:x@[fe80::1] SIP/2.0\r\n"
          f"Via: SIP/2.0/UDP [fe80::2]:5070;branch=z9hG4bK-{call_id};rport\r\n"
          f"From: <sip:c@[fe80::2]>;tag=1\r\nTo: <sip:x@[fe80::1]>\r\n"
          f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode(),
         ("fe80::1%" + link, port))
data = s.recv(65535).decode()
print(data.split("\r\n")[0])
print([l for l in data.split("\r\n") if l.startswith("Call-ID:")][0])
print([l for l in data.split("\r\n") if l.startswith("Via:")][0])
"""


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=20)


def namespaces_work() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = f"srprobe{os.getpid()}"
    try:
        sh("ip", "netns", "add", probe)
    except (subprocess.CalledProcessError, OSError, subprocess.TimeoutExpired):
        return False
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=20)
    return True


# CI (root, iproute2 installed by the README's command) must run it: no skip there.
pytestmark = pytest.mark.skipif(not os.environ.get("CI") and not namespaces_work(),
                                reason="network namespaces need root and iproute2")


@pytest.fixture
def links() -> Iterator[tuple[str, str, str]]:
    """(R, A, B): R linked to A over veth rX/aX and to B over rY/bY, fe80::1 on R's ends,
    fe80::2 on both far ends."""
    tag = f"{os.getpid() % 100000}"
    r, a, b = f"sr{tag}r", f"sr{tag}a", f"sr{tag}b"
    made: list[str] = []
    try:
        for ns in (r, a, b):
            sh("ip", "netns", "add", ns)
            made.append(ns)
        sh("ip", "-n", r, "link", "set", "lo", "up")
        for far, near_if, far_if in ((a, "ra", "aa"), (b, "rb", "bb")):
            sh("ip", "-n", r, "link", "add", near_if, "type", "veth", "peer", "name", far_if,
               "netns", far)
            sh("ip", "-n", r, "addr", "add", "fe80::1/64", "dev", near_if, "nodad")
            sh("ip", "-n", far, "addr", "add", "fe80::2/64", "dev", far_if, "nodad")
            sh("ip", "-n", r, "link", "set", near_if, "up")
            sh("ip", "-n", far, "link", "set", far_if, "up")
        yield r, a, b
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


@pytest.mark.parametrize("pure", [False, True], ids=["compiled", "pure-python"])
def test_link_local_replies_leave_on_the_link_the_request_came_on(
        links: tuple[str, str, str], pure: bool) -> None:
    r, a, b = links
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if pure:
        env["SIP_RESPONDER_PURE"] = "1"
    else:
        env.pop("SIP_RESPONDER_PURE", None)
    server = subprocess.Popen(["ip", "netns", "exec", r, *SERVER, "--listen", "[::]:0"],
                              env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              text=True)
    try:
        assert server.stderr is not None
        port = None
        for line in server.stderr:  # ends when the server exits: bounded
            m = re.search(r"listening on udp://\[::\]:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        assert port is not None, "the server did not start"
        for ns, link in ((a, "aa"), (b, "bb"), (a, "aa")):
            call_id = f"from-{ns}-{link}"
            out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT,
                                  link, str(port), call_id],
                                 capture_output=True, text=True, timeout=20, env=env)
            assert out.returncode == 0, out.stderr
            status, got_call_id, via = out.stdout.splitlines()
            assert status == "SIP/2.0 200 OK"
            assert got_call_id == f"Call-ID: {call_id}"
            # RFC 3581 received= is the bare address: a zone means nothing to the peer
            assert via.endswith(";rport=5070;received=fe80::2"), via
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        assert server.stderr is not None
        rest = server.stderr.read()
        server.stderr.close()
        assert "Traceback" not in rest, rest
