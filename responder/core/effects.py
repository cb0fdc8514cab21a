"""What goes into the engine and what comes out of it, as typed values.

``Engine.receive(Inbound, now)`` and ``Engine.due(now)`` return a list of effects; each
is one of:

* :class:`Send` -- send these bytes to this address, from this local address (over this
  connection, for a stream); its :class:`Exchange` is the event logs and metrics see;
* :class:`Dropped` -- a rule said "drop" (or ``drop_first`` held a transmission): nothing
  is sent, the exchange is still logged and counted;
* :class:`Handoff` -- this request belongs to worker K (``--workers``): hand it over;
* :class:`Arrived` -- a message arrived and what became of it (parsed, or discarded and
  why); emitted only when someone records arrivals (the journal).

The transports carry effects out and make no decisions; the journal, logs and metrics
observe them and never reach into the engine.
"""

from __future__ import annotations

from typing import NamedTuple

from responder.sip.builder import Addr
from responder.sip.message import Request

UDP = "udp"
TRANSPORTS = ("udp", "tcp", "tls", "ws", "wss")


class Inbound(NamedTuple):
    """One message as it arrived."""

    data: bytes
    source: Addr              # the peer's address: where the answer goes (SPEC §4)
    local: Addr | None = None  # the address it arrived at: where the answer leaves from
    transport: str = UDP      # udp, tcp, tls, ws, wss
    conn: int | None = None   # the stream connection it came on (None: a datagram)


class Exchange(NamedTuple):
    """The facts of one response sent (or dropped on purpose): what logs and metrics show."""

    time: float
    source: Addr
    method: str
    uri: str
    call_id: str | None
    status: int | None  # None: dropped by a rule
    reason: str
    rule: str
    delay: float
    retransmission: bool = False  # a retransmitted request got the same response again
    repeat: int = 0  # a copy of a final response sent again by ``repeat`` (1, 2, ...)
    arrival: int = 0  # the arrival it answers (Arrived.seq): how the journal pairs them
    fault: str | None = None  # the step's fault (docs/faults.md): the response is malformed
    transport: str = UDP  # what the request came over (logs, metrics, trace)


class Send(NamedTuple):
    """Send ``data`` to ``dest`` from ``local`` (over connection ``conn`` on a stream).

    The compiled ``send_many`` reads ``dest`` and ``data`` at positions 0 and 1
    (checked when :mod:`responder.io.udp` loads).
    """

    dest: Addr
    data: bytes
    exchange: Exchange | None
    local: Addr | None = None
    conn: int | None = None


class Dropped(NamedTuple):
    """Nothing sent on purpose; the exchange says why (``drop``, ``drop-first 1/2``)."""

    exchange: Exchange


class Handoff(NamedTuple):
    """Worker ``worker`` owns this request's dialog: hand ``inbound`` to it."""

    worker: int
    inbound: Inbound


class Arrived(NamedTuple):
    """A message arrived (journal event). ``seq`` numbers arrivals; responses to it carry
    the same number in :attr:`Exchange.arrival`."""

    seq: int
    time: float
    inbound: Inbound
    request: Request | None  # None: discarded
    discard: str | None = None  # the discard reason
    rule: str | None = None  # the rule that answered (None: discarded, or no rule)


Effect = Send | Dropped | Handoff | Arrived


def exchanges(effects: list[Effect]) -> list[Exchange]:
    """The exchanges (responses sent and drops) of a batch of effects, in order."""
    return [e.exchange for e in effects
            if (type(e) is Send or type(e) is Dropped) and e.exchange is not None]
