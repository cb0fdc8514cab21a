"""The sans-I/O core: ``Engine.receive(Inbound, now) -> effects``.

``receive`` turns one arrived message into effects (:mod:`responder.core.effects`): what to
send at once, where and from where, what to hand to another worker, and events for the
journal, logs and metrics. ``due(now)`` gives the delayed steps whose time has come and
``next_deadline()`` when to call it next. Time is an input (``now``, seconds on any
monotonic clock) and so is randomness (the seed): a transport owns the clock and the
sockets, the engine decides, for every transport alike.

The stages, each in its own module:

* gate and limits (:mod:`~responder.core.limits`): allow list and rate limit, before parsing;
* parse (:mod:`responder.sip.parser`) and match (:mod:`responder.rules.matcher`);
* transactions (:mod:`~responder.core.transactions`): retransmissions, delayed steps, CANCEL;
* faults (:mod:`~responder.core.faults`): drop_first, jitter, repeat, malformed responses;
* build (:mod:`~responder.core.answer`, :mod:`responder.sip.builder`);
* counters (:mod:`~responder.core.counters`) and, for observers, the journal's events.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from responder.core import names
from responder.core.answer import build_fault, build_step, express, express_table
from responder.core.calls import (
    OFFER_METHODS,
    RESEND_2XX,
    Answers,
    Dialogs,
    answers_for,
    events_pt,
    late_answer,
    media_mode,
    too_short,
)
from responder.core.counters import METHODS_LIMIT, OTHER_METHOD, Counters
from responder.core.digest import authorize
from responder.core.effects import (
    UDP,
    Arrived,
    Dropped,
    Effect,
    Exchange,
    Handoff,
    Inbound,
    Send,
)
from responder.core.faults import Faults, LabSide
from responder.core.hangups import Hangups
from responder.core.in_dialog import DialogSide
from responder.core.keep import for_pending
from responder.core.limits import LIMITS, Gate, IPNetwork, Limits, TableStat
from responder.core.media import Media
from responder.core.reliable import reliable_reply
from responder.core.transactions import (
    SEEN_MASK,
    SEEN_SLOTS,
    Pending,
    Queued,
    Transactions,
    again,
    txn_key,
)
from responder.rules.matcher import select
from responder.rules.model import Reply, Rule, RuleSet, Step
from responder.sip.builder import Context
from responder.sip.errors import RESPONSE, Discard
from responder.sip.message import Request
from responder.sip.parser import parse
from responder.sip.seeded import Seeded

CALL_METHODS = frozenset({"INVITE", "ACK", "CANCEL", "UPDATE", "BYE", "PRACK"})

_new = tuple.__new__  # builds a NamedTuple from all its fields without a Python call


class Engine(DialogSide, LabSide):
    """One rule set, one seed, bounded state.

    ``shard`` = (index, count) when several workers share the sockets: a request whose
    dialog needs state (delayed steps, CANCEL, fault injection) is handed to the worker
    that owns the dialog (:meth:`owner`). ``allow`` (networks) and ``rate_limit``
    (datagrams a second per source address) are checked before parsing, not for requests
    handed over by another worker. ``record``: emit an :class:`Arrived` event per message
    (the journal observes them). ``limits``: the bounds of every table.
    """

    def __init__(
        self,
        ruleset: RuleSet,
        seeded: Seeded,
        shard: tuple[int, int] | None = None,
        *,
        allow: Iterable[IPNetwork] | None = None,
        rate_limit: float | None = None,
        limits: Limits = LIMITS,
        record: bool = False,
    ) -> None:
        self.ruleset = ruleset
        self.express = express_table(ruleset, CALL_METHODS)
        self.seeded = seeded
        self.shard = shard
        self.limits = limits
        self.record = record
        # Mark (and count) the answers to retransmitted requests that an immediate rule
        # answers again: what logs, metrics, journal and trace show. Nobody observing (-q,
        # no metrics, journal or trace): the server turns it off, it costs ~0.7 µs a request.
        self.marks = True
        self.counters = Counters()
        self.txns = Transactions(limits)
        self.faults = Faults(limits)
        self._gate = Gate.make(allow, rate_limit, limits)
        self.dialogs = Dialogs(limits.completed, limits.remember)
        self.media = Media(seeded.key32("ssrc"))
        self._seen: list[tuple[str | None, int, str] | None] = [None] * SEEN_SLOTS
        self.hangups = Hangups(limits.pending, self.dialogs)  # hangup: BYEs (SPEC §8.5)
        # listen host -> the port of its media socket (the server opens them; SPEC §8.3)
        self.media_ports: dict[str, int] = {}

    # --- public ----------------------------------------------------------------
    def set_rules(self, ruleset: RuleSet) -> None:
        """Swap the rule set; steps already pending keep their decision."""
        self.ruleset = ruleset
        self.express = express_table(ruleset, CALL_METHODS)

    def forget(self) -> None:
        """Drop every pending step and remembered transaction (a test's clean slate)."""
        self.txns.clear()
        self.faults.clear()
        self.dialogs.clear()
        self.media.clear()
        self.hangups.clear()
        self._seen = [None] * SEEN_SLOTS
        if self._gate is not None and self._gate.rate is not None:
            self._gate.rate.clear()

    @property
    def pending(self) -> int:
        return len(self.txns.pending)

    def unsent(self) -> int:
        """Steps (and repeats) still waiting in the pending table: what a stop now would
        never send."""
        return sum(len(entry.queue) for entry in self.txns.pending.values())

    def tables(self) -> dict[str, TableStat]:
        """Size, bound and evictions of every table the engine keeps (docs/faults.md)."""
        rate = self._gate.rate if self._gate is not None else None
        return {**self.txns.stats(), **self.faults.stats(),
                "hangups": self.hangups.stat(),
                **({"rate-sources": rate.stat()} if rate is not None else {})}

    def next_deadline(self) -> float | None:
        first = self.txns.next_deadline()
        if not self.hangups.table:  # (the common case: no BYE of ours waiting)
            return first
        bye = self.hangups.next_deadline()
        return first if bye is None else bye if first is None else min(first, bye)

    def owner(self, req: Request) -> int:
        """The worker that owns a request's dialog (Call-ID and From tag): every request of
        one call -- INVITE, CANCEL, ACK, BYE, re-INVITE -- meets the same worker."""
        return self.owner_of(req.call_id, req.from_tag)

    def owner_of(self, call_id: str | None, from_tag: str | None) -> int:
        assert self.shard is not None
        key = f"{call_id}\x00{from_tag}"
        return zlib.crc32(key.encode("utf-8", "surrogateescape")) % self.shard[1]

    def receive(self, inbound: Inbound, now: float, handed: bool = False) -> list[Effect]:
        """One message in; the effects of it out. ``handed``: another worker handed this
        request to us, its owner (no gate, no sharding)."""
        counters = self.counters
        counters.received += 1
        if self._gate is not None and not handed:
            reason = self._gate.check(inbound.source[0], now)
            if reason is not None:
                return self._discard(inbound, now, reason)
        try:
            req = parse(inbound.data)
            methods, method = counters.methods, req.method  # bounded: see Counters.methods
            counted = (method if method in methods or len(methods) < METHODS_LIMIT
                       else OTHER_METHOD)
            methods[counted] = methods.get(counted, 0) + 1
            # A request seen a moment ago (same branch, Call-ID, CSeq, method): its answer
            # is marked and counted as a retransmission's, whichever path answers it.
            if not self.marks:
                out = self._handle(req, inbound, now, handed)
            else:
                key = (req.top_via.branch or req.call_id, req.cseq_num, method)
                seen, slot = self._seen, hash(key) & SEEN_MASK
                if seen[slot] != key:
                    seen[slot] = key
                    out = self._handle(req, inbound, now, handed)
                else:
                    out = again(self._handle(req, inbound, now, handed), counters)
        except Discard as d:
            if d.reason == RESPONSE and (self.hangups.by_branch or self.shard is not None):
                return self._response(inbound, now, handed)
            return self._discard(inbound, now, d.reason)
        except Exception:  # SPEC §10: a bug costs this message only
            return self._discard(inbound, now, names.INTERNAL_ERROR)
        if self.record and not (out and type(out[0]) is Handoff):
            out.insert(0, Arrived(counters.received, now, inbound, req, None,
                                  self._rule_of(req, out)))
        return out

    def due(self, now: float) -> list[Effect]:
        """The delayed steps (and repeats) whose time has come, in order."""
        out: list[Effect] = []
        for entry in self.txns.due(now):
            try:
                out += self._run(entry, now)
            except Exception:  # SPEC §10: one entry's bug, not the rest
                self.counters.discarded[names.INTERNAL_ERROR] += 1
        if self.hangups.table:
            out += self.hangups.due(now)
        return out

    # --- the decision ------------------------------------------------------------
    def _discard(self, inbound: Inbound, now: float, reason: str) -> list[Effect]:
        self.counters.discarded[reason] += 1
        if self.record:
            return [Arrived(self.counters.received, now, inbound, None, reason)]
        return []

    def _handle(self, req: Request, inbound: Inbound, now: float, handed: bool) -> list[Effect]:
        ruleset = self.ruleset
        fast = self.express.get(req.method)
        if fast is not None and req.to_tag is None and req.problem is None and not req.require:
            # outside calls, one immediate step of a plain rule: _answer's bytes, without
            # its questions (no worker, dialog or media); a retransmission as below
            txns = self.txns
            done = (txns.answered(txn_key(req), now) if txns.pending or txns.completed.table
                    else None)
            if done is None:
                return [express(req, inbound, now, ruleset, self.seeded, fast, self.counters)]
            self.counters.retransmissions += 1
            return [self._again(s, now, inbound, self.counters.received) for s in done]
        if (self.shard is not None and not handed
                and (req.method in CALL_METHODS or req.to_tag is not None)):
            # A call's state (the 2xx awaiting its ACK, its media, its dialog) lives with
            # the worker that owns the dialog: every request of the call goes there.
            keeper = self.owner(req)
            if keeper != self.shard[0]:
                return [Handoff(keeper, inbound)]
        if req.method == "ACK":
            self.counters.acks += 1  # ACK is never answered (RFC 3261 §17.2.1)
            if self.txns.acks and self.txns.acked(req.call_id, req.cseq_num, now):
                self.counters.acked += 1  # ... but it stops the resending of a 2xx (SPEC §4)
            if req.body and req.call_id in self.media.calls:
                late_answer(self.media, req)  # delayed offer: the caller's answer
            return []
        source = inbound.source
        ctx = _new(Context, (ruleset.identity, self.seeded, now, source, inbound.local,
                             ruleset.auth, inbound.transport, inbound.conn))
        arrival = self.counters.received
        if (p := req.problem) is not None:
            step = Step.make(p.status, reason=p.reason)
            return [self._emit(req, ctx, step, self._tag(req), names.PROBLEM_RULE, now, arrival)]

        txns = self.txns
        if txns.pending or txns.completed.table:
            key = txn_key(req)
            done = txns.answered(key, now)
            if done is not None:
                self.counters.retransmissions += 1
                return [self._again(s, now, inbound, arrival) for s in done]
        chosen: Rule | None = None  # a rule the dialog check already chose
        if req.to_tag is not None and req.method != "CANCEL":
            known = self._in_dialog(req, ctx, inbound, now, arrival)
            if type(known) is list:
                return known
            chosen = known if isinstance(known, Rule) else None
        plain = ruleset.plain.get(req.method)
        if plain is not None and not req.require and chosen is None:
            # RuleSet.plain: the rule select() would choose, known without the search, and one
            # that needs nothing below (no credentials, no owner worker, no fault memory).
            return self._answer(req, ctx, plain.reply, plain.name, now, arrival, plain,
                                inbound)

        owner = None  # (calls were handed over above: here, requests outside a call)
        if self.shard is not None and not handed:
            owner = self.owner(req)
            if owner == self.shard[0]:
                owner = None
        if req.method == "CANCEL":
            stopped = self._cancel(req, ctx, now, arrival)
            if stopped is not None:
                return stopped
        elif req.require:
            # RFC 3261 §8.2.2.3: a UAS answers unknown Require tags with 420 (not ACK/CANCEL).
            supported = ruleset.identity.supported
            if any(t not in supported for t in req.require):
                step = Step.make(420)
                return [self._emit(req, ctx, step, self._tag(req), names.REQUIRE_RULE, now,
                                   arrival)]

        rule = chosen or select(ruleset, req, source[0], self.seeded)
        lab = False  # fault injection (precomputed at load): the one branch off the hot path
        if rule is not None:
            if rule.auth and ruleset.auth is not None:
                reply, name = authorize(rule, ruleset.auth, req, source, now, self.seeded)
            else:
                reply, name = rule.reply, rule.name
            lab = rule.lab
        elif req.method == "CANCEL":
            # SPEC §5: the default never answers a CANCEL; with nothing to cancel, 481.
            reply, name = (Step.make(481),), names.NO_TXN_RULE
        else:
            reply, name, lab = ruleset.default, names.DEFAULT_RULE, ruleset.default_lab
        if owner is not None and (lab or (reply and reply[-1].after > 0)):
            # Delayed steps live with the dialog's owner (so its CANCEL finds them), and so
            # does fault injection's per-transaction state.
            return [Handoff(owner, inbound)]
        if lab:
            return self._lab(req, ctx, reply, name, now, arrival,
                             rule.drop_first if rule else 0)
        return self._answer(req, ctx, reply, name, now, arrival, rule, inbound)

    def _rule_of(self, req: Request, out: list[Effect]) -> str | None:
        """The rule that answered ``req`` (for the journal): the first response's or drop's,
        or, with only delayed steps, the pending transaction's."""
        for e in out:
            if isinstance(e, Send | Dropped) and e.exchange is not None:
                return e.exchange.rule
        entry = self.txns.pending.get(txn_key(req))
        return entry.rule if entry is not None else None

    # --- building ------------------------------------------------------------------
    def _tag(self, req: Request) -> str:
        return self.seeded.to_tag(req.call_id, req.from_tag)

    def _emit(
        self, req: Request, ctx: Context, step: Step, tag: str, rule: str, time: float,
        arrival: int, delay: float = 0.0, answers: Answers | None = None,
    ) -> Send:
        """One response, sent at ``time``, ``delay`` after the request arrived;
        ``answers``: the SDP of the steps that carry one (SPEC §8.1)."""
        made = answers.bodies.get(id(step)) if answers is not None else None
        if made is None:
            data = (build_step(req, ctx, step, tag) if step.fault is None
                    else build_fault(req, ctx, step, tag))
        else:
            body, cfg = made
            data = (build_step(req, ctx, step, tag, body) if step.fault is None
                    else build_fault(req, ctx, step, tag, body))
            assert answers is not None
            self.media.expect(req.call_id or "", answers.target, media_mode(cfg, body),
                              events_pt(body))
        self.counters.answered += 1
        if step.hangup is not None and 200 <= step.code < 300 and req.method == "INVITE":
            self._hangup(req, ctx, step.hangup, tag, time)
        # tuple.__new__ straight away: a NamedTuple's own __new__ is a Python function.
        exch = _new(Exchange, (time, ctx.source, req.method, req.uri, req.call_id, step.code,
                               step.reason, rule, delay, False, 0, arrival, step.fault,
                               ctx.transport))
        return _new(Send, (ctx.source, data, exch, ctx.local, ctx.conn))

    def _dropped(self, req: Request, ctx: Context, reason: str, rule: str, now: float,
                 arrival: int) -> Dropped:
        return Dropped(Exchange(now, ctx.source, req.method, req.uri, req.call_id, None,
                                reason, rule, 0.0, arrival=arrival))

    def _again(self, sent: Send, now: float, inbound: Inbound, arrival: int) -> Send:
        """A retransmitted request gets the same bytes again, sent to ITS source (SPEC §4)."""
        exch = sent.exchange
        self.counters.answered += 1  # every response sent counts, the same bytes again too
        if exch is not None:
            exch = exch._replace(time=now, source=inbound.source, retransmission=True,
                                 arrival=arrival)
        return Send(inbound.source, sent.data, exch, inbound.local, inbound.conn)

    def _answer(self, req: Request, ctx: Context, reply: Reply, rule: str, now: float,
                arrival: int, how: Rule | None = None, inbound: Inbound | None = None,
                ) -> list[Effect]:
        """Send ``reply``'s immediate steps, keep its delayed ones; ``how``: the rule that
        chose it (its media settings); ``inbound``: what brought ``req`` (a 2xx to INVITE
        is resent on UDP; its size decides what a pending entry keeps)."""
        udp = inbound is not None and inbound.transport == UDP
        size = len(inbound.data) if inbound is not None else 0
        if not reply:
            self.counters.dropped += 1
            return [self._dropped(req, ctx, "drop", rule, now, arrival)]
        tag = self.seeded.to_tag(req.call_id, req.from_tag)
        if req.method == "INVITE" and too_short(req, reply, self.ruleset.identity.supported):
            # RFC 4028 §8.1 (the method test first: every other answer skips the call)
            return [self._emit(req, ctx, names.SESSION_TOO_SHORT, tag, names.TIMER_RULE, now,
                               arrival)]
        if req.method == "INVITE" and "100rel" in self.ruleset.identity.supported:
            reply = reliable_reply(req, reply, tag)  # SPEC §8.4
        answers = None
        if req.method in OFFER_METHODS and not (how is not None and how.sdp_ignore):
            base = (how.media if how is not None else None) or self.ruleset.media
            talk = answers_for(req, ctx, reply, base, tag, self.media_ports)
            if isinstance(talk, Step):  # 400 Bad SDP or 488: instead of the rule's reply
                name = names.BAD_SDP_RULE if talk.code == 400 else names.NO_MEDIA_RULE
                return [self._emit(req, ctx, talk, tag, name, now, arrival)]
            answers = talk
        kept = None
        weight = 0
        if reply[-1].after > 0:  # delayed steps (they come last): decide before sending
            kept, weight = for_pending(req, size, max(len(s.body) for s in reply)
                                       + (len(answers.bodies) * 400 if answers else 0))
            if not self.txns.room(weight):
                return [self._refuse(req, ctx, tag, now, arrival)]
        out: list[Effect] = []
        i = 0
        while i < len(reply) and reply[i].after <= 0:
            out.append(self._emit(req, ctx, reply[i], tag, rule, now, arrival, 0.0, answers))
            i += 1
        last = out[-1] if out else None
        assert last is None or type(last) is Send
        if udp and i and reply[i - 1].reliable and kept is None and reply[i - 1].code < 200:
            kept, weight = for_pending(req, size, len(last.data) if last else 0)
            if not self.txns.room(weight):
                kept = None  # best effort, as the 2xx's resending
        if kept is not None:
            queue: list[Queued] = [(now + s.after, s, s.after) for s in reply[i:]]
            entry = Pending(kept, ctx, tag, rule, arrival, queue, last, size=weight,
                            answers=answers, resend=udp and req.method == "INVITE")
            if udp and i and reply[i - 1].reliable and reply[i - 1].code < 200:
                self._copies(entry, now, 0.0)
            self._hold(entry)
        elif (last is not None and udp and req.method == "INVITE"
              and 200 <= reply[-1].code < 300):
            self._resend(req, ctx, tag, rule, arrival, last, now, size)
        return out

    def _refuse(self, req: Request, ctx: Context, tag: str, now: float, arrival: int) -> Send:
        """The pending table is full: 503 with Retry-After, counted (SPEC §10). Not
        remembered: a retransmission is decided afresh (by then there may be room)."""
        self.counters.pending_overflow += 1
        self.txns.refused()
        return self._emit(req, ctx, names.OVERLOAD, tag, names.OVERLOAD_RULE, now, arrival)

    def _run(self, entry: Pending, now: float) -> list[Effect]:
        """Send what of ``entry``'s queue is due at ``now``."""
        out: list[Effect] = []
        queue = entry.queue
        while queue and queue[0][0] <= now:
            at, step, delay = queue.pop(0)
            if step is None:  # repeat: the final response again, the same bytes
                last = entry.last
                assert last is not None and last.exchange is not None
                entry.copies += 1
                self.counters.answered += 1
                if entry.prack:
                    self.counters.resent_1xx += 1
                elif entry.resend:
                    self.counters.resent += 1
                    k = entry.copies  # SPEC §4: the next copy, if any (one queued at a time)
                    if k < len(RESEND_2XX) and not queue:
                        step_t = RESEND_2XX[k] - RESEND_2XX[k - 1]
                        queue.append((at + step_t, None, delay + step_t))
                else:
                    self.counters.repeats += 1
                sent = last._replace(exchange=last.exchange._replace(time=at,
                                                                     repeat=entry.copies))
            else:
                sent = self._emit(entry.req, entry.ctx, step, entry.tag, entry.rule, at,
                                  entry.arrival, delay, entry.answers)
                entry.last = sent
                entry.copies = 0  # copies (and Exchange.repeat) count per response
                entry.final = step.final
                if entry.prack and step.final:
                    self.txns.forget_prack(entry)  # a PRACK now is too late to matter
                if step.reliable and entry.resend and not step.final:
                    self._copies(entry, at, delay)
                if entry.resend and step.final and not queue:
                    if 200 <= step.code < 300:  # SPEC §4: resent until the ACK
                        queue.append((at + RESEND_2XX[0], None, delay + RESEND_2XX[0]))
                        self.txns.await_ack(entry)
                    else:
                        entry.resend = False
            out.append(sent)
        return out

    def _hold(self, entry: Pending) -> None:
        """Keep ``entry`` until its queue is sent (bounded: over the bound, it is not)."""
        if not self.txns.hold(entry):
            self.counters.pending_overflow += 1  # bounded: later steps are not sent

    def _cancel(self, req: Request, ctx: Context, now: float, arrival: int
                ) -> list[Effect] | None:
        """RFC 3261 §9.2: a CANCEL whose INVITE still has steps pending stops them."""
        invite_key = txn_key(req, "INVITE")
        entry = self.txns.pending.get(invite_key)
        if entry is None or entry.final:  # only repeats left: the INVITE is answered
            return None
        self.txns.take(invite_key)
        ok = self._emit(req, ctx, Step.make(200), self._tag(req), names.CANCEL_RULE, now, arrival)
        icx = entry.ctx._replace(now=now)
        terminated = self._emit(entry.req, icx, Step.make(487), entry.tag, names.CANCEL_RULE, now,
                                entry.arrival)
        self.txns.remember(txn_key(req), [ok], now)
        self.txns.remember(invite_key, [terminated], now)
        return [ok, terminated]
