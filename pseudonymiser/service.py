"""The service's use-cases: evaluate a request, accept a revocation list.

Plain async functions of a :class:`Context` (config, store, clock, random source, key
shares, trust); they raise :class:`~pseudonymiser.errors.ServiceError` subclasses and
know nothing of HTTP. The order of the checks is the one ``docs/protocol.md`` gives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field

from protocol import oprf
from protocol.certificate import (
    MAX_CRL_BYTES,
    ROLE_HUB,
    Certificate,
    RevocationList,
    RootCertificate,
    load_crl,
    load_root,
    verify_certificate,
)
from protocol.encoding import b64d, b64e
from protocol.errors import ProtocolError, ValidationError
from protocol.evaluation import (
    EvaluationRequest,
    EvaluationResponse,
    evaluate_request,
    verify_request,
)
from protocol.oprfkeys import OprfKeyStatement
from protocol.ristretto import Scalar
from pseudonymiser.config import ServiceConfig
from pseudonymiser.errors import (
    Conflict,
    InvalidCredential,
    Malformed,
    TooLarge,
    Unauthorized,
    UnknownVersion,
    WrongService,
)
from pseudonymiser.store import Store

Clock = Callable[[], int]
Rng = Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class KeyShare:
    """A key share this process serves, with the statement that certifies it."""

    key: Scalar = field(repr=False)
    statement: OprfKeyStatement


@dataclass(slots=True)
class Trust:
    """The pinned root, and the newest CRL held, parsed once per number."""

    root_der: bytes
    _crl: RevocationList | None = None

    def root(self, now: int) -> RootCertificate:
        return load_root(self.root_der, now=now)

    async def crl(self, store: Store) -> RevocationList | None:
        """The CRL the database holds now (every replica sees a new one at once)."""
        held = await store.crl()
        if held is None:
            return None
        if self._crl is None or self._crl.number != held.number or self._crl.der != held.der:
            # Verified when it was stored; loaded as of then, so that it stays in force
            # past its next_update until a newer one arrives (as on the hub).
            self._crl = load_crl(held.der, self.root(held.stored_at), now=held.stored_at)
        return self._crl


@dataclass(frozen=True, slots=True)
class Context:
    config: ServiceConfig
    store: Store
    clock: Clock
    rng: Rng
    shares: Mapping[int, KeyShare]  # by pseudonym version
    trust: Trust
    executor: Executor | None = None  # where evaluations run; None: the loop's default


def parse_request(
    config: ServiceConfig, shares: Mapping[int, KeyShare], body: object
) -> EvaluationRequest:
    """The request's form, size and address (steps 2 and 3)."""
    limits = config.limits
    elements = body.get("elements") if isinstance(body, dict) else None
    if isinstance(elements, list) and len(elements) > limits.max_batch:
        raise TooLarge(f"at most {limits.max_batch} elements in one request")
    try:
        request = EvaluationRequest.from_wire(body, max_batch=limits.max_batch)
    except ProtocolError as exc:
        raise Malformed(f"evaluation request: {exc}") from None
    if request.network != config.network or request.service != config.service:
        raise WrongService(f"this is service {config.service} of network {config.network}")
    if request.version not in shares:
        raise UnknownVersion(f"this service holds versions {sorted(shares)}")
    return request


async def authenticate(ctx: Context, request: EvaluationRequest, now: int) -> Certificate:
    """Freshness, certificate (root, CRL, not the hub's) and signature (step 4): one 401."""
    if abs(request.time - now) > ctx.config.limits.freshness:
        raise Unauthorized()
    try:
        cert = verify_certificate(
            request.cert, ctx.trust.root(now), now=now, crl=await ctx.trust.crl(ctx.store)
        )
        if ROLE_HUB in cert.roles:
            raise ValidationError("the hub never pseudonymises")
        verify_request(request, cert)
    except ProtocolError:
        raise Unauthorized() from None
    return cert


async def evaluate(ctx: Context, body: object) -> tuple[Certificate, EvaluationResponse]:
    """Check, count and answer one evaluation request (``docs/protocol.md``, steps 2 to 6)."""
    request = parse_request(ctx.config, ctx.shares, body)
    now = ctx.clock()
    cert = await authenticate(ctx, request, now)
    limits = ctx.config.limits
    await ctx.store.admit(
        cert.org,
        b64e(request.nonce),
        count=len(request.elements),
        now=now,
        # Kept as long as the request could pass the freshness check: a request dated
        # ahead of our clock stays fresh until its own time plus the window.
        expires=max(now, request.time) + limits.freshness,
        hourly=limits.hourly,
        daily=limits.daily,
    )
    share = ctx.shares[request.version]
    r = oprf.random_scalar(ctx.rng(64))
    loop = asyncio.get_running_loop()
    response = await loop.run_in_executor(ctx.executor, _evaluate, share, request, r)
    return cert, response


def _evaluate(share: KeyShare, request: EvaluationRequest, r: Scalar) -> EvaluationResponse:
    return evaluate_request(share.key, request, r=r, public=share.statement.public_key)


async def accept_crl(ctx: Context, body: object) -> int:
    """Keep a root-signed CRL newer than the one held; its number (409 if not newer)."""
    if not isinstance(body, dict) or set(body) != {"crl"}:
        raise Malformed('the body must be {"crl": base64url of the DER}')
    try:
        der = b64d(body["crl"], max_len=MAX_CRL_BYTES)
    except ProtocolError as exc:
        raise Malformed(f"crl: {exc}") from None
    return await store_crl(ctx, der)


async def store_crl(ctx: Context, der: bytes) -> int:
    now = ctx.clock()
    try:
        crl = load_crl(der, ctx.trust.root(now), now=now)
    except ProtocolError as exc:
        raise InvalidCredential(f"revocation list: {exc}") from None
    if not await ctx.store.store_crl(crl.number, crl.der, now=now):
        raise Conflict("the revocation list held is as new or newer")
    return crl.number
