"""Stream connections wired to the engine (SPEC §9, RFC 3261 §18); no decisions here.

One :class:`StreamTransport` per engine keeps every open stream connection -- TCP and TLS
(:mod:`responder.io.tcp`), WebSocket (:mod:`responder.io.ws`) alike -- in one table,
bounded (:class:`StreamLimits`, docs/limits.md "Streams (issue 14)"):

* each connection's bytes go through its own :class:`~responder.sip.framing.Framer`; each
  whole message becomes ``Inbound(data, source=peer, local=sockname, transport=scheme,
  conn=id)`` for ``Engine.receive``, exactly as a datagram would;
* a Send goes back over its connection (``Send.conn``; a Send without one, over the open
  connection between its ``local`` and ``dest``). That connection gone: over another open
  connection from the same peer address and port; none: dropped and counted
  (``lost``). RFC 3261 §18.2.2 says a server SHOULD then open a new connection to the Via's
  ``received`` address and sent-by port; we never open connections (SPEC §4: nothing is sent
  to an address taken from a message), and a peer that lost its connection retries;
* the engine's timers (``Engine.due``/``next_deadline``) are driven as io/udp.py drives them;
  what is not for a stream (UDP) is handed to ``elsewhere``;
* bounds: open connections (past it the least recently active closes, never the process),
  idle time, TLS handshake time, bytes buffered per connection (the framer's bound on the
  read side; on the write side reading pauses above ``write_high`` unsent bytes -- a peer
  that does not read stops being read -- and the connection closes above ``write_max``).

Counters for metrics are in :attr:`StreamTransport.counts` (see :data:`COUNTS`), and
:attr:`StreamTransport.messages` (whole messages given to the engine).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from responder.core.effects import Effect, Exchange, Handoff, Inbound, Send
from responder.core.engine import Engine
from responder.io.timer import EngineTimer
from responder.io.udp import zoned
from responder.sip.addr import Addr
from responder.sip.builder import Context
from responder.sip.framing import PING, PONG, FrameError, Framer, refusal

Observe = Callable[[list[Effect]], None]
Elsewhere = Callable[[list[Effect]], None]  # effects not for a stream (the UDP transport)
_new = tuple.__new__  # builds a NamedTuple from all its fields without a Python call

FRAMING_RULE = "framing"  # the rule name logs show for a 400/513 the framer asked for
# StreamTransport.counts keys (each an int; ``refused:<reason>`` per framing error too)
COUNTS = ("accepted", "closed", "pongs", "idle-closed", "evicted", "lost",
          "write-overflow", "handshake-failed", "refused")


MESSAGE_SCHEMES = frozenset({"ws", "wss"})  # each SIP message its own WebSocket message


class StreamLimits(NamedTuple):
    """The bounds of every stream connection (docs/limits.md, "Streams (issue 14)")."""

    connections: int = 10_000      # open connections (all stream schemes together)
    idle: float = 300.0            # seconds without a byte from the peer: closed
    handshake: float = 10.0        # seconds for a TLS handshake (wss: the same)
    write_high: int = 256 * 1024   # unsent bytes above which reading pauses
    write_max: int = 4 * 1024 * 1024  # unsent bytes above which the connection closes
    remember: int = 4096           # closed (local, peer) pairs kept to count a late Send


STREAM_LIMITS = StreamLimits()


def peer_addr(info: object) -> Addr:
    """A socket address as the engine takes it: (host, port), IPv6 link-local zoned."""
    assert isinstance(info, tuple)
    if len(info) == 4 and info[3]:
        return zoned(info[0], info[3]), info[1]
    return info[0], info[1]


class Conn:
    """One open stream connection, whatever carries it."""

    scheme: str
    peer: Addr
    local: Addr

    def __init__(self, scheme: str) -> None:
        self.id = 0
        self.scheme = scheme
        self.last = 0.0          # when the peer last sent a byte
        self.framer = Framer()

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class StreamTransport:
    """Drives one engine from any number of stream listeners and one timer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, engine: Engine,
                 observe: Observe | None = None, limits: StreamLimits = STREAM_LIMITS,
                 elsewhere: Elsewhere | None = None) -> None:
        """``observe``: given every batch of effects before it is carried out (journal,
        logs, metrics); ``elsewhere``: takes the engine's timed effects that are for no
        stream (the UDP transport's sends), else they are counted as ``lost``.

        With ``--workers`` (the engine's ``shard`` = (index, count)) every worker accepts
        on the same listeners and keeps what it accepted; a connection's number names its
        worker (``id % count == index``). A request whose dialog another worker owns is
        handed to it (``hand``: the engine's Handoff), and what that worker answers over
        one of our connections comes back through ``forward`` (worker, connection, bytes)
        to :meth:`reply`."""
        self.loop = loop
        self.engine = engine
        self.observe = observe
        self.limits = limits
        self.elsewhere = elsewhere
        self.conns: OrderedDict[int, Conn] = OrderedDict()  # least recently active first
        self.by_pair: dict[tuple[Addr, Addr], Conn] = {}     # (local, peer) -> connection
        self.by_peer: dict[Addr, list[Conn]] = {}            # peer -> its open connections
        self._gone: OrderedDict[tuple[Addr, Addr], None] = OrderedDict()
        index, count = engine.shard or (0, 1)
        self._ids = itertools.count(count + index, count)  # id % count: the worker's index
        self.hand: Callable[[Handoff], None] | None = None
        self.forward: Callable[[int, int, bytes], bool] | None = None
        self.counts: Counter[str] = Counter()
        self.messages = 0  # whole messages given to the engine
        self.servers: list[asyncio.AbstractServer] = []
        self.closers: list[Callable[[], Awaitable[None]]] = []  # what else close() must stop (ws)
        # The engine's timer: its own, or (beside UDP) the UDP transport's, which carries
        # timed effects out through :meth:`deliver` (ops/server.py wires that).
        self.timer = EngineTimer(loop, engine, self.carry_out)
        self._sweeper: asyncio.TimerHandle | None = None

    # --- the connection table ------------------------------------------------------
    @property
    def open_connections(self) -> int:
        return len(self.conns)

    def by_scheme(self) -> Counter[str]:
        """Open connections per scheme (tcp, tls, ws, wss)."""
        return Counter(c.scheme for c in self.conns.values())

    def opened(self, conn: Conn) -> None:
        """``conn`` is open (its peer and local address set): number it, keep it; over the
        bound, the least recently active connection closes first."""
        conn.id = next(self._ids)
        conn.last = self.loop.time()
        while len(self.conns) >= self.limits.connections:
            self._drop(next(iter(self.conns.values())), "evicted")
        self.conns[conn.id] = conn
        self.by_pair[conn.local, conn.peer] = conn
        self.by_peer.setdefault(conn.peer, []).append(conn)
        self.counts["accepted"] += 1
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self._sweep_every(), self._sweep)

    def closed(self, conn: Conn) -> None:
        """``conn`` is gone (may be called more than once)."""
        if self.conns.pop(conn.id, None) is not None:
            self._forget(conn)
            self.counts["closed"] += 1

    def _drop(self, conn: Conn, why: str) -> None:
        """Close ``conn`` on our side, counted as ``why`` (and ``closed``)."""
        self.counts[why] += 1
        self.closed(conn)
        conn.close()

    def _forget(self, conn: Conn) -> None:
        pair = (conn.local, conn.peer)
        if self.by_pair.get(pair) is conn:
            del self.by_pair[pair]
            self._gone[pair] = None
            if len(self._gone) > self.limits.remember:
                self._gone.popitem(last=False)
        same = self.by_peer.get(conn.peer)
        if same is not None and conn in same:
            same.remove(conn)
            if not same:
                del self.by_peer[conn.peer]

    def _sweep_every(self) -> float:
        return max(min(self.limits.idle / 4, 5.0), 0.01)

    def _sweep(self) -> None:
        """Close the connections idle for ``limits.idle`` seconds (oldest first)."""
        self._sweeper = None
        cutoff = self.loop.time() - self.limits.idle
        while self.conns:
            conn = next(iter(self.conns.values()))
            if conn.last > cutoff:
                break
            self._drop(conn, "idle-closed")
        if self.conns:
            self._sweeper = self.loop.call_later(self._sweep_every(), self._sweep)

    # --- bytes in ------------------------------------------------------------------------
    def data(self, conn: Conn, data: bytes) -> None:
        """Bytes read from a TCP or TLS connection. The answers to every message of one read
        go out together (one write per connection), in order."""
        now = self.touch(conn)
        effects: list[Effect] = []
        receive = self.engine.receive
        peer, local, scheme, cid = conn.peer, conn.local, conn.scheme, conn.id
        for frame in conn.framer.feed(data):
            if type(frame) is bytes:
                self.messages += 1
                out = receive(_new(Inbound, (frame, peer, local, scheme, cid)), now)
                if out:
                    effects += out
                continue
            if effects:
                self.carry_out(effects, conn)
                effects = []
            if frame is PING:
                self.counts["pongs"] += 1
                conn.write(PONG)
            else:
                assert isinstance(frame, FrameError)
                self.refuse(conn, frame, now)
        if effects:
            self.carry_out(effects, conn)
        self.arm()

    def touch(self, conn: Conn) -> float:
        """The peer sent something: ``conn`` is the most recently active."""
        now = self.loop.time()
        conn.last = now
        if conn.id in self.conns:
            self.conns.move_to_end(conn.id)
        return now

    def receive(self, conn: Conn, message: bytes, now: float) -> None:
        """One whole message into the engine; its effects carried out."""
        self.messages += 1
        effects = self.engine.receive(
            _new(Inbound, (message, conn.peer, conn.local, conn.scheme, conn.id)), now)
        if effects:
            self.carry_out(effects, conn)

    def carry_out(self, effects: list[Effect], came_on: Conn | None = None) -> None:
        """Observe ``effects``, send what is for a stream, hand on the rest."""
        if self.observe is not None:
            self.observe(effects)
        rest = self.deliver(effects, came_on)
        if rest:
            self._hand_on(rest)

    def refuse(self, conn: Conn, error: FrameError, now: float) -> None:
        """The framer gave up: answer what it asks for (``400 Missing Content-Length``,
        ``513``) when the header section is a request, then close (SPEC §9)."""
        self.counts["refused"] += 1
        self.counts[f"refused:{error.reason}"] += 1
        ruleset = self.engine.ruleset
        ctx = Context(ruleset.identity, self.engine.seeded, now, conn.peer, conn.local,
                      ruleset.auth)
        data = refusal(error, ctx)
        if data is not None:
            if self.observe is not None:
                line = error.head.lstrip(b"\r\n").split(b"\r\n", 1)[0].split(b" ")
                method = line[0].decode("ascii", "replace")
                uri = line[1].decode("utf-8", "replace") if len(line) > 1 else ""
                self.observe([Send(conn.peer, data, Exchange(
                    now, conn.peer, method, uri, None, error.status,
                    error.phrase or "Message Too Large", FRAMING_RULE, 0.0), conn.local,
                    conn.id)])
            conn.write(data)
        self.closed(conn)
        conn.close()

    # --- effects out ---------------------------------------------------------------------
    def deliver(self, effects: list[Effect], came_on: Conn | None = None) -> list[Effect]:
        """Carry out the Sends that are for a stream; return those that are not (for UDP).
        ``came_on``: the connection the effects answer (the first choice for a Send
        without ``conn`` to its peer)."""
        rest: list[Effect] = []
        own: list[bytes] = []  # for ``came_on`` while it is open: the common case
        writes: dict[Conn, list[bytes]] = {}  # for any other connection
        cid = came_on.id if came_on is not None and came_on.id in self.conns else -1
        for e in effects:
            if type(e) is Send:
                assert isinstance(e, Send)
                if e.conn == cid:
                    own.append(e.data)
                    continue
                conn = self._route(e, came_on)
                if conn is None:
                    if e.conn is not None and self._elsewhere(e.conn, e.data):
                        continue  # another worker's connection: sent to that worker
                    if e.conn is None and (e.local, e.dest) not in self._gone:
                        rest.append(e)  # not a stream's: a datagram
                    else:
                        self.counts["lost"] += 1
                elif conn is came_on:
                    own.append(e.data)
                else:
                    writes.setdefault(conn, []).append(e.data)
            elif type(e) is Handoff:
                assert isinstance(e, Handoff)  # (only with --workers, which sets ``hand``)
                if self.hand is not None:  # to the worker that owns the dialog
                    self.hand(e)
        if own:
            assert came_on is not None
            self._write(came_on, own)
        for conn, chunks in writes.items():
            self._write(conn, chunks)
        return rest

    @staticmethod
    def _write(conn: Conn, chunks: list[bytes]) -> None:
        """One write (one system call) per connection, but one WebSocket message each."""
        if len(chunks) == 1:
            conn.write(chunks[0])
        elif conn.scheme in MESSAGE_SCHEMES:  # RFC 7118 §5.2: one SIP message a message
            for chunk in chunks:
                conn.write(chunk)
        else:
            conn.write(b"".join(chunks))

    def _elsewhere(self, conn: int, data: bytes) -> bool:
        """``conn`` is another worker's (``--workers``): ``data`` goes to that worker."""
        shard = self.engine.shard
        if shard is None or self.forward is None or conn % shard[1] == shard[0]:
            return False
        if not self.forward(conn % shard[1], conn, data):
            self.counts["lost"] += 1
        return True

    def reply(self, conn_id: int, data: bytes) -> None:
        """What another worker answered over our connection ``conn_id`` (``--workers``)."""
        conn = self.conns.get(conn_id)
        if conn is None:
            self.counts["lost"] += 1
        else:
            self._write(conn, [data])

    def _route(self, send: Send, came_on: Conn | None) -> Conn | None:
        if send.conn is not None:
            conn = self.conns.get(send.conn)
            if conn is None and self.engine.shard is not None \
                    and send.conn % self.engine.shard[1] != self.engine.shard[0]:
                return None  # another worker's connection, not a gone one of ours
        elif came_on is not None and came_on.peer == send.dest \
                and came_on.local == send.local and came_on.id in self.conns:
            conn = came_on
        else:
            conn = self.by_pair.get((send.local, send.dest)) if send.local else None
            if conn is None and (send.local, send.dest) not in self._gone:
                return None
        if conn is None:  # that connection is gone: another one from the same peer address
            same = self.by_peer.get(send.dest)
            conn = same[-1] if same else None
        return conn

    def _hand_on(self, rest: list[Effect]) -> None:
        if rest:
            if self.elsewhere is not None:
                self.elsewhere(rest)
            else:
                self.counts["lost"] += sum(1 for e in rest if type(e) is Send)

    # --- timers ----------------------------------------------------------------------------
    def arm(self) -> None:
        self.timer.arm()

    # --- listeners -------------------------------------------------------------------------
    async def close(self) -> None:
        """Stop listening, close every connection, stop the timers."""
        for server in self.servers:
            server.close()
        for closer in self.closers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(closer(), 5)
        for conn in list(self.conns.values()):
            self.closed(conn)
            conn.close()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1)
        self.servers.clear()
        self.timer.cancel()
        if self._sweeper is not None:
            self._sweeper.cancel()
        self._sweeper = None
