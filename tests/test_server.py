"""The running server: SIGHUP reload, discard summaries, the stop line (real process, UDP)."""

from __future__ import annotations

import asyncio
import io
import re
import signal
import socket
import time
from pathlib import Path

from support import ResponderProcess, invite, unique

from responder.core.engine import Engine
from responder.core.limits import Limits
from responder.ops.logs import ExchangeLog
from responder.ops.server import serve
from responder.rules.loader import build_ruleset
from responder.sip.seeded import Seeded


def _status(server: ResponderProcess, method: str) -> int:
    with server.client() as client:
        client.send(client.request(method, call_id=unique()))
        return client.recv_response().status


def test_sighup_reloads_the_rules_file_and_keeps_old_rules_on_error(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - match: {method: INVITE}\n    respond: 486\n")
    with ResponderProcess("--rules", str(rules), "-q") as server:
        assert _status(server, "INVITE") == 486
        rules.write_text("rules:\n  - match: {method: INVITE}\n    respond: 603\n")
        server.send_signal(signal.SIGHUP)
        server.wait_for_stderr("rules reloaded")
        assert _status(server, "INVITE") == 603
        rules.write_text("rules:\n  - match: {method: INVITE}\n    respond: 999\n")
        server.send_signal(signal.SIGHUP)
        server.wait_for_stderr(r"reload failed, the old rules stay in force: .*rules\.yaml:3:14: "
                               r"bad response code 999")
        assert _status(server, "INVITE") == 603
        assert server.stop() == 0


def test_sighup_keeps_one_line_rules_in_front(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("default: 404\n")
    with ResponderProcess("--rules", str(rules), "--rule", "OPTIONS->480", "-q") as server:
        assert (_status(server, "OPTIONS"), _status(server, "BYE")) == (480, 404)
        rules.write_text("default: 410\n")
        server.send_signal(signal.SIGHUP)
        server.wait_for_stderr("rules reloaded")
        assert (_status(server, "OPTIONS"), _status(server, "BYE")) == (480, 410)
        assert server.stop() == 0


def test_discards_are_summarised_not_logged_one_by_one() -> None:
    with ResponderProcess("-v") as server:
        with server.client() as client:
            for _ in range(50):
                client.send(b"GET / HTTP/1.1\r\n\r\n")
            client.send(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK1\r\n\r\n")
            client.send(client.request("OPTIONS", call_id=unique()))
            assert client.recv_response().status == 200
        line = server.wait_for_stderr(r"discarded 51 datagrams in the last 1s: "
                                      r"not-sip=50, response=1")
        assert line
        assert server.stop() == 0
        assert not any("GET" in line for line in server.stderr_lines)
        server.wait_for_stderr(r"stopped: 52 datagrams received, 1 responses sent, 51 discarded")


def test_drop_rule_is_logged_as_drop() -> None:
    with ResponderProcess("--rule", "OPTIONS->drop") as server:
        with server.client() as client:
            client.send(client.request("OPTIONS", call_id=unique()))
            client.send(client.request("BYE", call_id=unique()))
            assert client.recv_response().status == 200  # the BYE's; nothing for the OPTIONS
        server.wait_for_stderr(r"OPTIONS sip:\S+ -> drop \[rule OPTIONS->drop\]")
        assert server.stop() == 0


def test_json_log_lines_carry_the_exchange() -> None:
    import json

    with ResponderProcess("--log-format", "json", "--rule", "INVITE->486") as server:
        call_id = unique()
        with server.client() as client:
            client.send(client.request("INVITE", call_id=call_id))
            assert client.recv_response().status == 486
        line = server.wait_for_stderr(r'^\{.*"event": "exchange".*\}$').group(0)
        record = json.loads(line)
        assert record["method"] == "INVITE" and record["status"] == 486
        assert record["reason"] == "Busy Here" and record["call_id"] == call_id
        assert record["rule"] == "INVITE->486" and record["source"].startswith("127.0.0.1:")
        assert server.stop() == 0


def test_allow_list_and_rate_limit_from_the_command_line() -> None:
    with ResponderProcess("--allow", "192.0.2.0/24", "-v") as server:
        with server.client() as client:
            client.send(client.request("OPTIONS", call_id=unique()))
            assert client.recv(timeout=0.5) is None  # 127.0.0.1 is not allowed
        server.wait_for_stderr(r"discarded 1 datagrams in the last 1s: not-allowed=1")
        assert server.stop() == 0
    with ResponderProcess("--rate-limit", "5/s", "-q") as server:
        with server.client() as client:
            for _ in range(20):
                client.send(client.request("OPTIONS", call_id=unique()))
            answered = 0
            while client.recv(timeout=0.5) is not None:
                answered += 1
            assert 5 <= answered <= 7  # a burst of 5, plus what refilled meanwhile
        assert server.stop() == 0


def test_repeated_final_responses_are_logged_as_repeats() -> None:
    with ResponderProcess("--rule", "OPTIONS->486;repeat=2") as server:
        with server.client() as client:
            client.send(client.request("OPTIONS", call_id=unique()))
            first, second = client.recv(), client.recv(timeout=2.0)
            assert first is not None and second is not None and first.data == second.data
        server.wait_for_stderr(r"OPTIONS sip:\S+ -> 486 Busy Here \[rule .*\] \(repeat 1\)")
        assert server.stop() == 0


def test_reload_under_load_loses_no_request(tmp_path: Path) -> None:
    """SIGHUP while 10,000 requests a second arrive: every request is answered, the old
    rules before the swap and the new ones after it."""
    import socket
    import threading
    import time

    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - match: {method: OPTIONS}\n    respond: 200\n")
    rate, seconds = 10_000, 2.0
    total = int(rate * seconds)
    with ResponderProcess("--rules", str(rules), "-q") as server:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(2.0)
        port = sock.getsockname()[1]
        template = (
            "OPTIONS sip:load@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{{n}}\r\n"
            "From: <sip:load@127.0.0.1>;tag=l\r\nTo: <sip:load@127.0.0.1>\r\n"
            "Call-ID: load-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
        statuses: dict[int, int] = {}

        def receive() -> None:
            while len(statuses) < total:
                try:
                    data = sock.recv(4096)
                except TimeoutError:
                    return
                call = data.index(b"Call-ID: load-") + 14
                statuses[int(data[call:data.index(b"\r\n", call)])] = int(data[8:11])

        reader = threading.Thread(target=receive)
        reader.start()
        start = time.monotonic()
        batch = 100
        for first in range(0, total, batch):
            for n in range(first, first + batch):
                sock.sendto(template.format(n=n).encode(), server.address)
            if first == total // 2:
                rules.write_text("rules:\n  - match: {method: OPTIONS}\n    respond: 202\n")
                server.send_signal(signal.SIGHUP)
            pause = start + (first + batch) / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        reader.join(timeout=10)
        sock.close()
        server.wait_for_stderr("rules reloaded")
        assert server.stop() == 0
    assert len(statuses) == total, f"{total - len(statuses)} of {total} requests unanswered"
    assert set(statuses.values()) == {200, 202}
    switch = min(n for n, s in statuses.items() if s == 202)
    assert all(s == 200 for n, s in statuses.items() if n < switch)
    assert all(s == 202 for n, s in statuses.items() if n >= switch)


def test_sigterm_says_how_many_pending_steps_were_not_sent() -> None:
    with ResponderProcess("--rule", "INVITE->180,486/30s", "-q") as server:
        with server.client() as client:
            for i in range(40):
                client.send(client.request("INVITE", call_id=unique(f"p{i}")))
            assert [client.recv_response().status for _ in range(40)] == [180] * 40
        assert server.stop() == 0
    server.wait_for_stderr(r"stopped: 40 datagrams received, 40 responses sent, 0 discarded, "
                           r"40 pending steps not sent, 0 log lines dropped")


def test_a_full_pending_table_is_summarised_not_logged_per_request() -> None:
    """Limits(pending=2): the 3 INVITEs past the bound are refused; one line a second says
    how many (in-process: the server on a real socket, its log in memory)."""

    async def scenario() -> tuple[str, Engine]:
        stream = io.StringIO()
        engine = Engine(build_ruleset(None, ["INVITE->180,486/30s"]), Seeded(1),
                        limits=Limits(pending=2))
        stop = asyncio.Event()
        bound: list[tuple[str, int]] = []
        task = asyncio.ensure_future(serve(
            [("127.0.0.1", 0)], engine, ExchangeLog(stream, quiet=True), stop=stop,
            signals=False, ready=bound.extend))
        deadline = time.monotonic() + 10
        try:
            while not bound:
                assert time.monotonic() < deadline and not task.done()
                await asyncio.sleep(0.01)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind(("127.0.0.1", 0))
                for i in range(5):
                    sock.sendto(invite(call_id=unique(f"full{i}")), bound[0])
                while sum(map(int, re.findall(r"(\d+) requests refused",
                                              stream.getvalue()))) < 3:
                    assert time.monotonic() < deadline, stream.getvalue()
                    await asyncio.sleep(0.05)  # polling the log with a deadline
        finally:
            stop.set()
            await task
        return stream.getvalue(), engine

    text, engine = asyncio.run(scenario())
    assert engine.counters.pending_overflow == 3 and engine.pending == 2
    lines = [line for line in text.splitlines() if "pending table full" in line]
    assert all(re.fullmatch(r"sip-responder: pending table full \(2 transactions\): \d+ "
                            r"requests refused with 503 in the last 1s", line)
               for line in lines), lines
    assert "stopped: 5 datagrams received" in text and "2 pending steps not sent" in text


def test_retransmissions_are_told_apart_only_when_someone_observes() -> None:
    """The table of requests last seen (Engine.marks) costs ~0.7 µs a request: the server
    keeps it for logs, metrics, journal or trace, and turns it off for -q alone."""
    from responder.ops.metrics import ServerStats
    from responder.ops.server import observer

    engine = Engine(build_ruleset(None, []), Seeded(1))
    assert engine.marks  # the library default: full behaviour
    assert observer(engine, ExchangeLog(io.StringIO(), quiet=True), None, None) is None
    assert not engine.marks
    assert observer(engine, ExchangeLog(io.StringIO()), None, None) is not None
    assert engine.marks
    observer(engine, ExchangeLog(io.StringIO(), quiet=True), ServerStats(), None)
    assert engine.marks  # metrics count retransmissions
