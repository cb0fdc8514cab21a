#!/usr/bin/env python3
"""Memory and loss of one sip-responder under a long open-loop load.

Starts ``sip-responder`` (pinned to --server-cpu), drives it with the load generator
of bench.py at --rate requests/s for --duration seconds (open loop, one run), and
samples the server's resident memory (VmRSS), its CPU time and its own table sizes
every --every seconds. Prints one line per sample and the generator's summary: what
was sent, lost, p50/p99 latency. The claim it checks: memory stays flat (every table
is bounded), nothing is lost.

    python scripts/soak.py                          # 10 minutes at 20,000 OPTIONS/s
    python scripts/soak.py --duration 60 --rate 10000 --responder-args "--journal-size 1000"

Traffic stays on 127.0.0.1. Standard library only; loadgen.c is built like bench.py does.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # the sibling script: loadgen build, server start, readiness


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_s(pid: int) -> float:
    fields = bench._stat_fields(pid)
    if fields is None:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick  # utime + stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=20000, help="requests/s (default 20000)")
    ap.add_argument("--duration", type=float, default=600, help="seconds (default 600)")
    ap.add_argument("--every", type=float, default=30, help="seconds between samples")
    ap.add_argument("--method", choices=("OPTIONS", "INVITE"), default="OPTIONS")
    ap.add_argument("--responder-args", default="", help="extra sip-responder arguments")
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--gen-cpu", type=int, default=0)
    ap.add_argument("--json", metavar="FILE", help="also write the samples and summary here")
    args = ap.parse_args(argv)
    exe = bench.responder_exe()
    if exe is None:
        print("soak: sip-responder is not installed (pip install -e .)", file=sys.stderr)
        return 2
    loadgen = bench.build_c("loadgen", (Path(__file__).parent / "loadgen.c").read_text(),
                            bench.cache_dir(None))
    extra = shlex.split(args.responder_args)
    spec = bench.ServerSpec(
        "responder", lambda port, _w: [exe, "--listen", f"{bench.HOST}:{port}", "-q", *extra])
    gen_args = argparse.Namespace(method=args.method, sockets=8, batch=32, inflight=64,
                                  rate=args.rate, gen_cpu=args.gen_cpu)
    with tempfile.TemporaryDirectory(prefix="sip-soak-") as work:
        server = bench.Running(spec, args.server_cpu, Path(work))
        try:
            bench.wait_ready(server, args.method)
            pid = server.proc.pid
            cmd = bench.loadgen_cmd(loadgen, gen_args, server.port, args.duration, "open", 1.0)
            gen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
            start, cpu0 = time.monotonic(), cpu_s(pid)
            samples = []
            print(f"{'t s':>6} {'RSS KiB':>9} {'server CPU %':>13}")
            last_t, last_cpu = start, cpu0
            while gen.poll() is None:
                time.sleep(min(args.every, max(0.1, start + args.duration + 2 - time.monotonic())))
                now, cpu = time.monotonic(), cpu_s(pid)
                rss = rss_kib(pid)
                pct = 100 * (cpu - last_cpu) / max(now - last_t, 1e-9)
                last_t, last_cpu = now, cpu
                samples.append({"t": round(now - start, 1), "rss_kib": rss, "cpu_pct": pct})
                print(f"{now - start:6.0f} {rss if rss is not None else '-':>9} {pct:13.0f}",
                      flush=True)
            out, err = gen.communicate()
            if gen.returncode != 0:
                print(f"soak: loadgen failed: {err.strip()}", file=sys.stderr)
                return 1
            result = json.loads(out.strip().splitlines()[-1])
        finally:
            server.stop()
    rss = [s["rss_kib"] for s in samples if s["rss_kib"] is not None]
    steady = rss[len(rss) // 4:] or rss  # after the first quarter: warm caches, full tables
    print(f"\nsent {result['sent']:,}, received {result['received']:,}, lost {result['lost']:,} "
          f"({result['loss_pct']:.4f} %), p50 {result['p50_us']:,.0f} us, "
          f"p99 {result['p99_us']:,.0f} us, p99.9 {result['p999_us']:,.0f} us")
    if rss:
        print(f"RSS: first sample {rss[0]:,} KiB, last {rss[-1]:,} KiB, max {max(rss):,} KiB; "
              f"after the first quarter min {min(steady):,} / median "
              f"{statistics.median(steady):,.0f} / max {max(steady):,} KiB")
    if args.json:
        Path(args.json).write_text(json.dumps({"samples": samples, "loadgen": result,
                                               "args": vars(args)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
