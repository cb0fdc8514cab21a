"""``--admin``: the admin API over real HTTP against the console script (docs/operations.md).

GET/PUT /rules (YAML, one-line rules, errors that leave the old rules in force), the
journal and its filters, DELETE, the bearer token, the loopback guard, and the HTTP
server's own edges (keep-alive, Expect: 100-continue, bounds), all over loopback sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import ResponderProcess, run_cli, statuses, unique

from responder.ops import http as ops_http
from responder.ops.http import HttpRequest, HttpResponse, HttpServer, text

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
    # With the sentinel, and the client's ACK of the 200 (sent once the 200 came back).
    assert isinstance(entries, list) and len(entries) == 6
    assert entries[5]["method"] == "ACK" and entries[5]["statuses"] == []
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
    assert calls(f"call_id={ids['b']}") == [ids["b"], ids["b"]]  # the INVITE and its ACK
    assert calls("method=INVITE&limit=1") == [ids["b"]]  # the last one
    assert calls("method=REGISTER") == []
    for query in ("limit=0", "limit=x", "methd=INVITE", "user=re:("):
        assert call("GET", f"{base}/journal?{query}").status == 400, query


def test_journal_lists_a_garbage_fault_response() -> None:
    """A ``fault: garbage`` response has no status line; the journal keeps the status it
    sent (486) instead of re-reading it from the bytes, so GET /journal stays 200 (it was
    500 before) and lists it, and later exchanges are listed too."""
    with ResponderProcess("--admin", "127.0.0.1:0", "-q",
                          "--rule", "INVITE@1000->486;fault=garbage") as server:
        base = server.wait_for_stderr(ADMIN_LINE).group(1)
        garbage, plain = unique("garbage"), unique("plain")
        with server.client() as client:
            client.send(client.request("INVITE", call_id=garbage, uri="sip:1000@127.0.0.1"))
            raw = client.recv_all_until(client.send_sentinel())
            assert raw and not raw[0].startswith(b"SIP/2.0")  # the garbage came
            client.exchange(client.request("OPTIONS", call_id=plain))
        got = call("GET", base + "/journal")
        assert got.status == 200
        entries = got.json()["entries"]
        assert isinstance(entries, list)
        by_call = {e["call_id"]: e for e in entries}
        assert by_call[garbage]["statuses"] == [486]
        assert by_call[garbage]["rule"] == "INVITE@1000->486;fault=garbage"
        assert by_call[plain]["statuses"] == [200]
        assert server.stop() == 0


def test_delete_journal_empties_it(admin: tuple[ResponderProcess, str]) -> None:
    server, base = admin
    sip_status(server, "OPTIONS")
    got = call("DELETE", base + "/journal")
    assert got.status == 200 and got.json() == {"cleared": 2}  # the request and the sentinel
    assert call("GET", base + "/journal").json()["entries"] == []
    sip_status(server, "BYE")
    entries = call("GET", base + "/journal").json()["entries"]
    assert isinstance(entries, list)
    assert [e["method"] for e in entries] == ["BYE", "OPTIONS"]


def test_journal_is_bounded_by_journal_size() -> None:
    with ResponderProcess("--admin", "127.0.0.1:0", "--journal-size", "3", "-q") as server:
        base = server.wait_for_stderr(ADMIN_LINE).group(1)
        for _ in range(3):
            sip_status(server, "OPTIONS")
        got = call("GET", base + "/journal?limit=100").json()
        entries = got["entries"]
        assert isinstance(entries, list)
        assert got["journal_size"] == 3 and len(entries) == 3
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


class Raw(NamedTuple):
    status: int   # of the final response (after any 1xx)
    head: bytes   # the final response's status line and headers
    data: bytes   # everything received, interim responses included


def http_addr(base: str) -> tuple[str, int]:
    host, port = base.removeprefix("http://").split(":")
    return host, int(port)


def raw_http(base: str, data: bytes, then: bytes | None = None, eof: bool = False) -> Raw:
    """Send ``data``; with ``then``, wait for an interim answer and send ``then``. Returns
    once a final response is in (by its Content-Length), or with ``eof`` once the server
    has closed the connection."""
    with socket.create_connection(http_addr(base), timeout=5) as sock:
        sock.sendall(data)
        got = b""
        if then is not None:
            while b"\r\n\r\n" not in got:
                got += sock.recv(65536)
            sock.sendall(then)
        start = 0  # where the response being read begins
        while True:
            end = got.find(b"\r\n\r\n", start)
            if end >= 0:
                head = got[start:end]
                status = int(head.split(b" ", 2)[1])
                if 100 <= status < 200:
                    start = end + 4
                    continue
                length = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
                if not eof and length and len(got) >= end + 4 + int(length.group(1)):
                    return Raw(status, head, got)
            chunk = sock.recv(65536)
            if not chunk:
                assert end >= 0, f"closed before a whole answer: {got!r}"
                return Raw(status, head, got)
            got += chunk


def test_expect_100_continue_and_bounds(admin: tuple[ResponderProcess, str]) -> None:
    server, base = admin
    body = b"OPTIONS->299\n"
    got = raw_http(base, b"PUT /rules HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                         b"Expect: 100-continue\r\nConnection: close\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body), body, eof=True)
    assert got.data.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"), got
    assert sip_status(server, "OPTIONS") == 299
    # over MAX_BODY: 413 before the body is read (and no 100 Continue), then the end
    too_big = raw_http(base, b"PUT /rules HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n")
    assert too_big.data.startswith(b"HTTP/1.1 413 "), too_big
    assert b"\r\nConnection: close" in too_big.head, too_big
    refused = raw_http(base, b"PUT /rules HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                             b"Content-Length: 2000000\r\n\r\n")
    assert refused.data.startswith(b"HTTP/1.1 413 "), refused
    # chunked bodies are aiohttp's to decode, bounded by the same MAX_BODY
    chunked = b"PUT /rules HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n" \
              b"Transfer-Encoding: chunked\r\n\r\n"
    rule = b"OPTIONS->298\n"
    got = raw_http(base, chunked + b"%x\r\n%s\r\n0\r\n\r\n" % (len(rule), rule))
    assert got.data.startswith(b"HTTP/1.1 200 OK\r\n"), got
    assert sip_status(server, "OPTIONS") == 298
    big = b"#" * (1024 * 1024 + 1)
    too_big = raw_http(base, chunked + b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big))
    assert too_big.data.startswith(b"HTTP/1.1 413 "), too_big.head
    # malformed requests: aiohttp's 400 (in the version of the request it could not read)
    assert raw_http(base, b"hello\r\n\r\n").status == 400
    huge = b"GET /rules HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 20000 + b"\r\n\r\n"
    assert raw_http(base, huge).status == 400
    assert raw_http(base, b"GET /rules HTTP/2.0\r\nHost: x\r\n\r\n").status == 505
    # HTTP/1.0 without headers: answered (in HTTP/1.0), then closed
    old = raw_http(base, b"GET /journal HTTP/1.0\r\n\r\n", eof=True)
    assert old.data.startswith(b"HTTP/1.0 200 OK\r\n"), old
    assert sip_status(server, "OPTIONS") == 298  # and SIP is still answered


def stop_quietly(server: ResponderProcess) -> None:
    """Stop the server; all it printed are its own lines (no traceback, no access log)."""
    assert server.stop() == 0
    strays = [line for line in server.stderr_lines if not line.startswith("sip-responder: ")]
    assert not strays, server.stderr_text()


def test_slow_clients_do_not_lock_out_new_ones() -> None:
    """Connections that sit idle, or trickle a request head or body, a byte at a time,
    leave the server open to everyone else (the hand-written server let 32 in, then 503)."""
    with ResponderProcess("--admin", "127.0.0.1:0", "-q") as server:
        base = server.wait_for_stderr(ADMIN_LINE).group(1)
        starts = [b"", b"GET /journal HTTP/1.1\r\nHost: x\r\nX-Slow: ",
                  b"PUT /rules HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n#"]
        with contextlib.ExitStack() as stack:
            slow = []
            for n in range(96):
                sock = stack.enter_context(socket.create_connection(http_addr(base), timeout=5))
                sock.sendall(starts[n % 3])
                slow.append(sock)
            for round_ in range(5):
                for n, sock in enumerate(slow):
                    if n % 3:
                        sock.sendall(b"#")
                assert call("GET", base + "/journal").status == 200, round_
            assert put_rules(base, "OPTIONS->297", "text/plain").status == 200
            assert sip_status(server, "OPTIONS") == 297
        assert call("GET", base + "/rules").status == 200
        stop_quietly(server)


MALFORMED = {
    "target": (b"GET //[ HTTP/1.1\r\nHost: x\r\n\r\n", 404, b"(known: /rules, /journal)"),
    "superscript-length": ("PUT /rules HTTP/1.1\r\nHost: x\r\nContent-Length: \u00b2\r\n\r\n"
                           .encode(), 400, b""),
    "4301-digit-length": (b"PUT /rules HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"9" * 4301
                          + b"\r\n\r\n", 400, b""),
    "5000-digit-limit": (b"GET /journal?limit=" + b"9" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                         400, b"limit must be a whole number"),
    "superscript-limit": (b"GET /journal?limit=%C2%B2 HTTP/1.1\r\nHost: x\r\n\r\n", 400,
                          b"limit must be a whole number"),
    "zero-padded-limit": (b"GET /journal?limit=" + b"0" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                          400, b"limit must be a whole number"),
}


def test_malformed_requests_get_4xx_and_the_server_goes_on() -> None:
    with ResponderProcess("--admin", "127.0.0.1:0", "-q", "--rule", "OPTIONS->296") as server:
        base = server.wait_for_stderr(ADMIN_LINE).group(1)
        for name, (data, status, says) in MALFORMED.items():
            got = raw_http(base, data)
            assert got.status == status, (name, got.data[:300])
            assert says in got.data, (name, got.data[:300])
            assert call("GET", base + "/rules").status == 200, name
        assert call("GET", base + "/journal?limit=0001").status == 200
        assert sip_status(server, "OPTIONS") == 296
        stop_quietly(server)


# --------------------------------------------------------------------------- in-process


class Broken:
    """An app with bugs: ``/check`` fails before the body is read, ``/handle`` after."""

    def check(self, req: HttpRequest) -> HttpResponse | None:
        if req.path == "/check":
            raise ValueError("a bug in check")
        return None

    def handle(self, req: HttpRequest) -> HttpResponse:
        if req.path == "/handle":
            raise RuntimeError("a bug in handle")
        return text(200, f"ok {len(req.body)}")


async def exchange(port: int, data: bytes, deadline: float = 5.0) -> bytes:
    """Send ``data`` and read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        return await asyncio.wait_for(reader.read(), deadline)
    finally:
        writer.close()


def test_a_bug_in_a_handler_is_a_500_and_the_server_goes_on(
        capfd: pytest.CaptureFixture[str]) -> None:
    async def scenario() -> None:
        server = HttpServer(Broken())
        _, port = await server.start("127.0.0.1", 0)
        try:
            for path in ("/check", "/handle"):
                got = await exchange(port, b"PUT %s HTTP/1.1\r\nHost: x\r\nContent-Length: 2"
                                           b"\r\n\r\nab" % path.encode())
                assert got.startswith(b"HTTP/1.1 500 "), got
                assert b"internal error: " in got and b"a bug in" in got, got
                assert b"\r\nConnection: close\r\n" in got, got
            got = await exchange(port, b"PUT /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                       b"Content-Length: 2\r\n\r\nab")
            assert got.startswith(b"HTTP/1.1 200 OK\r\n") and got.endswith(b"ok 2\n"), got
        finally:
            await server.close()

    asyncio.run(scenario())
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_idle_and_slow_connections_are_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiohttp's keep-alive timer closes a connection that has not sent a whole request
    head in IDLE_TIMEOUT (idle, or trickling); a body gets BODY_TIMEOUT, then 408."""
    monkeypatch.setattr(ops_http, "IDLE_TIMEOUT", 0.3)
    monkeypatch.setattr(ops_http, "BODY_TIMEOUT", 0.3)
    monkeypatch.setattr(ops_http, "LINGER_TIME", 0.1)

    async def trickle(port: int, start: bytes) -> tuple[float, bytes]:
        """Send ``start``, then a byte every 50 ms until the server closes the connection."""
        began = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(start)
            got = b""
            while time.monotonic() - began < 5:
                try:
                    chunk = await asyncio.wait_for(reader.read(65536), 0.05)
                except TimeoutError:
                    writer.write(b"#")
                    continue
                if not chunk:
                    return time.monotonic() - began, got
                got += chunk
            raise AssertionError(f"still open after 5 s: {got!r}")
        finally:
            writer.close()

    async def scenario() -> None:
        server = HttpServer(Broken())
        _, port = await server.start("127.0.0.1", 0)
        try:
            idle = await exchange(port, b"")
            assert idle == b""
            took, got = await trickle(port, b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            assert got == b"" and took >= 0.3
            took, got = await trickle(port, b"PUT /ok HTTP/1.1\r\nHost: x\r\n"
                                            b"Content-Length: 100000\r\n\r\n#")
            assert got.startswith(b"HTTP/1.1 408 ") and took >= 0.3, got
            got = await exchange(port, b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert got.startswith(b"HTTP/1.1 200 OK\r\n"), got
        finally:
            await server.close()

    asyncio.run(scenario())


# --------------------------------------------------------------------------- issue 11 (item 8)


def test_a_token_that_is_not_utf8_is_compared_as_bytes() -> None:
    """``--admin-token`` with a byte that is not UTF-8 (it reaches Python as a surrogate
    escape): the right bytes get in, anything else gets 401; never a 500 or a traceback."""
    with ResponderProcess("--admin", "127.0.0.1:0", "-q",
                          "--admin-token", "s\udcffcret") as server:
        base = server.wait_for_stderr(ADMIN_LINE).group(1)
        for token, status in ((b"s\xffcret", 200), (b"wrong", 401), (b"\xc3\xa9", 401),
                              (b"s\xc3\xbfcret", 401)):
            got = raw_http(base, b"GET /rules HTTP/1.1\r\nHost: x\r\n"
                                 b"Authorization: Bearer " + token + b"\r\n\r\n")
            assert got.status == status, (token, got.data[:300])
        stop_quietly(server)


@pytest.mark.parametrize("where", ["uri", "call-id"])
def test_journal_lists_a_request_with_bytes_that_are_not_utf8(where: str) -> None:
    """A datagram with ``\\xff`` in its Request-URI or Call-ID: GET /journal is 200 (it was
    500) and shows the byte as ``\\xff``."""
    with ResponderProcess("--admin", "127.0.0.1:0", "-q") as server:
        base = server.wait_for_stderr(ADMIN_LINE).group(1)
        with server.client() as client:
            call_id = unique("xff")
            data = client.request("OPTIONS", call_id=call_id)
            if where == "uri":
                data = data.replace(b"OPTIONS sip:", b"OPTIONS sip:\xff", 1)
            else:
                data = data.replace(call_id.encode(), call_id.encode() + b"\xff\xfe")
            client.send(data)
            assert client.recv_all_until(client.send_sentinel()) != []
        got = call("GET", base + "/journal")
        assert got.status == 200, got.text
        entries = got.json()["entries"]
        assert isinstance(entries, list)
        mine = [e for e in entries if call_id in (e["call_id"] or "")]
        assert len(mine) == 1 and mine[0]["statuses"] == [200], entries
        field = mine[0]["uri"] if where == "uri" else mine[0]["call_id"]
        assert "\\xff" in field, field
        stop_quietly(server)


def test_put_rules_over_the_rule_count_gets_400_with_the_line() -> None:
    from responder.rules.model import MAX_RULES

    with ResponderProcess("--admin", "127.0.0.1:0", "-q", "--rule", "OPTIONS->295") as server:
        base = server.wait_for_stderr(ADMIN_LINE).group(1)
        got = put_rules(base, "INVITE@u->486\n" * (MAX_RULES + 1), "text/plain")
        assert got.status == 400, got.text
        assert got.text.startswith(f"<admin>:{MAX_RULES + 1}:1: 'INVITE@u->486': more than "
                                   f"{MAX_RULES} rules"), got.text
        assert sip_status(server, "OPTIONS") == 295  # the old rules stay
        stop_quietly(server)


def test_sip_is_answered_while_a_large_put_rules_is_built() -> None:
    """A PUT /rules of nearly 1 MiB (MAX_RULES - 2 one-line rules with patterns) is read
    and built in a worker thread: OPTIONS sent one after another while it is in progress
    are each answered within 0.5 s (the build took the loop for seconds before), and the
    new rules are in force once the PUT has answered."""
    import threading

    from responder.rules.model import MAX_RULES

    lines = [f"INVITE@re:^lab-user-{i:05d}-[0-9]+x$->486;reason=Busy Lab User Number {i:05d}"
             for i in range(MAX_RULES - 3)]
    body = "\n".join(lines) + "\nOPTIONS->294\n"
    assert 700_000 < len(body) < ops_http.MAX_BODY
    with ResponderProcess("--admin", "127.0.0.1:0", "-q") as server:
        base = server.wait_for_stderr(ADMIN_LINE).group(1)
        result: list[Answer] = []
        put = threading.Thread(target=lambda: result.append(
            call("PUT", base + "/rules", body, {"Content-Type": "text/plain"})))
        slowest, during = 0.0, 0
        with server.client(timeout=0.5) as client:
            put.start()
            while put.is_alive():
                began = time.monotonic()
                call_id = unique("during")
                client.send(client.request("OPTIONS", call_id=call_id))
                response = client.recv_response(0.5)
                assert response.status in (200, 294)  # before or after the swap
                assert call_id in (response.get("call-id") or "")
                slowest = max(slowest, time.monotonic() - began)
                during += put.is_alive()
            put.join(10)
        assert result and result[0].status == 200, result and result[0].text
        assert during >= 3, during  # the PUT was in progress for several of them
        assert slowest < 0.5
        assert sip_status(server, "OPTIONS") == 294
        stop_quietly(server)


def test_sighup_after_put_rules_goes_back_to_the_command_lines_rules(
        admin: tuple[ResponderProcess, str]) -> None:
    """Started without --rules: SIGHUP undoes PUT /rules (as docs/operations.md says), back
    to the --rule rules in front of the built-in ones."""
    import signal

    server, base = admin
    assert put_rules(base, "INVITE->603\n", "text/plain").status == 200
    assert sip_status(server, "INVITE", "2000") == 603
    server.send_signal(signal.SIGHUP)
    server.wait_for_stderr("rules reloaded")
    assert sip_status(server, "INVITE", "1000") == 486  # the --rule rule
    assert sip_status(server, "INVITE", "2000") == 100  # the built-in 100, 180, 200


def test_put_rules_with_curls_default_form_type_is_one_line_rules(
        admin: tuple[ResponderProcess, str]) -> None:
    """curl --data 'INVITE->603' sends application/x-www-form-urlencoded: one-line rules."""
    server, base = admin
    got = put_rules(base, "INVITE->603", "application/x-www-form-urlencoded")
    assert got.status == 200, got.text
    assert sip_status(server, "INVITE", "2000") == 603


# --------------------------------------------------------------------------- journal contents
# Issue 12: each request's headers and body, each response's bytes, bounded.


def test_journal_gives_headers_body_and_responses() -> None:
    """An INVITE with an SDP body, a header with a byte that is not UTF-8, a discarded
    datagram: GET /journal shows what arrived and every response, as text."""
    from support import SDP, invite

    with ResponderProcess("--admin", "127.0.0.1:0", "-q",
                          "--rule", "INVITE@1000->180,486/100ms") as server:
        base = server.wait_for_stderr(ADMIN_LINE).group(1)
        call_id = unique("journal")
        with server.client() as client:
            data = invite(uri="sip:1000@127.0.0.1", call_id=call_id, via_port=client.port,
                          headers=(("Contact", "<sip:tester@127.0.0.1>"),
                                   ("User-Agent", "phone \xe9"),))
            data = data.replace("phone \xe9".encode(), b"phone \xe9\xff")
            client.send(data)
            got = [client.recv(5.0), client.recv(5.0)]
            client.exchange(b"\x01 not sip\r\n")
        entries = call("GET", base + "/journal").json()["entries"]
        assert isinstance(entries, list)
        by_call = {e["call_id"]: e for e in entries}
        entry = by_call[call_id]
        headers = entry["headers"]
        assert ["User-Agent", "phone \\xe9\\xff"] in headers  # not UTF-8: \xNN
        assert headers[0][0] == "Via" and ["Call-ID", call_id] in headers
        assert entry["body"] == SDP.decode()
        assert entry["message"] == data.decode("utf-8", "backslashreplace")
        assert entry["size"] == len(data) and entry["transport"] == "udp"
        assert entry["responses"] == [d.data.decode() for d in got if d is not None]
        assert entry["statuses"] == [180, 486]
        assert "media" in entry  # the calls' key stays
        [junk] = [e for e in entries if e["discard"] == "not-sip"]
        assert junk["message"] == "\x01 not sip\r\n" and junk["headers"] is None
        assert junk["body"] is None and junk["responses"] == [] and junk["size"] == 11
        assert got_all(base)["truncated"] is False
        assert server.stop() == 0


def got_all(base: str) -> dict[str, object]:
    return call("GET", base + "/journal?limit=1000").json()


def test_get_journal_carries_a_bounded_amount_of_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """Newest first until JOURNAL_TEXT bytes of message text; the rest is left out and the
    answer says so (``truncated``)."""
    from sip import feed, request

    from responder.core.engine import Engine
    from responder.core.journal import Journal
    from responder.ops.http import AdminApp, AdminOptions, HttpRequest
    from responder.ops.reload import Reloads
    from responder.rules.loader import build_ruleset
    from responder.sip.seeded import Seeded

    engine = Engine(build_ruleset(None, []), Seeded(1), record=True)
    journal = Journal(100)
    for i in range(10):
        journal.observe(feed(engine, request(call_id=f"c{i}", body="x" * 1000),
                             ("192.0.2.1", 5060), float(i)))
    app = AdminApp(engine, Reloads(), AdminOptions(("127.0.0.1", 0)), lambda: 10.0,
                   journal=journal)
    one = 2 * len(journal._entries[0].data) + len(journal._entries[0].responses[0])
    monkeypatch.setattr(ops_http, "JOURNAL_TEXT", 3 * one + 10)
    got = json.loads(app.get_journal(HttpRequest("GET", "/journal", {}, {})).body)
    assert [e["call_id"] for e in got["entries"]] == ["c7", "c8", "c9"]
    assert got["truncated"] is True
    monkeypatch.setattr(ops_http, "JOURNAL_TEXT", 10)  # never less than the newest one
    got = json.loads(app.get_journal(HttpRequest("GET", "/journal", {}, {})).body)
    assert [e["call_id"] for e in got["entries"]] == ["c9"]
