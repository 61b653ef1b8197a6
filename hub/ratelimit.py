"""Request rate limits: one token bucket per key (organisation id or client address).

Each key has a bucket of at most ``burst`` tokens that refills at ``rate``
tokens per second; a request takes one token, or is refused with
:class:`hub.errors.RateLimited` carrying the whole seconds until a token is
back (the ``Retry-After`` header).

Memory is bounded. A bucket that has been idle long enough to be full again
is the same as no bucket, so it is dropped; and at most ``max_keys`` buckets
are kept: past that, the least recently used one is dropped, which gives that
key a fresh, full bucket when it returns. An attacker who spreads requests
over more than ``max_keys`` keys can therefore reset buckets, but never make
any one key exceed ``burst`` requests at once, nor use unbounded memory.

The limiter lives in one process: with several hub replicas each keeps its
own buckets, so the effective limit is up to ``replicas x rate``. Limits that
must hold across replicas belong in the reverse proxy or the database.

Time comes from the injected ``clock`` (seconds as a float, monotonic), so
tests never sleep.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from hub.errors import RateLimited

DEFAULT_MAX_KEYS = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBucket:
    """Per-key token buckets; ``check(key)`` takes one token or raises ``RateLimited``."""

    __slots__ = ("_buckets", "_burst", "_clock", "_max_keys", "_rate", "_refill_time")

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate < math.inf:
            raise ValueError("rate must be a positive number of requests per second")
        if type(burst) is not int or burst < 1:
            raise ValueError("burst must be a positive integer")
        if type(max_keys) is not int or max_keys < 1:
            raise ValueError("max_keys must be a positive integer")
        self._rate = float(rate)
        self._burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._refill_time = burst / self._rate  # seconds from empty to full
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def check(self, key: str) -> None:
        """Take one token from ``key``'s bucket; raise ``RateLimited`` if it is empty."""
        now = self._clock()
        self._evict_idle(now)
        bucket = self._bucket(key, now)
        elapsed = max(0.0, now - bucket.updated)  # a clock that steps back refills nothing
        bucket.tokens = min(float(self._burst), bucket.tokens + elapsed * self._rate)
        bucket.updated = max(bucket.updated, now)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return
        raise RateLimited(max(1, math.ceil((1.0 - bucket.tokens) / self._rate)))

    def __len__(self) -> int:
        """How many keys have a bucket now (tests read it)."""
        return len(self._buckets)

    def _bucket(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is not None:
            self._buckets.move_to_end(key)
            return bucket
        while len(self._buckets) >= self._max_keys:
            self._buckets.popitem(last=False)
        bucket = self._buckets[key] = _Bucket(tokens=float(self._burst), updated=now)
        return bucket

    def _evict_idle(self, now: float) -> None:
        """Drop buckets, oldest use first, that have refilled completely."""
        while self._buckets:
            oldest = next(iter(self._buckets.values()))
            if now - oldest.updated < self._refill_time:
                return
            self._buckets.popitem(last=False)
