"""The access log: one entry per request that touches a message, the directory or the log.

Entries are :class:`protocol.auditlog.AuditEntry` values, the leaves of an RFC 9162
Merkle tree (``docs/protocol.md``, "The access log"). The writer is the sequencer:
:func:`append` gives an entry the next index inside the caller's work item and stores
it with the perfect subtrees it completes (:meth:`hub.store.Tx.insert_audit`).

An allowed action appends its entry in the same work item, so in the same transaction,
as its effect (:func:`act`; a new message: :func:`store_message`, written with the
batch's others): no effect without its entry, and a failing entry fails the action. An
allowed read (:func:`access`) and a denied request (:func:`audited`) append an entry
alone, written with the batch's other entries (:class:`hub.store.bulk.NewEntry`); a
denied request's rejected effects were never written. Entries never hold content, keys
or tokens; pseudonyms only for the ``create`` of a message (its header pseudonyms, and
for a referral or status update those of its case).
Entries are written in version 2: the
personal fields (user, purpose text, pseudonyms, source) behind a salted commitment,
their opening stored beside the entry until :mod:`hub.accesslog.erasure` erases it.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

import sqlalchemy as sa

from hub.config import Clock
from hub.errors import AccessLogUnavailable, HubError, RateLimited
from hub.store import Store, Tx
from hub.store.bulk import Checks, NewEntry, NewMessage, Notices, Stored
from protocol.auditlog import SALT_BYTES, AuditEntry, seal_entry
from protocol.certificate import Certificate
from protocol.envelope import Encoded
from protocol.types import CaseRef

T = TypeVar("T")

ALLOWED = "allowed"
DENIED = "denied"


@dataclass(frozen=True, slots=True)
class Event:
    """What one request did, before it gets its place in the tree."""

    action: str
    object_type: str
    outcome: str
    org: str | None = None
    user: str | None = None
    role: str | None = None
    purpose: str | None = None
    purpose_text: str | None = None
    object_ids: tuple[str, ...] = ()
    pseudonyms: tuple[str, ...] = ()
    reason: str | None = None
    source: str | None = None
    request_id: str | None = None

    def entry(self, index: int, *, now: int, salt: bytes | None = None) -> AuditEntry:
        """The version 2 entry at ``index``, its personal fields committed to with ``salt``
        (default: 32 fresh random bytes); ValidationError if a field breaks the rules."""
        return seal_entry(
            index=index,
            time=now,
            action=self.action,
            outcome=self.outcome,
            reason=self.reason,
            org=self.org,
            user=self.user,
            role=self.role or None,
            purpose=self.purpose,
            purpose_text=self.purpose_text,
            object_type=self.object_type,
            object_ids=tuple(sorted(set(self.object_ids))),
            pseudonyms=tuple(sorted(set(self.pseudonyms))),
            source=self.source,
            request_id=self.request_id,
            salt=secrets.token_bytes(SALT_BYTES) if salt is None else salt,
        )


@dataclass(slots=True)
class Scope:
    """The audit entry of one request, filled in as the request is understood.

    ``source`` is the client address (:func:`hub.http.common.client_address`: the TCP peer, or
    behind a trusted proxy the address it forwarded). ``object_ids`` are set once known
    (a message id only after the envelope parsed).
    ``recorded`` becomes true once an entry for this request committed. A denied
    ``login`` is recorded as ``login-failed``.
    """

    action: str
    object_type: str
    request_id: str | None = None
    source: str | None = None
    org: str | None = None
    user: str | None = None
    role: str | None = None
    purpose: str | None = None
    purpose_text: str | None = None
    object_ids: tuple[str, ...] = ()
    pseudonyms: tuple[str, ...] = ()
    recorded: bool = False

    def touch(self, object_ids: Iterable[str]) -> None:
        self.object_ids = tuple(object_ids)

    def event(self, outcome: str, reason: str | None = None) -> Event:
        action = self.action
        if action == "login" and outcome == DENIED:
            action = "login-failed"
        return Event(
            action=action,
            object_type=self.object_type,
            outcome=outcome,
            org=self.org,
            user=self.user,
            role=self.role,
            purpose=self.purpose,
            purpose_text=self.purpose_text,
            object_ids=self.object_ids,
            pseudonyms=self.pseudonyms,
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


def append(tx: Tx, event: Event, *, now: int) -> AuditEntry:
    """Append ``event`` as the next leaf of the tree, inside the caller's work item.

    The store may give the tree from memory; its insert stores the entry only if its
    index directly follows the newest stored one. If the tree was stale (an entry
    appended by other means), it is read again and the entry placed anew, once; if that
    fails too, or the stored log is broken, :class:`AccessLogUnavailable` (503).
    """
    for fresh in (False, True):
        tree = tx.audit_tree(fresh=fresh)
        entry = event.entry(tree.size, now=now)
        if tx.insert_audit(entry, tree):
            return entry
    raise AccessLogUnavailable(cause="it moved twice while an entry was being appended")


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
    """Record an allowed read (the read itself changes nothing): an entry alone, written
    with the batch's other entries (:class:`hub.store.bulk.NewEntry`)."""
    await _entry_alone(store, scope.event(ALLOWED), now=now)
    scope.recorded = True


async def _entry_alone(store: Store, event: Event, *, now: int) -> None:
    def entry(index: int) -> AuditEntry:
        return event.entry(index, now=now)

    await store.write(NewEntry(entry))


async def store_message(
    store: Store,
    scope: Scope,
    *,
    now: int,
    encoded: Encoded,
    sender: Certificate,
    fresh: CaseRef,
    place: Callable[[Tx, Sequence[tuple[NewMessage, int]]], Notices] | None = None,
    checks: Callable[[sa.Connection, Sequence[NewMessage], bool], Checks] | None = None,
) -> Stored:
    """Store a checked envelope and the scope's entry, together with the batch's others.

    The entry is allowed; for a repeat of an accepted envelope its reason is ``repeat``.
    A new referral or status update (``checks``) carries the pseudonyms of its case
    instead of the scope's (:class:`hub.placement.Referrals`). A
    :class:`~hub.errors.Conflict` (the id taken by another envelope), or a refusal by
    ``checks``, stores nothing, entry included; :func:`audited` then records the denial.
    """
    allowed = scope.event(ALLOWED)

    def entry(index: int, reason: str | None, pseudonyms: tuple[str, ...] | None) -> AuditEntry:
        event = allowed if reason is None else replace(allowed, reason=reason)
        if pseudonyms is not None:
            event = replace(event, pseudonyms=pseudonyms)
        return event.entry(index, now=now)

    stored = await store.write(NewMessage(encoded, now, entry, sender, fresh, place, checks))
    scope.recorded = True
    return stored


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
            await _entry_alone(store, scope.event(DENIED, err.slug), now=clock())
            scope.recorded = True
        raise
