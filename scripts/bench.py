#!/usr/bin/env python3
"""Throughput and CPU cost of sip-responder against Kamailio, SIPp and a C reflector.

Each server runs pinned to one core (``taskset -c 1``), the C load generator
(``scripts/loadgen.c``, built with ``gcc -O2`` on first use) on the other (``taskset -c 0``).
The servers take turns under the same load (A, B, C, A, B, C, ...), each run with a fresh
server process and a warm-up first. The server's CPU time is read from
``/proc/PID/task/*/schedstat`` of all its processes and threads right before and right after
the measured run. The table shows medians over the repeats; the ratio to Kamailio is the
median of same-repeat ratios, so a noisy neighbour hurts both sides of a ratio alike.

    python scripts/bench.py                                  # closed loop, 64 in flight
    python scripts/bench.py --mode open --rate 20000         # open loop, 20k requests/s
    python scripts/bench.py --servers responder,kamailio --responder-args "--workers 2"

See scripts/README.md for the method and what each number means.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LOADGEN_SRC = HERE / "loadgen.c"
ALL_SERVERS = ("responder", "kamailio", "sipp", "reflector")
# Also known, not run by default: "responder-log" (sip-responder without -q: one text log
# line per exchange, to a file), "responder-pure" (SIP_RESPONDER_PURE=1: without the
# compiled fast path) and "responder-w2" (--workers 2; measure it with --no-pin).
MORE_SERVERS = ("responder-log", "responder-pure", "responder-w2")
CFLAGS = ("-O2", "-Wall", "-Wextra")
HOST = "127.0.0.1"

# A server that answers each datagram with the same bytes, plus the request's Call-ID line so
# the load generator can match the answer: one recvmmsg and one sendmmsg per batch, no parsing.
# The floor of what any UDP server pays per request on this machine.
REFLECTOR_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#define B 64
static const char HEAD[] =
    "SIP/2.0 200 OK\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-reflector0000000;rport=5062\r\n"
    "From: <sip:loadgen@127.0.0.1:5062>;tag=0000000000\r\n"
    "To: <sip:bench@127.0.0.1:5060>;tag=reflector0\r\n";
static const char TAIL[] = "CSeq: 1 OPTIONS\r\nServer: reflector\r\nContent-Length: 0\r\n\r\n";
int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: reflector PORT\n"); return 2; }
    int fd = socket(AF_INET, SOCK_DGRAM, 0), size = 4 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_port = htons((unsigned short)atoi(argv[1]));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); return 1; }
    static char in[B][4096], out[B][1024];
    static struct sockaddr_in peer[B];
    static struct mmsghdr rm[B], sm[B];
    static struct iovec ri[B], si[B];
    for (;;) {
        for (int i = 0; i < B; i++) {
            ri[i].iov_base = in[i];
            ri[i].iov_len = sizeof in[i];
            memset(&rm[i].msg_hdr, 0, sizeof rm[i].msg_hdr);
            rm[i].msg_hdr.msg_iov = &ri[i];
            rm[i].msg_hdr.msg_iovlen = 1;
            rm[i].msg_hdr.msg_name = &peer[i];
            rm[i].msg_hdr.msg_namelen = sizeof peer[i];
        }
        int n = recvmmsg(fd, rm, B, MSG_WAITFORONE, NULL);
        if (n <= 0) continue;
        for (int i = 0; i < n; i++) {
            size_t len = sizeof HEAD - 1, inlen = rm[i].msg_len;
            memcpy(out[i], HEAD, len);
            const char *c = memmem(in[i], inlen, "\nCall-ID:", 9);
            if (c) {
                const char *e = memchr(c + 1, '\n', inlen - (size_t)(c + 1 - in[i]));
                size_t cl = e ? (size_t)(e - c) : 0;
                if (cl > 0 && cl < 256) { memcpy(out[i] + len, c + 1, cl); len += cl; }
            }
            memcpy(out[i] + len, TAIL, sizeof TAIL - 1);
            len += sizeof TAIL - 1;
            si[i].iov_base = out[i];
            si[i].iov_len = len;
            memset(&sm[i].msg_hdr, 0, sizeof sm[i].msg_hdr);
            sm[i].msg_hdr.msg_iov = &si[i];
            sm[i].msg_hdr.msg_iovlen = 1;
            sm[i].msg_hdr.msg_name = &peer[i];
            sm[i].msg_hdr.msg_namelen = rm[i].msg_hdr.msg_namelen;
        }
        sendmmsg(fd, sm, (unsigned)n, 0);
    }
}
"""

# Kamailio, stateless: one UDP worker answers every request with sl_send_reply. INVITE gets
# 100, 180, 200 like sip-responder's default rules and the SIPp scenario below.
KAMAILIO_CFG = """#!KAMAILIO
debug=1
log_stderror=yes
fork=yes
children=1
disable_tcp=yes
auto_aliases=no
dns=no
rev_dns=no
listen=udp:{host}:{port}
mpath="{mpath}"
loadmodule "sl.so"
request_route {{
    if (method == "INVITE") {{
        sl_send_reply("100", "Trying");
        sl_send_reply("180", "Ringing");
    }}
    sl_send_reply("200", "OK");
    exit;
}}
"""

SIPP_OPTIONS_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="UAS: OPTIONS gets 200">
  <recv request="OPTIONS" />
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""

# Not `sipp -sn uas`: that one retransmits its 200 until an ACK comes and then waits for a
# BYE, so it would measure a whole call. This one answers like the other servers and ends.
SIPP_INVITE_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="UAS: INVITE gets 100, 180, 200">
  <recv request="INVITE" />
  <send>
    <![CDATA[

      SIP/2.0 100 Trying
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <send>
    <![CDATA[

      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

    ]]>
  </send>
</scenario>
"""


class BenchError(Exception):
    """A run or a server failed in a way the user should see."""


# ----------------------------------------------------------------------------- building


def cache_dir(explicit: str | None) -> Path:
    if explicit:
        path = Path(explicit)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "sip-responder-bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_c(name: str, source: str, cache: Path) -> Path:
    """Compiles source with gcc -O2 unless a binary of exactly this source is cached."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise BenchError("gcc not found (apt-get install -y gcc)")
    key = hashlib.sha256((source + "\0" + " ".join(CFLAGS)).encode()).hexdigest()[:16]
    binary = cache / f"{name}-{key}"
    if binary.exists():
        return binary
    src = cache / f"{name}-{key}.c"
    src.write_text(source)
    tmp = cache / f".{name}-{key}.{os.getpid()}"
    run = subprocess.run([gcc, *CFLAGS, "-o", str(tmp), str(src)],
                         capture_output=True, text=True, timeout=120)
    if run.returncode != 0:
        raise BenchError(f"building {name} failed:\n{run.stderr}")
    tmp.replace(binary)  # atomic: a concurrent run sees either nothing or the whole binary
    return binary


# ----------------------------------------------------------------------------- /proc


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields from state (3rd) on


def start_time(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def process_tree(root: int) -> list[int]:
    """root and all its descendants, from the ppid links in /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


@dataclass
class CpuSample:
    on_cpu_ns: int = 0  # schedstat field 1: time spent running
    waiting_ns: int = 0  # schedstat field 2: time runnable but waiting for the CPU
    by_thread: dict[int, tuple[int, int]] = field(default_factory=dict)


def cpu_sample(pids: Sequence[int]) -> CpuSample:
    """Sums /proc/PID/task/*/schedstat over every thread of the given processes."""
    sample = CpuSample()
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in os.scandir(f"/proc/{pid}/task"):
                try:
                    run, wait, _ = Path(task.path, "schedstat").read_text().split()
                except (OSError, ValueError):
                    continue
                sample.by_thread[int(task.name)] = (int(run), int(wait))
    sample.on_cpu_ns = sum(r for r, _ in sample.by_thread.values())
    sample.waiting_ns = sum(w for _, w in sample.by_thread.values())
    return sample


def cpu_delta(before: CpuSample, after: CpuSample) -> tuple[int, int]:
    """(on-CPU ns, runqueue-wait ns) between samples; threads born in between count from 0."""
    run = wait = 0
    for tid, (r1, w1) in after.by_thread.items():
        r0, w0 = before.by_thread.get(tid, (0, 0))
        run += max(0, r1 - r0)
        wait += max(0, w1 - w0)
    return run, wait


# ----------------------------------------------------------------------------- servers


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def kamailio_mpath() -> str | None:
    candidates = [Path("/usr/lib/x86_64-linux-gnu/kamailio/modules"),
                  *sorted(Path("/usr/lib").glob("*/kamailio/modules")),
                  Path("/usr/lib/kamailio/modules"), Path("/usr/lib64/kamailio/modules"),
                  Path("/usr/local/lib64/kamailio/modules"),
                  Path("/usr/local/lib/kamailio/modules")]
    for path in candidates:
        if (path / "sl.so").exists():
            return str(path)
    return None


def responder_exe() -> str | None:
    """The sip-responder console script next to this Python first (no pyenv shim in between)."""
    return (shutil.which("sip-responder", path=str(Path(sys.executable).parent))
            or shutil.which("sip-responder"))


@dataclass
class ServerSpec:
    name: str
    # builds the command for a port and a scratch dir; raises BenchError when not available
    command: Callable[[int, Path], list[str]]
    version: str = ""


def server_specs(args: argparse.Namespace, cache: Path) -> tuple[list[ServerSpec], list[str]]:
    """The servers asked for that are installed here, and a note for each one that is not."""
    specs: list[ServerSpec] = []
    notes: list[str] = []
    for name in args.servers:
        if name in ("responder", *MORE_SERVERS):
            exe = responder_exe()
            if exe is None:
                notes.append(f"{name}: skipped, sip-responder is not installed "
                             "(pip install -e .)")
                continue
            extra = shlex.split(args.responder_args)
            quiet = [] if name == "responder-log" else ["-q"]
            env = ["env", "SIP_RESPONDER_PURE=1"] if name == "responder-pure" else []
            if name == "responder-w2":
                extra = [*extra, "--workers", "2"]

            def responder_cmd(port: int, _work: Path, exe: str = exe, extra: list[str] = extra,
                              quiet: list[str] = quiet, env: list[str] = env) -> list[str]:
                return [*env, exe, "--listen", f"{HOST}:{port}", *quiet, *extra]

            specs.append(ServerSpec(name, responder_cmd, _version([exe, "--version"])))
        elif name == "kamailio":
            exe = shutil.which("kamailio")
            mpath = args.kamailio_mpath or kamailio_mpath()
            if exe is None or mpath is None:
                notes.append("kamailio: skipped, not installed (apt-get install -y kamailio)")
                continue

            def kamailio_cmd(port: int, work: Path, exe: str = exe,
                             mpath: str = mpath) -> list[str]:
                cfg = work / f"kamailio-{port}.cfg"
                cfg.write_text(KAMAILIO_CFG.format(host=HOST, port=port, mpath=mpath))
                return [exe, "-f", str(cfg), "-DD", "-E", "-x", args.kamailio_mem,
                        "-m", "64", "-M", "8", "-w", str(work)]

            specs.append(ServerSpec("kamailio", kamailio_cmd, _version([exe, "-v"])))
        elif name == "sipp":
            exe = shutil.which("sipp")
            if exe is None:
                notes.append("sipp: skipped, not installed (apt-get install -y sip-tester)")
                continue

            def sipp_cmd(port: int, work: Path, exe: str = exe) -> list[str]:
                xml = work / f"sipp-uas-{args.method.lower()}.xml"
                xml.write_text(SIPP_INVITE_XML if args.method == "INVITE" else SIPP_OPTIONS_XML)
                return [exe, "-sf", str(xml), "-i", HOST, "-p", str(port), "-t", "u1",
                        "-nostdin"]

            specs.append(ServerSpec("sipp", sipp_cmd, _version([exe, "-v"])))
        elif name == "reflector":
            binary = build_c("reflector", REFLECTOR_C, cache)

            def reflector_cmd(port: int, _work: Path, binary: Path = binary) -> list[str]:
                return [str(binary), str(port)]

            specs.append(ServerSpec("reflector", reflector_cmd, "C, recvmmsg+sendmmsg"))
        else:
            known = ", ".join((*ALL_SERVERS, *MORE_SERVERS))
            raise BenchError(f"unknown server {name!r}; choose from {known}")
    return specs, notes


def _version(cmd: list[str]) -> str:
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = [ln.strip() for ln in (run.stdout + run.stderr).splitlines() if ln.strip()]
    return lines[0] if lines else "?"


def pinned(cpu: int | None, cmd: list[str]) -> list[str]:
    return cmd if cpu is None else ["taskset", "-c", str(cpu), *cmd]


class Running:
    """One server process (and whatever it forks), started by us, stopped by PID."""

    def __init__(self, spec: ServerSpec, cpu: int | None, work: Path) -> None:
        self.spec = spec
        self.port = free_udp_port()
        self.cmd = pinned(cpu, spec.command(self.port, work))
        self.log = work / f"{spec.name}-{self.port}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=work,
                                         start_new_session=True)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if not self.alive():
            return
        # remember every process of the tree (pid + start time) before the parent goes away
        tree = [(pid, start_time(pid)) for pid in process_tree(self.proc.pid)]
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait(timeout=5)
        deadline = time.monotonic() + 3
        for pid, started in tree:
            while start_time(pid) == started and started is not None:
                if time.monotonic() > deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    break
                time.sleep(0.05)


def probe_request(method: str, port: int) -> bytes:
    tag = uuid.uuid4().hex[:8]
    lines = [f"{method} sip:bench@{HOST}:{port} SIP/2.0",
             f"Via: SIP/2.0/UDP {HOST}:{{lport}};branch=z9hG4bK-probe{tag};rport",
             "Max-Forwards: 70",
             f"From: <sip:probe@{HOST}:{{lport}}>;tag={tag}",
             f"To: <sip:bench@{HOST}:{port}>",
             f"Call-ID: probe-{tag}@{HOST}",
             f"CSeq: 1 {method}",
             f"Contact: <sip:probe@{HOST}:{{lport}}>",
             "Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def wait_ready(server: Running, method: str, timeout: float = 20.0) -> None:
    """Sends a probe request every 100 ms until the server answers."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        lport = sock.getsockname()[1]
        request = probe_request(method, server.port).replace(b"{lport}", str(lport).encode())
        sock.settimeout(0.1)
        while time.monotonic() < deadline:
            if not server.alive():
                raise BenchError(f"{server.spec.name} exited at start:\n{server.log_tail()}")
            with contextlib.suppress(OSError):
                sock.sendto(request, (HOST, server.port))
            try:
                data = sock.recv(65535)
            except (TimeoutError, ConnectionRefusedError):
                continue
            except OSError:
                time.sleep(0.1)
                continue
            if data.startswith(b"SIP/2.0 "):
                return
    raise BenchError(f"{server.spec.name} did not answer within {timeout:.0f} s:\n"
                     f"{server.log_tail()}")


# ----------------------------------------------------------------------------- load


def loadgen_cmd(binary: Path, args: argparse.Namespace, port: int, duration: float,
                mode: str, grace: float) -> list[str]:
    cmd = [str(binary), "-a", HOST, "-p", str(port), "-m", args.method,
           "-S", str(args.sockets), "-b", str(args.batch), "-d", f"{duration:g}",
           "-g", f"{grace:g}"]
    cmd += ["-w", str(args.inflight)] if mode == "closed" else ["-r", f"{args.rate:g}"]
    return pinned(args.gen_cpu, cmd)


def run_loadgen(cmd: list[str], duration: float, grace: float) -> dict[str, Any]:
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + grace + 30)
    except subprocess.TimeoutExpired as exc:
        raise BenchError("loadgen did not finish in time") from exc
    if run.returncode != 0:
        raise BenchError(f"loadgen failed ({run.returncode}): {run.stderr.strip()}")
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


@dataclass
class RunResult:
    server: str
    repeat: int
    mode: str
    ok: bool = True
    error: str = ""
    rate: float = 0.0  # final responses per second of sending
    per_cpu_s: float = 0.0  # final responses per CPU-second of the server
    server_cpu_s: float = 0.0
    server_cpu_pct: float = 0.0
    server_wait_pct: float = 0.0  # runnable but not running: someone else had the core
    server_idle_cpu_pct: float = 0.0  # before the load, with no traffic at all
    server_procs: int = 0
    server_threads: int = 0
    p50_us: float = 0.0
    p99_us: float = 0.0
    p999_us: float = 0.0
    loss_pct: float = 0.0
    gen_cpu_pct: float = 0.0
    loadgen: dict[str, Any] = field(default_factory=dict)


def measure(spec: ServerSpec, args: argparse.Namespace, loadgen: Path, work: Path,
            repeat: int, mode: str) -> tuple[RunResult, str]:
    result = RunResult(spec.name, repeat, mode)
    server = Running(spec, args.server_cpu, work)
    cmdline = shlex.join(server.cmd)
    try:
        wait_ready(server, args.method)
        root = server.proc.pid
        idle0 = cpu_sample(process_tree(root))
        time.sleep(args.idle)
        idle1 = cpu_sample(process_tree(root))
        result.server_idle_cpu_pct = 100 * cpu_delta(idle0, idle1)[0] / 1e9 / args.idle
        if args.warmup > 0:
            run_loadgen(loadgen_cmd(loadgen, args, server.port, args.warmup, mode, 0.2),
                        args.warmup, 0.2)
        cmd = loadgen_cmd(loadgen, args, server.port, args.duration, mode, args.grace)
        pids = process_tree(root)
        before = cpu_sample(pids)
        lg = run_loadgen(cmd, args.duration, args.grace)
        pids = process_tree(root)
        after = cpu_sample(pids)
        if not server.alive():
            raise BenchError(f"{spec.name} died during the run:\n{server.log_tail()}")
        on_cpu, waiting = cpu_delta(before, after)
        elapsed = float(lg["elapsed_s"])
        result.loadgen = lg
        result.rate = float(lg["rate"])
        result.server_cpu_s = on_cpu / 1e9
        result.per_cpu_s = lg["received"] / result.server_cpu_s if on_cpu else 0.0
        result.server_cpu_pct = 100 * result.server_cpu_s / elapsed
        result.server_wait_pct = 100 * waiting / 1e9 / elapsed
        result.server_procs = len(pids)
        result.server_threads = len(after.by_thread)
        result.p50_us = float(lg["p50_us"])
        result.p99_us = float(lg["p99_us"])
        result.p999_us = float(lg["p999_us"])
        result.loss_pct = float(lg["loss_pct"])
        result.gen_cpu_pct = 100 * float(lg["cpu_s"]) / elapsed
    except BenchError as exc:
        result.ok = False
        result.error = str(exc)
    finally:
        server.stop()
    return result, cmdline


# ----------------------------------------------------------------------------- report


def machine_facts() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
    }


@dataclass
class Summary:
    server: str
    runs: int
    rate: float
    per_cpu_s: float
    vs_kamailio: float | None
    server_cpu_pct: float
    server_wait_pct: float
    p50_us: float
    p99_us: float
    loss_pct: float
    gen_cpu_pct: float
    server_idle_cpu_pct: float
    per_cpu_s_runs: list[float]
    limit: str  # which side had its core full: server, generator, both or neither ("-")


def limit_of(server_cpu_pct: float, gen_cpu_pct: float, threshold: float = 85.0) -> str:
    server, gen = server_cpu_pct >= threshold, gen_cpu_pct >= threshold
    return {(True, True): "both", (True, False): "server", (False, True): "generator"}.get(
        (server, gen), "-")


def summarize(results: list[RunResult], names: list[str],
              kamailio: dict[int, float]) -> list[Summary]:
    """Medians per server; the Kamailio ratio is the median of same-repeat ratios."""
    kam = kamailio
    out = []
    for name in names:
        runs = [r for r in results if r.server == name and r.ok]
        if not runs:
            continue
        ratios = [r.per_cpu_s / kam[r.repeat] for r in runs if kam.get(r.repeat)]

        def med(values: list[float]) -> float:
            return statistics.median(values)

        out.append(Summary(
            server=name, runs=len(runs),
            rate=med([r.rate for r in runs]),
            per_cpu_s=med([r.per_cpu_s for r in runs]),
            vs_kamailio=med(ratios) if ratios else None,
            server_cpu_pct=med([r.server_cpu_pct for r in runs]),
            server_wait_pct=med([r.server_wait_pct for r in runs]),
            p50_us=med([r.p50_us for r in runs]),
            p99_us=med([r.p99_us for r in runs]),
            loss_pct=med([r.loss_pct for r in runs]),
            gen_cpu_pct=med([r.gen_cpu_pct for r in runs]),
            server_idle_cpu_pct=med([r.server_idle_cpu_pct for r in runs]),
            per_cpu_s_runs=[round(r.per_cpu_s) for r in runs],
            limit=limit_of(med([r.server_cpu_pct for r in runs]),
                           med([r.gen_cpu_pct for r in runs])),
        ))
    return out


def generator_lines(results: list[RunResult], args: argparse.Namespace,
                    ceiling_name: str) -> list[str]:
    """The generator's best rate against the reflector, next to the best run of each server."""
    ok = [r for r in results if r.ok]
    refl = [r for r in ok if r.server == ceiling_name
            or (r.server == "reflector" and r.mode == "closed")]
    if not refl:
        return ["generator: no closed-loop reflector run, so no ceiling measured "
                "(add reflector to --servers)"]
    best = max(refl, key=lambda r: r.rate)
    cost = 1e6 * best.loadgen["cpu_s"] / max(1, best.loadgen["received"])
    lines = [f"generator ceiling: {best.rate:,.0f} resp/s against the reflector (best of "
             f"{len(refl)}, closed loop, {args.inflight} in flight), generator at "
             f"{best.gen_cpu_pct:.0f}% of its core, {cost:.1f} us of CPU per response"]
    servers = sorted({r.server for r in ok} - {"reflector", ceiling_name})
    for name in servers:
        top = max((r for r in ok if r.server == name), key=lambda r: r.rate)
        lines.append(f"  best {name} run: {top.rate:,.0f} resp/s = {top.rate / best.rate:.2f}x "
                     f"the ceiling (server CPU {top.server_cpu_pct:.0f}%, generator CPU "
                     f"{top.gen_cpu_pct:.0f}%)")
    return lines


def table(rows: list[Summary]) -> str:
    head = ("server", "resp/s", "resp/CPU-s", "vs kam", "srv CPU%", "srv wait%", "p50 us",
            "p99 us", "loss %", "gen CPU%", "limit")
    body = []
    for s in rows:
        body.append((s.server, f"{s.rate:,.0f}", f"{s.per_cpu_s:,.0f}",
                     "-" if s.vs_kamailio is None else f"{s.vs_kamailio:.2f}",
                     f"{s.server_cpu_pct:.0f}", f"{s.server_wait_pct:.0f}",
                     f"{s.p50_us:,.0f}", f"{s.p99_us:,.0f}", f"{s.loss_pct:.2f}",
                     f"{s.gen_cpu_pct:.0f}", s.limit))
    widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in (head, *body)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Responses per second and per server CPU-second of sip-responder, Kamailio "
                    "(stateless, one worker), SIPp (UAS) and a C reflector, on loopback UDP, "
                    "each server pinned to one core and the C load generator to the other.",
        epilog="Method and meaning of the columns: scripts/README.md.")
    p.add_argument("--mode", choices=("closed", "open"), default="closed",
                   help="closed: --inflight requests always in flight; open: --rate "
                        "requests/s whatever the server does (default closed)")
    p.add_argument("--inflight", type=int, default=64,
                   help="closed loop: requests in flight, over all sockets (default 64)")
    p.add_argument("--rate", type=float, default=20000.0,
                   help="open loop: requests per second (default 20000)")
    p.add_argument("--duration", type=float, default=3.0,
                   help="seconds of load per measured run (default 3)")
    p.add_argument("--repeat", type=int, default=3,
                   help="rounds over all servers; medians are reported (default 3)")
    p.add_argument("--method", choices=("OPTIONS", "INVITE"), default="OPTIONS")
    p.add_argument("--servers", default=",".join(ALL_SERVERS),
                   help=f"comma-separated, in run order (default {','.join(ALL_SERVERS)}); "
                        "missing ones are skipped with a note; also known: "
                        "responder-log (without -q: a log line per exchange), responder-pure "
                        "(SIP_RESPONDER_PURE=1: no compiled fast path), responder-w2 "
                        "(--workers 2)")
    p.add_argument("--responder-args", default="",
                   help='extra arguments for sip-responder, e.g. "--workers 2"')
    p.add_argument("--json", metavar="FILE", help="also write every run and the summary here")
    p.add_argument("--sockets", type=int, default=8,
                   help="load generator source sockets (default 8)")
    p.add_argument("--batch", type=int, default=32,
                   help="load generator sendmmsg/recvmmsg batch (default 32)")
    p.add_argument("--warmup", type=float, default=1.0,
                   help="seconds of the same load before each measured run (default 1)")
    p.add_argument("--grace", type=float, default=0.5,
                   help="seconds to wait for late responses after the run (default 0.5)")
    p.add_argument("--idle", type=float, default=0.5,
                   help="seconds the server's idle CPU use is measured at start (default 0.5)")
    p.add_argument("--server-cpu", type=int, default=1, help="core for the server (default 1)")
    p.add_argument("--gen-cpu", type=int, default=0,
                   help="core for the load generator and this script (default 0)")
    p.add_argument("--no-pin", action="store_true", help="do not pin anything to a core")
    p.add_argument("--kamailio-mem", choices=("fm", "qm", "tlsf"), default="fm",
                   help="Kamailio memory manager, -x (default fm; Debian's default qm spends "
                        "most of its time in qm_malloc)")
    p.add_argument("--kamailio-mpath", help="Kamailio modules dir (default: found)")
    p.add_argument("--cache-dir", help="where the C programs are built "
                                       "(default ~/.cache/sip-responder-bench)")
    args = p.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for name in args.servers:
        if name not in ALL_SERVERS and name not in MORE_SERVERS:
            p.error(f"unknown server {name!r}; choose from "
                    f"{', '.join((*ALL_SERVERS, *MORE_SERVERS))}")
    if args.repeat < 1 or args.duration <= 0 or args.inflight < 1 or args.rate <= 0:
        p.error("--repeat, --duration, --inflight and --rate must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    notes: list[str] = []
    if args.no_pin:
        args.server_cpu = args.gen_cpu = None
    else:
        usable = os.sched_getaffinity(0)
        if shutil.which("taskset") is None or not {args.server_cpu, args.gen_cpu} <= usable \
                or args.server_cpu == args.gen_cpu:
            notes.append("not pinned: taskset missing or cores "
                         f"{args.gen_cpu}/{args.server_cpu} not both usable")
            args.server_cpu = args.gen_cpu = None
        else:
            os.sched_setaffinity(0, {args.gen_cpu})  # keep this script off the server's core
    cache = cache_dir(args.cache_dir)
    try:
        loadgen = build_c("loadgen", LOADGEN_SRC.read_text(), cache)
        specs, skipped = server_specs(args, cache)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    notes += skipped
    if not specs:
        print("bench: no server to measure", file=sys.stderr)
        for note in notes:
            print(f"  {note}", file=sys.stderr)
        return 2

    facts = machine_facts()
    load = (f"closed loop, {args.inflight} {args.method} in flight" if args.mode == "closed"
            else f"open loop, {args.rate:,.0f} {args.method}/s")
    print(f"# {load}, {args.duration:g} s per run, {args.repeat} repeats, "
          f"{args.sockets} source sockets")
    loadavg = " ".join(f"{x:.2f}" for x in facts["loadavg_at_start"])
    print(f"# {facts['date']}  nproc={facts['nproc']}  cpu={facts['cpu_model']}  "
          f"kernel={facts['kernel']}  loadavg={loadavg}")
    pin = (f"server on core {args.server_cpu}, load generator on core {args.gen_cpu}"
           if args.server_cpu is not None else "no pinning")
    print(f"# {pin}; loadgen {loadgen}")
    sys.stdout.flush()

    # the generator's ceiling: in open-loop mode the reflector also gets a closed-loop run
    plan: list[tuple[ServerSpec, str]] = [(s, args.mode) for s in specs]
    ceiling_name = "reflector (closed)"
    if args.mode == "open" and any(s.name == "reflector" for s in specs):
        refl = next(s for s in specs if s.name == "reflector")
        plan.append((ServerSpec(ceiling_name, refl.command, refl.version), "closed"))

    results: list[RunResult] = []
    commands: dict[str, str] = {}
    failed: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="sip-bench-") as tmp:
        work = Path(tmp)
        for rep in range(1, args.repeat + 1):
            for spec, mode in plan:
                if spec.name in failed:
                    continue
                res, cmdline = measure(spec, args, loadgen, work, rep, mode)
                commands.setdefault(spec.name, cmdline)
                results.append(res)
                if res.ok:
                    print(f"  [{rep}/{args.repeat}] {spec.name:<18} {res.rate:>9,.0f} resp/s "
                          f"{res.per_cpu_s:>9,.0f} resp/CPU-s  srv CPU {res.server_cpu_pct:3.0f}%"
                          f"  wait {res.server_wait_pct:3.0f}%  p50 {res.p50_us:,.0f} us  "
                          f"loss {res.loss_pct:.2f}%  gen CPU {res.gen_cpu_pct:.0f}%",
                          file=sys.stderr)
                else:
                    print(f"  [{rep}/{args.repeat}] {spec.name}: FAILED: {res.error}",
                          file=sys.stderr)
                    if rep == 1:
                        failed.add(spec.name)
                        notes.append(f"{spec.name}: failed, left out: "
                                     f"{res.error.splitlines()[0]}")

    names = [spec.name for spec, _ in plan]
    kamailio = {r.repeat: r.per_cpu_s for r in results if r.server == "kamailio" and r.ok}
    # the ceiling run is closed loop while the others are open: no ratio across modes
    summary = summarize(results, [n for n in names if n != ceiling_name], kamailio)
    summary += summarize(results, [n for n in names if n == ceiling_name], {})
    print()
    print(table(summary))
    print()
    for line in generator_lines(results, args, ceiling_name):
        print(line)
    gen_display = shlex.join(loadgen_cmd(loadgen, args, 0, args.duration, args.mode,
                                         args.grace)).replace(" -p 0 ", " -p PORT ")
    print(f"loadgen: {gen_display}")
    print("resp/CPU-s per repeat: " + "; ".join(
        f"{s.server} {', '.join(f'{v:,}' for v in s.per_cpu_s_runs)}" for s in summary))
    idle = {s.server: s.server_idle_cpu_pct for s in summary}
    for spec, _ in plan:
        if spec.name in commands:
            idle_note = f"; idle CPU {idle[spec.name]:.1f}%" if spec.name in idle else ""
            print(f"{spec.name}: {spec.version}{idle_note}\n    {commands[spec.name]}")
    for note in notes:
        print(f"note: {note}")

    if args.json:
        doc = {"machine": facts, "args": {k: v for k, v in vars(args).items()},
               "loadgen": gen_display,
               "commands": commands, "versions": {s.name: s.version for s, _ in plan},
               "notes": notes, "summary": [asdict(s) for s in summary],
               "runs": [asdict(r) for r in results]}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if summary else 1


if __name__ == "__main__":
    sys.exit(main())
