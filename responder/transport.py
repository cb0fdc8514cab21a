"""UDP sockets wired to the engine; no decisions here.

Each socket is non-blocking and registered with ``loop.add_reader``; when it is
readable the reader takes up to ``MANY`` datagrams at a time (one ``recvmmsg``
with the compiled fast path, ``recvfrom`` until it would block without it), hands
them to the engine, and sends their responses together, back to back (one
``sendmmsg``), before it reads more: at most ``BATCH`` datagrams per wake-up, so
one busy socket cannot starve another or the timer. One timer handle fires the
engine's next delayed step.

Sending the responses of a batch in one run matters on loopback and in VMs: each
send that finds the peer asleep pays for waking it, and a run of sends wakes it
once; under light load a batch is one datagram, so nothing waits for company.

With several workers (``--workers``), every worker reads the same sockets; a
request the engine hands to its owner worker travels over that worker's
inbox (an AF_UNIX datagram socket) with its source and local addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from functools import partial

from .engine import Engine, Exchange, Outgoing
from .speedups import SPEEDUPS

Addr = tuple[str, int]
Recv = Callable[[], list[tuple[bytes, Addr]]]  # up to MANY datagrams; [] when none waits
Send = Callable[[list[Outgoing]], int]  # sends the outs' data; returns how many failed

MANY = 64  # datagrams per receive call (the compiled recv_many's buffer count)
BATCH = 256  # datagrams per wake-up at most
MAX_DATAGRAM = 65535


def recv_many(sock: socket.socket) -> list[tuple[bytes, Addr]]:
    """The pure-Python twin of the compiled ``recv_many``."""
    got: list[tuple[bytes, Addr]] = []
    for _ in range(MANY):
        try:
            data, source = sock.recvfrom(MAX_DATAGRAM)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            continue  # e.g. ICMP port unreachable reported on this socket
        got.append((data, source[:2]))
    return got


def send_many(sock: socket.socket, outs: list[Outgoing]) -> int:
    """The pure-Python twin of the compiled ``send_many``: each out's data to its dest, not
    a drop (data None) nor a request handed to another worker; returns the failures."""
    failed = 0
    for out in outs:
        if out.data is None or out.forward is not None:
            continue
        try:
            sock.sendto(out.data, out.dest)
        except OSError:
            failed += 1  # UDP: a full buffer or unreachable peer loses it
    return failed


def socket_io(sock: socket.socket) -> tuple[Recv, Send]:
    """How ``sock`` is read and written: the compiled batch calls where they apply."""
    family = sock.family
    if SPEEDUPS is not None and family in (socket.AF_INET, socket.AF_INET6):
        fd = sock.fileno()
        return partial(SPEEDUPS.recv_many, fd), partial(SPEEDUPS.send_many, fd, int(family))
    return partial(recv_many, sock), partial(send_many, sock)


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
        on_exchanges: Callable[[list[Exchange]], None] | None,
        peers: list[socket.socket] | None = None,
    ) -> None:
        """``on_exchanges``: given the exchanges of each wake-up; None: nobody wants them."""
        self.loop = loop
        self.engine = engine
        self.on_exchanges = on_exchanges
        self.sockets: dict[Addr, socket.socket] = {}
        self.peers = peers or []  # worker i's inbox, to forward requests to
        self._inbox: socket.socket | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.send_errors = 0
        self._senders: dict[Addr, Send] = {}  # per local address: how its socket sends

    def add(self, sock: socket.socket) -> Addr:
        local: Addr = sock.getsockname()[:2]
        self.sockets[local] = sock
        recv, self._senders[local] = socket_io(sock)
        self.loop.add_reader(sock.fileno(), self._readable, recv, local)
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
        self._senders.clear()

    def _readable(self, recv: Recv, local: Addr) -> None:
        receive = self.engine.receive
        now = self.loop.time()
        exchanges: list[Exchange] = []
        for _ in range(BATCH // MANY):
            try:
                batch = recv()
            except OSError:
                continue  # e.g. ICMP port unreachable reported on this socket
            ready: list[Outgoing] = []
            for data, source in batch:
                outs = receive(data, source, now, local)
                if outs:
                    ready += outs
            if ready:
                self._send(local, ready, exchanges)
            if len(batch) < MANY:
                break
        if exchanges and self.on_exchanges is not None:
            self.on_exchanges(exchanges)
        self._arm()

    def _forwarded(self, inbox: socket.socket) -> None:
        now = self.loop.time()
        exchanges: list[Exchange] = []
        for _ in range(BATCH):
            try:
                msg = inbox.recv(MAX_DATAGRAM + 128)
            except (BlockingIOError, InterruptedError):
                break
            local, source, data = unpack_forward(msg)
            if local in self._senders:
                self._send(local, self.engine.receive(data, source, now, local, True), exchanges)
        if exchanges and self.on_exchanges is not None:
            self.on_exchanges(exchanges)
        self._arm()

    def _send(self, local: Addr, outs: list[Outgoing], exchanges: list[Exchange]) -> None:
        """Send ``outs`` from the socket at ``local``; requests for other workers go to
        their inboxes; the exchanges are added to ``exchanges``."""
        if self.peers:
            for out in outs:
                if out.forward is not None:
                    with contextlib.suppress(OSError):
                        self.peers[out.forward].send(
                            pack_forward(out.local, out.dest, out.data or b""))
        if self.on_exchanges is not None:
            exchanges += [out.exchange for out in outs if out.exchange is not None]
        self.send_errors += self._senders[local](outs)

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
            local = out.local if out.local in self._senders else next(iter(self._senders), None)
            if local is not None:
                self._send(local, [out], exchanges)
        if exchanges and self.on_exchanges is not None:
            self.on_exchanges(exchanges)
        self._arm()
