"""Authentication: challenge-response with the organisation key, then a short-lived token.

1. ``POST /v1/auth/challenge`` (:func:`issue_challenge`): 32 random bytes,
   stored with the claimed organisation and an expiry. Unknown organisations
   get the same answer, so the endpoint does not tell who is enrolled.
2. ``POST /v1/auth/token`` (:func:`issue_token`): the challenge is consumed
   atomically (``UPDATE ... WHERE used_at IS NULL AND expires > now``, so a
   second use fails) in the same work item as the audit entry; the signature
   over :func:`protocol.challenge.auth_message` (network, org, challenge, audience) must
   verify with the organisation's held certificate, itself re-verified
   against the root and CRL now. Then a token is issued.
3. Every other request (:func:`verify_access`): the bearer token must verify
   (python-jose once per token, then from memory: :class:`~hub.tokens.TokenService`)
   and the organisation's certificate must still be held, valid and not
   revoked by the current CRL (the directory held in memory:
   :class:`~hub.directory.TrustCache`). A live socket checks its caller again the same
   way (:func:`still_valid`), without the token.

Every failure is one :class:`~hub.errors.Unauthorized`, whatever the cause.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature

from hub.accesslog import recording
from hub.accesslog.recording import Outcome, Scope
from hub.config import Clock, HubConfig, Rng
from hub.directory import TrustCache, exact_object, trust_at
from hub.errors import Malformed, Unauthorized
from hub.store import Store, Tx
from hub.tokens import InvalidToken, TokenService
from protocol.certificate import Certificate
from protocol.challenge import auth_message
from protocol.encoding import b64d, b64e
from protocol.errors import ProtocolError
from protocol.types import Fingerprint, OrgId, parse_org_id

CHALLENGE_BYTES = 32
SIGNATURE_BYTES = 64
JTI_BYTES = 16
MAX_TOKEN_CHARS = 4096


@dataclass(frozen=True, slots=True)
class Challenge:
    challenge: str  # base64url of 32 bytes
    expires: int


@dataclass(frozen=True, slots=True)
class Token:
    access_token: str
    expires_in: int


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated organisation, for the length of one request."""

    org: OrgId
    roles: frozenset[str]
    expires_at: int  # when its token expires
    cert: Fingerprint | None = None  # the certificate its token was issued for

    @property
    def role_text(self) -> str:
        return ",".join(sorted(self.roles))


def _parse_org(value: object) -> OrgId:
    try:
        return parse_org_id(value)
    except ProtocolError as exc:
        raise Malformed(f"org: {exc}") from None


async def issue_challenge(
    store: Store, clock: Clock, config: HubConfig, *, body: object, rng: Rng
) -> Challenge:
    org = _parse_org(exact_object(body, "org")["org"])
    now = clock()
    challenge = Challenge(b64e(rng(CHALLENGE_BYTES)), now + config.limits.challenge_ttl)

    def hold(tx: Tx) -> None:
        tx.purge_challenges(now=now)
        tx.insert_challenge(challenge.challenge, org, expires=challenge.expires)

    await store.write(hold)
    return challenge


async def issue_token(
    store: Store,
    clock: Clock,
    config: HubConfig,
    scope: Scope,
    *,
    tokens: TokenService,
    cache: TrustCache,
    body: object,
    rng: Rng,
) -> Token:
    """Consume the challenge and, if the answer is right, issue a token (else 401)."""
    fields = exact_object(body, "org", "challenge", "signature")
    org = _parse_org(fields["org"])
    scope.org = org
    try:
        challenge = b64d(fields["challenge"], max_len=CHALLENGE_BYTES)
        signature = b64d(fields["signature"], max_len=SIGNATURE_BYTES)
    except ProtocolError as exc:
        raise Malformed(f"challenge or signature: {exc}") from None
    if len(challenge) != CHALLENGE_BYTES or len(signature) != SIGNATURE_BYTES:
        raise Malformed("challenge must be 32 bytes and signature 64 bytes")
    now = clock()
    trust, seen = await trust_at(store, cache, now, orgs=[org])
    cert = trust.certificate(seen.organisations.get(org))
    answered = False
    if cert is not None:
        try:
            message = auth_message(config.network, org, challenge, config.audience)
            cert.public_key.verify(signature, message)
            answered = True
        except InvalidSignature:
            pass

    def consume(tx: Tx) -> Outcome[bool]:
        fresh = tx.consume_challenge(b64e(challenge), org, now=now)
        ok = fresh and answered
        return Outcome(ok, allowed=ok, reason=None if ok else Unauthorized.slug)

    if answered and cert is not None:
        scope.role = ",".join(sorted(cert.roles))
    if not await recording.act(store, scope, now=now, work=consume) or cert is None:
        raise Unauthorized()
    jti = b64e(rng(JTI_BYTES))
    token = tokens.issue(org, cert.roles, cert=cert.fingerprint, now=now, jti=jti)
    return Token(token, config.limits.token_lifetime)


async def verify_access(
    store: Store,
    clock: Clock,
    config: HubConfig,
    *,
    tokens: TokenService,
    cache: TrustCache,
    authorization: str | None,
) -> Caller:
    """The caller behind an ``Authorization: Bearer`` header, or Unauthorized."""
    if authorization is None or len(authorization) > MAX_TOKEN_CHARS:
        raise Unauthorized()
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthorized()
    now = clock()
    try:
        claims = tokens.verify(token, now=now)
        org = parse_org_id(claims.org)
    except (InvalidToken, ProtocolError):
        raise Unauthorized() from None
    cert = await _current_certificate(store, cache, now, org)
    # A token is good only while the certificate it was issued for is the organisation's
    # current one: re-keying after a revocation must not revive tokens of the old key.
    if cert is None or cert.fingerprint != claims.cert:
        raise Unauthorized()
    return Caller(
        org=org,
        roles=claims.roles & cert.roles,
        expires_at=claims.expires_at,
        cert=cert.fingerprint,
    )


async def still_valid(store: Store, cache: TrustCache, caller: Caller, *, now: int) -> bool:
    """Whether ``caller``, authenticated earlier, would be let in now: its token not
    expired, and the certificate it was issued for still its organisation's current,
    valid, unrevoked one (in memory, as :func:`verify_access` checks it)."""
    if now >= caller.expires_at or caller.cert is None:
        return False
    cert = await _current_certificate(store, cache, now, caller.org)
    return cert is not None and cert.fingerprint == caller.cert


async def _current_certificate(
    store: Store, cache: TrustCache, now: int, org: OrgId
) -> Certificate | None:
    trust, seen = await trust_at(store, cache, now, orgs=[org])
    return trust.certificate(seen.organisations.get(org))
