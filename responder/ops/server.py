"""Bind, announce, serve; signals and reload. The only module that owns a loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import sys
from collections import Counter
from collections.abc import Callable
from typing import NamedTuple, TextIO

from responder.core.effects import Effect, exchanges
from responder.core.engine import Engine
from responder.core.journal import Journal
from responder.io.udp import UdpTransport, bind_udp
from responder.ops.http import AdminApp, AdminOptions, HttpServer, MetricsApp
from responder.ops.logs import ExchangeLog
from responder.ops.metrics import Exposition, ResponderCollector, ServerStats
from responder.ops.reload import swap_rules
from responder.rules.model import RuleError, RuleSet
from responder.sip.addr import Addr, url


async def serve(
    listen: list[Addr],
    engine: Engine,
    log: ExchangeLog,
    reload: Callable[[], RuleSet] | None = None,
    ready: Callable[[list[Addr]], None] | None = None,
    stop: asyncio.Event | None = None,
    signals: bool = True,
    summary_interval: float = 10.0,
    worker: Worker | None = None,
    metrics: Addr | None = None,
    admin: AdminOptions | None = None,
    stats: ServerStats | None = None,
    journal: Journal | None = None,
) -> None:
    """Serve until ``stop`` is set or SIGINT/SIGTERM arrives. SIGHUP reopens the log
    file and calls ``reload``.

    ``signals=False`` (a server in a background thread, responder.testing) installs
    no signal handlers. ``worker``: one of several processes sharing bound sockets.
    ``metrics``: serve ``/metrics`` and ``/healthz`` on this TCP address; ``admin``: serve
    the admin API (``/journal`` needs ``journal``). Both run on this loop. ``journal``:
    record every arrival and what was answered (the engine then emits arrival events).
    """
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    stats = stats or ServerStats()
    transport = UdpTransport(loop, engine, observer(engine, log, stats if metrics else None,
                                                    journal),
                             worker.peers if worker else None)
    http: list[HttpServer] = []

    def on_hup() -> None:
        log.reopen()
        if reload is None:
            log.note("SIGHUP: no rules file to reload (started without --rules)")
            return
        try:
            swap_rules(engine, stats.reloads, reload, "sighup")
        except RuleError as exc:
            log.note(f"reload failed, the old rules stay in force: {exc}")
        else:
            log.note("rules reloaded")

    # Handlers first: whoever reads a "listening on" line may signal the server at once.
    installed = []
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        for sig in (signal.SIGINT, signal.SIGTERM) if signals else ():
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        if signals:
            loop.add_signal_handler(signal.SIGHUP, on_hup)
            installed.append(signal.SIGHUP)
    if worker is not None:  # serve_workers blocked these until a worker can take them
        signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_SIGNALS)
    try:
        bound = []
        if worker is not None:
            bound = [transport.add(sock) for sock in worker.sockets]
            transport.add_inbox(worker.inbox)
        for host, port in listen:
            local = transport.add(bind_udp(host, port))
            bound.append(local)
            log.note(f"listening on {url('udp', local)}")
        if metrics is not None:
            collector = ResponderCollector(engine, stats, lambda: transport.send_errors,
                                           journal)
            server = HttpServer(MetricsApp(Exposition(collector)))
            http.append(server)
            log.note(f"metrics on {url('http', await server.start(*metrics))}/metrics")
        if admin is not None:
            server = HttpServer(AdminApp(engine, stats.reloads, admin, loop.time, log.note,
                                         journal))
            http.append(server)
            log.note(f"admin on {url('http', await server.start(*admin.addr))}")
        if ready is not None:
            ready(bound)
        summary = asyncio.ensure_future(summarise_discards(engine, log, summary_interval))
        try:
            await stop.wait()
        finally:
            summary.cancel()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        for server in http:
            await server.close()
        transport.close()
    c = engine.counters
    who = f"worker {engine.shard[0]} " if engine.shard else ""
    log.note(f"{who}stopped: {c.received} datagrams received, {c.answered} responses sent, "
             f"{sum(c.discarded.values())} discarded")


def observer(engine: Engine, log: ExchangeLog, stats: ServerStats | None,
             journal: Journal | None) -> Callable[[list[Effect]], None] | None:
    """What watches each batch of effects: the journal (which then needs arrival events),
    the metrics' tallies and the log. None when nobody does (``-q``, no metrics, no
    journal): the transport then hands nothing over."""
    engine.record = journal is not None
    write = None if log.silent else log.write
    tally = stats.observe if stats is not None else None
    if journal is None and write is None and tally is None:
        return None
    record = journal.observe if journal is not None else None

    def observe(effects: list[Effect]) -> None:
        if record is not None:
            record(effects)
        if write is not None or tally is not None:
            done = exchanges(effects)
            if tally is not None:
                tally(done)
            if write is not None:
                write(done)

    return observe


WORKER_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


class Worker(NamedTuple):
    """What one of ``--workers N`` processes shares with the others."""

    sockets: list[socket.socket]  # the bound UDP sockets, inherited across fork
    inbox: socket.socket          # requests other workers hand to this one
    peers: list[socket.socket]    # every worker's inbox, by index


def serve_workers(
    listen: list[Addr],
    count: int,
    make_engine: Callable[[int, int], Engine],
    log: ExchangeLog,
    serve_worker: Callable[[Engine, Worker], None],
) -> int:
    """``--workers N``: bind once, fork N processes that all read the same sockets.

    The kernel hands each datagram to one of them, so even a single client
    5-tuple spreads over the workers (SO_REUSEPORT would pin it to one). A
    request whose dialog needs state (delayed steps, CANCEL, fault injection) is
    handed by the worker that read it to the worker that owns its dialog (Call-ID and
    From tag: Engine.owner). The parent
    only passes signals on and waits; it exits 0 when every worker did.
    """
    # Until the parent and each worker have their handlers, a signal waits (blocked) instead
    # of killing with its default action: "listening on" is printed before the fork.
    signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_SIGNALS)
    sockets = [bind_udp(host, port) for host, port in listen]
    for sock in sockets:
        log.note(f"listening on {url('udp', sock.getsockname()[:2])}")
    pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(count)]
    for inbox, peer in pairs:
        with contextlib.suppress(OSError):
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            inbox.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        peer.setblocking(False)
    peers = [peer for _, peer in pairs]
    pids: list[int] = []
    for index in range(count):
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                serve_worker(make_engine(index, count), Worker(sockets, pairs[index][0], peers))
                code = 0
            except KeyboardInterrupt:
                code = 0
            finally:
                sys.stderr.flush()
                os._exit(code)
        pids.append(pid)

    def pass_on(signum: int, _frame: object) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    for sig in WORKER_SIGNALS:
        signal.signal(sig, pass_on)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_SIGNALS)
    status = 0
    remaining = set(pids)
    while remaining:
        pid, code = os.wait()
        remaining.discard(pid)
        if code != 0 and remaining:
            status = 1  # a worker died on its own: stop the others
            pass_on(signal.SIGTERM, None)
    return status


def discard_summary(delta: Counter[str], interval: float) -> str:
    """``discarded 12 datagrams in the last 10s: not-sip=9, response=3``"""
    counts = ", ".join(f"{k}={v}" for k, v in sorted(delta.items()))
    return f"discarded {sum(delta.values())} datagrams in the last {interval:g}s: {counts}"


async def summarise_discards(engine: Engine, log: ExchangeLog, interval: float) -> None:
    """SPEC §7: floods of bad input are summarised, one line per interval, never per datagram."""
    last: Counter[str] = Counter()
    while True:
        await asyncio.sleep(interval)
        now = Counter(engine.counters.discarded)
        delta = now - last
        if delta:
            log.note(discard_summary(delta, interval))
        last = now


def run(coro_factory: Callable[[], object], stream: TextIO = sys.stderr) -> None:
    """Run the server coroutine on uvloop where installed, else asyncio's loop.

    What exists at start (modules, rules, caches) is moved out of the garbage
    collector's reach first (``gc.freeze``): a collection, should one run while serving,
    walks only objects made since.
    """
    gc.collect()
    gc.freeze()
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro_factory())  # type: ignore[arg-type]
    else:
        uvloop.run(coro_factory())  # type: ignore[arg-type]
