"""The media socket over real loopback UDP: echoes come back from it, to the source."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

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
