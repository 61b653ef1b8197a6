"""Many rows in one statement, on the writer's connection, for each database.

The batched writes (:mod:`hub.store.bulk`, :mod:`hub.store.casebatch`) hand rows as
tuples, in the order of the columns they name, to :func:`rows_for`'s writer:

* **SQLite** (:class:`SqliteRows`): the raw sqlite3 connection of the writer's open
  transaction (SQLAlchemy emitted its ``BEGIN IMMEDIATE``), one prepared statement
  run with ``executemany``: no SQLAlchemy compilation or parameter processing per row.
* **PostgreSQL** (:class:`PgRows`): one statement over ``unnest`` of one array per
  column, so one round trip per table whatever the number of rows, and the same
  statement text (prepared once by asyncpg) whatever that number.

Table and column names come from :mod:`hub.schema` only (checked), never from input.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from functools import cache
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from hub import schema as t

Row = tuple[Any, ...]


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


def _checked(table: str, columns: Sequence[str]) -> sa.Table:
    known = t.metadata.tables[table]  # KeyError for a table not in the schema
    if not set(columns) <= set(known.c.keys()):
        raise ValueError(f"columns not in the schema of {table}")
    return known


@cache
def _sqlite_insert(table: str, columns: tuple[str, ...], ignore: bool) -> str:
    _checked(table, columns)
    placeholders = ", ".join("?" * len(columns))
    conflict = " ON CONFLICT DO NOTHING" if ignore else ""
    return f'INSERT INTO "{table}" ({_quoted(columns)}) VALUES ({placeholders}){conflict}'  # noqa: S608


@cache
def _sqlite_update(table: str, key: str, columns: tuple[str, ...]) -> str:
    _checked(table, (key, *columns))
    assignments = ", ".join(f'"{name}" = ?' for name in columns)
    return f'UPDATE "{table}" SET {assignments} WHERE "{key}" = ?'  # noqa: S608


@cache
def _sqlite_last_id(table: str, key: str) -> str:
    _checked(table, (key,))
    return (
        f"SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = '{table}'), 0), "  # noqa: S608
        f'coalesce((SELECT max("{key}") FROM "{table}"), 0))'
    )


class SqliteRows:
    """The raw sqlite3 connection of the writer's open transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self._db: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._db.execute(sql, tuple(params)).fetchall()

    def json_list(self, values: Sequence[str]) -> str:
        """``values`` as the one parameter of ``IN (SELECT value FROM json_each(?))``."""
        return json.dumps(list(values))

    def insert(
        self, table: str, columns: Sequence[str], rows: list[Row], *, ignore: bool = False
    ) -> None:
        """Insert ``rows``; ``ignore``: leave out those that conflict with a held row."""
        if rows:
            self._db.executemany(_sqlite_insert(table, tuple(columns), ignore), rows)

    def insert_numbered(
        self, table: str, key: str, columns: Sequence[str], rows: list[Row]
    ) -> list[int]:
        """Insert ``rows`` into an AUTOINCREMENT table; the keys they got, in order.

        The keys are given explicitly, after the highest ever taken (SQLite's own
        counter is read too): the writer holds SQLite's write lock, so no one else takes
        one meanwhile, and SQLite moves its counter past them.
        """
        if not rows:
            return []
        last = int(self._db.execute(_sqlite_last_id(table, key)).fetchone()[0])
        keys = list(range(last + 1, last + 1 + len(rows)))
        numbered = [(number, *row) for number, row in zip(keys, rows, strict=True)]
        self._db.executemany(_sqlite_insert(table, (key, *columns), False), numbered)
        return keys

    def update(self, table: str, key: str, columns: Sequence[str], rows: list[Row]) -> None:
        """Set ``columns`` of each row whose ``key`` is given; a row is (key, *values)."""
        if rows:
            statement = _sqlite_update(table, key, tuple(columns))
            self._db.executemany(statement, [(*row[1:], row[0]) for row in rows])


@cache
def _pg_arrays(
    table: str, columns: tuple[str, ...]
) -> tuple[str, tuple[sa.BindParameter[Any], ...]]:
    """``unnest(CAST(:c0 AS type[]), ...)`` for ``columns``, and its typed parameters."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    known = _checked(table, columns)
    arrays, binds = [], []
    for number, name in enumerate(columns):
        column_type = known.c[name].type
        arrays.append(f"CAST(:c{number} AS {column_type.compile(dialect=dialect)}[])")
        binds.append(sa.bindparam(f"c{number}", type_=postgresql.ARRAY(column_type)))
    return f"unnest({', '.join(arrays)})", tuple(binds)


@cache
def _pg_insert(
    table: str, columns: tuple[str, ...], ignore: bool, returning: str = ""
) -> sa.TextClause:
    arrays, binds = _pg_arrays(table, columns)
    statement = f'INSERT INTO "{table}" ({_quoted(columns)}) SELECT * FROM {arrays}'  # noqa: S608
    if ignore:
        statement += " ON CONFLICT DO NOTHING"
    if returning:
        statement += f" RETURNING {returning}"
    return sa.text(statement).bindparams(*binds)


@cache
def _pg_update(table: str, key: str, columns: tuple[str, ...]) -> sa.TextClause:
    arrays, binds = _pg_arrays(table, (key, *columns))
    names = [key, *columns]
    assignments = ", ".join(f'"{name}" = v."{name}"' for name in columns)
    statement = (
        f'UPDATE "{table}" SET {assignments} FROM {arrays} AS v ({_quoted(names)}) '  # noqa: S608
        f'WHERE "{table}"."{key}" = v."{key}"'
    )
    return sa.text(statement).bindparams(*binds)


@cache
def _pg_next_ids(table: str, key: str) -> sa.TextClause:
    _checked(table, (key,))
    return sa.text(
        f"SELECT nextval(pg_get_serial_sequence('{table}', '{key}')) "  # noqa: S608
        "FROM generate_series(1, :count)"
    )


class PgRows:
    """PostgreSQL: one ``unnest`` statement, so one round trip, per table."""

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

    def insert(
        self, table: str, columns: Sequence[str], rows: list[Row], *, ignore: bool = False
    ) -> None:
        if rows:
            statement = _pg_insert(table, tuple(columns), ignore)
            self._conn.execute(statement, _columns(rows, len(columns)))

    def insert_returning(
        self, table: str, columns: Sequence[str], rows: list[Row], returning: str
    ) -> list[Row]:
        statement = _pg_insert(table, tuple(columns), False, returning)
        return [tuple(row) for row in self._conn.execute(statement, _columns(rows, len(columns)))]

    def insert_numbered(
        self, table: str, key: str, columns: Sequence[str], rows: list[Row]
    ) -> list[int]:
        """Insert ``rows``, each with the next key of the table's sequence (taken first,
        in one statement, so each row's key is known); the keys, in order."""
        if not rows:
            return []
        taken = self._conn.execute(_pg_next_ids(table, key), {"count": len(rows)})
        keys = [int(row[0]) for row in taken]
        numbered = [(number, *row) for number, row in zip(keys, rows, strict=True)]
        self.insert(table, (key, *columns), numbered)
        return keys

    def update(self, table: str, key: str, columns: Sequence[str], rows: list[Row]) -> None:
        if rows:
            statement = _pg_update(table, key, tuple(columns))
            self._conn.execute(statement, _columns(rows, len(columns) + 1))


def _columns(rows: list[Row], width: int) -> dict[str, list[Any]]:
    return {f"c{number}": [row[number] for row in rows] for number in range(width)}


Rows = SqliteRows | PgRows


def rows_for(conn: sa.Connection) -> Rows:
    return PgRows(conn) if conn.dialect.name == "postgresql" else SqliteRows(conn)


MESSAGE_COLUMNS: Final = (
    "id", "sender", "kind", "created", "accepted_at", "envelope_fingerprint", "envelope", "size",
)  # fmt: skip
