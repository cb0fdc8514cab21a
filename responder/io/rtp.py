"""The media socket: one UDP socket per listen address, every call's RTP through it.

Each readable wake-up takes up to ``MANY`` datagrams at a time (one ``recvmmsg`` with the
compiled fast path), gives each to :meth:`responder.core.media.Media.packet`, and sends the
echoes of the batch together (one ``sendmmsg``), at most ``BATCH`` datagrams per wake-up so
the SIP sockets and timers are never starved. No decisions here: the media table decides.
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

BATCH = 1024  # datagrams per wake-up at most (a 20 ms frame of 500 calls is 500 packets)

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


class MediaTransport:
    """Drives one :class:`Media` table from its media sockets."""

    def __init__(self, loop: asyncio.AbstractEventLoop, media: Media) -> None:
        self.loop = loop
        self.media = media
        self.sockets: dict[Addr, socket.socket] = {}
        self.send_errors = 0

    def open(self, host: str, port: int = 0) -> Addr:
        """Bind the media socket for a listen address (``port`` 0: a free one)."""
        sock = bind_udp(host, port)
        local: Addr = sock.getsockname()[:2]
        self.sockets[local] = sock
        recv: Callable[[], list[tuple[bytes, Addr]]]
        send: Callable[[list[Echo]], int]
        if COMPILED_ECHO and SPEEDUPS is not None:
            fd, fam, many = sock.fileno(), int(sock.family), SPEEDUPS.send_many
            recv = partial(SPEEDUPS.recv_many, fd)

            def send(echoes: list[Echo]) -> int:
                return int(many(fd, fam, echoes, Echo))
        else:
            recv = partial(recv_many, sock)
            send = partial(send_echoes, sock)
        self.loop.add_reader(sock.fileno(), self._readable, recv, send)
        return local

    def close(self) -> None:
        for sock in self.sockets.values():
            self.loop.remove_reader(sock.fileno())
            sock.close()
        self.sockets.clear()

    def _readable(self, recv: Callable[[], list[tuple[bytes, Addr]]],
                  send: Callable[[list[Echo]], int]) -> None:
        packet = self.media.packet
        now = self.loop.time()
        for _ in range(BATCH // MANY):
            try:
                batch = recv()
            except OSError:
                continue  # e.g. ICMP port unreachable reported on this socket
            echoes = []
            for data, source in batch:
                echo = packet(data, source, now)
                if echo is not None:
                    echoes.append(echo)
            if echoes:
                self.send_errors += send(echoes)
            if len(batch) < MANY:
                break
