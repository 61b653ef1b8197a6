"""``make bench-accept``: the hub's accept path against its group-commit floor, with wrk.

One load generator for both, wrk (C, one thread, ``CONNECTIONS`` connections) with
``bench/accept.lua``, which sends pre-sealed envelopes with real access tokens from a
file and counts the status of every answer. For SQLite and then PostgreSQL:

* the floor (``bench.floor``: bare aiohttp, one writer, one transaction per queued batch,
  synchronous=FULL / ``synchronous_commit=on``) and the hub (``schakel hub serve``) run as
  child processes; the floor receives the very bytes the hub does;
* a realistic mix (:class:`Stream`), sealed before the load (and topped up between runs):
  of every ten requests four signals about new people, four about people an earlier
  signal named (they join that case, with a ``match`` event), a referral from the police
  to the shelter about a known person, and the shelter's ``accepted`` status update of a
  referral answered 201 in an earlier run (:class:`Referrals`). Senders police, GGD,
  municipality (signals to the coordinator);
* WebSocket subscribers stay connected during every run (the coordinator's, the
  police's, the shelter's) and read every frame;
* warm-up, then ``rounds`` rounds of ``seconds`` each, floor and hub in alternating
  order; the figure is the median over the rounds of accepted/s hub over floor. CPU per
  accepted request counts the server process and, on PostgreSQL, the server backends of
  its database (``/proc/<pid>/stat`` before and after);
* then each at about half its peak rate (wrk's per-connection delay): p99 accept latency
  of hub and floor, and, for the hub, probes sent one at a time by this process while
  the coordinator's socket listens: send → WebSocket frame p99.

Every status other than 201 is counted and reported; the run fails when there is one,
and after each run of the hub when its database does not hold every message answered 201,
with the referral row of each referral and the step of each status update
(:func:`check_stored`).
The last line printed is ``hub/floor sqlite X.XX pg Y.YY``.
"""

from __future__ import annotations

import asyncio
import bisect
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import click

from bench import floor
from bench.hub_server import (
    BENCH_USER,
    MESSAGES_PATH,
    PAYLOAD_BYTES,
    access_token,
    directory_bundle,
    migrate,
    open_keys,
    provision_network,
    running_hub,
)
from bench.loadgen import LOOPBACK, free_port, process_cpu_seconds, server_process
from bench.replicas import Unreachable, bench_databases, pg_url
from keys.organisation import OrgKeys
from protocol.encoding import canonical_json
from protocol.envelope import new_message_id, seal
from protocol.keybundle import KeyBundle
from protocol.pseudonym import Identity, derive_pseudonyms
from protocol.types import MessageId, OrgId, Pseudonym
from schakel.demo import DemoNetwork, bootstrap

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).with_name("accept.lua")
CONNECTIONS = 32
COORDINATOR, POLICE, SHELTER = OrgId("coordinator"), OrgId("police"), OrgId("shelter")
SIGNALLERS = (OrgId("police"), OrgId("ggd"), OrgId("municipality"))
SENDERS = (*SIGNALLERS, SHELTER)  # wrk's sender numbers 1..4, in this order
LAG = 300  # a join, referral or status refers to what was sent at least this much earlier
SUBSCRIBERS = ((COORDINATOR, 3), (POLICE, 1), (SHELTER, 1))
PROBE_INTERVAL = 0.05  # seconds between push-latency probes
PROBE_TIMEOUT = 5.0
WRK_TIMEOUT = "10s"
FLOOR_REQUESTS = 2000  # the floor's file, sent again and again


class BenchError(click.ClickException):
    """The run did not produce valid figures."""


# -- the stream of requests -----------------------------------------------------------


def _identity(number: int) -> Identity:
    born = datetime.date(1960, 1, 1) + datetime.timedelta(days=number % 20_000)
    return Identity(
        given_names="Sanne",
        family_name="Jansen",
        date_of_birth=born.isoformat(),
        phone=f"+316{number % 100_000_000:08d}",
    )


@dataclass
class Stream:
    """Requests in the order wrk sends them, ``"<sender number>\\t<body>"`` each.

    Position ``i`` is deterministic in ``i``, so the same stream replays on each database
    (joins and referrals refer to people a signal named at least ``LAG`` positions before).
    Every tenth position is a status update (``None`` in :attr:`lines`), sealed only when a
    file is written (:meth:`write`), of a referral its :class:`Referrals` hold: one whose
    201 the bench already has.
    """

    demo: DemoNetwork
    bundles: Mapping[OrgId, KeyBundle]
    lines: list[str | None] = field(default_factory=list)
    people: list[int] = field(default_factory=list)  # identity number of each new signal
    referrals: dict[int, MessageId] = field(default_factory=dict)  # position -> referral
    _keys: dict[OrgId, OrgKeys] = field(default_factory=dict)
    _pseudonyms: dict[int, tuple[Pseudonym, ...]] = field(default_factory=dict)

    def keys(self, org: OrgId) -> OrgKeys:
        if org not in self._keys:
            self._keys[org] = open_keys(self.demo, org)
        return self._keys[org]

    def pseudonyms(self, person: int) -> tuple[Pseudonym, ...]:
        if person not in self._pseudonyms:
            linking = self.keys(POLICE).current_linking_key  # one linking key per network
            self._pseudonyms[person] = derive_pseudonyms(_identity(person), linking)
        return self._pseudonyms[person]

    def ensure(self, count: int) -> None:
        while len(self.lines) < count:
            self.lines.append(self._next(len(self.lines)))

    def _known(self, position: int) -> int | None:
        """A person a signal at least LAG positions back named first (None: none yet)."""
        eligible = bisect.bisect_right(self.people, position - LAG)
        return None if not eligible else self.people[(position * 7919) % eligible]

    def _next(self, i: int) -> str | None:
        slot = i % 10
        if slot == 9:
            return None  # a status update, sealed when written
        person = self._known(i) if 4 <= slot <= 8 else None
        if slot == 8 and person is not None:
            line, mid = self._sealed(
                POLICE, {SHELTER: self.bundles[SHELTER]}, "referral", i, person
            )
            self.referrals[i] = mid
            return line
        sender = SIGNALLERS[i % len(SIGNALLERS)]
        if person is None:
            person = i
            self.people.append(i)
        recipients = {COORDINATOR: self.bundles[COORDINATOR]}
        return self._sealed(sender, recipients, "signal", i, person)[0]

    def _status(self, ref: MessageId) -> tuple[str, MessageId]:
        """The shelter's ``accepted`` of referral ``ref``, to the police (no pseudonyms)."""
        return self._sealed(SHELTER, {POLICE: self.bundles[POLICE]}, "status", 0, None, ref)

    def _sealed(
        self,
        sender: OrgId,
        to: Mapping[OrgId, KeyBundle],
        kind: str,
        i: int,
        person: int | None,
        ref: MessageId | None = None,
    ) -> tuple[str, MessageId]:
        keys = self.keys(sender)
        assert keys.certificate is not None
        mid = new_message_id(os.urandom)
        envelope = seal(
            message_id=mid,
            network=self.demo.network,
            sender=keys.certificate,
            sender_key=keys.signing_key,
            recipients=to,
            kind=kind,
            payload=os.urandom(PAYLOAD_BYTES),
            pseudonyms=() if person is None else self.pseudonyms(person),
            status="accepted" if kind == "status" else None,
            ref=ref,
            created=int(time.time()),
            rng=os.urandom,
        )
        body = canonical_json(envelope.to_wire()).decode()
        return f"{SENDERS.index(sender) + 1}\t{body}", mid

    def write(self, path: Path, start: int, count: int, referrals: Referrals) -> None:
        """Positions ``start`` to ``start + count`` to ``path``. Each status update names
        the next referral ``referrals`` hold; while they hold none, another request goes
        in its place (:meth:`_instead`)."""
        self.ensure(start + count)
        lines = []
        for at in range(start, start + count):
            line = self.lines[at]
            if line is None:
                ref = referrals.take()
                if ref is None:
                    line = self._instead(at)
                else:
                    line, status = self._status(ref)
                    referrals.named[at] = (ref, status)
            lines.append(line)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _instead(self, i: int) -> str:
        """A referral about a known person, in place of a status update while none can be
        named (in the warm-up): the referrals of a run then outnumber the statuses it can
        name, so that later runs keep the mix. Before anyone is known, a new signal."""
        person = self._known(i)
        if person is None:
            recipients = {COORDINATOR: self.bundles[COORDINATOR]}
            return self._sealed(POLICE, recipients, "signal", i, 50_000_000 + i)[0]
        line, self.referrals[i] = self._sealed(
            POLICE, {SHELTER: self.bundles[SHELTER]}, "referral", i, person
        )
        return line

    def referrals_between(self, start: int, stop: int) -> dict[int, MessageId]:
        """The referrals at positions ``start`` to ``stop``, by position."""
        return {at: mid for at, mid in self.referrals.items() if start <= at < stop}


@dataclass
class Referrals:
    """Referrals a status update may name: each answered 201 (so stored) before the file
    that names it was written, and named once.

    Under load a referral's answer may come a second after it was sent, hundreds of
    positions later; a status update sent after it by position alone could overtake it
    (a 422 ``unknown-referral`` that was the bench's). So only answered ones are here.
    """

    ready: deque[MessageId] = field(default_factory=deque)
    # The status updates of the file written last: position -> (referral, status update).
    named: dict[int, tuple[MessageId, MessageId]] = field(default_factory=dict)

    def take(self) -> MessageId | None:
        return self.ready.popleft() if self.ready else None

    def statuses(self, answered: Collection[str]) -> dict[MessageId, MessageId]:
        """The status updates of the last file answered 201, each with its referral."""
        return {status: ref for ref, status in self.named.values() if status in answered}

    def sent(self, stop: int, answered: Iterable[MessageId]) -> None:
        """After a run that sent every position before ``stop`` and no other: the status
        updates at ``stop`` and after were not sent, so their referrals may be named again
        (first); ``answered`` (referrals answered 201 in the run) may be named from now."""
        unsent = [ref for at, (ref, _) in sorted(self.named.items()) if at >= stop]
        self.ready.extendleft(reversed(unsent))
        self.ready.extend(answered)
        self.named.clear()


# -- one wrk run ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    name: str
    sent: int
    seconds: float
    p50: float  # seconds
    p99: float
    statuses: tuple[tuple[int, int], ...]
    socket_errors: int
    first: str
    cpu: float | None  # CPU seconds of the server (and its database backends)
    answered: frozenset[str] = frozenset()  # ids of the messages answered 201

    @property
    def accepted(self) -> int:
        return dict(self.statuses).get(201, 0)

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds

    @property
    def refused(self) -> int:
        return sum(count for status, count in self.statuses if status != 201) + self.socket_errors

    @property
    def cpu_per_request(self) -> float | None:
        return None if self.cpu is None or not self.accepted else self.cpu / self.accepted

    def line(self) -> str:
        cpu = self.cpu_per_request
        return (
            f"  {self.name:<24} {self.rate:8.0f}/s  p50 {self.p50 * 1e3:7.1f} ms  "
            f"p99 {self.p99 * 1e3:7.1f} ms  CPU {'n/a' if cpu is None else f'{cpu * 1e6:,.0f} µs'}"
            f"/req  not 201: {self.refused}"
        )


def parse_result(
    name: str, output: str, cpu: float | None, answered: frozenset[str] = frozenset()
) -> Run:
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise BenchError(f"{name}: wrk printed no result:\n{output[-1500:]}")
    head, _, first = lines[-1].partition(" first=")
    fields = dict(item.split("=", 1) for item in head.split()[1:])
    statuses = sorted(
        (int(key.removeprefix("status:")), int(value))
        for key, value in fields.items()
        if key.startswith("status:")
    )
    errors = sum(int(fields[k]) for k in ("timeouts", "connect", "read", "write"))
    return Run(
        name=name,
        sent=int(fields["sent"]),
        seconds=int(fields["duration_us"]) / 1e6,
        p50=int(fields["p50_us"]) / 1e6,
        p99=int(fields["p99_us"]) / 1e6,
        statuses=tuple(statuses),
        socket_errors=errors,
        first=first.strip(),
        cpu=cpu,
        answered=answered,
    )


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    url: str  # where to POST
    pid: int
    tokens: tuple[str, ...]  # the bearer tokens of SENDERS, in order
    cpu_pids: Callable[[], Sequence[int]]  # database backends to count with the server
    database: str = ""  # the hub's database URL, checked after each run (the floor's: "")


def _cpu(pids: Sequence[int]) -> dict[int, float]:
    found = {pid: process_cpu_seconds(pid) for pid in pids}
    return {pid: seconds for pid, seconds in found.items() if seconds is not None}


async def wrk(
    server: Server, requests: Path, *, name: str, seconds: float, delay_ms: float = 0
) -> Run:
    """One wrk run of ``seconds`` against ``server``, sending ``requests`` in order."""
    pids = [server.pid, *server.cpu_pids()]
    before = _cpu(pids)
    answered = requests.with_suffix(".answered")
    env = {
        **os.environ,
        "BENCH_DELAY_MS": str(int(delay_ms)),
        "BENCH_TOKENS": " ".join(server.tokens),  # not in argv: ps shows that to anyone
        "BENCH_ANSWERED": str(answered),
    }
    argv = [
        "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", f"--timeout={WRK_TIMEOUT}",
        "-s", str(SCRIPT), server.url, "--", str(requests), _path(server.url),
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out, _ = await process.communicate()
    after = _cpu(pids)
    cpu = sum(after[p] - before[p] for p in after if p in before)
    if server.pid not in after or server.pid not in before:
        cpu_or_none: float | None = None
    else:
        cpu_or_none = cpu
    ids = frozenset(answered.read_text(encoding="utf-8").split()) if answered.exists() else None
    run = parse_result(name, out.decode("utf-8", "replace"), cpu_or_none, ids or frozenset())
    # The hub answers 201 with the message's id (a repeat is 200, and not counted); the
    # floor with none.
    if server.database and (ids is None or len(ids) < run.accepted):
        raise BenchError(f"{name}: wrk wrote {len(ids or ())} ids of {run.accepted} answered 201")
    return run


async def check_stored(
    database: str,
    name: str,
    *,
    answered: Collection[str],
    referrals: Collection[MessageId],
    statuses: Mapping[MessageId, MessageId],
) -> None:
    """BenchError unless the hub's database holds every message answered 201, a referral
    from the police to the shelter for each of ``referrals``, and for each status update
    of ``statuses`` (id -> the referral it names) its ``accepted`` step of that referral."""
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import create_async_engine

    from hub.schema import messages, referral_updates
    from hub.schema import referrals as referral_rows

    engine = create_async_engine(database, poolclass=sa.NullPool)
    held: set[str] = set()
    parties: dict[str, tuple[str, str]] = {}
    steps: dict[str, tuple[str, str, bool]] = {}
    try:
        async with engine.connect() as conn:
            for chunk in _chunks(sorted(answered)):
                query = sa.select(messages.c.id).where(messages.c.id.in_(chunk))
                held.update(await conn.scalars(query))
            for chunk in _chunks(sorted(referrals)):
                query = sa.select(
                    referral_rows.c.id, referral_rows.c.referrer, referral_rows.c.recipient
                ).where(referral_rows.c.id.in_(chunk))
                parties.update(
                    (row.id, (row.referrer, row.recipient)) for row in await conn.execute(query)
                )
            updates = messages.join(
                referral_updates, referral_updates.c.cursor == messages.c.cursor
            ).join(referral_rows, referral_rows.c.cursor == referral_updates.c.referral)
            for chunk in _chunks(sorted(statuses)):
                query = (
                    sa.select(
                        messages.c.id,
                        referral_rows.c.id.label("ref"),
                        referral_updates.c.code,
                        referral_rows.c.accepted_at.is_not(None).label("accepted"),
                    )
                    .select_from(updates)
                    .where(messages.c.id.in_(chunk))
                )
                steps.update(
                    (row.id, (row.ref, row.code, row.accepted)) for row in await conn.execute(query)
                )
    finally:
        await engine.dispose()
    wrong = {
        "messages answered 201 and not stored": len(set(answered) - held),
        "referrals answered 201 without their row": sum(
            parties.get(ref) != (POLICE, SHELTER) for ref in referrals
        ),
        "status updates answered 201 without their step": sum(
            steps.get(status) != (ref, "accepted", True) for status, ref in statuses.items()
        ),
    }
    if any(wrong.values()):
        found = ", ".join(f"{what}: {count}" for what, count in wrong.items() if count)
        raise BenchError(f"{name}: {found} (of {len(answered):,} answered 201)")
    print(
        f"  ({name}: stored, as answered: {len(answered):,} messages, {len(referrals):,} "
        f"referrals, {len(statuses):,} status updates)",
        file=sys.stderr,
    )


def _chunks(ids: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3] if url.count("/") >= 3 else "/"


# -- subscribers and push probes -------------------------------------------------------


class Sockets:
    """WebSocket subscribers held open during the load; the coordinator's first one also
    times probes (message id -> future of the frame's arrival). A socket the hub closes
    (1013: it fell behind) is counted and opened again, as a client would."""

    def __init__(self) -> None:
        self.frames = 0
        self.closed: list[str] = []
        self.waiting: dict[str, asyncio.Future[float]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def open(
        self, session: aiohttp.ClientSession, base: str, tokens: Mapping[OrgId, str]
    ) -> None:
        for org, count in SUBSCRIBERS:
            headers = {"Authorization": f"Bearer {tokens[org]}", "Schakel-User": BENCH_USER}
            for _ in range(count):
                socket = await session.ws_connect(base + "/v1/ws", headers=headers, heartbeat=None)
                self._tasks.append(
                    asyncio.ensure_future(self._read(session, base, headers, org, socket))
                )

    async def _read(
        self,
        session: aiohttp.ClientSession,
        url: str,
        headers: Mapping[str, str],
        org: OrgId,
        socket: aiohttp.ClientWebSocketResponse,
    ) -> None:
        while True:
            async for frame in socket:
                at = time.perf_counter()
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue
                self.frames += 1
                doc = json.loads(frame.data)
                waiting = self.waiting.get(doc.get("id")) if doc.get("type") == "message" else None
                if waiting is not None and not waiting.done():
                    waiting.set_result(at)
            self.closed.append(f"{org} {socket.close_code}")
            socket = await session.ws_connect(url + "/v1/ws", headers=headers, heartbeat=None)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def probe_pushes(
    session: aiohttp.ClientSession,
    url: str,
    token: str,
    bodies: Sequence[bytes],
    sockets: Sockets,
    until: float,
) -> list[float]:
    """Send probes one at a time until ``until``; seconds from send to the coordinator's frame."""
    loop = asyncio.get_running_loop()
    headers = {
        "Authorization": f"Bearer {token}",
        "Schakel-User": BENCH_USER,
        "Content-Type": "application/json",
    }
    delays: list[float] = []
    for body in bodies:
        if time.perf_counter() >= until:
            break
        mid = json.loads(body)["header"]["id"]
        waiting = sockets.waiting[mid] = loop.create_future()
        sent = time.perf_counter()
        async with session.post(url, data=body, headers=headers) as answer:
            await answer.read()
            if answer.status != 201:
                raise BenchError(f"a push probe answered {answer.status}")
        try:
            delays.append(await asyncio.wait_for(waiting, PROBE_TIMEOUT) - sent)
        except TimeoutError:
            delays.append(float("inf"))
        await asyncio.sleep(PROBE_INTERVAL)
    return delays


# -- one database -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Figures:
    database: str
    rounds: tuple[tuple[Run, Run], ...]  # (floor, hub)
    warmups: tuple[Run, ...]
    half: tuple[Run, Run]  # floor, hub at about half their peak rates
    pushes: tuple[float, ...]  # seconds, sorted
    frames: int  # frames the subscribers read
    body_bytes: int
    closed: tuple[str, ...] = ()  # sockets the hub closed during the load (reopened)

    @property
    def ratio(self) -> float:
        return statistics.median(h.rate / f.rate for f, h in self.rounds)

    def median(self, which: int, attribute: str) -> float:
        values = [getattr(pair[which], attribute) for pair in self.rounds]
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else float("nan")

    def runs(self) -> Iterator[Run]:
        yield from self.warmups
        for pair in self.rounds:
            yield from pair
        yield from self.half


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@dataclass(frozen=True, slots=True)
class Settings:
    seconds: float = 5.0
    rounds: int = 3
    warmup: float = 3.0


async def _tokens(demo: DemoNetwork, base: str) -> dict[OrgId, str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        return {
            org: await access_token(session, base, open_keys(demo, org))
            for org in (*SENDERS, COORDINATOR)
        }


async def _bundles(demo: DemoNetwork, base: str, token: str) -> dict[OrgId, KeyBundle]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        return {
            org: await directory_bundle(session, base, token, demo, org)
            for org in (COORDINATOR, POLICE, SHELTER)
        }


class Driver:
    """Runs on one database: warm-up, alternating rounds, half-rate runs with probes."""

    def __init__(self, stream: Stream, probes: Sequence[bytes], workdir: Path, s: Settings) -> None:
        self.stream, self.probes, self.workdir, self.s = stream, probes, workdir, s
        self.offset = 0  # next stream position the hub has not been sent
        self.estimate = 500.0  # requests/s the hub may take, for sizing the next file
        self.referrals = Referrals()  # answered 201 on this database, not yet given a status

    async def hub(self, server: Server, name: str, seconds: float, delay_ms: float = 0) -> Run:
        start = self.offset
        count = int(self.estimate * seconds * 1.6) + 2 * CONNECTIONS + 200
        path = self.workdir / "hub.requests"
        self.stream.write(path, start, count, self.referrals)
        run = await wrk(server, path, name=name, seconds=seconds, delay_ms=delay_ms)
        # A run faster than the estimate reaches the end of its file, and wrk starts it
        # again from the top (a repeat is answered 200, which fails the run). The
        # positions after the file were never sent, so the stream goes on right after it.
        sent = min(run.sent, count)
        if run.sent > count:
            print(f"  ({name} sent its file of {count:,} and started it again)", file=sys.stderr)
        self.offset += sent
        referrals = self.stream.referrals_between(start, self.offset)
        await check_stored(
            server.database,
            name,
            answered=run.answered,
            referrals={ref for ref in referrals.values() if ref in run.answered},
            statuses=self.referrals.statuses(run.answered),
        )
        # wrk stops with requests in flight: only referrals answered 201 are named later.
        self.referrals.sent(
            self.offset,
            [referrals[at] for at in sorted(referrals) if referrals[at] in run.answered],
        )
        if not delay_ms:
            self.estimate = max(run.sent / run.seconds, 50.0)
        return run

    async def floor(self, server: Server, name: str, seconds: float, delay_ms: float = 0) -> Run:
        path = self.workdir / "floor.requests"
        if not path.exists():  # the floor stores bodies unread: any earlier referral will do
            self.stream.ensure(FLOOR_REQUESTS)
            named = Referrals(deque(self.stream.referrals_between(0, FLOOR_REQUESTS).values()))
            self.stream.write(path, 0, FLOOR_REQUESTS, named)
        return await wrk(server, path, name=name, seconds=seconds, delay_ms=delay_ms)

    async def run(
        self, database: str, floor_s: Server, hub_s: Server, tokens: Mapping[OrgId, str]
    ) -> Figures:
        s = self.s
        timeout = aiohttp.ClientTimeout(total=60)
        sockets = Sockets()
        async with aiohttp.ClientSession(timeout=timeout) as session:
            base = hub_s.url.removesuffix(MESSAGES_PATH)
            await sockets.open(session, base, tokens)
            try:
                warmups = (
                    await self.floor(floor_s, "floor warm-up", s.warmup),
                    await self.hub(hub_s, "hub warm-up", s.warmup),
                )
                rounds = []
                for number in range(s.rounds):
                    if number % 2 == 0:
                        f = await self.floor(floor_s, f"floor round {number + 1}", s.seconds)
                        h = await self.hub(hub_s, f"hub round {number + 1}", s.seconds)
                    else:
                        h = await self.hub(hub_s, f"hub round {number + 1}", s.seconds)
                        f = await self.floor(floor_s, f"floor round {number + 1}", s.seconds)
                    rounds.append((f, h))
                    print(f.line(), h.line(), sep="\n", file=sys.stderr)
                floor_peak = statistics.median(f.rate for f, _ in rounds)
                hub_peak = statistics.median(h.rate for _, h in rounds)
                half_floor = await self.floor(
                    floor_s, "floor at half peak", s.seconds, _half_delay(floor_peak)
                )
                hub_run = asyncio.ensure_future(
                    self.hub(hub_s, "hub at half peak", s.seconds, _half_delay(hub_peak))
                )
                await asyncio.sleep(0.5)
                pushes = await probe_pushes(
                    session, hub_s.url, tokens[POLICE], self.probes, sockets,
                    until=time.perf_counter() + s.seconds - 1.0,
                )  # fmt: skip
                half_hub = await hub_run
            finally:
                await sockets.close()
        return Figures(
            database=database,
            rounds=tuple(rounds),
            warmups=warmups,
            half=(half_floor, half_hub),
            pushes=tuple(sorted(pushes)),
            frames=sockets.frames,
            closed=tuple(sockets.closed),
            body_bytes=round(
                statistics.mean(len(line) - 2 for line in self.stream.lines[:1000] if line)
            ),
        )


def _half_delay(peak: float) -> float:
    """Per-connection pause (ms) for about half ``peak``: 32 connections, each cycle
    ``pause + latency`` where the latency at half load is taken as half the peak's."""
    return max(1.0, (2 * CONNECTIONS / peak - 0.5 * CONNECTIONS / peak) * 1000)


# -- the whole run ----------------------------------------------------------------------


def _probe_bodies(demo: DemoNetwork, bundle: KeyBundle, count: int) -> list[bytes]:
    keys = open_keys(demo, POLICE)
    assert keys.certificate is not None
    bodies = []
    for number in range(count):
        envelope = seal(
            message_id=new_message_id(os.urandom),
            network=demo.network,
            sender=keys.certificate,
            sender_key=keys.signing_key,
            recipients={COORDINATOR: bundle},
            kind="signal",
            payload=os.urandom(PAYLOAD_BYTES),
            pseudonyms=derive_pseudonyms(_identity(10_000_000 + number), keys.current_linking_key),
            created=int(time.time()),
            rng=os.urandom,
        )
        bodies.append(canonical_json(envelope.to_wire()))
    return bodies


def _pg_backends(dsn: str) -> Callable[[], Sequence[int]]:
    """The server processes serving database ``dsn`` now (asked at each run's start)."""

    def pids() -> Sequence[int]:
        async def ask() -> list[int]:
            import asyncpg

            conn = await asyncpg.connect(dsn)
            try:
                rows = await conn.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()"
                )
                return [int(row["pid"]) for row in rows]
            finally:
                await conn.close()

        return asyncio.run(ask()) if not _in_loop() else _run_in_thread(ask)

    return pids


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _run_in_thread(make: Callable[[], object]) -> list[int]:
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()  # type: ignore[arg-type]


@dataclass
class Shared:
    """What both databases share: the network, the sealed stream and the probes."""

    demo: DemoNetwork
    stream: Stream | None = None
    probes: list[bytes] = field(default_factory=list)


def measure(database: str, shared: Shared, workdir: Path, s: Settings) -> Figures:
    demo = shared.demo
    with ExitStack() as stack:
        if database == "sqlite":
            hub_url = demo.database_url
            floor_db: str = str(workdir / "floor-sqlite.db")
            backends: Callable[[], Sequence[int]] = lambda: ()  # noqa: E731
        else:
            hub_url, floor_db, _version = stack.enter_context(bench_databases(pg_url()))
            migrate(demo, hub_url, cwd=REPO)
            backends = _pg_backends(floor_db)
        floor_port, hub_port = free_port(), free_port()
        while hub_port == floor_port:
            hub_port = free_port()
        floor_process = stack.enter_context(
            server_process(
                f"floor ({database})", floor.argv(sys.executable, floor_db, floor_port),
                port=floor_port, log=workdir / f"floor-{database}.log", cwd=REPO,
            )
        )  # fmt: skip
        base, hub_process = stack.enter_context(
            running_hub(
                demo, port=hub_port, log=workdir / f"hub-{database}.log", cwd=REPO,
                database_url=hub_url,
            )
        )  # fmt: skip
        asyncio.run(bootstrap(demo, base, now=int(time.time())))
        tokens = asyncio.run(_tokens(demo, base))
        if shared.stream is None:
            bundles = asyncio.run(_bundles(demo, base, tokens[COORDINATOR]))
            shared.stream = Stream(demo, bundles)
            shared.probes = _probe_bodies(
                demo, bundles[COORDINATOR], int(2 * s.seconds / PROBE_INTERVAL)
            )
        hub_backends = _pg_backends(_dsn(hub_url)) if database != "sqlite" else (lambda: ())
        sender_tokens = tuple(tokens[org] for org in SENDERS)
        floor_s = Server(
            "floor",
            f"http://{LOOPBACK}:{floor_port}{floor.PATH}",
            floor_process.pid,
            sender_tokens,
            backends,
        )
        hub_s = Server(
            "hub", base + MESSAGES_PATH, hub_process.pid, sender_tokens, hub_backends, hub_url
        )
        driver = Driver(shared.stream, shared.probes, workdir, s)
        figures = asyncio.run(driver.run(database, floor_s, hub_s, tokens))
        bad = [r for r in figures.runs() if r.refused]
        if bad:
            log = (workdir / f"hub-{database}.log").read_text(errors="replace")[-1500:]
            details = "\n".join(
                f"{r.name}: statuses {r.statuses}, socket errors {r.socket_errors}, "
                f"first: {r.first}"
                for r in bad
            )
            raise BenchError(
                f"{database}: not every request was accepted:\n{details}\n--- hub log ---\n{log}"
            )
        return figures


def _dsn(url: str) -> str:
    import sqlalchemy as sa

    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def render(figures: Sequence[Figures], s: Settings) -> list[str]:
    lines = [
        f"### Accept path: wrk, {CONNECTIONS} connections, one thread, {s.rounds} alternating "
        f"rounds of {s.seconds:g} s (medians)",
        "",
        "| database | server | accepted/s | p50 ms | p99 ms "
        "| CPU µs/accepted (server + database) "
        "| p99 ms at half peak (rate) | push p99 ms at half peak |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for f in figures:
        for which, name in ((0, "floor (group commit)"), (1, "hub")):
            half = f.half[which]
            push = (
                f"{percentile(f.pushes, 99) * 1e3:.1f} "
                f"(p50 {percentile(f.pushes, 50) * 1e3:.1f}, n={len(f.pushes)})"
                if which
                else ""
            )
            lines.append(
                f"| {f.database} | {name} | {f.median(which, 'rate'):,.0f} | "
                f"{f.median(which, 'p50') * 1e3:.1f} | {f.median(which, 'p99') * 1e3:.1f} | "
                f"{f.median(which, 'cpu_per_request') * 1e6:,.0f} | "
                f"{half.p99 * 1e3:.1f} ({half.rate:,.0f}/s) | {push} |"
            )
    lines.append("")
    for f in figures:
        per_round = ", ".join(f"{h.rate / fl.rate:.2f}" for fl, h in f.rounds)
        lat = f.half[1].p99 / f.half[0].p99 if f.half[0].p99 else float("nan")
        cpu = f.median(1, "cpu_per_request") / f.median(0, "cpu_per_request")
        lines.append(
            f"{f.database}: hub/floor accepted/s per round {per_round}; CPU per accepted "
            f"{cpu:.1f}x the floor's; p99 at half peak {lat:.2f}x the floor's; "
            f"{f.frames:,} WebSocket frames read by {sum(n for _, n in SUBSCRIBERS)} subscribers "
            f"({_closures(f.closed)}); "
            f"requests of {f.body_bytes:,} bytes on average."
        )
    return lines


def _closures(closed: Sequence[str]) -> str:
    if not closed:
        return "none closed by the hub"
    counts = Counter(closed)
    return "closed by the hub and reopened: " + ", ".join(f"{n} x {c}" for c, n in counts.items())


def final_line(figures: Sequence[Figures]) -> str:
    ratios = {f.database: f.ratio for f in figures}
    sqlite = f"{ratios['sqlite']:.2f}" if "sqlite" in ratios else "n/a"
    pg = f"{ratios['pg']:.2f}" if "pg" in ratios else "n/a"
    return f"hub/floor sqlite {sqlite} pg {pg}"


def run(s: Settings, databases: Sequence[str]) -> list[Figures]:
    if shutil.which("wrk") is None:
        raise BenchError(
            "wrk is not installed (make bench-accept installs it: apt-get install -y wrk)"
        )
    results = []
    with tempfile.TemporaryDirectory(prefix="schakel-accept-") as scratch:
        workdir = Path(scratch)
        shared = Shared(provision_network(workdir / "network", now=int(time.time())))
        for database in databases:
            try:
                results.append(measure(database, shared, workdir, s))
            except Unreachable as exc:
                print(f"{database}: skipped, PostgreSQL out of reach ({exc})", file=sys.stderr)
    return results


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--seconds",
    type=click.FloatRange(1, 60),
    default=5.0,
    show_default=True,
    help="Seconds per run.",
)
@click.option(
    "--rounds", type=click.IntRange(1, 9), default=3, show_default=True, help="Alternating rounds."
)
@click.option("--no-postgres", is_flag=True, help="SQLite only.")
@click.option("--no-sqlite", is_flag=True, help="PostgreSQL only.")
def main(seconds: float, rounds: int, no_postgres: bool, no_sqlite: bool) -> None:
    """Hub against its group-commit floor on SQLite and PostgreSQL (make bench-accept)."""
    databases = [name for name, off in (("sqlite", no_sqlite), ("pg", no_postgres)) if not off]
    if not databases:
        raise click.UsageError("--no-sqlite and --no-postgres leave nothing to measure")
    s = Settings(seconds=seconds, rounds=rounds)
    started = time.perf_counter()
    figures = run(s, databases)
    click.echo("\n".join(render(figures, s)))
    click.echo(f"({time.perf_counter() - started:.0f} s)")
    click.echo(final_line(figures))


if __name__ == "__main__":
    main()
