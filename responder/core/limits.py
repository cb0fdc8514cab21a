"""Bounds and guards: every table the engine keeps has its limit here, and the gate in
front of the engine (allow list, per-source rate limit) is sans-I/O like the engine.

The engine takes ``now`` as an input; so does everything here. Nothing grows without
bound, whatever a peer sends: each table evicts its oldest entry when full, and the
evictions are counted.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# --- the bounds, in one place (docs/faults.md lists them) --------------------------------
JOURNAL_LIMIT = 1_000_000      # largest journal_size an Engine accepts (test journal)
PENDING_LIMIT = 100_000        # transactions with delayed steps or repeats at once
COMPLETED_LIMIT = 100_000      # finished transactions remembered for retransmissions
DROP_FIRST_LIMIT = 100_000     # transactions whose transmissions drop_first is counting
RATE_SOURCES_LIMIT = 65_536    # source addresses with a rate-limit bucket (LRU)
ALLOW_CACHE_LIMIT = 65_536     # source addresses with a cached allow-list verdict
TIMER_B = 32.0                 # seconds a transaction is remembered: 64·T1 (RFC 3261 Timer B/F)
# ... and in bytes (SPEC §10: every table is bounded in bytes as well as entries). What an
# entry weighs is an estimate of the memory it holds (docs/limits.md "Tables: entries and
# bytes"); a full table refuses (pending) or evicts its oldest (completed, journal).
MIB = 1 << 20
PENDING_BYTES = 512 * MIB      # pending transactions: a new one past it gets 503
COMPLETED_BYTES = 256 * MIB    # completed transactions: the oldest is forgotten
JOURNAL_BYTES = 512 * MIB      # the journal: the oldest entry goes
RETRY_AFTER = 5                # seconds, in the 503 a full pending table answers

# Discard reasons (counters.discarded keys) added by the gate, next to errors.REASONS.
NOT_ALLOWED = "not-allowed"
RATE_LIMITED = "rate-limited"


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds an Engine uses; tests pass small ones."""

    journal: int = JOURNAL_LIMIT
    pending: int = PENDING_LIMIT
    completed: int = COMPLETED_LIMIT
    drop_first: int = DROP_FIRST_LIMIT
    rate_sources: int = RATE_SOURCES_LIMIT
    allow_cache: int = ALLOW_CACHE_LIMIT
    remember: float = TIMER_B
    pending_bytes: int = PENDING_BYTES
    completed_bytes: int = COMPLETED_BYTES
    journal_bytes: int = JOURNAL_BYTES

    @property
    def timers(self) -> int:
        """The timer heap: one live entry per pending transaction, plus stale ones left by
        CANCEL, compacted away past this size."""
        return 2 * self.pending + 64


LIMITS = Limits()


class TableStat(NamedTuple):
    size: int
    limit: int
    evicted: int  # entries pushed out (pending: new entries refused) since the start
    bytes: int = 0       # what the entries weigh (tables bounded in bytes; else 0)
    byte_limit: int = 0  # ... and the bound (0: a table bounded in entries only)

K = TypeVar("K")
V = TypeVar("V")


class Expiring(Generic[K, V]):
    """A table whose entries live ``ttl`` seconds from when they were stored, at most
    ``limit`` of them (and, with ``weigh``, at most ``budget`` bytes of them), the oldest
    evicted first.

    Entries are kept in the order they expire (all have the same ``ttl``), so expiry
    and eviction both take from the front. ``table`` is public for a cheap emptiness
    test on the hot path (``if t.table:``).
    """

    __slots__ = ("budget", "bytes", "evicted", "limit", "table", "ttl", "weigh")

    def __init__(self, limit: int, ttl: float, budget: int = 0,
                 weigh: Callable[[V], int] | None = None) -> None:
        self.limit = limit
        self.ttl = ttl
        self.budget = budget if weigh is not None else 0
        self.weigh = weigh
        # key -> (expires, value, weight)
        self.table: OrderedDict[K, tuple[float, V, int]] = OrderedDict()
        self.evicted = 0
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.table)

    def expire(self, now: float) -> None:
        table = self.table
        while table:
            expires = next(iter(table.values()))[0]
            if expires > now:
                break
            self.bytes -= table.popitem(last=False)[1][2]

    def get(self, key: K, now: float) -> V | None:
        if not self.table:
            return None
        self.expire(now)
        entry = self.table.get(key)
        return None if entry is None else entry[1]

    def put(self, key: K, value: V, now: float) -> None:
        """Store ``value``; its life (``ttl``) starts now."""
        table = self.table
        old = table.pop(key, None)
        if old is not None:
            self.bytes -= old[2]
        weight = self.weigh(value) if self.weigh is not None else 0
        table[key] = (now + self.ttl, value, weight)
        self.bytes += weight
        while len(table) > self.limit or (self.budget and self.bytes > self.budget
                                          and len(table) > 1):
            self.bytes -= table.popitem(last=False)[1][2]
            self.evicted += 1

    def update(self, key: K, value: V) -> None:
        """Replace the value of a stored entry, keeping its expiry, place and weight (for
        values whose weight does not change, such as counts)."""
        expires, _, weight = self.table[key]
        self.table[key] = (expires, value, weight)

    def clear(self) -> None:
        self.table.clear()
        self.bytes = 0

    def stat(self) -> TableStat:
        return TableStat(len(self.table), self.limit, self.evicted, self.bytes, self.budget)


def tally(table: Expiring[K, int], key: K, now: float, upto: int) -> int:
    """Count one more transmission of ``key`` (its life starts with the first one); the
    count it reached, at most ``upto`` + 1 (then it stays there until it expires)."""
    seen = table.get(key, now)
    if seen is None:
        table.put(key, 1, now)
        return 1
    if seen <= upto:
        table.update(key, seen + 1)
    return min(seen + 1, upto + 1)


class RateLimiter:
    """A token bucket per source address: ``rate`` datagrams a second, bursts of ``rate``
    (at least 1). At most ``limit`` buckets, the least recently seen source evicted."""

    __slots__ = ("_buckets", "burst", "evicted", "limit", "rate")

    def __init__(self, rate: float, limit: int) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"a rate limit must be a positive number, not {rate!r}")
        self.rate = rate
        self.burst = max(rate, 1.0)
        self.limit = limit
        self.evicted = 0
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # host -> [tokens, t]

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, host: str, now: float) -> bool:
        """One token for a datagram from ``host``; False when its bucket is empty."""
        buckets = self._buckets
        bucket = buckets.get(host)
        if bucket is None:
            if len(buckets) >= self.limit:
                buckets.popitem(last=False)
                self.evicted += 1
            buckets[host] = [self.burst - 1.0, now]
            return True
        buckets.move_to_end(host)
        tokens, last = bucket
        if now > last:
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return True
        bucket[0] = tokens
        return False

    def clear(self) -> None:
        self._buckets.clear()

    def stat(self) -> TableStat:
        return TableStat(len(self._buckets), self.limit, self.evicted)


class AllowList:
    """Source addresses inside any of ``networks`` (IPv4 and IPv6; an IPv4-mapped IPv6
    source is checked as its IPv4 address). Verdicts are cached per address, bounded."""

    __slots__ = ("_verdicts", "limit", "networks")

    def __init__(self, networks: Iterable[IPNetwork], limit: int) -> None:
        self.networks = tuple(networks)
        if not self.networks:
            raise ValueError("an empty allow list would discard every datagram; "
                             "pass None for no allow list")
        self.limit = limit
        self._verdicts: dict[str, bool] = {}

    def allows(self, host: str) -> bool:
        verdict = self._verdicts.get(host)
        if verdict is None:
            verdict = self._check(host)
            if len(self._verdicts) >= self.limit:
                self._verdicts.clear()  # bounded: start the cache over
            self._verdicts[host] = verdict
        return verdict

    def _check(self, host: str) -> bool:
        try:
            addr = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.networks)


class Gate:
    """What a datagram from ``host`` passes before it is parsed: the allow list, then the
    rate limit. ``check`` returns the discard reason, or None to go on."""

    __slots__ = ("allow", "rate")

    def __init__(self, allow: AllowList | None, rate: RateLimiter | None) -> None:
        self.allow = allow
        self.rate = rate

    @staticmethod
    def make(allow: Iterable[IPNetwork] | None, rate_limit: float | None,
             limits: Limits) -> Gate | None:
        """The gate for an Engine's ``allow`` and ``rate_limit``; None when both are off."""
        if allow is None and rate_limit is None:
            return None
        return Gate(None if allow is None else AllowList(allow, limits.allow_cache),
                    None if rate_limit is None else RateLimiter(rate_limit, limits.rate_sources))

    def check(self, host: str, now: float) -> str | None:
        if self.allow is not None and not self.allow.allows(host):
            return NOT_ALLOWED
        if self.rate is not None and not self.rate.take(host, now):
            return RATE_LIMITED
        return None


# --- for the command line -----------------------------------------------------------------
_RATE = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*(?:/\s*s)?\s*")


def parse_rate(text: str) -> float:
    """``--rate-limit``: ``100/s``, ``100``, ``2.5/s`` -> datagrams a second; ValueError."""
    m = _RATE.fullmatch(text)
    rate = float(m.group(1)) if m else 0.0
    if rate <= 0:
        raise ValueError(f"{text!r}: expected a rate such as 100/s")
    return rate


def parse_network(text: str) -> IPNetwork:
    """``--allow``: a CIDR (``192.0.2.0/24``, ``2001:db8::/32``) or one address; ValueError."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError as exc:
        raise ValueError(f"{text!r}: expected a CIDR such as 192.0.2.0/24 ({exc})") from None
