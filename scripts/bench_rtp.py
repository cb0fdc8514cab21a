#!/usr/bin/env python3
"""The RTP echo: packets echoed per server CPU-second, sip-responder against SIPp -rtp_echo.

``rtpgen`` (``scripts/rtpgen.c``, built with ``gcc -O2`` on first use) opens one UDP socket
per stream on 127.0.0.1 and prints their ports. This script then makes one call per stream
to the server (an INVITE whose SDP offer names that stream's port, the 200's answer ACKed),
reads the media port from the answers, and tells the generator to start: every stream sends
``--pps`` G.711 packets a second (172 bytes: 160 bytes of payload, 20 ms) to that port, open
loop on a fixed schedule, and counts the echoes that come back (loss: sent vs echoed).

* ``responder``: ``sip-responder --listen 127.0.0.1:PORT -q`` with its default rules: each
  call's answer names its one media socket, which echoes each packet to its source;
* ``sipp``: SIPp's UAS (``scripts/sipp/uas_call.xml``: a fixed SDP in the 200, the call kept
  until a BYE that never comes) with ``-rtp_echo -mp PORT``: its echo thread sends every
  packet on that port back to its sender (it needs no call; the calls are made anyway, so
  both servers hold the same calls).

Each server runs pinned to core 1, the generator to core 0; fresh server per run, runs
alternating (A, B, A, B, ...), then ``--big`` streams against the responder alone (one
worker: the issue's 1,000 streams with 0 loss). The server's CPU time is read from
``/proc/PID/task/*/schedstat`` (as scripts/bench.py does) when the measured phase starts and
after its grace period. ``--profile FILE`` runs the responder under cProfile once instead
and prints its top entries.

    python scripts/bench_rtp.py                    # 500 streams x 50 pkt/s, then 1000
    python scripts/bench_rtp.py --streams 500 --big 0 --repeat 5
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import pstats
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402  (scripts/bench.py: process, CPU and build helpers)
import bench_calls  # noqa: E402  (pinning, tables, SIPp scenario dir)

HOST = bench.HOST
RTPGEN_SRC = HERE / "rtpgen.c"
SIPP_UAS = bench_calls.SIPP_DIR / "uas_call.xml"
MEDIA_ON = re.compile(r"media on udp://127\.0\.0\.1:(\d+)")


# ----------------------------------------------------------------------------- calls


def invite(port: int, lport: int, media_port: int, n: int, run: str) -> tuple[str, bytes]:
    call_id = f"rtp-{run}-{n}@{HOST}"
    sdp = (f"v=0\r\no=rtpgen {n} 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
           f"m=audio {media_port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n"
           "a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
           "a=fmtp:101 0-15\r\na=sendrecv\r\n")
    head = (f"INVITE sip:bench@{HOST}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{lport};branch=z9hG4bK-{run}-{n}-i;rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:rtpgen@{HOST}:{lport}>;tag=f{n}\r\n"
            f"To: <sip:bench@{HOST}:{port}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:rtpgen@{HOST}:{lport}>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n")
    return call_id, (head + sdp).encode()


def ack(port: int, lport: int, n: int, run: str, call_id: str, to: str) -> bytes:
    return (f"ACK sip:bench@{HOST}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{lport};branch=z9hG4bK-{run}-{n}-a;rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:rtpgen@{HOST}:{lport}>;tag=f{n}\r\n"
            f"To: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\n"
            "Content-Length: 0\r\n\r\n").encode()


def header(text: str, *names: str) -> str:
    for line in text.split("\r\n"):
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() in names:
            return value.strip()
    return ""


def make_calls(port: int, media_ports: Sequence[int], timeout: float = 20.0,
               window: int = 64) -> set[tuple[str, int]]:
    """One call per media port: INVITE with an offer naming it, ACK of the 200. Returns the
    media addresses the answers named; raises BenchError unless every call was answered."""
    run = uuid.uuid4().hex[:8]
    answered: set[tuple[str, int]] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        lport = sock.getsockname()[1]
        calls = {}  # call id -> (n, request)
        for n, mport in enumerate(media_ports):
            call_id, request = invite(port, lport, mport, n, run)
            calls[call_id] = (n, request)
        todo = list(calls)
        sent_at: dict[str, float] = {}
        done: set[str] = set()
        deadline = time.monotonic() + timeout
        sock.settimeout(0.05)
        while len(done) < len(calls):
            now = time.monotonic()
            if now > deadline:
                raise bench.BenchError(f"only {len(done)} of {len(calls)} calls answered "
                                       f"within {timeout:.0f} s")
            waiting = [c for c in sent_at if c not in done]
            for call_id in waiting:  # resend after 1 s (the server may still be starting)
                if now - sent_at[call_id] > 1.0:
                    sock.sendto(calls[call_id][1], (HOST, port))
                    sent_at[call_id] = now
            while todo and len(waiting) < window:
                call_id = todo.pop()
                sock.sendto(calls[call_id][1], (HOST, port))
                sent_at[call_id] = now
                waiting.append(call_id)
            try:
                data = sock.recv(65535)
            except TimeoutError:
                continue
            text = data.decode("latin-1")
            head, _, body = text.partition("\r\n\r\n")
            status = head.split(" ", 2)
            call_id = header(head, "call-id", "i")
            if call_id not in calls or len(status) < 2 or "INVITE" not in header(head, "cseq"):
                continue
            code = int(status[1])
            if code < 200:
                continue
            if code >= 300:
                raise bench.BenchError(f"call {call_id} answered {status[1]}")
            n = calls[call_id][0]
            sock.sendto(ack(port, lport, n, run, call_id, header(head, "to", "t")),
                        (HOST, port))  # every 200, retransmissions too
            m = re.search(r"^m=audio (\d+) ", body, re.MULTILINE)
            c = re.search(r"^c=IN IP4 (\S+)", body, re.MULTILINE)
            if m is None or c is None:
                raise bench.BenchError(f"call {call_id}: no audio answer in the 200:\n{text}")
            answered.add((c.group(1), int(m.group(1))))
            done.add(call_id)
    return answered


# ----------------------------------------------------------------------------- one run


@dataclass
class RtpRun:
    server: str
    streams: int
    repeat: int
    ok: bool = True
    error: str = ""
    sent: int = 0
    echoed: int = 0
    loss_pct: float = 0.0
    echoed_per_s: float = 0.0
    per_cpu_s: float = 0.0      # echoes received per server CPU-second
    cpu_s: float = 0.0
    cpu_s_stat: float = 0.0     # the same from /proc/PID/stat utime+stime (10 ms ticks)
    cpu_pct: float = 0.0
    wait_pct: float = 0.0
    gen_cpu_pct: float = 0.0
    p50_us: float = 0.0
    p99_us: float = 0.0
    behind_ms: float = 0.0
    stall_ms: float = 0.0       # the generator's longest gap between two turns of its loop
    setup_s: float = 0.0
    gen: dict[str, Any] = field(default_factory=dict)


def server_cmd(name: str, args: argparse.Namespace, profile: Path | None) -> list[str] | None:
    if name == "sipp":
        exe = shutil.which("sipp")
        return None if exe is None else [exe]
    if profile is not None:
        return [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "responder", "-q",
                *shlex.split(args.responder_args)]
    if name.startswith("responder@"):  # another checkout (its extension built in place)
        tree = Path(name.partition("@")[2]).resolve()
        if not (tree / "responder" / "__init__.py").is_file():
            return None
        return ["env", f"PYTHONPATH={tree}", sys.executable, "-m", "responder", "-q",
                *shlex.split(args.responder_args)]
    return bench_calls.responder_command(name, shlex.split(args.responder_args))


def media_port_of(server: bench.Running, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise bench.BenchError(f"{server.spec.name} exited at start:\n{server.log_tail()}")
        with contextlib.suppress(OSError):
            found = MEDIA_ON.search(server.log.read_text(errors="replace"))
            if found:
                return int(found.group(1))
        time.sleep(0.05)
    raise bench.BenchError(f"no 'media on' line from {server.spec.name}:\n{server.log_tail()}")


def read_line(proc: subprocess.Popen[str], deadline: float) -> str:
    """The generator's next stdout line (it prints few, each promptly)."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise bench.BenchError(f"rtpgen ended early ({proc.wait()}): "
                               f"{proc.stderr.read() if proc.stderr else ''}")
    if time.monotonic() > deadline:
        raise bench.BenchError("rtpgen is late")
    return line.strip()


def measure(name: str, command: list[str], streams: int, args: argparse.Namespace,
            rtpgen: Path, work: Path, repeat: int,
            profile: Path | None = None) -> tuple[RtpRun, str]:
    result = RtpRun(name, streams, repeat)
    sipp_media = bench.free_udp_port()

    def build(port: int, _work: Path) -> list[str]:
        if name == "sipp":
            return [*command, "-sf", str(SIPP_UAS), "-i", HOST, "-p", str(port),
                    "-mp", str(sipp_media), "-rtp_echo", "-t", "u1", "-nostdin"]
        return [*command, "--listen", f"{HOST}:{port}"]

    label = re.sub(r"[^\w.-]+", "_", name)  # responder@DIR: its log file's name
    server = bench.Running(bench.ServerSpec(label, build), args.server_cpu, work)
    cmdline = shlex.join(server.cmd)
    gen = None
    try:
        if name == "sipp":
            bench_calls.wait_bound(server, server.port)
            bench_calls.wait_bound(server, sipp_media)
        else:
            media_port_of(server)
        gen_cmd = bench.pinned(args.gen_cpu, [
            str(rtpgen), "-G", "-n", str(streams), "-r", f"{args.pps:g}", "-s", str(args.size),
            "-w", f"{args.warmup:g}", "-d", f"{args.duration:g}", "-g", f"{args.grace:g}"])
        gen = subprocess.Popen(gen_cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60 + args.warmup + args.duration + args.grace
        first = read_line(gen, deadline).split()
        if not first or first[0] != "ports":
            raise bench.BenchError(f"rtpgen said {' '.join(first)!r}")
        t0 = time.monotonic()
        targets = make_calls(server.port, [int(p) for p in first[1:]])
        result.setup_s = time.monotonic() - t0
        if len(targets) != 1:
            raise bench.BenchError(f"the answers name {len(targets)} media addresses: "
                                   f"{sorted(targets)[:5]}")
        (media_host, media_port), = targets
        if media_host != HOST:
            raise bench.BenchError(f"the answer names {media_host}, not {HOST}")
        assert gen.stdin is not None
        gen.stdin.write(f"go {media_port}\n")
        gen.stdin.flush()
        root = server.proc.pid
        if read_line(gen, deadline) != "measure":
            raise bench.BenchError("rtpgen: no 'measure' line")
        pids = bench.process_tree(root)
        before, ticks0 = bench.cpu_sample(pids), bench_calls.stat_ticks(pids)
        report = json.loads(read_line(gen, deadline))
        pids = bench.process_tree(root)
        after, ticks1 = bench.cpu_sample(pids), bench_calls.stat_ticks(pids)
        if not server.alive():
            raise bench.BenchError(f"{name} died during the run:\n{server.log_tail()}")
        on_cpu, waiting = bench.cpu_delta(before, after)
        elapsed = float(report["elapsed_s"])
        result.gen = report
        result.sent, result.echoed = int(report["sent"]), int(report["received"])
        result.loss_pct = float(report["loss_pct"])
        result.echoed_per_s = result.echoed / args.duration
        result.cpu_s = on_cpu / 1e9
        result.cpu_s_stat = (ticks1 - ticks0) / bench_calls.TICK
        result.per_cpu_s = result.echoed / result.cpu_s if on_cpu else 0.0
        result.cpu_pct = 100 * result.cpu_s / elapsed
        result.wait_pct = 100 * waiting / 1e9 / elapsed
        result.gen_cpu_pct = 100 * float(report["cpu_s"]) / elapsed
        result.p50_us, result.p99_us = float(report["p50_us"]), float(report["p99_us"])
        result.behind_ms = float(report["behind_max_us"]) / 1000
        result.stall_ms = float(report["stall_max_us"]) / 1000
    except (bench.BenchError, ValueError, KeyError) as exc:
        result.ok = False
        result.error = str(exc)
    finally:
        server.stop()
        if gen is not None:
            if gen.poll() is None:
                gen.kill()
            gen.wait()
            for pipe in (gen.stdin, gen.stdout, gen.stderr):
                if pipe is not None:
                    pipe.close()
    return result, cmdline


# ----------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="RTP echo: packets echoed per server CPU-second, sip-responder (one "
                    "worker, compiled fast path) against SIPp's -rtp_echo, on the same "
                    "G.711 load from a C generator over loopback UDP, with the loss.",
        epilog="Method and columns: scripts/README.md, section bench_rtp.py.")
    p.add_argument("--streams", type=int, default=500,
                   help="streams (one call each) in the side-by-side runs (default 500)")
    p.add_argument("--big", type=int, default=1000,
                   help="streams in the responder-only runs after those; 0: none "
                        "(default 1000)")
    p.add_argument("--pps", type=float, default=50.0,
                   help="packets per second per stream (default 50: 20 ms frames)")
    p.add_argument("--size", type=int, default=172,
                   help="bytes per packet, RTP header included (default 172: G.711 20 ms)")
    p.add_argument("--duration", type=float, default=5.0,
                   help="measured seconds per run (default 5)")
    p.add_argument("--warmup", type=float, default=1.0,
                   help="seconds of the same load before, not counted (default 1)")
    p.add_argument("--grace", type=float, default=0.5,
                   help="seconds for the last echoes after sending stops (default 0.5)")
    p.add_argument("--repeat", type=int, default=3,
                   help="rounds; medians are reported (default 3)")
    p.add_argument("--servers", default="responder,sipp",
                   help="comma-separated, in run order (default responder,sipp; also known: "
                        "responder-pure, without the compiled fast path; responder@DIR, the "
                        "checkout in DIR, e.g. a 'git archive' of an older commit whose "
                        "extension is built in place: before/after in one run)")
    p.add_argument("--responder-args", default="", help="extra sip-responder arguments")
    p.add_argument("--profile", metavar="FILE",
                   help="instead: one responder run under cProfile at --streams, the profile "
                        "saved to FILE and its top entries printed")
    p.add_argument("--server-cpu", type=int, default=1, help="core for the server (default 1)")
    p.add_argument("--gen-cpu", type=int, default=0,
                   help="core for the generator and this script (default 0)")
    p.add_argument("--no-pin", action="store_true", help="do not pin anything")
    p.add_argument("--cache-dir", help="where rtpgen is built "
                                       "(default ~/.cache/sip-responder-bench)")
    p.add_argument("--json", metavar="FILE", help="also write every run and the summary here")
    args = p.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for name in args.servers:
        if name not in ("responder", "responder-pure", "sipp") \
                and not name.startswith("responder@"):
            p.error(f"unknown server {name!r}")
    if args.streams < 1 or args.big < 0 or args.pps <= 0 or args.duration <= 0 \
            or args.repeat < 1:
        p.error("--streams, --pps, --duration and --repeat must be positive")
    return args


def summarize(results: list[RtpRun], name: str, streams: int,
              ratio: float | None) -> tuple[dict[str, Any], tuple[str, ...]] | None:
    runs = [r for r in results if r.server == name and r.streams == streams and r.ok]
    if not runs:
        return None

    def med(key: str) -> float:
        return float(statistics.median(getattr(r, key) for r in runs))

    per_run = [r.per_cpu_s for r in runs]
    row = {"server": name, "streams": streams, "runs": len(runs),
           "offered_pps": streams * runs[0].gen.get("pps_per_stream", 0),
           "echoed_per_s": med("echoed_per_s"), "per_cpu_s": med("per_cpu_s"),
           "vs_sipp": ratio, "cpu_pct": med("cpu_pct"), "wait_pct": med("wait_pct"),
           "loss_pct": med("loss_pct"), "loss_max_pct": max(r.loss_pct for r in runs),
           "lost_total": sum(r.sent - r.echoed for r in runs),
           "p50_us": med("p50_us"), "p99_us": med("p99_us"), "gen_cpu_pct": med("gen_cpu_pct"),
           "behind_ms": max(r.behind_ms for r in runs),
           "per_cpu_s_runs": [round(v) for v in per_run]}
    cells = (name, str(streams), f"{row['offered_pps']:,.0f}", f"{row['echoed_per_s']:,.0f}",
             f"{row['per_cpu_s']:,.0f}", "-" if ratio is None else f"{ratio:.2f}",
             f"{row['cpu_pct']:.0f}", f"{row['wait_pct']:.0f}", f"{row['loss_pct']:.3f}",
             str(row["lost_total"]), f"{row['p50_us']:,.0f}", f"{row['p99_us']:,.0f}",
             f"{row['gen_cpu_pct']:.0f}", bench_calls.spread(per_run))
    return row, cells


def print_profile(path: Path, top: int = 25) -> None:
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats("tottime").print_stats(top)
    print(out.getvalue())


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    notes: list[str] = []
    bench_calls.pin_self(args, notes)
    try:
        rtpgen = bench.build_c("rtpgen", RTPGEN_SRC.read_text(), bench.cache_dir(args.cache_dir))
    except bench.BenchError as exc:
        print(f"bench_rtp: {exc}", file=sys.stderr)
        return 2
    commands: dict[str, list[str]] = {}
    for name in (["responder"] if args.profile else args.servers):
        cmd = server_cmd(name, args, Path(args.profile) if args.profile else None)
        if cmd is None:
            how = "apt-get install -y sip-tester" if name == "sipp" else "pip install -e ."
            notes.append(f"{name}: skipped, not installed ({how})")
        else:
            commands[name] = cmd
    if not commands:
        print("bench_rtp: no server to measure", file=sys.stderr)
        return 2
    facts = bench.machine_facts()
    print(f"# RTP echo: {args.size}-byte packets, {args.pps:g}/s per stream, {args.streams} "
          f"streams side by side" + (f", then {args.big} against the responder alone"
                                     if args.big and not args.profile else "")
          + f"; {args.duration:g} s measured per run, {args.repeat} repeats")
    print(f"# {facts['date']}  nproc={facts['nproc']}  cpu={facts['cpu_model']}  "
          f"loadavg={' '.join(f'{x:.2f}' for x in facts['loadavg_at_start'])}")
    print("# " + (f"server on core {args.server_cpu}, generator on core {args.gen_cpu}"
                  if args.server_cpu is not None else "no pinning") + f"; rtpgen {rtpgen}")
    sys.stdout.flush()
    results: list[RtpRun] = []
    cmdlines: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-rtp-") as tmp:
        if args.profile:
            res, cmdline = measure("responder", commands["responder"], args.streams, args,
                                   rtpgen, Path(tmp), 1, Path(args.profile))
            print(f"{cmdline}\nprofiled run: {res.echoed} of {res.sent} echoed, loss "
                  f"{res.loss_pct:.3f}% {res.error}")
            if Path(args.profile).exists():
                print_profile(Path(args.profile))
            return 0 if res.ok else 1
        plan = [(name, args.streams) for name in commands]
        big = [(name, args.big) for name in commands if name != "sipp"] if args.big else []
        failed: set[tuple[str, int]] = set()
        for stage in (plan, big):
            for rep in range(1, args.repeat + 1):
                for name, streams in stage:
                    if (name, streams) in failed:
                        continue
                    res, cmdline = measure(name, commands[name], streams, args, rtpgen,
                                           Path(tmp), rep)
                    cmdlines.setdefault(name, cmdline)
                    results.append(res)
                    if res.ok:
                        print(f"  [{rep}/{args.repeat}] {name:<14} {streams:>5} streams "
                              f"{res.echoed_per_s:>8,.0f} echoed/s {res.per_cpu_s:>9,.0f} "
                              f"pkt/CPU-s  srv CPU {res.cpu_pct:3.0f}% (stat "
                              f"{100 * res.cpu_s_stat / max(res.cpu_s, 1e-9):.0f}% of "
                              f"schedstat)  wait {res.wait_pct:.0f}%  lost "
                              f"{res.sent - res.echoed}  gen late {res.behind_ms:.1f} ms, stalled "
                              f"{res.stall_ms:.1f} ms  "
                              f"calls {res.setup_s:.1f} s", file=sys.stderr)
                    else:
                        print(f"  [{rep}/{args.repeat}] {name} {streams}: FAILED: {res.error}",
                              file=sys.stderr)
                        if rep == 1:
                            failed.add((name, streams))
                            notes.append(f"{name} at {streams} streams: failed, left out: "
                                         f"{res.error.splitlines()[0]}")
    summary, rows = [], []
    for name, streams in [*plan, *big]:
        ratio = None
        if name != "sipp" and streams == args.streams:
            ratio = bench_calls.median_ratio(
                [r for r in results if r.streams == streams], name, "sipp", "per_cpu_s")
        got = summarize(results, name, streams, ratio)
        if got:
            summary.append(got[0])
            rows.append(got[1])
    print()
    print(bench_calls.table(("server", "streams", "offered/s", "echoed/s", "pkt/CPU-s",
                             "vs sipp", "srv CPU%", "srv wait%", "loss %", "lost",
                             "p50 us", "p99 us", "gen CPU%", "spread"), rows))
    print()
    print("pkt/CPU-s per repeat: " + "; ".join(
        f"{s['server']}@{s['streams']} {', '.join(f'{v:,}' for v in s['per_cpu_s_runs'])}"
        for s in summary))
    behind = max((r.behind_ms for r in results if r.ok), default=0.0)
    stall = max((r.stall_ms for r in results if r.ok), default=0.0)
    print(f"generator: at most {behind:.1f} ms behind its schedule and {stall:.1f} ms between "
          "two turns of its loop (not scheduled) in any run")
    for name, line in cmdlines.items():
        print(f"{name}:\n    {line}")
    for note in notes:
        print(f"note: {note}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"machine": facts, "args": vars(args), "notes": notes, "summary": summary,
             "runs": [asdict(r) for r in results], "commands": cmdlines}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if summary else 1


if __name__ == "__main__":
    sys.exit(main())
