"""Opening a version-1 state file as version 2 (:class:`clients.state.LocalState`).

Version 1 kept every received envelope (sealed to the organisation's KEM key) and sealed
sent payloads and outbox entries under one PayloadBox key. :func:`migrate_v1` runs when
such a file is opened, in one transaction and without the organisation's keys: the
tables whose form changed are rebuilt, each message is given its case, and the state
notes that sealing is due. :meth:`~clients.state.LocalState.reseal` (called by the
:class:`~clients.organisation.Organisation`, which holds the keys) then seals what
version 1 kept under the message keys and drops the envelopes, with :func:`reseal_rows`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from clients.errors import VerificationFailed
from clients.localbox import PayloadBox
from clients.stateschema import SCHEMA, SCHEMA_VERSION, header_facts
from protocol.envelope import Envelope
from protocol.errors import ProtocolError

# The version-1 table that the migration rebuilds (``CREATE TABLE IF NOT EXISTS`` keeps
# an old one as it was): their columns then.
V1_MESSAGES = (
    "id", "cursor", "sender", "kind", "created", "envelope", "received_at", "acked_at"
)  # fmt: skip


def reseal_rows(
    db: sqlite3.Connection,
    table: str,
    label: Callable[[tuple[Any, ...]], tuple[str, str]],
    legacy: PayloadBox,
    box: PayloadBox,
) -> None:
    """Seal every row of ``table`` (columns id, kind, sealed) again under its message key."""
    rows = db.execute(f"SELECT id, kind, sealed FROM {table}").fetchall()  # noqa: S608
    for row in rows:
        message_id, kind = label(row)
        try:
            payload = legacy.open(message_id, kind, bytes(row[2]))
        except VerificationFailed:
            continue  # did not open before either: left as it is
        db.execute(
            f"UPDATE {table} SET sealed = ? WHERE id = ?",  # noqa: S608
            (box.seal(message_id, kind, payload), message_id),
        )


def migrate_v1(db: sqlite3.Connection) -> None:
    """Version 1 -> 2, in one transaction, without the organisation's keys: the tables
    whose form changed are rebuilt (a received envelope stays, in ``envelope``, until
    :meth:`LocalState.reseal` seals what it holds under its message key and drops it),
    every message is given its case, and ``reseal`` is noted as due."""
    with db:
        db.execute("BEGIN IMMEDIATE")
        columns = tuple(r[1] for r in db.execute("PRAGMA table_info(messages)").fetchall())
        if columns == V1_MESSAGES:
            old = db.execute(
                "SELECT id, cursor, sender, kind, created, envelope, received_at, acked_at "
                "FROM messages"
            ).fetchall()
            db.execute("DROP TABLE messages")
            _create_tables(db)
            for row in old:
                _insert_v1_message(db, row)
        columns = tuple(r[1] for r in db.execute("PRAGMA table_info(sent_envelopes)"))
        if "sealed" not in columns:
            old = db.execute("SELECT id, envelope FROM sent_envelopes").fetchall()
            db.execute("DROP TABLE sent_envelopes")
            _create_tables(db)
            db.executemany("INSERT INTO sent_envelopes (id, envelope) VALUES (?, ?)", old)
        columns = tuple(r[1] for r in db.execute("PRAGMA table_info(sent_payloads)"))
        if "scope" not in columns:
            db.execute("ALTER TABLE sent_payloads ADD COLUMN scope TEXT")
        _give_scopes(db)
        db.execute(
            "INSERT INTO meta (key, value) VALUES ('reseal', '1'), ('schema_version', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )


def _create_tables(db: sqlite3.Connection) -> None:
    """``SCHEMA`` one statement at a time (``executescript`` would commit first)."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)


def _insert_v1_message(db: sqlite3.Connection, row: tuple[Any, ...]) -> None:
    doc = json.loads(row[5])
    try:
        fingerprint: str = Envelope.from_wire(doc).fingerprint
    except (ProtocolError, ValueError, TypeError):
        fingerprint = ""
    header = doc.get("header") if isinstance(doc, dict) else None
    facts = header_facts(header if isinstance(header, dict) else {})
    db.execute(
        "INSERT INTO messages (id, cursor, sender, kind, created, received_at, acked_at, "
        "scope, ref, case_ref, status, prev, recipient_keys, sender_cert, fingerprint, "
        "envelope) VALUES (?, ?, ?, ?, ?, ?, ?, '', ?, ?, ?, ?, ?, ?, ?, ?)",
        (row[0], row[1], row[2], row[3], row[4], row[6], row[7], facts["ref"],
         facts["case_ref"], facts["status"], facts["prev"], facts["recipient_keys"],
         facts["sender_cert"], fingerprint, row[5]),
    )  # fmt: skip


def _give_scopes(db: sqlite3.Connection) -> None:
    """The case of every migrated message, as ``LocalState._scope_of`` gives a new one:
    first those about nothing else, then the others oldest first."""
    rows = db.execute(
        "SELECT 'messages', id, case_ref, ref, created FROM messages WHERE scope = '' "
        "UNION ALL SELECT 'sent_payloads', id, case_ref, ref, created FROM sent_payloads "
        "WHERE scope IS NULL"
    ).fetchall()
    rows.sort(key=lambda r: (r[3] is not None, r[4], r[1]))
    for table, message_id, case, ref, _ in rows:
        if case:
            scope = f"case:{case}"
        elif not ref:
            scope = f"msg:{message_id}"
        else:
            found = db.execute(
                "SELECT scope FROM messages WHERE id = ? AND scope != '' UNION ALL "
                "SELECT scope FROM sent_payloads WHERE id = ? AND scope IS NOT NULL",
                (ref, ref),
            ).fetchone()
            scope = f"msg:{ref}" if found is None else str(found[0])
        db.execute(
            f"UPDATE {table} SET scope = ? WHERE id = ?",  # noqa: S608
            (scope, message_id),
        )
