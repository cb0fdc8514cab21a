"""Exchange lines: ``--log-format json`` and ``--log-file PATH`` (SPEC §7, docs/operations.md).

End to end with the console script (stderr and the file, -q, SIGHUP reopening the file after
rotation, a file that cannot be opened), then :class:`ExchangeLog` in-process.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from support import (
    LISTENING,
    ResponderProcess,
    SipClient,
    invite,
    options,
    responder_script,
    run_cli,
    statuses,
    unique,
)

from responder.core.effects import Exchange
from responder.ops.logs import (
    EXCHANGE_KEYS,
    NOTE_COMMON,
    NOTE_KEYS,
    ExchangeLog,
    clean,
    json_line,
    note_line,
    text_line,
)

FIELDS = {"time", "event", "source", "method", "uri", "call_id", "status", "reason", "rule",
          "delay", "retransmission", "repeat", "fault"}
DOCS = Path(__file__).resolve().parent.parent / "docs" / "operations.md"


def json_lines(lines: list[str]) -> list[dict[str, object]]:
    """The exchange lines among JSON lines."""
    records = [json.loads(line) for line in lines if line.startswith("{")]
    return [r for r in records if r.get("event") == "exchange"]


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
    assert in_file[1:] == [line for line in server.stderr_lines if '"event": "exchange"' in line]


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
            server.wait_for_stderr("rules reloaded")
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
        "event": "exchange", "fault": None,
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


# --------------------------------------------------------------------------- hostile input
# SPEC §10: the text log never writes a control character from a message raw; JSON escapes.

# ESC sequences (clear screen, red), NUL, DEL, BEL, a byte that is not UTF-8 (0xff, put in
# for MARK), a bidi override, a C1 CSI (U+009B) and a bare CR.
HOSTILE_URI = "sip:\x1b[2J\x1b[31mred\x00\x7f\x07MARK\u202e\u009b\rx@127.0.0.1"
ESCAPED_URI = r"sip:\x1b[2J\x1b[31mred\x00\x7f\x07\xff\u202e\x9b\x0dx@127.0.0.1"


def hostile_options(client: SipClient) -> tuple[bytes, str]:
    call_id = f"c\x1b]0;pwned\x07\x00\r{unique()}"
    data = client.request("OPTIONS", uri=HOSTILE_URI, call_id=call_id)
    return data.replace(b"MARK", b"\xff"), call_id


def assert_clean_bytes(data: bytes) -> None:
    """Valid UTF-8 with no control byte but the newline, and no DEL or C1 control."""
    text = data.decode("utf-8")
    bad = [c for c in text if (c < " " and c != "\n") or "\x7f" <= c <= "\x9f"]
    assert not bad, bad


def test_control_bytes_of_a_datagram_are_escaped_in_the_text_log(tmp_path: Path) -> None:
    log = tmp_path / "exchanges.log"
    with ResponderProcess("--log-file", str(log)) as server:
        with server.client() as client:
            data, _ = hostile_options(client)
            client.send(data)
            assert client.recv_response().status == 200
        server.wait_for_stderr(r"-> 200 OK \[rule ok\]")
        assert server.stop() == 0
    raw = log.read_bytes()
    assert_clean_bytes(raw)
    assert f" OPTIONS {ESCAPED_URI} -> 200 OK [rule ok]\n" in raw.decode()
    line = next(line for line in server.stderr_lines if " OPTIONS " in line)
    assert line.endswith(f" OPTIONS {ESCAPED_URI} -> 200 OK [rule ok]"), line


def test_control_bytes_of_a_datagram_are_escaped_in_the_json_log(tmp_path: Path) -> None:
    log = tmp_path / "exchanges.jsonl"
    with ResponderProcess("-q", "--log-format", "json", "--log-file", str(log)) as server:
        with server.client() as client:
            data, call_id = hostile_options(client)
            client.send(data)
            assert client.recv_response().status == 200
        lines = wait_for_lines(log, 1)
        assert server.stop() == 0
    raw = log.read_bytes()
    assert_clean_bytes(raw)
    (record,) = [json.loads(line) for line in lines]
    assert record["uri"] == HOSTILE_URI.replace("MARK", "\udcff")  # the same facts, exactly
    assert record["call_id"] == call_id


@pytest.mark.parametrize(("given", "written"), [
    ("sip:1000@lab", "sip:1000@lab"),
    ("sip:José@lab", "sip:José@lab"),               # printable non-ASCII stays
    ("a\x1b[31mb", r"a\x1b[31mb"),
    ("\x00\r\n\t\x7f", r"\x00\x0d\x0a\x09\x7f"),
    ("\u0085\u009b", r"\x85\x9b"),                  # C1 controls
    ("\udcff\udc80", r"\xff\x80"),                  # bytes that were not UTF-8
    ("\u202e\u2028", r"\u202e\u2028"),              # bidi override, line separator
    ("a\\x1b", r"a\x5cx1b"),                        # a backslash: every \x is an escape
])
def test_clean_escapes_what_is_not_printable(given: str, written: str) -> None:
    assert clean(given) == written


def test_note_lines_are_escaped_too() -> None:
    stream = io.StringIO()
    ExchangeLog(stream).note("PUT /rules refused: bad \x1b[2J\nline")
    assert stream.getvalue() == "sip-responder: PUT /rules refused: bad \\x1b[2J\\x0aline\n"


# --------------------------------------------------------------------------- blocking sinks
# SPEC §10: a log sink that stops reading never stops answering; lines are dropped, counted.


def _send_options(sock: socket.socket, server: tuple[str, int], total: int,
                  burst: int = 50) -> int:
    """``total`` OPTIONS in bursts of ``burst``, each burst's answers awaited: the answers."""
    answered = 0
    sock.settimeout(5.0)
    for start in range(0, total, burst):
        for i in range(start, min(total, start + burst)):
            sock.sendto(options(call_id=f"nb-{i}", via_port=sock.getsockname()[1]), server)
        for _ in range(min(burst, total - start)):
            try:
                sock.recvfrom(65535)
            except TimeoutError:
                return answered
            answered += 1
    return answered


def test_stderr_nobody_reads_never_stops_answering() -> None:
    total = 15_000
    proc = subprocess.Popen([responder_script(), "--listen", "127.0.0.1:0"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    assert proc.stderr is not None
    try:
        found = None
        while found is None:  # read up to the listening line, then stop reading
            line = proc.stderr.readline().decode()
            assert line, "exited before listening"
            found = LISTENING.search(line)
        server = (found.group("v4"), int(found.group("port")))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            # ~100 bytes a line: 15,000 lines are far more than the pipe (64 KiB) and the
            # backlog (BACKLOG_BYTES, 1 MiB) hold
            assert _send_options(sock, server, total) == total
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)  # now read: the backlog, then the stop line
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)
    assert proc.returncode == 0
    text = err.decode()
    stop = re.search(rf"stopped: {total} datagrams received, {total} responses sent, .*, "
                     r"(\d+) log lines dropped", text)
    assert stop, text[-2000:]
    dropped = int(stop.group(1))
    written = len(re.findall(r" OPTIONS \S+ -> 200 OK \[rule ok\]\n", text))
    assert dropped > 0 and written + dropped == total, (written, dropped)
    assert "Traceback" not in text


def test_a_fifo_log_file_with_no_reader_fails_the_start_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    result = run_cli("--listen", "127.0.0.1:0", "--log-file", str(fifo), timeout=10)
    assert result.returncode == 1
    assert f"cannot open the log file: [Errno 6] {fifo} is a FIFO with no reader" \
        in result.stderr
    assert "Traceback" not in result.stderr


def test_a_fifo_log_file_nobody_reads_never_stops_answering(tmp_path: Path) -> None:
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader that never reads
    try:
        with ResponderProcess("-q", "--log-file", str(fifo)) as server:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind(("127.0.0.1", 0))
                assert _send_options(sock, server.address, 15_000) == 15_000
            server.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while server.alive and time.monotonic() < deadline:  # read now: no wait at close
                if select.select([reader], [], [], 0.05)[0]:
                    with contextlib.suppress(BlockingIOError):
                        os.read(reader, 1 << 16)
            assert server.stop() == 0
    finally:
        os.close(reader)
    m = server.wait_for_stderr(r"stopped: 15000 datagrams received, .*, (\d+) log lines dropped")
    assert int(m.group(1)) > 0


def test_a_pipe_that_stops_reading_keeps_whole_lines_and_counts_the_rest() -> None:
    """In-process: writes to a full pipe return at once; what gets through is whole lines."""
    read_fd, write_fd = os.pipe()
    stream = os.fdopen(write_fd, "w")
    log = ExchangeLog(stream)
    batch = [EXCHANGE._replace(uri=f"sip:{i}@lab") for i in range(64)]
    try:
        for _ in range(2000):  # ~13 MB of lines into a 64 KiB pipe: never blocks
            log.write(batch)
        dropped = log.dropped
        assert dropped > 0
        got = bytearray()
        os.set_blocking(read_fd, False)
        while True:  # the reader comes back: the backlog flows, whole lines only
            with contextlib.suppress(BlockingIOError):
                got += os.read(read_fd, 1 << 16)
                continue
            log.flush()
            if not log.backlog:
                with contextlib.suppress(BlockingIOError):
                    got += os.read(read_fd, 1 << 16)
                break
    finally:
        log.close(0)
        stream.close()
        os.close(read_fd)
    lines = got.decode().splitlines()
    assert len(lines) + dropped == 2000 * 64
    assert all(re.fullmatch(r"\S+ \[2001:db8::1\]:5062 INVITE sip:\d+@lab -> 486 Busy Here "
                            r"\[rule busy-1000\] \(retransmission\)", line) for line in lines)


# --------------------------------------------------------------------------- JSON only
# SPEC §7, issue 12: with --log-format json every line on stderr is JSON, start to stop.


def note_keys(record: dict[str, object]) -> set[str]:
    event = record["event"]
    assert isinstance(event, str) and event in NOTE_KEYS, record
    return {*NOTE_COMMON, *NOTE_KEYS[event]}


def test_json_format_writes_only_json_lines_from_start_to_stop() -> None:
    """Start (seed, a rule warning, listening, media), a discard summary (-v: every 1 s), a
    reload, exchanges and the closing line: every stderr line parses, and has the keys the
    docs list for its event."""
    with ResponderProcess("-v", "--log-format", "json", "--rule", "invite->486") as server:
        with server.client() as client:
            client.exchange(b"\x00 not sip", client.request("OPTIONS", call_id=unique()))
        server.wait_for_stderr(r'"event": "discards"', timeout=5)
        server.send_signal(signal.SIGHUP)
        server.wait_for_stderr(r'"event": "reload"')
        assert server.stop() == 0
    records = [json.loads(line) for line in server.stderr_lines]  # every line is JSON
    by_event: dict[str, list[dict[str, object]]] = {}
    for record in records:
        by_event.setdefault(str(record["event"]), []).append(record)
        keys = FIELDS if record["event"] == "exchange" else note_keys(record)
        assert set(record) == keys, record
    assert {"seed", "warning", "listening", "media", "discards", "reload", "exchange",
            "stopped"} <= set(by_event), sorted(by_event)
    [listening] = by_event["listening"]
    assert LISTENING.search(str(listening["message"]))  # scripts that wait for it still work
    assert listening["url"] == f"udp://{server.address[0]}:{server.address[1]}"
    assert any("invite" in str(w["message"]) for w in by_event["warning"])
    [discards] = by_event["discards"]
    assert discards["counts"] == {"not-sip": 1} and discards["total"] == 1
    assert discards["interval"] == 1
    [stopped] = by_event["stopped"]
    # the datagram, the OPTIONS and the client's sentinel
    assert stopped["received"] == 3 and stopped["answered"] == 2 and stopped["discarded"] == 1
    assert str(stopped["message"]).startswith("stopped: 3 datagrams received")
    assert all(isinstance(r["time"], float) for r in records)


@pytest.mark.parametrize("args, status", [
    (("--bogus",), 2),                                        # argparse's usage error
    (("--rule", "INVITE->999"), 2),                           # a rule that does not load
    (("--listen", "127.0.0.1:0", "--log-file", "/nonexistent/dir/x.log"), 1),
    (("--listen", "127.0.0.1:0", "--trace-file", "/nonexistent/dir/x.trace"), 1),
])
def test_json_format_errors_before_the_start_are_json_too(args: tuple[str, ...],
                                                          status: int) -> None:
    result = run_cli("--log-format", "json", *args)
    assert result.returncode == status, result.stderr
    lines = result.stderr.splitlines()
    assert lines, "an error says why"
    records = [json.loads(line) for line in lines]
    assert records[-1]["event"] == "error" and set(records[-1]) == {"time", "event", "message"}
    text = run_cli(*args)  # the same error as text
    assert text.returncode == status and not text.stderr.startswith("{")


def test_a_fault_response_is_logged_with_its_fault() -> None:
    wall = time.time()
    faulty = EXCHANGE._replace(retransmission=False, fault="garbage")
    assert text_line(faulty, wall).endswith("-> 486 Busy Here [rule busy-1000] "
                                            "(fault garbage)\n")
    assert json.loads(json_line(faulty, wall))["fault"] == "garbage"
    assert json.loads(json_line(EXCHANGE, wall))["fault"] is None
    assert "(fault" not in text_line(EXCHANGE, wall)


def test_a_garbage_fault_is_logged_as_such_end_to_end() -> None:
    with ResponderProcess("--log-format", "json", "--rule", "INVITE->486;fault=garbage",
                          "--rule", "OPTIONS->200;fault=no-to-tag") as server:
        with server.client() as client:
            client.send(client.request("INVITE", call_id=unique()))
            assert client.recv(5.0) is not None
            client.send(client.request("OPTIONS", call_id=unique()))
            assert client.recv(5.0) is not None
        server.wait_for_stderr(r'"method": "OPTIONS"')
        assert server.stop() == 0
    records = json_lines(server.stderr_lines)
    assert [(r["method"], r["status"], r["fault"]) for r in records] == [
        ("INVITE", 486, "garbage"), ("OPTIONS", 200, "no-to-tag")]


def test_json_note_lines_are_one_line_of_json_with_the_message_as_written() -> None:
    line = note_line("json", "PUT /rules refused: bad \x1b[2J\nline\udcff", "reload")
    assert line.endswith("\n") and line.count("\n") == 1 and line.isprintable() is False
    record = json.loads(line)
    assert record["message"] == "PUT /rules refused: bad \x1b[2J\nline\udcff"
    assert set(record) == {"time", "event", "message"} and record["event"] == "reload"
    assert "\x1b" not in line  # escaped as JSON escapes it
    stream = io.StringIO()
    ExchangeLog(stream, "json").note("stopped: ...", "stopped", received=3)
    stopped = json.loads(stream.getvalue())
    assert stopped["received"] == 3 and stopped["unsent"] is None
    assert set(stopped) == {*NOTE_COMMON, *NOTE_KEYS["stopped"]}


def _doc_table(marker: str) -> list[list[str]]:
    """The rows of the table after ``<!-- marker ...-->`` in docs/operations.md, as cells."""
    text = DOCS.read_text()
    start = text.index(f"<!-- {marker}")
    rows: list[list[str]] = []
    for line in text[start:].splitlines()[1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == "key" or cells[1] == "its keys" or set(cells[0]) <= {"-"}:
            continue
        rows.append(cells)
    return rows


def test_the_docs_list_every_json_key_the_code_writes() -> None:
    documented = [key for row in _doc_table("exchange keys")
                  for key in re.findall(r"`(\w+)`", row[0])]
    assert sorted(documented) == sorted(EXCHANGE_KEYS) == sorted(FIELDS)
    events = {}
    for row in _doc_table("note events"):
        [event] = re.findall(r"`(\w+)`", row[0])
        events[event] = re.findall(r"`(\w+)`", row[1])
    assert events == {event: list(keys) for event, keys in NOTE_KEYS.items()}
    assert json.loads(json_line(EXCHANGE, 0.0)).keys() == set(EXCHANGE_KEYS)
