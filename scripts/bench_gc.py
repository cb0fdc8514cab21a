#!/usr/bin/env python3
"""Garbage-collector pauses while the pending table fills (issue 11, item 7).

Fills an Engine in memory (no sockets) with ``INVITE->180,486/30s`` at 8,000 INVITEs a
second of a fake clock until ``--entries`` transactions (default 100,000) are pending, the
way a flood fills the real server's table; every ``gc.callbacks`` start/stop pair is timed.
Each variant runs in a fresh interpreter, since the collector's settings are global:

* ``default``: CPython's thresholds (700, 10, 10), nothing frozen;
* ``served``: what :func:`responder.ops.server.run` does before serving (freeze what exists
  at start-up, :data:`responder.ops.server.GC_THRESHOLDS`).

Prints, per variant: collections by generation, the longest pause, the sum of pauses and
the wall time of the fill.

    python scripts/bench_gc.py [--entries 100000] [--variants default,served]
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time

RATE = 8000.0  # INVITEs a second (fake clock)


def invite(i: int) -> bytes:
    return (
        f"INVITE sip:1000@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-{i}-gc;rport\r\n"
        f"Max-Forwards: 70\r\n"
        f"Contact: <sip:bench@127.0.0.1:5062>\r\n"
        f"To: <sip:1000@127.0.0.1:5060>\r\n"
        f"From: \"Bench\" <sip:bench@127.0.0.1:5062>;tag=t{i}\r\n"
        f"Call-ID: {i}-gc@127.0.0.1\r\n"
        f"CSeq: 1 INVITE\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


def measure(variant: str, entries: int, seconds: float) -> dict[str, object]:
    from responder.core.effects import Inbound
    from responder.core.engine import Engine
    from responder.rules.loader import build_ruleset
    from responder.sip.seeded import Seeded

    engine = Engine(build_ruleset(None, ["INVITE->180,486/30s"]), Seeded(1))
    if variant == "served":
        from responder.ops.server import tune_gc
        tune_gc()
    elif variant.startswith("frozen:"):  # frozen:T0/T1/T2, other thresholds to compare
        from responder.ops.server import tune_gc
        t0, t1, t2 = (int(t) for t in variant.partition(":")[2].split("/"))
        tune_gc((t0, t1, t2))
    elif variant != "default":
        raise SystemExit(f"unknown variant {variant!r}")
    pauses: list[tuple[int, float]] = []
    started = [0.0]

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append((info["generation"], time.perf_counter() - started[0]))

    total = max(entries, int(seconds * RATE))
    gc.callbacks.append(watch)
    t0 = time.perf_counter()
    for i in range(total):
        now = i / RATE
        engine.receive(Inbound(invite(i), ("127.0.0.1", 5062)), now)
        if i % 64 == 0:
            engine.due(now)
        if i == entries - 1:
            filled = len(pauses)
    wall = time.perf_counter() - t0
    gc.callbacks.remove(watch)
    return {
        "variant": variant,
        "pending": engine.pending,
        "collections": [sum(1 for g, _ in pauses if g == gen) for gen in range(3)],
        "fill_longest_ms": round(1000 * max((p for _, p in pauses[:filled]), default=0.0), 2),
        "longest_ms": round(1000 * max((p for _, p in pauses), default=0.0), 2),
        "longest_gen2_ms": round(1000 * max((p for g, p in pauses if g == 2), default=0.0), 2),
        "total_ms": round(1000 * sum(p for _, p in pauses), 1),
        "wall_s": round(wall, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--entries", type=int, default=100_000)
    p.add_argument("--seconds", type=float, default=60.0,
                   help="seconds of the fake clock at 8,000 INVITE/s (filling, then full)")
    p.add_argument("--variants", default="default,served",
                   help="default, served, frozen:T0/T1/T2 (comma-separated)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.entries, args.seconds)))
        return
    print(f"{'variant':22} {'pending':>8} {'gen0/1/2':>14} {'fill max ms':>12} "
          f"{'max ms':>8} {'gen2 max':>9} {'sum ms':>8} {'run s':>6}")
    for variant in args.variants.split(","):
        out = subprocess.run([sys.executable, __file__, "--one", variant, "--entries",
                              str(args.entries), "--seconds", str(args.seconds)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout)
        gens = "/".join(str(n) for n in r["collections"])
        print(f"{r['variant']:22} {r['pending']:>8} {gens:>14} {r['fill_longest_ms']:>12} "
              f"{r['longest_ms']:>8} {r['longest_gen2_ms']:>9} {r['total_ms']:>8} "
              f"{r['wall_s']:>6}")


if __name__ == "__main__":
    main()
