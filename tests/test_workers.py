"""``--workers N``: several processes on one socket, transactions kept whole."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

from support import ResponderProcess, parse_response, statuses, unique


def test_workers_answer_and_cancel_reaches_the_pending_invite() -> None:
    with ResponderProcess("--workers", "3", "--rule", "INVITE->180,486/1s", "-q") as server:
        with server.client() as client:
            calls = []
            for i in range(30):
                call_id, branch = unique("w"), f"z9hG4bK-w{i}"
                calls.append((call_id, branch))
                client.send(client.request("INVITE", call_id=call_id, branch=branch, from_tag="ft"))
            ringing = [parse_response(client.recv().data) for _ in calls]  # type: ignore[union-attr]
            assert statuses(ringing) == [180] * len(calls)
            for call_id, branch in calls:
                client.send(client.request("CANCEL", call_id=call_id, branch=branch, from_tag="ft"))
            got = [parse_response(client.recv().data) for _ in range(2 * len(calls))]  # type: ignore[union-attr]
            assert sorted(statuses(got)) == [200] * len(calls) + [487] * len(calls)
            for resp in got:
                expected = "CANCEL" if resp.status == 200 else "INVITE"
                assert resp.get("CSeq").endswith(expected)  # type: ignore[union-attr]
            # no 486 follows: the delayed steps were dropped by their owner workers
            assert client.recv(timeout=1.5) is None
            for _ in range(20):
                client.send(client.request("OPTIONS", call_id=unique()))
            assert statuses([parse_response(client.recv().data)  # type: ignore[union-attr]
                             for _ in range(20)]) == [200] * 20
        assert server.stop() == 0
        stopped = [line for line in server.stderr_lines if re.search(r"worker \d stopped", line)]
        assert len(stopped) == 3
        assert len([line for line in server.stderr_lines if "listening on" in line]) == 1



def test_sighup_to_the_parent_reloads_every_worker(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("default: 486\n")
    with ResponderProcess("--workers", "2", "--rules", str(rules), "-q") as server:
        rules.write_text("default: 603\n")
        server.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5.0
        while sum("rules reloaded" in line for line in server.stderr_lines) < 2:
            assert time.monotonic() < deadline, server.stderr_lines
            time.sleep(0.01)  # polling the log with a deadline
        with server.client() as client:
            for _ in range(20):
                client.send(client.request("BYE", call_id=unique()))
            got = [parse_response(client.recv().data) for _ in range(20)]  # type: ignore[union-attr]
        assert statuses(got) == [603] * 20  # whichever worker read it
        assert server.stop() == 0


def test_one_client_address_is_spread_over_the_workers() -> None:
    """The workers share one socket, so even one client 5-tuple reaches all of them
    (SO_REUSEPORT would pin it to one). OPTIONS are never handed between workers, so each
    worker's count is what it read itself."""
    with ResponderProcess("--workers", "2", "-q") as server:
        with server.client() as client:
            for _ in range(20):  # bursts: both workers wake and drain
                for _ in range(100):
                    client.send(client.request("OPTIONS", call_id=unique("s")))
                client.recv_all_until(client.send_sentinel(), timeout=10)
        assert server.stop() == 0
    counts = [int(m.group(1)) for line in server.stderr_lines
              if (m := re.search(r"worker \d stopped: (\d+) datagrams received", line))]
    assert len(counts) == 2 and sum(counts) >= 2000, counts
    assert min(counts) > 0, counts
