"""The network authority: the root key, enrolment, revocation and the linking key.

The authority works offline over one directory (mode 0700)::

    root.key                  the root Ed25519 seed, encrypted (kind ed25519)
    root.pem                  the self-signed root certificate
    state.json                serials, issued certificates, revocations, CRL number,
                              linking-key versions and the pseudonymisation services' key
                              shares certified per version; authenticated with a key derived
                              from the root seed, so an offline edit (a dropped revocation)
                              is caught
    crl.pem                   the latest revocation list
    issued/<serial>.pem       every certificate issued
    issued/<serial>.json      every witness certificate issued (protocol.witness)
    witness-policy-<N>.json   witness policy number N (protocol.witnesspolicy)
    linking-key-v<N>.key      linking key version N, encrypted (kind linking-key)

Every change writes the new file(s) first and ``state.json`` last, atomically:
the state file is the commit point. New key files reuse the KDF parameters
``root.key`` was created with.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from keys.errors import AuthorityError, KeyFileError
from keys.keyfile import (
    KIND_ED25519,
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
    ORG_TYPE_OTHER,
    ORG_TYPES,
    ROLE_HUB,
    ROLES,
    Certificate,
    RevocationList,
    RootCertificate,
    create_crl,
    create_root,
    issue_certificate,
    load_enrolment_request,
    load_root,
    pem_decode,
    pem_encode,
    verify_certificate,
)
from protocol.checkpoint import public_key_fingerprint
from protocol.encoding import b64e, canonical_json, loads_strict
from protocol.errors import ValidationError
from protocol.keybundle import KeyBundle, verify_bundle
from protocol.linkingkey import SealedLinkingKey, seal_linking_key
from protocol.oprfkeys import OprfKeyRequest, OprfKeyStatement, sign_key_statement
from protocol.pseudonym import LINKING_KEY_BYTES, LinkingKey
from protocol.retention import RetentionPolicy, create_retention_policy
from protocol.retirement import Retirement, sign_retirement
from protocol.types import (
    Fingerprint,
    NetworkId,
    OrgId,
    ServiceName,
    parse_fingerprint,
    parse_org_id,
    parse_service_name,
)
from protocol.witness import (
    MAX_WITNESS_BYTES,
    WitnessCertificate,
    WitnessRequest,
    issue_witness_certificate,
)
from protocol.witnesspolicy import MAX_WITNESSES, WitnessPolicy, create_policy

STATE_FORMAT = "schakel-authority"
KIND_ORG = "org"
KIND_HUB = "hub"
KIND_WITNESS = "witness"
HUB_ORG = OrgId("hub")
DAY = 86400
PEM_CERTIFICATE = "CERTIFICATE"
PEM_REQUEST = "CERTIFICATE REQUEST"
PEM_CRL = "X509 CRL"


def key_fingerprint(public_key: Ed25519PublicKey) -> Fingerprint:
    """SHA-256 of the raw 32-byte Ed25519 public key, base64url: for out-of-band checks."""
    return public_key_fingerprint(public_key)


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """What the authority remembers of a certificate it issued."""

    serial: int
    org: OrgId
    roles: frozenset[str]
    fingerprint: Fingerprint  # of the certificate DER
    key: Fingerprint  # of the subject's raw public key
    not_after: int
    kind: str  # "org", "hub" or "witness"

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "key": self.key,
            "kind": self.kind,
            "not_after": self.not_after,
            "org": self.org,
            "roles": sorted(self.roles),
        }

    @classmethod
    def from_json(cls, serial: int, data: Any) -> IssuedCertificate:
        return cls(
            serial=serial,
            org=parse_org_id(data["org"]),
            roles=frozenset(str(role) for role in data["roles"]),
            fingerprint=parse_fingerprint(data["fingerprint"]),
            key=parse_fingerprint(data["key"]),
            not_after=int(data["not_after"]),
            kind=str(data["kind"]),
        )


@dataclass(frozen=True, slots=True)
class OprfShareRecord:
    """What the authority remembers of a pseudonymisation service's certified key share."""

    service: ServiceName
    public_key: str  # base64url of the 32-byte element
    not_after: int

    def to_json(self) -> dict[str, Any]:
        return {"not_after": self.not_after, "public_key": self.public_key, "service": self.service}

    @classmethod
    def from_json(cls, data: Any) -> OprfShareRecord:
        return cls(
            parse_service_name(data["service"]), str(data["public_key"]), int(data["not_after"])
        )


@dataclass(frozen=True, slots=True)
class _State:
    network: NetworkId
    root: Fingerprint
    created: int
    next_serial: int
    issued: Mapping[int, IssuedCertificate]
    revoked: Mapping[int, int]
    crl_number: int
    linking_keys: tuple[int, ...]
    # pseudonym version -> share (1, 2) -> the certified service and public key
    oprf_keys: Mapping[int, Mapping[int, OprfShareRecord]] = field(default_factory=dict)
    witness_policy: int = 0  # the number of the newest witness policy (0: none yet)
    retention_policy: int = 0  # the number of the newest retention policy (0: none yet)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "v": 1,
            "network": self.network,
            "root": self.root,
            "created": self.created,
            "next_serial": self.next_serial,
            "issued": {str(s): rec.to_json() for s, rec in sorted(self.issued.items())},
            "revoked": {str(s): t for s, t in sorted(self.revoked.items())},
            "crl_number": self.crl_number,
            "linking_keys": list(self.linking_keys),
            "oprf_keys": {
                str(version): {str(share): rec.to_json() for share, rec in sorted(shares.items())}
                for version, shares in sorted(self.oprf_keys.items())
            },
            "witness_policy": self.witness_policy,
            "retention_policy": self.retention_policy,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _State:
        return cls(
            network=NetworkId(str(data["network"])),
            root=parse_fingerprint(data["root"]),
            created=int(data["created"]),
            next_serial=int(data["next_serial"]),
            issued={
                int(s): IssuedCertificate.from_json(int(s), r) for s, r in data["issued"].items()
            },
            revoked={int(s): int(t) for s, t in data["revoked"].items()},
            crl_number=int(data["crl_number"]),
            linking_keys=tuple(int(v) for v in data["linking_keys"]),
            oprf_keys={
                int(version): {int(sh): OprfShareRecord.from_json(r) for sh, r in shares.items()}
                for version, shares in data.get("oprf_keys", {}).items()
            },
            witness_policy=int(data.get("witness_policy", 0)),
            retention_policy=int(data.get("retention_policy", 0)),
        )


class Authority:
    """An opened authority directory. Create with :meth:`create`, open with :meth:`open`."""

    __slots__ = ("_dir", "_mac_key", "_params", "_passphrase", "_root", "_root_key", "_state")

    def __init__(
        self,
        directory: Path,
        root_key: Ed25519PrivateKey,
        root: RootCertificate,
        state: _State,
        *,
        passphrase: bytes,
        params: KdfParams,
        mac_key: bytes,
    ) -> None:
        self._dir = directory
        self._root_key = root_key
        self._root = root
        self._state = state
        self._passphrase = passphrase
        self._params = params
        self._mac_key = mac_key

    def __repr__(self) -> str:
        return f"Authority(directory={str(self._dir)!r}, network={self._state.network!r})"

    # -- creating and opening -------------------------------------------------------------

    @classmethod
    def create(
        cls,
        directory: Path | str,
        network: NetworkId,
        passphrase: bytes,
        params: KdfParams,
        *,
        now: int,
        days: int = 3650,
        allow_weak: bool = False,
        rng: Rng = os.urandom,
    ) -> Authority:
        """Make a new root key and certificate in an empty (or new) directory."""
        if params.weak and not allow_weak:
            raise KeyFileError("refusing KDF parameters below production strength")
        path = make_private_dir(directory, must_be_empty=True)
        seed = rng(32)
        root_key = Ed25519PrivateKey.from_private_bytes(seed)
        serial = int.from_bytes(rng(8), "big") >> 1 or 1
        root = create_root(root_key, network, now=now, days=days, serial=serial)
        write_key_file(
            path / "root.key",
            KIND_ED25519,
            seed,
            passphrase,
            params,
            allow_weak=allow_weak,
            rng=rng,
        )
        write_public_file(path / "root.pem", pem_encode(root.der, PEM_CERTIFICATE))
        state = _State(network, root.fingerprint, now, 1, {}, {}, 0, ())
        mac_key = state_mac_key(seed)
        write_state(path / "state.json", state.to_json(), mac_key)
        return cls(
            path, root_key, root, state, passphrase=passphrase, params=params, mac_key=mac_key
        )

    @classmethod
    def open(cls, directory: Path | str, passphrase: bytes) -> Authority:
        """Decrypt the root key and load the authenticated state."""
        path = Path(directory)
        if not (path / "root.key").exists():
            raise AuthorityError(f"{path} is not an authority directory (no root.key)")
        seed = read_key_file(path / "root.key", passphrase, kind=KIND_ED25519)
        mac_key = state_mac_key(seed)
        try:
            state = _State.from_json(read_state(path / "state.json", mac_key, format=STATE_FORMAT))
        except (KeyError, TypeError, ValueError, AttributeError, ValidationError) as exc:
            raise KeyFileError(f"{path / 'state.json'} is malformed") from exc
        pem = read_bounded(path / "root.pem", MAX_CERT_BYTES * 2)
        root = load_root(pem_decode(pem, PEM_CERTIFICATE), now=state.created)
        root_key = Ed25519PrivateKey.from_private_bytes(seed)
        if root.fingerprint != state.root or _raw(root.public_key) != _raw(root_key.public_key()):
            raise AuthorityError(f"{path / 'root.pem'} does not belong to this root key")
        params = key_file_params(path / "root.key")
        return cls(
            path, root_key, root, state, passphrase=passphrase, params=params, mac_key=mac_key
        )

    # -- what it holds ---------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def network(self) -> NetworkId:
        return self._state.network

    @property
    def root(self) -> RootCertificate:
        return self._root

    @property
    def root_fingerprint(self) -> Fingerprint:
        """SHA-256 of the root certificate DER: read it out to every party out of band."""
        return self._root.fingerprint

    @property
    def root_key_fingerprint(self) -> Fingerprint:
        return key_fingerprint(self._root.public_key)

    @property
    def issued(self) -> Mapping[int, IssuedCertificate]:
        return dict(self._state.issued)

    @property
    def revoked(self) -> Mapping[int, int]:
        return dict(self._state.revoked)

    @property
    def crl_number(self) -> int:
        return self._state.crl_number

    @property
    def linking_key_versions(self) -> tuple[int, ...]:
        return self._state.linking_keys

    # -- certificates ----------------------------------------------------------------------

    def enrol(
        self,
        request_der: bytes,
        roles: Collection[str],
        *,
        now: int,
        days: int = 365,
        org_type: str = ORG_TYPE_OTHER,
    ) -> Certificate:
        """Issue an organisation certificate with ``roles`` and ``org_type`` (one of
        ``ORG_TYPES``: police, shelter, ...) for a signed enrolment request."""
        roles = frozenset(roles)
        if org_type not in ORG_TYPES:
            raise AuthorityError(
                f"unknown organisation type {org_type[:32]!r}: use one of {', '.join(ORG_TYPES)}"
            )
        unknown = roles - set(ROLES)
        if unknown:
            raise AuthorityError(f"unknown role(s): {', '.join(sorted(unknown))}")
        if not roles:
            raise AuthorityError("an organisation certificate needs at least one role")
        if ROLE_HUB in roles:
            raise AuthorityError("the hub role is only given by certify-hub")
        return self._issue(request_der, roles, KIND_ORG, now=now, days=days, org_type=org_type)

    def certify_hub(self, request_der: bytes, *, now: int, days: int = 365) -> Certificate:
        """Issue the hub's log-signing certificate (organisation id ``hub``, role ``hub``)."""
        return self._issue(request_der, frozenset({ROLE_HUB}), KIND_HUB, now=now, days=days)

    def _issue(
        self,
        request_der: bytes,
        roles: frozenset[str],
        kind: str,
        *,
        now: int,
        days: int,
        org_type: str = ORG_TYPE_OTHER,
    ) -> Certificate:
        request = load_enrolment_request(request_der)
        if request.network != self.network:
            raise AuthorityError(
                f"the request is for network {request.network!r}, not {self.network!r}"
            )
        if (request.org == HUB_ORG) != (kind == KIND_HUB):
            raise AuthorityError(
                "organisation id 'hub' is reserved for the hub; use certify-hub for it"
                if kind == KIND_ORG
                else f"a hub request must name organisation 'hub', not {request.org!r}"
            )
        key = key_fingerprint(request.public_key)
        self._check_one_key(request.org, key)
        serial = self._state.next_serial
        cert = issue_certificate(
            self._root_key,
            self._root_at(now),
            request,
            roles,
            now=now,
            days=days,
            serial=serial,
            org_type=org_type,
        )
        record = IssuedCertificate(
            serial, request.org, roles, cert.fingerprint, key, cert.not_after, kind
        )
        (self._dir / "issued").mkdir(mode=0o700, exist_ok=True)
        write_public_file(
            self._dir / "issued" / f"{serial}.pem", pem_encode(cert.der, PEM_CERTIFICATE)
        )
        self._commit(
            replace(
                self._state, next_serial=serial + 1, issued={**self._state.issued, serial: record}
            )
        )
        return cert

    def _check_one_key(self, org: OrgId, key: Fingerprint) -> None:
        for record in self._state.issued.values():
            if record.kind == KIND_WITNESS:
                if record.key == key:
                    raise AuthorityError(
                        f"this key is certificate {record.serial}'s witness key; "
                        "an organisation or hub key must be a key of its own"
                    )
                continue
            if record.org == org and record.key != key and record.serial not in self._state.revoked:
                raise AuthorityError(
                    f"organisation {org!r} already holds certificate {record.serial} for "
                    "another key; revoke it first"
                )

    # -- witnesses --------------------------------------------------------------------------

    def certify_witness(
        self, request: WitnessRequest, *, now: int, days: int = 365
    ) -> WitnessCertificate:
        """Certify a witness key (its request's proof of possession is checked).

        A witness key is never a key this authority certified for anything else, and
        never another organisation's or another name's witness key: Ed25519
        cosignatures do not commit to the name, so one key under two names would count
        twice.
        """
        if request.network != self.network:
            raise AuthorityError(
                f"the request is for network {request.network!r}, not {self.network!r}"
            )
        key = key_fingerprint(request.public_key)
        for record in self._state.issued.values():
            if record.key != key:
                continue
            same = record.kind == KIND_WITNESS and record.org == request.org
            if not (same and self._witness(record.serial).name == request.name):
                raise AuthorityError(
                    f"this key is already certified (serial {record.serial}, {record.org}); "
                    "a witness needs a key of its own"
                )
        serial = self._state.next_serial
        cert = issue_witness_certificate(
            self._root_key, self._root_at(now), request, serial=serial, now=now, days=days
        )
        record = IssuedCertificate(
            serial, request.org, frozenset(), cert.fingerprint, key, cert.not_after, KIND_WITNESS
        )
        (self._dir / "issued").mkdir(mode=0o700, exist_ok=True)
        write_public_file(self._witness_path(serial), canonical_json(cert.to_wire()) + b"\n")
        self._commit(
            replace(
                self._state, next_serial=serial + 1, issued={**self._state.issued, serial: record}
            )
        )
        return cert

    def witness_policy(
        self, serials: Collection[int], *, quorum: int, now: int
    ) -> tuple[WitnessPolicy, Path]:
        """Sign the next witness policy over the witness certificates ``serials``.

        Each must be a witness certificate issued here, unrevoked and valid at ``now``.
        The policy is written to ``witness-policy-<number>.json``.
        """
        if not 1 <= len(set(serials)) <= MAX_WITNESSES:
            raise AuthorityError(f"a witness policy lists 1 to {MAX_WITNESSES} witnesses")
        witnesses = []
        for serial in sorted(set(serials)):
            record = self._state.issued.get(serial)
            if record is None or record.kind != KIND_WITNESS:
                raise AuthorityError(f"serial {serial} is not a witness certificate issued here")
            if serial in self._state.revoked:
                raise AuthorityError(f"witness certificate {serial} is revoked")
            cert = self._witness(serial)
            if not cert.not_before <= now <= cert.not_after:
                raise AuthorityError(f"witness certificate {serial} is not valid now")
            witnesses.append(cert)
        number = self._state.witness_policy + 1
        policy = create_policy(
            self._root_key, self._root_at(now), witnesses, quorum=quorum, number=number, issued=now
        )
        path = self._dir / f"witness-policy-{number}.json"
        write_public_file(path, canonical_json(policy.to_wire()) + b"\n", overwrite=True)
        self._commit(replace(self._state, witness_policy=number))
        return policy, path

    def retention_policy(
        self, periods: Mapping[str, int], *, now: int
    ) -> tuple[RetentionPolicy, Path]:
        """Sign the next retention policy (``periods`` in days; unnamed ones default),
        written to ``retention-policy-<number>.json``."""
        number = self._state.retention_policy + 1
        try:
            policy = create_retention_policy(
                self._root_key, self._root_at(now), number=number, issued=now,
                periods=dict(periods),
            )  # fmt: skip
        except ValidationError as exc:
            raise AuthorityError(f"retention policy: {exc}") from exc
        path = self._dir / f"retention-policy-{number}.json"
        write_public_file(path, canonical_json(policy.to_wire()) + b"\n", overwrite=True)
        self._commit(replace(self._state, retention_policy=number))
        return policy, path

    def _witness_path(self, serial: int) -> Path:
        return self._dir / "issued" / f"{serial}.json"

    def _witness(self, serial: int) -> WitnessCertificate:
        data = read_bounded(self._witness_path(serial), MAX_WITNESS_BYTES)
        return WitnessCertificate.from_wire(loads_strict(data, max_bytes=MAX_WITNESS_BYTES))

    # -- revocation -------------------------------------------------------------------------

    def revoke(self, serial: int, *, now: int) -> RevocationList:
        """Revoke certificate ``serial`` and sign a new revocation list holding it."""
        if serial not in self._state.issued:
            raise AuthorityError(f"no certificate with serial {serial} was issued")
        if serial in self._state.revoked:
            raise AuthorityError(f"certificate {serial} is already revoked")
        revoked = {**self._state.revoked, serial: now}
        return self._sign_crl(replace(self._state, revoked=revoked), now=now, days=30)

    def crl(self, *, now: int, days: int = 30) -> RevocationList:
        """Sign a fresh revocation list (a new number every time)."""
        return self._sign_crl(self._state, now=now, days=days)

    def _sign_crl(self, state: _State, *, now: int, days: int) -> RevocationList:
        number = state.crl_number + 1
        crl = create_crl(
            self._root_key, self._root_at(now), state.revoked, number=number, now=now, days=days
        )
        write_public_file(self._dir / "crl.pem", pem_encode(crl.der, PEM_CRL))
        self._commit(replace(state, crl_number=number))
        return crl

    # -- linking keys -----------------------------------------------------------------------

    def new_linking_key(self, rng: Rng = os.urandom) -> LinkingKey:
        """Generate the next linking-key version and store it encrypted."""
        version = self._next_pseudonym_version()
        key = LinkingKey(version, rng(LINKING_KEY_BYTES))
        write_key_file(
            self._linking_path(version),
            KIND_LINKING_KEY,
            key.key,
            self._passphrase,
            self._params,
            allow_weak=True,  # the parameters root.key was created with
            overwrite=True,  # a leftover of a write whose state commit failed
            rng=rng,
        )
        self._commit(replace(self._state, linking_keys=(*self._state.linking_keys, version)))
        return key

    def linking_key(self, version: int) -> LinkingKey:
        if version not in self._state.linking_keys:
            raise AuthorityError(f"there is no linking key version {version}")
        secret = read_key_file(self._linking_path(version), self._passphrase, kind=KIND_LINKING_KEY)
        return LinkingKey(version, secret)

    def current_linking_key(self) -> LinkingKey:
        if not self._state.linking_keys:
            raise AuthorityError("there is no linking key yet: make one first (linking-key new)")
        return self.linking_key(max(self._state.linking_keys))

    def retire_linking_key(self, version: int, *, now: int, days: int) -> Retirement:
        """End the transition window of linking-key ``version`` ``days`` from ``now``: the
        hub accepts its pseudonyms until then, and never after.

        Only once the network has a pseudonymisation key set (both shares of one version)
        to carry its links on; the authority keeps its own copy of the key (``linking-key``
        files), so that a retirement can be issued again.
        """
        if version not in self._state.linking_keys:
            raise AuthorityError(f"there is no linking key version {version}")
        if not any(len(shares) == 2 for shares in self._state.oprf_keys.values()):
            raise AuthorityError(
                "the network has no pseudonymisation key set yet: certify both services' "
                "shares (oprf-certify) before retiring the linking key"
            )
        if not 0 <= days <= 3650:
            raise AuthorityError("the window must end within 0..3650 days")
        return sign_retirement(
            self._root_key, self._root_at(now), version=version, until=now + days * DAY
        )

    def issued_certificate(self, fingerprint: Fingerprint, *, now: int) -> Certificate:
        """The certificate this authority issued with that fingerprint, verified at ``now``."""
        for serial, record in self._state.issued.items():
            if record.fingerprint == fingerprint:
                path = self._dir / "issued" / f"{serial}.pem"
                der = pem_decode(read_bounded(path, 2 * MAX_CERT_BYTES), PEM_CERTIFICATE)
                return verify_certificate(der, self._root_at(now), now=now, crl=None)
        raise AuthorityError(f"no certificate with fingerprint {fingerprint} was issued here")

    def seal_linking_key(
        self, bundle: KeyBundle, cert: Certificate, *, now: int
    ) -> SealedLinkingKey:
        """Seal the current linking key to ``bundle``, after checking its certificate.

        The certificate must be one this authority issued, unrevoked, valid at ``now``
        and not the hub's; the bundle must be signed by it and valid at ``now``.
        """
        verified = verify_certificate(cert.der, self._root_at(now), now=now, crl=None)
        record = self._state.issued.get(verified.serial)
        if record is None or record.fingerprint != verified.fingerprint:
            raise AuthorityError(f"certificate {verified.serial} was not issued by this authority")
        if verified.serial in self._state.revoked:
            raise AuthorityError(f"certificate {verified.serial} is revoked")
        if ROLE_HUB in verified.roles or record.kind == KIND_HUB:
            raise AuthorityError("the hub never receives the linking key")
        verify_bundle(bundle, verified, now=now)
        return seal_linking_key(
            self.current_linking_key(), bundle, root_key=self._root_key, network=self.network
        )

    # -- the pseudonymisation services' keys ------------------------------------------------

    @property
    def oprf_keys(self) -> Mapping[int, Mapping[int, OprfShareRecord]]:
        """Pseudonym version -> share -> the service key certified for it."""
        return {version: dict(shares) for version, shares in self._state.oprf_keys.items()}

    def certify_oprf_key(
        self,
        request: OprfKeyRequest,
        *,
        url: str,
        now: int,
        days: int = 365,
        version: int | None = None,
    ) -> OprfKeyStatement:
        """Check a service's key request (proof of possession) and sign its key statement,
        which names ``url``, where the service answers.

        ``version`` defaults to the version this key already holds this share of (a
        renewal), else the newest OPRF version still missing this share, else the next
        version no linking key or OPRF key set has. Share 1 and share 2 of a
        version must come from two services; a share keeps one public key (a statement
        for the same key again, to extend it, is allowed).
        """
        if request.network != self.network:
            raise AuthorityError(
                f"the key request is for network {request.network!r}, not {self.network!r}"
            )
        version = self._oprf_version(request, version)
        public = b64e(request.public_key)
        shares = self._state.oprf_keys.get(version, {})
        held = shares.get(request.share)
        if held is not None and held.public_key != public:
            raise AuthorityError(
                f"share {request.share} of pseudonym version {version} is already certified "
                "for another key"
            )
        other = shares.get(3 - request.share)
        if other is not None and (other.service == request.service or other.public_key == public):
            raise AuthorityError(
                f"the other share of version {version} is held by the same service or key: "
                "the two shares must be held by two different parties"
            )
        statement = sign_key_statement(
            self._root_key,
            self._root_at(now),
            request,
            version=version,
            url=url,
            not_before=now,
            not_after=now + _check_days(days) * DAY,
        )
        record = OprfShareRecord(request.service, public, statement.not_after)
        oprf_keys = {**self._state.oprf_keys, version: {**shares, request.share: record}}
        self._commit(replace(self._state, oprf_keys=oprf_keys))
        return statement

    def _oprf_version(self, request: OprfKeyRequest, version: int | None) -> int:
        if version is None:
            public = b64e(request.public_key)
            for held, shares in sorted(self._state.oprf_keys.items(), reverse=True):
                record = shares.get(request.share)
                if record is not None and record.public_key == public:
                    return held  # the same key again: a renewal of its statement
            open_versions = [
                v for v, shares in self._state.oprf_keys.items() if request.share not in shares
            ]
            return max(open_versions, default=self._next_pseudonym_version())
        if version in self._state.linking_keys:
            raise AuthorityError(f"pseudonym version {version} is a linking key's version")
        if version not in self._state.oprf_keys and version < self._next_pseudonym_version():
            raise AuthorityError(f"pseudonym version {version} was passed over; use a new one")
        return version

    def _next_pseudonym_version(self) -> int:
        """One more than every linking-key and OPRF version: the two share a number space."""
        return max([*self._state.linking_keys, *self._state.oprf_keys], default=0) + 1

    # -- helpers ---------------------------------------------------------------------------

    def _root_at(self, now: int) -> RootCertificate:
        """The root, checked to be valid at ``now``."""
        return load_root(self._root.der, now=now)

    def _linking_path(self, version: int) -> Path:
        return self._dir / f"linking-key-v{version}.key"

    def _commit(self, state: _State) -> None:
        write_state(self._dir / "state.json", state.to_json(), self._mac_key)
        self._state = state


def _check_days(days: int) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650:
        raise AuthorityError("days must be 1 to 3650")
    return days


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)
