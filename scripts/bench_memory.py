#!/usr/bin/env python3
"""Memory per table entry for maximum-size requests: RSS per pending, completed and journal
entry (issue 11, item 2; docs/limits.md "Tables: entries and bytes").

For each table and each request shape (about 64 KB INVITEs built to cost the most), a fresh
Python process fills the table with ``--n`` distinct requests and prints the growth of its
resident set (``VmRSS``) divided by the entries kept, next to the table's own byte count
(``TableStat.bytes``, where the tree has it). ``--tree DIR`` measures another checkout of the
project (e.g. a copy of HEAD made with ``git archive HEAD | tar -x -C /tmp/before``), so
before and after can be printed side by side by running the script twice.

    python scripts/bench_memory.py [--n 200] [--tree DIR] [--shapes many,lines,vias,body,small]

RSS is what the issue asks about, but freed memory stays in the process (the completed
table is filled by way of the pending one), so each measurement is also run once more under
``tracemalloc``: the bytes Python still holds per entry ("traced"), which is exact.

The tables:

* pending: rule ``INVITE->180,486/30s``: each INVITE leaves a transaction waiting 30 s;
* completed: rule ``INVITE->180,486/1s`` and the clock moved 1 s: each transaction's 486
  is remembered for its retransmissions;
* journal: the admin journal (``Journal(n)``) observing the default rules' answers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

SIZE = 64_000  # bytes per request: near the largest UDP datagram (65,507 over IPv4)
SHAPES = {
    "many": "~5,900 short header lines (X-N: v): past the parser's caps since issue 11",
    "lines": "240 header lines of ~260 bytes, one name (within the parser's caps)",
    "vias": "125 Via lines of ~500 bytes (copied into every response)",
    "body": "a 63 KB body",
    "small": "an ordinary 400-byte INVITE (50 x --n of them)",
}


def invite(i: int, shape: str) -> bytes:
    """A distinct INVITE of about SIZE bytes."""
    head = (f"INVITE sip:1000@127.0.0.1:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-mem-{i};rport\r\n"
            f"Max-Forwards: 70\r\n"
            f"From: <sip:bench@127.0.0.1:5062>;tag=f{i}\r\n"
            f"To: <sip:1000@127.0.0.1:5060>\r\n"
            f"Call-ID: mem-{i}@127.0.0.1\r\n"
            f"CSeq: 1 INVITE\r\n")
    room = SIZE - len(head) - 40
    extra, body = "", ""
    if shape == "many":
        n = 0
        parts = []
        while room > 0:
            line = f"X-{n}: v\r\n"
            parts.append(line)
            room -= len(line)
            n += 1
        extra = "".join(parts)
    elif shape == "lines":
        width = room // 240
        extra = "".join("X-Long: " + "a" * (width - 10) + "\r\n" for _ in range(240))
    elif shape == "vias":
        width = room // 125
        extra = "".join(f"Via: SIP/2.0/UDP 10.0.0.{n}:5060;branch=z9hG4bK-{n};x="
                        + "v" * (width - 52 - len(str(n)) * 2) + "\r\n" for n in range(125))
    elif shape == "small":
        extra = ("Contact: <sip:bench@127.0.0.1:5062>\r\nAllow: INVITE, ACK, CANCEL, BYE\r\n"
                 "User-Agent: bench\r\n")
    elif shape == "body":
        body = "v" * (room - 40)
        extra = "Content-Type: application/sdp\r\n"
    else:
        raise SystemExit(f"unknown shape {shape!r}")
    return (head + extra + f"Content-Length: {len(body)}\r\n\r\n" + body).encode()


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def child(table: str, shape: str, n: int, traced: bool) -> dict[str, object]:
    """Runs in a fresh process: fill ``table`` with ``n`` requests of ``shape``."""
    import gc
    import tracemalloc

    from responder.core.effects import Inbound
    from responder.core.engine import Engine
    from responder.core.journal import Journal
    from responder.rules.loader import build_ruleset
    from responder.sip.seeded import Seeded

    src, local = ("127.0.0.1", 5062), ("127.0.0.1", 5060)
    spec = {"pending": ["INVITE->180,486/30s"], "completed": ["INVITE->180,486/1s"],
            "journal": []}[table]
    engine = Engine(build_ruleset(None, spec), Seeded(1), record=table == "journal")
    journal = Journal(n) if table == "journal" else None
    first = engine.receive(Inbound(invite(n + 4, shape), src, local), 0.0)  # warm up
    answered = sorted({int(e.data.split(b" ", 2)[1]) for e in first if hasattr(e, "data")})
    engine.forget()
    gc.collect()
    if traced:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] // 1024 if traced else rss_kib()
    for i in range(n):
        effects = engine.receive(Inbound(invite(i, shape), src, local), 0.0)
        if journal is not None:
            journal.observe(effects)
    del effects
    if table == "completed":
        engine.due(1.0)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] // 1024 if traced else rss_kib()
    if table == "journal":
        assert journal is not None
        stat = journal.stat()
    else:
        stat = engine.tables()[table]
    kept = stat[0]
    byte_count = getattr(stat, "bytes", None)
    return {"table": table, "shape": shape, "kept": kept, "answered": answered,
            "rss_kib": after - before,
            "per_entry_kib": round((after - before) / kept, 1) if kept else None,
            "table_bytes_per_entry": round(byte_count / kept) if kept and byte_count else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="requests per table (default 200)")
    ap.add_argument("--tree", default=str(Path(__file__).resolve().parent.parent),
                    help="the project checkout to measure (default: this one)")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--tables", default="pending,completed,journal")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        table, shape, traced = args.child
        print(json.dumps(child(table, shape, args.n, traced == "traced")))
        return
    tree = os.path.abspath(args.tree)
    env = {**os.environ, "PYTHONPATH": tree}
    print(f"tree {tree}; {args.n} requests of ~{SIZE:,} bytes per table")
    print(f"{'table':10} {'shape':6} {'kept':>6} {'answered':15} {'RSS KiB/entry':>14} "
          f"{'traced KiB/entry':>17} {'table bytes/entry':>18}")
    for table in args.tables.split(","):
        for shape in args.shapes.split(","):
            n = args.n * 50 if shape == "small" else args.n
            got = []
            for mode in ("rss", "traced"):
                out = subprocess.run(
                    [sys.executable, os.path.abspath(__file__), "--n", str(n),
                     "--child", table, shape, mode], env=env, cwd=tree, capture_output=True,
                    text=True, check=False)
                if out.returncode != 0:
                    got = []
                    print(f"{table:10} {shape:6} failed: {out.stderr.strip().splitlines()[-1:]}")
                    break
                got.append(json.loads(out.stdout))
            if not got:
                continue
            r, t = got
            print(f"{table:10} {shape:6} {r['kept']:>6} {r['answered']!s:15} "
                  f"{r['per_entry_kib']!s:>14} {t['per_entry_kib']!s:>17} "
                  f"{r['table_bytes_per_entry']!s:>18}")
    print("shapes: " + "; ".join(f"{k}: {v}" for k, v in SHAPES.items()))


if __name__ == "__main__":
    main()
