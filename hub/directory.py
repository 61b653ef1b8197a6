"""The directory: certificates, key bundles, the CRL and sealed linking keys.

Use-cases are plain async functions of a store, a clock and the config (plus
the request's audit :class:`~hub.audit.Scope`); they raise
:class:`~hub.errors.HubError` subclasses and know nothing of HTTP.

Trust: every certificate the hub acts on is re-verified against the pinned
root and the newest CRL the hub holds, at the current time (:class:`Trust`).
The held CRL is used even after its ``next_update`` (it was verified when it
was stored): a late CRL from the authority must not stop the network, and
clients check CRL freshness themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hub import audit
from hub.audit import Outcome, Scope
from hub.config import Clock, HubConfig
from hub.errors import Conflict, InvalidCredential, Malformed, NotFound, Unavailable
from hub.store import OrgSummary, Store, Tx
from protocol.certificate import (
    MAX_CERT_BYTES,
    MAX_CRL_BYTES,
    ROLE_HUB,
    Certificate,
    RevocationList,
    RootCertificate,
    load_crl,
    load_root,
    verify_certificate,
)
from protocol.encoding import b64d
from protocol.errors import EncodingError, ProtocolError, ValidationError, VerificationError
from protocol.keybundle import KeyBundle, verify_bundle
from protocol.linkingkey import SealedLinkingKey, verify_sealed_linking_key
from protocol.types import Fingerprint, OrgId, parse_fingerprint, parse_org_id

# -- trust ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Trust:
    """The pinned root and the held CRL, as of ``now``."""

    root: RootCertificate
    crl: RevocationList | None
    now: int

    def verify(self, der: bytes) -> Certificate:
        """Raise ``VerificationError`` (``RevokedError``) or ``EncodingError`` unless valid now."""
        return verify_certificate(der, self.root, now=self.now, crl=self.crl)

    def revoked(self, serial: int) -> bool:
        return self.crl is not None and serial in self.crl.revoked


async def trust_at(store: Store, config: HubConfig, now: int) -> Trust:
    try:
        root = load_root(config.root_der, now=now)
    except ProtocolError as exc:
        raise Unavailable("the network root certificate is not valid now") from exc
    record = await store.latest_crl()
    crl = None if record is None else load_crl(record.der, root, now=record.this_update)
    return Trust(root=root, crl=crl, now=now)


async def certificate_of(store: Store, trust: Trust, org: OrgId) -> Certificate | None:
    """The org's held certificate if it is still valid and unrevoked now, else None."""
    record = await store.organisation(org)
    if record is None:
        return None
    try:
        return trust.verify(record.certificate)
    except ProtocolError:
        return None


def exact_object(body: object, *names: str) -> dict[str, Any]:
    if not isinstance(body, dict) or set(body) != set(names):
        raise Malformed("the body must be an object with exactly: " + ", ".join(names))
    return body


def _path_org(text: str) -> OrgId:
    try:
        return parse_org_id(text)
    except ValidationError:
        raise NotFound() from None


# -- certificates -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Registered:
    org: OrgId
    fingerprint: Fingerprint
    roles: frozenset[str]
    created: bool


async def upload_certificate(
    store: Store, clock: Clock, config: HubConfig, scope: Scope, body: object
) -> Registered:
    """Verify an organisation certificate and hold it if it is newer than the held one."""
    try:
        der = b64d(exact_object(body, "certificate")["certificate"], max_len=MAX_CERT_BYTES)
    except EncodingError as exc:
        raise Malformed(f"certificate: {exc}") from None
    now = clock()
    trust = await trust_at(store, config, now)
    try:
        cert = trust.verify(der)
    except EncodingError as exc:
        raise Malformed(f"certificate: {exc}") from None
    except VerificationError:
        raise InvalidCredential(
            "the certificate does not verify against the network root"
        ) from None
    scope.object_id = cert.org
    if ROLE_HUB in cert.roles:
        raise InvalidCredential("a hub certificate is not an organisation certificate")

    async def hold(tx: Tx) -> Outcome[bool]:
        placed = await tx.put_organisation(cert)
        if placed == "older":
            raise Conflict("a newer certificate is held for this organisation")
        return Outcome(placed == "new", reason=None if placed == "new" else "already-held")

    created = await audit.act(store, scope, now=now, work=hold)
    return Registered(cert.org, cert.fingerprint, cert.roles, created)


# -- listing and fetching ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Listing:
    summary: OrgSummary
    revoked: bool


async def list_organisations(
    store: Store, clock: Clock, config: HubConfig, scope: Scope
) -> list[Listing]:
    now = clock()
    trust = await trust_at(store, config, now)
    listings = [Listing(s, trust.revoked(s.serial)) for s in await store.organisations()]
    await audit.access(store, scope, now=now)
    return listings


@dataclass(frozen=True, slots=True)
class Entry:
    org: OrgId
    certificate: bytes
    bundle: KeyBundle | None


async def fetch_organisation(
    store: Store, clock: Clock, config: HubConfig, scope: Scope, org_text: str
) -> Entry:
    org = _path_org(org_text)
    scope.object_id = org
    record = await store.organisation(org)
    if record is None:
        raise NotFound()
    bundle = await store.current_bundle(org)
    await audit.access(store, scope, now=clock())
    return Entry(org, record.certificate, bundle)


async def fetch_bundle(
    store: Store, clock: Clock, config: HubConfig, scope: Scope, fp_text: str
) -> KeyBundle:
    try:
        fp = parse_fingerprint(fp_text)
    except ValidationError:
        raise NotFound() from None
    bundle = await store.bundle(fp)
    if bundle is None:
        raise NotFound()
    scope.object_id = bundle.org
    await audit.access(store, scope, now=clock())
    return bundle


# -- key bundles ------------------------------------------------------------------------


async def upload_bundle(
    store: Store,
    clock: Clock,
    config: HubConfig,
    scope: Scope,
    *,
    caller: OrgId,
    org_text: str,
    body: object,
) -> Fingerprint:
    """Hold the caller's new key bundle as its current one. Another org's path: 404."""
    org = _path_org(org_text)
    scope.object_id = org
    if org != caller:
        raise NotFound()
    try:
        bundle = KeyBundle.from_wire(body)
    except (EncodingError, ValidationError) as exc:
        raise Malformed(f"key bundle: {exc}") from None
    now = clock()
    trust = await trust_at(store, config, now)
    cert = await certificate_of(store, trust, caller)
    if cert is None:
        raise InvalidCredential("the organisation has no valid certificate at the hub")
    try:
        verify_bundle(bundle, cert, now=now)
    except VerificationError:
        raise InvalidCredential(
            "the key bundle is not signed by this organisation's certificate or not valid now"
        ) from None

    async def hold(tx: Tx) -> Outcome[None]:
        await tx.put_bundle(bundle)
        return Outcome(None)

    await audit.act(store, scope, now=now, work=hold)
    return bundle.fingerprint


# -- revocation list --------------------------------------------------------------------


async def fetch_crl(store: Store, clock: Clock, scope: Scope) -> bytes | None:
    record = await store.latest_crl()
    scope.object_id = None if record is None else str(record.number)
    await audit.access(store, scope, now=clock())
    return None if record is None else record.der


async def upload_crl(
    store: Store, clock: Clock, config: HubConfig, scope: Scope, body: object
) -> int:
    """Hold a root-signed CRL whose number is above the held one's (else 409)."""
    try:
        der = b64d(exact_object(body, "crl")["crl"], max_len=MAX_CRL_BYTES)
    except EncodingError as exc:
        raise Malformed(f"crl: {exc}") from None
    now = clock()
    trust = await trust_at(store, config, now)
    try:
        crl = load_crl(der, trust.root, now=now)
    except EncodingError as exc:
        raise Malformed(f"crl: {exc}") from None
    except VerificationError:
        raise InvalidCredential(
            "the revocation list is not signed by the root or expired"
        ) from None
    scope.object_id = str(crl.number)

    async def hold(tx: Tx) -> Outcome[None]:
        if not await tx.put_crl(crl):
            raise Conflict("a revocation list with this or a higher number is held")
        return Outcome(None)

    await audit.act(store, scope, now=now, work=hold)
    return crl.number


# -- linking keys -----------------------------------------------------------------------


async def upload_linking_key(
    store: Store, clock: Clock, config: HubConfig, scope: Scope, body: object
) -> bool:
    """Hold a root-signed sealed linking key; True when new, False when identical one held."""
    try:
        sealed = SealedLinkingKey.from_wire(body)
    except (EncodingError, ValidationError) as exc:
        raise Malformed(f"linking key: {exc}") from None
    scope.object_id = sealed.org
    now = clock()
    trust = await trust_at(store, config, now)
    if sealed.network != config.network:
        raise InvalidCredential("the linking key is for another network")
    try:
        verify_sealed_linking_key(sealed, trust.root)
    except VerificationError:
        raise InvalidCredential("the linking key is not signed by the network root") from None

    async def hold(tx: Tx) -> Outcome[bool]:
        placed = await tx.put_linking_key(sealed)
        if placed == "conflict":
            raise Conflict("another linking key of this version is held for this organisation")
        return Outcome(placed == "new", reason=None if placed == "new" else "already-held")

    return await audit.act(store, scope, now=now, work=hold)


async def list_linking_keys(
    store: Store, clock: Clock, scope: Scope, *, caller: OrgId
) -> list[SealedLinkingKey]:
    scope.object_id = caller
    keys = await store.linking_keys(caller)
    await audit.access(store, scope, now=clock())
    return keys
