"""The journal: what arrived and what was answered, for tests and ``GET /journal``.

An observer of the engine's effects (:mod:`responder.core.effects`): it never reaches
into the engine. An :class:`~responder.core.effects.Arrived` event opens an entry; every
:class:`~responder.core.effects.Send` or :class:`~responder.core.effects.Dropped` whose
exchange names that arrival adds to it, including delayed steps sent seconds later and the
487 a CANCEL causes. The statuses are the ones the engine sent (never re-read from the
bytes, which a ``fault: garbage`` response does not have). Bounded in entries and in bytes
(``Limits.journal_bytes``): the oldest entry goes when a new one comes and the journal is
full. An entry keeps a bounded copy of a large request (:func:`responder.core.keep.for_journal`)
and at most ``keep.JOURNAL_DATA`` bytes of the datagram and of each response; all of it,
text included (the datagram, the request's header values and body, each response's bytes),
is counted in the entry's weight, so the byte budget bounds what ``GET /journal`` shows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from responder.core.effects import Arrived, Dropped, Effect, Send
from responder.core.keep import JOURNAL_DATA, JOURNAL_LINES, LINE, REQUEST, STR, for_journal
from responder.core.limits import LIMITS, Limits, TableStat
from responder.sip.builder import Addr
from responder.sip.message import COMPACT, Request

ENTRY = 400  # a JournalEntry and its lists, beyond the datagram and the request
# A small request kept as parsed: the entry, the Request, the datagram and the text of the
# values (at most the datagram's size again), and per header line its objects (a Via line's
# value is in the Via list too: one more str).
SMALL = ENTRY + REQUEST + 8 * STR
PER_LINE = LINE + STR
RESPONSE = STR + 8  # a response kept, beyond its bytes: the object and its list slot


@dataclass(slots=True)
class JournalEntry:
    """One message received and what was answered to it."""

    time: float
    source: Addr
    data: bytes              # the datagram (its first keep.JOURNAL_DATA bytes)
    request: Request | None  # None: discarded; a bounded copy of a large one (keep.py)
    discard: str | None = None
    rule: str | None = None
    responses: list[bytes] = field(default_factory=list)  # in the order they were sent
    # (each its first keep.JOURNAL_DATA bytes)
    statuses: list[int] = field(default_factory=list)     # the code of each response sent
    transport: str = "udp"
    seq: int = 0  # the arrival's number (Arrived.seq)
    weight: int = 0  # what the entry holds, in bytes (an estimate, see keep.py)
    size: int = 0  # the datagram's size as received (``data`` keeps at most JOURNAL_DATA)

    @property
    def method(self) -> str | None:
        return self.request.method if self.request else None

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The request's header lines as (name as written, value), in order, repeated
        names repeated ([] for a discarded datagram; a large request's first
        ``keep.JOURNAL_LINES`` lines, each value cut to ``keep.JOURNAL_VALUE``)."""
        r = self.request
        return [(name, value) for _, name, value in r.header_lines] if r is not None else []

    @property
    def body(self) -> bytes:
        """The request's body (b"" for none or a discarded datagram; a large request's
        first ``keep.JOURNAL_VALUE`` bytes)."""
        return self.request.body if self.request is not None else b""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case, compact forms too), or None."""
        key = name.lower()
        key = COMPACT.get(key, key)
        r = self.request
        if r is not None:
            for k, _, value in r.header_lines:
                if k == key:
                    return value
        return None


class Journal:
    """The last ``size`` entries, in arrival order."""

    def __init__(self, size: int, limits: Limits = LIMITS) -> None:
        if size < 1:
            raise ValueError("a journal holds at least one entry")
        if size > limits.journal:
            raise ValueError(f"journal_size {size} is over the bound {limits.journal}")
        self.size = size
        self.budget = limits.journal_bytes
        self._entries: deque[JournalEntry] = deque()
        self._by_seq: dict[int, JournalEntry] = {}
        self.evicted = 0
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[JournalEntry]:
        return iter(self._entries)

    def __reversed__(self) -> Iterator[JournalEntry]:
        return reversed(self._entries)

    def stat(self) -> TableStat:
        return TableStat(len(self._entries), self.size, self.evicted, self.bytes, self.budget)

    def clear(self) -> None:
        self._entries.clear()
        self._by_seq.clear()
        self.bytes = 0

    def observe(self, effects: Iterable[Effect]) -> None:
        """Take one batch of effects (in the order the engine gave them)."""
        for e in effects:
            if isinstance(e, Arrived):
                self._open(e)
            elif isinstance(e, Send | Dropped) and e.exchange is not None:
                exchange = e.exchange
                entry = self._by_seq.get(exchange.arrival)
                if entry is None:
                    continue
                if entry.rule is None:
                    entry.rule = exchange.rule
                if isinstance(e, Send) and exchange.status is not None:
                    data = e.data
                    if len(data) > JOURNAL_DATA:
                        data = data[:JOURNAL_DATA]
                    entry.responses.append(data)
                    entry.statuses.append(exchange.status)
                    grown = len(data) + RESPONSE
                    entry.weight += grown
                    self.bytes += grown
                    if self.bytes > self.budget:
                        self._evict(0)

    def _open(self, e: Arrived) -> None:
        inbound = e.inbound
        data = inbound.data
        size = len(data)
        request = e.request
        if request is None:
            if size > JOURNAL_DATA:
                data = data[:JOURNAL_DATA]
            weight = ENTRY + len(data)
        elif size <= JOURNAL_DATA and len(request.header_lines) <= JOURNAL_LINES:
            # kept as parsed (keep.for_journal's small case, inline: the hot path)
            weight = SMALL + 2 * size + PER_LINE * len(request.header_lines)
        else:
            request, kept = for_journal(request, size)
            data = data[:JOURNAL_DATA]
            weight = ENTRY + len(data) + kept
        entry = JournalEntry(e.time, inbound.source, data, request, e.discard,
                             e.rule, transport=inbound.transport, seq=e.seq, weight=weight,
                             size=size)
        entries = self._entries
        if len(entries) >= self.size:  # the common case when full, inline
            old = entries.popleft()
            del self._by_seq[old.seq]
            self.bytes -= old.weight
            self.evicted += 1
        if self.bytes + weight > self.budget:
            self._evict(1, weight)
        entries.append(entry)
        self._by_seq[e.seq] = entry
        self.bytes += weight

    def _evict(self, room: int, weight: int = 0) -> None:
        """Drop the oldest entries until ``room`` more entries of ``weight`` bytes in all
        fit (one entry always stays: a single entry is bounded by keep.py)."""
        entries = self._entries
        while entries and (len(entries) + room > self.size
                           or (self.bytes + weight > self.budget
                               and len(entries) + room > 1)):
            old = entries.popleft()
            self._by_seq.pop(old.seq, None)
            self.bytes -= old.weight
            self.evicted += 1

