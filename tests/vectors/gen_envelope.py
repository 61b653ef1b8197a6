"""Envelope test vectors: sealed envelopes, who can open them, and tampered variants.

``generate()`` builds, from fixed seeds only, a network root, a few
organisations (Ed25519 signing key, certificate, KEM seed, signed key bundle)
and envelopes sealed between them with a fixed random stream and fixed times.
HPKE draws its encapsulation randomness from the operating system, so the
wrapped keys and the signature differ from run to run: check these vectors in
the opening direction. The header, the body and everything drawn from the
stream do not change.

The random stream (``counter_rng``): block ``i`` is
``SHA-256(seed || i as 8 bytes big-endian)``; the blocks are concatenated and
consumed in order. ``seal`` draws, from one stream per envelope: the message id
(16 bytes, via ``new_message_id``), then the content key (32), then the nonce (24).

Each sealed envelope also gives, per recipient, the HPKE ``info`` of its wrapped key
(``key_info``): the header's text values (message id, recipient, bundle fingerprint,
sender) as ASCII in a frame, never their decoded bytes.

Each entry of ``cases`` names an envelope wire form, the party that tries to
open it, the party whose certificate is used as the sender's, and the
expected outcome: ``open`` (with the payload) or ``reject`` at ``stage``
``parse`` (``Envelope.from_wire`` refuses it) or ``open`` (it parses, and
``open_envelope`` refuses it).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from protocol.certificate import (
    Certificate,
    RootCertificate,
    create_enrolment_request,
    create_root,
    issue_certificate,
)
from protocol.encoding import b64d, b64e, frame
from protocol.envelope import LABEL_KEY, Envelope, Rng, new_message_id, seal
from protocol.keybundle import (
    KeyBundle,
    kem_private_key,
    kem_public_bytes,
    sign_bundle,
)
from protocol.types import NetworkId, OrgId, Pseudonym

NETWORK = NetworkId("schakel-test")
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z: certificates and bundles start here
CREATED = NOW + 3600
ROOT_DAYS = 3650
CERT_DAYS = 365
BUNDLE_SECONDS = 90 * 86400

RNG_DESCRIPTION = (
    "block i = SHA-256(seed || uint64_be(i)), blocks concatenated and consumed in order; "
    "per envelope: message id (16), content key (32), nonce (24)"
)


def counter_rng(seed: bytes) -> Rng:
    """A deterministic byte stream for tests: SHA-256 in counter mode over ``seed``."""
    blocks: Iterator[bytes] = (
        hashlib.sha256(seed + i.to_bytes(8, "big")).digest() for i in itertools.count()
    )
    buffer = bytearray()

    def rng(size: int) -> bytes:
        while len(buffer) < size:
            buffer.extend(next(blocks))
        out = bytes(buffer[:size])
        del buffer[:size]
        return out

    return rng


def seed_bytes(label: str, size: int) -> bytes:
    """The first ``size`` bytes of the stream seeded with ``label``."""
    return counter_rng(f"schakel-vectors/{label}".encode())(size)


def ed25519_seed(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


@dataclass(frozen=True)
class Party:
    """An organisation with everything it needs to send and open envelopes."""

    name: str
    key: Ed25519PrivateKey
    kem_seed: bytes
    certificate: Certificate
    bundle: KeyBundle

    @property
    def org(self) -> OrgId:
        return self.certificate.org

    def kem_keys(self) -> dict[Any, Any]:
        return {self.bundle.fingerprint: kem_private_key(self.kem_seed)}

    def to_vector(self) -> dict[str, Any]:
        return {
            "org": self.org,
            "ed25519_seed": b64e(ed25519_seed(self.key)),
            "kem_seed": b64e(self.kem_seed),
            "certificate": b64e(self.certificate.der),
            "certificate_fingerprint": self.certificate.fingerprint,
            "bundle": self.bundle.to_wire(),
            "bundle_fingerprint": self.bundle.fingerprint,
        }


def make_root(label: str = "root") -> tuple[Ed25519PrivateKey, RootCertificate]:
    key = Ed25519PrivateKey.from_private_bytes(seed_bytes(label, 32))
    return key, create_root(key, NETWORK, now=NOW, days=ROOT_DAYS, serial=1)


def make_party(
    root_key: Ed25519PrivateKey, root: RootCertificate, name: str, org: str, serial: int
) -> Party:
    key = Ed25519PrivateKey.from_private_bytes(seed_bytes(f"{name}/ed25519", 32))
    request = create_enrolment_request(key, NETWORK, OrgId(org))
    cert = issue_certificate(
        root_key, root, request, ["member"], now=NOW, days=CERT_DAYS, serial=serial
    )
    kem_seed = seed_bytes(f"{name}/kem", 96)
    bundle = sign_bundle(
        key, cert, kem_public_bytes(kem_seed), not_before=NOW, not_after=NOW + BUNDLE_SECONDS
    )
    return Party(name=name, key=key, kem_seed=kem_seed, certificate=cert, bundle=bundle)


def make_parties(root_key: Ed25519PrivateKey, root: RootCertificate) -> dict[str, Party]:
    specs = [
        ("police", "politie-zuid"),
        ("ggd", "ggd-west"),
        ("shelter", "opvang-noord"),
        ("outsider", "gemeente-oost"),
        ("police-reissued", "politie-zuid"),  # same organisation, another key and cert
    ]
    return {
        name: make_party(root_key, root, name, org, serial)
        for serial, (name, org) in enumerate(specs, start=2)
    }


def pseudonym_for(kind: str, label: str) -> Pseudonym:
    """A well-formed pseudonym (random-looking, derived from ``label``)."""
    raw = hashlib.sha256(label.encode()).digest()
    return Pseudonym(f"{kind}.1." + base64.b32encode(raw).decode().lower().rstrip("="))


# --- the envelopes ------------------------------------------------------------------------


@dataclass(frozen=True)
class Sealed:
    name: str
    rng_seed: bytes
    sender: Party
    recipients: tuple[Party, ...]
    payload: bytes
    envelope: Envelope

    def to_vector(self) -> dict[str, Any]:
        env = self.envelope
        return {
            "name": self.name,
            "rng_seed": b64e(self.rng_seed),
            "sender": self.sender.name,
            "recipients": [p.name for p in self.recipients],
            "payload": b64e(self.payload),
            "envelope": env.to_wire(),
            "header_canonical": b64e(env.header.canonical()),
            "signed_digest": b64e(env.signed_digest()),
            "key_info": {org: b64e(key_info(env, org)) for org in env.header.recipients},
            "fingerprint": env.fingerprint,
        }


def key_info(env: Envelope, org: str) -> bytes:
    """The HPKE ``info`` of ``org``'s wrapped key: the header's text values, as ASCII."""
    header = env.header
    parts = (header.id, org, header.recipient_keys[OrgId(org)], header.sender)
    return frame(LABEL_KEY, *(part.encode("ascii") for part in parts))


def seal_with(
    name: str,
    sender: Party,
    recipients: tuple[Party, ...],
    payload: bytes,
    **header: Any,
) -> Sealed:
    rng_seed = f"schakel-vectors/envelope/{name}".encode()
    rng = counter_rng(rng_seed)
    envelope = seal(
        message_id=new_message_id(rng),
        network=NETWORK,
        sender=sender.certificate,
        sender_key=sender.key,
        recipients={p.org: p.bundle for p in recipients},
        payload=payload,
        created=header.pop("created", CREATED),
        rng=rng,
        **header,
    )
    return Sealed(name, rng_seed, sender, recipients, payload, envelope)


def make_envelopes(parties: dict[str, Party]) -> list[Sealed]:
    police, ggd, shelter = parties["police"], parties["ggd"], parties["shelter"]
    signal = seal_with(
        "signal",
        police,
        (ggd, shelter),
        b'{"note":"minor found working night shifts, no papers"}',
        kind="signal",
        pseudonyms=tuple(sorted([pseudonym_for("bsn", "a"), pseudonym_for("tel", "b")])),
    )
    status = seal_with(
        "status",
        ggd,
        (police,),
        b'{"note":"intake done"}',
        kind="status",
        status="accepted",
        ref=signal.envelope.header.id,
    )
    reply = seal_with(
        "reply-with-prev",
        ggd,
        (police,),
        b'{"note":"a second answer, naming the first"}',
        kind="reply",
        ref=signal.envelope.header.id,
        prev={police.org: status.envelope.header.id},
    )
    return [signal, status, reply]


# --- cases --------------------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _case(
    name: str,
    wire: dict[str, Any],
    recipient: str,
    sender: str,
    expected: str,
    *,
    stage: str | None = None,
    payload: bytes | None = None,
) -> dict[str, Any]:
    case: dict[str, Any] = {
        "name": name,
        "envelope": wire,
        "recipient": recipient,
        "sender": sender,
        "expected": expected,
    }
    if stage is not None:
        case["stage"] = stage
    if payload is not None:
        case["payload"] = b64e(payload)
    return case


def _flip(text: str, index: int) -> str:
    data = bytearray(b64d(text))
    data[index] ^= 0x01
    return b64e(bytes(data))


def _resign(wire: dict[str, Any], key: Ed25519PrivateKey, **header: Any) -> None:
    """Apply ``header`` changes, then sign the result validly with ``key``."""
    wire["header"].update(header)
    env = Envelope.from_wire({**wire, "sig": b64e(bytes(64))})
    wire["sig"] = b64e(key.sign(env.signed_digest()))


def _swap_keys(wire: dict[str, Any]) -> None:
    a, b = sorted(wire["keys"])
    wire["keys"][a], wire["keys"][b] = wire["keys"][b], wire["keys"][a]


def _open_stage_mutations(parties: dict[str, Party], other: Sealed) -> dict[str, Mutation]:
    other_id = other.envelope.header.id
    shelter_fp = parties["shelter"].bundle.fingerprint
    reissued_fp = parties["police-reissued"].certificate.fingerprint
    return {
        "header-id-changed": lambda w: w["header"].update(id=other_id),
        "header-network-changed": lambda w: w["header"].update(network="other-net"),
        "header-kind-changed": lambda w: w["header"].update(kind="reply", ref="B" * 21 + "A"),
        "header-created-changed": lambda w: w["header"].update(created=CREATED + 1),
        "header-pseudonym-dropped": lambda w: w["header"]["pseudonyms"].pop(),
        "header-sender-cert-changed": lambda w: w["header"].update(sender_cert=reissued_fp),
        "header-recipient-key-changed": (
            lambda w: w["header"]["recipient_keys"].update({"ggd-west": shelter_fp})
        ),
        "body-nonce-byte-flipped": lambda w: w.update(body=_flip(w["body"], 0)),
        "body-ciphertext-byte-flipped": lambda w: w.update(body=_flip(w["body"], 30)),
        "body-tag-byte-flipped": lambda w: w.update(body=_flip(w["body"], -1)),
        "body-from-other-envelope": lambda w: w.update(body=other.envelope.to_wire()["body"]),
        "wrapped-key-enc-byte-flipped": (
            lambda w: w["keys"].update({"ggd-west": _flip(w["keys"]["ggd-west"], 5)})
        ),
        "wrapped-key-tag-byte-flipped": (
            lambda w: w["keys"].update({"ggd-west": _flip(w["keys"]["ggd-west"], -1)})
        ),
        "wrapped-keys-swapped": _swap_keys,
        "sig-byte-flipped": lambda w: w.update(sig=_flip(w["sig"], 10)),
        "signed-by-another-org": lambda w: _resign(w, parties["shelter"].key),
        # A valid signature, but the body is bound to the original header.
        "header-changed-and-resigned-by-sender": lambda w: _resign(
            w, parties["police"].key, created=CREATED + 1
        ),
    }


def _parse_stage_mutations() -> dict[str, Mutation]:
    return {
        "extra-envelope-field": lambda w: w.update(extra=1),
        "missing-sig": lambda w: w.pop("sig"),
        "extra-header-field": lambda w: w["header"].update(note="x"),
        "null-status-on-signal": lambda w: w["header"].update(status=None),
        "status-on-signal": lambda w: w["header"].update(status="accepted"),
        "recipients-unsorted": lambda w: w["header"]["recipients"].reverse(),
        "pseudonyms-duplicated": (
            lambda w: w["header"].update(pseudonyms=[w["header"]["pseudonyms"][0]] * 2)
        ),
        "sender-among-recipients": lambda w: w["header"].update(sender="ggd-west"),
        "version-2": lambda w: w["header"].update(v=2),
        "wrapped-key-missing": lambda w: w["keys"].pop("opvang-noord"),
        "wrapped-key-truncated": lambda w: w["keys"].update(
            {"ggd-west": b64e(b64d(w["keys"]["ggd-west"])[:-1])}
        ),
        "body-too-short": lambda w: w.update(body=b64e(bytes(39))),
        "sig-too-short": lambda w: w.update(sig=b64e(bytes(63))),
        "sig-padded-base64": lambda w: w.update(sig=w["sig"] + "=="),
    }


def make_cases(parties: dict[str, Party], sealed: list[Sealed]) -> list[dict[str, Any]]:
    cases = []
    for item in sealed:
        wire = item.envelope.to_wire()
        for party in item.recipients:
            cases.append(
                _case(
                    f"{item.name}/opens-for-{party.name}",
                    wire,
                    party.name,
                    item.sender.name,
                    "open",
                    payload=item.payload,
                )
            )
        cases.append(
            _case(
                f"{item.name}/not-a-recipient",
                wire,
                "outsider",
                item.sender.name,
                "reject",
                stage="open",
            )
        )
    signal, status, reply = sealed
    renamed = reply.envelope.to_wire()
    renamed["header"]["prev"] = {reply.recipients[0].org: signal.envelope.header.id}  # unsigned
    cases.append(
        _case(f"{reply.name}/prev-changed", renamed, "police", "ggd", "reject", stage="open")
    )
    base = signal.envelope.to_wire()
    for name, (sender, stage) in {
        "wrong-sender-cert-same-org": ("police-reissued", "open"),
        "wrong-sender-cert-other-org": ("shelter", "open"),
    }.items():
        cases.append(_case(f"signal/{name}", base, "ggd", sender, "reject", stage=stage))
    mutations = {
        **{k: (v, "open") for k, v in _open_stage_mutations(parties, status).items()},
        **{k: (v, "parse") for k, v in _parse_stage_mutations().items()},
    }
    for name, (mutate, stage) in mutations.items():
        wire = copy.deepcopy(base)
        mutate(wire)
        cases.append(_case(f"signal/{name}", wire, "ggd", "police", "reject", stage=stage))
    return cases


def generate() -> dict[str, Any]:
    root_key, root = make_root()
    parties = make_parties(root_key, root)
    sealed = make_envelopes(parties)
    return {
        "description": (
            "Schakel envelope vectors (docs/protocol.md). Rebuild each party from its "
            "seeds, load certificates against the root at `now`, and check every case."
        ),
        "network": NETWORK,
        "now": NOW,
        "rng": RNG_DESCRIPTION,
        "root": {
            "ed25519_seed": b64e(ed25519_seed(root_key)),
            "certificate": b64e(root.der),
        },
        "parties": {name: party.to_vector() for name, party in parties.items()},
        "envelopes": [item.to_vector() for item in sealed],
        "cases": make_cases(parties, sealed),
    }


__all__ = [
    "CREATED",
    "NETWORK",
    "NOW",
    "Party",
    "counter_rng",
    "generate",
    "make_parties",
    "make_root",
    "pseudonym_for",
    "seed_bytes",
]
