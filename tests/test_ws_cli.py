"""SIP over WebSocket (RFC 7118) end to end: the console script listening on ``ws:`` and
``wss:``, and the ``websockets`` library as the client (another implementation than the
aiohttp server side): REGISTER, then a whole call (INVITE with an offer, 100/180/200 with
the answer, ACK, BYE) over one WebSocket, as a WebRTC client (JsSIP, SIP.js) does it.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest
from certs import Certs
from sip import Response, read_response, request
from support import ResponderProcess
from websockets.sync.client import ClientConnection, connect

OFFER = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
         b"m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
VIA = "127.0.0.1:0;transport=ws"


@pytest.fixture
def server(certs: Certs) -> Iterator[ResponderProcess]:
    with ResponderProcess("-q", "--tls-cert", str(certs.server_cert), "--tls-key",
                          str(certs.server_key),
                          listen=("ws:127.0.0.1:0", "wss:127.0.0.1:0")) as running:
        yield running
        assert running.stop() == 0
        assert "Traceback" not in running.stderr_text()


def ws_request(method: str, **kw: object) -> bytes:
    data = request(method, via_host="df7jal23ls0d.invalid", **kw)  # type: ignore[arg-type]
    return data.replace(b"SIP/2.0/UDP", b"SIP/2.0/WS")


def exchange(ws: ClientConnection, data: bytes, count: int) -> list[Response]:
    ws.send(data.decode())
    return [read_response(got.encode() if isinstance(got, str) else got)
            for got in (ws.recv(timeout=5) for _ in range(count))]


def call(ws: ClientConnection) -> None:
    (registered,) = exchange(ws, ws_request("REGISTER", extra="Contact: <sip:a@df7jal23ls0d"
                                                              ".invalid;transport=ws>\r\n"
                                                              "Expires: 600\r\n"), 1)
    assert registered.status == 200 and "transport=ws" in registered.one("Contact")
    invite = ws_request("INVITE", call_id="ws-call", branch="z9hG4bK-wsi",
                        extra="Contact: <sip:a@df7jal23ls0d.invalid;transport=ws>\r\n"
                              "Content-Type: application/sdp\r\n")
    invite = invite.replace(b"Content-Length: 0", b"Content-Length: %d" % len(OFFER)) + OFFER
    statuses = exchange(ws, invite, 3)
    assert [r.status for r in statuses] == [100, 180, 200]
    ok = statuses[-1]
    assert ok.one("Contact").endswith(";transport=ws>") and b"m=audio" in ok.body
    tag = ok.to_tag
    to = f"<sip:1000@lab.example>;tag={tag}"
    ws.send(ws_request("ACK", call_id="ws-call", branch="z9hG4bK-wsa", to=to).decode())
    (bye,) = exchange(ws, ws_request("BYE", call_id="ws-call", branch="z9hG4bK-wsb", to=to,
                                     cseq=2), 1)
    assert bye.status == 200 and bye.one("CSeq") == "2 BYE"


def test_a_websocket_client_registers_and_calls_over_ws(server: ResponderProcess) -> None:
    host, port = server.listener("ws")
    with connect(f"ws://{host}:{port}", subprotocols=["sip"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "sip"
        call(ws)


def test_a_websocket_client_registers_and_calls_over_wss(server: ResponderProcess,
                                                         certs: Certs) -> None:
    host, port = server.listener("wss")
    context = ssl.create_default_context(cafile=str(certs.ca))
    with connect(f"wss://{host}:{port}", subprotocols=["sip"],  # type: ignore[list-item]
                 ssl=context) as ws:
        assert ws.subprotocol == "sip"
        call(ws)


def test_without_the_sip_subprotocol_the_handshake_is_refused(server: ResponderProcess) -> None:
    host, port = server.listener("ws")
    with pytest.raises(Exception, match="400"):
        connect(f"ws://{host}:{port}", open_timeout=5)


def test_a_webrtc_offer_is_refused_with_488_as_we_have_no_dtls_srtp(
        server: ResponderProcess) -> None:
    """Browsers offer only UDP/TLS/RTP/SAVPF (DTLS-SRTP, ICE), which the media socket does
    not speak: the answer is 488 with Warning 305 (docs/transports.md), never a 200 whose
    media could not flow."""
    host, port = server.listener("ws")
    webrtc = OFFER.replace(b"RTP/AVP", b"UDP/TLS/RTP/SAVPF")
    invite = ws_request("INVITE", call_id="webrtc", branch="z9hG4bK-wr",
                        extra="Content-Type: application/sdp\r\n")
    invite = invite.replace(b"Content-Length: 0", b"Content-Length: %d" % len(webrtc)) + webrtc
    with connect(f"ws://{host}:{port}", subprotocols=["sip"]) as ws:  # type: ignore[list-item]
        (refused,) = exchange(ws, invite, 1)
    assert refused.status == 488 and refused.one("Warning").startswith("305 ")
