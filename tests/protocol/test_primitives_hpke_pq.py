"""The KEM of key bundles and envelopes against the published vector of draft-ietf-hpke-pq-04.

docs/protocol.md ("KEM keys") pins the hybrid KEM to MLKEM768-X25519 (HPKE KEM id
0x647A) as draft-ietf-hpke-pq-04 specifies it. The draft publishes one test vector for
the suite Schakel uses (HKDF-SHA256, ChaCha20-Poly1305, base mode), copied to
tests/vectors/third_party/hpke-pq. Its recipient key is the drafts' 32-byte seed; the
SHAKE256 expansion of that seed is exactly Schakel's 96-byte seed form (ML-KEM-768
``d || z``, then the X25519 private key), so the vector also checks that form.

The vector's first message carries associated data, which the public single-shot API
of pyca/cryptography does not take; the library's own tests use its internal
``_decrypt_with_aad`` for this, and so does this test (Schakel itself always seals with
empty associated data).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.bindings._rust import openssl as rust_openssl

from protocol.keybundle import KEM_NAME, SUITE, kem_private_key, kem_public_bytes

VECTOR_FILE = (
    Path(__file__).resolve().parents[1]
    / "vectors"
    / "third_party"
    / "hpke-pq"
    / "mlkem768-x25519_hkdf-sha256_chacha20-poly1305.json"
)
KEM_ID, KDF_HKDF_SHA256, AEAD_CHACHA20_POLY1305 = 0x647A, 0x0001, 0x0003


def _vector() -> dict[str, Any]:
    if not VECTOR_FILE.is_file():
        pytest.fail(f"HPKE vector not found at {VECTOR_FILE} (see tests/vectors/third_party)")
    (vector,) = json.loads(VECTOR_FILE.read_text(encoding="utf-8"))
    assert isinstance(vector, dict)
    return vector


VECTOR = _vector()


def _hex(name: str, source: dict[str, Any] = VECTOR) -> bytes:
    return bytes.fromhex(source[name])


def _schakel_seed() -> bytes:
    """The drafts' 32-byte recipient seed, expanded as X-Wing expands it (SHAKE256, 96)."""
    return hashlib.shake_256(_hex("skRm")).digest(96)


def _decrypt(ciphertext: bytes, info: bytes, aad: bytes) -> bytes:
    private_key = kem_private_key(_schakel_seed())
    plaintext: bytes = rust_openssl.hpke._decrypt_with_aad(
        SUITE, ciphertext, private_key, info=info, aad=aad
    )
    return plaintext


def test_the_vector_is_for_schakels_suite() -> None:
    assert (VECTOR["mode"], VECTOR["kem_id"]) == (0, KEM_ID)
    assert (VECTOR["kdf_id"], VECTOR["aead_id"]) == (KDF_HKDF_SHA256, AEAD_CHACHA20_POLY1305)
    suite_id = b"HPKE" + KEM_ID.to_bytes(2, "big")
    suite_id += KDF_HKDF_SHA256.to_bytes(2, "big") + AEAD_CHACHA20_POLY1305.to_bytes(2, "big")
    assert _hex("suite_id") == suite_id
    assert KEM_NAME == "MLKEM768-X25519"


def test_public_key_from_the_expanded_seed() -> None:
    assert kem_public_bytes(_schakel_seed()) == _hex("pkRm")
    assert len(_hex("enc")) == 1120


def test_first_message_decrypts() -> None:
    message = VECTOR["encryptions"][0]
    ciphertext = _hex("enc") + _hex("ct", message)
    plaintext = _decrypt(ciphertext, _hex("info"), _hex("aad", message))
    assert plaintext == _hex("pt", message)


@pytest.mark.parametrize("where", ["mlkem-ciphertext", "x25519-share", "aead-ciphertext"])
def test_a_changed_byte_does_not_decrypt(where: str) -> None:
    message = VECTOR["encryptions"][0]
    ciphertext = bytearray(_hex("enc") + _hex("ct", message))
    index = {"mlkem-ciphertext": 10, "x25519-share": 1100, "aead-ciphertext": 1130}[where]
    ciphertext[index] ^= 0x01
    with pytest.raises(InvalidTag):
        _decrypt(bytes(ciphertext), _hex("info"), _hex("aad", message))


def test_other_info_does_not_decrypt() -> None:
    message = VECTOR["encryptions"][0]
    with pytest.raises(InvalidTag):
        _decrypt(_hex("enc") + _hex("ct", message), b"", _hex("aad", message))
