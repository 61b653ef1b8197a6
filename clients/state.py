"""The organisation's local state: one SQLite file, readable by its owner only.

What it keeps, and nothing more:

* ``meta``       the inbox cursor (the highest cursor fully processed) and the id of
                 the message taken there (``inbox_cursor_id``), which the hub must still
                 name at that cursor (a hub restored from a backup does not), and the
                 cursor at which it was last found not to (``inbox_went_back``);
* ``messages``   every envelope received, as its canonical wire JSON (still
                 encrypted), with when it was received and acknowledged; the
                 primary key on the message id is the dedupe: a message seen
                 twice is stored once;
* ``rejected``   messages that failed verification: id, cursor, reason category;
* ``directory``  the verified directory cache: organisation -> certificate DER,
                 when verified, and the fingerprint of the root it was verified
                 against (an entry for another root is never returned). Its ``bundle``
                 column is no longer written: a bundle is fetched fresh for each send;
* ``bundle_floors`` per organisation (and root), the validity start and fingerprint
                 of the newest key bundle this client verified for it; it only
                 moves forward, so a hub can not roll a rotated bundle back;
* ``certificates`` every sender certificate a stored message was verified with,
                 by fingerprint, so that ``show`` can open the envelope again later;
* ``sent``       the ids of messages this organisation sent, with recipients;
* ``sent_envelopes`` the envelope of each message sent (wire JSON, encrypted to its
                 recipients), so that one the hub lost can be sent again unchanged;
* ``chains``     per recipient, the id of the last message the hub accepted from this
                 organisation for it: the next envelope to it names it (header ``prev``);
* ``missing``    messages a sender named as a predecessor that neither this client nor
                 the hub holds (withheld): id, sender, the message that named it, when;
* ``sent_payloads`` what this organisation wrote in the signals, referrals and statuses
                 it sent (it can not open its own envelopes: they are sealed to the
                 recipients), encrypted at rest by :class:`~clients.localbox.PayloadBox`,
                 with the cleartext header fields ``ref``, ``case`` and ``status`` beside it;
* ``outbox``     what was written but has not reached the hub yet (:mod:`clients.outbox`):
                 id, kind, recipients, times, state and the last problem in clear, the
                 payload and (once sealed) the envelope sealed by the PayloadBox;
* ``kept_payloads`` the payloads of received messages whose KEM key was deleted after
                 a key rotation, sealed by the PayloadBox, so that ``show`` still reads them;
* ``meta``       also the highest CRL number seen, so a hub can not serve an older list,
                 and the last verified signed tree head of the hub's access log
                 (``tree_head``, its wire JSON), which only ever grows;
* ``hub_certificates`` the hub's log-signing certificates by fingerprint, each
                 verified against the pinned root (role ``hub``), so that heads and
                 exports can be checked offline.

No plaintext is stored: envelopes are decrypted again when shown, and every payload
kept is PayloadBox ciphertext. The file is
created 0600 (SQLite gives its WAL and shared-memory files the same mode),
runs in WAL mode with ``synchronous=FULL`` and ``secure_delete``.
Time is passed in by the caller, as integer Unix seconds.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clients.errors import ClientError
from keys.errors import KeyFileError
from keys.keyfile import ensure_private_file
from protocol.auditlog import TreeHead
from protocol.errors import ProtocolError

SCHEMA_VERSION = 1
MAX_ALERTS = 100
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY, cursor INTEGER NOT NULL, sender TEXT NOT NULL, kind TEXT NOT NULL,
    created INTEGER NOT NULL, envelope TEXT NOT NULL, received_at INTEGER NOT NULL,
    acked_at INTEGER);
CREATE TABLE IF NOT EXISTS rejected (
    id TEXT PRIMARY KEY, cursor INTEGER NOT NULL, reason TEXT NOT NULL, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS directory (
    org TEXT PRIMARY KEY, root TEXT NOT NULL, certificate BLOB NOT NULL, bundle TEXT,
    verified_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS certificates (
    fingerprint TEXT PRIMARY KEY, org TEXT NOT NULL, root TEXT NOT NULL, der BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sent (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, recipients TEXT NOT NULL,
    created INTEGER NOT NULL, sent_at INTEGER NOT NULL, accepted INTEGER);
CREATE TABLE IF NOT EXISTS hub_certificates (
    fingerprint TEXT PRIMARY KEY, root TEXT NOT NULL, der BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sent_payloads (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, ref TEXT, case_ref TEXT, status TEXT,
    created INTEGER NOT NULL, sealed BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS bundle_floors (
    org TEXT NOT NULL, root TEXT NOT NULL, not_before INTEGER NOT NULL,
    fingerprint TEXT NOT NULL, PRIMARY KEY (org, root));
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, recipients TEXT NOT NULL,
    created INTEGER NOT NULL, queued_at INTEGER NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL, tried_at INTEGER, problem TEXT, sealed BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS kept_payloads (id TEXT PRIMARY KEY, sealed BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sent_envelopes (id TEXT PRIMARY KEY, envelope TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chains (recipient TEXT PRIMARY KEY, last_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS missing (
    id TEXT PRIMARY KEY, sender TEXT NOT NULL, named_by TEXT NOT NULL, at INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A received envelope as kept locally (``envelope`` is its wire JSON, encrypted)."""

    id: str
    cursor: int
    sender: str
    kind: str
    created: int
    envelope: dict[str, Any]
    received_at: int
    acked_at: int | None


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """A cached, verified certificate of one organisation."""

    org: str
    root: str
    certificate: bytes
    verified_at: int


@dataclass(frozen=True, slots=True)
class BundleFloor:
    """The newest key bundle verified for an organisation: older ones are refused."""

    not_before: int
    fingerprint: str


@dataclass(frozen=True, slots=True, repr=False)
class OutboxRow:
    """One outbox entry as kept; ``sealed`` is PayloadBox ciphertext (see clients.outbox)."""

    id: str
    kind: str
    recipients: tuple[str, ...]
    created: int
    queued_at: int
    state: str
    attempts: int
    tried_at: int | None
    problem: str | None
    sealed: bytes

    def __repr__(self) -> str:
        return f"OutboxRow(id={self.id!r}, kind={self.kind!r}, state={self.state!r})"


@dataclass(frozen=True, slots=True)
class SentMessage:
    id: str
    kind: str
    recipients: tuple[str, ...]
    created: int
    sent_at: int
    accepted: int | None


@dataclass(frozen=True, slots=True)
class MissingMessage:
    """A message its sender named as sent before another (``named_by``) that neither this
    client nor the hub holds: withheld or lost on the way. No content, ever."""

    id: str
    sender: str
    named_by: str
    at: int


@dataclass(frozen=True, slots=True, repr=False)
class SentPayload:
    """A payload this organisation sent, still sealed by :class:`PayloadBox`."""

    id: str
    kind: str
    ref: str | None
    case: str | None
    status: str | None
    created: int
    sealed: bytes

    def __repr__(self) -> str:
        return f"SentPayload(id={self.id!r}, kind={self.kind!r}, status={self.status!r})"


def _create_private(path: Path) -> None:
    """Create ``path`` 0600 if missing (never through a symlink); tighten it if present."""
    try:
        ensure_private_file(path)
    except OSError as exc:
        raise ClientError(f"cannot open local state {path}: {exc.strerror}") from exc
    except KeyFileError as exc:
        raise ClientError(f"local state {path} is not a regular file") from exc


class LocalState:
    """One local SQLite file; use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        _create_private(self.path)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.executescript(_SCHEMA)
            self._check_version()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise ClientError(f"local state {self.path} is not a usable database") from exc
        except BaseException:
            self._db.close()
            raise

    def _check_version(self) -> None:
        found = self._get_meta("schema_version")
        if found is None:
            self._set_meta("schema_version", str(SCHEMA_VERSION))
        elif found != str(SCHEMA_VERSION):
            raise ClientError(f"local state {self.path} has unsupported version {found}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LocalState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # -- inbox cursor ------------------------------------------------------------------

    @property
    def cursor(self) -> int:
        """The highest inbox cursor fully processed (0 at first)."""
        value = self._get_meta("inbox_cursor")
        return 0 if value is None else int(value)

    @property
    def cursor_id(self) -> str | None:
        """The id of the message taken at :attr:`cursor` (None when unknown)."""
        return self.inbox_position()[1]

    def inbox_position(self) -> tuple[int, str | None]:
        """(:attr:`cursor`, :attr:`cursor_id`), read together: another process that
        moves the cursor meanwhile can not pair one's cursor with the other's id."""
        rows = dict(
            self._db.execute(
                "SELECT key, value FROM meta WHERE key IN ('inbox_cursor', 'inbox_cursor_id')"
            ).fetchall()
        )
        return int(rows.get("inbox_cursor") or 0), rows.get("inbox_cursor_id") or None

    def advance_cursor(self, cursor: int, message_id: str | None = None) -> None:
        """Move the cursor forward to ``cursor``, where the hub had ``message_id`` (None:
        an entry whose id did not parse); it never moves back."""
        if cursor > self.cursor:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._set_meta("inbox_cursor", str(cursor))
                self._set_meta("inbox_cursor_id", message_id or "")

    def rewind_inbox(self) -> None:
        """Read the inbox from its start again (after a restore of the hub was confirmed):
        the messages held stay, and are not taken twice."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._set_meta("inbox_cursor", "0")
            self._set_meta("inbox_cursor_id", "")
            self._set_meta("inbox_went_back", "")

    @property
    def went_back(self) -> int | None:
        """The cursor at which the hub's inbox was last found to have gone back (None: it
        was not, or the inbox was read since without finding it)."""
        value = self._get_meta("inbox_went_back")
        return int(value) if value else None

    def note_went_back(self, cursor: int | None) -> None:
        """Record (or with None, clear) that the hub's inbox went back at ``cursor``."""
        if cursor is not None or self.went_back is not None:
            self._set_meta("inbox_went_back", "" if cursor is None else str(cursor))

    # -- received messages -------------------------------------------------------------

    def seen(self, message_id: str) -> bool:
        """True if the message was stored or rejected before."""
        row = self._db.execute(
            "SELECT 1 FROM messages WHERE id = ? UNION ALL SELECT 1 FROM rejected WHERE id = ?",
            (message_id, message_id),
        ).fetchone()
        return row is not None

    def store_message(
        self,
        *,
        message_id: str,
        cursor: int,
        sender: str,
        kind: str,
        created: int,
        envelope: dict[str, Any],
        now: int,
    ) -> bool:
        """Keep an envelope; False (and nothing changed) if that id is already stored."""
        text = json.dumps(envelope, sort_keys=True, separators=(",", ":"))
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            done = self._db.execute(
                "INSERT OR IGNORE INTO messages "
                "(id, cursor, sender, kind, created, envelope, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (message_id, cursor, sender, kind, created, text, now),
            )
            self._db.execute("DELETE FROM rejected WHERE id = ?", (message_id,))
            self._db.execute("DELETE FROM missing WHERE id = ?", (message_id,))
        return done.rowcount == 1

    def mark_acked(self, message_id: str, *, now: int) -> None:
        self._db.execute(
            "UPDATE messages SET acked_at = ? WHERE id = ? AND acked_at IS NULL", (now, message_id)
        )

    def message(self, message_id: str) -> StoredMessage | None:
        row = self._db.execute(
            "SELECT id, cursor, sender, kind, created, envelope, received_at, acked_at "
            "FROM messages WHERE id = ?",
            (message_id,),
        ).fetchone()
        return None if row is None else _stored(row)

    def messages(self) -> list[StoredMessage]:
        """Every stored message, by cursor."""
        rows = self._db.execute(
            "SELECT id, cursor, sender, kind, created, envelope, received_at, acked_at "
            "FROM messages ORDER BY cursor, id"
        ).fetchall()
        return [_stored(row) for row in rows]

    def message_page(self, offset: int, limit: int) -> list[StoredMessage]:
        """One page of stored messages, newest (highest cursor) first."""
        rows = self._db.execute(
            "SELECT id, cursor, sender, kind, created, envelope, received_at, acked_at "
            "FROM messages ORDER BY cursor DESC, id DESC LIMIT ? OFFSET ?",
            (max(0, limit), max(0, offset)),
        ).fetchall()
        return [_stored(row) for row in rows]

    def message_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM messages").fetchone()[0])

    def messages_of_kind(self, kind: str) -> list[StoredMessage]:
        """Every stored message of ``kind`` (``status``: to follow referrals), by cursor."""
        rows = self._db.execute(
            "SELECT id, cursor, sender, kind, created, envelope, received_at, acked_at "
            "FROM messages WHERE kind = ? ORDER BY cursor, id",
            (kind,),
        ).fetchall()
        return [_stored(row) for row in rows]

    def record_rejected(self, message_id: str, *, cursor: int, reason: str, now: int) -> None:
        self._db.execute(
            "INSERT INTO rejected (id, cursor, reason, at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET reason = excluded.reason, at = excluded.at",
            (message_id, cursor, reason, now),
        )

    def rejected(self) -> list[tuple[str, int, str]]:
        """(message id, cursor, reason category) of every rejected message."""
        rows = self._db.execute(
            "SELECT id, cursor, reason FROM rejected ORDER BY cursor"
        ).fetchall()
        return [(str(r[0]), int(r[1]), str(r[2])) for r in rows]

    def record_missing(self, message_id: str, *, sender: str, named_by: str, now: int) -> None:
        """A predecessor that could not be found; kept until the message arrives."""
        self._db.execute(
            "INSERT OR IGNORE INTO missing (id, sender, named_by, at) VALUES (?, ?, ?, ?)",
            (message_id, sender, named_by, now),
        )

    def missing(self) -> list[MissingMessage]:
        """Every predecessor still missing, oldest report first."""
        rows = self._db.execute(
            "SELECT id, sender, named_by, at FROM missing ORDER BY at, id"
        ).fetchall()
        return [MissingMessage(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]

    # -- directory cache ---------------------------------------------------------------

    def cache_directory(self, org: str, *, root: str, certificate: bytes, now: int) -> None:
        """Remember a certificate of ``org``, verified against ``root`` at ``now``."""
        self._db.execute(
            "INSERT INTO directory (org, root, certificate, bundle, verified_at) "
            "VALUES (?, ?, ?, NULL, ?) ON CONFLICT (org) DO UPDATE SET root = excluded.root, "
            "certificate = excluded.certificate, bundle = NULL, "
            "verified_at = excluded.verified_at",
            (org, root, certificate, now),
        )

    def cached_directory(self, org: str, *, root: str) -> DirectoryEntry | None:
        """The cached entry of ``org``, or None if absent or verified against another root."""
        row = self._db.execute(
            "SELECT org, root, certificate, verified_at FROM directory WHERE org = ?",
            (org,),
        ).fetchone()
        if row is None or row[1] != root:
            return None
        return DirectoryEntry(str(row[0]), str(row[1]), bytes(row[2]), int(row[3]))

    def forget_directory(self, org: str) -> None:
        self._db.execute("DELETE FROM directory WHERE org = ?", (org,))

    def bundle_floor(self, org: str, *, root: str) -> BundleFloor | None:
        """The newest bundle verified for ``org`` under ``root``, or None before the first."""
        row = self._db.execute(
            "SELECT not_before, fingerprint FROM bundle_floors WHERE org = ? AND root = ?",
            (org, root),
        ).fetchone()
        return None if row is None else BundleFloor(int(row[0]), str(row[1]))

    def raise_bundle_floor(self, org: str, *, root: str, not_before: int, fingerprint: str) -> None:
        """Record a verified bundle of ``org``; the floor only ever moves to a newer one."""
        self._db.execute(
            "INSERT INTO bundle_floors (org, root, not_before, fingerprint) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (org, root) DO UPDATE SET not_before = excluded.not_before, "
            "fingerprint = excluded.fingerprint WHERE excluded.not_before > not_before",
            (org, root, not_before, fingerprint),
        )

    def remember_certificate(self, fingerprint: str, *, org: str, root: str, der: bytes) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO certificates (fingerprint, org, root, der) VALUES (?, ?, ?, ?)",
            (fingerprint, org, root, der),
        )

    def certificate(self, fingerprint: str, *, root: str) -> bytes | None:
        """The DER of a remembered certificate, or None if absent or under another root."""
        row = self._db.execute(
            "SELECT der FROM certificates WHERE fingerprint = ? AND root = ?", (fingerprint, root)
        ).fetchone()
        return None if row is None else bytes(row[0])

    @property
    def crl_number(self) -> int:
        """The highest revocation-list number seen (0 when none was)."""
        value = self._get_meta("crl_number")
        return 0 if value is None else int(value)

    def note_crl_number(self, number: int) -> None:
        if number > self.crl_number:
            self._set_meta("crl_number", str(number))

    @property
    def oprf_version(self) -> int:
        """The highest pseudonym version of the pseudonymisation services this client used
        (0 when none): the network is on the OPRF, and a hub that stops serving that key
        set is refused, never answered by falling back to a linking key."""
        value = self._get_meta("oprf_version")
        return 0 if value is None else int(value)

    def note_oprf_version(self, version: int) -> None:
        if version > self.oprf_version:
            self._set_meta("oprf_version", str(version))

    # -- the hub's access log ----------------------------------------------------------

    @property
    def tree_head(self) -> TreeHead | None:
        """The last signed tree head this client verified (None before the first)."""
        value = self._get_meta("tree_head")
        if value is None:
            return None
        try:
            return TreeHead.from_wire(json.loads(value))
        except (ValueError, ProtocolError) as exc:
            raise ClientError(f"local state {self.path} holds a damaged tree head") from exc

    def keep_tree_head(self, head: TreeHead) -> None:
        """Keep ``head`` (already verified by the caller) unless a larger one is kept."""
        text = json.dumps(head.to_wire(), sort_keys=True, separators=(",", ":"))
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            kept = self.tree_head
            if kept is None or head.size >= kept.size:
                self._set_meta("tree_head", text)

    # -- witnessing (clients.witnessing) ----------------------------------------------

    def witness_policy(self) -> dict[str, Any] | None:
        """The wire form of the highest-numbered witness policy this client verified."""
        value = self._get_meta("witness_policy")
        return None if value is None else dict(json.loads(value))

    def keep_witness_policy(self, wire: dict[str, Any], number: int) -> bool:
        """Keep a verified policy unless one with this or a higher number is kept."""
        text = json.dumps(wire, sort_keys=True, separators=(",", ":"))
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            kept = self.witness_policy()
            if kept is not None and int(kept["number"]) >= number:
                return False
            self._set_meta("witness_policy", text)
            return True

    def retention_policy(self) -> dict[str, Any] | None:
        """The highest-numbered retention policy this client verified (wire form), or None."""
        value = self._get_meta("retention_policy")
        return None if value is None else dict(json.loads(value))

    def keep_retention_policy(self, wire: dict[str, Any], number: int) -> bool:
        """Keep a verified retention policy unless one with this or a higher number is kept."""
        text = json.dumps(wire, sort_keys=True, separators=(",", ":"))
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            kept = self.retention_policy()
            if kept is not None and int(kept["number"]) >= number:
                return False
            self._set_meta("retention_policy", text)
            return True

    @property
    def unwitnessed_head(self) -> TreeHead | None:
        """The newest head this client checked that did not meet the witness quorum, kept
        until a head that meets it is shown to extend it (clients.logwatch)."""
        value = self._get_meta("unwitnessed_head")
        return None if value is None else TreeHead.from_wire(json.loads(value))

    def keep_unwitnessed_head(self, head: TreeHead | None) -> None:
        """Keep ``head`` (verified by the caller) as the unwitnessed head; None forgets it."""
        if head is None:
            self._db.execute("DELETE FROM meta WHERE key = 'unwitnessed_head'")
            return
        self._set_meta(
            "unwitnessed_head", json.dumps(head.to_wire(), sort_keys=True, separators=(",", ":"))
        )

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts raised for the privacy officer, oldest first (at most MAX_ALERTS)."""
        value = self._get_meta("alerts")
        return [] if value is None else list(json.loads(value))

    def raise_alert(self, alert: dict[str, Any]) -> None:
        """Keep an alert (a small JSON object without content); the oldest go beyond
        MAX_ALERTS."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            kept = [*self.alerts(), alert][-MAX_ALERTS:]
            self._set_meta("alerts", json.dumps(kept, sort_keys=True, separators=(",", ":")))

    def remember_hub_certificate(self, fingerprint: str, *, root: str, der: bytes) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO hub_certificates (fingerprint, root, der) VALUES (?, ?, ?)",
            (fingerprint, root, der),
        )

    def hub_certificate(self, fingerprint: str, *, root: str) -> bytes | None:
        """The DER of a hub certificate kept earlier, or None (absent or another root)."""
        row = self._db.execute(
            "SELECT der FROM hub_certificates WHERE fingerprint = ? AND root = ?",
            (fingerprint, root),
        ).fetchone()
        return None if row is None else bytes(row[0])

    # -- sent messages -----------------------------------------------------------------

    def record_sent(
        self,
        message_id: str,
        *,
        kind: str,
        recipients: tuple[str, ...],
        created: int,
        now: int,
        accepted: int | None = None,
    ) -> None:
        self._db.execute(
            "INSERT INTO sent (id, kind, recipients, created, sent_at, accepted) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "accepted = excluded.accepted",
            (message_id, kind, ",".join(recipients), created, now, accepted),
        )

    def sent(self) -> list[SentMessage]:
        rows = self._db.execute(
            "SELECT id, kind, recipients, created, sent_at, accepted FROM sent ORDER BY sent_at, id"
        ).fetchall()
        return [
            SentMessage(str(r[0]), str(r[1]), tuple(r[2].split(",")), int(r[3]), int(r[4]), r[5])
            for r in rows
        ]

    def sent_message(self, message_id: str) -> SentMessage | None:
        row = self._db.execute(
            "SELECT id, kind, recipients, created, sent_at, accepted FROM sent WHERE id = ?",
            (message_id,),
        ).fetchone()
        if row is None:
            return None
        return SentMessage(
            str(row[0]), str(row[1]), tuple(row[2].split(",")), int(row[3]), int(row[4]), row[5]
        )

    def sent_envelope(self, message_id: str) -> dict[str, Any] | None:
        """The envelope of a message sent (its wire form), or None if none was kept."""
        row = self._db.execute(
            "SELECT envelope FROM sent_envelopes WHERE id = ?", (message_id,)
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def previous_to(self, recipients: tuple[str, ...]) -> dict[str, str]:
        """Per recipient, the last message the hub accepted from us for it (if any)."""
        found = {}
        for recipient in recipients:
            row = self._db.execute(
                "SELECT last_id FROM chains WHERE recipient = ?", (recipient,)
            ).fetchone()
            if row is not None:
                found[recipient] = str(row[0])
        return found

    def keep_sent_payload(self, payload: SentPayload) -> None:
        """Keep what was sent (already sealed); the first copy of an id stays."""
        self._db.execute(
            "INSERT OR IGNORE INTO sent_payloads (id, kind, ref, case_ref, status, created, "
            "sealed) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                payload.id,
                payload.kind,
                payload.ref,
                payload.case,
                payload.status,
                payload.created,
                payload.sealed,
            ),
        )

    def sent_payload(self, message_id: str) -> SentPayload | None:
        row = self._db.execute(_SENT_PAYLOAD + " WHERE id = ?", (message_id,)).fetchone()
        return None if row is None else _sent_payload(row)

    def sent_about(self, ref: str) -> list[SentPayload]:
        """The statuses (and replacing referrals) this organisation sent about ``ref``."""
        rows = self._db.execute(
            _SENT_PAYLOAD + " WHERE ref = ? ORDER BY created, id", (ref,)
        ).fetchall()
        return [_sent_payload(row) for row in rows]

    def received_about(self, ref: str) -> list[StoredMessage]:
        """Received messages whose header names ``ref`` (statuses about a referral)."""
        return [m for m in self.messages() if _header(m.envelope).get("ref") == ref]

    # -- the outbox --------------------------------------------------------------------

    def queue(self, row: OutboxRow) -> None:
        """Keep a new outbox entry (durable before anything is sent)."""
        self._db.execute(
            "INSERT INTO outbox (id, kind, recipients, created, queued_at, state, attempts, "
            "tried_at, problem, sealed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.id,
                row.kind,
                ",".join(row.recipients),
                row.created,
                row.queued_at,
                row.state,
                row.attempts,
                row.tried_at,
                row.problem,
                row.sealed,
            ),
        )

    def outbox(self) -> list[OutboxRow]:
        """Every outbox entry, oldest first (the order they go out in)."""
        rows = self._db.execute(_OUTBOX + " ORDER BY queued_at, rowid").fetchall()
        return [_outbox_row(row) for row in rows]

    def outbox_entry(self, message_id: str) -> OutboxRow | None:
        row = self._db.execute(_OUTBOX + " WHERE id = ?", (message_id,)).fetchone()
        return None if row is None else _outbox_row(row)

    def note_attempt(
        self,
        message_id: str,
        *,
        state: str,
        now: int,
        problem: str | None,
        sealed: bytes | None = None,
    ) -> None:
        """An attempt to send an outbox entry: its new state, problem and (sealed) contents."""
        self._db.execute(
            "UPDATE outbox SET state = ?, attempts = attempts + 1, tried_at = ?, problem = ?, "
            "sealed = coalesce(?, sealed) WHERE id = ?",
            (state, now, problem, sealed, message_id),
        )

    def keep_sealed(self, message_id: str, *, was: bytes, sealed: bytes) -> bool:
        """Replace an entry's contents (its envelope sealed, before it is posted), unless
        another process changed them since they read ``was``: False then."""
        changed = self._db.execute(
            "UPDATE outbox SET sealed = ? WHERE id = ? AND sealed = ?", (sealed, message_id, was)
        )
        return changed.rowcount == 1

    def drop_from_outbox(self, message_id: str) -> bool:
        """Remove an entry; False if there was none."""
        return self._db.execute("DELETE FROM outbox WHERE id = ?", (message_id,)).rowcount == 1

    def delivered(
        self, sent: SentMessage, payload: SentPayload, envelope: dict[str, Any] | None = None
    ) -> None:
        """An outbox entry reached the hub: record it as sent (its envelope too, and as the
        last message to each recipient) and leave the outbox, at once."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self.record_sent(
                sent.id,
                kind=sent.kind,
                recipients=sent.recipients,
                created=sent.created,
                now=sent.sent_at,
                accepted=sent.accepted,
            )
            self.keep_sent_payload(payload)
            if envelope is not None:
                self._db.execute(
                    "INSERT OR IGNORE INTO sent_envelopes (id, envelope) VALUES (?, ?)",
                    (sent.id, json.dumps(envelope, sort_keys=True, separators=(",", ":"))),
                )
            self._db.executemany(
                "INSERT INTO chains (recipient, last_id) VALUES (?, ?) ON CONFLICT (recipient) "
                "DO UPDATE SET last_id = excluded.last_id",
                [(recipient, sent.id) for recipient in sent.recipients],
            )
            self._db.execute("DELETE FROM outbox WHERE id = ?", (sent.id,))

    # -- payloads of received messages whose key was deleted ---------------------------

    def keep_received_payload(self, message_id: str, sealed: bytes) -> None:
        self._db.execute(
            "INSERT INTO kept_payloads (id, sealed) VALUES (?, ?) "
            "ON CONFLICT (id) DO UPDATE SET sealed = excluded.sealed",
            (message_id, sealed),
        )

    def kept_payload(self, message_id: str) -> bytes | None:
        row = self._db.execute(
            "SELECT sealed FROM kept_payloads WHERE id = ?", (message_id,)
        ).fetchone()
        return None if row is None else bytes(row[0])


_SENT_PAYLOAD = "SELECT id, kind, ref, case_ref, status, created, sealed FROM sent_payloads"
_OUTBOX = (
    "SELECT id, kind, recipients, created, queued_at, state, attempts, tried_at, problem, "
    "sealed FROM outbox"
)


def _sent_payload(row: tuple[Any, ...]) -> SentPayload:
    return SentPayload(
        str(row[0]),
        str(row[1]),
        None if row[2] is None else str(row[2]),
        None if row[3] is None else str(row[3]),
        None if row[4] is None else str(row[4]),
        int(row[5]),
        bytes(row[6]),
    )


def _outbox_row(row: tuple[Any, ...]) -> OutboxRow:
    return OutboxRow(
        id=str(row[0]),
        kind=str(row[1]),
        recipients=tuple(str(row[2]).split(",")),
        created=int(row[3]),
        queued_at=int(row[4]),
        state=str(row[5]),
        attempts=int(row[6]),
        tried_at=None if row[7] is None else int(row[7]),
        problem=None if row[8] is None else str(row[8]),
        sealed=bytes(row[9]),
    )


def _header(envelope: Any) -> dict[str, Any]:
    header = envelope.get("header") if isinstance(envelope, dict) else None
    return header if isinstance(header, dict) else {}


def _stored(row: tuple[Any, ...]) -> StoredMessage:
    return StoredMessage(
        id=str(row[0]),
        cursor=int(row[1]),
        sender=str(row[2]),
        kind=str(row[3]),
        created=int(row[4]),
        envelope=json.loads(row[5]),
        received_at=int(row[6]),
        acked_at=None if row[7] is None else int(row[7]),
    )
