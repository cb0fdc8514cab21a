from collections.abc import Callable, Sequence
from typing import Any

from responder.sip.message import Request, TopVia

# What the C code assumes about the Python side, by part ("parser", "to_tag"): compared
# with the real classes and constants before use (responder._accel.mismatch).
ASSUMES: dict[str, dict[str, object]]

def configure(
    request: type[Request],
    top_via: type[TopVia],
    keys: dict[str, tuple[str, str, int]],
    header_key: Callable[[str], tuple[str, str, int] | None],
) -> None: ...
def parse(data: bytes) -> Request | None: ...
def recv_many(fd: int) -> list[tuple[bytes, tuple[str, int]]]: ...
def send_many(
    fd: int, family: int, effects: Sequence[tuple[object, ...]], send_type: type,
    reached: bool = False,
) -> int: ...
def recv_reached(
    fd: int, port: int
) -> list[tuple[bytes, tuple[str, int], tuple[str, int] | None]]: ...
def respond(
    req: Request,
    code: int,
    reason: str,
    tag: str | None,
    source: tuple[str, int],
    record_route: bool,
    tail: bytes,
) -> bytes | None: ...
def tag_state(key: bytes) -> bytes: ...
# Framer.feed's hot case from pos (between messages): (the messages and pings framed,
# where Python goes on, the line ends seen); responder/_accel/_framing.h.
def frame(
    buf: bytes | bytearray, pos: int, crlfs: int, ping: object
) -> tuple[list[Any], int, int]: ...
def to_tag(state: bytes, call_id: str | None, from_tag: str | None) -> str | None: ...

class EchoTable:
    """The RTP echo's hot loop (responder.core.media.Media.fast)."""

    packets: int
    sent: int
    send_errors: int
    sources: int
    calls: int
    def __init__(self, calls: int, sources: int, key: int) -> None: ...
    def set_call(self, slot: int, echo: bool, fast: bytes) -> None: ...
    def reset(self, slot: int) -> None: ...
    def take(
        self, slot: int
    ) -> tuple[int, int, int, int, float | None, float | None]: ...
    def add_source(self, source: tuple[str, int], slot: int) -> bool: ...
    def remove_source(self, source: tuple[str, int], slot: int) -> bool: ...
    def clear(self) -> None: ...
    def feed(
        self,
        packets: Sequence[tuple[bytes, tuple[str, int]]
                          | tuple[bytes, tuple[str, int], tuple[str, int] | None]],
        now: float,
    ) -> tuple[
        list[tuple[tuple[str, int], bytes, tuple[str, int] | None]],
        list[tuple[bytes, tuple[str, int]]
             | tuple[bytes, tuple[str, int], tuple[str, int] | None]],
    ]: ...
    def echo(
        self, fd: int, now: float, budget: int
    ) -> tuple[int, list[tuple[bytes, tuple[str, int]]]]: ...
    def echo_reached(
        self, fd: int, now: float, budget: int, port: int
    ) -> tuple[int, list[tuple[bytes, tuple[str, int], tuple[str, int] | None]]]: ...
