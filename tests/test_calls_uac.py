"""The callee hangs up (SPEC §8.5) and reliable provisionals (SPEC §8.4, RFC 3262): the
engine in memory, its clock an input."""

from __future__ import annotations

import pytest
from sip import answer, feed, read_response, sends
from test_calls import LOCAL, PCMA_OFFER, SRC, engine, invite, request

from responder.core.effects import Handoff, Inbound
from responder.core.engine import Engine
from responder.core.reliable import first_rseq
from responder.rules.loader import build_ruleset, load_text
from responder.rules.model import RuleError
from responder.sip.message import Request
from responder.sip.parser import parse
from responder.sip.seeded import Seeded


def established(e: Engine, data: bytes | None = None) -> str:
    """Call, ACK the 200: our To tag."""
    ok = read_response(answer(e, data or invite(), SRC, 0.0, LOCAL)[-1].data)
    assert ok.status == 200
    tag = ok.to_tag
    assert tag is not None
    feed(e, request("ACK", branch="z9hG4bK-ack", to_tag=tag), SRC, 0.1, LOCAL)
    return tag


def bye_response(bye: Request, status: int = 200) -> bytes:
    head = bye.headers
    lines = [f"SIP/2.0 {status} OK"]
    lines += [f"{h.name}: {h.value}" for h in head if h.key in ("via", "from", "call-id",
                                                                     "cseq")]
    lines.append(f"To: {bye.to};tag=caller-tag")
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_hangup_sends_bye_in_the_dialog_to_the_invites_source() -> None:
    e = engine("INVITE->180,200;hangup=10s")
    tag = established(e)
    assert e.next_deadline() == 10.0
    (sent,) = sends(e.due(10.0))
    assert sent.dest == SRC and sent.local == LOCAL
    bye = parse(sent.data)
    assert bye.method == "BYE" and bye.uri == "sip:alice@127.0.0.1:40000"  # the Contact
    assert bye.from_tag == tag and bye.to_tag == "ft-1"  # From/To swapped, our tag
    assert bye.call_id == "call-1@test" and bye.cseq == "1 BYE"
    assert bye.top_via.value.startswith("SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK")
    assert bye.header("max-forwards") == "70" and bye.problem is None
    # Timer E: 0.5, 1, 2 s ... until a final response.
    times = []
    while (deadline := e.next_deadline()) is not None and deadline < 14.0:
        (again,) = sends(e.due(deadline))
        assert again.data == sent.data
        times.append(deadline)
    assert times == [10.5, 11.5, 13.5]
    assert feed(e, bye_response(bye), SRC, 14.0, LOCAL) == []
    assert e.next_deadline() is None
    assert (e.hangups.sent, e.hangups.retransmitted, e.hangups.answered_final) == (1, 3, 1)
    assert e.counters.discarded["response"] == 0  # the answer is ours, not a stray
    # The dialog is over: the caller's own BYE now is 481.
    late = read_response(answer(e, request("BYE", branch="z9hG4bK-b", cseq=2, to_tag=tag),
                                SRC, 15.0, LOCAL)[0].data)
    assert late.status == 481


def test_without_a_final_response_the_bye_is_given_up_after_64_t1() -> None:
    e = engine("INVITE->200;hangup=1s")
    established(e)
    times = []
    while (deadline := e.next_deadline()) is not None:
        times += [deadline] * len(sends(e.due(deadline)))
    assert times == [1.0, 1.5, 2.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5, 32.5]
    assert e.hangups.timed_out == 1 and len(e.hangups) == 0


def test_a_provisional_answer_slows_timer_e_to_t2() -> None:
    e = engine("INVITE->200;hangup=1s")
    established(e)
    (sent,) = sends(e.due(1.0))
    assert feed(e, bye_response(parse(sent.data), 100), SRC, 1.1, LOCAL) == []
    e.due(1.5)
    assert e.next_deadline() == 5.5


def test_the_callers_bye_first_cancels_the_hangup() -> None:
    e = engine("INVITE->200;hangup=10s")
    tag = established(e)
    ok = read_response(answer(e, request("BYE", branch="z9hG4bK-b", cseq=2, to_tag=tag),
                              SRC, 5.0, LOCAL)[0].data)
    assert ok.status == 200
    assert e.next_deadline() is None and e.hangups.cancelled == 1 and e.due(10.0) == []


def test_a_delayed_200_hangs_up_that_long_after_it_was_sent() -> None:
    e = engine("INVITE->180,200/2s;hangup=1.5s")
    answer(e, invite(), SRC, 0.0, LOCAL)
    e.due(2.0)  # the 200
    assert min(e.hangups.table.values(), key=lambda h: h.due).due == 3.5


def test_the_bye_routes_through_the_record_route_set_in_order() -> None:
    e = engine("INVITE->200;hangup=1s")
    rr = invite().replace(b"Contact:", b"Record-Route: <sip:p2.example;lr>, "
                                       b"<sip:p1.example;lr>\r\nContact:")
    established(e, rr)
    bye = parse(sends(e.due(1.0))[0].data)
    assert bye.uri == "sip:alice@127.0.0.1:40000"
    assert bye.header_values("route") == ["<sip:p2.example;lr>", "<sip:p1.example;lr>"]
    assert sends(e.due(1.0)) == []  # sent to the INVITE's source, not to a Route


def test_a_strict_router_takes_the_request_uri() -> None:
    e = engine("INVITE->200;hangup=1s")
    established(e, invite().replace(b"Contact:", b"Record-Route: <sip:strict.example>\r\n"
                                                 b"Contact:"))
    bye = parse(sends(e.due(1.0))[0].data)
    assert bye.uri == "sip:strict.example"
    assert bye.header_values("route") == ["<sip:alice@127.0.0.1:40000>"]


def test_with_workers_the_answer_to_our_bye_goes_to_the_dialogs_owner() -> None:
    ruleset = build_ruleset(None, ["INVITE->200;hangup=1s"])
    workers = [Engine(ruleset, Seeded(7), (i, 2)) for i in range(2)]
    owner = workers[workers[0].owner(parse(invite()))]
    other = workers[1 - owner.shard[0]] if owner.shard else owner
    tag = established(owner)
    del tag
    bye = parse(sends(owner.due(1.0))[0].data)
    (handed,) = other.receive(Inbound(bye_response(bye), SRC, LOCAL), 1.2)
    assert isinstance(handed, Handoff) and handed.worker == owner.shard[0]  # type: ignore[index]
    assert owner.receive(handed.inbound, 1.2, handed=True) == []
    assert owner.hangups.answered_final == 1


def test_a_stray_response_is_still_discarded_and_counted() -> None:
    e = engine("INVITE->200;hangup=1s")
    established(e)
    stray = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK-other\r\nCSeq: 1 BYE\r\n\r\n"
    assert feed(e, stray, SRC, 0.5, LOCAL) == []
    assert e.counters.discarded["response"] == 1


@pytest.mark.parametrize("spec, error", [
    ("INVITE->486;hangup=1s", "hangup= needs a 2xx step"),
    ("INVITE->200;hangup=3601s", "bad hangup"),
    ("INVITE->200;hangup=soon", "bad hangup"),
    ("INVITE->180,200;reliable=maybe", "reliable=maybe is not true or false"),
])
def test_one_line_hangup_and_reliable_are_checked(spec: str, error: str) -> None:
    with pytest.raises(RuleError, match=error):
        build_ruleset(None, [spec])


def test_yaml_steps_take_hangup_and_reliable_and_check_them() -> None:
    rules = load_text("rules:\n  - match: {method: INVITE}\n    respond:\n"
                      "      - {code: 180, reliable: true}\n"
                      "      - {code: 200, after: 1s, hangup: 30s}\n", "r.yaml")
    steps = rules.rules[0].reply
    assert steps[0].reliable and steps[1].hangup == 30.0
    for bad, why in (("{code: 486, hangup: 1s}", "hangup is for a 2xx step"),
                     ("{code: 200, hangup: 3601s}", "too long"),
                     ("{code: 200, reliable: true}", "reliable is for a provisional"),
                     ("{code: 180, reliable: yes please}", "reliable must be true or false")):
        with pytest.raises(RuleError, match=why):
            load_text(f"rules:\n  - match: {{method: INVITE}}\n    respond: [{bad}]\n",
                      "r.yaml")


# --- 100rel ---------------------------------------------------------------------------------
REL = "identity:\n  supported: [100rel]\nrules:\n  - match: {method: INVITE}\n    respond: "


def rel_invite(header: str = "Require: 100rel", body: bytes = PCMA_OFFER) -> bytes:
    return invite(body).replace(b"Contact:", header.encode() + b"\r\nContact:")


def prack(tag: str, rseq: int, cseq: int = 1, body: bytes = b"") -> bytes:
    headers = [("RAck", f"{rseq} {cseq} INVITE")]
    if body:
        headers.append(("Content-Type", "application/sdp"))
    return request("PRACK", branch="z9hG4bK-pr", cseq=2, to_tag=tag, headers=headers,
                   body=body)


def test_a_required_100rel_makes_provisionals_reliable_until_their_prack() -> None:
    e = engine(rules_text=REL + "[180, {code: 200, after: 2s}]\n")
    (ringing,) = [read_response(s.data) for s in answer(e, rel_invite(), SRC, 0.0, LOCAL)]
    tag = ringing.to_tag
    assert tag is not None
    rseq = first_rseq(tag)
    assert ringing.one("Require") == "100rel" and ringing.one("RSeq") == str(rseq)
    (again,) = sends(e.due(0.5))  # RFC 3262 §3: resent, T1 doubling, until the PRACK
    assert read_response(again.data).one("RSeq") == str(rseq)
    ok = read_response(answer(e, prack(tag, rseq), SRC, 0.7, LOCAL)[0].data)
    assert ok.status == 200 and ok.one("CSeq") == "2 PRACK"
    assert e.next_deadline() == 2.0 and e.counters.pracked == 1  # no more copies of the 180
    assert [read_response(s.data).status for s in sends(e.due(2.0))] == [200]
    assert e.counters.resent_1xx == 1


def test_reliable_only_when_we_support_it_and_the_step_or_the_caller_asks() -> None:
    plain = engine(rules_text=REL + "[180, 200]\n")
    supported = [read_response(s.data) for s in answer(plain, rel_invite("Supported: 100rel"),
                                                       SRC, 0.0, LOCAL)]
    assert not supported[0].has("RSeq")
    asked = engine(rules_text=REL + "[{code: 180, reliable: true}, 200]\n")
    ringing = read_response(answer(asked, rel_invite("Supported: 100rel"), SRC, 0.0, LOCAL)[0]
                            .data)
    assert ringing.one("RSeq") and ringing.one("Require") == "100rel"
    unsupported = read_response(answer(engine("INVITE->180,200"), rel_invite(), SRC, 0.0,
                                       LOCAL)[0].data)
    assert unsupported.status == 420 and unsupported.one("Unsupported") == "100rel"
    without = engine(rules_text=REL + "[{code: 180, reliable: true}, 200]\n")
    ringing = read_response(answer(without, invite(), SRC, 0.0, LOCAL)[0].data)
    assert not ringing.has("RSeq")  # the caller does not support it


def test_each_reliable_provisional_takes_the_next_rseq() -> None:
    e = engine(rules_text=REL + "[180, 183, {code: 200, after: 1s}]\n")
    first, second = [read_response(s.data) for s in answer(e, rel_invite(), SRC, 0.0, LOCAL)]
    assert int(second.one("RSeq")) == int(first.one("RSeq")) + 1
    assert second.one("Content-Type") == "application/sdp"  # early media, reliably


def test_a_prack_that_names_no_provisional_of_ours_is_481() -> None:
    e = engine(rules_text=REL + "[180, {code: 200, after: 2s}]\n")
    tag = read_response(answer(e, rel_invite(), SRC, 0.0, LOCAL)[0].data).to_tag
    assert tag is not None
    for bad in (prack(tag, first_rseq(tag) + 64), prack(tag, 0),
                prack(tag, first_rseq(tag)).replace(b"INVITE\r\n", b"UPDATE\r\n")):
        assert read_response(answer(e, bad, SRC, 0.1, LOCAL)[0].data).status == 481


def test_a_prack_with_an_offer_gets_the_answer() -> None:
    e = engine(rules_text=REL + "[180, {code: 200, after: 2s}]\n")
    tag = read_response(answer(e, rel_invite(), SRC, 0.0, LOCAL)[0].data).to_tag
    assert tag is not None
    ok = read_response(answer(e, prack(tag, first_rseq(tag), body=PCMA_OFFER), SRC, 0.1,
                              LOCAL)[0].data)
    assert ok.status == 200 and b"m=audio 31000 RTP/AVP 8 101" in ok.body


def test_delayed_offer_the_prack_carries_the_answer_to_our_reliable_183() -> None:
    e = engine(rules_text=REL + "[183, {code: 200, after: 2s}]\n")
    (ours,) = [read_response(s.data) for s in answer(e, rel_invite(body=b""), SRC, 0.0, LOCAL)]
    assert ours.one("RSeq") and b"m=audio" in ours.body  # our offer, reliably
    tag = ours.to_tag
    assert tag is not None
    their = PCMA_OFFER.replace(b"6000", b"6010")
    ok = read_response(answer(e, prack(tag, first_rseq(tag), body=their), SRC, 0.1,
                              LOCAL)[0].data)
    assert ok.status == 200 and ok.body == b""  # an answer is not answered
    assert e.media.calls["call-1@test"].expected == ("127.0.0.1", 6010)


def test_after_reliable_copies_the_200_is_still_resent_on_its_own_schedule() -> None:
    """The 180's copies (no PRACK came) do not shift the 200's resend times (SPEC §4)."""
    e = engine(rules_text=REL + "[180, {code: 200, after: 2s}]\n")
    answer(e, rel_invite(), SRC, 0.0, LOCAL)
    times = []
    while (deadline := e.next_deadline()) is not None and deadline < 12.0:
        got = sends(e.due(deadline))
        times += [(deadline, read_response(s.data).status) for s in got]
    assert times == [(0.5, 180), (1.5, 180), (2.0, 200), (2.5, 200), (3.5, 200), (5.5, 200),
                     (9.5, 200)]
    assert (e.counters.resent_1xx, e.counters.resent) == (2, 4)


def test_over_a_stream_the_bye_takes_the_invites_connection_and_no_timer_e() -> None:
    """SPEC §8.5 and §9: the BYE leaves over the INVITE's connection, its Via names the
    transport, and a reliable transport gets no Timer E copies (given up after 32 s)."""
    e = engine("INVITE->200;hangup=1s")
    effects = e.receive(Inbound(invite(), SRC, LOCAL, "tcp", 7), 0.0)
    ok = read_response(sends(effects)[-1].data)
    assert ok.one("Contact").endswith(";transport=tcp>")
    (bye,) = sends(e.due(1.0))
    assert bye.conn == 7 and bye.dest == SRC
    assert parse(bye.data).top_via.value.startswith("SIP/2.0/TCP 127.0.0.2:5060;branch=")
    assert e.next_deadline() == 33.0  # Timer F only
    assert sends(e.due(33.0)) == [] and e.hangups.timed_out == 1
