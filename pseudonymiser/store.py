"""The one module of the service that talks to the database.

Four small tables, named ``oprf_*`` so that they never meet the hub's should an operator
put both in one database (``docs/protocol.md``, "The service's storage"): nonces seen, the
evaluation counters per organisation and window, the audit of evaluations (how many,
when, by whom; never what) and the newest CRL. SQLite by default; PostgreSQL for
replicas, which must share them: every decision that spans requests (a nonce seen
twice, a limit reached) is one conditional statement on a row, so two replicas can not
both let the same nonce or the last evaluation of a window through.

Each write is one transaction. SQLite gets WAL, ``synchronous=FULL`` and a busy timeout
on every connection, and ``BEGIN IMMEDIATE`` for a write (so that a transaction that
reads and then writes never deadlocks against another one); PostgreSQL runs at READ
COMMITTED with row locks taken by the upserts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from pseudonymiser.errors import RateLimited, Replayed

T = TypeVar("T")
SCHEMA_VERSION = 1
HOUR = 3600
DAY = 86400
EVALUATED = "evaluated"
REFUSED = "rate-limited"
COUNTER_RETENTION = 2 * DAY
SQLITE_BUSY_TIMEOUT_MS = 5000

metadata = sa.MetaData()
_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only

schema_table = sa.Table("oprf_schema", metadata, sa.Column("version", sa.Integer, nullable=False))
nonces = sa.Table(
    "oprf_nonces",
    metadata,
    sa.Column("org", sa.String(32), primary_key=True),
    sa.Column("nonce", sa.String(22), primary_key=True),
    sa.Column("expires", sa.BigInteger, nullable=False, index=True),
)
counters = sa.Table(
    "oprf_counters",
    metadata,
    sa.Column("org", sa.String(32), primary_key=True),
    sa.Column("period", sa.String(4), primary_key=True),  # "hour" or "day"
    sa.Column("period_start", sa.BigInteger, primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
)
evaluations = sa.Table(
    "oprf_evaluations",
    metadata,
    sa.Column("id", _id, primary_key=True, autoincrement=True),
    sa.Column("time", sa.BigInteger, nullable=False, index=True),
    sa.Column("org", sa.String(32), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
)
crl_table = sa.Table(
    "oprf_crl",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("number", sa.BigInteger, nullable=False),
    sa.Column("der", sa.LargeBinary, nullable=False),
    sa.Column("stored_at", sa.BigInteger, nullable=False),
)


@dataclass(frozen=True, slots=True)
class Window:
    """One counting window: ``period`` of ``length`` seconds from ``start``, at most ``limit``."""

    period: str
    start: int
    length: int
    limit: int


def windows(now: int, *, hourly: int, daily: int) -> tuple[Window, Window]:
    """The clock hour and the UTC day that ``now`` lies in."""
    return (
        Window("hour", now - now % HOUR, HOUR, hourly),
        Window("day", now - now % DAY, DAY, daily),
    )


@dataclass(frozen=True, slots=True)
class StoredCrl:
    number: int
    der: bytes
    stored_at: int


@dataclass(frozen=True, slots=True)
class UsageRow:
    org: str
    day: int  # start of the UTC day
    requests: int
    evaluations: int
    refused: int


class Store:
    """The service's database. Create, ``await migrate()``, use, ``await close()``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            private_database_file(url)
        self._engine = _engine(url)

    async def close(self) -> None:
        await self._engine.dispose()

    async def _run(self, fn: Callable[[sa.Connection], T]) -> T:
        async with self._engine.connect() as conn, conn.begin():
            return await conn.run_sync(fn)

    async def migrate(self) -> None:
        """Create the tables (if absent) and record the schema version."""
        await self._run(_migrate)

    async def schema_version(self) -> int | None:
        """The schema version the database holds, or None when it holds none."""
        return await self._run(_schema_version)

    # -- evaluations ---------------------------------------------------------------------

    async def admit(
        self, org: str, nonce: str, *, count: int, now: int, expires: int, hourly: int, daily: int
    ) -> None:
        """Record the nonce until ``expires``, count ``count`` evaluations in both windows
        and audit it.

        Raises :class:`Replayed` (nothing written) for a nonce this organisation used
        before and that is still kept, and :class:`RateLimited` when a window would pass
        its limit: the nonce and an audit row ``rate-limited`` are then written, the
        counters left alone.
        """
        refusal: list[RateLimited] = []

        def admit(conn: sa.Connection) -> None:
            conn.execute(nonces.delete().where(nonces.c.expires < now))
            if not _insert_nonce(conn, org, nonce, expires):
                raise Replayed("this organisation sent this nonce before")
            limit = _count(conn, org, count, windows(now, hourly=hourly, daily=daily), now)
            outcome = EVALUATED if limit is None else REFUSED
            conn.execute(
                evaluations.insert().values(time=now, org=org, count=count, outcome=outcome)
            )
            if limit is not None:
                refusal.append(limit)

        await self._run(admit)
        if refusal:
            raise refusal[0]

    async def usage(self, *, since: int, org: str | None = None) -> list[UsageRow]:
        """Per organisation and UTC day since ``since``: requests, evaluations, refusals."""

        def read(conn: sa.Connection) -> list[UsageRow]:
            day = (evaluations.c.time - evaluations.c.time % DAY).label("day")
            evaluated = sa.case((evaluations.c.outcome == EVALUATED, evaluations.c.count), else_=0)
            refused = sa.case((evaluations.c.outcome == REFUSED, 1), else_=0)
            query = (
                sa.select(
                    evaluations.c.org,
                    day,
                    sa.func.count(),
                    sa.func.sum(evaluated),
                    sa.func.sum(refused),
                )
                .where(evaluations.c.time >= since)
                .group_by(evaluations.c.org, day)
                .order_by(day, evaluations.c.org)
            )
            if org is not None:
                query = query.where(evaluations.c.org == org)
            return [
                UsageRow(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4]))
                for r in conn.execute(query)
            ]

        return await self._run(read)

    # -- the revocation list -------------------------------------------------------------

    async def crl(self) -> StoredCrl | None:
        def read(conn: sa.Connection) -> StoredCrl | None:
            row = conn.execute(sa.select(crl_table).where(crl_table.c.id == 1)).first()
            return (
                None
                if row is None
                else StoredCrl(int(row.number), bytes(row.der), int(row.stored_at))
            )

        return await self._run(read)

    async def store_crl(self, number: int, der: bytes, *, now: int) -> bool:
        """Keep this CRL if its number is higher than the one held; False if it is not."""

        def store(conn: sa.Connection) -> bool:
            held = conn.execute(
                sa.select(crl_table.c.number).where(crl_table.c.id == 1).with_for_update()
            ).scalar()
            if held is not None and held >= number:
                return False
            values = {"number": number, "der": der, "stored_at": now}
            if held is None:
                conn.execute(crl_table.insert().values(id=1, **values))
            else:
                conn.execute(crl_table.update().where(crl_table.c.id == 1).values(**values))
            return True

        return await self._run(store)


# -- statements ----------------------------------------------------------------------------


def _insert(conn: sa.Connection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def _insert_nonce(conn: sa.Connection, org: str, nonce: str, expires: int) -> bool:
    statement = (
        _insert(conn)(nonces)
        .values(org=org, nonce=nonce, expires=expires)
        .on_conflict_do_nothing(index_elements=["org", "nonce"])
    )
    return conn.execute(statement).rowcount == 1


def _count(
    conn: sa.Connection, org: str, count: int, spans: tuple[Window, ...], now: int
) -> RateLimited | None:
    """Add ``count`` to every window, all or none (a savepoint); the refusal, if any."""
    conn.execute(counters.delete().where(counters.c.period_start < now - COUNTER_RETENTION))
    savepoint = conn.begin_nested()
    for span in spans:
        if count > span.limit or not _add(conn, org, count, span):
            savepoint.rollback()
            return RateLimited(
                span.start + span.length - now,
                f"at most {span.limit} evaluations per {span.period} for each organisation",
            )
    savepoint.commit()
    return None


def _add(conn: sa.Connection, org: str, count: int, span: Window) -> bool:
    """One conditional upsert: the row's count grows by ``count`` only within the limit."""
    insert = _insert(conn)(counters).values(
        org=org, period=span.period, period_start=span.start, count=count
    )
    statement = insert.on_conflict_do_update(
        index_elements=["org", "period", "period_start"],
        set_={"count": counters.c.count + insert.excluded.count},
        where=counters.c.count + insert.excluded.count <= span.limit,
    ).returning(counters.c.count)
    return conn.execute(statement).first() is not None


def _migrate(conn: sa.Connection) -> None:
    metadata.create_all(conn, checkfirst=True)
    if conn.execute(sa.select(schema_table.c.version)).first() is None:
        conn.execute(schema_table.insert().values(version=SCHEMA_VERSION))


def _schema_version(conn: sa.Connection) -> int | None:
    if not sa.inspect(conn).has_table(schema_table.name):
        return None
    version = conn.execute(sa.select(schema_table.c.version)).scalar()
    return None if version is None else int(version)


# -- engines -------------------------------------------------------------------------------


def _engine(url: str) -> AsyncEngine:
    if not url.startswith("sqlite"):
        return create_async_engine(
            url,
            pool_size=5,
            max_overflow=5,
            pool_pre_ping=True,
            connect_args={"server_settings": {"application_name": "schakel-pseudonymiser"}},
        )
    engine = create_async_engine(url, pool_size=1, max_overflow=0)
    event.listen(engine.sync_engine, "connect", _sqlite_connect)
    event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        "synchronous=FULL",
        f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    ):
        cursor.execute("PRAGMA " + pragma)
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def private_database_file(url: str) -> None:
    """Create the SQLite file 0600 (directory 0700) before SQLite does; refuse a shared one.

    The same rule as the hub's database (``hub/store/engines.py``): a file other users
    can read is refused, not repaired.
    """
    path = sa.make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    file = Path(path)
    file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(file, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600))
    except FileExistsError:
        mode = file.stat().st_mode & 0o777
        if mode & 0o077:
            raise PermissionError(
                f"{file} is readable by other users (mode {mode:o}); "
                f"check who copied it, then chmod 600 {file}"
            ) from None
