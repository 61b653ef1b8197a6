"""Migration 0004b: the index that serves GET /v1/sent, added and removed again."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import command

from hub.store import Store, alembic_config

if TYPE_CHECKING:
    from fresh_databases import Databases

INDEX = "ix_messages_sender_cursor"


def _migrate(url: str, revision: str, *, down: bool = False) -> Callable[[sa.Connection], None]:
    def run(connection: sa.Connection) -> None:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)

    return run


def _indexes(connection: sa.Connection) -> set[str]:
    return {str(ix["name"]) for ix in sa.inspect(connection).get_indexes("messages")}


async def test_0004b_adds_the_sent_index_and_takes_it_away(databases: Databases) -> None:
    url = await databases.new(empty=True)
    store = Store(url)
    try:
        await store._engines.write(_migrate(url, "0003"))
        assert INDEX not in await store._engines.read(_indexes)
        await store._engines.write(_migrate(url, "0004b"))
        assert await store.revision() == "0004b"
        assert INDEX in await store._engines.read(_indexes)
        await store._engines.write(_migrate(url, "0003", down=True))
        assert INDEX not in await store._engines.read(_indexes)
    finally:
        await store.close()
