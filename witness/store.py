"""The witness's state: the latest checkpoint it cosigned per log, and the evidence it kept.

Two tables (SQLAlchemy Core), on SQLite (``sqlite+aiosqlite:///``, WAL,
``synchronous=FULL``, the file created 0600) or PostgreSQL (``postgresql+asyncpg://``):

* ``witness_checkpoints``: ``origin`` (key), ``size``, ``root`` (32 bytes), ``note`` (the
  checkpoint as cosigned: its text, the log's verified signature lines and this
  witness's cosignature), ``updated`` (unix seconds).
* ``witness_evidence``: ``digest`` (key: SHA-256 hex of the file), ``origin``, ``kind``,
  ``observed``, ``evidence`` (the evidence file's text).

A checkpoint only ever advances. :meth:`WitnessStore.advance` is a compare-and-set on
the row the caller read (same size and root), so two requests (or two processes on one
PostgreSQL database) can never both advance from one state; and a trigger refuses any
update that lowers ``size`` and any delete, so not even a bug can roll a log back. The
answer is sent only after the commit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from keys.keyfile import create_private_file

SCHEMA_VERSION = "1"
SCHEMA_LOCK = 6001118295012147202  # PostgreSQL advisory lock for creating the schema

metadata = sa.MetaData()
checkpoints = sa.Table(
    "witness_checkpoints",
    metadata,
    sa.Column("origin", sa.String(255), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("root", sa.LargeBinary(32), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("updated", sa.BigInteger, nullable=False),
    sa.CheckConstraint("size >= 0", name="witness_checkpoints_size"),
)
evidence = sa.Table(
    "witness_evidence",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("origin", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("observed", sa.BigInteger, nullable=False),
    sa.Column("evidence", sa.Text, nullable=False),
)
meta = sa.Table(
    "witness_meta",
    metadata,
    sa.Column("key", sa.String(32), primary_key=True),
    sa.Column("value", sa.String(64), nullable=False),
)

_SQLITE_TRIGGERS = (
    """CREATE TRIGGER IF NOT EXISTS witness_checkpoints_never_shrink
    BEFORE UPDATE ON witness_checkpoints
    WHEN NEW.size < OLD.size OR NEW.origin <> OLD.origin
    BEGIN SELECT RAISE(ABORT, 'a witnessed checkpoint never goes back'); END""",
    """CREATE TRIGGER IF NOT EXISTS witness_checkpoints_never_deleted
    BEFORE DELETE ON witness_checkpoints
    BEGIN SELECT RAISE(ABORT, 'a witnessed checkpoint is never deleted'); END""",
)
_PG_TRIGGERS = (
    """CREATE OR REPLACE FUNCTION witness_checkpoints_never_back() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' OR NEW.size < OLD.size OR NEW.origin <> OLD.origin THEN
            RAISE EXCEPTION 'a witnessed checkpoint never goes back';
        END IF;
        RETURN NEW;
    END $$""",
    "DROP TRIGGER IF EXISTS witness_checkpoints_never_back ON witness_checkpoints",
    """CREATE TRIGGER witness_checkpoints_never_back
    BEFORE UPDATE OR DELETE ON witness_checkpoints
    FOR EACH ROW EXECUTE FUNCTION witness_checkpoints_never_back()""",
)


@dataclass(frozen=True, slots=True)
class Held:
    """The checkpoint the witness holds for a log."""

    origin: str
    size: int
    root: bytes
    note: str
    updated: int


class SchemaMismatch(Exception):
    """The database holds a witness schema of another version."""


def private_sqlite_file(url: str) -> None:
    """Create a SQLite database file 0600 in a 0700 directory; refuse one others can read."""
    path = url.removeprefix("sqlite+aiosqlite:///")
    if url.startswith("sqlite") and path not in ("", ":memory:") and not path.startswith("file:"):
        create_private_file(path)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=5000"):
        cursor.execute("PRAGMA " + pragma)
    cursor.close()


class WitnessStore:
    """The witness's database. Open with :meth:`open`; close with :meth:`close`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    @classmethod
    async def open(cls, url: str) -> WitnessStore:
        """Connect, and create the schema if the database has none (idempotent)."""
        if url.startswith("sqlite"):
            private_sqlite_file(url)
            engine = create_async_engine(url)
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            engine = create_async_engine(
                url,
                pool_size=4,
                max_overflow=0,
                connect_args={"server_settings": {"application_name": "schakel-witness"}},
            )
        store = cls(engine)
        try:
            await store._create_schema()
        except BaseException:
            await engine.dispose()
            raise
        return store

    async def close(self) -> None:
        await self._engine.dispose()

    async def _create_schema(self) -> None:
        async with self._engine.begin() as conn:
            if self._postgres:
                await conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})"))
            await conn.run_sync(metadata.create_all)
            for statement in _PG_TRIGGERS if self._postgres else _SQLITE_TRIGGERS:
                await conn.execute(sa.text(statement))
            version = await conn.scalar(sa.select(meta.c.value).where(meta.c.key == "schema"))
            if version is None:
                await conn.execute(meta.insert().values(key="schema", value=SCHEMA_VERSION))
            elif version != SCHEMA_VERSION:
                raise SchemaMismatch(
                    f"the witness database is at schema {version}, this witness knows "
                    f"{SCHEMA_VERSION}"
                )

    async def ping(self) -> None:
        """Raise unless the database answers."""
        async with self._engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def held(self, origin: str) -> Held | None:
        """The checkpoint held for ``origin``, or None."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(sa.select(checkpoints).where(checkpoints.c.origin == origin))
            ).first()
        if row is None:
            return None
        return Held(row.origin, row.size, bytes(row.root), row.note, row.updated)

    async def advance(
        self, origin: str, held: Held | None, *, size: int, root: bytes, note: str, now: int
    ) -> bool:
        """Replace ``held`` (None: nothing yet) by the new checkpoint, if it is still what
        the database holds and the size does not go down. False if another request won."""
        async with self._engine.begin() as conn:
            if held is None:
                statement = sa.text(
                    "INSERT INTO witness_checkpoints (origin, size, root, note, updated) "
                    "VALUES (:origin, :size, :root, :note, :now) "
                    "ON CONFLICT (origin) DO NOTHING"
                )
                result = await conn.execute(
                    statement, {"origin": origin, "size": size, "root": root, "note": note,
                                "now": now},
                )  # fmt: skip
            else:
                result = await conn.execute(
                    checkpoints.update()
                    .where(
                        checkpoints.c.origin == origin,
                        checkpoints.c.size == held.size,
                        checkpoints.c.root == held.root,
                        checkpoints.c.size <= size,
                    )
                    .values(size=size, root=root, note=note, updated=now)
                )
            return bool(result.rowcount == 1)

    async def keep_evidence(self, data: bytes, *, origin: str, kind: str, observed: int) -> bool:
        """Store an evidence file once (by its SHA-256); True if it was new."""
        digest = hashlib.sha256(data).hexdigest()
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.text(
                    "INSERT INTO witness_evidence (digest, origin, kind, observed, evidence) "
                    "VALUES (:digest, :origin, :kind, :observed, :evidence) "
                    "ON CONFLICT (digest) DO NOTHING"
                ),
                {"digest": digest, "origin": origin, "kind": kind, "observed": observed,
                 "evidence": data.decode("utf-8")},
            )  # fmt: skip
            return bool(result.rowcount == 1)

    async def evidence(self) -> list[str]:
        """Every evidence file kept, oldest first."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(evidence.c.evidence).order_by(evidence.c.observed, evidence.c.digest)
            )
            return [row.evidence for row in rows]
