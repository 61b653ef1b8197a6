"""The floor: a bare aiohttp handler that inserts the request body as one row.

On SQLite (``make_app``): the hub's durability settings (WAL, synchronous=FULL),
one connection, one INSERT and COMMIT per request. On PostgreSQL
(``make_pg_app``): the same handler through an asyncpg pool of asyncpg's
default size, one autocommitted INSERT per request, PostgreSQL's default
durability (``synchronous_commit=on``). Nothing else: no parsing, no checks, no
audit entry. What a minimal durable endpoint costs on this machine. It
commits per request, where the hub commits queued requests together (group
commit): see docs/performance.md. Run as ``python -m bench.floor DB PORT``,
where DB is a SQLite file or a ``postgresql://`` DSN.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from aiohttp import web

ROW_BYTES = 4096
PATH = "/rows"
PG_POOL = 10  # connections: asyncpg's default pool size
PG_SCHEMES = ("postgresql://", "postgres://")


def make_app(path: str) -> web.Application:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")

    async def insert(request: web.Request) -> web.Response:
        body = await request.read()
        db.execute("BEGIN")
        cursor = db.execute("INSERT INTO rows (body) VALUES (?)", (body,))
        db.execute("COMMIT")
        return web.json_response({"id": cursor.lastrowid}, status=201)

    async def close(app: web.Application) -> None:
        db.close()

    app = web.Application(client_max_size=1 << 20)
    app.router.add_post(PATH, insert)
    app.on_cleanup.append(close)
    return app


def make_pg_app(dsn: str) -> web.Application:
    """The same floor on PostgreSQL: one autocommitted INSERT per request, pooled."""
    import asyncpg  # the postgres extra; only the PostgreSQL floor needs it

    pools: list[asyncpg.Pool] = []

    async def insert(request: web.Request) -> web.Response:
        body = await request.read()
        row = await pools[0].fetchval("INSERT INTO rows (body) VALUES ($1) RETURNING id", body)
        return web.json_response({"id": row}, status=201)

    async def pool(app: web.Application) -> AsyncIterator[None]:
        made = await asyncpg.create_pool(dsn, min_size=PG_POOL, max_size=PG_POOL)
        try:
            await made.execute(
                "CREATE TABLE IF NOT EXISTS rows (id BIGSERIAL PRIMARY KEY, body BYTEA NOT NULL)"
            )
            pools.append(made)
            yield
        finally:
            await made.close()

    app = web.Application(client_max_size=1 << 20)
    app.router.add_post(PATH, insert)
    app.cleanup_ctx.append(pool)
    return app


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
