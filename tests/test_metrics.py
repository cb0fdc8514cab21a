"""``--metrics``: Prometheus /metrics and /healthz (docs/operations.md).

End to end: the console script with ``--metrics 127.0.0.1:0``, real SIP over UDP, real
HTTP scrapes parsed with prometheus_client's own parser. Then the pieces in-process: the
collector over an engine fed on a fake clock, and the bounds on label values.
"""

from __future__ import annotations

import signal
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from sip import Recorded, feed
from support import (
    ResponderProcess,
    Txn,
    ack,
    cancel,
    invite,
    run_cli,
    statuses,
    tag_of,
    unique,
)

from responder.core.counters import METHODS_LIMIT, OTHER_METHOD
from responder.core.effects import Exchange, exchanges
from responder.core.engine import Engine
from responder.ops.metrics import (
    OTHER_RULE,
    SERIES_LIMIT,
    Exposition,
    ResponderCollector,
    ServerStats,
)
from responder.rules.loader import build_ruleset
from responder.sip.seeded import Seeded

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
METRICS_LINE = r"metrics on (http://127\.0\.0\.1:\d+/metrics)"


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    """(status, Content-Type, body) of a GET; HTTP errors are answers too."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as err:
        try:
            return err.code, err.headers["Content-Type"], err.read()
        finally:
            err.close()


def samples(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(url: str) -> Samples:
    status, content_type, body = http_get(url)
    assert status == 200, body
    assert content_type.startswith("text/plain; version=0.0.4"), content_type
    return samples(body.decode())


def value(found: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in found, f"{name}{labels} not in {sorted(k for k in found if k[0] == name)}"
    return found[key]


def metrics_url(server: ResponderProcess) -> str:
    return server.wait_for_stderr(METRICS_LINE).group(1)


# --------------------------------------------------------------------------- end to end


def test_requests_responses_and_discards_are_counted() -> None:
    rules = ("--rule", "INVITE@1000->486", "--rule", "BYE->drop")
    with ResponderProcess("--metrics", "127.0.0.1:0", "-q", *rules) as server:
        url = metrics_url(server)
        before = scrape(url)
        assert not any(name == "sip_responder_requests_total" for name, _ in before)
        assert value(before, "sip_responder_ruleset_version") == 1
        assert value(before, "sip_responder_rules") == 4  # 2 --rule + 2 built-in
        with server.client() as client:
            txn: Txn = {"call_id": unique(), "branch": unique("z9hG4bK"), "from_tag": unique()}
            got = client.exchange(
                invite(uri="sip:1000@127.0.0.1", **txn),      # 486
                client.request("OPTIONS", call_id=unique()),  # 200 (rule ok)
                client.request("INFO", call_id=unique()),     # 200 (rule ok)
                client.request("FOO", call_id=unique()),      # 501 (the default)
                client.request("BYE", call_id=unique()),      # dropped
                b"GET / HTTP/1.1\r\n\r\n",                    # not SIP: discarded
                b"\r\n\r\n",                                  # keep-alive: discarded
            )
            assert sorted(statuses(got)) == [200, 200, 486, 501]
            final = next(r for r in got if r.status == 486)
            client.exchange(ack(to_tag=tag_of(final.get("to")), uri="sip:1000@127.0.0.1",
                                **txn))
            # the same INVITE again: an immediate answer is built afresh (the same bytes), and
            # the engine's table of requests last seen counts it as a retransmission
            again = client.exchange(invite(uri="sip:1000@127.0.0.1", **txn))
            assert statuses(again) == [486]
        found = scrape(url)
    # two sentinels (OPTIONS, rule ok) were sent by exchange(), one per call: three in all
    assert value(found, "sip_responder_requests_total", method="INVITE") == 2
    assert value(found, "sip_responder_requests_total", method="ACK") == 1
    assert value(found, "sip_responder_requests_total", method="OPTIONS") == 1 + 3
    assert value(found, "sip_responder_requests_total", method="FOO") == 1
    assert value(found, "sip_responder_requests_total", method="BYE") == 1
    assert value(found, "sip_responder_responses_total", **{
        "class": "4xx", "rule": "INVITE@1000->486"}) == 2
    assert value(found, "sip_responder_responses_total", **{"class": "2xx", "rule": "ok"}) == 5
    assert value(found, "sip_responder_responses_total", **{"class": "5xx", "rule": "default"}) \
        == 1
    assert value(found, "sip_responder_drops_total", rule="BYE->drop") == 1
    assert value(found, "sip_responder_retransmissions_total") == 1
    assert value(found, "sip_responder_discarded_total", reason="not-sip") == 1
    assert value(found, "sip_responder_discarded_total", reason="keepalive") == 1
    assert value(found, "sip_responder_discarded_total", reason="no-via") == 0  # known: 0
    discards = sum(v for (name, _), v in found.items() if name == "sip_responder_discarded_total")
    assert discards == 2
    # 7 datagrams + ACK + INVITE again, and a sentinel per exchange()
    assert value(found, "sip_responder_datagrams_received_total") == 7 + 1 + 1 + 3
    assert value(found, "sip_responder_build_info", version="0.1.0") == 1
    assert value(found, "process_cpu_seconds_total") > 0
    assert ("sip_responder_journal_entries", frozenset()) not in found  # no --admin


def test_pending_transactions_gauge_follows_delayed_steps_and_cancel() -> None:
    with ResponderProcess("--metrics", "127.0.0.1:0", "-q",
                          "--rule", "INVITE->180,486/30s") as server:
        url = metrics_url(server)
        txn: Txn = {"call_id": unique(), "branch": unique("z9hG4bK"), "from_tag": unique()}
        with server.client() as client:
            assert statuses(client.exchange(invite(**txn))) == [180]
            assert value(scrape(url), "sip_responder_pending_transactions") == 1
            # a retransmission while the 486 is pending gets the last response sent again
            assert statuses(client.exchange(invite(**txn))) == [180]
            assert value(scrape(url), "sip_responder_retransmissions_total") == 1
            got = client.exchange(cancel(**txn))
            assert sorted(statuses(got)) == [200, 487]
        found = scrape(url)
    assert value(found, "sip_responder_pending_transactions") == 0
    assert value(found, "sip_responder_responses_total", **{"class": "4xx", "rule": "cancel"}) \
        == 1
    assert value(found, "sip_responder_responses_total", **{"class": "2xx", "rule": "cancel"}) \
        == 1
    assert value(found, "sip_responder_responses_total", **{
        "class": "1xx", "rule": "INVITE->180,486/30s"}) == 2  # the repeat included


def test_sighup_reloads_are_counted_ok_and_failed(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - match: {method: INVITE}\n    respond: 486\n")
    with ResponderProcess("--rules", str(rules), "--metrics", "127.0.0.1:0", "-q") as server:
        url = metrics_url(server)
        rules.write_text("rules:\n  - match: {method: INVITE}\n    respond: 603\n"
                         "  - match: {method: BYE}\n    respond: 481\n")
        server.send_signal(signal.SIGHUP)
        server.wait_for_stderr("rules reloaded")
        found = scrape(url)
        assert value(found, "sip_responder_ruleset_version") == 2
        assert value(found, "sip_responder_rules") == 2
        assert value(found, "sip_responder_reloads_total", source="sighup", result="ok") == 1
        assert value(found, "sip_responder_reloads_total", source="sighup", result="failed") == 0

        rules.write_text("rules:\n  - match: {method: INVITE}\n    respond: 999\n")
        server.send_signal(signal.SIGHUP)
        server.wait_for_stderr("reload failed")
        found = scrape(url)
        assert value(found, "sip_responder_ruleset_version") == 2  # unchanged
        assert value(found, "sip_responder_reloads_total", source="sighup", result="ok") == 1
        assert value(found, "sip_responder_reloads_total", source="sighup", result="failed") == 1
        with server.client() as client:
            client.send(client.request("INVITE", call_id=unique()))
            assert client.recv_response().status == 603  # the old rules stay
        assert server.stop() == 0


def test_healthz_not_found_and_method_not_allowed() -> None:
    with ResponderProcess("--metrics", "127.0.0.1:0", "-q") as server:
        base = metrics_url(server).removesuffix("/metrics")
        assert http_get(base + "/healthz") == (200, "text/plain; charset=utf-8", b"ok\n")
        status, _, body = http_get(base + "/nothing")
        assert status == 404 and b"/metrics" in body
        req = urllib.request.Request(base + "/metrics", data=b"x", method="POST")
        try:
            urllib.request.urlopen(req, timeout=5).close()
            raise AssertionError("POST /metrics was accepted")
        except urllib.error.HTTPError as err:
            assert err.code == 405 and err.headers["Allow"] == "GET, HEAD"
            err.close()
        assert server.stop() == 0


def test_openmetrics_when_asked() -> None:
    with ResponderProcess("--metrics", "127.0.0.1:0", "-q") as server:
        status, content_type, body = http_get(
            metrics_url(server), {"Accept": "application/openmetrics-text; version=1.0.0"})
        assert status == 200 and content_type.startswith("application/openmetrics-text")
        assert body.rstrip().endswith(b"# EOF")
        assert server.stop() == 0


def test_metrics_address_in_use_is_an_error_and_workers_are_refused() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("--listen", "127.0.0.1:0", "--metrics", f"127.0.0.1:{port}")
    assert result.returncode == 1 and "cannot listen" in result.stderr
    result = run_cli("--workers", "2", "--metrics", "127.0.0.1:0")
    assert result.returncode == 2 and "single worker" in result.stderr


# --------------------------------------------------------------------------- in-process

REQUEST = (
    "{method} sip:{user}@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK{n}\r\n"
    "From: <sip:a@127.0.0.1>;tag=f{n}\r\nTo: <sip:{user}@127.0.0.1>\r\n"
    "Call-ID: c{n}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
)


def request(method: str, n: int, user: str = "1000") -> bytes:
    return REQUEST.format(method=method, n=n, user=user).encode()


def test_collector_reads_engine_and_stats_at_scrape_time() -> None:
    engine = Engine(build_ruleset(None, ["INVITE->486", "OPTIONS->drop"]), Seeded(1))
    recorded = Recorded(engine, 10)
    stats = ServerStats()
    exposition = Exposition(ResponderCollector(engine, stats, lambda: 7, recorded.journal),
                            process=False)
    for n, method in enumerate(["INVITE", "INVITE", "OPTIONS", "BYE", "ACK"]):
        outs = recorded.feed(request(method, n), ("127.0.0.1", 5062), float(n))
        stats.observe(exchanges(outs))
    recorded.feed(b"\x00\x01", ("127.0.0.1", 5062), 9.0)
    body, content_type = exposition.render(None)
    assert content_type.startswith("text/plain; version=0.0.4")
    found = samples(body.decode())
    assert value(found, "sip_responder_requests_total", method="INVITE") == 2
    assert value(found, "sip_responder_requests_total", method="ACK") == 1
    assert value(found, "sip_responder_responses_total", **{
        "class": "4xx", "rule": "INVITE->486"}) == 2
    assert value(found, "sip_responder_responses_total", **{"class": "2xx", "rule": "ok"}) == 1
    assert value(found, "sip_responder_drops_total", rule="OPTIONS->drop") == 1
    assert value(found, "sip_responder_send_errors_total") == 7
    assert value(found, "sip_responder_journal_entries") == 6
    assert value(found, "sip_responder_datagrams_received_total") == 6
    assert sum(v for (name, _), v in found.items()
               if name == "sip_responder_discarded_total") == 1
    assert not any(name.startswith("process_") for name, _ in found)


def test_label_values_are_bounded() -> None:
    stats = ServerStats()
    exchanges = [Exchange(0.0, ("127.0.0.1", 1), "INVITE", "sip:x", "c", 486, "Busy Here",
                          f"rule-{i}", 0.0) for i in range(SERIES_LIMIT + 50)]
    stats.observe(exchanges)
    assert len(stats.responses) == SERIES_LIMIT + 1
    assert stats.responses[(4, OTHER_RULE)] == 50

    engine = Engine(build_ruleset(None, ["*->200"]), Seeded(1))
    for n in range(METHODS_LIMIT + 10):
        feed(engine, request(f"M{n}", n), ("127.0.0.1", 5062), 0.0)
    methods = engine.counters.methods
    assert len(methods) == METHODS_LIMIT + 1
    assert methods[OTHER_METHOD] == 10 and methods["M0"] == 1


def test_responses_to_a_sip_request_arrive_over_udp_while_scraping() -> None:
    """Scrapes run on the server's loop between datagram batches: both keep working."""
    with ResponderProcess("--metrics", "127.0.0.1:0", "-q") as server:
        url = metrics_url(server)
        with server.client() as client:
            for round_ in range(5):
                client.send(client.request("OPTIONS", call_id=unique()))
                scrape(url)
                assert client.recv_response().status == 200
                assert value(scrape(url), "sip_responder_requests_total",
                             method="OPTIONS") == round_ + 1
        assert server.stop() == 0


def test_log_lines_dropped_and_pending_overflow_are_exposed() -> None:
    with ResponderProcess("--metrics", "127.0.0.1:0", "-q") as server:
        found = scrape(metrics_url(server))
        assert value(found, "sip_responder_log_lines_dropped_total") == 0
        assert value(found, "sip_responder_pending_overflow_total") == 0
        assert server.stop() == 0
    engine = Engine(build_ruleset(None, []), Seeded(1))
    exposition = Exposition(ResponderCollector(engine, ServerStats(), log_dropped=lambda: 12),
                            process=False)
    found = samples(exposition.render(None)[0].decode())
    assert value(found, "sip_responder_log_lines_dropped_total") == 12
