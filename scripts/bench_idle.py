#!/usr/bin/env python3
"""Memory per idle TCP connection: 10,000 connections held open against sip-responder.

Starts ``sip-responder -q --listen tcp:127.0.0.1:PORT --listen udp:127.0.0.1:PORT``, reads
its RSS (``VmRSS``), its open-file limit (``/proc/PID/limits``) and the kernel's TCP socket
memory (``/proc/net/sockstat``), then opens ``--connections`` TCP connections from this
process (its own RLIMIT_NOFILE soft limit raised to the hard limit first) and waits until
the responder has accepted them all (its open file descriptors, bounded wait). Reads RSS
again (connected, nothing sent), then has every connection send one OPTIONS and read its
answer and reads RSS a third time (connected and used once, then idle). While they are held,
an OPTIONS over UDP and one over a new TCP connection must be answered; every held
connection is then checked for having been closed by the responder. Finally all are closed
and RSS read once more.

    python scripts/bench_idle.py                         # 10,000 connections
    python scripts/bench_idle.py --connections 2000 --json idle.json
    python scripts/bench_idle.py --responder-nofile 1024 # as under a default `ulimit -n`

Method and numbers: scripts/README.md, section bench_idle.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import select
import shlex
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402
import bench_calls  # noqa: E402
import bench_tcp  # noqa: E402

HOST = bench.HOST


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def nofile_limit(pid: int) -> tuple[str, str]:
    """(soft, hard) 'Max open files' of a process, from /proc/PID/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            fields = line.split()
            return fields[3], fields[4]
    return "?", "?"


def tcp_kernel_kib() -> int:
    """Kernel memory of all TCP sockets (/proc/net/sockstat 'TCP: ... mem PAGES')."""
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            return int(fields[fields.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    return 0


def wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def settled(pid: int, timeout: float = 3.0) -> None:
    """Waits until the process's count of open descriptors is the same twice 0.1 s apart."""
    deadline = time.monotonic() + timeout
    last = open_fds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = open_fds(pid)
        if now == last:
            return
        last = now


def raise_own_nofile(need: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        new = hard if hard == resource.RLIM_INFINITY else min(hard, max(need, soft))
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Hold many idle TCP connections against sip-responder: RSS per "
                    "connection, and that UDP and a new TCP connection are still answered.",
        epilog="Method: scripts/README.md, section bench_idle.py.")
    p.add_argument("--connections", type=int, default=10000,
                   help="connections to hold (default 10000)")
    p.add_argument("--responder-args", default="", help="extra sip-responder arguments")
    p.add_argument("--responder-nofile", type=int, metavar="SOFT",
                   help="start the responder with this RLIMIT_NOFILE soft limit (prlimit), "
                        "e.g. 1024 as a default `ulimit -n`; default: inherited")
    p.add_argument("--server-cpu", type=int, default=1, help="core for the server (default 1)")
    p.add_argument("--gen-cpu", type=int, default=0, help="core for this script (default 0)")
    p.add_argument("--no-pin", action="store_true", help="do not pin anything")
    p.add_argument("--json", metavar="FILE", help="also write the report here")
    args = p.parse_args(argv)
    if args.connections < 1 or args.connections > 25000:
        p.error("--connections: 1 to 25000 (one source address, one ephemeral port range)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    notes: list[str] = []
    bench_calls.pin_self(args, notes)
    mine = raise_own_nofile(args.connections + 64)
    if mine < args.connections + 64:
        print(f"bench_idle: this process may open only {mine} files", file=sys.stderr)
        return 2
    base = bench_calls.responder_command("responder", shlex.split(args.responder_args))
    if base is None:
        print("bench_idle: sip-responder is not installed (pip install -e .)", file=sys.stderr)
        return 2
    wrap: list[str] = []
    if args.responder_nofile:
        if shutil.which("prlimit") is None:
            print("bench_idle: --responder-nofile needs prlimit (util-linux)", file=sys.stderr)
            return 2
        wrap = ["prlimit", f"--nofile={args.responder_nofile}:"
                f"{resource.getrlimit(resource.RLIMIT_NOFILE)[1]}", "--"]

    def command(port: int, _work: Path) -> list[str]:
        return [*wrap, *base, "--listen", f"tcp:{HOST}:{port}", "--listen", f"udp:{HOST}:{port}"]

    report: dict[str, Any] = {"connections": args.connections, "machine": bench.machine_facts()}
    held: list[socket.socket] = []
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        server = bench_tcp.TcpRunning(bench.ServerSpec("responder", command), args.server_cpu,
                                      Path(tmp))
        report["command"] = shlex.join(server.cmd)
        try:
            bench_tcp.wait_ready_tcp(server)
            pid = server.proc.pid
            if wrap:  # prlimit execs the responder: same PID
                wait_for(lambda: "prlimit" not in Path(f"/proc/{pid}/cmdline").read_text(), 5)
            soft, hard = nofile_limit(pid)
            report["responder_nofile"] = {"soft": soft, "hard": hard}
            settled(pid)  # the readiness probe's connection closed on its side too
            fds0, rss0, kern0 = open_fds(pid), rss_kib(pid), tcp_kernel_kib()
            t0 = time.monotonic()
            refused = 0
            for _ in range(args.connections):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.settimeout(10)
                try:
                    sock.connect((HOST, server.port))
                except OSError:
                    refused += 1
                    sock.close()
                    continue
                held.append(sock)
            connect_s = time.monotonic() - t0
            all_in = wait_for(lambda: open_fds(pid) >= fds0 + len(held), 30)
            accepted = open_fds(pid) - fds0
            bench_tcp.udp_options(server.port)  # one more turn of its loop
            rss1, kern1 = rss_kib(pid), tcp_kernel_kib()
            # each sends one OPTIONS and reads its answer, then stays idle
            lport = {s: s.getsockname()[1] for s in held}
            for sock in held:
                with contextlib.suppress(OSError):
                    sock.sendall(bench_tcp.options_request(server.port, lport[sock]))
            answered = 0
            for sock in held:
                data = b""
                with contextlib.suppress(OSError):
                    while b"\r\n\r\n" not in data:
                        chunk = sock.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                answered += data.startswith(b"SIP/2.0 200")
            bench_tcp.udp_options(server.port)
            rss2, kern2 = rss_kib(pid), tcp_kernel_kib()
            udp_status = bench_tcp.udp_options(server.port).decode(errors="replace")
            try:
                tcp_status = bench_tcp.tcp_options(server.port).decode(errors="replace")
            except OSError as exc:
                tcp_status = f"failed: {exc}"
            # a close the responder made (an eviction) is readable within this wait
            poller = select.poll()
            for sock in held:
                poller.register(sock, select.POLLIN)
            poller.poll(1000)
            closed = 0
            for sock in held:
                try:
                    sock.setblocking(False)
                    closed += sock.recv(1, socket.MSG_PEEK) == b""
                except BlockingIOError:
                    pass
                except OSError:
                    closed += 1
            alive = server.alive()
            for sock in held:
                sock.close()
            held.clear()
            wait_for(lambda: open_fds(pid) <= fds0 + 2, 30)
            rss3 = rss_kib(pid)
            n = max(1, accepted)
            report.update({
                "connect_s": round(connect_s, 3), "refused": refused, "accepted": accepted,
                "all_accepted": all_in, "answered_on_held": answered,
                "rss_kib": {"before": rss0, "connected": rss1, "used_once": rss2,
                            "after_close": rss3},
                "per_connection_bytes": {"connected": round((rss1 - rss0) * 1024 / n),
                                         "used_once": round((rss2 - rss0) * 1024 / n)},
                "kernel_tcp_kib": {"before": kern0, "connected": kern1, "used_once": kern2},
                "udp_probe": udp_status, "tcp_probe": tcp_status,
                "held_closed_by_responder": closed, "responder_alive": alive,
            })
        except bench.BenchError as exc:
            print(f"bench_idle: {exc}", file=sys.stderr)
            return 1
        finally:
            for sock in held:
                sock.close()
            log = server.log_tail(5)
            server.stop()
    r = report
    print(f"# {r['machine']['date']}  loadavg "
          f"{' '.join(f'{x:.2f}' for x in r['machine']['loadavg_at_start'])}")
    print(f"# {r['command']}")
    print(f"responder RLIMIT_NOFILE: soft {r['responder_nofile']['soft']}, hard "
          f"{r['responder_nofile']['hard']}; this script's soft limit {mine}")
    print(f"connections: {args.connections} opened in {r['connect_s']:.2f} s, {r['refused']} "
          f"refused, {r['accepted']} accepted by the responder"
          + ("" if r["all_accepted"] else " (NOT all within 30 s)")
          + f", {r['answered_on_held']} answered one OPTIONS each")
    rss = r["rss_kib"]
    per = r["per_connection_bytes"]
    print(f"responder RSS: {rss['before']:,} KiB before, {rss['connected']:,} KiB connected "
          f"({per['connected']:,} bytes per connection), {rss['used_once']:,} KiB after one "
          f"OPTIONS each ({per['used_once']:,} bytes per connection), {rss['after_close']:,} "
          "KiB after all closed")
    kern = r["kernel_tcp_kib"]
    print(f"kernel TCP memory (all sockets, both ends): {kern['before']:,} KiB before, "
          f"{kern['connected']:,} connected, {kern['used_once']:,} after one OPTIONS each")
    print(f"while held: OPTIONS over UDP -> {r['udp_probe'] or 'no answer'}; over a new TCP "
          f"connection -> {r['tcp_probe'] or 'no answer'}; held connections closed by the "
          f"responder: {r['held_closed_by_responder']}; responder "
          + ("running" if r["responder_alive"] else "DEAD"))
    if not r["all_accepted"]:
        print(f"responder log tail:\n{log}")
    for note in notes:
        print(f"note: {note}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    ok = (r["all_accepted"] and r["udp_probe"].startswith("SIP/2.0 200")
          and r["tcp_probe"].startswith("SIP/2.0 200") and r["responder_alive"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
