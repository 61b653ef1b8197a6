"""PostgreSQL: the hub with one and two replicas against a floor, and notices across them.

A fresh database on the PostgreSQL server of ``SCHAKEL_BENCH_PG_URL`` (default: the
local test server) is made for the run, migrated once with ``schakel hub migrate``, and
shared by two ``schakel hub serve`` processes (replicas A and B, loopback ports); the
floor (``bench.floor`` on PostgreSQL: group commit, one INSERT per batch through asyncpg) gets a
database of its own. Both databases are dropped afterwards, whatever happened; those a
killed run left behind are dropped by the next run on this machine.

1. Throughput: the same closed-loop load at the same concurrency against the floor,
   replica A alone ("1 replica") and A and B together ("2 replicas": the load
   generator sends requests round robin to both, directly, without a proxy), in
   rounds that rotate the order, after a warm-up of each. The floor receives the very
   request bodies the hub does.
2. Notices: the coordinator's WebSocket is open on replica A; envelopes to the
   coordinator are sent one at a time, in turn through A (the baseline) and through B,
   and the delay from sending to the frame that announces each is measured. A frame
   not there within ``NOTICE_TIMEOUT`` counts as not delivered; after
   ``GIVE_UP_AFTER`` of those in a row through B the series ends (a hub whose notices
   do not cross replicas would otherwise take minutes to say so).

If the server is out of reach, ``measure_replicas`` returns :class:`Skipped` with the
reason, and the rest of the benchmark runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa

from bench import floor
from bench.cases import percentile
from bench.hub_server import (
    BENCH_USER,
    MESSAGES_PATH,
    RECIPIENT,
    SENDERS,
    Body,
    access_token,
    directory_bundle,
    migrate,
    open_keys,
    provision_network,
    running_hub,
    seal_bodies,
)
from bench.loadgen import (
    LOOPBACK,
    LoadResult,
    Summary,
    check_accepted,
    free_port,
    run_load,
    server_process,
    spread_request,
    summarise,
)
from schakel.demo import DemoNetwork, bootstrap

URL_VARIABLE = "SCHAKEL_BENCH_PG_URL"
DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
PREFIX = "schakel_bench_"
CONNECT_TIMEOUT = 5.0
LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost"}
NOTICE_TIMEOUT = 5.0  # seconds from sending until a notice counts as not delivered
GIVE_UP_AFTER = 3  # notices in a row not delivered across replicas end that series
MAX_RUN_SECONDS = 180.0  # one load run, at most
ONE, TWO = "1 replica", "2 replicas"


class NotAccepted(RuntimeError):
    """A server under test did not answer every request 201 (the message says what came)."""


@dataclass(frozen=True, slots=True)
class Settings:
    requests: int  # per target per round
    concurrency: int  # connections in all, spread over the replicas
    rounds: int
    warmup: int  # per target, before the rounds
    senders: int
    notices: int  # notices timed per series (same replica, other replica)

    @property
    def per_target(self) -> int:
        return self.warmup + self.rounds * self.requests

    @property
    def sealed(self) -> int:
        """Envelopes sealed before the load: each hub target and notice needs its own."""
        return 2 * self.per_target + 2 * self.notices


@dataclass(frozen=True, slots=True)
class Skipped:
    """The PostgreSQL section did not run: the server is out of reach."""

    url: str  # without a password
    reason: str


@dataclass(frozen=True, slots=True)
class ReplicaRound:
    floor: LoadResult
    one: LoadResult
    two: LoadResult


@dataclass(frozen=True, slots=True)
class Notice:
    """One envelope sent while the coordinator's socket listened on replica A."""

    cross: bool  # sent through replica B
    answered: float  # seconds from sending to the 201
    framed: float | None  # seconds from sending to the frame; None: not within the timeout


@dataclass(frozen=True, slots=True)
class NoticeDelays:
    samples: tuple[Notice, ...]
    attempted: int  # per series, before any early end

    def of(self, cross: bool) -> tuple[Notice, ...]:
        return tuple(n for n in self.samples if n.cross == cross)

    def delays(self, cross: bool) -> tuple[float, ...]:
        """Seconds from sending to the frame, sorted, of the delivered ones."""
        return tuple(sorted(n.framed for n in self.of(cross) if n.framed is not None))

    def after_answer(self, cross: bool) -> tuple[float, ...]:
        """Seconds from the 201 to the frame (negative: the frame came first), sorted."""
        return tuple(sorted(n.framed - n.answered for n in self.of(cross) if n.framed is not None))

    def ratio(self, p: float) -> float | None:
        """Cross-replica over same-replica delay at percentile ``p`` (None: nothing crossed)."""
        same, cross = self.delays(False), self.delays(True)
        if not same or not cross:
            return None
        return percentile(cross, p) / percentile(same, p)


@dataclass(frozen=True, slots=True)
class ReplicaFigures:
    server: str  # PostgreSQL's version string, shortened
    settings: Settings
    rounds: tuple[ReplicaRound, ...]
    warmups: tuple[LoadResult, ...]
    notices: NoticeDelays
    body_bytes: int  # mean request body, the same for the floor and the hub
    pids: tuple[int, ...]  # floor, replica A, replica B: all stopped by now

    @property
    def floor(self) -> Summary:
        return summarise([r.floor for r in self.rounds])

    @property
    def one(self) -> Summary:
        return summarise([r.one for r in self.rounds])

    @property
    def two(self) -> Summary:
        return summarise([r.two for r in self.rounds])

    def ratios(self, name: str) -> tuple[float, ...]:
        """Per round: accepted/s of ``one`` or ``two`` over the floor's, or ``scaling``."""
        pairs = {
            "one": [(r.one, r.floor) for r in self.rounds],
            "two": [(r.two, r.floor) for r in self.rounds],
            "scaling": [(r.two, r.one) for r in self.rounds],
        }[name]
        return tuple(a.rate / b.rate for a, b in pairs)

    def ratio(self, name: str) -> float:
        return statistics.median(self.ratios(name))


# -- the databases ----------------------------------------------------------------------


def pg_url() -> str:
    """The SQLAlchemy URL of the server to make the benchmark's databases on."""
    return os.environ.get(URL_VARIABLE) or DEFAULT_URL


def pg_dsn(url: sa.URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def quoted_name(name: str) -> str:
    assert name.replace("_", "").isalnum(), name  # names are made here, never from input
    return f'"{name}"'


def process_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Unreachable(Exception):
    """The PostgreSQL server could not be reached or refused to make a database."""


async def _admin(url: sa.URL) -> Any:
    import asyncpg

    try:
        return await asyncpg.connect(pg_dsn(url), timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise Unreachable(f"{type(exc).__name__}: {exc}") from exc


async def _create(url: sa.URL, names: Sequence[str]) -> str:
    """Drop what killed runs left, make ``names``; PostgreSQL's version."""
    conn = await _admin(url)
    try:
        if url.host in LOCAL_HOSTS:
            for (name,) in await conn.fetch("SELECT datname FROM pg_database"):
                pid = name.removeprefix(PREFIX).split("_")[0]
                if name.startswith(PREFIX) and pid.isdigit() and not process_running(int(pid)):
                    await conn.execute(f"DROP DATABASE IF EXISTS {quoted_name(name)} WITH (FORCE)")
        for name in names:
            await conn.execute(f"CREATE DATABASE {quoted_name(name)} TEMPLATE template0")
        version: str = await conn.fetchval("SHOW server_version")
        return version.split()[0]
    finally:
        await conn.close()


async def _drop(url: sa.URL, names: Sequence[str]) -> None:
    conn = await _admin(url)
    try:
        for name in names:
            await conn.execute(f"DROP DATABASE IF EXISTS {quoted_name(name)} WITH (FORCE)")
    finally:
        await conn.close()


@contextmanager
def bench_databases(url: str) -> Iterator[tuple[str, str, str]]:
    """(hub URL, floor DSN, PostgreSQL version): two new databases, dropped on the way out.

    Raises :class:`Unreachable` when the server can not be reached or refuses.
    """
    import asyncpg

    server = sa.make_url(url)
    stem = f"{PREFIX}{os.getpid()}_{secrets.token_hex(3)}"
    names = (f"{stem}_hub", f"{stem}_floor")
    try:
        version = asyncio.run(_create(server, names))
    except asyncpg.PostgresError as exc:
        asyncio.run(_drop(server, names))
        raise Unreachable(f"{type(exc).__name__}: {exc}") from exc
    try:
        hub_url = server.set(database=names[0]).render_as_string(hide_password=False)
        yield hub_url, pg_dsn(server.set(database=names[1])), version
    finally:
        asyncio.run(_drop(server, names))


# -- the load ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    name: str
    urls: tuple[str, ...]
    pids: tuple[int, ...]
    bodies: Sequence[Body]

    async def load(self, s: Settings, *, total: int, offset: int, name: str = "") -> LoadResult:
        return await run_load(
            name or self.name,
            spread_request(self.urls, self.bodies, offset=offset),
            total=total,
            concurrency=s.concurrency,
            max_seconds=MAX_RUN_SECONDS,
            server_pid=self.pids,
        )


async def _tokens(
    demo: DemoNetwork, base_url: str, senders: int
) -> tuple[dict[Any, str], str, Any]:
    """Senders' access tokens, the coordinator's, and the coordinator's bundle."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        tokens = {
            org: await access_token(session, base_url, open_keys(demo, org))
            for org in SENDERS[:senders]
        }
        reader = await access_token(session, base_url, open_keys(demo, RECIPIENT))
        bundle = await directory_bundle(session, base_url, reader, demo, RECIPIENT)
    return tokens, reader, bundle


async def _rounds(
    s: Settings, targets: Sequence[_Target]
) -> tuple[tuple[LoadResult, ...], tuple[ReplicaRound, ...]]:
    warmups = []
    if s.warmup:
        for target in targets:
            name = f"{target.name} warm-up"
            warmups.append(await target.load(s, total=s.warmup, offset=0, name=name))
    rounds = []
    for number in range(s.rounds):
        offset = s.warmup + number * s.requests
        shift = number % len(targets)  # rotate the order: drift hits every target alike
        results = {}
        for target in [*targets[shift:], *targets[:shift]]:
            results[target.name] = await target.load(s, total=s.requests, offset=offset)
        rounds.append(ReplicaRound(results["floor"], results[ONE], results[TWO]))
    return tuple(warmups), tuple(rounds)


def _message_id(body: bytes) -> str:
    return str(json.loads(body)["header"]["id"])


async def measure_notices(
    replicas: tuple[str, str], token: str, bodies: Sequence[Body], samples: int
) -> NoticeDelays:
    """The coordinator's socket on replica A; ``samples`` sends through A and through B."""
    a_url, b_url = replicas
    loop = asyncio.get_running_loop()
    arrivals: dict[str, asyncio.Future[float]] = {}
    headers = {"Authorization": f"Bearer {token}", "Schakel-User": BENCH_USER}
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.ws_connect(a_url + "/v1/ws", headers=headers) as socket,
    ):

        async def read() -> None:
            async for frame in socket:
                at = time.perf_counter()
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue
                doc = json.loads(frame.data)
                waiting = arrivals.get(doc.get("id")) if doc.get("type") == "message" else None
                if waiting is not None and not waiting.done():
                    waiting.set_result(at)

        reader = asyncio.ensure_future(read())
        taken: list[Notice] = []
        missed_in_a_row = 0
        try:
            for number, (request_headers, body) in enumerate(bodies[: 2 * samples]):
                cross = number % 2 == 1
                if cross and missed_in_a_row >= GIVE_UP_AFTER:
                    continue
                if reader.done():
                    raise NotAccepted(f"the WebSocket closed ({socket.close_code})")
                waiting = arrivals[_message_id(body)] = loop.create_future()
                url = (b_url if cross else a_url) + MESSAGES_PATH
                sent = time.perf_counter()
                async with session.post(url, data=body, headers=request_headers) as answer:
                    text = await answer.read()
                answered = time.perf_counter() - sent
                if answer.status != 201:
                    raise NotAccepted(f"notice sample answered {answer.status}: {text[:300]!r}")
                try:
                    left = max(0.0, NOTICE_TIMEOUT - answered)
                    framed: float | None = await asyncio.wait_for(waiting, left) - sent
                except TimeoutError:
                    framed = None
                taken.append(Notice(cross, answered, framed))
                if cross:
                    missed_in_a_row = missed_in_a_row + 1 if framed is None else 0
        finally:
            reader.cancel()
    return NoticeDelays(tuple(taken), samples)


def _check(results: Sequence[LoadResult], logs: Sequence[Path]) -> None:
    check_accepted(
        results,
        logs,
        lambda lines: NotAccepted("not every request was accepted on PostgreSQL:\n" + lines),
    )


async def _drive(
    s: Settings, demo: DemoNetwork, servers: Sequence[tuple[str, int]]
) -> tuple[tuple[LoadResult, ...], tuple[ReplicaRound, ...], NoticeDelays, int]:
    """Bootstrap through A, seal, load, time the notices.

    ``servers``: (base URL, process id) of the floor, replica A and replica B.
    """
    (floor_url, floor_pid), (a_url, a_pid), (b_url, b_pid) = servers
    await bootstrap(demo, a_url, now=int(time.time()))
    tokens, reader, bundle = await _tokens(demo, a_url, s.senders)
    bodies = seal_bodies(demo, tokens, bundle, s.sealed, now=int(time.time()))
    one, two = bodies[: s.per_target], bodies[s.per_target : 2 * s.per_target]
    targets = (
        _Target("floor", (floor_url + floor.PATH,), (floor_pid,), one),
        _Target(ONE, (a_url + MESSAGES_PATH,), (a_pid,), one),
        _Target(TWO, (a_url + MESSAGES_PATH, b_url + MESSAGES_PATH), (a_pid, b_pid), two),
    )
    warmups, rounds = await _rounds(s, targets)
    notices = await measure_notices((a_url, b_url), reader, bodies[2 * s.per_target :], s.notices)
    mean_body = round(statistics.mean(len(body) for _, body in bodies))
    return warmups, rounds, notices, mean_body


def measure_replicas(
    s: Settings, workdir: Path, *, url: str | None = None, cwd: Path | None = None
) -> ReplicaFigures | Skipped:
    """The whole PostgreSQL section; :class:`Skipped` when the server is out of reach."""
    server = sa.make_url(url or pg_url())
    cwd = cwd or Path(__file__).resolve().parents[1]
    with ExitStack() as stack:
        try:
            hub_url, floor_dsn, version = stack.enter_context(
                bench_databases(server.render_as_string(hide_password=False))
            )
        except Unreachable as exc:
            return Skipped(server.render_as_string(), str(exc))
        demo = provision_network(workdir / "pg-network", now=int(time.time()))
        migrate(demo, hub_url, cwd=cwd)
        ports = [free_port() for _ in range(3)]
        while len(set(ports)) < 3:
            ports = [free_port() for _ in range(3)]
        logs = [workdir / name for name in ("pg-floor.log", "replica-a.log", "replica-b.log")]
        argv = floor.argv(sys.executable, floor_dsn, ports[0])
        floor_process = stack.enter_context(
            server_process("floor (PostgreSQL)", argv, port=ports[0], log=logs[0], cwd=cwd)
        )
        servers = [(f"http://{LOOPBACK}:{ports[0]}", floor_process.pid)]
        for name, port, log in zip(("replica A", "replica B"), ports[1:], logs[1:], strict=True):
            base, process = stack.enter_context(
                running_hub(demo, port=port, log=log, cwd=cwd, database_url=hub_url, name=name)
            )
            servers.append((base, process.pid))
        warmups, rounds, notices, body_bytes = asyncio.run(_drive(s, demo, servers))
        _check([*warmups, *(r for x in rounds for r in (x.floor, x.one, x.two))], logs[1:])
    return ReplicaFigures(
        server=version,
        settings=s,
        rounds=rounds,
        warmups=warmups,
        notices=notices,
        body_bytes=body_bytes,
        pids=tuple(pid for _, pid in servers),
    )


# -- the report -------------------------------------------------------------------------


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f}"


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _row(name: str, summary: Summary, floor_summary: Summary | None) -> str:
    versus = "| | |"
    if floor_summary is not None:
        rate, p99 = summary.rate / floor_summary.rate, summary.p99 / floor_summary.p99
        versus = f"| **{rate:.2f}x** | {p99:.2f}x |"
    return (
        f"| {name} | {summary.rate:,.0f} | {_ms(summary.p50)} | {_ms(summary.p99)} "
        f"| {_ms(summary.cpu)} | {summary.errors} {versus}"
    )


def _notice_rows(notices: NoticeDelays) -> list[str]:
    lines = []
    for cross, name in ((False, "A (same replica: the baseline)"), (True, "B (the other replica)")):
        taken, delays = notices.of(cross), notices.delays(cross)
        after = notices.after_answer(cross)
        if delays:
            figures = f"{_ms(percentile(delays, 50))} | {_ms(percentile(delays, 99))} | "
            figures += _ms(percentile(after, 50))
        else:
            figures = "n/a | n/a | n/a"
        lines.append(f"| {name} | {len(delays)} of {len(taken)} | {figures} |")
    lines.append(f"| **B / A** | | **{_x(notices.ratio(50))}** | **{_x(notices.ratio(99))}** | |")
    return lines


def _notice_verdict(notices: NoticeDelays) -> str:
    cross = notices.of(True)
    delivered = len(notices.delays(True))
    if delivered == len(cross) and cross:
        return "Every notice sent through B reached the socket on A."
    if delivered == 0:
        return (
            f"**Notices did not cross replicas**: none of the {len(cross)} envelopes sent "
            f"through B was announced on A's socket within {NOTICE_TIMEOUT:g} s (the series "
            f"ended after {GIVE_UP_AFTER} in a row). Until they do, a client whose socket is "
            "on another replica learns of new messages only by reading its inbox."
        )
    return (
        f"Only {delivered} of {len(cross)} notices sent through B reached A's socket within "
        f"{NOTICE_TIMEOUT:g} s."
    )


def render_lines(figures: ReplicaFigures | Skipped) -> list[str]:
    """The PostgreSQL section of the report."""
    title = "### PostgreSQL: one and two replicas, and notices across them"
    if isinstance(figures, Skipped):
        return [
            title,
            "",
            f"Skipped: PostgreSQL at {figures.url} is out of reach ({figures.reason}). "
            f"Start it, or set {URL_VARIABLE} to a server where the user may create databases.",
        ]
    s, floor_s = figures.settings, figures.floor
    per_round = "; ".join(
        f"{name}: " + ", ".join(f"{r:.2f}" for r in figures.ratios(name))
        for name in ("one", "two", "scaling")
    )
    return [
        title,
        "",
        f"PostgreSQL {figures.server} on this machine, a database made for the run and shared "
        f"by two `schakel hub serve` processes (migrated once before); {s.requests} requests "
        f"per target per round at concurrency {s.concurrency} (with two replicas, sent round "
        f"robin to both, directly: no proxy), {s.rounds} round(s) in rotating order after "
        f"{s.warmup} warm-up requests each; the floor gets the very same "
        f"{figures.body_bytes:,}-byte request bodies. Medians over the rounds; CPU is the "
        "server processes' together.",
        "",
        "| server | accepted/s | p50 ms | p99 ms | server CPU ms/request | errors "
        "| accepted/s / floor | p99 / floor |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        _row(
            "floor: aiohttp + asyncpg, group commit (one INSERT per batch)",
            floor_s,
            None,
        ),
        _row(f"hub, {ONE}", figures.one, floor_s),
        _row(f"hub, {TWO} (one database)", figures.two, floor_s),
        "",
        f"**{TWO} / {ONE}: {figures.ratio('scaling'):.2f}x** accepted/s. Per round "
        f"(one/floor; two/floor; two/one): {per_round}.",
        "",
        "Notices: the coordinator's WebSocket open on replica A, one envelope at a time sent "
        "to the coordinator through A or B in turn; delay from sending to the frame.",
        "",
        "| sent through | delivered | p50 ms | p99 ms | after the 201, p50 ms |",
        "| --- | ---: | ---: | ---: | ---: |",
        *_notice_rows(figures.notices),
        "",
        _notice_verdict(figures.notices),
    ]
