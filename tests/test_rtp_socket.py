"""The media socket over real loopback UDP: echoes come back from it, to the source."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from support import has_ipv6_loopback

from responder.core.media import Media
from responder.io import rtp
from responder.rules.model import ECHO, SINK


def packet(seq: int, ssrc: int = 0x01020304) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + bytes(160)


async def _exchange(media: Media, count: int, mode: str) -> tuple[list[bytes], tuple[str, int]]:
    loop = asyncio.get_running_loop()
    transport = rtp.MediaTransport(loop, media)
    local = transport.open("127.0.0.1")
    caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    caller.bind(("127.0.0.1", 0))
    caller.setblocking(False)
    media.expect("call-1", caller.getsockname(), mode, None)
    try:
        for seq in range(count):
            caller.sendto(packet(seq), local)
        got: list[bytes] = []
        if mode == ECHO:
            while len(got) < count:
                got.append(await asyncio.wait_for(loop.sock_recv(caller, 2048), 5.0))
        # Absence for sink: the table saw every packet (an event), so nothing is on its way.
        deadline = loop.time() + 5.0
        while media.packets < count and loop.time() < deadline:
            await asyncio.sleep(0.01)
        return got, local
    finally:
        transport.close()
        caller.close()


@pytest.mark.parametrize("compiled", [True, False])
def test_echo_over_a_real_socket(compiled: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if compiled and not rtp.COMPILED_ECHO:
        pytest.skip("the compiled fast path is not built")
    monkeypatch.setattr(rtp, "COMPILED_ECHO", compiled)
    media = Media(ssrc_key=0xFFFF0000)
    got, _ = asyncio.run(_exchange(media, 200, ECHO))
    assert [struct.unpack("!H", p[2:4])[0] for p in got] == list(range(200))
    assert {struct.unpack("!I", p[8:12])[0] for p in got} == {0x01020304 ^ 0xFFFF0000}
    facts = media.facts("call-1")
    assert facts is not None and (facts.packets_in, facts.packets_out) == (200, 200)


def test_sink_over_a_real_socket_counts_and_sends_nothing() -> None:
    media = Media(1)
    got, _ = asyncio.run(_exchange(media, 50, SINK))
    facts = media.facts("call-1")
    assert got == [] and facts is not None and (facts.packets_in, facts.packets_out) == (50, 0)


def dtmf(seq: int, event: int, ts: int, end: bool = False) -> bytes:
    return struct.pack("!BBHIIBBH", 0x80, 101, seq, ts, 0x01020304, event,
                       0x80 if end else 0, 160)


@pytest.mark.parametrize("compiled", [True, False])
def test_audio_and_dtmf_mixed_are_counted_exactly_either_way(
        compiled: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Audio (counted in C when compiled) and DTMF (always Python) on one call: the same
    facts, every packet echoed."""
    if compiled and not (rtp.COMPILED_ECHO and Media(1).fast is not None):
        pytest.skip("the compiled fast path is not built")
    monkeypatch.setattr(rtp, "COMPILED_ECHO", compiled)
    media = Media(ssrc_key=7)
    packets = ([packet(seq) for seq in range(100)]
               + [dtmf(100 + i, 3, 16000, end=i >= 3) for i in range(6)]
               + [packet(seq) for seq in range(106, 206)])

    async def run() -> list[bytes]:
        loop = asyncio.get_running_loop()
        transport = rtp.MediaTransport(loop, media)
        local = transport.open("127.0.0.1")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as caller:
            caller.bind(("127.0.0.1", 0))
            caller.setblocking(False)
            media.expect("call-1", caller.getsockname(), ECHO, 101)
            try:
                got: list[bytes] = []
                for data in packets:
                    caller.sendto(data, local)
                    if len(got) < 3:  # the first few one by one: the reader's path too
                        got.append(await asyncio.wait_for(loop.sock_recv(caller, 2048), 5.0))
                while len(got) < len(packets):
                    got.append(await asyncio.wait_for(loop.sock_recv(caller, 2048), 5.0))
                return got
            finally:
                transport.close()

    got = asyncio.run(run())
    assert sorted(struct.unpack("!H", p[2:4])[0] for p in got) == list(range(206))
    facts = media.facts("call-1")
    assert facts is not None
    assert (facts.packets_in, facts.packets_out, facts.digits, facts.payload_types) == (
        206, 206, "3", [0, 101])
    assert media.packets == media.sent == 206
    if compiled:
        assert media.fast is not None and media.fast.packets >= 150  # audio, in C


def test_a_busy_socket_is_read_again_after_the_hold_and_an_idle_one_on_arrival() -> None:
    hold = 0.5
    media = Media(1)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        transport = rtp.MediaTransport(loop, media, hold=hold)
        local = transport.open("127.0.0.1")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as caller:
            caller.bind(("127.0.0.1", 0))
            caller.setblocking(False)
            media.expect("call-1", caller.getsockname(), ECHO, None)
            try:
                caller.sendto(packet(1), local)  # idle socket: read when it arrives
                await asyncio.wait_for(loop.sock_recv(caller, 2048), 5.0)
                first = loop.time()
                caller.sendto(packet(2), local)  # busy now: read after the hold
                await asyncio.wait_for(loop.sock_recv(caller, 2048), 5.0)
                assert loop.time() - first >= hold / 2
                deadline = loop.time() + 5.0  # a read that finds nothing: idle again
                while transport._held and loop.time() < deadline:
                    await asyncio.sleep(0.01)
                assert not transport._held
                sent = loop.time()
                caller.sendto(packet(3), local)
                await asyncio.wait_for(loop.sock_recv(caller, 2048), 5.0)
                assert loop.time() - sent < hold / 2
            finally:
                transport.close()

    asyncio.run(run())
    facts = media.facts("call-1")
    assert facts is not None and facts.packets_out == 3


def test_the_compiled_echo_over_ipv6() -> None:
    media = Media(ssrc_key=0x0F0F0F0F)
    if not (rtp.COMPILED_ECHO and media.fast is not None):
        pytest.skip("the compiled fast path is not built")
    if not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback here")

    async def run() -> list[bytes]:
        loop = asyncio.get_running_loop()
        transport = rtp.MediaTransport(loop, media)
        local = transport.open("::1")
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as caller:
            caller.bind(("::1", 0))
            caller.setblocking(False)
            media.expect("call-6", caller.getsockname()[:2], ECHO, None)
            try:
                got: list[bytes] = []
                for seq in range(60):
                    caller.sendto(packet(seq), local)
                    if seq == 0:  # the first one through Python, then the rest in C
                        got.append(await asyncio.wait_for(loop.sock_recv(caller, 2048), 5.0))
                while len(got) < 60:
                    got.append(await asyncio.wait_for(loop.sock_recv(caller, 2048), 5.0))
                return got
            finally:
                transport.close()

    got = asyncio.run(run())
    assert {struct.unpack("!I", p[8:12])[0] for p in got} == {0x01020304 ^ 0x0F0F0F0F}
    facts = media.facts("call-6")
    assert facts is not None and (facts.packets_in, facts.packets_out) == (60, 60)
    assert media.fast.packets == 59


@pytest.mark.parametrize("compiled", [True, False])
def test_a_wildcard_socket_echoes_to_a_caller_connected_to_the_address_it_sent_to(
        compiled: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bound to 0.0.0.0, the media socket echoes audio and DTMF from 127.0.0.5 to a caller
    connect()-ed there (a connected UDP socket drops datagrams from any other address;
    without IP_PKTINFO the echo would leave from 127.0.0.1)."""
    media = Media(ssrc_key=7, compiled=compiled)
    if compiled and not (rtp.COMPILED_ECHO and rtp.COMPILED_REACHED and media.fast is not None):
        pytest.skip("the compiled fast path is not built")
    monkeypatch.setattr(rtp, "COMPILED_ECHO", compiled)
    packets = ([packet(seq) for seq in range(50)]
               + [dtmf(50 + i, 9, 8000, end=i >= 3) for i in range(6)]
               + [packet(seq) for seq in range(56, 106)])

    async def run() -> list[bytes]:
        loop = asyncio.get_running_loop()
        transport = rtp.MediaTransport(loop, media)
        port = transport.open("0.0.0.0")[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as caller:
            caller.bind(("127.0.0.1", 0))
            caller.connect(("127.0.0.5", port))
            caller.setblocking(False)
            media.expect("call-1", caller.getsockname(), ECHO, 101)
            try:
                got: list[bytes] = []
                for data in packets:
                    caller.send(data)
                    if not got:  # the first one through Python
                        got.append(await asyncio.wait_for(loop.sock_recv(caller, 2048), 5.0))
                while len(got) < len(packets):
                    got.append(await asyncio.wait_for(loop.sock_recv(caller, 2048), 5.0))
                return got
            finally:
                transport.close()

    got = asyncio.run(run())
    assert sorted(struct.unpack("!H", p[2:4])[0] for p in got) == list(range(106))
    facts = media.facts("call-1")
    assert facts is not None
    assert (facts.packets_in, facts.packets_out, facts.digits) == (106, 106, "9")
    if compiled:
        assert media.fast is not None and media.fast.packets >= 90  # audio, in C
