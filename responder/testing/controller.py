"""Helpers for tests of SIP code: a real sip-responder in a background thread, and clients.

:class:`Responder` is modelled on aiosmtpd's ``Controller``: ``start()`` returns only once
the server answers a real OPTIONS over UDP, an error in the server thread is raised again
in the test (by ``start()``, ``stop()`` or the next call), ``stop()`` is final, and it is a
context manager. Its rules can be set from a one-line rule, a list of them, YAML text or a
:class:`~responder.rules.model.RuleSet`, or added with the fluent
``responder.on("INVITE", user="1000").respond(180, (486, "2s"))``. The journal records every
datagram and what was answered; ``assert_received`` / ``assert_answered`` fail with the near
misses, the way pytest-httpserver does.

:class:`SipClient` and :class:`AsyncSipClient` (from :mod:`responder.testing.clients`) talk to it.
The pytest fixtures are in :mod:`responder.testing.pytest_plugin`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import io
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO, TypeVar

from responder.core.counters import Counters
from responder.core.engine import Engine
from responder.core.journal import Journal, JournalEntry
from responder.ops.listen import SECURE, Listen
from responder.ops.logs import ExchangeLog
from responder.ops.server import serve
from responder.rules.model import Match, Rule, RuleError, RuleSet, Step
from responder.sip.addr import Addr, hostport
from responder.sip.seeded import Seeded
from responder.testing.client_core import SipTimeout
from responder.testing.clients import SipClient
from responder.testing.expectations import (
    Methods,
    RuleBuilder,
    RulesLike,
    Status,
    make_match,
    report,
    to_ruleset,
    why,
)
from responder.testing.streams import listeners, sip_uri, tls_options, unverified_context
from responder.testing.websocket import available as ws_available

T = TypeVar("T")

PROBE_HEADER = "X-Sip-Responder-Probe"
WAIT = 1.0  # seconds an assertion waits for the journal to catch up (UDP is asynchronous)


# --------------------------------------------------------------------------- the server


class _LogLines(io.StringIO):
    """A bounded in-memory log: the last ``limit`` lines the server wrote."""

    def __init__(self, limit: int = 1000) -> None:
        super().__init__()
        self.lines: deque[str] = deque(maxlen=limit)
        self._lock = threading.Lock()

    def write(self, s: str, /) -> int:
        with self._lock:
            self.lines.extend(s.splitlines())
        return len(s)


class Responder:
    """A real sip-responder on ``host:port`` (default 127.0.0.1, a free port) in a thread.

    ``rules``: see :func:`to_ruleset` (default: the built-in rules). ``seed`` makes every
    random decision repeatable. ``log``: a stream for the server's lines (default: kept in
    memory, see :attr:`log`). ``transports``: ``udp``, ``tcp``, ``tls``, ``ws``, ``wss`` on
    ``host:port`` (each its own free port with port 0), or ``listen``: ``--listen`` specs
    (``"tcp:127.0.0.1:0"``); ``tls_cert``/``tls_key`` (PEM) for tls and wss, ``tls_ca`` to
    ask clients for a certificate signed by it (mutual TLS). :meth:`address_of` and
    :meth:`uri` name each listener.
    """

    def __init__(self, rules: RulesLike | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, seed: int = 0, journal_size: int = 10_000,
                 log: TextIO | None = None, start_timeout: float = 10.0,
                 transports: Sequence[str] = ("udp",),
                 listen: Sequence[str | Listen] | None = None,
                 tls_cert: str | os.PathLike[str] | None = None,
                 tls_key: str | os.PathLike[str] | None = None,
                 tls_ca: str | os.PathLike[str] | None = None) -> None:
        if journal_size < 1:
            raise ValueError("journal_size must be at least 1: the helpers read the journal")
        self._tls = tls_options(tls_cert, tls_key, tls_ca)
        self._specs = listeners(listen, transports, host, port, self._tls)
        self._bound: list[tuple[str, Addr]] = []  # (scheme, address) once started
        main = next((s for s in self._specs if s.scheme == "udp"), self._specs[0])
        self._want: Addr = main.addr  # as asked; port 0: any free port
        self.seed = seed
        self.start_timeout = start_timeout
        self.start_rules = to_ruleset(rules)
        self._stream: TextIO = log if log is not None else _LogLines()
        self._engine = Engine(self.start_rules, Seeded(seed))
        self._journal = Journal(journal_size)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._address: Addr | None = None
        self._stopping = False

    # --- life cycle ---------------------------------------------------------------
    def start(self) -> Responder:
        """Bind, serve, and return once a real OPTIONS got its 200 (then forget the probe)."""
        if self._stopping:
            raise RuntimeError("this Responder was stopped and cannot start again (stop() is "
                               "final): create a new one")
        if self._thread is not None:
            raise RuntimeError("this Responder is already started")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"sip-responder {self.host}:{self.port}")
        self._thread.start()
        try:
            if not self._ready.wait(self.start_timeout):
                raise TimeoutError(f"sip-responder did not bind {self.host}:{self.port} "
                                   f"within {self.start_timeout:g}s")
            self.check()
            self._settle(self.start_rules)
        except BaseException:
            self._stopping = True
            self._shutdown()
            raise
        return self

    def stop(self) -> None:
        """Stop serving (final; a second call does nothing). Raises a pending thread error."""
        if not self._stopping:
            self._stopping = True
            self._shutdown()
        self.check()

    def __enter__(self) -> Responder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    @property
    def host(self) -> str:
        """The host it listens on (as asked before ``start()``)."""
        return (self._address or self._want)[0]

    @property
    def port(self) -> int:
        """The port it listens on: after ``start()`` the bound one, also when port 0 (any
        free port) was asked for; before, the port asked for."""
        return (self._address or self._want)[1]

    @property
    def address(self) -> Addr:
        """The (host, port) it listens on: its (first) UDP listener's, if it has one."""
        if self._address is None:
            raise RuntimeError("not started: call start() first")
        return self._address

    @property
    def listeners(self) -> list[tuple[str, Addr]]:
        """Every listener once started: ``[("udp", (host, port)), ("tcp", ...), ...]``."""
        return list(self._bound)

    def address_of(self, transport: str) -> Addr:
        """The (host, port) of its (first) ``transport`` listener: ``"udp"``, ``"tcp"``,
        ``"tls"``, ``"ws"`` or ``"wss"``."""
        self.address  # noqa: B018 (raises when not started)
        for scheme, addr in self._bound:
            if scheme == transport.lower():
                return addr
        raise LookupError(f"this Responder does not listen on {transport} (it listens on "
                          f"{', '.join(s for s, _ in self._bound)})")

    def uri(self, user: str | None = None, transport: str | None = None) -> str:
        """``sip:USER@127.0.0.1:PORT`` (``sip:127.0.0.1:PORT`` without a user) of
        :attr:`address`; with ``transport="tcp"`` (tls, ws, wss), of that listener, and
        ``;transport=tcp`` after it."""
        addr = self.address if transport is None else self.address_of(transport)
        return sip_uri(user, addr, transport and transport.lower())

    @property
    def log(self) -> list[str]:
        """The lines the server wrote (when no ``log`` stream was given)."""
        stream = self._stream
        return list(stream.lines) if isinstance(stream, _LogLines) else []

    # --- rules --------------------------------------------------------------------
    def set_rules(self, rules: RulesLike) -> RuleSet:
        """Replace the rules (see :func:`to_ruleset`; one-line rules go in front of the
        start rules). Pending delayed steps keep their decision. Before ``start()``, this
        sets the start rules."""
        ruleset = to_ruleset(rules, self.start_rules)
        self._change(lambda _: ruleset)
        return ruleset

    @property
    def rules(self) -> RuleSet:
        """The rules in force now."""
        return self._call(lambda: self._engine.ruleset)

    def add_rule(self, rule: Rule) -> None:
        """Put ``rule`` in front of the current rules."""
        self._change(lambda current: dataclasses.replace(current, rules=(rule, *current.rules)))

    def _change(self, change: Callable[[RuleSet], RuleSet]) -> None:
        def apply() -> None:
            self._engine.set_rules(change(self._engine.ruleset))
        if self._thread is None and not self._stopping:  # not started: the start rules
            self.start_rules = change(self.start_rules)
        self._call(apply, mutates=True)

    def on(self, method: Methods = "*", *, user: str | None = None,
           from_user: str | None = None, to_user: str | None = None,
           source: str | Sequence[str] | None = None, headers: Mapping[str, str] | None = None,
           name: str | None = None, probability: float = 1.0) -> RuleBuilder:
        """Start a rule: ``on("INVITE", user="10*").respond(180, (486, "2s"))``."""
        match = make_match(method, user, from_user, to_user, source, headers)
        if name is None:
            given = {"user": user, "from_user": from_user, "to_user": to_user,
                     "source": source, "headers": headers}
            what = method if isinstance(method, str) else "/".join(method or ["*"])
            name = " ".join([f"on {what}", *(f"{k}={v!r}" for k, v in given.items() if v)])
        if not 0.0 <= probability <= 1.0:
            raise RuleError(f"{name}: probability must be from 0 to 1, not {probability!r}")
        return RuleBuilder(self, match, name, probability)

    def reset(self) -> None:
        """Back to the start rules, with an empty journal and no pending delayed steps."""
        self._settle(self.start_rules, forget=True)

    def _settle(self, rules: RuleSet, forget: bool = False) -> None:
        """Install ``rules`` and empty the journal once every datagram sent before this call
        has been handled: a sentinel OPTIONS (answered by a rule of its own) must come back
        first, so that, say, the ACK a previous test sent cannot land in the fresh journal."""
        if not self.running or self._probe_target() is None:
            self._call(lambda: self._install(rules, forget), mutates=True)
            return
        probe = Rule(make_match("OPTIONS", headers={PROBE_HEADER: "*"}), (Step.make(200),),
                     "sip-responder-probe", origin="Responder")
        with_probe = dataclasses.replace(rules, rules=(probe, *rules.rules))
        self._call(lambda: self._engine.set_rules(with_probe), mutates=True)
        try:
            self._probe()
        finally:
            self._call(lambda: self._install(rules, forget), mutates=True)

    def _install(self, rules: RuleSet, forget: bool = False) -> None:
        self._engine.set_rules(rules)
        if forget:
            self._engine.forget()
        self._journal.clear()

    # --- journal ------------------------------------------------------------------
    @property
    def journal(self) -> list[JournalEntry]:
        """A snapshot of every datagram received (oldest first) and what was sent back: each
        entry's ``data`` and ``size``, the request's ``headers``, ``header(name)`` and
        ``body``, the ``responses`` as bytes (bounded: docs/testing.md, The journal)."""
        def snapshot() -> list[JournalEntry]:
            return [dataclasses.replace(e, responses=list(e.responses),
                                        statuses=list(e.statuses)) for e in self._journal]
        return self._call(snapshot)

    def clear_journal(self) -> None:
        """Empty the journal (after the datagrams sent so far are handled); rules stay."""
        self._settle(self.rules)

    @property
    def counters(self) -> Counters:
        """A copy of the server's counters (received, answered, dropped, discarded ...)."""
        def copy() -> Counters:
            c = self._engine.counters
            return dataclasses.replace(c, discarded=Counter(c.discarded))
        return self._call(copy)

    # --- media (SPEC §8.3) -----------------------------------------------------------
    def media(self, call_id: str) -> dict[str, object] | None:
        """What the call's media did (packets and bytes in and out, payload types, first and
        last arrival, RTCP, DTMF digits); None for a call we answered without media."""
        def facts() -> dict[str, object] | None:
            call = self._engine.media.facts(call_id)
            return call.facts() if call is not None else None
        return self._call(facts)

    def dtmf(self, call_id: str) -> str:
        """The RFC 4733 digits the call's RTP carried, in order ("" when none)."""
        facts = self.media(call_id)
        return str(facts["dtmf"]) if facts is not None else ""

    def assert_media(self, call_id: str, packets_at_least: int = 1, *,
                     echoed_at_least: int | None = None,
                     timeout: float = WAIT) -> dict[str, object]:
        """The call's media facts once at least ``packets_at_least`` RTP packets arrived
        (and, if given, ``echoed_at_least`` went back); AssertionError otherwise, saying
        what did arrive. Waits up to ``timeout`` seconds."""
        __tracebackhide__ = True
        deadline = time.monotonic() + timeout
        while True:
            facts = self.media(call_id)
            if facts is not None and int(str(facts["packets_in"])) >= packets_at_least and (
                    echoed_at_least is None
                    or int(str(facts["packets_out"])) >= echoed_at_least):
                return facts
            if time.monotonic() >= deadline:
                known = self._call(lambda: list(self._engine.media.calls))
                raise AssertionError(
                    f"call {call_id!r}: wanted {packets_at_least} RTP packets in"
                    + (f" and {echoed_at_least} echoed" if echoed_at_least is not None else "")
                    + (f"; its media: {facts}" if facts is not None
                       else f"; no media for it (calls with media: {known[-10:]})"))
            time.sleep(0.01)

    def requests(self, method: Methods = None, *, user: str | None = None,
                 from_user: str | None = None, to_user: str | None = None,
                 source: str | Sequence[str] | None = None,
                 headers: Mapping[str, str] | None = None) -> list[JournalEntry]:
        """The journal's requests that match (method None or ``"*"``: any, ACK included)."""
        match = make_match(method, user, from_user, to_user, source, headers)
        return [e for e in self.journal if not why(match, e)]

    def assert_received(self, method: Methods = None, user: str | None = None,
                        count: int | None = None, *, from_user: str | None = None,
                        to_user: str | None = None, source: str | Sequence[str] | None = None,
                        headers: Mapping[str, str] | None = None,
                        timeout: float = WAIT) -> list[JournalEntry]:
        """The matching requests (``count``: exactly that many); AssertionError otherwise,
        listing the near misses. Waits up to ``timeout`` seconds for them to arrive."""
        __tracebackhide__ = True
        match = make_match(method, user, from_user, to_user, source, headers)
        return self._expect(match, None, count, timeout)

    def assert_answered(self, method: Methods, status: int | Sequence[int],
                        user: str | None = None, count: int | None = None, *,
                        from_user: str | None = None, to_user: str | None = None,
                        source: str | Sequence[str] | None = None,
                        headers: Mapping[str, str] | None = None,
                        timeout: float = WAIT) -> list[JournalEntry]:
        """Like :meth:`assert_received`, for requests answered with ``status`` (an int: among
        the responses sent; a list: exactly those statuses, in order)."""
        __tracebackhide__ = True
        match = make_match(method, user, from_user, to_user, source, headers)
        return self._expect(match, status, count, timeout)

    def _expect(self, match: Match, status: Status, count: int | None,
                timeout: float) -> list[JournalEntry]:
        __tracebackhide__ = True
        deadline = time.monotonic() + timeout
        while True:
            entries = self.journal
            found = [e for e in entries if not why(match, e, status)]
            if (len(found) == count) if count is not None else bool(found):
                return found
            if (count is not None and len(found) > count) or time.monotonic() >= deadline:
                raise AssertionError(report(match, status, count, found, entries))
            time.sleep(0.01)

    # --- the thread ---------------------------------------------------------------
    def _run(self) -> None:
        loop = self._loop
        assert loop is not None
        loop.set_exception_handler(self._on_loop_error)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._set_error(exc)
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                self._ready.set()

    async def _serve(self) -> None:
        self._stop_event = asyncio.Event()
        udp = [s.addr for s in self._specs if s.scheme == "udp"]
        streams = [s for s in self._specs if s.scheme != "udp"]
        await serve(udp, self._engine, ExchangeLog(self._stream),
                    ready=self._on_ready, stop=self._stop_event, signals=False,
                    journal=self._journal, streams=streams, tls=self._tls)
        if not self._stopping:
            raise RuntimeError("the sip-responder server stopped on its own")

    def _on_ready(self, bound: list[Addr]) -> None:
        # serve() binds the UDP addresses first, then the streams, each in order
        order = [s.scheme for s in self._specs if s.scheme == "udp"]
        order += [s.scheme for s in self._specs if s.scheme != "udp"]
        self._bound = list(zip(order, bound, strict=False))
        self._address = bound[0]
        self._ready.set()

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        self._set_error(exc if isinstance(exc, BaseException)
                        else RuntimeError(str(context.get("message"))))

    def _set_error(self, exc: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = exc

    def check(self) -> None:
        """Raise (once) an error that happened in the server thread, if any."""
        with self._lock:
            error, self._error = self._error, None
        if error is not None:
            raise error

    def _probe_target(self) -> tuple[str, Addr] | None:
        """Where the start-up and reset probe goes: UDP, else TCP, else TLS without mutual
        TLS, else WebSocket (ws, then wss without mutual TLS; with the websockets library);
        None (no probe: a mutual-TLS Responder) otherwise."""
        schemes = ("udp", "tcp", "tls", "ws", "wss") if ws_available() else ("udp", "tcp", "tls")
        for scheme in schemes:
            found = [a for s, a in self._bound if s == scheme]
            if found and not (scheme in SECURE and self._tls and self._tls.ca):
                return scheme, found[0]
        return None

    def _probe(self) -> None:
        target = self._probe_target()
        assert target is not None
        scheme, (host, port) = target
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        deadline = time.monotonic() + self.start_timeout
        ctx = unverified_context() if scheme in SECURE else None
        with SipClient((host, port), transport=scheme, ssl_context=ctx) as client:
            while True:
                try:
                    if client.options(headers={PROBE_HEADER: "1"}, timeout=0.5).status == 200:
                        return
                except SipTimeout:
                    pass
                self.check()
                if time.monotonic() > deadline or not self.running:
                    raise TimeoutError(f"sip-responder on {hostport(self.address)} did not "
                                       f"answer an OPTIONS within {self.start_timeout:g}s")

    def _shutdown(self) -> None:
        thread, loop, stop = self._thread, self._loop, self._stop_event
        if thread is None or loop is None:
            return
        if thread.is_alive() and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has just closed: it is ending
                loop.call_soon_threadsafe(stop.set)
        thread.join(self.start_timeout)
        if thread.is_alive():
            self._set_error(RuntimeError("the sip-responder thread did not stop"))

    def _call(self, fn: Callable[[], T], mutates: bool = False) -> T:
        """Run ``fn`` on the server's loop and wait for it (directly when no loop runs)."""
        self.check()
        if mutates and self._stopping:
            raise RuntimeError("this Responder is stopped")
        thread, loop = self._thread, self._loop
        if thread is None or self._stopping or loop is None:
            return fn()  # not started yet, or stopped: no other thread touches the engine
        if not thread.is_alive():
            raise RuntimeError("the sip-responder thread has ended")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return future.result(self.start_timeout)

    def __repr__(self) -> str:
        where = " ".join(f"{s}://{hostport(a)}" for s, a in self._bound) or " ".join(
            f"{s.scheme}://{hostport(s.addr)}" for s in self._specs)
        state = "running" if self.running else "stopped" if self._stopping else "new"
        return f"<Responder {where} {state}>"
