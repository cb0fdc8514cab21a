"""The media table (responder.core.media), in memory: matching, echo, facts, DTMF, bounds."""

from __future__ import annotations

import struct

from responder.core.media import DIGITS_LIMIT, Media
from responder.rules.model import ECHO, SINK

CALLER = ("127.0.0.1", 6000)


def rtp(pt: int = 0, seq: int = 1, ts: int = 160, ssrc: int = 0x11223344,
        payload: bytes = b"\xff" * 160, marker: bool = False, csrc: int = 0) -> bytes:
    return (struct.pack("!BBHII", 0x80 | csrc, (0x80 if marker else 0) | pt, seq, ts, ssrc)
            + b"\x00\x00\x00\x01" * csrc + payload)


def dtmf(event: int, ts: int, end: bool = False, pt: int = 101) -> bytes:
    return rtp(pt=pt, ts=ts, payload=struct.pack("!BBH", event, 0x80 if end else 0, 160))


def test_echo_goes_to_the_packets_source_with_a_transformed_ssrc() -> None:
    media = Media(ssrc_key=0xA5A5A5A5)
    media.expect("call-1", CALLER, ECHO, 101)
    packet = rtp()
    echo = media.packet(packet, CALLER, 1.0)
    assert echo is not None and echo.dest == CALLER
    assert echo.data[:8] == packet[:8] and echo.data[12:] == packet[12:]
    assert struct.unpack("!I", echo.data[8:12])[0] == 0x11223344 ^ 0xA5A5A5A5
    assert media.ssrc_of_echo(0x11223344) != 0x11223344
    assert Media(ssrc_key=0).ssrc_of_echo(5) != 5  # a zero key would echo the caller's own


def test_a_source_other_than_the_sdps_is_learnt_by_port_and_answered_at_the_source() -> None:
    media = Media(1)
    media.expect("call-1", ("192.0.2.7", 6000), ECHO, None)  # the SDP names another host
    nat = ("127.0.0.1", 6000)
    echo = media.packet(rtp(), nat, 1.0)
    assert echo is not None and echo.dest == nat  # never to the SDP's address
    facts = media.facts("call-1")
    assert facts is not None and facts.packets_in == 1 and nat in facts.sources


def test_a_packet_matching_no_call_is_counted_and_dropped() -> None:
    media = Media(1)
    media.expect("call-1", CALLER, ECHO, None)
    assert media.packet(rtp(), ("127.0.0.1", 7000), 1.0) is None
    assert media.packet(b"\x00" * 20, ("127.0.0.1", 6001), 1.0) is None  # not RTP
    assert media.unmatched == 2
    assert media.packet(b"\x00" * 20, CALLER, 1.0) is None  # the call's, but not RTP
    facts = media.facts("call-1")
    assert facts is not None and (facts.packets_in, facts.packets_out) == (1, 0)


def test_facts_count_both_ways_and_remember_payload_types_and_times() -> None:
    media = Media(1)
    media.expect("call-1", CALLER, ECHO, 101)
    for i, pt in enumerate((0, 0, 8, 0)):
        media.packet(rtp(pt=pt, seq=i), CALLER, 10.0 + i)
    facts = media.facts("call-1")
    assert facts is not None
    assert facts.facts() == {
        "mode": "echo", "packets_in": 4, "bytes_in": 4 * 172, "packets_out": 4,
        "bytes_out": 4 * 172, "rtcp": 0, "payload_types": [0, 8], "first": 10.0,
        "last": 13.0, "dtmf": ""}


def test_sink_counts_and_sends_nothing_rtcp_is_counted_not_echoed() -> None:
    media = Media(1)
    media.expect("call-1", CALLER, SINK, None)
    assert media.packet(rtp(), CALLER, 1.0) is None
    media.expect("call-2", ("127.0.0.1", 6002), ECHO, None)
    rtcp_rr = struct.pack("!BBHI", 0x80, 201, 1, 0x11223344)
    assert media.packet(rtcp_rr, ("127.0.0.1", 6002), 1.0) is None
    one, two = media.facts("call-1"), media.facts("call-2")
    assert one is not None and (one.packets_in, one.packets_out) == (1, 0)
    assert two is not None and (two.rtcp, two.packets_out) == (1, 0)


def test_dtmf_digits_once_per_event_whatever_the_packets() -> None:
    media = Media(1)
    media.expect("call-1", CALLER, ECHO, 101)
    for event, ts in ((1, 1000), (2, 2000), (3, 3000), (11, 4000), (10, 5000)):
        for _ in range(3):
            media.packet(dtmf(event, ts), CALLER, 1.0)
        for _ in range(3):  # the end packet is sent three times (RFC 4733 §2.5.1.4)
            media.packet(dtmf(event, ts, end=True), CALLER, 1.0)
    media.packet(rtp(pt=0), CALLER, 1.0)  # audio is not an event
    facts = media.facts("call-1")
    assert facts is not None and facts.digits == "123#*"


def test_dtmf_after_csrcs_and_on_another_payload_type_is_not_a_digit() -> None:
    media = Media(1)
    media.expect("call-1", CALLER, ECHO, 96)
    media.packet(rtp(pt=96, ts=1, csrc=2, payload=struct.pack("!BBH", 5, 0, 0)), CALLER, 1.0)
    media.packet(dtmf(7, 2, pt=101), CALLER, 1.0)  # 101 is not this call's event type
    facts = media.facts("call-1")
    assert facts is not None and facts.digits == "5"


def test_tables_are_bounded() -> None:
    media = Media(1, limit=3)
    for i in range(10):
        media.expect(f"call-{i}", ("127.0.0.1", 6000 + i), ECHO, 101)
    assert list(media.calls) == ["call-7", "call-8", "call-9"] and media.evicted == 7
    assert len(media._by_source) == 3 and len(media._by_port) == 3
    call = media.facts("call-9")
    assert call is not None
    for i in range(DIGITS_LIMIT + 10):
        media.packet(dtmf(1, 10 + i), ("127.0.0.1", 6009), 1.0)
    assert len(call.digits) == DIGITS_LIMIT
    for port in range(20):  # spoofed sources on the call's port: at most a few learnt
        media.packet(rtp(), (f"127.0.0.{port + 2}", 6009), 1.0)
    assert len(call.sources) <= 4


def test_re_expecting_a_call_moves_it_to_its_new_address() -> None:
    media = Media(1)
    media.expect("call-1", CALLER, ECHO, None)
    media.expect("call-1", ("127.0.0.1", 7000), SINK, None)  # a re-INVITE moved the media
    assert media.packet(rtp(), ("127.0.0.1", 7000), 1.0) is None  # sink now
    assert media.packet(rtp(), CALLER, 1.0) is None
    assert media.unmatched == 1
