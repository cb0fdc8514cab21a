"""``--workers N``: several processes on one socket, transactions kept whole."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from pathlib import Path

from support import ResponderProcess, statuses, unique

from responder.ops.server import RESTART_LIMIT, RestartBudget, describe_exit


def test_workers_answer_and_cancel_reaches_the_pending_invite() -> None:
    with ResponderProcess("--workers", "3", "--rule", "INVITE->180,486/1s", "-q") as server:
        with server.client() as client:
            calls = []
            for i in range(30):
                call_id, branch = unique("w"), f"z9hG4bK-w{i}"
                calls.append((call_id, branch))
                client.send(client.request("INVITE", call_id=call_id, branch=branch, from_tag="ft"))
            ringing = [client.recv_response() for _ in calls]
            assert statuses(ringing) == [180] * len(calls)
            for call_id, branch in calls:
                client.send(client.request("CANCEL", call_id=call_id, branch=branch, from_tag="ft"))
            got = [client.recv_response() for _ in range(2 * len(calls))]
            assert sorted(statuses(got)) == [200] * len(calls) + [487] * len(calls)
            for resp in got:
                expected = "CANCEL" if resp.status == 200 else "INVITE"
                assert (resp.get("CSeq") or "").endswith(expected), resp
            # no 486 follows: the delayed steps were dropped by their owner workers
            assert client.recv(timeout=1.5) is None
            for _ in range(20):
                client.send(client.request("OPTIONS", call_id=unique()))
            assert statuses([client.recv_response() for _ in range(20)]) == [200] * 20
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
            got = [client.recv_response() for _ in range(20)]
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


# --------------------------------------------------------------------------- deaths
# Issue 11 item 11: a worker that dies is named and started again (bounded); workers die
# with their parent. Real processes, killed by PID, and real sockets.

STARTED = re.compile(r"worker (\d) started \(pid (\d+)\)")


def worker_pids(server: ResponderProcess, count: int, timeout: float = 10.0) -> dict[int, int]:
    """index -> PID of the newest start line of each worker, once all ``count`` are up."""
    deadline = time.monotonic() + timeout
    while True:
        pids = {int(m.group(1)): int(m.group(2)) for line in server.stderr_lines
                if (m := STARTED.search(line))}
        if len(pids) == count:
            return pids
        assert time.monotonic() < deadline, server.stderr_lines
        time.sleep(0.01)  # polling the log with a deadline


def gone(pid: int) -> bool:
    """The process has exited (reaped, or a zombie: its sockets are closed either way)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def restarted(server: ResponderProcess, index: int, old: int, timeout: float = 10.0) -> int:
    """The PID of worker ``index`` once a start line newer than PID ``old`` names it."""
    deadline = time.monotonic() + timeout
    while (pid := worker_pids(server, 2)[index]) == old:
        assert time.monotonic() < deadline, server.stderr_lines
        time.sleep(0.01)  # polling the log with a deadline
    return pid


def answered(server: ResponderProcess, bursts: int, size: int = 20) -> int:
    """OPTIONS in ``bursts`` bursts of ``size`` (small: the socket buffer holds them all),
    each burst's answers awaited."""
    got = 0
    with server.client() as client:
        for _ in range(bursts):
            for _ in range(size):
                client.send(client.request("OPTIONS", call_id=unique("k")))
            got += sum(client.recv() is not None for _ in range(size))
    return got


def test_a_killed_worker_is_named_and_started_again() -> None:
    with ResponderProcess("--workers", "2", "-q") as server:
        first = worker_pids(server, 2)
        os.kill(first[0], signal.SIGKILL)
        server.wait_for_stderr(rf"worker 0 \(pid {first[0]}\) was killed by signal 9 "
                               r"\(SIGKILL\); starting it again")
        restarted(server, 0, first[0])
        assert worker_pids(server, 2)[1] == first[1]
        assert answered(server, 10) == 200
        assert server.stop() == 0
    stopped = [line for line in server.stderr_lines if re.search(r"worker \d stopped", line)]
    assert len(stopped) == 2, server.stderr_lines
    assert not any("Traceback" in line for line in server.stderr_lines)


def test_restarts_are_bounded_then_the_workers_stop() -> None:
    with ResponderProcess("--workers", "2", "-q") as server:
        for kill in range(RESTART_LIMIT + 1):
            pid = worker_pids(server, 2)[1]
            os.kill(pid, signal.SIGKILL)
            server.wait_for_stderr(rf"worker 1 \(pid {pid}\) was killed by signal 9")
            if kill < RESTART_LIMIT:
                restarted(server, 1, pid)
        server.wait_for_stderr(rf"worker 1 \(pid {pid}\) was killed by signal 9 \(SIGKILL\); "
                               rf"{RESTART_LIMIT} restarts in the last 60s already: stopping "
                               r"the other workers")
        assert server.stop() == 1  # it stopped on its own: stop() only waits
    assert server.wait_for_stderr(r"worker 0 stopped: ")


def test_workers_die_with_their_parent() -> None:
    with ResponderProcess("--workers", "2", "-q") as server:
        pids = worker_pids(server, 2)
        host, port = server.address
        try:
            os.kill(server.pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while not all(gone(pid) for pid in pids.values()):
                assert time.monotonic() < deadline, "orphaned workers still running"
                time.sleep(0.01)  # polling /proc with a deadline
        finally:
            for pid in pids.values():  # a failed run leaves no orphan behind
                if not gone(pid):
                    os.kill(pid, signal.SIGKILL)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, port))  # the port is free again: a restart can bind it


def test_restart_budget_and_exit_descriptions() -> None:
    budget = RestartBudget(limit=2, window=60.0)
    assert budget.take(0.0) and budget.take(1.0) and not budget.take(59.0)
    assert budget.take(60.5)  # the first restart left the window
    assert describe_exit(-9) == "was killed by signal 9 (SIGKILL)"
    assert describe_exit(3) == "exited with status 3"
