"""The engine's plain counters (read by metrics and the closing log line; nothing here runs
more than an addition per request)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

METHODS_LIMIT = 64         # distinct method names counted (Counters.methods)
OTHER_METHOD = "other"     # ... the rest are counted under this name


@dataclass(slots=True)
class Counters:
    received: int = 0
    answered: int = 0  # responses sent: built, sent again to a retransmission, repeats, resends
    dropped: int = 0
    acks: int = 0
    retransmissions: int = 0
    pending_overflow: int = 0
    held: int = 0     # transmissions swallowed by drop_first
    repeats: int = 0  # extra copies of final responses sent by repeat
    resent: int = 0   # 2xx to INVITE sent again while no ACK came (SPEC §4)
    acked: int = 0    # ... of which the ACK came
    resent_1xx: int = 0  # reliable provisionals sent again while no PRACK came (RFC 3262)
    pracked: int = 0     # PRACKs that stopped them
    discarded: Counter[str] = field(default_factory=Counter)
    # Parsed requests by method (metrics). Bounded: past METHODS_LIMIT distinct names,
    # new ones count as OTHER_METHOD (a scanner's random methods cannot grow it).
    methods: Counter[str] = field(default_factory=Counter)

