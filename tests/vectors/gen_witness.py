"""Witness vectors: checkpoints, cosignatures, witness certificates, policy, quorum, evidence.

``generate()`` builds everything from fixed seeds (``seed(label)`` = SHA-256 of the label)
and fixed times; Ed25519 and the X.509 and CRL encoders are deterministic, so every run
gives the same file. The log is RFC 9162 over the leaves ``leaf_hash("entry <i>")``; a
forked history replaces the leaves from an index on by ``leaf_hash("entry <i>-forked")``.

Sections (all bytes as the formats themselves write them: notes and lines as text, DER
and wire objects' bytes as unpadded base64url, hashes in checkpoints as standard base64):

* ``root``, ``log``: the network root and the hub's certified log key, the log's origin
  and vkey; ``checkpoints``: signed checkpoint notes of sizes 0, 1, 5, 6, 9 and a fork;
* ``witnesses``: seeds, requests and certificates; ``policy``: a signed policy;
* ``cosignatures``: the signed message and the line of each witness on one checkpoint;
* ``quorum``: sets of lines, a time, a CRL, and which organisations count;
* ``add_checkpoint``: a sequence of requests to a fresh witness and the status of each;
* ``evidence``: files, and what each proves (or the error class it must raise).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import merkle
from protocol.certificate import (
    ROLE_HUB,
    create_crl,
    create_enrolment_request,
    create_root,
    issue_certificate,
)
from protocol.checkpoint import (
    cosign,
    cosignature_message,
    log_origin,
    log_verifier,
    sign_checkpoint,
)
from protocol.encoding import b64e
from protocol.evidence import Head, make_evidence
from protocol.note import Note
from protocol.tlogwitness import AddCheckpoint
from protocol.types import NetworkId, OrgId
from protocol.witness import create_witness_request, issue_witness_certificate
from protocol.witnesspolicy import create_policy

NETWORK = NetworkId("schakel-test")
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
DAY = 86400
C2SP_COMMIT = "5ba5ee830903e91240fc6f9f3a7a9293d49e69c9"
WITNESS_ORGS = (("police", None), ("police", "second"), ("ggd", None), ("coordinator", "always-on"))


def seed(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def key(label: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(seed(label))


def leaves(count: int, forked_from: int | None = None) -> list[bytes]:
    def entry(i: int) -> bytes:
        forked = forked_from is not None and i >= forked_from
        return f"entry {i}{'-forked' if forked else ''}".encode()

    return [merkle.leaf_hash(entry(i)) for i in range(count)]


def generate() -> dict[str, Any]:
    root_key = key("vectors/root")
    root = create_root(root_key, NETWORK, now=T0 - 2 * DAY, days=3650, serial=4242)
    hub_key = key("vectors/hub")
    hub_request = create_enrolment_request(hub_key, NETWORK, OrgId("hub"))
    hub_cert = issue_certificate(
        root_key, root, hub_request, {ROLE_HUB}, now=T0 - 2 * DAY, days=365, serial=1
    )
    origin = log_origin(root)

    def checkpoint(tree: list[bytes]) -> Any:
        return sign_checkpoint(
            hub_key, hub_cert, root, size=len(tree), root_hash=merkle.root_hash(tree)
        )

    trees = {
        "0": [],
        "1": leaves(1),
        "5": leaves(5),
        "6": leaves(6),
        "9": leaves(9),
        "6-fork": leaves(6, 2),
        "9-fork": leaves(9, 3),
    }
    signed = {name: checkpoint(tree) for name, tree in trees.items()}

    witnesses = []
    for serial, (org, label) in enumerate(WITNESS_ORGS, start=2):
        wkey = key(f"vectors/witness/{org}/{label}")
        request = create_witness_request(wkey, NETWORK, OrgId(org))
        if label is not None:
            request = create_witness_request(wkey, NETWORK, OrgId(org), f"{request.name}/{label}")
        cert = issue_witness_certificate(
            root_key, root, request, serial=serial, now=T0 - DAY, days=365
        )
        witnesses.append((wkey, request, cert))
    policy = create_policy(
        root_key, root, [c for _, _, c in witnesses], quorum=2, number=1, issued=T0
    )

    target = signed["9"]
    lines = {
        cert.name: cosign(wkey, cert.name, target.checkpoint, timestamp=T0 + 60)
        for wkey, _, cert in witnesses
    }
    names = [cert.name for _, _, cert in witnesses]
    forged = lines[names[2]]
    forged_line = (
        forged.line()[:-5] + ("A" if forged.line()[-5] != "A" else "B") + forged.line()[-4:]
    )
    crl = create_crl(root_key, root, {witnesses[2][2].serial: T0}, number=1, now=T0, days=30)

    def quorum_case(
        description: str,
        chosen: list[str],
        orgs: list[str],
        *,
        now: int = T0 + 120,
        revoked: bool = False,
        extra: Sequence[str] = (),
    ) -> dict[str, Any]:
        note = Note(target.note.text, (target.log[0], *(lines[n] for n in chosen)))
        text = note.to_bytes().decode()
        for line in extra:
            text += line
        return {
            "description": description,
            "note": text,
            "now": now,
            "crl": b64e(crl.der) if revoked else None,
            "organisations": orgs,
            "met": len(orgs) >= policy.quorum,
        }

    evidence_cases = _evidence(root, hub_cert, signed, trees)
    return {
        "description": "Schakel witness vectors; see docs/protocol.md, 'Witnesses'",
        "specifications": {
            "c2sp_commit": C2SP_COMMIT,
            "signed-note": "v1.0.0",
            "tlog-checkpoint": "v1.0.0",
            "tlog-cosignature": "v1.0.1",
            "tlog-witness": "after v1.0.0 (422 for another root at the held size)",
        },
        "network": NETWORK,
        "seeds": "SHA-256 of the label, used as the Ed25519 private key (RFC 8032 seed)",
        "root": {
            "label": "vectors/root",
            "certificate": b64e(root.der),
            "fingerprint": root.fingerprint,
        },
        "log": {
            "origin": origin,
            "hub_label": "vectors/hub",
            "hub_certificate": b64e(hub_cert.der),
            "vkey": log_verifier(origin, hub_cert).vkey().text(),
        },
        "checkpoints": {
            name: {
                "size": len(trees[name]),
                "root": base64.b64encode(merkle.root_hash(trees[name])).decode(),
                "note": s.to_bytes().decode(),
            }
            for name, s in signed.items()
        },
        "witnesses": [
            {
                "label": f"vectors/witness/{org}/{label}",
                "org": org,
                "name": cert.name,
                "vkey": cert.verifier().vkey().text(),
                "request": request.to_wire(),
                "certificate": cert.to_wire(),
            }
            for (org, label), (_, request, cert) in zip(WITNESS_ORGS, witnesses, strict=True)
        ],
        "policy": policy.to_wire(),
        "cosignatures": [
            {
                "name": name,
                "checkpoint": "9",
                "timestamp": T0 + 60,
                "message": cosignature_message(target.checkpoint, T0 + 60).decode(),
                "line": lines[name].line(),
            }
            for name in names
        ],
        "quorum": [
            quorum_case(
                "police and ggd: two organisations", names[:1] + names[2:3], ["ggd", "police"]
            ),
            quorum_case("police twice: one organisation", names[:2], ["police"]),
            quorum_case(
                "all four witnesses, three organisations", names, ["coordinator", "ggd", "police"]
            ),
            quorum_case("ggd revoked", [names[0], names[2]], ["police"], revoked=True),
            quorum_case(
                "a forged ggd line does not count", [names[0]], ["police"], extra=[forged_line]
            ),
            quorum_case(
                "from the future (more than 300 s)", [names[0], names[2]], [], now=T0 - 241
            ),
            quorum_case("certificates expired", [names[0], names[2]], [], now=T0 + 365 * DAY),
        ],
        "add_checkpoint": _sequence(signed, trees),
        "evidence": evidence_cases,
    }


def _body(signed: Any, old: int, proof: list[bytes]) -> str:
    return AddCheckpoint(old, tuple(proof), signed.to_bytes()).to_bytes().decode()


def _sequence(signed: dict[str, Any], trees: dict[str, list[bytes]]) -> list[dict[str, Any]]:
    """Requests to a fresh witness, in order, with the status and the size held after each."""
    p59 = merkle.consistency_proof(5, trees["9"])
    steps = [
        ("old 3 to a witness that holds nothing: 409, holds 0", signed["5"], 3, [], 409, None),
        ("the first checkpoint, from 0", signed["5"], 0, [], 200, 5),
        ("old size above the checkpoint's", signed["1"], 5, [], 400, 5),
        ("a stale old size", signed["9"], 0, [], 409, 5),
        ("a proof that does not verify", signed["9"], 5, p59[:-1], 422, 5),
        ("the right proof 5 -> 9", signed["9"], 5, p59, 200, 9),
        ("the same head again (fresh timestamp)", signed["9"], 9, [], 200, 9),
        ("a fork at the held size: 422, evidence", signed["9-fork"], 9, [], 422, 9),
    ]
    return [
        {"description": d, "body": _body(s, old, proof), "status": status, "held_after": held}
        for d, s, old, proof, status, held in steps
    ]


def _evidence(
    root: Any, hub_cert: Any, signed: dict[str, Any], trees: dict[str, list[bytes]]
) -> list[dict[str, Any]]:
    def file(first: str, second: str, proof: Sequence[bytes] = ()) -> str:
        made = make_evidence(
            Head(checkpoint=signed[first].to_bytes()),
            Head(checkpoint=signed[second].to_bytes()),
            [hub_cert],
            root,
            proof=proof,
            observed=T0 + 3600,
            observer="vectors",
        )
        return made.to_bytes().decode()

    p59 = merkle.consistency_proof(5, trees["9-fork"])
    return [
        {"description": "fork: size 6, two roots", "file": file("6", "6-fork"), "proves": "fork"},
        {
            "description": "inconsistent: 5, then 9 of another history, with its proof",
            "file": file("5", "9-fork", p59),
            "proves": "inconsistent",
        },
        {
            "description": "the same head twice",
            "file": file("6", "6"),
            "error": "VerificationError",
        },
        {
            "description": "consistent heads",
            "file": file("5", "9", merkle.consistency_proof(5, trees["9"])),
            "error": "VerificationError",
        },
        {
            "description": "a proof of garbage",
            "file": file("5", "9-fork", [bytes(32)] * len(p59)),
            "error": "VerificationError",
        },
        {"description": "not JSON", "file": "evidence\n", "error": "EncodingError"},
    ]
