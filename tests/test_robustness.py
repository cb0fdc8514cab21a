"""No datagram, however malformed or large, stops the server or delays other requests."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from support import ResponderProcess, statuses, unique

MAX_UDP = 65507


def _valid(n_headers: int = 0, via_values: int = 1, header_len: int = 10,
           via_pad: int = 0) -> bytes:
    pad = f";x={'v' * via_pad}" if via_pad else ""
    vias = ", ".join(f"SIP/2.0/UDP 192.0.2.{i % 250}:5060;branch=z9hG4bK{i}{pad}"
                     for i in range(via_values))
    extra = "".join(f"X-Pad-{i}: {'p' * header_len}\r\n" for i in range(n_headers))
    return (f"OPTIONS sip:big@127.0.0.1 SIP/2.0\r\nVia: {vias}\r\n"
            f"From: <sip:a@b>;tag=1\r\nTo: <sip:big@127.0.0.1>\r\nCall-ID: {unique()}\r\n"
            f"CSeq: 1 OPTIONS\r\n{extra}Content-Length: 0\r\n\r\n").encode()


PATHOLOGICAL = {
    "largest-datagram-of-zeros": b"\x00" * MAX_UDP,
    "largest-datagram-random": os.urandom(MAX_UDP),
    "thousands-of-headers": _valid(n_headers=3000)[:MAX_UDP],
    "one-huge-header": _valid(n_headers=1, header_len=60000),
    "thousand-vias": _valid(via_values=1000),
    "long-uri-no-at": b"OPTIONS sip:" + b"a" * 60000 + b"< SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9"
                      b"hG4bK1\r\n\r\n",
    "long-display-name": (b"OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
                          b"From: " + b"a " * 30000 + b", <sip:a@b>;tag=1\r\n\r\n"),
    "endless-folding": b"OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nX:"
                       + b"\r\n x" * 15000 + b"\r\n\r\n",
    "only-line-feeds": b"\n" * MAX_UDP,
    "quotes-everywhere": b'OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1, '
                         + b'"' * 60000 + b"\r\n\r\n",
}


@pytest.fixture(scope="module")
def server() -> Iterator[ResponderProcess]:
    with ResponderProcess("-q") as proc:
        yield proc
        assert proc.stop() == 0


@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_datagram_does_not_stall_the_server(
        server: ResponderProcess, name: str) -> None:
    with server.client() as client:
        start = time.monotonic()
        client.send(PATHOLOGICAL[name])
        client.send(client.request("OPTIONS", call_id=unique()))
        answers = []
        while True:
            dgram = client.recv(timeout=2.0)
            assert dgram is not None, f"no answer after {name}"
            answers.append(dgram.data)
            if b"CSeq: 1 OPTIONS" in dgram.data and b"Call-ID: t" in dgram.data:
                break
        assert time.monotonic() - start < 1.0, f"{name} delayed the next request"
        assert all(a.startswith(b"SIP/2.0 ") for a in answers)
    assert server.alive


def test_a_response_too_big_for_udp_is_not_fatal(server: ResponderProcess) -> None:
    # 128 long Via values (the parser's cap; a request just under the limit) copied into a
    # response, with received= and the headers we add, overflow a datagram: the send
    # fails, the server goes on.
    with server.client() as client:
        request = _valid(via_values=128, via_pad=461)
        assert 65_300 < len(request) <= MAX_UDP
        client.send(request)
        assert statuses(client.exchange(client.request("OPTIONS", call_id=unique()))) == [200]
