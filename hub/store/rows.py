"""Many rows in one statement, on the writer's connection, for each database.

The batched writes (:mod:`hub.store.bulk`, :mod:`hub.store.casebatch`) hand rows as
tuples, in the order of the columns they name, to :func:`rows_for`'s writer:

* **SQLite** (:class:`SqliteRows`): the raw sqlite3 connection of the writer's open
  transaction (SQLAlchemy emitted its ``BEGIN IMMEDIATE``), one prepared statement
  run with ``executemany``: no SQLAlchemy compilation or parameter processing per row.
* **PostgreSQL** (:class:`PgRows`): one statement over ``unnest`` of one array per
  column, so one round trip per table whatever the number of rows, and the same
  statement text (prepared once by asyncpg) whatever that number; several tables
  written together (:class:`Part`, ``write_together``) are one statement of
  data-modifying ``WITH`` clauses, so one round trip for them all.

Table and column names come from :mod:`hub.schema` only (checked), never from input.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Final, Literal

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


How = Literal["insert", "ignore", "update"]


@dataclass(frozen=True, slots=True)
class Part:
    """Rows for one table: inserted, inserted but for those that conflict with a held row
    (``ignore``), or set on the rows they name (``update``: a row is (key, *values), the
    key being the first of ``columns``)."""

    table: str
    columns: tuple[str, ...]
    rows: list[Row]
    how: How = "insert"


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

    def write_together(self, parts: Sequence[Part]) -> None:
        """Write each part in turn (one prepared statement each)."""
        for part in parts:
            if part.how == "update":
                self.update(part.table, part.columns[0], part.columns[1:], part.rows)
            else:
                self.insert(part.table, part.columns, part.rows, ignore=part.how == "ignore")


@cache
def _pg_arrays(
    table: str, columns: tuple[str, ...], prefix: str = ""
) -> tuple[str, tuple[sa.BindParameter[Any], ...]]:
    """``unnest(CAST(:c0 AS type[]), ...)`` for ``columns``, and its typed parameters."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    known = _checked(table, columns)
    arrays, binds = [], []
    for number, name in enumerate(columns):
        column_type = known.c[name].type
        arrays.append(f"CAST(:{prefix}c{number} AS {column_type.compile(dialect=dialect)}[])")
        binds.append(sa.bindparam(f"{prefix}c{number}", type_=postgresql.ARRAY(column_type)))
    return f"unnest({', '.join(arrays)})", tuple(binds)


@cache
def _pg_write(
    table: str, columns: tuple[str, ...], how: How, prefix: str
) -> tuple[str, tuple[sa.BindParameter[Any], ...]]:
    """The statement writing one :class:`Part`'s rows, and its typed parameters."""
    arrays, binds = _pg_arrays(table, columns, prefix)
    if how == "update":
        key, *values = columns
        assignments = ", ".join(f'"{name}" = v."{name}"' for name in values)
        statement = (
            f'UPDATE "{table}" SET {assignments} FROM {arrays} AS v ({_quoted(columns)}) '  # noqa: S608
            f'WHERE "{table}"."{key}" = v."{key}"'
        )
    else:
        statement = f'INSERT INTO "{table}" ({_quoted(columns)}) SELECT * FROM {arrays}'  # noqa: S608
        if how == "ignore":
            statement += " ON CONFLICT DO NOTHING"
    return statement, binds


@cache
def _pg_together(parts: tuple[tuple[str, tuple[str, ...], How], ...]) -> sa.TextClause:
    """One statement writing every part (the first ones as data-modifying ``WITH``)."""
    statements: list[str] = []
    binds: list[sa.BindParameter[Any]] = []
    for number, (table, columns, how) in enumerate(parts):
        statement, given = _pg_write(table, columns, how, f"p{number}")
        statements.append(statement)
        binds += given
    *first, last = statements
    with_ = ", ".join(f"w{number} AS ({sql})" for number, sql in enumerate(first))
    return sa.text((f"WITH {with_} " if first else "") + last).bindparams(*binds)


_MESSAGE_PARTS: Final = (("deliveries", "recipient"), ("message_pseudonyms", "pseudonym"))


@cache
def _pg_messages(columns: tuple[str, ...]) -> sa.TextClause:
    """Messages, their deliveries and pseudonyms in one statement; answers (cursor, id).

    A delivery or pseudonym row is given as (message id, value) and finds its message's
    cursor in the rows the messages' insert returned."""
    arrays, given_m = _pg_arrays("messages", columns, "m")
    binds = list(given_m)
    parts = [
        f"m AS (INSERT INTO messages ({_quoted(columns)}) SELECT * FROM {arrays} "  # noqa: S608
        "RETURNING cursor, id)"
    ]
    for number, (table, column) in enumerate(_MESSAGE_PARTS):
        given, more = _pg_arrays(table, (column,), f"v{number}")
        ids = sa.bindparam(f"v{number}id", type_=postgresql.ARRAY(sa.String))
        parts.append(
            f'w{number} AS (INSERT INTO "{table}" (cursor, "{column}") '  # noqa: S608
            f"SELECT m.cursor, v.value FROM unnest(CAST(:v{number}id AS VARCHAR[]), "
            f"{given.removeprefix('unnest(')} AS v (id, value) JOIN m ON m.id = v.id)"
        )
        binds += (*more, ids)
    statement = "WITH " + ", ".join(parts) + " SELECT cursor, id FROM m"  # noqa: S608
    return sa.text(statement).bindparams(*binds)


@cache
def _pg_numbered(table: str, key: str, columns: tuple[str, ...]) -> sa.TextClause:
    """Rows inserted each with the next key of the table's sequence; answers the keys in
    the order of the rows (``WITH ORDINALITY``), in one statement."""
    arrays, binds = _pg_arrays(table, columns)
    _checked(table, (key,))
    names = _quoted([*columns, "n"])
    return sa.text(
        f"WITH v AS MATERIALIZED (SELECT nextval(pg_get_serial_sequence('{table}', '{key}')) "  # noqa: S608
        f'AS "{key}", * FROM {arrays} WITH ORDINALITY AS u ({names})), '
        f'w AS (INSERT INTO "{table}" ({_quoted((key, *columns))}) '
        f'SELECT {_quoted((key, *columns))} FROM v) SELECT "{key}" FROM v ORDER BY n'
    ).bindparams(*binds)


class PgRows:
    """PostgreSQL: one ``unnest`` statement, so one round trip, per table or per
    :meth:`write_together`."""

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

    def insert(
        self, table: str, columns: Sequence[str], rows: list[Row], *, ignore: bool = False
    ) -> None:
        self.write_together([Part(table, tuple(columns), rows, "ignore" if ignore else "insert")])

    def insert_numbered(
        self, table: str, key: str, columns: Sequence[str], rows: list[Row]
    ) -> list[int]:
        """Insert ``rows``, each with the next key of the table's sequence; the keys, in
        order."""
        if not rows:
            return []
        statement = _pg_numbered(table, key, tuple(columns))
        return [int(row[0]) for row in self._conn.execute(statement, _columns(rows, len(columns)))]

    def update(self, table: str, key: str, columns: Sequence[str], rows: list[Row]) -> None:
        self.write_together([Part(table, (key, *columns), rows, "update")])

    def write_together(self, parts: Sequence[Part]) -> None:
        """Write every part in one statement, so one round trip (parts without rows are
        left out). The parts see the database as it was before the statement, not each
        other's rows: none may update a row another inserts."""
        given = [part for part in parts if part.rows]
        if not given:
            return
        statement = _pg_together(tuple((p.table, p.columns, p.how) for p in given))
        params: dict[str, list[Any]] = {}
        for number, part in enumerate(given):
            for name, values in _columns(part.rows, len(part.columns)).items():
                params[f"p{number}{name}"] = values
        self._conn.execute(statement, params)

    def insert_messages(
        self, columns: Sequence[str], rows: list[Row], deliveries: list[Row], pseudonyms: list[Row]
    ) -> list[int]:
        """Messages (their ``id`` first), with deliveries and pseudonyms given as (message
        id, recipient or pseudonym), in one statement; the messages' cursors, in order."""
        params = {f"m{name}": values for name, values in _columns(rows, len(columns)).items()}
        for number, extra in enumerate((deliveries, pseudonyms)):
            params[f"v{number}id"] = [row[0] for row in extra]
            params[f"v{number}c0"] = [row[1] for row in extra]
        found = self._conn.execute(_pg_messages(tuple(columns)), params).all()
        by_id = {row[1]: int(row[0]) for row in found}  # ids are distinct within a batch
        return [by_id[row[0]] for row in rows]


def _columns(rows: list[Row], width: int) -> dict[str, list[Any]]:
    return {f"c{number}": [row[number] for row in rows] for number in range(width)}


Rows = SqliteRows | PgRows


def rows_for(conn: sa.Connection) -> Rows:
    return PgRows(conn) if conn.dialect.name == "postgresql" else SqliteRows(conn)


MESSAGE_COLUMNS: Final = (
    "id", "sender", "kind", "created", "accepted_at", "envelope_fingerprint", "envelope", "size",
)  # fmt: skip
