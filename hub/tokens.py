"""Access tokens: the only module that imports python-jose.

A token is a compact JWS (RFC 7515) signed with ES256 (ECDSA P-256, SHA-256,
raw 64-byte ``r || s`` signature), whose header is exactly
``{"alg":"ES256","typ":"JWT"}`` and whose payload is the canonical JSON of
exactly the claims of ``CLAIM_NAMES``: ``iss``, ``aud``, ``sub``, ``cert``, ``jti``,
``iat``, ``exp`` and ``roles``. ``docs/protocol.md`` specifies it byte for byte.

python-jose is contained here and distrusted: every token is first checked
strictly by this module (size, three segments of canonical unpadded
base64url, exact header bytes, 64-byte signature, exact claim set and types in
canonical JSON), then handed to ``jose`` (``jwt.decode``: the one signature
verification) with the algorithm pinned to ES256 and the verification key
passed as a ready-made ES256 key object (so no header field can choose the key
or the algorithm), the claims ``jose`` returns must equal the ones parsed here, and then
they are checked again here against the injected clock. Whatever fails, and
whatever ``jose`` raises, the caller sees one :class:`InvalidToken` without a reason,
so the hub is no oracle.

A token verified once is remembered (:class:`TokenService`, an LRU of
``DEFAULT_CACHED_TOKENS`` keyed by the SHA-256 of the token, never the token itself)
for its life: a later use checks only its times against ``now``, so ``jose`` runs once
per token, not once per request. What a token may do beyond that (its organisation's
certificate still current and unrevoked) the caller checks on every use.

Time: python-jose compares ``exp`` and ``nbf`` with its own wall clock, which
would make the hub's injected clock (and every test with a fixed clock) a
second, disagreeing source of time. So ``verify_exp`` and ``verify_nbf`` are
the only ``jose`` checks turned off (and ``require_exp``, because in
python-jose 3.5.0 a ``require_X`` option switches ``verify_X`` back on); this
module checks the presence, type and value of ``iat`` and ``exp`` itself,
against ``now``. Every other ``jose`` check stays on, and ``require_*`` is on
for every other claim we issue (``iss``, ``aud``, ``sub``, ``jti``, ``iat``).

Token ids (``jti``) are recorded and revoked by the caller (the database),
not here.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jose import jws as jose_jws
from jose import jwt as jose_jwt
from jose.backends import ECKey

from protocol.certificate import ROLES
from protocol.encoding import b64d, b64e, canonical_json, loads_strict
from protocol.errors import ProtocolError
from protocol.types import parse_fingerprint, parse_org_id

ALGORITHM = "ES256"
HEADER: Mapping[str, str] = {"alg": "ES256", "typ": "JWT"}
CLAIM_NAMES = frozenset({"iss", "aud", "sub", "cert", "jti", "iat", "exp", "roles"})
MAX_TOKEN_CHARS = 4096
CLOCK_SKEW = 60  # seconds an ``iat`` may lie ahead of the verifier's clock
SIGNATURE_BYTES = 64
DEFAULT_CACHED_TOKENS = 10_000

_HEADER_BYTES = canonical_json(dict(HEADER))
# Header members a bare JWS (not one of our tokens) may carry. Everything else,
# notably ``jwk``, ``jku``, ``x5u``, ``x5c`` and ``crit``, is refused.
_JWS_HEADER_MEMBERS = frozenset({"alg", "typ", "kid"})
_JTI = re.compile(r"[A-Za-z0-9_-]{16,64}")
_NAME = re.compile(r"[\x21-\x7e]{1,256}")  # issuer and audience: printable ASCII
_JOSE_OPTIONS: Mapping[str, bool | int] = {
    "verify_signature": True,
    "verify_aud": True,
    "verify_iat": True,
    # jose checks exp and nbf against its own wall clock; this module checks iat and
    # exp against the injected ``now`` instead. In python-jose 3.5.0 ``require_X``
    # forces ``verify_X`` on, so ``require_exp`` must be off too: the presence and
    # type of ``exp`` are enforced by ``_parse_claims`` (exact claim set).
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iss": True,
    "verify_sub": True,
    "verify_jti": True,
    "verify_at_hash": True,
    "require_aud": True,
    "require_iat": True,
    "require_exp": False,  # see verify_exp
    "require_nbf": False,  # not one of our claims
    "require_iss": True,
    "require_sub": True,
    "require_jti": True,
    "require_at_hash": False,  # not one of our claims (OIDC only)
    "leeway": 0,
}


class InvalidToken(Exception):
    """Any reason a token is not accepted. Callers map it to one 401."""

    def __init__(self) -> None:
        super().__init__("invalid token")


@dataclass(frozen=True, slots=True)
class TokenClaims:
    org: str
    cert: str  # fingerprint of the certificate the token was issued for
    roles: frozenset[str]
    jti: str
    issued_at: int
    expires_at: int


def generate_signing_key() -> bytes:
    """A new P-256 private key as unencrypted PKCS#8 PEM (the caller stores it 0600)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def verify_jws_es256(compact: object, public_key: ec.EllipticCurvePublicKey) -> bytes:
    """Verify a compact ES256 JWS strictly and return its payload bytes.

    The header must be a strict JSON object with ``alg`` = ``ES256`` and no
    member besides ``alg``, ``typ`` and ``kid``. Raise :class:`InvalidToken`
    for anything else, including every error python-jose raises.
    """
    _require_p256(public_key)
    _, header, payload = _parse_compact(compact)
    if not set(header) <= _JWS_HEADER_MEMBERS or header.get("alg") != ALGORITHM:
        raise InvalidToken
    if any(not isinstance(header[name], str) for name in header):
        raise InvalidToken
    try:
        verified = jose_jws.verify(compact, ECKey(public_key, ALGORITHM), algorithms=[ALGORITHM])
    except Exception:  # whatever jose raises is one opaque failure
        raise InvalidToken from None
    if verified != payload:
        raise InvalidToken
    return payload


def public_key_from_jwk(jwk: Mapping[str, Any]) -> ec.EllipticCurvePublicKey:
    """The P-256 public key of a JWK fit for verifying ES256 signatures.

    Refuse (``ValueError``) anything but ``kty`` EC, ``crv`` P-256, canonical
    32-byte ``x`` and ``y`` on the curve, no private part, and, where present,
    ``alg`` ES256, ``use`` sig and ``key_ops`` containing ``verify``.
    """
    allowed = {"kty", "crv", "x", "y", "alg", "use", "key_ops", "kid"}
    if not isinstance(jwk, Mapping) or not set(jwk) <= allowed:
        raise ValueError("not a public P-256 JWK")
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise ValueError("not a P-256 key")
    if jwk.get("alg", ALGORITHM) != ALGORITHM or jwk.get("use", "sig") != "sig":
        raise ValueError("key is not meant for ES256 signatures")
    key_ops = jwk.get("key_ops", ["verify"])
    if not isinstance(key_ops, list) or "verify" not in key_ops:
        raise ValueError("key is not meant for verifying")
    try:
        x, y = b64d(jwk.get("x"), max_len=32), b64d(jwk.get("y"), max_len=32)
    except ProtocolError:
        raise ValueError("bad JWK coordinates") from None
    if len(x) != 32 or len(y) != 32:
        raise ValueError("bad JWK coordinates")
    numbers = ec.EllipticCurvePublicNumbers(
        int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
    )
    return numbers.public_key()  # raises ValueError when not on the curve


class TokenService:
    """Issues and verifies ES256 JWTs with a pinned algorithm, issuer and audience."""

    __slots__ = (
        "_audience",
        "_cache_size",
        "_issuer",
        "_lifetime",
        "_public_key",
        "_signing_key",
        "_verified",
    )

    def __init__(
        self,
        private_key_pem: bytes,
        *,
        issuer: str,
        audience: str,
        lifetime: int = 900,
        cached: int = DEFAULT_CACHED_TOKENS,
    ) -> None:
        private_key = _load_private_key(private_key_pem)
        for label, value in (("issuer", issuer), ("audience", audience)):
            if not isinstance(value, str) or not _NAME.fullmatch(value):
                raise ValueError(f"{label} must be 1-256 printable ASCII characters")
        if type(lifetime) is not int or not 60 <= lifetime <= 86_400:
            raise ValueError("lifetime must be an integer from 60 to 86400 seconds")
        self._signing_key = ECKey(private_key, ALGORITHM)
        self._public_key = private_key.public_key()
        self._issuer = issuer
        self._audience = audience
        self._lifetime = lifetime
        if type(cached) is not int or cached < 1:
            raise ValueError("cached must be a positive number of tokens")
        self._cache_size = cached
        self._verified: OrderedDict[bytes, TokenClaims] = OrderedDict()

    def issue(self, org: str, roles: Collection[str], *, cert: str, now: int, jti: str) -> str:
        """A signed token for ``org`` with ``roles``, valid ``lifetime`` seconds from ``now``.

        ``cert`` is the fingerprint of the certificate the organisation proved its key
        with: the token is good only while that is the organisation's certificate.
        """
        try:
            parse_org_id(org)
            parse_fingerprint(cert)
        except ProtocolError as exc:
            raise ValueError(str(exc)) from None
        if isinstance(roles, str) or any(role not in ROLES for role in roles):
            raise ValueError(f"roles must be a collection of {', '.join(ROLES)}")
        if type(now) is not int or now < 0:
            raise ValueError("now must be a non-negative integer")
        if not isinstance(jti, str) or not _JTI.fullmatch(jti):
            raise ValueError("jti must be 16-64 characters of base64url")
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": org,
            "cert": cert,
            "jti": jti,
            "iat": now,
            "exp": now + self._lifetime,
            "roles": sorted(set(roles)),
        }
        token: str = jose_jws.sign(canonical_json(claims), self._signing_key, algorithm=ALGORITHM)
        if not token.startswith(b64e(_HEADER_BYTES) + "."):
            raise RuntimeError("python-jose produced an unexpected JWS header")
        return token

    def verify(self, token: str, *, now: int) -> TokenClaims:
        """Raise InvalidToken for anything but a well-formed, current token of ours.

        A token that verified before is answered from memory, its times checked
        against ``now`` again (a cache hit can not outlive the token, nor come before it).
        """
        if type(now) is not int:
            raise TypeError("now must be integer Unix seconds")  # a caller's bug, not the token's
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken
        key = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        held = self._verified.get(key)
        if held is not None:
            if not self._current(held.issued_at, held.expires_at, now):
                raise InvalidToken
            self._verified.move_to_end(key)
            return held
        try:
            raw_header, header, payload = _parse_compact(token)
            if raw_header != _HEADER_BYTES or header != HEADER:
                raise InvalidToken
            claims = _parse_claims(payload)
            self._jose_decode(token, claims)
            verified = self._check_claims(claims, now)
        except ProtocolError:
            raise InvalidToken from None
        self._verified[key] = verified
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return verified

    @property
    def cached(self) -> int:
        """Verified tokens held in memory (tests and metrics read it)."""
        return len(self._verified)

    def public_jwk(self) -> dict[str, str]:
        """The verification key as a JWK (RFC 7517), ``kid`` its RFC 7638 thumbprint."""
        numbers = self._public_key.public_numbers()
        jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": b64e(numbers.x.to_bytes(32, "big")),
            "y": b64e(numbers.y.to_bytes(32, "big")),
        }
        return {**jwk, "alg": ALGORITHM, "use": "sig", "kid": _thumbprint(jwk)}

    def _jose_decode(self, token: str, claims: Mapping[str, Any]) -> None:
        """python-jose's signature and claim checks: the one signature verification."""
        try:
            decoded = jose_jwt.decode(
                token,
                ECKey(self._public_key, ALGORITHM),
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options=dict(_JOSE_OPTIONS),
            )
        except Exception:  # whatever jose raises is one opaque failure
            raise InvalidToken from None
        if decoded != claims:
            raise InvalidToken

    @staticmethod
    def _current(iat: int, exp: int, now: int) -> bool:
        return 0 <= iat <= now + CLOCK_SKEW and exp > now

    def _check_claims(self, claims: Mapping[str, Any], now: int) -> TokenClaims:
        if claims["iss"] != self._issuer or claims["aud"] != self._audience:
            raise InvalidToken
        org = parse_org_id(claims["sub"])
        cert = parse_fingerprint(claims["cert"])
        if not _JTI.fullmatch(claims["jti"]):
            raise InvalidToken
        iat, exp = claims["iat"], claims["exp"]
        if not self._current(iat, exp, now) or exp - iat != self._lifetime:
            raise InvalidToken
        roles = claims["roles"]
        if roles != sorted(set(roles)) or any(role not in ROLES for role in roles):
            raise InvalidToken
        return TokenClaims(
            org=org,
            cert=cert,
            roles=frozenset(roles),
            jti=claims["jti"],
            issued_at=iat,
            expires_at=exp,
        )


def _parse_compact(compact: object) -> tuple[bytes, dict[str, Any], bytes]:
    """Header bytes, header object and payload of a strictly formed compact JWS."""
    if not isinstance(compact, str) or len(compact) > MAX_TOKEN_CHARS:
        raise InvalidToken
    parts = compact.split(".")
    if len(parts) != 3:
        raise InvalidToken
    try:
        raw_header, payload, signature = (b64d(part) for part in parts)
        header = loads_strict(raw_header, max_bytes=MAX_TOKEN_CHARS)
    except ProtocolError:
        raise InvalidToken from None
    if not isinstance(header, dict) or len(signature) != SIGNATURE_BYTES:
        raise InvalidToken
    return raw_header, header, payload


def _parse_claims(payload: bytes) -> dict[str, Any]:
    """Exactly our claim set, with the right types, in canonical JSON."""
    claims = loads_strict(payload, max_bytes=MAX_TOKEN_CHARS)
    if not isinstance(claims, dict) or set(claims) != CLAIM_NAMES:
        raise InvalidToken
    if canonical_json(claims) != payload:
        raise InvalidToken
    if any(not isinstance(claims[name], str) for name in ("iss", "aud", "sub", "cert", "jti")):
        raise InvalidToken
    if any(type(claims[name]) is not int for name in ("iat", "exp")):
        raise InvalidToken
    roles = claims["roles"]
    if not isinstance(roles, list) or any(not isinstance(role, str) for role in roles):
        raise InvalidToken
    return claims


def _require_p256(public_key: object) -> None:
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        raise ValueError("ES256 needs a P-256 public key")


def _load_private_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        # The library's message is dropped: it must not echo key material.
        raise ValueError("the token signing key is not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the token signing key must be a P-256 private key")
    return key


def _thumbprint(jwk: Mapping[str, str]) -> str:
    """RFC 7638: SHA-256 of the required members in canonical JSON."""
    return b64e(hashlib.sha256(canonical_json(dict(jwk))).digest())
