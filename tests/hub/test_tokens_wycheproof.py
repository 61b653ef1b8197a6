"""Wycheproof's JSON Web Signature vectors against the JWS layer of hub.tokens.

``verify_jws_es256`` is the code path ``TokenService.verify`` uses for the
signature; the vectors' payloads are not our claims, so they test that layer
only. A group whose key is a P-256 JWK is imported with ``public_key_from_jwk``
(which refuses keys marked for encryption); every other group's vectors must be
refused whatever P-256 key we verify them with.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from hub.tokens import InvalidToken, public_key_from_jwk, verify_jws_es256

VECTORS = (
    Path(__file__).resolve().parents[1]
    / "vectors"
    / "third_party"
    / "wycheproof"
    / "json_web_signature_test.json"
)


@pytest.fixture(scope="module")
def groups() -> list[dict[str, Any]]:
    if not VECTORS.is_file():
        pytest.fail(f"Wycheproof vectors missing: {VECTORS}")
    data = json.loads(VECTORS.read_text(encoding="utf-8"))
    assert data["numberOfTests"] == sum(len(group["tests"]) for group in data["testGroups"])
    return list(data["testGroups"])


def _is_p256(jwk: dict[str, Any] | None) -> bool:
    return bool(jwk) and jwk.get("kty") == "EC" and jwk.get("crv") == "P-256"  # type: ignore[union-attr]


def _accepts(jws: object, key: ec.EllipticCurvePublicKey) -> bool:
    try:
        verify_jws_es256(jws, key)
    except InvalidToken:
        return False
    return True


def test_p256_groups(groups: list[dict[str, Any]]) -> None:
    counts: Counter[str] = Counter()
    wrong = []
    for group in groups:
        if not _is_p256(group.get("public")):
            continue
        try:
            key = public_key_from_jwk(group["public"])
        except ValueError:
            key = None  # refused at import: its vectors count as rejected
        for test in group["tests"]:
            accepted = key is not None and _accepts(test["jws"], key)
            counts[f"{test['result']}-{'accepted' if accepted else 'rejected'}"] += 1
            if accepted != (test["result"] == "valid"):
                wrong.append((test["tcId"], test["comment"], test["result"]))
    print(f"wycheproof JWS, P-256 groups: {dict(counts)}")
    assert wrong == []
    assert counts["valid-accepted"] == 2
    assert counts["invalid-rejected"] == 39
    assert set(counts) == {"valid-accepted", "invalid-rejected"}


def test_other_groups_are_all_refused(groups: list[dict[str, Any]]) -> None:
    es256 = next(group for group in groups if group["comment"] == "es256")
    keys = [
        public_key_from_jwk(es256["public"]),
        ec.generate_private_key(ec.SECP256R1()).public_key(),
    ]
    refused = 0
    accepted = []
    for group in groups:
        if _is_p256(group.get("public")):
            continue
        if group.get("public") is not None:
            with pytest.raises(ValueError):
                public_key_from_jwk(group["public"])
        for test in group["tests"]:
            if any(_accepts(test["jws"], key) for key in keys):
                accepted.append(test["tcId"])
            refused += 1
    print(f"wycheproof JWS, other algorithms: {refused} refused")
    assert accepted == []
    assert refused == 401 - 41


def test_every_vector_is_counted(groups: list[dict[str, Any]]) -> None:
    p256 = sum(len(g["tests"]) for g in groups if _is_p256(g.get("public")))
    assert p256 == 41
    assert sum(len(g["tests"]) for g in groups) == 401
