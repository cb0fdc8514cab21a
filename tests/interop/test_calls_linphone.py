"""linphonec (liblinphone 5.1) calls the responder and the call connects (issue 13, SPEC §8).

linphonec runs headless (tests/interop/linphone_peer.py: ``soundcard use files``, a tone
played with ``play``, SIP and RTP bound to 127.0.0.1, its log with every SIP message in the
test's directory) and calls the ``sip-responder`` console script, started with its default
rules and ``--admin`` so that ``GET /journal`` shows what our media socket saw of the call.

* the call reaches StreamsRunning ("Media streams established") and stays up for 8 s past
  linphone's ``nortp_timeout`` of 5 s: linphone hangs up a call that receives no RTP for that
  long, so only our echo keeps it up (the control test: with ``media=sink`` linphone hangs up
  with "IO error" at its timeout);
* ``pause`` (re-INVITE ``a=sendonly``) gets ``a=recvonly`` and the echo stops while linphone
  still sends; ``resume`` brings StreamsRunning back and the echo with it;
* delayed offer (``[sip] sdp_200_ack=1``: INVITE without SDP, our offer in the 200, its
  answer in the ACK) connects, and our echo keeps it up past ``nortp_timeout`` too;
* digits typed in linphonec (RFC 4733) are in our journal.

Missing tools skip these tests locally; with ``CI`` set they fail.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from interop_support import ResponderAdmin, count
from linphone_peer import Linphone
from support import ResponderProcess

pytestmark = pytest.mark.interop

RUNNING = r"Media streams established with sip:bob@"  # linphonec's StreamsRunning line
ENDED = r"Call \d+ with .* ended"


def digits(want: str) -> Callable[[dict[str, object]], bool]:
    return lambda media: media["dtmf"] == want


def start_call(server: ResponderAdmin, phone: Linphone) -> None:
    mark = phone.mark()
    phone.command(f"call {server.uri}")
    phone.wait_line(r"Call \d+ with sip:bob@.* connected", after=mark)
    phone.wait_line(RUNNING, after=mark)


def test_call_streams_run_and_our_echo_keeps_it_up_past_nortp_timeout(tmp_path: Path) -> None:
    with ResponderProcess("-q", "--admin", "127.0.0.1:0") as process, \
            Linphone(tmp_path, nortp_timeout=5) as phone:
        server = ResponderAdmin(process)
        mark = phone.mark()
        start_call(server, phone)
        ok = phone.wait_sip(False, "SIP/2.0 200", cseq=phone.sip()[0].cseq)
        assert f"m=audio {server.media_port} RTP/AVP" in ok.body
        phone.wait_absent(ENDED, 8.0, after=mark)  # 8 s > nortp_timeout: the echo arrives
        media = server.media()
        assert count(media, "packets_in") >= 300 and count(media, "packets_out") >= 300, media
        assert media["mode"] == "echo"

        mark = phone.mark()
        phone.command("terminate", ENDED)
        assert phone.seen(r"ended \(No error\)", after=mark)
        bye = phone.wait_sip(True, "BYE")
        phone.wait_sip(False, "SIP/2.0 200", cseq=bye.cseq)
        phone.close()
        assert [e["statuses"] for e in server.journal() if e["method"] == "BYE"] == [[200]]
        assert process.stop() == 0
        assert "Traceback" not in process.stderr_text()


def test_control_without_the_echo_linphone_hangs_up_at_nortp_timeout(tmp_path: Path) -> None:
    """What the test above rules out: a call whose RTP is not echoed ends at the timeout."""
    with ResponderProcess("-q", "--admin", "127.0.0.1:0",
                          "--rule", "INVITE->180,200;media=sink") as process, \
            Linphone(tmp_path, nortp_timeout=3) as phone:
        server = ResponderAdmin(process)
        started = time.monotonic()
        start_call(server, phone)
        phone.wait_line(r"ended \(IO error\)", timeout=8.0)
        assert time.monotonic() - started >= 3.0
        media = server.media()
        assert count(media, "packets_in") > 0 and count(media, "packets_out") == 0, media
        assert media["mode"] == "sink"
        phone.close()
        assert process.stop() == 0
        assert "Traceback" not in process.stderr_text()


def test_pause_stops_the_echo_and_resume_brings_it_back(tmp_path: Path) -> None:
    with ResponderProcess("-q", "--admin", "127.0.0.1:0") as process, \
            Linphone(tmp_path, nortp_timeout=5) as phone:
        server = ResponderAdmin(process)
        mark = phone.mark()
        start_call(server, phone)
        server.wait_media(lambda m: count(m, "packets_out") >= 10, "the echo started")

        phone.command("pause", r"Call \d+ with .* is now paused")
        hold = phone.wait_sip(True, "INVITE", body="a=sendonly")
        ok = phone.wait_sip(False, "SIP/2.0 200", cseq=hold.cseq)
        assert "a=recvonly" in ok.body and f"m=audio {server.media_port} " in ok.body
        held = server.media()
        assert held["mode"] == "sink"
        # linphone keeps sending while it holds the call (sendonly); nothing goes back
        media = server.wait_media(lambda m: count(m, "packets_in") >= count(held, "packets_in")
                                  + 25, "RTP received during the hold")
        assert media["packets_out"] == held["packets_out"], (held, media)

        logged = len(phone.sip())
        phone.command("resume", RUNNING)
        resume = phone.wait_sip(True, "INVITE", after=logged)
        assert "a=sendonly" not in resume.body and "a=inactive" not in resume.body
        ok = phone.wait_sip(False, "SIP/2.0 200", cseq=resume.cseq)
        assert "a=sendrecv" in ok.body
        media = server.wait_media(lambda m: count(m, "packets_out") >= count(held, "packets_out")
                                  + 25, "the echo back after resume")
        assert media["mode"] == "echo"
        assert not phone.seen(ENDED, after=mark)
        phone.command("terminate", ENDED)
        phone.close()
        assert process.stop() == 0
        assert "Traceback" not in process.stderr_text()


def test_delayed_offer_connects_and_the_echo_keeps_it_up(tmp_path: Path) -> None:
    with ResponderProcess("-q", "--admin", "127.0.0.1:0") as process, \
            Linphone(tmp_path, delayed_offer=True, nortp_timeout=3) as phone:
        server = ResponderAdmin(process)
        mark = phone.mark()
        start_call(server, phone)
        invite = phone.wait_sip(True, "INVITE")
        assert invite.content_length == 0, invite.text  # no offer: sdp_200_ack
        ok = phone.wait_sip(False, "SIP/2.0 200", cseq=invite.cseq)
        assert f"m=audio {server.media_port} RTP/AVP" in ok.body  # our offer
        ack = phone.wait_sip(True, "ACK")
        assert "m=audio " in ack.body  # its answer
        phone.wait_absent(ENDED, 4.0, after=mark)  # 4 s > nortp_timeout: the echo arrives
        media = server.media()
        assert count(media, "packets_in") >= 100 and count(media, "packets_out") >= 100, media
        phone.command("terminate", ENDED)
        phone.close()
        assert process.stop() == 0
        assert "Traceback" not in process.stderr_text()


def test_digits_typed_in_linphonec_reach_the_journal(tmp_path: Path) -> None:
    """A digit on its own line sends RFC 4733 events (telephone-event at the rate of the
    codec we answered, opus: 48 kHz)."""
    with ResponderProcess("-q", "--admin", "127.0.0.1:0") as process, \
            Linphone(tmp_path) as phone:
        server = ResponderAdmin(process)
        start_call(server, phone)
        ok = phone.wait_sip(False, "SIP/2.0 200", cseq=phone.sip()[0].cseq)
        assert "telephone-event/" in ok.body
        for sent in ("1", "12", "12#"):  # one at a time: each once the one before is seen
            phone.command(sent[-1])
            server.wait_media(digits(sent), f"digits {sent!r} in the journal")
        phone.command("terminate", ENDED)
        phone.close()
        assert process.stop() == 0
        assert "Traceback" not in process.stderr_text()
