"""The hub's directory as this organisation may use it: nothing the hub serves is taken on trust.

* The **revocation list** verifies against the pinned root, has not expired, and its
  number is never lower than the highest this client saw (a hub can not serve an older
  list); a hub that serves none is refused, since it could hide every revocation.
* A **certificate** chains to the pinned root, is valid now, is not on the list, names
  the organisation asked for and is not the hub's. Verified certificates are cached for
  :data:`CACHE_SECONDS` and re-verified each time they are used.
* A **key bundle** is signed by that certificate and valid now, and it is not older
  than the newest bundle this client verified for that organisation before (its
  ``not_before``, kept per organisation in local state): after a key rotation, a hub
  that serves the replaced bundle again is caught instead of being sealed to.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from clients.errors import HubProblem, NotReady, UnknownOrganisation, VerificationFailed
from clients.state import LocalState
from protocol.certificate import (
    ROLE_HUB,
    Certificate,
    RevocationList,
    load_crl,
    load_root,
    verify_certificate,
)
from protocol.errors import ProtocolError, RevokedError
from protocol.keybundle import KeyBundle, verify_bundle

CACHE_SECONDS = 300  # how long a directory entry or CRL is used without asking the hub again


class DirectoryHub(Protocol):
    """What the directory needs of a :class:`~clients.hub_client.HubClient`."""

    async def get_crl(self) -> bytes | None: ...

    async def get_org(self, org: str) -> tuple[bytes, KeyBundle | None]: ...


class Directory:
    """Verified certificates, bundles and revocation list of one network (one pinned root).

    ``root_der`` gives the pinned root certificate (DER) when it is first needed.
    """

    def __init__(
        self,
        root_der: Callable[[], bytes],
        state: LocalState,
        hub: DirectoryHub,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._root_der = root_der
        self.state = state
        self.hub = hub
        self._clock = clock
        self._crl: tuple[int, RevocationList] | None = None

    def now(self) -> int:
        return int(self._clock())

    @property
    def root_fingerprint(self) -> str:
        return load_root(self._root_der(), now=self.now()).fingerprint

    # -- the revocation list -------------------------------------------------------------

    async def crl(self, now: int) -> RevocationList:
        """The current revocation list, verified (asked again after CACHE_SECONDS)."""
        if self._crl is not None and now - self._crl[0] < CACHE_SECONDS:
            return self._crl[1]
        der = await self.hub.get_crl()
        if der is None:
            # Fail closed: a hub that withholds the list could hide every revocation.
            # The network authority publishes one when it sets the network up.
            raise VerificationFailed("revocation list", reason="the hub serves none")
        crl = self._load_crl(der, now)
        self.state.note_crl_number(crl.number)
        self._crl = (now, crl)
        return crl

    def forget_crl(self) -> None:
        """Ask the hub again at the next use (as a new process would)."""
        self._crl = None

    def _load_crl(self, der: bytes, now: int) -> RevocationList:
        try:
            crl = load_crl(der, load_root(self._root_der(), now=now), now=now)
        except ProtocolError as exc:
            raise VerificationFailed("revocation list", reason=str(exc)[:120]) from exc
        if crl.number < self.state.crl_number:
            raise VerificationFailed("revocation list", reason="older than one seen before")
        return crl

    # -- certificates --------------------------------------------------------------------

    def verify_certificate(
        self, org: str, der: bytes, now: int, crl: RevocationList | None
    ) -> Certificate:
        """``der`` as ``org``'s certificate at ``now`` (against ``crl`` when given)."""
        try:
            cert = verify_certificate(der, load_root(self._root_der(), now=now), now=now, crl=crl)
        except RevokedError as exc:
            raise VerificationFailed("certificate", org, "revoked") from exc
        except ProtocolError as exc:
            raise VerificationFailed("certificate", org, str(exc)[:120]) from exc
        if cert.org != org or ROLE_HUB in cert.roles:
            raise VerificationFailed("certificate", org, "issued to another party")
        return cert

    async def certificate(self, org: str, *, fresh: bool) -> Certificate:
        """``org``'s verified certificate, from the cache (unless ``fresh``) or the hub."""
        certificate, _ = await self._entry(org, fresh=fresh)
        return certificate

    async def _entry(self, org: str, *, fresh: bool) -> tuple[Certificate, KeyBundle | None]:
        now = self.now()
        crl = await self.crl(now)
        root = self.root_fingerprint
        cached = None if fresh else self.state.cached_directory(org, root=root)
        bundle = None
        if cached is not None and now - cached.verified_at < CACHE_SECONDS:
            der = cached.certificate
        else:
            try:
                der, bundle = await self.hub.get_org(org)
            except HubProblem as exc:
                if exc.status != 404:
                    raise
                raise UnknownOrganisation(org) from None
        cert = self.verify_certificate(org, der, now, crl)
        if cached is None or cached.certificate != der or fresh:
            self.state.cache_directory(org, root=root, certificate=der, now=now)
        self.state.remember_certificate(cert.fingerprint, org=org, root=root, der=der)
        return cert, bundle

    # -- key bundles ---------------------------------------------------------------------

    async def recipient(self, org: str) -> tuple[Certificate, KeyBundle]:
        """A recipient's certificate and key bundle, both verified now (fetched fresh)."""
        cert, bundle = await self._entry(org, fresh=True)
        if bundle is None:
            raise NotReady(f"organisation {org!r} has not published a key bundle yet")
        now = self.now()
        try:
            verify_bundle(bundle, cert, now=now)
        except ProtocolError as exc:
            self.state.forget_directory(org)
            raise VerificationFailed("key bundle", org, str(exc)[:120]) from exc
        self._check_not_rolled_back(org, bundle)
        return cert, bundle

    def _check_not_rolled_back(self, org: str, bundle: KeyBundle) -> None:
        root = self.root_fingerprint
        floor = self.state.bundle_floor(org, root=root)
        if floor is not None and bundle.not_before < floor.not_before:
            raise VerificationFailed(
                "key bundle",
                org,
                f"older than bundle {floor.fingerprint} that this client verified for "
                f"{org!r} before: the hub serves a replaced key again, so nothing is sealed "
                "to it; tell the network's privacy officer",
            )
        self.state.raise_bundle_floor(
            org, root=root, not_before=bundle.not_before, fingerprint=bundle.fingerprint
        )
