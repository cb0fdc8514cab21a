"""TCP and TLS for the test clients: the connection, its TLS context, and the framing.
(WebSocket, ``ws`` and ``wss``, rides on the same connection and TLS context:
:mod:`responder.testing.websocket`.)

A client on a stream opens one connection to the server when it is made and sends every
request (and ACK) over it; what comes back is cut into messages by Content-Length with the
responder's own framer (:class:`responder.sip.framing.Framer`, sans-I/O), keep-alive CRLFs
skipped. TLS is the standard library's ``ssl``: the client verifies the server's certificate
against ``ca`` (a PEM file) or uses the ``ssl_context`` it is given (a client certificate for
mutual TLS goes there).
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Sequence

from responder.io.tls import TlsOptions
from responder.ops.listen import SCHEMES, SECURE, Listen, parse_listen
from responder.sip.addr import Addr, hostport
from responder.sip.framing import FrameError, Framer

TRANSPORTS = ("udp", "tcp", "tls", "ws", "wss")
STREAMS = frozenset({"tcp", "tls"})  # framed by Content-Length; SECURE (tls, wss): over TLS


def check_transport(transport: str) -> str:
    """``"TCP"`` -> ``"tcp"``; ValueError for a transport the clients do not speak."""
    name = transport.lower()
    if name not in TRANSPORTS:
        raise ValueError(f"transport {transport!r}: the test clients speak "
                         f"{', '.join(TRANSPORTS)}")
    return name


def tls_context(ca: str | os.PathLike[str] | None,
                ssl_context: ssl.SSLContext | None,
                transport: str = "tls") -> ssl.SSLContext:
    """The client's TLS context: ``ssl_context`` as given, else one trusting ``ca`` only."""
    if ssl_context is not None:
        return ssl_context
    if ca is None:
        raise ValueError(f"transport={transport!r} needs ca= (the CA file that signed the "
                         "server's certificate) or ssl_context=")
    return ssl.create_default_context(cafile=os.fspath(ca))


def unverified_context() -> ssl.SSLContext:
    """A TLS client context that checks nothing (the Responder's own start-up probe)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def connect(remote: Addr, host: str | None, ctx: ssl.SSLContext | None,
            timeout: float) -> socket.socket:
    """A connected TCP socket (TLS-wrapped, handshake done, when ``ctx`` is given) from
    ``host`` (default: the loopback address of ``remote``'s family), a free port."""
    family = socket.AF_INET6 if ":" in remote[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if host:
            sock.bind((host, 0))
        sock.settimeout(timeout)
        try:
            sock.connect(remote)
        except OSError as exc:
            raise ConnectionError(f"cannot connect to {hostport(remote)}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ctx is not None:
            return ctx.wrap_socket(sock, server_hostname=remote[0])
    except BaseException:
        sock.close()
        raise
    return sock


class Frames:
    """One connection's inbound bytes -> whole messages (keep-alive pongs dropped)."""

    def __init__(self, remote: Addr) -> None:
        self._framer = Framer()
        self._remote = remote

    def feed(self, data: bytes) -> list[bytes]:
        """The messages ``data`` completes; ConnectionError when the server closed the
        connection (``data`` empty) or sent what cannot be framed."""
        if not data:
            raise ConnectionError(f"{hostport(self._remote)} closed the connection")
        out: list[bytes] = []
        for frame in self._framer.feed(data):
            if isinstance(frame, FrameError):
                raise ConnectionError(f"{hostport(self._remote)} sent a stream that cannot be "
                                      f"framed ({frame.reason})")
            if isinstance(frame, bytes):
                out.append(frame)
        return out

    def pending(self) -> bytes:
        """What must be written back after a feed: nothing (keep-alive pongs are dropped)."""
        return b""

    def encode(self, message: bytes) -> bytes:
        """A message as it goes on the stream: as it is."""
        return message


# --------------------------------------------------------------------------- the Responder's


def listeners(listen: Sequence[str | Listen] | None, transports: Sequence[str], host: str,
              port: int, tls: TlsOptions | None) -> list[Listen]:
    """What a :class:`~responder.testing.Responder` listens on: ``listen`` specs as
    ``--listen`` takes them (``"tcp:127.0.0.1:0"``), else each of ``transports`` on
    ``host:port``. ValueError for an unknown scheme, a tls:/wss: listener without a
    certificate, or a certificate without such a listener."""
    if listen is not None:
        specs = [spec if isinstance(spec, Listen) else parse_listen(spec) for spec in listen]
    else:
        if isinstance(transports, str):
            transports = [transports]
        unknown = [t for t in transports if t.lower() not in SCHEMES]
        if unknown:
            raise ValueError(f"transports {unknown}: a Responder listens on "
                             f"{', '.join(SCHEMES)}")
        specs = [Listen(t.lower(), host, port) for t in transports]
    if not specs:
        raise ValueError("a Responder needs at least one listener")
    secure = [str(s) for s in specs if s.scheme in SECURE]
    if secure and tls is None:
        raise ValueError(f"{', '.join(secure)} needs tls_cert= and tls_key= (PEM files)")
    if tls is not None and not secure:
        raise ValueError("tls_cert/tls_key/tls_ca given, but no tls or wss listener")
    return specs


def sip_uri(user: str | None, addr: Addr, transport: str | None) -> str:
    """``sip:USER@HOST:PORT``, with ``;transport=tcp|tls|ws`` (ws for wss too, RFC 7118
    §5.2) for a stream."""
    where = hostport(addr)
    uri = f"sip:{user}@{where}" if user else f"sip:{where}"
    if transport is None or transport == "udp":
        return uri
    return f"{uri};transport={'ws' if transport == 'wss' else transport}"


def tls_options(cert: str | os.PathLike[str] | None, key: str | os.PathLike[str] | None,
                ca: str | os.PathLike[str] | None) -> TlsOptions | None:
    """``--tls-cert``/``--tls-key``/``--tls-ca`` as a Responder takes them (None: no TLS)."""
    if cert is None and key is None and ca is None:
        return None
    if cert is None or key is None:
        raise ValueError("tls_cert= and tls_key= go together (PEM files)")
    return TlsOptions(os.fspath(cert), os.fspath(key), os.fspath(ca) if ca else None)
