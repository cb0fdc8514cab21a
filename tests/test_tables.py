"""Tables bounded in bytes as well as entries, and a full pending table refusing visibly
(SPEC §10; docs/limits.md "Tables: entries and bytes"), on a fake clock."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Sequence

import pytest
from sip import Recorded, feed, read_response, request, sends

from responder.core import keep
from responder.core.answer import build_fault, build_step
from responder.core.effects import Effect
from responder.core.engine import Engine
from responder.core.journal import Journal
from responder.core.limits import (
    COMPLETED_BYTES,
    JOURNAL_BYTES,
    LIMITS,
    PENDING_BYTES,
    PENDING_LIMIT,
    RETRY_AFTER,
    Expiring,
    Limits,
)
from responder.core.names import OVERLOAD_RULE
from responder.rules.loader import build_ruleset
from responder.rules.model import Step
from responder.sip.builder import Context
from responder.sip.parser import parse
from responder.sip.seeded import Seeded

A = ("192.0.2.10", 5062)
LOCAL = ("127.0.0.1", 5060)
BIG = 60_000  # bytes of padding: a request near the largest datagram


def engine(*specs: str, limits: Limits = LIMITS) -> Engine:
    return Engine(build_ruleset(None, list(specs)), Seeded(1), limits=limits)


def statuses(outs: Sequence[Effect]) -> list[int]:
    return [read_response(o.data).status for o in sends(outs)]


def big(i: int, method: str = "INVITE", lines: int = 60) -> bytes:
    """A distinct request of about BIG + 300 bytes: ``lines`` long X-Pad header lines
    (within the parser's caps: 256 lines, 128 names, 128 Via values)."""
    width = BIG // lines
    pad = "".join("X-Pad: " + "p" * (width - 9) + "\r\n" for _ in range(lines))
    return request(method, call_id=f"big-{i}", branch=f"z9hG4bK-big-{i}", extra=pad)


def big_vias(i: int, lines: int = 60) -> bytes:
    """A distinct INVITE of about BIG + 300 bytes whose padding its responses copy: Vias."""
    width = BIG // lines
    pad = "".join(f"Via: SIP/2.0/UDP 10.0.0.{n}:5060;branch=z9hG4bK-{n};x="
                  + "v" * (width - 50) + "\r\n" for n in range(lines))
    return request("INVITE", call_id=f"big-{i}", branch=f"z9hG4bK-big-{i}", extra=pad)


# --------------------------------------------------------------------------- item 7: 503


def test_a_full_pending_table_answers_503_with_retry_after_instead_of_its_steps() -> None:
    e = engine("INVITE->180,486/30s", limits=Limits(pending=2))
    for i in range(2):
        assert statuses(feed(e, request("INVITE", call_id=f"c{i}"), A, 0.0, LOCAL)) == [180]
    third = request("INVITE", call_id="c2", extra="Timestamp: 5\r\n")
    out = feed(e, third, A, 0.0, LOCAL)
    assert statuses(out) == [503]  # no 180 first: decided before anything is sent
    resp = read_response(sends(out)[0].data)
    assert resp.reason == "Service Unavailable"
    assert resp.one("Retry-After") == str(RETRY_AFTER) == "5"
    assert resp.one("Call-ID") == "c2" and resp.one("CSeq") == "1 INVITE"
    assert ";tag=" in resp.one("To")  # a final response: it carries our tag
    exchange = sends(out)[0].exchange
    assert sends(out)[0].dest == A and exchange is not None and exchange.rule == OVERLOAD_RULE
    assert e.counters.pending_overflow == 1 and e.tables()["pending"].evicted == 1
    assert e.pending == 2 and e.next_deadline() == 30.0
    # Not remembered: its retransmission, once there is room, is answered as usual.
    assert len(e.due(30.0)) == 2 and e.pending == 0
    assert statuses(feed(e, third, A, 31.0, LOCAL)) == [180] and e.pending == 1


def test_a_full_pending_table_does_not_touch_requests_without_delayed_steps() -> None:
    e = engine("INVITE->180,486/30s", "OPTIONS->200", "BYE->200", limits=Limits(pending=1))
    feed(e, request("INVITE", call_id="c0"), A, 0.0)
    assert statuses(feed(e, request("OPTIONS"), A, 0.0)) == [200]
    assert statuses(feed(e, request("BYE"), A, 0.0)) == [200]
    # a retransmission of the held INVITE is not a new entry: the 180 again
    assert statuses(feed(e, request("INVITE", call_id="c0"), A, 1.0)) == [180]
    # a CANCEL of it still works (it frees the entry)
    assert statuses(feed(e, request("CANCEL", call_id="c0"), A, 2.0)) == [200, 487]
    assert e.counters.pending_overflow == 0
    assert statuses(feed(e, request("INVITE", call_id="c1"), A, 3.0)) == [180]


def test_the_fault_path_refuses_the_same_way() -> None:
    e = engine("INVITE->100,486/2s;jitter=1s", limits=Limits(pending=1))
    assert statuses(feed(e, request("INVITE", call_id="c0"), A, 0.0)) == [100]
    assert statuses(feed(e, request("INVITE", call_id="c1"), A, 0.0)) == [503]
    assert e.counters.pending_overflow == 1


def test_a_pending_table_full_in_bytes_refuses_with_503_and_stays_under_its_budget() -> None:
    probe = engine("INVITE->180,486/30s")
    feed(probe, big_vias(0), A, 0.0)
    one = probe.tables()["pending"].bytes
    assert 60_000 < one < 3 * 60_000  # it counts what the entry keeps
    budget = 5 * one + one // 2
    e = engine("INVITE->180,486/30s", limits=Limits(pending_bytes=budget))
    got = [statuses(feed(e, big_vias(i), A, 0.0)) for i in range(10)]
    assert got == [[180]] * 5 + [[503]] * 5
    stat = e.tables()["pending"]
    assert stat.size == 5 and stat.bytes <= stat.byte_limit == budget
    assert stat.evicted == 5 and e.counters.pending_overflow == 5
    # small requests still fit where a big one does not
    assert statuses(feed(e, request("INVITE", call_id="small"), A, 0.0)) == [180]
    e.due(30.0)
    assert e.tables()["pending"].bytes == 0 and e.pending == 0


# --------------------------------------------------------------------------- item 2: bytes


def test_a_pending_entry_keeps_only_what_its_responses_copy() -> None:
    e = engine("INVITE->180,486/30s")
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20):
            feed(e, big(i, lines=240), A, 0.0)
        gc.collect()
        per_entry = (tracemalloc.get_traced_memory()[0] - before) / 20
    finally:
        tracemalloc.stop()
    assert e.pending == 20
    # The whole parsed request (240 header lines, 60 KB) was over 100 KB an entry.
    assert per_entry < 12_000, per_entry
    entry = next(iter(e.txns.pending.values()))
    assert entry.req.header_lines == [] and entry.req.body == b""
    assert per_entry <= entry.size  # the weight does not under-count


def test_the_default_budgets_hold_the_default_counts_of_ordinary_requests() -> None:
    """The byte bound only bites on large requests: 100,000 ordinary entries fit."""
    req = parse(request("INVITE", extra="Record-Route: <sip:p1.example;lr>\r\n"))
    size = keep.answer_weight(keep.for_answers(req), 0)
    assert size * PENDING_LIMIT <= PENDING_BYTES
    j = Recorded(engine(), 10)
    j.feed(request("INVITE"), A, 0.0)
    assert j.journal.bytes * 100_000 <= JOURNAL_BYTES  # --journal-size's largest
    assert COMPLETED_BYTES >= 100_000 * 1_500


CASES = {
    "plain": request("INVITE"),
    "rport, several Vias, Record-Route, Timestamp": request(
        "INVITE", rport=True, via_host="10.0.0.1:5060",
        extra=("Via: SIP/2.0/UDP p2.example;branch=z9hG4bK-2\r\n"
               "v: SIP/2.0/TCP p3.example;branch=z9hG4bK-3, SIP/2.0/UDP p4;branch=z9hG4bK-4\r\n"
               "Record-Route: <sip:p1.example;lr>\r\nRecord-Route: <sip:p2.example;lr>\r\n"
               "Timestamp: 54.2 0.5\r\nSubject: x\r\n")),
    "REGISTER bindings": request(
        "REGISTER", extra=("Contact: <sip:a@192.0.2.1>, <sip:b@192.0.2.2>;expires=60\r\n"
                           "Expires: 120\r\n")),
    "Require": request("INVITE", extra="Require: foo, 100rel\r\n"),
    "tagged To": request("INVITE", to="<sip:1000@lab.example>;tag=abc"),
    "non-ASCII": request("INVITE", extra="X-Name: caf\u00e9\r\n",
                         to="\"Caf\u00e9\" <sip:1000@lab.example>"),
}
STEPS = [Step.make(c) for c in (100, 180, 183, 200, 301, 401, 407, 405, 420, 423, 486, 487,
                                503)]


@pytest.mark.parametrize("name", CASES)
def test_responses_built_from_the_kept_copy_are_byte_identical(name: str) -> None:
    ruleset = build_ruleset(None, [])
    full = parse(CASES[name])
    kept = keep.for_answers(full)
    ctx = Context(ruleset.identity, Seeded(3), 10.0, A, LOCAL, ruleset.auth)
    for step in [*STEPS, Step.make(200, headers=(("X-A", "b"),), body=b"v=0\r\n",
                                   content_type="application/sdp")]:
        for tag in ("tag1", None):
            assert build_step(kept, ctx, step, tag) == build_step(full, ctx, step, tag)
    for fault in ("garbage", "no-to-tag", "no-via", "truncated", "wrong-content-length"):
        step = Step.make(486, fault=fault)
        assert build_fault(kept, ctx, step, "t") == build_fault(full, ctx, step, "t")


def test_delayed_steps_send_the_bytes_immediate_steps_send() -> None:
    data = CASES["rport, several Vias, Record-Route, Timestamp"]
    now = engine("INVITE->100,180,183,200")
    later = engine("INVITE->100/1s,180/2s,183/3s,200/4s")
    at_once = [o.data for o in sends(feed(now, data, A, 0.0, LOCAL))]
    assert feed(later, data, A, 0.0, LOCAL) == []
    # sent later, from what the pending entry kept (the Context's time is not in the bytes)
    delayed = [o.data for t in (1.0, 2.0, 3.0, 4.0) for o in sends(later.due(t))]
    assert delayed == at_once


def test_completed_is_bounded_in_bytes_oldest_evicted() -> None:
    probe = engine("INVITE->180,486/1s")
    feed(probe, big_vias(0), A, 0.0)
    probe.due(1.0)
    one = probe.tables()["completed"].bytes
    assert 60_000 < one < 2 * 60_000  # the 486 copies the Vias
    e = engine("INVITE->180,486/1s", limits=Limits(completed_bytes=3 * one + one // 2))
    for i in range(6):
        feed(e, big_vias(i), A, 0.0)
    e.due(1.0)
    stat = e.tables()["completed"]
    assert (stat.size, stat.evicted) == (3, 3) and stat.bytes <= stat.byte_limit
    # the newest are remembered: a retransmission gets the 486 again; the oldest starts over
    assert statuses(feed(e, big_vias(5), A, 2.0)) == [486]
    assert statuses(feed(e, big_vias(0), A, 2.0)) == [180]


def test_the_journal_keeps_a_bounded_copy_of_a_large_request() -> None:
    r = Recorded(engine(), 10)
    data = big(1, "OPTIONS", lines=240)[:-4].replace(
        b"sip:1000@lab.example SIP", b"sip:" + b"u" * 2000 + b"@lab.example SIP", 1) + b"\r\n\r\n"
    assert statuses(r.feed(data, A, 0.0)) == [200]
    entry = next(iter(r.journal))
    assert len(entry.data) == keep.JOURNAL_DATA and entry.statuses == [200]
    req = entry.request
    assert req is not None and req.method == "OPTIONS" and req.call_id == "big-1"
    assert len(req.uri) == keep.JOURNAL_VALUE
    assert len(req.header_lines) == keep.JOURNAL_LINES
    assert all(len(v) <= keep.JOURNAL_VALUE for _, _, v in req.header_lines)
    assert all(len(resp) <= keep.JOURNAL_DATA for resp in entry.responses)
    assert entry.weight < 120_000 and r.journal.bytes == entry.weight
    # a small request is kept as parsed, whole
    r.feed(request("OPTIONS", call_id="small"), A, 1.0)
    small = list(r.journal)[-1]
    assert small.data == request("OPTIONS", call_id="small")
    assert small.request is not None and small.request.header("max-forwards") == "70"


def test_the_journal_is_bounded_in_bytes_oldest_evicted() -> None:
    r = Recorded(engine(), 100)
    r.feed(big(0, "OPTIONS", lines=200), A, 0.0)
    one = r.journal.bytes
    r.journal = Journal(100, Limits(journal_bytes=4 * one + one // 2))
    for i in range(10):
        r.feed(big(i, "OPTIONS", lines=200), A, float(i))
    stat = r.journal.stat()
    assert stat.size == 4 and stat.evicted == 6
    assert stat.bytes <= stat.byte_limit == 4 * one + one // 2
    assert [e.request.call_id for e in r.journal if e.request] == [
        "big-6", "big-7", "big-8", "big-9"]
    r.journal.clear()
    assert r.journal.stat().bytes == 0


def test_expiring_weighs_its_entries() -> None:
    t: Expiring[str, bytes] = Expiring(limit=10, ttl=5.0, budget=10, weigh=len)
    t.put("a", b"xxxx", 0.0)
    t.put("b", b"yyyy", 1.0)
    assert (t.bytes, len(t)) == (8, 2)
    t.put("c", b"zzzz", 2.0)  # 12 > 10: the oldest goes
    assert (t.bytes, len(t), t.evicted, t.get("a", 2.0)) == (8, 2, 1, None)
    t.put("b", b"yy", 3.0)  # replaced: its old weight is taken back
    assert t.bytes == 6
    assert t.get("c", 7.0) is None and t.bytes == 2  # expired: its weight goes too
    t.put("huge", b"h" * 50, 8.0)  # a single entry over the budget stays alone
    assert len(t) == 1 and t.stat().bytes == 50 and t.stat().byte_limit == 10
