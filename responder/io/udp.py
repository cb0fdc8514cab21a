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

A socket bound to a wildcard address (``0.0.0.0``, ``::``) asks the kernel for each
datagram's destination address (``IP_PKTINFO``, ``IPV6_RECVPKTINFO``): the engine sees
the address the request was sent to as ``Inbound.local`` (our Contact, the SDP's ``c=``),
and the reply leaves from it (``sendmsg`` with the same control message), so a client that
``connect()``-ed to one of the host's addresses gets its answer from that address (SPEC §4).
These sockets are read by :func:`recv_pktinfo` and written by :func:`send_many`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from functools import lru_cache, partial

from responder._accel import SPEEDUPS
from responder.core.effects import UDP, Effect, Handoff, Inbound, Send
from responder.core.engine import Engine
from responder.io.timer import EngineTimer
from responder.sip.addr import Addr, hostport

Recv = Callable[[], list[tuple[bytes, Addr]]]  # up to MANY datagrams; [] when none waits
# ... on a wildcard-bound socket: each with the address it was sent to (IP_PKTINFO)
RecvReached = Callable[[], list[tuple[bytes, Addr, Addr | None]]]
SendMany = Callable[[list[Effect]], int]  # sends the Sends' data; returns how many failed
Observe = Callable[[list[Effect]], None]  # the journal, logs and metrics, given each batch

MANY = 64  # datagrams per receive call (the compiled recv_many's buffer count)
WILDCARDS = ("0.0.0.0", "::")
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux's value (Python 3.11 lacks the name)
_IN_PKTINFO = struct.Struct("=I4s4s")    # ifindex, spec_dst, addr (struct in_pktinfo)
_IN6_PKTINFO = struct.Struct("=16sI")    # addr, ifindex (struct in6_pktinfo)
_CMSG_ROOM = socket.CMSG_SPACE(_IN6_PKTINFO.size)
BATCH = 256  # datagrams per wake-up at most
MAX_DATAGRAM = 65535


def zoned(host: str, scope_id: int) -> str:
    """``fe80::1%eth0``: a link-local source with its zone, the way the compiled
    ``recv_many`` writes it (the interface's name, its index when it has none), and the way
    ``sendto`` reads it back. SPEC §4: the reply leaves on the link the request came on."""
    try:
        return f"{host}%{socket.if_indextoname(scope_id)}"
    except OSError:
        return f"{host}%{scope_id}"


@lru_cache(maxsize=256)
def zone_sockaddr(host: str, port: int) -> tuple[str, int, int, int]:
    """``("fe80::1%eth0", 5060)`` as the 4-tuple ``sendto`` needs: given a 2-tuple, Python
    resolves the zone and then sets the scope id to 0, and the kernel picks a link."""
    addr, _, zone = host.partition("%")
    scope = int(zone) if zone.isascii() and zone.isdigit() else socket.if_nametoindex(zone)
    return addr, port, 0, scope


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
        if len(source) == 4 and source[3]:  # IPv6 (host, port, flowinfo, scope_id)
            got.append((data, (zoned(source[0], source[3]), source[1])))
        else:
            got.append((data, source[:2]))
    return got


def send_many(sock: socket.socket, effects: list[Effect], reached: bool = False) -> int:
    """The pure-Python twin of the compiled ``send_many``: each Send's data to its dest, the
    other effects skipped; returns the failures. ``reached``: the socket is bound to a
    wildcard address, and each Send leaves from its ``local`` address (IP_PKTINFO)."""
    failed = 0
    for out in effects:
        if type(out) is not Send:
            continue
        dest: tuple[str, int] | tuple[str, int, int, int] = out.dest
        try:
            if "%" in dest[0]:
                dest = zone_sockaddr(*out.dest)
            local = out.local
            cmsg = (pktinfo_message(local[0])
                    if reached and local is not None and local[0] not in WILDCARDS else None)
            if cmsg is None:
                sock.sendto(out.data, dest)
            else:
                sock.sendmsg([out.data], [cmsg], 0, dest)
        except OSError:
            failed += 1  # UDP: a full buffer or unreachable peer loses it
    return failed


def pktinfo_local(ancillary: list[tuple[int, int, bytes]], port: int) -> Addr | None:
    """The destination address of a datagram, from its IP_PKTINFO/IPV6_PKTINFO message."""
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12:
            return socket.inet_ntop(socket.AF_INET, data[8:12]), port
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(data) >= 20:
            addr, index = _IN6_PKTINFO.unpack_from(data)
            host = socket.inet_ntop(socket.AF_INET6, addr)
            return (zoned(host, index) if host.startswith("fe80:") else host), port
    return None


def recv_pktinfo(sock: socket.socket, port: int) -> list[tuple[bytes, Addr, Addr | None]]:
    """Up to MANY datagrams of a wildcard-bound socket: data, source, and the address each
    was sent to (None when the kernel did not say)."""
    got: list[tuple[bytes, Addr, Addr | None]] = []
    for _ in range(MANY):
        try:
            data, ancillary, _flags, source = sock.recvmsg(MAX_DATAGRAM, _CMSG_ROOM)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            continue
        if len(source) == 4 and source[3]:
            peer: Addr = (zoned(source[0], source[3]), source[1])
        else:
            peer = source[:2]
        got.append((data, peer, pktinfo_local(ancillary, port)))
    return got


def pktinfo_message(host: str) -> tuple[int, int, bytes] | None:
    """The control message that makes a datagram leave from ``host`` (None: cannot)."""
    addr, _, zone = host.partition("%")
    try:
        if ":" in addr:
            index = 0
            if zone:
                index = (int(zone) if zone.isascii() and zone.isdigit()
                         else socket.if_nametoindex(zone))
            return (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO,
                    _IN6_PKTINFO.pack(socket.inet_pton(socket.AF_INET6, addr), index))
        return (socket.IPPROTO_IP, IP_PKTINFO,
                _IN_PKTINFO.pack(0, socket.inet_pton(socket.AF_INET, addr), bytes(4)))
    except OSError:
        return None


def send_fits(send_type: type[tuple[object, ...]]) -> bool:
    """The compiled send_many sends the items of ``send_type`` and reads their destination
    and bytes at positions 0 and 1: only a type that keeps them there may be given to it."""
    fields: tuple[str, ...] = getattr(send_type, "_fields", ())
    return fields[:2] == ("dest", "data")


COMPILED_SEND = SPEEDUPS is not None and send_fits(Send)  # checked once, at load


def socket_io(sock: socket.socket) -> tuple[Recv, SendMany]:
    """How ``sock`` is read and written: the compiled batch calls where they apply."""
    family = sock.family
    if SPEEDUPS is not None and COMPILED_SEND and family in (socket.AF_INET, socket.AF_INET6):
        fd, fam, send = sock.fileno(), int(family), SPEEDUPS.send_many
        return partial(SPEEDUPS.recv_many, fd), lambda effects: send(fd, fam, effects, Send)
    return partial(recv_many, sock), partial(send_many, sock)


BUFFER = 4 << 20  # bytes asked for each socket's receive and send buffers


def buffers(sock: socket.socket, size: int = BUFFER) -> None:
    """Ask for ``size``-byte socket buffers: as root past the kernel's rmem_max/wmem_max
    (SO_RCVBUFFORCE: a fresh machine caps SO_RCVBUF at 212,992 bytes, about 160 small
    datagrams of a burst), else as far as the kernel allows."""
    for force, plain in ((getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF),
                         (getattr(socket, "SO_SNDBUFFORCE", None), socket.SO_SNDBUF)):
        for option in (force, plain):
            if option is None:
                continue
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, size)
                break
            except OSError:
                continue


def reached_io(sock: socket.socket, port: int) -> tuple[RecvReached, SendMany]:
    """:func:`socket_io` for a wildcard-bound socket: each datagram with the address it was
    sent to, each reply from it (compiled where the extension is built)."""
    if SPEEDUPS is not None and COMPILED_SEND and hasattr(SPEEDUPS, "recv_reached"):
        fd, fam, send = sock.fileno(), int(sock.family), SPEEDUPS.send_many
        return (partial(SPEEDUPS.recv_reached, fd, port),
                lambda effects: send(fd, fam, effects, Send, True))
    return partial(recv_pktinfo, sock, port), partial(send_many, sock, reached=True)


def bind_udp(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket bound to ``host:port``; an OSError names the address
    (``127.0.0.1:5060: Address already in use``, an unknown host, a denied port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.setblocking(False)
        if host in WILDCARDS:  # each datagram's destination address (see recv_pktinfo)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        buffers(sock)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"{hostport((host, port))}: {exc.strerror or exc}") from None
    except BaseException:
        sock.close()
        raise
    return sock


def pack_handoff(inbound: Inbound) -> bytes:
    """A request handed to the worker that owns its dialog, over that worker's inbox: its
    addresses, transport and (from a stream) the connection it came on, then its bytes."""
    lh, lp = inbound.local or ("", 0)
    sh, sp = inbound.source
    conn = "" if inbound.conn is None else inbound.conn
    return (f"H{lh}\x00{lp}\x00{sh}\x00{sp}\x00{inbound.transport}\x00{conn}\x00".encode()
            + inbound.data)


def unpack_handoff(msg: bytes) -> Inbound:
    lh, lp, sh, sp, transport, conn, data = msg[1:].split(b"\x00", 6)
    return Inbound(data, (sh.decode(), int(sp)), (lh.decode(), int(lp)), transport.decode(),
                   int(conn) if conn else None)


def pack_reply(conn: int, data: bytes) -> bytes:
    """What the owner of a dialog sends over a connection another worker accepted (the
    worker ``conn`` names, see StreamTransport): back to that worker's inbox."""
    return b"R%d\x00" % conn + data


def unpack_reply(msg: bytes) -> tuple[int, bytes]:
    conn, data = msg[1:].split(b"\x00", 1)
    return int(conn), data


class UdpTransport:
    """Drives one engine from any number of UDP sockets and one timer."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        engine: Engine,
        observe: Observe | None,
        peers: list[socket.socket] | None = None,
    ) -> None:
        """``observe``: given the effects of each batch before they are carried out (the
        journal, logs and metrics); None: nobody wants them."""
        self.loop = loop
        self.engine = engine
        self.observe = observe
        self.sockets: dict[Addr, socket.socket] = {}
        self.peers = peers or []  # worker i's inbox, to hand requests to
        self._inbox: socket.socket | None = None
        self.timer = EngineTimer(loop, engine, self._timed)  # shared with stream listeners
        self.send_errors = 0
        self._senders: dict[Addr, SendMany] = {}  # per local address: how its socket sends
        # With stream listeners beside (io/stream.py): the timed effects that are theirs are
        # carried out by them, the rest come back for UDP (both transports share one engine).
        self.claim: Callable[[list[Effect]], list[Effect]] | None = None
        # ... and with --workers, what another worker sends over one of their connections
        self.reply: Callable[[int, bytes], None] | None = None

    def add(self, sock: socket.socket) -> Addr:
        local: Addr = sock.getsockname()[:2]
        self.sockets[local] = sock
        if local[0] in WILDCARDS:  # SPEC §4: each reply from the address its request reached
            each, self._senders[local] = reached_io(sock, local[1])
            self.loop.add_reader(sock.fileno(), self._reached, each, local)
            return local
        recv, self._senders[local] = socket_io(sock)
        self.loop.add_reader(sock.fileno(), self._readable, recv, local)
        return local

    def add_inbox(self, sock: socket.socket) -> None:
        """This worker's inbox: requests other workers hand over (see pack_handoff)."""
        sock.setblocking(False)
        self._inbox = sock
        self.loop.add_reader(sock.fileno(), self._handed, sock)

    def close(self) -> None:
        self.timer.cancel()
        for sock in (*self.sockets.values(), *([self._inbox] if self._inbox else [])):
            self.loop.remove_reader(sock.fileno())
        for sock in self.sockets.values():
            sock.close()
        self.sockets.clear()
        self._senders.clear()

    def _readable(self, recv: Recv, local: Addr) -> None:
        receive = self.engine.receive
        now = self.loop.time()
        observe = self.observe
        new, udp = tuple.__new__, UDP
        for _ in range(BATCH // MANY):
            try:
                batch = recv()
            except OSError:
                continue  # e.g. ICMP port unreachable reported on this socket
            ready: list[Effect] = []
            for data, source in batch:
                effects = receive(new(Inbound, (data, source, local, udp, None)), now)
                if effects:
                    ready += effects
            if ready:
                if observe is not None:
                    observe(ready)
                self._carry_out(local, ready)
            if len(batch) < MANY:
                break
        self.timer.arm()

    def _reached(self, recv: RecvReached, local: Addr) -> None:
        """:meth:`_readable` for a wildcard-bound socket: each datagram's own destination
        address is its ``Inbound.local``."""
        now = self.loop.time()
        for _ in range(BATCH // MANY):
            batch = recv()
            ready: list[Effect] = []
            for data, source, reached in batch:
                ready += self.engine.receive(Inbound(data, source, reached or local, UDP), now)
            if ready:
                if self.observe is not None:
                    self.observe(ready)
                self._carry_out(local, ready)
            if len(batch) < MANY:
                break
        self.timer.arm()

    def _handed(self, inbox: socket.socket) -> None:
        now = self.loop.time()
        for _ in range(BATCH):
            try:
                msg = inbox.recv(MAX_DATAGRAM + 128)
            except (BlockingIOError, InterruptedError):
                break
            if msg[:1] == b"R":  # an answer for a stream connection this worker holds
                if self.reply is not None:
                    self.reply(*unpack_reply(msg))
                continue
            inbound = unpack_handoff(msg)
            stream = inbound.transport != UDP  # from a connection another worker holds
            local = None if stream else self._socket_of(inbound.local)
            if local is None and not stream:
                continue
            effects = self.engine.receive(inbound, now, handed=True)
            if effects and self.observe is not None:
                self.observe(effects)
            if local is not None:
                self._carry_out(local, effects)
            else:  # the streams take theirs (sent back to the holding worker), UDP the rest
                self.send_due(self.claim(effects) if self.claim is not None else effects)
        self.timer.arm()

    def hand_over(self, handoff: Handoff) -> None:
        """Give ``handoff`` to the worker it names (a full inbox loses it, as UDP would)."""
        if handoff.worker < len(self.peers):
            with contextlib.suppress(OSError):
                self.peers[handoff.worker].send(pack_handoff(handoff.inbound))

    def forward(self, worker: int, conn: int, data: bytes) -> bool:
        """Send ``data`` to worker ``worker``, for its connection ``conn``."""
        if worker >= len(self.peers):
            return False
        try:
            self.peers[worker].send(pack_reply(conn, data))
        except OSError:
            return False
        return True

    def _carry_out(self, local: Addr, effects: list[Effect]) -> None:
        """Send the Sends from the socket at ``local`` (the send call skips every other
        effect), hand requests to their owner workers; events need nothing more."""
        if self.peers:
            for e in effects:
                if type(e) is Handoff:
                    assert isinstance(e, Handoff)
                    self.hand_over(e)
        sender = self._senders.get(local)
        if sender is not None:
            self.send_errors += sender(effects)

    def _socket_of(self, local: Addr | None) -> Addr | None:
        """The socket that sends from ``local``: bound to it, or to a wildcard on its port."""
        if local is None or local in self._senders:
            return local
        wildcard = ("::" if ":" in local[0] else "0.0.0.0", local[1])
        return wildcard if wildcard in self._senders else None

    def _timed(self, effects: list[Effect]) -> None:
        """What the engine's timer gave: observed, the streams' taken by them, the rest out
        of the right UDP socket."""
        if self.observe is not None:
            self.observe(effects)
        if self.claim is not None:
            effects = self.claim(effects)
        self.send_due(effects)

    def send_due(self, effects: list[Effect]) -> None:
        """Timed effects (delayed steps, resends, our BYEs) out of the right UDP socket."""
        for e in effects:
            if type(e) is Send:
                assert isinstance(e, Send)
                local = self._socket_of(e.local) or next(iter(self._senders), None)
                if local is not None:
                    self._carry_out(local, [e])
