"""Fault injection's per-transaction state (docs/faults.md): ``drop_first`` counts and the
seeded jitter plan. The engine takes this path only for rules flagged ``lab`` at load, so
the plain path pays one branch for it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from responder.core.counters import Counters
from responder.core.effects import Dropped, Effect, Send
from responder.core.keep import answer_weight, for_answers
from responder.core.limits import Expiring, Limits, TableStat, tally
from responder.core.transactions import Pending, Queued, Transactions, TxnKey, txn_key
from responder.rules.model import Reply, schedule
from responder.sip.builder import Context
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


class LabSide:
    """The engine's fault-injection path: a mixin of
    :class:`responder.core.engine.Engine` (kept apart so that each module stays readable)."""

    if TYPE_CHECKING:
        seeded: Seeded
        counters: Counters
        txns: Transactions
        faults: Faults

        def _tag(self, req: Request) -> str: ...
        def _dropped(self, req: Request, ctx: Context, reason: str, rule: str, now: float,
                     arrival: int) -> Dropped: ...
        def _answer(self, req: Request, ctx: Context, reply: Reply, rule: str, now: float,
                    arrival: int) -> list[Effect]: ...
        def _refuse(self, req: Request, ctx: Context, tag: str, now: float,
                    arrival: int) -> Send: ...
        def _run(self, entry: Pending, now: float) -> list[Effect]: ...
        def _hold(self, entry: Pending) -> None: ...

    def _lab(
        self, req: Request, ctx: Context, reply: Reply, rule: str, now: float, arrival: int,
        drop_first: int,
    ) -> list[Effect]:
        """The fault-injection path (docs/faults.md): drop_first, jitter, repeat, fault."""
        held = self.faults.held_back(txn_key(req), now, drop_first)
        if held is not None:  # the first ``drop_first`` transmissions: no answer
            self.counters.held += 1
            return [self._dropped(req, ctx, held, rule, now, arrival)]
        if not reply:
            return self._answer(req, ctx, reply, rule, now, arrival)
        plan = self.faults.plan(req, reply, self.seeded, now)
        tag = self._tag(req)
        kept, size = req, 0
        if plan[-1][0] > now:  # something is left for later (the plan is in time order)
            kept = for_answers(req)
            size = answer_weight(kept, max(len(s.body) for s in reply))
            if not self.txns.room(size):
                return [self._refuse(req, ctx, tag, now, arrival)]
        entry = Pending(kept, ctx, tag, rule, arrival, plan, size=size)
        out = self._run(entry, now)
        if entry.queue:
            self._hold(entry)
        return out
