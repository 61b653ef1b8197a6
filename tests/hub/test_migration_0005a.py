"""Migration 0005a: version 1 entries of an old log stay as they were and still verify;
the hub writes version 2 after it, and only those can shed their personal fields.

Each test runs on SQLite and on PostgreSQL, from an empty database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from alembic import command

from hub.accesslog import erasure, recording
from hub.accesslog.recording import Event
from hub.store import AuditQuery, Store, Tx, alembic_config, head_revision
from hub.store.tree import Frontier
from hub.store.tx import entry_row
from protocol import merkle
from protocol.auditlog import AuditEntry

if TYPE_CHECKING:
    from fresh_databases import Databases

PSEUDONYM = "tel.1." + "a" * 52
T0 = 1_800_000_000


def _migrate(url: str, revision: str, *, down: bool = False) -> Callable[[sa.Connection], None]:
    def run(connection: sa.Connection) -> None:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)

    return run


def _old_entry(index: int) -> AuditEntry:
    return AuditEntry(
        index=index, time=T0 + index, action="create", outcome="allowed", reason=None,
        org="police", user=f"agent-{index}", role="member", purpose="signal-intake",
        purpose_text="intake", object_type="message", object_ids=(),
        pseudonyms=(PSEUDONYM,), source="192.0.2.1", request_id=None,
    )  # fmt: skip


def _fill_0004c(connection: sa.Connection, entries: list[AuditEntry]) -> None:
    """Write ``entries`` as the hub of 0004c did: the row, its pseudonyms, its nodes."""
    tree = Frontier.from_nodes(0, {})
    for entry in entries:
        row = entry_row(entry)
        del row["v"], row["personal"]  # not columns before 0005a
        columns = ", ".join(f'"{name}"' for name in row)
        values = ", ".join(f":{name}" for name in row)
        connection.execute(sa.text(f"INSERT INTO audit_log ({columns}) VALUES ({values})"), row)
        connection.execute(
            sa.text('INSERT INTO audit_pseudonyms ("index", pseudonym) VALUES (:i, :p)'),
            [{"i": entry.index, "p": p} for p in entry.pseudonyms],
        )
        done = tree.append(entry.leaf())
        connection.execute(
            sa.text("INSERT INTO audit_nodes (level, idx, hash) VALUES (:l, :i, :h)"),
            [{"l": level, "i": idx, "h": value} for (level, idx), value in done],
        )
        tree = tree.appended(done)


async def test_old_entries_keep_version_1_and_their_leaves_after_the_upgrade(
    databases: Databases,
) -> None:
    url = await databases.new(empty=True)
    store = Store(url)
    old = [_old_entry(i) for i in range(5)]
    try:
        await store._engines.write(_migrate(url, "0004c"))
        await store._engines.write(lambda c: _fill_0004c(c, old))
        await store.migrate()
        assert await store.revision() == head_revision() == "0005c"
        await store.start()
        assert await store.audit_entries() == old  # every field, version 1
        assert (await store.audit_root())[1] == merkle.root_hash([e.leaf() for e in old])
        for n in range(3):  # the hub appends version 2 after them

            def item(tx: Tx, n: int = n) -> None:
                event = Event(
                    action="read", object_type="inbox", outcome="allowed", org="ggd",
                    user="nurse-1", pseudonyms=(PSEUDONYM,),
                )  # fmt: skip
                recording.append(tx, event, now=T0 + 100 + n)

            await store.write(item)
        entries = await store.audit_entries()
        assert [e.v for e in entries] == [1] * 5 + [2] * 3
        size, root = await store.audit_root()
        assert (size, root) == (8, merkle.root_hash([e.leaf() for e in entries]))
        found = await store.audit_entries(AuditQuery(viewer=None, pseudonym=PSEUDONYM))
        assert len(found) == 8  # the pseudonym filter finds both versions

        def erase_all(tx: Tx) -> int:
            return erasure.erase_openings(tx, list(range(8)), reason="retention", now=T0 + 999)

        assert await store.write(erase_all) == 3  # version 1 has no opening to erase
        after = await store.audit_entries()
        assert after[:5] == old and all(e.erased for e in after[5:])
        assert await store.audit_root() == (size, root)
    finally:
        await store.close()


async def test_the_downgrade_refuses_once_version_2_entries_exist(databases: Databases) -> None:
    url = await databases.new(empty=True)
    store = Store(url)
    try:
        await store.migrate()
        await store._engines.write(_migrate(url, "0004c", down=True))  # nothing written yet
        assert await store.revision() == "0004c"
        await store.migrate()
        await store.start()

        def item(tx: Tx) -> None:
            event = Event(action="login", object_type="auth", outcome="allowed", org="ggd")
            recording.append(tx, event, now=T0)

        await store.write(item)
        with pytest.raises(RuntimeError, match="version 2 entries"):
            await store._engines.write(_migrate(url, "0004c", down=True))
        assert await store.revision() == head_revision()  # nothing was undone
    finally:
        await store.close()
