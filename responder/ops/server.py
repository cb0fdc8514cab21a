"""Bind, announce, serve; signals and reload. The only module that owns a loop."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import os
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import NamedTuple, TextIO

from responder.core.effects import Effect, exchanges
from responder.core.engine import Engine
from responder.core.journal import Journal
from responder.io.listeners import bind_streams, open_stream
from responder.io.rtp import MediaTransport
from responder.io.stream import StreamTransport, peer_addr
from responder.io.tls import TlsOptions, server_context
from responder.io.udp import UdpTransport, bind_udp
from responder.ops.http import AdminApp, AdminOptions, HttpServer, MetricsApp
from responder.ops.listen import SECURE, Listen
from responder.ops.logs import ExchangeLog
from responder.ops.metrics import Exposition, ResponderCollector, ServerStats
from responder.ops.reload import swap_rules
from responder.ops.trace import Tracer
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
    trace: Tracer | None = None,
    streams: Sequence[Listen] = (),
    tls: TlsOptions | None = None,
) -> None:
    """Serve until ``stop`` is set or SIGINT/SIGTERM arrives. SIGHUP reopens the log
    file and calls ``reload``. ``listen``: the UDP addresses; ``streams``: the TCP, TLS and
    WebSocket listeners (SPEC §9; ``tls`` for tls: and wss:), the same engine behind all.

    ``signals=False`` (a server in a background thread, responder.testing) installs
    no signal handlers. ``worker``: one of several processes sharing bound sockets.
    ``metrics``: serve ``/metrics`` and ``/healthz`` on this TCP address; ``admin``: serve
    the admin API (``/journal`` needs ``journal``). Both run on this loop. ``journal``:
    record every arrival and what was answered (the engine then emits arrival events).
    ``trace``: write every message received and sent (``--trace``, ``--trace-file``).
    """
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    stats = stats or ServerStats()
    observe = observer(engine, log, stats if metrics else None, journal, trace)
    transport = UdpTransport(loop, engine, observe, worker.peers if worker else None)
    tcp = None
    shared = worker.streams if worker is not None else ()
    if streams or shared:  # one table and one timer for every stream listener; the rest to UDP
        tcp = StreamTransport(loop, engine, observe, elsewhere=transport.send_due)
        tcp.timer = transport.timer  # one timer for the engine: it observes, then each
        transport.claim = tcp.deliver  # transport sends what is its own
        if worker is not None:  # requests handed between workers, answers handed back
            tcp.hand, tcp.forward, transport.reply = (transport.hand_over, transport.forward,
                                                      tcp.reply)
    http: list[HttpServer] = []
    media = MediaTransport(loop, engine.media)

    def on_hup() -> None:
        log.reopen()
        if trace is not None and (failed := trace.reopen()) is not None:
            log.note(failed)
        if reload is None:
            log.note("SIGHUP: no rules file to reload (started without --rules)", "reload")
            return
        try:
            swap_rules(engine, stats.reloads, reload, "sighup")
        except RuleError as exc:
            log.note(f"reload failed, the old rules stay in force: {exc}", "reload")
        else:
            log.note("rules reloaded", "reload")

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
            log.note(f"listening on {url('udp', local)}", "listening", url=url("udp", local))
        if tcp is not None:
            context = server_context(tls) if tls is not None else None
            for spec in streams:
                _, local = await open_stream(tcp, spec.scheme, spec.host, spec.port,
                                             context if spec.scheme in SECURE else None)
                bound.append(local)
                where = url(spec.scheme, local)
                log.note(f"listening on {where}", "listening", url=where)
            for spec, sock in shared:  # --workers: announced by the parent
                _, local = await open_stream(tcp, spec.scheme, spec.host, spec.port,
                                             context if spec.scheme in SECURE else None, sock)
                bound.append(local)
        open_media(media, engine, bound, log)
        if metrics is not None:
            collector = ResponderCollector(engine, stats, lambda: transport.send_errors,
                                           journal, lambda: log.dropped, tcp)
            server = HttpServer(MetricsApp(Exposition(collector)))
            http.append(server)
            where = f"{url('http', await server.start(*metrics))}/metrics"
            log.note(f"metrics on {where}", "metrics", url=where)
        if admin is not None:
            server = HttpServer(AdminApp(engine, stats.reloads, admin, loop.time,
                                         lambda text: log.note(text, "reload"), journal))
            http.append(server)
            where = url("http", await server.start(*admin.addr))
            log.note(f"admin on {where}", "admin", url=where)
        if ready is not None:
            ready(bound)
        summary = asyncio.ensure_future(summarise(engine, log, summary_interval, trace=trace))
        try:
            await stop.wait()
        finally:
            summary.cancel()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
            if worker is not None and sig != signal.SIGHUP:
                # Stopping already: a second SIGTERM (the parent passes on every one it
                # gets) must not kill the worker before it says what it leaves behind.
                signal.signal(sig, signal.SIG_IGN)
        for server in http:
            await server.close()
        transport.close()
        if tcp is not None:
            await tcp.close()
        media.close()
    trace_dropped = trace.dropped if trace is not None else 0
    log.note(stop_line(engine, log.dropped, trace_dropped), "stopped",
             **stop_fields(engine, log.dropped, trace_dropped))


def open_media(media: MediaTransport, engine: Engine, bound: list[Addr],
               log: ExchangeLog) -> None:
    """One media socket per listen host (SPEC §8.3), on the rules' ``media.port`` (0: a
    free port; with ``--workers``, worker K takes port + K, each its own socket), named in
    a ``media on`` line; the engine's SDP names it."""
    port = engine.ruleset.media_port
    if port and engine.shard is not None:
        port += engine.shard[0]
    for host in dict.fromkeys(h for h, _ in bound):
        local = media.open(host, port)
        engine.media_ports[host] = local[1]
        who = f"worker {engine.shard[0]} " if engine.shard is not None else ""
        log.note(f"{who}media on {url('udp', local)}", "media", url=url("udp", local),
                 worker=engine.shard[0] if engine.shard is not None else None)


def stop_line(engine: Engine, log_dropped: int, trace_dropped: int = 0) -> str:
    """The closing summary: ``stopped: 52 datagrams received, 1 responses sent, 51 discarded,
    0 pending steps not sent, 0 log lines dropped``. Pending steps die with the process:
    the line says how many (SPEC §10), and how many log lines a full sink did not take (and,
    when a trace sink dropped some, how many traced messages)."""
    c = engine.counters
    who = f"worker {engine.shard[0]} " if engine.shard else ""
    traced = f", {trace_dropped} traced messages dropped" if trace_dropped else ""
    return (f"{who}stopped: {c.received} datagrams received, {c.answered} responses sent, "
            f"{sum(c.discarded.values())} discarded, {engine.unsent()} pending steps not "
            f"sent, {log_dropped} log lines dropped{traced}")


def stop_fields(engine: Engine, log_dropped: int, trace_dropped: int = 0) -> dict[str, object]:
    """The closing line's numbers, for its JSON form."""
    c = engine.counters
    return {"worker": engine.shard[0] if engine.shard else None, "received": c.received,
            "answered": c.answered, "discarded": sum(c.discarded.values()),
            "unsent": engine.unsent(), "log_dropped": log_dropped,
            "trace_dropped": trace_dropped}


def observer(engine: Engine, log: ExchangeLog, stats: ServerStats | None,
             journal: Journal | None, trace: Tracer | None = None,
             ) -> Callable[[list[Effect]], None] | None:
    """What watches each batch of effects: the journal and the trace (which then need
    arrival events), the metrics' tallies and the log. None when nobody does (``-q``, no
    metrics, no journal, no trace): the transport then hands nothing over."""
    engine.record = journal is not None or trace is not None
    write = None if log.silent else log.write
    tally = stats.observe if stats is not None else None
    # Retransmissions answered by immediate rules are told apart only for someone to see.
    engine.marks = not (journal is None and write is None and tally is None and trace is None)
    if not engine.marks:
        return None
    record = journal.observe if journal is not None else None
    traced = trace.observe if trace is not None else None

    def observe(effects: list[Effect]) -> None:
        if record is not None:
            record(effects)
        if traced is not None:
            traced(effects)
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
    # this worker's listening sockets of the stream listeners (one per worker, SO_REUSEPORT)
    streams: tuple[tuple[Listen, socket.socket], ...] = ()


def serve_workers(
    listen: list[Addr],
    count: int,
    make_engine: Callable[[int, int], Engine],
    log: ExchangeLog,
    serve_worker: Callable[[Engine, Worker], None],
    restarts: RestartBudget | None = None,
    trace: Tracer | None = None,
    streams: Sequence[Listen] = (),
) -> int:
    """``--workers N``: bind once, fork N processes that all read the same sockets.

    The kernel hands each datagram to one of them, so even a single client
    5-tuple spreads over the workers (SO_REUSEPORT would pin it to one). A
    request whose dialog needs state (delayed steps, CANCEL, fault injection) is
    handed by the worker that read it to the worker that owns its dialog (Call-ID and
    From tag: Engine.owner). ``streams``: TCP, TLS and WebSocket listeners, bound here
    too, one socket per worker on each address (``SO_REUSEPORT``: the kernel spreads new
    connections over the workers, io/listeners.py ``bind_streams``); a worker keeps the
    connections it accepted, and what the owner of a dialog answers to a request handed
    over from a connection goes back to the worker that holds it (io/stream.py).

    The parent passes signals on and waits. A worker that dies on its own (a signal, a
    non-zero status) is named in a line (index, PID, how it died) and started again with
    a fresh engine on the same sockets and inbox (its pending steps are lost), at most
    ``restarts`` (:data:`RESTART_LIMIT` in :data:`RESTART_WINDOW` seconds, over all
    workers); past that the others are stopped and the parent exits 1. A worker that
    exits 0 was told to stop and is not restarted; the parent exits 0 when every worker
    did. Workers die with the parent (:func:`die_with_parent`).
    """
    budget = restarts or RestartBudget()
    # Until the parent and each worker have their handlers, a signal waits (blocked) instead
    # of killing with its default action: "listening on" is printed before the fork.
    signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_SIGNALS)
    sockets = [bind_udp(host, port) for host, port in listen]
    for sock in sockets:
        where = url("udp", sock.getsockname()[:2])
        log.note(f"listening on {where}", "listening", url=where)
    listeners = [(spec, bind_streams(spec.host, spec.port, count)) for spec in streams]
    for spec, socks in listeners:
        where = url(spec.scheme, peer_addr(socks[0].getsockname()))
        log.note(f"listening on {where}", "listening", url=where)
    pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(count)]
    for inbox, peer in pairs:
        with contextlib.suppress(OSError):
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            inbox.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        peer.setblocking(False)
    peers = [peer for _, peer in pairs]
    parent = os.getpid()

    def spawn(index: int) -> int:
        """Fork worker ``index`` (signals blocked: the worker unblocks them in serve)."""
        log.flush()
        if trace is not None:
            trace.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                log.forked()
                if trace is not None:
                    trace.forked()
                if not die_with_parent(parent):
                    log.note(f"worker {index}: the parent (pid {parent}) is gone, stopping",
                             "worker", worker=index, pid=parent)
                    code = 0
                else:
                    serve_worker(make_engine(index, count),
                                 Worker(sockets, pairs[index][0], peers,
                                        tuple((spec, socks[index]) for spec, socks in listeners)))
                    code = 0
            except KeyboardInterrupt:
                code = 0
            finally:
                if trace is not None:
                    trace.close(CHILD_CLOSE_TIMEOUT)
                log.close(CHILD_CLOSE_TIMEOUT)
                sys.stderr.flush()
                os._exit(code)
        log.note(f"worker {index} started (pid {pid})", "worker", worker=index, pid=pid)
        return pid

    workers = {spawn(index): index for index in range(count)}  # pid -> index
    stopping = False

    def pass_on(signum: int, _frame: object) -> None:
        nonlocal stopping
        if signum != signal.SIGHUP:
            stopping = True
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    for sig in WORKER_SIGNALS:
        signal.signal(sig, pass_on)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_SIGNALS)
    status = 0
    while workers:
        pid, raw = os.wait()
        index = workers.pop(pid, None)
        if index is None:
            continue
        code = os.waitstatus_to_exitcode(raw)
        if code == 0 or stopping:
            continue
        how = describe_exit(code)
        if not budget.take(time.monotonic()):
            log.note(f"worker {index} (pid {pid}) {how}; {budget.limit} restarts in the "
                     f"last {budget.window:g}s already: stopping the other workers", "worker",
                     worker=index, pid=pid)
            status = 1
            pass_on(signal.SIGTERM, None)
            continue
        log.note(f"worker {index} (pid {pid}) {how}; starting it again (its pending steps "
                 f"are lost)", "worker", worker=index, pid=pid)
        signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_SIGNALS)
        try:
            workers[spawn(index)] = index
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_SIGNALS)
    return status


RESTART_LIMIT = 5       # worker restarts allowed ...
RESTART_WINDOW = 60.0   # ... in any this many seconds, over all workers
CHILD_CLOSE_TIMEOUT = 1.0  # seconds a stopping worker waits for a slow log sink
PR_SET_PDEATHSIG = 1    # <linux/prctl.h>


class RestartBudget:
    """At most ``limit`` restarts in any ``window`` seconds (times are inputs)."""

    def __init__(self, limit: int = RESTART_LIMIT, window: float = RESTART_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self.times: list[float] = []

    def take(self, now: float) -> bool:
        self.times = [t for t in self.times if t > now - self.window]
        if len(self.times) >= self.limit:
            return False
        self.times.append(now)
        return True


def describe_exit(code: int) -> str:
    """``was killed by signal 9 (SIGKILL)`` or ``exited with status 1``
    (``code`` as :func:`os.waitstatus_to_exitcode` gives it)."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown"
        return f"was killed by signal {-code} ({name})"
    return f"exited with status {code}"


def die_with_parent(parent: int) -> bool:
    """In a worker: ask Linux for SIGTERM when the parent dies (``PR_SET_PDEATHSIG``), so
    a parent killed with SIGKILL leaves no worker holding the port. False when the parent
    is already gone (it died before the request took effect)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    return os.getppid() == parent


def discard_summary(delta: Counter[str], interval: float) -> str:
    """``discarded 12 datagrams in the last 10s: not-sip=9, response=3``"""
    counts = ", ".join(f"{k}={v}" for k, v in sorted(delta.items()))
    return f"discarded {sum(delta.values())} datagrams in the last {interval:g}s: {counts}"


def overflow_summary(refused: int, interval: float, limit: int) -> str:
    """``pending table full (100000 transactions): 37 requests refused with 503 in the
    last 1s``"""
    return (f"pending table full ({limit} transactions): {refused} requests refused with "
            f"503 in the last {interval:g}s")


async def summarise(engine: Engine, log: ExchangeLog, interval: float,
                    tick: float = 1.0, trace: Tracer | None = None) -> None:
    """SPEC §7: floods are summarised, never logged per datagram. Every ``tick``: send
    what the log's sinks held back and, when the full pending table refused requests,
    one line saying how many; every ``interval``: the discards."""
    loop = asyncio.get_running_loop()
    last: Counter[str] = Counter()
    overflow = engine.counters.pending_overflow
    tick = min(tick, interval)
    next_discards = loop.time() + interval
    worker = engine.shard[0] if engine.shard else None
    while True:
        await asyncio.sleep(tick)
        log.flush()
        if trace is not None:
            trace.flush()
        refused = engine.counters.pending_overflow - overflow
        if refused:
            overflow += refused
            log.note(overflow_summary(refused, tick, engine.limits.pending), "overflow",
                     interval=tick, refused=refused, limit=engine.limits.pending,
                     worker=worker)
        if loop.time() >= next_discards - tick / 2:
            next_discards += interval
            now = Counter(engine.counters.discarded)
            delta = now - last
            if delta:
                log.note(discard_summary(delta, interval), "discards", interval=interval,
                         total=sum(delta.values()), counts=dict(sorted(delta.items())),
                         worker=worker)
            last = now


# Collector thresholds while serving (scripts/bench_gc.py measures them; docs/limits.md).
GC_THRESHOLDS = (700, 10, 10_000)


def tune_gc(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> None:
    """Keep collection pauses off the answering path (issue 11, item 7).

    What exists at start (modules, rules, caches) is moved out of the collector's reach
    (``gc.freeze``); the thresholds make young collections rarer and full ones rarer still
    (each full one walks every tracked object: a filled pending table's, too).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)


def run(coro_factory: Callable[[], object], stream: TextIO = sys.stderr) -> None:
    """Run the server coroutine on uvloop where installed, else asyncio's loop, with the
    collector tuned first (:func:`tune_gc`)."""
    tune_gc()
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro_factory())  # type: ignore[arg-type]
    else:
        uvloop.run(coro_factory())  # type: ignore[arg-type]
