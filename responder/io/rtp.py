"""The media socket: one UDP socket per listen address, every call's RTP through it.

Each read takes what waits, up to ``BATCH`` datagrams (``recvmmsg`` batches with the
compiled fast path), and sends the echoes back in batches (``sendmmsg``). No decisions
here: the media table decides (:class:`responder.core.media.Media`).

* Compiled (``Media.fast``, the extension's ``EchoTable``): one C call reads the socket,
  counts and echoes every packet of a known call and payload type, and hands the rest
  (first packets, DTMF, RTCP, strangers) to :meth:`Media.packet`, whose echoes are sent
  after them.
* Pure Python: every datagram through :meth:`Media.packet` (the same counts and echoes).

A media socket bound to a wildcard address (``0.0.0.0``, ``::``: the listen address was one)
sends each echo from the address its packet was sent to, as the SIP socket does its replies
(responder.io.udp, SPEC §4): the kernel says it with each datagram (``IP_PKTINFO``,
``IPV6_RECVPKTINFO``, asked for by ``bind_udp``), the echo carries it (``Echo.local``) and
leaves with it as a control message (compiled: ``EchoTable.echo_reached``,
straight from the packet's own control message; pure Python: ``recvmsg``/``sendmsg``). A
phone that ``connect()``-s its RTP socket to the address it sends to, or drops what comes
from elsewhere, gets its echo. Sockets bound to one address read and send as before.

A busy socket is read every ``hold`` seconds instead of on each readable event: after a
read that found datagrams the reader is removed and the socket read again ``hold`` later,
and so on until a read finds none (then the reader is back). Media arrives every 20 ms per
call, so at 25,000 packets a second a wake-up per 2 ms reads about 50 datagrams instead of
about 4, at the cost of at most ``hold`` more echo delay (a jitter buffer's job; SPEC §8.3
asks for an echo, not a low delay). ``hold`` 0: read on every readable event.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Sequence
from functools import lru_cache, partial
from typing import Any

from responder._accel import SPEEDUPS
from responder.core.effects import Send
from responder.core.media import Echo, Media
from responder.io.udp import (
    MANY,
    WILDCARDS,
    bind_udp,
    pktinfo_message,
    recv_many,
    recv_pktinfo,
    send_fits,
    zone_sockaddr,
)
from responder.sip.addr import Addr

BATCH = 1024  # datagrams per read at most (a 20 ms frame of 500 calls is 500 packets)
HOLD = 0.002  # seconds a busy media socket fills before it is read again (see above)

COMPILED_ECHO = SPEEDUPS is not None and send_fits(Echo)  # checked once, at load
# ... and for a wildcard-bound socket (the echoes Python makes are sent as Sends from local)
COMPILED_REACHED = send_fits(Send) and hasattr(SPEEDUPS, "recv_reached")
_from = lru_cache(maxsize=256)(pktinfo_message)  # the control message of a local address


def send_echoes(sock: socket.socket, echoes: list[Echo]) -> int:
    """The pure-Python twin of the compiled ``send_many`` for echoes; returns the failures."""
    failed = 0
    for echo in echoes:
        try:
            sock.sendto(echo.data, echo.dest)
        except OSError:
            failed += 1
    return failed


def send_echoes_from(sock: socket.socket, echoes: list[Echo]) -> int:
    """:func:`send_echoes` for a wildcard-bound socket: each echo from its ``local`` address
    (``sendmsg`` with IP_PKTINFO / IPV6_PKTINFO); returns the failures."""
    failed = 0
    for echo in echoes:
        dest: tuple[str, int] | tuple[str, int, int, int] = echo.dest
        try:
            if "%" in dest[0]:  # link-local: keep the zone (see io.udp.zone_sockaddr)
                dest = zone_sockaddr(*echo.dest)
            cmsg = _from(echo.local[0]) if echo.local is not None else None
            if cmsg is None:
                sock.sendto(echo.data, dest)
            else:
                sock.sendmsg([echo.data], [cmsg], 0, dest)
        except OSError:
            failed += 1
    return failed


Pump = Callable[[], int]  # read what waits (at most BATCH), echo, count: how many were read


class MediaTransport:
    """Drives one :class:`Media` table from its media sockets."""

    def __init__(self, loop: asyncio.AbstractEventLoop, media: Media,
                 hold: float = HOLD) -> None:
        self.loop = loop
        self.media = media
        self.hold = hold
        self.sockets: dict[Addr, socket.socket] = {}
        self._send_errors = 0
        self._held: dict[int, asyncio.TimerHandle] = {}

    @property
    def send_errors(self) -> int:
        """Echoes the sockets refused."""
        fast = self.media.fast
        return self._send_errors + (fast.send_errors if fast is not None else 0)

    def open(self, host: str, port: int = 0) -> Addr:
        """Bind the media socket for a listen address (``port`` 0: a free one)."""
        sock = bind_udp(host, port)
        local: Addr = sock.getsockname()[:2]
        self.sockets[local] = sock
        fd = sock.fileno()
        if local[0] in WILDCARDS:  # SPEC §4: each echo from the address its packet reached
            self._open_reached(sock, fd, local[1])
            return local
        recv: Callable[[], list[tuple[bytes, Addr]]]
        send: Callable[[list[Echo]], int]
        if COMPILED_ECHO and SPEEDUPS is not None:
            fam, many = int(sock.family), SPEEDUPS.send_many
            recv = partial(SPEEDUPS.recv_many, fd)

            def send(echoes: list[Echo]) -> int:
                return int(many(fd, fam, echoes, Echo))
        else:
            recv = partial(recv_many, sock)
            send = partial(send_echoes, sock)
        pump: Pump
        if COMPILED_ECHO and self.media.fast is not None:
            pump = partial(self._pump_compiled, fd, send)
        else:
            pump = partial(self._pump, recv, send)
        self.loop.add_reader(fd, self._readable, fd, pump)
        return local

    def _open_reached(self, sock: socket.socket, fd: int, port: int) -> None:
        """:meth:`open`'s reading and sending for a socket bound to a wildcard address."""
        recv: Callable[[], list[tuple[bytes, Addr, Addr | None]]]
        send: Callable[[list[Echo]], int]
        compiled = COMPILED_ECHO and COMPILED_REACHED
        if compiled and SPEEDUPS is not None:
            fam, many = int(sock.family), SPEEDUPS.send_many
            recv = partial(SPEEDUPS.recv_reached, fd, port)

            def send(echoes: list[Echo]) -> int:  # first packets, DTMF: not the hot path
                return int(many(fd, fam, [Send(e.dest, e.data, None, e.local) for e in echoes],
                                Send, True))
        else:
            recv = partial(recv_pktinfo, sock, port)
            send = partial(send_echoes_from, sock)
        pump: Pump
        if compiled and self.media.fast is not None:
            pump = partial(self._pump_compiled, fd, send, port)
        else:
            pump = partial(self._pump, recv, send, True)
        self.loop.add_reader(fd, self._readable, fd, pump)

    def close(self) -> None:
        for handle in self._held.values():
            handle.cancel()
        self._held.clear()
        for sock in self.sockets.values():
            self.loop.remove_reader(sock.fileno())
            sock.close()
        self.sockets.clear()

    def _readable(self, fd: int, pump: Pump) -> None:
        if pump() and self.hold > 0:  # busy: read again in ``hold``, not on each datagram
            self.loop.remove_reader(fd)
            self._held[fd] = self.loop.call_later(self.hold, self._again, fd, pump)

    def _again(self, fd: int, pump: Pump) -> None:
        if pump():
            self._held[fd] = self.loop.call_later(self.hold, self._again, fd, pump)
        else:  # idle: wait for the next datagram
            del self._held[fd]
            self.loop.add_reader(fd, self._readable, fd, pump)

    def _pump_compiled(self, fd: int, send: Callable[[list[Echo]], int], port: int = -1,
                       ) -> int:
        """The table reads, counts and echoes; what it leaves (first packets, DTMF, RTCP,
        strangers) goes through :meth:`Media.packet`. ``port`` >= 0: a wildcard-bound socket
        on that port (``echo_reached``): each echo leaves from the address its packet
        reached, and what is left comes with that address."""
        fast = self.media.fast
        assert fast is not None
        now = self.loop.time()
        try:
            read, rest = (fast.echo(fd, now, BATCH) if port < 0
                          else fast.echo_reached(fd, now, BATCH, port))
        except OSError:
            return 0
        if rest:
            packet = self.media.packet
            left: list[tuple[Any, ...]] = rest  # (data, source[, reached])
            echoes = [e for item in left
                      if (e := packet(item[0], item[1], now,
                                      item[2] if port >= 0 else None)) is not None]
            if echoes:
                self._send_errors += send(echoes)
        return read

    def _pump(self, recv: Callable[[], Sequence[tuple[Any, ...]]],
              send: Callable[[list[Echo]], int], reached: bool = False) -> int:
        """Every datagram through :meth:`Media.packet`; ``reached``: ``recv`` gives each
        with the address it was sent to (a wildcard-bound socket), its echo leaves from it."""
        packet = self.media.packet
        now = self.loop.time()
        read = 0
        for _ in range(BATCH // MANY):
            try:
                batch = recv()
            except OSError:
                continue  # e.g. ICMP port unreachable reported on this socket
            read += len(batch)
            echoes = []
            for item in batch:
                echo = packet(item[0], item[1], now, item[2] if reached else None)
                if echo is not None:
                    echoes.append(echo)
            if echoes:
                self._send_errors += send(echoes)
            if len(batch) < MANY:
                break
        return read
