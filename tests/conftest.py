"""Fixtures every test directory shares: fresh databases of both kinds.

Every test that takes ``databases`` (or ``database_kind``) runs twice, on SQLite and on
PostgreSQL (``fresh_databases``); the PostgreSQL half is skipped with a message saying
how to enable it where the server is out of reach, and fails under ``CI=true``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fresh_databases import PG_URL_VARIABLE, Databases, PgServer, PgUnavailable, pg_url

# -- databases: every test that needs one runs on SQLite and on PostgreSQL -----------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The PostgreSQL server of the session; skipped (failed in CI) when out of reach."""
    server = PgServer(pg_url())
    try:
        server.start()
    except PgUnavailable as exc:
        message = (
            f"PostgreSQL at {server.url.render_as_string()} is out of reach ({exc}); "
            f"start it, or point {PG_URL_VARIABLE}=postgresql+asyncpg://USER@HOST:PORT/DB "
            "at a server where USER may create databases"
        )
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run the PostgreSQL tests: " + message)
        pytest.skip(message)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def databases(
    database_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Databases]:
    """Makes fresh databases of this test's kind (``await databases.new()``); drops them after."""
    server = request.getfixturevalue("pg_server") if database_kind == "postgresql" else None
    made = Databases(database_kind, tmp_path, server)
    try:
        yield made
    finally:
        made.drop_all()
