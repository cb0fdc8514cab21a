"""The journal: what arrived and what was answered, for tests and ``GET /journal``.

An observer of the engine's effects (:mod:`responder.core.effects`): it never reaches
into the engine. An :class:`~responder.core.effects.Arrived` event opens an entry; every
:class:`~responder.core.effects.Send` or :class:`~responder.core.effects.Dropped` whose
exchange names that arrival adds to it, including delayed steps sent seconds later and the
487 a CANCEL causes. The statuses are the ones the engine sent (never re-read from the
bytes, which a ``fault: garbage`` response does not have). Bounded: the oldest entry goes
when a new one comes and the journal is full.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from responder.core.effects import Arrived, Dropped, Effect, Send
from responder.core.limits import LIMITS, Limits, TableStat
from responder.sip.builder import Addr
from responder.sip.message import Request


@dataclass(slots=True)
class JournalEntry:
    """One message received and what was answered to it."""

    time: float
    source: Addr
    data: bytes
    request: Request | None  # None: discarded
    discard: str | None = None
    rule: str | None = None
    responses: list[bytes] = field(default_factory=list)  # in the order they were sent
    statuses: list[int] = field(default_factory=list)     # the code of each response sent
    transport: str = "udp"
    seq: int = 0  # the arrival's number (Arrived.seq)

    @property
    def method(self) -> str | None:
        return self.request.method if self.request else None


class Journal:
    """The last ``size`` entries, in arrival order."""

    def __init__(self, size: int, limits: Limits = LIMITS) -> None:
        if size < 1:
            raise ValueError("a journal holds at least one entry")
        if size > limits.journal:
            raise ValueError(f"journal_size {size} is over the bound {limits.journal}")
        self.size = size
        self._entries: deque[JournalEntry] = deque()
        self._by_seq: dict[int, JournalEntry] = {}
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[JournalEntry]:
        return iter(self._entries)

    def __reversed__(self) -> Iterator[JournalEntry]:
        return reversed(self._entries)

    def stat(self) -> TableStat:
        return TableStat(len(self._entries), self.size, self.evicted)

    def clear(self) -> None:
        self._entries.clear()
        self._by_seq.clear()

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
                    entry.responses.append(e.data)
                    entry.statuses.append(exchange.status)

    def _open(self, e: Arrived) -> None:
        inbound = e.inbound
        entry = JournalEntry(e.time, inbound.source, inbound.data, e.request, e.discard,
                             e.rule, transport=inbound.transport, seq=e.seq)
        if len(self._entries) >= self.size:
            old = self._entries.popleft()
            self._by_seq.pop(old.seq, None)
            self.evicted += 1
        self._entries.append(entry)
        self._by_seq[e.seq] = entry
