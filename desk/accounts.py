"""The desk's own database: people, their second factors, what they read, account events.

One SQLite file (``desk.sqlite`` beside the organisation's state), created 0600, WAL,
``synchronous=FULL``, ``secure_delete``. It holds, per person:

* ``people``     id (what the hub's access log records as the user), name, roles, the
                 Argon2id hash of the password, whether it is a first password that
                 must be changed at the next login, whether the account is disabled, a
                 ``generation`` that every change of the account's credentials or state
                 raises (a session made under an older generation ends at once, in every
                 process: ``schakel desk user disable`` from a terminal included), the
                 language chosen, the TOTP secret sealed by the desk's sealing key and the
                 last time step used (a code is accepted once), and the failed-login count;
* ``webauthn``   each security key's credential id, public key and signature counter;
* ``reads``      which messages each person opened (the inbox's unread marks);
* ``account_log`` logins, failures, locks and account changes: who, what, when, from
                 which address; never a password, code, secret or session id.

No message content is kept here. The same file holds the coordinator's case labels and
the message -> case index with each signal's urgency (:mod:`desk.casebook`), both sealed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from desk.errors import AccountError, DeskError
from keys.errors import KeyFileError
from keys.keyfile import ensure_private_file
from protocol.auditlog import check_user
from protocol.errors import ProtocolError

ROLE_CASEWORKER = "caseworker"
ROLE_COORDINATOR = "coordinator"
ROLE_PRIVACY_OFFICER = "privacy_officer"
ROLE_ADMIN = "admin"
ROLES: tuple[str, ...] = (ROLE_CASEWORKER, ROLE_COORDINATOR, ROLE_PRIVACY_OFFICER, ROLE_ADMIN)
LOCALES: tuple[str, ...] = ("nl", "en")
MAX_NAME = 200
MAX_LOG_ROWS = 200

_SCHEMA = """
CREATE TABLE IF NOT EXISTS people (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, roles TEXT NOT NULL, password TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0, generation INTEGER NOT NULL DEFAULT 1,
    locale TEXT NOT NULL DEFAULT 'nl', totp_secret BLOB, totp_last_step INTEGER NOT NULL
    DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0, last_failure INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL,
    must_change INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS webauthn (
    credential_id BLOB PRIMARY KEY, person TEXT NOT NULL REFERENCES people (id),
    public_key BLOB NOT NULL, sign_count INTEGER NOT NULL, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS reads (
    message_id TEXT NOT NULL, person TEXT NOT NULL, at INTEGER NOT NULL,
    PRIMARY KEY (message_id, person));
CREATE TABLE IF NOT EXISTS account_log (
    id INTEGER PRIMARY KEY, at INTEGER NOT NULL, event TEXT NOT NULL, person TEXT,
    actor TEXT, address TEXT);
"""
_PERSON = (
    "SELECT id, name, roles, password, disabled, generation, locale, totp_secret, "
    "totp_last_step, failures, last_failure, locked_until, must_change FROM people"
)


@dataclass(frozen=True, slots=True)
class Person:
    id: str
    name: str
    roles: frozenset[str]
    password_hash: str
    disabled: bool
    generation: int
    locale: str
    totp_secret: bytes | None  # sealed
    totp_last_step: int
    failures: int
    last_failure: int
    locked_until: int
    must_change: bool = False  # a first password (set by an administrator): change it now

    def __repr__(self) -> str:
        return f"Person(id={self.id!r}, roles={sorted(self.roles)!r})"

    @property
    def has_second_factor(self) -> bool:
        return self.totp_secret is not None


@dataclass(frozen=True, slots=True)
class Credential:
    credential_id: bytes
    person: str
    public_key: bytes
    sign_count: int


@dataclass(frozen=True, slots=True)
class LogRow:
    at: int
    event: str
    person: str | None
    actor: str | None
    address: str | None


def check_person_id(value: str) -> str:
    """A person id the hub's access log can hold: 1-64 printable ASCII, no spaces."""
    try:
        return check_user(value)
    except ProtocolError as exc:
        raise AccountError("a person id is 1-64 printable ASCII characters without spaces") from exc


def check_roles(roles: Iterable[str]) -> frozenset[str]:
    chosen = frozenset(roles)
    unknown = chosen - set(ROLES)
    if unknown or not chosen:
        raise AccountError(f"roles: one or more of {', '.join(ROLES)}")
    return chosen


def check_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise AccountError(f"a name is 1-{MAX_NAME} printable characters")
    return name


class Accounts:
    """The desk database; one connection, used from the event loop's thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        _create_private(path)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            _add_missing_columns(self._db)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise DeskError(f"desk database {path} is not usable") from exc

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Accounts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- people ----------------------------------------------------------------------

    def add(
        self,
        person_id: str,
        name: str,
        roles: Iterable[str],
        password_hash: str,
        *,
        now: int,
        first_password: bool = False,
    ) -> Person:
        """Add a person; ``first_password``: the password was chosen for them (by an
        administrator) and must be changed at their first login."""
        person_id, name, chosen = check_person_id(person_id), check_name(name), check_roles(roles)
        try:
            self._db.execute(
                "INSERT INTO people (id, name, roles, password, created, must_change) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (person_id, name, ",".join(sorted(chosen)), password_hash, now,
                 int(first_password)),
            )  # fmt: skip
        except sqlite3.IntegrityError:
            raise AccountError(f"there is already a person {person_id!r}") from None
        return self.require(person_id)

    def person(self, person_id: str) -> Person | None:
        row = self._db.execute(_PERSON + " WHERE id = ?", (person_id,)).fetchone()
        return None if row is None else _person(row)

    def require(self, person_id: str) -> Person:
        person = self.person(person_id)
        if person is None:
            raise AccountError(f"no person {person_id[:64]!r} at this desk")
        return person

    def people(self) -> list[Person]:
        return [_person(row) for row in self._db.execute(_PERSON + " ORDER BY id").fetchall()]

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM people").fetchone()[0])

    def _change(self, person_id: str, assignments: str, values: tuple[object, ...]) -> None:
        done = self._db.execute(
            f"UPDATE people SET {assignments}, generation = generation + 1 WHERE id = ?",  # noqa: S608 - fixed text
            (*values, person_id),
        )
        if done.rowcount != 1:
            raise AccountError(f"no person {person_id[:64]!r} at this desk")

    def set_disabled(self, person_id: str, disabled: bool) -> None:
        self._change(person_id, "disabled = ?, failures = 0, locked_until = 0", (int(disabled),))

    def set_password(self, person_id: str, password_hash: str) -> None:
        """The password the person chose themselves (it need not be changed)."""
        self._change(
            person_id,
            "password = ?, must_change = 0, failures = 0, locked_until = 0",
            (password_hash,),
        )

    def reset_password(self, person_id: str, password_hash: str) -> None:
        """A new first password, set by an administrator: changed at the next login."""
        self._change(
            person_id,
            "password = ?, must_change = 1, failures = 0, locked_until = 0",
            (password_hash,),
        )

    def set_roles(self, person_id: str, roles: Iterable[str]) -> None:
        self._change(person_id, "roles = ?", (",".join(sorted(check_roles(roles))),))

    def reset_second_factor(self, person_id: str) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._change(person_id, "totp_secret = NULL, totp_last_step = 0", ())
            self._db.execute("DELETE FROM webauthn WHERE person = ?", (person_id,))

    def set_totp(self, person_id: str, sealed_secret: bytes, step: int) -> None:
        self._change(person_id, "totp_secret = ?, totp_last_step = ?", (sealed_secret, step))

    def use_totp_step(self, person_id: str, step: int) -> bool:
        """Record ``step`` as used; False when it (or a later one) was used before."""
        done = self._db.execute(
            "UPDATE people SET totp_last_step = ? WHERE id = ? AND totp_last_step < ?",
            (step, person_id, step),
        )
        return done.rowcount == 1

    def set_locale(self, person_id: str, locale: str) -> None:
        if locale not in LOCALES:
            raise AccountError(f"language: one of {', '.join(LOCALES)}")
        self._db.execute("UPDATE people SET locale = ? WHERE id = ?", (locale, person_id))

    # -- failed logins ---------------------------------------------------------------

    def note_failure(self, person_id: str, *, now: int, lock_after: int, lock_seconds: int) -> int:
        """Count a failed login; lock the account at ``lock_after``; the new count."""
        row = self._db.execute(
            "UPDATE people SET failures = failures + 1, last_failure = ?, locked_until = "
            "CASE WHEN failures + 1 >= ? THEN ? ELSE locked_until END WHERE id = ? "
            "RETURNING failures",
            (now, lock_after, now + lock_seconds, person_id),
        ).fetchone()
        return 0 if row is None else int(row[0])

    def clear_failures(self, person_id: str) -> None:
        self._db.execute(
            "UPDATE people SET failures = 0, locked_until = 0 WHERE id = ?", (person_id,)
        )

    # -- security keys ---------------------------------------------------------------

    def add_credential(self, credential: Credential, *, now: int) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO webauthn (credential_id, person, public_key, sign_count, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    credential.credential_id,
                    credential.person,
                    credential.public_key,
                    credential.sign_count,
                    now,
                ),
            )
            self._db.execute(
                "UPDATE people SET generation = generation + 1 WHERE id = ?", (credential.person,)
            )

    def credentials(self, person_id: str) -> list[Credential]:
        rows = self._db.execute(
            "SELECT credential_id, person, public_key, sign_count FROM webauthn WHERE person = ?",
            (person_id,),
        ).fetchall()
        return [Credential(bytes(r[0]), str(r[1]), bytes(r[2]), int(r[3])) for r in rows]

    def with_security_keys(self) -> set[str]:
        """The people who have at least one security key."""
        rows = self._db.execute("SELECT DISTINCT person FROM webauthn").fetchall()
        return {str(r[0]) for r in rows}

    def update_sign_count(self, credential_id: bytes, count: int) -> None:
        self._db.execute(
            "UPDATE webauthn SET sign_count = ? WHERE credential_id = ?", (count, credential_id)
        )

    # -- reads -----------------------------------------------------------------------

    def mark_read(self, message_id: str, person_id: str, *, now: int) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO reads (message_id, person, at) VALUES (?, ?, ?)",
            (message_id, person_id, now),
        )

    def read_by(self, person_id: str, message_ids: Iterable[str]) -> set[str]:
        ids = list(message_ids)
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(
            f"SELECT message_id FROM reads WHERE person = ? AND message_id IN ({marks})",  # noqa: S608
            (person_id, *ids),
        ).fetchall()
        return {str(r[0]) for r in rows}

    def read_by_anyone(self, message_ids: Iterable[str]) -> set[str]:
        """Which of ``message_ids`` a person at this desk has opened."""
        ids = list(message_ids)
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(
            f"SELECT DISTINCT message_id FROM reads WHERE message_id IN ({marks})",  # noqa: S608
            ids,
        ).fetchall()
        return {str(r[0]) for r in rows}

    # -- the account log -------------------------------------------------------------

    def log(
        self,
        event: str,
        *,
        now: int,
        person: str | None = None,
        actor: str | None = None,
        address: str | None = None,
    ) -> None:
        self._db.execute(
            "INSERT INTO account_log (at, event, person, actor, address) VALUES (?, ?, ?, ?, ?)",
            (now, event, None if person is None else person[:64], actor, address),
        )

    def log_rows(self, limit: int = MAX_LOG_ROWS) -> list[LogRow]:
        rows = self._db.execute(
            "SELECT at, event, person, actor, address FROM account_log ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [LogRow(int(r[0]), str(r[1]), r[2], r[3], r[4]) for r in rows]


def _person(row: tuple[object, ...]) -> Person:
    return Person(
        id=str(row[0]),
        name=str(row[1]),
        roles=frozenset(str(row[2]).split(",")),
        password_hash=str(row[3]),
        disabled=bool(row[4]),
        generation=int(row[5]),  # type: ignore[call-overload]
        locale=str(row[6]),
        totp_secret=None if row[7] is None else bytes(row[7]),  # type: ignore[call-overload]
        totp_last_step=int(row[8]),  # type: ignore[call-overload]
        failures=int(row[9]),  # type: ignore[call-overload]
        last_failure=int(row[10]),  # type: ignore[call-overload]
        locked_until=int(row[11]),  # type: ignore[call-overload]
        must_change=bool(row[12]),
    )


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """A desk database made by an earlier version gets the columns added since."""
    have = {str(row[1]) for row in db.execute("PRAGMA table_info(people)").fetchall()}
    if "must_change" not in have:
        db.execute("ALTER TABLE people ADD COLUMN must_change INTEGER NOT NULL DEFAULT 0")


def _create_private(path: Path) -> None:
    """Create ``path`` 0600 if missing (never through a symlink); tighten it if present."""
    try:
        ensure_private_file(path)
    except OSError as exc:
        raise DeskError(f"cannot open the desk database {path}: {exc.strerror}") from exc
    except KeyFileError as exc:
        raise DeskError(f"desk database {path} is not a regular file") from exc
