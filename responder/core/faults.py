"""Fault injection's per-transaction state (docs/faults.md): ``drop_first`` counts and the
seeded jitter plan. The engine takes this path only for rules flagged ``lab`` at load, so
the plain path pays one branch for it."""

from __future__ import annotations

from responder.core.limits import Expiring, Limits, TableStat, tally
from responder.core.transactions import Queued, TxnKey
from responder.rules.model import Reply, schedule
from responder.sip.message import Request
from responder.sip.seeded import Seeded


class Faults:
    def __init__(self, limits: Limits) -> None:
        self.held: Expiring[TxnKey, int] = Expiring(limits.drop_first, limits.remember)

    def clear(self) -> None:
        self.held.clear()

    def held_back(self, key: TxnKey, now: float, drop_first: int) -> str | None:
        """``drop_first: N``: the first N transmissions of a transaction get no answer; the
        reason logged for one that is held back (``drop-first 1/2``), or None."""
        if not drop_first:
            return None
        seen = tally(self.held, key, now, drop_first)
        return f"drop-first {seen}/{drop_first}" if seen <= drop_first else None

    @staticmethod
    def plan(req: Request, reply: Reply, seeded: Seeded, now: float) -> list[Queued]:
        """When each step (and repeat) goes out: jitter drawn from the seed, the transaction
        and the step index, so a retransmission gets the same plan."""
        txn = req.transaction_key
        return [(now + d, s, d)
                for d, s in schedule(reply, lambda i: seeded.draw(txn, f"jitter{i}"))]

    def stats(self) -> dict[str, TableStat]:
        return {"drop-first": self.held.stat()}
