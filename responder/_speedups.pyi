"""The compiled fast path of responder.parser (responder/_speedups.c)."""

from collections.abc import Callable

from .message import Request, TopVia

def configure(
    request: type[Request],
    top_via: type[TopVia],
    keys: dict[str, tuple[str, str, int]],
    header_key: Callable[[str], tuple[str, str, int] | None],
) -> None: ...
def parse(data: bytes) -> Request | None: ...
