"""The SDP answerer (responder.sip.sdp), sans-I/O, over offers as real peers write them."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responder.sip import sdp
from responder.sip.sdp import DEFAULT_CODECS, BadSdp, read_offer, sdp_of


def crlf(text: str) -> bytes:
    return ("\r\n".join(line.strip() for line in text.strip().splitlines()) + "\r\n").encode()


# As the peers of the interop suite send them (addresses and ports made local).
BARESIP = crlf("""
    v=0
    o=- 1796583011 2012358541 IN IP4 127.0.0.1
    s=-
    c=IN IP4 127.0.0.1
    t=0 0
    m=audio 10000 RTP/AVP 96 9 0 8 101
    b=AS:128
    a=rtpmap:96 opus/48000/2
    a=fmtp:96 stereo=1;sprop-stereo=1
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-15
    a=sendrecv
    a=label:1
    a=rtcp-rsize
    a=ssrc:1289398117 cname:sip:alice@127.0.0.1
    a=ptime:20
""")
LINPHONE = crlf("""
    v=0
    o=alice 3421 1823 IN IP4 127.0.0.1
    s=Talk
    c=IN IP4 127.0.0.1
    t=0 0
    a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
    a=record:off
    m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100
    a=rtpmap:96 opus/48000/2
    a=fmtp:96 useinbandfec=1
    a=rtpmap:97 speex/16000
    a=fmtp:97 vbr=on
    a=rtpmap:98 speex/8000
    a=fmtp:98 vbr=on
    a=fmtp:18 annexb=yes
    a=rtpmap:101 telephone-event/48000
    a=rtpmap:99 telephone-event/16000
    a=rtpmap:100 telephone-event/8000
    a=rtcp-fb:* trr-int 1000
    a=rtcp-fb:* ccm tmmbr
""")
TWINKLE = crlf("""
    v=0
    o=twinkle 1117052385 229553474 IN IP4 127.0.0.1
    s=-
    c=IN IP4 127.0.0.1
    t=0 0
    m=audio 8000 RTP/AVP 98 97 8 0 3 101
    a=rtpmap:98 speex/16000
    a=rtpmap:97 speex/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:0 PCMU/8000
    a=rtpmap:3 GSM/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-15
    a=ptime:20
""")
SIPP = crlf("""
    v=0
    o=user1 53655765 2353687637 IN IP4 127.0.0.1
    s=-
    c=IN IP4 127.0.0.1
    t=0 0
    m=audio 6000 RTP/AVP 8 101
    a=rtpmap:8 PCMA/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-11,16
""")
VIDEO_AUDIO = crlf("""
    v=0
    o=- 1 1 IN IP6 ::1
    s=-
    c=IN IP6 ::1
    t=0 0
    m=video 5002 RTP/AVP 96
    a=rtpmap:96 H264/90000
    m=audio 5000 RTP/AVP 0
    a=sendonly
    m=audio 5004 RTP/SAVP 0
    a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz
    m=application 5006 UDP/BFCP *
""")

KW: dict[str, Any] = {"session_id": 42, "version": 7, "address": "127.0.0.2", "port": 30000}


def answer_lines(offer: bytes, codecs: tuple[str, ...] = DEFAULT_CODECS,
                 **kw: Any) -> list[str]:
    args = {**KW, **kw}
    got = sdp.answer(read_offer(offer), codecs, **args)
    assert got is not None
    assert got.endswith(b"\r\n") and b"\n\r" not in got.replace(b"\r\n", b"")
    return got.decode().split("\r\n")[:-1]


def media_sections(lines: list[str]) -> list[list[str]]:
    out: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            out.append([line])
        elif out:
            out[-1].append(line)
    return out


def test_session_lines_name_our_address_the_dialog_and_the_version() -> None:
    lines = answer_lines(SIPP)
    assert lines[:5] == ["v=0", "o=sip-responder 42 7 IN IP4 127.0.0.2", "s=-",
                         "c=IN IP4 127.0.0.2", "t=0 0"]
    v6 = answer_lines(SIPP, address="::1")
    assert v6[1] == "o=sip-responder 42 7 IN IP6 ::1" and v6[3] == "c=IN IP6 ::1"


def test_sipp_pcma_offer_gets_pcma_not_pcmu() -> None:
    (audio,) = media_sections(answer_lines(SIPP))
    assert audio == ["m=audio 30000 RTP/AVP 8 101", "a=rtpmap:8 PCMA/8000",
                     "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-11,16", "a=sendrecv"]


def test_baresip_offer_keeps_its_order_numbers_fmtp_and_ptime() -> None:
    (audio,) = media_sections(answer_lines(BARESIP))
    assert audio == [
        "m=audio 30000 RTP/AVP 96 9 0 8 101",
        "a=rtpmap:96 opus/48000/2", "a=fmtp:96 stereo=1;sprop-stereo=1",
        "a=rtpmap:9 G722/8000", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15",
        "a=ptime:20", "a=sendrecv",
    ]


def test_linphone_offer_gets_telephone_event_at_the_rate_of_the_first_codec() -> None:
    lines = answer_lines(LINPHONE)
    (audio,) = media_sections(lines)
    assert audio[0] == "m=audio 30000 RTP/AVP 96 0 8 101"  # opus first: 48 kHz events
    assert "a=rtpmap:101 telephone-event/48000" in audio
    assert not any(line.startswith(("a=rtcp-fb", "a=rtcp-xr", "a=record")) for line in lines)
    (pcmu_only,) = media_sections(answer_lines(LINPHONE, ("PCMU", "telephone-event")))
    assert pcmu_only == ["m=audio 30000 RTP/AVP 0 100", "a=rtpmap:0 PCMU/8000",
                         "a=rtpmap:100 telephone-event/8000", "a=sendrecv"]


def test_twinkle_offer_with_pcma_only_configured() -> None:
    (audio,) = media_sections(answer_lines(TWINKLE, ("PCMA",)))
    assert audio == ["m=audio 30000 RTP/AVP 8", "a=rtpmap:8 PCMA/8000", "a=ptime:20",
                     "a=sendrecv"]


def test_static_payload_types_without_rtpmap_are_known() -> None:
    offer = crlf("""
        v=0
        o=- 1 1 IN IP4 127.0.0.1
        s=-
        c=IN IP4 127.0.0.1
        t=0 0
        m=audio 4000 RTP/AVP 18 0
    """)
    (audio,) = media_sections(answer_lines(offer))
    assert audio == ["m=audio 30000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000", "a=sendrecv"]


def test_every_line_is_answered_in_order_and_the_rest_refused_with_port_0() -> None:
    sections = media_sections(answer_lines(VIDEO_AUDIO, address="::1"))
    assert [s[0] for s in sections] == [
        "m=video 0 RTP/AVP 96", "m=audio 30000 RTP/AVP 0", "m=audio 0 RTP/SAVP 0",
        "m=application 0 UDP/BFCP *"]
    assert sections[1][1:] == ["a=rtpmap:0 PCMU/8000", "a=recvonly"]  # sendonly mirrored
    assert all(len(s) == 1 for s in (sections[0], sections[2], sections[3]))
    assert not any("crypto" in line for s in sections for line in s)


@pytest.mark.parametrize(("offered", "answered"), [
    ("sendrecv", "sendrecv"), ("sendonly", "recvonly"), ("recvonly", "sendonly"),
    ("inactive", "inactive"), (None, "sendrecv")])
def test_direction_is_mirrored_at_session_or_media_level(offered: str | None,
                                                         answered: str) -> None:
    attr = f"a={offered}\n" if offered else ""
    media_level = crlf(f"v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
                       f"m=audio 4000 RTP/AVP 0\n{attr}")
    session_level = crlf(f"v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
                         f"{attr}m=audio 4000 RTP/AVP 0\n")
    for offer in (media_level, session_level):
        assert answer_lines(offer)[-1] == f"a={answered}"
    assert answer_lines(media_level, inactive=True)[-1] == "a=inactive"


def test_nothing_shared_is_none_and_events_or_comfort_noise_alone_do_not_count() -> None:
    for fmts, maps in (("18", ""), ("101 13", "a=rtpmap:101 telephone-event/8000\n")):
        offer = crlf(f"v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
                     f"m=audio 4000 RTP/AVP {fmts}\n{maps}")
        assert sdp.answer(read_offer(offer), (*DEFAULT_CODECS, "CN"), **KW) is None
    no_media = crlf("v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0")
    assert sdp.answer(read_offer(no_media), DEFAULT_CODECS, **KW) is None
    on_hold_port_0 = crlf("v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
                          "m=audio 0 RTP/AVP 0")
    assert sdp.answer(read_offer(on_hold_port_0), DEFAULT_CODECS, **KW) is None


def test_avpf_is_accepted_with_its_profile_and_without_feedback_lines() -> None:
    offer = crlf("v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
                 "m=audio 4000 RTP/AVPF 0\na=rtcp-fb:* nack\na=rtcp-mux")
    (audio,) = media_sections(answer_lines(offer))
    assert audio == ["m=audio 30000 RTP/AVPF 0", "a=rtpmap:0 PCMU/8000", "a=sendrecv"]


def test_audio_target_is_where_the_caller_said_it_receives() -> None:
    assert read_offer(SIPP).audio_target() == ("127.0.0.1", 6000)
    assert read_offer(VIDEO_AUDIO).audio_target() == ("::1", 5000)
    per_media = crlf("v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nt=0 0\n"
                     "m=audio 4000 RTP/AVP 0\nc=IN IP4 127.0.0.9")
    assert read_offer(per_media).audio_target() == ("127.0.0.9", 4000)


def test_delayed_offer_lists_the_configured_codecs() -> None:
    body = sdp.offer(DEFAULT_CODECS, **KW).decode().split("\r\n")
    assert body[:5] == ["v=0", "o=sip-responder 42 7 IN IP4 127.0.0.2", "s=-",
                        "c=IN IP4 127.0.0.2", "t=0 0"]
    assert body[5] == "m=audio 30000 RTP/AVP 0 8 9 111 101"
    assert "a=rtpmap:111 opus/48000/2" in body and "a=fmtp:101 0-16" in body
    assert body[-2:] == ["a=sendrecv", ""]
    # The offer reads back as an offer, and we would accept it ourselves.
    assert sdp.answer(read_offer(sdp.offer(DEFAULT_CODECS, **KW)), DEFAULT_CODECS, **KW)


@pytest.mark.parametrize(("body", "why"), [
    (b"", "v=0"),
    (b"o=- 1 1 IN IP4 127.0.0.1\r\n", "v=0"),
    (b"v=0\r\nm=audio x RTP/AVP 0\r\n", "m= port"),
    (b"v=0\r\nm=audio 99999 RTP/AVP 0\r\n", "m= port"),
    (b"v=0\r\nm=audio 4000 RTP/AVP\r\n", "m= line"),
    (b"v=0\r\nc=IN IP4\r\n", "c= line"),
    (b"v=0\r\nc=XX IP4 1.2.3.4\r\n", "c= line"),
    (b"v=0\r\nm=audio 4000 RTP/AVP 0\r\na=ptime:1" + b"0" * 5000 + b"\r\n", "longer"),
    (b"v=0\r\ngarbage\r\n", "bad SDP line"),
    (b"v=0\r\n\xff\xfe\r\n", "UTF-8"),
    (b"v=0\r\n" + b"m=audio 4000 RTP/AVP 0\r\n" * 17, "m= lines"),
    (b"v=0\r\nm=audio 4000 RTP/AVP " + b"0 " * 65 + b"\r\n", "formats"),
    (b"v=0\r\n" + b"a=x\r\n" * 5000, "larger"),
])
def test_offers_we_cannot_read_say_why(body: bytes, why: str) -> None:
    with pytest.raises(BadSdp, match=why):
        read_offer(body)


def test_attributes_we_cannot_read_are_left_out_not_fatal() -> None:
    offer = crlf("""
        v=0
        o=- 1 1 IN IP4 127.0.0.1
        s=-
        c=IN IP4 127.0.0.1
        t=0 0
        m=audio 4000 RTP/AVP 0 12 96
        a=rtpmap:96 PCMU
        a=rtpmap:12 QCELP/\u00b2
        a=ptime:twenty
    """)
    (audio,) = media_sections(answer_lines(offer))
    assert audio == ["m=audio 30000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000", "a=sendrecv"]


MULTIPART = (b"--unique-boundary-1\r\nContent-Type: application/isup\r\n\r\n\x01\x02\r\n"
             b"--unique-boundary-1\r\nContent-Type: application/sdp\r\n\r\n" + SIPP +
             b"\r\n--unique-boundary-1--\r\n")


def test_the_offer_is_found_alone_or_in_a_multipart_body() -> None:
    assert sdp_of("application/sdp", SIPP) == SIPP
    assert sdp_of("Application/SDP ; charset=utf-8", SIPP) == SIPP
    assert sdp_of('multipart/mixed;boundary="unique-boundary-1"', MULTIPART) == SIPP
    assert sdp_of("multipart/mixed; boundary=unique-boundary-1", MULTIPART) == SIPP
    assert sdp_of("multipart/mixed; boundary=other", MULTIPART) is None
    assert sdp_of("text/plain", SIPP) is None
    assert sdp_of("application/sdp", b"") is None
    assert sdp_of(None, SIPP) is None
    with pytest.raises(BadSdp, match="boundary"):
        sdp_of("multipart/mixed", MULTIPART)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600) | st.lists(st.sampled_from([
    b"v=0", b"m=audio 4000 RTP/AVP 0 8 101", b"m=video 0 RTP/AVP 96", b"c=IN IP4 1.2.3.4",
    b"c=IN IP6 ::1", b"a=rtpmap:101 telephone-event/8000", b"a=rtpmap:0", b"a=sendonly",
    b"a=ptime:20", b"a=fmtp:101 0-15", b"m=audio", b"x", b"a=rtpmap:8 PCMA/8000/1",
    b"\xff", b"", b"m=audio 1 RTP/AVPF 0"]), max_size=20).map(b"\r\n".join))
def test_any_bytes_give_an_answer_none_or_bad_sdp(body: bytes) -> None:
    try:
        offer = read_offer(body)
    except BadSdp:
        return
    got = sdp.answer(offer, DEFAULT_CODECS, **KW)
    if got is not None:
        assert read_offer(got).media  # our answer reads back as SDP
