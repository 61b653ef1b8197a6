"""Evidence of a split view: two heads the hub's key signed that cannot both be true.

An evidence file is one line of canonical JSON and a newline::

    {"format": "schakel-evidence", "v": 1, "kind": "fork" | "inconsistent",
     "network": id, "origin": the log's checkpoint origin (protocol.checkpoint.log_origin),
     "hub_certs": [b64url(certificate DER), ...]   the hub certificates (1..4) whose keys
                                                   signed the two heads
     "first": <head>, "second": <head>,
     "proof": [b64url(32), ...]     kind "inconsistent": the consistency proof from the
                                    first head's size to the second's, as the hub gave it;
                                    kind "fork": []
     "observed": unix seconds, "observer": who saw it (1..255 printable ASCII)}

    <head> = {"checkpoint": "<signed checkpoint note, UTF-8 text>"}
           | {"tree_head": <signed tree head, protocol.auditlog wire form>}

It proves a split view offline, with nothing but the pinned root:

* **fork**: both heads have the same size and different roots;
* **inconsistent**: the first is smaller, its size is not a power of two, and the proof
  reproduces the second head's root while binding the first ``size`` leaves to another
  root than the first head's (``protocol.merkle.committed_prefix_root``).

Each head must verify with the key of one of ``hub_certs``, and each certificate must
chain to the root, hold the role ``hub`` and be valid at ``observed`` (revocation is not
considered: a revoked key that signed two histories still signed them). A proof that
merely fails to verify proves nothing (the hub could have sent garbage by mistake), and
such a file is refused. Errors: ``EncodingError`` (not an evidence file),
``VerificationError`` (a well-formed file that does not prove a split view).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from protocol import merkle
from protocol.auditlog import TreeHead, verify_tree_head
from protocol.certificate import (
    MAX_CERT_BYTES,
    MAX_TIME,
    ROLE_HUB,
    Certificate,
    RootCertificate,
    verify_certificate,
)
from protocol.checkpoint import (
    SignedCheckpoint,
    log_origin,
    log_verifier,
    open_checkpoint,
    parse_checkpoint,
)
from protocol.encoding import b64d, b64e, canonical_json, loads_strict
from protocol.errors import EncodingError, ProtocolError, ValidationError, VerificationError
from protocol.note import MAX_NOTE_BYTES, parse_note
from protocol.types import NetworkId, parse_network_id

FORMAT = "schakel-evidence"
VERSION = 1
FORK = "fork"
INCONSISTENT = "inconsistent"
KINDS = (FORK, INCONSISTENT)
MAX_CERTS = 4
MAX_EVIDENCE_BYTES = 2 * 1024 * 1024
_OBSERVER = re.compile(r"[\x21-\x7e]{1,255}")
_KEYS = frozenset(
    {"format", "v", "kind", "network", "origin", "hub_certs", "first", "second", "proof",
     "observed", "observer"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Head:
    """One side of the evidence: a checkpoint note or a signed tree head, as received."""

    checkpoint: bytes | None = None
    tree_head: TreeHead | None = None

    def __post_init__(self) -> None:
        if (self.checkpoint is None) == (self.tree_head is None):
            raise ValidationError("a head is a checkpoint or a tree head")
        if self.checkpoint is not None:
            parse_note(self.checkpoint)

    def to_wire(self) -> dict[str, Any]:
        if self.checkpoint is not None:
            return {"checkpoint": self.checkpoint.decode("utf-8")}
        assert self.tree_head is not None
        return {"tree_head": self.tree_head.to_wire()}

    @classmethod
    def from_wire(cls, data: object) -> Head:
        if not isinstance(data, dict) or len(data) != 1:
            raise EncodingError("a head is {'checkpoint': note} or {'tree_head': head}")
        if "checkpoint" in data:
            note = data["checkpoint"]
            if not isinstance(note, str) or len(note) > MAX_NOTE_BYTES:
                raise EncodingError("a checkpoint is note text")
            return cls(checkpoint=note.encode("utf-8"))
        if "tree_head" in data:
            return cls(tree_head=TreeHead.from_wire(data["tree_head"]))
        raise EncodingError("a head is {'checkpoint': note} or {'tree_head': head}")


@dataclass(frozen=True, slots=True)
class Evidence:
    kind: str
    network: NetworkId
    origin: str
    hub_certs: tuple[bytes, ...]
    first: Head
    second: Head
    proof: tuple[bytes, ...]
    observed: int
    observer: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValidationError(f"evidence kind is one of {', '.join(KINDS)}")
        parse_network_id(self.network)
        if not isinstance(self.origin, str) or not 1 <= len(self.origin) <= 255:
            raise ValidationError("evidence origin is a checkpoint origin")
        if not 1 <= len(self.hub_certs) <= MAX_CERTS:
            raise ValidationError(f"evidence names 1..{MAX_CERTS} hub certificates")
        if any(not isinstance(c, bytes) or len(c) > MAX_CERT_BYTES for c in self.hub_certs):
            raise ValidationError(f"a certificate is DER of at most {MAX_CERT_BYTES} bytes")
        if len(self.proof) > 64 or any(len(h) != merkle.HASH_BYTES for h in self.proof):
            raise ValidationError("an evidence proof is at most 64 hashes of 32 bytes")
        if self.kind == FORK and self.proof:
            raise ValidationError("fork evidence carries no proof")
        if isinstance(self.observed, bool) or not isinstance(self.observed, int):
            raise ValidationError("evidence observed is an integer")
        if not 0 <= self.observed <= MAX_TIME:
            raise ValidationError("evidence observed is unix seconds")
        if not isinstance(self.observer, str) or not _OBSERVER.fullmatch(self.observer):
            raise ValidationError("evidence observer is 1..255 printable ASCII characters")

    def to_wire(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "v": VERSION,
            "kind": self.kind,
            "network": self.network,
            "origin": self.origin,
            "hub_certs": [b64e(der) for der in self.hub_certs],
            "first": self.first.to_wire(),
            "second": self.second.to_wire(),
            "proof": [b64e(h) for h in self.proof],
            "observed": self.observed,
            "observer": self.observer,
        }

    def to_bytes(self) -> bytes:
        """The file: canonical JSON and a newline."""
        return canonical_json(self.to_wire()) + b"\n"

    @classmethod
    def from_wire(cls, data: object) -> Evidence:
        if not isinstance(data, dict) or set(data) != _KEYS:
            raise EncodingError("evidence must be an object with exactly the evidence fields")
        if data["format"] != FORMAT or data["v"] != VERSION or isinstance(data["v"], bool):
            raise EncodingError(f"not a {FORMAT} version {VERSION} file")
        for key in ("hub_certs", "proof"):
            if not isinstance(data[key], list) or len(data[key]) > 64:
                raise EncodingError(f"evidence {key} must be a short list")
        return cls(
            kind=_string(data["kind"], "kind"),
            network=parse_network_id(data["network"]),
            origin=_string(data["origin"], "origin"),
            hub_certs=tuple(b64d(c, max_len=MAX_CERT_BYTES) for c in data["hub_certs"]),
            first=Head.from_wire(data["first"]),
            second=Head.from_wire(data["second"]),
            proof=tuple(b64d(h, max_len=merkle.HASH_BYTES) for h in data["proof"]),
            observed=data["observed"],
            observer=_string(data["observer"], "observer"),
        )


def _string(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise EncodingError(f"evidence {name} must be a string")
    return value


def parse_evidence(data: bytes) -> Evidence:
    """An evidence file (strict JSON, bounded); ``EncodingError``/``ValidationError`` if not."""
    if len(data) > MAX_EVIDENCE_BYTES:
        raise EncodingError(f"an evidence file is at most {MAX_EVIDENCE_BYTES} bytes")
    return Evidence.from_wire(loads_strict(data, max_bytes=MAX_EVIDENCE_BYTES))


@dataclass(frozen=True, slots=True)
class SeenHead:
    """A verified side: its size, root, and the certificate whose key signed it."""

    size: int
    root: bytes
    signer: Certificate


@dataclass(frozen=True, slots=True)
class Proven:
    """What a verified evidence file proves."""

    kind: str
    origin: str
    first: SeenHead
    second: SeenHead
    prefix_root: bytes | None  # "inconsistent": the root the proof binds the prefix to


def make_evidence(
    first: Head,
    second: Head,
    hub_certs: Sequence[Certificate],
    root: RootCertificate,
    *,
    proof: Sequence[bytes] = (),
    observed: int,
    observer: str,
) -> Evidence:
    """Evidence of the two heads (kind from their sizes); check it with :func:`verify_evidence`."""
    sizes = [_claimed_size(head) for head in (first, second)]
    return Evidence(
        kind=FORK if sizes[0] == sizes[1] else INCONSISTENT,
        network=root.network,
        origin=log_origin(root),
        hub_certs=tuple(dict.fromkeys(cert.der for cert in hub_certs)),
        first=first,
        second=second,
        proof=tuple(proof),
        observed=observed,
        observer=observer,
    )


def _claimed_size(head: Head) -> int:
    if head.tree_head is not None:
        return head.tree_head.size
    assert head.checkpoint is not None
    return parse_checkpoint(parse_note(head.checkpoint).text).size


def verify_evidence(evidence: Evidence, root: RootCertificate) -> Proven:
    """What the evidence proves against the pinned ``root``; VerificationError if nothing."""
    if evidence.network != root.network:
        raise VerificationError("the evidence is about another network than the root's")
    origin = log_origin(root)
    if evidence.origin != origin:
        raise VerificationError("the evidence is about another log than this network's")
    certs = [_hub_cert(der, root, evidence.observed) for der in evidence.hub_certs]
    first = _verified(evidence.first, certs, origin)
    second = _verified(evidence.second, certs, origin)
    if evidence.kind == FORK:
        if first.size != second.size or hmac.compare_digest(first.root, second.root):
            raise VerificationError("the two heads do not have one size and two roots")
        return Proven(FORK, origin, first, second, None)
    if not first.size < second.size:
        raise VerificationError("the first head of inconsistent evidence must be the smaller")
    prefix = merkle.committed_prefix_root(first.size, second.size, second.root, evidence.proof)
    if hmac.compare_digest(prefix, first.root):
        raise VerificationError("the proof shows the heads are consistent")
    return Proven(INCONSISTENT, origin, first, second, prefix)


def _hub_cert(der: bytes, root: RootCertificate, at: int) -> Certificate:
    try:
        cert = verify_certificate(der, root, now=at, crl=None)
    except ProtocolError as exc:
        raise VerificationError(f"a hub certificate of the evidence fails: {exc}") from exc
    if ROLE_HUB not in cert.roles:
        raise VerificationError("a certificate of the evidence is not the hub's")
    return cert


def _verified(head: Head, certs: Sequence[Certificate], origin: str) -> SeenHead:
    if head.tree_head is not None:
        tree_head = head.tree_head
        for cert in certs:
            if cert.fingerprint == tree_head.hub_cert:
                verify_tree_head(tree_head, cert)
                return SeenHead(tree_head.size, tree_head.root, cert)
        raise VerificationError("a tree head names none of the evidence's hub certificates")
    assert head.checkpoint is not None
    by_key = {log_verifier(origin, cert).key_id: cert for cert in certs}
    verifiers = [log_verifier(origin, cert) for cert in by_key.values()]
    signed: SignedCheckpoint = open_checkpoint(head.checkpoint, verifiers, origin=origin)
    signer = by_key[signed.log[0].key_id]
    return SeenHead(signed.checkpoint.size, signed.checkpoint.root, signer)
