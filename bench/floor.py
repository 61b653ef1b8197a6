"""The floor: a bare aiohttp handler that inserts a 4 KB row into SQLite.

Same durability settings as the hub (WAL, synchronous=FULL), one connection,
one INSERT and COMMIT per request: what a minimal durable endpoint costs on
this machine. Run as ``python -m bench.floor DB PORT``.
"""

from __future__ import annotations

import sqlite3
import sys

from aiohttp import web


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

    app = web.Application(client_max_size=1 << 20)
    app.router.add_post("/rows", insert)
    return app


if __name__ == "__main__":
    web.run_app(make_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), print=None)
