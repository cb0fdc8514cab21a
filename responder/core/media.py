"""Media (RTP) for answered calls, sans-I/O: which call a packet belongs to, what to send
back, and the facts a test asks about (SPEC §8.3).

One media socket per listen address serves every call, so nothing here is allocated per
packet and a call costs one bounded table entry. The engine, when it answers an offer,
calls :meth:`Media.expect` with where the caller said it sends from (the offer's ``c=`` and
``m=`` port) and the call's mode; :meth:`Media.packet` is given every datagram that reaches
the media socket and returns what to send back (the echo) or None.

* A packet is matched to its call by its source address and port; the first packet from a
  source the table does not know is matched by port to a call that expects it (the caller
  may send from another address than its SDP names: NAT, a wildcard bind), and the source is
  learnt.
* ``echo``: the packet goes back to its SOURCE (symmetric RTP, RFC 4961 -- never to an
  address taken from the SDP), from the address it was sent to (``local``, given by the
  socket when it is bound to a wildcard address: the echo's ``local``), its SSRC replaced by
  a keyed transform (XOR with a value drawn from the seed), so the caller sees a stream that
  is not its own. RTCP (RFC 5761
  packet types 200-204) is counted, not echoed. ``sink``: counted, nothing sent.
* Facts per call: packets and bytes in and out, payload types seen, first and last arrival,
  RTCP packets, and the RFC 4733 DTMF digits received (one per event, whatever the number
  of packets that carry it).

Bounded: at most ``limit`` calls (the oldest forgotten first), at most ``PT_LIMIT`` payload
types and ``DIGITS_LIMIT`` digits per call; a packet that matches no call is counted and
dropped.

The compiled twin (``_speedups.EchoTable``, when built): :attr:`Media.fast` holds a copy of
the source index and, per call, whether it echoes and which payload types need no Python
(seen already, not RTCP, not DTMF); the media socket's reader (responder.io.rtp) lets it
count and echo those packets in C and gives every other one to :meth:`Media.packet`. Every
change to ``_by_source`` and to a call's mode, events or payload types is copied to it
here, so both paths count the same (tests/test_media_accel.py feeds both). Its counts are
added to the call's on :meth:`Media.facts`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, NamedTuple

from responder._accel import SPEEDUPS, adopt, assumptions, mismatch
from responder.rules.model import ECHO
from responder.sip.addr import Addr

if TYPE_CHECKING:
    from responder._accel._speedups import EchoTable

MEDIA_CALLS_LIMIT = 10_000   # calls whose media facts are kept (oldest forgotten first)
PT_LIMIT = 8                 # payload types remembered per call
DIGITS_LIMIT = 64            # DTMF digits remembered per call
SOURCES_LIMIT = 4            # source addresses learnt per call
EVENTS = "0123456789*#ABCD"  # RFC 4733 §3.2: events 0-15 (16, flash, is shown as "!")
MIN_RTP = 12                 # the fixed RTP header
RTCP = range(72, 77)         # RFC 5761 §4: payload types of RTCP SR, RR, SDES, BYE, APP
PAYLOAD_TYPES = 128          # 7 bits


def _check(ext: ModuleType) -> str | None:
    """Why the compiled EchoTable does not fit this module (None: it does)."""
    if not hasattr(getattr(ext, "EchoTable", None), "echo_reached"):
        return "no EchoTable.echo_reached (built from older source?)"
    return mismatch(assumptions(ext, "media"),
                    {"RTP version": 2, "fixed RTP header": MIN_RTP,
                     "payload types": PAYLOAD_TYPES, "RTCP payload types": (RTCP[0], RTCP[-1])})


ECHO_TABLE = adopt(SPEEDUPS, "RTP echo", _check)[0]
"""The extension when its EchoTable may be used (checked once, at load), else None."""


class Echo(NamedTuple):
    """One packet to send back: what the socket's batched send takes (dest, data first),
    and the address to send it from (the one its packet reached, on a wildcard-bound media
    socket; None: the socket's own)."""

    dest: Addr
    data: bytes
    local: Addr | None = None


@dataclass(slots=True)
class CallMedia:
    """What one call's media did; the journal and the pytest API read these."""

    call_id: str
    mode: str
    expected: Addr | None          # where the SDP said the caller sends from
    events_pt: int | None          # the telephone-event payload type we answered with
    packets_in: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    rtcp: int = 0
    payload_types: list[int] = field(default_factory=list)
    first: float | None = None
    last: float | None = None
    digits: str = ""
    event_ts: int = -1             # RTP timestamp of the last DTMF event counted
    sources: list[Addr] = field(default_factory=list)  # indexed for this call (bounded)
    slot: int = -1                 # its counts' place in the compiled table (Media.fast)

    def facts(self) -> dict[str, object]:
        return {"mode": self.mode, "packets_in": self.packets_in, "bytes_in": self.bytes_in,
                "packets_out": self.packets_out, "bytes_out": self.bytes_out,
                "rtcp": self.rtcp, "payload_types": list(self.payload_types),
                "first": self.first, "last": self.last, "dtmf": self.digits}


class Media:
    """The media table of one engine (one per worker)."""

    def __init__(self, ssrc_key: int, limit: int = MEDIA_CALLS_LIMIT,
                 compiled: bool = True) -> None:
        self.key = (ssrc_key & 0xFFFFFFFF) or 0x5EED5EED  # never 0: the SSRC must change
        self._key_bytes = self.key.to_bytes(4, "big")
        self.limit = limit
        self.calls: OrderedDict[str, CallMedia] = OrderedDict()
        self._by_source: dict[Addr, CallMedia] = {}
        self._by_port: dict[int, CallMedia] = {}
        self.unmatched = 0
        self.evicted = 0
        self.read = 0     # datagrams given to packet()
        self.echoed = 0   # echoes packet() made
        self.digits = 0   # DTMF digits seen
        self.fast: EchoTable | None = (ECHO_TABLE.EchoTable(limit, limit * SOURCES_LIMIT, self.key)
                     if compiled and ECHO_TABLE is not None else None)
        self._free: list[int] = []  # call slots of ``fast`` given back (forgotten calls)
        self._slots = 0             # call slots given out

    @property
    def packets(self) -> int:
        """Datagrams read by the media sockets."""
        return self.read + (self.fast.packets if self.fast is not None else 0)

    @property
    def sent(self) -> int:
        """Echoes sent."""
        return self.echoed + (self.fast.sent if self.fast is not None else 0)

    def expect(self, call_id: str, target: Addr | None, mode: str,
               events_pt: int | None) -> CallMedia:
        """A call was answered (or re-answered: hold, resume): packets from ``target``
        (or from its port, first) are this call's, handled per ``mode``."""
        call = self.calls.get(call_id)
        if call is None:
            if len(self.calls) >= self.limit:
                self._forget_oldest()
            call = CallMedia(call_id, mode, target, events_pt, slot=self._slot())
            self.calls[call_id] = call
            if self.fast is not None:
                self.fast.reset(call.slot)
        else:
            call.mode, call.events_pt = mode, events_pt
            if target is not None and target != call.expected:
                self._unindex(call)
                call.expected = target
        self._sync(call)
        if target is not None:
            self._learn(call, target)
            self._by_port[target[1]] = call
        return call

    def _slot(self) -> int:
        if self._free:
            return self._free.pop()
        self._slots += 1
        return self._slots - 1

    def _learn(self, call: CallMedia, source: Addr) -> None:
        if source not in call.sources and len(call.sources) < SOURCES_LIMIT:
            call.sources.append(source)
            self._by_source[source] = call
            if self.fast is not None:
                self.fast.add_source(source, call.slot)

    def _unindex(self, call: CallMedia) -> None:
        for source in call.sources:
            if self._by_source.get(source) is call:
                del self._by_source[source]
                if self.fast is not None:
                    self.fast.remove_source(source, call.slot)
        call.sources.clear()
        if call.expected is not None and self._by_port.get(call.expected[1]) is call:
            del self._by_port[call.expected[1]]

    def _sync(self, call: CallMedia) -> None:
        """Tell the compiled table the call's mode and which of its payload types it may
        count without Python: the ones seen (all once PT_LIMIT are), never RTCP or DTMF."""
        if self.fast is None:
            return
        fast = bytearray(PAYLOAD_TYPES)
        for pt in (range(PAYLOAD_TYPES) if len(call.payload_types) >= PT_LIMIT
                   else call.payload_types):
            fast[pt] = 1
        if call.events_pt is not None and 0 <= call.events_pt < PAYLOAD_TYPES:
            fast[call.events_pt] = 0
        self.fast.set_call(call.slot, call.mode == ECHO, bytes(fast))

    def _forget_oldest(self) -> None:
        _, old = self.calls.popitem(last=False)
        self._unindex(old)
        self._free.append(old.slot)
        self.evicted += 1

    def facts(self, call_id: str) -> CallMedia | None:
        """The call's media facts, the compiled table's counts added."""
        call = self.calls.get(call_id)
        if call is not None and self.fast is not None:
            pin, bin_, pout, bout, first, last = self.fast.take(call.slot)
            call.packets_in += pin
            call.bytes_in += bin_
            call.packets_out += pout
            call.bytes_out += bout
            if first is not None and (call.first is None or first < call.first):
                call.first = first
            if last is not None and (call.last is None or last > call.last):
                call.last = last
        return call

    def clear(self) -> None:
        self.calls.clear()
        self._by_source.clear()
        self._by_port.clear()
        self._free.clear()
        self._slots = 0
        if self.fast is not None:
            self.fast.clear()

    def packet(self, data: bytes, source: Addr, now: float,
               local: Addr | None = None) -> Echo | None:
        """One datagram at the media socket: the echo to send (from ``local``, the address
        the datagram was sent to, when the socket said), or None."""
        self.read += 1
        call = self._by_source.get(source)
        if call is None:
            call = self._by_port.get(source[1])
            if call is None or len(data) < 8 or data[0] & 0xC0 != 0x80:
                self.unmatched += 1
                return None
            self._learn(call, source)  # learnt: this source is this call's
        size = len(data)
        call.packets_in += 1
        call.bytes_in += size
        if call.first is None:
            call.first = now
        call.last = now
        if size < 8 or data[0] & 0xC0 != 0x80:
            return None  # not RTP: counted with the call, never echoed
        pt = data[1] & 0x7F
        if pt in RTCP:  # RFC 5761 §4: RTCP SR, RR, SDES, BYE, APP
            call.rtcp += 1
            return None
        if size < MIN_RTP:
            return None
        if pt not in call.payload_types and len(call.payload_types) < PT_LIMIT:
            call.payload_types.append(pt)
            self._sync(call)
        if pt == call.events_pt:
            self._dtmf(call, data)
        if call.mode != ECHO:
            return None
        call.packets_out += 1
        call.bytes_out += size
        self.echoed += 1
        k = self._key_bytes
        ssrc = bytes((data[8] ^ k[0], data[9] ^ k[1], data[10] ^ k[2], data[11] ^ k[3]))
        return Echo(source, data[:8] + ssrc + data[12:], local)

    def _dtmf(self, call: CallMedia, data: bytes) -> None:
        """RFC 4733 §2.3: one digit per event, however many packets (and the three end
        packets) carry it; an event is its RTP timestamp."""
        cc = data[0] & 0x0F
        start = MIN_RTP + 4 * cc
        if len(data) < start + 4:
            return
        ts = int.from_bytes(data[4:8], "big")
        if ts == call.event_ts or len(call.digits) >= DIGITS_LIMIT:
            return
        event = data[start]
        call.event_ts = ts
        self.digits += 1
        call.digits += EVENTS[event] if event < len(EVENTS) else ("!" if event == 16 else "?")

    def ssrc_of_echo(self, ssrc: int) -> int:
        """The SSRC the echo of a packet with ``ssrc`` carries (for tests and docs)."""
        return ssrc ^ self.key
