"""The compiled primitives (responder/_accel/_speedups.c) held to their Python twins.

* At load: what the C code assumes about the Python side (``_speedups.ASSUMES``: Request
  slots, TopVia positions, header slot numbers, the name cache's entries, the grammar's
  character classes, the To tag's parameters) is compared with the real thing. Break any
  one of them and the pure-Python path answers, one warning names what broke, and the
  responses are the same bytes.
* Response heads: ``respond`` against responder.sip.builder.head -- the RFC 3581
  received/rport rule is written in both; the Hypothesis test of Via shapes below is what
  keeps the two copies equal.
* To tags: the compiled BLAKE2b against hashlib.
* The RTP echo's table (``EchoTable``) is checked at load like the rest; its behaviour is
  held to the pure-Python media table in test_media_accel.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from test_speedups import PEERS, agree, msg

from responder._accel import SPEEDUPS, SpeedupsWarning, adopt, mismatch
from responder.core import answer, media
from responder.rules.model import Identity, Step
from responder.sip import codes, parser, seeded
from responder.sip.builder import Context, head
from responder.sip.errors import Discard
from responder.sip.message import Request, TopVia
from responder.sip.seeded import Seeded

PURE = bool(os.environ.get("SIP_RESPONDER_PURE"))
CORPUS = Path(__file__).resolve().parent / "conformance"
FAST = settings(max_examples=400, deadline=None, database=None)
needs_ext = pytest.mark.skipif(PURE, reason="SIP_RESPONDER_PURE is set: the extension is off")


# ------------------------------------------------------------------ assumptions, at load

def test_every_assumption_holds_and_every_part_is_used() -> None:
    if PURE:
        assert parser.COMPILED is None and parser.SPEEDUPS_DISABLED_BECAUSE is None
        assert answer._respond is None and seeded._TO_TAG is None
        assert media.ECHO_TABLE is None and media.Media(1).fast is None
        return
    assert SPEEDUPS is not None
    assert parser.SPEEDUPS_DISABLED_BECAUSE is None and seeded.SPEEDUPS_DISABLED_BECAUSE is None
    assert parser.COMPILED is SPEEDUPS and parser._fast_parse is SPEEDUPS.parse
    assert answer._respond is SPEEDUPS.respond and seeded._TO_TAG is SPEEDUPS.to_tag
    assert mismatch(SPEEDUPS.ASSUMES["parser"], parser.speedups_layout()) is None
    assert set(SPEEDUPS.ASSUMES) == {"parser", "to_tag", "media"}
    assert media.ECHO_TABLE is SPEEDUPS and media._check(SPEEDUPS) is None


@pytest.fixture
def reconfigured(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A monkeypatch for the parser's classes and tables; afterwards the extension is
    configured with the real ones again (a check that passed has configured it)."""
    yield monkeypatch
    monkeypatch.undo()
    if SPEEDUPS is not None:
        SPEEDUPS.configure(Request, TopVia, parser._KEYS, parser._header_key)


@dataclasses.dataclass(frozen=True, slots=True)
class WiderRequest(Request):
    """Request with one more field, as a change to responder/sip/message.py might make it:
    the C code would leave it unset."""

    note: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class CheckedRequest(Request):
    def __post_init__(self) -> None:  # the C code makes Requests without __init__
        pass


class SwappedVia(NamedTuple):
    value: str
    host: str
    port: int | None
    branch: str | None
    rport_empty: bool
    rport: bool
    received: bool


class SwappedHeader(NamedTuple):
    name: str
    key: str
    value: str


def _keys_swapped(name: str, real: Callable[[str], tuple[str, str, int] | None]
                  = parser._header_key) -> tuple[str, str, int] | None:
    """_header_key with (name, key, slot) entries instead of (key, name, slot)."""
    known = real(name)
    return None if known is None else (known[1], known[0], known[2])


# (what to change in responder.sip.parser, the value, the assumption the warning names)
BREAKS = [
    ("Request", WiderRequest, "Request fields"),
    ("Request", CheckedRequest, "Request has __post_init__"),
    ("TopVia", SwappedVia, "TopVia fields"),
    ("Header", SwappedHeader, "header line fields"),
    ("_SLOTS", {**parser._SLOTS, "contact": 9}, "header slots"),
    ("_SLOTS", {**parser._SLOTS, "to": 2, "from": 3}, "header slots"),
    ("_header_key", _keys_swapped, "header key of 'Via '"),
    ("TOKEN", re.compile(r"[A-Za-z0-9\-.!%*_+`']+"), "token characters"),
    ("_HAS_SCHEME", re.compile(r"[A-Za-z][A-Za-z0-9+._\-]*:"), "scheme characters"),
    ("_HAS_SCHEME", re.compile(r"[A-Za-z0-9][A-Za-z0-9+.\-]*:"), "scheme first characters"),
    ("MAX_CSEQ", 10**6, "largest CSeq read"),
    ("SIP_SCHEMES", frozenset({"sip"}), "REGISTER To schemes"),
]


@needs_ext
@pytest.mark.parametrize(("name", "value", "assumption"), BREAKS,
                         ids=[f"{b[0]}-{b[2]}" for b in BREAKS])
def test_a_broken_assumption_turns_the_parser_off(
        reconfigured: pytest.MonkeyPatch, name: str, value: object, assumption: str) -> None:
    reconfigured.setattr(parser, name, value)
    with pytest.warns(SpeedupsWarning) as warned:
        compiled, why = parser.use_speedups(SPEEDUPS)
    assert compiled is None
    assert why is not None and why.startswith(assumption + ":"), why
    assert len(warned) == 1
    line = str(warned[0].message)
    assert "\n" not in line and why in line and "pure Python" in line


@needs_ext
def test_an_assumption_that_still_holds_is_no_reason(reconfigured: pytest.MonkeyPatch) -> None:
    """A larger MAX_CSEQ changes nothing the C code relies on: it is still used."""
    reconfigured.setattr(parser, "MAX_CSEQ", 2**63 - 1)
    assert parser.use_speedups(SPEEDUPS) == (SPEEDUPS, None)


def _fake(reads: object = None, **assumes: dict[str, object]) -> ModuleType:
    """An extension as a stale or miscompiled build might be: ``reads`` is its parse."""
    assert SPEEDUPS is not None
    fake = ModuleType("fake_speedups")
    vars(fake).update(ASSUMES={**SPEEDUPS.ASSUMES, **assumes}, configure=lambda *args: None,
                      parse=reads or SPEEDUPS.parse, respond=SPEEDUPS.respond,
                      tag_state=SPEEDUPS.tag_state, to_tag=SPEEDUPS.to_tag)
    return fake


def _assumes(drop: str = "", **more: object) -> dict[str, object]:
    """The extension's parser assumptions, with one left out or some added."""
    assert SPEEDUPS is not None
    return {**{k: v for k, v in SPEEDUPS.ASSUMES["parser"].items() if k != drop}, **more}


@needs_ext
@pytest.mark.parametrize(("fake", "reason"), [
    pytest.param(lambda: ModuleType("old"), "does not say what it assumes", id="no-ASSUMES"),
    pytest.param(lambda: _fake(parser=_assumes(new=1)),
                 "new: assumed by the extension, not checked", id="unknown-assumption"),
    pytest.param(lambda: _fake(parser=_assumes(drop="header slots")),
                 "header slots: checked by the Python side, not stated", id="missing-assumption"),
    pytest.param(lambda: _fake(lambda data: None), "the probe request", id="probe-not-read"),
    pytest.param(lambda: _fake(lambda data: dataclasses.replace(parser.parse_python(data),
                                                                 cseq_num=8)),
                 "the probe request", id="probe-read-wrong"),
])
def test_a_build_that_does_not_fit_is_not_used(fake: Callable[[], ModuleType],
                                               reason: str) -> None:
    with pytest.warns(SpeedupsWarning, match=re.escape(reason)):
        assert parser.use_speedups(fake())[0] is None


@needs_ext
@pytest.mark.parametrize(("change", "reason"), [
    ({"RTCP payload types": (72, 79)}, "RTCP payload types: at position 1"),
    ({"fixed RTP header": 8}, "fixed RTP header"),
    (None, "no EchoTable"),
])
def test_the_rtp_echo_is_checked_too(change: dict[str, object] | None, reason: str) -> None:
    assert SPEEDUPS is not None
    ext = _fake(media={**SPEEDUPS.ASSUMES["media"], **(change or {})})
    if change is not None:
        vars(ext)["EchoTable"] = SPEEDUPS.EchoTable
    with pytest.warns(SpeedupsWarning, match=re.escape(reason)):
        table, why = adopt(ext, "RTP echo", media._check)
    assert table is None and why is not None and reason in why


@needs_ext
@pytest.mark.parametrize(("layout", "to_tag", "reason"), [
    ({"digest size": 8, "person": b"to-tag"}, None, "digest size"),
    ({"digest size": 6, "person": b"tag"}, None, "person"),
    (None, lambda *args: "000000000000", "To tag of None"),
])
def test_the_to_tag_is_checked_too(layout: dict[str, object] | None, to_tag: object,
                                   reason: str) -> None:
    ext = _fake()
    if to_tag is not None:
        vars(ext)["to_tag"] = to_tag
    with pytest.warns(SpeedupsWarning, match=re.escape(reason)):
        tag_state, compiled, why = seeded.use_speedups(ext, layout)
    assert tag_state is None and compiled is None
    assert why is not None and why.startswith(reason)


RESPOND = """
import json, sys
from responder.core.answer import build_step
from responder.rules.model import Identity, Step
from responder.sip.builder import Context
from responder.sip.errors import Discard
from responder.sip.parser import parse
from responder.sip.seeded import Seeded

def answers(datagrams):
    seeded, out = Seeded(7), []
    for data in datagrams:
        try:
            req = parse(data)
        except Discard as exc:
            out.append("discard " + exc.reason)
            continue
        tag = seeded.to_tag(req.call_id, req.from_tag)
        for source in (("192.0.2.7", 5099), ("2001:db8::10", 5062)):
            ctx = Context(Identity(), seeded, 1000.0, source, ("127.0.0.1", 5060), None)
            for code in (100, 180, 200, 486):
                out.append(build_step(req, ctx, Step.make(code), tag).hex())
    return out
"""
WIDEN = """
import dataclasses
from responder.sip import message
@dataclasses.dataclass(frozen=True, slots=True)
class Request(message.Request):
    note: str | None = None
message.Request = Request
"""


def _datagrams() -> list[bytes]:
    manifest = json.loads((CORPUS / "manifest.json").read_text())["messages"]
    return [*PEERS.values(), *((CORPUS / m["file"]).read_bytes() for m in manifest)]


@needs_ext
def test_a_wider_request_class_falls_back_with_one_warning_and_the_same_bytes(
        tmp_path: Path) -> None:
    """A process whose Request has a field the C code does not know (as if message.py had
    gained one): one warning line on stderr naming it, no traceback, the parser and the
    response head in pure Python, and the same responses as the compiled paths give here."""
    data = tmp_path / "datagrams.json"
    data.write_text(json.dumps([d.hex() for d in _datagrams()]))
    code = (WIDEN + RESPOND + "from responder.core import answer\nfrom responder.sip import "
            "parser\nprint(json.dumps([parser._fast_parse is None, answer._respond is None, "
            "parser.SPEEDUPS_DISABLED_BECAUSE, answers([bytes.fromhex(d) for d in "
            f"json.load(open({str(data)!r}))])]))")
    env = {k: v for k, v in os.environ.items() if k not in ("SIP_RESPONDER_PURE",
                                                            "PYTHONWARNINGS")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, timeout=60)
    no_parse, no_respond, why, got = json.loads(out.stdout)
    assert no_parse and no_respond
    assert why.startswith("Request fields: the extension has 22 items, Python 23"), why
    assert out.stderr.count("\n") == 1 and "SpeedupsWarning" in out.stderr, out.stderr
    assert why in out.stderr and "Traceback" not in out.stderr
    here: dict[str, object] = {}
    exec(RESPOND, here)
    assert parser._fast_parse is not None and answer._respond is not None
    respond = here["answers"]
    assert callable(respond)
    assert got == respond(_datagrams())


# ------------------------------------------------------------------ response heads

def heads_differ(req: Request, source: tuple[str, int]) -> tuple[int, list[str]]:
    """(how many heads the compiled respond wrote, the ones it wrote otherwise than
    responder.sip.builder.head) for one request and source: a few codes, a tag or none."""
    assert answer._respond is not None
    ctx = Context(Identity(), Seeded(1), 0.0, source, None, None)
    written, differ = 0, []
    for code, tag in itertools.product((100, 183, 200, 404), ("abc", None)):
        reason = codes.reason_for(code)
        dialog = 100 < code < 300 and req.method == "INVITE"
        got = answer._respond(req, code, reason, tag, source, dialog, b"")
        if got is None:
            continue
        written += 1
        want = head(req, ctx, code, reason, tag).encode("utf-8", "surrogateescape")
        if got != want:
            differ.append(f"{req.top_via.value!r} from {source}: {got!r} != {want!r}")
    return written, differ


def request_with(via: str, method: str = "OPTIONS", *more: str) -> bytes:
    return msg(f"{method} sip:bob@192.0.2.1 SIP/2.0", f"Via: {via}", *more,
               "From: <sip:alice@client.example>;tag=1", "To: <sip:bob@192.0.2.1>",
               "Call-ID: c1@client.example", f"CSeq: 1 {method}", "Content-Length: 0")


def parsed_both_ways(data: bytes) -> list[Request]:
    """The Request of parse (the fast path when it reads it) and of parse_python."""
    try:
        return [parser.parse(data), parser.parse_python(data)]
    except Discard:
        return []


# Sent-by hosts and packet sources: the same address as written, another address, written
# another way (case, zeros, brackets), scoped, names -- and names made of hex digits.
SENT_BY = ["192.0.2.7", "192.0.2.7:5099", "127.0.0.1:5061", "192.000.002.007", "[192.0.2.7]",
           "[2001:db8::10]:5062", "[2001:DB8:0::10]", "2001:db8::10", "[::1]", "[fe80::1]",
           "client.example", "CLIENT.example:5060", "[client.example]", "cafe.de", "abc"]
SOURCES = [("192.0.2.7", 5099), ("127.0.0.1", 5061), ("2001:db8::10", 5062), ("::1", 5060),
           ("fe80::1%lo", 5060), ("fe80::1%2", 5060), ("client.example", 5060),
           ("cafe.de", 5070), ("abc", 1)]
# Via parameters around RFC 3581: rport empty, with a value, in other case or spacing,
# received present, other parameters that contain "rport", an empty parameter.
VIA_PARAMS = ["rport", "rport=", "rport=5099", "rport=0", "RPORT", "Rport=", "rport=abc",
              " rport", "rport ", "rport = 7", "received=192.0.2.1", "received=",
              "Received=10.0.0.1", "received", "RECEIVED=::1", "branch=z9hG4bK-1",
              "BRANCH=z9hG4bK-2", "branch=", "alias", "maddr=192.0.2.9", "ttl=1", "x-rport",
              "rportx", "xrport=1", "comp=sigcomp", "lr", ""]
SHAPES = [[], ["rport"], ["branch=z9hG4bK-1", "rport"], ["rport", "branch=z9hG4bK-1"],
          ["rport", "alias"], ["rport="], ["rport=5"], ["received=192.0.2.1"],
          ["rport", "received=192.0.2.1"], ["RPORT"], ["rport", "rport"], ["x-rport", "rport"]]


@st.composite
def via_param(draw: st.DrawFn) -> str:
    """One Via parameter: a listed one, or a name from RFC 3581's neighbourhood in any case,
    with or without a value, with or without whitespace around it."""
    if draw(st.booleans()):
        return draw(st.sampled_from(VIA_PARAMS))
    name = draw(st.sampled_from(["rport", "received", "branch", "alias", "x-rport", "rportx"]))
    name = "".join(c.upper() if draw(st.booleans()) else c for c in name)
    value = draw(st.sampled_from([None, "", "5099", "0", "65536", "x", "192.0.2.1", "::1"]))
    pad = draw(st.sampled_from(["", "", " ", "\t"]))
    return f"{pad}{name}" + ("" if value is None else f"{pad}={pad}{value}") + pad


@st.composite
def vias(draw: st.DrawFn) -> tuple[bytes, tuple[str, int]]:
    """A request whose top Via is any mix of the shapes above, and a packet source."""
    params = draw(st.lists(via_param(), max_size=6))
    sent_by = draw(st.sampled_from(SENT_BY))
    via = f"SIP/2.0/{draw(st.sampled_from(['UDP', 'TCP', 'udp']))} {sent_by}" + "".join(
        f";{p}" for p in params)
    if draw(st.booleans()):
        via += ", SIP/2.0/UDP proxy.example;branch=z9hG4bK-p"  # via_rest
    more = []
    if draw(st.booleans()):
        more.append("Via: SIP/2.0/UDP 192.0.2.99;branch=z9hG4bK-2;rport=1")
    if draw(st.booleans()):
        more.append("Record-Route: <sip:proxy.example;lr>")
    method = draw(st.sampled_from(["OPTIONS", "INVITE"]))
    if draw(st.booleans()):  # the sent-by's own host as the source: where the copies may differ
        host = sent_by[1:sent_by.find("]")] if sent_by[0] == "[" else \
            sent_by.rpartition(":")[0] if sent_by.count(":") == 1 else sent_by
        return request_with(via, method, *more), (host, 5099)
    return request_with(via, method, *more), draw(st.sampled_from(SOURCES))


@needs_ext
@given(vias())
@FAST
def test_rfc3581_the_compiled_via_is_the_python_one(case: tuple[bytes, tuple[str, int]]) -> None:
    """RFC 3261 §18.2.1 received and RFC 3581 §4 rport are written twice, in C (respond)
    and in Python (builder.top_via): wherever the C one writes a head, it is Python's."""
    data, source = case
    for req in parsed_both_ways(data):
        written, differ = heads_differ(req, source)
        assert not differ, differ[0]
        event("compiled head" if written else "Python head")


@needs_ext
def test_rfc3581_every_listed_shape() -> None:
    """The same over every sent-by, source and a list of parameter shapes; most of them the
    compiled head writes itself (the comparison is not only of its fallback)."""
    written = 0
    for sent_by, params, source in itertools.product(SENT_BY, SHAPES, SOURCES):
        via = f"SIP/2.0/UDP {sent_by}" + "".join(f";{p}" for p in params)
        for req in parsed_both_ways(request_with(via)):
            n, differ = heads_differ(req, source)
            assert not differ, differ[0]
            written += n
    assert written > 2000  # of 25,920 heads: the C copy takes its common cases only


@needs_ext
def test_rfc3581_a_changed_copy_is_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison fails when the two copies differ: here, a Python rule that forgot to
    fill in an empty rport."""
    from responder.sip import builder

    def no_rport(req: Request, source: tuple[str, int]) -> str:
        return req.top_via.value + f";received={source[0]}"

    monkeypatch.setattr(builder, "top_via", no_rport)
    req = parser.parse(request_with("SIP/2.0/UDP 192.0.2.7:5099;branch=z9hG4bK-1;rport"))
    written, differ = heads_differ(req, ("192.0.2.7", 5099))
    assert written and len(differ) == written


@needs_ext
def test_respond_writes_what_python_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """build_step with the compiled head and with the Python one: the same bytes, for the
    corpus and the peers' requests, every registered code, tags or none, sources that are
    and are not the sent-by (IPv4, IPv6, a scope, a name), rport and received variants."""
    manifest = json.loads((CORPUS / "manifest.json").read_text())["messages"]
    extra = [PEERS["sipp-options"].replace(b";branch=", b";rport;branch="),
             PEERS["sipp-options"].replace(b";branch=", b";received=1.2.3.4;branch="),
             PEERS["sipp-options"].replace(b"127.0.0.1:5061;", b"client.example;rport=9;")]
    requests = []
    for data in [*PEERS.values(), *extra, *((CORPUS / m["file"]).read_bytes()
                                           for m in manifest)]:
        try:
            requests.append(parser.parse(data))
        except Discard:
            continue
    steps = [Step.make(code) for code in sorted(codes.CODES)] + [
        Step.make(200, headers=(("Contact", "<sip:x@y>"), ("X-A", "1"))),
        Step.make(180, body=b"abc", content_type="text/plain")]
    sources = [("127.0.0.1", 5061), ("192.0.2.7", 5099), ("::1", 5060),
               ("2001:db8::10", 5062), ("fe80::1%lo", 5060)]
    compiled = answer._respond
    keyed = Seeded(3)
    used = 0
    for req, source, identity in itertools.product(
            requests, sources, [Identity(), Identity(server="", supported=("100rel",))]):
        ctx = Context(identity, keyed, 1000.0, source, ("127.0.0.1", 5060), None)
        for step, tag in itertools.product(steps, ("abc", None)):
            monkeypatch.setattr(answer, "_respond", compiled)
            fast_bytes = answer.build_step(req, ctx, step, tag)
            monkeypatch.setattr(answer, "_respond", None)
            assert fast_bytes == answer.build_step(req, ctx, step, tag), (req, source, step)
            used += compiled is not None and compiled(
                req, step.code, step.reason, tag, source, False, b"") is not None
    assert used > 1000  # the compiled head was really compared, not only its fallback


@needs_ext
def test_long_names_long_values_and_many_vias(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the C caches' and buffers' sizes: a 100-character header name, a 5,000-character
    value, 100 Via lines (more pieces than respond() lays out: it falls back to Python; within
    the cap on Via values, MAX_VIA_VALUES)."""
    base = PEERS["sipp-options"]
    name = "X-" + "n" * 98
    long_header = base.replace(b"Subject:", f"{name}: {'v' * 5000}\r\nSubject:".encode())
    req = agree(long_header)
    assert req is not None and req.header(name.lower()) == "v" * 5000
    assert agree(long_header) == req  # again: the name is now in the Python cache
    vias = "".join(f"Via: SIP/2.0/UDP proxy{i}.example;branch=z9hG4bK-{i}\r\n"
                   for i in range(100))
    many = base.replace(b"From:", vias.encode() + b"From:")
    req = agree(many)
    assert req is not None and len(req.vias) == 101
    ctx = Context(Identity(), Seeded(1), 0.0, ("127.0.0.1", 5061), None, None)
    step = Step.make(200)
    assert answer._respond is not None
    assert answer._respond(req, 200, "OK", "t", ctx.source, False, b"") is None
    got = answer.build_step(req, ctx, step, "t")
    monkeypatch.setattr(answer, "_respond", None)
    assert got == answer.build_step(req, ctx, step, "t")
    assert got.count(b"\r\nVia: ") == 101


# ------------------------------------------------------------------ To tags

TEXT = st.none() | st.text(max_size=40) | st.text(alphabet="abc-.@\x00é", max_size=300)


@needs_ext
@given(seed=st.integers(0, 2**63), call_id=TEXT, from_tag=TEXT)
@FAST
def test_to_tag_is_hashlibs_blake2b(seed: int, call_id: str | None, from_tag: str | None
                                    ) -> None:
    """The compiled BLAKE2b gives Seeded's tag (keyed, person "to-tag", 6 bytes), or None
    for text it leaves to Python (non-ASCII): the same tags with and without it."""
    assert SPEEDUPS is not None
    tag_state, to_tag = SPEEDUPS.tag_state, SPEEDUPS.to_tag
    keyed = Seeded(seed)
    h = hashlib.blake2b(key=keyed._key, digest_size=6, person=b"to-tag")
    h.update(f"{call_id}\x00{from_tag}".encode("utf-8", "surrogateescape"))
    got = to_tag(tag_state(keyed._key), call_id, from_tag)
    texts = [t for t in (call_id, from_tag) if t is not None]
    if all(t.isascii() for t in texts):
        assert got == h.hexdigest()
    else:
        assert got is None
    assert keyed.to_tag(call_id, from_tag) == h.hexdigest()
