"""The parser fed every way (STYLE.md "Feed input every way in tests").

* Hypothesis: any bytes, bytes spliced into valid requests, and SIP-looking requests built
  from pieces -> a Request or the one Discard error, nothing else; a Request always carries
  a top Via and a Problem that is a real status, and a request without a Problem has its
  essentials.
* Mutations of a few valid requests: every truncation, LF-only and mixed line ends,
  compact names, odd case, folded lines, trailing junk, leading CRLFs -> the same essentials.
* Every input here is also read by the pure-Python parser alone (``parse_python``): the
  compiled fast path, when built, must give an equal Request or the same Discard.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responder.sip import errors
from responder.sip.errors import Discard, Problem
from responder.sip.message import Request
from responder.sip.parser import parse, parse_python

FAST = settings(max_examples=300, deadline=None, database=None)


# ------------------------------------------------------------------ invariants


def outcome(data: bytes) -> Request | Discard:
    """Parse ``data``; any exception other than Discard propagates and fails the test.

    The same datagram read by the pure-Python parser alone must give the same outcome.
    """
    result = _outcome(parse, data)
    python = _outcome(parse_python, data)
    if isinstance(result, Discard):
        assert isinstance(python, Discard) and python.reason == result.reason, data
    else:
        assert result == python, data
    return result


def _outcome(parser: Callable[[bytes], Request], data: bytes) -> Request | Discard:
    try:
        return parser(data)
    except Discard as exc:
        return exc


def check(data: bytes) -> Request | Discard:
    """Parse ``data`` and assert everything that holds for any input."""
    result = outcome(data)
    if isinstance(result, Discard):
        assert result.reason in errors.REASONS
        again = outcome(data)
        assert isinstance(again, Discard) and again.reason == result.reason
        return result
    assert isinstance(result, Request)
    p = result.problem
    if p is not None:
        assert isinstance(p, Problem)
        assert isinstance(p.status, int) and 100 <= p.status <= 699
        assert p.reason is None or (isinstance(p.reason, str) and p.reason)
    # Answerable means: a request line and a top Via with a sent-by.
    assert isinstance(result.top_via.host, str) and result.top_via.host
    assert result.top_via.port is None or 0 <= result.top_via.port <= 99999
    assert result.vias and result.vias[0].startswith(result.top_via.value)
    assert result.body in data
    assert all(h.key == h.key.lower() and h.name for h in result.headers)
    if p is None:
        # Nothing is missing or inconsistent in a request the parser calls well formed.
        assert result.version.upper() == "SIP/2.0"
        assert None not in (result.from_, result.to, result.call_id, result.cseq)
        assert re.fullmatch(r"[0-9]+[ \t]+" + re.escape(result.method), result.cseq or "")
        assert 0 <= result.cseq_num <= 2**32 - 1
    # Same bytes, same answer (the header-name cache must not change anything).
    assert outcome(data) == result
    return result


@given(st.binary(max_size=2000))
@FAST
def test_any_bytes_give_a_request_or_a_discard(data: bytes) -> None:
    check(data)


# ------------------------------------------------------------------ the valid requests


@dataclass(frozen=True)
class Msg:
    name: str
    start: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""


def sdp() -> bytes:
    return (
        b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\n"
        b"c=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
    )


OPTIONS = Msg(
    "options",
    "OPTIONS sip:1000@lab.example SIP/2.0",
    (
        ("Via", "SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-opt-1;rport"),
        ("Max-Forwards", "70"),
        ("From", '"Alice" <sip:alice@client.example>;tag=ft-1'),
        ("To", "<sip:1000@lab.example>"),
        ("Call-ID", "opt-1@client.example"),
        ("CSeq", "1 OPTIONS"),
        ("Accept", "application/sdp"),
        ("Content-Length", "0"),
    ),
)
INVITE = Msg(
    "invite-sdp",
    "INVITE sip:bob@lab.example SIP/2.0",
    (
        ("Via", "SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-inv-1"),
        ("Via", "SIP/2.0/TCP proxy.example;branch=z9hG4bK-p1;received=192.0.2.1"),
        ("Max-Forwards", "70"),
        ("From", "Alice <sip:alice@client.example>;tag=ft-2"),
        ("To", '"Bob" <sip:bob@lab.example>'),
        ("Call-ID", "inv-1@client.example"),
        ("CSeq", "314159 INVITE"),
        ("Contact", "<sip:alice@192.0.2.10:5062>"),
        ("Supported", "100rel, timer"),
        ("Require", "timer"),
        ("Timestamp", "54"),
        ("Subject", "lunch at noon"),
        ("Content-Type", "application/sdp"),
        ("Content-Length", str(len(sdp()))),
    ),
    sdp(),
)
REGISTER = Msg(
    "register-two-contacts",
    "REGISTER sip:lab.example SIP/2.0",
    (
        ("Via", "SIP/2.0/UDP [2001:db8::10]:5062;rport;branch=z9hG4bK-reg-1"),
        ("Max-Forwards", "70"),
        ("From", "<sip:1000@lab.example>;tag=ft-3"),
        ("To", "<sip:1000@lab.example>"),
        ("Call-ID", "reg-1@client.example"),
        ("CSeq", "2 REGISTER"),
        ("Contact", "<sip:1000@192.0.2.10:5062>;expires=3600"),
        ("Contact", '"Desk" <sip:1000@192.0.2.11>;q=0.5, <sip:1000@192.0.2.12>'),
        ("Expires", "3600"),
        ("Content-Length", "0"),
    ),
)
MESSAGES = [pytest.param(m, id=m.name) for m in (OPTIONS, INVITE, REGISTER)]

COMPACT = {"Via": "v", "From": "f", "To": "t", "Call-ID": "i", "Contact": "m",
           "Content-Length": "l", "Content-Type": "c", "Supported": "k", "Subject": "s"}


def assemble(
    msg: Msg,
    headers: list[str] | None = None,
    eols: list[str] | None = None,
) -> bytes:
    """The request's bytes: start line, header lines, empty line, body.

    ``eols`` gives the line end after the start line, each header line and the empty
    line (len(headers) + 2 entries); CRLF everywhere by default.
    """
    lines = [msg.start, *(headers if headers is not None else header_lines(msg)), ""]
    ends = eols if eols is not None else ["\r\n"] * len(lines)
    assert len(ends) == len(lines)
    return "".join(line + end for line, end in zip(lines, ends, strict=True)).encode() + msg.body


def header_lines(msg: Msg, rename: dict[str, str] | None = None) -> list[str]:
    names = rename or {}
    return [f"{names.get(n, n)}: {v}" for n, v in msg.headers]


def ws(text: str | None) -> str | None:
    return None if text is None else " ".join(text.split())


def essentials(r: Request) -> dict[str, object]:
    """What must not change when the same request is written another way.

    Values are compared with whitespace runs collapsed: unfolding keeps the whitespace
    that started the continuation line.
    """
    tv = r.top_via
    return {
        "request-line": (r.method, r.uri, r.version),
        "vias": [ws(v) for v in r.vias],
        "top_via": (tv.host, tv.port, tv.branch, tv.rport, tv.rport_empty, tv.received),
        "from": ws(r.from_),
        "to": ws(r.to),
        "call_id": r.call_id,
        "cseq": (ws(r.cseq), r.cseq_num),
        "tags": (r.from_tag, r.to_tag),
        "users": (r.from_user, r.to_user, r.target_user),
        "require": r.require,
        "timestamp": r.timestamp,
        "body": r.body,
        "problem": r.problem,
        "headers": [(h.key, ws(h.value)) for h in r.headers],
    }


def parsed(data: bytes) -> Request:
    result = check(data)
    assert isinstance(result, Request), f"discarded: {result!r}"
    return result


@pytest.mark.parametrize("msg", MESSAGES)
def test_the_valid_requests_are_valid(msg: Msg) -> None:
    r = parsed(assemble(msg))
    assert r.problem is None
    assert r.method == msg.start.split()[0]
    assert r.body == msg.body
    assert [(h.name, h.value) for h in r.headers] == list(msg.headers)


@pytest.mark.parametrize("msg", MESSAGES)
def test_every_truncation(msg: Msg) -> None:
    data = assemble(msg)
    head_end = data.index(b"\r\n\r\n") + 4
    via = data.index(b"\r\nVia: SIP/2.0/") + len(b"\r\nVia: SIP/2.0/UDP ")
    for n in range(len(data) + 1):
        result = check(data[:n])
        if n <= via:
            assert isinstance(result, Discard), (n, data[:n])
        if head_end <= n < len(data):
            assert isinstance(result, Request), (n, data[:n])
            assert result.problem == Problem(400, "Content-Length Larger Than Body"), n
    assert parsed(data).problem is None


@pytest.mark.parametrize("msg", MESSAGES)
def test_lf_only_line_ends(msg: Msg) -> None:
    n = len(msg.headers) + 2
    lf = assemble(msg, eols=["\n"] * n)
    assert b"\r\n" not in lf[: len(lf) - len(msg.body)]
    assert essentials(parsed(lf)) == essentials(parsed(assemble(msg)))


@pytest.mark.parametrize("msg", MESSAGES)
def test_alternating_line_ends(msg: Msg) -> None:
    n = len(msg.headers) + 2
    want = essentials(parsed(assemble(msg)))
    for first, second in (("\r\n", "\n"), ("\n", "\r\n")):
        eols = [first if i % 2 == 0 else second for i in range(n)]
        assert essentials(parsed(assemble(msg, eols=eols))) == want, eols


@pytest.mark.parametrize("msg", MESSAGES)
@given(data=st.data())
@FAST
def test_mixed_line_ends(msg: Msg, data: st.DataObject) -> None:
    n = len(msg.headers) + 2
    eols = data.draw(st.lists(st.sampled_from(["\r\n", "\n"]), min_size=n, max_size=n))
    assert essentials(parsed(assemble(msg, eols=eols))) == essentials(parsed(assemble(msg)))


@pytest.mark.parametrize("msg", MESSAGES)
def test_compact_header_names(msg: Msg) -> None:
    compact = assemble(msg, header_lines(msg, COMPACT))
    r = parsed(compact)
    assert essentials(r) == essentials(parsed(assemble(msg)))
    assert {h.name for h in r.headers} & set(COMPACT) == set()


def mixed_case(name: str) -> str:
    return "".join(c.upper() if i % 2 else c.lower() for i, c in enumerate(name))


@pytest.mark.parametrize("msg", MESSAGES)
@pytest.mark.parametrize("case", [str.lower, str.upper, mixed_case], ids=["lower", "upper",
                                                                          "mixed"])
def test_header_names_in_odd_case(msg: Msg, case: object) -> None:
    assert callable(case)
    rename = {n: case(n) for n, _ in msg.headers}
    r = parsed(assemble(msg, header_lines(msg, rename)))
    assert essentials(r) == essentials(parsed(assemble(msg)))
    assert [h.name for h in r.headers] == [case(n) for n, _ in msg.headers]


@pytest.mark.parametrize("msg", MESSAGES)
def test_each_header_folded(msg: Msg) -> None:
    original = parsed(assemble(msg))
    want = essentials(original)
    plain = header_lines(msg)
    for i, (name, value) in enumerate(msg.headers):
        folds = [f"{name}:\r\n {value}"]  # the whole value on a continuation line
        if " " in value:
            folds.append(f"{name}: " + value.replace(" ", "\r\n\t ", 1))  # fold inside it
        for folded in folds:
            lines = [*plain[:i], folded, *plain[i + 1 :]]
            r = parsed(assemble(msg, lines))
            assert essentials(r) == want, folded
    # The first value keeps its branch and host when folded between them.
    lines = [plain[0].replace(";", "\r\n ;", 1), *plain[1:]]
    tv = parsed(assemble(msg, lines)).top_via
    assert (tv.host, tv.branch) == (original.top_via.host, original.top_via.branch)
    assert tv.branch is not None


@pytest.mark.parametrize("msg", MESSAGES)
@given(junk=st.binary(min_size=1, max_size=200))
@FAST
def test_trailing_junk_after_the_body(msg: Msg, junk: bytes) -> None:
    r = parsed(assemble(msg) + junk)
    assert r.body == msg.body
    assert essentials(r) == essentials(parsed(assemble(msg)))


@pytest.mark.parametrize("msg", MESSAGES)
@given(lead=st.lists(st.sampled_from([b"\r\n", b"\n"]), min_size=1, max_size=6))
@FAST
def test_leading_crlfs(msg: Msg, lead: list[bytes]) -> None:
    r = parsed(b"".join(lead) + assemble(msg))
    assert essentials(r) == essentials(parsed(assemble(msg)))


# ------------------------------------------------------------------ bytes into valid requests


@pytest.mark.parametrize("msg", MESSAGES)
@given(data=st.data())
@FAST
def test_spliced_bytes(msg: Msg, data: st.DataObject) -> None:
    base = assemble(msg)
    at = data.draw(st.integers(0, len(base)))
    cut = data.draw(st.integers(0, 8))
    chunk = data.draw(st.binary(max_size=16) | st.sampled_from(
        [b"\r\n", b"\n", b"\r\n ", b":", b";", b";;", b",", b'"', b"<", b">", b"\x00", b"\xff",
         b"0" * 12, b"-1", b" ", b"\t", b"@", b"[", b"]"]))
    check(base[:at] + chunk + base[at + cut :])


# ------------------------------------------------------------------ SIP-looking requests

METHODS = ["INVITE", "ACK", "OPTIONS", "BYE", "CANCEL", "REGISTER", "SUBSCRIBE", "NOTIFY",
           "MESSAGE", "INFO", "PRACK", "UPDATE", "REFER", "PUBLISH", "FOO", "invite"]
URIS = ["sip:1000@lab.example", "sip:lab.example", "sips:bob@[2001:db8::1]:5061;transport=tls",
        "tel:+15551234", "foo:x", "<sip:a@b>", "sip:a@h?x=y", "sip:a@2001:db8::1", "sip:",
        "*", "sip:%31000@lab.example;user=phone"]
VERSIONS = ["SIP/2.0", "SIP/2.0", "SIP/2.0", "SIP/2.0", "sip/2.0", "SIP/3.0"]
BAD_VERSIONS = ["HTTP/1.1", "SIP/2", "SIP/2.0/UDP", ""]
ALPHABET = 'aZ09.-_@;,"<>:/= \t\r\n\\é\x00'
JUNK = st.text(alphabet=ALPHABET, max_size=30)
GOOD = {
    "via": ["SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport",
            "SIP/2.0/TCP [2001:db8::1];received=192.0.2.9;branch=z9hG4bK2",
            "SIP / 2.0 / UDP h.example ; branch = z9hG4bK3",
            "SIP/2.0/UDP a;branch=1, SIP/2.0/UDP b;branch=2"],
    "from": ['"A" <sip:a@h>;tag=1', "sip:a@h;tag=2", "<tel:+1>;tag=3", 'B <sips:b@h>'],
    "to": ["<sip:1000@lab.example>", '"B" <sip:b@h>;tag=9', "sip:c@h", "<tel:+1>"],
    "call-id": ["abc@h", "x", "a-b.c!d"],
    "contact": ["<sip:a@h>;expires=60", "*", '"D" <sip:d@h>;q=0.5, <sip:e@h>', "sip:f@h"],
    "require": ["100rel", "timer, 100rel", ""],
    "supported": ["", "timer", "100rel, timer"],
    "timestamp": ["54", "54.1 0.2"],
    "max-forwards": ["70", "0"],
    "expires": ["3600", "0"],
}
NAMES = {
    "via": ["Via", "v", "VIA", "Via "], "from": ["From", "f", "FROM"], "to": ["To", "t", "TO "],
    "call-id": ["Call-ID", "i", "call-id"], "cseq": ["CSeq", "cseq", "CSEQ "],
    "content-length": ["Content-Length", "l", "content-length"],
    "contact": ["Contact", "m"], "require": ["Require"], "supported": ["Supported", "k"],
    "timestamp": ["Timestamp"], "max-forwards": ["Max-Forwards"], "expires": ["Expires"],
}
ESSENTIAL = ["via", "from", "to", "call-id", "cseq"]


def mostly(good: st.SearchStrategy[str], other: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``good`` about five times in six: deep paths need most pieces right."""
    return st.sampled_from([True] * 5 + [False]).flatmap(lambda g: good if g else other)


@st.composite
def sip_looking(draw: st.DrawFn) -> bytes:
    method = draw(mostly(st.sampled_from(METHODS), st.text("AZaz-!(", min_size=1, max_size=8)))
    uri = draw(mostly(st.sampled_from(URIS), JUNK))
    version = draw(mostly(st.sampled_from(VERSIONS), st.sampled_from(BAD_VERSIONS) | JUNK))
    sep = draw(mostly(st.just(" "), st.sampled_from(["  ", "\t", " \t "])))
    start = f"{method}{sep}{uri}{sep}{version}"
    body = draw(st.binary(max_size=64))

    def value(key: str) -> str:
        if key == "cseq":
            n = draw(st.sampled_from([0, 1, 9, 2**32 - 1, 2**32]) | st.integers(0, 2**40))
            good = [f"{n} {method}", f"{n:05d} {method}", f"{n} {draw(st.sampled_from(METHODS))}"]
        elif key == "content-length":
            good = [str(len(body)), str(max(len(body) - 3, 0)), str(len(body) + 1), "-1"]
        else:
            good = GOOD.get(key, ["x"])
        return draw(mostly(st.sampled_from(good),
                           JUNK | st.tuples(st.sampled_from(good), JUNK).map("".join)))

    lines: list[str] = []
    for key in [*ESSENTIAL, *draw(st.lists(st.sampled_from(sorted(NAMES)), max_size=6))]:
        how = draw(mostly(st.just("good"), st.sampled_from(["omit", "dup", "junk-name"])))
        if how == "omit":
            continue
        count = 2 if how == "dup" else 1
        for _ in range(count):
            name = draw(st.sampled_from(NAMES[key]))
            if how == "junk-name":
                name = draw(JUNK)
            colon = draw(st.sampled_from([":", ":", ": ", " : ", ":  "]))
            lines.append(f"{name}{colon}{value(key)}")
    lines = draw(st.permutations(lines))
    if draw(st.booleans()):
        lines.append(f"Content-Length: {draw(st.sampled_from([len(body), 0, len(body) + 5]))}")
    eols = [draw(mostly(st.sampled_from(["\r\n", "\n"]), st.just("\r\n")))]
    eols += draw(st.lists(mostly(st.sampled_from(["\r\n", "\n"]), st.sampled_from(["\r\n ",
                                                                                    "\r\n\t"])),
                          min_size=len(lines), max_size=len(lines)))
    blank = draw(st.sampled_from(["\r\n", "\n", "", "\r\n\r\n"]))
    lead = draw(st.sampled_from(["", "", "\r\n", "\n\n"]))
    text = lead + "".join(line + end for line, end in zip([start, *lines], eols, strict=True))
    return text.encode("utf-8", "surrogateescape") + blank.encode() + body


@given(sip_looking())
@FAST
def test_sip_looking_requests(data: bytes) -> None:
    check(data)


@st.composite
def well_formed(draw: st.DrawFn) -> tuple[bytes, dict[str, object]]:
    """A request with every essential right, written with random but legal choices."""
    token = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~",
                    min_size=1, max_size=12).filter(lambda t: "%" not in t)
    method = draw(st.sampled_from(METHODS[:-2]))
    user = draw(st.none() | token)
    host = draw(st.sampled_from(["lab.example", "192.0.2.1", "[2001:db8::1]"]))
    port = draw(st.none() | st.integers(1, 65535))
    sent_by = host + (f":{port}" if port is not None else "")
    branch = "z9hG4bK" + draw(token)
    rport = draw(st.booleans())
    from_tag = draw(token)
    to_tag = draw(st.none() | token)
    call_id = draw(token) + draw(st.sampled_from(["", "@h.example"]))
    cseq = draw(st.integers(0, 2**32 - 1))
    body = draw(st.binary(max_size=100))
    compact = draw(st.booleans())
    eol = draw(st.sampled_from(["\r\n", "\n"]))
    uri = f"sip:{user}@lab.example" if user else "sip:lab.example"
    to_user = draw(token)

    def name(long: str) -> str:
        return COMPACT.get(long, long) if compact else long

    lines = [
        f"{method} {uri} SIP/2.0",
        f"{name('Via')}: SIP/2.0/UDP {sent_by};branch={branch}" + (";rport" if rport else ""),
        f"{name('From')}: \"Caller\" <sip:caller@client.example>;tag={from_tag}",
        f"{name('To')}: <sip:{to_user}@lab.example>" + (f";tag={to_tag}" if to_tag else ""),
        f"{name('Call-ID')}: {call_id}",
        f"CSeq: {cseq} {method}",
        f"{name('Content-Length')}: {len(body)}",
    ]
    data = (eol.join(lines) + eol + eol).encode() + body
    want: dict[str, object] = {
        "method": method, "host": host, "port": port, "branch": branch, "rport": rport,
        "from_tag": from_tag, "to_tag": to_tag, "call_id": call_id, "cseq_num": cseq,
        "target_user": user if user else to_user, "body": body,
    }
    return data, want


@given(well_formed())
@FAST
def test_well_formed_requests_parse_to_what_was_written(case: tuple[bytes, dict[str, object]]
                                                        ) -> None:
    data, want = case
    r = parsed(data)
    assert r.problem is None
    got = {
        "method": r.method, "host": r.top_via.host, "port": r.top_via.port,
        "branch": r.top_via.branch, "rport": r.top_via.rport_empty, "from_tag": r.from_tag,
        "to_tag": r.to_tag, "call_id": r.call_id, "cseq_num": r.cseq_num,
        "target_user": r.target_user, "body": r.body,
    }
    assert got == want
