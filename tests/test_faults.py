"""Fault injection (docs/faults.md), seen from the client: the bytes the engine returns, on
a fake clock. jitter, drop_first, repeat and the malformed-response faults, their rule
syntax (YAML and one-line) and --check's dump of them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest
from sip import Recorded, all_sends, answer, feed, read_response, request, sends
from test_rules import located, ruleset_view

from responder.core.effects import Effect, Exchange, Handoff, Send, exchanges
from responder.core.engine import Engine
from responder.rules.loader import build_ruleset, dump, load_text
from responder.rules.model import FAULTS, REPEAT_MAX, RuleError, repeat_offsets
from responder.rules.oneline import parse_rule
from responder.sip.parser import parse
from responder.sip.seeded import Seeded

SRC = ("192.0.2.10", 5062)
DOC = Path(__file__).resolve().parents[1] / "docs" / "faults.md"


def engine(*specs: str, rules_text: str | None = None, seed: int = 7,
           shard: tuple[int, int] | None = None) -> Engine:
    ruleset = load_text(rules_text, "t.yaml") if rules_text else build_ruleset(None, list(specs))
    return Engine(ruleset, Seeded(seed), shard)


def sent(outs: Sequence[Effect]) -> list[bytes]:
    """The datagrams a client receives (drops are logged, not sent)."""
    return [o.data for o in sends(outs)]


def exchanges_of(outs: list[Effect]) -> list[Exchange]:
    return exchanges(outs)


def statuses(outs: Sequence[Effect]) -> list[int]:
    return [read_response(d).status for d in sent(outs)]


def invite(n: int = 1) -> bytes:
    return request("INVITE", call_id=f"call-{n}@test", branch=f"z9hG4bK-{n}")


def header_block(data: bytes) -> list[str]:
    head = data.partition(b"\r\n\r\n")[0].decode()
    return head.split("\r\n")


# --------------------------------------------------------------------------- jitter


def first_delay(e: Engine, data: bytes, now: float = 0.0) -> float:
    """When the first (delayed) response reaches the client (fake clock)."""
    assert feed(e, data, SRC, now) == []
    deadline = e.next_deadline()
    assert deadline is not None
    outs = e.due(deadline)
    assert outs and isinstance(outs[0], Send) and outs[0].exchange is not None
    assert outs[0].exchange.delay == pytest.approx(deadline - now)
    return deadline - now


def test_jitter_delays_are_in_range_and_spread() -> None:
    e = engine("INVITE->486/1s;jitter=200ms")
    delays = [first_delay(e, invite(i)) for i in range(300)]
    assert all(0.8 <= d <= 1.2 for d in delays)
    assert min(delays) < 0.85 and max(delays) > 1.15  # uniform over the whole range
    assert len({round(d, 6) for d in delays}) > 250


def test_jitter_is_the_same_for_a_retransmission_and_a_run_with_the_same_seed() -> None:
    data = invite(42)
    e = engine("INVITE->486/1s;jitter=200ms")
    first = first_delay(e, data, 0.0)
    # The same transaction, once forgotten (Timer B), gets the same delay again ...
    assert first_delay(e, data, 100.0) == pytest.approx(first)
    # ... and so does the same request in another run with the same seed.
    again = engine("INVITE->486/1s;jitter=200ms")
    assert first_delay(again, data, 5.0) == pytest.approx(first)
    # Another seed draws other delays.
    others = {round(first_delay(engine("INVITE->486/1s;jitter=200ms", seed=s), data), 9)
              for s in range(1, 9)}
    assert len(others) > 4


def test_jitter_never_goes_below_zero_a_zero_delay_is_sent_at_once() -> None:
    e = engine("INVITE->486/100ms;jitter=1s")
    at_once = later = 0
    for i in range(200):
        outs = answer(e, invite(i), SRC, 0.0)
        if outs:
            assert statuses(outs) == [486] and outs[0].exchange is not None
            assert outs[0].exchange.delay == 0.0
            at_once += 1
        else:
            deadline = e.next_deadline()
            assert deadline is not None and 0.0 < deadline <= 1.1
            assert statuses(e.due(deadline)) == [486]
            later += 1
    assert at_once > 60 and later > 60  # P(delay = 0) = 0.45


def test_jittered_steps_stay_in_order() -> None:
    e = engine("INVITE->180/1s,183/1s,486/1.1s;jitter=500ms")
    for i in range(100):
        feed(e, invite(i), SRC, 0.0)
    fired: dict[str, list[tuple[float, int]]] = {}
    for out in all_sends(e.due(10.0)):
        resp = read_response(out.data or b"")
        assert out.exchange is not None
        fired.setdefault(resp.one("Call-ID"), []).append((out.exchange.time, resp.status))
    assert len(fired) == 100
    for seq in fired.values():
        assert [code for _, code in seq] == [180, 183, 486]
        times = [t for t, _ in seq]
        assert times == sorted(times) and times[0] >= 0.5 and times[-1] <= 1.6


def test_the_logged_delay_is_the_rule_s_delay_exactly() -> None:
    e = engine("INVITE->180/0.2s,486/0.3s;repeat=2")
    feed(e, invite(), SRC, 0.1)
    views = [(x.delay, x.repeat) for x in exchanges(e.due(5.0))]
    assert views == [(0.2, 0), (0.3, 0), (0.3, 1)]


def test_oneline_jitter_applies_to_every_delayed_step_only() -> None:
    rule, _ = parse_rule("INVITE->100,180/1s,486/2s;jitter=200ms")
    assert [(s.after, s.jitter) for s in rule.reply] == [(0.0, 0.0), (1.0, 0.2), (2.0, 0.2)]


def test_retransmission_during_jittered_wait_gets_nothing_then_the_last_response() -> None:
    e = engine("INVITE->180,486/2s;jitter=300ms")
    ringing = sent(feed(e, invite(), SRC, 0.0))
    assert sent(feed(e, invite(), SRC, 0.5)) == ringing
    deadline = e.next_deadline()
    assert deadline is not None
    final = sent(e.due(deadline))
    assert sent(feed(e, invite(), SRC, deadline + 1)) == final


# --------------------------------------------------------------------------- drop_first


def test_drop_first_two_then_answered() -> None:
    e = engine("INVITE->486;drop_first=2")
    r = Recorded(e, 10)
    # Timer A: the client retransmits at 0.5 s, 1.5 s, 3.5 s ...
    first, second = r.feed(invite(), SRC, 0.0), r.feed(invite(), SRC, 0.5)
    assert sent(first) == sent(second) == []
    assert [x.reason for x in exchanges_of(first + second)] == [
        "drop-first 1/2", "drop-first 2/2"]
    third = r.feed(invite(), SRC, 1.5)
    assert statuses(third) == [486]
    # every later retransmission is answered too, with the same bytes
    assert sent(r.feed(invite(), SRC, 3.5)) == sent(third)
    assert e.counters.held == 2 and e.counters.dropped == 0
    assert [entry.statuses for entry in r.journal] == [[], [], [486], [486]]


def test_drop_first_counts_each_transaction_on_its_own() -> None:
    e = engine("INVITE->486;drop_first=2")
    assert sent(feed(e, invite(1), SRC, 0.0)) == []
    assert sent(feed(e, invite(2), SRC, 0.1)) == []  # a new transaction starts over
    assert sent(feed(e, invite(1), SRC, 0.5)) == []
    assert statuses(feed(e, invite(1), SRC, 1.5)) == [486]
    assert sent(feed(e, invite(2), SRC, 1.6)) == []
    assert statuses(feed(e, invite(2), SRC, 1.7)) == [486]
    # the same Call-ID with a new branch and CSeq (a new transaction) starts over as well
    again = request("INVITE", call_id="call-1@test", branch="z9hG4bK-other", cseq=2)
    assert sent(feed(e, again, SRC, 2.0)) == []


def test_drop_first_memory_expires_after_timer_b() -> None:
    e = engine("INVITE->486;drop_first=1")
    assert sent(feed(e, invite(), SRC, 0.0)) == []
    assert statuses(feed(e, invite(), SRC, 0.5)) == [486]
    assert statuses(feed(e, invite(), SRC, 31.9)) == [486]  # still remembered
    assert sent(feed(e, invite(), SRC, 32.0)) == []  # 32 s after the first: counted afresh
    assert statuses(feed(e, invite(), SRC, 32.5)) == [486]


def test_drop_first_with_delayed_steps_starts_them_on_the_answered_transmission() -> None:
    e = engine("INVITE->180,486/2s;drop_first=1")
    assert sent(feed(e, invite(), SRC, 0.0)) == []
    assert statuses(feed(e, invite(), SRC, 0.5)) == [180]
    assert e.next_deadline() == pytest.approx(2.5)
    assert statuses(feed(e, invite(), SRC, 1.5)) == [180]  # pending: the last response
    assert statuses(e.due(2.5)) == [486]


def test_drop_first_applies_to_non_invite_too() -> None:
    e = engine("OPTIONS->200;drop_first=3")
    outs = [feed(e, request("OPTIONS"), SRC, t) for t in (0.0, 0.5, 1.5, 3.5, 7.5)]
    assert [statuses(o) for o in outs] == [[], [], [], [200], [200]]


# --------------------------------------------------------------------------- repeat


def test_repeat_three_copies_at_timer_g_spacing_identical_bytes() -> None:
    e = engine("INVITE->200;repeat=3")
    r = Recorded(e, 5)
    first = r.feed(invite(), SRC, 10.0)
    assert statuses(first) == [200]
    assert e.next_deadline() == pytest.approx(10.5)
    assert r.due(10.499) == []
    second = r.due(10.5)
    assert e.next_deadline() == pytest.approx(11.5)
    third = r.due(11.5)
    assert sent(first) == sent(second) == sent(third)
    assert [x.repeat for x in exchanges_of(first + second + third)] == [0, 1, 2]
    assert [x.time for x in exchanges_of(second + third)] == [10.5, 11.5]
    assert e.next_deadline() is None and e.pending == 0 and e.due(100.0) == []
    assert e.counters.repeats == 2 and e.counters.answered == 3  # every copy is sent
    assert next(iter(r.journal)).responses == sent(first) * 3


def test_repeat_schedule_is_timer_g_capped_at_t2() -> None:
    assert repeat_offsets(REPEAT_MAX) == (0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5,
                                          31.5)
    e = engine("INVITE->486;repeat=11")
    feed(e, invite(), SRC, 0.0)
    times = []
    while (deadline := e.next_deadline()) is not None:
        times.append(deadline)
        assert len(e.due(deadline)) == 1
    assert times == list(repeat_offsets(11))


def test_repeat_of_a_delayed_final_follows_it() -> None:
    e = engine("INVITE->180,486/2s;repeat=2")
    assert statuses(feed(e, invite(), SRC, 0.0)) == [180]
    final = e.due(2.0)
    assert statuses(final) == [486]
    assert sent(e.due(2.5)) == sent(final)


def test_ack_does_not_stop_repeats() -> None:
    e = engine("INVITE->486;repeat=3")
    first = sent(feed(e, invite(), SRC, 0.0))
    ack = request("ACK", call_id="call-1@test", branch="z9hG4bK-1")
    assert feed(e, ack, SRC, 0.1) == []
    assert sent(e.due(0.5)) == first and sent(e.due(1.5)) == first


def test_cancel_after_the_final_cancels_nothing_and_repeats_go_on() -> None:
    e = engine("INVITE->200;repeat=3")
    first = sent(feed(e, invite(), SRC, 0.0))
    cancel = request("CANCEL", call_id="call-1@test", branch="z9hG4bK-1")
    assert statuses(feed(e, cancel, SRC, 0.2)) == [481]  # the INVITE is answered
    assert sent(e.due(0.5)) == first and sent(e.due(1.5)) == first


def test_cancel_before_the_final_stops_it_and_its_repeats() -> None:
    e = engine("INVITE->180,486/2s;repeat=3")
    feed(e, invite(), SRC, 0.0)
    cancel = request("CANCEL", call_id="call-1@test", branch="z9hG4bK-1")
    assert statuses(feed(e, cancel, SRC, 1.0)) == [200, 487]
    assert e.due(100.0) == [] and e.pending == 0


def test_retransmission_during_and_after_repeats_gets_the_final() -> None:
    e = engine("INVITE->486;repeat=3")
    first = sent(feed(e, invite(), SRC, 0.0))
    assert sent(feed(e, invite(), SRC, 0.7)) == first
    e.due(2.0)
    assert sent(feed(e, invite(), SRC, 5.0)) == first
    assert e.counters.retransmissions == 2


def test_repeat_and_fault_together_repeat_the_same_malformed_bytes() -> None:
    e = engine("INVITE->486;repeat=2;fault=garbage")
    first = sent(feed(e, invite(), SRC, 0.0))
    assert sent(e.due(0.5)) == first and not first[0].startswith(b"SIP/2.0")


# --------------------------------------------------------------------------- faults


def test_fault_wrong_content_length_is_detectable() -> None:
    text = ("rules:\n  - respond:\n      - code: 486\n        body: \"busy\\n\"\n"
            "        content_type: text/plain\n        fault: wrong-content-length\n")
    data = sent(feed(engine(rules_text=text), invite(), SRC, 0.0))[0]
    body = data.partition(b"\r\n\r\n")[2]
    assert body == b"busy\n"
    lengths = [line for line in header_block(data) if line.lower().startswith("content-length")]
    assert lengths == ["Content-Length: 15"]
    with pytest.raises(AssertionError, match="Content-Length is not exact"):
        read_response(data)


def test_fault_no_to_tag_leaves_the_final_without_our_tag() -> None:
    e = engine("INVITE->180,486;fault=no-to-tag")
    ringing, busy = (read_response(d) for d in sent(feed(e, invite(), SRC, 0.0)))
    assert ";tag=" in ringing.one("To")  # only the step with the fault is affected
    assert busy.status == 486 and busy.one("To") == "<sip:1000@lab.example>"
    # a To tag the request carried (in-dialog) is still copied
    in_dialog = request("INVITE", to="<sip:1000@lab.example>;tag=abc")
    resp = read_response(sent(feed(engine("INVITE->486;fault=no-to-tag"),
        in_dialog, SRC, 0.0))[0])
    assert resp.one("To") == "<sip:1000@lab.example>;tag=abc"


def test_fault_garbage_is_not_sip_and_seeded() -> None:
    plain = sent(feed(engine("INVITE->486"), invite(), SRC, 0.0))[0]
    data = sent(feed(engine("INVITE->486;fault=garbage"), invite(), SRC, 0.0))[0]
    assert len(data) == len(plain) and data != plain
    assert not data.startswith(b"SIP/2.0") and b"\r\n\r\n" not in data
    assert len(set(data)) > 100  # noise, not a pattern
    # the same seed and transaction: the same bytes; another seed or transaction: others
    assert sent(feed(engine("INVITE->486;fault=garbage"), invite(), SRC, 9.0))[0] == data
    assert sent(feed(engine("INVITE->486;fault=garbage", seed=8),
        invite(), SRC, 0.0))[0] != data
    assert sent(feed(engine("INVITE->486;fault=garbage"), invite(2), SRC, 0.0))[0] != data


def test_fault_no_via_has_no_via() -> None:
    data = sent(feed(engine("INVITE->486;fault=no-via"), invite(), SRC, 0.0))[0]
    lines = header_block(data)
    assert lines[0] == "SIP/2.0 486 Busy Here"
    assert not [line for line in lines if line.lower().startswith(("via:", "v:"))]
    assert read_response(data).one("Call-ID") == "call-1@test"  # otherwise well formed


def test_fault_truncated_is_an_incomplete_header_block() -> None:
    plain = sent(feed(engine("INVITE->486"), invite(), SRC, 0.0))[0]
    data = sent(feed(engine("INVITE->486;fault=truncated"), invite(), SRC, 0.0))[0]
    assert plain.startswith(data) and len(data) < len(plain) / 2
    assert b"\r\n\r\n" not in data and b"Content-Length" not in data


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_every_fault_is_a_retransmission_stable_response(fault: str) -> None:
    e = engine(f"INVITE->486;fault={fault}")
    first = sent(feed(e, invite(), SRC, 0.0))
    assert sent(feed(e, invite(), SRC, 0.5)) == first
    assert first != sent(feed(engine("INVITE->486"), invite(), SRC, 0.0))
    assert e.counters.answered == 2


def test_a_fault_on_a_delayed_step_and_in_the_default() -> None:
    e = engine(rules_text="rules: []\ndefault: [{code: 503, after: 1s, fault: no-via}]\n")
    assert feed(e, request("OPTIONS"), SRC, 0.0) == []
    (out,) = all_sends(e.due(1.0))
    assert out.data is not None and b"\r\nVia:" not in out.data
    assert out.data.startswith(b"SIP/2.0 503 ")


def test_the_parser_takes_none_of_the_faulty_responses_for_a_request() -> None:
    from responder.sip.errors import Discard

    for fault in FAULTS:
        data = sent(feed(engine(f"INVITE->486;fault={fault}"), invite(), SRC, 0.0))[0]
        with pytest.raises(Discard):
            parse(data)


# --------------------------------------------------------------------------- plain rules


def test_plain_rules_do_not_take_the_fault_path() -> None:
    rs = build_ruleset(None, ["INVITE->180,486/2s", "OPTIONS->drop", "INVITE->503;p=0.5"])
    assert not any(r.lab for r in rs.rules) and not rs.default_lab
    lab = build_ruleset(None, ["INVITE->486;repeat=2", "INVITE->486;drop_first=1",
                               "INVITE->486;fault=garbage", "INVITE->486/1s;jitter=1ms"])
    assert all(r.lab for r in lab.rules[:4])


def test_workers_hand_fault_rules_to_the_dialog_owner() -> None:
    owners = set()
    for index in (0, 1):
        e = engine("INVITE->486;drop_first=1", shard=(index, 2))
        outs = feed(e, invite(), SRC, 0.0)
        if outs and isinstance(outs[0], Handoff):
            owners.add(outs[0].worker)
        else:
            owners.add(index)
            assert sent(outs) == []  # the owner counts the first transmission
    assert len(owners) == 1


# --------------------------------------------------------------------------- syntax


ONELINE = [
    ("INVITE->180,486/2s;jitter=200ms", 0, [(180, 0.0, 0.0, 1, None),
                                            (486, 2.0, 0.2, 1, None)]),
    ("INVITE->486;drop_first=2", 2, [(486, 0.0, 0.0, 1, None)]),
    ("INVITE->200;repeat=3", 0, [(200, 0.0, 0.0, 3, None)]),
    ("INVITE->486;fault=no-to-tag", 0, [(486, 0.0, 0.0, 1, "no-to-tag")]),
    (" INVITE -> 180 , 486/1s ; fault = garbage ; repeat = 2 ; drop_first = 1 ; "
     "jitter = 10ms ; reason = Nope", 1, [(180, 0.0, 0.0, 1, None),
                                          (486, 1.0, 0.01, 2, "garbage")]),
]


@pytest.mark.parametrize(("spec", "drop_first", "steps"), ONELINE, ids=[o[0] for o in ONELINE])
def test_oneline_fault_options(spec: str, drop_first: int,
                               steps: list[tuple[int, float, float, int, str | None]]) -> None:
    rule, warnings = parse_rule(spec)
    assert warnings == []
    assert rule.drop_first == drop_first
    assert [(s.code, s.after, s.jitter, s.repeat, s.fault) for s in rule.reply] == steps
    assert rule.lab


@pytest.mark.parametrize(
    ("spec", "what"),
    [
        ("INVITE->486;jitter=soon", "bad jitter 'soon'"),
        ("INVITE->486;jitter=200ms", "jitter= needs a delayed step"),
        ("INVITE->486;drop_first=two", "drop_first=two is not a whole number"),
        ("INVITE->486;drop_first=-1", "drop_first=-1 is not a whole number"),
        ("INVITE->486;repeat=0", "repeat must be from 1 to 11"),
        ("INVITE->486;repeat=12", "repeat must be from 1 to 11"),
        ("INVITE->486;repeat=1.5", "not a whole number"),
        ("INVITE->180;repeat=2", "repeat= needs a final response"),
        ("INVITE->486;fault=bogus", "unknown fault 'bogus' (known: wrong-content-length"),
        ("OPTIONS->drop;fault=garbage", "fault= makes no sense with drop"),
        ("OPTIONS->drop;drop_first=1", "drop_first= makes no sense with drop"),
        ("OPTIONS->drop;jitter=1s", "jitter= makes no sense with drop"),
        ("INVITE->486;repeats=2", "unknown option 'repeats=2'"),
    ],
)
def test_oneline_fault_errors(spec: str, what: str) -> None:
    with pytest.raises(RuleError) as info:
        parse_rule(spec)
    assert str(info.value).startswith(f"--rule {spec!r}: ")
    assert what in str(info.value)


FAULTY_FILE = """\
rules:
  - name: jittery
    match: {method: INVITE, user: "1000"}
    respond:
      - {code: 180, after: 250ms, jitter: 50ms}
      - {code: 486, after: 1s, jitter: 200ms, fault: no-to-tag, repeat: 2}
  - name: lossy
    match: {method: INVITE}
    drop_first: 2
    repeat: 3
    respond: [180, 200]
default: {code: 503, fault: garbage}
"""


def test_yaml_fault_keys_load() -> None:
    rs = load_text(FAULTY_FILE, "f.yaml")
    jittery, lossy = rs.rules
    assert [(s.after, s.jitter, s.repeat, s.fault) for s in jittery.reply] == [
        (0.25, 0.05, 1, None), (1.0, 0.2, 2, "no-to-tag")]
    assert lossy.drop_first == 2 and [s.repeat for s in lossy.reply] == [1, 3]
    assert rs.default[0].fault == "garbage" and rs.default_lab
    assert jittery.lab and lossy.lab


def test_dump_prints_fault_keys_and_loads_back_the_same() -> None:
    for rs in (load_text(FAULTY_FILE, "f.yaml"),
               build_ruleset(None, [spec for spec, _, _ in ONELINE])):
        text = dump(rs)
        again = load_text(text, "dumped.yaml")
        assert ruleset_view(again) == ruleset_view(rs)
        assert dump(again) == text
    text = dump(load_text(FAULTY_FILE, "f.yaml"))
    for line in ("jitter: 0.2s", "fault: no-to-tag", "repeat: 2", "drop_first: 2",
                 "repeat: 3", "fault: garbage"):
        assert line in text


BROKEN = [
    pytest.param("rules:\n  - respond: [{code: 486, jitter: «soon}]\n", "bad jitter",
                 id="bad-jitter"),
    pytest.param("rules:\n  - respond: [{code: 486, jitter: «-1s}]\n", "bad jitter",
                 id="negative-jitter"),
    pytest.param("rules:\n  - respond: [{code: 486, repeat: «0}]\n", "repeat must be",
                 id="repeat-0"),
    pytest.param("rules:\n  - respond: [{code: 486, repeat: «12}]\n", "repeat must be",
                 id="repeat-12"),
    pytest.param("rules:\n  - respond: [{code: 486, repeat: «true}]\n", "repeat must be",
                 id="repeat-bool"),
    pytest.param("rules:\n  - respond: [{code: 180, «repeat: 2}, 486]\n",
                 "repeat is for a final response", id="repeat-provisional"),
    pytest.param("rules:\n  - respond: [{code: 486, fault: «bogus}]\n", "unknown fault 'bogus'",
                 id="unknown-fault"),
    pytest.param("rules:\n  - drop_first: «-1\n    respond: 486\n", "drop_first must be",
                 id="drop-first-negative"),
    pytest.param("rules:\n  - drop_first: «\"2\"\n    respond: 486\n", "drop_first must be",
                 id="drop-first-text"),
    pytest.param("rules:\n  - «drop_first: 2\n    respond: drop\n", "makes no sense",
                 id="drop-first-with-drop"),
    pytest.param("rules:\n  - «repeat: 2\n    respond: [180]\n", "needs a final response",
                 id="rule-repeat-without-final"),
    pytest.param("rules:\n  - «repeat: 2\n    respond: [{code: 486, repeat: 3}]\n",
                 "given on the rule and on its final step", id="repeat-twice"),
    pytest.param("rules:\n  - respond: [{code: 486, «fualt: garbage}]\n", "unknown key 'fualt'",
                 id="typo"),
]


@pytest.mark.parametrize(("marked", "what"), BROKEN)
def test_yaml_fault_errors_point_at_the_node(marked: str, what: str) -> None:
    text, where = located(marked)
    with pytest.raises(RuleError) as info:
        load_text(text, "x.yaml")
    message = str(info.value)
    assert message.startswith(where + " "), f"{message!r} should start with {where!r}"
    assert what in message


# --------------------------------------------------------------------------- the doc


def test_the_doc_examples_load_and_name_every_fault() -> None:
    text = DOC.read_text(encoding="utf-8")
    yaml_blocks = re.findall(r"^```yaml\n(.*?)^```", text, re.S | re.M)
    assert yaml_blocks
    for block in yaml_blocks:
        assert any(r.lab for r in load_text(block, "faults.md").rules)
    oneline = re.search(r"^```text\n(.*?)^```", text, re.S | re.M)
    assert oneline is not None
    specs = oneline.group(1).split()
    assert len(specs) == 4
    for spec in specs:
        assert parse_rule(spec)[0].lab
    for name in FAULTS:
        assert f"| `{name}` |" in text
