"""The media socket: one UDP socket per listen address, every call's RTP through it.

Each read takes what waits, up to ``BATCH`` datagrams (``recvmmsg`` batches with the
compiled fast path), and sends the echoes back in batches (``sendmmsg``). No decisions
here: the media table decides (:class:`responder.core.media.Media`).

* Compiled (``Media.fast``, the extension's ``EchoTable``): one C call reads the socket,
  counts and echoes every packet of a known call and payload type, and hands the rest
  (first packets, DTMF, RTCP, strangers) to :meth:`Media.packet`, whose echoes are sent
  after them.
* Pure Python: every datagram through :meth:`Media.packet` (the same counts and echoes).

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
from collections.abc import Callable
from functools import partial

from responder._accel import SPEEDUPS
from responder.core.media import Echo, Media
from responder.io.udp import MANY, bind_udp, recv_many, send_fits
from responder.sip.addr import Addr

BATCH = 1024  # datagrams per read at most (a 20 ms frame of 500 calls is 500 packets)
HOLD = 0.002  # seconds a busy media socket fills before it is read again (see above)

COMPILED_ECHO = SPEEDUPS is not None and send_fits(Echo)  # checked once, at load


def send_echoes(sock: socket.socket, echoes: list[Echo]) -> int:
    """The pure-Python twin of the compiled ``send_many`` for echoes; returns the failures."""
    failed = 0
    for echo in echoes:
        try:
            sock.sendto(echo.data, echo.dest)
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

    def _pump_compiled(self, fd: int, send: Callable[[list[Echo]], int]) -> int:
        fast = self.media.fast
        assert fast is not None
        now = self.loop.time()
        try:
            read, rest = fast.echo(fd, now, BATCH)
        except OSError:
            return 0
        if rest:
            packet = self.media.packet
            echoes = [e for data, source in rest if (e := packet(data, source, now)) is not None]
            if echoes:
                self._send_errors += send(echoes)
        return read

    def _pump(self, recv: Callable[[], list[tuple[bytes, Addr]]],
              send: Callable[[list[Echo]], int]) -> int:
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
            for data, source in batch:
                echo = packet(data, source, now)
                if echo is not None:
                    echoes.append(echo)
            if echoes:
                self._send_errors += send(echoes)
            if len(batch) < MANY:
                break
        return read
