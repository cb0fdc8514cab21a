"""One way to open a stream listener of any scheme (``--listen tcp:|tls:|ws:|wss:``).

UDP is not here: io/udp.py binds its sockets (``bind_udp``) and the server adds them to its
:class:`~responder.io.udp.UdpTransport`.
"""

from __future__ import annotations

import asyncio
import socket
import ssl

from responder.io.stream import StreamTransport
from responder.io.tcp import BACKLOG, listen_tcp
from responder.io.tls import TlsOptions, server_context
from responder.sip.addr import Addr, hostport

STREAM_SCHEMES = ("tcp", "tls", "ws", "wss")
SECURE = frozenset({"tls", "wss"})


def bind_stream(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on ``host:port``, non-blocking (IPv6: IPv6 only, a link-local
    address with its zone). ``reuse_port``: one of a group on the same address
    (``SO_REUSEPORT``, see :func:`bind_streams`). An OSError names the address."""
    try:
        flags = socket.AI_PASSIVE | socket.AI_NUMERICHOST
        family, kind, proto, _, addr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=flags)[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
            sock.listen(BACKLOG)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        raise OSError(exc.errno, f"{hostport((host, port))}: {exc.strerror or exc}") from None
    return sock


def bind_streams(host: str, port: int, count: int) -> list[socket.socket]:
    """``--workers N``: one listening socket per worker on one address (port 0: the port
    the first one got), bound before the fork. With ``SO_REUSEPORT`` the kernel spreads new
    connections over them by a hash of their addresses and ports, so every worker takes its
    share however busy the others are (one shared socket would go to whichever worker
    calls accept() first); a connection then stays with the worker that accepted it."""
    socks = [bind_stream(host, port, reuse_port=True)]
    try:
        port = socks[0].getsockname()[1]
        socks += [bind_stream(host, port, reuse_port=True) for _ in range(count - 1)]
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


async def open_stream(streams: StreamTransport, scheme: str, host: str, port: int,
                      tls: TlsOptions | ssl.SSLContext | None = None,
                      sock: socket.socket | None = None,
                      ) -> tuple[asyncio.AbstractServer, Addr]:
    """Listen on ``host:port`` for ``scheme`` (tcp, tls, ws, wss): (server, bound address).

    ``tls`` (needed by tls and wss, refused by tcp and ws): the certificate options, or a
    context made by :func:`~responder.io.stream.server_context` (one for every listener).
    ``sock``: listen on this socket (:func:`bind_stream`) instead of binding ``host:port``.
    Raises ValueError for a scheme/TLS mismatch, OSError (naming the address) when the
    address cannot be bound, ssl.SSLError/OSError when the certificate files cannot be read.
    """
    if scheme not in STREAM_SCHEMES:
        raise ValueError(f"{scheme}: not a stream scheme (one of {', '.join(STREAM_SCHEMES)})")
    if (scheme in SECURE) != (tls is not None):
        raise ValueError(f"{scheme}: needs --tls-cert and --tls-key" if tls is None
                         else f"{scheme}: takes no TLS certificate")
    context = server_context(tls) if isinstance(tls, TlsOptions) else tls
    if scheme in ("tcp", "tls"):
        return await listen_tcp(streams, scheme, host, port, context, sock)
    from responder.io.ws import WsListener  # aiohttp is imported only for a ws listener

    return await WsListener(streams, scheme, context).start(host, port, sock)
