"""The floor: a bare aiohttp handler whose request bodies one writer stores with group commit.

Each request puts its body on a queue and waits; one writer takes whatever is queued
(up to ``MAX_BATCH`` bodies), inserts it as rows in ONE transaction, commits, and only
then answers every request of that batch 201: the shape the hub's own writer has
(docs/performance.md), with nothing else. On SQLite (``make_app``): the hub's durability
settings (WAL, synchronous=FULL), one connection used by one writer thread. On
PostgreSQL (``make_pg_app``): one asyncpg connection, one multi-row INSERT per batch
(``unnest``), PostgreSQL's default durability (``synchronous_commit=on``). No parsing, no
checks, no audit entry: what a minimal durable endpoint costs on this machine. Run as
``python -m bench.floor DB PORT``, where DB is a SQLite file or a ``postgresql://`` DSN.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

ROW_BYTES = 4096
PATH = "/rows"
MAX_BATCH = 256  # bodies per transaction at most: the hub's writer takes as many
PG_SCHEMES = ("postgresql://", "postgres://")
_QUEUE = web.AppKey("floor_queue", asyncio.Queue)

Commit = Callable[[list[bytes]], Awaitable[list[int]]]


async def _write_batches(
    queue: asyncio.Queue[tuple[bytes, asyncio.Future[int]]], commit: Commit
) -> None:
    """The one writer: take what is queued, commit it in one transaction, answer all."""
    while True:
        first = await queue.get()
        batch = [first]
        while len(batch) < MAX_BATCH and not queue.empty():
            batch.append(queue.get_nowait())
        try:
            ids = await commit([body for body, _ in batch])
        except Exception as exc:  # the whole batch failed: every request hears it
            for _, waiter in batch:
                if not waiter.done():
                    waiter.set_exception(exc)
            continue
        for (_, waiter), row in zip(batch, ids, strict=True):
            if not waiter.done():
                waiter.set_result(row)


async def _insert(request: web.Request) -> web.Response:
    body = await request.read()
    waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    request.app[_QUEUE].put_nowait((body, waiter))
    return web.json_response({"id": await waiter}, status=201)


def _app(commit: Commit, opened: Callable[[], AsyncIterator[None]]) -> web.Application:
    async def writer(app: web.Application) -> AsyncIterator[None]:
        queue: asyncio.Queue[tuple[bytes, asyncio.Future[int]]] = asyncio.Queue()
        app[_QUEUE] = queue
        async for _ in opened():
            task = asyncio.get_running_loop().create_task(_write_batches(queue, commit))
            try:
                yield
            finally:
                task.cancel()

    app = web.Application(client_max_size=1 << 20)
    app.router.add_post(PATH, _insert)
    app.cleanup_ctx.append(writer)
    return app


def make_app(path: str) -> web.Application:
    """The SQLite floor: sqlite3 in one writer thread, WAL, synchronous=FULL, group commit."""
    thread = ThreadPoolExecutor(1, thread_name_prefix="floor-writer")
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")

    def write(bodies: list[bytes]) -> list[int]:
        db.execute("BEGIN")
        try:
            ids = [
                db.execute("INSERT INTO rows (body) VALUES (?)", (b,)).lastrowid or 0
                for b in bodies
            ]
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return ids

    async def commit(bodies: list[bytes]) -> list[int]:
        return await asyncio.get_running_loop().run_in_executor(thread, write, bodies)

    async def opened() -> AsyncIterator[None]:
        try:
            yield None
        finally:
            thread.shutdown()
            db.close()

    return _app(commit, opened)


def make_pg_app(dsn: str) -> web.Application:
    """The same floor on PostgreSQL: one asyncpg connection, one INSERT per batch."""
    import asyncpg  # the postgres extra; only the PostgreSQL floor needs it

    held: list[asyncpg.Connection] = []

    async def commit(bodies: list[bytes]) -> list[int]:
        async with held[0].transaction():
            rows = await held[0].fetch(
                "INSERT INTO rows (body) SELECT unnest($1::bytea[]) RETURNING id", bodies
            )
        return [int(row["id"]) for row in rows]

    async def opened() -> AsyncIterator[None]:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS rows (id BIGSERIAL PRIMARY KEY, body BYTEA NOT NULL)"
            )
            # Stored as the hub stores envelopes (migration 0005c): out of line, with no
            # compression attempt.
            await conn.execute("ALTER TABLE rows ALTER COLUMN body SET STORAGE EXTERNAL")
            held.append(conn)
            yield None
        finally:
            await conn.close()

    return _app(commit, opened)


def argv(python: str, database: Path | str, port: int) -> list[str]:
    """The command line that runs the floor on ``127.0.0.1:port``.

    ``database``: a SQLite file, or a ``postgresql://`` DSN (not a SQLAlchemy URL).
    """
    return [python, "-m", "bench.floor", str(database), str(port)]


def main(args: Sequence[str]) -> None:
    if len(args) != 2 or not args[1].isdigit():
        sys.exit("usage: python -m bench.floor DB PORT")
    database = args[0]
    app = make_pg_app(database) if database.startswith(PG_SCHEMES) else make_app(database)
    web.run_app(app, host="127.0.0.1", port=int(args[1]), print=None)


if __name__ == "__main__":
    main(sys.argv[1:])
