"""RFC 4475 / RFC 5118 torture messages: in memory through the engine, and over UDP.

Every message of tests/conformance (manifest.json, 61 messages) goes, as one datagram, into
an :class:`~responder.core.engine.Engine` with the built-in default rules (in memory: no
socket, no waiting; "no answer" is an empty list of effects, not a timeout), and a
representative subset goes over a real UDP socket to the ``sip-responder`` console script
(``test_message_over_udp``), so the two paths are seen to agree. The expected outcome of
each message is a project decision written down below. Test ids are the RFCs' own names.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sip import sends
from support import (
    Message,
    ResponderProcess,
    SipClient,
    header_params,
    norm,
    param_name_value,
    parse_message,
    parse_response,
    split_params,
    statuses,
    tag_of,
    via_sent_by_host,
)

from responder.core.effects import Inbound
from responder.core.engine import Engine
from responder.rules.loader import build_ruleset
from responder.sip.seeded import Seeded

CORPUS = Path(__file__).resolve().parent / "conformance"  # in the repository: hermetic
MANIFEST = CORPUS / "manifest.json"


def _load() -> list[dict[str, Any]]:
    if not MANIFEST.is_file():
        return []
    return list(json.loads(MANIFEST.read_text(encoding="utf-8"))["messages"])


MESSAGES = _load()
BY_NAME = {entry["name"]: entry for entry in MESSAGES}


def named(name: str) -> dict[str, Any]:
    assert MESSAGES, f"conformance corpus not found at {CORPUS}"
    return BY_NAME[name]

# ----------------------------------------------------------------- project decisions
# What the default rules give (config/rules.yaml): INVITE -> 100, 180, 200; the other
# common methods -> 200; unknown methods -> 501.
RULES_INVITE = (100, 180, 200)
RULES_OK = (200,)

# Every response message is discarded: a UAS never answers a response.
# Messages with a fixed answer (the RFC's code or our choice among the acceptable ones):
FIXED = {
    "intmeth": (501,),      # unknown method: default rule -> 501 with Allow
    "esc02": (501,),        # 'RE%47IST%45R' is an unknown method, not REGISTER
    "mismatch02": (400,),   # RFC prefers 501, allows 400: CSeq method mismatch is checked first
    "unkscm": (416,),
    "novelsc": (416,),
    "bext01": (420,),
    "unksm2": (400,),       # a REGISTER's To must be a sip/sips AOR
    "badvers": (505,),
    "badbranch": RULES_OK,  # 'z9hG4bK' alone is accepted; answered per rules
    "regaut01": RULES_OK,   # unknown auth scheme ignored: no auth configured
    "zeromf": RULES_OK,     # Max-Forwards 0 is fine for an endpoint
    "dblreq": RULES_OK,     # only the REGISTER is answered
    "inv2543": RULES_INVITE,
    # SPEC §8.2: a request with a To tag we never issued is in no dialog of ours: 481.
    "wsinv": (481,),
    "via-received-param-with-delim": (481,),
    "mult-ip-in-header": (481,),
    # SPEC §8.1: the offer shares no codec with media.codecs (G726-32 only): 488.
    "ipv6-in-sdp": (488,),
    "ipv4-mapped-ipv6": (488,),
}
# The RFC wants a full user agent's answer; a test tool answers INVITE as its rules say.
LEFT_TO_RULES = {"invut": 415, "sdp01": 406}
LEFT_TO_RULES_REASON = (
    "project decision: a test tool answers INVITE as its rules say; body type and Accept "
    "are not inspected"
)
# Invalid, but the RFC lets a liberal element accept them; we do, and answer per rules.
LENIENT = {
    "lwsstart": RULES_INVITE,  # extra spaces in the request line
    "trws": RULES_OK,          # trailing spaces after SIP/2.0
    "baddate": RULES_INVITE,   # Date is not inspected
}
# Invalid and answerable: 400 with a reason that names the defect.
BAD_REQUEST = frozenset(
    {
        "quotbal", "ltgtruri", "lwsruri", "escruri", "regbadct", "badaspec", "baddn",
        "badinv01", "clerr", "ncl", "mcl01", "scalar02", "insuf", "multi01", "mismatch01",
        "ipv6-bad",
    }
)


@dataclass(frozen=True)
class Expectation:
    statuses: tuple[int, ...]  # () = no answer at all
    why: str


def expectation(entry: dict[str, Any]) -> Expectation:
    name = entry["name"]
    if entry["kind"] == "response":
        return Expectation((), "a response is never answered")
    if name in LEFT_TO_RULES:
        return Expectation((LEFT_TO_RULES[name],), "the RFC's answer for a full UA")
    if name in FIXED:
        return Expectation(FIXED[name], "project decision")
    if name in LENIENT:
        return Expectation(LENIENT[name], "lenient: accepted and answered per rules")
    if name in BAD_REQUEST:
        return Expectation((400,), "malformed but answerable")
    if entry["expectation"] == "valid" and entry["expected_status"] is None:
        rules = RULES_INVITE if entry["method"] == "INVITE" else RULES_OK
        return Expectation(rules, "valid: answered per the default rules")
    raise AssertionError(f"no decision recorded for {name}")


def _params() -> list[Any]:
    out = []
    for entry in MESSAGES:
        marks = []
        if entry["name"] in LEFT_TO_RULES:
            marks.append(pytest.mark.xfail(strict=True, reason=LEFT_TO_RULES_REASON))
        out.append(pytest.param(entry, id=entry["name"], marks=marks))
    return out


def message_bytes(entry: dict[str, Any], *, archived: bool = False) -> bytes:
    """The bytes to send (RFC 5118: the CRLF wire copy unless ``archived``), hash-checked."""
    if "wire_file" in entry and not archived:
        path, digest = entry["wire_file"], entry["wire_sha256"]
    else:
        path, digest = entry["file"], entry["sha256"]
    data: bytes = (CORPUS / path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == digest, (
        f"{path}: SHA-256 differs from the manifest: a corrupted checkout or an edited file"
    )
    return data


# ----------------------------------------------------------------- clients


class MemoryClient:
    """The corpus client in memory: each datagram goes into one engine with the built-in
    default rules (what ``sip-responder`` with no rules runs), from 127.0.0.1:``port``; its
    responses are what the engine says to send back, due steps included. Absence is shown
    by the engine's effects, not by waiting."""

    port = 40_000
    local = ("127.0.0.1", 5060)

    def __init__(self) -> None:
        self.engine = Engine(build_ruleset(None, []), Seeded(1))
        self.now = 0.0

    def exchange(self, *datagrams: bytes) -> list[Message]:
        out: list[Message] = []
        for data in datagrams:
            self.now += 1.0
            effects = self.engine.receive(
                Inbound(data, ("127.0.0.1", self.port), self.local), self.now)
            while (deadline := self.engine.next_deadline()) is not None:
                effects += self.engine.due(deadline)
            for send in sends(effects):
                if send.exchange is not None and send.exchange.repeat:
                    continue  # a 2xx resent for want of an ACK (SPEC §4): not an answer
                assert send.dest == ("127.0.0.1", self.port), send
                out.append(parse_response(send.data))
        return out


@pytest.fixture
def client() -> MemoryClient:
    return MemoryClient()


@pytest.fixture(scope="module")
def server() -> Any:
    with ResponderProcess() as proc:
        yield proc


@pytest.fixture
def udp_client(server: ResponderProcess) -> Any:
    assert server.alive, f"the server died; stderr:\n{server.stderr_text()}"
    with server.client() as c:
        yield c


# Sent over UDP too: one of each outcome (answered per rules, fixed answer, 400, 416, 420,
# 505, discarded response, multiple requests in one datagram, RFC 5118 IPv6 references).
OVER_UDP = ("wsinv", "intmeth", "esc02", "insuf", "mismatch01", "unkscm", "bext01",
            "badvers", "dblreq", "lwsstart", "unreason", "ipv6-good", "mult-ip-in-header",
            "scalarlg")


# ----------------------------------------------------------------- checks


def check_copied_headers(request: Message, response: Message, client_port: int) -> None:
    """RFC 3261 §8.2.6.2 as SPEC §4 words it, for one response to ``request``."""
    where = f"{response.status} {response.reason}"
    # Call-ID, CSeq, From: copied (whitespace as written may be unfolded).
    for name in ("call-id", "cseq", "from"):
        sent = [norm(v) for v in request.all(name)]
        got = [norm(v) for v in response.all(name)]
        if len(sent) == 1:
            assert got == sent, f"{where}: {name} {got} is not the request's {sent}"
        elif sent:
            assert got and set(got) <= set(sent), f"{where}: {name} {got} not from {sent}"

    # Via: every value copied in order; the top one may get received=/rport= (RFC 3581).
    sent_vias = request.values("via")
    got_vias = response.values("via")
    assert len(got_vias) == len(sent_vias), (
        f"{where}: {len(got_vias)} Via values, the request has {len(sent_vias)}:\n"
        f"{got_vias}\n{sent_vias}"
    )
    assert [norm(v) for v in got_vias[1:]] == [norm(v) for v in sent_vias[1:]], (
        f"{where}: Via values below the top one changed"
    )
    check_top_via(sent_vias[0], got_vias[0], client_port, where)

    # To: copied, a tag added except on 100 when the request has none.
    sent_to = request.all("to")
    got_to = response.all("to")
    if sent_to:
        assert got_to, f"{where}: no To header"
        if len(sent_to) == 1:
            assert norm(got_to[0]).startswith(norm(sent_to[0])), (
                f"{where}: To {got_to[0]!r} is not a copy of {sent_to[0]!r}"
            )
        if tag_of(sent_to[0]) is not None:
            assert tag_of(got_to[0]) == tag_of(sent_to[0]), f"{where}: the To tag changed"
        elif response.status == 100:
            assert tag_of(got_to[0]) is None, f"{where}: 100 Trying must carry no To tag"
        else:
            assert tag_of(got_to[0]), f"{where}: To has no tag: {got_to[0]!r}"

    # Content-Length exact, Server present.
    lengths = response.all("content-length")
    assert len(lengths) == 1, f"{where}: Content-Length headers: {lengths}"
    assert int(lengths[0]) == len(response.body), (
        f"{where}: Content-Length {lengths[0]} but the body has {len(response.body)} octets"
    )
    assert response.get("server"), f"{where}: no Server header"


def check_top_via(sent: str, got: str, client_port: int, where: str) -> None:
    """The top Via is the request's, parameters in order, except that (RFC 3261 §18.2.1,
    RFC 3581 §4) an empty rport gets the source port, and received= is set to the source
    address (a received= the request already carried may be replaced)."""
    sent_head, sent_params = split_params(sent)
    got_head, got_params = split_params(got)
    assert got_head == sent_head, f"{where}: top Via {got!r} does not copy {sent!r}"
    sent_core = [p for p in sent_params if param_name_value(p)[0] != "received"]
    got_core = [p for p in got_params if param_name_value(p)[0] != "received"]
    assert len(got_core) >= len(sent_core), f"{where}: top Via lost parameters: {got!r}"
    for mine, theirs in zip(sent_core, got_core, strict=False):
        name, value = param_name_value(mine)
        if name == "rport" and value is None:
            assert param_name_value(theirs) == ("rport", str(client_port)), (
                f"{where}: empty rport must become rport={client_port}: {got!r}"
            )
        else:
            assert theirs == mine, f"{where}: top Via {got!r} does not copy {sent!r}"
    added = [param_name_value(p)[0] for p in got_core[len(sent_core) :]]
    assert added == [], f"{where}: parameters added to the top Via: {got!r}"
    received = [param_name_value(p) for p in got_params if param_name_value(p)[0] == "received"]
    if via_sent_by_host(sent) != "127.0.0.1":
        assert received == [("received", "127.0.0.1")], (
            f"{where}: top Via sent-by {via_sent_by_host(sent)!r} is not the source address: "
            f"one received=127.0.0.1 expected in {got!r}"
        )
    else:
        assert received in ([], [("received", "127.0.0.1")]), f"{where}: {got!r}"
    if not any(param_name_value(p)[0] == "received" for p in sent_params):
        # Nothing to replace: the response's top Via starts with the request's, verbatim.
        assert norm(got).startswith(norm(sent).split(";rport")[0]), (
            f"{where}: top Via {got!r} does not start with {sent!r}"
        )


def check_answer(entry: dict[str, Any], request: Message, responses: list[Message],
                 client_port: int) -> None:
    want = expectation(entry)
    got = statuses(responses)
    reasons = [f"{r.status} {r.reason}" for r in responses]
    print(f"{entry['name']}: {reasons or 'no answer'}")
    if not want.statuses:
        assert got == [], f"{entry['name']} ({want.why}): expected no answer, got {reasons}"
        return
    if want.statuses[0] != 100 and got[:1] == [100]:
        got = got[1:]  # a 100 Trying before a final error answer is harmless
    assert tuple(got) == want.statuses, (
        f"{entry['name']} ({want.why}): expected {list(want.statuses)}, got {reasons}"
    )
    for response in responses:
        check_copied_headers(request, response, client_port)
    non_trying = [tag_of(r.get("to")) for r in responses if r.status != 100 and r.get("to")]
    assert len(set(non_trying)) <= 1, f"To tags differ between responses: {non_trying}"


# ----------------------------------------------------------------- the tests


def test_corpus_is_present_and_intact() -> None:
    assert MANIFEST.is_file(), (
        f"conformance corpus not found at {CORPUS}"
    )
    assert len(MESSAGES) == 61, f"{len(MESSAGES)} messages in the manifest, expected 61"
    assert len(BY_NAME) == 61, "message names are not unique"
    for entry in MESSAGES:
        message_bytes(entry)
        if "wire_file" in entry:
            message_bytes(entry, archived=True)


def test_every_message_has_a_recorded_decision() -> None:
    assert MESSAGES, f"no manifest at {MANIFEST}"
    named = set(FIXED) | set(LEFT_TO_RULES) | set(LENIENT) | BAD_REQUEST
    assert named <= set(BY_NAME), f"decisions for unknown messages: {named - set(BY_NAME)}"
    for entry in MESSAGES:
        want = expectation(entry)
        if entry["expectation"] == "invalid" and entry["kind"] == "request":
            assert entry["name"] in BAD_REQUEST | set(LENIENT) | set(FIXED), entry["name"]
        if entry["name"] in LENIENT:
            assert entry["lenient_accept_allowed"], f"{entry['name']}: RFC requires rejection"
        if entry["expected_status"] is not None and want.statuses[-1] not in LEFT_TO_RULES.values():
            allowed = {entry["expected_status"], *entry["also_acceptable"]}
            assert want.statuses[-1] in allowed, f"{entry['name']}: {want} not in {allowed}"


@pytest.mark.parametrize("entry", _params())
def test_message(entry: dict[str, Any], client: MemoryClient) -> None:
    data = message_bytes(entry)
    check_answer(entry, parse_message(data), client.exchange(data), client.port)


@pytest.mark.parametrize("name", OVER_UDP)
def test_message_over_udp(name: str, udp_client: SipClient) -> None:
    """The console script over a real socket gives what the engine gave in memory."""
    entry = named(name)
    data = message_bytes(entry)
    responses = udp_client.exchange(data)
    check_answer(entry, parse_message(data), responses, udp_client.port)
    in_memory = MemoryClient().exchange(data)
    assert [(r.status, r.reason) for r in responses] == [
        (r.status, r.reason) for r in in_memory]


def test_over_udp_subset_names_real_messages() -> None:
    assert set(OVER_UDP) <= set(BY_NAME), set(OVER_UDP) - set(BY_NAME)


def test_left_to_rules_answers(client: MemoryClient) -> None:
    """invut and sdp01 (xfail above) get what the default rules give an INVITE."""
    for name in LEFT_TO_RULES:
        entry = named(name)
        data = message_bytes(entry)
        responses = client.exchange(data)
        assert statuses(responses) == list(RULES_INVITE), (name, statuses(responses))
        for response in responses:
            check_copied_headers(parse_message(data), response, client.port)


def test_bad_request_reasons_are_given(client: MemoryClient) -> None:
    """Every 400 carries a reason phrase (ideally naming the defect)."""
    phrases = {}
    for name in sorted(BAD_REQUEST | {"mismatch02", "unksm2"}):
        responses = client.exchange(message_bytes(named(name)))
        finals = [r for r in responses if r.status >= 200]
        assert finals, f"{name}: no final response"
        phrases[name] = finals[-1].reason
    for name, phrase in phrases.items():
        print(f"{name}: 400 {phrase}")
        assert phrase.strip(), f"{name}: empty reason phrase"
    assert phrases["mismatch01"] != "Bad Request", "the CSeq method mismatch can be named"
    assert phrases["insuf"] != "Bad Request", "missing headers can be named"


def test_unknown_method_501_has_allow(client: MemoryClient) -> None:
    for name in ("intmeth", "esc02"):
        (response,) = client.exchange(message_bytes(named(name)))
        assert response.status == 501
        assert response.get("allow"), f"{name}: 501 without Allow"
        allowed = {m.strip().upper() for m in response.values("allow")}
        assert {"INVITE", "OPTIONS", "REGISTER"} <= allowed, allowed


def test_bext01_lists_require_tags_only(client: MemoryClient) -> None:
    (response,) = client.exchange(message_bytes(named("bext01")))
    assert response.status == 420
    unsupported = {norm(v) for v in response.values("unsupported")}
    assert unsupported == {"nothingSupportsThis", "nothingSupportsThisEither"}, unsupported


def test_dblreq_answers_only_the_register(client: MemoryClient) -> None:
    (response,) = client.exchange(message_bytes(named("dblreq")))
    assert response.status == 200
    assert norm(response.get("cseq") or "") == "8 REGISTER"


def test_rfc5118_received_is_added(client: MemoryClient) -> None:
    for entry in MESSAGES:
        if entry["rfc"] != 5118 or entry["name"] == "ipv6-bad":
            continue
        responses = client.exchange(message_bytes(entry))
        assert responses, f"{entry['name']}: no answer"
        for response in responses:
            top = response.values("via")[0]
            received = [
                param_name_value(p) for p in split_params(top)[1]
                if param_name_value(p)[0] == "received"
            ]
            assert ("received", "127.0.0.1") in received, f"{entry['name']}: {top!r}"


def test_lf_only_rfc5118_archive_is_answered_or_discarded(
    server: ResponderProcess, udp_client: SipClient
) -> None:
    """The RFC 5118 files as archived (LF line ends, two without the closing empty line):
    each gets a response to itself or nothing, and the server keeps serving."""
    assert MESSAGES, f"conformance corpus not found at {CORPUS}"
    seen = {}
    for entry in MESSAGES:
        if entry["rfc"] != 5118:
            continue
        data = message_bytes(entry, archived=True)
        assert b"\r" not in data
        request = parse_message(data)
        responses = udp_client.exchange(data)
        for response in responses:
            assert norm(response.get("call-id") or "") == norm(request.get("call-id") or "")
            assert norm(response.get("cseq") or "") == norm(request.get("cseq") or "")
            assert 100 <= response.status <= 699
        seen[entry["name"]] = [f"{r.status} {r.reason}" for r in responses] or "discarded"
    print(seen)
    assert len(seen) == 12
    assert server.alive


def test_to_header_params_reader() -> None:
    """The test's own To-tag reader, on forms the corpus uses."""
    assert header_params("<sip:a@b;tag=x>;tag=y") == {"tag": "y"}
    assert tag_of("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n") == "1918181833n"
    assert tag_of("sip:+16505552222@ss1.example.net;user=phone") is None


def test_zz_server_survived_and_exits_cleanly(server: ResponderProcess) -> None:
    with server.client() as c:
        assert c.exchange() == []  # the sentinel alone is answered
    assert server.alive
    assert server.stop() == 0, server.stderr_text()
    assert not any("Traceback" in line for line in server.stderr_lines), server.stderr_text()
