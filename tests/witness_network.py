"""A small network for the witness tests: a root, a certified hub, witness keys, a policy.

Every key comes from a fixed seed, so the tests are deterministic. ``log(n)`` is the
hub's access log with ``n`` made-up leaves; ``fork(n, at)`` is another history that
agrees with it before leaf ``at``. Test modules reach it through their own fixtures.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import merkle
from protocol.certificate import (
    ROLE_HUB,
    ROLE_MEMBER,
    Certificate,
    RevocationList,
    RootCertificate,
    create_crl,
    create_enrolment_request,
    create_root,
    issue_certificate,
)
from protocol.checkpoint import SignedCheckpoint, cosign, sign_checkpoint
from protocol.note import Note, NoteSignature
from protocol.types import NetworkId, OrgId
from protocol.witness import (
    WitnessCertificate,
    create_witness_request,
    issue_witness_certificate,
)
from protocol.witnesspolicy import WitnessPolicy, create_policy

NETWORK = NetworkId("witness-test")
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
DAY = 86_400


def seeded_key(label: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(label.encode()).digest())


def leaves(count: int, variant: str = "") -> list[bytes]:
    return [merkle.leaf_hash(f"entry {i}{variant}".encode()) for i in range(count)]


@dataclass
class Witness:
    key: Ed25519PrivateKey
    cert: WitnessCertificate

    def cosign(self, signed: SignedCheckpoint, *, at: int) -> NoteSignature:
        return cosign(self.key, self.cert.name, signed.checkpoint, timestamp=at)


@dataclass
class WitnessNet:
    network: NetworkId = NETWORK
    now: int = T0
    root_key: Ed25519PrivateKey = field(default_factory=lambda: seeded_key("root"))
    hub_key: Ed25519PrivateKey = field(default_factory=lambda: seeded_key("hub"))
    next_serial: int = 1

    def __post_init__(self) -> None:
        self.root: RootCertificate = create_root(
            self.root_key, self.network, now=self.now, days=3650, serial=424242
        )
        self.hub_cert = self.certify(self.hub_key, OrgId("hub"), {ROLE_HUB})

    def serial(self) -> int:
        self.next_serial += 1
        return self.next_serial - 1

    def certify(
        self, key: Ed25519PrivateKey, org: OrgId, roles: Iterable[str] = (ROLE_MEMBER,)
    ) -> Certificate:
        request = create_enrolment_request(key, self.network, org)
        return issue_certificate(
            self.root_key, self.root, request, set(roles), now=self.now, days=365,
            serial=self.serial(),
        )  # fmt: skip

    def witness(self, org: str, label: str | None = None, *, days: int = 365) -> Witness:
        key = seeded_key(f"witness {org} {label}")
        request = create_witness_request(key, self.network, OrgId(org))
        if label is not None:
            request = create_witness_request(
                key, self.network, OrgId(org), f"{request.name}/{label}"
            )
        cert = issue_witness_certificate(
            self.root_key, self.root, request, serial=self.serial(), now=self.now, days=days
        )
        return Witness(key, cert)

    def policy(
        self, witnesses: Iterable[Witness], *, quorum: int, number: int = 1
    ) -> WitnessPolicy:
        certs = [w.cert for w in witnesses]
        return create_policy(
            self.root_key, self.root, certs, quorum=quorum, number=number, issued=self.now
        )

    def crl(self, revoked: Mapping[int, int], *, number: int = 1) -> RevocationList:
        return create_crl(self.root_key, self.root, revoked, number=number, now=self.now, days=30)

    def checkpoint(self, size: int, variant: str = "") -> SignedCheckpoint:
        return self.checkpoint_of(leaves(size, variant))

    def checkpoint_of(self, tree: list[bytes]) -> SignedCheckpoint:
        return sign_checkpoint(
            self.hub_key, self.hub_cert, self.root, size=len(tree), root_hash=merkle.root_hash(tree)
        )

    def cosigned(self, signed: SignedCheckpoint, *lines: NoteSignature) -> Note:
        return signed.note.with_signatures(lines)


def fork(size: int, at: int) -> list[bytes]:
    """A history of ``size`` leaves that agrees with ``leaves(size)`` before leaf ``at``."""
    return leaves(size)[:at] + leaves(size - at, "-forked")
