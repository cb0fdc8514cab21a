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
def to_tag(
    state: bytes, call_id: str | None, from_tag: str | None, branch: str | None
) -> str | None: ...
