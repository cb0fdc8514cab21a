"""UDP sockets wired to the engine; no decisions here.

Each socket is non-blocking and registered with ``loop.add_reader``; when it is
readable the reader drains it with ``recvfrom`` until it would block (at most
``BATCH`` datagrams per wake-up, so one busy socket cannot starve another or
the timer). One timer handle fires the engine's next delayed step.

With several workers (``--workers``), every worker reads the same sockets; a
request the engine hands to its owner worker travels over that worker's
inbox (an AF_UNIX datagram socket) with its source and local addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable

from .engine import Engine, Exchange, Outgoing

MANY = 64  # datagrams per recv_many (its C buffer count)
RecvMany = Callable[[int], list[tuple[bytes, tuple[str, int]]]]
SendMany = Callable[[int, int, list[Outgoing]], int]


def _batch_calls() -> tuple[RecvMany, SendMany] | None:
    """The compiled recvmmsg/sendmmsg calls, unless not built or SIP_RESPONDER_PURE is set."""
    if os.environ.get("SIP_RESPONDER_PURE"):
        return None
    try:
        from ._speedups import recv_many, send_many
    except ImportError:
        return None
    return recv_many, send_many


BATCH_CALLS = _batch_calls()

BATCH = 256
# Responses are sent in runs of up to FLUSH, back to back, rather than one between every two
# receives: on loopback (and in VMs) each send that finds the peer asleep pays for waking it,
# and a run of sends wakes it once. Under light load a run is one response (no added delay).
# Measured (closed loop, 64 in flight): one send per receive 20-27k responses per CPU-second,
# runs of 16-64: 29-33k.
FLUSH = 32
MAX_DATAGRAM = 65535

Addr = tuple[str, int]


def bind_udp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.setblocking(False)
        for opt, size in ((socket.SO_RCVBUF, 4 << 20), (socket.SO_SNDBUF, 4 << 20)):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, opt, size)
    except BaseException:
        sock.close()
        raise
    return sock


def pack_forward(local: Addr | None, source: Addr, data: bytes) -> bytes:
    lh, lp = local or ("", 0)
    return f"{lh}\x00{lp}\x00{source[0]}\x00{source[1]}\x00".encode() + data


def unpack_forward(msg: bytes) -> tuple[Addr, Addr, bytes]:
    lh, lp, sh, sp, data = msg.split(b"\x00", 4)
    return (lh.decode(), int(lp)), (sh.decode(), int(sp)), data


class UdpTransport:
    """Drives one engine from any number of UDP sockets and one timer."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        engine: Engine,
        on_exchanges: Callable[[list[Exchange]], None],
        peers: list[socket.socket] | None = None,
    ) -> None:
        self.loop = loop
        self.engine = engine
        self.on_exchanges = on_exchanges
        self.sockets: dict[Addr, socket.socket] = {}
        self.peers = peers or []  # worker i's inbox, to forward requests to
        self._inbox: socket.socket | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.send_errors = 0

    def add(self, sock: socket.socket) -> Addr:
        local: Addr = sock.getsockname()[:2]
        self.sockets[local] = sock
        family = sock.family
        if BATCH_CALLS is not None and family in (socket.AF_INET, socket.AF_INET6):
            self.loop.add_reader(sock.fileno(), self._readable_many, sock.fileno(), int(family),
                                 local)
        else:
            self.loop.add_reader(sock.fileno(), self._readable, sock, local)
        return local

    def add_inbox(self, sock: socket.socket) -> None:
        """This worker's inbox: requests other workers hand over (see pack_forward)."""
        sock.setblocking(False)
        self._inbox = sock
        self.loop.add_reader(sock.fileno(), self._forwarded, sock)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for sock in (*self.sockets.values(), *([self._inbox] if self._inbox else [])):
            self.loop.remove_reader(sock.fileno())
        for sock in self.sockets.values():
            sock.close()
        self.sockets.clear()

    def _readable(self, sock: socket.socket, local: Addr) -> None:
        receive = self.engine.receive
        now = self.loop.time()
        exchanges: list[Exchange] = []
        ready: list[Outgoing] = []
        flush = FLUSH
        for _ in range(BATCH):
            try:
                data, source = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue  # e.g. ICMP port unreachable reported on this socket
            outs = receive(data, source[:2], now, local)
            if outs:
                ready += outs
                if len(ready) >= flush:
                    self._send(sock, ready, exchanges)
                    ready = []
        if ready:
            self._send(sock, ready, exchanges)
        if exchanges:
            self.on_exchanges(exchanges)
        self._arm()

    def _readable_many(self, fd: int, family: int, local: Addr) -> None:
        """:meth:`_readable` with recvmmsg/sendmmsg: up to MANY datagrams a system call,
        their responses sent together after them (one run per batch received)."""
        assert BATCH_CALLS is not None
        recv_many, send_many = BATCH_CALLS
        receive = self.engine.receive
        now = self.loop.time()
        exchanges: list[Exchange] = []
        for _ in range(BATCH // MANY):
            try:
                batch = recv_many(fd)
            except OSError:
                continue  # e.g. ICMP port unreachable reported on this socket
            ready: list[Outgoing] = []
            for data, source in batch:
                outs = receive(data, source, now, local)
                if outs:
                    ready += outs
            if ready:
                if self.peers:
                    self._forward(ready)
                for out in ready:
                    if out.exchange is not None:
                        exchanges.append(out.exchange)
                self.send_errors += send_many(fd, family, ready)
            if len(batch) < MANY:
                break
        if exchanges:
            self.on_exchanges(exchanges)
        self._arm()

    def _forward(self, outs: list[Outgoing]) -> None:
        for out in outs:
            if out.forward is not None:
                with contextlib.suppress(OSError):
                    self.peers[out.forward].send(pack_forward(out.local, out.dest, out.data or b""))

    def _forwarded(self, inbox: socket.socket) -> None:
        now = self.loop.time()
        exchanges: list[Exchange] = []
        for _ in range(BATCH):
            try:
                msg = inbox.recv(MAX_DATAGRAM + 128)
            except (BlockingIOError, InterruptedError):
                break
            local, source, data = unpack_forward(msg)
            sock = self.sockets.get(local)
            if sock is not None:
                self._send(sock, self.engine.receive(data, source, now, local, True), exchanges)
        if exchanges:
            self.on_exchanges(exchanges)
        self._arm()

    def _send(self, sock: socket.socket, outs: list[Outgoing], exchanges: list[Exchange]) -> None:
        for out in outs:
            if out.forward is not None:
                with contextlib.suppress(OSError):
                    self.peers[out.forward].send(pack_forward(out.local, out.dest, out.data or b""))
                continue
            if out.exchange is not None:
                exchanges.append(out.exchange)
            if out.data is None:
                continue
            try:
                sock.sendto(out.data, out.dest)
            except OSError:
                self.send_errors += 1  # UDP: a full buffer or unreachable peer loses it

    def _arm(self) -> None:
        deadline = self.engine.next_deadline()
        if deadline is None or deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self.loop.call_at(deadline, self._fire, deadline)

    def _fire(self, deadline: float) -> None:
        self._timer = None
        self._timer_at = None
        # asyncio may run a timer up to one clock tick early: it is due at its deadline.
        outs = self.engine.due(max(self.loop.time(), deadline))
        exchanges: list[Exchange] = []
        for out in outs:
            sock = self.sockets.get(out.local) if out.local else None
            if sock is None and self.sockets:
                sock = next(iter(self.sockets.values()))
            if sock is not None:
                self._send(sock, [out], exchanges)
        if exchanges:
            self.on_exchanges(exchanges)
        self._arm()
