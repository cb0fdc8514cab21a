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


def bind_stream(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``, non-blocking (IPv6: IPv6 only, a link-local
    address with its zone), for processes to share (``--workers``: bound once, before the
    fork, every worker accepts on it). An OSError names the address."""
    try:
        flags = socket.AI_PASSIVE | socket.AI_NUMERICHOST
        family, kind, proto, _, addr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=flags)[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
