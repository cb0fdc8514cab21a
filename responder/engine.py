"""The one stateful core object.

``Engine.receive(data, source, now)`` turns a datagram into what to send now;
``Engine.due(now)`` gives the delayed steps whose time has come. Time is an
input (``now``, seconds on any monotonic clock) and so is randomness (the
seed): the transport owns the clock and the sockets, the engine decides.

State, all bounded (:mod:`responder.safety` holds the bounds, docs/faults.md lists them):
* pending: transactions with delayed steps or repeats still to send (so a CANCEL can
  stop them and a retransmission can be answered with the last response sent);
* completed: recent transactions that had delayed steps or were cancelled, so their
  retransmissions get the same final response for 32 s (RFC 3261 Timer B/F);
* held (``drop_first`` counts) and the gate's tables (allow list, rate limit).
Fault injection takes its own path (``_lab``), chosen by one flag set at load.
"""

from __future__ import annotations

import heapq
import zlib
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from .auth import AuthConfig, Verdict, challenge, verify
from .builder import Addr, Context, build_fault, build_step
from .errors import Discard
from .message import Request
from .parser import parse
from .rules.matcher import select
from .rules.model import Reply, Rule, RuleSet, Step, schedule
from .safety import LIMITS, Expiring, Gate, IPNetwork, Limits, TableStat, tally
from .seeded import Seeded

METHODS_LIMIT = 64         # distinct method names counted (Counters.methods)
OTHER_METHOD = "other"     # ... the rest are counted under this name

DEFAULT_RULE = "default"
PROBLEM_RULE = "bad-request"    # the answer to a malformed request (Problem)
CANCEL_RULE = "cancel"          # 200/487 of a CANCEL that stopped pending steps
NO_TXN_RULE = "no-transaction"  # 481 to an unmatched CANCEL
REQUIRE_RULE = "require"        # 420 for unsupported Require tags


class Exchange(NamedTuple):
    """The facts of one response sent (or dropped on purpose): what the log shows."""

    time: float
    source: Addr
    method: str
    uri: str
    call_id: str | None
    status: int | None  # None: dropped by a rule
    reason: str
    rule: str
    delay: float
    retransmission: bool = False  # a retransmitted request got the same response again
    repeat: int = 0  # a copy of a final response sent again by ``repeat`` (1, 2, ...)


class Outgoing(NamedTuple):
    dest: Addr
    data: bytes | None  # None: nothing sent (a "drop" rule); logged, not transmitted
    exchange: Exchange | None  # None: not an answer (a forward to another worker)
    local: Addr | None = None  # the socket the request came in on: send from it
    forward: int | None = None  # hand ``data`` (the request) to this worker instead


_new = tuple.__new__  # builds a NamedTuple from all its fields without a Python call

TxnKey = tuple[str | None, str | None, int, str]
# (when, step, its delay after the request arrived); step None: the final again (repeat)
Queued = tuple[float, Step | None, float]


@dataclass(slots=True)
class JournalEntry:
    """One datagram received and what was answered to it (the test journal, GET /journal)."""

    time: float
    source: Addr
    data: bytes
    request: Request | None  # None: discarded
    discard: str | None = None
    rule: str | None = None
    responses: list[bytes] = field(default_factory=list)  # in the order they were sent

    @property
    def method(self) -> str | None:
        return self.request.method if self.request else None

    @property
    def statuses(self) -> list[int]:
        return [int(r[8:11]) for r in self.responses]


@dataclass(slots=True)
class _Pending:
    req: Request
    ctx: Context
    tag: str
    rule: str
    queue: list[Queued]  # absolute send times
    last: Outgoing | None = None
    journal: JournalEntry | None = None
    final: bool = False  # the final response went out: only repeats are left
    copies: int = 0


@dataclass(slots=True)
class Counters:
    received: int = 0
    answered: int = 0
    dropped: int = 0
    acks: int = 0
    retransmissions: int = 0
    pending_overflow: int = 0
    held: int = 0     # transmissions swallowed by drop_first
    repeats: int = 0  # extra copies of final responses sent by repeat
    discarded: Counter[str] = field(default_factory=Counter)
    # Parsed requests by method (metrics). Bounded: past METHODS_LIMIT distinct names,
    # new ones count as OTHER_METHOD (a scanner's random methods cannot grow it).
    methods: Counter[str] = field(default_factory=Counter)


def _txn(req: Request, method: str | None = None) -> TxnKey:
    return (req.top_via.branch, req.call_id, req.cseq_num, method or req.method)


class Engine:
    """``journal_size`` > 0 keeps the last that many exchanges in :attr:`journal`.

    ``allow`` (networks) and ``rate_limit`` (datagrams a second per source address) are
    checked before parsing, not for requests forwarded by another worker (docs/faults.md).
    ``limits``: the bounds of every table (tests pass small ones).
    """

    def __init__(
        self,
        ruleset: RuleSet,
        seeded: Seeded,
        journal_size: int = 0,
        shard: tuple[int, int] | None = None,
        *,
        allow: Iterable[IPNetwork] | None = None,
        rate_limit: float | None = None,
        limits: Limits = LIMITS,
    ) -> None:
        if journal_size > limits.journal:
            raise ValueError(f"journal_size {journal_size} is over the bound {limits.journal}")
        self.ruleset = ruleset
        self.seeded = seeded
        # (index, count) when several workers share the sockets: a transaction that needs
        # state (delayed steps, CANCEL, fault injection) is handled by its owner, _owner().
        self.shard = shard
        self.limits = limits
        self.counters = Counters()
        self.journal: deque[JournalEntry] | None = (
            deque(maxlen=journal_size) if journal_size > 0 else None)
        self._journal_evicted = 0
        self._pending: dict[TxnKey, _Pending] = {}
        self._heap: list[tuple[float, int, TxnKey]] = []
        self._seq = 0
        self._completed: Expiring[TxnKey, list[Outgoing]] = Expiring(limits.completed,
                                                                     limits.remember)
        self._held: Expiring[TxnKey, int] = Expiring(limits.drop_first, limits.remember)
        self._gate = Gate.make(allow, rate_limit, limits)

    # --- public ----------------------------------------------------------------
    def set_rules(self, ruleset: RuleSet) -> None:
        """Swap the rule set; steps already pending keep their decision."""
        self.ruleset = ruleset

    def forget(self) -> None:
        """Drop every pending step and remembered transaction (a test's clean slate)."""
        self._pending.clear()
        self._heap.clear()
        self._completed.clear()
        self._held.clear()
        if self._gate is not None and self._gate.rate is not None:
            self._gate.rate.clear()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def tables(self) -> dict[str, TableStat]:
        """Size, bound and evictions of every table the engine keeps (docs/faults.md)."""
        journal, rate = self.journal, self._gate.rate if self._gate is not None else None
        return {
            "journal": TableStat(len(journal or ()), journal.maxlen or 0 if journal else 0,
                                 self._journal_evicted),
            "pending": TableStat(len(self._pending), self.limits.pending,
                                 self.counters.pending_overflow),
            "timers": TableStat(len(self._heap), self.limits.timers, 0),
            "completed": self._completed.stat(), "drop-first": self._held.stat(),
            **({"rate-sources": rate.stat()} if rate is not None else {}),
        }

    def next_deadline(self) -> float | None:
        while self._heap:
            due, _, key = self._heap[0]
            entry = self._pending.get(key)
            if entry is not None and entry.queue and entry.queue[0][0] == due:
                return due
            heapq.heappop(self._heap)  # stale: cancelled or already sent
        return None

    def receive(
        self,
        data: bytes,
        source: Addr,
        now: float,
        local: Addr | None = None,
        forwarded: bool = False,
    ) -> list[Outgoing]:
        """One datagram in; the responses to send at once out.

        ``forwarded``: another worker handed this request to us, its owner.
        """
        self.counters.received += 1
        if self._gate is not None and not forwarded:
            reason = self._gate.check(source[0], now)
            if reason is not None:
                self._discard(data, source, now, reason)
                return []
        try:
            req = parse(data)
        except Discard as d:
            self._discard(data, source, now, d.reason)
            return []
        methods, method = self.counters.methods, req.method
        counted = method if method in methods or len(methods) < METHODS_LIMIT else OTHER_METHOD
        methods[counted] = methods.get(counted, 0) + 1
        outs = self._handle(req, source, now, local, None if forwarded else data)
        if self.journal is not None and not (outs and outs[0].forward is not None):
            self._journal(req, data, source, now, outs)
        return outs

    def _discard(self, data: bytes, source: Addr, now: float, reason: str) -> None:
        self.counters.discarded[reason] += 1
        if self.journal is not None:
            self._journal_add(JournalEntry(now, source, data, None, reason))

    def _journal_add(self, entry: JournalEntry) -> None:
        assert self.journal is not None
        if len(self.journal) == self.journal.maxlen:
            self._journal_evicted += 1
        self.journal.append(entry)

    def _journal(
        self, req: Request, data: bytes, source: Addr, now: float, outs: list[Outgoing]
    ) -> None:
        # Only responses to this request: a CANCEL's outs also carry its INVITE's 487.
        responses = [o.data for o in outs if o.data is not None
                     and (o.exchange is None or o.exchange.method == req.method)]
        entry = JournalEntry(now, source, data, req,
                             rule=outs[0].exchange.rule if outs and outs[0].exchange else None,
                             responses=responses)
        self._journal_add(entry)
        pending = self._pending.get(_txn(req))
        if pending is not None and pending.journal is None:
            pending.journal = entry
            entry.rule = pending.rule

    def _owner(self, req: Request) -> int:
        """The worker that owns a transaction: the same for an INVITE and its CANCEL."""
        assert self.shard is not None
        key = f"{req.top_via.branch}\x00{req.call_id}\x00{req.cseq_num}"
        return zlib.crc32(key.encode("utf-8", "surrogateescape")) % self.shard[1]

    def _handle(
        self, req: Request, source: Addr, now: float, local: Addr | None, data: bytes | None
    ) -> list[Outgoing]:
        """``data`` is the raw request when it may be forwarded to its owner worker."""
        if req.method == "ACK":
            self.counters.acks += 1  # ACK is never answered (RFC 3261 §17.2.1)
            return []
        ruleset = self.ruleset
        ctx = _new(Context, (ruleset.identity, self.seeded, now, source, local, ruleset.auth))
        if (p := req.problem) is not None:
            step = Step.make(p.status, reason=p.reason)
            return [self._emit(req, ctx, step, self._tag(req), PROBLEM_RULE, now)]

        if self._completed.table or self._pending:
            key = _txn(req)
            if self._completed.table:
                done = self._completed.get(key, now)
                if done is not None:
                    self.counters.retransmissions += 1
                    return [self._again(o, now) for o in done]
            entry = self._pending.get(key)
            if entry is not None:
                self.counters.retransmissions += 1
                return [self._again(entry.last, now)] if entry.last else []
        plain = ruleset.plain.get(req.method)
        if plain is not None and not req.require:
            # RuleSet.plain: the rule select() would choose, known without the search, and one
            # that needs nothing below (no credentials, no owner worker, no fault memory).
            return self._answer(req, ctx, plain.reply, plain.name, now)

        owner = None
        if self.shard is not None and data is not None:
            owner = self._owner(req)
            if owner == self.shard[0]:
                owner = None
            elif req.method == "CANCEL":
                return [Outgoing(source, data, None, local, owner)]
        if req.method == "CANCEL":
            stopped = self._cancel(req, ctx, now)
            if stopped is not None:
                return stopped
        elif req.require:
            # RFC 3261 §8.2.2.3: a UAS answers unknown Require tags with 420 (not ACK/CANCEL).
            supported = ruleset.identity.supported
            if any(t not in supported for t in req.require):
                step = Step.make(420)
                return [self._emit(req, ctx, step, self._tag(req), REQUIRE_RULE, now)]

        rule = select(ruleset, req, source[0], self.seeded)
        lab = False  # fault injection (precomputed at load): the one branch off the hot path
        if rule is not None:
            if rule.auth and ruleset.auth is not None:
                reply, name = self._authorize(rule, ruleset.auth, req, source, now)
            else:
                reply, name = rule.reply, rule.name
            lab = rule.lab
        elif req.method == "CANCEL":
            # SPEC §5: the default never answers a CANCEL; with nothing to cancel, 481.
            reply, name = (Step.make(481),), NO_TXN_RULE
        else:
            reply, name, lab = ruleset.default, DEFAULT_RULE, ruleset.default_lab
        if owner is not None and data is not None and (lab or (reply and reply[-1].after > 0)):
            # Delayed steps live with the transaction's owner (so its CANCEL finds them),
            # and so does fault injection's per-transaction state.
            return [Outgoing(source, data, None, local, owner)]
        if lab:
            return self._lab(req, ctx, reply, name, now, rule.drop_first if rule else 0)
        return self._answer(req, ctx, reply, name, now)

    def due(self, now: float) -> list[Outgoing]:
        """The delayed steps (and repeats) whose time has come, in order."""
        out: list[Outgoing] = []
        while self._heap and self._heap[0][0] <= now:
            due, _, key = heapq.heappop(self._heap)
            entry = self._pending.get(key)
            if entry is None or not entry.queue or entry.queue[0][0] != due:
                continue
            out += self._run(entry, now)
            if entry.queue:
                self._push(entry.queue[0][0], key)
            else:
                del self._pending[key]
                self._remember(key, [entry.last] if entry.last else [], now)
        return out

    def _run(self, entry: _Pending, now: float) -> list[Outgoing]:
        """Send what of ``entry``'s queue is due at ``now``."""
        out = []
        queue = entry.queue
        while queue and queue[0][0] <= now:
            at, step, delay = queue.pop(0)
            if step is None:  # repeat: the final response again, the same bytes
                assert entry.last is not None and entry.last.exchange is not None
                entry.copies += 1
                self.counters.repeats += 1
                sent = entry.last._replace(exchange=entry.last.exchange._replace(
                    time=at, repeat=entry.copies))
            else:
                sent = self._emit(entry.req, entry.ctx, step, entry.tag, entry.rule, at, delay)
                entry.last = sent
                entry.final = step.final
            out.append(sent)
            if entry.journal is not None and sent.data is not None:
                entry.journal.responses.append(sent.data)
        return out

    # --- internals -------------------------------------------------------------
    def _tag(self, req: Request) -> str:
        return self.seeded.to_tag(req.call_id, req.from_tag, req.top_via.branch)

    def _emit(
        self, req: Request, ctx: Context, step: Step, tag: str, rule: str, time: float,
        delay: float = 0.0,
    ) -> Outgoing:
        """One response, sent at ``time``, ``delay`` after the request arrived."""
        if step.fault is None:
            data = build_step(req, ctx, step, tag)
        else:
            data = build_fault(req, ctx, step, tag)
        self.counters.answered += 1
        # tuple.__new__ straight away: a NamedTuple's own __new__ is a Python function.
        exch = _new(Exchange, (time, ctx.source, req.method, req.uri, req.call_id, step.code,
                               step.reason, rule, delay, False, 0))
        return _new(Outgoing, (ctx.source, data, exch, ctx.local, None))

    def _again(self, out: Outgoing, now: float) -> Outgoing:
        exch = out.exchange
        return out._replace(exchange=exch._replace(time=now, retransmission=True) if exch else None)

    def _answer(self, req: Request, ctx: Context, reply: Reply, rule: str, now: float
                ) -> list[Outgoing]:
        if not reply:
            self.counters.dropped += 1
            exch = Exchange(now, ctx.source, req.method, req.uri, req.call_id, None, "drop",
                            rule, 0.0)
            return [Outgoing(ctx.source, None, exch, ctx.local)]
        tag = self.seeded.to_tag(req.call_id, req.from_tag, req.top_via.branch)
        out: list[Outgoing] = []
        i = 0
        while i < len(reply) and reply[i].after <= 0:
            out.append(self._emit(req, ctx, reply[i], tag, rule, now))
            i += 1
        if i < len(reply):
            queue: list[Queued] = [(now + s.after, s, s.after) for s in reply[i:]]
            self._hold(_Pending(req, ctx, tag, rule, queue, out[-1] if out else None))
        return out

    def _hold(self, entry: _Pending) -> None:
        """Keep ``entry`` until its queue is sent (bounded: over the bound, it is not)."""
        if len(self._pending) >= self.limits.pending:
            self.counters.pending_overflow += 1  # bounded: later steps are not sent
            return
        key = _txn(entry.req)
        self._pending[key] = entry
        self._push(entry.queue[0][0], key)

    def _lab(
        self, req: Request, ctx: Context, reply: Reply, rule: str, now: float, drop_first: int
    ) -> list[Outgoing]:
        """The fault-injection path (docs/faults.md): drop_first, jitter, repeat, fault."""
        if drop_first:
            seen = tally(self._held, _txn(req), now, drop_first)
            if seen <= drop_first:  # the first ``drop_first`` transmissions: no answer
                self.counters.held += 1
                exch = Exchange(now, ctx.source, req.method, req.uri, req.call_id, None,
                                f"drop-first {seen}/{drop_first}", rule, 0.0)
                return [Outgoing(ctx.source, None, exch, ctx.local)]
        if not reply:
            return self._answer(req, ctx, reply, rule, now)
        txn = req.transaction_key  # jitter: seed + transaction + step index
        plan = schedule(reply, lambda i: self.seeded.draw(txn, f"jitter{i}"))
        entry = _Pending(req, ctx, self._tag(req), rule, [(now + d, s, d) for d, s in plan])
        out = self._run(entry, now)
        if entry.queue:
            self._hold(entry)
        return out

    def _authorize(
        self, rule: Rule, cfg: AuthConfig, req: Request, source: Addr, now: float
    ) -> tuple[Reply, str]:
        """``auth: digest``: valid credentials get the rule's reply, others a fresh challenge.

        SPEC §5: no credentials or wrong ones (an unknown user included) get 401
        (407 with ``challenge: proxy``); a right answer to an expired nonce gets a
        challenge with ``stale=true`` (RFC 2617 §3.2.1).
        """
        key = "proxy-authorization" if rule.proxy_challenge else "authorization"
        verdict = verify(cfg, req, key, self.seeded, now, source[0])
        if verdict is Verdict.OK:
            return rule.reply, rule.name
        value = challenge(cfg, self.seeded.nonce(now, source[0]), verdict is Verdict.STALE)
        if rule.proxy_challenge:
            step = Step.make(407, headers=(("Proxy-Authenticate", value),))
        else:
            step = Step.make(401, headers=(("WWW-Authenticate", value),))
        return (step,), f"{rule.name} {verdict.value}-credentials"

    def _cancel(self, req: Request, ctx: Context, now: float) -> list[Outgoing] | None:
        """RFC 3261 §9.2: a CANCEL whose INVITE still has steps pending stops them."""
        invite_key = _txn(req, "INVITE")
        entry = self._pending.get(invite_key)
        if entry is None or entry.final:  # only repeats left: the INVITE is answered
            return None
        del self._pending[invite_key]
        ok = self._emit(req, ctx, Step.make(200), self._tag(req), CANCEL_RULE, now)
        icx = Context(entry.ctx.identity, entry.ctx.seeded, now, entry.ctx.source,
                      entry.ctx.local, entry.ctx.auth)
        terminated = self._emit(entry.req, icx, Step.make(487), entry.tag, CANCEL_RULE, now)
        if entry.journal is not None and terminated.data is not None:
            entry.journal.responses.append(terminated.data)
        self._remember(_txn(req), [ok], now)
        self._remember(invite_key, [terminated], now)
        return [ok, terminated]

    def _push(self, due: float, key: TxnKey) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, key))
        if len(self._heap) > self.limits.timers:
            # Cancelled transactions leave stale timers behind: keep only the live ones.
            self._heap = [(e.queue[0][0], i, k)
                          for i, (k, e) in enumerate(self._pending.items()) if e.queue]
            heapq.heapify(self._heap)

    def _remember(self, key: TxnKey, outs: list[Outgoing], now: float) -> None:
        self._completed.put(key, outs, now)
