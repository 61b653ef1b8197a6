"""The audit log: one entry per request that touches a message or the directory.

Entries form a hash chain (a later version replaces it with a Merkle tree;
keep callers on this module's narrow API)::

    entry_hash = digest("schakel/audit-chain/v1", prev_hash, canonical_json(fields))

where ``fields`` is the JSON object of ``seq``, ``time``, ``org``, ``user``,
``role``, ``action``, ``object_type``, ``object_id``, ``outcome``, ``reason``,
``source`` and ``request_id`` (absent values as ``null``), and ``prev_hash``
is the previous entry's hash (32 zero bytes before the first entry).

An allowed action appends its entry in the same work item, so in the same
transaction, as its effect (:func:`act`): no effect without its entry, and a
failing entry fails the action. A denied request appends its entry as a work
item of its own (:func:`audited`); its rejected effects were never written.
Entries never hold content, keys, tokens or pseudonyms.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from typing import Any, Generic, TypeVar

from hub.config import Clock
from hub.errors import HubError, RateLimited
from hub.store import AuditRecord, Store, Tx
from protocol.encoding import canonical_json, digest

T = TypeVar("T")

CHAIN_LABEL = "schakel/audit-chain/v1"
GENESIS = bytes(32)
ALLOWED = "allowed"
DENIED = "denied"
_HASHED = tuple(f.name for f in fields(AuditRecord) if f.name not in ("prev_hash", "entry_hash"))


class AuditChainError(Exception):
    """The stored audit entries do not form an unbroken chain."""


@dataclass(frozen=True, slots=True)
class Event:
    """What one request did, before it gets its place in the chain."""

    action: str
    object_type: str
    outcome: str
    org: str | None = None
    user: str | None = None
    role: str | None = None
    object_id: str | None = None
    reason: str | None = None
    source: str | None = None
    request_id: str | None = None


@dataclass(slots=True)
class Scope:
    """The audit entry of one request, filled in as the request is understood.

    ``object_id`` is set once known (a message id only after the envelope
    parsed). ``recorded`` becomes true once an entry for this request committed.
    """

    action: str
    object_type: str
    request_id: str | None = None
    source: str | None = None
    org: str | None = None
    user: str | None = None
    role: str | None = None
    object_id: str | None = None
    recorded: bool = False

    def event(self, outcome: str, reason: str | None = None) -> Event:
        return Event(
            action=self.action,
            object_type=self.object_type,
            outcome=outcome,
            org=self.org,
            user=self.user,
            role=self.role,
            object_id=self.object_id,
            reason=reason,
            source=self.source,
            request_id=self.request_id,
        )


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """What a work item returns to :func:`act`: its value and the verdict to record."""

    value: T
    allowed: bool = True
    reason: str | None = None


def chain_fields(record: AuditRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in _HASHED}


def entry_hash(prev_hash: bytes, entry: dict[str, Any]) -> bytes:
    return digest(CHAIN_LABEL, prev_hash, canonical_json(entry))


def append(tx: Tx, event: Event, *, now: int) -> AuditRecord:
    """Append ``event`` to the chain inside the caller's work item.

    The store may give the chain head from memory; its insert stores the entry
    only if it links to the newest stored one. If the head was stale (an entry
    appended by other means), it is read again and the entry linked anew, once.
    """
    for fresh in (False, True):
        record = _link(event, tx.last_audit(fresh=fresh), now=now)
        if tx.insert_audit(record):
            return record
    raise AuditChainError("the audit chain moved while an entry was being appended")


def _link(event: Event, last: tuple[int, bytes] | None, *, now: int) -> AuditRecord:
    seq, prev = (1, GENESIS) if last is None else (last[0] + 1, last[1])
    draft = AuditRecord(seq=seq, time=now, prev_hash=prev, entry_hash=b"", **_event_fields(event))
    return AuditRecord(
        **{**_record_fields(draft), "entry_hash": entry_hash(prev, chain_fields(draft))}
    )


def _event_fields(event: Event) -> dict[str, Any]:
    return {f.name: getattr(event, f.name) for f in fields(Event)}


def _record_fields(record: AuditRecord) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in fields(AuditRecord)}


def verify_chain(records: Iterable[AuditRecord], *, prev_hash: bytes = GENESIS) -> bytes:
    """Check each entry's hash and link; return the last hash. Raise AuditChainError."""
    expected_seq = None
    for record in records:
        if expected_seq is not None and record.seq != expected_seq:
            raise AuditChainError(f"audit entry {record.seq} follows a gap")
        if record.prev_hash != prev_hash:
            raise AuditChainError(f"audit entry {record.seq} does not link to its predecessor")
        if entry_hash(prev_hash, chain_fields(record)) != record.entry_hash:
            raise AuditChainError(f"audit entry {record.seq} was altered")
        prev_hash, expected_seq = record.entry_hash, record.seq + 1
    return prev_hash


async def act(store: Store, scope: Scope, *, now: int, work: Callable[[Tx], Outcome[T]]) -> T:
    """Run ``work`` and append the scope's entry with its verdict, in one work item.

    Returns the work's value once committed. A work item that raises leaves
    nothing behind, its entry included; :func:`audited` then records the denial.
    """

    def item(tx: Tx) -> Outcome[T]:
        outcome = work(tx)
        verdict = ALLOWED if outcome.allowed else DENIED
        append(tx, scope.event(verdict, outcome.reason), now=now)
        return outcome

    outcome = await store.write(item)
    scope.recorded = True
    return outcome.value


async def access(store: Store, scope: Scope, *, now: int) -> None:
    """Record an allowed read (the read itself changes nothing)."""

    def nothing(tx: Tx) -> Outcome[None]:
        return Outcome(None)

    await act(store, scope, now=now, work=nothing)


def _audits(err: HubError) -> bool:
    # Rate limiting and the hub's own failures are not decisions about the request.
    return err.status < 500 and not isinstance(err, RateLimited)


@asynccontextmanager
async def audited(store: Store, clock: Clock, scope: Scope) -> AsyncIterator[Scope]:
    """Record a denial for any client error escaping the block, unless already recorded."""
    try:
        yield scope
    except HubError as err:
        if not scope.recorded and _audits(err):
            event = scope.event(DENIED, err.slug)
            now = clock()

            def deny(tx: Tx) -> None:
                append(tx, event, now=now)

            await store.write(deny)
            scope.recorded = True
        raise
