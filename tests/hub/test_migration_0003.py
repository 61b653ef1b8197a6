"""Migration 0003: organisation types, and the signals already held clustered into cases.

Each test runs on SQLite and on PostgreSQL, from an empty database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import command

from hub.store import Store, alembic_config, head_revision

if TYPE_CHECKING:
    from fresh_databases import Databases

P = {name: f"tel.1.{name * 52}" for name in "abcdefg"}


async def _at(url: str, revision: str) -> Store:
    store = Store(url)

    def upgrade(connection: sa.Connection) -> None:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    await store._engines.write(upgrade)
    return store


# cursor -> (kind, pseudonyms): 1-2-3 chain (a∩b, b∩c), 4 alone, 5 a status, 6 no pseudonyms,
# 7 links 4 to a referral 8.
MESSAGES = {
    1: ("signal", "a"),
    2: ("signal", "ab"),
    3: ("signal", "bc"),
    4: ("signal", "d"),
    5: ("status", ""),
    6: ("signal", ""),
    7: ("signal", "de"),
    8: ("referral", "e"),
}


def _fill_0002(connection: sa.Connection) -> None:
    connection.execute(
        sa.text(
            "INSERT INTO organisations (org, network, certificate, fingerprint, serial, roles, "
            "not_before, not_after) VALUES ('police', 'net', :der, 'fp', '1', 'member', 0, 9)"
        ),
        {"der": b"\x00"},
    )
    for cursor, (kind, names) in MESSAGES.items():
        connection.execute(
            sa.text(
                "INSERT INTO messages (cursor, id, sender, kind, created, accepted_at, "
                "envelope_fingerprint, envelope, size) VALUES "
                "(:c, :id, 'police', :kind, 1, :c, 'f', '{}', 2)"
            ),
            {"c": cursor, "id": f"{cursor:0>21}A", "kind": kind},
        )
        for name in names:
            connection.execute(
                sa.text("INSERT INTO message_pseudonyms (cursor, pseudonym) VALUES (:c, :p)"),
                {"c": cursor, "p": P[name]},
            )


async def test_upgrade_clusters_the_signals_held(databases: Databases) -> None:
    url = await databases.new(empty=True)
    store = await _at(url, "0002")
    try:
        await store._engines.write(_fill_0002)
        await store.migrate()
        members = await store.run_read(
            lambda c: dict(c.execute(sa.text('SELECT cursor, "case" FROM case_members')).all())
        )
        pseudonyms = await store.run_read(
            lambda c: c.execute(sa.text('SELECT pseudonym, "case" FROM case_pseudonyms')).all()
        )
        cases = await store.run_read(
            lambda c: c.execute(sa.text("SELECT ref, created_at, merged_into FROM cases")).all()
        )
        org_type = await store.run_read(
            lambda c: c.execute(sa.text("SELECT org_type FROM organisations")).scalar_one()
        )
    finally:
        await store.close()
    assert org_type == "other"
    assert set(members) == {1, 2, 3, 4, 6, 7, 8}  # the status is no member
    assert members[1] == members[2] == members[3]
    assert members[4] == members[7] == members[8]
    assert len({members[1], members[4], members[6]}) == 3
    assert {(ref, created) for ref, created, _ in cases} == {
        (members[1], 1), (members[4], 4), (members[6], 6)
    }  # fmt: skip
    assert all(merged is None for _, _, merged in cases)
    assert sorted(pseudonyms) == sorted(
        [(P[n], members[1]) for n in "abc"] + [(P[n], members[4]) for n in "de"]
    )
    assert all(len(ref) == 16 and ref.isalnum() and ref.islower() for ref, _, _ in cases)


async def test_downgrade_and_upgrade_again(databases: Databases) -> None:
    url = await databases.new(empty=True)
    store = await _at(url, "head")
    try:
        await store._engines.write(
            lambda connection: command.downgrade(_with(alembic_config(url), connection), "0002")
        )
        assert await store.revision() == "0002"
        await store.migrate()
        assert await store.revision() == head_revision()  # 0003 and every later revision
    finally:
        await store.close()


def _with(config: object, connection: sa.Connection) -> object:
    config.attributes["connection"] = connection  # type: ignore[attr-defined]
    return config
