"""An organisation's keys: signing key, KEM keys and bundles, certificate, linking keys.

One directory (mode 0700) per organisation::

    signing.key               the Ed25519 signing seed, encrypted (kind ed25519)
    request.pem               the enrolment request (PKCS#10) for the authority
    root.pem                  the pinned network root, imported once; never replaced
    certificate.pem           the organisation certificate, once issued
    kem-<n>.key               KEM seed n (96 bytes), encrypted (kind kem-seed)
    bundle-<n>.json           JSON array of the key bundles signed for KEM seed n
    linking-key-v<N>.key      linking key version N, encrypted (kind linking-key)
    state.json                network, org, pinned root and certificate fingerprints,
                              KEM seed ids and the current one, linking-key versions;
                              authenticated with a key derived from the signing seed

Older KEM seeds are kept after a rotation (:meth:`OrgKeys.rotate_kem`) so that
messages sealed to an older bundle still open, until :meth:`OrgKeys.delete_kem`
removes one. Every new bundle starts later than every bundle signed before it, so
that a client can refuse an older one (a hub rolling a rotation back).
``PartyKeys`` holds what the hub's directory shares (signing key,
request, pinned root, certificate); see :mod:`keys.hub`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keys.authority import DAY, PEM_CERTIFICATE, PEM_REQUEST, key_fingerprint
from keys.errors import KeyFileError, KeyStoreError
from keys.keyfile import (
    KIND_ED25519,
    KIND_KEM_SEED,
    KIND_LINKING_KEY,
    KdfParams,
    Rng,
    key_file_params,
    make_private_dir,
    read_bounded,
    read_key_file,
    read_state,
    state_mac_key,
    write_key_file,
    write_public_file,
    write_state,
)
from protocol.certificate import (
    MAX_CERT_BYTES,
    ROLE_HUB,
    Certificate,
    RootCertificate,
    create_enrolment_request,
    load_root,
    pem_decode,
    pem_encode,
    verify_certificate,
)
from protocol.encoding import canonical_json, fingerprint, loads_strict
from protocol.errors import ProtocolError
from protocol.keybundle import (
    KEM_SEED_BYTES,
    KeyBundle,
    kem_private_key,
    kem_public_bytes,
    sign_bundle,
)
from protocol.linkingkey import SealedLinkingKey, open_linking_key
from protocol.pseudonym import LinkingKey
from protocol.types import Fingerprint, NetworkId, OrgId, parse_network_id, parse_org_id

MAX_BUNDLE_FILE_BYTES = 1024 * 1024

P = TypeVar("P", bound="PartyKeys")


# How far a new key bundle is back-dated, to tolerate clocks that run behind ours.
BUNDLE_CLOCK_SKEW = 300


def _der(data: bytes, label: str) -> bytes:
    """Accept PEM (``-----BEGIN <label>-----``) or DER."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return pem_decode(data, label)
    return data


class PartyKeys:
    """The signing key, enrolment request, pinned root and certificate of one party."""

    STATE_FORMAT: ClassVar[str] = "schakel-party"

    __slots__ = ("_cache", "_dir", "_mac_key", "_params", "_passphrase", "_signing_key", "_state")

    def __init__(
        self,
        directory: Path,
        signing_seed: bytes,
        state: dict[str, Any],
        *,
        passphrase: bytes,
        params: KdfParams,
    ) -> None:
        self._dir = directory
        self._signing_key = Ed25519PrivateKey.from_private_bytes(signing_seed)
        self._mac_key = state_mac_key(signing_seed)
        self._state = state
        self._passphrase = passphrase
        self._params = params
        self._cache: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(directory={str(self._dir)!r}, org={self.org!r})"

    # -- creating and opening ----------------------------------------------------------

    @classmethod
    def _create(
        cls: type[P],
        directory: Path | str,
        network: NetworkId,
        org: OrgId,
        passphrase: bytes,
        params: KdfParams,
        *,
        rng: Rng,
        allow_weak: bool,
        extra: dict[str, Any],
    ) -> P:
        network, org = parse_network_id(network), parse_org_id(org)
        if params.weak and not allow_weak:
            raise KeyFileError("refusing KDF parameters below production strength")
        path = make_private_dir(directory, must_be_empty=True)
        seed = rng(32)
        write_key_file(
            path / "signing.key", KIND_ED25519, seed, passphrase, params, allow_weak=True, rng=rng
        )
        state = {
            "format": cls.STATE_FORMAT,
            "v": 1,
            "network": network,
            "org": org,
            "root": None,
            "root_pinned_at": None,
            "certificate": None,
            "certificate_checked_at": None,
            **extra,
        }
        keys = cls(path, seed, state, passphrase=passphrase, params=params)
        keys._write_request()
        keys._save()
        return keys

    def _write_request(self) -> None:
        """Write what the authority needs to certify this directory's key (a PKCS#10 request)."""
        request = create_enrolment_request(self._signing_key, self.network, self.org)
        write_public_file(self._dir / "request.pem", pem_encode(request.der, PEM_REQUEST))

    @classmethod
    def open(cls: type[P], directory: Path | str, passphrase: bytes) -> P:
        """Decrypt the signing key and load the authenticated state."""
        path = Path(directory)
        if not (path / "signing.key").exists():
            raise KeyStoreError(f"{path} is not a key directory (no signing.key)")
        seed = read_key_file(path / "signing.key", passphrase, kind=KIND_ED25519)
        state = read_state(path / "state.json", state_mac_key(seed), format=cls.STATE_FORMAT)
        params = key_file_params(path / "signing.key")
        return cls(path, seed, state, passphrase=passphrase, params=params)

    # -- identity ------------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def org(self) -> OrgId:
        return OrgId(self._state["org"])

    @property
    def network(self) -> NetworkId:
        return NetworkId(self._state["network"])

    @property
    def signing_key(self) -> Ed25519PrivateKey:
        return self._signing_key

    @property
    def key_fingerprint(self) -> Fingerprint:
        """SHA-256 of the raw signing public key: compare it out of band at enrolment."""
        return key_fingerprint(self._signing_key.public_key())

    @property
    def request_der(self) -> bytes:
        return pem_decode(read_bounded(self._dir / "request.pem", 2 * MAX_CERT_BYTES), PEM_REQUEST)

    # -- the pinned root -----------------------------------------------------------------

    def pin_root(self, der: bytes, *, now: int) -> RootCertificate:
        """Pin the network root (PEM or DER). Pinning a different root later is refused."""
        root = load_root(_der(der, PEM_CERTIFICATE), now=now)
        if root.network != self.network:
            raise KeyStoreError(f"the root is for network {root.network!r}, not {self.network!r}")
        pinned = self._state["root"]
        if pinned is not None:
            if pinned != root.fingerprint:
                raise KeyStoreError(
                    f"refusing to replace the pinned network root {pinned} with {root.fingerprint}"
                )
            return self.root
        write_public_file(self._dir / "root.pem", pem_encode(root.der, PEM_CERTIFICATE))
        self._update(root=root.fingerprint, root_pinned_at=now)
        return root

    @property
    def root_pinned(self) -> bool:
        return self._state["root"] is not None

    @property
    def root(self) -> RootCertificate:
        """The pinned root; ``KeyStoreError`` when none is pinned yet."""
        if "root" not in self._cache:
            if self._state["root"] is None:
                raise KeyStoreError("no network root is pinned yet: import root.pem first")
            der = _der(read_bounded(self._dir / "root.pem", 2 * MAX_CERT_BYTES), PEM_CERTIFICATE)
            if fingerprint(der) != self._state["root"]:
                raise KeyStoreError(f"{self._dir / 'root.pem'} is not the root that was pinned")
            self._cache["root"] = load_root(der, now=int(self._state["root_pinned_at"]))
        root: RootCertificate = self._cache["root"]
        return root

    def _root_at(self, now: int) -> RootCertificate:
        return load_root(self.root.der, now=now)

    # -- the certificate -----------------------------------------------------------------

    def import_certificate(self, pem_or_der: bytes, *, now: int) -> Certificate:
        """Store our certificate after checking it chains to the pinned root and is ours."""
        der = _der(pem_or_der, PEM_CERTIFICATE)
        cert = verify_certificate(der, self._root_at(now), now=now, crl=None)
        if key_fingerprint(cert.public_key) != self.key_fingerprint:
            raise KeyStoreError("the certificate is for another key than this directory's")
        if cert.org != self.org or cert.network != self.network:
            raise KeyStoreError(
                f"the certificate is for {cert.org!r} in {cert.network!r}, "
                f"not {self.org!r} in {self.network!r}"
            )
        self._check_roles(cert.roles)
        write_public_file(self._dir / "certificate.pem", pem_encode(cert.der, PEM_CERTIFICATE))
        self._cache["certificate"] = cert
        self._update(certificate=cert.fingerprint, certificate_checked_at=now)
        return cert

    def _check_roles(self, roles: frozenset[str]) -> None:
        if ROLE_HUB in roles:
            raise KeyStoreError("a hub certificate can not be an organisation's certificate")

    @property
    def certificate(self) -> Certificate | None:
        """The imported certificate (checked against the root when imported), or None."""
        if self._state["certificate"] is None:
            return None
        if "certificate" not in self._cache:
            path = self._dir / "certificate.pem"
            der = _der(read_bounded(path, 2 * MAX_CERT_BYTES), PEM_CERTIFICATE)
            if fingerprint(der) != self._state["certificate"]:
                raise KeyStoreError(f"{path} is not the certificate that was imported")
            checked_at = int(self._state["certificate_checked_at"])
            self._cache["certificate"] = verify_certificate(
                der, self._root_at(checked_at), now=checked_at, crl=None
            )
        cert: Certificate = self._cache["certificate"]
        return cert

    def _require_certificate(self) -> Certificate:
        cert = self.certificate
        if cert is None:
            raise KeyStoreError("no certificate yet: import the one the authority issued")
        return cert

    # -- helpers -------------------------------------------------------------------------

    def _write_secret(self, name: str, kind: str, secret: bytes, rng: Rng = os.urandom) -> None:
        write_key_file(
            self._dir / name,
            kind,
            secret,
            self._passphrase,
            self._params,
            allow_weak=True,  # the parameters signing.key was written with
            overwrite=True,  # only a leftover of a write whose state commit failed
            rng=rng,
        )

    def _read_secret(self, name: str, kind: str) -> bytes:
        return read_key_file(self._dir / name, self._passphrase, kind=kind)

    def _update(self, **changes: Any) -> None:
        self._state = {**self._state, **changes}
        self._save()

    def _save(self) -> None:
        write_state(self._dir / "state.json", self._state, self._mac_key)


class OrgKeys(PartyKeys):
    """An organisation's key directory."""

    STATE_FORMAT: ClassVar[str] = "schakel-org"
    __slots__ = ()

    @classmethod
    def create(
        cls,
        directory: Path | str,
        network: NetworkId,
        org: OrgId,
        passphrase: bytes,
        params: KdfParams,
        *,
        rng: Rng = os.urandom,
        allow_weak: bool = False,
    ) -> OrgKeys:
        """Generate the signing key, the first KEM seed and the enrolment request."""
        if parse_org_id(org) == "hub":
            raise KeyStoreError("organisation id 'hub' is reserved for the hub")
        extra = {"kem_current": 1, "kem_ids": [1], "linking_keys": []}
        keys = cls._create(
            directory, network, org, passphrase, params, rng=rng, allow_weak=allow_weak, extra=extra
        )
        keys._write_secret("kem-1.key", KIND_KEM_SEED, rng(KEM_SEED_BYTES), rng)
        return keys

    # -- KEM keys and bundles ----------------------------------------------------------

    def _kem_seed(self, index: int) -> bytes:
        cache: dict[int, bytes] = self._cache.setdefault("kem", {})
        if index not in cache:
            cache[index] = self._read_secret(f"kem-{index}.key", KIND_KEM_SEED)
        return cache[index]

    def _bundles(self, index: int) -> list[KeyBundle]:
        path = self._dir / f"bundle-{index}.json"
        if not path.exists():
            return []
        try:
            items = loads_strict(read_bounded(path, MAX_BUNDLE_FILE_BYTES), max_depth=4)
            if not isinstance(items, list):
                raise KeyStoreError(f"{path} must hold a JSON array")
            return [KeyBundle.from_wire(item) for item in items]
        except ProtocolError as exc:
            raise KeyStoreError(f"{path} is malformed: {exc}") from exc

    def _check_bundle(self, index: int, bundle: KeyBundle) -> None:
        if bundle.public_key != kem_public_bytes(self._kem_seed(index)):
            raise KeyStoreError(f"bundle-{index}.json holds a bundle for another KEM key")

    @property
    def kem_keys(self) -> dict[Fingerprint, hpke.MLKEM768X25519PrivateKey]:
        """Every KEM private key kept, by the fingerprint of each bundle signed for it."""
        keys: dict[Fingerprint, hpke.MLKEM768X25519PrivateKey] = {}
        for index in self._state["kem_ids"]:
            private = kem_private_key(self._kem_seed(index))
            for bundle in self._bundles(index):
                self._check_bundle(index, bundle)
                keys[bundle.fingerprint] = private
        return keys

    def current_bundle(self, *, now: int, days: int = 90) -> KeyBundle:
        """A bundle for the current KEM key valid at ``now``; signs a new one if none is."""
        cert = self._require_certificate()
        index = int(self._state["kem_current"])
        bundles = self._bundles(index)
        for bundle in reversed(bundles):
            if bundle.cert == cert.fingerprint and bundle.not_before <= now < bundle.not_after:
                self._check_bundle(index, bundle)
                return bundle
        not_after = min(now + days * DAY, cert.not_after)
        if not_after <= now:
            raise KeyStoreError("the certificate has expired: enrol again")
        bundle = sign_bundle(
            self._signing_key,
            cert,
            kem_public_bytes(self._kem_seed(index)),
            # Valid a little before now, so a hub or a peer whose clock runs behind ours
            # accepts it at once, and later than every bundle signed before, so that
            # peers can refuse an older one (a hub rolling a rotation back).
            not_before=min(now, max(now - BUNDLE_CLOCK_SKEW, self._newest_start() + 1)),
            not_after=not_after,
        )
        data = canonical_json([b.to_wire() for b in [*bundles, bundle]]) + b"\n"
        write_public_file(self._dir / f"bundle-{index}.json", data)
        return bundle

    def _newest_start(self) -> int:
        """The latest ``not_before`` of any bundle signed here (-1 before the first)."""
        starts = [b.not_before for i in self._state["kem_ids"] for b in self._bundles(i)]
        return max(starts, default=-1)

    def rotate_kem(self, *, now: int, rng: Rng = os.urandom, days: int = 90) -> KeyBundle:
        """Make a new KEM seed current and sign its first bundle; older seeds are kept."""
        self._require_certificate()
        index = max(self._state["kem_ids"]) + 1
        self._write_secret(f"kem-{index}.key", KIND_KEM_SEED, rng(KEM_SEED_BYTES), rng)
        self._update(kem_current=index, kem_ids=[*self._state["kem_ids"], index])
        return self.current_bundle(now=now, days=days)

    @property
    def kem_current(self) -> int:
        """The number of the KEM key new bundles are signed for."""
        return int(self._state["kem_current"])

    @property
    def kem_ids(self) -> tuple[int, ...]:
        """The numbers of every KEM key kept (the current one and older ones)."""
        return tuple(int(i) for i in self._state["kem_ids"])

    def bundles(self, index: int) -> tuple[KeyBundle, ...]:
        """Every bundle signed for KEM key ``index``, oldest first."""
        if index not in self.kem_ids:
            raise KeyStoreError(f"no KEM key {index} is kept")
        return tuple(self._bundles(index))

    def delete_kem(self, index: int) -> None:
        """Delete an older KEM key for good: messages sealed to it no longer open.

        The current key is never deleted. The state forgets the key first, then its
        key file and bundle file are removed, so a failure in between leaves at most
        an unused file behind.
        """
        if index == self.kem_current:
            raise KeyStoreError("the current KEM key can not be deleted: rotate first")
        if index not in self.kem_ids:
            raise KeyStoreError(f"no KEM key {index} is kept")
        self._update(kem_ids=[i for i in self._state["kem_ids"] if i != index])
        self._cache.get("kem", {}).pop(index, None)
        for name in (f"kem-{index}.key", f"bundle-{index}.json"):
            (self._dir / name).unlink(missing_ok=True)

    # -- linking keys ------------------------------------------------------------------

    def store_linking_key(self, sealed: SealedLinkingKey, *, now: int) -> LinkingKey:
        """Open a sealed linking key (root signature checked) and keep it encrypted."""
        if sealed.network != self.network or sealed.org != self.org:
            raise KeyStoreError(
                f"the linking key is sealed to {sealed.org!r} in {sealed.network!r}, not to us"
            )
        if sealed.version in self.destroyed_linking_keys:
            raise KeyStoreError(
                f"linking key version {sealed.version} was retired and destroyed here: "
                "it is not taken again"
            )
        key = open_linking_key(sealed, self._root_at(now), self.kem_keys)
        held = self.linking_keys.get(key.version)
        if held is not None:
            if held.key != key.key:
                raise KeyStoreError(
                    f"linking key version {key.version} is already held with another value"
                )
            return held
        self._write_secret(f"linking-key-v{key.version}.key", KIND_LINKING_KEY, key.key)
        self._cache.setdefault("linking", {})[key.version] = key
        self._update(linking_keys=sorted([*self._state["linking_keys"], key.version]))
        return key

    @property
    def linking_keys(self) -> dict[int, LinkingKey]:
        cache: dict[int, LinkingKey] = self._cache.setdefault("linking", {})
        for version in self._state["linking_keys"]:
            if version not in cache:
                secret = self._read_secret(f"linking-key-v{version}.key", KIND_LINKING_KEY)
                cache[version] = LinkingKey(version, secret)
        return dict(cache)

    @property
    def destroyed_linking_keys(self) -> tuple[int, ...]:
        """The linking-key versions destroyed here (never stored again)."""
        return tuple(self._state.get("destroyed_linking_keys", ()))

    def destroy_linking_key(self, version: int) -> Path:
        """Forget linking-key ``version`` for good; the path of the file removed.

        The state records the version as destroyed first (so it is never stored again,
        and is no longer read), then the key file is removed: a failure in between
        leaves at most an unused encrypted file, which the command names.
        """
        if version not in self._state["linking_keys"]:
            raise KeyStoreError(f"no linking key version {version} is held")
        self._update(
            linking_keys=[v for v in self._state["linking_keys"] if v != version],
            destroyed_linking_keys=sorted({*self.destroyed_linking_keys, version}),
        )
        self._cache.get("linking", {}).pop(version, None)
        path = self._dir / f"linking-key-v{version}.key"
        path.unlink(missing_ok=True)
        return path

    @property
    def current_linking_key(self) -> LinkingKey:
        """The highest linking-key version held; ``KeyStoreError`` when none is."""
        keys = self.linking_keys
        if not keys:
            raise KeyStoreError("no linking key yet: ask the network authority for one")
        return keys[max(keys)]
