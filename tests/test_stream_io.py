"""TCP and TLS on real loopback sockets (SPEC §9): the engine behind io/stream.py, with
certificates made at test time. Waits are on conditions with bounded timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from certs import Certs
from sip import Response, read_response, request

from responder.core.effects import Arrived, Effect, Inbound, Send
from responder.core.engine import Engine
from responder.io.listeners import open_stream
from responder.io.stream import STREAM_LIMITS, Conn, StreamLimits, StreamTransport
from responder.io.tls import TlsOptions
from responder.rules.loader import build_ruleset
from responder.sip.addr import Addr
from responder.sip.seeded import Seeded

WAIT = 5.0


async def until(cond: Callable[[], bool], timeout: float = WAIT) -> None:
    """Wait for ``cond`` (checked every 10 ms), failing after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.01)


class Server:
    """An engine with one-line rules behind a StreamTransport, on 127.0.0.1:0."""

    def __init__(self, *rules: str, limits: StreamLimits = STREAM_LIMITS) -> None:
        self.engine = Engine(build_ruleset(None, list(rules)), Seeded(1), record=True)
        self.effects: list[Effect] = []
        self.elsewhere: list[Effect] = []
        self.streams = StreamTransport(asyncio.get_running_loop(), self.engine,
                                       self.effects.extend, limits, self.elsewhere.extend)
        self.clients: list[Client] = []

    async def connect(self, addr: Addr, tls: ssl.SSLContext | None = None,
                      sock: socket.socket | None = None) -> Client:
        if sock is not None:
            r, w = await asyncio.open_connection(sock=sock, ssl=tls)
        else:
            r, w = await asyncio.wait_for(asyncio.open_connection(*addr, ssl=tls), WAIT)
        self.clients.append(Client(r, w))
        return self.clients[-1]

    async def listen(self, scheme: str = "tcp", tls: TlsOptions | None = None) -> Addr:
        _, addr = await open_stream(self.streams, scheme, "127.0.0.1", 0, tls)
        return addr

    def arrived(self) -> list[Arrived]:
        return [e for e in self.effects if isinstance(e, Arrived)]

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in self.clients:
            client.writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.writer.wait_closed(), WAIT)
        await self.streams.close()


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self) -> Response:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), WAIT)
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        body = await asyncio.wait_for(self.reader.readexactly(length), WAIT)
        return read_response(head + body)

    async def at_eof(self) -> bool:
        """True when the server closed the connection (after what it sent)."""
        try:
            rest = await asyncio.wait_for(self.reader.read(), WAIT)
        except (ConnectionError, ssl.SSLError):
            return True
        return rest == b""

    def close(self) -> None:
        self.writer.close()


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    """On asyncio's loop, or uvloop's (the server's choice) with STREAM_TEST_LOOP=uvloop."""
    if os.environ.get("STREAM_TEST_LOOP") == "uvloop":
        import uvloop
        return uvloop.run(main())  # type: ignore[arg-type]
    return asyncio.run(main())  # type: ignore[arg-type]


OPTIONS = request("OPTIONS")


def invite(branch: str = "z9hG4bK-i1", call_id: str = "c1@test") -> bytes:
    return request("INVITE", branch=branch, call_id=call_id, via_host="192.0.2.10:5062")


def test_options_over_tcp_is_answered_over_its_connection_with_received() -> None:
    async def main() -> None:
        async with Server() as srv:
            client = await srv.connect(await srv.listen("tcp"))
            await client.send(OPTIONS)
            resp = await client.response()
            assert resp.status == 200
            assert "received=127.0.0.1" in resp.one("Via")  # SPEC §4 on streams too
            (arrived,) = srv.arrived()
            assert arrived.inbound.transport == "tcp" and arrived.inbound.conn == 1
            assert srv.streams.messages == 1 and srv.streams.open_connections == 1
            client.close()
            await until(lambda: srv.streams.open_connections == 0)
            assert srv.streams.counts["closed"] == 1
    run(main)


def test_a_message_split_over_segments_and_two_in_one_segment() -> None:
    async def main() -> None:
        async with Server() as srv:
            client = await srv.connect(await srv.listen("tcp"))
            at = OPTIONS.index(b"Content-Length") + 9
            for piece in (OPTIONS[:5], OPTIONS[5:at], OPTIONS[at:]):
                await client.send(piece)
                await asyncio.sleep(0)  # a segment each (best effort; correctness needs none)
            assert (await client.response()).status == 200
            two = request("OPTIONS", call_id="x@t") + b"\r\n" + request("INFO", call_id="y@t")
            await client.send(two)
            first, second = await client.response(), await client.response()
            assert (first.one("Call-ID"), second.one("Call-ID")) == ("x@t", "y@t")
            client.close()
    run(main)


def test_a_double_crlf_gets_one_crlf_and_the_connection_stays() -> None:
    async def main() -> None:
        async with Server() as srv:
            client = await srv.connect(await srv.listen("tcp"))
            await client.send(b"\r\n\r\n")
            assert await asyncio.wait_for(client.reader.readexactly(2), WAIT) == b"\r\n"
            await client.send(OPTIONS)
            assert (await client.response()).status == 200
            assert srv.streams.counts["pongs"] == 1
            client.close()
    run(main)


def test_no_content_length_gets_400_then_the_connection_closes() -> None:
    async def main() -> None:
        async with Server() as srv:
            client = await srv.connect(await srv.listen("tcp"))
            await client.send(OPTIONS.replace(b"Content-Length: 0\r\n", b""))
            resp = await client.response()
            assert (resp.status, resp.reason) == (400, "Missing Content-Length")
            assert await client.at_eof()
            assert srv.streams.counts["refused:no-content-length"] == 1
            sent = [e for e in srv.effects if isinstance(e, Send)]
            assert sent[0].exchange is not None and sent[0].exchange.status == 400
    run(main)


def test_past_the_message_bound_a_513_or_a_close_and_nothing_buffered() -> None:
    async def main() -> None:
        async with Server() as srv:
            addr = await srv.listen("tcp")
            big = await srv.connect(addr)
            await big.send(OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 70000"))
            assert (await big.response()).status == 513
            assert await big.at_eof()
            endless = await srv.connect(addr)
            with contextlib.suppress(ConnectionError):  # the server may reset it first
                await endless.send(b"OPTIONS sip:a SIP/2.0\r\n" + b"X: y\r\n" * 12_000)
            assert await endless.at_eof()
            assert srv.streams.counts["refused:too-large"] == 2
            assert srv.engine.counters.received == 0
    run(main)


def test_delayed_steps_go_over_the_connection_of_their_request() -> None:
    async def main() -> None:
        async with Server("INVITE->180,486/100ms") as srv:
            client = await srv.connect(await srv.listen("tcp"))
            await client.send(invite())
            assert (await client.response()).status == 180
            assert (await client.response()).status == 486  # driven by Engine.due
            assert not srv.elsewhere
            client.close()
    run(main)


def test_a_delayed_answer_whose_connection_closed_is_counted_not_sent_by_udp() -> None:
    async def main() -> None:
        async with Server("INVITE->180,486/200ms") as srv:
            client = await srv.connect(await srv.listen("tcp"))
            await client.send(invite())
            assert (await client.response()).status == 180
            client.close()
            await until(lambda: srv.streams.counts["lost"] == 1)
            assert not srv.elsewhere and srv.engine.pending == 0
    run(main)


def test_cancel_on_another_connection_meets_its_invite() -> None:
    async def main() -> None:
        async with Server("INVITE->180,200/5s") as srv:
            addr = await srv.listen("tcp")
            a, b = await srv.connect(addr), await srv.connect(addr)
            await a.send(invite("z9hG4bK-cx"))
            assert (await a.response()).status == 180
            await b.send(request("CANCEL", branch="z9hG4bK-cx", call_id="c1@test"))
            ok = await b.response()
            assert (ok.status, ok.one("CSeq")) == (200, "1 CANCEL")
            terminated = await a.response()  # over the INVITE's connection
            assert (terminated.status, terminated.one("CSeq")) == (487, "1 INVITE")
            a.close()
            b.close()
    run(main)


def test_over_tls_the_inbound_says_tls(certs: Certs) -> None:
    async def main() -> None:
        async with Server() as srv:
            addr = await srv.listen("tls", TlsOptions(str(certs.server_cert),
                                                      str(certs.server_key)))
            client = await srv.connect(addr, certs.client_context())
            await client.send(OPTIONS + b"\r\n\r\n")
            assert (await client.response()).status == 200
            assert await asyncio.wait_for(client.reader.readexactly(2), WAIT) == b"\r\n"
            assert srv.arrived()[0].inbound.transport == "tls"
            client.close()
    run(main)


def test_mutual_tls_takes_a_client_signed_by_the_ca_and_refuses_others(certs: Certs) -> None:
    async def refused(srv: Server, addr: Addr, ctx: ssl.SSLContext) -> bool:
        try:
            client = await srv.connect(addr, ctx)
            await client.send(OPTIONS)
            return await client.at_eof()  # TLS 1.3: the server's alert comes after
        except (ssl.SSLError, ConnectionError):
            return True

    async def main() -> None:
        async with Server() as srv:
            addr = await srv.listen("tls", TlsOptions(str(certs.server_cert),
                                                      str(certs.server_key), str(certs.ca)))
            good = await srv.connect(addr, certs.client_context(certs.client_cert,
                                                                   certs.client_key))
            await good.send(OPTIONS)
            assert (await good.response()).status == 200
            assert await refused(srv, addr, certs.client_context(certs.rogue_cert,
                                                                 certs.rogue_key))
            assert await refused(srv, addr, certs.client_context())  # no certificate at all
            await until(lambda: srv.streams.counts["handshake-failed"] == 2)
            assert srv.engine.counters.received == 1
            good.close()
    run(main)


def test_a_tls_handshake_that_never_comes_is_cut_at_the_bound(certs: Certs) -> None:
    async def main() -> None:
        limits = STREAM_LIMITS._replace(handshake=0.2)
        async with Server(limits=limits) as srv:
            addr = await srv.listen("tls", TlsOptions(str(certs.server_cert),
                                                      str(certs.server_key)))
            silent = await srv.connect(addr)  # plain TCP: says nothing
            await until(lambda: srv.streams.open_connections == 1)  # counted in its handshake
            assert await silent.at_eof()
            await until(lambda: srv.streams.counts["handshake-failed"] == 1)
            assert srv.streams.open_connections == 0
    run(main)


def accepted(srv: Server, n: int) -> Callable[[], bool]:
    return lambda: srv.streams.counts["accepted"] == n


def test_past_the_connection_bound_the_least_recently_active_closes() -> None:
    async def main() -> None:
        async with Server(limits=STREAM_LIMITS._replace(connections=3)) as srv:
            addr = await srv.listen("tcp")
            clients = []
            for i in range(1, 4):
                clients.append(await srv.connect(addr))
                await until(accepted(srv, i))
            for c in clients[1:]:  # the first is now the least recently active
                await c.send(OPTIONS)
                await c.response()
            fourth = await srv.connect(addr)
            assert await clients[0].at_eof()
            for c in [*clients[1:], fourth]:
                await c.send(OPTIONS)
                assert (await c.response()).status == 200
            assert srv.streams.counts["evicted"] == 1 and srv.streams.open_connections == 3
            for c in [*clients[1:], fourth]:
                c.close()
    run(main)


def test_an_idle_connection_is_closed_and_an_active_one_is_not() -> None:
    async def main() -> None:
        async with Server(limits=STREAM_LIMITS._replace(idle=0.5)) as srv:
            addr = await srv.listen("tcp")
            idle, busy = await srv.connect(addr), await srv.connect(addr)
            loop = asyncio.get_running_loop()
            end = loop.time() + 1.0
            while loop.time() < end:  # the busy one pings every 50 ms for 1 s
                await busy.send(b"\r\n\r\n")
                assert await asyncio.wait_for(busy.reader.readexactly(2), WAIT) == b"\r\n"
                await asyncio.sleep(0.05)
            assert await idle.at_eof()
            assert srv.streams.counts["idle-closed"] == 1
            await busy.send(OPTIONS)
            assert (await busy.response()).status == 200
            busy.close()
    run(main)


def test_a_peer_that_does_not_read_stops_being_read() -> None:
    async def main() -> None:
        limits = STREAM_LIMITS._replace(write_high=16 * 1024)
        async with Server(limits=limits) as srv:
            addr = await srv.listen("tcp")
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, addr)
            client = await srv.connect(addr, sock=sock)
            await until(lambda: srv.streams.open_connections == 1)
            (conn,) = srv.streams.conns.values()
            transport = conn.transport  # type: ignore[attr-defined]
            transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET,
                                                          socket.SO_SNDBUF, 4096)
            count = 3000
            sender = asyncio.ensure_future(client.send(b"".join(
                request("OPTIONS", call_id=f"{i}@t", branch=f"z9hG4bK-{i}")
                for i in range(count))))
            await until(lambda: not transport.is_reading())
            assert transport.get_write_buffer_size() <= limits.write_max
            for i in range(count):  # now read: everything is answered, in order
                assert (await client.response()).one("Call-ID") == f"{i}@t"
            await asyncio.wait_for(sender, WAIT)
            assert transport.is_reading()
            client.close()
    run(main)


def test_past_write_max_unsent_bytes_the_connection_closes_even_below_write_high() -> None:
    """Unsent bytes are looked at only once the transport paused us (above write_high),
    unless write_max is the lower bound: then at every write."""
    async def main() -> None:
        limits = STREAM_LIMITS._replace(write_high=1024 * 1024, write_max=8 * 1024)
        async with Server(limits=limits) as srv:
            addr = await srv.listen("tcp")
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, addr)
            client = await srv.connect(addr, sock=sock)
            await until(lambda: srv.streams.open_connections == 1)
            (conn,) = srv.streams.conns.values()
            conn.transport.get_extra_info("socket").setsockopt(  # type: ignore[attr-defined]
                socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            client.writer.write(b"".join(request("OPTIONS", call_id=f"{i}@t",
                                                 branch=f"z9hG4bK-{i}") for i in range(1000)))
            await until(lambda: srv.streams.counts["write-overflow"] == 1)
            assert srv.streams.open_connections == 0
            client.close()
    run(main)


def test_scheme_and_tls_must_agree(certs: Certs, tmp_path: Path) -> None:
    async def main() -> None:
        async with Server() as srv:
            with pytest.raises(ValueError, match="needs --tls-cert"):
                await srv.listen("tls")
            with pytest.raises(ValueError, match="takes no TLS"):
                await srv.listen("tcp", TlsOptions(str(certs.server_cert),
                                                   str(certs.server_key)))
            with pytest.raises(OSError):
                await srv.listen("tls", TlsOptions(str(tmp_path / "none.pem"),
                                                   str(tmp_path / "none.key")))
    run(main)


def test_a_taken_port_names_the_address() -> None:
    async def main() -> None:
        async with Server() as srv:
            addr = await srv.listen("tcp")
            with pytest.raises(OSError, match=f"127.0.0.1:{addr[1]}"):
                await open_stream(srv.streams, "tcp", "127.0.0.1", addr[1])
    run(main)


# --- routing, without sockets ----------------------------------------------------------

class FakeConn(Conn):
    def __init__(self, peer: Addr, local: Addr, scheme: str = "tcp") -> None:
        super().__init__(scheme)
        self.peer, self.local = peer, local
        self.sent: list[bytes] = []
        self.shut = False

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def close(self) -> None:
        self.shut = True


def test_sends_go_over_their_connection_or_another_from_that_peer_else_are_counted() -> None:
    async def main() -> None:
        srv = Server()
        streams = srv.streams
        peer, l1, l2 = ("192.0.2.7", 40000), ("127.0.0.1", 5060), ("127.0.0.1", 5061)
        a, b = FakeConn(peer, l1), FakeConn(peer, l2, "tls")
        other = FakeConn(("192.0.2.8", 1), l1)
        for c in (a, b, other):
            streams.opened(c)
        assert streams.deliver([Send(peer, b"1", None, l1, a.id)]) == []
        assert streams.deliver([Send(peer, b"2", None, l1)]) == []  # by (local, peer)
        assert a.sent == [b"1", b"2"]
        streams.closed(a)
        assert streams.deliver([Send(peer, b"3", None, l1, a.id)]) == []  # a gone: b
        assert streams.deliver([Send(peer, b"4", None, l1)]) == []        # a gone: b
        assert b.sent == [b"3", b"4"]
        streams.closed(b)
        assert streams.deliver([Send(peer, b"5", None, l1, a.id)]) == []
        assert streams.counts["lost"] == 1  # no connection from that peer is left
        datagram = Send(("192.0.2.9", 5060), b"6", None, l1)
        assert streams.deliver([datagram]) == [datagram]  # no stream's: for UDP
        assert other.sent == []
        await streams.close()
        assert other.shut
    run(main)


def test_the_answers_of_one_read_go_out_in_one_write_per_connection() -> None:
    async def main() -> None:
        srv = Server()
        streams = srv.streams
        peer, l1 = ("192.0.2.7", 40000), ("127.0.0.1", 5060)
        a, b = FakeConn(peer, l1), FakeConn(("192.0.2.8", 1), l1)
        w1, w2 = FakeConn(("192.0.2.9", 2), l1, "ws"), FakeConn(("192.0.2.9", 3), l1, "wss")
        for c in (a, b, w1, w2):
            streams.opened(c)
        datagram = Send(("192.0.2.9", 5060), b"u", None, l1)
        rest = streams.deliver([Send(peer, b"1", None, l1, a.id), Send(b.peer, b"x", None, l1),
                                datagram, Send(peer, b"2", None, l1),  # by (local, peer)
                                Send(peer, b"3", None, l1, a.id), Send(b.peer, b"y", None, l1,
                                                                       b.id)], a)
        assert rest == [datagram]
        assert a.sent == [b"123"] and b.sent == [b"xy"]
        streams.deliver([Send(w1.peer, b"4", None, l1, w1.id), Send(w1.peer, b"5", None, l1),
                         Send(w2.peer, b"6", None, l1, w2.id)], w1)
        assert w1.sent == [b"4", b"5"] and w2.sent == [b"6"]  # one WebSocket message each
        streams.closed(a)  # the connection it came on is gone: another from that peer
        c = FakeConn(peer, ("127.0.0.1", 5061))
        streams.opened(c)
        assert streams.deliver([Send(peer, b"7", None, l1, a.id),
                                Send(peer, b"8", None, l1, a.id)], a) == []
        assert c.sent == [b"78"] and a.sent == [b"123"]
        await streams.close()
    run(main)


# --- what the engine must do for streams (core/, sip/builder.py: not this files) -

def stream_engine(*rules: str) -> Engine:
    return Engine(build_ruleset(None, list(rules)), Seeded(1))


SRC, LOCAL = ("127.0.0.1", 40000), ("127.0.0.1", 5060)


def test_received_and_rport_on_streams_as_on_udp() -> None:
    e = stream_engine()
    (sent,) = e.receive(Inbound(request("OPTIONS", rport=True), SRC, LOCAL, "tcp", 3), 0.0)
    assert isinstance(sent, Send)
    via = read_response(sent.data).one("Via")
    assert via.endswith(";rport=40000;received=127.0.0.1"), via


def test_a_2xx_to_invite_is_resent_on_udp_only() -> None:
    for transport, resent in (("udp", 1), ("tcp", 0), ("tls", 0), ("ws", 0)):
        e = stream_engine("INVITE->200")
        conn = None if transport == "udp" else 1
        e.receive(Inbound(request("INVITE"), SRC, LOCAL, transport, conn), 0.0)
        assert len(e.due(0.6)) == resent, transport  # T1 = 0.5 s: the first resend


def test_every_send_names_the_connection_of_its_request() -> None:
    e = stream_engine("INVITE->180,486/1s")
    now = e.receive(Inbound(request("INVITE"), SRC, LOCAL, "tcp", 7), 0.0)
    later = e.due(1.0)
    assert [s.conn for s in now + later if isinstance(s, Send)] == [7, 7]


@pytest.mark.parametrize(("transport", "param"), [("tcp", ";transport=tcp"),
                                                  ("tls", ";transport=tls"),
                                                  ("ws", ";transport=ws"),
                                                  ("wss", ";transport=ws")])
def test_our_contact_names_the_transport(transport: str, param: str) -> None:
    e = stream_engine("INVITE->200")
    (sent,) = e.receive(Inbound(request("INVITE"), SRC, LOCAL, transport, 1), 0.0)
    assert isinstance(sent, Send)
    assert read_response(sent.data).one("Contact") == f"<sip:127.0.0.1:5060{param}>"


def test_the_exchange_names_the_transport() -> None:
    e = stream_engine()
    (sent,) = e.receive(Inbound(request("OPTIONS"), SRC, LOCAL, "tls", 1), 0.0)
    assert isinstance(sent, Send)
    assert sent.exchange is not None and sent.exchange.transport == "tls"


def test_tcp_over_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")

    async def main() -> None:
        async with Server() as srv:
            try:
                _, addr = await open_stream(srv.streams, "tcp", "::1", 0)
            except OSError as exc:
                pytest.skip(f"no ::1 here: {exc}")
            client = await srv.connect(addr)
            await client.send(request("OPTIONS", via_host="[::1]:5062"))
            assert (await client.response()).status == 200
            inbound = srv.arrived()[0].inbound
            assert inbound.source[0] == "::1" and inbound.local == addr
    run(main)
