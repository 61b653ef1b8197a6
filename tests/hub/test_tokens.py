"""Access tokens: a good token round-trips; every malformed or forged one is InvalidToken.

Hostile tokens are built by hand here (cryptography + base64), never with
python-jose, so the tests do not share the library's assumptions. ``forge``
is first shown to produce tokens the service accepts, so that a rejection
below is caused by the one thing each test changes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from hub.tokens import (
    InvalidToken,
    TokenClaims,
    TokenService,
    generate_signing_key,
    public_key_from_jwk,
    verify_jws_es256,
)
from protocol.encoding import b64d, b64e, canonical_json

ISSUER = "https://hub.test.example"
AUDIENCE = "schakel-test-network"
NOW = 1_700_000_000
JTI = "q3Jk8v0Zr1mXw2aYb4cD5e"
CERT = "C" * 42 + "A"  # a well-formed certificate fingerprint
HEADER = {"alg": "ES256", "typ": "JWT"}
B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.fixture(scope="module")
def pem() -> bytes:
    return generate_signing_key()


@pytest.fixture(scope="module")
def service(pem: bytes) -> TokenService:
    return TokenService(pem, issuer=ISSUER, audience=AUDIENCE)


@pytest.fixture(scope="module")
def key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    loaded = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    return loaded


def good_claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "politie-oost",
        "cert": CERT,
        "jti": JTI,
        "iat": NOW,
        "exp": NOW + 900,
        "roles": ["coordinator", "member"],
    }
    claims.update(changes)
    return claims


def es256(key: ec.EllipticCurvePrivateKey, signing_input: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def forge(
    key: ec.EllipticCurvePrivateKey,
    header: dict[str, Any] | bytes = HEADER,
    claims: dict[str, Any] | bytes | None = None,
) -> str:
    """A JWS signed correctly with ``key`` over exactly the given header and payload."""
    raw_header = header if isinstance(header, bytes) else canonical_json(header)
    if claims is None:
        claims = good_claims()
    payload = claims if isinstance(claims, bytes) else canonical_json(claims)
    signing_input = (b64e(raw_header) + "." + b64e(payload)).encode("ascii")
    return signing_input.decode("ascii") + "." + b64e(es256(key, signing_input))


def segments(token: str) -> list[str]:
    return token.split(".")


# --- good tokens ---------------------------------------------------------------------------


def test_round_trip(service: TokenService) -> None:
    token = service.issue("politie-oost", {"member", "coordinator"}, cert=CERT, now=NOW, jti=JTI)
    claims = service.verify(token, now=NOW + 1)
    assert claims == TokenClaims(
        org="politie-oost",
        cert=CERT,
        roles=frozenset({"member", "coordinator"}),
        jti=JTI,
        issued_at=NOW,
        expires_at=NOW + 900,
    )


def test_issued_token_has_the_documented_bytes(service: TokenService) -> None:
    token = service.issue(
        "ggd-west", ["member", "coordinator", "member"], cert=CERT, now=NOW, jti=JTI
    )
    header, payload, signature = segments(token)
    assert b64d(header) == b'{"alg":"ES256","typ":"JWT"}'
    assert b64d(payload) == canonical_json(good_claims(sub="ggd-west"))
    assert len(b64d(signature)) == 64


def test_forge_makes_tokens_the_service_accepts(
    service: TokenService, key: ec.EllipticCurvePrivateKey
) -> None:
    assert service.verify(forge(key), now=NOW).org == "politie-oost"


def test_token_without_roles_is_valid(service: TokenService) -> None:
    token = service.issue("school-12", [], cert=CERT, now=NOW, jti=JTI)
    assert service.verify(token, now=NOW).roles == frozenset()


def test_valid_until_one_second_before_exp(service: TokenService) -> None:
    token = service.issue("politie-oost", ["member"], cert=CERT, now=NOW, jti=JTI)
    assert service.verify(token, now=NOW + 899).expires_at == NOW + 900


def test_iat_may_lie_sixty_seconds_ahead(service: TokenService) -> None:
    token = service.issue("politie-oost", ["member"], cert=CERT, now=NOW + 60, jti=JTI)
    assert service.verify(token, now=NOW).issued_at == NOW + 60


def test_public_jwk_verifies_the_service_tokens(service: TokenService) -> None:
    jwk = service.public_jwk()
    assert set(jwk) == {"kty", "crv", "x", "y", "alg", "use", "kid"}
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("EC", "P-256", "ES256", "sig")
    required = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    assert jwk["kid"] == b64e(hashlib.sha256(canonical_json(required)).digest())
    token = service.issue("politie-oost", ["member"], cert=CERT, now=NOW, jti=JTI)
    payload = verify_jws_es256(token, public_key_from_jwk(jwk))
    assert json.loads(payload)["sub"] == "politie-oost"


# --- time, issuer, audience ------------------------------------------------------------------


def test_expired(service: TokenService) -> None:
    token = service.issue("politie-oost", ["member"], cert=CERT, now=NOW, jti=JTI)
    with pytest.raises(InvalidToken):
        service.verify(token, now=NOW + 900)
    with pytest.raises(InvalidToken):
        service.verify(token, now=NOW + 10**6)


def test_not_yet_valid(service: TokenService) -> None:
    token = service.issue("politie-oost", ["member"], cert=CERT, now=NOW + 61, jti=JTI)
    with pytest.raises(InvalidToken):
        service.verify(token, now=NOW)
    far = service.issue("politie-oost", ["member"], cert=CERT, now=NOW + 10**7, jti=JTI)
    with pytest.raises(InvalidToken):
        service.verify(far, now=NOW)


def test_wrong_issuer(pem: bytes, service: TokenService) -> None:
    other = TokenService(pem, issuer="https://other.example", audience=AUDIENCE)
    with pytest.raises(InvalidToken):
        service.verify(other.issue("politie-oost", [], cert=CERT, now=NOW, jti=JTI), now=NOW)


def test_wrong_audience(pem: bytes, service: TokenService) -> None:
    other = TokenService(pem, issuer=ISSUER, audience="another-network")
    with pytest.raises(InvalidToken):
        service.verify(other.issue("politie-oost", [], cert=CERT, now=NOW, jti=JTI), now=NOW)


def test_other_lifetime(pem: bytes, service: TokenService) -> None:
    longer = TokenService(pem, issuer=ISSUER, audience=AUDIENCE, lifetime=3600)
    with pytest.raises(InvalidToken):
        service.verify(longer.issue("politie-oost", [], cert=CERT, now=NOW, jti=JTI), now=NOW)


def test_signed_by_another_p256_key(service: TokenService) -> None:
    stranger = TokenService(generate_signing_key(), issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(InvalidToken):
        service.verify(stranger.issue("politie-oost", [], cert=CERT, now=NOW, jti=JTI), now=NOW)


def test_verify_needs_integer_now(service: TokenService) -> None:
    token = service.issue("politie-oost", [], cert=CERT, now=NOW, jti=JTI)
    with pytest.raises(TypeError):
        service.verify(token, now=float(NOW))  # type: ignore[arg-type]


# --- claims ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["iss", "aud", "sub", "cert", "jti", "iat", "exp", "roles"])
def test_missing_claim(service: TokenService, key: ec.EllipticCurvePrivateKey, name: str) -> None:
    claims = good_claims()
    del claims[name]
    with pytest.raises(InvalidToken):
        service.verify(forge(key, claims=claims), now=NOW)


@pytest.mark.parametrize(
    "changes",
    [
        {"nbf": NOW},
        {"at_hash": "x"},
        {"scope": "all"},
        {"exp": 1_700_000_900.0},
        {"iat": True},
        {"exp": str(NOW + 900)},
        {"exp": NOW + 901},
        {"iat": -900, "exp": 0},
        {"aud": [AUDIENCE]},
        {"iss": ISSUER + "/"},
        {"sub": "Politie-Oost"},
        {"sub": "x"},
        {"sub": None},
        {"jti": "short"},
        {"jti": "has spaces in it, sixteen+"},
        {"jti": 12345678901234567},
        {"roles": ["member", "coordinator"]},
        {"roles": ["member", "member"]},
        {"roles": ["admin"]},
        {"roles": "member"},
        {"roles": [1]},
    ],
    ids=repr,
)
def test_bad_claim(
    service: TokenService, key: ec.EllipticCurvePrivateKey, changes: dict[str, Any]
) -> None:
    claims = good_claims(**changes)
    raw = json.dumps(claims, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(InvalidToken):
        service.verify(forge(key, claims=raw), now=NOW)


def test_duplicate_keys_in_payload(service: TokenService, key: ec.EllipticCurvePrivateKey) -> None:
    canonical = canonical_json(good_claims()).decode()
    duplicated = canonical.replace('"sub":"politie-oost"', '"sub":"ggd-west","sub":"politie-oost"')
    assert duplicated != canonical
    with pytest.raises(InvalidToken):
        service.verify(forge(key, claims=duplicated.encode()), now=NOW)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"null",
        b"[]",
        b'"claims"',
        b"not json",
        b"\xff\xfe",
        json.dumps(good_claims(), indent=1).encode(),  # not the canonical form
        json.dumps(good_claims(), sort_keys=False, separators=(",", ":")).encode(),
    ],
    ids=repr,
)
def test_payload_that_is_not_our_canonical_claims(
    service: TokenService, key: ec.EllipticCurvePrivateKey, payload: bytes
) -> None:
    with pytest.raises(InvalidToken):
        service.verify(forge(key, claims=payload), now=NOW)


# --- header and algorithm --------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "ES256"},
        {"typ": "JWT"},
        {"alg": "ES256", "typ": "jwt"},
        {"alg": "es256", "typ": "JWT"},
        {"alg": "ES256", "typ": "JWT", "kid": "hub-1"},
        {"alg": "ES256", "typ": "JWT", "jku": "https://evil.example/jwks.json"},
        {"alg": "ES256", "typ": "JWT", "x5u": "https://evil.example/cert.pem"},
        {"alg": "ES256", "typ": "JWT", "x5c": ["MIIB"]},
        {"alg": "ES256", "typ": "JWT", "crit": ["exp"], "exp": 1},
        {"alg": "ES256", "typ": "JWT", "b64": False},
        {"alg": "ES256", "typ": "JWT", "jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}},
        {"alg": "RS256", "typ": "JWT"},
        {"alg": "ES384", "typ": "JWT"},
        {"alg": "ES512", "typ": "JWT"},
        {"alg": "EdDSA", "typ": "JWT"},
        {"alg": "PS256", "typ": "JWT"},
        {"alg": "HS256", "typ": "JWT"},
        {"alg": "none", "typ": "JWT"},
        {"alg": ["ES256"], "typ": "JWT"},
    ],
    ids=repr,
)
def test_header_other_than_exactly_ours(
    service: TokenService, key: ec.EllipticCurvePrivateKey, header: dict[str, Any]
) -> None:
    # Correctly signed by the hub's own key: only the header is wrong.
    with pytest.raises(InvalidToken):
        service.verify(forge(key, header=header), now=NOW)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"typ":"JWT","alg":"ES256"}',
        b'{"alg": "ES256", "typ": "JWT"}',
        b'{"alg":"ES256","typ":"JWT","alg":"ES256"}',
        b'{"alg":"ES256","typ":"JWT"} ',
        b'{"alg":"ES\\u0032\\u0035\\u0036","typ":"JWT"}',
    ],
    ids=repr,
)
def test_header_bytes_other_than_canonical(
    service: TokenService, key: ec.EllipticCurvePrivateKey, raw: bytes
) -> None:
    with pytest.raises(InvalidToken):
        service.verify(forge(key, header=raw), now=NOW)


def test_alg_none(service: TokenService) -> None:
    head = b64e(canonical_json({"alg": "none", "typ": "JWT"}))
    body = b64e(canonical_json(good_claims()))
    for signature in ("", b64e(bytes(64))):
        with pytest.raises(InvalidToken):
            service.verify(f"{head}.{body}.{signature}", now=NOW)


def test_hs256_signed_with_public_key_pem(
    service: TokenService, key: ec.EllipticCurvePrivateKey
) -> None:
    """The classic confusion: the public key PEM used as an HMAC secret."""
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for header in ({"alg": "HS256", "typ": "JWT"}, HEADER):
        head = b64e(canonical_json(header))
        body = b64e(canonical_json(good_claims()))
        signing_input = f"{head}.{body}".encode()
        for secret in (public_pem, public_pem.strip()):
            mac = hmac.new(secret, signing_input, hashlib.sha256).digest()
            for signature in (mac, mac + mac):
                with pytest.raises(InvalidToken):
                    service.verify(f"{head}.{body}.{b64e(signature)}", now=NOW)


def test_other_algorithms_with_their_own_signatures(service: TokenService) -> None:
    body = b64e(canonical_json(good_claims()))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    p384 = ec.generate_private_key(ec.SECP384R1())
    signers = {
        "RS256": lambda data: rsa_key.sign(data, padding.PKCS1v15(), hashes.SHA256()),
        "EdDSA": ed_key.sign,
        "ES384": lambda data: _raw_ecdsa(p384, data, hashes.SHA384(), 48),
    }
    for alg, sign in signers.items():
        head = b64e(canonical_json({"alg": alg, "typ": "JWT"}))
        signing_input = f"{head}.{body}".encode()
        with pytest.raises(InvalidToken):
            service.verify(f"{head}.{body}.{b64e(sign(signing_input))}", now=NOW)


def _raw_ecdsa(
    key: ec.EllipticCurvePrivateKey, data: bytes, algorithm: hashes.HashAlgorithm, size: int
) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(algorithm)))
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


# --- encoding --------------------------------------------------------------------------------


def test_padded_base64(service: TokenService) -> None:
    token = service.issue("politie-oost", [], cert=CERT, now=NOW, jti=JTI)
    head, body, sig = segments(token)
    for variant in (
        f"{head}.{body}.{sig}==",
        f"{head}=.{body}.{sig}",
        f"{head}.{body}=.{sig}",
        f"{head}.{body}.{sig}=",
    ):
        with pytest.raises(InvalidToken):
            service.verify(variant, now=NOW)


def _with_trailing_bits(segment: str) -> str:
    last = B64_ALPHABET.index(segment[-1])
    return segment[:-1] + B64_ALPHABET[last | 1]


def test_non_canonical_trailing_bits(service: TokenService) -> None:
    token = service.issue("politie-oost", [], cert=CERT, now=NOW, jti=JTI)
    head, body, sig = segments(token)
    assert len(sig) == 86  # 64 bytes: the last character carries 4 zero bits
    bent = _with_trailing_bits(sig)
    assert bent != sig
    # A lax decoder reads the same 64 bytes: only the canonical-form check can refuse it.
    lax = base64.urlsafe_b64decode(bent + "==")
    assert lax == b64d(sig)
    with pytest.raises(InvalidToken):
        service.verify(f"{head}.{body}.{bent}", now=NOW)


def test_non_canonical_trailing_bits_in_payload(
    service: TokenService, key: ec.EllipticCurvePrivateKey
) -> None:
    claims = next(
        c
        for c in (good_claims(jti=JTI + "x" * n) for n in range(3))
        if len(canonical_json(c)) % 3 == 1
    )
    head = b64e(canonical_json(HEADER))
    body = b64e(canonical_json(claims))
    bent = _with_trailing_bits(body)
    assert bent != body and base64.urlsafe_b64decode(bent + "==") == canonical_json(claims)
    # Signed over the bent text, so a verifier that decodes laxly would accept it.
    signing_input = f"{head}.{bent}".encode()
    with pytest.raises(InvalidToken):
        service.verify(f"{head}.{bent}.{b64e(es256(key, signing_input))}", now=NOW)
    signing_input = f"{head}.{body}".encode()
    assert service.verify(f"{head}.{body}.{b64e(es256(key, signing_input))}", now=NOW)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: " " + t,
        lambda t: t + "\n",
        lambda t: t.replace(".", " .", 1),
        lambda t: t[:20] + "\t" + t[20:],
        lambda t: t[:20] + "\r\n" + t[20:],
        lambda t: "Bearer " + t,
    ],
)
def test_whitespace(service: TokenService, mangle: Any) -> None:
    token = service.issue("politie-oost", [], cert=CERT, now=NOW, jti=JTI)
    with pytest.raises(InvalidToken):
        service.verify(mangle(token), now=NOW)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t + ".",
        lambda t: t + "." + t.split(".")[2],
        lambda t: "." + t,
        lambda t: t.rsplit(".", 1)[0],
        lambda t: t.replace(".", ""),
        lambda t: t.replace(".", "..", 1),
        lambda t: ".".join(t.split(".")[::-1]),
    ],
)
def test_wrong_number_of_segments(service: TokenService, mangle: Any) -> None:
    token = service.issue("politie-oost", [], cert=CERT, now=NOW, jti=JTI)
    with pytest.raises(InvalidToken):
        service.verify(mangle(token), now=NOW)


def test_huge_token(service: TokenService, key: ec.EllipticCurvePrivateKey) -> None:
    token = service.issue("politie-oost", [], cert=CERT, now=NOW, jti=JTI)
    with pytest.raises(InvalidToken):
        service.verify(token + "A" * 5000, now=NOW)
    with pytest.raises(InvalidToken):
        service.verify("A" * 10_000_000, now=NOW)
    # Correctly signed, well formed, only too long.
    big = forge(key, claims=good_claims(pad="x" * 3100))
    assert len(big) > 4096
    with pytest.raises(InvalidToken):
        service.verify(big, now=NOW)


@pytest.mark.parametrize("char", ["é", "\u0660", "\uff21", "\x00", "\ud800", "+", "/"])
def test_foreign_characters(service: TokenService, char: str) -> None:
    token = service.issue("politie-oost", [], cert=CERT, now=NOW, jti=JTI)
    for position in (0, 40, len(token) - 1):
        with pytest.raises(InvalidToken):
            service.verify(token[:position] + char + token[position + 1 :], now=NOW)


@pytest.mark.parametrize("value", [None, 42, b"abc.def.ghi", ["a", "b", "c"], ""])
def test_not_a_string(service: TokenService, value: Any) -> None:
    with pytest.raises(InvalidToken):
        service.verify(value, now=NOW)


def test_signature_of_wrong_length(service: TokenService, key: ec.EllipticCurvePrivateKey) -> None:
    token = service.issue("politie-oost", [], cert=CERT, now=NOW, jti=JTI)
    head, body, sig = segments(token)
    raw = b64d(sig)
    der = key.sign(f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
    for signature in (raw[:63], raw + b"\x00", b"\x00" + raw, raw[:32], b"", der, raw + raw):
        with pytest.raises(InvalidToken):
            service.verify(f"{head}.{body}.{b64e(signature)}", now=NOW)


def test_tampered_payload(service: TokenService) -> None:
    token = service.issue("politie-oost", ["member"], cert=CERT, now=NOW, jti=JTI)
    head, _, sig = segments(token)
    body = b64e(canonical_json(good_claims(roles=["coordinator", "member"])))
    with pytest.raises(InvalidToken):
        service.verify(f"{head}.{body}.{sig}", now=NOW)


def test_every_failure_reads_the_same(service: TokenService) -> None:
    token = service.issue("politie-oost", [], cert=CERT, now=NOW, jti=JTI)
    failures = []
    for bad, now in (("", NOW), (token + ".", NOW), (token[:-2] + "AA", NOW), (token, NOW + 10**4)):
        with pytest.raises(InvalidToken) as caught:
            service.verify(bad, now=now)
        failures.append(caught.value)
    assert {str(failure) for failure in failures} == {"invalid token"}
    for failure in failures:  # no chained cause that could carry details to a log or client
        assert failure.__cause__ is None
        assert failure.__context__ is None or failure.__suppress_context__


# --- construction and issuing ----------------------------------------------------------------


def test_generated_key_is_pkcs8_p256() -> None:
    pem = generate_signing_key()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    loaded = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    assert isinstance(loaded.curve, ec.SECP256R1)
    assert generate_signing_key() != pem


def _pem(private_key: Any, encryption: Any = None) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        encryption or serialization.NoEncryption(),
    )


@pytest.mark.parametrize(
    "make_pem",
    [
        lambda: _pem(ec.generate_private_key(ec.SECP384R1())),
        lambda: _pem(ed25519.Ed25519PrivateKey.generate()),
        lambda: _pem(
            ec.generate_private_key(ec.SECP256R1()),
            serialization.BestAvailableEncryption(b"passphrase"),
        ),
        lambda: b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        lambda: b"",
    ],
)
def test_refuses_other_signing_keys(make_pem: Any) -> None:
    with pytest.raises(ValueError, match="token signing key"):
        TokenService(make_pem(), issuer=ISSUER, audience=AUDIENCE)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"issuer": ""},
        {"issuer": "has space"},
        {"audience": "x" * 257},
        {"audience": "naïve"},
        {"lifetime": 59},
        {"lifetime": 86_401},
        {"lifetime": 900.0},
        {"lifetime": True},
    ],
    ids=repr,
)
def test_refuses_bad_settings(pem: bytes, kwargs: dict[str, Any]) -> None:
    settings: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, **kwargs}
    with pytest.raises(ValueError):
        TokenService(pem, **settings)


@pytest.mark.parametrize(
    "args",
    [
        {"org": "Politie"},
        {"org": "a"},
        {"roles": ["admin"]},
        {"roles": "member"},
        {"now": 1.5},
        {"now": -1},
        {"jti": "short"},
        {"jti": "no spaces allowed in here!"},
        {"cert": "not-a-fingerprint"},
        {"cert": CERT + "A"},
    ],
    ids=repr,
)
def test_issue_refuses_bad_input(service: TokenService, args: dict[str, Any]) -> None:
    call: dict[str, Any] = {
        "org": "politie-oost",
        "roles": ["member"],
        "cert": CERT,
        "now": NOW,
        "jti": JTI,
    }
    call.update(args)
    with pytest.raises(ValueError):
        service.issue(call.pop("org"), call.pop("roles"), **call)


def test_service_repr_shows_no_key(pem: bytes, service: TokenService) -> None:
    text = repr(service)
    assert "PRIVATE" not in text and pem.decode() not in text


# --- public_key_from_jwk ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"kty": "RSA"},
        {"crv": "P-384"},
        {"alg": "ES384"},
        {"use": "enc"},
        {"key_ops": ["encrypt"]},
        {"key_ops": "verify"},
        {"d": "AAAA"},
        {"x": "AA"},
        {"x": None},
        {"y": b64e(bytes(32))},  # not on the curve
    ],
    ids=repr,
)
def test_public_key_from_jwk_refuses(service: TokenService, changes: dict[str, Any]) -> None:
    jwk: dict[str, Any] = {**service.public_jwk(), **changes}
    with pytest.raises(ValueError):
        public_key_from_jwk(jwk)


def test_verify_jws_needs_a_p256_key(service: TokenService) -> None:
    token = service.issue("politie-oost", [], cert=CERT, now=NOW, jti=JTI)
    with pytest.raises(ValueError):
        verify_jws_es256(token, ec.generate_private_key(ec.SECP384R1()).public_key())


# --- containment -----------------------------------------------------------------------------


def test_only_hub_tokens_imports_jose() -> None:
    root = Path(__file__).resolve().parents[2]
    pattern = re.compile(r"^\s*(from\s+jose\b|import\s+jose\b)", re.MULTILINE)
    offenders = [
        str(path.relative_to(root))
        for folder in ("protocol", "keys", "hub", "clients", "tests", "bench", "deploy")
        if (root / folder).is_dir()
        for path in (root / folder).rglob("*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == ["hub/tokens.py"]
