"""Benchmarks of case clustering and of the coordinator's cases view.

* **Signals through clustering.** A fresh, migrated hub database is filled in one
  bulk transaction (raw sqlite3) with 10^3, 10^5 or 10^6 distinct pseudonyms in
  case clusters of the usual shape: cases of 1-3 signals, three pseudonyms per
  signal, the signals of a case linked by one shared pseudonym (so a case of k
  signals holds 2k + 1 pseudonyms). Then new signals go through the hub's own
  write path, the :class:`~hub.store.Store` writer with group commit: each signal is
  handed to it as the relay does (:class:`hub.store.bulk.NewMessage`: a real sealed
  envelope with a 4 KB payload, made once, with its id and pseudonyms changed per
  signal, and its access-log entry), stored with the batch's others and clustered with
  them (:func:`hub.placement.place_all`): half share a pseudonym with an existing case
  and join it (with a ``match`` event for the coordinator), half start a case. The
  floor is the same, unclustered, on the same database, in alternating rounds. The
  figure is clustered/floor signals per second, at each size:
  it should stay nearly flat, since every lookup is by index.
* **The cases view.** A database with 10^4 cases (1-5 signals each, 3 on average,
  a referral in every third case, at every step) holds real envelopes. Timed, as the
  hub does it for ``GET /v1/cases``: :func:`hub.store.casereads.page` (the default
  query: newest first, 50 a page, on the summary each case keeps); and one case's
  detail (:func:`casereads.detail`) for a random case. The floor is a bare
  ``SELECT count(*)`` over ``case_members`` through the same read path, in the same loop.

The pre-filled messages hold a short stand-in for the envelope text in the clustering
databases (clustering never reads it, and 400,000 real envelopes would be 3 GB); the
signals measured, and every message of the cases-view database, hold real envelopes.
Every run checks that the work did what it says (cases started, cases joined, events
written), or raises :class:`WorkloadError`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import random
import sqlite3
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub import placement
from hub import schema as t
from hub.accesslog.recording import Event
from hub.coordinator import CaseQuery
from hub.store import Store
from hub.store import casereads as reads
from hub.store.bulk import NewMessage
from protocol import referral as machine
from protocol.auditlog import AuditEntry
from protocol.cases import CaseSummary
from protocol.certificate import (
    Certificate,
    create_enrolment_request,
    create_root,
    issue_certificate,
)
from protocol.encoding import b64e, canonical_json
from protocol.envelope import Envelope, encode, seal
from protocol.keybundle import kem_public_bytes, sign_bundle
from protocol.pseudonym import TYPES
from protocol.types import CaseRef, MessageId, NetworkId, OrgId, Pseudonym, case_ref_from

SIZES = (1_000, 100_000, 1_000_000)  # distinct pseudonyms held by cases before the run
VIEW_CASES = 10_000
NETWORK = NetworkId("bench")
T0 = 1_795_000_000
YEAR = 365 * 86_400
PAYLOAD_BYTES = 4096
COORDINATOR = OrgId("coordinator")
SHELTER = OrgId("shelter")
SIGNALLERS: tuple[tuple[OrgId, str], ...] = (
    (OrgId("police"), "police"),
    (OrgId("ggd"), "ggd"),
    (OrgId("school"), "school"),
    (OrgId("municipality"), "municipality"),
)
STAND_IN = '{"stand-in":"' + "x" * 240 + '"}'  # the envelope text of pre-filled messages
TIMELINE_LIMIT = 1000  # the hub's default max_timeline
_PREFILLED, _MEASURED = 0, 1  # first byte of ids and references, so the two never meet


class WorkloadError(RuntimeError):
    """The benchmark's work did not do what it claims; its figures would mean nothing."""


# --- identifiers ---------------------------------------------------------------------------


_BASE32 = bytes.maketrans(
    bytes(range(256)), bytes(b"abcdefghijklmnopqrstuvwxyz234567"[i % 32] for i in range(256))
)


def bench_pseudonym(number: int) -> Pseudonym:
    """Pseudonym number ``number``: well-formed (``type.1.`` and 52 base32 characters), of
    all four types, random-looking and so spread over the index as real ones are."""
    digest = hashlib.sha512(number.to_bytes(8, "big")).digest()[:51]
    return Pseudonym(f"{TYPES[number % len(TYPES)]}.1.{digest.translate(_BASE32).decode()}a")


def bench_message_id(origin: int, number: int) -> MessageId:
    return MessageId(b64e(bytes([origin]) + number.to_bytes(15, "big")))


def bench_case_ref(origin: int, number: int) -> CaseRef:
    return case_ref_from(bytes([origin]) + number.to_bytes(9, "big"))


# --- the parties and the envelope made once --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Template:
    """A signal sealed once by a real sender to the coordinator, and the sender's certificate."""

    sender: Certificate
    envelope: Envelope

    def signal(self, number: int, pseudonyms: Sequence[Pseudonym], *, now: int) -> Envelope:
        """The template with another id and pseudonyms (its signature no longer holds; the
        store does not check it: the relay did before the work item)."""
        header = dataclasses.replace(
            self.envelope.header,
            id=bench_message_id(_MEASURED, number),
            pseudonyms=tuple(sorted(set(pseudonyms))),
            created=now,
        )
        return dataclasses.replace(self.envelope, header=header)


def _certificate(
    root_key: Ed25519PrivateKey, org: OrgId, org_type: str, key: Ed25519PrivateKey, serial: int
) -> Certificate:
    root = create_root(root_key, NETWORK, now=T0 - YEAR, days=3650, serial=1)
    request = create_enrolment_request(key, NETWORK, org)
    roles = ["member", "coordinator"] if org == COORDINATOR else ["member"]
    return issue_certificate(
        root_key, root, request, roles, now=T0 - YEAR, days=730, serial=serial, org_type=org_type
    )


def make_template() -> Template:
    root_key, police_key, coordinator_key = (Ed25519PrivateKey.generate() for _ in range(3))
    police = _certificate(root_key, SIGNALLERS[0][0], "police", police_key, 2)
    coordinator = _certificate(root_key, COORDINATOR, "coordination", coordinator_key, 3)
    bundle = sign_bundle(
        coordinator_key,
        coordinator,
        kem_public_bytes(os.urandom(96)),
        not_before=T0 - YEAR,
        not_after=T0 + YEAR,
    )
    envelope = seal(
        message_id=bench_message_id(_MEASURED, 0),
        network=NETWORK,
        sender=police,
        sender_key=police_key,
        recipients={COORDINATOR: bundle},
        kind="signal",
        payload=os.urandom(PAYLOAD_BYTES),
        pseudonyms=(bench_pseudonym(0),),
        created=T0,
        rng=os.urandom,
    )
    return Template(police, envelope)


# --- filling a database fast ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filled:
    """What a bulk fill put in the database, and how long it took."""

    cases: int
    messages: int
    pseudonyms: int  # distinct, all held by a case
    referrals: int
    seconds: float


_ROWS_PER_FLUSH = 20_000
# The columns each table is filled with, in the order of the filler's row tuples.
_FILLED: dict[str, tuple[str, ...]] = {
    "organisations": ("org", "network", "certificate", "fingerprint", "serial", "roles",
                      "not_before", "not_after", "org_type"),
    "messages": ("cursor", "id", "sender", "kind", "created", "accepted_at",
                 "envelope_fingerprint", "envelope", "size"),
    "deliveries": ("recipient", "cursor", "acked_at"),
    "message_pseudonyms": ("cursor", "pseudonym"),
    "cases": ("ref", "created_at"),
    "case_members": ("cursor", "case"),
    "case_pseudonyms": ("pseudonym", "case"),
    "referrals": ("cursor", "id", "case", "referrer", "recipient", "step", "step_at",
                  "sent_at", "delivered_at", "accepted_at", "declined_at", "care_started_at",
                  "closed_at"),
}  # fmt: skip
_INSERTS = {
    table: f'INSERT INTO "{table}" ({", ".join(f"{c!r}" for c in columns)}) '
    f"VALUES ({', '.join('?' * len(columns))})"
    for table, columns in _FILLED.items()
}


class _Filler:
    """Rows gathered per table and written with ``executemany`` in one transaction."""

    def __init__(self, db: sqlite3.Connection, envelope: str, fingerprint: str) -> None:
        self.db, self.envelope, self.fingerprint = db, envelope, fingerprint
        self.rows: dict[str, list[tuple[Any, ...]]] = {table: [] for table in _FILLED}
        self.messages = self.pseudonyms = self.referrals = 0

    def message(self, case: CaseRef, sender: OrgId, kind: str, at: int, to: OrgId) -> int:
        self.messages += 1
        cursor, rows = self.messages, self.rows
        rows["messages"].append(
            (
                cursor,
                bench_message_id(_PREFILLED, cursor),
                sender,
                kind,
                at,
                at,
                self.fingerprint,
                self.envelope,
                len(self.envelope),
            )
        )
        rows["deliveries"].append((to, cursor, at + 60))
        rows["case_members"].append((cursor, case))
        if len(rows["messages"]) >= _ROWS_PER_FLUSH:
            self.flush()
        return cursor  # fmt: skip

    def new_pseudonym(self) -> Pseudonym:
        self.pseudonyms += 1
        return bench_pseudonym(self.pseudonyms)

    def flush(self) -> None:
        for table, rows in self.rows.items():
            if rows:
                self.db.executemany(_INSERTS[table], rows)
                rows.clear()


def _drop_indexes(db: sqlite3.Connection) -> list[str]:
    """Drop the filled tables' secondary indexes (rebuilt after the fill: sorting once is
    much faster than a million random inserts); the statements that make them again."""
    rows = db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        f"AND tbl_name IN ({', '.join('?' * len(_FILLED))})",
        list(_FILLED),
    ).fetchall()
    for name, _ in rows:
        db.execute(f'DROP INDEX "{name}"')
    return [sql for _, sql in rows]


def _fill_organisations(filler: _Filler) -> None:
    orgs = [*SIGNALLERS, (COORDINATOR, "coordination"), (SHELTER, "shelter")]
    for serial, (org, org_type) in enumerate(orgs, start=2):
        roles = "coordinator,member" if org == COORDINATOR else "member"
        fingerprint = b64e(hashlib.sha256(org.encode()).digest())
        filler.rows["organisations"].append(
            (org, NETWORK, b"\x00", fingerprint, str(serial), roles, T0 - YEAR, T0 + YEAR,
             org_type)
        )  # fmt: skip


def _fill_case(filler: _Filler, number: int, signals: int, rng: random.Random) -> CaseRef:
    """One case of ``signals`` signals, three pseudonyms each, linked by the first."""
    ref = bench_case_ref(_PREFILLED, number)
    first = T0 - YEAR + rng.randrange(YEAR - 86_400)
    filler.rows["cases"].append((ref, first))
    shared = filler.new_pseudonym()
    held = {shared}
    for signal in range(signals):
        sender = SIGNALLERS[(number + signal) % len(SIGNALLERS)][0]
        at = first + signal * rng.randrange(1, 86_400)
        cursor = filler.message(ref, sender, "signal", at, COORDINATOR)
        mine = (shared, filler.new_pseudonym(), filler.new_pseudonym())
        held.update(mine)
        filler.rows["message_pseudonyms"].extend((cursor, p) for p in mine)
    filler.rows["case_pseudonyms"].extend((p, ref) for p in held)
    return ref


def _fill_referral(filler: _Filler, ref: CaseRef, number: int, rng: random.Random) -> None:
    """A referral of the case from the coordinator to the shelter, at one of the steps."""
    sent = T0 - rng.randrange(86_400, 60 * 86_400)
    cursor = filler.message(ref, COORDINATOR, "referral", sent, SHELTER)
    step = machine.STEPS[number % len(machine.STEPS)]
    step_at = sent if step == machine.SENT else sent + 3_600
    filler.rows["referrals"].append(
        (cursor, bench_message_id(_PREFILLED, cursor), ref, COORDINATOR, SHELTER, step,
         step_at, sent, *(step_at if s == step else None for s in machine.STEPS[1:]))
    )  # fmt: skip
    filler.referrals += 1


def fill(
    path: Path,
    cases: int,
    signals_of: Callable[[int], int],
    *,
    referral_every: int = 0,
    envelope: str = STAND_IN,
    fingerprint: str = "A" * 43,
) -> Filled:
    """Bulk-insert ``cases`` cases into the migrated, idle hub database at ``path``.

    Case ``n`` gets ``signals_of(n)`` signals, and every ``referral_every``-th case a
    referral (none when 0). One transaction, without journal or sync (the file is new
    and thrown away when this fails), then back to WAL, as the hub keeps it.
    """
    start = time.perf_counter()
    rng = random.Random(cases)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-262144"):
            db.execute("PRAGMA " + pragma)
        db.execute("BEGIN")
        indexes = _drop_indexes(db)
        filler = _Filler(db, envelope, fingerprint)
        _fill_organisations(filler)
        for number in range(cases):
            ref = _fill_case(filler, number, signals_of(number), rng)
            if referral_every and number % referral_every == 0:
                _fill_referral(filler, ref, number // referral_every, rng)
        filler.flush()
        for sql in indexes:
            db.execute(sql)
        db.execute("COMMIT")
        db.execute("PRAGMA journal_mode=WAL")
    finally:
        db.close()
    seconds = time.perf_counter() - start
    return Filled(cases, filler.messages, filler.pseudonyms, filler.referrals, seconds)


async def _new_database(path: Path) -> None:
    store = Store(f"sqlite+aiosqlite:///{path}")
    try:
        await store.migrate()
    finally:
        await store.close()


def new_database(path: Path) -> None:
    """A hub database at ``path``, migrated to the newest schema, nothing in it."""
    asyncio.run(_new_database(path))


# --- signals through clustering -----------------------------------------------------------------

FRESH = 10**12  # pseudonym numbers from here on are held by no pre-filled case


def clustering_shape(case: int) -> int:
    """Signals in pre-filled case ``case``: 1, 2, 3, 1, 2, 3, ... (2k + 1 pseudonyms each)."""
    return 1 + case % 3


def cases_for(pseudonyms: int) -> int:
    """How many cases of :func:`clustering_shape` hold about ``pseudonyms`` pseudonyms."""
    return max(1, round(pseudonyms / 5))


@dataclass(frozen=True, slots=True)
class ClusterRate:
    """Signals per second with and without clustering, per round, on one filled database."""

    filled: Filled
    signals: int  # per run, half joining a case, half starting one
    concurrency: int
    clustered: tuple[float, ...]  # signals/s per round: insert_message + place
    floor: tuple[float, ...]  # signals/s per round: insert_message only

    @property
    def clustered_rate(self) -> float:
        return statistics.median(self.clustered)

    @property
    def floor_rate(self) -> float:
        return statistics.median(self.floor)

    @property
    def ratios(self) -> tuple[float, ...]:
        return tuple(c / f for c, f in zip(self.clustered, self.floor, strict=True))

    @property
    def ratio(self) -> float:
        """Median over the rounds of clustered/floor signals per second."""
        return statistics.median(self.ratios)


@dataclass(frozen=True, slots=True)
class SignalBatch:
    """The signals of one run: envelopes made before the clock starts."""

    envelopes: tuple[Envelope, ...]
    fresh: tuple[CaseRef, ...]  # the reference each would get as a new case
    joining: int  # how many share a pseudonym with a pre-filled case


def make_batch(template: Template, first: int, count: int, existing: int) -> SignalBatch:
    """Signals ``first`` .. ``first + count - 1``: even ones join a random pre-filled case
    (one of its pseudonyms and two new ones), odd ones carry three new pseudonyms."""
    rng = random.Random(first)
    envelopes = []
    for number in range(first, first + count):
        new = [bench_pseudonym(FRESH + 3 * number + k) for k in range(3)]
        if number % 2 == 0:
            new[0] = bench_pseudonym(rng.randrange(1, existing + 1))
        envelopes.append(template.signal(number, new, now=T0))
    fresh = tuple(bench_case_ref(_MEASURED, number) for number in range(first, first + count))
    joining = sum(1 for number in range(first, first + count) if number % 2 == 0)
    return SignalBatch(tuple(envelopes), fresh, joining)


def _new_message(
    template: Template, envelope: Envelope, fresh: CaseRef, *, clustered: bool
) -> NewMessage:
    """The signal as the relay hands it to the writer (encoded before it, with its entry),
    clustered with the batch's others or (the floor) not."""
    encoded = encode(envelope)
    event = Event(
        action="create",
        object_type="message",
        outcome="allowed",
        org=envelope.header.sender,
        object_ids=(envelope.header.id,),
        pseudonyms=envelope.header.pseudonyms,
    )

    def entry(index: int, reason: str | None, _pseudonyms: object) -> AuditEntry:
        return dataclasses.replace(event, reason=reason).entry(index, now=T0)

    place = placement.place_all if clustered else None
    return NewMessage(encoded, T0, entry, template.sender, fresh, place)


async def _drive(
    store: Store, works: Sequence[NewMessage], concurrency: int
) -> tuple[float, list[Any]]:
    """Run ``works`` through the writer from ``concurrency`` tasks: (per second, results)."""
    results: list[Any] = [None] * len(works)
    queue: Iterator[tuple[int, NewMessage]] = iter(enumerate(works))

    async def worker() -> None:
        for index, work in queue:
            stored = await store.write(work)
            if not stored.created:
                raise WorkloadError("a benchmark signal's message id was taken")
            results[index] = stored

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(works) / (time.perf_counter() - start), results


def _count_cases_and_events(conn: sa.Connection) -> tuple[int, int]:
    cases = conn.execute(sa.select(sa.func.count()).select_from(t.cases)).scalar_one()
    events = conn.execute(sa.select(sa.func.count()).select_from(t.events)).scalar_one()
    return int(cases), int(events)


async def _run_clustered(
    store: Store, template: Template, batch: SignalBatch, concurrency: int
) -> float:
    """Signals per second through ``place``; checks that half joined and half started a case."""
    works = [
        _new_message(template, e, f, clustered=True)
        for e, f in zip(batch.envelopes, batch.fresh, strict=True)
    ]
    cases, events = await store.run_read(_count_cases_and_events)
    rate, _ = await _drive(store, works, concurrency)
    cases_after, events_after = await store.run_read(_count_cases_and_events)
    started, joined = cases_after - cases, events_after - events  # one match event each
    expected = len(works) - batch.joining
    if (started, joined) != (expected, batch.joining):
        raise WorkloadError(
            f"expected {expected} new cases and {batch.joining} joined (one match event "
            f"each); got {started} new, {joined} events"
        )
    return rate


async def _run_floor(
    store: Store, template: Template, batch: SignalBatch, concurrency: int
) -> float:
    works = [
        _new_message(template, e, f, clustered=False)
        for e, f in zip(batch.envelopes, batch.fresh, strict=True)
    ]
    rate, _ = await _drive(store, works, concurrency)
    return rate


async def cluster_rounds(
    path: Path, filled: Filled, template: Template, signals: int, rounds: int, concurrency: int
) -> ClusterRate:
    store = Store(f"sqlite+aiosqlite:///{path}")
    await store.start()
    number = 0

    def batch(count: int) -> SignalBatch:
        nonlocal number
        number += count
        return make_batch(template, number - count, count, filled.pseudonyms)

    clustered: list[float] = []
    floor: list[float] = []
    try:
        warmup = max(2, signals // 10)
        await _run_floor(store, template, batch(warmup), concurrency)
        await _run_clustered(store, template, batch(warmup), concurrency)
        for round_number in range(rounds):
            order = ("floor", "clustered") if round_number % 2 == 0 else ("clustered", "floor")
            for which in order:  # alternating, so that drift hits both alike
                if which == "floor":
                    floor.append(await _run_floor(store, template, batch(signals), concurrency))
                else:
                    run = _run_clustered(store, template, batch(signals), concurrency)
                    clustered.append(await run)
    finally:
        await store.close()
    return ClusterRate(filled, signals, concurrency, tuple(clustered), tuple(floor))


def cluster_rate(
    workdir: Path,
    pseudonyms: int,
    template: Template,
    *,
    signals: int,
    rounds: int,
    concurrency: int = 16,
) -> ClusterRate:
    """Fill a database with about ``pseudonyms`` pseudonyms, then time signals through it."""
    path = workdir / f"clustering-{pseudonyms}.db"
    new_database(path)
    filled = fill(path, cases_for(pseudonyms), clustering_shape)
    try:
        return asyncio.run(cluster_rounds(path, filled, template, signals, rounds, concurrency))
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


# --- the cases view --------------------------------------------------------------------------


def view_shape(case: int) -> int:
    """Signals in a case of the cases-view database: 1 to 5, 3 on average."""
    return 1 + case % 5


@dataclass(frozen=True, slots=True)
class ViewTiming:
    """Seconds per call, sorted, for the cases list, its floor and one case's detail."""

    filled: Filled
    listed: tuple[float, ...]  # summaries + CaseQuery.select, as GET /v1/cases
    floor: tuple[float, ...]  # SELECT count(*) FROM case_members, same read path
    detail: tuple[float, ...]  # casereads.detail of a random case, as GET /v1/cases/{ref}
    total: int  # cases the list counted
    page: int  # cases on the first page

    @property
    def ratio(self) -> float:
        """p50 of the list over p50 of the floor."""
        return percentile(self.listed, 50) / percentile(self.floor, 50)


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile of sorted ``values``."""
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def _count_members(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(t.case_members)).scalar_one())


async def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = await call()
    return time.perf_counter() - start, value


async def _list_cases(store: Store) -> tuple[list[CaseSummary], int]:
    """The work of GET /v1/cases without its audit entry: one page on the kept summaries."""
    return await CaseQuery().read(store)


async def _summarise(store: Store) -> None:
    """Bring every case's kept summary up to date, as the hub's writes do one by one."""
    refs = await store.run_read(lambda conn: conn.execute(sa.select(t.cases.c.ref)).scalars().all())

    def work(tx: Any) -> None:
        for ref in refs:
            tx.cases.refresh(ref)

    await store.write(work)


async def _view_rounds(path: Path, filled: Filled, repeats: int) -> ViewTiming:
    store = Store(f"sqlite+aiosqlite:///{path}")
    rng = random.Random(repeats)
    listed, floor, detail = [], [], []
    try:
        await store.start()
        await _summarise(store)
        await _list_cases(store)  # warm-up
        for _ in range(repeats):
            seconds, (page, total) = await _timed(partial(_list_cases, store))
            listed.append(seconds)
            seconds, members = await _timed(partial(store.run_read, _count_members))
            floor.append(seconds)
            number = rng.randrange(filled.cases)
            read = partial(
                reads.detail, ref=bench_case_ref(_PREFILLED, number), limit=TIMELINE_LIMIT
            )
            seconds, found = await _timed(partial(store.run_read, read))
            detail.append(seconds)
            _check_view(filled, page, total, members, found, view_shape(number))
    finally:
        await store.close()
    return ViewTiming(filled, tuple(sorted(listed)), tuple(sorted(floor)), tuple(sorted(detail)),
                      total, len(page))  # fmt: skip


def _check_view(
    filled: Filled,
    page: list[CaseSummary],
    total: int,
    members: int,
    found: reads.CaseDetail | None,
    signals: int,
) -> None:
    if total != filled.cases or len(page) != min(50, filled.cases) or members != filled.messages:
        raise WorkloadError(
            f"the list counted {total} of {filled.cases} cases ({len(page)} on the page) "
            f"and {members} of {filled.messages} case members"
        )
    if found is None or found.summary.signals != signals:
        raise WorkloadError(f"a case of {signals} signals read as {found and found.summary}")


def view_timing(workdir: Path, cases: int, template: Template, *, repeats: int) -> ViewTiming:
    """Fill a database with ``cases`` cases of real envelopes, then time the views."""
    path = workdir / f"cases-view-{cases}.db"
    new_database(path)
    envelope = template.envelope
    text = canonical_json(envelope.to_wire()).decode("utf-8")
    filled = fill(
        path, cases, view_shape, referral_every=3, envelope=text, fingerprint=envelope.fingerprint
    )
    try:
        return asyncio.run(_view_rounds(path, filled, repeats))
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


# --- both -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaseFigures:
    clustering: tuple[ClusterRate, ...]
    view: ViewTiming


def measure_cases(
    workdir: Path,
    *,
    sizes: Sequence[int] = SIZES,
    signals: int = 2000,
    rounds: int = 3,
    view_cases: int = VIEW_CASES,
    view_repeats: int = 30,
) -> CaseFigures:
    template = make_template()
    clustering = tuple(
        cluster_rate(workdir, size, template, signals=signals, rounds=rounds) for size in sizes
    )
    return CaseFigures(clustering, view_timing(workdir, view_cases, template, repeats=view_repeats))
