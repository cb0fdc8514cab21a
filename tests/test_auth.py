"""Digest authentication: pure functions and the engine's challenge/verify round trip."""

from __future__ import annotations

import hashlib
import re
from types import MappingProxyType

import pytest
from sip import answer, read_response, request

from responder.core.engine import Engine
from responder.rules.loader import load_text
from responder.sip.auth import AuthConfig, Verdict, challenge, parse_credentials, verify
from responder.sip.parser import parse
from responder.sip.seeded import Seeded

SRC = ("127.0.0.1", 40000)
SEEDED = Seeded(11)
CFG = AuthConfig(realm="lab.example", users=MappingProxyType({"1000": "s3cret"}))


def digest(
    method: str, uri: str, user: str, password: str, chal: str, *, algorithm: str = "MD5",
    qop: bool = True, cnonce: str = "0a4f113b", nc: str = "00000001",
) -> str:
    """A client's Authorization value for challenge ``chal`` (RFC 2617 §3.2.2)."""
    realm_match = re.search(r'realm="([^"]*)"', chal)
    nonce_match = re.search(r'nonce="([^"]*)"', chal)
    assert realm_match and nonce_match, chal
    realm, nonce = realm_match.group(1), nonce_match.group(1)
    h = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}[algorithm]

    def hx(s: str) -> str:
        return h(s.encode()).hexdigest()

    ha1, ha2 = hx(f"{user}:{realm}:{password}"), hx(f"{method}:{uri}")
    if qop:
        resp = hx(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        extra = f', qop=auth, nc={nc}, cnonce="{cnonce}"'
    else:
        resp = hx(f"{ha1}:{nonce}:{ha2}")
        extra = ""
    return (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{resp}", algorithm={algorithm}{extra}')


def register(auth_value: str | None = None, header: str = "Authorization", cseq: int = 1,
             user: str = "1000") -> bytes:
    extra = f"{header}: {auth_value}\r\n" if auth_value else ""
    return request("REGISTER", uri="sip:lab.example", to=f"<sip:{user}@lab.example>",
                   cseq=cseq, extra=extra + f"Contact: <sip:{user}@192.0.2.10:5062>\r\n")


def test_challenge_has_the_form_clients_parse() -> None:
    assert challenge(CFG, "abc") == \
        'Digest realm="lab.example", nonce="abc", algorithm=MD5, qop="auth"'
    no_qop = AuthConfig(realm="r", qop=False, algorithm="SHA-256")
    assert challenge(no_qop, "n", stale=True) == \
        'Digest realm="r", nonce="n", algorithm=SHA-256, stale=true'


def test_parse_credentials() -> None:
    creds = parse_credentials(
        'Digest username="a\\"b", realm="x, y", nonce=abc, uri="sip:x", response="f00", '
        'qop=auth, nc=00000001, cnonce="c"')
    assert creds == {"username": 'a"b', "realm": "x, y", "nonce": "abc", "uri": "sip:x",
                     "response": "f00", "qop": "auth", "nc": "00000001", "cnonce": "c"}
    assert parse_credentials("Basic dXNlcjpwdw==") is None
    assert parse_credentials('Digest username="unterminated') is None


@pytest.mark.parametrize(("algorithm", "qop"), [("MD5", True), ("MD5", False),
                                                ("SHA-256", True), ("SHA-256", False)])
def test_verify_follows_the_challenge_we_issued(algorithm: str, qop: bool) -> None:
    cfg = AuthConfig(realm="lab.example", users=CFG.users, algorithm=algorithm, qop=qop)
    chal = challenge(cfg, SEEDED.nonce(100.0, SRC[0]))
    good = parse(register(digest("REGISTER", "sip:lab.example", "1000", "s3cret", chal,
                                 algorithm=algorithm, qop=qop)))
    assert verify(cfg, good, "authorization", SEEDED, 101.0, SRC[0]) is Verdict.OK
    wrong = parse(register(digest("REGISTER", "sip:lab.example", "1000", "guess", chal,
                                  algorithm=algorithm, qop=qop)))
    assert verify(cfg, wrong, "authorization", SEEDED, 101.0, SRC[0]) is Verdict.WRONG


def test_verify_rejects_unknown_users_forged_and_foreign_nonces_and_marks_stale() -> None:
    chal = challenge(CFG, SEEDED.nonce(100.0, SRC[0]))

    def check(value: str, *, now: float = 101.0, host: str = SRC[0]) -> Verdict:
        return verify(CFG, parse(register(value)), "authorization", SEEDED, now, host)

    ok = digest("REGISTER", "sip:lab.example", "1000", "s3cret", chal)
    assert check(ok) is Verdict.OK
    assert check(ok, host="127.0.0.2") is Verdict.WRONG  # nonce issued to another host
    assert check(ok, now=100.0 + 400) is Verdict.STALE   # past the 300 s lifetime
    assert check(digest("REGISTER", "sip:lab.example", "2000", "s3cret", chal)) is Verdict.WRONG
    forged = challenge(CFG, "5f5e100" + "0" * 24)
    assert check(digest("REGISTER", "sip:lab.example", "1000", "s3cret", forged)) \
        is Verdict.WRONG
    other_realm = ok.replace('realm="lab.example"', 'realm="elsewhere"')
    assert check(other_realm) is Verdict.MISSING
    assert verify(CFG, parse(register()), "authorization", SEEDED, 101.0, SRC[0]) \
        is Verdict.MISSING


RULES = """\
auth:
  realm: "lab.example"
  users: {"1000": "s3cret"}
rules:
  - name: register-1000
    match: {method: REGISTER, user: "1000"}
    auth: digest
    respond: 200
  - name: invite-1000
    match: {method: INVITE, user: "1000"}
    auth: digest
    challenge: proxy
    respond: 486
  - name: unknown
    match: {method: REGISTER}
    respond: 404
"""


def test_engine_challenges_then_accepts_from_any_source_port() -> None:
    e = Engine(load_text(RULES, "lab.yaml"), SEEDED)
    first = read_response(answer(e, register(), SRC, 50.0)[0].data)
    assert first.status == 401
    chal = first.one("WWW-Authenticate")
    assert 'realm="lab.example"' in chal and "algorithm=MD5" in chal
    creds = digest("REGISTER", "sip:lab.example", "1000", "s3cret", chal)
    other_port = (SRC[0], 40001)
    ok = read_response(answer(e, register(creds, cseq=2), other_port, 51.0)[0].data)
    assert ok.status == 200
    assert ok.one("Contact").startswith("<sip:1000@192.0.2.10:5062>;expires=")
    wrong = digest("REGISTER", "sip:lab.example", "1000", "nope", chal)
    again = read_response(answer(e, register(wrong, cseq=3), SRC, 52.0)[0].data)
    assert again.status == 401 and "stale" not in again.one("WWW-Authenticate")
    stale = read_response(answer(e, register(creds, cseq=4), SRC, 50.0 + 1000)[0].data)
    assert stale.status == 401 and stale.one("WWW-Authenticate").endswith("stale=true")
    # an unknown extension follows the rules: 404, not a challenge (svwar can tell them apart)
    unknown = read_response(answer(e, register(user="2000"), SRC, 53.0)[0].data)
    assert unknown.status == 404


def test_proxy_challenge_uses_407_and_proxy_authorization() -> None:
    e = Engine(load_text(RULES, "lab.yaml"), SEEDED)
    invite = request("INVITE", uri="sip:1000@lab.example", call_id="inv")
    first = read_response(answer(e, invite, SRC, 0.0)[0].data)
    assert first.status == 407 and not first.has("WWW-Authenticate")
    creds = digest("INVITE", "sip:1000@lab.example", "1000", "s3cret",
                   first.one("Proxy-Authenticate"))
    wrong_header = request("INVITE", uri="sip:1000@lab.example", call_id="inv", cseq=2,
                           extra=f"Authorization: {creds}\r\n")
    assert read_response(answer(e, wrong_header, SRC, 1.0)[0].data).status == 407
    right = request("INVITE", uri="sip:1000@lab.example", call_id="inv", cseq=3,
                    extra=f"Proxy-Authorization: {creds}\r\n")
    assert read_response(answer(e, right, SRC, 1.0)[0].data).status == 486


def test_a_short_nonce_lifetime_is_the_lifetime_from_issue_and_stale_gets_a_fresh_nonce() -> None:
    """nonce_lifetime under 30 s: a nonce is good for its lifetime from when it was issued
    (it used to be stamped to a 30 s window and could be stale at once), and the stale
    challenge carries a new nonce (it used to repeat the stale one)."""
    from responder.sip.auth import new_nonce, nonce_window

    cfg = AuthConfig(realm="lab", users={"1000": "pw"}, nonce_lifetime=5.0)
    seeded = Seeded(3)
    assert nonce_window(5.0) == 1 and nonce_window(300.0) == 30 and nonce_window(0.5) == 1
    issued = new_nonce(cfg, seeded, 100.7, "127.0.0.1")
    for later, fresh in ((0.0, True), (4.9, True), (5.9, False)):
        now = 100.7 + later
        ok = seeded.nonce_valid(issued, "127.0.0.1", now, cfg.nonce_lifetime
                                + nonce_window(cfg.nonce_lifetime))
        assert ok is fresh, (later, ok)
    assert new_nonce(cfg, seeded, 106.6, "127.0.0.1") != issued
    # A retransmission inside the same second gets the same nonce (same bytes).
    assert new_nonce(cfg, seeded, 100.9, "127.0.0.1") == issued
    # Through verify: the right answer 4.9 s after the challenge is OK, 5.9 s after stale.
    short = AuthConfig(realm="lab.example", users={"1000": "s3cret"}, nonce_lifetime=5.0)
    chal = challenge(short, new_nonce(short, SEEDED, 100.7, SRC[0]))
    answer = digest("REGISTER", "sip:lab.example", "1000", "s3cret", chal)
    for later, verdict in ((4.9, Verdict.OK), (5.9, Verdict.STALE)):
        got = verify(short, parse(register(answer)), "authorization", SEEDED, 100.7 + later,
                     SRC[0])
        assert got is verdict, (later, got)
