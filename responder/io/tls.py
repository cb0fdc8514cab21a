"""TLS for ``tls:`` and ``wss:`` (the standard library's ``ssl``): the options from the
command line, the server context, and a session over memory buffers for TCP connections."""

from __future__ import annotations

import contextlib
import ssl
from typing import NamedTuple

from responder.sip.framing import MAX_MESSAGE


class TlsOptions(NamedTuple):
    """``--tls-cert``, ``--tls-key`` (PEM) and ``--tls-ca`` (mutual TLS)."""

    cert: str
    key: str
    ca: str | None = None


def server_context(tls: TlsOptions) -> ssl.SSLContext:
    """A server-side context: our certificate; with a CA, client certificates are requested
    and must verify against it (mutual TLS), else the handshake fails."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls.cert, tls.key)
    if tls.ca:
        ctx.load_verify_locations(cafile=tls.ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class TlsLayer:
    """Server-side TLS over memory buffers (the standard library's ``ssl``): the same on
    asyncio's loop and uvloop's, and the connection is ours -- counted, bounded and timed --
    from its first byte, handshake included."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.ready = False   # the handshake is done
        self.closed = False  # the peer closed the session

    def receive(self, data: bytes) -> bytes:
        """Ciphertext in, the plaintext it completes out (b"": none yet); :attr:`closed`
        once the peer closed the session (close_notify). Raises ssl.SSLError when the
        session fails (a refused client certificate, garbage): :meth:`pending` then holds
        the alert to send."""
        self.incoming.write(data)
        if not self.ready:
            try:
                self.obj.do_handshake()
            except ssl.SSLWantReadError:
                return b""
            self.ready = True
        chunks = []
        while True:
            try:
                chunk = self.obj.read(MAX_MESSAGE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                chunk = b""
            if not chunk:  # (SSLObject.read gives b"" for a close_notify)
                self.closed = True
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def send(self, data: bytes) -> bytes:
        """Plaintext in, the ciphertext to write out."""
        self.obj.write(data)
        return self.outgoing.read()

    def pending(self) -> bytes:
        return self.outgoing.read()

    def goodbye(self) -> bytes:
        """The close_notify alert (when the session is up)."""
        if self.ready:
            with contextlib.suppress(ssl.SSLError, ValueError):
                self.obj.unwrap()
        return self.outgoing.read()
