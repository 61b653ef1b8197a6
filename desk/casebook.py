"""The coordinator's own notes on cases, in the desk's database (never at the hub).

Two tables beside the accounts (:mod:`desk.accounts`, same 0600 file):

* ``case_labels``    per case reference, the label a coordinator gave it, sealed by the
                     desk's sealing key, with who set it and when;
* ``case_messages``  the local index message id -> case reference, with the signal's
                     urgency sealed, filled from the case views and the event feed as
                     they are read, so that the cases page shows each case's highest
                     urgency without decrypting its signals again;
* ``case_events``    the hub's events a coordinator follows (matches, referral steps,
                     escalations): kind, time, case, message and step, never content;
* ``urgent_signals`` the signals received with urgency high or immediate danger (the
                     urgency sealed), and in ``urgent_cursor`` the last inbox cursor
                     looked through for them;
* ``case_cursor``    the last event id of the hub's event feed taken into the index.

Case references are random and mean nothing outside the hub; labels and urgencies are
sealed like the TOTP secrets, so a copy of the database alone reads neither. A label is
sealed first under the key of its case (``case:<ref>`` in the organisation's message-key
file, :mod:`clients.localbox`) when the desk has one (``label_keys``): when the case's
retention period ends that key is destroyed with the keys of its messages, and no copy
of the database reads the label again (:mod:`desk.retention`).
"""

from __future__ import annotations

import sqlite3
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from desk.errors import DeskError
from desk.factors import Sealer

MAX_LABEL = 80
CASE_KEYED = b"\x02"  # a label sealed under its case's key first (then by the Sealer)
URGENT = ("high", "immediate_danger")  # a signal of this urgency is brought to attention
MAX_URGENT = 50  # urgent signals looked at for alerts, newest first
MAX_EVENTS = 200  # the events page shows at most this many, newest first
URGENCY_RANK: Mapping[str, int] = {"low": 0, "normal": 1, "high": 2, "immediate_danger": 3}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS case_labels (
    "case" TEXT PRIMARY KEY,
    label BLOB NOT NULL,
    set_by TEXT NOT NULL,
    set_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS case_messages (
    message TEXT PRIMARY KEY,
    "case" TEXT NOT NULL,
    urgency BLOB
);
CREATE INDEX IF NOT EXISTS ix_case_messages_case ON case_messages ("case");
CREATE TABLE IF NOT EXISTS case_events (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    at INTEGER NOT NULL,
    "case" TEXT,
    message TEXT,
    step TEXT
);
CREATE TABLE IF NOT EXISTS urgent_signals (
    message TEXT PRIMARY KEY,
    urgency BLOB NOT NULL,
    received INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS urgent_cursor (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    cursor INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS case_cursor (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    event INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class KeptEvent:
    """An event of the hub's feed as the events page shows it (no content)."""

    id: int
    kind: str
    at: int
    case: str | None
    message: str | None
    step: str | None


def label_problem(label: str) -> str | None:
    """Why ``label`` can not be a case's label (a code of ``CASE_ERRORS``), or None."""
    if len(label) > MAX_LABEL:
        return "label-long"
    if any(unicodedata.category(c).startswith("C") for c in label):
        return "invisible"  # controls, bidirectional overrides, format characters
    return None


class LabelKeys(Protocol):
    """Seals a label under its case's own key (``desk.adapter.CaseLabelKeys``)."""

    def seal(self, case: str, label: str) -> bytes: ...

    def open(self, case: str, sealed: bytes) -> str | None: ...


class CaseBook:
    """Labels and the message -> case index of one desk."""

    def __init__(self, path: Path, sealer: Sealer, label_keys: LabelKeys | None = None) -> None:
        self._sealer = sealer
        self._label_keys = label_keys
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise DeskError(f"desk database {path} is not usable") from exc

    def close(self) -> None:
        self._db.close()

    # -- labels ------------------------------------------------------------------------

    def set_label(self, case: str, label: str, *, person: str, now: int) -> None:
        """Give ``case`` a label (checked by :func:`label_problem`); '' removes it."""
        if label_problem(label) is not None:
            raise DeskError("label not acceptable")
        if not label:
            self._db.execute('DELETE FROM case_labels WHERE "case" = ?', (case,))
            return
        inner = label.encode()
        if self._label_keys is not None:
            inner = CASE_KEYED + self._label_keys.seal(case, label)
        sealed = self._sealer.seal(f"case-label/{case}", inner)
        self._db.execute(
            'INSERT INTO case_labels ("case", label, set_by, set_at) VALUES (?, ?, ?, ?) '
            'ON CONFLICT ("case") DO UPDATE SET label = excluded.label, '
            "set_by = excluded.set_by, set_at = excluded.set_at",
            (case, sealed, person, now),
        )

    def labels(self, cases: Iterable[str]) -> dict[str, str]:
        """The label of each of ``cases`` that has one."""
        found = {}
        for case in set(cases):
            row = self._db.execute(
                'SELECT label FROM case_labels WHERE "case" = ?', (case,)
            ).fetchone()
            if row is None:
                continue
            opened = self._sealer.open(f"case-label/{case}", bytes(row[0]))
            label = None if opened is None else self._case_label(case, opened)
            if label is not None:
                found[case] = label
        return found

    def _case_label(self, case: str, opened: bytes) -> str | None:
        """A label as the Sealer opened it: under its case's key too, when so sealed (None
        once that key was destroyed: the case was erased)."""
        if not opened.startswith(CASE_KEYED):
            return opened.decode("utf-8", "replace")
        if self._label_keys is None:
            return None
        return self._label_keys.open(case, opened[1:])

    # -- the index message -> case -----------------------------------------------------

    def index(self, message: str, case: str, urgency: str | None = None) -> None:
        """``message`` belongs to ``case``; a signal's ``urgency`` when it is known here
        (an urgency known before is kept when this one is not)."""
        sealed = None
        if urgency is not None and urgency in URGENCY_RANK:
            sealed = self._sealer.seal(f"urgency/{message}", urgency.encode())
        self._db.execute(
            'INSERT INTO case_messages (message, "case", urgency) VALUES (?, ?, ?) '
            'ON CONFLICT (message) DO UPDATE SET "case" = excluded."case", '
            "urgency = COALESCE(excluded.urgency, case_messages.urgency)",
            (message, case, sealed),
        )

    def moved(self, cases: Iterable[str], into: str) -> None:
        """Every message indexed under one of ``cases`` now belongs to ``into`` (a merge)."""
        for case in set(cases):
            self._db.execute('UPDATE case_messages SET "case" = ? WHERE "case" = ?', (into, case))

    def indexed(self, cases: Iterable[str]) -> set[str]:
        """Which of ``cases`` have at least one message in the index."""
        return {
            case
            for case in set(cases)
            if self._db.execute(
                'SELECT 1 FROM case_messages WHERE "case" = ? LIMIT 1', (case,)
            ).fetchone()
        }

    def urgency(self, cases: Iterable[str]) -> dict[str, str]:
        """The highest urgency of the signals indexed under each of ``cases``."""
        found: dict[str, str] = {}
        for case in set(cases):
            rows = self._db.execute(
                'SELECT message, urgency FROM case_messages WHERE "case" = ? '
                "AND urgency IS NOT NULL",
                (case,),
            ).fetchall()
            for message, sealed in rows:
                opened = self._sealer.open(f"urgency/{message}", bytes(sealed))
                code = "" if opened is None else opened.decode("ascii", "replace")
                if code in URGENCY_RANK and (
                    case not in found or URGENCY_RANK[code] > URGENCY_RANK[found[case]]
                ):
                    found[case] = code
        return found

    @property
    def event_cursor(self) -> int:
        row = self._db.execute("SELECT event FROM case_cursor WHERE one = 1").fetchone()
        return 0 if row is None else int(row[0])

    def set_event_cursor(self, event: int) -> None:
        self._db.execute(
            "INSERT INTO case_cursor (one, event) VALUES (1, ?) "
            "ON CONFLICT (one) DO UPDATE SET event = MAX(event, excluded.event)",
            (event,),
        )

    # -- the events --------------------------------------------------------------------

    def add_event(
        self,
        event: int,
        kind: str,
        at: int,
        case: str | None,
        message: str | None,
        step: str | None,
    ) -> None:
        """Keep one event of the hub's feed (taken in once: its id is its key)."""
        self._db.execute(
            'INSERT OR IGNORE INTO case_events (id, kind, at, "case", message, step) '
            "VALUES (?, ?, ?, ?, ?, ?)",
            (event, kind, at, case, message, step),
        )

    def events(self, limit: int = MAX_EVENTS) -> list[KeptEvent]:
        """The events kept, newest first, at most ``limit``."""
        rows = self._db.execute(
            'SELECT id, kind, at, "case", message, step FROM case_events ORDER BY id DESC LIMIT ?',
            (max(0, min(limit, MAX_EVENTS)),),
        ).fetchall()
        return [KeptEvent(*row) for row in rows]

    # -- retention (desk.retention) ------------------------------------------------------

    def forget(self, *, cases: Iterable[str], messages: Iterable[str]) -> None:
        """Forget what this desk kept about erased cases and messages: labels, the index,
        events and urgent signals (``secure_delete`` overwrites them in the file)."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for case in set(cases):
                for table in ("case_labels", "case_messages", "case_events"):
                    self._db.execute(f'DELETE FROM {table} WHERE "case" = ?', (case,))  # noqa: S608
            for message in set(messages):
                for table, column in (("case_messages", "message"), ("case_events", "message"),
                                      ("urgent_signals", "message")):  # fmt: skip
                    self._db.execute(f"DELETE FROM {table} WHERE {column} = ?", (message,))  # noqa: S608

    # -- signals of high urgency ---------------------------------------------------------

    def add_urgent(self, message: str, urgency: str, received: int) -> None:
        """Keep a received signal of urgency ``high`` or ``immediate_danger`` (kept in the
        order received: :meth:`urgent` lists the last kept first)."""
        if urgency not in URGENT:
            raise DeskError("not an urgent signal")
        sealed = self._sealer.seal(f"urgent/{message}", urgency.encode())
        self._db.execute(
            "INSERT OR IGNORE INTO urgent_signals (message, urgency, received) VALUES (?, ?, ?)",
            (message, sealed, received),
        )

    def urgent(self, limit: int = MAX_URGENT) -> list[tuple[str, str, int]]:
        """(message, urgency, received) of the urgent signals kept, the last kept first."""
        rows = self._db.execute(
            "SELECT message, urgency, received FROM urgent_signals ORDER BY rowid DESC LIMIT ?",
            (max(0, min(limit, MAX_URGENT)),),
        ).fetchall()
        found = []
        for message, sealed, received in rows:
            opened = self._sealer.open(f"urgent/{message}", bytes(sealed))
            code = "" if opened is None else opened.decode("ascii", "replace")
            if code in URGENT:
                found.append((str(message), code, int(received)))
        return found

    @property
    def urgent_cursor(self) -> int:
        row = self._db.execute("SELECT cursor FROM urgent_cursor WHERE one = 1").fetchone()
        return 0 if row is None else int(row[0])

    def set_urgent_cursor(self, cursor: int) -> None:
        self._db.execute(
            "INSERT INTO urgent_cursor (one, cursor) VALUES (1, ?) "
            "ON CONFLICT (one) DO UPDATE SET cursor = MAX(cursor, excluded.cursor)",
            (cursor,),
        )
