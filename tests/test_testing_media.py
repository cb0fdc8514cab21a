"""The pytest API for calls (SPEC §8.3): assert_media, dtmf, and the journal's media facts."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest

from responder.testing import Responder, SipClient


def offer(port: int) -> str:
    return (f"v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            f"a=rtpmap:101 telephone-event/8000\r\n")


def rtp(seq: int, pt: int = 0, ts: int | None = None, payload: bytes = bytes(160)) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, seq * 160 if ts is None else ts,
                       0x1234) + payload


def media_port(answer: str) -> int:
    line = next(x for x in answer.split("\r\n") if x.startswith("m=audio "))
    return int(line.split()[1])


@pytest.fixture
def call() -> Iterator[tuple[Responder, socket.socket, str, int]]:
    with Responder() as responder, SipClient(responder.address) as client, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rtp_sock:
        rtp_sock.bind(("127.0.0.1", 0))
        rtp_sock.settimeout(5.0)
        ok = client.invite(body=offer(rtp_sock.getsockname()[1]),
                           content_type="application/sdp").final
        assert ok.status == 200 and ok.header("content-type") == "application/sdp"
        call_id = ok.header("call-id")
        assert call_id is not None
        yield responder, rtp_sock, call_id, media_port(ok.body.decode())


def test_assert_media_sees_the_rtp_that_arrived_and_went_back(
        call: tuple[Responder, socket.socket, str, int]) -> None:
    responder, sock, call_id, port = call
    for seq in range(30):
        sock.sendto(rtp(seq), ("127.0.0.1", port))
    for _ in range(30):
        sock.recvfrom(2048)
    facts = responder.assert_media(call_id, packets_at_least=30, echoed_at_least=30)
    assert facts["payload_types"] == [0] and facts["bytes_in"] == 30 * 172
    with pytest.raises(AssertionError, match="wanted 31 RTP packets"):
        responder.assert_media(call_id, packets_at_least=31, timeout=0.05)
    with pytest.raises(AssertionError, match="no media for it"):
        responder.assert_media("no-such-call", timeout=0.05)


def test_dtmf_gives_the_digits_the_rtp_carried(
        call: tuple[Responder, socket.socket, str, int]) -> None:
    responder, sock, call_id, port = call
    seq = 0
    for event in (1, 2, 11):  # 1, 2, #: each as RFC 4733 sends it, the end three times
        for end in (False, False, True, True, True):
            seq += 1
            payload = struct.pack("!BBH", event, 0x80 if end else 0, 800)
            sock.sendto(rtp(seq, pt=101, ts=1000 * event, payload=payload),
                        ("127.0.0.1", port))
    responder.assert_media(call_id, packets_at_least=15)
    assert responder.dtmf(call_id) == "12#"
    assert responder.dtmf("no-such-call") == ""
