"""Calls the responder ends itself (SPEC §8.5): the BYEs that ``hangup:`` schedules.

A step with ``hangup: DURATION`` puts, when its 2xx to an INVITE is sent, one entry here:
the BYE's bytes (built then, from the INVITE: nothing of the request is kept), where it
goes (the INVITE's source, never an address from the message) and when. :meth:`due`
sends it, then again per Timer E on UDP (T1 doubling to T2) until a final response
arrives (:meth:`answered`) or 64·T1 pass (Timer F). The caller's own BYE cancels it
(:meth:`cancel`). Bounded in entries (``limit``) and so in bytes: one BYE each, at most
a few hundred bytes plus the copied From, To and routes (themselves bounded by the parser).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from responder.core.calls import Dialogs
from responder.core.effects import Send
from responder.core.limits import TableStat
from responder.rules.model import T1, T2
from responder.sip.addr import Addr
from responder.sip.requests import Response

DialogKey = tuple[str | None, str | None]  # (Call-ID, the caller's From tag)
TIMER_F = 64 * T1  # a BYE with no final answer after this long is given up
OURS = -1  # in Dialogs.ended: the BYE that ended the dialog was ours (no CSeq of theirs)


@dataclass(slots=True)
class Hangup:
    key: DialogKey
    due: float                # the next transmission (or, once sent on a stream, Timer F)
    dest: Addr
    local: Addr | None
    conn: int | None
    data: bytes
    branch: str
    udp: bool
    sent: int = 0             # transmissions so far
    first: float = 0.0        # when the first left
    interval: float = T1      # Timer E: the wait before the next retransmission


class Hangups:
    """The BYEs to send, in flight or scheduled: at most ``limit``."""

    def __init__(self, limit: int, dialogs: Dialogs) -> None:
        self.limit = limit
        self.dialogs = dialogs  # a dialog we hang up is over: the caller's BYE then is 481
        self.table: dict[DialogKey, Hangup] = {}
        self.by_branch: dict[str, DialogKey] = {}
        self._heap: list[tuple[float, int, DialogKey]] = []
        self._seq = 0
        self.sent = 0           # BYEs sent (first transmissions)
        self.retransmitted = 0  # ... and their Timer E copies
        self.answered_final = 0  # final responses to them
        self.timed_out = 0      # no final response within Timer F
        self.cancelled = 0      # the caller's BYE came first
        self.refused = 0        # the table was full: that call is not hung up

    def __len__(self) -> int:
        return len(self.table)

    def schedule(self, entry: Hangup) -> bool:
        """Keep ``entry`` (a dialog is hung up once: a second schedule keeps the first)."""
        if entry.key in self.table:
            return True
        if len(self.table) >= self.limit:
            self.refused += 1
            return False
        self.table[entry.key] = entry
        self.by_branch[entry.branch] = entry.key
        self._push(entry.due, entry.key)
        return True

    def cancel(self, key: DialogKey) -> bool:
        """The dialog ended otherwise (the caller's BYE): send nothing more for it."""
        entry = self.table.pop(key, None)
        if entry is None:
            return False
        self.by_branch.pop(entry.branch, None)
        self.cancelled += 1
        if not self.table:
            self._heap.clear()  # only stale timers were left
        return True

    def answered(self, resp: Response) -> DialogKey | None:
        """A response to one of our BYEs: a final one ends its retransmissions. The
        dialog it answers, or None when it answers nothing of ours."""
        key = self.by_branch.get(resp.branch or "")
        if key is None or resp.cseq_method != "BYE":
            return None
        entry = self.table[key]
        if resp.status >= 200:
            del self.table[key]
            del self.by_branch[entry.branch]
            self.answered_final += 1
            if not self.table:
                self._heap.clear()
        else:
            entry.interval = T2  # RFC 3261 §17.1.2.2: a provisional slows Timer E to T2
        return key

    def due(self, now: float) -> list[Send]:
        out: list[Send] = []
        heap, table = self._heap, self.table
        while heap and heap[0][0] <= now:
            at, _, key = heapq.heappop(heap)
            entry = table.get(key)
            if entry is None or entry.due != at:
                continue  # cancelled, answered or rescheduled: a stale timer
            if entry.sent and at - entry.first >= TIMER_F:
                del table[key]
                del self.by_branch[entry.branch]
                self.timed_out += 1
                continue
            out.append(Send(entry.dest, entry.data, None, entry.local, entry.conn))
            if entry.sent:
                self.retransmitted += 1
            else:
                entry.first = at
                self.sent += 1
                self.dialogs.ended.put(key, OURS, at)
            entry.sent += 1
            if entry.udp:
                entry.due = min(at + entry.interval, entry.first + TIMER_F)
                entry.interval = min(2 * entry.interval, T2)
            else:
                entry.due = entry.first + TIMER_F  # reliable transport: no Timer E
            self._push(entry.due, key)
        return out

    def next_deadline(self) -> float | None:
        heap, table = self._heap, self.table
        while heap:
            at, _, key = heap[0]
            entry = table.get(key)
            if entry is not None and entry.due == at:
                return at
            heapq.heappop(heap)  # stale: cancelled, answered or rescheduled
        return None

    def clear(self) -> None:
        self.table.clear()
        self.by_branch.clear()
        self._heap.clear()

    def stat(self) -> TableStat:
        return TableStat(len(self.table), self.limit, self.refused)

    def _push(self, due: float, key: DialogKey) -> None:
        if len(self._heap) > 2 * self.limit + 64:  # stale timers of cancelled calls
            self._heap = [(e.due, i, e.key) for i, e in enumerate(self.table.values())]
            heapq.heapify(self._heap)
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, key))
