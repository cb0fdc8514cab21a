"""Hostile values and shapes (issue 11 items 1 and 3; SPEC §10, docs/limits.md).

Every value read from a message is read by ASCII rules with a bounded length, so a Unicode
digit or a 4,301-digit number gets its proper answer instead of an exception (which the
engine would count as ``internal-error``); and every per-message cap answers 513 or a 400
naming it, from both parsers alike.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sip import Response, answer, read_response, request
from test_auth import CFG, RULES, SEEDED, SRC, digest, register

from responder.core.engine import Engine
from responder.rules.loader import build_ruleset, load_text
from responder.sip.errors import Problem
from responder.sip.message import Request
from responder.sip.numbers import MAX_UINT32, number
from responder.sip.parser import (
    MAX_CONTACTS,
    MAX_HEADER_LINES,
    MAX_HEADER_NAMES,
    MAX_REQUIRE_TAGS,
    MAX_VIA_VALUES,
    parse,
    parse_python,
)
from responder.sip.seeded import Seeded
from responder.testing import Responder

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import bench_hostile

HUGE = "9" * 4301  # int() refuses to make a number of more digits than 4,300
UNICODE_DIGITS = ["²", "\u0663\u0666\u0660\u0660", "\uff13\uff16\uff10\uff10",  # ٣٦٠٠, fullwidth
                  "1_0", " 10", "+10", "-1", ""]


def engine() -> Engine:
    return Engine(build_ruleset(None, []), Seeded(1))


def one_answer(e: Engine, data: bytes) -> tuple[int, str, Response]:
    out = answer(e, data, SRC, 0.0)
    assert len(out) == 1, out
    resp = read_response(out[0].data)
    assert not e.counters.discarded, e.counters.discarded  # never the internal-error net
    return resp.status, resp.reason, resp


def both(data: bytes) -> Request:
    """What parse() makes of ``data`` (the compiled path when built) is what Python makes."""
    req = parse(data)
    assert req == parse_python(data)
    return req


# ------------------------------------------------------------------ numbers: ASCII rules

@pytest.mark.parametrize("text", [*UNICODE_DIGITS, HUGE, "4294967296", "0" * 5000 + "x"])
def test_number_refuses_anything_but_ascii_digits_within_the_limit(text: str) -> None:
    assert number(text, MAX_UINT32) is None


def test_number_reads_ascii_digits_leading_zeros_and_the_limit() -> None:
    assert number("0", 9) == 0
    assert number("0" * 5000 + "42", 100) == 42
    assert number("4294967295", MAX_UINT32) == MAX_UINT32
    assert number("10", 9) is None


@pytest.mark.parametrize("expires", [*(u for u in UNICODE_DIGITS if u != " 10"), HUGE,
                                     "4294967296"])
def test_register_with_a_malformed_expires_gets_3600(expires: str) -> None:
    """RFC 3261 §20.19: malformed values SHOULD be treated as 3600 (was: int() raised)."""
    data = register(None).replace(b"Contact:", f"Expires: {expires}\r\nContact:".encode())
    status, _, resp = one_answer(engine(), data)
    assert status == 200
    assert resp.one("Contact") == "<sip:1000@192.0.2.10:5062>;expires=3600"


def test_register_expires_zero_in_any_spelling_removes_the_binding() -> None:
    e = engine()
    data = register(None).replace(b"Contact:", b"Expires: 000\r\nContact:")
    assert not one_answer(e, data)[2].has("Contact")
    data = register(None).replace(b"5062>", b"5062>;expires=00")
    assert not one_answer(e, data)[2].has("Contact")
    data = register(None).replace(b"5062>", "5062>;expires=²".encode())
    assert one_answer(e, data)[2].one("Contact").endswith(";expires=²")


@pytest.mark.parametrize("value", [*UNICODE_DIGITS[:4], HUGE])
def test_cseq_number_by_ascii_rules(value: str) -> None:
    data = request(cseq=1).replace(b"CSeq: 1 ", f"CSeq: {value} ".encode())
    assert both(data).problem == Problem(400, "Bad CSeq")
    assert one_answer(engine(), data)[:2] == (400, "Bad CSeq")


@pytest.mark.parametrize(("value", "reason"), [
    ("²", "Bad Content-Length"), ("٣", "Bad Content-Length"), ("1_0", "Bad Content-Length"),
    (HUGE, "Content-Length Larger Than Body"), ("0" * 4400, None)])
def test_content_length_by_ascii_rules(value: str, reason: str | None) -> None:
    data = request().replace(b"Content-Length: 0", f"Content-Length: {value}".encode())
    req = both(data)
    assert req.problem == (Problem(400, reason) if reason else None)


@pytest.mark.parametrize("port", ["٥٠٦٠", "²", "99999", HUGE])
def test_ports_by_ascii_rules(port: str) -> None:
    """A Via sent-by port or Request-URI port that is no ASCII port: answered, not raised."""
    via = request(via_host=f"192.0.2.10:{port}")
    assert one_answer(engine(), via)[0] in (200, 400)
    ruri = request(uri=f"sip:1000@lab.example:{port}")
    assert one_answer(engine(), ruri)[:2] == (400, "Malformed Request-URI")


@pytest.mark.parametrize("response", ["é", "\udcff", "ÉÉ" * 16, "a" * 5000])
def test_digest_response_that_is_not_ascii_is_wrong_credentials(response: str) -> None:
    """A known user with response="é": a fresh challenge (was: compare_digest TypeError)."""
    e = Engine(load_text(RULES, "lab.yaml"), SEEDED)
    chal = read_response(answer(e, register(), SRC, 50.0)[0].data).one("WWW-Authenticate")
    creds = digest("REGISTER", "sip:lab.example", "1000", "s3cret", chal)
    given = creds.split('response="')[1].split('"', 1)[0]
    data = register(creds.replace(given, "GIVEN"), cseq=2)
    data = data.replace(b"GIVEN", response.encode("utf-8", "surrogateescape"))
    status, _, resp = one_answer(e, data)
    assert status == 401 and "stale" not in resp.one("WWW-Authenticate")


@pytest.mark.parametrize("mangle", [
    lambda n: "0" + n, lambda n: "+" + n, lambda n: " " + n, lambda n: n[:-1] + "é",
    lambda n: "٣" + n[1:], lambda n: n.upper(), lambda n: "f" * 20 + n[-24:]])
def test_nonce_is_read_as_written_by_ascii_rules(mangle: Callable[[str], str]) -> None:
    """Only the exact spelling nonce() wrote is valid: no other spelling of its time stamp,
    no non-ASCII text (compare_digest raised TypeError on one)."""
    nonce = SEEDED.nonce(100.0, "192.0.2.1")
    assert SEEDED.nonce_valid(nonce, "192.0.2.1", 101.0, 300.0)
    bad = mangle(nonce)
    assert not SEEDED.nonce_valid(bad, "192.0.2.1", 101.0, 300.0)
    assert CFG.realm == "lab.example"


# ------------------------------------------------------------------ per-message caps

def options_with(lines: list[str]) -> bytes:
    return request(extra="".join(line + "\r\n" for line in lines))


LINES_IN_REQUEST = 6  # request() writes Via, Max-Forwards, From, To, Call-ID, CSeq ...
# ... and Content-Length: header lines = LINES_IN_REQUEST + 1 + extra


def test_header_lines_cap_is_513_past_it_and_nothing_before() -> None:
    fill = MAX_HEADER_LINES - LINES_IN_REQUEST - 1
    at_cap = options_with(["Subject: x"] * fill)
    assert both(at_cap).problem is None
    past = options_with(["Subject: x"] * (fill + 1))
    assert both(past).problem == Problem(513)
    assert one_answer(engine(), past)[:2] == (513, "Message Too Large")


def test_folded_lines_count_and_the_rest_is_not_read() -> None:
    fold = options_with(["Subject: a"] + [" b"] * MAX_HEADER_LINES)
    assert both(fold).problem == Problem(513)
    # What comes after the cap is not read: a Via there is no Via, so nothing can be answered.
    late = request().replace(b"Via:", b"X: y\r\n" * MAX_HEADER_LINES + b"Via:")
    e = engine()
    assert answer(e, late, SRC, 0.0) == []
    assert e.counters.discarded == {"no-via": 1}


def test_distinct_header_names_cap() -> None:
    # Content-Length, Via, Max-Forwards, From, To, Call-ID, CSeq: 7 names already
    names = [f"X-{i}: v" for i in range(MAX_HEADER_NAMES - 7)]
    assert both(options_with(names)).problem is None
    past = options_with([*names, "X-last: v"])
    assert both(past).problem == Problem(400, "Too Many Header Names")
    # the same name many times is one name
    assert both(options_with(["X: v"] * 200)).problem is None


@pytest.mark.parametrize("shape", ["lines", "commas"])
def test_via_values_cap(shape: str) -> None:
    def vias(n: int) -> bytes:
        if shape == "lines":
            extra = "".join(f"Via: SIP/2.0/UDP p{i}.example;branch=z9hG4bK-{i}\r\n"
                            for i in range(n - 1))
        else:
            extra = "Via: " + ", ".join(f"SIP/2.0/UDP p{i}.example" for i in range(n - 1)) \
                + "\r\n"
        return request().replace(b"Max-Forwards:", extra.encode() + b"Max-Forwards:")
    assert both(vias(MAX_VIA_VALUES)).problem is None
    assert len(both(vias(MAX_VIA_VALUES)).vias) == (MAX_VIA_VALUES if shape == "lines" else 2)
    past = vias(MAX_VIA_VALUES + 1)
    assert both(past).problem == Problem(400, "Too Many Via Values")
    status, reason, resp = one_answer(engine(), past)
    assert (status, reason) == (400, "Too Many Via Values")
    assert len(resp.all("Via")) == len(both(past).vias)


@pytest.mark.parametrize("shape", ["lines", "commas"])
def test_contacts_cap_in_register(shape: str) -> None:
    def contacts(n: int) -> bytes:
        if shape == "lines":
            extra = "".join(f"Contact: <sip:u{i}@192.0.2.10>\r\n" for i in range(n))
        else:
            extra = "m: " + ", ".join(f"<sip:u{i}@192.0.2.10>" for i in range(n)) + "\r\n"
        return request("REGISTER", uri="sip:lab.example", extra=extra)
    status, _, resp = one_answer(engine(), contacts(MAX_CONTACTS))
    assert status == 200 and len(resp.all("Contact")) == MAX_CONTACTS
    past = contacts(MAX_CONTACTS + 1)
    assert both(past).problem == Problem(400, "Too Many Contacts")
    assert one_answer(engine(), past)[:2] == (400, "Too Many Contacts")


def test_require_tags_cap() -> None:
    tags = ", ".join(f"t{i}" for i in range(MAX_REQUIRE_TAGS))
    assert both(request(extra=f"Require: {tags}\r\n")).require[-1] == f"t{MAX_REQUIRE_TAGS - 1}"
    past = request(extra=f"Require: {tags}, one-more\r\n")
    assert both(past).problem == Problem(400, "Too Many Require Tags")
    assert one_answer(engine(), past)[:2] == (400, "Too Many Require Tags")


# The shapes of scripts/bench_hostile.py that a cap stops, and their answer.
CAPPED = {
    "REGISTER, Contact lines": (513, "Message Too Large"),
    "REGISTER, Contacts in one line": (400, "Too Many Contacts"),
    "REGISTER, Contacts ;expires=0": (400, "Too Many Contacts"),
    "REGISTER, 60 KB quoted Contact": (400, "Too Many Contacts"),
    "distinct header names": (513, "Message Too Large"),
    "distinct header names, fresh": (513, "Message Too Large"),
    "one name, many lines": (513, "Message Too Large"),
    "v: Via lines": (513, "Message Too Large"),
    "v: Via lines, valid": (513, "Message Too Large"),
    "Via values in one line": (400, "Too Many Via Values"),
    "lines without a colon": (513, "Message Too Large"),
    "folded lines": (513, "Message Too Large"),
    "Record-Route lines (INVITE)": (513, "Message Too Large"),
    "Require tags": (400, "Too Many Require Tags"),
}


@pytest.mark.parametrize("name", list(CAPPED))
def test_each_capped_shape_gets_its_answer(name: str) -> None:
    data = bench_hostile.SHAPES[name]()
    assert len(data) <= 65535
    assert one_answer(engine(), data)[:2] == CAPPED[name]


@pytest.mark.parametrize("name", [n for n in bench_hostile.SHAPES if n not in CAPPED])
def test_every_other_shape_is_answered_without_the_safety_net(name: str) -> None:
    e = engine()
    out = answer(e, bench_hostile.SHAPES[name](), SRC, 0.0)
    assert out and not e.counters.discarded


# ------------------------------------------------------------------ one bad message in a batch

def test_one_bad_register_in_a_burst_of_64_costs_nobody_anything() -> None:
    """63 OPTIONS around one REGISTER with `Expires: ²`, sent in one burst over a real
    socket (read together by one receive call): all 64 answered, the REGISTER with 3600."""
    burst = [request(call_id=f"burst-{i}@test", branch=f"z9hG4bK-b{i}") for i in range(64)]
    burst[31] = request("REGISTER", uri="sip:lab.example", call_id="burst-31@test",
                        branch="z9hG4bK-b31",
                        extra="Expires: ²\r\nContact: <sip:1000@192.0.2.10:5062>\r\n")
    with Responder() as server, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        client.settimeout(5.0)
        client.connect(server.address)
        for data in burst:
            client.send(data)
        got: dict[str, Response] = {}
        while len(got) < 64:
            resp = read_response(client.recv(65535))
            got[resp.one("Call-ID")] = resp
        register_answer = got["burst-31@test"]
        assert register_answer.status == 200
        assert register_answer.one("Contact") == "<sip:1000@192.0.2.10:5062>;expires=3600"
        assert all(got[f"burst-{i}@test"].status == 200 for i in range(64))
        assert not server.counters.discarded
