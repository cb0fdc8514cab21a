"""The test toolkit over WebSocket (issue 14, RFC 7118): SipClient and AsyncSipClient
speaking ``ws`` and ``wss`` to a Responder, a Responder probing over WebSocket, the pytest
plugin's ``sip_transport``, and the client's edges against a hand-written ``websockets``
server (closed connection, fragments, pings, keep-alives, a refused upgrade)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from certs import Certs
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve
from websockets.typing import Subprotocol

from responder.testing import (
    AsyncSipClient,
    Responder,
    SipClient,
    SipResponse,
    controller,
    websocket,
)

pytest_plugins = ["pytester"]

# aiohttp (the responder's WebSocket side) imported here, at collection, not first inside a
# pytester in-process run: that run's module snapshot would drop aiohttp while its compiled
# WebSocket reader keeps the first WSMsgType, and a later ws listener would read no message.
importlib.import_module("responder.io.ws")

OFFER = ("v=0\r\no=me 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
         "m=audio 40000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
         "a=rtpmap:101 telephone-event/8000\r\n")
INVALID_VIA = r"SIP/2\.0/{} [0-9a-f]{{12}}\.invalid;branch=z9hG4bK[0-9a-f]+;rport"


@pytest.fixture(scope="module")
def server(certs: Certs) -> Iterator[Responder]:
    with Responder(transports=("udp", "ws", "wss"), tls_cert=certs.server_cert,
                   tls_key=certs.server_key, seed=5) as responder:
        yield responder


@pytest.fixture
def responder(server: Responder) -> Responder:
    server.reset()
    return server


def bye(client: SipClient, ok: SipResponse) -> SipResponse:
    """BYE in the dialog the 200 ``ok`` made."""
    dialog = {"From": ok.header("from") or "", "To": ok.header("to") or "",
              "Call-ID": ok.header("call-id") or "", "CSeq": "2 BYE"}
    return client.request("BYE", "1000", headers=dialog).final


@pytest.mark.parametrize("transport", ["ws", "wss"])
def test_options_and_a_call_over_ws_and_wss(responder: Responder, certs: Certs,
                                            transport: str) -> None:
    with SipClient(responder.address_of(transport), transport=transport,
                   ca=certs.ca) as client:
        assert client.transport == transport
        options = client.options(responder.uri(transport=transport))
        assert options.status == 200
        # RFC 7118 §5: a random .invalid host; the responder adds received and rport
        port = client.local_address[1]
        assert re.fullmatch(INVALID_VIA.format(transport.upper()) +
                            f"={port};received=127\\.0\\.0\\.1", options.header("via") or "")
        calls = client.invite(responder.uri("1000", transport), body=OFFER)
        assert calls.statuses == [100, 180, 200]
        ok = calls.final
        assert "a=rtpmap:8 PCMA/8000" in ok.body.decode()
        assert (ok.header("contact") or "").endswith(";transport=ws>")  # ws for wss too
        assert bye(client, ok).status == 200

    [invite] = responder.assert_answered("INVITE", [100, 180, 200], user="1000")
    assert invite.transport == transport
    assert re.fullmatch(INVALID_VIA.format(transport.upper()), invite.header("via") or "")
    assert re.fullmatch(r"<sip:client@[0-9a-f]{12}\.invalid;transport=ws>",
                        invite.header("contact") or "")
    [ack] = responder.assert_received("ACK", count=1)
    assert ack.transport == transport
    [ended] = responder.assert_answered("BYE", [200], count=1)
    assert ended.transport == transport
    assert [e.transport for e in responder.requests("OPTIONS")] == [transport]


def test_a_delayed_rule_and_a_cancel_over_ws(responder: Responder) -> None:
    responder.set_rules("INVITE->180,486/5s")
    with SipClient(responder.address_of("ws"), transport="ws") as client:
        assert client.invite("2000", until="provisional").statuses == [180]
        ok, terminated = client.cancel()
        assert (ok.status, terminated.status) == (200, 487)
    responder.assert_answered("INVITE", [180, 487], user="2000")
    [ack] = responder.assert_received("ACK", count=1)
    assert ack.transport == "ws"


def test_async_client_over_ws_and_wss(responder: Responder, certs: Certs) -> None:
    async def main() -> list[list[int]]:
        out = []
        for transport in ("ws", "wss"):
            async with AsyncSipClient(responder.address_of(transport), transport=transport,
                                      ca=certs.ca) as client:
                assert (await client.options()).status == 200
                out.append((await client.invite("1000")).statuses)
        return out

    assert asyncio.run(main()) == [[100, 180, 200]] * 2
    acks = responder.assert_received("ACK", count=2)  # (the last one sent by aclose())
    assert [e.transport for e in acks] == ["ws", "wss"]


def test_wss_refuses_a_certificate_its_ca_did_not_sign(certs: Certs) -> None:
    # a server whose certificate another CA signed: the client trusting our CA refuses it
    with Responder(transports=("udp", "wss"), tls_cert=certs.rogue_cert,
                   tls_key=certs.rogue_key) as rogue:
        where = rogue.address_of("wss")
        with pytest.raises(ssl.SSLCertVerificationError):
            SipClient(where, transport="wss", ca=certs.ca)

        async def connect() -> None:
            async with AsyncSipClient(where, transport="wss", ca=certs.ca) as client:
                await client.options()

        with pytest.raises(ssl.SSLCertVerificationError):
            asyncio.run(connect())
        assert rogue.journal == []
        with pytest.raises(ValueError, match="transport='wss' needs ca="):
            SipClient(where, transport="wss")
    with Responder(transports=("wss",), tls_cert=certs.server_cert,
                   tls_key=certs.server_key) as good:
        with pytest.raises(ssl.SSLCertVerificationError):  # the system's CAs did not sign it
            SipClient(good.address, transport="wss",
                      ssl_context=ssl.create_default_context())
        with SipClient(good.address, transport="wss",
                       ssl_context=certs.client_context()) as client:
            assert client.options().status == 200


def test_a_websocket_only_responder_probes_over_ws() -> None:
    with Responder("INVITE->486", transports=("ws",)) as server:
        assert server.counters.methods["OPTIONS"] == 1  # start() waited on a real OPTIONS
        assert server.journal == []  # and forgot it
        with SipClient(server.address, transport="ws") as client:
            assert client.invite("1000").statuses == [486]
        server.reset()  # the probe goes over ws, after the ACK: the journal stays empty
        assert server.counters.methods["OPTIONS"] == 2
        assert server.journal == []


def test_without_the_websockets_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(websocket, "available", lambda: False)
    monkeypatch.setattr(controller, "ws_available", lambda: False)
    with pytest.raises(ModuleNotFoundError, match="pip install websockets"):
        SipClient(("127.0.0.1", 5060), transport="ws")
    with Responder(transports=("ws",)) as server:  # starts without a probe, as before
        assert server.counters.methods["OPTIONS"] == 0


def test_ws_to_a_port_that_speaks_no_websocket() -> None:
    with Responder(transports=("tcp",)) as server, \
            pytest.raises(ConnectionError, match="before it answered the WebSocket upgrade"):
        SipClient(server.address, transport="ws")


# --------------------------------------------------------------------------- edges


def answer(request: str, status: str, body: str = "") -> str:
    """A response copying the request's Via, From, To, Call-ID and CSeq."""
    keep = [line for line in request.split("\r\n")
            if re.match(r"(?i)(via|from|to|call-id|cseq):", line)]
    return "\r\n".join([f"SIP/2.0 {status}", *keep, f"Content-Length: {len(body)}"]) + \
        "\r\n\r\n" + body


class WsPeer:
    """A hand-written WebSocket server (the ``websockets`` library's): ``handler`` gets
    the connection and the first request; whatever it raises fails the test."""

    def __init__(self, handler: Callable[[ServerConnection, str], None],
                 subprotocols: list[str] | None = None, refuse: bool = False) -> None:
        def process_request(conn: ServerConnection, _: object) -> object:
            return conn.respond(403, "no\n") if refuse else None

        self.handler = handler
        self.errors: list[BaseException] = []
        self.kinds: list[type] = []  # of the first request: str (text) or bytes (binary)
        self.done = threading.Event()
        offered = [Subprotocol(p) for p in subprotocols] if subprotocols else None
        self.server: Server = serve(self.run, "127.0.0.1", 0, subprotocols=offered,
                                    process_request=process_request)  # type: ignore[arg-type]
        self.address = self.server.socket.getsockname()[:2]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def run(self, conn: ServerConnection) -> None:
        try:
            request = conn.recv(timeout=5)
            self.kinds.append(type(request))
            text = request if isinstance(request, str) else request.decode("utf-8", "replace")
            self.handler(conn, text)
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            self.done.set()

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(5)
        if self.errors:
            raise self.errors[0]


def test_a_connection_closed_by_the_server_says_so() -> None:
    def handler(conn: ServerConnection, request: str) -> None:
        conn.send(answer(request, "100 Trying"))
        conn.close()

    peer = WsPeer(handler, ["sip"])
    with SipClient(peer.address, transport="ws") as client, \
            pytest.raises(ConnectionError, match=r"closed the connection.*it received: 100"):
        client.request("MESSAGE", "1000", timeout=5)
    peer.close()


def test_fragments_pings_and_keepalives() -> None:
    pong = threading.Event()

    def handler(conn: ServerConnection, request: str) -> None:
        assert conn.subprotocol == "sip"
        conn.send("\r\n\r\n")  # a keep-alive: no message for the client
        if conn.ping().wait(5):  # answered while the client waits for its response
            pong.set()
        conn.send(answer(request, "180 Ringing").encode() + b"\xff")  # binary, not UTF-8
        ok = answer(request, "200 OK", "hello")
        conn.send([ok[:10], ok[10:40], ok[40:]])  # one message in three fragments
        with contextlib.suppress(ConnectionClosed):  # until the client closes
            conn.recv(timeout=5)

    peer = WsPeer(handler, ["sip"])
    with SipClient(peer.address, transport="ws") as client:
        responses = client.request("MESSAGE", "1000", timeout=5)
        assert responses.statuses == [180, 200]
        assert responses.final.body == b"hello"
        assert client._core.strays == []  # (the keep-alive was no message)
    assert pong.is_set()
    peer.close()


def test_an_upgrade_never_answered_times_out() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (backlog), never reads
        address = silent.getsockname()[:2]
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"no answer to the WebSocket upgrade.*0\.3s"):
            SipClient(address, transport="ws", timeout=0.3)
        assert time.monotonic() - started < 2

        async def connect() -> None:
            async with AsyncSipClient(address, transport="ws", timeout=0.3):
                pass

        with pytest.raises(TimeoutError, match="no answer to the WebSocket upgrade"):
            asyncio.run(connect())


def test_a_message_over_the_cap_closes_the_connection() -> None:
    def handler(conn: ServerConnection, request: str) -> None:
        conn.send(answer(request, "200 OK", "x" * websocket.MAX_WS_MESSAGE))
        with contextlib.suppress(ConnectionClosed):
            conn.recv(timeout=5)

    peer = WsPeer(handler, ["sip"])
    with SipClient(peer.address, transport="ws") as client, \
            pytest.raises(ConnectionError, match=r"sent what is no WebSocket message"):
        client.request("MESSAGE", "1000", timeout=5)
    peer.close()


def test_a_server_without_the_sip_subprotocol_or_refusing_is_named() -> None:
    peer = WsPeer(lambda conn, request: None)  # no subprotocol echoed
    with pytest.raises(ConnectionError, match="did not accept the sip subprotocol"):
        SipClient(peer.address, transport="ws")
    peer.server.shutdown()
    peer.thread.join(5)
    refusing = WsPeer(lambda conn, request: None, ["sip"], refuse=True)
    with pytest.raises(ConnectionError, match=r"refused the WebSocket upgrade.*HTTP 403"):
        SipClient(refusing.address, transport="ws")
    refusing.server.shutdown()
    refusing.thread.join(5)


def test_binary_requests_go_as_binary_messages() -> None:
    got: list[object] = []

    def handler(conn: ServerConnection, request: str) -> None:
        got.append(request)

    peer = WsPeer(handler, ["sip"])
    with SipClient(peer.address, transport="ws") as client:
        client.send_raw(b"MESSAGE sip:x SIP/2.0\r\nContent-Length: 1\r\n\r\n\xff", wait=False)
        assert peer.done.wait(5)
    peer.close()
    assert got == ["MESSAGE sip:x SIP/2.0\r\nContent-Length: 1\r\n\r\n\ufffd"]
    assert peer.kinds == [bytes]


# --------------------------------------------------------------------------- the plugin


def test_plugin_over_ws_and_wss(pytester: pytest.Pytester, certs: Certs) -> None:
    paths = {k: str(v) for k, v in vars(certs).items() if isinstance(v, Path)}
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(f"""
        import pytest

        @pytest.fixture(scope="session")
        def sip_responder_options():
            return {{"transports": ("udp", "ws", "wss"), "tls_cert": {paths['server_cert']!r},
                    "tls_key": {paths['server_key']!r}}}

        @pytest.fixture
        def sip_client_options():
            return {{"ca": {paths['ca']!r}}}

        @pytest.mark.parametrize("sip_transport", ["ws", "wss"])
        def test_each(sip_responder, sip_client, sip_transport):
            assert sip_client.transport == sip_transport
            assert sip_client.invite(sip_responder.uri("1000")).statuses == [100, 180, 200]
            [ack] = sip_responder.assert_received("ACK", count=1)
            assert ack.transport == sip_transport

        def test_factory(sip_responder, sip_client_factory):
            ws, udp = sip_client_factory("ws"), sip_client_factory()
            assert ws.remote_address == sip_responder.address_of("ws")
            assert ws.options().status == udp.options().status == 200
            assert [e.transport for e in sip_responder.journal] == ["ws", "udp"]
    """)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=3)
