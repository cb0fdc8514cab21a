#!/usr/bin/env python3
"""CPU cost of the slowest datagram shapes, per datagram, through Engine.receive.

SPEC §10: no datagram may cost more than 10 ms of CPU. Each shape below is one datagram of
at most 65,535 bytes built to make the parser (or the builder) work hardest: thousands of
Contacts, header names, Via lines, a maximum-size body or Request-URI, and so on. Each is
fed to an engine with the built-in default rules ``--n`` times per run; the table shows the
median over ``--runs`` runs of CPU time (``time.process_time``) per datagram, in ms, the
answer it got and the size of that answer.

    python scripts/bench_hostile.py [--runs 5] [--n 20] [--only SHAPE]

Compare two trees: ``PYTHONPATH=/tmp/before python scripts/bench_hostile.py`` runs the same
shapes against another checkout (the script prints which ``responder`` it imported).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import responder
from responder.core.effects import Inbound, Send
from responder.core.engine import Engine
from responder.rules.loader import build_ruleset
from responder.sip.parser import _fast_parse
from responder.sip.seeded import Seeded

MAX = 65535  # the largest UDP payload
SRC = ("192.0.2.10", 5062)
LOCAL = ("127.0.0.1", 5060)


def message(method: str, extra: bytes, body: bytes = b"", uri: bytes = b"sip:1000@lab") -> bytes:
    """A well-formed request with ``extra`` header lines (each ending in CRLF)."""
    cseq = method.encode()
    return (b"%s %s SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-hostile;rport\r\n"
            b"Max-Forwards: 70\r\n"
            b"From: <sip:a@lab>;tag=1\r\n"
            b"To: <sip:1000@lab>\r\n"
            b"Call-ID: hostile@lab\r\n"
            b"CSeq: 1 %s\r\n"
            b"%s"
            b"Content-Length: %d\r\n\r\n%s" % (method.encode(), uri, cseq, extra, len(body), body))


def fill(method: str, unit: Callable[[int], bytes], body: bytes = b"") -> bytes:
    """``message`` with as many ``unit(i)`` lines as fit in one datagram."""
    base = len(message(method, b"", body))
    parts, size, i = [], base, 0
    while True:
        u = unit(i)
        if size + len(u) > MAX:
            break
        parts.append(u)
        size += len(u)
        i += 1
    return message(method, b"".join(parts), body)


def _name(i: int) -> bytes:
    """A distinct short header name per i (letters only: a token)."""
    out = b""
    i += 1
    while i:
        i, r = divmod(i, 26)
        out += bytes([97 + r])
    return b"x" + out


_fresh = [0]


def _fresh_names() -> bytes:
    """Distinct names no earlier datagram had: no cache of names helps."""
    _fresh[0] += 1
    prefix = _name(_fresh[0])
    return fill("OPTIONS", lambda i: prefix + b"-" + _name(i) + b":\r\n")


def _one_line(head: bytes, item: bytes) -> bytes:
    n = (MAX - len(message("REGISTER", b"")) - len(head) - 2) // (len(item) + 1)
    return head + b",".join([item] * n) + b"\r\n"


SHAPES: dict[str, Callable[[], bytes]] = {
    "OPTIONS (a real one)": lambda: message("OPTIONS", b"User-Agent: bench\r\n"),
    "REGISTER, Contact lines": lambda: fill("REGISTER", lambda i: b"m:<sip:a@b>\r\n"),
    "REGISTER, Contacts in one line": lambda: message(
        "REGISTER", _one_line(b"m:", b"sip:a@b")),
    "REGISTER, Contacts ;expires=0": lambda: message(
        "REGISTER", _one_line(b"m:", b"sip:a;expires=0")),
    "distinct header names": lambda: fill("OPTIONS", lambda i: _name(i) + b":\r\n"),
    "distinct header names, fresh": _fresh_names,
    "one name, many lines": lambda: fill("OPTIONS", lambda i: b"a:\r\n"),
    "v: Via lines": lambda: fill("OPTIONS", lambda i: b"v:\r\n"),
    "v: Via lines, valid": lambda: fill("OPTIONS", lambda i: b"v:SIP/2.0/UDP a\r\n"),
    "Via values in one line": lambda: message(
        "OPTIONS", _one_line(b"v:", b"SIP/2.0/UDP a")),
    "top Via with many parameters": lambda: message("OPTIONS", b"").replace(
        b";rport\r\n", b";rport" + b";a" * 32000 + b"\r\n"),
    "From: 60 KB quoted name": lambda: message("OPTIONS", b"").replace(
        b"From: <", b'From: "' + b"a\\" * 30000 + b'" <'),
    "REGISTER, Contact of parameters": lambda: message(
        "REGISTER", b"m:<sip:a@b>" + b";a" * 32000 + b"\r\n"),
    "REGISTER, 60 KB quoted Contact": lambda: message(
        "REGISTER", b'm:"' + b"a," * 30000 + b'" <sip:a@b>\r\n'),
    "REGISTER, 60 KB quoted name": lambda: message(
        "REGISTER", b'm:"' + b"a" * 60000 + b'" <sip:a@b>\r\n'),
    "lines without a colon": lambda: fill("OPTIONS", lambda i: b"x\r\n"),
    "folded lines": lambda: fill("OPTIONS", lambda i: b"Subject: a\r\n b\r\n" if i == 0
                                 else b" b\r\n"),
    "Record-Route lines (INVITE)": lambda: fill("INVITE", lambda i: b"Record-Route:<sip:a>\r\n"),
    "Require tags": lambda: message("OPTIONS", _one_line(b"Require:", b"x")),
    "maximum body (INVITE)": lambda: message(
        "INVITE", b"Content-Type: text/plain\r\n",
        b"x" * (MAX - len(message("INVITE", b"Content-Type: text/plain\r\n", b"")) - 5)),
    "long Request-URI": lambda: message(
        "OPTIONS", b"", uri=b"sip:" + b"a" * (MAX - len(message("OPTIONS", b"")) - 10) + b"@lab"),
    "long CSeq number": lambda: message("OPTIONS", b"").replace(
        b"CSeq: 1 ", b"CSeq: " + b"1" * (MAX - len(message("OPTIONS", b"")) - 4) + b" "),
    "long Expires (REGISTER)": lambda: message(
        "REGISTER", b"Contact: <sip:a@b>\r\nExpires: " + b"9" * 5000 + b"\r\n"),
    "long Content-Length": lambda: message("OPTIONS", b"").replace(
        b"Content-Length: 0", b"Content-Length: " + b"0" * 60000 + b"1"),
}


def cost_ms(engine: Engine, make: Callable[[], bytes], n: int, runs: int) -> float:
    engine.receive(Inbound(make(), SRC, LOCAL), 0.0)  # warm up
    samples = []
    for _ in range(runs):
        engine.forget()
        inbounds = [Inbound(make(), SRC, LOCAL) for _ in range(n)]
        t0 = time.process_time()
        for inbound in inbounds:
            engine.receive(inbound, 0.0)
        samples.append((time.process_time() - t0) / n * 1e3)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--only", help="run only the shapes whose name contains this text")
    args = ap.parse_args()
    engine = Engine(build_ruleset(None, []), Seeded(1))
    print(f"responder from {responder.__path__[0]}; compiled fast path "
          f"{'on' if _fast_parse else 'off'}; runs={args.runs}, n={args.n}")
    print(f"{'shape':32} {'bytes':>6} {'CPU ms':>8}  answer")
    for name, make in SHAPES.items():
        if args.only and args.only not in name:
            continue
        data = make()
        assert len(data) <= MAX, (name, len(data))
        out = engine.receive(Inbound(data, SRC, LOCAL), 0.0)
        sent = [e for e in out if isinstance(e, Send)]
        if sent:
            answer = " / ".join(s.data.split(b"\r\n", 1)[0][8:].decode("utf-8", "replace")[:40]
                                + f" ({len(s.data)} B)" for s in sent)
        else:
            discards = {k: v for k, v in engine.counters.discarded.items() if v}
            answer = f"nothing sent; discards so far {discards}"
        ms = cost_ms(engine, make, args.n, args.runs)
        print(f"{name:32} {len(data):6} {ms:8.3f}  {answer}")


if __name__ == "__main__":
    main()
