"""Where the store's transactions run: whole transactions, as plain functions.

Every read and every writer batch of :mod:`hub.store` is a synchronous function
of a SQLAlchemy :class:`~sqlalchemy.Connection` that runs inside one
transaction (``BEGIN`` ... ``COMMIT``; rolled back if it raises). An
:class:`Engines` runs such functions without blocking the event loop:

* **SQLite** (:class:`ThreadedSqlite`): the sqlite3 module in threads of the
  hub's own, like aiosqlite, but a transaction is *one* hand-over to a thread
  and back, however many statements it runs. Through aiosqlite every call
  (cursor, execute, fetch, close, commit) is a hand-over of its own, and on this
  hardware each costs some 80 µs of CPU: 50 of them per accepted envelope were
  most of the hub's cost. Reads run on a pool of read-only connections, one
  thread each; the writer has one connection and one thread.
* **PostgreSQL** (:class:`AsyncEngines`): SQLAlchemy's async engine over
  asyncpg; the same functions run through ``AsyncConnection.run_sync``. Every
  round trip costs the hub's CPU and the writer's latency, so none is spent on
  a pre-ping (see :func:`_closed_connection`). Reads run at REPEATABLE READ,
  so that each sees one snapshot, as on SQLite.

On SQLite every connection gets WAL, ``synchronous=FULL``, ``foreign_keys=ON``,
``secure_delete=ON`` (deleted content is overwritten, so an erased access-log opening
can not be read back from the file) and a busy timeout when it is opened; SQLAlchemy,
not the sqlite3 module, emits ``BEGIN`` (``BEGIN IMMEDIATE`` for the writer), so
savepoints and DDL are transactional.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 5000
READ_POOL_SIZE = 8

Transaction = Callable[[sa.Connection], T]


class Engines(Protocol):
    """Runs a function inside one transaction, on a read or on the write connection."""

    async def read(self, fn: Transaction[T]) -> T: ...

    async def write(self, fn: Transaction[T]) -> T: ...

    async def dispose(self) -> None: ...

    async def scrub(self, tables: Sequence[str]) -> None:
        """Wipe what deleted rows of ``tables`` left behind, outside any transaction."""
        ...


def engines_for(url: str) -> Engines:
    return ThreadedSqlite(url) if url.startswith("sqlite") else AsyncEngines(url)


# -- SQLite -----------------------------------------------------------------------------


def _sqlite_pragmas(*, read_only: bool) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=FULL",
            "foreign_keys=ON",
            "secure_delete=ON",
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


def _sqlite_reset(dbapi_connection: Any, _record: Any, state: Any) -> None:
    """Roll back a connection returned to the pool if, and only if, a transaction is open.

    Replaces the pool's unconditional ``rollback()`` on return. sqlite3 knows
    whether a transaction is open (``in_transaction``), so a connection never
    goes back to the pool holding an old read snapshot or a write lock.
    """
    if not state.terminate_only and dbapi_connection.in_transaction:
        dbapi_connection.rollback()


def _sqlite_engine(url: str, *, writer: bool) -> sa.Engine:
    engine = sa.create_engine(
        sa.make_url(url).set(drivername="sqlite"),  # sqlite+aiosqlite:// -> the sqlite3 module
        pool_size=1 if writer else READ_POOL_SIZE,
        max_overflow=0,  # one connection per thread, never more
        pool_reset_on_return=None,  # see _sqlite_reset
    )
    event.listen(engine, "connect", _sqlite_pragmas(read_only=not writer))
    event.listen(engine, "begin", _sqlite_begin("BEGIN IMMEDIATE" if writer else "BEGIN"))
    event.listen(engine, "reset", _sqlite_reset)
    return engine


def _checkpoint(engine: sa.Engine) -> None:
    """``wal_checkpoint(TRUNCATE)`` on the writer's connection, outside a transaction:
    the WAL's pages, old versions of deleted rows included, go to the file (where
    ``secure_delete`` zeroed the deleted content) and the WAL is cut to nothing.
    RuntimeError if a reader kept the checkpoint from finishing."""
    raw = engine.raw_connection()
    try:
        busy, _log, _done = raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        raw.close()
    if busy:
        raise RuntimeError("the WAL checkpoint could not finish: a reader held it")


def _in_transaction(engine: sa.Engine, fn: Transaction[T]) -> T:
    with engine.connect() as conn, conn.begin():
        return fn(conn)


def private_database_file(url: str) -> None:
    """Create the SQLite file 0600 (directory 0700) before SQLite does; refuse a shared one.

    SQLite gives its ``-wal`` and ``-shm`` files the database file's mode, so this keeps
    all three private. A database other users can read is refused rather than repaired:
    its contents may already have been copied, which the operator must know.
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


class ThreadedSqlite:
    """SQLite through the sqlite3 module, each transaction one call into a thread."""

    def __init__(self, url: str) -> None:
        private_database_file(url)
        self._read = _sqlite_engine(url, writer=False)
        self._write = _sqlite_engine(url, writer=True)
        self._readers = ThreadPoolExecutor(READ_POOL_SIZE, thread_name_prefix="hub-db-read")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="hub-db-write")

    async def read(self, fn: Transaction[T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, _in_transaction, self._read, fn)

    async def write(self, fn: Transaction[T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, _in_transaction, self._write, fn)

    async def scrub(self, tables: Sequence[str]) -> None:
        """SQLite: deleted content is already overwritten (``secure_delete``); checkpoint
        the WAL, on the writer's thread, so that no old page of ``tables`` stays in it."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, _checkpoint, self._write)

    async def dispose(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, self._write.dispose)
        await loop.run_in_executor(self._readers, self._read.dispose)
        self._writer.shutdown()
        self._readers.shutdown()


# -- PostgreSQL -------------------------------------------------------------------------


# Every connection: the server finds a replica that vanished (power, network) within
# about 25 s by TCP keepalive instead of the kernel's two hours, and ends a transaction
# left idle for 15 s, so that a hung or lost writer can not hold the sequencer's lock
# (see hub.store.database) for longer than that; the surviving replicas then take it.
PG_SESSION = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
    "idle_in_transaction_session_timeout": "15000",
}


SCRUB_WAIT = 60
# Is any other transaction's snapshot (or a prepared transaction, or a replication slot)
# older than ``x``, the id of a transaction begun after the erasure committed? Such a
# snapshot may still see the deleted rows, and VACUUM keeps them for it.
# A transaction with an id of its own (a writer) counts in any database: every snapshot
# taken while it runs, VACUUM's own included, counts it as running. A snapshot alone
# (a reader) counts only in the hub's database, or in none (a walsender): for a table
# that is not shared PostgreSQL ignores the others, so waiting for them (another
# database's long report on the same server, another test's database) would only
# delay the scrub, not make it wipe more.
_NEW_XID = "SELECT txid_current() % 4294967296"  # a 32-bit xid, as backend_xmin
_OLDER = sa.text(
    "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
    " AND (age(backend_xid) >= age(CAST(:x AS xid))"
    " OR ((datname IS NULL OR datname = current_database())"
    " AND age(backend_xmin) >= age(CAST(:x AS xid)))))"
    " OR EXISTS (SELECT 1 FROM pg_prepared_xacts"
    " WHERE age(transaction) >= age(CAST(:x AS xid)))"
    " OR EXISTS (SELECT 1 FROM pg_replication_slots"
    " WHERE age(xmin) >= age(CAST(:x AS xid)))"
)


def _closed_connection(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Hand out no pooled connection whose socket asyncpg saw closed; take a new one instead.

    Stands in for ``pool_pre_ping``, which costs three round trips per checkout
    (``BEGIN``, a ping, ``ROLLBACK``): two or three checkouts per accepted envelope.
    A connection the server ended (restart, a terminated backend, keepalive giving
    up) is closed on asyncpg's side as soon as the event loop reads the end of its
    socket, so it is found here without asking the server.
    """
    if record.driver_connection.is_closed():
        raise sa.exc.DisconnectionError("the pooled connection was closed")


def _async_engine(url: str, *, writer: bool) -> AsyncEngine:
    settings = dict(PG_SESSION, application_name="schakel-hub-" + ("write" if writer else "read"))
    options: dict[str, Any] = {}
    if not writer:
        settings["default_transaction_read_only"] = "on"
        # One snapshot for the whole read, as SQLite's BEGIN gives: PostgreSQL's default
        # READ COMMITTED would give each statement its own, so that the rows a request
        # reads together (a trust snapshot, a case and its members) could disagree. A
        # read-only transaction at REPEATABLE READ never fails to serialise.
        options["isolation_level"] = "REPEATABLE READ"
    engine = create_async_engine(
        url,
        pool_size=1 if writer else READ_POOL_SIZE,
        max_overflow=0,
        connect_args={"server_settings": settings},
        **options,
    )
    event.listen(engine.sync_engine, "checkout", _closed_connection)
    return engine


class AsyncEngines:
    """PostgreSQL through SQLAlchemy's async engine (asyncpg)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._read = _async_engine(url, writer=False)
        self._write = _async_engine(url, writer=True)

    @staticmethod
    async def _run(engine: AsyncEngine, fn: Transaction[T]) -> T:
        async with engine.connect() as conn, conn.begin():
            return await conn.run_sync(fn)

    async def read(self, fn: Transaction[T]) -> T:
        return await self._run(self._read, fn)

    async def write(self, fn: Transaction[T]) -> T:
        return await self._run(self._write, fn)

    async def scrub(self, tables: Sequence[str]) -> None:
        """PostgreSQL: ``VACUUM (FULL)`` each of ``tables``, in autocommit, once no
        transaction that could still see the deleted rows runs (see :data:`_OLDER`).

        FULL rewrites the table, its TOAST table and its indexes without the dead rows
        and removes the old files; a plain VACUUM only marks their space reusable and
        leaves their bytes in the pages, and neither removes a row some running
        transaction may still see. FULL holds an exclusive lock on the table while it
        copies it, so writes to it (every access-log append) wait that long.
        RuntimeError if older transactions still run after ``SCRUB_WAIT`` seconds.
        Runs on a connection of its own, so that the writer goes on while it waits.
        """
        settings = dict(PG_SESSION, application_name="schakel-hub-scrub")
        engine = create_async_engine(
            self._url, poolclass=NullPool, connect_args={"server_settings": settings}
        )
        try:
            await self._scrub(engine, tables)
        finally:
            await engine.dispose()

    @staticmethod
    async def _scrub(engine: AsyncEngine, tables: Sequence[str]) -> None:
        async with engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            now = (await auto.exec_driver_sql(_NEW_XID)).scalar_one()
            for _ in range(SCRUB_WAIT * 10):
                if not (await auto.execute(_OLDER, {"x": int(now)})).scalar_one():
                    break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("transactions older than the erasure still run; scrub later")
            for table in tables:
                await auto.exec_driver_sql(f'VACUUM (FULL) "{table}"')

    async def dispose(self) -> None:
        await self._read.dispose()
        await self._write.dispose()
