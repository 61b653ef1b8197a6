"""What this organisation keeps encrypted at rest in its local state, and the keys that
open it: one key per message, in a small file of its own that can be destroyed apart.

Four things are kept in readable form by nobody but the holder of the key directory
*and* the message-key file: every message received (its header and payload, opened once
on receipt), the payloads this organisation sent and their envelopes, and what waits in
its outbox. Each is sealed by :class:`PayloadBox` under a *purpose* (``message``,
``sent``, ``outbox``, ``envelope``) bound into the ciphertext, so a row copied from one
table to another does not open, and under **a key of its own message**:

* the key of message ``m`` is HKDF-SHA256 with input key material a random 32-byte
  secret kept for ``m`` in :class:`MessageKeys`, salt the organisation's PayloadBox key
  (derived from its signing key, as in version 1) and info
  ``schakel/client-message-key/v2 || 0x00 || m``: the key file alone opens nothing, and
  the state file with the key directory (and its passphrase) opens nothing either once
  the secret of ``m`` is gone;
* destroying a secret (:meth:`MessageKeys.destroy`: the row deleted with
  ``secure_delete`` on, then the WAL checkpointed with ``TRUNCATE``) makes every copy of
  what was sealed under it unreadable for good, in the state file, its WAL and every
  backup of them (crypto-shredding, :mod:`clients.retention`).

Why a key per *message*, grouped by case in the state file, rather than one key per
case: which case a message belongs to is learnt late and can change (a status can come
before the referral it answers is known here, a coordinator learns a signal's case from
the hub's case view, and merges and splits cases); with a key per message a message
moves between cases by changing one column, never by sealing it again, and destroying
a case is destroying the keys of its messages, all in one transaction. A message not in
any case is its own case.

Why the message-key file is separate: a backup of the state file must not carry the keys
that open it. Back the key file up apart, and keep those backups no longer than the
shortest retention period (or not at all: losing it loses only what is past reading
anyway when its case ends); see SECURITY.md.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.secret
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from clients.errors import ClientError, Erased, VerificationFailed
from keys.errors import KeyFileError
from keys.keyfile import ensure_private_file
from protocol.encoding import canonical_json, loads_strict
from protocol.envelope import MAX_BODY_BYTES
from protocol.errors import ProtocolError

SENT_PAYLOAD_LABEL = b"schakel/client-sent-payloads/v1"
MESSAGE_KEY_LABEL = b"schakel/client-message-key/v2"
SECRET_BYTES = 32
CHECKPOINT_WAIT_MS = 5000  # how long destroying waits for readers of the key file

_KEYS_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS message_keys (id TEXT PRIMARY KEY, secret BLOB NOT NULL);
"""


def keys_path(state_path: Path) -> Path:
    """Where the message-key file of the state file at ``state_path`` lives: beside it,
    ``state.sqlite`` -> ``state.keys.sqlite``."""
    return state_path.with_name(f"{state_path.stem}.keys{state_path.suffix or '.sqlite'}")


class MessageKeys:
    """The per-message secrets: one small SQLite file, 0600, WAL, ``secure_delete`` on.

    Only random secrets are kept, never a key that opens anything by itself (see the
    module docstring). :meth:`destroy` removes secrets for good.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            ensure_private_file(path)
        except OSError as exc:
            raise ClientError(f"cannot open message keys {path}: {exc.strerror}") from exc
        except KeyFileError as exc:
            raise ClientError(f"message keys {path} is not a regular file") from exc
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.executescript(_KEYS_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise ClientError(f"message keys {path} is not a usable database") from exc

    def __repr__(self) -> str:
        return f"MessageKeys({str(self.path)!r})"

    def close(self) -> None:
        self._db.close()

    def secret(self, message_id: str, *, rng: Callable[[int], bytes] | None = None) -> bytes | None:
        """The secret of ``message_id``; with ``rng`` one is made (and kept, durably)
        when there is none yet; None when there is none (never made, or destroyed)."""
        row = self._db.execute(
            "SELECT secret FROM message_keys WHERE id = ?", (message_id,)
        ).fetchone()
        if row is not None or rng is None:
            return None if row is None else bytes(row[0])
        fresh = rng(SECRET_BYTES)
        if len(fresh) != SECRET_BYTES:
            raise ValueError("the random source gave a short secret")
        self._db.execute(
            "INSERT OR IGNORE INTO message_keys (id, secret) VALUES (?, ?)", (message_id, fresh)
        )
        return self.secret(message_id)  # another process may have made it first

    def held(self, message_ids: Collection[str]) -> set[str]:
        """Which of ``message_ids`` still have a secret."""
        found: set[str] = set()
        ids = list(message_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT id FROM message_keys WHERE id IN ({marks})",  # noqa: S608
                chunk,
            ).fetchall()
            found.update(str(r[0]) for r in rows)
        return found

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM message_keys").fetchone()[0])

    def destroy(self, message_ids: Collection[str]) -> bool:
        """Delete the secrets of ``message_ids`` (in one transaction; ``secure_delete``
        overwrites them in the file), then checkpoint the WAL with TRUNCATE so that no old
        page holding them stays in it. True once the checkpoint went through; False when a
        reader kept it from finishing (the secrets are deleted all the same: call
        :meth:`checkpoint` again later)."""
        ids = list(message_ids)
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                self._db.execute(
                    f"DELETE FROM message_keys WHERE id IN ({marks})",  # noqa: S608
                    chunk,
                )
        return self.checkpoint()

    def checkpoint(self) -> bool:
        """Copy the WAL into the file and truncate it; False when a reader was in the way."""
        return _checkpoint(self._db)


def _checkpoint(db: sqlite3.Connection) -> bool:
    deadline = time.monotonic() + CHECKPOINT_WAIT_MS / 1000
    while True:
        busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if not busy:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


class PayloadBox:
    """Keeps payloads encrypted at rest, each bound to its message id and kind, and (with
    :class:`MessageKeys`) each under a key of its own message (see the module docstring).

    The PayloadBox key is HKDF-SHA256 (RFC 5869) with input key material the 32-byte Ed25519
    seed of the organisation's signing key, salt ``schakel/client-sent-payloads/v1``
    and info the organisation id, 32 bytes long. Each payload is sealed with pynacl's
    ``SecretBox`` (XSalsa20-Poly1305) under a fresh random 24-byte nonce. What is sealed
    is the canonical JSON ``{"id", "kind", "payload"}``, and opening checks the id and
    kind, so a row copied under another message id does not open as that message. The
    kind of what waits in the outbox is ``outbox/<kind>``, of a received payload kept
    after its key was deleted ``received/<kind>``; a sent payload's is the bare kind.
    Without :class:`MessageKeys` (state version 1, and only to read what version 1 kept
    while migrating) the PayloadBox key seals directly; with them, the key of each message
    (the module docstring) does, and a message whose secret was destroyed raises
    :class:`~clients.errors.Erased`.
    """

    def __init__(
        self,
        key: bytes,
        keys: MessageKeys | None = None,
        *,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if len(key) != nacl.secret.SecretBox.KEY_SIZE:
            raise ValueError("a PayloadBox key is 32 bytes")
        self._key = key
        self._keys = keys
        self._rng = rng
        self._box = nacl.secret.SecretBox(key)

    def legacy(self) -> PayloadBox:
        """The version-1 box (one key for everything): only to read what it sealed."""
        return PayloadBox(self._key)

    @property
    def keys(self) -> MessageKeys | None:
        return self._keys

    def _box_of(self, message_id: str, *, make: bool) -> nacl.secret.SecretBox:
        if self._keys is None:
            return self._box
        secret = self._keys.secret(message_id, rng=self._rng if make else None)
        if secret is None:
            raise Erased(message_id)
        key = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=self._key,
            info=MESSAGE_KEY_LABEL + b"\x00" + message_id.encode(),
        ).derive(secret)
        return nacl.secret.SecretBox(key)

    def __repr__(self) -> str:
        return "PayloadBox(...)"

    @classmethod
    def for_signing_key(
        cls,
        key: Ed25519PrivateKey,
        org: str,
        keys: MessageKeys | None = None,
        *,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> PayloadBox:
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=SENT_PAYLOAD_LABEL, info=org.encode()
        ).derive(seed)
        return cls(derived, keys, rng=rng)

    def seal(
        self, message_id: str, kind: str, payload: Any, rng: Callable[[int], bytes] = os.urandom
    ) -> bytes:
        plaintext = canonical_json({"id": message_id, "kind": kind, "payload": payload})
        box = self._box_of(message_id, make=True)
        nonce = rng(nacl.secret.SecretBox.NONCE_SIZE)
        return bytes(box.encrypt(plaintext, nonce))

    def open(self, message_id: str, kind: str, sealed: bytes) -> Any:
        """The payload; VerificationFailed if it was altered, moved or sealed by another key,
        Erased when the message's key was destroyed."""
        what = f"stored {kind.partition('/')[0] if '/' in kind else 'sent'} payload"
        box = self._box_of(message_id, make=False)
        try:
            doc = loads_strict(box.decrypt(sealed), max_bytes=4 * MAX_BODY_BYTES)
        except (nacl.exceptions.CryptoError, ProtocolError, TypeError, ValueError):
            raise VerificationFailed(what) from None
        if not isinstance(doc, dict) or (doc.get("id"), doc.get("kind")) != (message_id, kind):
            raise VerificationFailed(what, reason="kept under another id")
        return doc.get("payload")

    def open_object(self, message_id: str, kind: str, sealed: bytes) -> dict[str, Any]:
        """:meth:`open` for a payload that must be a JSON object."""
        payload = self.open(message_id, kind, sealed)
        if not isinstance(payload, dict):
            raise VerificationFailed("stored payload", reason="not an object")
        return payload
