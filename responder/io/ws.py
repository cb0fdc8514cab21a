"""SIP over WebSocket (RFC 7118): ``ws:`` and ``wss:`` listeners feeding the same engine.

The WebSocket side is aiohttp's (``aiohttp.web``), the library our HTTP side already runs on
(responder/ops/http.py): no new dependency, the same loop, and its low-level ``web.Server``
is an asyncio protocol factory, so the listener is our own ``loop.create_server`` -- with
the standard library's TLS and its handshake time bound, as for ``tls:``.

* The handshake must offer the ``sip`` subprotocol (RFC 7118 §4), which is echoed in
  ``Sec-WebSocket-Protocol``; without it the upgrade is refused with 400 (a request that is
  no upgrade at all gets 426).
* One SIP message per WebSocket message, text or binary (RFC 7118 §5); no framer: a
  message is whole. A message of line ends only (a double CRLF, RFC 5626 §3.5.1) gets a
  CRLF back; WebSocket pings get pongs. Answers go out as text when they are UTF-8, else
  binary.
* The connection joins the :class:`~responder.io.stream.StreamTransport`'s table: the same
  bounds (connections, idle time, unsent bytes) and routing as TCP and TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections import deque

from aiohttp import WSMsgType, hdrs, web

from responder.io.stream import Conn, StreamTransport, peer_addr
from responder.sip.addr import Addr, hostport
from responder.sip.framing import MAX_MESSAGE, PONG, is_ping

SUBPROTOCOL = "sip"  # RFC 7118 §4 (IANA WebSocket Subprotocol Name Registry)
MAX_HEAD_LINE = 8 * 1024  # bytes: the upgrade request's line and each header value
MAX_HEADERS = 100         # header lines in the upgrade request
UPGRADE_TIMEOUT = 10.0    # seconds for the upgrade request once connected (keepalive_timeout)

QUIET = logging.Logger("sip-responder.ws", logging.CRITICAL + 1)
QUIET.addHandler(logging.NullHandler())
QUIET.disabled = True


def offered(request: web.BaseRequest) -> list[str]:
    """The subprotocols a handshake offers, in order."""
    return [p.strip() for value in request.headers.getall(hdrs.SEC_WEBSOCKET_PROTOCOL, [])
            for p in value.split(",") if p.strip()]


class WsConn(Conn):
    """One WebSocket connection: a writer task sends what the engine answers, in order."""

    def __init__(self, owner: StreamTransport, scheme: str, ws: web.WebSocketResponse,
                 peer: Addr, local: Addr) -> None:
        super().__init__(scheme)
        self.owner = owner
        self.ws = ws
        self.peer, self.local = peer, local
        self.queue: deque[bytes] = deque()
        self.queued = 0
        self.wake = asyncio.Event()
        self.drained = asyncio.Event()
        self.drained.set()
        self.gone = False
        self.task = owner.loop.create_task(self._send())

    def write(self, data: bytes) -> None:
        limits = self.owner.limits
        if self.gone:
            self.owner.counts["lost"] += 1
            return
        self.queue.append(data)
        self.queued += len(data)
        if self.queued > limits.write_max:
            self.owner.counts["write-overflow"] += 1
            self.owner.closed(self)
            self.close()
            return
        if self.queued > limits.write_high:
            self.drained.clear()  # the reader waits for it before reading more
        self.wake.set()

    async def _send(self) -> None:
        ws = self.ws
        high = self.owner.limits.write_high
        try:
            while not self.gone:
                await self.wake.wait()
                self.wake.clear()
                while self.queue and not self.gone:
                    data = self.queue.popleft()
                    self.queued -= len(data)
                    try:
                        text = data.decode("utf-8")
                    except UnicodeDecodeError:
                        await ws.send_bytes(data)
                    else:
                        await ws.send_str(text)
                    if self.queued <= high:
                        self.drained.set()
        except Exception:  # the peer went away mid-send: the reader sees it and cleans up
            self.gone = True
        finally:
            self.drained.set()

    def close(self) -> None:
        if not self.gone:
            self.gone = True
            self.wake.set()
            self.owner.loop.create_task(self._close())

    async def _close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), self.owner.limits.handshake)

    async def stop(self) -> None:
        self.gone = True
        self.wake.set()
        with contextlib.suppress(Exception):
            await self.task


class WsListener:
    """One ``ws:`` or ``wss:`` listener for a :class:`StreamTransport`."""

    def __init__(self, streams: StreamTransport, scheme: str,
                 tls: ssl.SSLContext | None) -> None:
        self.streams = streams
        self.scheme = scheme
        self.tls = tls
        self.server = web.Server(
            self._handle, access_log=None, logger=QUIET, keepalive_timeout=UPGRADE_TIMEOUT,
            max_line_size=MAX_HEAD_LINE, max_field_size=MAX_HEAD_LINE,
            max_headers=MAX_HEADERS)
        self.listener: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int, sock: socket.socket | None = None,
                    ) -> tuple[asyncio.AbstractServer, Addr]:
        """Listen on ``host:port``, or on ``sock``, a listening socket bound already
        (``--workers``: one for every worker)."""
        loop = self.streams.loop
        timeout = self.streams.limits.handshake if self.tls else None
        try:
            if sock is not None:
                self.listener = await loop.create_server(
                    self.server, sock=sock, ssl=self.tls, backlog=1024,
                    ssl_handshake_timeout=timeout)
            else:
                self.listener = await loop.create_server(
                    self.server, host, port, ssl=self.tls, reuse_address=True, backlog=1024,
                    ssl_handshake_timeout=timeout)
        except OSError as exc:
            raise OSError(exc.errno, f"{hostport((host, port))}: {exc.strerror or exc}") \
                from None
        self.streams.servers.append(self.listener)
        self.streams.closers.append(self.close)
        return self.listener, peer_addr(self.listener.sockets[0].getsockname())

    async def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
        await self.server.shutdown(1.0)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.headers.get(hdrs.UPGRADE, "").lower() != "websocket":
            return web.Response(status=426, text="SIP over WebSocket only (RFC 7118)\n",
                                headers={hdrs.UPGRADE: "websocket"})
        if SUBPROTOCOL not in offered(request):
            return web.Response(status=400, text="the 'sip' WebSocket subprotocol is "
                                                 "required (RFC 7118 §4)\n")
        ws = web.WebSocketResponse(protocols=(SUBPROTOCOL,), autoping=False, compress=False,
                                   max_msg_size=MAX_MESSAGE)
        if not ws.can_prepare(request).ok:
            return web.Response(status=400, text="not a WebSocket handshake\n")
        await ws.prepare(request)
        transport = request.transport
        if transport is None:
            return ws
        streams = self.streams
        conn = WsConn(streams, self.scheme, ws, peer_addr(transport.get_extra_info("peername")),
                      peer_addr(transport.get_extra_info("sockname")))
        streams.opened(conn)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    data = msg.data.encode("utf-8", "surrogateescape")
                elif msg.type == WSMsgType.BINARY:
                    data = msg.data
                elif msg.type == WSMsgType.PING:
                    streams.touch(conn)
                    await ws.pong(msg.data)
                    continue
                elif msg.type == WSMsgType.PONG:
                    streams.touch(conn)
                    continue
                else:
                    break
                now = streams.touch(conn)
                if is_ping(data):
                    streams.counts["pongs"] += 1
                    conn.write(PONG)
                else:
                    streams.receive(conn, data, now)
                    streams.arm()
                if not conn.drained.is_set():
                    await conn.drained.wait()  # the peer does not read: stop reading it
        except Exception:  # a reset mid-read: the connection is simply gone
            pass
        finally:
            streams.closed(conn)
            await conn.stop()
        return ws
