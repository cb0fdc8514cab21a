"""twinkle-console (Twinkle 1.10, headless: tests/interop/twinkle_peer.py) calls the
responder (responder.testing.Responder, in process, default rules): the call connects and
stays up, hold and retrieve are re-INVITEs answered at once, and RFC 2833 DTMF reaches our
journal and comes back in the echo (SPEC §8, issue 13).

What proves what:

* **Connects**: Twinkle prints ``far end answered call`` and, unlike before the responder
  answered offers ("SDP answer from far end missing", then a BYE), does not end the call until
  we type ``bye``; its BYE gets 200.
* **Media both ways**: our journal counts Twinkle's RTP and the echoes sent back
  (``assert_media``); Twinkle prints ``DTMF detected: D`` only when RFC 2833 events arrive
  at its RTP port, and only the echo sends any: that line is the echo, decoded by Twinkle.
* **Hold/retrieve**: Twinkle prints ``re-INVITE successful`` for each; the re-INVITE's offer
  and our answer are read from our journal (``a=sendonly`` -> ``a=recvonly``, then
  ``a=sendrecv``), and the answer Twinkle logged receiving is the same.

Twinkle's capture device is ALSA's ``null`` plugin, so it sends little audio; the DTMF events
are the RTP this test relies on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from twinkle_peer import Twinkle

from responder.testing import Responder

pytestmark = pytest.mark.interop

ANSWERED = r"far end answered call"
REINVITE_OK = r"re-INVITE successful"
ENDED = r"call ended"
NO_ANSWER = "SDP answer from far end missing"


@pytest.fixture
def call(tmp_path: Path) -> Iterator[tuple[Responder, Twinkle, str]]:
    """A connected call: Twinkle called sip:bob@ the responder and got its 200 + answer."""
    with Responder() as responder, Twinkle(tmp_path) as phone:
        mark = phone.command(f"call {responder.uri('bob')}")
        phone.wait_output(ANSWERED, after=mark)
        invites = responder.assert_answered("INVITE", [100, 180, 200], count=1)
        call_id = invites[0].request.call_id if invites[0].request else None
        assert call_id, invites
        yield responder, phone, call_id


def sdp_of(data: bytes) -> list[str]:
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"application/sdp" in head.lower(), data.decode(errors="replace")
    return body.decode().split("\r\n")


def invites(responder: Responder, call_id: str) -> list[tuple[list[str], list[str]]]:
    """(offer, answer) of every INVITE of the call, in order."""
    out = []
    for entry in responder.journal:
        if entry.method == "INVITE" and entry.request and entry.request.call_id == call_id:
            final = [r for r in entry.responses if r.startswith(b"SIP/2.0 200")]
            assert final, entry
            out.append((sdp_of(entry.data), sdp_of(final[0])))
    return out


def wait_dtmf(responder: Responder, call_id: str, digits: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while (got := responder.dtmf(call_id)) != digits and time.monotonic() < deadline:
        time.sleep(0.02)
    return got


def test_twinkle_call_connects_dtmf_is_counted_and_echoed_back_and_bye_ends_it(
        call: tuple[Responder, Twinkle, str]) -> None:
    responder, phone, call_id = call
    [(offer, answer)] = invites(responder, call_id)
    assert f"m=audio {phone.rtp_port} RTP/AVP 8 0 101" in offer, offer
    assert any(line.startswith("m=audio ") and " 8 " in f"{line} " for line in answer), answer
    assert "a=rtpmap:101 telephone-event/8000" in answer, answer
    assert "c=IN IP4 127.0.0.1" in answer and "a=sendrecv" in answer, answer
    # Twinkle logged receiving that same answer.
    assert any("\n".join(answer).strip() in msg for msg in phone.received_sip())

    mark = phone.command("dtmf 1")
    phone.wait_output(r"DTMF detected: 1", after=mark)  # our echo of its event
    assert wait_dtmf(responder, call_id, "1") == "1"
    mark = phone.command("dtmf 42")
    phone.wait_output(r"DTMF detected: 4", after=mark)
    phone.wait_output(r"DTMF detected: 2", after=mark)
    assert wait_dtmf(responder, call_id, "142") == "142"
    facts = responder.assert_media(call_id, packets_at_least=3, echoed_at_least=3)
    assert 101 in facts["payload_types"], facts  # type: ignore[operator]

    # Still up: before the responder answered offers Twinkle ended the call at once.
    assert ENDED not in phone.output and NO_ANSWER not in phone.output, phone.output
    mark = phone.command("bye")
    phone.wait_output(ENDED, after=mark)
    responder.assert_answered("BYE", [200], count=1)
    # Everything Twinkle sent went to the responder.
    assert set(phone.sent_to()) == {f"udp:127.0.0.1:{responder.port}"}, phone.sent_to()


def test_twinkle_hold_and_retrieve_are_answered_recvonly_then_sendrecv(
        call: tuple[Responder, Twinkle, str]) -> None:
    responder, phone, call_id = call
    mark = phone.command("hold")
    phone.wait_output(REINVITE_OK, after=mark)
    mark = phone.command("retrieve")
    phone.wait_output(REINVITE_OK, after=mark)
    calls = invites(responder, call_id)
    assert len(calls) == 3, calls
    (_, first), (hold_offer, hold_answer), (resume_offer, resume_answer) = calls
    assert "a=sendonly" in hold_offer, hold_offer
    assert "a=recvonly" in hold_answer and "a=sendrecv" not in hold_answer, hold_answer
    assert "a=sendonly" not in resume_offer and "a=inactive" not in resume_offer, resume_offer
    assert "a=sendrecv" in resume_answer, resume_answer
    media = [line for line in first if line.startswith("m=audio ")]
    assert [line for line in hold_answer if line.startswith("m=audio ")] == media
    received = phone.received_sip()
    assert any("\n".join(hold_answer).strip() in msg for msg in received), received[-2:]

    # The call still works after retrieve: DTMF goes out and comes back.
    mark = phone.command("dtmf 7")
    phone.wait_output(r"DTMF detected: 7", after=mark)
    assert wait_dtmf(responder, call_id, "7") == "7"
    mark = phone.command("bye")
    phone.wait_output(ENDED, after=mark)
    responder.assert_answered("BYE", [200], count=1)
