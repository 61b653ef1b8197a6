"""Token buckets with a fake clock: burst, refill, Retry-After, isolation and bounded memory."""

from __future__ import annotations

import pytest

from hub.errors import RateLimited
from hub.ratelimit import TokenBucket


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_burst_then_refused(clock: FakeClock) -> None:
    limiter = TokenBucket(rate=2.0, burst=5, clock=clock)
    for _ in range(5):
        limiter.check("ggd-west")
    with pytest.raises(RateLimited) as refused:
        limiter.check("ggd-west")
    assert refused.value.retry_after == 1
    assert refused.value.status == 429


def test_refill_at_rate(clock: FakeClock) -> None:
    limiter = TokenBucket(rate=2.0, burst=2, clock=clock)
    limiter.check("a")
    limiter.check("a")
    clock.advance(0.49)
    with pytest.raises(RateLimited):
        limiter.check("a")
    clock.advance(0.01)  # 0.5 s at 2/s: one token back
    limiter.check("a")
    with pytest.raises(RateLimited):
        limiter.check("a")


def test_refill_never_exceeds_burst(clock: FakeClock) -> None:
    limiter = TokenBucket(rate=1.0, burst=3, clock=clock)
    limiter.check("a")
    clock.advance(3600)
    for _ in range(3):
        limiter.check("a")
    with pytest.raises(RateLimited):
        limiter.check("a")


def test_retry_after_rounds_up_to_whole_seconds(clock: FakeClock) -> None:
    limiter = TokenBucket(rate=0.1, burst=1, clock=clock)  # one request per 10 s
    limiter.check("a")
    with pytest.raises(RateLimited) as refused:
        limiter.check("a")
    assert refused.value.retry_after == 10
    clock.advance(2.5)
    with pytest.raises(RateLimited) as refused:
        limiter.check("a")
    assert refused.value.retry_after == 8
    clock.advance(7.5)
    limiter.check("a")


def test_refused_requests_cost_nothing(clock: FakeClock) -> None:
    limiter = TokenBucket(rate=1.0, burst=1, clock=clock)
    limiter.check("a")
    for _ in range(100):
        with pytest.raises(RateLimited):
            limiter.check("a")
    clock.advance(1.0)
    limiter.check("a")


def test_keys_are_independent(clock: FakeClock) -> None:
    limiter = TokenBucket(rate=1.0, burst=1, clock=clock)
    limiter.check("politie-oost")
    with pytest.raises(RateLimited):
        limiter.check("politie-oost")
    limiter.check("ggd-west")
    limiter.check("192.0.2.7")


def test_clock_stepping_back_grants_nothing(clock: FakeClock) -> None:
    limiter = TokenBucket(rate=1.0, burst=1, clock=clock)
    limiter.check("a")
    clock.advance(-100)
    with pytest.raises(RateLimited):
        limiter.check("a")
    clock.advance(100)  # back where it was: still no time has passed for the bucket
    with pytest.raises(RateLimited):
        limiter.check("a")
    clock.advance(1)
    limiter.check("a")


def test_idle_buckets_are_dropped(clock: FakeClock) -> None:
    limiter = TokenBucket(rate=1.0, burst=10, clock=clock)
    for key in ("a", "b", "c"):
        limiter.check(key)
    assert len(limiter) == 3
    clock.advance(9.9)
    limiter.check("d")
    assert len(limiter) == 4  # a, b, c not yet full again
    clock.advance(0.1)
    limiter.check("d")
    assert len(limiter) == 1  # a, b, c refilled completely: the same as no bucket


def test_number_of_keys_is_capped(clock: FakeClock) -> None:
    limiter = TokenBucket(rate=1.0, burst=1, clock=clock, max_keys=100)
    for n in range(10_000):
        limiter.check(f"203.0.113.{n}")
        assert len(limiter) <= 100
    assert len(limiter) == 100


def test_cap_evicts_the_least_recently_used(clock: FakeClock) -> None:
    limiter = TokenBucket(rate=1.0, burst=1, clock=clock, max_keys=2)
    limiter.check("old")
    limiter.check("busy")
    with pytest.raises(RateLimited):
        limiter.check("old")  # "old" is now the most recently used
    limiter.check("new")  # evicts "busy", not "old"
    with pytest.raises(RateLimited):
        limiter.check("old")
    limiter.check("busy")  # a fresh bucket: the documented cost of the cap


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": 0, "burst": 1},
        {"rate": -1.0, "burst": 1},
        {"rate": float("inf"), "burst": 1},
        {"rate": float("nan"), "burst": 1},
        {"rate": True, "burst": 1},
        {"rate": 1.0, "burst": 0},
        {"rate": 1.0, "burst": 1.5},
        {"rate": 1.0, "burst": 1, "max_keys": 0},
    ],
    ids=repr,
)
def test_refuses_bad_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        TokenBucket(**kwargs)  # type: ignore[arg-type]
