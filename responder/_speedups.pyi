"""The compiled fast path of responder.parser (responder/_speedups.c)."""

from collections.abc import Callable, Sequence

from .message import Request, TopVia

def configure(
    request: type[Request],
    top_via: type[TopVia],
    keys: dict[str, tuple[str, str, int]],
    header_key: Callable[[str], tuple[str, str, int] | None],
) -> None: ...
def parse(data: bytes) -> Request | None: ...
def recv_many(fd: int) -> list[tuple[bytes, tuple[str, int]]]: ...
def send_many(fd: int, family: int, outs: Sequence[tuple[object, ...]]) -> int: ...
