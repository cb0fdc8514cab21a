"""The sans-I/O engine, driven with a fake clock: no sockets, no sleeps."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sip import Recorded, all_sends, answer, feed, read_response, request, sends

from responder.core import names
from responder.core.answer import build_step
from responder.core.effects import Arrived, Dropped, Effect, Handoff, Inbound, Send
from responder.core.engine import Engine
from responder.rules.loader import build_ruleset, load_text
from responder.rules.model import RuleError, Step
from responder.sip import errors
from responder.sip.builder import Context
from responder.sip.message import Request
from responder.sip.parser import parse
from responder.sip.seeded import Seeded

SRC = ("127.0.0.1", 40000)
LOCAL = ("127.0.0.1", 5060)


def engine(*specs: str, rules_text: str | None = None, seed: int = 7) -> Engine:
    if rules_text is not None:
        ruleset = load_text(rules_text, "t.yaml")
    else:
        ruleset = build_ruleset(None, list(specs))
    return Engine(ruleset, Seeded(seed))


def statuses(outs: Sequence[Effect]) -> list[int]:
    return [read_response(o.data).status for o in sends(outs)]


def test_default_rules_answer_invite_with_100_180_200_at_once() -> None:
    e = engine()
    outs = answer(e, request("INVITE"), SRC, 0.0, LOCAL)
    assert statuses(outs) == [100, 180, 200]
    assert all(o.dest == SRC for o in outs)
    # The 200 is sent again until its ACK (SPEC §4): one pending entry, due at T1.
    assert e.pending == 1 and e.next_deadline() == 0.5


def test_send_and_exchange_are_whole_named_tuples() -> None:
    """The hot path builds them with tuple.__new__: every field must be there, in order."""
    from responder.core.effects import Exchange

    out = answer(engine(), request("OPTIONS"), SRC, 3.0, LOCAL)[0]
    assert type(out) is Send and len(out) == len(Send._fields)
    assert out == Send(*out) and (out.dest, out.local, out.conn) == (SRC, LOCAL, None)
    ex = out.exchange
    assert type(ex) is Exchange and len(ex) == len(Exchange._fields)
    assert ex == Exchange(*ex)
    assert (ex.time, ex.method, ex.status, ex.delay, ex.retransmission, ex.repeat) == (
        3.0, "OPTIONS", 200, 0.0, False, 0)


def test_one_line_rule_is_tried_before_the_defaults() -> None:
    e = engine("INVITE->486")
    assert statuses(feed(e, request("INVITE"), SRC, 0.0)) == [486]
    assert statuses(feed(e, request("OPTIONS"), SRC, 0.0)) == [200]
    assert statuses(feed(e, request("FOO"), SRC, 0.0)) == [501]


def test_ack_is_never_answered() -> None:
    e = engine("*->503")
    assert feed(e, request("ACK"), SRC, 0.0) == []
    assert e.counters.acks == 1


def test_star_does_not_answer_cancel_and_unmatched_cancel_gets_481() -> None:
    e = engine("*->503")
    assert statuses(feed(e, request("CANCEL"), SRC, 0.0)) == [481]
    e = engine("CANCEL->200")
    assert statuses(feed(e, request("CANCEL"), SRC, 0.0)) == [200]


def test_delayed_steps_fire_on_the_fake_clock() -> None:
    e = engine("INVITE->180,486/2s")
    outs = answer(e, request("INVITE"), SRC, 10.0, LOCAL)
    assert statuses(outs) == [180]
    assert e.pending == 1
    assert e.next_deadline() == pytest.approx(12.0)
    assert e.due(11.999) == []
    later = all_sends(e.due(12.0))
    assert statuses(later) == [486]
    assert later[0].local == LOCAL
    tag180 = read_response(outs[0].data).one("To")
    assert read_response(later[0].data).one("To") == tag180
    assert e.pending == 0 and e.next_deadline() is None


def test_cancel_of_pending_invite_gives_200_and_487_and_drops_the_rest() -> None:
    e = engine("INVITE->180,486/2s")
    ringing = answer(e, request("INVITE"), SRC, 0.0)
    outs = answer(e, request("CANCEL"), SRC, 0.5)
    ok, terminated = (read_response(o.data) for o in outs)
    assert (ok.status, terminated.status) == (200, 487)
    assert ok.one("CSeq") == "1 CANCEL" and terminated.one("CSeq") == "1 INVITE"
    assert terminated.reason == "Request Terminated"
    assert terminated.one("To") == read_response(ringing[0].data).one("To")
    assert e.due(5.0) == [] and e.pending == 0
    # A retransmitted CANCEL gets the same 200, a retransmitted INVITE the 487.
    assert [o.data for o in answer(e, request("CANCEL"), SRC, 0.7)] == [outs[0].data]
    assert [o.data for o in answer(e, request("INVITE"), SRC, 0.8)] == [outs[1].data]


def test_retransmission_while_pending_gets_the_last_response_again() -> None:
    e = engine("INVITE->180,486/2s")
    first = answer(e, request("INVITE"), SRC, 0.0)
    again = answer(e, request("INVITE"), SRC, 0.5)
    assert [o.data for o in again] == [first[0].data]
    assert again[0].exchange is not None and again[0].exchange.retransmission
    assert e.pending == 1  # not scheduled twice
    final = all_sends(e.due(2.0))
    assert statuses(final) == [486]
    # after the final response, a retransmission gets that final response
    assert [o.data for o in answer(e, request("INVITE"), SRC, 3.0)] == [final[0].data]
    # ... until the transaction is forgotten (Timer B, 32 s), then it starts over
    assert statuses(feed(e, request("INVITE"), SRC, 40.0)) == [180]


def test_first_step_delayed_retransmission_gets_nothing_yet() -> None:
    e = engine("INVITE->486/1s")
    assert feed(e, request("INVITE"), SRC, 0.0) == []
    assert feed(e, request("INVITE"), SRC, 0.2) == []
    assert statuses(e.due(1.0)) == [486]


def test_drop_sends_nothing_and_is_logged() -> None:
    e = engine("OPTIONS->drop")
    outs = feed(e, request("OPTIONS"), SRC, 0.0)
    assert len(outs) == 1 and type(outs[0]) is Dropped
    assert outs[0].exchange.status is None and outs[0].exchange.rule == "OPTIONS->drop"
    assert e.counters.dropped == 1


def test_probability_is_seeded_and_retransmission_safe() -> None:
    decisions = []
    for seed in (1, 2):
        e = engine("INVITE->503;p=0.5", seed=seed)
        run = []
        for i in range(200):
            data = request("INVITE", call_id=f"c{i}", branch=f"z9hG4bK{i}")
            first = answer(e, data, SRC, 0.0)
            again = answer(e, data, SRC, 0.1)  # the final response again, the same bytes
            assert [o.data for o in again] == [first[-1].data]
            run.append(statuses(first)[-1])
        assert 60 < run.count(503) < 140
        decisions.append(run)
    assert decisions[0] != decisions[1]
    e1, e2 = engine("INVITE->503;p=0.5", seed=1), engine("INVITE->503;p=0.5", seed=1)
    data = request("INVITE", call_id="same")
    assert [o.data for o in answer(e1, data, SRC, 0.0)] == [o.data for o in answer(e2,
        data, SRC, 5.0)]


def test_problem_requests_get_their_status() -> None:
    e = engine()
    bad = request("OPTIONS", cseq_method="INVITE")
    resp = read_response(answer(e, bad, SRC, 0.0)[0].data)
    assert (resp.status, resp.reason) == (400, "CSeq Method Mismatch")
    assert resp.one("CSeq") == "1 INVITE"  # copied as the request had it
    v3 = request("OPTIONS").replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1)
    resp = read_response(answer(e, v3, SRC, 0.0)[0].data)
    assert (resp.status, resp.reason) == (505, "Version Not Supported")


def test_require_with_unknown_tags_gets_420_listing_them() -> None:
    e = engine()
    data = request("INVITE", extra="Require: 100rel, foo\r\n")
    resp = read_response(answer(e, data, SRC, 0.0)[0].data)
    assert resp.status == 420 and resp.one("Unsupported") == "100rel, foo"
    supported = "identity: {supported: [100rel]}\nrules: []\n"
    e = engine(rules_text=supported)
    resp = read_response(answer(e, data, SRC, 0.0)[0].data)
    assert resp.status == 420 and resp.one("Unsupported") == "foo"
    ok = request("INVITE", extra="Require: 100rel\r\n")
    assert statuses(feed(e, ok, SRC, 0.0)) == [200]
    # not for CANCEL (RFC 3261 §8.2.2.3)
    cancel = request("CANCEL", extra="Require: foo\r\n")
    assert statuses(feed(e, cancel, SRC, 0.0)) == [481]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", errors.EMPTY),
        (b"\r\n\r\n", errors.KEEPALIVE),
        (b"\x00\xff garbage", errors.NOT_SIP),
        (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n", errors.RESPONSE),
        (b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n", errors.NO_VIA),
    ],
    ids=["empty", "keepalive", "garbage", "response", "no-via"],
)
def test_unanswerable_datagrams_are_counted(data: bytes, reason: str) -> None:
    e = engine()
    assert feed(e, data, SRC, 0.0) == []
    assert e.counters.discarded == {reason: 1}
    assert statuses(feed(e, request(), SRC, 0.0)) == [200]


def test_set_rules_applies_to_later_requests_and_pending_keep_their_decision() -> None:
    e = engine("INVITE->180,486/2s")
    feed(e, request("INVITE"), SRC, 0.0)
    e.set_rules(build_ruleset(None, ["INVITE->603"]))
    assert statuses(feed(e, request("INVITE", call_id="new"), SRC, 0.1)) == [603]
    assert statuses(e.due(2.0)) == [486]


def test_steps_with_same_delay_go_out_together_in_order() -> None:
    e = engine("INVITE->180/1s,183/1s,486/1s")
    assert feed(e, request("INVITE"), SRC, 0.0) == []
    assert statuses(e.due(1.0)) == [180, 183, 486]


def test_many_pending_transactions_fire_in_time_order() -> None:
    e = engine("INVITE->486/1s")
    for i in range(50):
        feed(e, request("INVITE", call_id=f"c{i}"), SRC, i * 0.01)
    fired = all_sends(e.due(100.0))
    assert [read_response(o.data).one("Call-ID") for o in fired] == [f"c{i}" for i in range(50)]


def test_unbracketed_ipv6_sent_by_is_answered_as_written() -> None:
    # SIPVicious with -6 writes "Via: SIP/2.0/UDP ::1:0;...": invalid, but answerable.
    data = request(via_host="::1:0", rport=True)
    outs = answer(engine(), data, ("::1", 40000), 0.0)
    resp = read_response(outs[0].data)
    assert resp.status == 200
    assert resp.one("Via") == "SIP/2.0/UDP ::1:0;branch=z9hG4bK-test-1;rport=40000;received=::1"


def test_journal_keeps_each_response_with_its_request_and_forget_clears_state() -> None:
    e = Engine(build_ruleset(None, ["INVITE->180,486/2s"]), Seeded(1))
    recorded = Recorded(e, 10)
    recorded.feed(request("INVITE"), SRC, 0.0)
    recorded.feed(request("CANCEL"), SRC, 0.5)
    invite, cancel = recorded.journal
    assert (invite.statuses, cancel.statuses) == ([180, 487], [200])
    feed(e, request("INVITE", call_id="other"), SRC, 1.0)
    assert e.pending == 1
    e.forget()
    assert e.pending == 0 and e.next_deadline() is None and e.due(10.0) == []


# ------------------------------------------------------------------ the short way

RULE_LINES = ["INVITE->486", "OPTIONS->200", "INVITE->180,200", "*->503", "BYE->200",
              "INVITE->180,486/1s", "OPTIONS@1000->404", "REGISTER->401",
              "INFO->drop", "MESSAGE->200;p=0.5", "CANCEL->200", "OPTIONS->200/1s;jitter=1s",
              "BYE->200;drop_first=1", "INVITE@2*->100,183,200"]


@given(data=st.data())
@settings(max_examples=200, deadline=None, database=None)
def test_the_short_way_decides_what_the_long_way_decides(data: st.DataObject) -> None:
    """RuleSet.plain lets _handle skip the search for rules that take every request of a
    method at once: the same responses, exchanges and counters as without it."""
    specs = data.draw(st.lists(st.sampled_from(RULE_LINES), max_size=4))
    try:
        ruleset = build_ruleset(None, specs)
    except RuleError:
        return  # a combination the loader refuses (say, an option a rule may not have)
    short, long = Engine(ruleset, Seeded(5)), Engine(build_ruleset(None, specs), Seeded(5))
    object.__setattr__(long.ruleset, "plain", {})
    for i in range(data.draw(st.integers(1, 6))):
        method = data.draw(st.sampled_from(["INVITE", "OPTIONS", "BYE", "INFO", "MESSAGE",
                                            "REGISTER", "ACK", "CANCEL", "FOO"]))
        extra = data.draw(st.sampled_from(["", "Require: 100rel\r\n"]))
        raw = request(method, data.draw(st.sampled_from(["sip:1000@lab.example",
                                                           "sip:2000@lab.example"])),
                      call_id=f"c{data.draw(st.integers(0, 2))}", branch=f"z9hG4bK-{i % 3}",
                      extra=extra)
        now = float(i)
        assert feed(short, raw, SRC, now, LOCAL) == feed(long, raw, SRC, now, LOCAL)
        assert short.due(now + 0.5) == long.due(now + 0.5)
    assert short.counters == long.counters


# ------------------------------------------------------------------ workers and the journal


def test_every_request_of_one_dialog_meets_the_same_worker() -> None:
    """Sharding is keyed by dialog (Call-ID and From tag), not by transaction: the INVITE,
    its CANCEL, the ACK, a re-INVITE and the BYE (new branches, new CSeqs) go to one owner."""
    for count in (2, 3, 4):
        engines = [Engine(build_ruleset(None, ["INVITE->180,486/2s"]), Seeded(1),
                          (i, count)) for i in range(count)]
        for call in range(20):
            owners = set()
            for n, method in enumerate(["INVITE", "CANCEL", "ACK", "INVITE", "BYE"]):
                raw = request(method, call_id=f"dialog-{call}", branch=f"z9hG4bK-{call}-{n}",
                              cseq=1 if method in ("INVITE", "CANCEL", "ACK") else n)
                owners.add(engines[0].owner(parse(raw)))
            assert len(owners) == 1
        # the INVITE's delayed steps live with the owner; a CANCEL read by any worker is
        # handed there and meets them
        raw = request("INVITE", call_id="dialog-x")
        owner = engines[0].owner(parse(raw))
        reader = (owner + 1) % count
        handed = feed(engines[reader], raw, SRC, 0.0)
        assert handed == [Handoff(owner, Inbound(raw, SRC, None))]
        assert statuses(feed(engines[owner], raw, SRC, 0.0, handed=True)) == [180]
        cancel = request("CANCEL", call_id="dialog-x")
        (moved,) = feed(engines[reader], cancel, SRC, 0.5)
        assert isinstance(moved, Handoff) and moved.worker == owner
        assert statuses(feed(engines[owner], cancel, SRC, 0.5, handed=True)) == [200, 487]


def test_the_journal_keeps_the_statuses_sent_even_for_garbage() -> None:
    """The journal stores the codes the engine sent: a ``fault: garbage`` response (random
    bytes, no status line) is listed as what the rule asked for, not re-read from bytes."""
    recorded = Recorded(Engine(build_ruleset(None, ["INVITE->486;fault=garbage"]),
                               Seeded(1)), 10)
    (arrived, sent) = recorded.feed(request("INVITE"), SRC, 0.0)
    assert isinstance(arrived, Arrived) and isinstance(sent, Send)
    assert not sent.data.startswith(b"SIP/2.0")
    (entry,) = recorded.journal
    assert entry.statuses == [486] and entry.responses == [sent.data]
    assert entry.rule == "INVITE->486;fault=garbage"


def test_a_retransmission_from_another_address_is_answered_there() -> None:
    """SPEC §4: the packet's source is the source of THAT packet. B resends A's INVITE:
    the 180 goes to B; after the final response, B's copy gets the 486 at B, not at A."""
    e = engine("INVITE->180,486/2s")
    other = ("198.51.100.9", 5099)
    (ringing,) = answer(e, request("INVITE"), SRC, 0.0, LOCAL)
    assert ringing.dest == SRC
    (again,) = answer(e, request("INVITE"), other, 0.5, LOCAL)
    assert again.dest == other and again.data == ringing.data
    assert again.exchange is not None and again.exchange.source == other
    (busy,) = sends(e.due(2.0))
    assert busy.dest == SRC
    (late,) = answer(e, request("INVITE"), other, 3.0, LOCAL)
    assert late.dest == other and late.data == busy.data


def test_the_journal_names_the_rule_before_a_delayed_step_is_sent() -> None:
    """A request answered only later (``INVITE->486/2s``) is journaled with its rule at
    once, and a retransmission meanwhile with the same rule; the delayed 486 joins the
    first entry when it is sent."""
    recorded = Recorded(Engine(build_ruleset(None, ["INVITE->486/2s"]), Seeded(1)), 10)
    assert [type(e) for e in recorded.feed(request("INVITE"), SRC, 0.0)] == [Arrived]
    assert [type(e) for e in recorded.feed(request("INVITE"), SRC, 0.5)] == [Arrived]
    first, again = recorded.journal
    assert first.rule == again.rule == "INVITE->486/2s"
    assert first.statuses == [] and again.statuses == []
    recorded.due(2.0)
    assert first.statuses == [486] and again.statuses == []


def broken_for_register(req: Request, ctx: Context, step: Step, tag: str | None,
                        session: bytes | None = None) -> bytes:
    """build_step with a bug: it raises for every REGISTER."""
    if req.method == "REGISTER":
        raise ValueError("a bug in building one response")
    return build_step(req, ctx, step, tag, session)


def test_a_message_whose_handling_raises_is_counted_and_costs_only_itself(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """SPEC §10: whatever goes wrong inside the engine for one message is a counted discard;
    the messages around it are answered as usual (the transport's batch is never lost)."""
    import responder.core.answer as answer_module
    import responder.core.engine as engine_module

    monkeypatch.setattr(engine_module, "build_step", broken_for_register)
    monkeypatch.setattr(answer_module, "build_step", broken_for_register)  # the express way
    e = engine()
    assert statuses(feed(e, request("OPTIONS"), SRC, 0.0)) == [200]
    assert feed(e, request("REGISTER", branch="z9hG4bK-reg"), SRC, 0.0) == []
    assert statuses(feed(e, request("OPTIONS", branch="z9hG4bK-2"), SRC, 0.0)) == [200]
    assert e.counters.discarded[names.INTERNAL_ERROR] == 1


def test_a_delayed_step_that_raises_costs_only_its_own_transaction(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import responder.core.engine as engine_module
    e = engine("REGISTER->486/1s", "INVITE->486/1s")
    feed(e, request("REGISTER", branch="z9hG4bK-reg"), SRC, 0.0)
    feed(e, request("INVITE", branch="z9hG4bK-inv"), SRC, 0.0)
    monkeypatch.setattr(engine_module, "build_step", broken_for_register)
    assert statuses(e.due(1.0)) == [486]
    assert e.counters.discarded[names.INTERNAL_ERROR] == 1


def test_unsent_counts_the_steps_still_waiting() -> None:
    e = engine("INVITE->180,486/30s")
    feed(e, request("INVITE", branch="z9hG4bK-a"), SRC, 0.0)
    feed(e, request("INVITE", branch="z9hG4bK-b"), SRC, 0.0)
    assert e.unsent() == 2
    e.due(30.0)
    assert e.unsent() == 0


def test_the_to_tag_names_the_dialog_not_the_transaction() -> None:
    """SPEC §4: a keyed hash of Call-ID and From tag: a re-INVITE or BYE of the call (a new
    branch) gets the tag of the INVITE's 200; another caller's dialog another tag."""
    e = engine("INVITE->486", "BYE->200")
    first = read_response(answer(e, request("INVITE", branch="z9hG4bK-1"), SRC, 0.0)[-1].data)
    again = read_response(answer(e, request("INVITE", branch="z9hG4bK-2", cseq=2), SRC,
                                 0.0)[-1].data)
    other = read_response(answer(e, request("INVITE", branch="z9hG4bK-3", from_tag="ft-2"),
                                 SRC, 0.0)[-1].data)
    assert first.to_tag == again.to_tag != other.to_tag
    seeded = e.seeded
    assert first.to_tag is not None and seeded.ours(first.to_tag, "call-1@test", "ft-1")
    assert not seeded.ours(first.to_tag, "call-1@test", "ft-2")


def test_a_retransmission_answered_by_an_immediate_rule_is_marked_and_counted() -> None:
    """README/docs/operations.md: a repeated request that got the same response again is
    logged ``(retransmission)`` and counted, also when an immediate rule answered it (no
    pending or completed entry: the engine's table of requests last seen tells)."""
    e = Engine(build_ruleset(None, ["OPTIONS->200", "MESSAGE->drop"]), Seeded(1))
    first, second = (sends(feed(e, request("OPTIONS"), SRC, t)) for t in (0.0, 0.5))
    assert [s.exchange.retransmission for s in first if s.exchange] == [False]
    assert [s.exchange.retransmission for s in second if s.exchange] == [True]
    assert first[0].data == second[0].data and e.counters.retransmissions == 1
    other = sends(feed(e, request("OPTIONS", branch="z9hG4bK-new"), SRC, 0.6))
    assert [s.exchange.retransmission for s in other if s.exchange] == [False]
    # A drop rule's retransmission too; an INVITE's 200 resent for its retransmission is
    # marked once by the pending table, and counted once.
    drops = [feed(e, request("MESSAGE"), SRC, t) for t in (1.0, 1.5)]
    assert [[d.exchange.retransmission for d in ds if isinstance(d, Dropped)]
            for ds in drops] == [[False], [True]]
    e2 = Engine(build_ruleset(None, []), Seeded(1))
    feed(e2, request("INVITE"), SRC, 0.0)
    (ok,) = sends(feed(e2, request("INVITE"), SRC, 0.2))
    assert ok.exchange is not None and ok.exchange.retransmission and ok.exchange.status == 200
    assert e2.counters.retransmissions == 1
    e2.forget()  # a clean slate forgets what was seen too
    fresh = sends(feed(e2, request("INVITE"), SRC, 0.3))[0].exchange
    assert fresh is not None and not fresh.retransmission


def test_every_response_sent_is_counted_for_the_closing_line() -> None:
    """issue 12: "N responses sent" counts the same bytes sent again too (to a
    retransmission, Timer-style resends of a 2xx, repeats), not only responses built."""
    e = Engine(build_ruleset(None, []), Seeded(1))
    assert len(sends(feed(e, request("INVITE"), SRC, 0.0))) == 3  # 100, 180, 200
    assert len(sends(feed(e, request("INVITE"), SRC, 0.2))) == 1  # the 200 again
    assert len(sends(e.due(0.5))) == 1  # resent: no ACK yet
    assert e.counters.answered == 5
