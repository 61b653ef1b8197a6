"""Benchmark of the retention job against bare deletes of the same rows.

A fresh, migrated hub database (SQLite, WAL, ``synchronous=FULL`` as the hub keeps it)
is filled in one bulk transaction (raw sqlite3) with ``n`` sent messages of 10^5 and
10^6 (``SCHAKEL_BENCH_RETENTION_SIZES``, comma-separated), each with a 256-byte stand-in
for its envelope and one delivery its recipient acknowledged 40 days ago, and with a
retention policy (the defaults: 30 days' grace) in force; so every message is due in the
``acknowledged`` phase. The file is copied, and on the two identical copies:

* **the job**: one :meth:`hub.retention.RetentionJob.run_once` through the hub's own
  store and writer: batches of 200, each selecting what is due, emptying the envelopes
  (a tombstone each), appending its access-log entry (a leaf and its nodes) and
  committing;
* **the floor**: bare ``DELETE`` statements of the same rows (messages and their
  deliveries) by raw sqlite3, in the same batches of 200 in the same order (by cursor,
  which is acceptance order here), one commit per batch.

The figure is rows per second of each and their ratio. PostgreSQL is left out: filling
and deleting 10^6 rows there takes minutes on this kind of machine, and the job's work
per batch is the same statements; the PostgreSQL tests show its correctness with two
replicas at once. Each run checks that every row was deleted by both, or raises
:class:`WorkloadError`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.retention import BATCH, RetentionJob
from hub.store import Store
from protocol.certificate import create_root
from protocol.encoding import canonical_json
from protocol.retention import create_retention_policy
from protocol.types import NetworkId

SIZES_VARIABLE = "SCHAKEL_BENCH_RETENTION_SIZES"
SIZES = (100_000, 1_000_000)
DAY = 86_400
NOW = 1_800_000_000
ACKED = NOW - 40 * DAY  # past the default grace of 30 days
ENVELOPE = "x" * 256  # a stand-in: the job never reads the envelope
FILL_CHUNK = 50_000


class WorkloadError(RuntimeError):
    """The job or the floor did not delete what the workload says."""


def sizes_from_env(environ: dict[str, str] | None = None) -> tuple[int, ...]:
    """The sizes of ``SCHAKEL_BENCH_RETENTION_SIZES`` (default 10^5 and 10^6)."""
    text = (environ if environ is not None else dict(os.environ)).get(SIZES_VARIABLE)
    if not text:
        return SIZES
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError as exc:
        raise ValueError(f"{SIZES_VARIABLE} must be comma-separated row counts") from exc
    if not sizes or any(not 1 <= n <= 10_000_000 for n in sizes):
        raise ValueError(f"{SIZES_VARIABLE}: every size must be 1..10,000,000")
    return sizes


@dataclass(frozen=True, slots=True)
class RetentionRate:
    rows: int
    fill_seconds: float
    job_seconds: float
    floor_seconds: float
    batches: int

    @property
    def job_per_s(self) -> float:
        return self.rows / self.job_seconds

    @property
    def floor_per_s(self) -> float:
        return self.rows / self.floor_seconds

    @property
    def ratio(self) -> float:
        return self.job_per_s / self.floor_per_s


async def _migrate(path: Path) -> None:
    store = Store(f"sqlite+aiosqlite:///{path}")
    try:
        await store.migrate()
    finally:
        await store.close()


def _policy_wire() -> str:
    key = Ed25519PrivateKey.generate()
    root = create_root(key, NetworkId("bench"), now=NOW - DAY, days=3650, serial=1)
    policy = create_retention_policy(key, root, number=1, issued=NOW - DAY)
    return canonical_json(policy.to_wire()).decode("utf-8")


def fill(path: Path, rows: int) -> float:
    """A migrated database at ``path`` with ``rows`` acknowledged messages; seconds taken."""
    start = time.perf_counter()
    asyncio.run(_migrate(path))
    db = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-262144"):
            db.execute("PRAGMA " + pragma)
        db.execute("BEGIN")
        db.execute(
            "INSERT INTO retention_policies (number, issued, wire) VALUES (1, ?, ?)",
            (NOW - DAY, _policy_wire()),
        )
        for first in range(1, rows + 1, FILL_CHUNK):
            numbers = range(first, min(first + FILL_CHUNK, rows + 1))
            db.executemany(
                "INSERT INTO messages (cursor, id, sender, kind, created, accepted_at,"
                " envelope_fingerprint, envelope, size) VALUES (?, ?, 'police', 'signal',"
                " ?, ?, ?, ?, 256)",
                ((n, f"{n:022d}", ACKED - 60, ACKED - 60, "A" * 43, ENVELOPE) for n in numbers),
            )
            db.executemany(
                "INSERT INTO deliveries (recipient, cursor, acked_at) VALUES ('ggd', ?, ?)",
                ((n, ACKED) for n in numbers),
            )
        db.execute("COMMIT")
        db.execute("PRAGMA journal_mode=WAL")
    finally:
        db.close()
    return time.perf_counter() - start


async def _run_job(path: Path) -> tuple[float, int, int]:
    store = Store(f"sqlite+aiosqlite:///{path}")
    await store.start()
    try:
        job = RetentionJob(store, lambda: NOW, interval=1)
        start = time.perf_counter()
        done = await job.run_once()
        return time.perf_counter() - start, done.deleted["acknowledged"], done.batches
    finally:
        await store.close()


def _floor(path: Path, batch: int) -> tuple[float, int]:
    """Bare DELETEs of the same rows, in the same batches and order, a commit each."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        deleted = 0
        start = time.perf_counter()
        while True:
            db.execute("BEGIN IMMEDIATE")
            cursors = [
                row[0]
                for row in db.execute(
                    "SELECT cursor FROM messages ORDER BY cursor LIMIT ?", (batch,)
                )
            ]
            if not cursors:
                db.execute("COMMIT")
                break
            marks = ",".join("?" * len(cursors))
            db.execute(f"DELETE FROM deliveries WHERE cursor IN ({marks})", cursors)
            deleted += db.execute(
                f"DELETE FROM messages WHERE cursor IN ({marks})", cursors
            ).rowcount
            db.execute("COMMIT")
        return time.perf_counter() - start, deleted
    finally:
        db.close()


def measure_retention(workdir: Path, sizes: Sequence[int]) -> tuple[RetentionRate, ...]:
    """The job against the floor at each size, each on its own pair of copies."""
    rates = []
    for rows in sizes:
        template = workdir / f"retention-{rows}.db"
        fill_seconds = fill(template, rows)
        job_path, floor_path = workdir / "retention-job.db", workdir / "retention-floor.db"
        for copy in (job_path, floor_path):
            shutil.copyfile(template, copy)
            copy.chmod(0o600)
        template.unlink()
        job_seconds, deleted, batches = asyncio.run(_run_job(job_path))
        floor_seconds, bare = _floor(floor_path, BATCH)
        for path in (job_path, floor_path):
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        if deleted != rows or bare != rows:
            raise WorkloadError(f"of {rows} rows the job deleted {deleted}, the floor {bare}")
        rates.append(RetentionRate(rows, fill_seconds, job_seconds, floor_seconds, batches))
    return tuple(rates)


def render_lines(rates: Sequence[RetentionRate]) -> list[str]:
    lines = [
        "### Retention job (SQLite)",
        "",
        "Rows due in the acknowledged phase, deleted by the job (batches of 200, each with",
        "its access-log entry and commit) and by bare DELETEs of the same rows in the same",
        "batches (the floor), on two copies of one database. PostgreSQL is not measured here.",
        "",
        "| rows | job rows/s | floor rows/s | job / floor | batches | job s | floor s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r.rows:,} | {r.job_per_s:,.0f} | {r.floor_per_s:,.0f} | {r.ratio:.2f}x "
        f"| {r.batches:,} | {r.job_seconds:.1f} | {r.floor_seconds:.1f} |"
        for r in rates
    ]
    return lines
