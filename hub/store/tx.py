"""Writes: what a work item may do inside the writer's transaction.

A :class:`Tx` wraps the one write connection for the duration of one work
item (one SAVEPOINT); it is handed to the item by :class:`Batch` and must not
be kept after the item returns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import schema as t
from hub.store.records import AuditRecord, StoredMessage
from protocol.certificate import Certificate, RevocationList
from protocol.encoding import canonical_json
from protocol.envelope import Envelope
from protocol.keybundle import KeyBundle
from protocol.linkingkey import SealedLinkingKey
from protocol.types import Fingerprint, MessageId, OrgId

T = TypeVar("T")

Placed = Literal["new", "held", "older", "conflict"]


def _roles_text(roles: frozenset[str]) -> str:
    return ",".join(sorted(roles))


class Tx:
    """The write operations of the hub, on the writer's connection."""

    __slots__ = ("_conn",)

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def _scalar(self, statement: Any) -> Any:
        return (await self._conn.execute(statement)).scalar_one_or_none()

    # -- authentication -----------------------------------------------------------------

    async def insert_challenge(self, challenge: str, org: OrgId, *, expires: int) -> None:
        await self._conn.execute(
            sa.insert(t.challenges).values(challenge=challenge, org=org, expires=expires)
        )

    async def purge_challenges(self, *, now: int) -> None:
        """Forget challenges that expired (used or not)."""
        await self._conn.execute(sa.delete(t.challenges).where(t.challenges.c.expires <= now))

    async def consume_challenge(self, challenge: str, org: OrgId, *, now: int) -> bool:
        """Mark the challenge used; False unless it existed for ``org``, unused and unexpired."""
        c = t.challenges.c
        result = await self._conn.execute(
            sa.update(t.challenges)
            .where(c.challenge == challenge, c.org == org)
            .where(c.used_at.is_(None), c.expires > now)
            .values(used_at=now)
        )
        return result.rowcount == 1

    # -- directory ----------------------------------------------------------------------

    async def put_organisation(self, cert: Certificate) -> Placed:
        """Store ``cert`` unless the one held is the same ("held") or newer ("older")."""
        c = t.organisations.c
        row = (
            await self._conn.execute(
                sa.select(c.fingerprint, c.not_before).where(c.org == cert.org)
            )
        ).one_or_none()
        if row is not None and row.fingerprint == cert.fingerprint:
            return "held"
        if row is not None and row.not_before >= cert.not_before:
            return "older"
        values = {
            "network": cert.network,
            "certificate": cert.der,
            "fingerprint": cert.fingerprint,
            "serial": str(cert.serial),
            "roles": _roles_text(cert.roles),
            "not_before": cert.not_before,
            "not_after": cert.not_after,
        }
        if row is None:
            await self._conn.execute(sa.insert(t.organisations).values(org=cert.org, **values))
        else:
            await self._conn.execute(
                sa.update(t.organisations).where(c.org == cert.org).values(**values)
            )
        return "new"

    async def put_bundle(self, bundle: KeyBundle) -> None:
        """Store ``bundle`` (if new) and make it the organisation's current one."""
        c = t.bundles.c
        fp = bundle.fingerprint
        await self._conn.execute(
            sa.update(t.bundles).where(c.org == bundle.org, c.current).values(current=False)
        )
        held = await self._scalar(sa.select(c.fingerprint).where(c.fingerprint == fp))
        if held is not None:
            await self._conn.execute(
                sa.update(t.bundles).where(c.fingerprint == fp).values(current=True)
            )
            return
        await self._conn.execute(
            sa.insert(t.bundles).values(
                fingerprint=fp,
                org=bundle.org,
                wire=canonical_json(bundle.to_wire()).decode("utf-8"),
                not_before=bundle.not_before,
                not_after=bundle.not_after,
                current=True,
            )
        )

    async def put_crl(self, crl: RevocationList) -> bool:
        """Store ``crl``; False (nothing stored) unless its number is above the held one."""
        held = await self._scalar(sa.select(sa.func.max(t.crl.c.number)))
        if held is not None and crl.number <= held:
            return False
        await self._conn.execute(
            sa.insert(t.crl).values(
                number=crl.number,
                der=crl.der,
                this_update=crl.this_update,
                next_update=crl.next_update,
            )
        )
        return True

    async def put_linking_key(self, sealed: SealedLinkingKey) -> Placed:
        """Store ``sealed``: "new", "held" (identical one held) or "conflict"."""
        c = t.linking_keys.c
        wire = canonical_json(sealed.to_wire()).decode("utf-8")
        held = await self._scalar(
            sa.select(c.wire).where(c.org == sealed.org, c.version == sealed.version)
        )
        if held is not None:
            return "held" if held == wire else "conflict"
        await self._conn.execute(
            sa.insert(t.linking_keys).values(
                org=sealed.org, version=sealed.version, bundle=sealed.bundle, wire=wire
            )
        )
        return "new"

    # -- relay --------------------------------------------------------------------------

    async def find_message(self, message_id: MessageId) -> StoredMessage | None:
        c = t.messages.c
        row = (
            await self._conn.execute(
                sa.select(c.cursor, c.id, c.sender, c.envelope_fingerprint, c.accepted_at).where(
                    c.id == message_id
                )
            )
        ).one_or_none()
        if row is None:
            return None
        return StoredMessage(
            cursor=row.cursor,
            id=MessageId(row.id),
            sender=OrgId(row.sender),
            envelope_fingerprint=Fingerprint(row.envelope_fingerprint),
            accepted_at=row.accepted_at,
        )

    async def insert_message(self, envelope: Envelope, *, accepted_at: int) -> int:
        """Store the envelope, one delivery per recipient and its pseudonyms; return the cursor."""
        header = envelope.header
        wire = canonical_json(envelope.to_wire())
        result = await self._conn.execute(
            sa.insert(t.messages).values(
                id=header.id,
                sender=header.sender,
                kind=header.kind,
                created=header.created,
                accepted_at=accepted_at,
                envelope_fingerprint=envelope.fingerprint,
                envelope=wire.decode("utf-8"),
                size=len(wire),
            )
        )
        cursor = int(result.inserted_primary_key[0])  # type: ignore[index]
        await self._conn.execute(
            sa.insert(t.deliveries),
            [{"recipient": r, "cursor": cursor, "acked_at": None} for r in header.recipients],
        )
        if header.pseudonyms:
            await self._conn.execute(
                sa.insert(t.message_pseudonyms),
                [{"cursor": cursor, "pseudonym": p} for p in header.pseudonyms],
            )
        return cursor

    async def acknowledge(self, message_id: MessageId, recipient: OrgId, *, now: int) -> bool:
        """Mark the delivery acknowledged (first time only); False if there is none."""
        d = t.deliveries.c
        cursor = sa.select(t.messages.c.cursor).where(t.messages.c.id == message_id)
        held = (
            await self._conn.execute(
                sa.select(d.acked_at).where(
                    d.recipient == recipient, d.cursor == cursor.scalar_subquery()
                )
            )
        ).one_or_none()
        if held is None:
            return False
        if held.acked_at is None:
            await self._conn.execute(
                sa.update(t.deliveries)
                .where(d.recipient == recipient, d.cursor == cursor.scalar_subquery())
                .values(acked_at=now)
            )
        return True

    # -- audit --------------------------------------------------------------------------

    async def last_audit(self) -> tuple[int, bytes] | None:
        """The sequence number and hash of the newest audit entry."""
        a = t.audit_log.c
        row = (
            await self._conn.execute(sa.select(a.seq, a.entry_hash).order_by(a.seq.desc()).limit(1))
        ).one_or_none()
        return None if row is None else (row.seq, bytes(row.entry_hash))

    async def insert_audit(self, record: AuditRecord) -> None:
        await self._conn.execute(
            sa.insert(t.audit_log).values(
                seq=record.seq,
                time=record.time,
                org=record.org,
                user=record.user,
                role=record.role,
                action=record.action,
                object_type=record.object_type,
                object_id=record.object_id,
                outcome=record.outcome,
                reason=record.reason,
                source=record.source,
                request_id=record.request_id,
                prev_hash=record.prev_hash,
                entry_hash=record.entry_hash,
            )
        )


class Batch:
    """One open write transaction; each work item runs in its own SAVEPOINT."""

    __slots__ = ("_conn",)

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def run(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        async with self._conn.begin_nested():
            return await work(Tx(self._conn))
