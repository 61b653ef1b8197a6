"""``make bench``: the hub against a floor, and sealing against its primitives, in one run.

1. Servers. A bare aiohttp + SQLite handler (``bench.floor``, one writer with
   group commit) and the real hub (``schakel hub serve`` on a freshly provisioned
   network, ``bench.hub_server``) run as child processes on loopback ports.
   The same closed-loop load generator drives both with the same concurrency
   and request count, in alternating rounds after a warm-up: 4 KB rows to the
   floor, pre-sealed envelopes with 4 KB payloads from several senders to the
   hub. Both must answer every request 201, or the run fails.
2. Client side. ``seal`` (1 and 5 recipients) and ``open_envelope`` against
   the bare primitives they are made of (``bench.seal``), after the servers
   have stopped.
3. The access log (``bench.auditlog``) and case clustering and the cases view
   (``bench.cases``): in-process, against the hub's own store.
4. The pseudonymisation services (``bench.oprf``): a service's evaluations per core
   against bare scalar multiplications, the client's cost of a signal's pseudonyms
   against the old HMAC derivation and against the primitives it calls, and the
   end-to-end latency over loopback with two services in child processes.
5. The desk (``bench.desk``): its inbox page with 1,000 messages held against a bare
   Jinja2 render of the same rows, and opening one message against the library call it
   wraps, in-process with a hub on loopback.
5. PostgreSQL (``bench.replicas``, after the SQLite servers have stopped): the
   hub with one and two replicas on one fresh database against a floor on
   PostgreSQL, and the delay of live notices across replicas. Skipped, with the
   reason in the report, when the server is out of reach (``--no-postgres``
   leaves it out).
6. Witnessing (``bench.witness``): cosignatures checked per second against bare Ed25519
   verification, and the always-on witness's add-checkpoint rate against a committed
   row update, in-process.
7. Retention (``bench.retention``): the retention job's rows per second on 10^5 and 10^6
   due rows (``SCHAKEL_BENCH_RETENTION_SIZES``) against bare DELETEs of the same rows,
   on SQLite.

8. The accept path with wrk (``bench.accept``, what ``make bench-accept`` runs alone): the
   hub against its group-commit floor on SQLite and PostgreSQL, a realistic mix with
   WebSocket subscribers, CPU per envelope with the database's, p99 and push latency at
   half the peak rate (``--no-accept`` leaves it out; without wrk it says so).

Every figure is shown against its baseline from the same run, because the
machine is shared and noisy. The report goes to stdout and replaces the
"latest run" section of docs/performance.md (not with ``--quick`` or
``--no-write``). Child processes are stopped whatever happens.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib.metadata
import os
import platform
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import click

from bench import accept, floor
from bench.auditlog import SIZES as LOG_SIZES
from bench.auditlog import (
    AppendRate,
    ProofTiming,
    VerifyRate,
    append_rate,
    time_proofs,
    verify_rate,
)
from bench.cases import SIZES as CASE_SIZES
from bench.cases import VIEW_CASES, CaseFigures, measure_cases, percentile
from bench.desk import DeskFigures, desk_lines, measure_desk
from bench.hub_server import (
    MESSAGES_PATH,
    RECIPIENT,
    SENDERS,
    Body,
    access_token,
    directory_bundle,
    limits_note,
    open_keys,
    provision_network,
    running_hub,
    seal_bodies,
    seal_parties,
)
from bench.loadgen import (
    LOOPBACK,
    LoadResult,
    ServerFailed,
    Summary,
    check_accepted,
    free_port,
    post_request,
    run_load,
    server_process,
    summarise,
)
from bench.oprf import OprfFigures, measure_oprf
from bench.oprf import render_lines as oprf_lines
from bench.replicas import NotAccepted, ReplicaFigures, Settings, Skipped, measure_replicas
from bench.replicas import render_lines as replica_lines
from bench.retention import RetentionRate, measure_retention, sizes_from_env
from bench.retention import render_lines as retention_lines
from bench.seal import OPEN, PRIMITIVES, RECIPE, SEAL_1, SEAL_5, SealFigures, measure_seal
from bench.witness import WitnessFigures, measure_witness, witness_lines
from protocol.keybundle import KeyBundle
from protocol.types import OrgId
from schakel.demo import DemoNetwork, bootstrap

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "docs" / "performance.md"
BEGIN = "<!-- latest-run:begin (rewritten by `make bench`: edits inside are lost) -->"
END = "<!-- latest-run:end -->"
MAX_SEALED = 50_000  # envelopes sealed before the load starts, at most
MAX_RUN_SECONDS = 120.0  # one load run against one server, at most
FLOOR_HEADERS = {"Content-Type": "application/octet-stream"}
LIBRARIES = ("aiohttp", "cryptography", "PyNaCl", "SQLAlchemy", "aiosqlite", "asyncpg")


class BenchError(click.ClickException):
    """The run did not produce valid figures (a server failed or refused requests)."""


@dataclass(frozen=True, slots=True)
class Options:
    requests: int = 2000  # per server per round
    concurrency: int = 16
    rounds: int = 3
    warmup: int = 200  # per server, before the rounds
    senders: int = 4
    iterations: int = 200  # client-side calls per timing
    repeats: int = 7  # client-side timings per operation; the median is reported
    log_sizes: tuple[int, ...] = LOG_SIZES  # access-log sizes to time proofs at
    log_samples: int = 200  # proofs timed per size
    verify_entries: int = 50_000  # entries in the full-verification timing
    append_entries: int = 20_000  # entries appended through the hub's writer
    case_sizes: tuple[int, ...] = CASE_SIZES  # pseudonyms held by cases before clustering
    case_signals: int = 2000  # signals per clustering run
    case_rounds: int = 3  # alternating clustered/floor runs per size
    view_cases: int = VIEW_CASES  # cases the coordinator's list is timed with
    view_repeats: int = 30  # timings of each view read
    postgres: bool = True  # the PostgreSQL section (bench.replicas)
    replica_requests: int = 1000  # per PostgreSQL target per round (the hub is slower there)
    notices: int = 40  # notices timed through each replica
    oprf_signals: int = 50  # signals pseudonymised over loopback, one after another
    cosignatures: int = 2000  # cosignatures checked per timing (bench.witness)
    witness_requests: int = 500  # add-checkpoint requests to the in-process witness
    desk_messages: int = 1000  # messages held when the desk's inbox page is timed
    desk_repeats: int = 200  # timings of each desk page and its floor
    desk_cases: int = 10_000  # cases the hub holds when the coordinator's pages are timed
    desk_log_entries: int = 100_000  # access-log entries under the subject report
    retention_sizes: tuple[int, ...] = field(default_factory=sizes_from_env)  # due rows
    accept: bool = True  # the accept path with wrk (bench.accept)
    accept_seconds: float = 5.0  # per wrk run
    accept_rounds: int = 3

    def __post_init__(self) -> None:
        counts = (
            "requests",
            "concurrency",
            "rounds",
            "senders",
            "iterations",
            "repeats",
            "replica_requests",
            "notices",
            "oprf_signals",
            "cosignatures",
            "witness_requests",
        )
        for name in (
            *counts,
            "case_rounds",
            "view_cases",
            "view_repeats",
            "desk_messages",
            "desk_repeats",
            "desk_cases",
            "desk_log_entries",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.case_signals < 2 or not self.case_sizes or min(self.case_sizes) < 5:
            raise ValueError("case_signals must be at least 2 and every case size at least 5")
        if self.warmup < 0 or not 1 <= self.senders <= len(SENDERS):
            raise ValueError(f"warmup must be >= 0 and senders 1..{len(SENDERS)}")
        if self.sealed > MAX_SEALED:
            raise ValueError(f"warmup + rounds x requests must be at most {MAX_SEALED}")
        if self.postgres and self.replicas.sealed > MAX_SEALED:
            raise ValueError(
                f"2 x (warmup + rounds x replica_requests + notices) must be at most {MAX_SEALED}"
            )

    @property
    def sealed(self) -> int:
        return self.warmup + self.rounds * self.requests

    @property
    def replicas(self) -> Settings:
        return Settings(
            requests=self.replica_requests,
            concurrency=self.concurrency,
            rounds=self.rounds,
            warmup=self.warmup,
            senders=self.senders,
            notices=self.notices,
        )


QUICK = Options(
    requests=200,
    rounds=1,
    warmup=20,
    iterations=10,
    repeats=3,
    log_sizes=(1_000, 10_000),
    log_samples=20,
    verify_entries=2_000,
    append_entries=1_000,
    case_sizes=(1_000, 10_000),
    case_signals=200,
    case_rounds=1,
    view_cases=1_000,
    view_repeats=5,
    replica_requests=100,
    notices=10,
    oprf_signals=10,
    cosignatures=200,
    witness_requests=50,
    desk_repeats=20,
    desk_cases=300,
    desk_log_entries=2_000,
    retention_sizes=(1_000,),
    accept_seconds=2.0,
    accept_rounds=1,
)


@dataclass(frozen=True, slots=True)
class LogFigures:
    proofs: tuple[ProofTiming, ...]
    verify: VerifyRate
    appends: AppendRate


def measure_log(options: Options, workdir: Path) -> LogFigures:
    rng = random.Random(2026)
    proofs = tuple(
        time_proofs(workdir / f"nodes-{size}.db", size, samples=options.log_samples, rng=rng)
        for size in options.log_sizes
    )
    appends = append_rate(workdir, options.append_entries)
    return LogFigures(proofs, verify_rate(options.verify_entries), appends)


@dataclass(frozen=True, slots=True)
class Round:
    floor: LoadResult
    hub: LoadResult

    @property
    def ratio(self) -> float:
        return self.hub.rate / self.floor.rate


@dataclass(frozen=True, slots=True)
class ServerFigures:
    rounds: tuple[Round, ...]
    warmups: tuple[LoadResult, ...]
    floor_bytes: int
    hub_bytes: int  # mean request body
    pids: tuple[int, ...]  # of the server processes, all stopped by now

    @property
    def floor(self) -> Summary:
        return summarise([r.floor for r in self.rounds])

    @property
    def hub(self) -> Summary:
        return summarise([r.hub for r in self.rounds])

    @property
    def ratio(self) -> float:
        """Median over the rounds of hub/floor accepted per second."""
        return statistics.median(r.ratio for r in self.rounds)


@dataclass(frozen=True, slots=True)
class Machine:
    arch: str
    cpu: str
    cores: int
    usable_cores: int
    load: float  # one-minute load average when the run started
    python: str
    libraries: tuple[tuple[str, str], ...]
    commit: str


@dataclass(frozen=True, slots=True)
class BenchResult:
    options: Options
    machine: Machine
    started: datetime.datetime
    seconds: float
    servers: ServerFigures
    seal: SealFigures
    log: LogFigures
    cases: CaseFigures
    desk: DeskFigures
    replicas: ReplicaFigures | Skipped | None = None  # None: left out (--no-postgres)
    oprf: OprfFigures | None = None
    witness: WitnessFigures | None = None
    retention: tuple[RetentionRate, ...] = ()
    accept: tuple[accept.Figures, ...] | str | None = None  # str: why it did not run


# --- the machine --------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head} with uncommitted changes" if dirty else head


def _openssl() -> str:
    from cryptography.hazmat.backends.openssl import backend

    return str(backend.openssl_version_text()).removeprefix("OpenSSL ")


def describe_machine() -> Machine:
    libraries = [(name, importlib.metadata.version(name)) for name in LIBRARIES]
    libraries += [("SQLite", sqlite3.sqlite_version), ("OpenSSL", _openssl())]
    return Machine(
        arch=platform.machine(),
        cpu=_cpu_model(),
        cores=os.cpu_count() or 0,
        usable_cores=len(os.sched_getaffinity(0)),
        load=os.getloadavg()[0],
        python=platform.python_version(),
        libraries=tuple(libraries),
        commit=_commit(),
    )


# --- the servers --------------------------------------------------------------------------


def _now() -> int:
    return int(time.time())


def _two_ports() -> tuple[int, int]:
    first = free_port()
    second = free_port()
    while second == first:
        second = free_port()
    return first, second


async def _senders(
    demo: DemoNetwork, base_url: str, senders: int
) -> tuple[dict[OrgId, str], KeyBundle]:
    """Access tokens for the first ``senders`` senders, and the recipient's bundle."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        tokens = {
            org: await access_token(session, base_url, open_keys(demo, org))
            for org in SENDERS[:senders]
        }
        token = tokens[SENDERS[0]]
        bundle = await directory_bundle(session, base_url, token, demo, RECIPIENT)
    return tokens, bundle


@dataclass(frozen=True, slots=True)
class Target:
    """A server under load: where to POST, what, and the process that answers."""

    name: str
    url: str
    pid: int
    bodies: Sequence[Body]

    async def load(
        self, options: Options, *, total: int, offset: int, name: str = ""
    ) -> LoadResult:
        return await run_load(
            name or self.name,
            post_request(self.url, self.bodies, offset=offset),
            total=total,
            concurrency=options.concurrency,
            max_seconds=MAX_RUN_SECONDS,
            server_pid=self.pid,
        )


async def _one_round(number: int, options: Options, floor_t: Target, hub_t: Target) -> Round:
    offset = options.warmup + number * options.requests
    order = (floor_t, hub_t) if number % 2 == 0 else (hub_t, floor_t)  # drift hits both alike
    results = {}
    for target in order:
        results[target.name] = await target.load(options, total=options.requests, offset=offset)
    return Round(floor=results[floor_t.name], hub=results[hub_t.name])


async def drive(
    options: Options, demo: DemoNetwork, floor_server: tuple[str, int], hub_server: tuple[str, int]
) -> tuple[tuple[LoadResult, ...], tuple[Round, ...], int]:
    """Bootstrap the hub, seal, warm up, run the rounds: (warm-ups, rounds, hub body bytes).

    ``floor_server`` and ``hub_server`` are (base URL, process id).
    """
    (floor_url, floor_pid), (hub_url, hub_pid) = floor_server, hub_server
    await bootstrap(demo, hub_url, now=_now())
    tokens, bundle = await _senders(demo, hub_url, options.senders)
    hub_bodies = seal_bodies(demo, tokens, bundle, options.sealed, now=_now())
    row: Body = (FLOOR_HEADERS, os.urandom(floor.ROW_BYTES))
    floor_t = Target("floor", floor_url + floor.PATH, floor_pid, [row] * options.sealed)
    hub_t = Target("hub", hub_url + MESSAGES_PATH, hub_pid, hub_bodies)
    warmups: list[LoadResult] = []
    if options.warmup:
        for target in (floor_t, hub_t):
            warmup = target.load(
                options, total=options.warmup, offset=0, name=f"{target.name} warm-up"
            )
            warmups.append(await warmup)
    rounds = [await _one_round(n, options, floor_t, hub_t) for n in range(options.rounds)]
    hub_bytes = round(statistics.mean(len(body) for _, body in hub_bodies))
    return tuple(warmups), tuple(rounds), hub_bytes


def _check(results: Sequence[LoadResult], logs: Sequence[Path]) -> None:
    check_accepted(
        results,
        logs,
        lambda lines: BenchError("the servers did not accept every request:\n" + lines),
    )


def measure_servers(options: Options, demo: DemoNetwork, workdir: Path) -> ServerFigures:
    """Start the floor and the hub, drive both, stop both (also on failure)."""
    floor_port, hub_port = _two_ports()
    floor_log, hub_log = workdir / "floor.log", workdir / "hub.log"
    argv = floor.argv(sys.executable, workdir / "floor.db", floor_port)
    with ExitStack() as stack:
        floor_process = stack.enter_context(
            server_process("floor", argv, port=floor_port, log=floor_log, cwd=REPO)
        )
        hub_url, hub_process = stack.enter_context(
            running_hub(demo, port=hub_port, log=hub_log, cwd=REPO)
        )
        floor_url = f"http://{LOOPBACK}:{floor_port}"
        warmups, rounds, hub_bytes = asyncio.run(
            drive(options, demo, (floor_url, floor_process.pid), (hub_url, hub_process.pid))
        )
        _check([*warmups, *(r for pair in rounds for r in (pair.floor, pair.hub))], [hub_log])
    return ServerFigures(
        rounds=rounds,
        warmups=warmups,
        floor_bytes=floor.ROW_BYTES,
        hub_bytes=hub_bytes,
        pids=(floor_process.pid, hub_process.pid),
    )


def run_bench(options: Options) -> BenchResult:
    """The whole benchmark; raises BenchError (or ServerFailed) when it cannot measure."""
    started = datetime.datetime.now(datetime.UTC)
    clock = time.perf_counter()
    machine = describe_machine()
    with tempfile.TemporaryDirectory(prefix="schakel-bench-") as scratch:
        workdir = Path(scratch)
        demo = provision_network(workdir / "network", now=_now())
        servers = measure_servers(options, demo, workdir)
        parties = seal_parties(demo, now=_now())
        log = measure_log(options, workdir)
        witness = measure_witness(
            workdir, iterations=options.cosignatures, requests=options.witness_requests,
            now=_now(),
        )  # fmt: skip
        cases = measure_cases(
            workdir,
            sizes=options.case_sizes,
            signals=options.case_signals,
            rounds=options.case_rounds,
            view_cases=options.view_cases,
            view_repeats=options.view_repeats,
        )
        desk = measure_desk(
            workdir / "desk",
            messages=options.desk_messages,
            repeats=options.desk_repeats,
            cases=options.desk_cases,
            log_entries=options.desk_log_entries,
        )
        retention = measure_retention(workdir, options.retention_sizes)
        replicas = measure_replicas(options.replicas, workdir) if options.postgres else None
        oprf = measure_oprf(
            workdir,
            iterations=options.iterations,
            repeats=options.repeats,
            signals=options.oprf_signals,
        )
    seal = measure_seal(parties, iterations=options.iterations, repeats=options.repeats)
    accepted = _measure_accept(options) if options.accept else None
    return BenchResult(
        options=options,
        machine=machine,
        started=started,
        seconds=time.perf_counter() - clock,
        servers=servers,
        seal=seal,
        log=log,
        cases=cases,
        desk=desk,
        replicas=replicas,
        oprf=oprf,
        witness=witness,
        retention=retention,
        accept=accepted,
    )


def _measure_accept(options: Options) -> tuple[accept.Figures, ...] | str:
    if shutil.which("wrk") is None:
        return "wrk is not installed (make bench-accept installs it from Debian)"
    settings = accept.Settings(seconds=options.accept_seconds, rounds=options.accept_rounds)
    databases = ["sqlite", "pg"] if options.postgres else ["sqlite"]
    try:
        return tuple(accept.run(settings, databases))
    except accept.BenchError as exc:
        raise BenchError(exc.message) from exc


# --- the report ---------------------------------------------------------------------------


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f}"


def _times(hub: float | None, floor: float | None) -> str:
    return "n/a" if hub is None or not floor else f"{hub / floor:.2f}x"


def _machine_lines(result: BenchResult) -> list[str]:
    m, o = result.machine, result.options
    libraries = ", ".join(f"{name} {version}" for name, version in m.libraries)
    return [
        f"Run {result.started:%Y-%m-%d %H:%M} UTC, commit {m.commit}, {result.seconds:.0f} s.",
        f"Machine: {m.arch}, {m.cpu}, {m.cores} cores ({m.usable_cores} usable), "
        f"load average {m.load:.2f} at the start; Python {m.python}; {libraries}.",
        f"Settings: {o.requests} requests per server per round, concurrency {o.concurrency}, "
        f"{o.rounds} rounds (alternating order) after {o.warmup} warm-up requests each; "
        f"{o.senders} senders; client side {o.repeats} repeats x {o.iterations} calls.",
    ]


def _server_lines(result: BenchResult) -> list[str]:
    s = result.servers
    floor_s, hub_s = s.floor, s.hub
    ratios = ", ".join(f"{r.ratio:.2f}" for r in s.rounds)
    senders = result.options.senders
    return [
        "### Durable accepts over loopback (medians over the rounds)",
        "",
        "| server | accepted/s | p50 ms | p99 ms | server CPU ms/request | errors | request body |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| floor: aiohttp + SQLite, group commit | {floor_s.rate:,.0f} "
        f"| {_ms(floor_s.p50)} | {_ms(floor_s.p99)} | {_ms(floor_s.cpu)} | {floor_s.errors} "
        f"| {s.floor_bytes:,} B |",
        f"| hub: `POST /v1/messages`, {senders} senders, group commit | {hub_s.rate:,.0f} "
        f"| {_ms(hub_s.p50)} | {_ms(hub_s.p99)} | {_ms(hub_s.cpu)} | {hub_s.errors} "
        f"| {s.hub_bytes:,} B |",
        f"| **hub / floor** | **{s.ratio:.2f}x** | {_times(hub_s.p50, floor_s.p50)} "
        f"| {_times(hub_s.p99, floor_s.p99)} | {_times(hub_s.cpu, floor_s.cpu)} | | |",
        "",
        f"hub/floor accepted/s per round: {ratios}. {limits_note()}.",
    ]


def _recipe(operation: str) -> str:
    return " + ".join(
        f"{count} x {name}" if count > 1 else name for name, count in RECIPE[operation]
    )


def _seal_lines(result: BenchResult) -> list[str]:
    f = result.seal
    lines = [
        "### Client side: protocol operations against their bare primitives (median µs)",
        "",
        "| operation | µs | bare primitives | their µs | ratio |",
        "| --- | ---: | --- | ---: | ---: |",
    ]
    for operation in (SEAL_1, SEAL_5, OPEN):
        lines.append(
            f"| `{operation}` | {f.micros[operation]:,.0f} | {_recipe(operation)} "
            f"| {f.bare_sum(operation):,.0f} | **{f.ratio(operation):.2f}x** |"
        )
    lines += ["", "| bare primitive | µs |", "| --- | ---: |"]
    lines += [f"| {name} | {f.micros[name]:,.1f} |" for name in PRIMITIVES]
    return lines


def _log_lines(result: BenchResult) -> list[str]:
    log = result.log
    lines = [
        "### Access log: proofs from stored subtrees, and full verification",
        "",
        "| entries | build node store (s) | inclusion proof µs | consistency proof µs "
        "| nodes read |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {p.size:,} | {p.build_seconds:.1f} | {p.inclusion_us:,.0f} | "
        f"{p.consistency_us:,.0f} | {p.nodes_read} |"
        for p in log.proofs
    ]
    v, a = log.verify, log.appends
    lines += [
        "",
        "Proofs as the hub makes them: which nodes, one SQLite query, compose (median).",
        "",
        f"Appends with the tree maintained: {a.hub_per_s:,.0f} entries/s through the hub's "
        f"writer (group commit, leaf and subtree nodes, checked insert) against "
        f"{a.floor_per_s:,.0f}/s for sqlite3 inserting the same entry bytes in the same "
        f"batches: **{a.ratio:.3f}x** ({a.entries:,} entries).",
        "",
        f"Full verification from an export: {v.verify_per_s:,.0f} entries/s (version 2 "
        f"lines as the hub streams them: strict parse, validation, opening against its "
        f"commitment, leaf hash, root) against {v.sha256_per_s:,.0f} raw SHA-256/s over the "
        f"same {v.bytes / v.entries:,.0f}-byte lines: **{v.ratio:.3f}x**.",
    ]
    return lines


def _cluster_lines(figures: CaseFigures) -> list[str]:
    first = figures.clustering[0]
    lines = [
        "### Case clustering: new signals through the hub's writer, with and without `place`",
        "",
        "| pseudonyms held by cases | cases | messages | fill s | clustered signals/s "
        "| floor signals/s | **clustered / floor** |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {c.filled.pseudonyms:,} | {c.filled.cases:,} | {c.filled.messages:,} "
        f"| {c.filled.seconds:.1f} | {c.clustered_rate:,.0f} | {c.floor_rate:,.0f} "
        f"| **{c.ratio:.2f}x** |"
        for c in figures.clustering
    ]
    rounds = "; ".join(
        f"{c.filled.pseudonyms:,}: " + ", ".join(f"{r:.2f}" for r in c.ratios)
        for c in figures.clustering
    )
    return [
        *lines,
        "",
        f"{first.signals:,} signals per run from {first.concurrency} tasks (group commit), "
        f"half joining a pre-filled case (with a match event), half starting one; the floor is "
        f"the same work item (`Tx.insert_message` of a 7.6 KB envelope) without "
        f"`placement.place`; medians over {len(first.ratios)} alternating rounds. "
        f"clustered/floor per round: {rounds}.",
    ]


def _view_lines(figures: CaseFigures) -> list[str]:
    v = figures.view
    f = v.filled

    def row(name: str, values: tuple[float, ...]) -> str:
        return f"| {name} | {_ms(percentile(values, 50))} | {_ms(percentile(values, 99))} |"

    return [
        f"### Cases view: a coordinator with {f.cases:,} cases",
        "",
        "| read | p50 ms | p99 ms |",
        "| --- | ---: | ---: |",
        row(f"`GET /v1/cases` work: `summaries` + `CaseQuery.select` ({v.total:,} cases, "
            f"a page of {v.page})", v.listed),
        row(f"floor: `SELECT count(*)` over `case_members` ({f.messages:,} rows)", v.floor),
        row("one case: `casereads.detail` of a random case", v.detail),
        f"| **list / floor** (p50) | **{v.ratio:.1f}x** | |",
        "",
        f"{len(v.listed)} timings of each, interleaved, through `Store.run_read`. The database: "
        f"{f.cases:,} cases, {f.messages:,} messages with real envelopes ({f.referrals:,} "
        f"referrals, at every step), filled in {f.seconds:.1f} s.",
    ]  # fmt: skip


def _reading(result: BenchResult) -> list[str]:
    s, f = result.servers, result.seal
    return [
        "In this run: the hub accepted "
        f"{s.ratio:.2f} times as many signed, encrypted envelopes per second as the floor "
        f"accepted bare 4 KB rows, at {s.hub.p99 / s.floor.p99:.2f} times its p99; sealing to "
        f"one recipient took {f.ratio(SEAL_1):.2f} times, and opening "
        f"{f.ratio(OPEN):.2f} times, the cost of the bare primitives.",
        *_cases_reading(result.cases),
    ]


def _cases_reading(figures: CaseFigures) -> list[str]:
    small, large = figures.clustering[0], figures.clustering[-1]
    listed = percentile(figures.view.listed, 50)
    return [
        "",
        f"Clustering took signals from {small.floor_rate:,.0f}/s to {small.clustered_rate:,.0f}/s "
        f"({small.ratio:.2f}x) with {small.filled.pseudonyms:,} pseudonyms held, and to "
        f"{large.clustered_rate:,.0f}/s ({large.ratio:.2f}x) with "
        f"{large.filled.pseudonyms:,}; the cases list of {figures.view.filled.cases:,} cases "
        f"took {_ms(listed)} ms at p50"
        + (" (over 100 ms: see the reading above)." if listed > 0.1 else "."),
    ]


def render(result: BenchResult) -> str:
    """The "latest run" section: markdown, printed and written alike."""
    lines = ["## Latest run", "", *_machine_lines(result), ""]
    lines += [*_server_lines(result), "", *_seal_lines(result), "", *_log_lines(result)]
    lines += ["", *_cluster_lines(result.cases), "", *_view_lines(result.cases)]
    if result.oprf is not None:
        lines += ["", *oprf_lines(result.oprf)]
    if result.witness is not None:
        lines += ["", *witness_lines(result.witness)]
    lines += ["", *desk_lines(result.desk)]
    if result.retention:
        lines += ["", *retention_lines(result.retention)]
    if result.replicas is not None:
        lines += ["", *replica_lines(result.replicas)]
    if isinstance(result.accept, str):
        lines += ["", "### Accept path (wrk)", "", f"Not measured: {result.accept}."]
    elif result.accept is not None:
        settings = accept.Settings(
            seconds=result.options.accept_seconds, rounds=result.options.accept_rounds
        )
        lines += ["", *accept.render(result.accept, settings), "", accept.final_line(result.accept)]
    lines += ["", *_reading(result)]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace the text between BEGIN and END in ``path`` (append them when missing)."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Performance\n"
    block = f"{BEGIN}\n{section}{END}"
    start = text.find(BEGIN)
    stop = text.find(END, start + len(BEGIN)) if start >= 0 else -1
    if start >= 0 and stop >= 0:
        text = text[:start] + block + text[stop + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(text, encoding="utf-8")
    os.replace(scratch, path)


# --- the command --------------------------------------------------------------------------


@contextmanager
def _terminate_cleanly() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into SystemExit, so that the child processes are stopped.

    (Python's default for them ends the process without running ``finally``.)
    """

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signums = (signal.SIGTERM, signal.SIGHUP)
    previous = [signal.signal(signum, terminate) for signum in signums]
    try:
        yield
    finally:
        for signum, handler in zip(signums, previous, strict=True):
            signal.signal(signum, handler)


def _count(low: int, high: int) -> click.IntRange:
    return click.IntRange(low, high)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--requests", type=_count(1, 20_000), help="Requests per server per round [2000].")
@click.option("--concurrency", type=_count(1, 256), help="Connections per server [16].")
@click.option("--rounds", type=_count(1, 20), help="Alternating floor/hub rounds [3].")
@click.option("--warmup", type=_count(0, 5_000), help="Warm-up requests per server [200].")
@click.option("--iterations", type=_count(1, 100_000), help="Calls per client timing [200].")
@click.option("--repeats", type=_count(1, 100), help="Client timings per operation [7].")
@click.option(
    "--replica-requests", type=_count(1, 20_000), help="Requests per PostgreSQL target [1000]."
)
@click.option("--notices", type=_count(1, 1_000), help="Notices timed per replica [40].")
@click.option(
    "--oprf-signals", type=_count(1, 10_000), help="Signals pseudonymised over loopback [50]."
)
@click.option("--no-postgres", is_flag=True, help="Leave out the PostgreSQL sections.")
@click.option("--no-accept", is_flag=True, help="Leave out the accept path with wrk.")
@click.option("--quick", is_flag=True, help="Small counts for a quick look; never written.")
@click.option("--no-write", is_flag=True, help="Print only; leave docs/performance.md alone.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_OUTPUT,
    show_default=True,
    help="The document whose latest-run section is rewritten.",
)
def main(
    quick: bool,
    no_write: bool,
    no_postgres: bool,
    no_accept: bool,
    output: Path,
    **counts: int | None,
) -> None:
    """Benchmark the hub against a floor measured in the same run (what `make bench` runs)."""
    given: dict[str, Any] = {name: value for name, value in counts.items() if value is not None}
    if no_postgres:
        given["postgres"] = False
    if no_accept:
        given["accept"] = False
    try:
        options = replace(QUICK if quick else Options(), **given)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"benchmarking ({options.sealed} envelopes to seal first) ...", err=True)
    try:
        with _terminate_cleanly():
            result = run_bench(options)
    except (ServerFailed, NotAccepted) as exc:
        raise BenchError(str(exc)) from exc
    click.echo(render(result))
    if quick or no_write:
        click.echo(f"(not written to {output}: {'--quick' if quick else '--no-write'})")
        return
    write_section(output, render(result))
    click.echo(f"written to {output}")


if __name__ == "__main__":
    main()
