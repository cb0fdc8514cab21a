"""Keyed hashes: everything that looks random is a function of the seed and the request.

SPEC §3.4: a retransmitted request (same Call-ID, top Via branch and CSeq) gets
the same decision and the same bytes, and the same seed repeats a test run.
BLAKE2b in keyed mode (RFC 7693) is the one primitive: fast, and unguessable
without the seed, so tags and nonces are not predictable by a peer.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable

from .speedups import SPEEDUPS

# The compiled To tag (responder/_speedups.c), when it is there: the state after the key
# block, and the function that goes on from it (None for text it leaves to hashlib).
_TAG_STATE: Callable[[bytes], bytes] | None = SPEEDUPS.tag_state if SPEEDUPS else None
_TO_TAG: Callable[[bytes, str | None, str | None, str | None], str | None] | None = (
    SPEEDUPS.to_tag if SPEEDUPS else None)


def random_seed() -> int:
    """A fresh seed for a run started without ``--seed`` (it is logged at start)."""
    return secrets.randbelow(2**63)


class Seeded:
    """Derivations keyed by one seed. Immutable."""

    __slots__ = ("_c_tag_state", "_key", "_tag_hash", "seed")

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._key = hashlib.blake2b(str(seed).encode(), digest_size=32).digest()
        # Keyed BLAKE2b state after the key block: copying it is cheaper than re-keying.
        self._tag_hash = hashlib.blake2b(key=self._key, digest_size=6, person=b"to-tag")
        self._c_tag_state = _TAG_STATE(self._key) if _TAG_STATE else b""  # the same, compiled

    def _digest(self, purpose: bytes, text: str, size: int) -> bytes:
        h = hashlib.blake2b(key=self._key, digest_size=size, person=purpose)
        h.update(text.encode("utf-8", "surrogateescape"))
        return h.digest()

    def to_tag(self, call_id: str | None, from_tag: str | None, branch: str | None) -> str:
        """The To tag of every response to one request (SPEC §4): Call-ID, From tag, branch."""
        if _TO_TAG is not None:
            tag = _TO_TAG(self._c_tag_state, call_id, from_tag, branch)
            if tag is not None:
                return tag
        h = self._tag_hash.copy()
        h.update(f"{call_id}\x00{from_tag}\x00{branch}".encode("utf-8", "surrogateescape"))
        return h.hexdigest()

    def draw(self, transaction_key: str, salt: str) -> float:
        """A uniform number in [0, 1) for one decision (``salt`` names which one)."""
        d = self._digest(b"draw", f"{transaction_key}\x00{salt}", 8)
        return int.from_bytes(d, "big") / 2.0**64

    def noise(self, transaction_key: str, salt: str, size: int) -> bytes:
        """``size`` random-looking bytes for one transaction (the ``garbage`` fault)."""
        out = bytearray()
        block = 0
        while len(out) < size:
            out += self._digest(b"noise", f"{transaction_key}\x00{salt}\x00{block}", 64)
            block += 1
        return bytes(out[:size])

    def nonce(self, now: float, source_host: str, window: int = 30) -> str:
        """A stateless digest nonce: the issue window plus a MAC of it and the source host.

        The time is quantised to ``window`` seconds so that a retransmitted
        request inside one window gets byte-identical challenges.
        """
        stamp = int(now) // window * window
        mac = self._digest(b"nonce", f"{stamp:x}\x00{source_host}", 12).hex()
        return f"{stamp:x}{mac}"

    def nonce_valid(self, nonce: str, source_host: str, now: float, lifetime: float) -> bool:
        """True when ``nonce`` was issued by :meth:`nonce` for this host within ``lifetime``."""
        stamp_hex = nonce[:-24]
        try:
            stamp = int(stamp_hex, 16)
        except ValueError:
            return False
        mac = self._digest(b"nonce", f"{stamp:x}\x00{source_host}", 12).hex()
        return hmac.compare_digest(mac, nonce[-24:]) and 0 <= now - stamp <= lifetime
