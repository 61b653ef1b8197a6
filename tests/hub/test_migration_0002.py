"""Migration 0002: the hash-chained audit log of 0001 becomes the leaves of a Merkle tree.

Each test runs on SQLite and on PostgreSQL, from an empty database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from alembic import command

from hub.store import AuditQuery, Store, alembic_config, head_revision
from protocol import merkle
from protocol.auditlog import nodes_to_store

if TYPE_CHECKING:
    from fresh_databases import Databases

PSEUDONYM = "tel.1." + "a" * 52
MESSAGE = "A" * 22


async def _at_0001(url: str) -> Store:
    store = Store(url)

    def upgrade(connection: sa.Connection) -> None:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")

    await store._engines.write(upgrade)
    return store


def _old(seq: int, action: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "seq": seq, "time": 1000 + seq, "org": "police", "user": None, "role": "member",
        "action": action, "object_type": "org", "object_id": None, "outcome": "allowed",
        "reason": None, "source": "127.0.0.1", "request_id": f"{seq:032x}",
        "prev_hash": bytes(32), "entry_hash": bytes([seq]) * 32,
    }  # fmt: skip
    row.update(values)
    return row


OLD_ROWS = [
    _old(1, "auth.token", object_id="police"),
    _old(2, "auth.token", outcome="denied", reason="unauthorized", role="", source="-"),
    _old(3, "message.send", object_type="message", object_id=MESSAGE, user="agent-7"),
    _old(4, "directory.crl.put", object_type="crl", object_id="3", org=None, role=None),
    _old(5, "inbox.read", object_id="ggd", org="ggd"),
    _old(6, "message.ack", object_type="message", object_id=MESSAGE, org="ggd"),
    _old(7, "directory.org.get", object_id="ggd"),
    *[_old(n, "ws.connect", object_id="police") for n in range(8, 14)],
]


def _fill_0001(connection: sa.Connection, rows: list[dict[str, Any]]) -> None:
    connection.execute(
        sa.text(
            "INSERT INTO messages (cursor, id, sender, kind, created, accepted_at, "
            "envelope_fingerprint, envelope, size) VALUES (1, :id, 'police', 'signal', 1, 1, "
            "'f', '{}', 2)"
        ),
        {"id": MESSAGE},
    )
    connection.execute(
        sa.text("INSERT INTO message_pseudonyms (cursor, pseudonym) VALUES (1, :p)"),
        {"p": PSEUDONYM},
    )
    columns = ", ".join(f'"{name}"' for name in rows[0])
    values = ", ".join(f":{name}" for name in rows[0])
    connection.execute(sa.text(f"INSERT INTO audit_log ({columns}) VALUES ({values})"), rows)


async def test_upgrading_carries_every_entry_into_the_tree(databases: Databases) -> None:
    url = await databases.new(empty=True)
    store = await _at_0001(url)
    try:
        await store._engines.write(lambda c: _fill_0001(c, OLD_ROWS))
        await store.migrate()
        assert await store.revision() == head_revision()
        entries = await store.audit_entries(AuditQuery(viewer=None, limit=1000))
    finally:
        await store.close()
    assert [e.index for e in entries] == list(range(len(OLD_ROWS)))
    assert [(e.action, e.object_type) for e in entries[:7]] == [
        ("login", "auth"),
        ("login-failed", "auth"),
        ("create", "message"),
        ("create", "directory"),
        ("list", "inbox"),
        ("acknowledge", "message"),
        ("read", "directory"),
    ]
    login, failed, send, crl, inbox, _, org_get = entries[:7]
    assert (login.object_ids, failed.role, failed.source, login.source) == (
        (), None, None, "127.0.0.1",
    )  # fmt: skip
    assert (send.object_ids, send.pseudonyms, send.user) == ((MESSAGE,), (PSEUDONYM,), "agent-7")
    assert (crl.object_ids, inbox.object_ids, org_get.object_ids) == ((), (), ("ggd",))
    assert [e.time for e in entries] == [row["time"] for row in OLD_ROWS]

    leaves = [e.leaf() for e in entries]
    store = Store(url)
    try:
        assert await store.audit_root() == (len(leaves), merkle.root_hash(leaves))
        nodes = await store.run_read(
            lambda c: c.execute(sa.text("SELECT level, idx FROM audit_nodes")).all()
        )
        assert {tuple(n) for n in nodes} == {
            node for n in range(len(leaves)) for node in nodes_to_store(n)
        }
        await store.start()  # the writer goes on from the migrated tree

        def append(tx: Any) -> int:
            from hub.accesslog.recording import Event, append

            return append(tx, Event("read", "directory", "allowed"), now=5000).index

        assert await store.write(append) == len(leaves)
        size, root = await store.audit_root()
        more = await store.audit_entries(AuditQuery(viewer=None, limit=1000))
        assert (size, root) == (len(more), merkle.root_hash([e.leaf() for e in more]))
    finally:
        await store.close()


async def test_an_entry_that_can_not_be_translated_stops_the_upgrade(
    databases: Databases,
) -> None:
    url = await databases.new(empty=True)
    store = await _at_0001(url)
    try:
        await store._engines.write(lambda c: _fill_0001(c, [_old(1, "something.else")]))
        with pytest.raises(RuntimeError, match="unknown action"):
            await store.migrate()
        assert await store.revision() == "0001"  # nothing changed
        count = await store.run_read(
            lambda c: c.execute(sa.text("SELECT count(*) FROM audit_log")).scalar()
        )
        assert count == 1
    finally:
        await store.close()
