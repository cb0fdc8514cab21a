#!/usr/bin/env python3
"""OPTIONS over persistent TCP connections: requests per server CPU-second, sip-responder
against Kamailio (stateless, one TCP worker), side by side in one run.

The C generator ``scripts/tcpgen.c`` (built with ``gcc -O2`` on first use, as bench.py builds
loadgen.c) opens ``--connections`` (100) connections and keeps ``--inflight`` (4) OPTIONS in
flight on each, closed loop; answers are framed by Content-Length and matched by Call-ID.
It connects and warms up first, then waits: the server's CPU time is read from
``/proc/PID/task/*/schedstat`` of its whole process tree (bench.py's helpers) right before
and right after the measured phase, so connection setup and teardown are not counted. Each
server is a fresh process pinned to core 1, the generator to core 0, runs alternating
(A, B, A, B, ...); medians over the repeats, the ratio is the median of same-repeat ratios.

    python scripts/bench_tcp.py                          # 100 connections x 4 in flight, 3 s
    python scripts/bench_tcp.py --repeat 5 --inflight 10 --json tcp.json

Method and numbers: scripts/README.md, section bench_tcp.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import select
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
from typing import IO, Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402  (scripts/bench.py: process, CPU and build helpers)
import bench_calls  # noqa: E402  (pinning, table, same-repeat ratios)

HOST = bench.HOST
TCPGEN_SRC = HERE / "tcpgen.c"
SERVERS = ("responder", "kamailio")
MORE = ("responder-pure",)

# Kamailio stateless over TCP: no UDP listener, one TCP reader process (tcp_children=1, as
# the responder is one process), only sl.so, every request answered 200 by sl_send_reply.
KAMAILIO_TCP_CFG = """#!KAMAILIO
debug=1
log_stderror=yes
fork=yes
children=1
tcp_children=1
disable_tcp=no
tcp_max_connections=4096
tcp_connection_lifetime=3600
auto_aliases=no
dns=no
rev_dns=no
listen=tcp:{host}:{port}
mpath="{mpath}"
loadmodule "sl.so"
request_route {{
    sl_send_reply("200", "OK");
    exit;
}}
"""


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class TcpRunning(bench.Running):
    """bench.Running on a free TCP port (started by us, stopped by PID like bench.py's)."""

    def __init__(self, spec: bench.ServerSpec, cpu: int | None, work: Path) -> None:
        self.spec = spec
        self.port = free_tcp_port()
        self.cmd = bench.pinned(cpu, spec.command(self.port, work))
        self.log = work / f"{spec.name}-{self.port}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=work,
                                         start_new_session=True)


def options_request(port: int, lport: int, transport: str = "TCP") -> bytes:
    tag = uuid.uuid4().hex[:8]
    lines = [f"OPTIONS sip:bench@{HOST}:{port} SIP/2.0",
             f"Via: SIP/2.0/{transport} {HOST}:{lport};branch=z9hG4bK-probe{tag};rport",
             "Max-Forwards: 70",
             f"From: <sip:probe@{HOST}:{lport}>;tag={tag}",
             f"To: <sip:bench@{HOST}:{port}>",
             f"Call-ID: probe-{tag}@{HOST}",
             "CSeq: 1 OPTIONS",
             "Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def tcp_options(port: int, timeout: float = 2.0) -> bytes:
    """One OPTIONS over a new TCP connection; the answer's status line, or b'' if none came."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(options_request(port, sock.getsockname()[1]))
        data = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in data and time.monotonic() < deadline:
            chunk = sock.recv(65535)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0] if b"\r\n\r\n" in data else b""


def udp_options(port: int, timeout: float = 2.0) -> bytes:
    """One OPTIONS over UDP; the answer's status line, or b'' if none came."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        sock.settimeout(timeout)
        sock.sendto(options_request(port, sock.getsockname()[1], "UDP"), (HOST, port))
        try:
            return sock.recv(65535).split(b"\r\n", 1)[0]
        except OSError:
            return b""


def wait_ready_tcp(server: bench.Running, timeout: float = 20.0) -> None:
    """An OPTIONS over a new connection every 100 ms until the server answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise bench.BenchError(f"{server.spec.name} exited at start:\n{server.log_tail()}")
        with contextlib.suppress(OSError):
            if tcp_options(server.port, 0.5).startswith(b"SIP/2.0 "):
                return
        time.sleep(0.1)
    raise bench.BenchError(f"{server.spec.name} did not answer over TCP within "
                           f"{timeout:.0f} s:\n{server.log_tail()}")


def specs(args: argparse.Namespace) -> tuple[list[bench.ServerSpec], list[str]]:
    out: list[bench.ServerSpec] = []
    notes: list[str] = []
    for name in args.servers:
        if name == "kamailio":
            exe = shutil.which("kamailio") or shutil.which("kamailio", path="/usr/sbin")
            mpath = args.kamailio_mpath or bench.kamailio_mpath()
            if exe is None or mpath is None:
                notes.append("kamailio: skipped, not installed (apt-get install -y kamailio)")
                continue

            def kam(port: int, work: Path, exe: str = exe, mpath: str = mpath) -> list[str]:
                cfg = work / f"kamailio-tcp-{port}.cfg"
                cfg.write_text(KAMAILIO_TCP_CFG.format(host=HOST, port=port, mpath=mpath))
                return [exe, "-f", str(cfg), "-DD", "-E", "-x", args.kamailio_mem,
                        "-m", "64", "-M", "8", "-w", str(work)]

            out.append(bench.ServerSpec("kamailio", kam, bench._version([exe, "-v"])))
        else:
            base = bench_calls.responder_command(name, shlex.split(args.responder_args))
            if base is None:
                notes.append(f"{name}: skipped, sip-responder not installed (pip install -e .)")
                continue

            def resp(port: int, _work: Path, base: list[str] = base) -> list[str]:
                return [*base, "--listen", f"tcp:{HOST}:{port}"]

            exe = bench.responder_exe() or "sip-responder"
            out.append(bench.ServerSpec(name, resp, bench._version([exe, "--version"])))
    return out, notes


def check_kamailio_cfg(spec: bench.ServerSpec, work: Path) -> None:
    """kamailio -c on the generated config: a config error says so before any run."""
    cmd = spec.command(free_tcp_port(), work)
    run = subprocess.run([cmd[0], "-c", *cmd[1:3]], capture_output=True, text=True, timeout=30)
    if run.returncode != 0:
        raise bench.BenchError("kamailio -c rejects the generated config:\n"
                               + (run.stdout + run.stderr)[-1500:])


# ----------------------------------------------------------------------------- one run


@dataclass
class TcpRun:
    server: str
    repeat: int
    ok: bool = True
    error: str = ""
    rate: float = 0.0        # final answers per second of the measured phase
    per_cpu_s: float = 0.0   # final answers per server CPU-second
    cpu_s: float = 0.0
    cpu_pct: float = 0.0
    wait_pct: float = 0.0
    idle_pct: float = 0.0
    gen_cpu_pct: float = 0.0
    p50_us: float = 0.0
    p99_us: float = 0.0
    lost: int = 0
    closed: int = 0
    procs: int = 0
    tcpgen: dict[str, Any] = field(default_factory=dict)


def read_line(stream: IO[str], timeout: float, proc: subprocess.Popen[str]) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    line = stream.readline() if ready else ""
    if not line:
        err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
        raise bench.BenchError(f"tcpgen gave no answer in {timeout:.0f} s {err.strip()}")
    return line


def tcpgen_cmd(binary: Path, args: argparse.Namespace, port: int) -> list[str]:
    return bench.pinned(args.gen_cpu, [
        str(binary), "-a", HOST, "-p", str(port), "-c", str(args.connections),
        "-w", str(args.inflight), "-d", f"{args.duration:g}", "-W", f"{args.warmup:g}",
        "-g", f"{args.grace:g}"])


def measure(spec: bench.ServerSpec, args: argparse.Namespace, tcpgen: Path, work: Path,
            repeat: int) -> tuple[TcpRun, str]:
    result = TcpRun(spec.name, repeat)
    server = TcpRunning(spec, args.server_cpu, work)
    cmdline = shlex.join(server.cmd)
    gen: subprocess.Popen[str] | None = None
    try:
        wait_ready_tcp(server)
        root = server.proc.pid
        idle0 = bench.cpu_sample(bench.process_tree(root))
        time.sleep(args.idle)
        idle1 = bench.cpu_sample(bench.process_tree(root))
        result.idle_pct = 100 * bench.cpu_delta(idle0, idle1)[0] / 1e9 / args.idle
        gen = subprocess.Popen(tcpgen_cmd(tcpgen, args, server.port), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert gen.stdin is not None and gen.stdout is not None
        if read_line(gen.stdout, args.warmup + 30, gen).strip() != "warm":
            raise bench.BenchError("tcpgen: unexpected output")
        pids = bench.process_tree(root)
        before = bench.cpu_sample(pids)
        gen.stdin.write("go\n")
        gen.stdin.flush()
        lg: dict[str, Any] = json.loads(read_line(gen.stdout, args.duration + args.grace + 30,
                                                  gen))
        after = bench.cpu_sample(bench.process_tree(root))
        gen.stdin.close()
        gen.wait(timeout=10)
        if not server.alive():
            raise bench.BenchError(f"{spec.name} died during the run:\n{server.log_tail()}")
        on_cpu, waiting = bench.cpu_delta(before, after)
        elapsed = float(lg["elapsed_s"])
        result.tcpgen = lg
        result.rate = float(lg["rate"])
        result.cpu_s = on_cpu / 1e9
        result.per_cpu_s = lg["received"] / result.cpu_s if on_cpu else 0.0
        result.cpu_pct = 100 * result.cpu_s / elapsed
        result.wait_pct = 100 * waiting / 1e9 / elapsed
        result.gen_cpu_pct = 100 * float(lg["cpu_s"]) / elapsed
        result.p50_us, result.p99_us = float(lg["p50_us"]), float(lg["p99_us"])
        result.lost, result.closed = int(lg["lost"]), int(lg["closed"])
        result.procs = len(pids)
        if lg["received"] == 0:
            raise bench.BenchError(f"no answer from {spec.name} over TCP")
    except (bench.BenchError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
        result.ok = False
        result.error = str(exc) or type(exc).__name__
    finally:
        if gen is not None and gen.poll() is None:
            gen.kill()
            gen.wait()
        server.stop()
    return result, cmdline


# ----------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="OPTIONS per server CPU-second over persistent TCP connections: "
                    "sip-responder against Kamailio (sl_send_reply, one TCP worker), the C "
                    "generator tcpgen.c on one core, the server on the other, alternating "
                    "runs, medians of the repeats.",
        epilog="Method and columns: scripts/README.md, section bench_tcp.py.")
    p.add_argument("--connections", type=int, default=100,
                   help="persistent TCP connections (default 100)")
    p.add_argument("--inflight", type=int, default=4,
                   help="OPTIONS in flight per connection (default 4)")
    p.add_argument("--duration", type=float, default=3.0, help="measured seconds (default 3)")
    p.add_argument("--warmup", type=float, default=1.0,
                   help="seconds of load on the same connections first (default 1)")
    p.add_argument("--grace", type=float, default=0.5,
                   help="seconds for the last answers (default 0.5)")
    p.add_argument("--repeat", type=int, default=3, help="rounds over the servers (default 3)")
    p.add_argument("--idle", type=float, default=0.5,
                   help="seconds the idle server's CPU use is measured (default 0.5)")
    p.add_argument("--servers", default=",".join(SERVERS),
                   help=f"comma-separated, in run order (default {','.join(SERVERS)}; also "
                        "known: responder-pure)")
    p.add_argument("--responder-args", default="", help="extra sip-responder arguments")
    p.add_argument("--kamailio-mem", choices=("fm", "qm", "tlsf"), default="fm",
                   help="Kamailio memory manager, -x (default fm, as bench.py)")
    p.add_argument("--kamailio-mpath", help="Kamailio modules dir (default: found)")
    p.add_argument("--server-cpu", type=int, default=1, help="core for the server (default 1)")
    p.add_argument("--gen-cpu", type=int, default=0,
                   help="core for the generator and this script (default 0)")
    p.add_argument("--no-pin", action="store_true", help="do not pin anything")
    p.add_argument("--cache-dir", help="where tcpgen is built (default "
                                       "~/.cache/sip-responder-bench)")
    p.add_argument("--json", metavar="FILE", help="also write every run and the summary here")
    args = p.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for name in args.servers:
        if name not in (*SERVERS, *MORE):
            p.error(f"unknown server {name!r}; choose from {', '.join((*SERVERS, *MORE))}")
    if min(args.connections, args.inflight, args.repeat) < 1 or args.duration <= 0 \
            or args.warmup < 0 or args.idle <= 0:
        p.error("--connections, --inflight, --repeat, --duration and --idle must be positive")
    if args.connections > 2000:
        p.error("--connections: at most 2000 here (Kamailio's config allows 4096)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    notes: list[str] = []
    bench_calls.pin_self(args, notes)
    try:
        tcpgen = bench.build_c("tcpgen", TCPGEN_SRC.read_text(), bench.cache_dir(args.cache_dir))
    except bench.BenchError as exc:
        print(f"bench_tcp: {exc}", file=sys.stderr)
        return 2
    servers, skipped = specs(args)
    notes += skipped
    if not servers:
        print("bench_tcp: no server to measure", file=sys.stderr)
        return 2
    facts = bench.machine_facts()
    print(f"# OPTIONS over TCP: {args.connections} persistent connections x {args.inflight} "
          f"in flight, {args.duration:g} s per run after {args.warmup:g} s warm-up, "
          f"{args.repeat} repeats")
    print(f"# {facts['date']}  nproc={facts['nproc']}  cpu={facts['cpu_model']}  "
          f"loadavg={' '.join(f'{x:.2f}' for x in facts['loadavg_at_start'])}")
    print("# " + (f"server on core {args.server_cpu}, tcpgen on core {args.gen_cpu}"
                  if args.server_cpu is not None else "no pinning") + f"; tcpgen {tcpgen}")
    sys.stdout.flush()
    results: list[TcpRun] = []
    cmdlines: dict[str, str] = {}
    failed: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="bench-tcp-") as tmp:
        work = Path(tmp)
        for spec in servers:
            if spec.name == "kamailio":
                try:
                    check_kamailio_cfg(spec, work)
                except (bench.BenchError, OSError, subprocess.TimeoutExpired) as exc:
                    failed.add("kamailio")
                    notes.append(f"kamailio: left out: {exc}")
        for rep in range(1, args.repeat + 1):
            for spec in servers:
                if spec.name in failed:
                    continue
                res, cmdline = measure(spec, args, tcpgen, work, rep)
                cmdlines.setdefault(spec.name, cmdline)
                results.append(res)
                if res.ok:
                    print(f"  [{rep}/{args.repeat}] {spec.name:<15} {res.rate:>8,.0f} resp/s "
                          f"{res.per_cpu_s:>9,.0f} resp/CPU-s  srv CPU {res.cpu_pct:3.0f}%  "
                          f"wait {res.wait_pct:3.0f}%  p50 {res.p50_us:,.0f} us  lost "
                          f"{res.lost}  gen CPU {res.gen_cpu_pct:.0f}%", file=sys.stderr)
                else:
                    print(f"  [{rep}/{args.repeat}] {spec.name}: FAILED: {res.error}",
                          file=sys.stderr)
                    if rep == 1:
                        failed.add(spec.name)
                        notes.append(f"{spec.name}: failed, left out: "
                                     f"{res.error.splitlines()[0]}")
    rows: list[tuple[str, ...]] = []
    summary: list[dict[str, Any]] = []
    for spec in servers:
        runs = [r for r in results if r.server == spec.name and r.ok]
        if not runs:
            continue

        def med(key: str, runs: list[TcpRun] = runs) -> float:
            return float(statistics.median(getattr(r, key) for r in runs))

        ratio = (bench_calls.median_ratio(results, spec.name, "kamailio", "per_cpu_s")
                 if spec.name != "kamailio" else None)
        per_run = [r.per_cpu_s for r in runs]
        lost = sum(r.lost for r in runs)
        summary.append({"server": spec.name, "runs": len(runs), "rate": med("rate"),
                        "per_cpu_s": med("per_cpu_s"), "vs_kamailio": ratio,
                        "cpu_pct": med("cpu_pct"), "wait_pct": med("wait_pct"),
                        "p50_us": med("p50_us"), "p99_us": med("p99_us"), "lost": lost,
                        "closed": sum(r.closed for r in runs), "gen_cpu_pct": med("gen_cpu_pct"),
                        "idle_pct": med("idle_pct"), "version": spec.version,
                        "per_cpu_s_runs": [round(v) for v in per_run]})
        rows.append((spec.name, f"{med('rate'):,.0f}", f"{med('per_cpu_s'):,.0f}",
                     "-" if ratio is None else f"{ratio:.2f}", f"{med('cpu_pct'):.0f}",
                     f"{med('wait_pct'):.0f}", f"{med('p50_us'):,.0f}",
                     f"{med('p99_us'):,.0f}", str(lost), bench_calls.spread(per_run),
                     f"{med('gen_cpu_pct'):.0f}"))
    print()
    print(bench_calls.table(("server", "resp/s", "resp/CPU-s", "vs kam", "srv CPU%",
                             "srv wait%", "p50 us", "p99 us", "lost", "spread", "gen CPU%"),
                            rows))
    print()
    print("resp/CPU-s per repeat: " + "; ".join(
        f"{s['server']} {', '.join(f'{v:,}' for v in s['per_cpu_s_runs'])}" for s in summary))
    for s in summary:
        print(f"{s['server']}: {s['version']}; idle CPU {s['idle_pct']:.1f}%\n"
              f"    {cmdlines[s['server']]}")
    print("tcpgen: " + shlex.join(tcpgen_cmd(tcpgen, args, 0)).replace(" -p 0 ", " -p PORT "))
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
