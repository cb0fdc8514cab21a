"""Bind, announce, serve; signals and reload. The only module that owns a loop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections import Counter
from collections.abc import Callable
from typing import TextIO

from .engine import Engine
from .logs import ExchangeLog
from .rules.model import RuleError, RuleSet
from .transport import UdpTransport, bind_udp

Addr = tuple[str, int]


def format_addr(addr: Addr) -> str:
    host, port = addr
    return f"udp://[{host}]:{port}" if ":" in host else f"udp://{host}:{port}"


async def serve(
    listen: list[Addr],
    engine: Engine,
    log: ExchangeLog,
    reload: Callable[[], RuleSet] | None = None,
    ready: Callable[[list[Addr]], None] | None = None,
    stop: asyncio.Event | None = None,
    signals: bool = True,
    summary_interval: float = 10.0,
) -> None:
    """Serve until ``stop`` is set or SIGINT/SIGTERM arrives. SIGHUP calls ``reload``.

    ``signals=False`` (a server in a background thread, responder.testing) installs
    no signal handlers.
    """
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    transport = UdpTransport(loop, engine, log.write)
    try:
        bound = []
        for host, port in listen:
            local = transport.add(bind_udp(host, port))
            bound.append(local)
            log.note(f"listening on {format_addr(local)}")
        if ready is not None:
            ready(bound)

        def on_hup() -> None:
            if reload is None:
                log.note("SIGHUP: no rules file to reload (started without --rules)")
                return
            try:
                engine.set_rules(reload())
            except RuleError as exc:
                log.note(f"reload failed, the old rules stay in force: {exc}")
            else:
                log.note("rules reloaded")

        installed = []
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            for sig in (signal.SIGINT, signal.SIGTERM) if signals else ():
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
            if signals:
                loop.add_signal_handler(signal.SIGHUP, on_hup)
                installed.append(signal.SIGHUP)
        summary = asyncio.ensure_future(summarise_discards(engine, log, summary_interval))
        try:
            await stop.wait()
        finally:
            summary.cancel()
            for sig in installed:
                loop.remove_signal_handler(sig)
    finally:
        transport.close()
    c = engine.counters
    log.note(f"stopped: {c.received} datagrams received, {c.answered} responses sent, "
             f"{sum(c.discarded.values())} discarded")


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
    """Run the server coroutine on uvloop where installed, else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro_factory())  # type: ignore[arg-type]
    else:
        uvloop.run(coro_factory())  # type: ignore[arg-type]
