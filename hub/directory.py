"""The directory: certificates, key bundles, the CRL, sealed linking keys and the
pseudonymisation services' key statements.

Use-cases are plain async functions of a store, a clock and the config (plus
the request's audit :class:`~hub.accesslog.recording.Scope`); they raise
:class:`~hub.errors.HubError` subclasses and know nothing of HTTP.

Trust: every certificate the hub acts on is re-verified against the pinned
root and the newest CRL the hub holds, at the current time (:class:`Trust`);
:class:`TrustCache` keeps what only changes when the directory does (the held
CRL, organisations, key bundles and retirements, read in one transaction) and what
can not change (a parsed root, a CRL loaded under its number, a certificate verified
under a CRL number), so no request reads the directory from the database, while the
time and revocation checks still run on every request. A change to the directory is a
notice (:func:`hub.notify.directory_notice`) committed with it: this replica reads the
directory again before the change is answered, every other replica as soon as
PostgreSQL's ``NOTIFY`` reaches it.
The held CRL is used even after its ``next_update`` (it was verified when it
was stored): a late CRL from the authority must not stop the network, and
clients check CRL freshness themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from hub.accesslog import recording
from hub.accesslog.recording import Outcome, Scope
from hub.config import Clock, HubConfig
from hub.errors import Conflict, InvalidCredential, Malformed, NotFound, Unavailable
from hub.notify import directory_notice
from hub.store import CrlRecord, Directory, OrgRecord, OrgSummary, Snapshot, Store, Tx
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
from protocol.encoding import b64d, fingerprint
from protocol.errors import (
    EncodingError,
    ProtocolError,
    RevokedError,
    ValidationError,
    VerificationError,
)
from protocol.keybundle import KeyBundle, verify_bundle
from protocol.linkingkey import SealedLinkingKey, verify_sealed_linking_key
from protocol.oprfkeys import OprfKeyStatement, verify_key_statement
from protocol.retirement import Retirement, verify_retirement
from protocol.types import Fingerprint, OrgId, parse_fingerprint, parse_org_id

K = TypeVar("K")
V = TypeVar("V")

# -- trust ------------------------------------------------------------------------------

DEFAULT_CACHED_CERTIFICATES = 4096
DEFAULT_CACHED_CRLS = 4
# Seconds the held directory is used without a change notice, at most: a safety net for a
# change no notice announced (an operator restoring the database), not the mechanism.
DEFAULT_MAX_AGE = 60.0


class _Lru(Generic[K, V]):
    """A bounded mapping that forgets the least recently used entry first."""

    __slots__ = ("_entries", "_size")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a cache holds at least one entry")
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._size = size

    def get(self, key: K) -> V | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class TrustCache:
    """What trust decisions re-use: the held directory, the parsed root, loaded CRLs,
    verified certificates.

    One per hub application (see :class:`hub.http.common.Services`), never global. Every
    request still brings its own ``now``:

    * the directory (:class:`~hub.store.Directory`: the CRL, every organisation, the
      bundles not expired, the retirements) is read once, in one transaction, and held
      until :meth:`changed` (a directory notice, committed here or heard from another
      replica, or the notifier's listening connection lost or back), or for
      ``max_age`` seconds at most; while the notifier does not listen (``listening``
      false) every request reads it, as nothing would tell of a change;
    * the root is parsed once (the config is frozen); its validity is checked
      against ``now`` on every use;
    * a CRL is loaded (signature-verified) once per CRL *number*, and served
      again only for a record with the same number and the same DER;
    * a certificate is verified once per (SHA-256 of its DER, number of the CRL
      it was checked against); on every use its validity is checked against
      ``now`` and its serial against the CRL in force. A new CRL number never
      finds an old entry.

    Failures are not cached. Both caches are LRU-bounded.
    """

    def __init__(
        self,
        root_der: bytes,
        *,
        certificates: int = DEFAULT_CACHED_CERTIFICATES,
        crls: int = DEFAULT_CACHED_CRLS,
        listening: Callable[[], bool] = lambda: True,
        max_age: float = DEFAULT_MAX_AGE,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._root_der = root_der
        self._root: RootCertificate | None = None
        self._crls: _Lru[int, RevocationList] = _Lru(crls)
        self._certificates: _Lru[tuple[Fingerprint, int | None], Certificate] = _Lru(certificates)
        self._listening = listening
        self._max_age = max_age
        self._monotonic = monotonic
        self._held: Directory | None = None
        self._held_as_of = (-1, 0.0, 0)  # (generation, monotonic time, now) when read
        self._generation = 0
        self._loading = asyncio.Lock()
        self._watchers: set[asyncio.Event] = set()
        self.loads = 0  # directory reads (tests and metrics read it)

    # -- the held directory ------------------------------------------------------------

    def changed(self) -> None:
        """The directory changed (or may have): read it again before the next decision,
        and wake every watcher (:meth:`watch`)."""
        self._generation += 1
        for event in self._watchers:
            event.set()

    @property
    def changes(self) -> int:
        """How many changes were heard (tests wait on it)."""
        return self._generation

    def watch(self) -> asyncio.Event:
        """An event set at every :meth:`changed` (the caller clears it); :meth:`unwatch`
        when done."""
        event = asyncio.Event()
        self._watchers.add(event)
        return event

    def unwatch(self, event: asyncio.Event) -> None:
        self._watchers.discard(event)

    def _fresh(self, now: int) -> Directory | None:
        held = self._held
        generation, at, as_of = self._held_as_of
        if (
            held is None
            or generation != self._generation
            or now < as_of  # bundles were left out as expired as of a later time
            or self._monotonic() - at >= self._max_age
            or not self._listening()
        ):
            return None
        return held

    async def directory(self, store: Store, now: int) -> Directory:
        """The held directory, read again first when it may have changed."""
        held = self._fresh(now)
        if held is not None:
            return held
        if not self._listening():  # deaf: no notice would tell of a change, so read now
            self._held = None  # and again once listening, whatever was missed meanwhile
            self.loads += 1
            return await store.directory(now=now)
        async with self._loading:  # one read serves every request waiting for it
            held = self._fresh(now)
            if held is not None:
                return held
            generation = self._generation
            held = await store.directory(now=now)
            self.loads += 1
            self._held, self._held_as_of = held, (generation, self._monotonic(), now)
            return held

    def root(self, now: int) -> RootCertificate:
        """The pinned root, if valid at ``now``; else ``Unavailable``."""
        root = self._root
        try:
            if root is None:
                root = self._root = load_root(self._root_der, now=now)
            elif not root.not_before <= now <= root.not_after:
                raise VerificationError("the root certificate is not valid at this time")
        except ProtocolError as exc:
            raise Unavailable("the network root certificate is not valid now") from exc
        return root

    def trust(self, record: CrlRecord | None, now: int) -> Trust:
        """Trust as of ``now``, with the CRL ``record`` the caller read (None: no CRL held)."""
        root = self.root(now)
        return Trust(
            root=root, crl=None if record is None else self._crl(record, root), now=now, cache=self
        )

    def _crl(self, record: CrlRecord, root: RootCertificate) -> RevocationList:
        crl = self._crls.get(record.number)
        if crl is None or crl.der != record.der:
            # Verified as of its own thisUpdate: a late CRL stays in force (module docstring).
            try:
                crl = load_crl(record.der, root, now=record.this_update)
            except ProtocolError:
                # Verified when it was stored: the database has been altered. Refuse to
                # make any trust decision until the operator restores it (fail closed).
                raise Unavailable("the revocation list the hub holds does not verify") from None
            self._crls.put(record.number, crl)
        return crl

    def verify(self, der: bytes, trust: Trust) -> Certificate:
        """``verify_certificate`` under ``trust``, re-using an earlier verification of ``der``."""
        number = None if trust.crl is None else trust.crl.number
        key = (Fingerprint(fingerprint(der)), number)
        cert = self._certificates.get(key)
        if cert is None:
            cert = verify_certificate(der, trust.root, now=trust.now, crl=trust.crl)
            self._certificates.put(key, cert)
            return cert
        if not cert.not_before <= trust.now <= cert.not_after:
            raise VerificationError("certificate is not valid at this time")
        if trust.revoked(cert.serial):
            raise RevokedError("certificate has been revoked")
        return cert

    @property
    def sizes(self) -> tuple[int, int]:
        """(certificates, CRLs) held; tests read it."""
        return len(self._certificates), len(self._crls)


@dataclass(frozen=True, slots=True)
class Trust:
    """The pinned root and the held CRL, as of ``now``."""

    root: RootCertificate
    crl: RevocationList | None
    now: int
    cache: TrustCache = field(repr=False, compare=False)

    def verify(self, der: bytes) -> Certificate:
        """Raise ``VerificationError`` (``RevokedError``) or ``EncodingError`` unless valid now."""
        return self.cache.verify(der, self)

    def revoked(self, serial: int) -> bool:
        return self.crl is not None and serial in self.crl.revoked

    def certificate(self, record: OrgRecord | None) -> Certificate | None:
        """The held certificate of ``record`` if it is still valid and unrevoked now, else None."""
        if record is None:
            return None
        try:
            return self.verify(record.certificate)
        except ProtocolError:
            return None


async def trust_at(
    store: Store,
    cache: TrustCache,
    now: int,
    *,
    orgs: Collection[OrgId] = (),
    bundles: Mapping[OrgId, Fingerprint] | None = None,
) -> tuple[Trust, Snapshot]:
    """Trust as of ``now`` and what the request needs of the directory, as held in memory
    (one consistent read of the whole directory: :meth:`TrustCache.directory`)."""
    cache.root(now)  # refuse before touching the database
    held = await cache.directory(store, now)
    return cache.trust(held.crl, now), held.snapshot(orgs, bundles)


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
    store: Store, clock: Clock, config: HubConfig, scope: Scope, body: object, *, cache: TrustCache
) -> Registered:
    """Verify an organisation certificate and hold it if it is newer than the held one."""
    try:
        der = b64d(exact_object(body, "certificate")["certificate"], max_len=MAX_CERT_BYTES)
    except EncodingError as exc:
        raise Malformed(f"certificate: {exc}") from None
    now = clock()
    trust, _ = await trust_at(store, cache, now)
    try:
        cert = trust.verify(der)
    except EncodingError as exc:
        raise Malformed(f"certificate: {exc}") from None
    except VerificationError:
        raise InvalidCredential(
            "the certificate does not verify against the network root"
        ) from None
    scope.touch([cert.org])
    if ROLE_HUB in cert.roles:
        raise InvalidCredential("a hub certificate is not an organisation certificate")

    def hold(tx: Tx) -> Outcome[bool]:
        placed = tx.put_organisation(cert)
        if placed == "older":
            raise Conflict("a newer certificate is held for this organisation")
        tx.notify(*directory_notice())
        return Outcome(placed == "new", reason=None if placed == "new" else "already-held")

    created = await recording.act(store, scope, now=now, work=hold)
    cache.changed()
    return Registered(cert.org, cert.fingerprint, cert.roles, created)


# -- listing and fetching ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Listing:
    summary: OrgSummary
    revoked: bool


async def list_organisations(
    store: Store, clock: Clock, config: HubConfig, scope: Scope, *, cache: TrustCache
) -> list[Listing]:
    now = clock()
    trust, _ = await trust_at(store, cache, now)
    listings = [Listing(s, trust.revoked(s.serial)) for s in await store.organisations()]
    await recording.access(store, scope, now=now)
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
    scope.touch([org])
    record = await store.organisation(org)
    if record is None:
        raise NotFound()
    bundle = await store.current_bundle(org)
    await recording.access(store, scope, now=clock())
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
    scope.touch([bundle.org])
    await recording.access(store, scope, now=clock())
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
    cache: TrustCache,
) -> Fingerprint:
    """Hold the caller's new key bundle as its current one. Another org's path: 404."""
    org = _path_org(org_text)
    scope.touch([org])
    if org != caller:
        raise NotFound()
    try:
        bundle = KeyBundle.from_wire(body)
    except (EncodingError, ValidationError) as exc:
        raise Malformed(f"key bundle: {exc}") from None
    now = clock()
    trust, seen = await trust_at(store, cache, now, orgs=[caller])
    cert = trust.certificate(seen.organisations.get(caller))
    if cert is None:
        raise InvalidCredential("the organisation has no valid certificate at the hub")
    try:
        verify_bundle(bundle, cert, now=now)
    except VerificationError:
        raise InvalidCredential(
            "the key bundle is not signed by this organisation's certificate or not valid now"
        ) from None

    def hold(tx: Tx) -> Outcome[None]:
        tx.put_bundle(bundle)
        tx.notify(*directory_notice())
        return Outcome(None)

    await recording.act(store, scope, now=now, work=hold)
    cache.changed()
    return bundle.fingerprint


# -- revocation list --------------------------------------------------------------------


async def fetch_crl(store: Store, clock: Clock, scope: Scope) -> bytes | None:
    record = await store.latest_crl()
    await recording.access(store, scope, now=clock())
    return None if record is None else record.der


async def upload_crl(
    store: Store, clock: Clock, config: HubConfig, scope: Scope, body: object, *, cache: TrustCache
) -> int:
    """Hold a root-signed CRL whose number is above the held one's (else 409)."""
    try:
        der = b64d(exact_object(body, "crl")["crl"], max_len=MAX_CRL_BYTES)
    except EncodingError as exc:
        raise Malformed(f"crl: {exc}") from None
    now = clock()
    root = cache.root(now)
    try:
        crl = load_crl(der, root, now=now)
    except EncodingError as exc:
        raise Malformed(f"crl: {exc}") from None
    except VerificationError:
        raise InvalidCredential(
            "the revocation list is not signed by the root or expired"
        ) from None

    def hold(tx: Tx) -> Outcome[None]:
        if not tx.put_crl(crl):
            raise Conflict("a revocation list with this or a higher number is held")
        tx.notify(*directory_notice())
        return Outcome(None)

    await recording.act(store, scope, now=now, work=hold)
    cache.changed()  # in force on this replica before the answer; others on the notice
    return crl.number


# -- linking keys -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeldLinkingKey:
    """The organisation whose linking key was uploaded; ``created`` False when the identical
    key was held already."""

    org: OrgId
    created: bool


async def upload_linking_key(
    store: Store, clock: Clock, config: HubConfig, scope: Scope, body: object, *, cache: TrustCache
) -> HeldLinkingKey:
    """Hold a root-signed sealed linking key."""
    try:
        sealed = SealedLinkingKey.from_wire(body)
    except (EncodingError, ValidationError) as exc:
        raise Malformed(f"linking key: {exc}") from None
    scope.touch([sealed.org])
    now = clock()
    root = cache.root(now)
    if sealed.network != config.network:
        raise InvalidCredential("the linking key is for another network")
    try:
        verify_sealed_linking_key(sealed, root)
    except VerificationError:
        raise InvalidCredential("the linking key is not signed by the network root") from None

    def hold(tx: Tx) -> Outcome[HeldLinkingKey]:
        placed = tx.put_linking_key(sealed)
        if placed == "conflict":
            raise Conflict("another linking key of this version is held for this organisation")
        held = HeldLinkingKey(sealed.org, created=placed == "new")
        return Outcome(held, reason=None if held.created else "already-held")

    return await recording.act(store, scope, now=now, work=hold)


async def list_linking_keys(
    store: Store, clock: Clock, scope: Scope, *, caller: OrgId
) -> list[SealedLinkingKey]:
    scope.touch([caller])
    keys = await store.linking_keys(caller)
    await recording.access(store, scope, now=clock())
    return keys


# -- the pseudonymisation services' key statements -----------------------------------------


async def upload_oprf_key(
    store: Store, clock: Clock, config: HubConfig, scope: Scope, body: object, *, cache: TrustCache
) -> bool:
    """Hold a root-signed key statement; True when new (or a later one for the same key).

    The hub keeps one statement per version and share and serves them (``list_oprf_keys``);
    it never uses them: the key shares, and so the pseudonyms, are the services'.
    """
    try:
        statement = OprfKeyStatement.from_wire(body)
    except (EncodingError, ValidationError) as exc:
        raise Malformed(f"key statement: {exc}") from None
    now = clock()
    if statement.network != config.network:
        raise InvalidCredential("the key statement is for another network")
    try:
        verify_key_statement(statement, cache.root(now), now=now)
    except VerificationError:
        raise InvalidCredential(
            "the key statement is not signed by the network root, or not valid now"
        ) from None

    def hold(tx: Tx) -> Outcome[bool]:
        placed = tx.put_oprf_key(statement)
        if placed == "conflict":
            raise Conflict("another key is held for this share of this pseudonym version")
        if placed == "older":
            raise Conflict("a later statement for this key is held")
        return Outcome(placed == "new", reason=None if placed == "new" else "already-held")

    return await recording.act(store, scope, now=now, work=hold)


async def list_oprf_keys(store: Store, clock: Clock, scope: Scope) -> list[OprfKeyStatement]:
    """The key statements held, by version and share (public: each is root-signed)."""
    statements = await store.oprf_keys()
    await recording.access(store, scope, now=clock())
    return statements


# -- retired linking keys -------------------------------------------------------------------


async def upload_retirement(
    store: Store, clock: Clock, config: HubConfig, scope: Scope, body: object, *, cache: TrustCache
) -> bool:
    """Hold a root-signed retirement of a linking-key version; True when new. After its
    ``until`` the relay refuses envelopes carrying pseudonyms of that version."""
    try:
        retirement = Retirement.from_wire(body)
    except (EncodingError, ValidationError) as exc:
        raise Malformed(f"retirement: {exc}") from None
    now = clock()
    if retirement.network != config.network:
        raise InvalidCredential("the retirement is for another network")
    try:
        verify_retirement(retirement, cache.root(now))
    except VerificationError:
        raise InvalidCredential("the retirement is not signed by the network root") from None

    def hold(tx: Tx) -> Outcome[bool]:
        placed = tx.put_retirement(retirement)
        if placed == "conflict":
            raise Conflict("another retirement of this linking-key version is held")
        tx.notify(*directory_notice())
        return Outcome(placed == "new", reason=None if placed == "new" else "already-held")

    created = await recording.act(store, scope, now=now, work=hold)
    cache.changed()
    return created


async def list_retirements(store: Store, clock: Clock, scope: Scope) -> list[Retirement]:
    """The retirements held, by version (public: each is root-signed)."""
    retirements = await store.retirements()
    await recording.access(store, scope, now=clock())
    return retirements
