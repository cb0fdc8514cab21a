"""Unit tests of the parser: ``parse(bytes) -> Request``, raising only ``Discard``.

Valid requests first (the essentials a UAS reads, RFC 3261 §8.2.6), then the table of
answerable defects with the exact Problem each one carries (SPEC §5), then the datagrams
that are discarded, then RFC 4475-style torture input.
"""

from __future__ import annotations

import pytest

from responder.sip import errors
from responder.sip.errors import Discard, Problem
from responder.sip.message import Request
from responder.sip.parser import parse

VIA = "SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-test-1"
FROM = '"Alice" <sip:alice@client.example>;tag=ft-1'
TO = "<sip:1000@lab.example>"
CALL_ID = "call-1@client.example"


def req(
    method: str = "OPTIONS",
    uri: str = "sip:1000@lab.example",
    *,
    version: str = "SIP/2.0",
    via: str | None = VIA,
    from_: str | None = FROM,
    to: str | None = TO,
    call_id: str | None = CALL_ID,
    cseq: str | None = "",
    extra: tuple[str, ...] = (),
    body: bytes = b"",
    length: int | str | None = "auto",
) -> bytes:
    """A request with the usual headers; ``None`` leaves a header out, ``extra`` adds lines.

    ``cseq=""`` means ``1 METHOD``; ``length="auto"`` writes the exact Content-Length,
    ``None`` writes none, anything else is written as given.
    """
    fields = [
        ("Via", via),
        ("Max-Forwards", "70"),
        ("From", from_),
        ("To", to),
        ("Call-ID", call_id),
        ("CSeq", f"1 {method}" if cseq == "" else cseq),
    ]
    lines = [f"{method} {uri} {version}"]
    lines += [f"{name}: {value}" for name, value in fields if value is not None]
    lines += extra
    if length == "auto":
        lines.append(f"Content-Length: {len(body)}")
    elif length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def ok(data: bytes) -> Request:
    """Parse ``data`` and insist that it is a well-formed request."""
    r = parse(data)
    assert r.problem is None, r.problem
    return r


def discard_reason(data: bytes) -> str:
    with pytest.raises(Discard) as info:
        parse(data)
    return info.value.reason


# ------------------------------------------------------------------ valid requests


def test_essentials_of_a_plain_options() -> None:
    r = ok(req())
    assert (r.method, r.uri, r.version) == ("OPTIONS", "sip:1000@lab.example", "SIP/2.0")
    assert r.vias == [VIA]
    assert r.top_via.value == VIA
    assert r.top_via.host == "192.0.2.10"
    assert r.top_via.port == 5062
    assert r.top_via.branch == "z9hG4bK-test-1"
    assert (r.top_via.rport, r.top_via.rport_empty, r.top_via.received) == (False, False, False)
    assert r.via_rest is None
    assert r.from_ == FROM
    assert r.to == TO
    assert r.call_id == CALL_ID
    assert r.cseq == "1 OPTIONS"
    assert r.cseq_num == 1
    assert (r.from_tag, r.to_tag) == ("ft-1", None)
    assert (r.from_user, r.to_user, r.target_user) == ("alice", "1000", "1000")
    assert r.uri_host == "lab.example"
    assert r.require == ()
    assert r.timestamp is None
    assert r.body == b""


def test_every_via_value_in_order() -> None:
    data = req(
        via="SIP/2.0/UDP a.example;branch=z9hG4bK-a , SIP/2.0/TCP b.example;branch=z9hG4bK-b",
        extra=("Via: SIP/2.0/UDP c.example;branch=z9hG4bK-c", "v: SIP/2.0/UDP d.example"),
    )
    r = ok(data)
    assert r.vias == [
        "SIP/2.0/UDP a.example;branch=z9hG4bK-a , SIP/2.0/TCP b.example;branch=z9hG4bK-b",
        "SIP/2.0/UDP c.example;branch=z9hG4bK-c",
        "SIP/2.0/UDP d.example",
    ]
    assert r.top_via.value == "SIP/2.0/UDP a.example;branch=z9hG4bK-a"
    assert r.top_via.host == "a.example"
    assert r.top_via.branch == "z9hG4bK-a"
    # The first line splits into its first value and the rest, both verbatim.
    assert r.via_rest == " , SIP/2.0/TCP b.example;branch=z9hG4bK-b"
    assert r.top_via.value + r.via_rest == r.vias[0]


@pytest.mark.parametrize(
    ("via", "host", "port", "branch", "rport", "rport_empty", "received"),
    [
        pytest.param("SIP/2.0/UDP h.example", "h.example", None, None, False, False, False,
                     id="bare-sent-by"),
        pytest.param("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport", "192.0.2.1", 5060,
                     "z9hG4bK1", True, True, False, id="empty-rport"),
        pytest.param("SIP/2.0/UDP 192.0.2.1;rport=7000;branch=z9hG4bK2", "192.0.2.1", None,
                     "z9hG4bK2", True, False, False, id="rport-with-value"),
        pytest.param("SIP/2.0/UDP h.example;received=192.0.2.9;branch=z9hG4bK3", "h.example",
                     None, "z9hG4bK3", False, False, True, id="received"),
        pytest.param("SIP/2.0/UDP [2001:db8::10]:5062;branch=z9hG4bK4", "[2001:db8::10]",
                     5062, "z9hG4bK4", False, False, False, id="ipv6-bracketed"),
        pytest.param("SIP/2.0/UDP [2001:db8:::192.0.2.1];branch=z9hG4bK5",
                     "[2001:db8:::192.0.2.1]", None, "z9hG4bK5", False, False, False,
                     id="rfc5118-odd-ipv6-kept-as-written"),
        pytest.param("SIP/2.0/TCP Host.Example:5070 ; BRANCH = z9hG4bK6 ; RPORT", "Host.Example",
                     5070, "z9hG4bK6", True, True, False, id="lws-and-param-name-case"),
        pytest.param("SIP/2.0/UDP h.example;branch=", "h.example", None, None, False, False,
                     False, id="empty-branch-is-none"),
    ],
)
def test_top_via_fields(
    via: str,
    host: str,
    port: int | None,
    branch: str | None,
    rport: bool,
    rport_empty: bool,
    received: bool,
) -> None:
    tv = ok(req(via=via)).top_via
    assert (tv.host, tv.port, tv.branch) == (host, port, branch)
    assert (tv.rport, tv.rport_empty, tv.received) == (rport, rport_empty, received)
    assert tv.value == via


def test_tags_and_users() -> None:
    r = ok(req(from_="<sip:bob@b.example>;tag=abc", to="Carol <sip:carol@c.example>;tag=xyz"))
    assert (r.from_tag, r.to_tag) == ("abc", "xyz")
    assert (r.from_user, r.to_user) == ("bob", "carol")


def test_bare_addr_spec_from_and_to() -> None:
    r = ok(req(from_="sip:bob@b.example;tag=abc", to="sip:carol@c.example"))
    assert (r.from_tag, r.to_tag) == ("abc", None)
    assert (r.from_user, r.to_user) == ("bob", "carol")


@pytest.mark.parametrize(
    ("method", "uri", "to", "target"),
    [
        pytest.param("INVITE", "sip:1000@lab.example", "<sip:2000@lab.example>", "1000",
                     id="request-uri-user-wins"),
        pytest.param("REGISTER", "sip:lab.example", "<sip:1000@lab.example>", "1000",
                     id="register-domain-uses-to-user"),
        pytest.param("OPTIONS", "sip:lab.example", "<sip:lab.example>", None,
                     id="no-user-anywhere"),
        pytest.param("INVITE", "sips:1000@lab.example:5061;transport=tls", TO, "1000", id="sips"),
        pytest.param("INVITE", "tel:+15551234;phone-context=lab", TO, "+15551234", id="tel"),
        pytest.param("INVITE", "sip:%31000@lab.example", TO, "1000", id="escaped-user-decoded"),
        pytest.param("INVITE", "sip:1000:secret@lab.example", TO, "1000", id="password-dropped"),
    ],
)
def test_target_user(method: str, uri: str, to: str, target: str | None) -> None:
    assert ok(req(method, uri, to=to)).target_user == target


def test_require_tags_from_every_line() -> None:
    r = ok(req(extra=("Require: 100rel , timer", "require:precondition")))
    assert r.require == ("100rel", "timer", "precondition")


def test_first_timestamp_is_kept() -> None:
    r = ok(req(extra=("Timestamp: 54 0.5", "Timestamp: 99")))
    assert r.timestamp == "54 0.5"


def test_body_framed_by_content_length() -> None:
    r = ok(req(body=b"hello world"))
    assert r.body == b"hello world"


def test_bytes_beyond_content_length_are_dropped() -> None:
    r = ok(req(body=b"hello world", length=5))
    assert r.body == b"hello"
    assert ok(req(body=b"\r\n\r\njunk", length=0)).body == b""


def test_missing_content_length_takes_the_rest_of_the_datagram() -> None:
    r = ok(req(body=b"v=0\r\no=- 1 1 IN IP4 h\r\n\r\nmore", length=None))
    assert r.body == b"v=0\r\no=- 1 1 IN IP4 h\r\n\r\nmore"


def test_headers_not_closed_by_an_empty_line() -> None:
    data = req()[: -len(b"\r\n")]
    assert data.endswith(b"Content-Length: 0\r\n")
    r = ok(data)
    assert r.body == b""
    assert r.header("content-length") == "0"


def test_header_lines_kept_in_order_with_names_as_written() -> None:
    data = (
        b"OPTIONS sip:1000@lab.example SIP/2.0\r\n"
        b"v: SIP/2.0/UDP h.example;branch=z9hG4bK-x\r\n"
        b"User-Agent: baresip\r\n"
        b"f: <sip:a@h.example>;tag=1\r\n"
        b"TO : <sip:1000@lab.example>\r\n"
        b"i: cid\r\n"
        b"cseq: 7 OPTIONS\r\n"
        b"X-Thing:   spaced value  \r\n"
        b"k: timer\r\n"
        b"X-Thing: second\r\n"
        b"l: 0\r\n\r\n"
    )
    r = ok(data)
    assert [(h.key, h.name, h.value) for h in r.headers] == [
        ("via", "v", "SIP/2.0/UDP h.example;branch=z9hG4bK-x"),
        ("user-agent", "User-Agent", "baresip"),
        ("from", "f", "<sip:a@h.example>;tag=1"),
        ("to", "TO", "<sip:1000@lab.example>"),
        ("call-id", "i", "cid"),
        ("cseq", "cseq", "7 OPTIONS"),
        ("x-thing", "X-Thing", "spaced value"),
        ("supported", "k", "timer"),
        ("x-thing", "X-Thing", "second"),
        ("content-length", "l", "0"),
    ]
    assert r.header("x-thing") == "spaced value"
    assert r.header_values("x-thing") == ["spaced value", "second"]
    assert r.header("absent") is None
    assert (r.call_id, r.cseq_num, r.to) == ("cid", 7, "<sip:1000@lab.example>")


# Every compact form of RFC 3261 §7.3.3 and the IANA registry, and a few long names.
ESSENTIAL = {"via": "Via", "from": "From", "to": "To", "call-id": "Call-ID",
             "cseq": "CSeq", "content-length": "Content-Length"}


@pytest.mark.parametrize(
    ("written", "key"),
    [
        ("v", "via"), ("V", "via"), ("f", "from"), ("t", "to"), ("i", "call-id"),
        ("I", "call-id"), ("m", "contact"), ("l", "content-length"), ("c", "content-type"),
        ("k", "supported"), ("s", "subject"), ("e", "content-encoding"), ("o", "event"),
        ("r", "refer-to"), ("b", "referred-by"), ("u", "allow-events"),
        ("x", "session-expires"), ("a", "accept-contact"), ("j", "reject-contact"),
        ("d", "request-disposition"), ("y", "identity"), ("n", "identity-info"),
        ("CALL-ID", "call-id"), ("cSeQ", "cseq"), ("User-Agent", "user-agent"),
        ("X-Custom-Header", "x-custom-header"),
    ],
    ids=lambda v: str(v),
)
def test_header_key_is_canonical(written: str, key: str) -> None:
    values = {"via": VIA, "from": FROM, "to": TO, "call-id": CALL_ID, "cseq": "1 OPTIONS",
              "content-length": "0", "contact": "<sip:a@h>", "session-expires": "90"}
    value = values.get(key, "x")
    if key in ESSENTIAL:
        data = req().replace(f"\r\n{ESSENTIAL[key]}: ".encode(), f"\r\n{written}: ".encode())
    else:
        data = req(extra=(f"{written}: {value}",))
    r = ok(data)
    found = [h for h in r.headers if h.name == written]
    assert len(found) == 1
    assert (found[0].key, found[0].value) == (key, value)
    assert r.header(key) == value


@pytest.mark.parametrize(
    "line",
    ["Supported:", "k:", "Supported:   ", "Accept:", "Allow:", "Subject:", "Organization:",
     "Accept-Encoding:", "Accept-Language:"],
)
def test_empty_values_the_grammar_allows_are_accepted(line: str) -> None:
    r = ok(req(extra=(line,)))
    name = line.split(":")[0]
    assert [(h.name, h.value) for h in r.headers if h.name == name] == [(name, "")]


@pytest.mark.parametrize(
    ("display", "shown"),
    [
        pytest.param('"Jürgen Müller ☎"'.encode(), "Jürgen Müller ☎", id="utf8"),
        pytest.param(b'"a\x00b"', "a\x00b", id="nul"),
        pytest.param(b'"quote \\" and \\\\ escaped"', 'quote \\" and \\\\ escaped', id="escapes"),
        pytest.param(b'"\xff\xfe"', "\udcff\udcfe", id="invalid-utf8-kept-as-surrogates"),
    ],
)
def test_unusual_bytes_in_quoted_display_names(display: bytes, shown: str) -> None:
    data = (
        b"INVITE sip:1000@lab.example SIP/2.0\r\n"
        b"Via: " + VIA.encode() + b"\r\n"
        b"From: " + display + b" <sip:alice@client.example>;tag=t1\r\n"
        b"To: " + display + b" <sip:1000@lab.example>\r\n"
        b"Call-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    r = ok(data)
    assert r.from_ == f'"{shown}" <sip:alice@client.example>;tag=t1'
    assert r.to == f'"{shown}" <sip:1000@lab.example>'
    assert (r.from_user, r.from_tag, r.to_user) == ("alice", "t1", "1000")


@pytest.mark.parametrize(
    "uri",
    ["tel:+15551234", "sips:1000@lab.example", "SIP:1000@lab.example",
     "sip:1000@[2001:db8::1]:5060", "sip:lab.example;transport=udp"],
)
def test_supported_request_uri_schemes(uri: str) -> None:
    r = ok(req("INVITE", uri))
    assert r.uri == uri


def test_lowercase_version_is_2_0() -> None:
    # RFC 3261 §7.1: SIP-Version is case-insensitive.
    r = ok(req(version="sip/2.0"))
    assert r.version == "sip/2.0"


def test_missing_max_forwards_is_tolerated() -> None:
    data = req().replace(b"Max-Forwards: 70\r\n", b"")
    assert b"Max-Forwards" not in data
    assert ok(data).header("max-forwards") is None


def test_register_with_star_contact_and_several_bindings() -> None:
    r = ok(req("REGISTER", "sip:lab.example",
               extra=('Contact: "Desk" <sip:1000@192.0.2.11>;q=0.5, <sip:1000@192.0.2.12>',
                      "m: sip:1000@192.0.2.13;expires=60", "Expires: 3600")))
    assert r.header_values("contact") == [
        '"Desk" <sip:1000@192.0.2.11>;q=0.5, <sip:1000@192.0.2.12>',
        "sip:1000@192.0.2.13;expires=60",
    ]
    star = ok(req("REGISTER", "sip:lab.example", extra=("Contact: *", "Expires: 0")))
    assert star.header("contact") == "*"


def test_contact_is_only_checked_for_register() -> None:
    # Only REGISTER reads Contact (its bindings are echoed in the 200).
    assert ok(req(extra=("Contact: sip:u@h?x=y",))).header("contact") == "sip:u@h?x=y"


# ------------------------------------------------------------------ answerable defects

MISMATCH = Problem(400, "CSeq Method Mismatch")

BAD = [
    pytest.param(req(call_id=None), Problem(400, "Missing Call-ID"), id="missing-call-id"),
    pytest.param(req(from_=None), Problem(400, "Missing From"), id="missing-from"),
    pytest.param(req(to=None), Problem(400, "Missing To"), id="missing-to"),
    pytest.param(req(cseq=None), Problem(400, "Missing CSeq"), id="missing-cseq"),
    pytest.param(req(call_id=None, from_=None, to=None), Problem(400, "Missing Call-ID, From, To"),
                 id="missing-three"),
    pytest.param(req(call_id=None, from_=None, to=None, cseq=None),
                 Problem(400, "Missing Call-ID, From, To, CSeq"), id="missing-all-four"),
    pytest.param(req(extra=("Call-ID: other",)), Problem(400, "Duplicate Call-ID"),
                 id="duplicate-call-id"),
    pytest.param(req(extra=("i: other",)), Problem(400, "Duplicate Call-ID"),
                 id="duplicate-call-id-compact"),
    pytest.param(req(extra=("CSeq: 2 OPTIONS",)), Problem(400, "Duplicate CSeq"),
                 id="duplicate-cseq"),
    pytest.param(req(extra=("f: <sip:x@y>;tag=2", "t: <sip:z@y>")),
                 Problem(400, "Duplicate From, To"), id="duplicate-from-to"),
    pytest.param(req(cseq="1 INVITE"), MISMATCH, id="cseq-method-mismatch"),
    pytest.param(req(cseq="1 options"), MISMATCH, id="cseq-method-case"),
    pytest.param(req(cseq="one OPTIONS"), Problem(400, "Bad CSeq"), id="cseq-not-numeric"),
    pytest.param(req(cseq="OPTIONS"), Problem(400, "Bad CSeq"), id="cseq-no-number"),
    pytest.param(req(cseq="-1 OPTIONS"), Problem(400, "Bad CSeq"), id="cseq-negative"),
    pytest.param(req(cseq="1 OPTIONS extra"), Problem(400, "Bad CSeq"), id="cseq-three-words"),
    pytest.param(req(cseq=f"{2**32} OPTIONS"), Problem(400, "Bad CSeq"), id="cseq-2-pow-32"),
    pytest.param(req(cseq="36893488147419103232 OPTIONS"), Problem(400, "Bad CSeq"),
                 id="cseq-huge"),
    pytest.param(req(length=-1), Problem(400, "Bad Content-Length"), id="content-length-negative"),
    pytest.param(req(length="ten"), Problem(400, "Bad Content-Length"),
                 id="content-length-not-numeric"),
    pytest.param(req(length="+1", body=b"x"), Problem(400, "Bad Content-Length"),
                 id="content-length-plus-sign"),
    pytest.param(req(length="", body=b""), Problem(400, "Bad Content-Length"),
                 id="content-length-empty"),
    pytest.param(req(body=b"abcd", extra=("l: 2",)), Problem(400, "Conflicting Content-Length"),
                 id="content-length-conflicting"),
    pytest.param(req(length=10, body=b"abc"), Problem(400, "Content-Length Larger Than Body"),
                 id="content-length-larger-than-body"),
    pytest.param(req(from_='"Alice <sip:alice@client.example>;tag=1'), Problem(400, "Bad From"),
                 id="from-unclosed-quote"),
    pytest.param(req(from_="Alice, Bob <sip:alice@client.example>;tag=1"),
                 Problem(400, "Bad From"), id="from-comma-in-display-name"),
    pytest.param(req(from_="<sip:alice @client.example>;tag=1"), Problem(400, "Bad From"),
                 id="from-space-inside-angle"),
    pytest.param(req(from_="<sip:alice@client.example;tag=1"), Problem(400, "Bad From"),
                 id="from-unclosed-angle"),
    pytest.param(req(from_=""), Problem(400, "Bad From"), id="from-empty"),
    pytest.param(req(to='"Bob <sip:1000@lab.example>'), Problem(400, "Bad To"),
                 id="to-unclosed-quote"),
    pytest.param(req(to="Bob, Jr <sip:1000@lab.example>"), Problem(400, "Bad To"),
                 id="to-comma-in-display-name"),
    pytest.param(req(to="<sip:1000@lab .example>"), Problem(400, "Bad To"),
                 id="to-space-inside-angle"),
    pytest.param(req(to="<sip:1000@lab.example> tag=1"), Problem(400, "Bad To"),
                 id="to-junk-after-angle"),
    pytest.param(req(uri="sip:1000 @lab.example"), Problem(400, "Malformed Request-URI"),
                 id="uri-with-space"),
    pytest.param(req(uri="<sip:1000@lab.example>"), Problem(400, "Malformed Request-URI"),
                 id="uri-in-angle-brackets"),
    pytest.param(req(uri="sip:1000@2001:db8::1"), Problem(400, "Malformed Request-URI"),
                 id="uri-unbracketed-ipv6"),
    pytest.param(req(uri="sip:1000@[2001:db8::1"), Problem(400, "Malformed Request-URI"),
                 id="uri-unclosed-ipv6-bracket"),
    pytest.param(req(uri="sip:1000@lab.example:50x0"), Problem(400, "Malformed Request-URI"),
                 id="uri-bad-port"),
    pytest.param(req(uri="sip:"), Problem(400, "Malformed Request-URI"), id="uri-empty-sip"),
    pytest.param(req(uri="*"), Problem(400, "Malformed Request-URI"), id="uri-star"),
    pytest.param(req(uri="sip:1000@lab.example?Subject=hi"),
                 Problem(400, "Headers Not Allowed In Request-URI"), id="uri-with-headers"),
    pytest.param(req(via="SIP/2.0/UDP 192.0.2.10;;branch=z9hG4bK1"), Problem(400, "Bad Via"),
                 id="via-empty-param"),
    pytest.param(req(via="SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1;"), Problem(400, "Bad Via"),
                 id="via-trailing-semicolon"),
    pytest.param(req(extra=("NoColonHere",)), Problem(400, "Bad Header Syntax"),
                 id="line-without-colon"),
    pytest.param(req(extra=(": no name",)), Problem(400, "Bad Header Syntax"), id="empty-name"),
    pytest.param(req(extra=("Bad Name: x",)), Problem(400, "Bad Header Syntax"),
                 id="space-in-name"),
    pytest.param(req(extra=("Bad(Name): x",)), Problem(400, "Bad Header Syntax"),
                 id="separator-in-name"),
    pytest.param(req("REGISTER", "sip:lab.example", to="<tel:+15551234>"),
                 Problem(400, "To Is Not A SIP Address"), id="register-to-tel"),
    pytest.param(req("REGISTER", "sip:lab.example", extra=("Contact: sip:u@h?x=y",)),
                 Problem(400, "Bad Contact"), id="register-contact-with-headers-unbracketed"),
    pytest.param(req("REGISTER", "sip:lab.example", extra=("Contact: <sip:u@h>;;expires=1",)),
                 Problem(400, "Bad Contact"), id="register-contact-empty-param"),
    pytest.param(req("REGISTER", "sip:lab.example", extra=('Contact: <sip:u@h>, "Bob <x>',)),
                 Problem(400, "Bad Contact"), id="register-contact-bad-second-value"),
    # A value with no scheme is no URI at all (RFC 3261 §25.1: addr-spec = SIP-URI /
    # SIPS-URI / absoluteURI, and absoluteURI = scheme ":" ...); name_addr takes any word.
    pytest.param(req("REGISTER", "sip:lab.example", extra=("Contact: Bob",)),
                 Problem(400, "Bad Contact"), id="register-contact-not-a-uri"),
    pytest.param(req("REGISTER", "sip:lab.example", extra=("Contact: <sip:u@h>, <x>",)),
                 Problem(400, "Bad Contact"), id="register-contact-angle-not-a-uri"),
    pytest.param(req(from_="<foo>;tag=1"), Problem(400, "Bad From"), id="from-not-a-uri"),
    pytest.param(req(to="nonsense"), Problem(400, "Bad To"), id="to-not-a-uri"),
    pytest.param(req(version="SIP/3.0"), Problem(505), id="version-3.0"),
    pytest.param(req(version="SIP/2.00"), Problem(505), id="version-2.00"),
    pytest.param(req(version="SIP/3.0", call_id=None), Problem(505),
                 id="version-beats-missing-call-id"),
    pytest.param(req(uri="foo:x"), Problem(416), id="unknown-scheme"),
    pytest.param(req(uri="http://lab.example/"), Problem(416), id="http-scheme"),
    pytest.param(req(uri="foo:x", call_id=None), Problem(400, "Missing Call-ID"),
                 id="missing-call-id-beats-416"),
]


@pytest.mark.parametrize(("data", "problem"), BAD)
def test_answerable_defects(data: bytes, problem: Problem) -> None:
    r = parse(data)
    assert r.problem == problem
    # Still answerable: the top Via is there for the response to be matched.
    assert r.top_via.host


def test_a_defective_request_keeps_what_it_does_carry() -> None:
    r = parse(req("INVITE", cseq="1 BYE"))
    assert r.problem == MISMATCH
    assert (r.call_id, r.from_tag, r.cseq, r.top_via.branch) == (
        CALL_ID, "ft-1", "1 BYE", "z9hG4bK-test-1")


def test_empty_call_id_is_answered_with_400() -> None:
    # RFC 3261 §25.1: callid = word [ "@" word ], word = 1*(...): never empty.
    r = parse(req(call_id=""))
    assert r.problem is not None and r.problem.status == 400


def test_cseq_bounds() -> None:
    assert ok(req(cseq=f"{2**32 - 1} OPTIONS")).cseq_num == 2**32 - 1
    assert ok(req(cseq="0 OPTIONS")).cseq_num == 0


def test_cseq_with_thousands_of_digits_is_bad_cseq() -> None:
    r = parse(req(cseq="1" * 5000 + " OPTIONS"))
    assert r.problem == Problem(400, "Bad CSeq")


def test_cseq_with_thousands_of_leading_zeros_is_its_value() -> None:
    r = parse(req(cseq="0" * 5000 + "9 OPTIONS"))
    assert (r.problem, r.cseq_num) == (None, 9)


def test_content_length_with_thousands_of_digits_is_larger_than_body() -> None:
    r = parse(req(length="9" * 5000, body=b"abc"))
    assert r.problem == Problem(400, "Content-Length Larger Than Body")


def test_content_length_with_thousands_of_leading_zeros_is_its_value() -> None:
    r = parse(req(length="0" * 5000 + "3", body=b"abcdef"))
    assert (r.problem, r.body) == (None, b"abc")


def test_unbracketed_ipv6_sent_by_is_taken_as_written() -> None:
    # Invalid (RFC 3261 §25.1 wants [..]) but answerable: SIPVicious -6 writes it.
    r = parse(req(via="SIP/2.0/UDP 2001:db8::1;branch=z9hG4bK1"))
    assert (r.problem, r.top_via.host, r.top_via.port) == (None, "2001:db8::1", None)
    assert r.top_via.branch == "z9hG4bK1"


# ------------------------------------------------------------------ discarded datagrams

RESPONSE = (
    b"SIP/2.0 200 OK\r\nVia: " + VIA.encode() + b"\r\nFrom: <sip:a@b>;tag=1\r\n"
    b"To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b"", errors.EMPTY, id="empty"),
        pytest.param(b"\r\n\r\n", errors.KEEPALIVE, id="double-crlf-keepalive"),
        pytest.param(b"\r\n", errors.KEEPALIVE, id="crlf-keepalive"),
        pytest.param(b"\n", errors.KEEPALIVE, id="lf-keepalive"),
        pytest.param(b" \t\r\n ", errors.KEEPALIVE, id="whitespace-keepalive"),
        pytest.param(b"hello", errors.NOT_SIP, id="hello"),
        pytest.param(b"\x00\x01\x02\xff" * 8, errors.NOT_SIP, id="binary"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: lab.example\r\n\r\n", errors.NOT_SIP, id="http"),
        pytest.param(b"INVITE sip:1000@lab.example\r\nVia: " + VIA.encode() + b"\r\n\r\n",
                     errors.NOT_SIP, id="no-version"),
        pytest.param(b"INV(TE sip:1000@lab.example SIP/2.0\r\nVia: " + VIA.encode() + b"\r\n\r\n",
                     errors.NOT_SIP, id="method-not-a-token"),
        pytest.param(RESPONSE, errors.RESPONSE, id="sip-response"),
        pytest.param(b"sip/2.0 180 Ringing\r\n\r\n", errors.RESPONSE, id="lowercase-response"),
        pytest.param(req(via=None), errors.NO_VIA, id="no-via"),
        pytest.param(b"OPTIONS sip:1000@lab.example SIP/2.0", errors.NO_VIA,
                     id="request-line-only"),
        pytest.param(req(via=""), errors.NO_VIA, id="empty-via"),
        pytest.param(req(via="garbage"), errors.NO_VIA, id="unparseable-via"),
        pytest.param(req(via="SIP/2.0/UDP"), errors.NO_VIA, id="via-without-sent-by"),
        pytest.param(req(via=", SIP/2.0/UDP h.example;branch=z9hG4bK1"), errors.NO_VIA,
                     id="via-first-value-empty"),
    ],
)
def test_discards(data: bytes, reason: str) -> None:
    assert reason in errors.REASONS
    assert discard_reason(data) == reason


def test_a_second_via_does_not_rescue_a_bad_top_via() -> None:
    data = req(via="garbage", extra=("Via: SIP/2.0/UDP h.example;branch=z9hG4bK1",))
    assert discard_reason(data) == errors.NO_VIA


# ------------------------------------------------------------------ torture (RFC 4475 style)

BODY = b"v=0\r\no=- 1 1 IN IP4 192.0.2.3\r\ns=-\r\nc=IN IP4 192.0.2.4\r\nt=0 0\r\n"
TORTURE = (
    b"INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\r\n"
    b"TO :\r\n"
    b" sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\r\n"
    b'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>\r\n'
    b"  ;\r\n"
    b"  tag = 98asjd8\r\n"
    b"MaX-fOrWaRdS: 0068\r\n"
    b"Call-ID: wsinv.ndaksdj@192.0.2.1\r\n"
    b"Content-Length   : " + str(len(BODY)).encode() + b"\r\n"
    b"cseq: 0009\r\n"
    b"  INVITE\r\n"
    b"Via  : SIP  /   2.0\r\n"
    b" /UDP\r\n"
    b"    192.0.2.2;branch=390skdjuw\r\n"
    b"s :\r\n"
    b"NewFangledHeader:   newfangled value\r\n"
    b" continued newfangled value\r\n"
    b"UnknownHeaderWithUnusualValue: ;;,,;;,;\r\n"
    b"Content-Type: application/sdp\r\n"
    b"v:  SIP  / 2.0  / TCP     spindle.example.com   ;\r\n"
    b"  branch  =   z9hG4bK9ikj8  ,\r\n"
    b" SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n"
    b" z9hG4bK30239\r\n"
    b'm:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =\r\n'
    b"      newvalue ;\r\n"
    b"  secondparam ; q = 0.33\r\n"
    b"\r\n" + BODY
)


def test_torture_folded_spaced_mixed_case() -> None:
    r = ok(TORTURE)
    assert (r.method, r.cseq_num, r.call_id) == ("INVITE", 9, "wsinv.ndaksdj@192.0.2.1")
    assert r.to_tag == "1918181833n"
    assert r.from_tag == "98asjd8"
    assert (r.to_user, r.from_user, r.target_user) == ("vivekg", "jdrosen", "vivekg")
    tv = r.top_via
    assert (tv.host, tv.port, tv.branch) == ("192.0.2.2", None, "390skdjuw")
    assert len(r.vias) == 2
    assert "spindle.example.com" in r.vias[1]
    assert "192.168.255.111" in r.vias[1]
    assert r.body == BODY
    names = [(h.name, h.key) for h in r.headers]
    assert ("TO", "to") in names
    assert ("from", "from") in names
    assert ("s", "subject") in names
    assert ("Content-Length", "content-length") in names
    assert r.header("subject") == ""
    assert r.header("unknownheaderwithunusualvalue") == ";;,,;;,;"
    newfangled = r.header("newfangledheader")
    assert newfangled is not None
    assert " ".join(newfangled.split()) == "newfangled value continued newfangled value"


def test_folded_cseq() -> None:
    data = req("INVITE", cseq="0009\r\n  INVITE")
    r = ok(data)
    assert r.cseq_num == 9
    assert r.cseq is not None and r.cseq.split() == ["0009", "INVITE"]


def test_space_before_colon() -> None:
    data = req().replace(b"\r\nTo: ", b"\r\nTO : ").replace(b"\r\nCall-ID: ", b"\r\nCall-ID\t: ")
    r = ok(data)
    assert (r.to, r.call_id) == (TO, CALL_ID)
    assert [h.name for h in r.headers if h.key in ("to", "call-id")] == ["TO", "Call-ID"]


def test_via_with_lws_around_slash_and_equals() -> None:
    r = ok(req(via="SIP / 2.0 / UDP  192.0.2.2 : 5060 ; branch = z9hG4bK-lws ; rport"))
    tv = r.top_via
    assert (tv.host, tv.port, tv.branch, tv.rport_empty) == ("192.0.2.2", 5060, "z9hG4bK-lws",
                                                             True)


def test_leading_crlfs_and_extra_request_line_whitespace() -> None:
    data = b"\r\n\r\n\n" + req().replace(b"OPTIONS sip:1000@lab.example SIP/2.0",
                                         b"OPTIONS   sip:1000@lab.example \t SIP/2.0  ")
    r = ok(data)
    assert (r.method, r.uri, r.version) == ("OPTIONS", "sip:1000@lab.example", "SIP/2.0")


def test_fold_before_first_header_is_bad_syntax() -> None:
    data = req().replace(b"SIP/2.0\r\nVia", b"SIP/2.0\r\n x\r\nVia", 1)
    assert parse(data).problem == Problem(400, "Bad Header Syntax")


def test_a_parsed_request_is_frozen_whichever_parser_read_it() -> None:
    """Issue 10: a Request is never patched after parsing (the engine, the journal and the
    pending table may share one)."""
    import dataclasses

    from responder.sip.parser import parse, parse_python

    data = (b"REGISTER sip:lab.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
            b"From: <sip:a@lab.example>;tag=1\r\nTo: <sip:a@lab.example>\r\nCall-ID: c1\r\n"
            b"CSeq: 1 REGISTER\r\nContact: <sip:a@192.0.2.1>\r\nContent-Length: 0\r\n\r\n")
    for req in (parse(data), parse_python(data)):
        with pytest.raises(dataclasses.FrozenInstanceError):
            req.problem = None  # type: ignore[misc]  # on purpose: frozen
        with pytest.raises(dataclasses.FrozenInstanceError):
            req.method = "INVITE"  # type: ignore[misc]  # on purpose: frozen
    bad = data.replace(b"Contact: <sip:a@192.0.2.1>", b"Contact: <sip:a@192.0.2.1")
    for req in (parse(bad), parse_python(bad)):
        assert req.problem is not None and req.problem.reason == "Bad Contact"
