"""Numbers read from a message, by ASCII rules.

RFC 3261 §25.1: ``DIGIT`` is %x30-39. ``str.isdigit`` and ``int`` accept far more (``²``,
Arabic-Indic digits, ``1_000``, surrounding spaces) and ``int`` refuses to make a number of
more than 4,300 digits with an exception; a value read from a message goes through
:func:`number` instead, which returns None for anything but ASCII digits within a limit.
"""

from __future__ import annotations

MAX_UINT32 = 2**32 - 1  # CSeq (RFC 3261 §8.1.1.5), Expires (§20.19), delta-seconds


def number(text: str, limit: int) -> int | None:
    """``text`` read as 1*DIGIT (ASCII 0-9, leading zeros allowed) when its value is at most
    ``limit``; None for anything else (empty, a sign, whitespace, a non-ASCII digit, a value
    beyond ``limit``), so no huge int is ever made."""
    if not text.isascii() or not text.isdigit():  # ASCII and isdigit(): 0-9 only
        return None
    if len(text) < 10:
        n = int(text)
    else:
        significant = text.lstrip("0") or "0"
        if len(significant) > len(str(limit)):
            return None
        n = int(significant)
    return n if n <= limit else None
