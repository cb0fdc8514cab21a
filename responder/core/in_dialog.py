"""The engine's side of calls in progress: requests in a dialog (SPEC §8.2), the 2xx
resent until its ACK (SPEC §4), reliable provisionals and their PRACK (SPEC §8.4), and
the BYEs of ``hangup:`` with the responses to them (SPEC §8.5).

A mixin of :class:`responder.core.engine.Engine` (kept apart so that each module stays
readable); it uses the engine's tables and its ``_emit``/``_answer``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from responder.core import names
from responder.core.calls import (
    OFFER_METHODS,
    RESEND_2XX,
    Answers,
    Dialogs,
    late_answer,
    listen_address,
)
from responder.core.counters import Counters
from responder.core.effects import UDP, Arrived, Effect, Handoff, Inbound, Send
from responder.core.hangups import Hangup, Hangups
from responder.core.keep import for_pending
from responder.core.media import Media
from responder.core.reliable import PROVISIONAL_RESEND, rack, rack_ok
from responder.core.transactions import Pending, Transactions
from responder.rules.matcher import select_in_dialog
from responder.rules.model import Reply, Rule, RuleSet, Step
from responder.sip import requests
from responder.sip.builder import Context
from responder.sip.errors import RESPONSE
from responder.sip.message import Request
from responder.sip.seeded import Seeded


class DialogSide:
    if TYPE_CHECKING:
        ruleset: RuleSet
        seeded: Seeded
        shard: tuple[int, int] | None
        record: bool
        counters: Counters
        txns: Transactions
        dialogs: Dialogs
        media: Media
        hangups: Hangups

        def owner_of(self, call_id: str | None, from_tag: str | None) -> int: ...
        def _discard(self, inbound: Inbound, now: float, reason: str) -> list[Effect]: ...
        def _emit(self, req: Request, ctx: Context, step: Step, tag: str, rule: str,
                  time: float, arrival: int, delay: float = 0.0,
                  answers: Answers | None = None) -> Send: ...
        def _answer(self, req: Request, ctx: Context, reply: Reply, rule: str, now: float,
                    arrival: int, how: Rule | None = None, inbound: Inbound | None = None,
                    ) -> list[Effect]: ...

    def _in_dialog(self, req: Request, ctx: Context, inbound: Inbound, now: float,
                   arrival: int) -> list[Effect] | Rule | None:
        """A request with a To tag (SPEC §8.2): 481 when the tag is not one we issue or the
        dialog was ended by a BYE; a re-INVITE or UPDATE gets 200 and its answer at once
        unless a rule says ``in_dialog: true`` (that rule); None: the rules decide."""
        assert req.to_tag is not None
        tag = req.to_tag
        if not self.seeded.ours(tag, req.call_id, req.from_tag) or (
                req.method == "BYE"
                and not self.dialogs.end(req.call_id, req.from_tag, req.cseq_num, now)):
            return [self._emit(req, ctx, names.NO_DIALOG, tag, names.NO_DIALOG_RULE, now,
                               arrival)]
        if req.method == "BYE":
            self.hangups.cancel((req.call_id, req.from_tag))  # the caller hung up first
        elif req.method == "PRACK":
            done = self._prack(req, ctx, now, arrival)
            if done is not None:
                return done
        if req.method in OFFER_METHODS:
            rule = select_in_dialog(self.ruleset, req, inbound.source[0], self.seeded)
            if rule is None:
                return self._answer(req, ctx, (names.IN_DIALOG_OK,), names.IN_DIALOG_RULE, now,
                                    arrival, None, inbound)
            return rule
        return None

    def _prack(self, req: Request, ctx: Context, now: float, arrival: int
               ) -> list[Effect] | None:
        """RFC 3262: a PRACK must name a reliable provisional of ours (else 481); it stops
        that provisional's resending. The answer to our offer (a delayed offer's, sent in
        the provisional) is read like an ACK's; an offer is answered (None: go on)."""
        assert req.to_tag is not None
        got = rack(req)
        if got is None or not rack_ok(req, req.to_tag):
            return [self._emit(req, ctx, names.NO_DIALOG, req.to_tag, names.NO_RACK_RULE, now,
                               arrival)]
        if self.txns.pracks and self.txns.pracked(req.call_id, got[1], now):
            self.counters.pracked += 1
        call = self.media.calls.get(req.call_id or "") if req.body else None
        if call is not None and call.expected is None:
            late_answer(self.media, req)
            return [self._emit(req, ctx, names.IN_DIALOG_OK, req.to_tag,
                               names.IN_DIALOG_RULE, now, arrival)]
        return None

    def _resend(self, req: Request, ctx: Context, tag: str, rule: str, arrival: int,
                sent: Send, now: float, size: int) -> None:
        """A 2xx to INVITE over UDP is sent again (T1 doubling to T2) until its ACK comes or
        64·T1 pass (SPEC §4). Best effort: with the pending table full it is not."""
        kept, weight = for_pending(req, size, len(sent.data))
        if not self.txns.room(weight):
            return
        first = RESEND_2XX[0]  # the next ones are queued one at a time (Engine._run)
        entry = Pending(kept, ctx, tag, rule, arrival, [(now + first, None, first)], sent,
                        True, size=weight, resend=True)
        if self.txns.hold(entry):
            self.txns.await_ack(entry)

    def _response(self, inbound: Inbound, now: float, handed: bool) -> list[Effect]:
        """A response: the answer to one of our BYEs (SPEC §8.5), else discarded. With
        workers it goes to the dialog's owner (its To tag is the caller's From tag)."""
        resp = requests.read_response(inbound.data)
        if resp is not None and self.hangups.answered(resp) is not None:
            return [Arrived(self.counters.received, now, inbound, None)] if self.record else []
        if (resp is not None and resp.cseq_method == "BYE" and self.shard is not None
                and not handed):
            keeper = self.owner_of(resp.call_id, resp.to_tag)
            if keeper != self.shard[0]:
                return [Handoff(keeper, inbound)]
        return self._discard(inbound, now, RESPONSE)

    def _hangup(self, req: Request, ctx: Context, after: float, tag: str, at: float) -> None:
        """SPEC §8.5: the BYE ``after`` seconds past this 2xx, to the INVITE's source."""
        local = ctx.local or ("127.0.0.1", 5060)
        local = (listen_address(ctx.local, req), local[1])
        data = requests.bye(req, tag, local, ctx.transport, ctx.identity.server)
        if data is not None:  # over the INVITE's connection on a stream (no Timer E there)
            self.hangups.schedule(Hangup((req.call_id, req.from_tag), at + after, ctx.source,
                                         ctx.local, ctx.conn, data, requests.branch_for(tag),
                                         ctx.transport == UDP))

    def _copies(self, entry: Pending, at: float, delay: float) -> None:
        """A reliable provisional sent at ``at`` is sent again (RFC 3262 §3) until its
        PRACK (:meth:`Transactions.pracked`) or the next step, whichever comes first."""
        queue = entry.queue
        until = queue[0][0] if queue else at + PROVISIONAL_RESEND[-1] + 1
        queue[0:0] = [(at + t, None, delay + t) for t in PROVISIONAL_RESEND if at + t < until]
        self.txns.await_prack(entry)
