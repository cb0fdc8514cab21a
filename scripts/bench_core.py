#!/usr/bin/env python3
"""Per-request cost of the sans-I/O core: parse -> match -> build, in microseconds.

Runs Engine.receive() (which is exactly parse, match, build) on an OPTIONS and
on a new call (an INVITE with an SDP offer, answered 100/180/200 with the SDP answer,
and the ACK of its 200) with the built-in default rules, and on the stages alone, several
times each; prints the median of the runs. "parse" is what the engine uses (the
compiled fast path when responder._accel._speedups is built, unless SIP_RESPONDER_PURE
is set); "parse (pure Python)" is the Python parser alone. No sockets: this is the interpreter
work per request that the transport adds its I/O to.

    python scripts/bench_core.py [--runs 7] [--n 20000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from responder.core.answer import build_step
from responder.core.effects import Inbound
from responder.core.engine import Engine
from responder.core.journal import Journal
from responder.rules.loader import build_ruleset
from responder.rules.matcher import select
from responder.sip.builder import Context
from responder.sip.parser import _fast_parse, parse, parse_python
from responder.sip.seeded import Seeded

OPTIONS = (
    b"OPTIONS sip:100@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-524287-1---f2b4d2b1;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"Contact: <sip:bench@127.0.0.1:5062>\r\n"
    b"To: <sip:100@127.0.0.1:5060>\r\n"
    b"From: <sip:bench@127.0.0.1:5062>;tag=8a7f3e21\r\n"
    b"Call-ID: 1-4242@127.0.0.1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"User-Agent: bench\r\n"
    b"Content-Length: 0\r\n\r\n"
)
SDP = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       b"m=audio 6000 RTP/AVP 0\r\n")
INVITE = (
    b"INVITE sip:1000@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-524287-1---77aa11;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"Contact: <sip:bench@127.0.0.1:5062>\r\n"
    b"To: <sip:1000@127.0.0.1:5060>\r\n"
    b"From: \"Bench\" <sip:bench@127.0.0.1:5062>;tag=99aa0f\r\n"
    b"Call-ID: 2-4242@127.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP
)
SRC = ("127.0.0.1", 5062)
LOCAL = ("127.0.0.1", 5060)
CALLS = 2000  # distinct calls cycled through by the INVITE + ACK rows


def new_calls(count: int = CALLS) -> list[tuple[bytes, bytes]]:
    """``count`` (INVITE, ACK of its 200) pairs, each a call of its own: an INVITE sent
    again would be a retransmission (answered with the stored 200) and a 200 never ACKed
    is resent, so a new call is an INVITE and its ACK."""
    out = []
    for i in range(count):
        invite = INVITE.replace(b"77aa11", b"%06d" % i).replace(b"2-4242@", b"%d-4242@" % i)
        ack = (b"ACK sip:1000@127.0.0.1:5060 SIP/2.0\r\n"
               b"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-ack-%d;rport\r\n"
               b"Max-Forwards: 70\r\nTo: <sip:1000@127.0.0.1:5060>;tag=x\r\n"
               b"From: \"Bench\" <sip:bench@127.0.0.1:5062>;tag=99aa0f\r\n"
               b"Call-ID: %d-4242@127.0.0.1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
               % (i, i))
        out.append((invite, ack))
    return out


def call_cycle(engine: Engine, journal: Journal | None = None) -> Callable[[], object]:
    """One new call per invocation (INVITE, then the ACK of its 200), through ``engine``;
    every CALLS calls the engine forgets them (its tables stay at their working size)."""
    calls = new_calls()
    new = tuple.__new__
    at = [0]

    def one() -> None:
        i = at[0]
        if i == len(calls):
            engine.forget()
            i = 0
        at[0] = i + 1
        invite, ack = calls[i]
        for data in (invite, ack):
            out = engine.receive(new(Inbound, (data, SRC, LOCAL, "udp", None)), 0.0)
            if journal is not None:
                journal.observe(out)
    return one


def per_call_us(fn: Callable[[], object], n: int, runs: int) -> float:
    for _ in range(n // 4):  # warm up: caches, the CPU's clock
        fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--n", type=int, default=20000)
    args = ap.parse_args()
    ruleset = build_ruleset(None, [])
    seeded = Seeded(1)
    engine = Engine(ruleset, seeded)
    engine.marks = False  # the same bytes again and again: not retransmissions to mark
    recording, journal = Engine(ruleset, seeded, record=True), Journal(1000)
    new = tuple.__new__
    print(f"{'request':8} {'stage':24} {'median µs':>10}   (runs={args.runs}, n={args.n}; "
          f"compiled fast path {'on' if _fast_parse else 'off'})")
    for name, data in (("OPTIONS", OPTIONS), ("INVITE", INVITE)):
        req = parse(data)
        rule = select(ruleset, req, SRC[0], seeded)
        assert rule is not None
        step = rule.reply[-1]
        ctx = Context(ruleset.identity, seeded, 0.0, SRC, ("127.0.0.1", 5060))
        rows = [
            ("parse", lambda d=data: parse(d)),
            ("parse (pure Python)", lambda d=data: parse_python(d)),
            ("match", lambda r=req: select(ruleset, r, SRC[0], seeded)),
            ("build (final step)", lambda r=req, s=step, c=ctx: build_step(r, c, s, "t")),
            ("Inbound (the API's cost)", lambda d=data: new(Inbound, (d, SRC, LOCAL, "udp", None))),
        ]
        if name == "OPTIONS":
            rows += [
                ("receive (all steps)",
                 lambda d=data: engine.receive(new(Inbound, (d, SRC, LOCAL, "udp", None)), 0.0)),
                ("receive, journal on", lambda d=data: journal.observe(recording.receive(
                    new(Inbound, (d, SRC, LOCAL, "udp", None)), 0.0))),
            ]
        else:  # a new call each time: INVITE (100, 180, 200 + SDP answer) and its ACK
            rows += [("call: INVITE + ACK", call_cycle(engine)),
                     ("call, journal on", call_cycle(recording, journal))]
        for stage, fn in rows:
            print(f"{name:8} {stage:24} {per_call_us(fn, args.n, args.runs):10.2f}")


if __name__ == "__main__":
    main()
