from collections.abc import Callable, Sequence

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
    fd: int, family: int, effects: Sequence[tuple[object, ...]], send_type: type
) -> int: ...
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
def to_tag(state: bytes, call_id: str | None, from_tag: str | None) -> str | None: ...
