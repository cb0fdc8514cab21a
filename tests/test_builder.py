"""Response building (SPEC §4), parametrised over the whole code table."""

from __future__ import annotations

import dataclasses

import pytest
from sip import Response, answer, read_response, request

from responder.core.engine import Engine
from responder.rules.loader import build_ruleset, load_text
from responder.rules.model import Identity, RuleSet
from responder.sip import codes
from responder.sip.builder import Context, build, same_host, top_via
from responder.sip.parser import parse
from responder.sip.seeded import Seeded

SRC = ("127.0.0.1", 40000)
CTX = Context(Identity(), Seeded(1), 0.0, SRC, ("127.0.0.1", 5060))


def respond(data: bytes, code: int, *, ctx: Context = CTX, tag: str = "tag1",
            headers: tuple[tuple[str, str], ...] = (), body: bytes = b"",
            content_type: str | None = None) -> Response:
    req = parse(data)
    return read_response(build(req, ctx, code, codes.reason_for(code), tag, headers, body,
                               content_type))


@pytest.mark.parametrize("code", list(codes.CODES), ids=str)
def test_every_registered_code_builds_a_correct_response(code: int) -> None:
    data = request("INVITE", extra="Require: foo\r\nTimestamp: 54\r\n")
    resp = respond(data, code)
    entry = codes.CODES[code]
    assert (resp.status, resp.reason) == (code, entry.reason)
    assert resp.one("Via") == "SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-test-1;" \
                              "received=127.0.0.1"
    assert resp.one("From") == '"Alice" <sip:alice@client.example>;tag=ft-1'
    assert resp.one("Call-ID") == "call-1@test"
    assert resp.one("CSeq") == "1 INVITE"
    if code == 100:
        assert resp.one("To") == "<sip:1000@lab.example>"
        assert resp.one("Timestamp") == "54"
    else:
        assert resp.one("To") == "<sip:1000@lab.example>;tag=tag1"
        assert not resp.has("Timestamp")
    for name in entry.required:
        assert resp.one(name), f"{code} needs {name}"
    assert resp.one("Server") == "sip-responder"


@pytest.mark.parametrize("code", [199, 299, 478, 555, 650])
def test_unregistered_or_new_codes_use_table_or_generic_phrase(code: int) -> None:
    resp = respond(request(), code)
    assert resp.reason == codes.reason_for(code)


def test_required_header_defaults() -> None:
    data = request("INVITE", extra="Require: 100rel, foo\r\n")
    assert respond(data, 420).one("Unsupported") == "100rel, foo"
    challenge = respond(data, 401).one("WWW-Authenticate")
    assert challenge.startswith('Digest realm="') and 'nonce="' in challenge
    assert "algorithm=MD5" in challenge and 'qop="auth"' in challenge
    assert respond(data, 407).one("Proxy-Authenticate").startswith("Digest ")
    assert "INVITE" in respond(data, 405).one("Allow")
    assert respond(data, 423).one("Min-Expires").isdigit()
    assert respond(data, 422).one("Min-SE").isdigit()
    assert respond(data, 415).one("Accept") == "application/sdp"
    assert respond(data, 489).one("Allow-Events")
    assert respond(data, 494).one("Security-Server")


def test_rule_headers_override_required_defaults_and_add_body() -> None:
    resp = respond(request(), 405, headers=(("Allow", "OPTIONS"), ("Retry-After", "30")),
                   body=b"hello", content_type="text/plain")
    assert resp.all("Allow") == ["OPTIONS"]
    assert resp.one("Retry-After") == "30"
    assert resp.one("Content-Type") == "text/plain"
    assert resp.body == b"hello"
    resp = respond(request(), 302, headers=(("Contact", "<sip:elsewhere@example.com>"),))
    assert resp.one("Contact") == "<sip:elsewhere@example.com>"


def test_to_with_a_tag_is_copied_unchanged() -> None:
    resp = respond(request(to="<sip:bob@b>;tag=theirs"), 200)
    assert resp.one("To") == "<sip:bob@b>;tag=theirs"


def test_options_200_carries_allow_accept_supported() -> None:
    ctx = Context(Identity(supported=("100rel", "timer")), Seeded(1), 0.0, SRC)
    resp = respond(request("OPTIONS"), 200, ctx=ctx)
    assert "OPTIONS" in resp.one("Allow")
    assert resp.one("Accept") == "application/sdp"
    assert resp.one("Supported") == "100rel, timer"


def test_register_200_echoes_bindings_with_expiry() -> None:
    extra = ("Contact: <sip:a@192.0.2.1>, <sip:b@192.0.2.2>;expires=60\r\n"
             "Contact: <sip:gone@192.0.2.3>;expires=0\r\nExpires: 1800\r\n")
    resp = respond(request("REGISTER", uri="sip:lab.example", extra=extra), 200)
    assert resp.all("Contact") == ["<sip:a@192.0.2.1>;expires=1800",
                                   "<sip:b@192.0.2.2>;expires=60"]
    star = "Contact: *\r\nExpires: 0\r\n"
    assert not respond(request("REGISTER", extra=star), 200).has("Contact")


def test_invite_2xx_and_18x_carry_contact_and_record_route() -> None:
    data = request("INVITE", extra="Record-Route: <sip:p1;lr>\r\nRecord-Route: <sip:p2;lr>\r\n")
    for code in (180, 200):
        resp = respond(data, code)
        assert resp.one("Contact") == "<sip:127.0.0.1:5060>"
        assert resp.all("Record-Route") == ["<sip:p1;lr>", "<sip:p2;lr>"]
    assert not respond(data, 486).has("Contact")


def test_all_vias_copied_in_order_and_only_top_gets_received() -> None:
    raw = (b"OPTIONS sip:x@y SIP/2.0\r\n"
           b"Via: SIP/2.0/UDP a.example;branch=z9hG4bK1 , SIP/2.0/UDP b.example;branch=z9hG4bK2\r\n"
           b"v: SIP/2.0/TCP c.example;branch=z9hG4bK3\r\n"
           b"From: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: v\r\nCSeq: 1 OPTIONS\r\n\r\n")
    resp = respond(raw, 200)
    assert resp.all("Via") == [
        "SIP/2.0/UDP a.example;branch=z9hG4bK1;received=127.0.0.1 , "
        "SIP/2.0/UDP b.example;branch=z9hG4bK2",
        "SIP/2.0/TCP c.example;branch=z9hG4bK3",
    ]


@pytest.mark.parametrize(
    ("via_host", "rport", "expected"),
    [
        ("127.0.0.1:5062", False, "SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-test-1"),
        ("127.0.0.1:5062", True,
         "SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-test-1;rport=40000;received=127.0.0.1"),
        ("10.0.0.1", True,
         "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-test-1;rport=40000;received=127.0.0.1"),
        ("phone.example", False,
         "SIP/2.0/UDP phone.example;branch=z9hG4bK-test-1;received=127.0.0.1"),
    ],
    ids=["same-host", "same-host-rport", "nat-rport", "hostname"],
)
def test_received_and_rport(via_host: str, rport: bool, expected: str) -> None:
    req = parse(request(via_host=via_host, rport=rport))
    assert top_via(req, SRC) == expected


def test_existing_received_is_replaced_and_valued_rport_kept() -> None:
    raw = request(via_host="10.1.1.1:4540").replace(
        b";branch=z9hG4bK-test-1", b";received=10.9.9.9;rport=9988;branch=z9hG4bK-test-1")
    assert top_via(parse(raw), SRC) == \
        "SIP/2.0/UDP 10.1.1.1:4540;rport=9988;branch=z9hG4bK-test-1;received=127.0.0.1"


@pytest.mark.parametrize(
    ("sent_by", "source", "same"),
    [
        ("[::1]", "::1", True),
        ("[0:0::1]", "::1", True),
        ("[2001:db8:::192.0.2.1]", "::1", False),  # RFC 5118 §4.8: not an address, no crash
        ("127.0.0.1", "127.0.0.1", True),
        ("127.000.0.1", "127.0.0.1", False),
        ("Host.Example", "127.0.0.1", False),
    ],
)
def test_same_host(sent_by: str, source: str, same: bool) -> None:
    assert same_host(sent_by, source) is same


def test_ipv6_source_gets_unbracketed_received() -> None:
    req = parse(request(via_host="[2001:db8::9:1]"))
    assert top_via(req, ("::1", 5060)).endswith(";received=::1")


def test_server_header_comes_from_identity_and_can_be_empty() -> None:
    ctx = Context(Identity(server="Asterisk PBX 18"), Seeded(1), 0.0, SRC)
    assert respond(request(), 200, ctx=ctx).one("Server") == "Asterisk PBX 18"
    ctx = Context(Identity(server=""), Seeded(1), 0.0, SRC)
    assert not respond(request(), 200, ctx=ctx).has("Server")


def test_non_ascii_bytes_are_copied_verbatim() -> None:
    raw = request().replace(b'"Alice"', '"Jürgen \x00"'.encode())
    req = parse(raw)
    out = build(req, CTX, 200, "OK", "t")
    assert '"Jürgen \x00"'.encode() in out


def test_the_tail_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """build_step's cache of response tails (docs/faults.md, Bounds) never grows past
    TAILS_LIMIT, however many rule steps a reload after reload brings, and starting over
    changes no byte."""
    from responder.core import answer
    from responder.rules.model import Step

    monkeypatch.setattr(answer, "TAILS_LIMIT", 8)
    monkeypatch.setattr(answer, "_TAILS", {})
    req = parse(request("OPTIONS"))
    for i in range(50):
        step = Step.make(200, headers=(("X-Step", str(i)),))
        first = answer.build_step(req, CTX, step, "t")
        assert len(answer._TAILS) <= 8
        assert first == answer.build_step(req, CTX, step, "t") == build(
            req, CTX, 200, "OK", "t", step.headers)


# --------------------------------------------------------------------------- Allow from the rules
# Issue 12: a 405 to MESSAGE listed MESSAGE in its Allow. Allow (405, 501, 200 to OPTIONS) is
# builder.ALLOW minus the methods the rules answer with 405 or 501 whatever the request,
# worked out once per rule set (rules/allow.py), and the engine's cached tails follow it.

EVERYTHING = ("INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, PRACK, UPDATE, MESSAGE, "
              "NOTIFY, SUBSCRIBE, PUBLISH, REFER")


def _engine(rules: RuleSet) -> Engine:
    return Engine(rules, Seeded(1))


def _ask(engine: Engine, method: str, n: int = 1) -> Response:
    out = answer(engine, request(method, call_id=f"allow-{method}-{n}",
                                 branch=f"z9hG4bK-allow-{n}"), SRC, 0.0)
    return read_response(out[-1].data)


def _oneline(*specs: str) -> RuleSet:
    return build_ruleset(None, list(specs))


def test_a_one_line_405_rule_takes_its_method_out_of_allow() -> None:
    engine = _engine(_oneline("MESSAGE->405"))
    refused = _ask(engine, "MESSAGE")
    assert refused.status == 405
    assert refused.one("Allow") == EVERYTHING.replace(", MESSAGE", "")
    options = _ask(engine, "OPTIONS")
    assert options.status == 200 and options.one("Allow") == refused.one("Allow")


def test_a_yaml_501_rule_and_a_refusing_default_take_methods_out() -> None:
    rules = load_text("rules:\n  - match: {method: [INVITE, OPTIONS]}\n    respond: 200\n"
                      "  - match: {method: SUBSCRIBE}\n    respond: 501\n"
                      "default: 405\n", "t.yaml")
    assert rules.identity.allow == "INVITE, ACK, CANCEL, OPTIONS"
    engine = _engine(rules)
    assert _ask(engine, "SUBSCRIBE").one("Allow") == "INVITE, ACK, CANCEL, OPTIONS"
    assert _ask(engine, "OPTIONS").one("Allow") == "INVITE, ACK, CANCEL, OPTIONS"
    assert _ask(engine, "FOO").one("Allow") == "INVITE, ACK, CANCEL, OPTIONS"


@pytest.mark.parametrize("specs", [
    ("MESSAGE@1000->405",),              # only some users
    ("MESSAGE->405;p=0.5",),             # only some transactions
    ("MESSAGE@1000->200", "MESSAGE->405"),  # an earlier rule serves some
    ("MESSAGE->drop",),                  # not answered is not refused
], ids=["user", "probability", "served-first", "drop"])
def test_a_conditional_405_rule_keeps_the_method(specs: tuple[str, ...]) -> None:
    engine = _engine(_oneline(*specs))
    assert _ask(engine, "OPTIONS").one("Allow") == EVERYTHING


def test_a_conditional_yaml_rule_keeps_the_method_and_a_refusing_one_after_it_too() -> None:
    rules = load_text("rules:\n  - match: {method: MESSAGE, user: '1*'}\n    respond: 405\n"
                      "  - match: {method: MESSAGE, in_dialog: true}\n    respond: 200\n"
                      "  - match: {method: MESSAGE}\n    respond: 405\n", "t.yaml")
    assert rules.identity.allow == EVERYTHING
    both = load_text("rules:\n  - match: {method: MESSAGE, user: '1*'}\n    respond: 501\n"
                     "  - match: {method: MESSAGE}\n    respond: 405\n", "t.yaml")
    assert both.identity.allow == EVERYTHING.replace(", MESSAGE", "")


def test_ack_and_cancel_stay_and_a_rule_may_still_write_its_own_allow() -> None:
    assert _oneline("*->501").identity.allow == "ACK, CANCEL"
    engine = _engine(load_text("rules:\n  - match: {method: MESSAGE}\n    respond:\n"
                               "      code: 405\n      headers: {Allow: 'INVITE, BYE'}\n",
                               "t.yaml"))
    assert _ask(engine, "MESSAGE").all("Allow") == ["INVITE, BYE"]


def test_swapping_the_rules_swaps_allow_in_the_cached_responses() -> None:
    engine = _engine(_oneline("MESSAGE->405"))
    assert "MESSAGE" not in _ask(engine, "OPTIONS", 1).one("Allow")
    assert "MESSAGE" not in _ask(engine, "MESSAGE", 2).one("Allow")
    engine.set_rules(_oneline("MESSAGE->405", "INFO->501"))  # PUT /rules, SIGHUP
    allow = _ask(engine, "OPTIONS", 3).one("Allow")
    assert "MESSAGE" not in allow and "INFO" not in allow
    assert _ask(engine, "MESSAGE", 4).one("Allow") == allow
    engine.set_rules(_oneline())
    assert _ask(engine, "OPTIONS", 5).one("Allow") == EVERYTHING
    rules = _oneline("MESSAGE->405")
    assert dataclasses.replace(rules, rules=rules.rules[1:]).identity.allow == EVERYTHING
