"""The floor: a bare aiohttp handler that inserts a 4 KB row into SQLite.

Same durability settings as the hub (WAL, synchronous=FULL), one connection,
one INSERT and COMMIT per request, nothing else: no parsing, no checks, no
audit entry. What a minimal durable endpoint costs on this machine. It
commits per request, where the hub commits queued requests together (group
commit): see docs/performance.md. Run as ``python -m bench.floor DB PORT``.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

ROW_BYTES = 4096
PATH = "/rows"


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


def argv(python: str, database: Path, port: int) -> list[str]:
    """The command line that runs the floor on ``127.0.0.1:port``."""
    return [python, "-m", "bench.floor", str(database), str(port)]


def main(args: Sequence[str]) -> None:
    if len(args) != 2 or not args[1].isdigit():
        sys.exit("usage: python -m bench.floor DB PORT")
    web.run_app(make_app(args[0]), host="127.0.0.1", port=int(args[1]), print=None)


if __name__ == "__main__":
    main(sys.argv[1:])
