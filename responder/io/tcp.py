"""TCP and TLS connections (``tcp:``, ``tls:``): one asyncio protocol per connection,
feeding its :class:`~responder.io.stream.StreamTransport` (the table, bounds, routing and
timers are there)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from typing import cast

from responder.io.stream import Conn, StreamTransport, peer_addr
from responder.io.tls import TlsLayer
from responder.sip.addr import Addr, hostport

BACKLOG = 1024  # connections the kernel holds for accept()


async def listen_tcp(streams: StreamTransport, scheme: str, host: str, port: int,
                     tls: ssl.SSLContext | None = None, sock: socket.socket | None = None,
                     ) -> tuple[asyncio.AbstractServer, Addr]:
    """A TCP (``tls`` None) or TLS listener on ``host:port`` for ``streams``: (server,
    bound address). An OSError names the address, as ``bind_udp``'s does. ``sock``: a
    listening socket bound already (``--workers``: one for every worker)."""
    try:
        if sock is not None:
            server = await streams.loop.create_server(
                lambda: TcpConn(streams, scheme, tls), sock=sock, backlog=BACKLOG)
        else:
            server = await streams.loop.create_server(
                lambda: TcpConn(streams, scheme, tls), host, port, reuse_address=True,
                backlog=BACKLOG)
    except OSError as exc:
        raise OSError(exc.errno, f"{hostport((host, port))}: {exc.strerror or exc}") \
            from None
    streams.servers.append(server)
    return server, peer_addr(server.sockets[0].getsockname())


class TcpConn(asyncio.Protocol, Conn):
    """One accepted TCP connection; with TLS, its :class:`TlsLayer` and handshake timer."""

    transport: asyncio.Transport

    def __init__(self, owner: StreamTransport, scheme: str, tls: ssl.SSLContext | None) -> None:
        Conn.__init__(self, scheme)
        self.owner = owner
        self.tls = TlsLayer(tls) if tls is not None else None
        self.timer: asyncio.TimerHandle | None = None
        self.gone = False
        # Unsent bytes are looked at only when they may be past ``write_max``: above
        # ``write_high`` the transport has paused us (it says so from inside its write).
        self.paused = owner.limits.write_max < owner.limits.write_high

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses, but have its methods)
        self.transport = cast(asyncio.Transport, transport)
        self.peer = peer_addr(transport.get_extra_info("peername"))
        self.local = peer_addr(transport.get_extra_info("sockname"))
        limits = self.owner.limits
        self.transport.set_write_buffer_limits(high=limits.write_high)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.owner.opened(self)
        if self.tls is not None:
            self.timer = self.owner.loop.call_later(limits.handshake, self._too_slow)

    def _too_slow(self) -> None:
        self.timer = None
        self._failed()

    def _failed(self) -> None:
        """The TLS handshake failed or took too long: counted, closed."""
        if not self.gone:
            self.owner.counts["handshake-failed"] += 1
            self.gone = True
            self.owner.closed(self)
            self.transport.close()  # after the alert, if there is one

    def data_received(self, data: bytes) -> None:
        if self.gone:
            return
        tls = self.tls
        if tls is not None:
            try:
                plain = tls.receive(data)
            except ssl.SSLError:
                alert = tls.pending()
                if alert:
                    self.transport.write(alert)
                if tls.ready:
                    self.close()
                else:
                    self._failed()
                return
            out = tls.pending()
            if out:
                self.transport.write(out)
            if tls.ready and self.timer is not None:
                self.timer.cancel()
                self.timer = None
            if plain:
                self.owner.data(self, plain)
            if tls.closed:
                self.close()
            return
        self.owner.data(self, data)

    def eof_received(self) -> bool | None:
        return None  # the peer is done sending: close (what it was sent is flushed first)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.owner.closed(self)

    def pause_writing(self) -> None:
        self.paused = True
        self.transport.pause_reading()  # the peer does not read: stop reading it

    def resume_writing(self) -> None:
        limits = self.owner.limits
        self.paused = limits.write_max < limits.write_high
        if not self.gone:
            self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        transport = self.transport
        if self.gone or transport.is_closing():
            self.owner.counts["lost"] += 1
            return
        if self.tls is not None:
            try:
                data = self.tls.send(data)
            except ssl.SSLError:
                self.owner.counts["lost"] += 1
                self.close()
                return
        transport.write(data)
        if self.paused and transport.get_write_buffer_size() > self.owner.limits.write_max:
            self.owner.counts["write-overflow"] += 1
            self.gone = True
            self.owner.closed(self)
            transport.abort()

    def close(self) -> None:
        if self.gone and self.transport.is_closing():
            return
        self.gone = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.tls is not None and not self.transport.is_closing():
            bye = self.tls.goodbye()
            if bye:
                self.transport.write(bye)
        self.transport.close()
