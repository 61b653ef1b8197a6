"""Migration 0005c: envelopes stored out of line without a compression attempt on
PostgreSQL (storage EXTERNAL), and back; nothing changes on SQLite."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import command

from hub.store import Store, alembic_config

if TYPE_CHECKING:
    from fresh_databases import Databases

_STORAGE = sa.text(
    "SELECT CAST(attstorage AS text) FROM pg_attribute "
    "WHERE attrelid = CAST('messages' AS regclass) AND attname = 'envelope'"
)


def _migrate(url: str, revision: str, *, down: bool = False) -> Callable[[sa.Connection], None]:
    def run(connection: sa.Connection) -> None:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)

    return run


def _storage(connection: sa.Connection) -> str | None:
    """The envelope column's storage on PostgreSQL ("x" extended, "e" external)."""
    if connection.dialect.name != "postgresql":
        return None
    return str(connection.execute(_STORAGE).scalar_one())


async def test_0005c_stores_envelopes_external_and_back(
    databases: Databases, database_kind: str
) -> None:
    url = await databases.new(empty=True)
    store = Store(url)
    postgres = database_kind == "postgresql"
    try:
        await store._engines.write(_migrate(url, "0005b"))
        assert await store._engines.read(_storage) == ("x" if postgres else None)
        await store._engines.write(_migrate(url, "0005c"))
        assert await store.revision() == "0005c"
        assert await store._engines.read(_storage) == ("e" if postgres else None)
        await store._engines.write(_migrate(url, "0005b", down=True))
        assert await store.revision() == "0005b"
        assert await store._engines.read(_storage) == ("x" if postgres else None)
    finally:
        await store.close()
