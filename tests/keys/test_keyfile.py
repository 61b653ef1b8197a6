"""Encrypted key files, atomic writes, authenticated state files and passphrases."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from keys import keyfile
from keys.errors import KeyFileError, PassphraseError
from keys.keyfile import (
    KIND_ED25519,
    KIND_KEM_SEED,
    KIND_LINKING_KEY,
    KIND_TOKEN_ES256,
    KdfParams,
    decrypt_key,
    encrypt_key,
    kdf_params_from_env,
    key_file_params,
    read_key_file,
    read_state,
    state_mac_key,
    write_key_file,
    write_public_file,
    write_state,
)
from keys.passphrase import get_passphrase
from protocol.encoding import b64d, b64e, canonical_json

WEAK = KdfParams.for_tests()
PASS = b"correct horse battery staple"
SECRET = bytes(range(32))


def _write(path: Path, kind: str = KIND_ED25519, secret: bytes = SECRET) -> Path:
    write_key_file(path, kind, secret, PASS, WEAK, allow_weak=True)
    return path


def _doc(path: Path) -> dict:
    return json.loads(path.read_bytes())


def _rewrite(path: Path, doc: dict) -> None:
    path.write_bytes(canonical_json(doc) + b"\n")


# -- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "secret"),
    [
        (KIND_ED25519, bytes(32)),
        (KIND_KEM_SEED, bytes(range(96))),
        (KIND_LINKING_KEY, b"\xff" * 32),
        (KIND_TOKEN_ES256, b"-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n"),
    ],
)
def test_round_trip_every_kind(tmp_path: Path, kind: str, secret: bytes) -> None:
    path = _write(tmp_path / "k.key", kind, secret)
    assert read_key_file(path, PASS, kind=kind) == secret


def test_file_is_canonical_json_with_the_documented_fields(tmp_path: Path) -> None:
    path = _write(tmp_path / "k.key")
    data = path.read_bytes()
    doc = json.loads(data)
    assert data == canonical_json(doc) + b"\n"
    assert set(doc) == {"box", "format", "kdf", "kind", "v"}
    assert doc["format"] == "schakel-key" and doc["v"] == 1 and doc["kind"] == "ed25519"
    assert doc["kdf"] == {
        "alg": "argon2id13",
        "memlimit": WEAK.memlimit,
        "opslimit": WEAK.opslimit,
        "salt": doc["kdf"]["salt"],
    }
    assert len(b64d(doc["kdf"]["salt"])) == 16
    # nonce 24 + MAC 16 + the inner canonical JSON
    inner = canonical_json(
        {"format": "schakel-key", "kind": "ed25519", "secret": b64e(SECRET), "v": 1}
    )
    assert len(b64d(doc["box"])) == 24 + 16 + len(inner)
    assert SECRET not in data and b64e(SECRET).encode() not in data


def test_pure_encrypt_is_deterministic_and_matches_the_spec() -> None:
    import nacl.pwhash.argon2id as argon2id
    import nacl.secret

    salt, nonce = bytes(16), bytes(range(24))
    data = encrypt_key(KIND_ED25519, SECRET, PASS, WEAK, salt=salt, nonce=nonce)
    assert data == encrypt_key(KIND_ED25519, SECRET, PASS, WEAK, salt=salt, nonce=nonce)
    key = argon2id.kdf(32, PASS, salt, opslimit=WEAK.opslimit, memlimit=WEAK.memlimit)
    inner = canonical_json(
        {"format": "schakel-key", "kind": "ed25519", "secret": b64e(SECRET), "v": 1}
    )
    box = nacl.secret.SecretBox(key).encrypt(inner, nonce)
    assert json.loads(data)["box"] == b64e(bytes(box))
    assert decrypt_key(data, PASS, kind=KIND_ED25519, source="mem") == SECRET


VECTOR = (
    b'{"box":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYX0M6uOKlL_mAYx69fuobpsbSpFd3jnxERZK4xQsRn-6V4Y3arl2'
    b"NzXZWB7D6X5_IXX6luD9iLO0Q2Pd_NHHKJQzl2E4RNVxbiuEayKdsPAFtWeu4StUPqAxhIDedgB5qGcwimCbEVcrPf7aGO"
    b'vlSsAaqdHJcJAA","format":"schakel-key","kdf":{"alg":"argon2id13","memlimit":8192,"opslimit":1,'
    b'"salt":"AAECAwQFBgcICQoLDA0ODw"},"kind":"ed25519","v":1}\n'
)


def test_documented_vector() -> None:
    """The vector in docs/protocol.md."""
    data = encrypt_key(
        KIND_ED25519,
        SECRET,
        PASS,
        KdfParams(1, 8192),
        salt=bytes(range(16)),
        nonce=bytes(range(24)),
    )
    assert data == VECTOR
    assert decrypt_key(VECTOR, PASS, kind=KIND_ED25519, source="vector") == SECRET


def test_passphrase_is_nfc_normalised(tmp_path: Path) -> None:
    composed, decomposed = "café".encode(), "cafe\u0301".encode()
    write_key_file(tmp_path / "k.key", KIND_ED25519, SECRET, composed, WEAK, allow_weak=True)
    assert read_key_file(tmp_path / "k.key", decomposed, kind=KIND_ED25519) == SECRET


def test_key_file_params_reads_the_header(tmp_path: Path) -> None:
    assert key_file_params(_write(tmp_path / "k.key")) == WEAK


# -- refusals when writing ------------------------------------------------------------------


def test_weak_params_refused_without_allow_weak(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="below production strength"):
        write_key_file(tmp_path / "k.key", KIND_ED25519, SECRET, PASS, WEAK)
    assert not list(tmp_path.iterdir())


def test_production_params_are_not_weak() -> None:
    assert not KdfParams.production().weak
    assert WEAK.weak


def test_empty_passphrase_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="empty passphrase"):
        write_key_file(tmp_path / "k.key", KIND_ED25519, SECRET, b"", WEAK, allow_weak=True)
    assert not list(tmp_path.iterdir())


def test_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    path = _write(tmp_path / "k.key")
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        _write(path, secret=bytes(32))
    assert read_key_file(path, PASS, kind=KIND_ED25519) == SECRET
    write_key_file(path, KIND_ED25519, bytes(32), PASS, WEAK, allow_weak=True, overwrite=True)
    assert read_key_file(path, PASS, kind=KIND_ED25519) == bytes(32)


def test_no_clobber_race_is_caught_by_the_link(tmp_path: Path, monkeypatch) -> None:
    # The target appears between the early check and the commit: the hard link fails.
    path = tmp_path / "k.key"
    real = keyfile.encrypt_key

    def racing(*args, **kwargs):
        path.write_bytes(b"someone else's")
        return real(*args, **kwargs)

    monkeypatch.setattr(keyfile, "encrypt_key", racing)
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        _write(path)
    assert path.read_bytes() == b"someone else's"
    assert [p.name for p in tmp_path.iterdir()] == ["k.key"]


@pytest.mark.parametrize(
    ("kind", "secret", "message"),
    [
        ("rsa", SECRET, "unknown key kind"),
        (KIND_ED25519, bytes(31), "32 bytes"),
        (KIND_KEM_SEED, bytes(32), "96 bytes"),
        (KIND_TOKEN_ES256, b"", "1 to"),
    ],
)
def test_bad_kind_or_length_refused(tmp_path: Path, kind: str, secret: bytes, message: str) -> None:
    with pytest.raises(KeyFileError, match=message):
        write_key_file(tmp_path / "k.key", kind, secret, PASS, WEAK, allow_weak=True)


def test_mode_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = _write(tmp_path / "k.key")
        public = tmp_path / "root.pem"
        write_public_file(public, b"cert")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644


def test_failed_write_leaves_nothing_behind(tmp_path: Path, monkeypatch) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(keyfile.os, "fsync", broken_fsync)
    with pytest.raises(KeyFileError, match="can not write"):
        _write(tmp_path / "k.key")
    assert list(tmp_path.iterdir()) == []


def test_failed_replace_keeps_the_old_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "cert.pem"
    write_public_file(path, b"old")

    def broken_replace(src, dst) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keyfile.os, "replace", broken_replace)
    with pytest.raises(KeyFileError, match="can not write"):
        write_public_file(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["cert.pem"]


# -- refusals when reading ------------------------------------------------------------------


def test_wrong_passphrase(tmp_path: Path) -> None:
    path = _write(tmp_path / "k.key")
    with pytest.raises(KeyFileError) as info:
        read_key_file(path, b"wrong", kind=KIND_ED25519)
    assert str(info.value) == f"could not decrypt {path}: wrong passphrase or damaged file"
    assert PASS.decode() not in str(info.value)


def test_wrong_kind_requested(tmp_path: Path) -> None:
    path = _write(tmp_path / "k.key")
    with pytest.raises(KeyFileError, match="holds a 'ed25519' key, expected 'linking-key'"):
        read_key_file(path, PASS, kind=KIND_LINKING_KEY)


def test_kind_swap_in_header_is_detected(tmp_path: Path) -> None:
    path = _write(tmp_path / "k.key")
    doc = _doc(path)
    doc["kind"] = KIND_LINKING_KEY  # same length, so only the bound kind can tell
    _rewrite(path, doc)
    with pytest.raises(KeyFileError, match="does not match the encrypted key"):
        read_key_file(path, PASS, kind=KIND_LINKING_KEY)


def _flip(text: str) -> str:
    raw = bytearray(b64d(text))
    raw[len(raw) // 2] ^= 1
    return b64e(bytes(raw))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(box=_flip(d["box"])), "wrong passphrase or damaged"),
        (lambda d: d["kdf"].update(salt=_flip(d["kdf"]["salt"])), "wrong passphrase or damaged"),
        (
            lambda d: d["kdf"].update(opslimit=d["kdf"]["opslimit"] + 1),
            "wrong passphrase or damaged",
        ),
        (
            lambda d: d["kdf"].update(memlimit=d["kdf"]["memlimit"] * 2),
            "wrong passphrase or damaged",
        ),
        (lambda d: d["kdf"].update(memlimit=1 << 40), "memlimit .* out of bounds"),
        (lambda d: d["kdf"].update(opslimit=10**6), "opslimit .* out of bounds"),
        (lambda d: d["kdf"].update(opslimit=True), "opslimit must be an integer"),
        (lambda d: d["kdf"].update(alg="scrypt"), "unsupported KDF"),
        (lambda d: d["kdf"].update(salt=b64e(bytes(8))), "salt must be 16 bytes"),
        (lambda d: d["kdf"].update(pepper=1), "exactly the fields"),
        (lambda d: d.update(v=2), "unsupported key file version 2"),
        (lambda d: d.update(v=True), "unsupported key file version"),
        (lambda d: d.update(format="other"), "not a Schakel key file"),
        (lambda d: d.update(kind=7), "kind must be a string"),
        (lambda d: d.update(box=d["box"] + "="), "not a valid key file"),
        (lambda d: d.pop("kdf"), "exactly the fields"),
        (lambda d: d.update(extra=1), "exactly the fields"),
    ],
)
def test_tampered_fields_are_rejected(tmp_path: Path, mutate, message: str) -> None:
    path = _write(tmp_path / "k.key")
    doc = _doc(path)
    mutate(doc)
    _rewrite(path, doc)
    with pytest.raises(KeyFileError, match=message):
        read_key_file(path, PASS, kind=KIND_ED25519)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a valid key file"),
        (b"not json", "not a valid key file"),
        (b"[]", "exactly the fields"),
        (b'{"a":1,"a":2}', "not a valid key file"),
        (b"x" * (64 * 1024 + 1), "larger than"),
    ],
)
def test_garbage_files_are_rejected(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "k.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match=message):
        read_key_file(path, PASS, kind=KIND_ED25519)


def test_group_readable_key_file_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "k.key")
    path.chmod(0o640)
    with pytest.raises(
        KeyFileError, match=r"accessible by other users \(mode 0640\); run: chmod 600"
    ):
        read_key_file(path, PASS, kind=KIND_ED25519)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"can not read .*No such file"):
        read_key_file(tmp_path / "absent.key", PASS, kind=KIND_ED25519)
    with pytest.raises(KeyFileError, match="not a regular file"):
        read_key_file(tmp_path, PASS, kind=KIND_ED25519)


# -- state files ----------------------------------------------------------------------------


def test_state_round_trip_and_tamper(tmp_path: Path) -> None:
    path, mac_key = tmp_path / "state.json", state_mac_key(SECRET)
    state = {"format": "schakel-test", "v": 1, "revoked": {"3": 5}}
    write_state(path, state, mac_key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_state(path, mac_key, format="schakel-test") == state
    with pytest.raises(KeyFileError, match="not a schakel-other state file"):
        read_state(path, mac_key, format="schakel-other")
    with pytest.raises(KeyFileError, match="altered or belongs to another key"):
        read_state(path, state_mac_key(bytes(32)), format="schakel-test")
    doc = _doc(path)
    doc["state"]["revoked"] = {}
    _rewrite(path, doc)
    with pytest.raises(KeyFileError, match="altered"):
        read_state(path, mac_key, format="schakel-test")
    path.write_bytes(b'{"state": {}}')
    with pytest.raises(KeyFileError, match="not a valid state file"):
        read_state(path, mac_key, format="schakel-test")


# -- passphrases ----------------------------------------------------------------------------


def _fd_with(data: bytes) -> int:
    read, write = os.pipe()
    os.write(write, data)
    os.close(write)
    return read


def test_passphrase_from_fd_reads_one_line_only() -> None:
    fd = _fd_with(b"first line\r\nsecond line\n")
    try:
        got = get_passphrase(env_var=None, fd=fd, prompt="?")
        assert got == b"first line"
        assert os.read(fd, 100) == b"second line\n"
    finally:
        os.close(fd)


def test_fd_wins_over_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("TEST_PASS", "from env")
    fd = _fd_with(b"from fd")
    try:
        assert get_passphrase(env_var="TEST_PASS", fd=fd, prompt="?") == b"from fd"
    finally:
        os.close(fd)


def test_passphrase_from_env(monkeypatch) -> None:
    monkeypatch.setenv("TEST_PASS", "géheim")
    assert get_passphrase(env_var="TEST_PASS", fd=None, prompt="?") == "géheim".encode()


def test_empty_sources_are_refused(monkeypatch) -> None:
    monkeypatch.setenv("TEST_PASS", "")
    with pytest.raises(PassphraseError, match="environment variable TEST_PASS is empty"):
        get_passphrase(env_var="TEST_PASS", fd=None, prompt="?")
    fd = _fd_with(b"\n")
    try:
        with pytest.raises(PassphraseError, match=r"file descriptor .* is empty"):
            get_passphrase(env_var=None, fd=fd, prompt="?")
    finally:
        os.close(fd)


def test_bad_fd_is_a_clear_error() -> None:
    read, write = os.pipe()
    os.close(read)
    os.close(write)
    with pytest.raises(
        PassphraseError, match=f"can not read a passphrase from file descriptor {read}"
    ):
        get_passphrase(env_var=None, fd=read, prompt="?")


class _Stdin:
    def __init__(self, tty: bool) -> None:
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_no_source_and_no_terminal_says_how(monkeypatch) -> None:
    monkeypatch.delenv("TEST_PASS", raising=False)
    monkeypatch.setattr("sys.stdin", _Stdin(False))
    with pytest.raises(PassphraseError) as info:
        get_passphrase(env_var="TEST_PASS", fd=None, prompt="?")
    assert "TEST_PASS" in str(info.value) and "--passphrase-fd" in str(info.value)


def test_prompt_confirms_when_creating(monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", _Stdin(True))
    answers = iter(["one long passphrase", "another long passphrase"])
    prompts: list[str] = []

    def fake_getpass(prompt: str) -> str:
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr("getpass.getpass", fake_getpass)
    with pytest.raises(PassphraseError, match="differ"):
        get_passphrase(env_var=None, fd=None, prompt="New passphrase: ", confirm=True)
    assert prompts == ["New passphrase: ", "Repeat the passphrase: "]
    answers = iter(["same words twice", "same words twice"])
    assert get_passphrase(env_var=None, fd=None, prompt="p", confirm=True) == b"same words twice"
    answers = iter(["once"])
    assert get_passphrase(env_var=None, fd=None, prompt="p") == b"once"


def test_weak_kdf_only_when_the_environment_asks_for_it_exactly() -> None:
    assert kdf_params_from_env({}) == KdfParams.production()
    assert kdf_params_from_env({"SCHAKEL_WEAK_KDF": "yes"}) == KdfParams.production()
    assert kdf_params_from_env({"SCHAKEL_WEAK_KDF": "0"}) == KdfParams.production()
    weak = kdf_params_from_env({"SCHAKEL_WEAK_KDF": "1"})
    assert weak == KdfParams.for_tests() and weak.weak
    assert not KdfParams.production().weak


@pytest.mark.parametrize(
    ("passphrase", "says"),
    [
        ("s3cr3t", "too short: use at least 12 characters"),
        ("elevenchars", "too short"),
        ("aaaaaaaaaaaaaaaa", "too easy to guess"),
        ("abababababababab", "too easy to guess"),
        ("abcabcabcabcabc", "too easy to guess"),
        ("123456789012", "too easy to guess"),
        ("abcdefghijklmnop", "too easy to guess"),
        ("QWERTYUIOPASDF", "too easy to guess"),
        ("qwertyuiop12", "too easy to guess"),
        ("abcdefgh-1234", "too easy to guess"),
        ("Password123456", "too easy to guess"),
        ("wachtwoord2026!", "too easy to guess"),
    ],
)
def test_a_new_passphrase_must_be_strong_enough(
    monkeypatch: pytest.MonkeyPatch, passphrase: str, says: str
) -> None:
    monkeypatch.setenv("TEST_PASS", passphrase)
    with pytest.raises(PassphraseError, match=says) as caught:
        get_passphrase(env_var="TEST_PASS", fd=None, prompt="?", confirm=True)
    assert passphrase not in str(caught.value)
    # Opening an existing key never judges the passphrase it was made with.
    assert get_passphrase(env_var="TEST_PASS", fd=None, prompt="?") == passphrase.encode()


@pytest.mark.parametrize(
    "passphrase", ["correct horse battery staple", "twaalf tekens", "demo-only-passphrase"]
)
def test_a_strong_new_passphrase_is_taken(monkeypatch: pytest.MonkeyPatch, passphrase: str) -> None:
    monkeypatch.setenv("TEST_PASS", passphrase)
    got = get_passphrase(env_var="TEST_PASS", fd=None, prompt="?", confirm=True)
    assert got == passphrase.encode()


def test_passphrase_from_a_systemd_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "passphrase").write_bytes(b"from the credential\nignored\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    monkeypatch.setenv("SOME_PASSPHRASE", "from the environment")
    got = get_passphrase(env_var="SOME_PASSPHRASE", fd=None, prompt="", credential="passphrase")
    assert got == b"from the credential"  # before the environment
    for name, match in (("../passphrase", "file name"), ("absent", "can not read")):
        with pytest.raises(PassphraseError, match=match):
            get_passphrase(env_var=None, fd=None, prompt="", credential=name)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(PassphraseError, match="CREDENTIALS_DIRECTORY is not set"):
        get_passphrase(env_var=None, fd=None, prompt="", credential="passphrase")
