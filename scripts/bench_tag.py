#!/usr/bin/env python3
"""The To tag, per call: the standard library's keyed BLAKE2b against the compiled one.

A To tag is BLAKE2b (RFC 7693) keyed with the seed's key, person ``to-tag``, 6 bytes, over
``"{call_id}\\0{from_tag}\\0{branch}"``, as 12 hex digits (responder.sip.seeded). Printed
side by side in one run, as ns/call medians of several ``timeit`` repeats:

* ``hashlib``: ``.copy()`` of a pre-keyed state, ``update``, ``hexdigest``, as
  ``Seeded.to_tag`` does without the extension;
* ``compiled to_tag``: ``_speedups.to_tag`` on the state after the key block;
* ``Seeded.to_tag`` as the engine calls it, with the compiled tag and with hashlib only:
  their difference is what the compiled tag saves per response.

The extension keeps its BLAKE2b only while hashlib is more than ~15% slower and the saving
is above ~0.2 us a call.

    python scripts/bench_tag.py [--repeat 9] [--number 200000]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import timeit
from collections.abc import Callable

from responder.sip import seeded
from responder.sip.seeded import TAG_PERSON, TAG_SIZE, Seeded

# What a SIPp request carries: the tag is over these three, once per request answered.
CALL_ID = "1-4242@127.0.0.1"
FROM_TAG = "4242SIPpTag001"


def median_ns(fn: Callable[[], object], number: int, repeat: int) -> float:
    """The median over ``repeat`` runs of ``number`` calls, in ns per call."""
    fn()
    runs = timeit.repeat(fn, number=number, repeat=repeat)
    return statistics.median(runs) / number * 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--number", type=int, default=200_000)
    args = ap.parse_args()
    n, r = args.number, args.repeat

    keys = Seeded(7)
    keyed = hashlib.blake2b(key=keys._key, digest_size=TAG_SIZE, person=TAG_PERSON)

    def with_hashlib() -> str:
        h = keyed.copy()
        h.update(f"{CALL_ID}\x00{FROM_TAG}".encode("utf-8", "surrogateescape"))
        return h.hexdigest()

    rows = {"hashlib (copy, update, hexdigest)": median_ns(with_hashlib, n, r)}
    compiled = seeded._TO_TAG
    if compiled is not None and seeded._TAG_STATE is not None:
        state = seeded._TAG_STATE(keys._key)
        assert compiled(state, CALL_ID, FROM_TAG) == with_hashlib()
        rows["compiled to_tag"] = median_ns(
            lambda: compiled(state, CALL_ID, FROM_TAG), n, r)
        rows["Seeded.to_tag, compiled"] = median_ns(
            lambda: keys.to_tag(CALL_ID, FROM_TAG), n, r)
    seeded._TO_TAG = None  # this process only: Seeded.to_tag with hashlib alone
    try:
        rows["Seeded.to_tag, hashlib only"] = median_ns(
            lambda: keys.to_tag(CALL_ID, FROM_TAG), n, r)
    finally:
        seeded._TO_TAG = compiled

    base = rows["hashlib (copy, update, hexdigest)"]
    print(f"{'To tag':36} {'ns/call':>8} {'vs hashlib':>10}   (median of {r} x {n})")
    for name, ns in rows.items():
        print(f"{name:36} {ns:8.0f} {ns / base:9.2f}x")
    if compiled is None:
        print("no compiled to_tag (extension not built, off, or its checks failed)")
        return
    fast, slow = rows["Seeded.to_tag, compiled"], rows["Seeded.to_tag, hashlib only"]
    print(f"saved per response: {slow - fast:.0f} ns; hashlib only is {slow / fast - 1:+.0%}")


if __name__ == "__main__":
    main()
