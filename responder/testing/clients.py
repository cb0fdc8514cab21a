"""The test clients: :class:`SipClient` (blocking) and :class:`AsyncSipClient` (asyncio).

Both drive the same flows from :mod:`responder.testing.client_core` (requests written, responses
matched to their transaction, ACKs, digest): a driver only sends messages and waits. Each
speaks UDP (its own socket) or, with ``transport="tcp"`` or ``"tls"``, one connection to the
server (:mod:`responder.testing.streams`), or with ``"ws"`` or ``"wss"`` one WebSocket
(:mod:`responder.testing.websocket`). Import them from :mod:`responder.testing`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import time
from typing import cast

from responder.ops.listen import SECURE
from responder.sip.addr import Addr, hostport
from responder.testing.client_core import (
    DEFAULT_TIMEOUT,
    Core,
    Flow,
    Headers,
    Responses,
    Send,
    SipResponse,
    T,
    Until,
    Wait,
    cancel_flow,
    raw_flow,
    register_flow,
    request_flow,
    wait_flow,
)
from responder.testing.streams import STREAMS, Frames, check_transport, connect, tls_context
from responder.testing.websocket import WEBSOCKETS, WsFrames

MAX_DATAGRAM = 65535


class _Api:
    _core: Core

    @property
    def transport(self) -> str:
        """``"udp"``, ``"tcp"``, ``"tls"``, ``"ws"`` or ``"wss"``."""
        return self._core.transport

    @property
    def local_address(self) -> Addr:
        """The client's own (host, port)."""
        return self._core.local

    @property
    def remote_address(self) -> Addr:
        """Where every request goes: the server's (host, port)."""
        return self._core.remote


def _open(remote: Addr, host: str | None, transport: str, timeout: float,
          ctx: ssl.SSLContext | None) -> tuple[socket.socket, Frames | WsFrames | None]:
    """UDP: a bound socket; TCP/TLS/WS/WSS: a connected one (wrapped in ``ctx``, when given)
    and the framer of what it reads (for WebSocket, not yet upgraded)."""
    if transport in WEBSOCKETS:
        frames = WsFrames(remote, transport == "wss")  # (websockets missing: raises here)
        return connect(remote, host, ctx, timeout), frames
    if transport not in STREAMS:
        return _bind(remote, host), None
    return connect(remote, host, ctx, timeout), Frames(remote)


def _bind(remote: Addr, host: str | None) -> socket.socket:
    host = host or ("::1" if ":" in remote[0] else "127.0.0.1")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((host, 0))
    except BaseException:
        sock.close()
        raise
    return sock


class SipClient(_Api):
    """A blocking SIP client on a UDP socket of its own (``127.0.0.1`` or ``::1``, port 0).

    ``remote`` is where every request goes, whatever the Request-URI says.
    ``transport="tcp"`` or ``"tls"``: one connection to ``remote`` instead, opened here
    (TLS trusting the CA file ``ca``, or with ``ssl_context``); Via and Contact name the
    transport and responses are cut from the stream by Content-Length. ``"ws"`` or
    ``"wss"`` (TLS as for ``"tls"``): that connection upgraded to a WebSocket with the
    ``sip`` subprotocol (RFC 7118), one SIP message per WebSocket message; Via and Contact
    name a random ``.invalid`` host, as a browser's do. A final
    response to an INVITE is ACKed at once (RFC 3261 §17.1.1.3, or a new ACK transaction
    for a 2xx, §13.2.2.4). Every call waits at most ``timeout`` seconds (default 2) and then
    raises :class:`SipTimeout` (a TimeoutError) saying what did arrive.
    """

    def __init__(self, remote: Addr, *, transport: str = "udp", host: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, user_agent: str = "sip-responder-client",
                 ca: str | os.PathLike[str] | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        transport = check_transport(transport)
        ctx = tls_context(ca, ssl_context, transport) if transport in SECURE else None
        self._sock, self._frames = _open(remote, host, transport, timeout, ctx)
        self._core = Core(self._sock.getsockname()[:2], remote, user_agent, timeout, transport)
        if isinstance(self._frames, WsFrames):
            try:
                self._upgrade(self._frames, timeout)
            except BaseException:
                self._sock.close()
                raise

    def _upgrade(self, frames: WsFrames, timeout: float) -> None:
        """The WebSocket handshake, within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        self._sock.sendall(frames.start())
        while not frames.open:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer to the WebSocket upgrade from "
                                   f"{hostport(self._core.remote)} within {timeout:g}s")
            self._sock.settimeout(left)
            try:
                data = self._sock.recv(MAX_DATAGRAM)
            except TimeoutError:
                continue
            messages = frames.feed(data)
            if back := frames.pending():
                self._sock.sendall(back)
            for message in messages:
                self._core.feed(message)

    def options(self, uri: str | None = None, *, headers: Headers | None = None,
                timeout: float | None = None) -> SipResponse:
        """OPTIONS ``uri`` (default: the server); the final response."""
        return self.request("OPTIONS", uri, headers=headers, timeout=timeout).final

    def invite(self, uri: str | None = None, *, headers: Headers | None = None,
               body: bytes | str = b"", content_type: str | None = None,
               from_user: str | None = None, until: Until = "final",
               timeout: float | None = None) -> Responses:
        """INVITE; every response until the final one (``until="provisional"``: the first
        response, ``"sent"``: none), so that :meth:`cancel` can follow."""
        return self.request("INVITE", uri, headers=headers, body=body,
                            content_type=content_type, from_user=from_user, until=until,
                            timeout=timeout)

    def cancel(self, timeout: float | None = None) -> tuple[SipResponse, SipResponse]:
        """CANCEL the last INVITE: (the CANCEL's final response, the INVITE's final one)."""
        return self._run(cancel_flow(self._core, timeout or self._core.timeout))

    def register(self, uri: str | None, user: str, password: str | None = None,
                 expires: int = 3600, *, headers: Headers | None = None,
                 timeout: float | None = None) -> SipResponse:
        """REGISTER ``user`` at ``uri`` (default: the server); answers one 401/407 with
        digest credentials (MD5 or SHA-256, qop auth or none) when ``password`` is given."""
        return self._run(register_flow(self._core, uri, user, password, expires, headers,
                                   timeout or self._core.timeout))

    def request(self, method: str, uri: str | None = None, *, headers: Headers | None = None,
                body: bytes | str = b"", content_type: str | None = None,
                from_user: str | None = None, until: Until = "final",
                timeout: float | None = None) -> Responses:
        """Any request; ``headers`` replace the client's own of the same name."""
        return self._run(request_flow(self._core, method, uri, headers, body, content_type,
                                              from_user, until, timeout))

    def send_raw(self, data: bytes, *, wait: bool = True,
                 timeout: float | None = None) -> Responses:
        """Send ``data`` as it is; with ``wait`` and a Via branch and CSeq in it, wait for the
        final response of that transaction."""
        return self._run(raw_flow(self._core, data, wait, timeout))

    def wait_final(self, timeout: float | None = None) -> Responses:
        """Wait for the final response of the last INVITE (or the last request)."""
        return self._run(wait_flow(self._core, timeout))

    def close(self) -> None:
        """Close the connection (a WebSocket with its closing handshake, RFC 6455 §7: the
        close frame, then at most ``timeout`` seconds for the server to end the stream)."""
        frames = self._frames
        if isinstance(frames, WsFrames) and self._sock.fileno() >= 0:
            with contextlib.suppress(OSError):
                goodbye = frames.close()
                if goodbye:
                    self._sock.sendall(goodbye)
                    self._drain(frames)
        self._sock.close()

    def _drain(self, frames: WsFrames) -> None:
        deadline = time.monotonic() + self._core.timeout
        while (left := deadline - time.monotonic()) > 0:
            self._sock.settimeout(left)
            try:
                frames.feed(self._sock.recv(MAX_DATAGRAM))
            except (ConnectionError, TimeoutError):
                return

    def __enter__(self) -> SipClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, flow: Flow[T]) -> T:
        try:
            op = next(flow)
            while True:
                if isinstance(op, Send):
                    self._send(op.data)
                else:
                    self._wait(op)
                op = next(flow)
        except StopIteration as stop:
            value: T = stop.value
            return value
        finally:
            flow.close()

    def _wait(self, op: Wait) -> None:
        deadline = time.monotonic() + op.timeout
        while not op.txn.done(op.until):
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._core.timeout_error(op)
            self._sock.settimeout(left)
            try:
                data = self._sock.recv(MAX_DATAGRAM)
            except TimeoutError:
                continue
            frames = self._frames
            try:
                messages = [data] if frames is None else frames.feed(data)
            except ConnectionError as exc:
                raise ConnectionError(f"{exc}; {self._core.timeout_error(op)}") from None
            if frames is not None and (back := frames.pending()):
                self._sock.sendall(back)  # pongs
            for message in messages:
                for ack in self._core.feed(message):
                    self._send(ack)

    def _send(self, data: bytes) -> None:
        if self._frames is None:
            self._sock.sendto(data, self._core.remote)
        else:
            self._sock.sendall(self._frames.encode(data))


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, client: AsyncSipClient) -> None:
        self.client = client

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.client._received(data)

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error: the wait times out and says what arrived


class _StreamProtocol(asyncio.Protocol):
    def __init__(self, client: AsyncSipClient, frames: Frames | WsFrames) -> None:
        self.client, self.frames = client, frames
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.frames.feed(data)
        except ConnectionError as exc:
            self.client._lost(exc)
            return
        back = self.frames.pending()  # pongs
        if back and self.transport is not None and not self.transport.is_closing():
            self.transport.write(back)
        for message in messages:
            self.client._received(message)
        if isinstance(self.frames, WsFrames) and self.frames.open:
            self.client._changed.set()  # (open() waits for the upgrade)

    def eof_received(self) -> bool | None:
        self.connection_lost(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._gone.set()
        try:
            self.frames.feed(b"")
        except ConnectionError as closed:
            self.client._lost(closed)


class AsyncSipClient(_Api):
    """:class:`SipClient` for asyncio: the same methods, as coroutines (the same
    ``transport``, ``ca`` and ``ssl_context``; a TLS handshake and a WebSocket upgrade
    happen in :meth:`open`).

    ``async with AsyncSipClient(address) as client: await client.options()``
    """

    def __init__(self, remote: Addr, *, transport: str = "udp", host: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, user_agent: str = "sip-responder-client",
                 ca: str | os.PathLike[str] | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        transport = check_transport(transport)
        self._tls = tls_context(ca, ssl_context, transport) if transport in SECURE else None
        # connected here, on loopback; the TLS handshake and WebSocket upgrade by open()
        self._sock, self._frames = _open(remote, host, transport, timeout, None)
        self._core = Core(self._sock.getsockname()[:2], remote, user_agent, timeout, transport)
        self._transport: asyncio.DatagramTransport | asyncio.Transport | None = None
        self._changed = asyncio.Event()
        self._closed: ConnectionError | None = None
        self._gone = asyncio.Event()  # a stream's connection is closed

    async def open(self) -> AsyncSipClient:
        if self._transport is None:
            loop = asyncio.get_running_loop()
            if self._frames is None:
                self._transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Protocol(self), sock=self._sock)
            else:
                frames = self._frames
                self._transport, _ = await loop.create_connection(
                    lambda: _StreamProtocol(self, frames), sock=self._sock, ssl=self._tls,
                    server_hostname=self._core.remote[0] if self._tls else None)
                if isinstance(frames, WsFrames):
                    await self._upgrade(frames)
        return self

    async def _upgrade(self, frames: WsFrames) -> None:
        """The WebSocket handshake, within the client's ``timeout``."""
        cast(asyncio.Transport, self._transport).write(frames.start())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._core.timeout
        while not frames.open:
            if self._closed is not None:
                self.close()
                raise self._closed
            left = deadline - loop.time()
            if left <= 0:
                self.close()
                raise TimeoutError(f"no answer to the WebSocket upgrade from "
                                   f"{hostport(self._core.remote)} within "
                                   f"{self._core.timeout:g}s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    async def options(self, uri: str | None = None, *, headers: Headers | None = None,
                      timeout: float | None = None) -> SipResponse:
        return (await self.request("OPTIONS", uri, headers=headers, timeout=timeout)).final

    async def invite(self, uri: str | None = None, *, headers: Headers | None = None,
                     body: bytes | str = b"", content_type: str | None = None,
                     from_user: str | None = None, until: Until = "final",
                     timeout: float | None = None) -> Responses:
        return await self.request("INVITE", uri, headers=headers, body=body,
                                  content_type=content_type, from_user=from_user,
                                  until=until, timeout=timeout)

    async def cancel(self, timeout: float | None = None) -> tuple[SipResponse, SipResponse]:
        return await self._run(cancel_flow(self._core, timeout or self._core.timeout))

    async def register(self, uri: str | None, user: str, password: str | None = None,
                       expires: int = 3600, *, headers: Headers | None = None,
                       timeout: float | None = None) -> SipResponse:
        return await self._run(register_flow(self._core, uri, user, password, expires, headers,
                                         timeout or self._core.timeout))

    async def request(self, method: str, uri: str | None = None, *,
                      headers: Headers | None = None, body: bytes | str = b"",
                      content_type: str | None = None, from_user: str | None = None,
                      until: Until = "final", timeout: float | None = None) -> Responses:
        return await self._run(request_flow(self._core, method, uri, headers, body, content_type,
                                                    from_user, until, timeout))

    async def send_raw(self, data: bytes, *, wait: bool = True,
                       timeout: float | None = None) -> Responses:
        return await self._run(raw_flow(self._core, data, wait, timeout))

    async def wait_final(self, timeout: float | None = None) -> Responses:
        return await self._run(wait_flow(self._core, timeout))

    def close(self) -> None:
        transport = self._transport
        if transport is not None:
            if isinstance(self._frames, WsFrames) and not transport.is_closing():
                with contextlib.suppress(OSError):  # the WebSocket's close frame
                    cast(asyncio.Transport, transport).write(self._frames.close())
            transport.close()  # closes the socket on the loop's next turn
        else:
            self._sock.close()

    async def __aenter__(self) -> AsyncSipClient:
        return await self.open()

    async def aclose(self) -> None:
        """:meth:`close`, and wait (at most ``timeout``) until what was written is out and
        the connection closed: the last ACK of a TLS client is not lost with the loop. A
        WebSocket closes with its closing handshake (RFC 6455 §7): the close frame, then the
        server ends the stream."""
        transport, frames = self._transport, self._frames
        if isinstance(frames, WsFrames) and transport is not None \
                and not transport.is_closing():
            goodbye = frames.close()
            if goodbye:
                cast(asyncio.Transport, transport).write(goodbye)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._gone.wait(), self._core.timeout)
        self.close()
        if self._frames is not None and self._transport is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._gone.wait(), self._core.timeout)
        await asyncio.sleep(0)  # let the transport close its socket before the loop ends

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _received(self, data: bytes) -> None:
        for ack in self._core.feed(data):
            self._send(ack)
        self._changed.set()

    def _lost(self, exc: ConnectionError) -> None:
        self._closed = self._closed or exc
        self._changed.set()

    def _send(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._frames is None:  # (uvloop's transports are not asyncio's classes)
            cast(asyncio.DatagramTransport, transport).sendto(data, self._core.remote)
        else:
            cast(asyncio.Transport, transport).write(self._frames.encode(data))

    async def _run(self, flow: Flow[T]) -> T:
        await self.open()
        try:
            op = next(flow)
            while True:
                if isinstance(op, Send):
                    self._send(op.data)
                else:
                    await self._wait(op)
                op = next(flow)
        except StopIteration as stop:
            value: T = stop.value
            return value
        finally:
            flow.close()

    async def _wait(self, op: Wait) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + op.timeout
        while not op.txn.done(op.until):
            if self._closed is not None:
                raise ConnectionError(f"{self._closed}; {self._core.timeout_error(op)}")
            left = deadline - loop.time()
            if left <= 0:
                raise self._core.timeout_error(op)
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                continue
