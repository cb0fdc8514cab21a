"""responder.testing: the Responder thread, its rules, journal and assertions, and the clients.

Everything runs on loopback UDP against a real server in a thread; no fixed ports, no sleeps
(waits are bounded polls or socket timeouts).
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from responder.rules.model import RuleError
from responder.testing import (
    AsyncSipClient,
    Responder,
    SipClient,
    SipTimeout,
    make_step,
    to_ruleset,
)
from responder.testing.client_core import parse_response

AUTH_RULES = """\
auth:
  realm: lab.example
  users: {{"1000": s3cret}}
  {extra}
rules:
  - name: registrar
    match: {{method: REGISTER}}
    auth: digest
    respond: 200
"""


def options_bytes(port: int, branch: str = "z9hG4bKraw1", call_id: str = "raw-1") -> bytes:
    return (f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:9;branch={branch};rport\r\n"
            "From: <sip:raw@127.0.0.1>;tag=r1\r\nTo: <sip:127.0.0.1>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n").encode()


@pytest.fixture(scope="module")
def server() -> Iterator[Responder]:
    with Responder() as responder:
        yield responder


@pytest.fixture
def responder(server: Responder) -> Responder:
    server.reset()
    return server


@pytest.fixture
def client(responder: Responder) -> Iterator[SipClient]:
    with SipClient(responder.address) as c:
        yield c


# --------------------------------------------------------------------------- life cycle


def test_start_returns_once_it_answers_and_forgets_the_probe() -> None:
    with Responder() as r:
        assert r.journal == []  # the start-up OPTIONS probe is not in the journal
        host, port = r.address
        assert host == "127.0.0.1" and port > 0
        assert r.uri("1000") == f"sip:1000@127.0.0.1:{port}"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2.0)
            s.sendto(options_bytes(port), r.address)  # the very first request is answered
            assert s.recv(65535).startswith(b"SIP/2.0 200 OK\r\n")
        assert [e.method for e in r.journal] == ["OPTIONS"]
        assert any("listening on udp://127.0.0.1:" in line for line in r.log)


def test_stop_is_final() -> None:
    r = Responder().start()
    assert r.running
    r.stop()
    assert not r.running
    r.stop()  # a second stop does nothing
    with pytest.raises(RuntimeError, match="stop\\(\\) is final"):
        r.start()
    with pytest.raises(RuntimeError, match="stopped"):
        r.set_rules("INVITE->486")
    assert r.journal == []  # still readable


def test_rules_set_before_start_are_the_start_rules() -> None:
    r = Responder()
    r.set_rules("INVITE->486")
    r.on("OPTIONS").respond(503)
    with r, SipClient(r.address) as c:
        assert c.options().status == 503
        r.set_rules("OPTIONS->200")
        r.reset()
        assert c.options().status == 503
        assert c.invite().statuses == [486]


def test_start_twice_is_an_error() -> None:
    with Responder() as r, pytest.raises(RuntimeError, match="already started"):
        r.start()


def test_context_manager_releases_the_port() -> None:
    with Responder() as r:
        port = r.address[1]
        assert r.running
    assert not r.running
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", port))  # free again


def test_a_bind_error_in_the_thread_surfaces_in_start() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        r = Responder(port=busy.getsockname()[1])
        with pytest.raises(OSError) as info:
            r.start()
        assert "in use" in str(info.value).lower()
    assert not r.running
    with pytest.raises(RuntimeError):
        r.start()  # a failed start is final too


def test_an_error_in_the_server_thread_is_raised_by_stop() -> None:
    r = Responder().start()

    def boom() -> None:
        raise ZeroDivisionError("inside the server loop")

    assert r._loop is not None
    r._loop.call_soon_threadsafe(boom)
    with pytest.raises(ZeroDivisionError, match="inside the server loop"):
        r.stop()


def test_an_error_in_the_server_thread_is_raised_by_the_next_call() -> None:
    with Responder() as r:
        def boom() -> None:
            raise ValueError("late failure")

        assert r._loop is not None
        r._loop.call_soon_threadsafe(boom)
        with pytest.raises(ValueError, match="late failure"):
            # the first call after boom ran raises: this one, or the next (which runs on
            # the loop after boom)
            for _ in range(2):
                r.set_rules("INVITE->486")
        assert r.journal == []  # raised once


def test_ipv6_loopback() -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with Responder(host="::1") as r, SipClient(r.address) as c:
        assert r.uri("1000") == f"sip:1000@[::1]:{r.address[1]}"
        assert c.local_address[0] == "::1"
        assert c.options(r.uri("1000")).status == 200


# --------------------------------------------------------------------------- rules


def test_rules_from_one_line_string(responder: Responder, client: SipClient) -> None:
    responder.set_rules("INVITE->486")
    assert client.invite(responder.uri("1000")).statuses == [486]
    assert client.options().status == 200  # the start rules answer the rest


def test_rules_from_a_list(responder: Responder, client: SipClient) -> None:
    responder.set_rules(["INVITE@1000->486", "INVITE->603;reason=Go Away"])
    assert client.invite(responder.uri("1000")).final.status == 486
    final = client.invite(responder.uri("2000")).final
    assert (final.status, final.reason) == (603, "Go Away")


def test_rules_from_yaml_text(responder: Responder, client: SipClient) -> None:
    responder.set_rules("rules:\n  - match: {method: OPTIONS}\n    respond: 503\ndefault: 404\n")
    assert client.options().status == 503
    assert client.invite().statuses == [404]  # YAML replaces everything, default included


def test_rules_from_a_file(responder: Responder, client: SipClient, tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - {match: {method: INVITE}, respond: 480}\n")
    responder.set_rules(path)
    assert client.invite().statuses == [480]


def test_bad_rules_raise_rule_errors(responder: Responder) -> None:
    with pytest.raises(RuleError, match="--rule 'INVITE->999'"):
        responder.set_rules("INVITE->999")
    with pytest.raises(RuleError, match=r"<rules>:3:5: unknown key 'respnd'"):
        responder.set_rules("rules:\n  - match: {method: INVITE}\n    respnd: 200\n")
    with pytest.raises(RuleError, match="only the last step may be a final"):
        responder.on("INVITE").respond(486, 180)
    with pytest.raises(RuleError, match="bad delay"):
        make_step((486, "soon"))
    with pytest.raises(RuleError, match="bad response code 99"):
        make_step(99)


def test_to_ruleset_detects_what_it_is_given() -> None:
    defaults = to_ruleset(None)
    assert [r.name for r in defaults.rules] == ["invite", "ok"]
    assert to_ruleset(defaults) is defaults
    one = to_ruleset("INVITE->486")
    assert [r.name for r in one.rules] == ["INVITE->486", "invite", "ok"]
    assert to_ruleset("rules: []").rules == ()  # one line, but YAML
    assert to_ruleset("default: 404").default[0].code == 404
    base = to_ruleset("rules: []")
    assert [r.name for r in to_ruleset(["A->200", "B->486"], base).rules] == ["A->200", "B->486"]
    assert make_step("486/2s").after == 2.0 and make_step((180, 0.5)).after == 0.5


def test_fluent_rules_go_in_front(responder: Responder, client: SipClient) -> None:
    rule = responder.on("INVITE", user="1000").respond(180, (486, "100ms"))
    assert rule.name == "on INVITE user='1000'"
    assert client.invite(responder.uri("1000")).statuses == [180, 486]
    assert client.invite(responder.uri("2000")).statuses == [100, 180, 200]
    responder.on("OPTIONS", name="busy options").respond({"code": 486, "reason": "Not Now",
                                                         "headers": {"Retry-After": "30"}})
    resp = client.options()
    assert (resp.status, resp.reason, resp.header("retry-after")) == (486, "Not Now", "30")
    assert responder.journal[-1].rule == "busy options"


def test_fluent_match_keys(responder: Responder, client: SipClient) -> None:
    responder.on("MESSAGE", from_user="alice", headers={"User-Agent": "re:^evil"}).respond(403)
    assert client.request("MESSAGE", "bob", from_user="alice",
                          headers={"User-Agent": "evil-bot"}).statuses == [403]
    assert client.request("MESSAGE", "bob", from_user="alice").statuses == [200]
    assert client.request("MESSAGE", "bob", from_user="carol",
                          headers={"User-Agent": "evil-bot"}).statuses == [200]


def test_drop(responder: Responder, client: SipClient) -> None:
    responder.on("OPTIONS").respond("drop")
    with pytest.raises(SipTimeout) as info:
        client.options(timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    assert "it received: nothing" in str(info.value)
    entry = responder.assert_received("OPTIONS", count=1)[0]
    assert entry.responses == []


def test_reset_restores_start_rules_and_clears_the_journal(
        responder: Responder, client: SipClient) -> None:
    responder.set_rules("*->503")
    assert client.options().status == 503
    responder.reset()
    assert responder.journal == []
    assert client.options().status == 200


def test_reset_waits_for_datagrams_already_sent(responder: Responder, client: SipClient) -> None:
    for _ in range(20):  # e.g. the ACK of a previous test, still in the server's socket
        client.send_raw(options_bytes(responder.address[1]).replace(b"OPTIONS", b"ACK"),
                        wait=False)
    responder.reset()
    assert responder.journal == []
    client.send_raw(b"junk", wait=False)
    responder.clear_journal()
    assert responder.journal == []


# --------------------------------------------------------------------------- journal


def test_journal_records_requests_and_delayed_responses(
        responder: Responder, client: SipClient) -> None:
    responder.set_rules("INVITE->180,486/200ms")
    assert client.invite(responder.uri("1000")).statuses == [180, 486]
    [invite] = responder.assert_answered("INVITE", [180, 486], user="1000")
    assert invite.statuses == [180, 486] and invite.rule == "INVITE->180,486/200ms"
    assert invite.request is not None and invite.request.target_user == "1000"
    [ack] = responder.assert_received("ACK", count=1)
    assert ack.responses == []  # an ACK is never answered


def test_cancel_gets_200_and_the_invite_487(responder: Responder, client: SipClient) -> None:
    responder.set_rules("INVITE->180,486/1s")
    assert client.invite(responder.uri("1000"), until="provisional").statuses == [180]
    ok, terminated = client.cancel()
    assert (ok.status, terminated.status) == (200, 487)
    responder.assert_answered("INVITE", [180, 487])
    responder.assert_answered("CANCEL", 200)
    responder.assert_received("ACK", count=1)  # the 487 was ACKed


def test_requests_filters_and_clear_journal(responder: Responder, client: SipClient) -> None:
    client.options("1000")
    client.invite("2000")
    responder.assert_received("ACK")  # (waits for it: the client does not wait for an ACK)
    assert [e.method for e in responder.requests()] == ["OPTIONS", "INVITE", "ACK"]
    assert [e.method for e in responder.requests("INVITE", user="2*")] == ["INVITE"]
    assert responder.requests("*", user="1000")[0].method == "OPTIONS"
    responder.clear_journal()
    assert responder.journal == []


def test_journal_entries_give_headers_body_and_response_bytes(
        responder: Responder, client: SipClient) -> None:
    """Issue 12: each entry's request headers (in order, as written), body and the bytes of
    every response, without parsing the datagram again."""
    responder.set_rules("MESSAGE->202")
    got = client.request("MESSAGE", responder.uri("1000"), body="hello\r\n",
                         content_type="text/plain", headers={"X-Lab": "one"})
    assert got.final.status == 202
    [entry] = responder.requests("MESSAGE")
    names = [name for name, _ in entry.headers]
    assert names[0] == "Via" and "X-Lab" in names and "Content-Type" in names
    assert entry.header("x-lab") == "one" and entry.header("l") == "7"  # any case, compact
    assert entry.header("Subject") is None
    assert entry.body == b"hello\r\n" and entry.size == len(entry.data)
    assert entry.data.endswith(b"\r\n\r\nhello\r\n")
    [sent] = entry.responses
    assert sent.startswith(b"SIP/2.0 202 Accepted\r\n")
    parsed = parse_response(sent)
    assert parsed is not None and parsed.status == 202


def test_garbage_is_journalled_as_discarded(responder: Responder, client: SipClient) -> None:
    assert client.send_raw(b"hello", wait=False) == []
    assert client.send_raw(options_bytes(responder.address[1])).statuses == [200]
    entries = responder.journal
    assert entries[0].request is None and entries[0].discard
    assert entries[0].headers == [] and entries[0].body == b"" and entries[0].size == 5
    assert responder.counters.discarded


# --------------------------------------------------------------------------- near misses


def test_near_misses_name_the_failing_keys(responder: Responder, client: SipClient) -> None:
    client.invite("1001", from_user="alice")
    client.options("1000")
    with pytest.raises(AssertionError) as info:
        responder.assert_received("INVITE", user="1000", from_user="bob", timeout=0)
    text = str(info.value)
    assert "expected INVITE with user='1000', from_user='bob' at least once; 0 matched" in text
    lines = text.splitlines()
    closest = lines[lines.index("near misses (closest first):") + 1]
    assert closest.startswith("  INVITE sip:1001@")
    assert "user '1001' does not match '1000'" in closest
    assert "from_user 'alice' does not match 'bob'" in closest
    assert "method OPTIONS is not INVITE" in text
    assert "received in total: 3 request(s) (INVITE x1, ACK x1, OPTIONS x1)" in text


def test_assert_answered_names_the_statuses(responder: Responder, client: SipClient) -> None:
    client.invite("1000")
    with pytest.raises(AssertionError, match=r"answered 100, 180, 200, not 486"):
        responder.assert_answered("INVITE", 486, timeout=0)
    assert len(responder.assert_answered("INVITE", 200, user="1000")) == 1


def test_count_mismatch_lists_the_matches(responder: Responder, client: SipClient) -> None:
    client.options()
    client.options()
    with pytest.raises(AssertionError, match=r"exactly 1 time\(s\); 2 matched\nmatched:"):
        responder.assert_received("OPTIONS", count=1, timeout=0)
    assert len(responder.assert_received("OPTIONS", count=2)) == 2
    assert responder.assert_received("INVITE", count=0) == []


# --------------------------------------------------------------------------- SipClient


def test_options(responder: Responder, client: SipClient) -> None:
    resp = client.options(responder.uri("1000"))
    assert (resp.status, resp.reason) == (200, "OK")
    assert resp.header("ALLOW") == resp.header("allow") and resp.header("allow")
    assert resp.header("l") == "0"  # compact form of Content-Length
    assert resp.to_tag
    local = f"SIP/2.0/UDP 127.0.0.1:{client.local_address[1]}"
    assert resp.header_values("via")[0].startswith(local)


def test_invite_486_is_acked(responder: Responder, client: SipClient) -> None:
    responder.set_rules("INVITE->486")
    responses = client.invite(responder.uri("1000"))
    assert responses.statuses == [486] and responses.final.reason == "Busy Here"
    [invite] = responder.requests("INVITE")
    [ack] = responder.assert_received("ACK", count=1)
    assert ack.responses == []
    assert ack.request is not None and invite.request is not None
    # RFC 3261 §17.1.1.3: same branch, same CSeq number, To with the response's tag
    assert ack.request.top_via.branch == invite.request.top_via.branch
    assert ack.request.cseq == "1 ACK" and ack.request.to_tag == responses.final.to_tag


def test_invite_200_gets_an_ack_in_a_new_transaction(
        responder: Responder, client: SipClient) -> None:
    assert client.invite("1000").statuses == [100, 180, 200]
    [invite] = responder.requests("INVITE")
    [ack] = responder.assert_received("ACK", count=1)
    assert ack.request is not None and invite.request is not None
    assert ack.request.top_via.branch != invite.request.top_via.branch  # §13.2.2.4
    assert ack.request.uri == f"sip:127.0.0.1:{responder.address[1]}"  # the 200's Contact


def test_register_with_digest(responder: Responder, client: SipClient) -> None:
    responder.set_rules(AUTH_RULES.format(extra=""))
    assert client.register(None, "1000", "s3cret").status == 200
    assert [e.statuses for e in responder.requests("REGISTER")] == [[401], [200]]
    assert client.register(responder.uri(), "1000", "wrong").status == 401
    assert client.register(None, "1000").status == 401  # no password: the challenge


@pytest.mark.parametrize("extra", ["algorithm: SHA-256", "qop: none",
                                   "algorithm: SHA-256\n  qop: none"])
def test_register_with_other_digests(responder: Responder, client: SipClient,
                                     extra: str) -> None:
    responder.set_rules(AUTH_RULES.format(extra=extra))
    assert client.register(None, "1000", "s3cret").status == 200


def test_timeout_says_what_arrived(responder: Responder, client: SipClient) -> None:
    responder.set_rules("INVITE->180,486/500ms")
    with pytest.raises(SipTimeout, match=r"no final response to INVITE .* it received: "
                                         r"180 Ringing$"):
        client.invite("1000", timeout=0.1)
    assert client.wait_final().statuses == [180, 486]  # the INVITE is still there to wait on


def test_cancel_without_invite(client: SipClient) -> None:
    with pytest.raises(RuntimeError, match="no INVITE"):
        client.cancel()


def test_parse_response_folding_and_compact_forms() -> None:
    raw = (b"SIP/2.0 180 Ringing\nv: SIP/2.0/UDP h;branch=z9hG4bKx\ni: abc\n"
           b"Subject: one\n two\nl: 3\n\nabcdef")
    resp = parse_response(raw)
    assert resp is not None
    assert (resp.status, resp.reason, resp.body) == (180, "Ringing", b"abc")
    assert resp.header("Call-ID") == "abc" and (resp.header("VIA") or "").endswith("z9hG4bKx")
    assert resp.header("subject") == "one two" and not resp.final
    assert parse_response(b"INVITE sip:x SIP/2.0\r\n\r\n") is None


# --------------------------------------------------------------------------- AsyncSipClient


@pytest.mark.asyncio
async def test_async_options_and_invite(responder: Responder) -> None:
    responder.set_rules("INVITE->486")
    async with AsyncSipClient(responder.address) as client:
        assert (await client.options(responder.uri("1000"))).status == 200
        assert (await client.invite(responder.uri("1000"))).statuses == [486]
    responder.assert_received("ACK", count=1)


@pytest.mark.asyncio
async def test_async_cancel_and_register(responder: Responder) -> None:
    responder.set_rules("INVITE->180,486/1s")
    async with AsyncSipClient(responder.address) as client:
        assert (await client.invite("1000", until="provisional")).statuses == [180]
        ok, terminated = await client.cancel()
        assert (ok.status, terminated.status) == (200, 487)
        responder.set_rules(AUTH_RULES.format(extra=""))
        assert (await client.register(None, "1000", "s3cret")).status == 200
        assert (await client.register(None, "1000", "nope")).status == 401


@pytest.mark.asyncio
async def test_async_timeout(responder: Responder) -> None:
    responder.on("OPTIONS").respond("drop")
    async with AsyncSipClient(responder.address, timeout=0.2) as client:
        with pytest.raises(SipTimeout, match="it received: nothing"):
            await client.options()
        await asyncio.sleep(0)


def test_timeout_messages_are_readable(responder: Responder, client: SipClient) -> None:
    responder.on("OPTIONS").respond("drop")
    with pytest.raises(SipTimeout) as info:
        client.options(timeout=0.1)
    assert re.fullmatch(r"no final response to OPTIONS sip:127\.0\.0\.1:\d+ \(Call-ID \S+\) "
                        r"from 127\.0\.0\.1:\d+ within 0\.1s; it received: nothing",
                        str(info.value)), str(info.value)


def test_fluent_rules_take_fault_keys(responder: Responder) -> None:
    responder.on("OPTIONS").drop_first(1).respond({"code": 486, "fault": "no-to-tag"})
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.3)
        data = options_bytes(sock.getsockname()[1], branch="z9hG4bKfluent", call_id="fl-1")
        sock.sendto(data, responder.address)
        with pytest.raises(TimeoutError):
            sock.recv(4096)  # the first transmission is held back
        sock.sendto(data, responder.address)  # the retransmission is answered
        resp = parse_response(sock.recv(4096))
    assert resp is not None and resp.status == 486
    assert resp.header("to") == "<sip:127.0.0.1>"  # fault: no To tag added


def test_fluent_dict_steps_are_read_like_yaml_steps(responder: Responder) -> None:
    rule = responder.on("INVITE").respond(
        180, {"code": 486, "after": "1s", "jitter": "200ms", "repeat": 2})
    assert (rule.reply[1].after, rule.reply[1].jitter, rule.reply[1].repeat) == (1.0, 0.2, 2)
    with pytest.raises(RuleError, match="<step>:"):
        responder.on("INVITE").respond({"code": 486, "fault": "no-such-fault"})


def test_one_line_rules_text_with_newlines_is_one_line_rules_not_yaml() -> None:
    """The one decision (rules.oneline.is_oneline) that PUT /rules makes, here too: a
    trailing newline or several one-line rules do not turn the text into a rules file."""
    from responder.testing.expectations import to_ruleset

    for text in ("INVITE->486\n", "INVITE->486\nOPTIONS->503\n", "# busy\nINVITE->486"):
        ruleset = to_ruleset(text)
        assert ruleset.rules[0].reply[-1].code == 486, text
