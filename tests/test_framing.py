"""The stream framer (RFC 3261 §18.3, RFC 5626 §3.5.1), fed every way: no sockets."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sip import read_response, request

from responder.sip.builder import Context, Identity
from responder.sip.framing import (
    BAD_LENGTH,
    MAX_MESSAGE,
    NO_LENGTH,
    NOT_FRAMED,
    PING,
    TOO_LARGE,
    Frame,
    FrameError,
    Framer,
    is_ping,
    refusal,
)
from responder.sip.seeded import Seeded

OPTIONS = request("OPTIONS", call_id="a@test")
INVITE = request("INVITE", call_id="b@test", body="v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n")


def feed_all(chunks: list[bytes]) -> list[Frame]:
    framer = Framer()
    out: list[Frame] = []
    for chunk in chunks:
        out += framer.feed(chunk)
    return out


def bytewise(data: bytes) -> list[bytes]:
    return [data[i:i + 1] for i in range(len(data))]


def errors(frames: list[Frame]) -> list[FrameError]:
    return [f for f in frames if isinstance(f, FrameError)]


def test_a_message_fed_whole_comes_out_whole() -> None:
    assert feed_all([INVITE]) == [INVITE]


def test_a_message_fed_byte_by_byte_comes_out_once_at_its_last_byte() -> None:
    framer = Framer()
    got = [framer.feed(b) for b in bytewise(INVITE)]
    assert got[-1] == [INVITE]
    assert all(not g for g in got[:-1])
    assert framer.buffered == 0


def test_two_messages_in_one_segment_and_a_third_begun() -> None:
    framer = Framer()
    assert framer.feed(OPTIONS + INVITE + INVITE[:10]) == [OPTIONS, INVITE]
    assert framer.buffered == 10
    assert framer.feed(INVITE[10:]) == [INVITE]


def test_crlfs_between_messages_are_skipped_and_a_double_crlf_is_a_ping() -> None:
    assert feed_all([b"\r\n" + OPTIONS + b"\r\n\r\n" + INVITE]) == [OPTIONS, PING, INVITE]
    assert feed_all([b"\r\n\r\n\r\n\r\n"]) == [PING, PING]
    assert feed_all([b"\r", b"\n", b"\r", b"\n"]) == [PING]  # a ping split anywhere
    assert feed_all([b"\r\n", OPTIONS]) == [OPTIONS]  # one CRLF: skipped, no pong


def test_a_split_inside_the_content_length_header() -> None:
    at = INVITE.index(b"Content-Length: ") + len(b"Content-Le")
    assert feed_all([INVITE[:at], INVITE[at:at + 7], INVITE[at + 7:]]) == [INVITE]
    digits = INVITE.index(b"Content-Length: ") + len(b"Content-Length: 3")
    assert feed_all([INVITE[:digits], INVITE[digits:]]) == [INVITE]


def test_compact_form_and_odd_case_and_lf_only_line_ends() -> None:
    compact = INVITE.replace(b"Content-Length:", b"l  :")
    assert feed_all(bytewise(compact)) == [compact]
    odd = INVITE.replace(b"Content-Length:", b"CONTENT-length:")
    assert feed_all([odd + odd]) == [odd, odd]
    head, _, body = INVITE.partition(b"\r\n\r\n")
    lf = head.replace(b"\r\n", b"\n") + b"\n\n" + body
    assert feed_all([lf + lf]) == [lf, lf]


def test_no_content_length_is_one_error_naming_the_400_and_then_nothing() -> None:
    bare = OPTIONS.replace(b"Content-Length: 0\r\n", b"")
    framer = Framer()
    out = framer.feed(OPTIONS + bare + OPTIONS)
    assert out[0] == OPTIONS
    assert out[1:] == [FrameError(NO_LENGTH, 400, "Missing Content-Length",
                                  bare[:-4])]
    assert framer.failed and framer.feed(OPTIONS) == [] and framer.buffered == 0


@pytest.mark.parametrize("value", [b"-1", b"abc", b"", b"1.5", b"0x10", b"\xd9\xa3",
                                   b"5 5"])
def test_negative_or_garbage_content_length_is_a_400(value: bytes) -> None:
    bad = OPTIONS.replace(b"Content-Length: 0", b"Content-Length: " + value)
    (error,) = feed_all([bad])
    assert isinstance(error, FrameError)
    assert (error.reason, error.status, error.phrase) == (BAD_LENGTH, 400,
                                                         "Bad Content-Length")


def test_conflicting_content_lengths_are_a_400() -> None:
    bad = OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 0\r\nl: 3")
    (error,) = feed_all([bad])
    assert isinstance(error, FrameError) and error.phrase == "Conflicting Content-Length"


def test_a_body_past_the_bound_is_a_513_before_any_of_it_is_buffered() -> None:
    big = OPTIONS.replace(b"Content-Length: 0", b"Content-Length: %d" % MAX_MESSAGE)
    framer = Framer()
    (error,) = framer.feed(big)
    assert isinstance(error, FrameError) and (error.reason, error.status) == (TOO_LARGE, 513)
    huge = OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 99999999999999999999")
    (error,) = feed_all([huge])
    assert isinstance(error, FrameError) and error.status == 513


def test_a_header_section_that_never_ends_is_bounded() -> None:
    framer = Framer()
    line = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    framer.feed(b"OPTIONS sip:a SIP/2.0\r\n")
    out: list[Frame] = []
    while not out:
        out = framer.feed(line)
        assert framer.buffered <= MAX_MESSAGE
    assert out == [FrameError(TOO_LARGE, None, None, b"")]


def test_the_largest_message_passes() -> None:
    head = OPTIONS.replace(b"Content-Length: 0", b"Content-Length: %d" % 60000)
    big = head + b"x" * 60000
    assert feed_all([big[:30000], big[30000:]]) == [big]


def test_a_lone_cr_between_messages_is_not_framed() -> None:
    (error,) = feed_all([b"\rX"])
    assert isinstance(error, FrameError) and error.reason == NOT_FRAMED


def test_websocket_pings_are_line_ends_only() -> None:
    assert is_ping(b"\r\n\r\n") and is_ping(b"\n\n")
    assert not is_ping(b"\r\n") and not is_ping(OPTIONS) and not is_ping(b"")


def test_the_missing_content_length_answer_is_built_like_any_answer() -> None:
    bare = OPTIONS.replace(b"Content-Length: 0\r\n", b"")
    (error,) = feed_all([bare])
    assert isinstance(error, FrameError)
    ctx = Context(Identity(), Seeded(1), 0.0, ("127.0.0.1", 40000), ("127.0.0.1", 5060))
    data = refusal(error, ctx)
    assert data is not None
    resp = read_response(data)
    assert (resp.status, resp.reason) == (400, "Missing Content-Length")
    assert resp.one("Call-ID") == "a@test"
    assert "received=127.0.0.1" in resp.one("Via")
    assert resp.to_tag == Seeded(1).to_tag("a@test", "ft-1")
    # nothing to answer: not a request, or no status
    assert refusal(FrameError(NO_LENGTH, 400, "Missing Content-Length",
                              b"SIP/2.0 200 OK\r\nVia: x"), ctx) is None
    assert refusal(FrameError(TOO_LARGE, None, None, b""), ctx) is None


# --- any byte stream, cut anywhere -------------------------------------------------------

def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


pieces = st.sampled_from([OPTIONS, INVITE, b"\r\n", b"\r\n\r\n", b"\n",
                          OPTIONS.replace(b"Content-Length: 0\r\n", b""),
                          OPTIONS.replace(b"Content-Length: 0", b"l: x")])


@settings(max_examples=300, deadline=None)
@given(st.lists(pieces, max_size=8), st.lists(st.integers(0, 10_000), max_size=12))
def test_sip_streams_cut_anywhere_frame_alike(parts: list[bytes], cuts: list[int]) -> None:
    data = b"".join(parts)
    whole = feed_all([data])
    assert feed_all(cut(data, cuts)) == whole
    assert len(errors(whole)) <= 1 and (not errors(whole) or
                                        isinstance(whole[-1], FrameError))
    good = [p for p in whole if isinstance(p, bytes)]
    expected = [p for p in parts if p in (OPTIONS, INVITE)]
    assert good == expected[:len(good)]
    if not errors(whole):
        assert good == expected


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.lists(st.integers(0, 10_000), max_size=12))
def test_any_bytes_cut_anywhere_give_the_same_frames_or_one_clean_error(
        data: bytes, cuts: list[int]) -> None:
    whole = feed_all([data])
    assert feed_all(cut(data, cuts)) == whole
    assert all(isinstance(f, bytes | FrameError) or f is PING for f in whole)
    errs = errors(whole)
    assert len(errs) <= 1 and (not errs or whole[-1] is errs[0])
