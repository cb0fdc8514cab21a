#!/usr/bin/env python3
"""Answered calls per server CPU-second: sip-responder against SIPp's UAS, side by side.

The same SIPp UAC (``scripts/sipp/uac_call.xml``) calls each server at the same fixed rate:
INVITE with an SDP offer, 100 and 180 and a 200 with the answer, ACK, then BYE and its 200
(the whole call; ``--no-bye`` ends the call at the ACK: ``uac_answer.xml``). The servers:

* ``responder``: ``sip-responder --listen 127.0.0.1:PORT -q``, its default rules (INVITE ->
  100, 180, 200 with the answer built from the offer, an echo ready on its media socket),
  with the compiled fast path (``responder-pure`` runs it with ``SIP_RESPONDER_PURE=1``);
* ``sipp``: SIPp's UAS, ``scripts/sipp/uas_call.xml`` (``uas_answer.xml`` with ``--no-bye``):
  SIPp's own ``-sn uas`` scenario with a 100 Trying in front, a fixed SDP in its 200.

Each server runs pinned to core 1, the SIPp client to core 0, a fresh server process per run,
runs alternating (A, B, A, B, ...); the server's CPU time is read from
``/proc/PID/task/*/schedstat`` (as scripts/bench.py does) right before the client starts and
right after it ends. The table shows medians; the ratio is the median of same-repeat ratios.

    python scripts/bench_calls.py                       # 300 calls/s, 5 s, 3 repeats
    python scripts/bench_calls.py --rate 500 --repeat 5 --no-bye
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402  (scripts/bench.py: process, CPU and build helpers)

SIPP_DIR = HERE / "sipp"
HOST = bench.HOST
SERVERS = ("responder", "sipp")
MORE = ("responder-pure",)


# ----------------------------------------------------------------------------- shared bits


def udp_bound(port: int) -> bool:
    """Whether something has bound 127.0.0.1:port (or the wildcard) for UDP."""
    want = {f"0100007F:{port:04X}", f"00000000:{port:04X}"}
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 1 and fields[1] in want:
                return True
    return False


def wait_bound(server: bench.Running, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise bench.BenchError(f"{server.spec.name} exited at start:\n{server.log_tail()}")
        if udp_bound(port):
            return
        time.sleep(0.05)
    raise bench.BenchError(f"{server.spec.name} did not bind {port} within {timeout:.0f} s")


def stat_ticks(pids: Sequence[int]) -> int:
    """utime + stime (clock ticks) of the processes, from /proc/PID/stat: a cross-check of
    the schedstat figure with 10 ms resolution."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = Path(f"/proc/{pid}/stat").read_text()
            fields = text[text.rindex(")") + 2:].split()
            total += int(fields[11]) + int(fields[12])
    return total


TICK = os.sysconf("SC_CLK_TCK")


def pin_self(args: argparse.Namespace, notes: list[str]) -> None:
    """Pins this script to the generator's core, or turns pinning off with a note."""
    if args.no_pin:
        args.server_cpu = args.gen_cpu = None
        return
    usable = os.sched_getaffinity(0)
    if shutil.which("taskset") is None or not {args.server_cpu, args.gen_cpu} <= usable \
            or args.server_cpu == args.gen_cpu:
        notes.append(f"not pinned: taskset missing or cores {args.gen_cpu}/{args.server_cpu} "
                     "not both usable")
        args.server_cpu = args.gen_cpu = None
    else:
        os.sched_setaffinity(0, {args.gen_cpu})


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in (head, *rows)) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in (head, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def spread(values: Sequence[float]) -> str:
    """(max - min) / median in %: how noisy the repeats were."""
    if len(values) < 2:
        return "-"
    med = statistics.median(values)
    return f"{100 * (max(values) - min(values)) / med:.0f}%" if med else "-"


def median_ratio(results: Sequence[Any], ours: str, theirs: str, key: str) -> float | None:
    """Median over repeats of ours/theirs, each pair from the same repeat."""
    by = {(r.server, r.repeat): getattr(r, key) for r in results if r.ok}
    ratios = [by[(ours, rep)] / by[(theirs, rep)] for (name, rep) in by
              if name == ours and by.get((theirs, rep))]
    return statistics.median(ratios) if ratios else None


def responder_command(name: str, extra: Sequence[str]) -> list[str] | None:
    exe = bench.responder_exe()
    if exe is None:
        return None
    env = ["env", "SIP_RESPONDER_PURE=1"] if name == "responder-pure" else []
    return [*env, exe, "-q", *extra]


# ----------------------------------------------------------------------------- one run


def sipp_stats(path: Path) -> dict[str, str]:
    """The last (cumulative) row of SIPp's ';'-separated -trace_stat file."""
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    if len(lines) < 2:
        return {}
    head = lines[0].rstrip(";").split(";")
    row = lines[-1].rstrip(";").split(";")
    return dict(zip(head, row, strict=False))


@dataclass
class CallRun:
    server: str
    repeat: int
    ok: bool = True
    error: str = ""
    calls: int = 0           # calls that succeeded
    failed: int = 0
    rate: float = 0.0        # successful calls per second of the client's run
    per_cpu_s: float = 0.0   # successful calls per server CPU-second
    cpu_s: float = 0.0
    cpu_s_stat: float = 0.0  # the same from /proc/PID/stat utime+stime (10 ms ticks)
    cpu_pct: float = 0.0
    wait_pct: float = 0.0
    idle_pct: float = 0.0
    client_cpu_pct: float = 0.0
    stats: dict[str, str] = field(default_factory=dict)


def client_cmd(sipp: str, args: argparse.Namespace, port: int, calls: int,
               work: Path, tag: str) -> tuple[list[str], Path]:
    scenario = SIPP_DIR / ("uac_answer.xml" if args.no_bye else "uac_call.xml")
    stat = work / f"client-{tag}.csv"
    cmd = [sipp, "-sf", str(scenario), "-i", HOST, "-p", str(bench.free_udp_port()),
           "-mp", str(bench.free_udp_port()), "-t", "u1", "-nostdin", "-s", "bench",
           "-r", f"{args.rate:g}", "-m", str(calls), "-l", str(max(100, int(args.rate * 4))),
           "-recv_timeout", "5000", "-timeout", f"{int(calls / args.rate + 30)}s",
           "-timeout_error", "-trace_stat", "-stf", str(stat), "-fd", "1",
           "-trace_err", "-error_file", str(work / f"client-{tag}-errors.log"),
           f"{HOST}:{port}"]
    return bench.pinned(args.gen_cpu, cmd), stat


def run_client(cmd: list[str], calls: int, rate: float) -> float:
    """Runs the SIPp client to its end; its CPU time (s) from the children's rusage."""
    before = os.times()
    try:
        run = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, timeout=calls / rate + 60)
    except subprocess.TimeoutExpired as exc:
        raise bench.BenchError("the SIPp client did not finish in time") from exc
    if run.returncode not in (0, 1):  # 1: some calls failed, counted from the statistics
        raise bench.BenchError(f"the SIPp client failed ({run.returncode}): "
                               f"{run.stderr.strip()[-500:]}")
    after = os.times()
    return (after.children_user - before.children_user
            + after.children_system - before.children_system)


def measure(name: str, command: list[str], sipp: str, args: argparse.Namespace,
            work: Path, repeat: int) -> tuple[CallRun, str]:
    result = CallRun(name, repeat)
    scenario = SIPP_DIR / ("uas_answer.xml" if args.no_bye else "uas_call.xml")

    def build(port: int, _work: Path) -> list[str]:
        if name == "sipp":
            return [*command, "-sf", str(scenario), "-i", HOST, "-p", str(port),
                    "-mp", str(bench.free_udp_port()), "-t", "u1", "-nostdin"]
        return [*command, "--listen", f"{HOST}:{port}"]

    server = bench.Running(bench.ServerSpec(name, build), args.server_cpu, work)
    cmdline = shlex.join(server.cmd)
    try:
        if name == "sipp":
            wait_bound(server, server.port)
        else:
            bench.wait_ready(server, "OPTIONS")
        root = server.proc.pid
        idle0 = bench.cpu_sample(bench.process_tree(root))
        time.sleep(args.idle)
        idle1 = bench.cpu_sample(bench.process_tree(root))
        result.idle_pct = 100 * bench.cpu_delta(idle0, idle1)[0] / 1e9 / args.idle
        warm = int(args.rate * args.warmup)
        if warm > 0:
            run_client(client_cmd(sipp, args, server.port, warm, work, f"{name}-{repeat}-w")[0],
                       warm, args.rate)
        calls = max(1, int(args.rate * args.duration))
        cmd, stat_file = client_cmd(sipp, args, server.port, calls, work, f"{name}-{repeat}")
        pids = bench.process_tree(root)
        before, ticks0, t0 = bench.cpu_sample(pids), stat_ticks(pids), time.monotonic()
        client_cpu = run_client(cmd, calls, args.rate)
        pids = bench.process_tree(root)
        after, ticks1, elapsed = bench.cpu_sample(pids), stat_ticks(pids), time.monotonic() - t0
        if not server.alive():
            raise bench.BenchError(f"{name} died during the run:\n{server.log_tail()}")
        on_cpu, waiting = bench.cpu_delta(before, after)
        stats = sipp_stats(stat_file)
        result.stats = stats
        result.calls = int(stats.get("SuccessfulCall(C)", 0) or 0)
        result.failed = int(stats.get("FailedCall(C)", 0) or 0)
        if result.calls == 0:
            raise bench.BenchError(f"no call succeeded against {name}:\n{server.log_tail()}")
        result.cpu_s = on_cpu / 1e9
        result.cpu_s_stat = (ticks1 - ticks0) / TICK
        result.per_cpu_s = result.calls / result.cpu_s if on_cpu else 0.0
        result.rate = result.calls / elapsed
        result.cpu_pct = 100 * result.cpu_s / elapsed
        result.wait_pct = 100 * waiting / 1e9 / elapsed
        result.client_cpu_pct = 100 * client_cpu / elapsed
    except bench.BenchError as exc:
        result.ok = False
        result.error = str(exc)
    finally:
        server.stop()
    return result, cmdline


# ----------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Answered calls per server CPU-second: sip-responder (compiled fast path) "
                    "against SIPp's UAS answering with a fixed SDP, both called by the same "
                    "SIPp UAC at the same fixed rate over loopback UDP, alternating runs, "
                    "medians of the repeats.",
        epilog="Method and columns: scripts/README.md, section bench_calls.py.")
    p.add_argument("--rate", type=float, default=300.0,
                   help="calls started per second by the client (default 300)")
    p.add_argument("--duration", type=float, default=5.0,
                   help="seconds of calls per measured run: rate x duration calls (default 5)")
    p.add_argument("--repeat", type=int, default=3,
                   help="rounds over the servers; medians are reported (default 3)")
    p.add_argument("--warmup", type=float, default=1.0,
                   help="seconds of calls before each measured run, not counted (default 1)")
    p.add_argument("--idle", type=float, default=0.5,
                   help="seconds the idle server's CPU use is measured (default 0.5)")
    p.add_argument("--no-bye", action="store_true",
                   help="calls end at the ACK (INVITE, 100, 180, 200, ACK); default: the "
                        "whole call, with BYE and its 200")
    p.add_argument("--servers", default=",".join(SERVERS),
                   help=f"comma-separated, in run order (default {','.join(SERVERS)}; also "
                        "known: responder-pure, the responder without its compiled fast path)")
    p.add_argument("--responder-args", default="", help="extra sip-responder arguments")
    p.add_argument("--server-cpu", type=int, default=1, help="core for the server (default 1)")
    p.add_argument("--gen-cpu", type=int, default=0,
                   help="core for the client and this script (default 0)")
    p.add_argument("--no-pin", action="store_true", help="do not pin anything")
    p.add_argument("--json", metavar="FILE", help="also write every run and the summary here")
    args = p.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for name in args.servers:
        if name not in (*SERVERS, *MORE):
            p.error(f"unknown server {name!r}; choose from {', '.join((*SERVERS, *MORE))}")
    if args.rate <= 0 or args.duration <= 0 or args.repeat < 1 or args.warmup < 0:
        p.error("--rate, --duration and --repeat must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    notes: list[str] = []
    sipp = shutil.which("sipp")
    if sipp is None:
        print("bench_calls: sipp not installed (apt-get install -y sip-tester): it is the "
              "client, nothing to measure", file=sys.stderr)
        return 3
    pin_self(args, notes)
    commands: dict[str, list[str]] = {}
    for name in args.servers:
        if name == "sipp":
            commands[name] = [sipp]
        else:
            cmd = responder_command(name, shlex.split(args.responder_args))
            if cmd is None:
                notes.append(f"{name}: skipped, sip-responder not installed (pip install -e .)")
            else:
                commands[name] = cmd
    if not commands:
        print("bench_calls: no server to measure", file=sys.stderr)
        return 2
    what = "INVITE+offer, 100, 180, 200+answer, ACK" + ("" if args.no_bye else ", BYE, 200")
    print(f"# calls: {what}; SIPp UAC at {args.rate:g} calls/s, {args.duration:g} s "
          f"({int(args.rate * args.duration)} calls) per run, {args.repeat} repeats")
    facts = bench.machine_facts()
    print(f"# {facts['date']}  nproc={facts['nproc']}  cpu={facts['cpu_model']}  "
          f"loadavg={' '.join(f'{x:.2f}' for x in facts['loadavg_at_start'])}")
    print("# " + (f"server on core {args.server_cpu}, client on core {args.gen_cpu}"
                  if args.server_cpu is not None else "no pinning"))
    sys.stdout.flush()
    results: list[CallRun] = []
    cmdlines: dict[str, str] = {}
    failed: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="bench-calls-") as tmp:
        for rep in range(1, args.repeat + 1):
            for name, command in commands.items():
                if name in failed:
                    continue
                res, cmdline = measure(name, command, sipp, args, Path(tmp), rep)
                cmdlines.setdefault(name, cmdline)
                results.append(res)
                if res.ok:
                    print(f"  [{rep}/{args.repeat}] {name:<15} {res.calls:>6} calls "
                          f"{res.rate:>6.0f}/s {res.per_cpu_s:>8,.0f} calls/CPU-s  srv CPU "
                          f"{res.cpu_pct:3.0f}% (stat {100 * res.cpu_s_stat / res.cpu_s:.0f}% "
                          f"of schedstat)  wait {res.wait_pct:.0f}%  failed {res.failed}",
                          file=sys.stderr)
                else:
                    print(f"  [{rep}/{args.repeat}] {name}: FAILED: {res.error}",
                          file=sys.stderr)
                    if rep == 1:
                        failed.add(name)
                        notes.append(f"{name}: failed, left out: {res.error.splitlines()[0]}")
    rows: list[tuple[str, ...]] = []
    summary: list[dict[str, Any]] = []
    for name in commands:
        runs = [r for r in results if r.server == name and r.ok]
        if not runs:
            continue

        def med(key: str, runs: list[CallRun] = runs) -> float:
            return float(statistics.median(getattr(r, key) for r in runs))

        ratio = median_ratio(results, name, "sipp", "per_cpu_s") if name != "sipp" else None
        per_run = [r.per_cpu_s for r in runs]
        summary.append({"server": name, "runs": len(runs), "calls_per_s": med("rate"),
                        "calls_per_cpu_s": med("per_cpu_s"), "vs_sipp": ratio,
                        "cpu_pct": med("cpu_pct"), "wait_pct": med("wait_pct"),
                        "failed": sum(r.failed for r in runs),
                        "client_cpu_pct": med("client_cpu_pct"), "idle_pct": med("idle_pct"),
                        "per_cpu_s_runs": [round(v) for v in per_run]})
        rows.append((name, f"{med('rate'):,.0f}", f"{med('per_cpu_s'):,.0f}",
                     "-" if ratio is None else f"{ratio:.2f}", f"{med('cpu_pct'):.0f}",
                     f"{med('wait_pct'):.0f}",
                     str(sum(r.failed for r in runs)), spread(per_run),
                     f"{med('client_cpu_pct'):.0f}"))
    print()
    print(table(("server", "calls/s", "calls/CPU-s", "vs sipp", "srv CPU%", "srv wait%",
                 "failed", "spread", "client CPU%"), rows))
    print()
    print("calls/CPU-s per repeat: " + "; ".join(
        f"{s['server']} {', '.join(f'{v:,}' for v in s['per_cpu_s_runs'])}" for s in summary))
    idle = {s["server"]: s["idle_pct"] for s in summary}
    for name, line in cmdlines.items():
        print(f"{name}: idle CPU {idle.get(name, 0):.1f}%\n    {line}")
    shown = client_cmd(sipp, args, 0, int(args.rate * args.duration), Path("WORK"), "x")[0]
    print(f"client: {shlex.join(shown)}"
          .replace(f"{HOST}:0", f"{HOST}:PORT"))
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
