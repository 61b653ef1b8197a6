"""Delivery integrity against a hostile or restored hub: nothing accepted vanishes unseen.

A real hub on loopback, real clients, on SQLite and PostgreSQL. The hub's operator
restores a backup, or deletes one delivery row, behind the hub's back; the clients
notice:

* a restored backup hands a new message a cursor the recipient already passed: the
  recipient stops with :class:`~clients.errors.InboxWentBack` instead of never seeing
  it, ``resync`` then takes the new message without taking the old one twice, and the
  sender's view lists the message the restore lost, which it sends again unchanged;
* a withheld message (its delivery row deleted) is named by the sender's next message
  to that recipient (header ``prev``): the recipient records it as missing, naming the
  sender and the id, and the sender's view lists the delivery as lost.

The backup is a copy of the SQLite file (SQLite's online backup, which copies a live
database consistently); on PostgreSQL, where the test can not stop the server, it is a
copy of every table's rows and of the sequences (what ``pg_dump --data-only`` restores).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from clients.errors import InboxWentBack
from clients.organisation import Organisation
from hub import schema

if TYPE_CHECKING:
    from conftest import HubDatabase, Network

SENDER = "police"
RECIPIENT = "coordinator"
Backup = Path | dict[str, Any]


def _signal(text: str) -> dict[str, object]:
    return {
        "schema": "schakel.signal/1",
        "person": {"given_names": "Ilse", "family_name": "Verbeek", "bsn": "111222333"},
        "exploitation": "labour",
        "urgency": "high",
        "text": text,
        "consent_to_share": True,
    }


@contextlib.asynccontextmanager
async def acting_as(network: Network, org: str) -> AsyncIterator[Organisation]:
    organisation = network.open(org)
    try:
        async with organisation.hub:
            yield organisation
    finally:
        organisation.state.close()


async def send(network: Network, text: str) -> str:
    async with acting_as(network, SENDER) as police:
        sent = await police.send_signal(_signal(text), [RECIPIENT])
    assert not sent.waiting
    return sent.id


async def cursor_of(network: Network, message_id: str) -> int:
    ((cursor,),) = await network.database.rows(
        "SELECT cursor FROM messages WHERE id = :id", id=message_id
    )
    return int(cursor)


# -- backup and restore, as an operator would --------------------------------------------


async def backup(database: HubDatabase, into: Path) -> Backup:
    if database.path is not None:
        with (
            contextlib.closing(sqlite3.connect(database.path)) as live,
            contextlib.closing(sqlite3.connect(into)) as copy,
        ):
            live.backup(copy)
        return into
    tables: dict[str, Any] = {}
    async with database.transaction() as conn:
        for table in schema.metadata.sorted_tables:
            rows = (await conn.execute(sa.select(table))).mappings().all()
            tables[table.name] = [dict(row) for row in rows]
        tables["sequences"] = {
            name: (await conn.execute(sa.text(f"SELECT last_value, is_called FROM {name}"))).one()
            for name in await _sequences(conn)
        }
    return tables


async def restore(database: HubDatabase, saved: Backup) -> None:
    if isinstance(saved, Path):
        assert database.path is not None
        with (
            contextlib.closing(sqlite3.connect(saved)) as copy,
            contextlib.closing(sqlite3.connect(database.path)) as live,
        ):
            copy.backup(live)
        return
    async with database.transaction() as conn:
        names = ", ".join(f'"{t.name}"' for t in schema.metadata.sorted_tables)
        await conn.execute(sa.text(f"TRUNCATE {names}"))
        for table in schema.metadata.sorted_tables:
            if saved[table.name]:
                await conn.execute(sa.insert(table), saved[table.name])
        for name, (value, called) in saved["sequences"].items():
            await conn.execute(
                sa.text("SELECT setval(CAST(:name AS regclass), :value, :called)"),
                {"name": name, "value": value, "called": called},
            )


async def _sequences(conn: Any) -> list[str]:
    rows = await conn.execute(sa.text("SELECT sequence_name FROM information_schema.sequences"))
    return sorted(str(name) for (name,) in rows)


# -- a restored backup ---------------------------------------------------------------------


async def test_a_restored_backup_stops_the_recipient_and_nothing_is_lost(
    network: Network, tmp_path: Path
) -> None:
    async with acting_as(network, RECIPIENT) as coordinator:
        await coordinator.receive()  # keeps the hub's signed tree head, if it has signed one
    saved = await backup(network.database, tmp_path / "backup.sqlite")

    m1 = await send(network, "before the restore")
    async with acting_as(network, RECIPIENT) as coordinator:
        (received,) = (await coordinator.receive()).messages
        assert received.id == m1
        c1 = coordinator.state.cursor
    assert c1 == await cursor_of(network, m1)

    await restore(network.database, saved)
    m2 = await send(network, "after the restore")
    assert await cursor_of(network, m2) == c1  # the hub handed the cursor out again

    async with acting_as(network, RECIPIENT) as coordinator:
        try:
            await coordinator.receive()
        except InboxWentBack as exc:
            assert (exc.cursor, exc.kept, exc.served) == (c1, m1, m2)
            assert "INBOX WENT BACKWARDS" in str(exc) and "--resync" in str(exc)
        else:
            raise AssertionError("the recipient read on past a restored inbox")
        assert coordinator.state.message(m2) is None
        assert coordinator.state.cursor == c1

        result = await coordinator.resync()
        assert [m.id for m in result.messages] == [m2]
        assert sorted(m.id for m in coordinator.state.messages()) == sorted([m1, m2])
        assert (await coordinator.receive()).messages == ()  # and reads on from there

    # The sender sees that the hub lost m1, and sends it again from its own copy.
    async with acting_as(network, SENDER) as police:
        (check,) = await police.check_sent(older_than=3600)
        assert (check.id, check.held, check.lost, check.resendable) == (
            m1,
            False,
            (RECIPIENT,),
            True,
        )
        resent = await police.resend(m1)
        assert (resent.id, resent.created) == (m1, True)
        assert (await police.resend(m1)).created is False  # the hub takes it once
        assert await police.check_sent(older_than=3600) == ()
    async with acting_as(network, RECIPIENT) as coordinator:
        assert (await coordinator.receive()).messages == ()  # held already: not taken twice
        assert len(coordinator.state.messages()) == 2


# -- a withheld message ----------------------------------------------------------------------


async def test_a_withheld_message_is_named_by_the_next_one(network: Network) -> None:
    m1 = await send(network, "the one the hub will withhold")
    deleted = await network.database.sql(
        "DELETE FROM deliveries WHERE recipient = :org AND cursor = :cursor",
        org=RECIPIENT,
        cursor=await cursor_of(network, m1),
    )
    assert deleted == 1
    m2 = await send(network, "the next one")

    async with acting_as(network, RECIPIENT) as coordinator:
        result = await coordinator.receive()
        assert [m.id for m in result.messages] == [m2]
        ((gone, sender, named_by),) = [(m.id, m.sender, m.named_by) for m in result.missing]
        assert (gone, sender, named_by) == (m1, SENDER, m2)
        assert [(m.id, m.named_by) for m in coordinator.state.missing()] == [(m1, m2)]
        envelope = coordinator.state.message(m2)
        assert envelope is not None and envelope.prev == {RECIPIENT: m1}
        assert "prev" not in (await _first_header(network, m1))  # the first names none
        assert (await coordinator.receive()).missing == ()  # reported once, kept in state

    async with acting_as(network, SENDER) as police:
        checks = {c.id: c for c in await police.check_sent(older_than=0)}
        assert (checks[m1].held, checks[m1].lost) == (True, (RECIPIENT,))
        assert m2 not in checks  # acknowledged
        # Sending it again changes nothing: the hub holds it (200), and still withholds it.
        assert (await police.resend(m1)).created is False


@pytest.mark.parametrize("database_kind", ["sqlite"])  # the store's SQL is that of the above
async def test_a_predecessor_the_hub_serves_again_is_taken_not_reported(
    network: Network,
) -> None:
    """A message hidden while the recipient's cursor passed it, then put back: the next
    message from its sender names it, the recipient fetches it by id and takes it."""
    m1 = await send(network, "first")
    c1 = await cursor_of(network, m1)
    hidden = {"org": RECIPIENT, "cursor": c1}
    await network.database.sql(
        "DELETE FROM deliveries WHERE recipient = :org AND cursor = :cursor", **hidden
    )
    async with acting_as(network, "ggd") as ggd:
        other = (await ggd.send_signal(_signal("from another sender"), [RECIPIENT])).id
    async with acting_as(network, RECIPIENT) as coordinator:
        assert [m.id for m in (await coordinator.receive()).messages] == [other]
        assert coordinator.state.cursor > c1
    await network.database.sql(
        "INSERT INTO deliveries (recipient, cursor) VALUES (:org, :cursor)", **hidden
    )
    m2 = await send(network, "second")
    async with acting_as(network, RECIPIENT) as coordinator:
        result = await coordinator.receive()
        assert [m.id for m in result.messages] == [m2, m1]
        assert result.missing == () and coordinator.state.missing() == []
        assert coordinator.state.message(m1) is not None


async def _first_header(network: Network, message_id: str) -> dict[str, Any]:
    ((text,),) = await network.database.rows(
        "SELECT envelope FROM messages WHERE id = :id", id=message_id
    )
    header: dict[str, Any] = json.loads(text)["header"]
    return header
