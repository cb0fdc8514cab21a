"""SIP over WebSocket for the test clients (RFC 7118): the handshake and the frames.

A client on ``ws`` or ``wss`` opens one TCP connection (TLS-wrapped for ``wss``, verified
as for ``tls``: :mod:`responder.testing.streams`), upgrades it offering the ``sip``
subprotocol, which the server must echo, and then sends each SIP message as one WebSocket
text message (binary when it is not UTF-8). What comes back is one SIP message per
WebSocket message, text or binary, fragments joined; a message of line ends only (a
keep-alive, RFC 5626) is dropped, pings get their pongs.

The WebSocket protocol itself is the ``websockets`` library's sans-I/O
:class:`~websockets.client.ClientProtocol` (another implementation than the responder's
aiohttp server side), driven here by the blocking and the asyncio client alike: this module
only turns bytes into messages and messages into bytes, like
:class:`~responder.testing.streams.Frames` for TCP. ``websockets`` is imported only when a
client speaks WebSocket (it comes with the ``test`` extra).
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from responder.sip.addr import Addr, hostport
from responder.sip.framing import MAX_MESSAGE

if TYPE_CHECKING:
    from websockets.client import ClientProtocol

SUBPROTOCOL = "sip"  # RFC 7118 §4
WEBSOCKETS = frozenset({"ws", "wss"})
MAX_WS_MESSAGE = MAX_MESSAGE  # bytes of one incoming WebSocket message (a SIP message's cap)
KEEPALIVE = frozenset(b"\r\n")


def available() -> bool:
    """Whether the ``websockets`` library is installed."""
    return importlib.util.find_spec("websockets") is not None


def _library() -> None:
    if not available():
        raise ModuleNotFoundError("transport='ws'/'wss' needs the websockets library "
                                  "(pip install websockets, or sip-responder[test])")


class WsFrames:
    """One WebSocket connection of a test client, sans-I/O.

    :meth:`start` is the upgrade request to write; :meth:`feed` takes what was read and
    returns the SIP messages it completes (ConnectionError when the upgrade is refused,
    the ``sip`` subprotocol is not echoed, or the server closes); after each feed,
    :meth:`pending` is what must be written back (pongs, the reply to a close).
    """

    def __init__(self, remote: Addr, secure: bool) -> None:
        _library()
        from websockets.client import ClientProtocol
        from websockets.typing import Subprotocol
        from websockets.uri import parse_uri

        self._remote = remote
        uri = parse_uri(f"{'wss' if secure else 'ws'}://{hostport(remote)}/")
        self._ws: ClientProtocol = ClientProtocol(
            uri, subprotocols=[Subprotocol(SUBPROTOCOL)], max_size=MAX_WS_MESSAGE)
        self._parts: list[bytes] = []  # fragments of the message being received
        self._error: ConnectionError | None = None  # the server closed, or broke the protocol
        self.open = False

    def start(self) -> bytes:
        """The upgrade request (GET / with ``Sec-WebSocket-Protocol: sip``)."""
        self._ws.send_request(self._ws.connect())
        return self.pending()

    def feed(self, data: bytes) -> list[bytes]:
        """The SIP messages ``data`` completes (none until the upgrade is answered)."""
        from websockets.frames import Frame, Opcode
        from websockets.http11 import Response

        who = hostport(self._remote)
        if self._error is not None:
            raise self._error
        if not data:
            self._ws.receive_eof()
            when = "" if self.open else " before it answered the WebSocket upgrade"
            raise ConnectionError(f"{who} closed the connection{when}")
        self._ws.receive_data(data)
        out: list[bytes] = []
        answered = closed = False
        for event in self._ws.events_received():
            if isinstance(event, Response):
                answered = True
            elif not isinstance(event, Frame):
                continue  # (a client receives no Request)
            elif event.opcode is Opcode.CLOSE:
                closed = True
            elif event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                self._parts.append(bytes(event.data))
                if event.fin:
                    message = b"".join(self._parts)
                    self._parts.clear()
                    if message and not set(message) <= KEEPALIVE:
                        out.append(message)
        if not self.open:
            self._upgraded(answered)
        failed = self._ws.parser_exc
        if closed:
            self._error = ConnectionError(f"{who} closed the connection")
        elif failed is not None:
            self._error = ConnectionError(f"{who} sent what is no WebSocket message "
                                          f"({failed})")
        if self._error is not None and not out:
            raise self._error
        return out  # (an error after them is raised by the next feed)

    def _upgraded(self, answered: bool) -> None:
        who = hostport(self._remote)
        refused = self._ws.handshake_exc
        if refused is not None:
            raise ConnectionError(f"{who} refused the WebSocket upgrade ({refused})")
        if not answered:
            return
        if self._ws.subprotocol != SUBPROTOCOL:
            raise ConnectionError(f"{who} did not accept the {SUBPROTOCOL} subprotocol "
                                  "(RFC 7118 §4)")
        self.open = True

    def pending(self) -> bytes:
        """What must be written now (the end-of-stream marker left out)."""
        return b"".join(self._ws.data_to_send())

    def encode(self, message: bytes) -> bytes:
        """One SIP message as one WebSocket message: text when it is UTF-8, else binary."""
        if not self.open or self.closing:
            raise ConnectionError(f"the WebSocket to {hostport(self._remote)} is not open")
        try:
            message.decode("utf-8")
        except UnicodeDecodeError:
            self._ws.send_binary(message)
        else:
            self._ws.send_text(message)
        return self.pending()

    def close(self) -> bytes:
        """The close frame to write (normal closure), or nothing when not open."""
        from websockets.protocol import State

        if self._ws.state is not State.OPEN:
            return b""
        self._ws.send_close(1000)
        return self.pending()

    @property
    def closing(self) -> bool:
        """A close frame went out (or came in): wait for the server to end the stream."""
        from websockets.protocol import State

        return self._ws.state in (State.CLOSING, State.CLOSED)
