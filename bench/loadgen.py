"""A small closed-loop load generator over loopback.

``concurrency`` workers each send requests back to back until ``total`` have
been sent; latency is measured per request from send to full response.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp


@dataclass(frozen=True, slots=True)
class LoadResult:
    name: str
    requests: int
    errors: int
    seconds: float
    latencies: tuple[float, ...]

    @property
    def rate(self) -> float:
        return (self.requests - self.errors) / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        index = min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))
        return ordered[index]

    def line(self) -> str:
        return (
            f"{self.name:<28} {self.rate:9.0f} req/s   p50 {self.percentile(50) * 1000:7.1f} ms"
            f"   p99 {self.percentile(99) * 1000:7.1f} ms   errors {self.errors}"
        )


# One request: given a session and the request's sequence number, send it and
# return True if the server accepted it.
Request = Callable[[aiohttp.ClientSession, int], Awaitable[bool]]


async def run_load(
    name: str, request: Request, *, total: int, concurrency: int, timeout: float = 60.0
) -> LoadResult:
    counter = iter(range(total))
    latencies: list[float] = []
    errors = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        for number in counter:
            start = time.perf_counter()
            ok = await request(session, number)
            latencies.append(time.perf_counter() - start)
            errors += 0 if ok else 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        seconds = time.perf_counter() - start
    return LoadResult(name, total, errors, seconds, tuple(latencies))


def median(values: list[float]) -> float:
    return statistics.median(values)
