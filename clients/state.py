"""The organisation's local state: one SQLite file, readable by its owner only.

What it keeps, and nothing more:

* ``meta``       the inbox cursor (the highest cursor fully processed) and the id of
                 the message taken there (``inbox_cursor_id``), which the hub must still
                 name at that cursor (a hub restored from a backup does not), and the
                 cursor at which it was last found not to (``inbox_went_back``);
* ``messages``   every message received: its header and payload (opened once, on
                 receipt) and the sender's signature over the envelope, sealed under the
                 message's own key (:mod:`clients.localbox`), with beside it in clear
                 what routing and retention need and the hub saw too (cursor, sender,
                 kind, times, ``ref``, ``case_ref``, ``status``, ``prev``, the recipient key
                 and sender certificate fingerprints) and the envelope's fingerprint
                 (to compare a copy the hub serves again). The envelope itself is not
                 kept (version 1 kept it): sealed to this organisation's KEM key, it would
                 let that key and a backup open a message whose case was erased. The
                 primary key on the message id is the dedupe: a message seen twice is
                 stored once;
* ``rejected``   messages that failed verification: id, cursor, reason category;
* ``directory``  the verified directory cache: organisation -> certificate DER,
                 when verified, and the fingerprint of the root it was verified
                 against (an entry for another root is never returned). Its ``bundle``
                 column is no longer written: a bundle is fetched fresh for each send;
* ``bundle_floors`` per organisation (and root), the validity start and fingerprint
                 of the newest key bundle this client verified for it; it only
                 moves forward, so a hub can not roll a rotated bundle back;
* ``certificates`` every sender certificate a stored message was verified with,
                 by fingerprint, so that ``show`` can check the signature again later;
* ``sent``       the ids of messages this organisation sent, with recipients;
* ``sent_envelopes`` the envelope of each message sent, sealed under the message's key
                 (its header carries pseudonyms), so that one the hub lost can be sent
                 again unchanged;
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
* ``kept_payloads`` (version 1 only, emptied by the migration) payloads of received
                 messages whose KEM key was deleted;
* ``erased``     the ids of messages erased when their case's retention period ended,
                 with the case (``scope``) and when, so that they are never taken again;
* ``shredding``  the cases whose erasure started and has not finished (a run killed
                 half-way is finished by the next one), ``shredded`` those done;
* ``meta``       also the highest CRL number seen, so a hub can not serve an older list,
                 and the last verified signed tree head of the hub's access log
                 (``tree_head``, its wire JSON), which only ever grows;
* ``hub_certificates`` the hub's log-signing certificates by fingerprint, each
                 verified against the pinned root (role ``hub``), so that heads and
                 exports can be checked offline.

No plaintext is stored: everything readable about a message is sealed under its own
key, kept in a separate file (:class:`~clients.localbox.MessageKeys`, ``state.keys.sqlite``
beside ``state.sqlite``), and each message belongs to one case (``scope``: ``case:<ref>``
for a referral's case and what is about it, else ``msg:<id>``) whose keys go together
when its retention period ends (:mod:`clients.retention`). Version 1 files are migrated
when opened (:meth:`LocalState.reseal` finishes it with the organisation's keys). The file is
created 0600 (SQLite gives its WAL and shared-memory files the same mode),
runs in WAL mode with ``synchronous=FULL`` and ``secure_delete``.
Time is passed in by the caller, as integer Unix seconds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clients.errors import ClientError
from clients.localbox import MessageKeys, PayloadBox, _checkpoint, keys_path
from clients.statemigration import migrate_v1, reseal_rows
from clients.stateschema import INDEXES, SCHEMA, SCHEMA_VERSION, header_facts
from keys.errors import KeyFileError
from keys.keyfile import ensure_private_file
from protocol.auditlog import TreeHead
from protocol.errors import ProtocolError

MAX_ALERTS = 100


@dataclass(frozen=True, slots=True, repr=False)
class StoredMessage:
    """A received message as kept locally: in clear what the hub saw of its header too
    (never pseudonyms), and ``sealed`` (header, payload and signature, under the message's
    key; None for a version-1 row not migrated yet, whose ``legacy`` envelope is kept
    until then)."""

    id: str
    cursor: int
    sender: str
    kind: str
    created: int
    received_at: int
    acked_at: int | None
    scope: str = ""
    ref: str | None = None
    case: str | None = None
    status: str | None = None
    prev: dict[str, str] | None = None  # the header's prev: recipient -> message id
    recipient_keys: dict[str, str] = dataclasses.field(default_factory=dict)
    sender_cert: str = ""
    fingerprint: str = ""
    sealed: bytes | None = None
    legacy: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"StoredMessage(id={self.id!r}, sender={self.sender!r}, kind={self.kind!r})"


@dataclass(frozen=True, slots=True)
class CaseMember:
    """One message of a case as retention sees it: no content."""

    scope: str
    id: str
    kind: str
    ref: str | None
    status: str | None
    at: int  # when it was received, or written here


@dataclass(frozen=True, slots=True)
class Shredded:
    """A case erased when its retention period ended: how many messages, when."""

    scope: str
    messages: int
    closed_at: int
    at: int


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
    """A payload this organisation sent, still sealed by :class:`PayloadBox` (the case
    it belongs to is worked out when it is kept)."""

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
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.executescript(SCHEMA)
            self._check_version()
            self._db.executescript(INDEXES)
            self.message_keys = MessageKeys(keys_path(self.path))
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
        elif found == "1":
            migrate_v1(self._db)
        elif found != str(SCHEMA_VERSION):
            raise ClientError(f"local state {self.path} has unsupported version {found}")

    def close(self) -> None:
        self._db.close()
        keys = getattr(self, "message_keys", None)
        if keys is not None:
            keys.close()

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
        """True if the message was stored, rejected or erased before."""
        row = self._db.execute(
            "SELECT 1 FROM messages WHERE id = ? UNION ALL SELECT 1 FROM rejected WHERE id = ? "
            "UNION ALL SELECT 1 FROM erased WHERE id = ?",
            (message_id, message_id, message_id),
        ).fetchone()
        return row is not None

    def erased(self, message_id: str) -> bool:
        """True if the message was erased when its case's retention period ended."""
        row = self._db.execute("SELECT 1 FROM erased WHERE id = ?", (message_id,)).fetchone()
        return row is not None

    def store_message(
        self,
        *,
        message_id: str,
        cursor: int,
        sender: str,
        kind: str,
        created: int,
        header: Mapping[str, Any],
        sealed: bytes,
        fingerprint: str = "",
        now: int,
    ) -> bool:
        """Keep a message opened on receipt: ``header`` its wire header (only the fields the
        hub saw beside the pseudonyms are kept in clear), ``sealed`` what
        :meth:`PayloadBox.seal` made of it. False (and nothing changed) if that id is
        already stored, or was erased."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if self.erased(message_id):
                return False
            facts = header_facts(header)
            scope = self._scope_of(facts["case_ref"], facts["ref"], message_id)
            done = self._db.execute(
                "INSERT OR IGNORE INTO messages (id, cursor, sender, kind, created, received_at, "
                "scope, ref, case_ref, status, prev, recipient_keys, sender_cert, fingerprint, "
                "sealed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (message_id, cursor, sender, kind, created, now, scope, facts["ref"],
                 facts["case_ref"], facts["status"], facts["prev"], facts["recipient_keys"],
                 facts["sender_cert"], fingerprint, sealed),
            )  # fmt: skip
            self._db.execute("DELETE FROM rejected WHERE id = ?", (message_id,))
            self._db.execute("DELETE FROM missing WHERE id = ?", (message_id,))
        return done.rowcount == 1

    def _scope_of(self, case: str | None, ref: str | None, message_id: str) -> str:
        """The case a message belongs to: its referral's case; else the case of the message
        it is about (a status: its referral; a referral: the one it replaces) when that is
        held; else that message's own; else its own."""
        if case:
            return f"case:{case}"
        if not ref:
            return f"msg:{message_id}"
        row = self._db.execute(
            "SELECT scope FROM messages WHERE id = ? UNION ALL "
            "SELECT scope FROM sent_payloads WHERE id = ? AND scope IS NOT NULL",
            (ref, ref),
        ).fetchone()
        return f"msg:{ref}" if row is None else str(row[0])

    def mark_acked(self, message_id: str, *, now: int) -> None:
        self._db.execute(
            "UPDATE messages SET acked_at = ? WHERE id = ? AND acked_at IS NULL", (now, message_id)
        )

    def message(self, message_id: str) -> StoredMessage | None:
        row = self._db.execute(
            _MESSAGE + " WHERE id = ?",
            (message_id,),
        ).fetchone()
        return None if row is None else _stored(row)

    def messages(self) -> list[StoredMessage]:
        """Every stored message, by cursor."""
        rows = self._db.execute(_MESSAGE + " ORDER BY cursor, id").fetchall()
        return [_stored(row) for row in rows]

    def message_page(self, offset: int, limit: int) -> list[StoredMessage]:
        """One page of stored messages, newest (highest cursor) first."""
        rows = self._db.execute(
            _MESSAGE + " ORDER BY cursor DESC, id DESC LIMIT ? OFFSET ?",
            (max(0, limit), max(0, offset)),
        ).fetchall()
        return [_stored(row) for row in rows]

    def message_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM messages").fetchone()[0])

    def messages_of_kind(self, kind: str) -> list[StoredMessage]:
        """Every stored message of ``kind`` (``status``: to follow referrals), by cursor."""
        rows = self._db.execute(
            _MESSAGE + " WHERE kind = ? ORDER BY cursor, id",
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

    def sent_envelope(self, message_id: str) -> bytes | None:
        """The envelope of a message sent, sealed under the message's key (PayloadBox
        purpose ``envelope``; its wire form), or None if none was kept."""
        row = self._db.execute(
            "SELECT sealed FROM sent_envelopes WHERE id = ? AND sealed IS NOT NULL",
            (message_id,),
        ).fetchone()
        return None if row is None else bytes(row[0])

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
            "sealed, scope) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                payload.id,
                payload.kind,
                payload.ref,
                payload.case,
                payload.status,
                payload.created,
                payload.sealed,
                self._scope_of(payload.case, payload.ref, payload.id),
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
        rows = self._db.execute(_MESSAGE + " WHERE ref = ? ORDER BY cursor, id", (ref,)).fetchall()
        return [_stored(row) for row in rows]

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
        """Remove an entry, and the key of its message (nothing else was sealed under it:
        it never reached the hub); False if there was none."""
        if self._db.execute("DELETE FROM outbox WHERE id = ?", (message_id,)).rowcount != 1:
            return False
        if self.sent_message(message_id) is None:
            self.message_keys.destroy([message_id])
        return True

    def delivered(
        self, sent: SentMessage, payload: SentPayload, envelope: bytes | None = None
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
            if envelope is not None:  # (sealed under the message's key)
                self._db.execute(
                    "INSERT OR IGNORE INTO sent_envelopes (id, sealed) VALUES (?, ?)",
                    (sent.id, envelope),
                )
            self._db.executemany(
                "INSERT INTO chains (recipient, last_id) VALUES (?, ?) ON CONFLICT (recipient) "
                "DO UPDATE SET last_id = excluded.last_id",
                [(recipient, sent.id) for recipient in sent.recipients],
            )
            self._db.execute("DELETE FROM outbox WHERE id = ?", (sent.id,))

    # -- retention (clients.retention) -------------------------------------------------

    def case_members(self) -> list[CaseMember]:
        """Every message kept, received or sent, with its case: what retention plans by."""
        rows = self._db.execute(
            "SELECT scope, id, kind, ref, status, received_at FROM messages UNION ALL "
            "SELECT scope, id, kind, ref, status, created FROM sent_payloads "
            "WHERE scope IS NOT NULL ORDER BY 1, 6, 2"
        ).fetchall()
        return [CaseMember(str(r[0]), str(r[1]), str(r[2]), r[3], r[4], int(r[5])) for r in rows]

    def join_case(self, message_ids: Iterable[str], case: str) -> int:
        """Put messages held here into the hub's case ``case`` (a coordinator learns a
        signal's case, and merges and splits, from the hub's case view): their keys then go
        with that case's. How many moved."""
        moved = 0
        scope = f"case:{case}"
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for message_id in set(message_ids):
                for table in ("messages", "sent_payloads"):
                    moved += self._db.execute(
                        f"UPDATE {table} SET scope = ? WHERE id = ? AND scope != ?",  # noqa: S608
                        (scope, message_id, scope),
                    ).rowcount
        return moved

    def begin_shred(self, scope: str, *, closed_at: int, now: int) -> tuple[str, ...]:
        """Record that the case ``scope`` is being erased, with the ids of its messages (a
        run killed half-way is finished from this record); those ids."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            ids = {str(r[0]) for r in self._db.execute(_MEMBER_IDS, (scope, scope)).fetchall()}
            row = self._db.execute("SELECT ids FROM shredding WHERE scope = ?", (scope,)).fetchone()
            if row is not None:
                ids |= set(json.loads(row[0]))
            self._db.execute(
                "INSERT INTO shredding (scope, ids, closed_at, at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (scope) DO UPDATE SET ids = excluded.ids",
                (scope, json.dumps(sorted(ids)), closed_at, now),
            )
        return tuple(sorted(ids))

    def pending_shreds(self) -> list[tuple[str, tuple[str, ...], int]]:
        """(case, message ids, closed at) of every erasure begun and not finished."""
        rows = self._db.execute(
            "SELECT scope, ids, closed_at FROM shredding ORDER BY at, scope"
        ).fetchall()
        return [(str(r[0]), tuple(json.loads(r[1])), int(r[2])) for r in rows]

    def finish_shred(self, scope: str, *, now: int) -> bool:
        """Once the keys of a case are destroyed: delete its rows, remember its message ids
        as erased, and checkpoint the WAL (TRUNCATE). False if the checkpoint could not
        finish (a reader was in the way; the rows are deleted all the same)."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute(
                "SELECT ids, closed_at FROM shredding WHERE scope = ?", (scope,)
            ).fetchone()
            if row is None:
                return True
            ids, closed_at = list(json.loads(row[0])), int(row[1])
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for table in _CASE_TABLES:
                    self._db.execute(
                        f"DELETE FROM {table} WHERE id IN ({marks})",  # noqa: S608
                        chunk,
                    )
                self._db.execute(
                    f"DELETE FROM missing WHERE named_by IN ({marks})",  # noqa: S608
                    chunk,
                )
            self._db.executemany(
                "INSERT OR IGNORE INTO erased (id, scope, at) VALUES (?, ?, ?)",
                [(message_id, scope, now) for message_id in ids],
            )
            self._db.execute(
                "INSERT INTO shredded (scope, messages, closed_at, at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (scope) DO UPDATE SET messages = messages + excluded.messages, "
                "closed_at = excluded.closed_at, at = excluded.at",
                (scope, len(ids), closed_at, now),
            )
            self._db.execute("DELETE FROM shredding WHERE scope = ?", (scope,))
        return _checkpoint(self._db)

    def shredded(self) -> list[Shredded]:
        """The cases erased, most recent first."""
        rows = self._db.execute(
            "SELECT scope, messages, closed_at, at FROM shredded ORDER BY at DESC, scope"
        ).fetchall()
        return [Shredded(str(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows]

    # -- migration from version 1 ------------------------------------------------------

    @property
    def needs_reseal(self) -> bool:
        """True while what version 1 kept is not sealed under message keys yet."""
        return bool(self._get_meta("reseal"))

    def legacy_messages(self) -> list[tuple[StoredMessage, bytes | None]]:
        """Version-1 received messages not migrated yet, each with the payload version 1
        kept sealed for it when its KEM key was deleted (if any)."""
        rows = self._db.execute(_MESSAGE + " WHERE sealed IS NULL AND envelope IS NOT NULL")
        found = []
        for row in rows.fetchall():
            kept = self._db.execute(
                "SELECT sealed FROM kept_payloads WHERE id = ?", (row[0],)
            ).fetchone()
            found.append((_stored(row), None if kept is None else bytes(kept[0])))
        return found

    def reseal(self, box: PayloadBox, received: Mapping[str, bytes | None]) -> None:
        """Finish the migration from version 1, in one transaction: each received message
        in ``received`` (id -> its record sealed under its own key, or None: it could not
        be opened) loses its envelope; the sent payloads, sent envelopes and outbox entries
        sealed by the version-1 PayloadBox are sealed again under their message keys."""
        legacy = box.legacy()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for message_id, sealed in received.items():
                self._db.execute(
                    "UPDATE messages SET sealed = ?, envelope = NULL WHERE id = ?",
                    (sealed, message_id),
                )
            self._db.execute("DELETE FROM kept_payloads")
            reseal_rows(self._db, "sent_payloads", lambda r: (r[0], r[1]), legacy, box)
            reseal_rows(self._db, "outbox", lambda r: (r[0], f"outbox/{r[1]}"), legacy, box)
            for message_id, text in self._db.execute(
                "SELECT id, envelope FROM sent_envelopes WHERE envelope IS NOT NULL"
            ).fetchall():
                wire = json.loads(text)
                self._db.execute(
                    "UPDATE sent_envelopes SET sealed = ?, envelope = NULL WHERE id = ?",
                    (box.seal(message_id, "envelope", wire), message_id),
                )
            self._set_meta("reseal", "")
        _checkpoint(self._db)


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


_MESSAGE = (
    "SELECT id, cursor, sender, kind, created, received_at, acked_at, scope, ref, case_ref, "
    "status, prev, recipient_keys, sender_cert, fingerprint, sealed, envelope FROM messages"
)
_MEMBER_IDS = (
    "SELECT id FROM messages WHERE scope = ? UNION SELECT id FROM sent_payloads WHERE scope = ?"
)
# Where a message's rows are: all deleted when its case is erased.
_CASE_TABLES = ("messages", "sent", "sent_payloads", "sent_envelopes", "kept_payloads")


def _stored(row: tuple[Any, ...]) -> StoredMessage:
    return StoredMessage(
        id=str(row[0]),
        cursor=int(row[1]),
        sender=str(row[2]),
        kind=str(row[3]),
        created=int(row[4]),
        received_at=int(row[5]),
        acked_at=None if row[6] is None else int(row[6]),
        scope=str(row[7]),
        ref=row[8],
        case=row[9],
        status=row[10],
        prev=None if row[11] is None else dict(json.loads(row[11])),
        recipient_keys=dict(json.loads(row[12])),
        sender_cert=str(row[13]),
        fingerprint=str(row[14]),
        sealed=None if row[15] is None else bytes(row[15]),
        legacy=None if row[16] is None else dict(json.loads(row[16])),
    )
