"""Retention: the authority's policy, and the job that deletes what the policy lets go.

``docs/protocol.md``, "Retention", specifies the policy (:mod:`protocol.retention`) and the
routes ``GET`` and ``PUT /v1/directory/retention-policy`` (uploaded like the witness
policy: verified against the root, a higher number than the held one's).

:class:`RetentionJob` runs, every ``retention_interval`` seconds of the injected clock, one
pass of these phases under the held policy (none held: nothing is deleted):

1. ``acknowledged``: envelopes every recipient acknowledged at least the grace period ago;
2. ``expired``: envelopes older than the maximum age, acknowledged or not (the sender sees
   the tombstone in ``GET /v1/sent``);
3. ``cases``: closed cases past their period after closing, and cases that never closed
   past their period without activity, with their pseudonyms (and envelopes);
4. ``access-log``: the personal fields (openings, :mod:`hub.accesslog.erasure`) of
   access-log entries older than the access-log period; leaves, nodes and signed heads
   stay, so every proof still verifies. After the run the erased fields are scrubbed from
   the database files (SQLite WAL, PostgreSQL VACUUM).

Each phase works in batches (200 envelopes: one access-log entry names each one it
deleted; 50 cases; 500 access-log openings, whose erasures name the batch's entry), each
batch one work item of the writer: it selects what is due as the database is *then*,
deletes it and appends its own access-log entry (action ``delete``, reason
``retention-<phase>``) in the same transaction, and commits before the next is
selected. So a job killed half-way leaves whole batches behind and the next run finds
the rest; and two replicas that run at once take turns batch by batch (on PostgreSQL
every write transaction holds the sequencer's advisory lock): neither deletes or
records a row the other already did, and their counts add up to what was due.
:func:`dry_run` reads what each phase would delete now, without deleting anything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hub.accesslog import erasure, recording
from hub.accesslog.recording import ALLOWED, Event, Outcome, Scope
from hub.config import Clock
from hub.directory import TrustCache, exact_object
from hub.errors import Conflict, InvalidCredential, Malformed
from hub.periodic import Periodic
from hub.store import Store, Tx
from hub.store.retaining import Due
from protocol.auditlog import MAX_OBJECT_IDS
from protocol.errors import EncodingError, ValidationError, VerificationError
from protocol.retention import (
    ACCESS_LOG,
    ACKNOWLEDGED,
    CASE_CLOSED,
    CASE_ENDED,
    CASE_IDLE,
    EXPIRED,
    GRACE,
    MAX_AGE,
    RetentionPolicy,
    verify_retention_policy,
)

log = logging.getLogger("hub.retention")

PHASES: tuple[str, ...] = ("acknowledged", "expired", "cases", "access-log")
KINDS: dict[str, str] = {  # phase -> what its rows are, for metrics and reports
    "acknowledged": "ciphertext",
    "expired": "ciphertext",
    "cases": "case",
    "access-log": "access-log",
}
BATCH = MAX_OBJECT_IDS  # envelopes per batch: its entry names each one
CASE_BATCH = 50  # cases per batch (each brings its members, referrals and pseudonyms)
OPENING_BATCH = 500  # access-log openings per batch
OPENING_REASON = "retention"  # what an erased opening says (hub.accesslog.erasure)
PURPOSE = "system-administration"


# -- the policy: use-cases ---------------------------------------------------------------


async def held_policy(store: Store) -> RetentionPolicy | None:
    return await store.retention_policy()


async def upload_policy(
    store: Store, clock: Clock, scope: Scope, body: object, *, cache: TrustCache
) -> int:
    """Hold a root-signed retention policy whose number is above the held one's (else 409)."""
    try:
        policy = RetentionPolicy.from_wire(exact_object(body, "policy")["policy"])
    except (EncodingError, ValidationError) as exc:
        raise Malformed(f"policy: {str(exc)[:200]}") from None
    now = clock()
    try:
        verify_retention_policy(policy, cache.root(now))
    except VerificationError:
        raise InvalidCredential("the retention policy is not signed by the network root") from None

    def hold(tx: Tx) -> Outcome[None]:
        if not tx.retention.put_policy(policy):
            raise Conflict("a retention policy with this or a higher number is held")
        return Outcome(None)

    await recording.act(store, scope, now=now, work=hold)
    return policy.number


# -- the job -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """The latest time a row may have to be due under ``policy`` at ``now``."""

    acknowledged: int
    expired: int
    closed: int
    idle: int
    access_log: int

    @classmethod
    def of(cls, policy: RetentionPolicy, now: int) -> Cutoffs:
        return cls(
            acknowledged=now - policy.seconds(GRACE),
            expired=now - policy.seconds(MAX_AGE),
            closed=now - policy.seconds(CASE_CLOSED),
            idle=now - policy.seconds(CASE_IDLE),
            access_log=now - policy.seconds(ACCESS_LOG),
        )


@dataclass(slots=True)
class Pass:
    """What one run deleted, per phase (rows), and how many batches it committed."""

    deleted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PHASES, 0))
    batches: int = 0
    policy: int | None = None  # the number of the policy it ran under (None: none held)


@dataclass(slots=True)
class RunStats:
    """What the job did in this process so far (read by ``GET /metrics``)."""

    deleted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS.values(), 0))
    runs: int = 0
    last_run: int | None = None  # clock time the last run ended
    last_duration: float | None = None  # seconds


def _entry(phase: str, object_type: str, ids: list[str]) -> Event:
    """The access-log entry of one batch: the hub itself deleted, for retention."""
    return Event(
        action="delete",
        object_type=object_type,
        outcome=ALLOWED,
        purpose=PURPOSE,
        object_ids=tuple(ids),
        reason=f"retention-{phase}",
    )


def delete_messages(tx: Tx, phase: str, cutoff: int, *, limit: int, now: int) -> int:
    """One batch of a ciphertext phase, with its entry; how many envelopes went."""
    reason = ACKNOWLEDGED if phase == "acknowledged" else EXPIRED
    cursors = tx.retention.messages_due(reason, cutoff, limit)
    emptied = tx.retention.empty_messages(cursors, reason=reason, now=now)
    if emptied:
        recording.append(tx, _entry(phase, "message", list(emptied)), now=now)
    return len(emptied)


def delete_cases(tx: Tx, cutoffs: Cutoffs, *, limit: int, now: int) -> int:
    """One batch of the case phase, with its entry; how many live cases went."""
    refs = tx.retention.cases_due(cutoffs.closed, cutoffs.idle, limit)
    deleted = tx.retention.delete_cases(refs, reason=CASE_ENDED, now=now)
    if deleted.cases:
        recording.append(tx, _entry("cases", "case", list(deleted.cases)), now=now)
    return len(deleted.cases)


def erase_access_log(tx: Tx, cutoff: int, *, limit: int, now: int) -> int:
    """One batch of the access-log phase, with its entry; how many openings went."""
    # Entries at or before the cutoff: openings_before takes those strictly before.
    seqs = erasure.openings_before(tx, cutoff + 1, limit)
    if not seqs:
        return 0
    entry = recording.append(tx, _entry("access-log", "audit", []), now=now)
    return erasure.erase_openings(tx, seqs, reason=OPENING_REASON, now=now, entry=entry.index)


class RetentionJob(Periodic):
    """The retention job of one hub process (see the module docstring)."""

    task_name = "hub-retention"
    failure = "the retention job failed"

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        interval: int,
        batch: int = BATCH,
        case_batch: int = CASE_BATCH,
        opening_batch: int = OPENING_BATCH,
        logger: logging.Logger | None = None,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (
            1 <= batch <= BATCH and 1 <= case_batch <= CASE_BATCH
            and 1 <= opening_batch <= OPENING_BATCH
        ):  # fmt: skip
            raise ValueError(
                f"a batch is 1..{BATCH} envelopes, 1..{CASE_BATCH} cases, "
                f"1..{OPENING_BATCH} openings"
            )
        self._opening_batch = opening_batch
        self._store = store
        self._clock = clock
        self._interval = interval
        self._batch = batch
        self._case_batch = case_batch
        self._log = logger or log
        self._timer = timer
        self._last_tick: int | None = None
        self._scrub_pending = False
        self.stats = RunStats()

    async def tick(self) -> Pass | None:
        """What the background task does each second: one run when the interval passed."""
        now = self._clock()
        if self._last_tick is not None and now - self._last_tick < self._interval:
            if self._scrub_pending:
                await self._scrub()
            return None
        self._last_tick = now
        return await self.run_once()

    async def run_once(self) -> Pass:
        """One pass of every phase under the held policy (nothing without one)."""
        started = self._timer()
        done = Pass()
        policy = await self._store.retention_policy()
        if policy is not None:
            done.policy = policy.number
            now = self._clock()
            cutoffs = Cutoffs.of(policy, now)
            for phase in PHASES:
                await self._phase(phase, cutoffs, now, done)
        if done.deleted["access-log"] or self._scrub_pending:
            await self._scrub()
        self._finished(done, self._timer() - started)
        return done

    def scrub_soon(self) -> None:
        """Scrub erased access-log fields from the database files at the next tick (after
        an erasure on request, which does not wait for it)."""
        self._scrub_pending = True

    async def _scrub(self) -> None:
        """Wipe what the erased openings left in the database files; again next run if a
        reader or an older transaction kept it from finishing."""
        try:
            await erasure.scrub(self._store)
            self._scrub_pending = False
        except RuntimeError:
            self._scrub_pending = True
            self._log.warning("retention: scrubbing the access log's erased fields waits")

    async def _phase(self, phase: str, cutoffs: Cutoffs, now: int, done: Pass) -> None:
        while True:
            count = await self._store.write(self._work(phase, cutoffs, now))
            if count == 0:
                return
            done.deleted[phase] += count
            done.batches += 1
            self.stats.deleted[KINDS[phase]] += count
            self.after_batch(phase, count)

    def _work(self, phase: str, cutoffs: Cutoffs, now: int) -> Callable[[Tx], int]:
        if phase == "cases":
            return lambda tx: delete_cases(tx, cutoffs, limit=self._case_batch, now=now)
        if phase == "access-log":
            return lambda tx: erase_access_log(
                tx, cutoffs.access_log, limit=self._opening_batch, now=now
            )
        cutoff = cutoffs.acknowledged if phase == "acknowledged" else cutoffs.expired
        return lambda tx: delete_messages(tx, phase, cutoff, limit=self._batch, now=now)

    def after_batch(self, phase: str, count: int) -> None:
        """Called after each committed batch (a test makes it raise to cut a run short)."""

    def _finished(self, done: Pass, seconds: float) -> None:
        self.stats.runs += 1
        self.stats.last_run = self._clock()
        self.stats.last_duration = seconds
        if done.batches:
            # Counts only: never an id, a case reference or a pseudonym.
            self._log.info(
                "retention: "
                + ", ".join(f"{phase} {n}" for phase, n in done.deleted.items())
                + f" in {done.batches} batches"
            )


async def dry_run(store: Store, now: int) -> tuple[RetentionPolicy, dict[str, Due]] | None:
    """What each phase would delete at ``now`` (None without a held policy); deletes nothing."""
    policy = await store.retention_policy()
    if policy is None:
        return None
    cutoffs = Cutoffs.of(policy, now)
    due = await store.retention_due(
        acknowledged=cutoffs.acknowledged,
        expired=cutoffs.expired,
        closed=cutoffs.closed,
        idle=cutoffs.idle,
        access_log=cutoffs.access_log,
    )
    return policy, due
