"""The compiled fast path of the parser (responder/_accel/_speedups.c) against the Python parser.

The fast path reads only plainly well-formed requests and returns None for anything
else; for what it reads, its Request must equal ``parse_python``'s. Shown here over the
RFC 4475/5118 corpus, requests as real peers write them (which must take the fast path),
every single-byte mutation of those, and Hypothesis-built near-valid requests. The fuzz
tests in test_parser_fuzz.py compare the two parsers on everything they generate too; the
batch calls (recvmmsg/sendmmsg) are compared with their Python twins here as well.
test_accel.py holds the rest: the checks at load, response heads, To tags.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import ResponderProcess, SipClient, has_ipv6_loopback

from responder.sip import parser
from responder.sip.errors import Discard
from responder.sip.message import Request

PURE = bool(os.environ.get("SIP_RESPONDER_PURE"))
CORPUS = Path(__file__).resolve().parent / "conformance"  # RFC 4475/5118, in the repository
FAST = settings(max_examples=400, deadline=None, database=None)


def fast(data: bytes) -> Request | None:
    assert parser._fast_parse is not None
    return parser._fast_parse(data)


def python(data: bytes) -> Request | Discard:
    try:
        return parser.parse_python(data)
    except Discard as exc:
        return exc


def agree(data: bytes) -> Request | None:
    """The fast path's answer, after checking it is None or the Python parser's Request."""
    got = fast(data)
    if got is not None:
        want = python(data)
        assert isinstance(want, Request), (data, want)
        if got.method == "REGISTER":  # parse() adds the Contact check to the fast path's
            got = parser.parse(data)
        assert got == want, data
        assert want.problem is None or want.problem.reason == "Bad Contact"
    return got


needs_ext = pytest.mark.skipif(PURE, reason="SIP_RESPONDER_PURE is set: the extension is off")


def test_the_extension_is_built_and_used() -> None:
    """CI builds it (gcc and the Python headers are installed): a silent fallback to the
    pure-Python parser would cost most of the speed (scripts/README.md)."""
    if PURE:
        assert parser._fast_parse is None
    else:
        assert parser._fast_parse is not None, "responder._accel._speedups did not build"


def test_sip_responder_pure_turns_it_off() -> None:
    code = ("from responder import _accel as speedups; from responder.sip import parser; "
            "print(parser._fast_parse is None and speedups.SPEEDUPS is None)")
    env = {**os.environ, "SIP_RESPONDER_PURE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "True"


# ------------------------------------------------------------------ what real peers send

def msg(*lines: str, body: bytes = b"") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
PEERS = {
    "sipp-options": msg(
        "OPTIONS sip:service@127.0.0.1:5060 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4242-1-0",
        "From: sipp <sip:sipp@127.0.0.1:5061>;tag=4242SIPpTag001",
        "To: service <sip:service@127.0.0.1:5060>",
        "Call-ID: 1-4242@127.0.0.1",
        "CSeq: 1 OPTIONS",
        "Contact: sip:sipp@127.0.0.1:5061",
        "Max-Forwards: 70",
        "Subject: Performance Test",
        "Content-Length: 0"),
    "sipp-invite": msg(
        "INVITE sip:service@127.0.0.1:5060 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4242-1-0",
        "From: sipp <sip:sipp@127.0.0.1:5061>;tag=4242SIPpTag001",
        "To: service <sip:service@127.0.0.1:5060>",
        "Call-ID: 1-4242@127.0.0.1",
        "CSeq: 1 INVITE",
        "Contact: sip:sipp@127.0.0.1:5061",
        "Max-Forwards: 70",
        "Content-Type: application/sdp",
        f"Content-Length: {len(SDP)}", body=SDP),
    "sipsak-options": msg(
        "OPTIONS sip:127.0.0.1:5060 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.1.1:40000;branch=z9hG4bK.1e2a3b4c;rport;alias",
        "From: sip:sipsak@127.0.1.1:40000;tag=5a1d2c3b",
        "To: sip:127.0.0.1:5060",
        "Call-ID: 1234567890@127.0.1.1",
        "CSeq: 1 OPTIONS",
        "Contact: sip:sipsak@127.0.1.1:40000",
        "Content-Length: 0",
        "Max-Forwards: 70",
        "User-Agent: sipsak 0.9.8.1",
        "Accept: text/plain"),
    "svmap": msg(
        "OPTIONS sip:100@127.0.0.1 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.1.1:5060;branch=z9hG4bK-3918224582;rport",
        "Max-Forwards: 70",
        'To: "100"<sip:100@127.0.0.1>',
        'From: "100"<sip:100@127.0.0.1>;tag=3933353235353264313363340131393738353732363934',
        "User-Agent: friendly-scanner",
        "Call-ID: 419826768327582694138637",
        "Contact: sip:100@127.0.1.1:5060",
        "CSeq: 1 OPTIONS",
        "Accept: application/sdp",
        "Content-Length: 0"),
    "register-ipv6-via": msg(
        "REGISTER sip:lab.example SIP/2.0",
        "Via: SIP/2.0/UDP [2001:db8::10]:5062;rport;branch=z9hG4bK-reg-1",
        "Max-Forwards: 70",
        "From: <sip:1000@lab.example>;tag=ft-3",
        "To: <sip:1000@lab.example>",
        "Call-ID: reg-1@client.example",
        "CSeq: 2 REGISTER",
        "Contact: <sip:1000@192.0.2.10:5062>;expires=3600",
        "Expires: 3600",
        "Content-Length: 0"),
    "two-vias-received-compact": msg(
        "BYE sip:alice:secret@lab.example:5070;transport=udp SIP/2.0",
        "v: SIP/2.0/UDP proxy.example:5060;branch=z9hG4bKp1;received=192.0.2.1;rport=5060",
        "v: SIP/2.0/TCP 192.0.2.10;branch=z9hG4bKc1",
        "f: \"Alice Smith\" <sip:alice@client.example>;tag=a1",
        "t: Bob <sip:bob@lab.example>;tag=b1",
        "i: abc@client.example",
        "CSeq: 7 BYE",
        "l: 0"),
    "no-content-length": msg(
        "MESSAGE sip:bob@lab.example SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-m1",
        "From: <sip:alice@client.example>;tag=m1",
        "To: <sip:bob@lab.example>",
        "Call-ID: m1@client.example",
        "CSeq: 1 MESSAGE", body=b"hello"),
}


@needs_ext
@pytest.mark.parametrize("name", sorted(PEERS))
def test_what_peers_send_takes_the_fast_path(name: str) -> None:
    req = agree(PEERS[name])
    assert req is not None, f"{name} fell back to the Python parser"
    assert req.problem is None


@needs_ext
def test_the_fields_it_fills() -> None:
    req = agree(PEERS["two-vias-received-compact"])
    assert req is not None
    tv = req.top_via
    assert (tv.host, tv.port, tv.branch, tv.rport, tv.rport_empty, tv.received) == (
        "proxy.example", 5060, "z9hG4bKp1", True, False, True)
    assert (req.from_uri, req.from_tag, req.to_uri, req.to_tag) == (
        "sip:alice@client.example", "a1", "sip:bob@lab.example", "b1")
    assert (req.target_user, req.uri_host, req.cseq_num, req.body) == (
        "alice", "lab.example", 7, b"")
    assert [h[1] for h in req.header_lines] == ["v", "v", "f", "t", "i", "CSeq", "l"]
    # No user in the Request-URI: the To URI's user is the target (SPEC §3.3).
    options = agree(PEERS["sipsak-options"])
    assert options is not None and options.target_user is None
    unframed = agree(PEERS["no-content-length"])
    assert unframed is not None and unframed.body == b"hello"


@needs_ext
def test_register_contacts_are_still_checked() -> None:
    bad = PEERS["register-ipv6-via"].replace(b"Contact: <sip:1000@192.0.2.10:5062>",
                                             b"Contact: <sip:1000@192.0.2.10:5062>;;x")
    assert fast(bad) is not None  # read by the fast path; the contact check is Python's
    req = parser.parse(bad)
    assert req.problem is not None and req.problem.reason == "Bad Contact"
    assert req == python(bad)


@needs_ext
@pytest.mark.parametrize("name", sorted(PEERS))
def test_every_single_byte_mutation(name: str) -> None:
    base = PEERS[name]
    specials = b" \t\r\n:;,\"<>@[]=?%\\/\x00\x7f\xc3"
    accepted = 0
    for i in range(len(base)):
        for b in specials:
            for data in (base[:i] + bytes([b]) + base[i + 1:], base[:i] + bytes([b]) + base[i:]):
                accepted += agree(data) is not None
            assert agree(base[:i]) is None or base[:i].endswith(b"\r\n\r\n") or \
                b"\r\n\r\n" in base[:i]
    assert accepted > 0


@needs_ext
def test_the_corpus() -> None:
    manifest = CORPUS / "manifest.json"
    if not manifest.exists():
        pytest.fail(f"no manifest at {manifest}")
    messages = json.loads(manifest.read_text())["messages"]
    taken = 0
    for m in messages:
        taken += agree((CORPUS / m["file"]).read_bytes()) is not None
    assert len(messages) == 61
    assert 0 < taken < len(messages)  # the plain ones take it, the torture ones do not


@needs_ext
def test_not_bytes() -> None:
    fast_parse = parser._fast_parse
    assert fast_parse is not None
    with pytest.raises(TypeError):
        fast_parse("OPTIONS sip:a SIP/2.0\r\n\r\n")  # type: ignore[arg-type]  # on purpose: str


# ------------------------------------------------------------------ near-valid requests

TRICKY = st.sampled_from(["", " ", "\t", ";", ";;", "=", ",", '"', "<", ">", "@", ":",
                          "[", "]", "?", "%41", "\\", "tag", ";tag=", "TAG", "x", "é"])


@st.composite
def near_valid(draw: st.DrawFn) -> bytes:
    """A valid request with random, often odd, pieces put into its values."""
    base = draw(st.sampled_from(sorted(PEERS.values())))
    head, _, body = base.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        at = draw(st.integers(0, len(line)))
        cut = draw(st.integers(0, 3))
        lines[i] = line[:at] + draw(TRICKY) + line[at + cut:]
    if draw(st.booleans()):
        lines = [lines[0], *draw(st.permutations(lines[1:]))]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


@needs_ext
@given(near_valid())
@FAST
def test_near_valid_requests(data: bytes) -> None:
    agree(data)


@needs_ext
@given(st.binary(max_size=600))
@FAST
def test_any_bytes(data: bytes) -> None:
    agree(data)


# ------------------------------------------------------------------ datagrams in batches

def _pair(family: socket.AddressFamily, host: str) -> tuple[socket.socket, socket.socket]:
    server, peer = socket.socket(family, socket.SOCK_DGRAM), socket.socket(family,
                                                                          socket.SOCK_DGRAM)
    server.bind((host, 0))
    server.setblocking(False)
    peer.bind((host, 0))
    peer.settimeout(5)
    return server, peer


FAMILIES = [pytest.param(socket.AF_INET, "127.0.0.1", id="ipv4"),
            pytest.param(socket.AF_INET6, "::1", id="ipv6",
                         marks=pytest.mark.skipif(not has_ipv6_loopback(), reason="no ::1"))]


@pytest.mark.parametrize("compiled", [pytest.param(True, marks=needs_ext, id="compiled"),
                                      pytest.param(False, id="python")])
@pytest.mark.parametrize(("family", "host"), FAMILIES)
def test_recv_many_and_send_many(family: socket.AddressFamily, host: str, compiled: bool,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The transport's batch calls, compiled (recvmmsg/sendmmsg) and their Python twins:
    whole datagrams in order, at most 64 a call, [] when none waits; only Send effects
    sent (drops, hand-offs to another worker and events skipped, not counted as failures);
    more than one sendmmsg's worth sent in order."""
    from responder.core.effects import (
        Arrived,
        Dropped,
        Effect,
        Exchange,
        Handoff,
        Inbound,
        Send,
    )
    from responder.io import udp as transport

    if not compiled:
        monkeypatch.setattr(transport, "SPEEDUPS", None)
    server, peer = _pair(family, host)
    with server, peer:
        recv, send = transport.socket_io(server)
        assert recv() == []  # nothing waiting: no error, no exception
        sizes = [0, 1, 1500, 65507 if family == socket.AF_INET else 65487, *range(2, 80)]
        sent = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
        for data in sent:
            peer.sendto(data, server.getsockname()[:2])
        got: list[tuple[bytes, tuple[str, int]]] = []
        while len(got) < len(sent):
            batch = recv()
            assert 0 < len(batch) <= transport.MANY
            got += batch
        assert [d for d, _ in got] == sent
        assert {src for _, src in got} == {peer.getsockname()[:2]}
        source = got[0][1]
        drop = Exchange(0.0, source, "OPTIONS", "sip:x", "c", None, "drop", "r", 0.0)
        inbound = Inbound(b"handed", source)
        outs: list[Effect] = [Send(source, b"first", None), Dropped(drop), Handoff(1, inbound),
                              Arrived(1, 0.0, inbound, None, "not-sip"),
                              Send(source, b"last", None)]
        assert send(outs) == 0
        assert peer.recv(100) == b"first"
        assert peer.recv(100) == b"last"
        many: list[Effect] = [Send(source, b"%d" % i, None) for i in range(150)]
        assert send(many) == 0
        assert [peer.recv(100) for _ in many] == [b"%d" % i for i in range(150)]
        if compiled:  # an address it cannot read is counted, not sent (no name lookup)
            assert send([Send(("no-such-host", 5060), b"x", None)]) == 1


def test_the_same_bytes_with_and_without_the_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same seed, same datagrams: the compiled paths (parser, batch I/O) and the pure-Python
    ones send the same responses, byte for byte, in the same order."""
    manifest = json.loads((CORPUS / "manifest.json").read_text())["messages"]
    datagrams = [*PEERS.values(), *((CORPUS / m["file"]).read_bytes() for m in manifest)]
    outputs = []
    client: SipClient | None = None
    try:
        for pure in (False, True):
            if pure:
                monkeypatch.setenv("SIP_RESPONDER_PURE", "1")
            else:
                monkeypatch.delenv("SIP_RESPONDER_PURE", raising=False)
            with ResponderProcess("--seed", "7") as server:
                client = client or SipClient(server.address)
                client.server = server.address
                for data in datagrams:
                    client.send(data)
                got = client.recv_all_until(client.send_sentinel())
                port = b":%d" % server.address[1]
                # The SDP answers name the media socket, a free port of each run's own.
                media = server.wait_for_stderr(r"media on udp://[^ ]+:(\d+)").group(1)
                outputs.append([d.replace(port, b":PORT").replace(
                    b"m=audio %s " % media.encode(), b"m=audio MEDIA ") for d in got])
                assert server.stop() == 0
    finally:
        if client is not None:
            client.close()
    fast_out, pure_out = outputs
    assert len(fast_out) > len(PEERS)
    assert fast_out == pure_out


def test_two_servers_in_one_process_keep_their_datagrams_apart() -> None:
    """recv_many fills one C buffer: two servers in two threads of one process (as with
    responder.testing) must still each answer exactly their own requests."""
    from responder.testing import Responder

    def blast(address: tuple[str, int], label: str, n: int, out: dict[str, set[str]]) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(5)
            port = sock.getsockname()[1]
            sent = set()
            for i in range(n):
                call_id = f"{label}-{i}"
                sent.add(call_id)
                sock.sendto(msg(
                    f"OPTIONS sip:{label}@127.0.0.1 SIP/2.0",
                    f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{label}-{i}",
                    f"From: <sip:{label}@127.0.0.1>;tag={i}", f"To: <sip:{label}@127.0.0.1>",
                    f"Call-ID: {call_id}", "CSeq: 1 OPTIONS", "Content-Length: 0",
                ), address)
                if i % 50 == 49:  # stay within the socket buffers
                    for _ in range(50):
                        data = sock.recv(65535)
                        out[label].add(data.split(b"Call-ID: ")[1].split(b"\r\n")[0].decode())
            out[label + "-sent"] = sent

    got: dict[str, set[str]] = {"a": set(), "b": set()}
    with Responder(journal_size=1) as one, Responder(journal_size=1) as two:
        threads = [threading.Thread(target=blast, args=(one.address, "a", 2000, got)),
                   threading.Thread(target=blast, args=(two.address, "b", 2000, got))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert got["a"] == got["a-sent"] and got["b"] == got["b-sent"]


def test_send_many_is_given_only_a_send_type_it_can_read() -> None:
    """The compiled send_many reads dest and data at positions 0 and 1 of the type it is
    given: checked at load, so a reordered Send falls back to Python, never sends the
    wrong field."""
    from typing import NamedTuple

    from responder._accel import SPEEDUPS
    from responder.core.effects import Send
    from responder.io import udp

    class Reordered(NamedTuple):
        data: bytes
        dest: tuple[str, int]

    assert udp.send_fits(Send)
    assert not udp.send_fits(Reordered)
    assert not udp.send_fits(tuple)
    assert (SPEEDUPS is not None) == udp.COMPILED_SEND
