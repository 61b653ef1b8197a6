"""Many rows in one statement (hub/store/rows.py), on each database: several tables
written together, keys taken from the sequence in order, and names outside the schema
refused before anything is written."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
import sqlalchemy as sa

from hub import schema as t
from hub.store import Store
from hub.store.rows import Part, rows_for

SUMMARY = ("signals", "first_signal", "last_signal", "org_types")
CASE = ("ref", "created_at", "state", "open_referrals", *SUMMARY)


def _ref(n: int) -> str:
    return f"case-{n:03d}"


async def _write(store: Store, fn: Any) -> Any:
    return await store._engines.write(fn)


async def _cases(store: Store) -> dict[str, tuple[Any, ...]]:
    def read(conn: sa.Connection) -> dict[str, tuple[Any, ...]]:
        c = t.cases.c
        rows = conn.execute(sa.select(c.ref, c.signals, c.first_signal, c.last_signal, c.org_types))
        return {row[0]: tuple(row[1:]) for row in rows}

    return await store.run_read(read)


async def _pairs(store: Store, table: sa.Table) -> set[tuple[Any, ...]]:
    def read(conn: sa.Connection) -> set[tuple[Any, ...]]:
        return {tuple(row) for row in conn.execute(sa.select(table))}

    return await store.run_read(read)


async def test_parts_of_several_tables_are_written_together(store: Store) -> None:
    await _write(
        store,
        lambda conn: rows_for(conn).write_together(
            [
                Part("cases", CASE, [(_ref(1), 10, "new", 0, 1, 10, 10, ",police,")]),
                Part("case_pseudonyms", ("pseudonym", "case"), [("p1", _ref(1))]),
            ]
        ),
    )
    await _write(
        store,
        lambda conn: rows_for(conn).write_together(
            [
                Part("cases", CASE, [(_ref(2), 20, "new", 0, 1, 20, 20, ",ggd,")]),
                Part("cases", ("ref", *SUMMARY), [(_ref(1), 2, 10, 21, ",ggd,police,")], "update"),
                Part("case_members", ("cursor", "case"), []),  # left out
                Part(
                    "case_pseudonyms",
                    ("pseudonym", "case"),
                    [("p1", _ref(1)), ("p2", _ref(1)), ("p3", _ref(2))],  # p1 is held
                    "ignore",
                ),
            ]
        ),
    )
    assert await _cases(store) == {
        _ref(1): (2, 10, 21, ",ggd,police,"),
        _ref(2): (1, 20, 20, ",ggd,"),
    }
    assert await _pairs(store, t.case_pseudonyms) == {
        ("p1", _ref(1)), ("p2", _ref(1)), ("p3", _ref(2)),
    }  # fmt: skip


async def test_a_part_that_fails_leaves_nothing_of_the_others(store: Store) -> None:
    await _write(
        store, lambda conn: rows_for(conn).insert("case_pseudonyms", ("pseudonym", "case"),
                                                  [("p1", _ref(1))])
    )  # fmt: skip
    # SQLite's rows go through the raw sqlite3 connection, so its own error comes out.
    with pytest.raises((sa.exc.IntegrityError, sqlite3.IntegrityError)):
        await _write(
            store,
            lambda conn: rows_for(conn).write_together(
                [
                    Part("cases", CASE, [(_ref(1), 10, "new", 0, 1, 10, 10, ",police,")]),
                    Part("case_pseudonyms", ("pseudonym", "case"), [("p1", _ref(1))]),  # held
                ]
            ),
        )
    assert await _cases(store) == {}
    assert await _pairs(store, t.case_pseudonyms) == {("p1", _ref(1))}


async def test_numbered_rows_get_their_keys_in_order(store: Store) -> None:
    columns = ("org", "kind", "at", "case", "message", "step", "detail")

    def insert(orgs: list[str]) -> Any:
        rows = [(org, "match", n, None, None, None, "{}") for n, org in enumerate(orgs)]
        return lambda conn: rows_for(conn).insert_numbered("events", "id", columns, rows)

    first = await _write(store, insert([f"org-{n}" for n in range(5)]))
    second = await _write(store, insert(["zz", "aa", "mm"]))
    empty = await _write(store, insert([]))
    assert empty == []
    assert first == sorted(first) and second == sorted(second)
    assert len(set(first + second)) == 8 and min(second) > max(first)

    def read(conn: sa.Connection) -> dict[int, str]:
        return {row.id: row.org for row in conn.execute(sa.select(t.events.c.id, t.events.c.org))}

    held = await store.run_read(read)
    assert [held[key] for key in first + second] == [
        *(f"org-{n}" for n in range(5)), "zz", "aa", "mm",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("part", "error"),
    [
        (Part("no_such_table", ("a",), [(1,)]), KeyError),
        (Part("cases", ("ref", "no_such_column"), [("x", 1)]), ValueError),
        (Part("cases", ("ref", 'signals" = 0; --'), [("x", 1)], "update"), ValueError),
    ],
)
async def test_names_outside_the_schema_are_refused_before_writing(
    store: Store, part: Part, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await _write(
            store,
            lambda conn: rows_for(conn).write_together(
                [Part("case_pseudonyms", ("pseudonym", "case"), [("p1", _ref(1))]), part]
            ),
        )
    assert await _pairs(store, t.case_pseudonyms) == set()
