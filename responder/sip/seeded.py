"""Keyed hashes: everything that looks random is a function of the seed and the request.

SPEC §3.4: a retransmitted request (same Call-ID, top Via branch and CSeq) gets
the same decision and the same bytes, and the same seed repeats a test run.
BLAKE2b in keyed mode (RFC 7693) is the one primitive: fast, and unguessable
without the seed, so tags and nonces are not predictable by a peer.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Mapping
from types import ModuleType

from responder._accel import SPEEDUPS, adopt, assumptions, mismatch

# The To tag: keyed BLAKE2b of "{call_id}\0{from_tag}\0{branch}", this many bytes, this
# personalisation (written in responder/_accel/_speedups.c too: checked below).
TAG_SIZE = 6
_HEX = re.compile(r"[0-9a-f]+")  # a nonce's parts, as nonce() writes them
TAG_PERSON = b"to-tag"

TagState = Callable[[bytes], bytes]
ToTag = Callable[[bytes, str | None, str | None], str | None]

# (call_id, from_tag) whose tags the compiled to_tag must give as hashlib does: None, one
# block, several blocks (a longer text is left to hashlib, as non-ASCII is).
_TAG_PROBES = [(None, None), ("1-4242@127.0.0.1", "4242SIPpTag001"), ("c" * 200, "b" * 300)]


def check_speedups(ext: ModuleType, layout: Mapping[str, object] | None = None) -> str | None:
    """Why the compiled To tag cannot be used, or None: its ``ASSUMES["to_tag"]`` against
    this module's parameters, then :data:`_TAG_PROBES` computed by it and by hashlib."""
    mine = {"digest size": TAG_SIZE, "person": TAG_PERSON}
    why = mismatch(assumptions(ext, "to_tag"), mine if layout is None else layout)
    if why is not None:
        return why
    key = hashlib.blake2b(b"probe", digest_size=32).digest()
    try:
        state = ext.tag_state(key)
        for call_id, from_tag in _TAG_PROBES:
            h = hashlib.blake2b(key=key, digest_size=TAG_SIZE, person=TAG_PERSON)
            h.update(f"{call_id}\x00{from_tag}".encode())
            got, want = ext.to_tag(state, call_id, from_tag), h.hexdigest()
            if got != want:
                return f"To tag of {call_id!r:.20}: the extension {got!r}, hashlib {want!r}"
    except (AttributeError, TypeError, ValueError) as exc:
        return f"To tag: {type(exc).__name__}: {exc}"
    return None


def use_speedups(ext: ModuleType | None, layout: Mapping[str, object] | None = None,
                 ) -> tuple[TagState | None, ToTag | None, str | None]:
    """(tag_state, to_tag) of the extension, or Nones; and why not, when it is built."""
    got, why = adopt(ext, "To tag", lambda e: check_speedups(e, layout))
    return (got.tag_state, got.to_tag, None) if got is not None else (None, None, why)


# The compiled To tag (responder/_accel/_speedups.c), when it is there and checked: the state
# after the key block, and the function that goes on from it (None for text it leaves to
# hashlib). Both spend about as long on the one BLAKE2b compression; what the compiled one
# saves is the Python around hashlib (f-string, encode, copy, update, hexdigest): 0.4-0.5 us
# a response, hashlib alone +60-75% (scripts/bench_tag.py).
_TAG_STATE, _TO_TAG, SPEEDUPS_DISABLED_BECAUSE = use_speedups(SPEEDUPS)


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
        self._tag_hash = hashlib.blake2b(key=self._key, digest_size=TAG_SIZE,
                                         person=TAG_PERSON)
        self._c_tag_state = _TAG_STATE(self._key) if _TAG_STATE else b""  # the same, compiled

    def _digest(self, purpose: bytes, text: str, size: int) -> bytes:
        h = hashlib.blake2b(key=self._key, digest_size=size, person=purpose)
        h.update(text.encode("utf-8", "surrogateescape"))
        return h.digest()

    def to_tag(self, call_id: str | None, from_tag: str | None) -> str:
        """Our To tag in a dialog (SPEC §4): a keyed hash of Call-ID and From tag, so every
        response to every request of one dialog carries it, and an in-dialog request whose
        To tag we could not have issued is known without a table (:meth:`ours`)."""
        if _TO_TAG is not None:
            tag = _TO_TAG(self._c_tag_state, call_id, from_tag)
            if tag is not None:
                return tag
        h = self._tag_hash.copy()
        h.update(f"{call_id}\x00{from_tag}".encode("utf-8", "surrogateescape"))
        return h.hexdigest()

    def ours(self, to_tag: str, call_id: str | None, from_tag: str | None) -> bool:
        """Whether ``to_tag`` is the tag we give the dialog of (Call-ID, From tag)."""
        return hmac.compare_digest(to_tag.encode("utf-8", "surrogateescape"),
                                   self.to_tag(call_id, from_tag).encode())

    def key32(self, purpose: str) -> int:
        """32 keyed bits for one use named by ``purpose`` (the echo's SSRC transform)."""
        return int.from_bytes(self._digest(b"key32", purpose, 4), "big")

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
        # ASCII rules: exactly what nonce() writes (lower-case hex, no sign, no leading zero,
        # at most 16 digits), so int() sees no Unicode digit and the MAC no other spelling.
        stamp_hex, given = nonce[:-24], nonce[-24:]
        if not (0 < len(stamp_hex) <= 16 and nonce.isascii()
                and _HEX.fullmatch(stamp_hex) and _HEX.fullmatch(given)):
            return False
        stamp = int(stamp_hex, 16)
        if f"{stamp:x}" != stamp_hex:
            return False
        mac = self._digest(b"nonce", f"{stamp:x}\x00{source_host}", 12).hex()
        return hmac.compare_digest(mac.encode(), given.encode()) and 0 <= now - stamp <= lifetime
