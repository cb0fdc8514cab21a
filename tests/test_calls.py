"""Calls that connect (SPEC §8.1, §8.2, §4's 2xx resending), the engine in memory."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from sip import Response, answer, feed, read_response, sends
from sip import request as plain_request

from responder.core.effects import Effect
from responder.core.engine import Engine
from responder.rules.loader import build_ruleset, load_text
from responder.sip.message import Request
from responder.sip.parser import parse
from responder.sip.seeded import Seeded

SRC = ("127.0.0.1", 40000)
LOCAL = ("127.0.0.2", 5060)
MEDIA_PORT = 31000

PCMA_OFFER = (b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n"
              b"c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8 101\r\n"
              b"a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
              b"a=fmtp:101 0-15\r\n")
VIDEO_ONLY = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
              b"m=video 6002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n")


def request(method: str, *, branch: str, cseq: int = 1, to_tag: str | None = None,
            headers: list[tuple[str, str]] | None = None, body: bytes = b"",
            call_id: str = "call-1@test") -> bytes:
    to = "<sip:1000@lab.example>" + (f";tag={to_tag}" if to_tag else "")
    extra = "".join(f"{n}: {v}\r\n" for n, v in headers or ())
    head = plain_request(method, branch=branch, cseq=cseq, to=to, extra=extra,
                         body="", call_id=call_id)
    # The body as bytes (any bytes): Content-Length counts them.
    return head.replace(b"Content-Length: 0\r\n", b"Content-Length: %d\r\n" % len(body)) + body


def engine(*specs: str, rules_text: str | None = None) -> Engine:
    ruleset = (load_text(rules_text, "t.yaml") if rules_text is not None
               else build_ruleset(None, list(specs)))
    e = Engine(ruleset, Seeded(7))
    e.media_ports[LOCAL[0]] = MEDIA_PORT
    return e


def invite(body: bytes = PCMA_OFFER, *, method: str = "INVITE", branch: str = "z9hG4bK-i1",
           cseq: int = 1, to_tag: str | None = None, ctype: str = "application/sdp",
           call_id: str = "call-1@test") -> bytes:
    headers = [("Contact", "<sip:alice@127.0.0.1:40000>")]
    if body:
        headers.append(("Content-Type", ctype))
    return request(method, branch=branch, cseq=cseq, to_tag=to_tag, headers=headers,
                   body=body, call_id=call_id)


def responses(e: Engine, data: bytes, now: float = 0.0) -> list[Response]:
    return [read_response(s.data) for s in answer(e, data, SRC, now, LOCAL)]


def sdp_lines(resp: Response) -> list[str]:
    assert resp.one("Content-Type") == "application/sdp"
    return resp.body.decode().split("\r\n")[:-1]


def test_the_200_carries_the_answer_to_the_offer_and_provisionals_do_not() -> None:
    e = engine()
    trying, ringing, ok = responses(e, invite())
    assert (trying.status, ringing.status, ok.status) == (100, 180, 200)
    assert trying.body == ringing.body == b""
    lines = sdp_lines(ok)
    assert lines[0] == "v=0" and lines[2:5] == ["s=-", "c=IN IP4 127.0.0.2", "t=0 0"]
    assert lines[1].startswith("o=sip-responder ") and lines[1].endswith(" 1 IN IP4 127.0.0.2")
    assert lines[5:] == [f"m=audio {MEDIA_PORT} RTP/AVP 8 101", "a=rtpmap:8 PCMA/8000",
                         "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15",
                         "a=sendrecv"]
    assert ok.one("Contact") == "<sip:127.0.0.2:5060>"
    call = e.media.facts("call-1@test")
    assert call is not None and call.expected == ("127.0.0.1", 6000) and call.events_pt == 101


def test_a_re_invite_answers_with_a_higher_version_of_the_same_session() -> None:
    e = engine()
    ok = responses(e, invite())[-1]
    tag = ok.to_tag
    hold = PCMA_OFFER.replace(b"a=fmtp:101 0-15\r\n", b"a=fmtp:101 0-15\r\na=sendonly\r\n")
    reinvite = responses(e, invite(hold, branch="z9hG4bK-i2", cseq=2, to_tag=tag), 1.0)
    assert [r.status for r in reinvite] == [200]  # at once: no 100, no 180
    first, second = sdp_lines(ok)[1].split(), sdp_lines(reinvite[0])[1].split()
    assert first[1] == second[1] and (first[2], second[2]) == ("1", "2")
    assert sdp_lines(reinvite[0])[-1] == "a=recvonly"  # hold mirrored
    call = e.media.facts("call-1@test")
    assert call is not None and call.mode == "sink"  # we do not send while on hold
    resume = responses(e, invite(branch="z9hG4bK-i3", cseq=3, to_tag=tag), 2.0)
    assert sdp_lines(resume[0])[-1] == "a=sendrecv" and call.mode == "echo"


def test_rules_about_invite_do_not_ring_or_reject_a_hold() -> None:
    e = engine("INVITE->486", "INVITE->180,200/2s")
    busy = responses(e, invite(call_id="busy"))[-1]
    assert busy.status == 486
    e = engine("INVITE->180,200/2s")
    feed(e, invite(), SRC, 0.0, LOCAL)
    ok = [read_response(s.data) for s in sends(e.due(2.0))][-1]
    assert ok.status == 200 and ok.to_tag
    again = responses(e, invite(branch="z9hG4bK-i2", cseq=2, to_tag=ok.to_tag), 3.0)
    assert [r.status for r in again] == [200] and sdp_lines(again[0])


def test_update_with_an_offer_gets_its_answer() -> None:
    e = engine()
    tag = responses(e, invite())[-1].to_tag
    (ok,) = responses(e, invite(method="UPDATE", branch="z9hG4bK-u1", cseq=2, to_tag=tag))
    assert ok.status == 200 and ok.one("CSeq") == "2 UPDATE"
    assert f"m=audio {MEDIA_PORT} RTP/AVP 8 101" in sdp_lines(ok)


def test_nothing_acceptable_is_488_with_warning_305_instead_of_the_rules_reply() -> None:
    e = engine()
    (resp,) = responses(e, invite(VIDEO_ONLY))
    assert resp.status == 488 and resp.reason == "Not Acceptable Here"
    assert resp.one("Warning") == '305 127.0.0.2 "Incompatible media format"'
    named = engine("INVITE->180,488")  # a rule that names 488 answers as it says
    assert [r.status for r in responses(named, invite(VIDEO_ONLY))] == [180, 488]


def test_an_offer_we_cannot_read_is_400_bad_sdp() -> None:
    e = engine()
    (resp,) = responses(e, invite(b"v=0\r\nm=audio x RTP/AVP 0\r\n"))
    assert (resp.status, resp.reason) == (400, "Bad SDP")
    assert "m= port" in resp.one("Warning")


def test_delayed_offer_gets_our_offer_and_the_ack_says_where_media_comes_from() -> None:
    e = engine()
    ok = responses(e, invite(b""))[-1]
    lines = sdp_lines(ok)
    assert f"m=audio {MEDIA_PORT} RTP/AVP 0 8 9 111 101" in lines
    call = e.media.facts("call-1@test")
    assert call is not None and call.expected is None
    ack = request("ACK", branch="z9hG4bK-ack", to_tag=ok.to_tag, body=PCMA_OFFER,
                  headers=[("Content-Type", "application/sdp")])
    assert feed(e, ack, SRC, 0.1, LOCAL) == []
    assert call.expected == ("127.0.0.1", 6000)


def test_multipart_offer_is_read() -> None:
    body = (b"--b1\r\nContent-Type: application/sdp\r\n\r\n" + PCMA_OFFER +
            b"\r\n--b1--\r\n")
    ok = responses(engine(), invite(body, ctype="multipart/mixed;boundary=b1"))[-1]
    assert "a=rtpmap:8 PCMA/8000" in sdp_lines(ok)


def test_early_media_183_carries_the_answer_and_the_delayed_200_too() -> None:
    e = engine("INVITE->183,200/1s")
    (progress,) = responses(e, invite())
    assert progress.status == 183 and "a=sendrecv" in sdp_lines(progress)
    (ok,) = [read_response(s.data) for s in sends(e.due(1.0))]
    assert ok.status == 200 and sdp_lines(ok) == sdp_lines(progress)


def test_a_step_body_replaces_the_answer() -> None:
    e = engine(rules_text="rules:\n  - match: {method: INVITE}\n    respond:\n"
                          "      - {code: 200, body: 'hello', content_type: text/plain}\n")
    ok = responses(e, invite())[-1]
    assert ok.body == b"hello" and ok.one("Content-Type") == "text/plain"


def test_a_request_in_a_dialog_we_never_made_gets_481_and_so_does_a_second_bye() -> None:
    e = engine()
    tag = responses(e, invite())[-1].to_tag
    (stray,) = responses(e, request("BYE", branch="z9hG4bK-b0", cseq=2, to_tag="not-ours"))
    assert stray.status == 481
    (bye,) = responses(e, request("BYE", branch="z9hG4bK-b1", cseq=2, to_tag=tag))
    assert bye.status == 200
    (again,) = responses(e, request("BYE", branch="z9hG4bK-b2", cseq=3, to_tag=tag))
    assert again.status == 481
    (info,) = responses(e, request("INFO", branch="z9hG4bK-n1", cseq=4, to_tag="x"))
    assert info.status == 481
    # The first BYE again (its 200 was lost) is a retransmission: 200 again.
    (resent,) = responses(e, request("BYE", branch="z9hG4bK-b1", cseq=2, to_tag=tag))
    assert resent.status == 200


def test_the_200_to_invite_is_resent_until_its_ack() -> None:
    e = engine()
    ok = answer(e, invite(), SRC, 0.0, LOCAL)[-1]
    times = []
    while (deadline := e.next_deadline()) is not None and deadline < 4.0:
        (again,) = sends(e.due(deadline))
        assert again.data == ok.data and again.dest == SRC
        times.append(deadline)
    assert times == [0.5, 1.5, 3.5]
    ack = request("ACK", branch="z9hG4bK-ack", to_tag=read_response(ok.data).to_tag)
    feed(e, ack, SRC, 4.0, LOCAL)
    assert e.next_deadline() is None and e.pending == 0
    assert (e.counters.resent, e.counters.acked) == (3, 1)


def test_without_an_ack_the_200_is_resent_for_32_seconds_then_given_up() -> None:
    e = engine()
    answer(e, invite(), SRC, 0.0, LOCAL)
    times = []
    while (deadline := e.next_deadline()) is not None:
        e.due(deadline)
        times.append(deadline)
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert e.pending == 0 and not e.txns.acks


def test_a_delayed_200_is_resent_from_when_it_was_sent() -> None:
    e = engine("INVITE->180,200/2s")
    answer(e, invite(), SRC, 0.0, LOCAL)
    e.due(2.0)
    assert e.next_deadline() == 2.5
    feed(e, request("ACK", branch="z9hG4bK-ack", to_tag="t"), SRC, 2.1, LOCAL)
    assert e.next_deadline() is None


def test_a_rule_with_in_dialog_true_decides_a_re_invite() -> None:
    e = engine("INVITE->491;in_dialog=true")
    tag = responses(e, invite())[-1].to_tag
    (resp,) = responses(e, invite(branch="z9hG4bK-i2", cseq=2, to_tag=tag))
    assert resp.status == 491


def test_sdp_ignore_keeps_the_body_opaque() -> None:
    e = engine("INVITE->200;sdp=ignore")
    ok = responses(e, invite(VIDEO_ONLY))[-1]
    assert ok.status == 200 and ok.body == b""
    (bad,) = responses(e, invite(b"v=0\r\nm=audio x RTP/AVP 0\r\n", call_id="c2",
                                 branch="z9hG4bK-x"))
    assert bad.status == 200


def test_media_settings_choose_codecs_and_mode() -> None:
    e = engine("INVITE->200;codecs=PCMU;media=none")
    (resp,) = responses(e, invite())  # PCMA offered, only PCMU allowed
    assert resp.status == 488
    e = engine("INVITE->200;codecs=PCMA;media=none")
    (ok,) = responses(e, invite())
    assert sdp_lines(ok)[-1] == "a=inactive"
    call = e.media.facts("call-1@test")
    assert call is not None and call.mode == "none"


def test_early_false_keeps_the_183_without_sdp() -> None:
    e = engine("INVITE->183,200/1s;early=false")
    (progress,) = responses(e, invite())
    assert progress.status == 183 and progress.body == b""


def timer_engine() -> Engine:
    return engine(rules_text="identity:\n  supported: [timer]\nrules: []\n")


def test_session_timers_are_answered_as_asked() -> None:
    """RFC 4028 (SPEC §8.4): with ``timer`` supported, the 2xx carries Session-Expires
    (refresher as asked, uac when none) and Require: timer when the caller supports it."""
    e = timer_engine()
    asked = invite().replace(b"Content-Type:", b"Session-Expires: 1800;refresher=uas\r\n"
                                                 b"Supported: timer, 100rel\r\nContent-Type:")
    ok = responses(e, asked)[-1]
    assert ok.one("Session-Expires") == "1800;refresher=uas" and ok.one("Require") == "timer"
    plain = invite(call_id="c2", branch="z9hG4bK-c2").replace(
        b"Content-Type:", b"x: 600\r\nContent-Type:")
    ok2 = responses(e, plain)[-1]
    assert ok2.one("Session-Expires") == "600;refresher=uac" and not ok2.has("Require")
    assert not responses(engine(), asked)[-1].has("Session-Expires")  # timer not supported
    # Per request, never cached for the next INVITE without one.
    assert not responses(e, invite(call_id="c3", branch="z9hG4bK-c3"))[-1].has("Session-Expires")


def test_a_session_interval_below_min_se_is_422() -> None:
    e = timer_engine()
    short = invite().replace(b"Content-Type:", b"Session-Expires: 60\r\nContent-Type:")
    (resp,) = responses(e, short)
    assert (resp.status, resp.one("Min-SE")) == (422, "90")
    assert responses(engine(), short)[-1].status == 200  # without timer support: ignored


def test_with_workers_every_request_of_a_call_goes_to_the_dialogs_owner() -> None:
    """--workers: the 2xx awaiting its ACK, the call's media and its dialog live with the
    worker that owns the dialog (Call-ID and From tag), so INVITE, ACK, BYE and re-INVITE
    are all handed there, whichever worker read them (an OPTIONS is answered where read)."""
    from responder.core.effects import Handoff

    workers = [Engine(build_ruleset(None, []), Seeded(7), shard=(i, 2)) for i in (0, 1)]
    data = invite()
    owner = workers[0].owner(read_request(data))
    other = workers[1 - owner]
    for message in (data, request("ACK", branch="z9hG4bK-a", to_tag="t"),
                    request("BYE", branch="z9hG4bK-b", cseq=2, to_tag="t")):
        (handed,) = feed(other, message, SRC, 0.0, LOCAL)
        assert isinstance(handed, Handoff) and handed.worker == owner
    assert [read_response(s.data).status
            for s in sends(feed(other, plain_request("OPTIONS"), SRC, 0.0, LOCAL))] == [200]
    # The owner answers, and its ACK stops the resending there.
    assert responses_of(feed(workers[owner], data, SRC, 0.0, LOCAL))[-1] == 200
    assert workers[owner].pending == 1
    feed(workers[owner], request("ACK", branch="z9hG4bK-a", to_tag="t"), SRC, 0.1, LOCAL,
         handed=True)
    assert workers[owner].pending == 0


def read_request(data: bytes) -> Request:
    return parse(data)


def responses_of(effects: list[Effect]) -> list[int]:
    return [read_response(s.data).status for s in sends(effects)]


SDP_LINES = [b"v=0", b"o=- 1 1 IN IP4 127.0.0.1", b"s=-", b"c=IN IP4 127.0.0.1",
             b"c=IN IP6 ::1", b"t=0 0", b"m=audio 6000 RTP/AVP 0 8 101", b"m=video 0 RTP/AVP 96",
             b"m=audio 1 RTP/SAVP 0", b"a=rtpmap:101 telephone-event/8000", b"a=sendonly",
             b"a=inactive", b"a=ptime:20", b"a=rtpmap:0", b"m=audio", b"x", b"\xff", b""]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(SDP_LINES), max_size=12).map(b"\r\n".join)
       | st.binary(max_size=300),
       st.sampled_from(["INVITE", "UPDATE", "ACK", "BYE"]), st.booleans(),
       st.sampled_from(["application/sdp", "multipart/mixed;boundary=b",
                        "multipart/mixed", "text/plain"]))
def test_any_body_to_any_call_request_is_answered_never_an_internal_error(
        body: bytes, method: str, in_dialog: bool, ctype: str) -> None:
    """SPEC §10 for the calls' path: whatever the body, the engine answers (or, for ACK,
    stays silent); nothing is ever the safety net's ``internal-error``."""
    e = engine()
    tag = responses(e, invite())[-1].to_tag if in_dialog else None
    data = invite(body, method=method, branch="z9hG4bK-f", cseq=2, to_tag=tag, ctype=ctype)
    out = sends(feed(e, data, SRC, 1.0, LOCAL))
    assert e.counters.discarded.get("internal-error", 0) == 0
    if method == "ACK":
        assert out == []
    else:
        assert out and all(100 <= read_response(s.data).status < 700 for s in out)
