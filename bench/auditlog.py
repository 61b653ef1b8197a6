"""Benchmarks of the verifiable access log's arithmetic and storage.

* **Proofs from stored subtrees**: a SQLite node table laid out as the hub's
  (every perfect subtree hash, keyed by level and index) is built for 10^4, 10^5
  and 10^6 leaves; then the time to produce an inclusion proof and a consistency
  proof is measured as the hub does it: compute which nodes are needed, read them
  in one query, compose the proof. It should stay roughly flat (logarithmic).
* **Appends with the tree maintained**: the hub's own store and writer (group
  commit, each entry's leaf and the perfect-subtree nodes it completes, the
  database-checked insert) against sqlite3 inserting the same entry bytes in
  batches of the same size with the same durability, in the same run.
* **Full verification from an export**: what ``schakel audit verify --full`` does
  per line of the hub's export (version 2 entries, ``ExportChecker.feed_line``: check the
  line and every rule of the entry, its opening against its commitment, its order, its
  leaf hash), then the root over all leaves; reported against the raw SHA-256 rate over
  the same lines on the same machine, in the same run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sqlite3
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from clients.logproofs import ExportChecker
from hub.accesslog.recording import Event, append
from hub.store import Store, Tx
from protocol.auditlog import (
    AuditEntry,
    Node,
    TreeHead,
    consistency_from_nodes,
    inclusion_from_nodes,
    needed_for_consistency,
    needed_for_inclusion,
    needed_for_root,
    nodes_to_store,
    root_from_nodes,
    seal_entry,
)
from protocol.encoding import b64e
from protocol.merkle import node_hash, root_hash, verify_consistency, verify_inclusion
from protocol.types import Fingerprint, NetworkId

SIZES = (10_000, 100_000, 1_000_000)


@dataclass(frozen=True, slots=True)
class ProofTiming:
    size: int
    build_seconds: float
    inclusion_us: float  # median per proof, nodes read from SQLite included
    consistency_us: float
    nodes_read: int  # for an inclusion proof at this size (the largest seen)


@dataclass(frozen=True, slots=True)
class VerifyRate:
    entries: int
    bytes: int
    verify_per_s: float  # entries per second: strict parse + leaf + root
    sha256_per_s: float  # raw SHA-256 calls per second over the same byte strings

    @property
    def ratio(self) -> float:
        return self.verify_per_s / self.sha256_per_s


def sample_entry(index: int) -> AuditEntry:
    """A realistic entry: a coordinator reading one message, with a purpose."""
    message = b64e(index.to_bytes(16, "big"))
    return AuditEntry(
        index=index,
        time=1_795_000_000 + index,
        action="read",
        outcome="allowed",
        reason=None,
        org="coordinator",
        user=f"user-{index % 40}",
        role="coordinator,member",
        purpose="case-coordination",
        purpose_text="weekly review of open cases",
        object_type="message",
        object_ids=(message,),
        pseudonyms=(),
        source="127.0.0.1",
        request_id=f"{index:032x}",
    )


def _leaves(count: int) -> Iterator[bytes]:
    for index in range(count):
        yield hashlib.sha256(b"\x00" + index.to_bytes(8, "big")).digest()


def build_node_store(path: Path, size: int) -> float:
    """A SQLite file holding every perfect-subtree hash of ``size`` leaves; seconds taken."""
    start = time.perf_counter()
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE TABLE nodes (level INTEGER, idx INTEGER, hash BLOB, PRIMARY KEY (level, idx))"
    )
    stored: dict[Node, bytes] = {}
    rows: list[tuple[int, int, bytes]] = []
    for index, leaf in enumerate(_leaves(size)):
        for level, position in nodes_to_store(index):
            if level == 0:
                value = leaf
            else:
                value = node_hash(
                    stored[(level - 1, 2 * position)], stored[(level - 1, 2 * position + 1)]
                )
            stored[(level, position)] = value
            rows.append((level, position, value))
            # Children are never needed again once their parent exists.
            if level > 0:
                del stored[(level - 1, 2 * position)], stored[(level - 1, 2 * position + 1)]
        if len(rows) >= 50_000:
            db.executemany("INSERT INTO nodes VALUES (?, ?, ?)", rows)
            rows.clear()
    db.executemany("INSERT INTO nodes VALUES (?, ?, ?)", rows)
    db.commit()
    db.close()
    return time.perf_counter() - start


def _read_nodes(db: sqlite3.Connection, needed: Sequence[Node]) -> dict[Node, bytes]:
    """One query for all the nodes a proof needs, as the hub's store reads them."""
    clause = " OR ".join(["(level = ? AND idx = ?)"] * len(needed))
    params = [value for node in needed for value in node]
    rows = db.execute(f"SELECT level, idx, hash FROM nodes WHERE {clause}", params)
    return {(level, idx): bytes(value) for level, idx, value in rows}


def time_proofs(path: Path, size: int, *, samples: int, rng: random.Random) -> ProofTiming:
    build = build_node_store(path, size)
    db = sqlite3.connect(path)
    root = root_from_nodes(size, _read_nodes(db, needed_for_root(size)))
    inclusion: list[float] = []
    consistency: list[float] = []
    most = 0
    for _ in range(samples):
        index = rng.randrange(size)
        start = time.perf_counter()
        needed = needed_for_inclusion(index, size)
        proof = inclusion_from_nodes(index, size, _read_nodes(db, needed))
        inclusion.append(time.perf_counter() - start)
        most = max(most, len(needed))
        leaf = _read_nodes(db, [(0, index)])[(0, index)]
        verify_inclusion(leaf, index, size, proof, root)
        old = rng.randrange(1, size + 1)
        start = time.perf_counter()
        needed = needed_for_consistency(old, size)
        cproof = consistency_from_nodes(old, size, _read_nodes(db, needed))
        consistency.append(time.perf_counter() - start)
        old_root = root_from_nodes(old, _read_nodes(db, needed_for_root(old)))
        verify_consistency(old, size, old_root, root, cproof)
    db.close()
    return ProofTiming(
        size=size,
        build_seconds=build,
        inclusion_us=statistics.median(inclusion) * 1e6,
        consistency_us=statistics.median(consistency) * 1e6,
        nodes_read=most,
    )


def sample_entry_2(index: int) -> AuditEntry:
    """:func:`sample_entry` as the hub writes it today: version 2, a commitment to its
    personal fields with a salt (deterministic here) and the opening beside it."""
    entry = sample_entry(index)
    return seal_entry(
        index=entry.index, time=entry.time, action=entry.action, outcome=entry.outcome,
        reason=entry.reason, org=entry.org, user=entry.user, role=entry.role,
        purpose=entry.purpose, purpose_text=entry.purpose_text,
        object_type=entry.object_type, object_ids=entry.object_ids,
        pseudonyms=entry.pseudonyms, source=entry.source, request_id=entry.request_id,
        salt=hashlib.sha256(index.to_bytes(8, "big")).digest(),
    )  # fmt: skip


def export_lines(count: int) -> tuple[TreeHead, list[bytes]]:
    """A head and ``count`` entry lines of a full export, as the hub streams them
    (``hub.http.accesslog``: no proofs, keys in the entry's order, UTF-8). The head's
    signature is a stand-in: verifying it is one Ed25519 check per export, not per line."""
    entries = [sample_entry_2(i) for i in range(count)]
    lines = [
        json.dumps({"entry": e.to_wire()}, separators=(",", ":"), ensure_ascii=False).encode()
        for e in entries
    ]
    root = root_hash([e.leaf() for e in entries])
    head = TreeHead(
        network=NetworkId("bench"), size=count, root=root, time=1_795_000_000,
        hub_cert=Fingerprint(b64e(bytes(32))), sig=bytes(64),
    )  # fmt: skip
    return head, lines


def verify_rate(count: int, *, repeats: int = 3) -> VerifyRate:
    """Entries per second through what ``schakel audit verify --full`` does with each line
    of the hub's export (``ExportChecker.feed_line``: strict parse and validation, order,
    the opening against its commitment, the leaf; then the root over all leaves), against
    raw SHA-256 over the same lines."""
    head, encoded = export_lines(count)
    verify: list[float] = []
    raw: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        checker = ExportChecker(head, full=True)
        for position, line in enumerate(encoded, start=2):
            checker.feed_line(line, position)
        if not checker.finish():
            raise AssertionError("the export's leaves do not rebuild its root")
        verify.append(time.perf_counter() - start)
        start = time.perf_counter()
        for data in encoded:
            hashlib.sha256(data).digest()
        raw.append(time.perf_counter() - start)
    total = sum(len(data) for data in encoded)
    return VerifyRate(count, total, count / min(verify), count / min(raw))


# -- appends with the tree maintained ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppendRate:
    entries: int
    hub_per_s: float  # the hub's store: writer, group commit, leaf + subtree nodes
    floor_per_s: float  # sqlite3 inserting the same entry bytes, same batches, same durability

    @property
    def ratio(self) -> float:
        return self.hub_per_s / self.floor_per_s


def _event(number: int) -> Event:
    entry = sample_entry(number)
    return Event(
        action=entry.action,
        object_type=entry.object_type,
        outcome=entry.outcome,
        org=entry.org,
        user=entry.user,
        role=entry.role,
        purpose=entry.purpose,
        purpose_text=entry.purpose_text,
        object_ids=entry.object_ids,
        source=entry.source,
        request_id=entry.request_id,
    )


async def _hub_appends(path: Path, count: int, concurrency: int) -> float:
    store = Store(f"sqlite+aiosqlite:///{path}")
    await store.migrate()
    await store.start()
    events = iter(range(count))

    def appending(event: Event) -> Callable[[Tx], AuditEntry]:
        return lambda tx: append(tx, event, now=1_795_000_000)

    async def worker() -> None:
        for number in events:
            await store.write(appending(_event(number)))

    try:
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
        assert await store.audit_size() == count
    finally:
        await store.close()
    return count / seconds


def _floor_appends(path: Path, count: int, batch: int) -> float:
    """What group commit costs without the hub: the same bytes, the same batches."""
    rows = [sample_entry(number).canonical() for number in range(count)]
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE entries (idx INTEGER PRIMARY KEY, entry BLOB NOT NULL)")
    start = time.perf_counter()
    for first in range(0, count, batch):
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO entries VALUES (?, ?)",
            ((first + i, row) for i, row in enumerate(rows[first : first + batch])),
        )
        db.execute("COMMIT")
    seconds = time.perf_counter() - start
    db.close()
    return count / seconds


def append_rate(workdir: Path, count: int, *, concurrency: int = 64) -> AppendRate:
    """Entries per second through the hub's writer, against the same inserts done bare."""
    hub = asyncio.run(_hub_appends(workdir / "appends-hub.db", count, concurrency))
    # The writer commits whatever queued while the last commit ran: at most `concurrency`.
    floor = _floor_appends(workdir / "appends-floor.db", count, concurrency)
    return AppendRate(count, hub, floor)
