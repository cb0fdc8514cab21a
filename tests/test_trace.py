"""``--trace`` and ``--trace-file``: every message received and sent, whole (issue 12).

End to end with the console script where the socket and the streams are the point (what a
user sees on stdout, a file reopened on SIGHUP, workers sharing a file), in memory for the
block form, escaping, the engine's effects and a sink that stops reading.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import time
from pathlib import Path

from sip import feed, request
from support import ResponderProcess, SipClient, Txn, ack, invite, parse_response, unique

from responder.core.effects import Arrived, Effect, Inbound, Send
from responder.core.engine import Engine
from responder.ops.logs import ExchangeLog
from responder.ops.server import observer
from responder.ops.trace import (
    BACKLOG_BYTES,
    SHOWN,
    SHOWN_DISCARD,
    BlockSink,
    Tracer,
    block,
    show,
)
from responder.rules.loader import build_ruleset
from responder.sip.seeded import Seeded

HEADER = re.compile(
    r"^----- (?P<date>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}) (?P<transport>[A-Z]+) "
    r"(?P<dir>received from|sent to) (?P<peer>\S+) (?:at|from) (?P<local>\S+), "
    r"(?P<size>\d+) bytes(?P<notes>.*) -----$")


class Block:
    def __init__(self, header: re.Match[str], lines: list[str]) -> None:
        self.header = header
        self.lines = lines

    @property
    def received(self) -> bool:
        return self.header["dir"] == "received from"

    @property
    def text(self) -> str:
        """The message as shown, its line breaks as LF, trailing empty lines left out."""
        return "\n".join(self.lines).rstrip("\n")


def blocks(lines: list[str]) -> list[Block]:
    """The trace's blocks: each header line and the lines up to the next one."""
    out: list[Block] = []
    for line in lines:
        m = HEADER.match(line)
        if m:
            out.append(Block(m, []))
        else:
            assert out, f"a line before the first block: {line!r}"
            out[-1].lines.append(line)
    return out


def recv(client: SipClient) -> bytes:
    got = client.recv(5.0)
    assert got is not None, "no answer within 5 s"
    return got.data


def as_shown(data: bytes) -> str:
    return data.decode().replace("\r\n", "\n").rstrip("\n")


def wait_for_blocks(server: ResponderProcess, count: int, timeout: float = 5.0) -> list[Block]:
    deadline = time.monotonic() + timeout
    while True:
        got = blocks(server.stdout_lines)
        if len(got) >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.02)


def file_blocks(path: Path, count: int, timeout: float = 5.0) -> list[Block]:
    deadline = time.monotonic() + timeout
    while True:
        got = blocks(path.read_text().splitlines()) if path.exists() else []
        if len(got) >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.02)


# --------------------------------------------------------------------------- end to end


def test_trace_shows_every_message_received_and_sent_on_stdout() -> None:
    """OPTIONS, an INVITE with a delayed 486 (sent from Engine.due), its ACK, a datagram of
    control bytes and a large one that are discarded: each in a block, whole, on stdout;
    stderr keeps the log lines only."""
    with ResponderProcess("--trace", "--rule", "INVITE->180,486/200ms") as server:
        with SipClient(server.address) as client:
            got: list[bytes] = []
            opts = client.request("OPTIONS", call_id=unique())
            client.send(opts)
            got.append(recv(client))
            txn: Txn = {"call_id": unique(), "branch": unique("z9hG4bK"), "from_tag": unique()}
            inv = invite(uri="sip:1000@127.0.0.1", via_port=client.port, **txn)
            client.send(inv)
            while not got[-1].startswith(b"SIP/2.0 486"):
                got.append(recv(client))
            to = parse_response(got[-1]).get("to") or ""
            the_ack = ack(to_tag=to.rpartition("tag=")[2], via_port=client.port, **txn)
            control = b"\x1b[2J\x00hello\\x41\r\n"
            large = b"Z" * 3000
            for data in (the_ack, control, large):
                client.send(data)
            sent = [opts, inv, the_ack, control, large]
            local, port = client.local_address[0], client.port
        traced = wait_for_blocks(server, len(sent) + len(got))
        assert server.stop() == 0
    assert len(traced) == len(sent) + len(got), server.stdout_lines
    received = [b for b in traced if b.received]
    answered = [b for b in traced if not b.received]
    assert [b.header["size"] for b in received] == [str(len(d)) for d in sent]
    assert [b.text for b in received[:3]] == [as_shown(d) for d in sent[:3]]  # ACK included
    assert [b.text for b in answered] == [as_shown(d) for d in got]
    assert answered[-1].text.startswith("SIP/2.0 486 Busy Here\n")  # the delayed step
    server_addr = f"{server.address[0]}:{server.address[1]}"
    for b in traced:
        assert b.header["transport"] == "UDP"
        assert b.header["peer"] == f"{local}:{port}" and b.header["local"] == server_addr
    # The discarded ones: the reason, control bytes escaped, the large one cut to the bound.
    assert received[3].header["notes"] == ", discarded: not-sip"
    assert received[3].text == r"\x1b[2J\x00hello\x5cx41"
    assert received[4].header["notes"] == f", discarded: not-sip, first {SHOWN_DISCARD} shown"
    assert received[4].text == "Z" * SHOWN_DISCARD
    assert not any(HEADER.match(line) for line in server.stderr_lines)


def test_trace_file_is_appended_and_reopened_on_sighup(tmp_path: Path) -> None:
    path = tmp_path / "sip.trace"
    rotated = tmp_path / "sip.trace.1"
    with ResponderProcess("-q", "--trace-file", str(path)) as server:
        with server.client() as client:
            client.exchange(client.request("OPTIONS", call_id=unique()))
            assert len(file_blocks(path, 4)) == 4  # the request, the sentinel, two answers
            path.rename(rotated)
            server.send_signal(signal.SIGHUP)
            server.wait_for_stderr("rules reloaded|SIGHUP")
            client.exchange(client.request("BYE", call_id=unique()))
        fresh = file_blocks(path, 4)
        assert server.stop() == 0
    assert len(fresh) == 4 and fresh[0].text.startswith("BYE sip:")
    assert len(blocks(rotated.read_text().splitlines())) == 4
    assert server.stdout_lines == []  # --trace-file alone: nothing on stdout


def test_workers_trace_whole_blocks_into_one_file(tmp_path: Path) -> None:
    path = tmp_path / "workers.trace"
    total = 60
    with ResponderProcess("-q", "--workers", "2", "--trace-file", str(path)) as server:
        server.wait_for_stderr(r"worker 1 started")
        with server.client() as client:
            for i in range(total):
                client.send(client.request("OPTIONS", call_id=f"w-{i}"))
            for _ in range(total):
                assert client.recv(5.0) is not None
        traced = file_blocks(path, 2 * total)
        assert server.stop() == 0
    assert len(traced) == 2 * total
    for b in traced:  # every block whole: its own message, from first line to last
        first, last = b.text.splitlines()[0], b.text.splitlines()[-1]
        assert first.startswith("OPTIONS sip:" if b.received else "SIP/2.0 200 OK"), b.text
        assert last == "Content-Length: 0", b.text
        assert len(b.text.replace("\n", "\r\n")) + 4 == int(b.header["size"]), b.text
    calls = {line for b in traced for line in b.lines if line.startswith("Call-ID: ")}
    assert len(calls) == total


def test_no_trace_by_default_and_nothing_recorded() -> None:
    with ResponderProcess() as server:
        with server.client() as client:
            client.exchange(client.request("OPTIONS", call_id=unique()))
        assert server.stop() == 0
    assert server.stdout_lines == []
    engine = Engine(build_ruleset(None, []), Seeded(1))
    quiet = ExchangeLog(io.StringIO(), quiet=True)
    assert observer(engine, quiet, None, None) is None and engine.record is False
    tracer = Tracer(io.StringIO())
    assert observer(engine, quiet, None, None, tracer) is not None and engine.record is True


# --------------------------------------------------------------------------- in memory

SOURCE, LOCAL = ("192.0.2.10", 5062), ("127.0.0.1", 5060)


def test_show_splits_at_crlf_and_escapes_the_rest() -> None:
    assert show(b"A\r\nB\r\n\r\nbody") == "A\nB\n\nbody\n"
    assert show(b"bare\nlf\rcr\r\n") == "bare\\x0a\nlf\\x0dcr\n"
    assert show(b"\xff\xfe \\ \xc2\x85 \xe2\x80\xae \x7f") == \
        "\\xff\\xfe \\x5c \\x85 \\u202e \\x7f\n"  # C1 and bidi as the log writes them


def test_block_header_names_time_transport_addresses_and_size() -> None:
    wall = time.mktime((2026, 12, 6, 7, 40, 1, 0, 0, -1)) + 0.123456
    got = block(wall, "udp", True, ("::1", 5070), ("::1", 5060), b"OPTIONS x\r\n\r\n")
    assert got.decode() == ("----- 2026-12-06 07:40:01.123456 UDP received from [::1]:5070 "
                            "at [::1]:5060, 13 bytes -----\nOPTIONS x\n\n\n")
    sent = block(wall, "tcp", False, SOURCE, None, b"x" * (SHOWN + 1), extra=", repeat 2")
    assert sent.decode().splitlines()[0] == (
        f"----- 2026-12-06 07:40:01.123456 TCP sent to 192.0.2.10:5062, {SHOWN + 1} bytes, "
        f"repeat 2, first {SHOWN} shown -----")


def test_tracer_sees_arrivals_acks_discards_and_sends_from_due() -> None:
    """The engine's effects, wired as the server wires them: an ACK (never answered), a
    discarded datagram, an immediate and a delayed response, a fault's garbage."""
    rules = build_ruleset(None, ["INVITE@1->180,486/1s", "INVITE@2->486;fault=garbage"])
    engine = Engine(rules, Seeded(7))
    out = io.StringIO()
    tracer = Tracer(out)
    observe = observer(engine, ExchangeLog(io.StringIO(), quiet=True), None, None, tracer)
    assert observe is not None
    for data in (request("INVITE", "sip:1@lab"), request("ACK", "sip:1@lab", cseq_method="ACK"),
                 b"\x00junk", request("INVITE", "sip:2@lab", call_id="c2", branch="z9hG4bK-2")):
        effects = feed(engine, data, SOURCE, 0.0, LOCAL)
        observe(effects)
    due = engine.due(1.0)
    assert any(isinstance(e, Send) for e in due)
    observe(due)
    traced = blocks(out.getvalue().splitlines())
    kinds = [(b.received, b.text.splitlines()[0][:20]) for b in traced]
    assert kinds == [(True, "INVITE sip:1@lab SIP"), (False, "SIP/2.0 180 Ringing"),
                     (True, "ACK sip:1@lab SIP/2."), (True, "\\x00junk"),
                     (True, "INVITE sip:2@lab SIP"), (False, kinds[5][1]),
                     (False, "SIP/2.0 486 Busy Her")]  # the last one from Engine.due
    assert not kinds[5][1].startswith("SIP/2.0")  # the fault's garbage, escaped
    assert traced[5].header["notes"] == ", fault garbage"
    assert traced[3].header["notes"] == ", discarded: not-sip"
    assert "\x00" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert all(isinstance(e, Arrived) for e in feed(engine, b"", SOURCE, 2.0, LOCAL))


def test_a_trace_pipe_that_stops_reading_keeps_whole_blocks_and_counts_the_rest() -> None:
    read_fd, write_fd = os.pipe()
    stream = os.fdopen(write_fd, "w")
    tracer = Tracer(stream)
    data = request("OPTIONS", body="x" * 700)
    effects: list[Effect] = [Arrived(i, 0.0, feed_inbound(data), None, None) for i in range(64)]
    try:
        for _ in range(200):  # ~10 MB of blocks into a 64 KiB pipe: never blocks
            tracer.observe(effects)
        dropped = tracer.dropped
        assert dropped > 0 and tracer.backlog <= BACKLOG_BYTES
        got = bytearray()
        os.set_blocking(read_fd, False)
        while True:  # the reader comes back: the backlog flows, whole blocks only
            with contextlib.suppress(BlockingIOError):
                got += os.read(read_fd, 1 << 16)
                continue
            tracer.flush()
            if not tracer.backlog:
                with contextlib.suppress(BlockingIOError):
                    got += os.read(read_fd, 1 << 16)
                break
    finally:
        tracer.close(0)
        stream.close()
        os.close(read_fd)
    traced = blocks(got.decode().splitlines())
    assert len(traced) + dropped == 200 * 64
    assert all(b.text == as_shown(data) for b in traced)


def feed_inbound(data: bytes) -> Inbound:
    return Inbound(data, SOURCE, LOCAL)


def test_block_sink_counts_blocks_not_lines(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    try:
        sink = BlockSink(write_fd, False)
        os.set_blocking(write_fd, False)
        chunk = b"line\n" * 2000  # 10 KB, 2000 lines: one block
        while not sink.backlog:
            sink.write(chunk)
        sink.write(chunk)  # waits whole in the backlog
        before = sink.dropped
        sink.drain(0)
        assert sink.dropped - before == 2  # the rest of the first block, and the second
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_a_closed_stream_loses_blocks_without_raising() -> None:
    stream = io.StringIO()
    tracer = Tracer(stream)
    stream.close()
    tracer.observe([Arrived(1, 0.0, feed_inbound(b"x"), None, "not-sip")])
    assert tracer.dropped == 1
