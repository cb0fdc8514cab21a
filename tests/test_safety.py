"""Lab safety (docs/faults.md): the allow list, the per-source rate limit, and the bound of
every table the engine keeps, on a fake clock."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from sip import Recorded, feed, read_response, request, sends

from responder.core import limits as safety
from responder.core.counters import METHODS_LIMIT
from responder.core.effects import Dropped, Effect
from responder.core.engine import Engine
from responder.core.journal import Journal
from responder.core.limits import (
    LIMITS,
    NOT_ALLOWED,
    RATE_LIMITED,
    Expiring,
    IPNetwork,
    Limits,
    RateLimiter,
    parse_network,
    parse_rate,
    tally,
)
from responder.rules.loader import build_ruleset
from responder.sip import errors
from responder.sip.seeded import Seeded

A = ("192.0.2.10", 5062)
B = ("198.51.100.7", 5060)
DOC = Path(__file__).resolve().parents[1] / "docs" / "faults.md"


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


def engine(*specs: str, allow: Iterable[IPNetwork] | None = None,
           rate_limit: float | None = None, limits: Limits = LIMITS) -> Engine:
    return Engine(build_ruleset(None, list(specs)), Seeded(1), allow=allow,
                  rate_limit=rate_limit, limits=limits)


def statuses(outs: Sequence[Effect]) -> list[int]:
    return [read_response(o.data).status for o in sends(outs)]


def options(n: int = 1) -> bytes:
    return request("OPTIONS", call_id=f"o-{n}", branch=f"z9hG4bK-o{n}")


# --------------------------------------------------------------------------- allow list


def test_allow_list_answers_inside_and_discards_outside() -> None:
    e = engine(allow=[net("192.0.2.0/24"), net("2001:db8::/32")])
    assert statuses(feed(e, options(), A, 0.0)) == [200]
    assert statuses(feed(e, options(), ("2001:db8::5", 5060), 0.0)) == [200]
    assert feed(e, options(), B, 0.0) == []
    assert feed(e, b"\x00 not even SIP", B, 0.0) == []  # not parsed: counted as not-allowed
    assert feed(e, options(), ("2001:db9::5", 5060), 0.0) == []
    assert e.counters.discarded == {NOT_ALLOWED: 3}
    assert e.counters.received == 5 and e.counters.answered == 2


def test_allow_list_checks_ipv4_mapped_sources_as_ipv4_and_ignores_scope() -> None:
    e = engine(allow=[net("192.0.2.0/24"), net("fe80::/10")])
    assert statuses(feed(e, options(), ("::ffff:192.0.2.9", 5060), 0.0)) == [200]
    assert statuses(feed(e, options(), ("fe80::1%eth0", 5060), 0.0)) == [200]
    assert feed(e, options(), ("::ffff:198.51.100.1", 5060), 0.0) == []


def test_empty_allow_list_is_refused() -> None:
    with pytest.raises(ValueError, match="empty allow list"):
        engine(allow=[])


def test_allow_list_journal_and_handed_requests() -> None:
    e = engine(allow=[net("192.0.2.0/24")])
    r = Recorded(e, 4)
    r.feed(options(), B, 0.0)
    (entry,) = r.journal
    assert entry.discard == NOT_ALLOWED and entry.request is None
    # a request another worker read (and checked) is not checked again
    assert statuses(feed(e, options(), B, 0.0, handed=True)) == [200]


def test_allow_verdict_cache_is_bounded() -> None:
    e = engine(allow=[net("10.0.0.0/8")], limits=Limits(allow_cache=8))
    gate = e._gate
    assert gate is not None and gate.allow is not None
    for i in range(50):
        feed(e, options(i), (f"10.0.{i}.1", 5060), 0.0)
        assert len(gate.allow._verdicts) <= 8
    assert e.counters.answered == 50


# --------------------------------------------------------------------------- rate limit


def test_rate_limit_burst_then_refill() -> None:
    e = engine(rate_limit=10.0)
    outs = [feed(e, options(i), A, 0.0) for i in range(15)]
    assert [bool(o) for o in outs] == [True] * 10 + [False] * 5
    assert e.counters.discarded == {RATE_LIMITED: 5}
    assert feed(e, options(99), A, 0.05) == []  # half a token
    assert statuses(feed(e, options(100), A, 0.1)) == [200]  # one token after 0.1 s
    assert statuses(feed(e, options(101), A, 10.0)) == [200]
    # a full bucket again after a pause, never more than the burst
    assert sum(bool(feed(e, options(i), A, 100.0)) for i in range(30)) == 10


def test_a_flood_from_one_source_does_not_starve_another() -> None:
    e = engine(rate_limit=20.0)
    answered_b = 0
    for tick in range(100):  # one second of fake time, in 10 ms ticks
        now = tick * 0.01
        for i in range(50):  # A: 5,000 datagrams a second
            feed(e, options(tick * 100 + i), A, now)
        if tick % 10 == 0:  # B: 10 requests a second, under its limit
            answered_b += len(statuses(feed(e, options(10_000 + tick), B, now)))
    assert answered_b == 10
    assert e.counters.discarded[RATE_LIMITED] >= 4_900
    assert e.counters.answered == answered_b + 20 + 19  # A: its burst, then 20/s


def test_rate_limit_counts_by_address_not_port() -> None:
    e = engine(rate_limit=2.0)
    outs = [feed(e, options(port), ("192.0.2.10", 5000 + port), 0.0) for port in range(5)]
    assert [bool(o) for o in outs] == [True, True, False, False, False]


def test_rate_below_one_per_second_still_lets_one_through() -> None:
    limiter = RateLimiter(0.5, 16)
    assert [limiter.take("h", 0.0), limiter.take("h", 1.0), limiter.take("h", 2.0)] == [
        True, False, True]


@pytest.mark.parametrize("rate", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_rates_are_refused(rate: float) -> None:
    with pytest.raises(ValueError):
        engine(rate_limit=rate)


def test_rate_buckets_are_bounded_least_recently_seen_evicted() -> None:
    e = engine(rate_limit=1.0, limits=Limits(rate_sources=4))
    for i in range(10):
        assert feed(e, options(i), (f"192.0.2.{i}", 5060), 0.0)
    stat = e.tables()["rate-sources"]
    assert (stat.size, stat.limit, stat.evicted) == (4, 4, 6)
    # 192.0.2.9 is still known (its bucket is empty); 192.0.2.0 was evicted and starts full
    assert feed(e, options(20), ("192.0.2.9", 5060), 0.0) == []
    assert feed(e, options(21), ("192.0.2.0", 5060), 0.0) != []


def test_allow_list_comes_before_the_rate_limit() -> None:
    e = engine(allow=[net("192.0.2.0/24")], rate_limit=1.0)
    for i in range(5):
        feed(e, options(i), B, 0.0)
    assert e.counters.discarded == {NOT_ALLOWED: 5}
    assert e.tables()["rate-sources"].size == 0


def test_forget_clears_the_buckets() -> None:
    e = engine(rate_limit=1.0)
    assert feed(e, options(1), A, 0.0) and not feed(e, options(2), A, 0.0)
    e.forget()
    assert feed(e, options(3), A, 0.0)


# --------------------------------------------------------------------------- bounds


def test_pending_is_bounded_new_delayed_steps_refused() -> None:
    e = engine("INVITE->180,486/2s", limits=Limits(pending=3))
    got = [statuses(feed(e, request("INVITE", call_id=f"c{i}"), A, 0.0)) for i in range(5)]
    assert got == [[180]] * 3 + [[503]] * 2  # refused visibly (SPEC §10), see test_tables.py
    assert e.pending == 3 and e.counters.pending_overflow == 2
    assert e.tables()["pending"].evicted == 2
    assert len(e.due(2.0)) == 3


def test_repeats_count_against_the_pending_bound() -> None:
    e = engine("INVITE->486;repeat=3", limits=Limits(pending=2))
    got = [statuses(feed(e, request("INVITE", call_id=f"c{i}"), A, 0.0)) for i in range(4)]
    assert got == [[486]] * 2 + [[503]] * 2
    assert e.pending == 2 and e.counters.pending_overflow == 2
    assert len(e.due(5.0)) == 4  # 2 transactions x 2 copies


def test_completed_is_bounded_oldest_evicted() -> None:
    e = engine("INVITE->486/1s", limits=Limits(completed=3))
    for i in range(5):
        feed(e, request("INVITE", call_id=f"c{i}"), A, 0.0)
    e.due(1.0)
    stat = e.tables()["completed"]
    assert (stat.size, stat.limit, stat.evicted) == (3, 3, 2)
    # c0 was forgotten: its retransmission starts over (nothing yet, the 486 is delayed)
    assert feed(e, request("INVITE", call_id="c0"), A, 2.0) == []
    assert statuses(feed(e, request("INVITE", call_id="c4"), A, 2.0)) == [486]


def test_drop_first_memory_is_bounded_oldest_starts_over() -> None:
    e = engine("INVITE->486;drop_first=1", limits=Limits(drop_first=3))
    for i in range(5):
        assert type(feed(e, request("INVITE", call_id=f"c{i}"), A, 0.0)[0]) is Dropped
    stat = e.tables()["drop-first"]
    assert (stat.size, stat.evicted) == (3, 2)
    assert statuses(feed(e, request("INVITE", call_id="c4"), A, 0.5)) == [486]
    assert type(feed(e, request("INVITE", call_id="c0"), A, 0.5)[0]) is Dropped  # forgotten


def test_the_timer_heap_is_compacted_under_an_invite_cancel_flood() -> None:
    limits = Limits(pending=4)
    e = engine("INVITE->180,486/3600s", limits=limits)
    for i in range(500):
        feed(e, request("INVITE", call_id=f"c{i}"), A, 0.0)
        feed(e, request("CANCEL", call_id=f"c{i}"), A, 0.0)
        assert e.tables()["timers"].size <= limits.timers
    assert e.pending == 0 and e.next_deadline() is None


def test_journal_size_is_bounded() -> None:
    with pytest.raises(ValueError, match="over the bound"):
        Journal(11, limits=Limits(journal=10))
    r = Recorded(engine(), 3)
    for i in range(5):
        r.feed(options(i), A, 0.0)
    stat = r.journal.stat()
    assert (stat.size, stat.limit, stat.evicted) == (3, 3, 2)
    assert [entry.request.call_id for entry in r.journal if entry.request] == [
        "o-2", "o-3", "o-4"]


def test_tables_reports_every_table() -> None:
    assert set(engine().tables()) == {"pending", "timers", "completed", "drop-first", "hangups"}
    assert "rate-sources" in engine(rate_limit=5.0).tables()


def test_the_doc_lists_the_bounds_as_they_are() -> None:
    text = DOC.read_text(encoding="utf-8")
    rows = re.findall(r"^\| [^|]+ \| `([A-Z_]+|counters\.[A-Z_]+)` \| ([0-9,]+)( s| MiB)? \|",
                      text, re.M)
    found = {name: int(value.replace(",", "")) * (safety.MIB if unit == " MiB" else 1)
             for name, value, unit in rows}
    assert found == {
        "JOURNAL_LIMIT": safety.JOURNAL_LIMIT,
        "JOURNAL_BYTES": safety.JOURNAL_BYTES,
        "PENDING_LIMIT": safety.PENDING_LIMIT,
        "PENDING_BYTES": safety.PENDING_BYTES,
        "RETRY_AFTER": safety.RETRY_AFTER,
        "COMPLETED_LIMIT": safety.COMPLETED_LIMIT,
        "COMPLETED_BYTES": safety.COMPLETED_BYTES,
        "DROP_FIRST_LIMIT": safety.DROP_FIRST_LIMIT,
        "RATE_SOURCES_LIMIT": safety.RATE_SOURCES_LIMIT,
        "ALLOW_CACHE_LIMIT": safety.ALLOW_CACHE_LIMIT,
        "TIMER_B": safety.TIMER_B,
        "counters.METHODS_LIMIT": METHODS_LIMIT,
    }
    defaults = Limits()
    assert (defaults.pending, defaults.completed, defaults.remember) == (
        safety.PENDING_LIMIT, safety.COMPLETED_LIMIT, safety.TIMER_B)
    assert (defaults.pending_bytes, defaults.completed_bytes, defaults.journal_bytes) == (
        safety.PENDING_BYTES, safety.COMPLETED_BYTES, safety.JOURNAL_BYTES)


# --------------------------------------------------------------------------- pieces


def test_expiring_table() -> None:
    t: Expiring[str, int] = Expiring(limit=2, ttl=10.0)
    t.put("a", 1, 0.0)
    t.put("b", 2, 5.0)
    assert t.get("a", 9.9) == 1 and t.get("a", 10.0) is None and len(t) == 1
    t.put("c", 3, 6.0)
    t.put("d", 4, 7.0)
    assert len(t) == 2 and t.evicted == 1 and t.get("b", 7.0) is None
    t.update("c", 30)
    assert t.get("c", 15.9) == 30 and t.get("c", 16.0) is None  # update keeps the expiry


def test_tally_counts_up_to_one_past_and_stays() -> None:
    t: Expiring[str, int] = Expiring(limit=10, ttl=32.0)
    assert [tally(t, "k", float(i), 2) for i in range(5)] == [1, 2, 3, 3, 3]
    assert tally(t, "k", 32.0, 2) == 1  # expired: counted afresh


@pytest.mark.parametrize(("text", "rate"), [("100/s", 100.0), ("2.5/s", 2.5), ("7", 7.0),
                                            (" 10 / s ", 10.0)])
def test_parse_rate(text: str, rate: float) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["", "0/s", "fast", "-1/s", "10/m", "1e3/s"])
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="expected a rate"):
        parse_rate(text)


def test_parse_network() -> None:
    assert parse_network("192.0.2.1/24") == net("192.0.2.0/24")
    assert parse_network("2001:db8::1") == net("2001:db8::1/128")
    with pytest.raises(ValueError, match="expected a CIDR"):
        parse_network("lab-net")


def test_gate_reasons_are_not_parser_reasons() -> None:
    assert {NOT_ALLOWED, RATE_LIMITED}.isdisjoint(errors.REASONS)
