"""The primitives under the envelope, against Project Wycheproof's test vectors.

Each Wycheproof case is ``valid``, ``invalid`` or ``acceptable``:

* XChaCha20-Poly1305 (pynacl's ``crypto_aead_xchacha20poly1305_ietf_*``): every
  valid case must encrypt to ``ct || tag`` and decrypt back; every invalid one
  (modified tag, wrong nonce size) must be refused by decryption. There are no
  acceptable cases.
* Ed25519 (cryptography's ``Ed25519PublicKey.verify``): valid signatures verify,
  invalid ones (malleable S, bad encodings, truncated or padded signatures, ...)
  are refused. There are no acceptable cases.
* X25519 (cryptography's ``X25519PrivateKey.exchange``): valid cases give the
  expected shared secret. Acceptable cases are of two sorts, and we pin what
  the library does with each: a public key of low order, whose shared secret is
  all zeros (``ZeroSharedSecret``), is refused with ``ValueError`` (this is
  the behaviour Schakel relies on: ``keybundle`` refuses such keys); every other
  acceptable case (twist points, non-canonical encodings) is computed as
  RFC 7748 says and must give the expected secret.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)
from nacl.exceptions import CryptoError

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "third_party" / "wycheproof"


def _load(name: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    path = VECTORS / name
    if not path.is_file():
        pytest.fail(
            f"Wycheproof vectors not found at {path} (tests/vectors/third_party, see its README.md)"
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    cases = [(group, test) for group in data["testGroups"] for test in group["tests"]]
    assert len(cases) == data["numberOfTests"], f"{name}: case count does not match its header"
    return cases


def _params(name: str) -> list[Any]:
    return [pytest.param(group, test, id=f"tc{test['tcId']}") for group, test in _load(name)]


def _hex(value: str) -> bytes:
    return bytes.fromhex(value)


# --- XChaCha20-Poly1305 -------------------------------------------------------------------


@pytest.mark.parametrize(("group", "test"), _params("xchacha20_poly1305_test.json"))
def test_xchacha20_poly1305(group: dict[str, Any], test: dict[str, Any]) -> None:
    key, nonce, aad = _hex(test["key"]), _hex(test["iv"]), _hex(test["aad"])
    msg, sealed = _hex(test["msg"]), _hex(test["ct"]) + _hex(test["tag"])
    if test["result"] == "valid":
        assert crypto_aead_xchacha20poly1305_ietf_encrypt(msg, aad, nonce, key) == sealed
        assert crypto_aead_xchacha20poly1305_ietf_decrypt(sealed, aad, nonce, key) == msg
        return
    assert test["result"] == "invalid", "no acceptable cases are expected for this AEAD"
    # nacl.exceptions.TypeError (bad nonce size) is a CryptoError too.
    with pytest.raises(CryptoError):
        crypto_aead_xchacha20poly1305_ietf_decrypt(sealed, aad, nonce, key)


def test_xchacha20_poly1305_has_both_outcomes() -> None:
    results = {test["result"] for _, test in _load("xchacha20_poly1305_test.json")}
    assert results == {"valid", "invalid"}


# --- Ed25519 ------------------------------------------------------------------------------


def _ed25519_verify(group: dict[str, Any], test: dict[str, Any]) -> None:
    key = Ed25519PublicKey.from_public_bytes(_hex(group["publicKey"]["pk"]))
    key.verify(_hex(test["sig"]), _hex(test["msg"]))


@pytest.mark.parametrize(("group", "test"), _params("ed25519_test.json"))
def test_ed25519(group: dict[str, Any], test: dict[str, Any]) -> None:
    if test["result"] == "valid":
        _ed25519_verify(group, test)
        return
    assert test["result"] == "invalid", "no acceptable cases are expected for Ed25519"
    with pytest.raises((InvalidSignature, ValueError)):
        _ed25519_verify(group, test)


# --- X25519 -------------------------------------------------------------------------------


def _x25519(test: dict[str, Any]) -> bytes:
    private = X25519PrivateKey.from_private_bytes(_hex(test["private"]))
    return private.exchange(X25519PublicKey.from_public_bytes(_hex(test["public"])))


@pytest.mark.parametrize(("group", "test"), _params("x25519_test.json"))
def test_x25519(group: dict[str, Any], test: dict[str, Any]) -> None:
    assert group["curve"] == "curve25519"
    zero_secret = "ZeroSharedSecret" in test["flags"]
    assert zero_secret == (_hex(test["shared"]) == bytes(32)), "flag and secret disagree"
    if test["result"] == "invalid" or zero_secret:
        with pytest.raises(ValueError):
            _x25519(test)
        return
    assert test["result"] in ("valid", "acceptable")
    assert _x25519(test) == _hex(test["shared"])
