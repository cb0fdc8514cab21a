"""Amplification: what one request makes the responder send (README "Amplification").

For each case, one request goes into the engine in memory (no socket) and the clock is
run forward until nothing is left to send (delayed steps, repeats, 2xx retransmissions
until Timer H, as if no ACK ever came); the script prints the request's bytes, the
datagrams and bytes sent for it, and the ratio. The requests are the smallest that get
answered (a forged source needs nothing more). tests/test_rules_limits.py runs
:func:`measure` and checks the README's figures against it.

    .venv/bin/python scripts/amplification.py
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from responder.core.effects import Inbound, Send
from responder.core.engine import Engine
from responder.rules.loader import build_ruleset, load_text
from responder.rules.model import (
    MAX_REPLY_BYTES,
    MAX_STEP_BYTES,
    MAX_STEPS,
    REPEAT_MAX,
    RuleSet,
)
from responder.sip import codes
from responder.sip.seeded import Seeded

SOURCE = ("192.0.2.1", 5060)


def smallest(method: str) -> bytes:
    """The smallest request the responder answers (SPEC §5: request line, a Via with a
    sent-by, From, To, Call-ID, CSeq), in compact forms."""
    return (f"{method} sip:a@b SIP/2.0\r\nv:SIP/2.0/UDP h\r\nf:<sip:c@d>;tag=1\r\n"
            f"t:<sip:a@b>\r\ni:1\r\nCSeq:1 {method}\r\n\r\n").encode()


def worst_rules() -> RuleSet:
    """The most a rule may send for one request under the caps: MAX_STEPS steps, the
    final one REPEAT_MAX times, sharing MAX_REPLY_BYTES of body (each step at most
    MAX_STEP_BYTES)."""
    share = min(MAX_STEP_BYTES, MAX_REPLY_BYTES // (MAX_STEPS - 1 + REPEAT_MAX))

    def body(code: int) -> str:
        return "x" * (share - len(codes.reason_for(code)) - len("text/plain"))

    steps = "".join(f"      - {{code: 183, body: {body(183)}, content_type: text/plain}}\n"
                    for _ in range(MAX_STEPS - 1))
    text = ("rules:\n  - match: {method: INVITE}\n    respond:\n" + steps +
            f"      - {{code: 486, body: {body(486)}, content_type: text/plain, "
            f"repeat: {REPEAT_MAX}}}\n")
    return load_text(text, "<worst>")


class Figure(NamedTuple):
    case: str
    bytes_in: int
    datagrams: int
    bytes_out: int

    @property
    def ratio(self) -> float:
        return self.bytes_out / self.bytes_in


def run(ruleset: RuleSet, data: bytes) -> tuple[int, int]:
    """Datagrams and bytes sent for ``data`` until the engine has nothing left to do."""
    engine = Engine(ruleset, Seeded(1))
    effects = engine.receive(Inbound(data, SOURCE), 0.0)
    for _ in range(10_000):
        deadline = engine.next_deadline()
        if deadline is None:
            break
        effects += engine.due(deadline)
    sent = [e for e in effects if isinstance(e, Send)]
    return len(sent), sum(len(e.data) for e in sent)


def measure() -> Iterator[Figure]:
    defaults = build_ruleset(None, [])
    for method in ("INVITE", "OPTIONS", "REGISTER"):
        data = smallest(method)
        yield Figure(f"default rules, {method}", len(data), *run(defaults, data))
    data = smallest("INVITE")
    yield Figure("worst rules the caps allow, INVITE", len(data), *run(worst_rules(), data))


def main() -> None:
    print(f"{'case':40} {'bytes in':>9} {'datagrams':>9} {'bytes out':>10} {'ratio':>8}")
    for f in measure():
        print(f"{f.case:40} {f.bytes_in:9} {f.datagrams:9} {f.bytes_out:10} {f.ratio:7.1f}x")


if __name__ == "__main__":
    main()
