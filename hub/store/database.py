"""The database: migrations, reads, and the writer that does every write.

Each read is one function run inside one read transaction, and each writer
batch one function run inside one write transaction, by the
:mod:`hub.store.engines` of the database (SQLite in threads of the hub's own,
or PostgreSQL through asyncpg). A request that needs several rows reads them
together in one transaction (:meth:`Store.snapshot`), so they are consistent
with each other and cost one trip to the database.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from hub import schema as t
from hub.store.engines import Engines, engines_for
from hub.store.records import (
    AuditRecord,
    BundleValidity,
    CrlRecord,
    InboxItem,
    MessageView,
    OrgRecord,
    OrgSummary,
    Snapshot,
)
from hub.store.tx import UNKNOWN, AuditHead, Batch, ItemOutcome, Tx, UnknownHead
from hub.writer import Writer
from protocol.keybundle import KeyBundle
from protocol.linkingkey import SealedLinkingKey
from protocol.types import Fingerprint, MessageId, NetworkId, OrgId

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic configuration built in code, so it works from an installed package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest migration this code knows."""
    head = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite://")).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found in " + str(MIGRATIONS_DIR))
    return head


def _loads(text: str) -> Any:
    """Parse JSON the hub wrote itself (canonical and bounded when it was stored)."""
    return json.loads(text)


def _audit_record(row: Any) -> AuditRecord:
    values: dict[str, Any] = dict(row)
    values["prev_hash"] = bytes(values["prev_hash"])
    values["entry_hash"] = bytes(values["entry_hash"])
    return AuditRecord(**values)


def _roles(text: str) -> frozenset[str]:
    return frozenset(text.split(",")) if text else frozenset()


def _org_record(row: Any) -> OrgRecord:
    return OrgRecord(
        org=OrgId(row.org),
        network=NetworkId(row.network),
        certificate=bytes(row.certificate),
        fingerprint=Fingerprint(row.fingerprint),
        serial=int(row.serial),
        roles=_roles(row.roles),
        not_before=row.not_before,
        not_after=row.not_after,
    )


def _crl_record(row: Any) -> CrlRecord:
    return CrlRecord(row.number, bytes(row.der), row.this_update, row.next_update)


# Statements built once: SQLAlchemy caches their compiled form, and an expanding
# parameter takes a list of any length without a new statement per length.
_LATEST_CRL = sa.select(t.crl).order_by(t.crl.c.number.desc()).limit(1)
_ORGANISATIONS = sa.select(t.organisations).where(
    t.organisations.c.org.in_(sa.bindparam("orgs", expanding=True))
)
_BUNDLE_VALIDITY = sa.select(
    t.bundles.c.org, t.bundles.c.fingerprint, t.bundles.c.not_before, t.bundles.c.not_after
).where(t.bundles.c.fingerprint.in_(sa.bindparam("fps", expanding=True)))


_ORGANISATION_LIST = (
    sa.select(
        t.organisations.c.org,
        t.organisations.c.roles,
        t.organisations.c.fingerprint,
        t.organisations.c.serial,
        t.bundles.c.fingerprint.label("bundle"),
    )
    .select_from(
        t.organisations.outerjoin(
            t.bundles, sa.and_(t.bundles.c.org == t.organisations.c.org, t.bundles.c.current)
        )
    )
    .order_by(t.organisations.c.org)
)


def _scalar(statement: Any, params: Mapping[str, Any] | None, conn: sa.Connection) -> Any:
    return conn.execute(statement, params).scalar()


def _rows(statement: Any, params: Mapping[str, Any] | None, conn: sa.Connection) -> list[Any]:
    return list(conn.execute(statement, params).all())


def _snapshot(orgs: list[OrgId], named: dict[OrgId, Fingerprint], conn: sa.Connection) -> Snapshot:
    crl = conn.execute(_LATEST_CRL).one_or_none()
    org_rows = conn.execute(_ORGANISATIONS, {"orgs": orgs}).all() if orgs else []
    bundle_rows = (
        conn.execute(_BUNDLE_VALIDITY, {"fps": list(named.values())}).all() if named else []
    )
    return Snapshot(
        crl=None if crl is None else _crl_record(crl),
        organisations={OrgId(row.org): _org_record(row) for row in org_rows},
        bundles={
            OrgId(row.org): BundleValidity(
                OrgId(row.org), Fingerprint(row.fingerprint), row.not_before, row.not_after
            )
            for row in bundle_rows
            if named.get(OrgId(row.org)) == row.fingerprint
        },
    )


def _run_items(
    works: Sequence[Callable[[Tx], Any]], head: AuditHead | UnknownHead, conn: sa.Connection
) -> tuple[list[ItemOutcome], AuditHead | UnknownHead]:
    batch = Batch(conn, head)
    outcomes = [batch.run(work) for work in works]
    return outcomes, batch.head


class Store:
    """Every read and write of the hub's database. See the module docstring."""

    def __init__(
        self,
        database_url: str,
        *,
        max_queue: int = 4096,
        max_batch: int = 256,
        logger: logging.Logger | None = None,
    ) -> None:
        self._url = database_url
        self._engines: Engines = engines_for(database_url)
        self._audit_head: AuditHead | UnknownHead = UNKNOWN  # only the writer's batches use it
        self._writer: Writer[Tx] = Writer(
            self._commit, max_queue=max_queue, max_batch=max_batch, logger=logger
        )

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the writer. Call :meth:`migrate` first on a new database."""
        self._writer.start()

    async def close(self) -> None:
        """Finish queued writes, then close every connection."""
        await self._writer.stop()
        await self._engines.dispose()

    async def migrate(self) -> None:
        """Bring the schema to the newest migration (Alembic, in one transaction)."""
        config = alembic_config(self._url)

        def upgrade(connection: sa.Connection) -> None:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

        await self._engines.write(upgrade)

    async def revision(self) -> str | None:
        """The schema revision the database is at (None before the first migration)."""
        version = sa.table("alembic_version", sa.column("version_num"))

        def read(connection: sa.Connection) -> str | None:
            if not sa.inspect(connection).has_table("alembic_version"):
                return None
            return connection.execute(sa.select(version.c.version_num)).scalar()

        return await self._engines.read(read)

    async def ready(self) -> bool:
        """True when the database answers and its schema is the newest this code knows."""
        try:
            return await self.revision() == head_revision()
        except (sa.exc.SQLAlchemyError, OSError):
            return False

    async def run_read(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run ``fn`` in a read transaction (for tests and tools that inspect the schema)."""
        return await self._engines.read(fn)

    # -- writes -------------------------------------------------------------------------

    async def _commit(self, works: Sequence[Callable[[Tx], Any]]) -> list[ItemOutcome]:
        """Run a batch of work items in one transaction; their outcomes once it committed.

        The audit head is handed from batch to batch only through a commit: it
        is UNKNOWN (read again by the next append) until this batch committed,
        so a failed batch, or a new process, starts from the database.
        """
        head, self._audit_head = self._audit_head, UNKNOWN
        outcomes, head = await self._engines.write(partial(_run_items, works, head))
        self._audit_head = head
        return outcomes

    async def write(self, work: Callable[[Tx], T]) -> T:
        """Run ``work`` in the writer's next batch; returns after that batch committed."""
        return await self._writer.submit(work)

    @property
    def batches_committed(self) -> int:
        return self._writer.batches

    # -- reads --------------------------------------------------------------------------

    async def _rows(self, statement: Any, params: Mapping[str, Any] | None = None) -> list[Any]:
        return await self._engines.read(partial(_rows, statement, params))

    async def organisation(self, org: OrgId) -> OrgRecord | None:
        rows = await self._rows(_ORGANISATIONS, {"orgs": [org]})
        return _org_record(rows[0]) if rows else None

    async def snapshot(
        self, orgs: Collection[OrgId] = (), bundles: Mapping[OrgId, Fingerprint] | None = None
    ) -> Snapshot:
        """The held CRL, the records of ``orgs`` and the named ``bundles``, in ONE transaction.

        One consistent view for a request's checks (a CRL and the certificates it
        is applied to are read together), for the price of one trip to the
        database. ``bundles`` maps an organisation to the fingerprint named for
        it; a bundle held for another organisation is left out.
        """
        return await self._engines.read(partial(_snapshot, list(orgs), dict(bundles or {})))

    async def organisations(self) -> list[OrgSummary]:
        return [
            OrgSummary(
                org=OrgId(row.org),
                roles=_roles(row.roles),
                fingerprint=Fingerprint(row.fingerprint),
                serial=int(row.serial),
                bundle=None if row.bundle is None else Fingerprint(row.bundle),
            )
            for row in await self._rows(_ORGANISATION_LIST)
        ]

    async def bundle(self, fp: Fingerprint) -> KeyBundle | None:
        return await self._one_bundle(t.bundles.c.fingerprint == fp)

    async def current_bundle(self, org: OrgId) -> KeyBundle | None:
        b = t.bundles.c
        return await self._one_bundle(sa.and_(b.org == org, b.current))

    async def _one_bundle(self, where: Any) -> KeyBundle | None:
        query = sa.select(t.bundles.c.wire).where(where)
        wire = await self._engines.read(partial(_scalar, query, None))
        return None if wire is None else KeyBundle.from_wire(_loads(wire))

    async def latest_crl(self) -> CrlRecord | None:
        rows = await self._rows(_LATEST_CRL)
        return _crl_record(rows[0]) if rows else None

    async def linking_keys(self, org: OrgId) -> list[SealedLinkingKey]:
        c = t.linking_keys.c
        query = sa.select(c.wire).where(c.org == org).order_by(c.version)
        rows = await self._rows(query)
        return [SealedLinkingKey.from_wire(_loads(row.wire)) for row in rows]

    async def inbox(self, recipient: OrgId, *, after: int, limit: int) -> list[InboxItem]:
        d, m = t.deliveries.c, t.messages.c
        query = (
            sa.select(d.cursor, d.acked_at, m.envelope)
            .join(t.messages, m.cursor == d.cursor)
            .where(d.recipient == recipient, d.cursor > after)
            .order_by(d.cursor)
            .limit(limit)
        )
        return [
            InboxItem(
                cursor=row.cursor,
                envelope=_loads(row.envelope),
                acknowledged=row.acked_at is not None,
            )
            for row in await self._rows(query)
        ]

    async def message_for(self, message_id: MessageId, org: OrgId) -> MessageView | None:
        """The message if ``org`` is its sender or a recipient, else None."""
        d, m = t.deliveries.c, t.messages.c
        query = (
            sa.select(m.sender, m.envelope, d.cursor)
            .select_from(
                t.messages.outerjoin(
                    t.deliveries, sa.and_(d.cursor == m.cursor, d.recipient == org)
                )
            )
            .where(m.id == message_id)
        )
        rows = await self._rows(query)
        if not rows or (rows[0].cursor is None and rows[0].sender != org):
            return None
        return MessageView(cursor=rows[0].cursor, envelope=_loads(rows[0].envelope))

    async def audit_entries(self, *, after: int = 0, limit: int = 1000) -> list[AuditRecord]:
        a = t.audit_log.c
        query = sa.select(t.audit_log).where(a.seq > after).order_by(a.seq).limit(limit)
        return [_audit_record(row._mapping) for row in await self._rows(query)]

    async def counts(self) -> dict[str, int]:
        """Rows per table (for metrics and tests; no content)."""

        def count(conn: sa.Connection) -> dict[str, int]:
            return {
                table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                for table in t.metadata.sorted_tables
            }

        return await self._engines.read(count)
