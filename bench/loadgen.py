"""A small closed-loop load generator over loopback, and the server processes it drives.

``run_load``: ``concurrency`` workers each send requests back to back until
``total`` have been sent; latency is measured per request from send to full
response. A request answers the HTTP status it got (0 when there was no
answer at all), so a result tells exactly which statuses came back.
``spread_request`` sends them round robin to several servers (replicas of one
hub), directly: no proxy in between.

``server_process``: a server under test as a child process on a loopback
port, waited for until it accepts connections and always stopped on the way
out (SIGTERM, then SIGKILL), whatever happened in between.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

LOOPBACK = "127.0.0.1"
NO_ANSWER = 0  # the status recorded for a request that got no HTTP answer


@dataclass(frozen=True, slots=True)
class LoadResult:
    """One closed-loop run against one server."""

    name: str
    requests: int
    seconds: float
    latencies: tuple[float, ...]  # seconds, sorted ascending
    statuses: tuple[tuple[int, int], ...]  # (HTTP status, count), sorted by status
    expected: int = 201  # the status that means "accepted"
    first_error: str = ""  # the first unexpected answer, shortened, for the diagnosis
    server_cpu: float | None = None  # CPU seconds the server process used meanwhile

    @property
    def cpu_per_request(self) -> float | None:
        """Server CPU seconds per accepted request (None if unknown or none accepted)."""
        if self.server_cpu is None or not self.accepted:
            return None
        return self.server_cpu / self.accepted

    @property
    def accepted(self) -> int:
        return dict(self.statuses).get(self.expected, 0)

    @property
    def errors(self) -> int:
        return self.requests - self.accepted

    @property
    def rate(self) -> float:
        """Accepted requests per second of wall-clock time."""
        return self.accepted / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, p: float) -> float:
        """The nearest-rank ``p``-th percentile latency in seconds (NaN if none)."""
        if not self.latencies:
            return float("nan")
        index = min(len(self.latencies) - 1, round(p / 100 * (len(self.latencies) - 1)))
        return self.latencies[index]

    def line(self) -> str:
        return (
            f"{self.name:<28} {self.rate:9.0f} req/s   p50 {self.percentile(50) * 1000:7.1f} ms"
            f"   p99 {self.percentile(99) * 1000:7.1f} ms   errors {self.errors}"
        )


@dataclass(frozen=True, slots=True)
class Summary:
    """Medians over the rounds for one server (or one set of replicas)."""

    rate: float
    p50: float  # seconds
    p99: float
    errors: int
    cpu: float | None  # server CPU seconds per accepted request


def summarise(results: Sequence[LoadResult]) -> Summary:
    cpu = [r.cpu_per_request for r in results]
    return Summary(
        rate=statistics.median(r.rate for r in results),
        p50=statistics.median(r.percentile(50) for r in results),
        p99=statistics.median(r.percentile(99) for r in results),
        errors=sum(r.errors for r in results),
        cpu=None if None in cpu else statistics.median(c for c in cpu if c is not None),
    )


# One request: given a session and the request's sequence number (0..total-1),
# send it and return the HTTP status and body of the answer.
Request = Callable[[aiohttp.ClientSession, int], Awaitable[tuple[int, bytes]]]


def post_request(
    url: str, bodies: Sequence[tuple[Mapping[str, str], bytes]], *, offset: int = 0
) -> Request:
    """A request that POSTs ``bodies[offset + number]`` (headers, body) to ``url``."""

    async def send(session: aiohttp.ClientSession, number: int) -> tuple[int, bytes]:
        headers, body = bodies[offset + number]
        async with session.post(url, data=body, headers=headers) as response:
            return response.status, await response.read()

    return send


def spread_request(
    urls: Sequence[str], bodies: Sequence[tuple[Mapping[str, str], bytes]], *, offset: int = 0
) -> Request:
    """POSTs ``bodies[offset + number]`` to ``urls[number % len(urls)]``: round robin.

    In a closed loop this keeps about as many requests in flight at each server.
    """
    if not urls:
        raise ValueError("at least one URL")
    sends = [post_request(url, bodies, offset=offset) for url in urls]

    async def send(session: aiohttp.ClientSession, number: int) -> tuple[int, bytes]:
        return await sends[number % len(sends)](session, number)

    return send


async def run_load(
    name: str,
    request: Request,
    *,
    total: int,
    concurrency: int,
    timeout: float = 30.0,
    max_seconds: float = 300.0,
    expected: int = 201,
    server_pid: int | Sequence[int] | None = None,
) -> LoadResult:
    """Send ``total`` requests from ``concurrency`` workers over one connection pool.

    Each request may take ``timeout`` seconds, the whole run ``max_seconds``
    (``TimeoutError`` past that). A request that fails on the way counts as
    status ``NO_ANSWER``; anything else a request raises ends the run. With
    ``server_pid`` (one or several), the CPU time those processes used during the
    run is recorded.
    """
    if total < 1 or concurrency < 1:
        raise ValueError("total and concurrency must be at least 1")
    counter = iter(range(total))
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: list[str] = []

    async def worker(session: aiohttp.ClientSession) -> None:
        for number in counter:
            start = time.perf_counter()
            try:
                status, answer = await request(session, number)
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, answer = NO_ANSWER, type(exc).__name__.encode()
            latencies.append(time.perf_counter() - start)
            statuses[status] += 1
            if status != expected and not errors:
                errors.append(f"{status} {answer[:300].decode('utf-8', 'replace')}")

    connector = aiohttp.TCPConnector(limit=concurrency)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        cpu_before = _cpu_seconds(server_pid)
        start = time.perf_counter()
        workers = (worker(session) for _ in range(min(concurrency, total)))
        await asyncio.wait_for(asyncio.gather(*workers), max_seconds)
        seconds = time.perf_counter() - start
        cpu_after = _cpu_seconds(server_pid)
    return LoadResult(
        name=name,
        requests=total,
        seconds=seconds,
        latencies=tuple(sorted(latencies)),
        statuses=tuple(sorted(statuses.items())),
        expected=expected,
        first_error=errors[0] if errors else "",
        server_cpu=None if cpu_before is None or cpu_after is None else cpu_after - cpu_before,
    )


def _cpu_seconds(pids: int | Sequence[int] | None) -> float | None:
    """The summed CPU seconds of ``pids`` (None if any is unknown)."""
    if pids is None or isinstance(pids, int):
        return process_cpu_seconds(pids)
    seconds = [process_cpu_seconds(pid) for pid in pids]
    return None if not seconds or None in seconds else sum(s for s in seconds if s is not None)


def process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of process ``pid``, all its threads (Linux; else None)."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the command name may hold spaces
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


# --- server processes ---------------------------------------------------------------------


class ServerFailed(RuntimeError):
    """A server under test did not start; the message holds the tail of its log."""


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the server binds it next)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def _log_tail(path: Path, limit: int = 2000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return "(no log)"
    return data[-limit:].decode("utf-8", "replace").strip() or "(empty log)"


def _wait_listening(
    name: str, process: subprocess.Popen[bytes], port: int, log: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerFailed(f"{name} exited with {process.returncode}: {_log_tail(log)}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                pass
        except OSError:
            time.sleep(0.05)
            continue
        if process.poll() is None:  # it is our process that listens, not a stranger
            return
    raise ServerFailed(f"{name} did not listen on {LOOPBACK}:{port} within {timeout:g} s")


def stop_process(process: subprocess.Popen[bytes], *, grace: float = 5.0) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; always reaps the child."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()


@contextmanager
def server_process(
    name: str,
    argv: Sequence[str],
    *,
    port: int,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    ready_timeout: float = 30.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` (which must listen on ``LOOPBACK:port``) for the ``with`` block.

    stdout and stderr go to ``log``. Raises ``ServerFailed`` when the process
    exits or does not listen within ``ready_timeout``; stops it on every exit.
    """
    with log.open("wb") as sink:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else os.environ.copy(),
            cwd=cwd,
        )
        try:
            _wait_listening(name, process, port, log, ready_timeout)
            yield process
        finally:
            stop_process(process)


def check_accepted(
    results: Sequence[LoadResult], logs: Sequence[Path], error: Callable[[str], Exception]
) -> None:
    """Raise ``error(message)`` naming every load that had a request not accepted, with
    the tail of each server log."""
    failed = [r for r in results if r.errors]
    if not failed:
        return
    lines = [
        f"{r.name}: {r.errors} of {r.requests} not accepted, statuses {r.statuses}; "
        f"first: {r.first_error}"
        for r in failed
    ]
    for log in logs:
        tail = log.read_text(encoding="utf-8", errors="replace")[-1500:].strip()
        lines.append(f"--- {log.name} (tail) ---\n{tail or '(empty)'}")
    raise error("\n".join(lines))
