#!/usr/bin/env python3
"""What one wake-up costs: CPU per datagram at a low fixed rate, where each datagram is read
on its own (the regime of scripts/bench_calls.py at 300 calls/s: about 900 requests a
second, each INVITE, ACK and BYE a wake-up of its own).

Three servers answer the same OPTIONS datagram, each pinned to core 1, a fresh process per run,
runs alternating; a paced client on core 0 sends ``--rate`` datagrams a second and reads
what comes back. The server's CPU time (user + system, /proc/PID/task/*/schedstat) over the
run, divided by the datagrams sent:

* ``c``: epoll, recvmmsg and sendmmsg in C, the datagram sent back as it came (the floor of
  any server: the kernel's share and the wake-up);
* ``python``: the same loop in Python on uvloop (what sip-responder uses), reading and
  sending with the extension's recv_many/send_many, the datagram sent back as it came: what
  one Python callback per wake-up costs before any SIP work;
* ``responder``: ``sip-responder -q`` answering it (parse, rules, build).

The difference between ``python`` and ``c`` is the price of entering Python once per
wake-up; three of them per call (INVITE, ACK, BYE) bound what answered calls per CPU-second
can reach with the Python loop, whatever the engine does (scripts/README.md).

    python scripts/bench_wakeup.py                  # 900 datagrams/s, 8 s, 3 repeats
    python scripts/bench_wakeup.py --rate 300 --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402  (scripts/bench.py: process, CPU and build helpers)

ECHO_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
/* echo PORT: every datagram on 127.0.0.1:PORT sent back to its source, batched */
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)atoi(argv[1]));
    a.sin_addr.s_addr = htonl(0x7f000001);
    if (bind(s, (struct sockaddr *)&a, sizeof a)) { perror("bind"); return 1; }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN};
    epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
    static char buf[64][2048];
    struct mmsghdr m[64];
    struct iovec io[64];
    struct sockaddr_in src[64];
    for (;;) {
        struct epoll_event e;
        if (epoll_wait(ep, &e, 1, -1) < 1) continue;
        for (;;) {
            for (int i = 0; i < 64; i++) {
                io[i].iov_base = buf[i];
                io[i].iov_len = sizeof buf[i];
                memset(&m[i], 0, sizeof m[i]);
                m[i].msg_hdr.msg_iov = &io[i];
                m[i].msg_hdr.msg_iovlen = 1;
                m[i].msg_hdr.msg_name = &src[i];
                m[i].msg_hdr.msg_namelen = sizeof src[i];
            }
            int n = recvmmsg(s, m, 64, 0, NULL);
            if (n <= 0) break;
            for (int i = 0; i < n; i++) io[i].iov_len = m[i].msg_len;
            sendmmsg(s, m, (unsigned)n, 0);
            if (n < 64) break;
        }
    }
}
"""

ECHO_PY = r"""
import asyncio, socket, sys
from functools import partial
import uvloop
from responder._accel import SPEEDUPS
from responder.core.effects import Send
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.setblocking(False)
fd, send, new = s.fileno(), SPEEDUPS.send_many, tuple.__new__
recv = partial(SPEEDUPS.recv_many, fd)
def readable():
    for _ in range(4):
        batch = recv()
        if batch:
            send(fd, 2, [new(Send, (src, data, None, None, None)) for data, src in batch], Send)
        if len(batch) < 64:
            break
async def main():
    asyncio.get_running_loop().add_reader(fd, readable)
    await asyncio.Event().wait()
uvloop.run(main())
"""

CLIENT = r"""
import socket, sys, time
port, rate, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
msg = sys.stdin.buffer.read()
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.connect(("127.0.0.1", port))
c.setblocking(False)
def drain():
    got = 0
    try:
        while True:
            c.recv(65535)
            got += 1
    except BlockingIOError:
        return got
n, got, t0 = int(rate * seconds), 0, time.monotonic()
for i in range(n):
    wait = t0 + i / rate - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    c.send(msg)
    got += drain()
time.sleep(0.2)
print(n, got + drain())
"""

SERVERS = ("c", "python", "responder")


def command(name: str, port: int, echo: Path) -> list[str]:
    if name == "c":
        return [str(echo), str(port)]
    if name == "python":
        return [sys.executable, "-c", ECHO_PY, str(port)]
    exe = bench.responder_exe()
    if exe is None:
        raise bench.BenchError("sip-responder not found next to this Python")
    return [exe, "-q", "--listen", f"127.0.0.1:{port}"]


def run_one(name: str, args: argparse.Namespace, echo: Path, work: Path) -> tuple[float, int]:
    """(server CPU ns per datagram sent, datagrams answered) of one run."""
    port = bench.free_udp_port()
    cmd = bench.pinned(None if args.no_pin else args.server_cpu, command(name, port, echo))
    log = work / f"{name}-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # bench.py's probe with a client port filled in: a request the compiled parser takes
        message = bench.probe_request("OPTIONS", port).replace(b"{lport}", b"5099")
        deadline = time.monotonic() + 20
        while True:  # ready: it answers
            if proc.poll() is not None:
                raise bench.BenchError(f"{name} exited: {log.read_text(errors='replace')}")
            probe = subprocess.run([sys.executable, "-c", CLIENT, str(port), "50", "0.1"],
                                   input=message, capture_output=True, timeout=10)
            if probe.returncode == 0 and probe.stdout.split()[1:] not in ([], [b"0"]):
                break
            time.sleep(0.1)
            if time.monotonic() > deadline:
                raise bench.BenchError(f"{name} does not answer on {port}")
        time.sleep(args.idle)
        pids = bench.process_tree(proc.pid)
        before = bench.cpu_sample(pids)
        client = bench.pinned(None if args.no_pin else args.gen_cpu,
                              [sys.executable, "-c", CLIENT, str(port), str(args.rate),
                               str(args.duration)])
        done = subprocess.run(client, input=message, capture_output=True,
                              timeout=args.duration + 30)
        after = bench.cpu_sample(pids)
        if done.returncode != 0:
            raise bench.BenchError(f"the client failed against {name}: "
                                   f"{done.stderr.decode(errors='replace')[-2000:]}")
        sent, got = (int(x) for x in done.stdout.split())
        run_ns, _ = bench.cpu_delta(before, after)
        return run_ns / max(sent, 1), got
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=900.0, help="datagrams a second (900)")
    p.add_argument("--duration", type=float, default=8.0, help="seconds per run (8)")
    p.add_argument("--repeat", type=int, default=3, help="rounds over the servers (3)")
    p.add_argument("--idle", type=float, default=0.5, help="seconds idle before each run")
    p.add_argument("--servers", default=",".join(SERVERS), help="of: " + ", ".join(SERVERS))
    p.add_argument("--server-cpu", type=int, default=1)
    p.add_argument("--gen-cpu", type=int, default=0)
    p.add_argument("--no-pin", action="store_true")
    args = p.parse_args(argv)
    names = [n for n in args.servers.split(",") if n]
    if any(n not in SERVERS for n in names):
        p.error(f"--servers: of {', '.join(SERVERS)}")
    echo = bench.build_c("wakeup-echo", ECHO_C, bench.cache_dir(None))
    per: dict[str, list[float]] = {n: [] for n in names}
    answered: dict[str, int] = dict.fromkeys(names, 0)
    with tempfile.TemporaryDirectory(prefix="bench-wakeup-") as tmp:
        for _ in range(args.repeat):
            for name in names:
                ns, got = run_one(name, args, echo, Path(tmp))
                per[name].append(ns)
                answered[name] += got
    print(f"\n{args.rate:g} datagrams/s, {args.duration:g} s x {args.repeat}, "
          f"server CPU (user + system) per datagram, medians:\n")
    print(f"{'server':10} {'us/datagram':>12} {'x c':>6}  runs (us)")
    base = statistics.median(per["c"]) if "c" in per else None
    for name in names:
        med = statistics.median(per[name])
        ratio = f"{med / base:6.2f}" if base else "     -"
        runs = ", ".join(f"{v / 1000:.1f}" for v in per[name])
        print(f"{name:10} {med / 1000:12.1f} {ratio}  {runs}   answered {answered[name]}")
    if "c" in per and "python" in per:
        extra = (statistics.median(per["python"]) - statistics.median(per["c"])) / 1000
        print(f"\nentering Python once per wake-up: {extra:.1f} us; three per call "
              f"(INVITE, ACK, BYE): {3 * statistics.median(per['python']) / 1000:.0f} us "
              f"of CPU per call before any SIP work")
    return 0


if __name__ == "__main__":
    sys.exit(main())
