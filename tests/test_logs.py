"""Exchange lines: ``--log-format json`` and ``--log-file PATH`` (SPEC §7, docs/operations.md).

End to end with the console script (stderr and the file, -q, SIGHUP reopening the file after
rotation, a file that cannot be opened), then :class:`ExchangeLog` in-process.
"""

from __future__ import annotations

import io
import json
import re
import signal
import time
from pathlib import Path

from support import ResponderProcess, invite, run_cli, statuses, unique

from responder.core.effects import Exchange
from responder.ops.logs import ExchangeLog, json_line, text_line

FIELDS = {"time", "source", "method", "uri", "call_id", "status", "reason", "rule", "delay",
          "retransmission", "repeat"}


def json_lines(lines: list[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def wait_for_lines(path: Path, count: int, timeout: float = 5.0) -> list[str]:
    """The file's lines once it has at least ``count`` (the server writes asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def test_json_lines_on_stderr_and_in_the_file(tmp_path: Path) -> None:
    log = tmp_path / "exchanges.jsonl"
    log.write_text('{"earlier": true}\n')  # appended to, not truncated: this line stays
    call_id = unique()
    start = time.time()
    with ResponderProcess("--log-format", "json", "--log-file", str(log),
                          "--rule", "INVITE->180,486/200ms;reason=Not Now") as server:
        with server.client() as client:
            txn = {"call_id": call_id, "branch": unique("z9hG4bK"), "from_tag": unique()}
            client.send(invite(uri="sip:1000@127.0.0.1", **txn))
            first = client.recv_response()
            second = client.recv_response()
            assert (first.status, second.status) == (180, 486)
        server.wait_for_stderr(r'"status": 486')
        assert server.stop() == 0
    records = json_lines(server.stderr_lines)
    assert len(records) == 2
    for record in records:
        assert set(record) == FIELDS
        assert record["method"] == "INVITE" and record["uri"] == "sip:1000@127.0.0.1"
        assert record["call_id"] == call_id and record["rule"] == "INVITE->180,486/200ms;" \
            "reason=Not Now"
        assert re.fullmatch(r"127\.0\.0\.1:\d+", str(record["source"]))
        assert isinstance(record["time"], float) and start - 1 <= record["time"] <= time.time()
        assert record["retransmission"] is False
    ringing, busy = records
    assert (ringing["status"], ringing["reason"], ringing["delay"]) == (180, "Ringing", 0.0)
    assert (busy["status"], busy["reason"], busy["delay"]) == (486, "Not Now", 0.2)
    assert isinstance(busy["time"], float) and isinstance(ringing["time"], float)
    assert busy["time"] >= ringing["time"] + 0.15
    in_file = log.read_text().splitlines()
    assert in_file[0] == '{"earlier": true}'
    assert in_file[1:] == [line for line in server.stderr_lines if line.startswith("{")]


def test_quiet_silences_stderr_but_not_the_file(tmp_path: Path) -> None:
    log = tmp_path / "exchanges.log"
    with ResponderProcess("-q", "--log-file", str(log)) as server:
        with server.client() as client:
            assert statuses(client.exchange(client.request("OPTIONS", call_id=unique()))) \
                == [200]
        lines = wait_for_lines(log, 2)
        assert server.stop() == 0
    assert len(lines) == 2
    assert all(re.match(r"\d\d:\d\d:\d\d\.\d{3} 127\.0\.0\.1:\d+ OPTIONS sip:\S+ -> 200 OK "
                        r"\[rule ok\]$", line) for line in lines), lines
    assert not any("OPTIONS" in line for line in server.stderr_lines)


def test_sighup_reopens_the_file_after_rotation(tmp_path: Path) -> None:
    log = tmp_path / "exchanges.log"
    rotated = tmp_path / "exchanges.log.1"
    with ResponderProcess("-q", "--log-file", str(log)) as server:
        with server.client() as client:
            client.exchange(client.request("OPTIONS", call_id=unique()))
            assert len(wait_for_lines(log, 2)) == 2
            log.rename(rotated)
            client.exchange(client.request("OPTIONS", call_id=unique()))
            assert len(wait_for_lines(rotated, 4)) == 4  # still the old file until SIGHUP
            server.send_signal(signal.SIGHUP)
            server.wait_for_stderr("SIGHUP: no rules file to reload")
            client.exchange(client.request("BYE", call_id=unique()))
        lines = wait_for_lines(log, 2)
        assert server.stop() == 0
    assert len(lines) == 2 and " BYE " in lines[0]
    assert len(rotated.read_text().splitlines()) == 4


def test_a_log_file_that_cannot_be_opened_stops_the_start(tmp_path: Path) -> None:
    result = run_cli("--listen", "127.0.0.1:0", "--log-file", str(tmp_path / "no" / "x.log"))
    assert result.returncode == 1
    assert "cannot open the log file" in result.stderr


# --------------------------------------------------------------------------- in-process

EXCHANGE = Exchange(0.0, ("2001:db8::1", 5062), "INVITE", "sip:1000@lab", "abc@host", 486,
                    "Busy Here", "busy-1000", 2.0, retransmission=True)


def test_text_and_json_lines_carry_the_same_facts() -> None:
    wall = time.mktime((2026, 11, 24, 12, 0, 1, 0, 0, -1)) + 0.234
    assert text_line(EXCHANGE, wall) == ("12:00:01.234 [2001:db8::1]:5062 INVITE sip:1000@lab "
                                         "-> 486 Busy Here [rule busy-1000] (retransmission)\n")
    assert json.loads(json_line(EXCHANGE, wall)) == {
        "time": round(wall, 3), "source": "[2001:db8::1]:5062", "method": "INVITE",
        "uri": "sip:1000@lab", "call_id": "abc@host", "status": 486, "reason": "Busy Here",
        "rule": "busy-1000", "delay": 2.0, "retransmission": True, "repeat": 0,
    }
    again = EXCHANGE._replace(retransmission=False, repeat=2)
    assert text_line(again, wall).endswith("[rule busy-1000] (repeat 2)\n")
    assert json.loads(json_line(again, wall))["repeat"] == 2
    dropped = EXCHANGE._replace(status=None, reason="drop", retransmission=False)
    assert json.loads(json_line(dropped, wall))["status"] is None
    assert " -> drop [rule busy-1000]\n" in text_line(dropped, wall)


def test_exchange_log_writes_stream_and_file_and_survives_a_failed_reopen(
        tmp_path: Path) -> None:
    stream = io.StringIO()
    path = tmp_path / "x.log"
    log = ExchangeLog(stream, "json", path=str(path))
    try:
        log.write([EXCHANGE, EXCHANGE._replace(status=200, reason="OK")])
        log.write([])
        assert path.read_text() == stream.getvalue()
        assert [json.loads(line)["status"] for line in path.read_text().splitlines()] \
            == [486, 200]
        path.rename(tmp_path / "gone.log")
        path.mkdir()  # a directory where the file was: it cannot be opened, even by root
        log.reopen()
        assert "cannot reopen the log file, still writing the old one" in stream.getvalue()
        log.write([EXCHANGE])  # still the old (renamed) file
        assert len((tmp_path / "gone.log").read_text().splitlines()) == 3
        path.rmdir()
        log.reopen()
        log.write([EXCHANGE])
        assert len(path.read_text().splitlines()) == 1
    finally:
        log.close()
    log.close()  # twice is harmless


def test_quiet_log_without_a_file_writes_nothing() -> None:
    stream = io.StringIO()
    log = ExchangeLog(stream, "text", quiet=True)
    log.write([EXCHANGE])
    log.reopen()  # no file: nothing to do
    assert stream.getvalue() == ""
    log.note("still said")
    assert stream.getvalue() == "sip-responder: still said\n"


def test_clock_is_local_time_to_the_millisecond_across_seconds() -> None:
    """_clock keeps the last second's HH:MM:SS: it must still be right at every boundary."""
    from responder.ops.logs import _clock

    walls = [1_700_000_000 + i * 0.0997 for i in range(200)]  # crosses ~20 seconds
    walls += [1_700_000_500.999, 1_700_000_501.0, 1_700_000_400.5, 86_399.9995, 86_400.0]
    for wall in walls:
        t = time.localtime(wall)
        assert _clock(wall) == (f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}."
                                f"{int(wall * 1000) % 1000:03d}"), wall
