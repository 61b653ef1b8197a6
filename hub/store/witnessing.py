"""Witness policies and cosignatures in the database (``docs/protocol.md``, "Witnesses").

Writes go through :class:`WitnessTx` (reached as ``tx.witnessing`` inside a work item of
the single writer); reads are plain functions of a connection, behind the typed
:meth:`hub.store.Store.witness_policy` and :meth:`hub.store.Store.cosignatures`. Rows
map to :class:`~protocol.witnesspolicy.WitnessPolicy` and
:class:`~protocol.note.NoteSignature`; they are never the wire format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from hub import schema as t
from protocol.encoding import canonical_json
from protocol.note import NoteSignature
from protocol.types import OrgId
from protocol.witnesspolicy import WitnessPolicy

_p, _c = t.witness_policies.c, t.cosignatures.c
_NEWEST_POLICY = sa.select(t.witness_policies.c.wire).order_by(_p.number.desc()).limit(1)
_MAX_NUMBER = sa.select(sa.func.max(_p.number))


@dataclass(frozen=True, slots=True)
class StoredCosignature:
    """A verified cosignature as kept: its line, and the witness certificate it verified under."""

    serial: int
    org: OrgId
    line: NoteSignature


class WitnessTx:
    """Policy and cosignature writes on the writer's connection."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

    def put_policy(self, policy: WitnessPolicy) -> bool:
        """Hold ``policy`` if its number is above every held one's; False otherwise."""
        held = self._conn.execute(_MAX_NUMBER).scalar_one_or_none()
        if held is not None and held >= policy.number:
            return False
        wire = canonical_json(policy.to_wire()).decode("utf-8")
        self._conn.execute(
            sa.insert(t.witness_policies).values(
                number=policy.number, issued=policy.issued, wire=wire
            )
        )
        return True

    def put_cosignature(
        self, size: int, serial: int, org: OrgId, line: NoteSignature, *, now: int
    ) -> bool:
        """Keep a verified cosignature of head ``size``; False when that witness's is held."""
        held = self._conn.execute(
            sa.select(_c.serial).where(_c.size == size, _c.serial == serial)
        ).one_or_none()
        if held is not None:
            return False
        row = {"size": size, "serial": serial, "org": org, "received": now}
        line_row = {"name": line.name, "key_id": line.key_id, "signature": line.signature}
        self._conn.execute(sa.insert(t.cosignatures).values(**row, **line_row))
        return True


def newest_policy(conn: sa.Connection) -> WitnessPolicy | None:
    """The held policy with the highest number (verified when it was stored), or None."""
    wire = conn.execute(_NEWEST_POLICY).scalar_one_or_none()
    return None if wire is None else WitnessPolicy.from_wire(json.loads(wire))


def cosignatures_of(size: int, conn: sa.Connection) -> list[StoredCosignature]:
    """The cosignatures kept for the head of ``size``, by witness serial."""
    rows = conn.execute(
        sa.select(_c.serial, _c.org, _c.name, _c.key_id, _c.signature)
        .where(_c.size == size)
        .order_by(_c.serial)
    ).all()
    return [_stored(row) for row in rows]


def _stored(row: Any) -> StoredCosignature:
    line = NoteSignature(row.name, int(row.key_id), bytes(row.signature))
    return StoredCosignature(int(row.serial), OrgId(row.org), line)
