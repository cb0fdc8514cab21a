"""The compiled RTP echo (``_speedups.EchoTable``, ``Media.fast``) against the pure-Python
media table: the same packets through both give the same echoes and the same facts.

The compiled side is driven as responder.io.rtp drives it, without a socket: ``feed`` (the
socket-free twin of ``echo``) counts and echoes what it may, and every packet it returns
goes through ``Media.packet``. The pure side is ``Media(compiled=False)``, every packet
through ``Media.packet``. Echoes are compared as multisets: in a batch, the ones made in C
leave before the ones Python makes (RTP receivers order by sequence number).

On a wildcard-bound media socket each packet comes with the address it was sent to and its
echo leaves from there (``Echo.local``): the same packets through both paths over real
sockets give the same echoes from the same addresses (the end of this file).
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import has_ipv6_loopback

from responder.core import media as media_module
from responder.core.media import PT_LIMIT, SOURCES_LIMIT, Echo, Media
from responder.io import rtp as rtp_io
from responder.rules.model import ECHO, NONE, SINK
from responder.sip.addr import Addr

needs_table = pytest.mark.skipif(media_module.ECHO_TABLE is None,
                                 reason="the compiled EchoTable is not built (or is off)")
pytestmark = needs_table

A, B, C = ("127.0.0.1", 6000), ("127.0.0.1", 6002), ("10.0.0.9", 6000)
V6, V6_LONG = ("::1", 7000), ("0:0:0:0:0:0:0:1", 7000)  # one address, two spellings
STRANGER = ("127.0.0.1", 9999)
SOURCES = [A, B, C, V6, V6_LONG, STRANGER, ("fe80::1%lo", 7000)]
LOCALS = [None, ("127.0.0.5", 4000), ("::1", 4000), ("fe80::1%lo", 4000)]  # where sent
Packet = tuple[bytes, Addr] | tuple[bytes, Addr, Addr | None]


def rtp(pt: int = 0, seq: int = 1, ts: int = 160, ssrc: int = 0x11223344, size: int = 172,
        first: int = 0x80, event: int = 1) -> bytes:
    head = struct.pack("!BBHII", first, pt, seq, ts, ssrc)
    body = struct.pack("!BBH", event, 0, 160) if pt == 101 else b""
    return (head + body + b"\xff" * size)[:size]


def pair(limit: int = 10_000) -> tuple[Media, Media]:
    compiled, pure = Media(0xA5A5A5A5, limit), Media(0xA5A5A5A5, limit, compiled=False)
    assert compiled.fast is not None and pure.fast is None
    return compiled, pure


def feed(compiled: Media, pure: Media, batch: Sequence[Packet], now: float) -> int:
    """One batch through both; returns how many packets the C side counted itself. A packet
    may carry the address it was sent to (a wildcard-bound socket's): its echo leaves from
    there, on both sides."""
    fast = compiled.fast
    assert fast is not None
    before = fast.packets
    echoes, rest = fast.feed(batch, now)
    got = [tuple(e) for e in echoes]
    got += [tuple(e) for d, s, *to in rest if (e := compiled.packet(d, s, now, *to)) is not None]
    want = [tuple(e) for d, s, *to in batch if (e := pure.packet(d, s, now, *to)) is not None]
    assert Counter(got) == Counter(want)
    return fast.packets - before


def same(compiled: Media, pure: Media) -> None:
    assert list(compiled.calls) == list(pure.calls)
    for call_id in pure.calls:
        c, p = compiled.facts(call_id), pure.facts(call_id)
        assert c is not None and p is not None
        assert c.facts() == p.facts(), call_id
        assert c.sources == p.sources
    assert (compiled.packets, compiled.sent, compiled.unmatched, compiled.digits,
            compiled.evicted) == (pure.packets, pure.sent, pure.unmatched, pure.digits,
                                  pure.evicted)


def expect(compiled: Media, pure: Media, call_id: str, target: Addr | None, mode: str = ECHO,
           events_pt: int | None = 101) -> None:
    compiled.expect(call_id, target, mode, events_pt)
    pure.expect(call_id, target, mode, events_pt)


# ------------------------------------------------------------------ the split, by case

def test_audio_is_counted_and_echoed_in_c_after_its_first_packet() -> None:
    compiled, pure = pair()
    expect(compiled, pure, "call-1", A)
    assert feed(compiled, pure, [(rtp(seq=1), A)], 1.0) == 0  # a new payload type: Python
    assert feed(compiled, pure, [(rtp(seq=i), A) for i in range(2, 52)], 2.0) == 50
    assert compiled.fast is not None
    echoes, rest = compiled.fast.feed([(rtp(ssrc=0x01020304), A)], 3.0)
    assert rest == [] and echoes[0][0] == A
    assert struct.unpack("!I", echoes[0][1][8:12])[0] == 0x01020304 ^ 0xA5A5A5A5
    pure.packet(rtp(ssrc=0x01020304), A, 3.0)
    same(compiled, pure)
    facts = compiled.facts("call-1")
    assert facts is not None and (facts.first, facts.last, facts.packets_out) == (1.0, 3.0, 52)


def test_dtmf_rtcp_new_payload_types_and_strangers_go_to_python() -> None:
    compiled, pure = pair()
    expect(compiled, pure, "call-1", A)
    feed(compiled, pure, [(rtp(), A)], 1.0)
    batch = [(rtp(pt=101, ts=5000, event=5), A), (rtp(pt=101, ts=5000, event=5), A),
             (rtp(pt=72, size=28), A),  # RTCP SR: packet type 200, read as PT 72
             (rtp(pt=8), A), (rtp(), STRANGER), (rtp(size=11), A), (rtp(first=0x40), A)]
    assert feed(compiled, pure, batch, 2.0) == 0
    assert feed(compiled, pure, [(rtp(pt=8), A), (rtp(), A)], 3.0) == 2  # 8 is known now
    same(compiled, pure)
    facts = compiled.facts("call-1")
    assert facts is not None and facts.digits == "5" and facts.rtcp == 1


def test_hold_and_resume_reach_the_c_side() -> None:
    compiled, pure = pair()
    expect(compiled, pure, "call-1", A)
    feed(compiled, pure, [(rtp(), A)] * 3, 1.0)
    for mode in (SINK, NONE, ECHO):  # re-INVITE: hold (recvonly answer), inactive, resume
        expect(compiled, pure, "call-1", A, mode)
        assert feed(compiled, pure, [(rtp(), A)] * 4, 2.0) == 4
    same(compiled, pure)
    facts = compiled.facts("call-1")
    assert facts is not None and (facts.packets_in, facts.packets_out) == (15, 7)


def test_every_payload_type_is_fast_once_the_list_is_full() -> None:
    compiled, pure = pair()
    expect(compiled, pure, "call-1", A, events_pt=None)
    feed(compiled, pure, [(rtp(pt=pt), A) for pt in range(PT_LIMIT)], 1.0)
    assert feed(compiled, pure, [(rtp(pt=pt), A) for pt in range(PT_LIMIT, 72)], 2.0) \
        == 72 - PT_LIMIT
    assert feed(compiled, pure, [(rtp(pt=74), A)], 2.0) == 0  # RTCP, never in C
    same(compiled, pure)


def test_a_source_taken_over_by_a_new_call_counts_for_the_new_one() -> None:
    compiled, pure = pair()
    expect(compiled, pure, "call-1", A)
    feed(compiled, pure, [(rtp(), A)] * 2, 1.0)
    expect(compiled, pure, "call-2", A)  # the same caller port, a new call
    feed(compiled, pure, [(rtp(), A)] * 5, 2.0)
    feed(compiled, pure, [(rtp(), A)] * 5, 3.0)
    same(compiled, pure)
    two = compiled.facts("call-2")
    assert two is not None and two.packets_in == 10


def test_a_host_spelt_otherwise_than_a_socket_writes_it_is_left_to_python() -> None:
    compiled, pure = pair()
    expect(compiled, pure, "call-6", V6_LONG)  # from an SDP: not how recv writes ::1
    for now in (1.0, 2.0):
        feed(compiled, pure, [(rtp(), V6), (rtp(), V6_LONG), (rtp(), ("fe80::1%lo", 7000))],
             now)
    same(compiled, pure)
    fast = compiled.fast
    assert fast is not None
    assert not fast.add_source(V6_LONG, 0) and not fast.add_source(("fe80::1%lo", 1), 0)
    assert fast.add_source(V6, 1) and fast.remove_source(V6, 1)


def test_the_c_table_is_bounded_and_forgets_with_the_calls() -> None:
    compiled, pure = pair(limit=3)
    for i in range(10):
        source = ("127.0.0.1", 6000 + i)
        expect(compiled, pure, f"call-{i}", source)
        feed(compiled, pure, [(rtp(), source), (rtp(), ("127.0.0.2", 6000 + i))], float(i))
        feed(compiled, pure, [(rtp(), source)] * 3, float(i) + 0.5)
    fast = compiled.fast
    assert fast is not None and fast.calls == 3
    assert fast.sources == len(compiled._by_source) <= 3 * SOURCES_LIMIT
    for i in range(7):  # the evicted calls' sources are forgotten in C too
        assert feed(compiled, pure, [(rtp(), ("127.0.0.1", 6000 + i))], 20.0) == 0
    same(compiled, pure)
    compiled.clear()
    assert fast.sources == 0 and fast.feed([(rtp(), ("127.0.0.1", 6009))], 1.0)[0] == []


# ------------------------------------------------------------------ the split, any way

PACKETS = st.builds(
    rtp, pt=st.sampled_from([0, 8, 18, 96, 101, 72, 73, 76, 77, 13, 127]),
    seq=st.integers(0, 3), ts=st.sampled_from([160, 320, 480]),
    size=st.sampled_from([4, 11, 12, 16, 172]), first=st.sampled_from([0x80, 0x81, 0x00, 0xC0]),
    event=st.integers(0, 17))
STEPS = st.one_of(
    st.tuples(st.just("expect"), st.sampled_from(["c1", "c2", "c3", "c4"]),
              st.sampled_from([A, B, C, V6, V6_LONG, None]), st.sampled_from([ECHO, SINK, NONE]),
              st.sampled_from([None, 101, 96, 0])),
    st.tuples(st.just("batch"), st.lists(
        st.one_of(st.tuples(PACKETS, st.sampled_from(SOURCES)),
                  st.tuples(PACKETS, st.sampled_from(SOURCES), st.sampled_from(LOCALS))),
        max_size=12)),
    st.tuples(st.just("facts"), st.sampled_from(["c1", "c2", "c3", "c4"])),
)


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(STEPS, max_size=30))
def test_any_calls_and_packets_give_the_same_echoes_and_facts(steps: list[tuple[Any, ...]],
                                                             ) -> None:
    compiled, pure = pair(limit=3)
    for now, step in enumerate(steps):
        if step[0] == "expect":
            expect(compiled, pure, *step[1:])
        elif step[0] == "batch":
            feed(compiled, pure, step[1], float(now))
        else:  # the facts read in the middle: the C counts handed over, then more
            c, p = compiled.facts(step[1]), pure.facts(step[1])
            assert (c and c.facts()) == (p and p.facts())
    same(compiled, pure)


# ------------------------------------------------------------------ the source index

def test_the_source_index_agrees_with_a_dict_through_adds_and_removes() -> None:
    """Open addressing with deletion by backward shift: after any mix of adds, moves and
    removes, every address maps where a dict says (probed with a packet each)."""
    ext = media_module.ECHO_TABLE
    assert ext is not None
    table = ext.EchoTable(8, 64, 12345)
    fast_pt0 = bytes([1]) + bytes(127)
    for slot in range(8):
        table.set_call(slot, True, fast_pt0)
    model: dict[Addr, int] = {}
    rng = random.Random(7)
    hosts = [f"127.0.{i}.{j}" for i in range(2) for j in range(1, 5)] + ["::1", "2001:db8::7"]
    for _ in range(4000):
        addr = (rng.choice(hosts), rng.randrange(6000, 6008))
        if rng.random() < 0.55:
            slot = rng.randrange(8)
            added = table.add_source(addr, slot)
            assert added == (addr in model or len(model) < 64)
            if added:
                model[addr] = slot
        else:
            slot = model.get(addr, rng.randrange(8))
            if rng.random() < 0.2:
                slot = (slot + 1) % 8  # another call's: not removed
            assert table.remove_source(addr, slot) == (model.get(addr) == slot)
            if model.get(addr) == slot:
                del model[addr]
        assert table.sources == len(model)
    for slot in range(8):
        table.take(slot)
    probes = [(rtp(), (h, p)) for h in hosts for p in range(6000, 6008)]
    echoes, rest = table.feed(probes, 1.0)
    assert {dest for dest, *_ in echoes} == set(model)
    assert len(rest) == len(probes) - len(model)
    counts = Counter(model.values())
    assert [table.take(slot)[0] for slot in range(8)] == [counts[s] for s in range(8)]


def test_bad_arguments_are_errors_not_crashes() -> None:
    ext = media_module.ECHO_TABLE
    assert ext is not None
    with pytest.raises(ValueError):
        ext.EchoTable(0, 4, 1)
    table = ext.EchoTable(2, 8, 1)
    with pytest.raises(IndexError):
        table.reset(2)
    with pytest.raises(ValueError):
        table.set_call(0, True, b"\x01")
    with pytest.raises(TypeError):
        table.feed([b"not a pair"], 1.0)
    with pytest.raises(TypeError):
        table.feed([(b"x", ("127.0.0.1", 5), None, None)], 1.0)
    with pytest.raises(ValueError):
        table.echo_reached(0, 1.0, 64, 70000)
    assert not table.add_source(("not an address", 5), 0)
    assert not table.add_source(("127.0.0.1", 70000), 0)
    assert table.take(1) == (0, 0, 0, 0, None, None)


def test_an_echo_leaves_from_the_address_its_packet_reached_on_both_sides() -> None:
    compiled, pure = pair()
    expect(compiled, pure, "call-1", A)
    to5, to6 = ("127.0.0.5", 4000), ("127.0.0.6", 4000)
    feed(compiled, pure, [(rtp(seq=1), A, to5)], 1.0)  # a new payload type: Python
    assert compiled.fast is not None
    echoes, rest = compiled.fast.feed([(rtp(seq=2), A, to6), (rtp(seq=3), A)], 2.0)
    assert rest == [] and [(dest, local) for dest, _, local in echoes] == [(A, to6), (A, None)]
    assert pure.packet(rtp(seq=2), A, 2.0, to6) == Echo(A, echoes[0][1], to6)
    pure.packet(rtp(seq=3), A, 2.0)
    feed(compiled, pure, [(rtp(seq=4), A, to5), (rtp(pt=101, seq=5), A, to6)], 3.0)
    same(compiled, pure)


# ------------------------------------------------------------------ a wildcard socket

def _through_wildcard(compiled: bool, family: socket.AddressFamily, reached: list[str],
                      ) -> list[tuple[bytes, str]]:
    """Audio and DTMF from one caller to each address in ``reached`` of a media socket bound
    to the wildcard: the echoes, each with the address it came from (from the socket's
    port)."""
    media = Media(0xA5A5A5A5, compiled=compiled)
    wildcard, caller_host = ("::", "::1") if family == socket.AF_INET6 else ("0.0.0.0",
                                                                           "127.0.0.1")
    packets = [rtp(seq=seq, pt=pt) for seq, pt in enumerate([0] * 20 + [101] * 3 + [8] * 20)]

    async def run() -> list[tuple[bytes, str]]:
        loop = asyncio.get_running_loop()
        transport = rtp_io.MediaTransport(loop, media)
        port = transport.open(wildcard)[1]
        with socket.socket(family, socket.SOCK_DGRAM) as caller:
            caller.bind((caller_host, 0))
            caller.setblocking(False)
            media.expect("call-1", caller.getsockname()[:2], ECHO, 101)
            got: list[tuple[bytes, tuple[str, int]]] = []
            try:
                for i, data in enumerate(packets):
                    for host in reached:
                        caller.sendto(data, (host, port))
                    if i == 0:  # the first: through Python, one by one; then batches
                        got += [await _recvfrom(loop, caller) for _ in reached]
                while len(got) < len(reached) * len(packets):
                    got.append(await _recvfrom(loop, caller))
            finally:
                transport.close()
            assert {p for _, (_, p) in got} == {port}
            return [(data, host) for data, (host, _) in got]

    return asyncio.run(run())


async def _recvfrom(loop: asyncio.AbstractEventLoop, sock: socket.socket,
                    ) -> tuple[bytes, tuple[str, int]]:
    data, source = await asyncio.wait_for(loop.sock_recvfrom(sock, 2048), 5.0)
    return data, (source[0], source[1])


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
def test_both_paths_echo_the_same_from_the_address_each_packet_reached(
        family: socket.AddressFamily, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over a socket bound to 0.0.0.0 (or ::): the compiled echo (EchoTable.echo_reached,
    the first packet and DTMF through Python) and the pure one send the same echoes, each
    from the address its packet was sent to, not the one the kernel would pick."""
    if family == socket.AF_INET6 and not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    if not rtp_io.COMPILED_REACHED:
        pytest.skip("the compiled wildcard send is not built")
    reached = ["::1"] if family == socket.AF_INET6 else ["127.0.0.5", "127.0.0.6", "127.0.0.1"]
    fast = _through_wildcard(True, family, reached)
    monkeypatch.setattr(rtp_io, "COMPILED_ECHO", False)
    slow = _through_wildcard(False, family, reached)
    assert Counter(fast) == Counter(slow)
    assert Counter(host for _, host in fast) == {host: 43 for host in reached}
