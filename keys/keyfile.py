"""Passphrase-encrypted key files, and atomic writes for every file in a key directory.

A key file is one line of canonical JSON (see ``docs/protocol.md``)::

    {"box": b64url(nonce || secretbox ciphertext), "format": "schakel-key",
     "kdf": {"alg": "argon2id13", "memlimit": int, "opslimit": int, "salt": b64url(16)},
     "kind": "ed25519", "v": 1}

The box key is Argon2id(passphrase, salt, opslimit, memlimit), 32 bytes. The
box holds ``canonical_json({"format", "kind", "secret": b64url, "v"})``, so
the header's format, version and kind are authenticated; the KDF parameters
are bound because changing any of them changes the key.

Files are written atomically: a temporary file in the same directory,
created 0600 with ``O_EXCL``, written, fsynced, then renamed (or hard-linked
when an existing file must not be replaced) over the target; the directory
is fsynced after. A failed write leaves neither a partial file nor the
temporary file behind.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash.argon2id as argon2id
import nacl.secret

from keys.errors import KeyFileError
from protocol.encoding import b64d, b64e, canonical_json, digest, frame, loads_strict
from protocol.errors import EncodingError

FORMAT = "schakel-key"
VERSION = 1
KDF_ALG = "argon2id13"
SALT_BYTES = argon2id.SALTBYTES
MAX_KEY_FILE_BYTES = 64 * 1024
MAX_SECRET_BYTES = 16 * 1024
MAX_PASSPHRASE_BYTES = 1024
# Bounds on what a file may ask of the KDF, so a planted file can not exhaust memory.
MAX_OPSLIMIT = 4 * argon2id.OPSLIMIT_SENSITIVE
MAX_MEMLIMIT = argon2id.MEMLIMIT_SENSITIVE

KIND_ED25519 = "ed25519"
KIND_KEM_SEED = "kem-seed"
KIND_LINKING_KEY = "linking-key"
KIND_TOKEN_ES256 = "token-es256"  # noqa: S105 (a kind name, not a secret)
KIND_OPRF_KEY = "oprf-key"  # a pseudonymisation service's key share: a ristretto255 scalar
# Known kinds and the exact length of their secret (None: any length up to the bound).
KINDS: dict[str, int | None] = {
    KIND_ED25519: 32,
    KIND_KEM_SEED: 96,
    KIND_LINKING_KEY: 32,
    KIND_TOKEN_ES256: None,
    KIND_OPRF_KEY: 32,
}

Rng = Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id cost parameters for a new key file."""

    opslimit: int
    memlimit: int

    @classmethod
    def production(cls) -> KdfParams:
        """libsodium's MODERATE: 3 passes, 256 MiB (under a second on a laptop)."""
        return cls(argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE)

    @classmethod
    def for_tests(cls) -> KdfParams:
        """libsodium's minimum: only for tests; writing with it needs ``allow_weak``."""
        return cls(argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)

    @property
    def weak(self) -> bool:
        """True when either parameter is below :meth:`production`."""
        prod = KdfParams.production()
        return self.opslimit < prod.opslimit or self.memlimit < prod.memlimit

    def check(self) -> None:
        """Raise ``KeyFileError`` unless both parameters lie within the accepted bounds."""
        if not argon2id.OPSLIMIT_MIN <= self.opslimit <= MAX_OPSLIMIT:
            raise KeyFileError(f"KDF opslimit {self.opslimit} is out of bounds")
        if not argon2id.MEMLIMIT_MIN <= self.memlimit <= MAX_MEMLIMIT:
            raise KeyFileError(f"KDF memlimit {self.memlimit} is out of bounds")


WEAK_KDF_ENV = "SCHAKEL_WEAK_KDF"


def kdf_params_from_env(environ: Mapping[str, str]) -> KdfParams:
    """Production KDF costs, or libsodium's minimum when ``SCHAKEL_WEAK_KDF=1``.

    The weak setting exists for tests and the local demo only; a key file written with it
    says so in its header, and ``write_key_file`` refuses it unless told ``allow_weak``.
    """
    return KdfParams.for_tests() if environ.get(WEAK_KDF_ENV) == "1" else KdfParams.production()


def normalise_passphrase(passphrase: bytes) -> bytes:
    """Refuse an empty or oversized passphrase; NFC-normalise one that is UTF-8."""
    if not passphrase:
        raise KeyFileError("refusing an empty passphrase")
    if len(passphrase) > MAX_PASSPHRASE_BYTES:
        raise KeyFileError(f"passphrase is longer than {MAX_PASSPHRASE_BYTES} bytes")
    try:
        text = passphrase.decode("utf-8")
    except UnicodeDecodeError:
        return passphrase
    return unicodedata.normalize("NFC", text).encode("utf-8")


def _box_key(passphrase: bytes, salt: bytes, params: KdfParams) -> bytes:
    return argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE,
        normalise_passphrase(passphrase),
        salt,
        opslimit=params.opslimit,
        memlimit=params.memlimit,
    )


def _inner(kind: str, secret: bytes) -> bytes:
    return canonical_json({"format": FORMAT, "kind": kind, "secret": b64e(secret), "v": VERSION})


def _check_kind(kind: str, secret: bytes | None = None) -> None:
    if kind not in KINDS:
        raise KeyFileError(f"unknown key kind {kind!r}")
    size = KINDS[kind]
    if secret is None:
        return
    if size is not None and len(secret) != size:
        raise KeyFileError(f"a {kind} key is {size} bytes, not {len(secret)}")
    if not 0 < len(secret) <= MAX_SECRET_BYTES:
        raise KeyFileError(f"a key must be 1 to {MAX_SECRET_BYTES} bytes")


def encrypt_key(
    kind: str, secret: bytes, passphrase: bytes, params: KdfParams, *, salt: bytes, nonce: bytes
) -> bytes:
    """The key file bytes for ``secret`` (pure: salt and nonce are given)."""
    _check_kind(kind, secret)
    params.check()
    if len(salt) != SALT_BYTES or len(nonce) != nacl.secret.SecretBox.NONCE_SIZE:
        raise ValueError("bad salt or nonce length")
    box = nacl.secret.SecretBox(_box_key(passphrase, salt, params))
    sealed = bytes(box.encrypt(_inner(kind, secret), nonce))
    outer = {
        "box": b64e(sealed),
        "format": FORMAT,
        "kdf": {
            "alg": KDF_ALG,
            "memlimit": params.memlimit,
            "opslimit": params.opslimit,
            "salt": b64e(salt),
        },
        "kind": kind,
        "v": VERSION,
    }
    return canonical_json(outer) + b"\n"


def _exact_keys(obj: Any, keys: set[str], what: str) -> dict[str, Any]:
    if not isinstance(obj, dict) or set(obj) != keys:
        raise KeyFileError(f"{what} must be an object with exactly the fields {sorted(keys)}")
    return obj


def _int(value: Any, what: str) -> int:
    if type(value) is not int:
        raise KeyFileError(f"{what} must be an integer")
    return value


@dataclass(frozen=True, slots=True)
class _Header:
    kind: str
    params: KdfParams
    salt: bytes
    box: bytes


def _parse_header(data: bytes, source: str) -> _Header:
    try:
        return _parse_header_fields(data)
    except EncodingError as exc:
        raise KeyFileError(f"{source} is not a valid key file: {exc}") from exc
    except KeyFileError as exc:
        raise KeyFileError(f"{source}: {exc}") from None


def _parse_header_fields(data: bytes) -> _Header:
    outer = _exact_keys(
        loads_strict(data, max_bytes=MAX_KEY_FILE_BYTES, max_depth=3),
        {"box", "format", "kdf", "kind", "v"},
        "a key file",
    )
    if outer["format"] != FORMAT:
        raise KeyFileError("not a Schakel key file")
    if type(outer["v"]) is not int or outer["v"] != VERSION:
        raise KeyFileError(f"unsupported key file version {outer['v']!r}")
    if not isinstance(outer["kind"], str):
        raise KeyFileError("kind must be a string")
    kdf = _exact_keys(outer["kdf"], {"alg", "memlimit", "opslimit", "salt"}, "kdf")
    if kdf["alg"] != KDF_ALG:
        raise KeyFileError(f"unsupported KDF {kdf['alg']!r}")
    params = KdfParams(_int(kdf["opslimit"], "opslimit"), _int(kdf["memlimit"], "memlimit"))
    params.check()
    salt = b64d(kdf["salt"], max_len=SALT_BYTES)
    if len(salt) != SALT_BYTES:
        raise KeyFileError(f"KDF salt must be {SALT_BYTES} bytes")
    box = b64d(outer["box"], max_len=MAX_KEY_FILE_BYTES)
    return _Header(outer["kind"], params, salt, box)


def decrypt_key(data: bytes, passphrase: bytes, *, kind: str, source: str) -> bytes:
    """The secret in key file bytes ``data`` (pure); ``source`` names it in errors."""
    _check_kind(kind)
    header = _parse_header(data, source)
    if header.kind != kind:
        raise KeyFileError(f"{source} holds a {header.kind!r} key, expected {kind!r}")
    box = nacl.secret.SecretBox(_box_key(passphrase, header.salt, header.params))
    try:
        inner = box.decrypt(header.box)
    except (nacl.exceptions.CryptoError, ValueError) as exc:
        raise KeyFileError(f"could not decrypt {source}: wrong passphrase or damaged file") from exc
    try:
        fields = _exact_keys(loads_strict(inner), {"format", "kind", "secret", "v"}, "box")
        secret = b64d(fields["secret"], max_len=MAX_SECRET_BYTES)
    except (EncodingError, KeyFileError) as exc:
        raise KeyFileError(f"{source}: the decrypted key is malformed") from exc
    if fields["format"] != FORMAT or fields["v"] != VERSION or fields["kind"] != kind:
        raise KeyFileError(f"{source}: the header does not match the encrypted key (tampered)")
    _check_kind(kind, secret)
    return secret


def read_bounded(path: Path | str, max_bytes: int, *, private: bool = False) -> bytes:
    """Read a regular file of at most ``max_bytes``; ``private`` also refuses group/other access."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise KeyFileError(f"can not read {path}: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"{path} is not a regular file")
        if private and st.st_mode & 0o077:
            mode = stat.S_IMODE(st.st_mode)
            raise KeyFileError(
                f"{path} is accessible by other users (mode {mode:04o}); run: chmod 600 {path}"
            )
        if st.st_size > max_bytes:
            raise KeyFileError(f"{path} is larger than {max_bytes} bytes")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise KeyFileError(f"{path} is larger than {max_bytes} bytes")
    return data


def read_key_file(path: Path | str, passphrase: bytes, *, kind: str) -> bytes:
    """Decrypt the key file at ``path``, which must hold a key of ``kind``."""
    data = read_bounded(path, MAX_KEY_FILE_BYTES, private=True)
    return decrypt_key(data, passphrase, kind=kind, source=str(path))


def key_file_params(path: Path | str) -> KdfParams:
    """The KDF parameters a key file was written with (read without decrypting)."""
    return _parse_header(read_bounded(path, MAX_KEY_FILE_BYTES, private=True), str(path)).params


def write_key_file(
    path: Path | str,
    kind: str,
    secret: bytes,
    passphrase: bytes,
    params: KdfParams,
    *,
    allow_weak: bool = False,
    overwrite: bool = False,
    rng: Rng = os.urandom,
) -> None:
    """Encrypt ``secret`` under ``passphrase`` and write it atomically, mode 0600.

    Refuses parameters below :meth:`KdfParams.production` unless ``allow_weak``,
    an empty passphrase, and an existing file unless ``overwrite``.
    """
    if params.weak and not allow_weak:
        raise KeyFileError(
            "refusing KDF parameters below production strength (tests only: allow_weak)"
        )
    normalise_passphrase(passphrase)
    if not overwrite and os.path.lexists(path):
        raise KeyFileError(f"refusing to overwrite {path}")
    salt = rng(SALT_BYTES)
    nonce = rng(nacl.secret.SecretBox.NONCE_SIZE)
    data = encrypt_key(kind, secret, passphrase, params, salt=salt, nonce=nonce)
    atomic_write(path, data, mode=0o600, overwrite=overwrite)


def ensure_private_file(path: Path | str) -> None:
    """Create ``path`` empty and 0600 if missing, never through a symlink; tighten it to
    0600 if it exists. OSError when it can not be opened, KeyFileError when it is not a
    regular file. (Local databases: SQLite then opens the file it finds.)"""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"{path} is not a regular file")
        if info.st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def write_public_file(
    path: Path | str, data: bytes, mode: int = 0o644, *, overwrite: bool = True
) -> None:
    """Write a non-secret file (certificate, request, state) atomically with ``mode``."""
    atomic_write(path, data, mode=mode, overwrite=overwrite)


def atomic_write(path: Path | str, data: bytes, *, mode: int, overwrite: bool) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise KeyFileError(f"can not write {target}: {exc.strerror}") from exc
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        _commit(tmp, target, overwrite)
    except OSError as exc:
        raise KeyFileError(f"can not write {target}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(target.parent)


def _commit(tmp: Path, target: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # fails atomically when the target exists
    except FileExistsError as exc:
        raise KeyFileError(f"refusing to overwrite {target}") from exc


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_private_file(path: Path | str) -> None:
    """Create ``path`` empty with mode 0600 (its directory 0700) unless it exists; refuse an
    existing one that other users can read or write (a database file, for instance).

    A file that others could read is refused rather than repaired: its contents may
    already have been copied, which the operator must know.
    """
    file = Path(path)
    file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(file, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600))
    except FileExistsError:
        mode = file.stat().st_mode & 0o777
        if mode & 0o077:
            raise PermissionError(
                f"{file} is readable by other users (mode {mode:o}); "
                f"check who copied it, then chmod 600 {file}"
            ) from None


def make_private_dir(directory: Path | str, *, must_be_empty: bool) -> Path:
    """Create ``directory`` (or take an existing one) with mode 0700."""
    path = Path(directory)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if must_be_empty and any(path.iterdir()):
            raise KeyFileError(f"refusing to use {path}: the directory is not empty")
        os.chmod(path, 0o700)
    except OSError as exc:
        raise KeyFileError(f"can not create {path}: {exc.strerror}") from exc
    return path


STATE_MAC_LABEL = "schakel/key-state-mac/v1"
STATE_LABEL = "schakel/key-state/v1"
MAX_STATE_BYTES = 4 * 1024 * 1024


def state_mac_key(seed: bytes) -> bytes:
    """The key that authenticates a directory's state.json, derived from its signing seed."""
    return digest(STATE_MAC_LABEL, seed)


def _state_mac(mac_key: bytes, body: bytes) -> bytes:
    return hmac.new(mac_key, frame(STATE_LABEL, body), hashlib.sha256).digest()


def write_state(path: Path | str, state: dict[str, Any], mac_key: bytes) -> None:
    """Write ``{"mac": b64url(HMAC), "state": state}`` atomically, mode 0600."""
    body = canonical_json(state)
    data = canonical_json({"mac": b64e(_state_mac(mac_key, body)), "state": state}) + b"\n"
    atomic_write(path, data, mode=0o600, overwrite=True)


def read_state(path: Path | str, mac_key: bytes, *, format: str) -> dict[str, Any]:
    """Read and authenticate a state file written by :func:`write_state`."""
    data = read_bounded(path, MAX_STATE_BYTES, private=True)
    try:
        outer = _exact_keys(loads_strict(data, max_bytes=MAX_STATE_BYTES), {"mac", "state"}, "")
        mac = b64d(outer["mac"], max_len=32)
        state = outer["state"]
        ok = isinstance(state, dict) and hmac.compare_digest(
            mac, _state_mac(mac_key, canonical_json(state))
        )
    except (EncodingError, KeyFileError) as exc:
        raise KeyFileError(f"{path} is not a valid state file") from exc
    if not ok:
        raise KeyFileError(f"{path} has been altered or belongs to another key")
    if state.get("format") != format or state.get("v") != VERSION:
        raise KeyFileError(f"{path} is not a {format} state file of version {VERSION}")
    result: dict[str, Any] = state
    return result
