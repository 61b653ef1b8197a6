"""The organisation's local state: one SQLite file, readable by its owner only.

What it keeps, and nothing more:

* ``meta``       the inbox cursor (the highest cursor fully processed);
* ``messages``   every envelope received, as its canonical wire JSON (still
                 encrypted), with when it was received and acknowledged; the
                 primary key on the message id is the dedupe: a message seen
                 twice is stored once;
* ``rejected``   messages that failed verification: id, cursor, reason category;
* ``directory``  the verified directory cache: organisation -> certificate DER,
                 key bundle wire JSON, when verified, and the fingerprint of the
                 root it was verified against (an entry for another root is
                 never returned);
* ``certificates`` every sender certificate a stored message was verified with,
                 by fingerprint, so that ``show`` can open the envelope again later;
* ``sent``       the ids of messages this organisation sent, with recipients;
* ``sent_payloads`` what this organisation wrote in the signals, referrals and statuses
                 it sent (it can not open its own envelopes: they are sealed to the
                 recipients), encrypted at rest by :class:`PayloadBox`, with the
                 cleartext header fields ``ref``, ``case`` and ``status`` beside it;
* ``meta``       also the highest CRL number seen, so a hub can not serve an older list,
                 and the last verified signed tree head of the hub's access log
                 (``tree_head``, its wire JSON), which only ever grows;
* ``hub_certificates`` the hub's log-signing certificates by fingerprint, each
                 verified against the pinned root (role ``hub``), so that heads and
                 exports can be checked offline.

No plaintext is stored: envelopes are decrypted again when shown, and sent payloads
are kept only as :class:`PayloadBox` ciphertext. The file is
created 0600 (SQLite gives its WAL and shared-memory files the same mode),
runs in WAL mode with ``synchronous=FULL`` and ``secure_delete``.
Time is passed in by the caller, as integer Unix seconds.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.secret
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from clients.errors import ClientError, VerificationFailed
from protocol.auditlog import TreeHead
from protocol.encoding import canonical_json, loads_strict
from protocol.envelope import MAX_BODY_BYTES
from protocol.errors import ProtocolError

SCHEMA_VERSION = 1
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
    """A cached, verified directory entry."""

    org: str
    root: str
    certificate: bytes
    bundle: dict[str, Any] | None
    verified_at: int


@dataclass(frozen=True, slots=True)
class SentMessage:
    id: str
    kind: str
    recipients: tuple[str, ...]
    created: int
    sent_at: int
    accepted: int | None


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


SENT_PAYLOAD_LABEL = b"schakel/client-sent-payloads/v1"


class PayloadBox:
    """Keeps the payloads this organisation sent encrypted at rest.

    The key is HKDF-SHA256 (RFC 5869) with input key material the 32-byte Ed25519
    seed of the organisation's signing key, salt ``schakel/client-sent-payloads/v1``
    and info the organisation id, 32 bytes long. Each payload is sealed with pynacl's
    ``SecretBox`` (XSalsa20-Poly1305) under a fresh random 24-byte nonce. What is sealed
    is the canonical JSON ``{"id", "kind", "payload"}``, and opening checks the id and
    kind, so a row copied under another message id does not open as that message.
    Whoever holds the key directory (and its passphrase) can open them; the state file
    alone can not.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) != nacl.secret.SecretBox.KEY_SIZE:
            raise ValueError("a PayloadBox key is 32 bytes")
        self._box = nacl.secret.SecretBox(key)

    def __repr__(self) -> str:
        return "PayloadBox(...)"

    @classmethod
    def for_signing_key(cls, key: Ed25519PrivateKey, org: str) -> PayloadBox:
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=SENT_PAYLOAD_LABEL, info=org.encode()
        ).derive(seed)
        return cls(derived)

    def seal(
        self, message_id: str, kind: str, payload: Any, rng: Callable[[int], bytes] = os.urandom
    ) -> bytes:
        plaintext = canonical_json({"id": message_id, "kind": kind, "payload": payload})
        nonce = rng(nacl.secret.SecretBox.NONCE_SIZE)
        return bytes(self._box.encrypt(plaintext, nonce))

    def open(self, message_id: str, kind: str, sealed: bytes) -> Any:
        """The payload; VerificationFailed if it was altered, moved or sealed by another key."""
        try:
            doc = loads_strict(self._box.decrypt(sealed), max_bytes=2 * MAX_BODY_BYTES)
        except (nacl.exceptions.CryptoError, ProtocolError, TypeError, ValueError):
            raise VerificationFailed("stored sent payload") from None
        if not isinstance(doc, dict) or (doc.get("id"), doc.get("kind")) != (message_id, kind):
            raise VerificationFailed("stored sent payload", reason="kept under another id")
        return doc.get("payload")


def _create_private(path: Path) -> None:
    """Create ``path`` 0600 if missing (never through a symlink); tighten it if present."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise ClientError(f"cannot open local state {path}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ClientError(f"local state {path} is not a regular file")
        if info.st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


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

    def advance_cursor(self, cursor: int) -> None:
        """Move the cursor forward to ``cursor``; it never moves back."""
        if cursor > self.cursor:
            self._set_meta("inbox_cursor", str(cursor))

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

    # -- directory cache ---------------------------------------------------------------

    def cache_directory(
        self,
        org: str,
        *,
        root: str,
        certificate: bytes,
        bundle: dict[str, Any] | None,
        now: int,
    ) -> None:
        """Remember a verified certificate (and bundle) of ``org``, verified against ``root``."""
        text = None if bundle is None else json.dumps(bundle, sort_keys=True, separators=(",", ":"))
        self._db.execute(
            "INSERT INTO directory (org, root, certificate, bundle, verified_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (org) DO UPDATE SET root = excluded.root, "
            "certificate = excluded.certificate, bundle = excluded.bundle, "
            "verified_at = excluded.verified_at",
            (org, root, certificate, text, now),
        )

    def cached_directory(self, org: str, *, root: str) -> DirectoryEntry | None:
        """The cached entry of ``org``, or None if absent or verified against another root."""
        row = self._db.execute(
            "SELECT org, root, certificate, bundle, verified_at FROM directory WHERE org = ?",
            (org,),
        ).fetchone()
        if row is None or row[1] != root:
            return None
        bundle = None if row[3] is None else json.loads(row[3])
        return DirectoryEntry(str(row[0]), str(row[1]), bytes(row[2]), bundle, int(row[4]))

    def forget_directory(self, org: str) -> None:
        self._db.execute("DELETE FROM directory WHERE org = ?", (org,))

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


_SENT_PAYLOAD = "SELECT id, kind, ref, case_ref, status, created, sealed FROM sent_payloads"


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
