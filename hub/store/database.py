"""The database: engines, migrations, reads, and the writer that does every write.

Two engines on one database: a pool of read connections (read-only where the
database allows it), and one write connection that only the
:class:`~hub.writer.Writer` uses. On SQLite every connection gets WAL,
``synchronous=FULL``, ``foreign_keys=ON`` and a busy timeout when it is
opened; SQLAlchemy, not the sqlite3 module, emits ``BEGIN`` (``BEGIN
IMMEDIATE`` for the writer), so savepoints and DDL are transactional.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from hub import schema as t
from hub.store.records import (
    AuditRecord,
    CrlRecord,
    InboxItem,
    MessageView,
    OrgRecord,
    OrgSummary,
)
from hub.store.tx import Batch, Tx
from hub.writer import Writer
from protocol.keybundle import KeyBundle
from protocol.linkingkey import SealedLinkingKey
from protocol.types import Fingerprint, MessageId, NetworkId, OrgId

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 5000
READ_POOL_SIZE = 4


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


def _sqlite_pragmas(*, read_only: bool) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=FULL",
            "foreign_keys=ON",
            f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
        ):
            cursor.execute("PRAGMA " + pragma)
        if read_only:
            cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    return on_connect


def _sqlite_begin(statement: str) -> Callable[[Any], None]:
    def on_begin(connection: Any) -> None:
        connection.exec_driver_sql(statement)

    return on_begin


def _engine(url: str, *, writer: bool) -> AsyncEngine:
    sqlite = url.startswith("sqlite")
    options: dict[str, Any] = {"pool_size": 1 if writer else READ_POOL_SIZE}
    if writer:
        options["max_overflow"] = 0
    if not sqlite:
        options["pool_pre_ping"] = True
        if not writer:
            settings = {"default_transaction_read_only": "on"}
            options["connect_args"] = {"server_settings": settings}
    engine = create_async_engine(url, **options)
    if sqlite:
        sync = engine.sync_engine
        event.listen(sync, "connect", _sqlite_pragmas(read_only=not writer))
        event.listen(sync, "begin", _sqlite_begin("BEGIN IMMEDIATE" if writer else "BEGIN"))
    return engine


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
        self._read = _engine(database_url, writer=False)
        self._write = _engine(database_url, writer=True)
        self._writer: Writer[Tx] = Writer(
            self._batch, max_queue=max_queue, max_batch=max_batch, logger=logger
        )

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the writer. Call :meth:`migrate` first on a new database."""
        self._writer.start()

    async def close(self) -> None:
        """Finish queued writes, then close every connection."""
        await self._writer.stop()
        await self._read.dispose()
        await self._write.dispose()

    async def migrate(self) -> None:
        """Bring the schema to the newest migration (Alembic, in one transaction)."""
        config = alembic_config(self._url)

        def upgrade(connection: sa.Connection) -> None:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

        async with self._write.begin() as conn:
            await conn.run_sync(upgrade)

    async def revision(self) -> str | None:
        """The schema revision the database is at (None before the first migration)."""
        version = sa.table("alembic_version", sa.column("version_num"))

        def has_table(connection: sa.Connection) -> bool:
            return sa.inspect(connection).has_table("alembic_version")

        async with self._reading() as conn:
            if not await conn.run_sync(has_table):
                return None
            return (await conn.execute(sa.select(version.c.version_num))).scalar()

    async def ready(self) -> bool:
        """True when the database answers and its schema is the newest this code knows."""
        try:
            return await self.revision() == head_revision()
        except (sa.exc.SQLAlchemyError, OSError):
            return False

    # -- writes -------------------------------------------------------------------------

    @asynccontextmanager
    async def _batch(self) -> AsyncIterator[Batch]:
        async with self._write.connect() as conn, conn.begin():
            yield Batch(conn)

    async def write(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``work`` in the writer's next batch; returns after that batch committed."""
        return await self._writer.submit(work)

    @property
    def batches_committed(self) -> int:
        return self._writer.batches

    # -- reads --------------------------------------------------------------------------

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        async with self._read.connect() as conn, conn.begin():
            yield conn

    async def organisation(self, org: OrgId) -> OrgRecord | None:
        c = t.organisations.c
        async with self._reading() as conn:
            row = (await conn.execute(sa.select(t.organisations).where(c.org == org))).one_or_none()
        if row is None:
            return None
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

    async def organisations(self) -> list[OrgSummary]:
        o, b = t.organisations.c, t.bundles.c
        query = (
            sa.select(o.org, o.roles, o.fingerprint, o.serial, b.fingerprint.label("bundle"))
            .select_from(t.organisations.outerjoin(t.bundles, sa.and_(b.org == o.org, b.current)))
            .order_by(o.org)
        )
        async with self._reading() as conn:
            rows = (await conn.execute(query)).all()
        return [
            OrgSummary(
                org=OrgId(row.org),
                roles=_roles(row.roles),
                fingerprint=Fingerprint(row.fingerprint),
                serial=int(row.serial),
                bundle=None if row.bundle is None else Fingerprint(row.bundle),
            )
            for row in rows
        ]

    async def bundle(self, fp: Fingerprint) -> KeyBundle | None:
        return await self._one_bundle(t.bundles.c.fingerprint == fp)

    async def current_bundle(self, org: OrgId) -> KeyBundle | None:
        b = t.bundles.c
        return await self._one_bundle(sa.and_(b.org == org, b.current))

    async def _one_bundle(self, where: Any) -> KeyBundle | None:
        async with self._reading() as conn:
            wire = (await conn.execute(sa.select(t.bundles.c.wire).where(where))).scalar()
        return None if wire is None else KeyBundle.from_wire(_loads(wire))

    async def bundles_of(self, fps: dict[OrgId, Fingerprint]) -> dict[OrgId, KeyBundle]:
        """The bundles named in ``fps`` that the hub holds for the org they are named for."""
        b = t.bundles.c
        query = sa.select(b.org, b.fingerprint, b.wire).where(b.fingerprint.in_(fps.values()))
        async with self._reading() as conn:
            rows = (await conn.execute(query)).all()
        return {
            OrgId(row.org): KeyBundle.from_wire(_loads(row.wire))
            for row in rows
            if fps.get(OrgId(row.org)) == row.fingerprint
        }

    async def latest_crl(self) -> CrlRecord | None:
        c = t.crl.c
        async with self._reading() as conn:
            row = (
                await conn.execute(sa.select(t.crl).order_by(c.number.desc()).limit(1))
            ).one_or_none()
        if row is None:
            return None
        return CrlRecord(row.number, bytes(row.der), row.this_update, row.next_update)

    async def linking_keys(self, org: OrgId) -> list[SealedLinkingKey]:
        c = t.linking_keys.c
        query = sa.select(c.wire).where(c.org == org).order_by(c.version)
        async with self._reading() as conn:
            wires = (await conn.execute(query)).scalars().all()
        return [SealedLinkingKey.from_wire(_loads(wire)) for wire in wires]

    async def inbox(self, recipient: OrgId, *, after: int, limit: int) -> list[InboxItem]:
        d, m = t.deliveries.c, t.messages.c
        query = (
            sa.select(d.cursor, d.acked_at, m.envelope)
            .join(t.messages, m.cursor == d.cursor)
            .where(d.recipient == recipient, d.cursor > after)
            .order_by(d.cursor)
            .limit(limit)
        )
        async with self._reading() as conn:
            rows = (await conn.execute(query)).all()
        return [
            InboxItem(
                cursor=row.cursor,
                envelope=_loads(row.envelope),
                acknowledged=row.acked_at is not None,
            )
            for row in rows
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
        async with self._reading() as conn:
            row = (await conn.execute(query)).one_or_none()
        if row is None or (row.cursor is None and row.sender != org):
            return None
        return MessageView(cursor=row.cursor, envelope=_loads(row.envelope))

    async def audit_entries(self, *, after: int = 0, limit: int = 1000) -> list[AuditRecord]:
        a = t.audit_log.c
        query = sa.select(t.audit_log).where(a.seq > after).order_by(a.seq).limit(limit)
        async with self._reading() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_audit_record(row) for row in rows]

    async def counts(self) -> dict[str, int]:
        """Rows per table (for metrics and tests; no content)."""
        async with self._reading() as conn:
            return {
                table.name: (
                    await conn.execute(sa.select(sa.func.count()).select_from(table))
                ).scalar_one()
                for table in t.metadata.sorted_tables
            }
