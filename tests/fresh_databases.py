"""Fresh databases for the hub's tests: a SQLite file, or a PostgreSQL database of its own.

Every test of ``tests/hub`` that needs a database runs twice, on SQLite and on
PostgreSQL (``conftest.database_kind``). A SQLite database is a new file in the
test's temporary directory. A PostgreSQL database is created for the test on
the server named by ``SCHAKEL_TEST_PG_URL`` and dropped (``WITH (FORCE)``) after
it, whether the test passed or not.

Creating and dropping a database costs PostgreSQL a few hundred milliseconds
(it syncs files to disk), so a :class:`PgServer` does that work in a thread of
its own while the tests run: it migrates one template database per session,
keeps a few copies of it ready for the next tests, and drops the databases of
finished tests. Its databases are named ``schakel_test_<pid>_<random>_...``; a session
drops, at its start, the ones left by a test process that no longer runs
(killed before it could clean up), when the server is on this machine.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import queue
import secrets
import threading
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa

from bench.replicas import pg_dsn, process_running, quoted_name
from hub.store import Store

PG_URL_VARIABLE = "SCHAKEL_TEST_PG_URL"
DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
PREFIX = "schakel_test_"
SPARES = 3  # migrated databases kept ready for the next tests
CONNECT_TIMEOUT = 5.0
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class PgUnavailable(Exception):
    """The PostgreSQL server of the tests can not be reached (the message says how to fix it)."""


def pg_url() -> str:
    return os.environ.get(PG_URL_VARIABLE) or DEFAULT_PG_URL


class PgServer:
    """The test session's PostgreSQL server: a migrated template, spare copies, drops.

    All administration runs on one connection in one thread (:meth:`_serve`);
    tests only take names from ``_spares`` and put names on ``_drops``.
    """

    def __init__(self, url: str) -> None:
        self.url = sa.make_url(url)
        self.dsn = pg_dsn(self.url)
        self._prefix = f"{PREFIX}{os.getpid()}_{secrets.token_hex(3)}_"
        self.template = self._prefix + "template"
        self._numbers = itertools.count(1)
        self._spares: queue.Queue[str] = queue.Queue()
        self._drops: queue.Queue[str | None] = queue.Queue()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._errors: list[str] = []
        self._thread = threading.Thread(target=self._serve, name="pg-test-databases", daemon=True)

    # -- what the fixtures call -----------------------------------------------------------

    def start(self) -> None:
        """Connect, drop stale test databases, migrate the template; raise if that failed."""
        self._thread.start()
        if not self._ready.wait(120):
            raise RuntimeError("preparing the PostgreSQL template database took over 2 minutes")
        if self._failure is not None:
            raise self._failure

    def new_name(self) -> str:
        return f"{self._prefix}{next(self._numbers)}"

    def url_of(self, name: str) -> str:
        return self.url.set(database=name).render_as_string(hide_password=False)

    async def take_migrated(self) -> str:
        """The name of a fresh copy of the migrated template (made in the background)."""
        if self._errors:
            raise RuntimeError("making test databases failed: " + "; ".join(self._errors))
        try:
            return await asyncio.to_thread(self._spares.get, timeout=60)
        except queue.Empty:
            raise RuntimeError(f"no test database was made in 60 s: {self._errors}") from None

    async def create_empty(self) -> str:
        """A fresh database without any table (a copy of ``template0``)."""
        name = self.new_name()
        conn = await asyncpg.connect(self.dsn, timeout=CONNECT_TIMEOUT)
        try:
            await conn.execute(f"CREATE DATABASE {quoted_name(name)} TEMPLATE template0")
        finally:
            await conn.close()
        return name

    def drop_later(self, name: str) -> None:
        self._drops.put(name)

    def stop(self) -> None:
        """Drop every database of this session (waits for it); raise if any drop failed."""
        self._drops.put(None)
        self._thread.join(300)
        if self._thread.is_alive():
            raise RuntimeError("dropping the test databases took over 5 minutes")
        if self._errors:
            raise RuntimeError("test databases left behind: " + "; ".join(self._errors))

    # -- the administration thread ----------------------------------------------------------

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            conn = self._prepare(loop)
            if conn is not None:
                self._work(loop, conn)
        finally:
            loop.close()

    def _prepare(self, loop: asyncio.AbstractEventLoop) -> Any:
        """The admin connection with the template made, or None (``_failure`` says why)."""
        try:
            conn = loop.run_until_complete(asyncpg.connect(self.dsn, timeout=CONNECT_TIMEOUT))
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            self._failure = PgUnavailable(f"{type(exc).__name__}: {exc}")
            self._ready.set()
            return None
        try:
            loop.run_until_complete(self._sweep(conn))
            loop.run_until_complete(self._make_template(conn))
        except BaseException as exc:
            self._failure = exc
            self._run(loop, conn, self._drop(self.template))
            loop.run_until_complete(conn.close())
            conn = None
        self._ready.set()
        return conn

    async def _sweep(self, conn: Any) -> None:
        """Drop databases left by test processes of this machine that have ended."""
        if self.url.host not in LOOPBACK:
            return
        names = [name for (name,) in await conn.fetch("SELECT datname FROM pg_database")]
        for name in names:
            pid = name.removeprefix(PREFIX).split("_")[0]
            if name.startswith(PREFIX) and pid.isdigit() and not process_running(int(pid)):
                await conn.execute(self._drop(name))

    async def _make_template(self, conn: Any) -> None:
        await conn.execute(f"CREATE DATABASE {quoted_name(self.template)} TEMPLATE template0")
        store = Store(self.url_of(self.template))
        try:
            await store.migrate()
        finally:
            await store.close()

    def _work(self, loop: asyncio.AbstractEventLoop, conn: Any) -> None:
        """Drop finished tests' databases and keep SPARES copies ready, until :meth:`stop`."""
        try:
            while not self._drop_pending(loop, conn, wait=self._spares.qsize() >= SPARES):
                if self._spares.qsize() < SPARES and not self._errors:
                    name = self.new_name()
                    create = (
                        f"CREATE DATABASE {quoted_name(name)} TEMPLATE {quoted_name(self.template)}"
                    )
                    if self._run(loop, conn, create):
                        self._spares.put(name)
        finally:
            left = [self._spares.get_nowait() for _ in range(self._spares.qsize())]
            for name in [*left, self.template]:
                self._run(loop, conn, self._drop(name))
            loop.run_until_complete(conn.close())

    def _drop_pending(self, loop: asyncio.AbstractEventLoop, conn: Any, *, wait: bool) -> bool:
        """Drop the databases of finished tests; True once :meth:`stop` asked to end."""
        while True:
            try:
                name = self._drops.get(timeout=0.05) if wait else self._drops.get_nowait()
            except queue.Empty:
                return False
            if name is None:
                return True
            self._run(loop, conn, self._drop(name))
            wait = False

    @staticmethod
    def _drop(name: str) -> str:
        return f"DROP DATABASE IF EXISTS {quoted_name(name)} WITH (FORCE)"

    def _run(self, loop: asyncio.AbstractEventLoop, conn: Any, sql: str) -> bool:
        """Run one statement; on failure keep the error for :meth:`stop` and return False."""
        try:
            loop.run_until_complete(conn.execute(sql))
        except (asyncpg.PostgresError, OSError) as exc:
            self._errors.append(f"{sql}: {exc}")
            return False
        return True


class Databases:
    """The fresh databases of one test, of one kind; each dropped after the test."""

    def __init__(self, kind: str, directory: Path, server: PgServer | None) -> None:
        self.kind = kind
        self._directory = directory
        self._server = server
        self._made: list[str] = []
        self._files = itertools.count()

    async def new(self, *, empty: bool = False) -> str:
        """The URL of a new database no other test sees.

        ``empty=True``: without any table. Otherwise it may already hold the newest
        schema (on PostgreSQL it is a copy of the session's migrated template);
        callers still migrate it, which is then a no-op.
        """
        if self._server is None:
            return f"sqlite+aiosqlite:///{self._directory / f'hub-{next(self._files)}.db'}"
        server = self._server
        name = await (server.create_empty() if empty else server.take_migrated())
        self._made.append(name)
        return server.url_of(name)

    def drop_all(self) -> None:
        if self._server is None:
            return
        for name in self._made:
            self._server.drop_later(name)
