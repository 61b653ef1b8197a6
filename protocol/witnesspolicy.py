"""The witness policy: which witnesses count, and how many organisations a head needs.

The network authority signs one canonical object::

    {"v": 1, "network", "number": policy number (1, 2, ... each new policy higher),
     "issued": unix seconds, "quorum": organisations needed (>= 1),
     "witnesses": [<witness certificate wire form>, ...]  sorted by serial, 1..64}

with the root key over ``frame("schakel/witness-policy/v1", canonical_json(all but
"sig"))``, plus ``"sig": b64url(64)``. Every listed certificate is itself root-signed
(:mod:`protocol.witness`); serials and keys are distinct, and the organisations they name
must number at least ``quorum``. A client keeps the highest-numbered policy it verified.

:func:`tally_cosignatures` counts, on a checkpoint, the cosignature/v1 lines of listed
witnesses whose certificate is valid at ``now`` and not revoked, whose timestamp is not
later than ``now + max_skew``, and whose signature verifies; everything else (unknown,
uncertified, expired, revoked, forged, from the future) does not count and is not an
error, so that no single organisation can make a checkpoint unusable by posting a bad
line. An organisation counts once, however many of its witnesses cosigned.
:func:`check_quorum` raises :class:`~protocol.errors.QuorumNotMet` below the quorum.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any, ClassVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.certificate import MAX_TIME, RevocationList, RootCertificate, check_not_revoked
from protocol.checkpoint import Checkpoint, cosignature_time
from protocol.encoding import b64d
from protocol.errors import (
    EncodingError,
    ProtocolError,
    QuorumNotMet,
    ValidationError,
    VerificationError,
)
from protocol.note import ED25519_SIGNATURE_BYTES, NoteSignature
from protocol.types import NetworkId, OrgId, parse_network_id
from protocol.witness import (
    WITNESS_VERSION,
    SignedObject,
    WitnessCertificate,
    check_int,
    check_signature,
    check_witness_signature,
    exact_object,
)

POLICY_LABEL = "schakel/witness-policy/v1"
MAX_WITNESSES = 64
MAX_POLICY_NUMBER = 2**53 - 1
DEFAULT_MAX_SKEW = 300  # seconds a cosignature's timestamp may lie ahead of our clock
_POLICY_KEYS = frozenset({"v", "network", "number", "issued", "quorum", "witnesses", "sig"})


@dataclass(frozen=True, slots=True)
class WitnessPolicy(SignedObject):
    """The authority's witness policy (see the module docstring)."""

    LABEL: ClassVar[str] = POLICY_LABEL
    network: NetworkId
    number: int
    issued: int
    quorum: int
    witnesses: tuple[WitnessCertificate, ...]
    sig: bytes

    def __post_init__(self) -> None:
        parse_network_id(self.network)
        check_int(self.number, 1, MAX_POLICY_NUMBER, "policy number")
        check_int(self.issued, 0, MAX_TIME, "policy issued")
        if not 1 <= len(self.witnesses) <= MAX_WITNESSES:
            raise ValidationError(f"a policy lists 1..{MAX_WITNESSES} witnesses")
        if any(a.serial >= b.serial for a, b in pairwise(self.witnesses)):
            raise ValidationError("a policy lists its witnesses by serial, each once")
        if len({w.key for w in self.witnesses}) != len(self.witnesses):
            raise ValidationError("a policy lists each witness key once")
        if any(w.network != self.network for w in self.witnesses):
            raise ValidationError("every witness of a policy is of the policy's network")
        check_int(self.quorum, 1, len(self.organisations), "quorum (at most the organisations)")
        if not isinstance(self.sig, bytes) or len(self.sig) != ED25519_SIGNATURE_BYTES:
            raise ValidationError(f"a signature is {ED25519_SIGNATURE_BYTES} bytes")

    @property
    def organisations(self) -> frozenset[OrgId]:
        return frozenset(w.org for w in self.witnesses)

    def _unsigned(self) -> dict[str, Any]:
        return {
            "v": WITNESS_VERSION,
            "network": self.network,
            "number": self.number,
            "issued": self.issued,
            "quorum": self.quorum,
            "witnesses": [w.to_wire() for w in self.witnesses],
        }

    @classmethod
    def from_wire(cls, data: object) -> WitnessPolicy:
        fields = exact_object(data, _POLICY_KEYS, "witness policy")
        witnesses = fields["witnesses"]
        if not isinstance(witnesses, list) or len(witnesses) > MAX_WITNESSES:
            raise EncodingError(f"a policy's witnesses are a list of at most {MAX_WITNESSES}")
        return cls(
            network=parse_network_id(fields["network"]),
            number=fields["number"],
            issued=fields["issued"],
            quorum=fields["quorum"],
            witnesses=tuple(WitnessCertificate.from_wire(w) for w in witnesses),
            sig=b64d(fields["sig"], max_len=ED25519_SIGNATURE_BYTES),
        )


def create_policy(
    root_key: Ed25519PrivateKey,
    root: RootCertificate,
    witnesses: Iterable[WitnessCertificate],
    *,
    quorum: int,
    number: int,
    issued: int,
) -> WitnessPolicy:
    """Sign a policy; every witness certificate must be the root's own."""
    if root_key.public_key() != root.public_key:
        raise ValidationError("signing key is not the key of this root certificate")
    chosen = tuple(sorted(witnesses, key=lambda w: w.serial))
    for witness in chosen:
        check_witness_signature(witness, root)
    unsigned = WitnessPolicy(
        network=root.network,
        number=number,
        issued=issued,
        quorum=quorum,
        witnesses=chosen,
        sig=bytes(ED25519_SIGNATURE_BYTES),
    )
    return replace(unsigned, sig=root_key.sign(unsigned.signed_bytes()))


def verify_policy(policy: WitnessPolicy, root: RootCertificate) -> WitnessPolicy:
    """VerificationError unless ``root`` signed the policy and every certificate in it."""
    if policy.network != root.network:
        raise VerificationError("the witness policy is for another network than the root")
    check_signature(root.public_key, policy.sig, policy.signed_bytes(), "witness policy")
    for witness in policy.witnesses:
        check_witness_signature(witness, root)
    return policy


# --- counting cosignatures ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Counted:
    """One cosignature that counted."""

    org: OrgId
    name: str
    serial: int
    timestamp: int


@dataclass(frozen=True, slots=True)
class Tally:
    """The cosignatures of a checkpoint that count under a policy."""

    counted: tuple[Counted, ...]
    quorum: int

    @property
    def organisations(self) -> tuple[OrgId, ...]:
        """The distinct organisations that cosigned, sorted."""
        return tuple(sorted({c.org for c in self.counted}))

    @property
    def met(self) -> bool:
        return len(self.organisations) >= self.quorum


def tally_cosignatures(
    checkpoint: Checkpoint,
    signatures: Sequence[NoteSignature],
    policy: WitnessPolicy,
    root: RootCertificate,
    *,
    crl: RevocationList | None,
    now: int,
    max_skew: int = DEFAULT_MAX_SKEW,
) -> Tally:
    """The cosignatures that count (see the module docstring); never raises for a bad line.

    ``policy`` must come from :func:`verify_policy` with the same ``root`` (the
    certificates' signatures are not checked again here).
    """
    verifiers = {w.serial: w.verifier() for w in policy.witnesses}
    by_pair = {(w.name, verifiers[w.serial].key_id): w for w in policy.witnesses}
    text = checkpoint.text().encode("utf-8")
    counted: dict[int, Counted] = {}
    for signature in signatures:
        witness = by_pair.get((signature.name, signature.key_id))
        if witness is None or witness.serial in counted:
            continue
        if not witness.not_before <= now <= witness.not_after:
            continue
        try:
            check_not_revoked(witness.serial, root, crl)
            timestamp = cosignature_time(signature)
            if timestamp > now + max_skew:
                continue
            verifiers[witness.serial].verify(text, signature.signature)
        except ProtocolError:
            continue
        counted[witness.serial] = Counted(witness.org, witness.name, witness.serial, timestamp)
    return Tally(tuple(counted.values()), policy.quorum)


def check_quorum(
    checkpoint: Checkpoint,
    signatures: Sequence[NoteSignature],
    policy: WitnessPolicy,
    root: RootCertificate,
    *,
    crl: RevocationList | None,
    now: int,
    max_skew: int = DEFAULT_MAX_SKEW,
) -> Tally:
    """The tally if at least ``policy.quorum`` organisations cosigned; QuorumNotMet if not."""
    tally = tally_cosignatures(
        checkpoint, signatures, policy, root, crl=crl, now=now, max_skew=max_skew
    )
    if not tally.met:
        raise QuorumNotMet(
            f"{len(tally.organisations)} of the {policy.quorum} organisations the witness "
            "policy asks for cosigned this checkpoint"
        )
    return tally
