"""Server transactions that outlive their request: pending steps and completed answers.

* pending: transactions with delayed steps or repeats still to send (so a CANCEL can stop
  them and a retransmission can be answered with the last response sent), with one timer
  heap for all of them;
* completed: recent transactions that had delayed steps or were cancelled, so their
  retransmissions get the same final response for 32 s (RFC 3261 Timer B/F).

Both are bounded in entries and in bytes (:class:`~responder.core.limits.Limits`,
docs/limits.md): a pending entry keeps only what its responses copy from the request
(:func:`responder.core.keep.for_answers`), and the engine asks :meth:`Transactions.room`
before it sends anything for a request that needs one.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass

from responder.core.calls import Answers
from responder.core.counters import Counters
from responder.core.effects import Dropped, Effect, Send
from responder.core.keep import STR
from responder.core.limits import Expiring, Limits, TableStat
from responder.rules.model import Step
from responder.sip.builder import Context
from responder.sip.message import Request

# (branch, Call-ID, CSeq number, method): a server transaction (RFC 3261 §17.2.3)
TxnKey = tuple[str | None, str | None, int, str]
# (when, step, its delay after the request arrived); step None: the final again (repeat)
Queued = tuple[float, Step | None, float]


def txn_key(req: Request, method: str | None = None) -> TxnKey:
    return (req.top_via.branch, req.call_id, req.cseq_num, method or req.method)


@dataclass(slots=True)
class Pending:
    req: Request
    ctx: Context
    tag: str
    rule: str
    arrival: int             # the arrival the responses answer (Exchange.arrival)
    queue: list[Queued]      # absolute send times
    last: Send | None = None
    final: bool = False      # the final response went out: only repeats are left
    copies: int = 0
    size: int = 0            # its weight in bytes (keep.answer_weight)
    answers: Answers | None = None  # the SDP its 2xx and 183 carry (SPEC §8.1), if any
    resend: bool = False     # a 2xx to INVITE over UDP: resent until its ACK (SPEC §4)
    prack: bool = False      # a reliable provisional is resent until its PRACK (RFC 3262)


COMPLETED = 480  # a completed entry beyond its responses: table slot, tuples, list, Exchange


def sends_weight(sends: list[Send]) -> int:
    """What a completed entry holds: the responses' bytes and their exchanges' text."""
    total = COMPLETED
    for s in sends:
        total += len(s.data) + 4 * STR
        exch = s.exchange
        if exch is not None:
            total += 2 * STR + len(exch.uri) + len(exch.call_id or "")
    return total


class Transactions:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.pending: dict[TxnKey, Pending] = {}
        self._heap: list[tuple[float, int, TxnKey]] = []
        self._seq = 0
        self.completed: Expiring[TxnKey, list[Send]] = Expiring(
            limits.completed, limits.remember, limits.completed_bytes, sends_weight)
        self.overflow = 0
        self.bytes = 0  # what the pending entries weigh
        # (Call-ID, CSeq number) -> the INVITE whose 2xx is resent until this ACK comes
        # (the ACK of a 2xx has a branch of its own). One per pending entry at most.
        self.acks: dict[tuple[str | None, int], TxnKey] = {}
        # (Call-ID, CSeq) -> the INVITE whose reliable provisional awaits its PRACK
        self.pracks: dict[tuple[str | None, int], TxnKey] = {}

    def clear(self) -> None:
        self.pending.clear()
        self._heap.clear()
        self.completed.clear()
        self.acks.clear()
        self.pracks.clear()
        self.bytes = 0

    def await_ack(self, entry: Pending) -> None:
        """``entry`` resends its 2xx until the ACK of (Call-ID, CSeq) arrives."""
        req = entry.req
        self.acks[(req.call_id, req.cseq_num)] = txn_key(req)

    def acked(self, call_id: str | None, cseq_num: int, now: float) -> bool:
        """An ACK arrived: the 2xx it acknowledges is not resent any more."""
        key = self.acks.pop((call_id, cseq_num), None)
        entry = self.pending.get(key) if key is not None else None
        if key is None or entry is None or not entry.final:
            return False
        self.take(key)
        self.remember(key, [entry.last] if entry.last else [], now)
        return True

    def await_prack(self, entry: Pending) -> None:
        """``entry`` resends its reliable provisional until a PRACK for (Call-ID, CSeq)."""
        entry.prack = True
        req = entry.req
        self.pracks[(req.call_id, req.cseq_num)] = txn_key(req)

    def forget_prack(self, entry: Pending) -> None:
        entry.prack = False
        self.pracks.pop((entry.req.call_id, entry.req.cseq_num), None)

    def pracked(self, call_id: str | None, cseq_num: int, now: float) -> bool:
        """A PRACK arrived: the provisional's copies still queued are not sent."""
        key = self.pracks.pop((call_id, cseq_num), None)
        entry = self.pending.get(key) if key is not None else None
        if key is None or entry is None:
            return False
        entry.prack = False
        entry.queue = [q for q in entry.queue if q[1] is not None]
        if entry.queue:
            self._push(entry.queue[0][0], key)
        else:
            self.take(key)
            self.remember(key, [entry.last] if entry.last else [], now)
        return True

    def _forget_ack(self, entry: Pending) -> None:
        if entry.resend or entry.prack:
            req = entry.req
            self.acks.pop((req.call_id, req.cseq_num), None)
            self.pracks.pop((req.call_id, req.cseq_num), None)

    def answered(self, key: TxnKey, now: float) -> list[Send] | None:
        """What was sent for ``key`` so far, when it is a retransmission; else None."""
        if self.completed.table:
            done = self.completed.get(key, now)
            if done is not None:
                return done
        entry = self.pending.get(key)
        if entry is not None:
            return [entry.last] if entry.last else []
        return None

    def room(self, size: int) -> bool:
        """Is there room for one more pending entry of ``size`` bytes?"""
        return (len(self.pending) < self.limits.pending
                and self.bytes + size <= self.limits.pending_bytes)

    def refused(self) -> None:
        """Count a pending entry the table had no room for."""
        self.overflow += 1

    def hold(self, entry: Pending) -> bool:
        """Keep ``entry`` until its queue is sent; False (and counted) when the table is full."""
        key = txn_key(entry.req)
        old = self.pending.get(key)  # replaced, not added (a request handed over again)
        spare = 0 if old is None else old.size
        if (len(self.pending) - (old is not None) >= self.limits.pending
                or self.bytes - spare + entry.size > self.limits.pending_bytes):
            self.overflow += 1
            return False
        self.pending[key] = entry
        self.bytes += entry.size - spare
        self._push(entry.queue[0][0], key)
        return True

    def take(self, key: TxnKey) -> Pending | None:
        """Remove and return the pending entry of ``key`` (a CANCEL stops it)."""
        entry = self.pending.pop(key, None)
        if entry is not None:
            self.bytes -= entry.size
            self._forget_ack(entry)
        return entry

    def remember(self, key: TxnKey, sends: list[Send], now: float) -> None:
        self.completed.put(key, sends, now)

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            due, _, key = heap[0]
            entry = self.pending.get(key)
            if entry is not None and entry.queue and entry.queue[0][0] == due:
                return due
            heapq.heappop(heap)  # stale: cancelled or already sent
        return None

    def due(self, now: float) -> Iterator[Pending]:
        """The entries with something due at ``now``; after the caller has run an entry's
        due steps, it is re-armed or, with nothing left, completed."""
        while self._heap and self._heap[0][0] <= now:
            due, _, key = heapq.heappop(self._heap)
            entry = self.pending.get(key)
            if entry is None or not entry.queue or entry.queue[0][0] != due:
                continue
            yield entry
            if entry.queue:
                self._push(entry.queue[0][0], key)
            else:
                del self.pending[key]
                self.bytes -= entry.size
                self._forget_ack(entry)
                self.remember(key, [entry.last] if entry.last else [], now)

    def _push(self, due: float, key: TxnKey) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, key))
        if len(self._heap) > self.limits.timers:
            # Cancelled transactions leave stale timers behind: keep only the live ones.
            self._heap = [(e.queue[0][0], i, k)
                          for i, (k, e) in enumerate(self.pending.items()) if e.queue]
            heapq.heapify(self._heap)

    def stats(self) -> dict[str, TableStat]:
        return {"pending": TableStat(len(self.pending), self.limits.pending, self.overflow,
                                     self.bytes, self.limits.pending_bytes),
                "timers": TableStat(len(self._heap), self.limits.timers, 0),
                "completed": self.completed.stat()}


# The last requests seen, one per slot of a direct-mapped table (a hash of the transaction
# key picks the slot; a newer request takes it): what tells an immediate rule's answer to a
# retransmission from a first answer, at the cost of one hash and one compare.
SEEN_SLOTS = 16_384
SEEN_MASK = SEEN_SLOTS - 1


def again(out: list[Effect], counters: Counters) -> list[Effect]:
    """Mark the answers to a retransmitted request (counted once, unless already marked:
    the pending and completed tables' answers are)."""
    changed = False
    marked: list[Effect] = []
    for e in out:
        if type(e) is Send or type(e) is Dropped:
            exch = e.exchange
            if exch is not None and not exch.retransmission:
                e = e._replace(exchange=exch._replace(retransmission=True))
                changed = True
        marked.append(e)
    if changed:
        counters.retransmissions += 1
    return marked
