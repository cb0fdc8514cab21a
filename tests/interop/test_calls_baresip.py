"""baresip 1.0 calls the responder and the call connects (issue 13, SPEC §8).

baresip runs headless (tests/interop/baresip_peer.py: ``ausine`` source, ``aufile`` player,
``ctrl_tcp`` for commands and events, ``-s`` for its SIP trace) and dials the
``sip-responder`` console script, started with its default rules and ``--admin`` so that
``GET /journal`` shows what our media socket saw of the call.

* the call reaches ``CALL_ESTABLISHED`` and ``CALL_RTPESTAB`` (baresip receives RTP: our
  echo), our journal counts its packets in and echoed out, and baresip's own RTP statistics
  at hang-up count packets received as well as sent;
* hold (``hold``: re-INVITE ``a=sendonly``) gets a 200 whose answer says ``a=recvonly`` and
  the echo stops (journal mode ``sink``); resume gets ``a=sendrecv`` and the echo resumes;
  the call stays up throughout;
* RFC 4733 digits sent with ``sndcode`` are in our journal (``dtmf``) and, echoed, reach
  baresip again (``CALL_DTMF_START``);
* its hang-up (``hangup``): our 200 to its BYE, and the call is closed;
* ``codecs=PCMA`` in a rule: baresip's offer (PCMU, PCMA, telephone-event) is answered with
  PCMA only, and baresip sends PCMA.

Missing tools skip these tests locally; with ``CI`` set they fail.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from baresip_peer import Baresip
from interop_support import ResponderAdmin, count
from support import ResponderProcess

pytestmark = pytest.mark.interop

PACKETS = 50  # one second of 20 ms packets


class Call(ResponderAdmin):
    """The responder, a baresip that dialled it, and the call's facts from GET /journal."""

    def __init__(self, server: ResponderProcess, phone: Baresip) -> None:
        super().__init__(server)
        self.server, self.phone = server, phone
        phone.command("dial", self.uri)
        self.call_id = str(phone.wait_event("CALL_ESTABLISHED")["id"])


@pytest.fixture
def call(tmp_path: Path) -> Iterator[Call]:
    with ResponderProcess("-q", "--admin", "127.0.0.1:0") as server, \
            Baresip(tmp_path / "baresip") as phone:
        yield Call(server, phone)
        phone.close()
        assert server.stop() == 0
        assert "Traceback" not in server.stderr_text()


def test_call_connects_and_rtp_flows_both_ways(call: Call) -> None:
    phone = call.phone
    phone.wait_event("CALL_RTPESTAB")  # baresip receives RTP: our echo
    ok = phone.wait_sip(False, "SIP/2.0 200", cseq=phone.sip()[0].cseq)
    assert "c=IN IP4 127.0.0.1" in ok.body
    assert f"m=audio {call.media_port} RTP/AVP 0 8 101" in ok.body
    media = call.wait_media(lambda m: count(m, "packets_in") >= PACKETS
                            and count(m, "packets_out") >= PACKETS,
                            f"{PACKETS} RTP packets in and echoed")
    assert media["mode"] == "echo" and media["payload_types"] == [0]

    phone.command("hangup")
    phone.wait_event("CALL_CLOSED")
    # rtp_stats: "packets:  SENT  RECEIVED" at the end of the call
    phone.wait_output("errors:")
    sent, received = map(int, re.findall(r"packets:\s+(\d+)\s+(\d+)", phone.output)[-1])
    assert sent >= PACKETS and received >= PACKETS, phone.output[-1000:]
    assert count(call.media(), "packets_out") >= received  # each one was our echo


def test_hold_and_resume_keep_the_call_up(call: Call) -> None:
    phone = call.phone
    phone.wait_event("CALL_RTPESTAB")
    call.wait_media(lambda m: count(m, "packets_out") >= 10, "the echo started")
    mark = len(phone.sip())
    phone.command("hold")
    hold = phone.wait_sip(True, "INVITE", body="a=sendonly", after=mark)
    ok = phone.wait_sip(False, "SIP/2.0 200", cseq=hold.cseq, after=mark)
    assert "a=recvonly" in ok.body and f"m=audio {call.media_port} " in ok.body
    phone.wait_sip(True, "ACK", after=mark)
    assert call.media()["mode"] == "sink"  # held: nothing is sent back

    mark = len(phone.sip())
    phone.command("resume")
    resume = phone.wait_sip(True, "INVITE", body="a=sendrecv", after=mark)
    ok = phone.wait_sip(False, "SIP/2.0 200", cseq=resume.cseq, after=mark)
    assert "a=sendrecv" in ok.body
    phone.wait_sip(True, "ACK", after=mark)
    echoed = count(call.media(), "packets_out")
    media = call.wait_media(lambda m: count(m, "packets_out") >= echoed + 25,
                            "the echo resumed after resume")
    assert media["mode"] == "echo"
    assert [e["type"] for e in phone.events].count("CALL_CLOSED") == 0
    phone.command("hangup")
    phone.wait_event("CALL_CLOSED")


def test_dtmf_digits_reach_the_journal_and_come_back(call: Call) -> None:
    phone = call.phone
    phone.wait_event("CALL_RTPESTAB")
    phone.command("sndcode", "123#")
    call.wait_media(lambda m: m["dtmf"] == "123#", "digits 123# in the journal")


    def echoed() -> list[object]:
        return [e.get("param") for e in phone.events if e["type"] == "CALL_DTMF_START"]

    phone.wait_until(lambda: len(echoed()) >= 4, "the four digits echoed back", 5.0)
    assert echoed() == ["1", "2", "3", "#"]
    assert 101 in call.media()["payload_types"]  # type: ignore[operator]


def test_its_hangup_gets_our_200_and_ends_the_call(call: Call) -> None:
    phone = call.phone
    phone.wait_event("CALL_RTPESTAB")
    mark = len(phone.sip())
    phone.command("hangup")
    bye = phone.wait_sip(True, "BYE", after=mark)
    phone.wait_sip(False, "SIP/2.0 200", cseq=bye.cseq, after=mark)
    assert phone.wait_event("CALL_CLOSED")["param"] == "Connection reset by user"
    byes = [e for e in call.journal() if e["method"] == "BYE"]
    assert [e["statuses"] for e in byes] == [[200]]  # answered once: never retransmitted


def test_a_rule_with_codecs_pcma_answers_pcma_and_baresip_sends_it(tmp_path: Path) -> None:
    with ResponderProcess("-q", "--admin", "127.0.0.1:0",
                          "--rule", "INVITE->180,200;codecs=PCMA") as server, \
            Baresip(tmp_path / "baresip") as phone:
        call = Call(server, phone)
        phone.wait_event("CALL_RTPESTAB")
        ok = phone.wait_sip(False, "SIP/2.0 200", cseq=phone.sip()[0].cseq)
        assert f"m=audio {call.media_port} RTP/AVP 8\n" in ok.body  # no telephone-event:
        # codecs= lists everything the answer may carry
        phone.wait_output("audio: Set audio encoder: PCMA")
        call.wait_media(lambda m: count(m, "packets_out") >= 10, "PCMA echoed")
        assert call.media()["payload_types"] == [8]
        phone.command("hangup")
        phone.wait_event("CALL_CLOSED")
        assert server.stop() == 0


def test_our_hangup_ends_the_call_with_a_bye_baresip_answers(tmp_path: Path) -> None:
    """SPEC §8.5: ``hangup=1s`` sends BYE in the dialog one second after the 200; baresip
    answers it 200 and closes the call (our BYE's bytes are accepted by a real stack)."""
    with ResponderProcess("-q", "--admin", "127.0.0.1:0",
                          "--rule", "INVITE->180,200;hangup=1s") as server, \
            Baresip(tmp_path / "baresip") as phone:
        call = Call(server, phone)
        phone.wait_event("CALL_RTPESTAB")
        bye = phone.wait_sip(False, "BYE", timeout=10.0)
        assert bye.cseq == "1 BYE"
        phone.wait_sip(True, "SIP/2.0 200", cseq=bye.cseq)
        closed = phone.wait_event("CALL_CLOSED")
        assert closed["id"] == call.call_id
        assert server.stop() == 0
        assert "Traceback" not in server.stderr_text()
