"""The compiled framer (``_speedups.frame``, responder/_accel/_framing.h) against the pure
Framer: any byte stream, cut anywhere into reads, gives the same frames through both, read
by read; and the cases the C code hands back to Python stop where they should."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responder.sip import framing
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
)

FRAME = framing.FRAME
pytestmark = pytest.mark.skipif(FRAME is None,
                                reason="the compiled framer is not built (or is off)")

OPTIONS = (b"OPTIONS sip:a@test SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK1\r\n"
           b"Call-ID: a@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
INVITE = (b"INVITE sip:a@test SIP/2.0\r\nCall-ID: b@test\r\nl: 5\r\n\r\nv=0\r\n")


def frame(buf: bytes | bytearray, pos: int = 0, crlfs: int = 0
          ) -> tuple[list[Frame], int, int]:
    assert FRAME is not None
    return FRAME(buf, pos, crlfs, PING)


def both(reads: list[bytes]) -> list[list[Frame]]:
    """Each read through a compiled and a pure framer: the same frames, the same state."""
    fast, pure = Framer(), Framer(compiled=False)
    assert fast.compiled and not pure.compiled
    got = []
    for data in reads:
        a, b = fast.feed(data), pure.feed(data)
        assert a == b, (data, a, b)
        assert (fast.buffered, fast.failed) == (pure.buffered, pure.failed)
        got.append(a)
    return got


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# --- any byte stream, cut anywhere ---------------------------------------------------------

# Fragments that reach every branch of the framer: line ends of every kind, the long and
# compact names in any case with spaces and tabs, values good, bad, padded, too large.
fragments = st.sampled_from([
    b"\r\n", b"\n", b"\r", b"\r\n\r\n", b"\n\r\n", b"\n\n", b"OPTIONS sip:a SIP/2.0",
    b"Content-Length", b"content-LENGTH", b"l", b"L", b" ", b"\t", b":", b"0", b"3", b"5",
    b"12", b"0000003", b"999999", b"-1", b"x", b"abc", b"Via: a", b"\r\nl: 3\r\n\r\nabc",
    b"\r\nContent-Length: 0\r\n\r\n", OPTIONS, INVITE,
])


def lines(end: bytes) -> st.SearchStrategy[bytes]:
    name = st.sampled_from([b"Content-Length", b"content-length", b"l", b"L", b"Via", b"X"])
    pad = st.sampled_from([b"", b" ", b"\t", b" \t "])
    value = st.sampled_from([b"0", b"3", b"12", b"003", b"", b"x", b"3x", b"3 3", b"-3",
                             b"000012", b"0000003", b"1234567", b"65535", b"\xb3", b"\x00"])
    line = st.tuples(name, pad, pad, value, pad).map(lambda t: t[0] + t[1] + b":" + t[2]
                                                     + t[3] + t[4])
    return st.lists(line, max_size=4).map(lambda ls: end.join([b"MSG sip:x SIP/2.0", *ls]))


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    end = draw(st.sampled_from([b"\r\n", b"\n"]))
    head = draw(lines(end))
    blank = draw(st.sampled_from([b"\r\n\r\n", b"\n\n", b"\n\r\n", b"\r\n\n"]))
    body = draw(st.binary(max_size=16))
    lead = draw(st.sampled_from([b"", b"\r\n", b"\r\n\r\n", b"\n", b"\r\n\r\n\r\n"]))
    return lead + head + blank + body


streams = st.one_of(
    st.lists(fragments, max_size=14).map(b"".join),
    st.lists(messages(), max_size=5).map(b"".join),
    st.lists(st.one_of(messages(), fragments), max_size=8).map(b"".join),
    st.binary(max_size=300),
)


@settings(max_examples=1000, deadline=None)
@given(streams, st.lists(st.integers(0, 10_000), max_size=12))
def test_any_stream_cut_anywhere_frames_alike_compiled_and_pure(
        data: bytes, cuts: list[int]) -> None:
    whole = both([data])[0]
    pieces = both(cut(data, cuts))
    assert [f for got in pieces for f in got] == whole  # and cut-invariant, as before


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([OPTIONS, INVITE, b"\r\n\r\n", b"\r\n"]), max_size=30),
       st.lists(st.integers(0, 100_000), max_size=20))
def test_pipelined_requests_cut_anywhere_frame_alike(parts: list[bytes], cuts: list[int]
                                                     ) -> None:
    data = b"".join(parts)
    got = [f for fs in both(cut(data, cuts)) for f in fs]
    assert [f for f in got if isinstance(f, bytes)] == [p for p in parts if len(p) > 4]


def test_the_bound_and_past_it_alike() -> None:
    for probe in framing._probes():
        for reads in ([probe], [probe[:100], probe[100:]], [probe[:-1], probe[-1:]]):
            both(reads)
    at, past = framing._probes()[:2]
    assert both([at]) == [[at]]
    assert both([past])[0] == [FrameError(TOO_LARGE, 513, None, past[:past.index(b"\r\n\r\n")])]
    head_only = b"OPTIONS sip:a SIP/2.0\r\nVia: " + b"v" * MAX_MESSAGE
    assert both([head_only[:MAX_MESSAGE], head_only[MAX_MESSAGE:]])[-1] == [
        FrameError(TOO_LARGE, None, None, b"")]


# --- what frame() does itself, and where it hands back -------------------------------------

def test_whole_messages_pings_and_the_compact_form_are_framed_in_c() -> None:
    data = b"\r\n\r\n" + OPTIONS + b"\n\n" + INVITE + b"\r\n" + OPTIONS
    assert frame(data) == ([PING, OPTIONS, PING, INVITE, OPTIONS], len(data), 0)
    assert frame(data + b"\r\n") == ([PING, OPTIONS, PING, INVITE, OPTIONS], len(data) + 2, 1)
    same = OPTIONS.replace(b"Content-Length: 0\r\n", b"Content-Length: 0\r\nl:\t0 \r\n")
    assert frame(same) == ([same], len(same), 0)  # repeated, equal once stripped


def test_a_read_that_is_one_message_is_given_back_uncopied() -> None:
    frames, pos, _ = frame(OPTIONS)
    assert frames[0] is OPTIONS and pos == len(OPTIONS)
    frames, _, _ = frame(bytearray(OPTIONS))
    assert type(frames[0]) is bytes and frames[0] == OPTIONS


def test_another_bytes_like_type_is_handed_back_whole() -> None:
    assert FRAME is not None
    assert FRAME(memoryview(OPTIONS), 0, 1, PING) == ([], 0, 1)  # type: ignore[arg-type]


def test_from_a_position_with_a_line_end_already_seen() -> None:
    data = b"xx\r\n" + OPTIONS
    assert frame(data, 2, 1) == ([PING, OPTIONS], len(data), 0)
    assert frame(bytearray(data), 4, 1) == ([OPTIONS], len(data), 0)


@pytest.mark.parametrize(("tail", "reason"), [
    (OPTIONS.replace(b"Content-Length: 0\r\n", b""), NO_LENGTH),
    (OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 0\r\nl: 1"), BAD_LENGTH),
    (OPTIONS.replace(b"Content-Length: 0", b"Content-Length: -1"), BAD_LENGTH),
    (OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 1234567"), TOO_LARGE),
    (OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 0x"), BAD_LENGTH),
    (OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 65535"), TOO_LARGE),
    (b"\rX", NOT_FRAMED),
])
def test_errors_are_handed_back_to_python(tail: bytes, reason: str) -> None:
    data = OPTIONS + tail
    assert frame(data) == ([OPTIONS], len(OPTIONS), 0)  # stops before the one at fault
    got = both([data])[0]
    assert got[0] == OPTIONS and isinstance(got[1], FrameError) and got[1].reason == reason


@pytest.mark.parametrize("tail", [OPTIONS[:-1], OPTIONS[:30], INVITE[:-2], b"\r"])
def test_what_is_not_whole_yet_is_handed_back_where_it_begins(tail: bytes) -> None:
    data = OPTIONS + tail
    assert frame(data)[:2] == ([OPTIONS], len(OPTIONS))
    fast = Framer()
    assert fast.feed(data) == [OPTIONS] and fast.buffered == len(tail)
    rest = (OPTIONS + INVITE)[len(tail):] if tail != b"\r" else b"\n\r\n"
    assert both([data, rest])[0] == [OPTIONS]


class Real:  # holds the real frame(), as the module does
    frame = staticmethod(FRAME) if FRAME is not None else None


def test_a_mismatched_or_missing_frame_is_not_used() -> None:
    class Wrong:
        @staticmethod
        def frame(buf: bytes | bytearray, pos: int, crlfs: int, ping: object
                  ) -> tuple[list[Frame], int, int]:
            return [], pos, crlfs  # hands everything back: Python frames it all

    class Raising:
        @staticmethod
        def frame(*_: object) -> object:
            raise ValueError("no")

    assert framing._check(Real) is None
    assert framing._check(object()) == "no frame() (built from older source?)"
    assert framing._check(Raising()) is not None and "raised" in str(framing._check(Raising()))

    class Short:
        @staticmethod
        def frame(buf: bytes | bytearray, pos: int, crlfs: int, ping: object
                  ) -> tuple[list[Frame], int, int]:
            return [bytes(buf)], len(buf), 0  # one message, whatever it is

    assert "differently" in str(framing._check(Short()))
    assert framing._check(Wrong()) is None  # handing everything back is never wrong


def test_pure_when_asked() -> None:
    code = "from responder.sip import framing; print(framing.FRAME, framing.Framer().compiled)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "SIP_RESPONDER_PURE": "1"}, timeout=60)
    assert done.stdout.split() == ["None", "False"], done.stderr
