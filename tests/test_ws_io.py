"""SIP over WebSocket (RFC 7118) on real loopback sockets: ws: and wss:, the ``sip``
subprotocol required and echoed, one SIP message per WebSocket message, keep-alives."""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import pytest
from certs import Certs
from sip import Response, read_response, request
from test_stream_io import WAIT, Server, run, until

from responder.io.stream import STREAM_LIMITS
from responder.io.tls import TlsOptions
from responder.sip.addr import Addr

OPTIONS = request("OPTIONS")


def url(scheme: str, addr: Addr) -> str:
    return f"{scheme}://{addr[0]}:{addr[1]}/"


async def answer(ws: aiohttp.ClientWebSocketResponse) -> tuple[aiohttp.WSMsgType, Response]:
    msg = await ws.receive(timeout=WAIT)
    data = msg.data.encode() if msg.type is aiohttp.WSMsgType.TEXT else msg.data
    assert isinstance(data, bytes), msg
    return msg.type, read_response(data)


def test_ws_with_the_sip_subprotocol_answers_text_and_binary() -> None:
    async def main() -> None:
        async with Server() as srv, aiohttp.ClientSession() as http:
            addr = await srv.listen("ws")
            async with http.ws_connect(url("ws", addr), protocols=("sip",)) as ws:
                assert ws.protocol == "sip"  # echoed in Sec-WebSocket-Protocol
                await ws.send_str(OPTIONS.decode())
                kind, resp = await answer(ws)
                assert (kind, resp.status) == (aiohttp.WSMsgType.TEXT, 200)
                assert "received=127.0.0.1" in resp.one("Via")
                await ws.send_bytes(request("INFO", call_id="bin@t"))
                kind, resp = await answer(ws)
                assert resp.status == 200 and resp.one("Call-ID") == "bin@t"
                (first, _) = srv.arrived()
                assert first.inbound.transport == "ws" and first.inbound.conn == 1
                assert srv.streams.by_scheme() == {"ws": 1}
            await until(lambda: srv.streams.open_connections == 0)
    run(main)


@pytest.mark.parametrize("protocols", [(), ("foo",), ("SIPX", "sip2")])
def test_a_handshake_without_sip_is_refused(protocols: tuple[str, ...]) -> None:
    async def main() -> None:
        async with Server() as srv, aiohttp.ClientSession() as http:
            addr = await srv.listen("ws")
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(url("ws", addr), protocols=protocols)
            assert refused.value.status == 400
            assert srv.streams.counts["accepted"] == 0
            async with http.get(url("http", addr)) as plain:  # no upgrade at all
                assert plain.status == 426
    run(main)


def test_crlf_keepalive_in_a_message_and_websocket_pings() -> None:
    async def main() -> None:
        async with Server() as srv, aiohttp.ClientSession() as http:
            addr = await srv.listen("ws")
            async with http.ws_connect(url("ws", addr), protocols=("sip",),
                                       autoping=False) as ws:
                await ws.send_str("\r\n\r\n")
                msg = await ws.receive(timeout=WAIT)
                assert msg.data == "\r\n"
                await ws.ping(b"x")
                msg = await ws.receive(timeout=WAIT)
                assert (msg.type, msg.data) == (aiohttp.WSMsgType.PONG, b"x")
                assert srv.streams.counts["pongs"] == 1 and srv.engine.counters.received == 0
    run(main)


def test_wss_and_a_delayed_answer_over_its_websocket(certs: Certs) -> None:
    async def main() -> None:
        async with Server("INVITE->180,486/100ms") as srv, aiohttp.ClientSession() as http:
            addr = await srv.listen("wss", TlsOptions(str(certs.server_cert),
                                                      str(certs.server_key)))
            ctx = certs.client_context()
            async with http.ws_connect(url("wss", addr), protocols=("sip",), ssl=ctx) as ws:
                await ws.send_str(request("INVITE").decode())
                assert (await answer(ws))[1].status == 180
                assert (await answer(ws))[1].status == 486
                assert srv.arrived()[0].inbound.transport == "wss"
    run(main)


def test_an_idle_websocket_is_closed() -> None:
    async def main() -> None:
        async with Server(limits=STREAM_LIMITS._replace(idle=0.2)) as srv, \
                aiohttp.ClientSession() as http:
            addr = await srv.listen("ws")
            async with http.ws_connect(url("ws", addr), protocols=("sip",)) as ws:
                msg = await ws.receive(timeout=WAIT)
                assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert srv.streams.counts["idle-closed"] == 1
    run(main)


def test_a_websocket_message_past_the_bound_closes_it() -> None:
    async def main() -> None:
        async with Server() as srv, aiohttp.ClientSession() as http:
            addr = await srv.listen("ws")
            async with http.ws_connect(url("ws", addr), protocols=("sip",)) as ws:
                await ws.send_bytes(b"x" * 70_000)
                msg = await ws.receive(timeout=WAIT)
                assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            await until(lambda: srv.streams.open_connections == 0)
            assert srv.engine.counters.received == 0
    run(main)


def test_a_wss_client_must_trust_us(certs: Certs) -> None:
    async def main() -> None:
        async with Server() as srv, aiohttp.ClientSession() as http:
            addr = await srv.listen("wss", TlsOptions(str(certs.server_cert),
                                                      str(certs.server_key)))
            with pytest.raises(aiohttp.ClientConnectorError):
                await asyncio.wait_for(http.ws_connect(url("wss", addr), protocols=("sip",),
                                                       ssl=ssl.create_default_context()),
                                       WAIT)
    run(main)
