"""``--admin``: the admin API over real HTTP against the console script (docs/operations.md).

GET/PUT /rules (YAML, one-line rules, errors that leave the old rules in force), the
journal and its filters, DELETE, the bearer token, the loopback guard, and the HTTP
server's own edges (keep-alive, Expect: 100-continue, bounds), all over loopback sockets.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import ResponderProcess, run_cli, statuses, unique

ADMIN_LINE = r"admin on (http://127\.0\.0\.1:\d+)$"
METRICS_LINE = r"metrics on (http://127\.0\.0\.1:\d+/metrics)"


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> dict[str, object]:
        assert self.headers["Content-Type"] == "application/json", self.headers
        value = json.loads(self.body)
        assert isinstance(value, dict)
        return value


def call(method: str, url: str, body: str | None = None,
         headers: dict[str, str] | None = None) -> Answer:
    req = urllib.request.Request(url, data=None if body is None else body.encode(),
                                 method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return Answer(resp.status, dict(resp.headers), resp.read())
    except urllib.error.HTTPError as err:
        try:
            return Answer(err.code, dict(err.headers), err.read())
        finally:
            err.close()


def put_rules(base: str, body: str, content_type: str = "application/yaml",
              **headers: str) -> Answer:
    return call("PUT", base + "/rules", body, {"Content-Type": content_type, **headers})


def sip_status(server: ResponderProcess, method: str, user: str = "responder") -> int:
    with server.client() as client:
        req = client.request(method, call_id=unique(), uri=f"sip:{user}@127.0.0.1")
        return statuses(client.exchange(req))[0]


@pytest.fixture
def admin() -> Iterator[tuple[ResponderProcess, str]]:
    with ResponderProcess("--admin", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "-q",
                          "--rule", "INVITE@1000->486") as server:
        yield server, server.wait_for_stderr(ADMIN_LINE).group(1)
        assert server.stop() == 0


# --------------------------------------------------------------------------- /rules


def test_get_rules_is_the_normalized_yaml(admin: tuple[ResponderProcess, str]) -> None:
    _, base = admin
    got = call("GET", base + "/rules")
    assert got.status == 200 and got.headers["Content-Type"].startswith("application/yaml")
    assert got.text == run_cli("--check", "--rule", "INVITE@1000->486").stdout
    assert "name: INVITE@1000->486" in got.text and "default:" in got.text


def test_put_yaml_swaps_the_rules_and_counts_a_version(
        admin: tuple[ResponderProcess, str]) -> None:
    server, base = admin
    assert sip_status(server, "INVITE", "1000") == 486
    got = put_rules(base, "rules:\n  - name: gone\n    match: {method: INVITE}\n"
                          "    respond: 410\ndefault: 404\n")
    assert got.status == 200
    assert got.json() == {"version": 2, "rules": 1, "warnings": []}
    assert sip_status(server, "INVITE", "1000") == 410
    assert sip_status(server, "OPTIONS") == 404  # the body is the whole rule set
    assert "name: gone" in call("GET", base + "/rules").text
    server.wait_for_stderr(r"rules replaced by PUT /rules \(version 2\)")
    metrics_url = server.wait_for_stderr(METRICS_LINE).group(1)
    with urllib.request.urlopen(metrics_url, timeout=5) as resp:
        families = {f.name: f for f in text_string_to_metric_families(resp.read().decode())}
    version = families["sip_responder_ruleset_version"].samples[0].value
    reloads = {(s.labels["source"], s.labels["result"]): s.value
               for s in families["sip_responder_reloads"].samples}
    assert version == 2 and reloads[("admin", "ok")] == 1 and reloads[("admin", "failed")] == 0


def test_put_one_line_rules_go_in_front_of_the_defaults(
        admin: tuple[ResponderProcess, str]) -> None:
    server, base = admin
    body = "# busy lab\nINVITE->486\n\n  OPTIONS@* -> 480 ; reason=Away\n"
    got = put_rules(base, body, "text/plain; charset=utf-8")
    assert got.status == 200 and got.json()["rules"] == 4  # 2 lines + 2 built-in rules
    assert sip_status(server, "INVITE", "2000") == 486
    with server.client() as client:
        resp = client.exchange(client.request("OPTIONS", call_id=unique()),
                               sentinel_method="BYE")[0]
    assert (resp.status, resp.reason) == (480, "Away")
    assert sip_status(server, "REGISTER") == 200  # the built-in rules answer the rest
    assert sip_status(server, "FOO") == 501
    # the command line's --rule is replaced too: INVITE@1000 no longer gets its own rule
    assert "INVITE@1000" not in call("GET", base + "/rules").text


def test_text_plain_that_looks_like_yaml_is_yaml(admin: tuple[ResponderProcess, str]) -> None:
    server, base = admin
    got = put_rules(base, "rules:\n  - match: {method: INVITE}\n    respond: 603\n",
                    "text/plain")
    assert got.status == 200 and got.json()["rules"] == 1
    assert sip_status(server, "INVITE") == 603


def test_put_one_line_rules_keep_the_rules_file_behind_them(tmp_path: Path) -> None:
    rules = tmp_path / "lab.yaml"
    rules.write_text("rules:\n  - name: lab\n    match: {method: OPTIONS}\n    respond: 299\n"
                     "default: 404\n")
    with ResponderProcess("--admin", "127.0.0.1:0", "--rules", str(rules), "-q") as server:
        base = server.wait_for_stderr(ADMIN_LINE).group(1)
        assert put_rules(base, "INVITE->486", "text/plain").status == 200
        assert sip_status(server, "INVITE") == 486
        assert sip_status(server, "OPTIONS") == 299  # the file's rule
        assert sip_status(server, "BYE") == 404      # the file's default
        assert server.stop() == 0


@pytest.mark.parametrize(("body", "content_type", "error"), [
    ("rules:\n  - match: {method: INVITE}\n    respond: 999\n", "application/yaml",
     r"^<admin>:3:14: bad response code 999"),
    ("rules:\n  - match: {method: INVITE\n", "application/yaml", r"^<admin>:\d+:\d+: "),
    ("rules:\n  - matsch: {method: INVITE}\n    respond: 486\n", "application/x-yaml",
     r"^<admin>:2:5: unknown key 'matsch'"),
    ("", "application/yaml", r"^<admin>:1:1: the file is empty"),
    ("INVITE->486\n  INVITE->999\n", "text/plain",
     r"^<admin>:2:3: 'INVITE->999': bad response code '999'"),
    ("INVITE->180,486\nBYE->486,180\n", "text/plain",
     r"^<admin>:2:1: 'BYE->486,180': only the last step may be a final response"),
], ids=["bad-code", "yaml-syntax", "unknown-key", "empty", "one-line-code", "one-line-order"])
def test_bad_rules_get_400_with_the_place_and_the_old_rules_stay(
        admin: tuple[ResponderProcess, str], body: str, content_type: str, error: str) -> None:
    server, base = admin
    got = put_rules(base, body, content_type)
    assert got.status == 400, got.text
    assert got.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert re.search(error, got.text), got.text
    assert sip_status(server, "INVITE", "1000") == 486  # the old rules still answer
    assert "name: INVITE@1000->486" in call("GET", base + "/rules").text
    server.wait_for_stderr("PUT /rules refused, the old rules stay in force: <admin>:")


def test_put_rules_that_are_not_utf8_get_400(admin: tuple[ResponderProcess, str]) -> None:
    _, base = admin
    req = urllib.request.Request(base + "/rules", data=b"rules: [\xff]\n", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    info.value.close()
    assert info.value.code == 400


# --------------------------------------------------------------------------- /journal


def test_journal_lists_and_filters_exchanges(admin: tuple[ResponderProcess, str]) -> None:
    server, base = admin
    ids = {name: unique(name) for name in ("a", "b", "c")}
    start = time.time()
    with server.client() as client:
        client.exchange(
            client.request("INVITE", call_id=ids["a"], uri="sip:1000@127.0.0.1"),
            client.request("INVITE", call_id=ids["b"], uri="sip:2000@127.0.0.1"),
            client.request("OPTIONS", call_id=ids["c"], uri="sip:1000@127.0.0.1"),
            b"not sip at all",
        )
    everything = call("GET", base + "/journal").json()
    assert everything["journal_size"] == 1000
    entries = everything["entries"]
    assert isinstance(entries, list) and len(entries) == 5  # with the sentinel
    first = entries[0]
    assert first["method"] == "INVITE" and first["call_id"] == ids["a"]
    assert first["uri"] == "sip:1000@127.0.0.1" and first["user"] == "1000"
    assert first["rule"] == "INVITE@1000->486" and first["statuses"] == [486]
    assert first["discard"] is None and first["source"].startswith("127.0.0.1:")
    assert start - 1 <= first["time"] <= time.time() + 1
    assert entries[1]["statuses"] == [100, 180, 200] and entries[1]["rule"] == "invite"
    assert entries[3] == {**entries[3], "method": None, "discard": "not-sip", "statuses": []}

    def calls(query: str) -> list[object]:
        got = call("GET", f"{base}/journal?{query}").json()["entries"]
        assert isinstance(got, list)
        return [e["call_id"] for e in got]

    assert calls("method=INVITE") == [ids["a"], ids["b"]]
    assert calls("method=INVITE&user=1000") == [ids["a"]]
    assert calls("user=1000") == [ids["a"], ids["c"]]
    assert calls("user=2*") == [ids["b"]]
    assert calls("user=re:^(2000|1000)$&method=INVITE,OPTIONS") == [ids["a"], ids["b"], ids["c"]]
    assert calls(f"call_id={ids['b']}") == [ids["b"]]
    assert calls("method=INVITE&limit=1") == [ids["b"]]  # the last one
    assert calls("method=REGISTER") == []
    for query in ("limit=0", "limit=x", "methd=INVITE", "user=re:("):
        assert call("GET", f"{base}/journal?{query}").status == 400, query


def test_delete_journal_empties_it(admin: tuple[ResponderProcess, str]) -> None:
    server, base = admin
    sip_status(server, "OPTIONS")
    got = call("DELETE", base + "/journal")
    assert got.status == 200 and got.json() == {"cleared": 2}  # the request and the sentinel
    assert call("GET", base + "/journal").json()["entries"] == []
    sip_status(server, "BYE")
    methods = [e["method"] for e in call("GET", base + "/journal").json()["entries"]]
    assert methods == ["BYE", "OPTIONS"]


def test_journal_is_bounded_by_journal_size() -> None:
    with ResponderProcess("--admin", "127.0.0.1:0", "--journal-size", "3", "-q") as server:
        base = server.wait_for_stderr(ADMIN_LINE).group(1)
        for _ in range(3):
            sip_status(server, "OPTIONS")
        got = call("GET", base + "/journal?limit=100").json()
        assert got["journal_size"] == 3 and len(got["entries"]) == 3
        assert server.stop() == 0


# --------------------------------------------------------------------------- access


def test_token_is_required_when_given() -> None:
    with ResponderProcess("--admin", "127.0.0.1:0", "--admin-token", "s3cret", "-q") as server:
        base = server.wait_for_stderr(ADMIN_LINE).group(1)
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"},
                        {"Authorization": "Basic czNjcmV0"}):
            got = call("GET", base + "/rules", headers=headers)
            assert got.status == 401, headers
            assert got.headers["WWW-Authenticate"].startswith("Bearer")
        got = put_rules(base, "INVITE->486", "text/plain")  # refused before reading the body
        assert got.status == 401
        assert call("GET", base + "/nothing").status == 401  # no hints without the token
        ok = {"Authorization": "Bearer s3cret"}
        assert call("GET", base + "/rules", headers=ok).status == 200
        assert put_rules(base, "INVITE->486", "text/plain", **ok).status == 200
        assert call("GET", base + "/journal", headers=ok).status == 200
        assert server.stop() == 0


def test_admin_listens_on_loopback_unless_allowed() -> None:
    result = run_cli("--admin", "192.0.2.1:8080")
    assert result.returncode == 2 and "--admin-allow-remote" in result.stderr
    result = run_cli("--admin-token", "x")
    assert result.returncode == 2 and "needs --admin" in result.stderr
    result = run_cli("--workers", "2", "--admin", "127.0.0.1:0")
    assert result.returncode == 2 and "single worker" in result.stderr
    result = run_cli("--admin", "127.0.0.1:0", "--journal-size", "0")
    assert result.returncode == 2 and "--journal-size" in result.stderr


# --------------------------------------------------------------------------- HTTP edges


def test_keep_alive_and_unknown_resources(admin: tuple[ResponderProcess, str]) -> None:
    _, base = admin
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        for path, status in (("/rules", 200), ("/nope", 404), ("/journal", 200)):
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == status, path
        conn.request("POST", "/rules", body=b"x")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 405 and resp.getheader("Allow") == "GET, HEAD, PUT"
        conn.request("HEAD", "/rules")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b""
        assert int(resp.getheader("Content-Length") or 0) > 0
    finally:
        conn.close()


def raw_http(base: str, data: bytes, then: bytes | None = None) -> bytes:
    """Send ``data``; with ``then``, wait for an interim answer and send ``then``."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(data)
        got = b""
        if then is not None:
            while b"\r\n\r\n" not in got:
                got += sock.recv(65536)
            sock.sendall(then)
        while chunk := sock.recv(65536):
            got += chunk
        return got


def test_expect_100_continue_and_bounds(admin: tuple[ResponderProcess, str]) -> None:
    server, base = admin
    body = b"OPTIONS->299\n"
    got = raw_http(base, b"PUT /rules HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                         b"Expect: 100-continue\r\nConnection: close\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body), body)
    assert got.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"), got
    assert sip_status(server, "OPTIONS") == 299
    too_big = raw_http(base, b"PUT /rules HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n")
    assert too_big.startswith(b"HTTP/1.1 413 "), too_big
    chunked = raw_http(base, b"PUT /rules HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert chunked.startswith(b"HTTP/1.1 411 "), chunked
    assert raw_http(base, b"hello\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw_http(base, b"GET /rules HTTP/2.0\r\n\r\n").startswith(b"HTTP/1.1 505 ")
    huge = b"GET /rules HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 20000 + b"\r\n\r\n"
    assert raw_http(base, huge).startswith(b"HTTP/1.1 431 ")
    # HTTP/1.0 without headers: answered, then closed
    assert raw_http(base, b"GET /journal HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200 OK")
    assert sip_status(server, "OPTIONS") == 299  # and SIP is still answered
