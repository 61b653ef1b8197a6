"""Split-key OPRF vectors: two key shares, one batch, both services' answers, the pseudonyms.

``generate()`` returns the content of ``tests/vectors/oprf_split.json``. The shares are
derived with RFC 9497 ``DeriveKeyPair`` from fixed seeds, blinds and proof nonces are
fixed, so another implementation can replay every byte: blind each input, check each
service's batched proof against its public key, add the two evaluations, unblind,
finalize, and take the first 32 bytes as the pseudonym. ``output_whole_key`` is RFC 9497
``Evaluate(k1 + k2, input)``, computed without the services: it must equal ``output``.

Shape::

    {"suite", "version", "share1": {"seed", "info", "sk", "pk"}, "share2": {...},
     "combined_pk", "batch": [{"kind", "normalised", "input", "blind", "blinded",
     "evaluated1", "evaluated2", "output", "output_whole_key", "pseudonym"}],
     "proof1": {"r", "proof"}, "proof2": {"r", "proof"},
     "invalid": [{"description", "share", "elements": [...], "proof"}]}

All bytes are lower-case hex, except the pseudonyms.
"""

from __future__ import annotations

import hashlib
from typing import Any

from protocol import oprf
from protocol import ristretto as group
from protocol.pseudonym import identifier_input, oprf_pseudonym

VERSION = 5
VALUES = [
    ("bsn", "111222333"),
    ("ndob", "vries|anna|1990-01-31"),
    ("doc", "NLD:NW12345A"),
    ("tel", "+31612345678"),
    ("ndob", "byl|maria|1985-07-04"),
]


def _scalar(tag: str) -> group.Scalar:
    return oprf.random_scalar(hashlib.sha512(b"schakel oprf vectors " + tag.encode()).digest())


def _share(index: int) -> tuple[dict[str, str], group.Scalar, group.Element]:
    seed = hashlib.sha256(b"schakel oprf share %d" % index).digest()
    info = b"schakel share %d" % index
    key, public = oprf.derive_key_pair(seed, info, oprf.MODE_VOPRF)
    fields = {"seed": seed.hex(), "info": info.hex(), "sk": key.hex(), "pk": public.hex()}
    return fields, key, public


def generate() -> dict[str, Any]:
    first, k1, pk1 = _share(1)
    second, k2, pk2 = _share(2)
    inputs = [identifier_input(kind, value) for kind, value in VALUES]
    blinds = [_scalar(f"blind {i}") for i in range(len(VALUES))]
    blinded = [oprf.blind(data, b) for data, b in zip(inputs, blinds, strict=True)]
    r1, r2 = _scalar("r1"), _scalar("r2")
    evaluated1, proof1 = oprf.blind_evaluate(k1, blinded, r=r1)
    evaluated2, proof2 = oprf.blind_evaluate(k2, blinded, r=r2)
    outputs = oprf.finalize_shares(inputs, blinds, evaluated1, evaluated2)
    whole = group.scalar_add(k1, k2)
    batch = [
        {
            "kind": kind,
            "normalised": value,
            "input": data.hex(),
            "blind": blind.hex(),
            "blinded": element.hex(),
            "evaluated1": one.hex(),
            "evaluated2": two.hex(),
            "output": output.hex(),
            "output_whole_key": oprf.evaluate(whole, data).hex(),
            "pseudonym": oprf_pseudonym(kind, VERSION, output),
        }
        for (kind, value), data, blind, element, one, two, output in zip(
            VALUES, inputs, blinds, blinded, evaluated1, evaluated2, outputs, strict=True
        )
    ]
    wrong, wrong_proof = oprf.blind_evaluate(_scalar("a stranger"), blinded, r=r2)
    return {
        "suite": oprf.SUITE,
        "version": VERSION,
        "share1": first,
        "share2": second,
        "combined_pk": oprf.combine_public_keys(pk1, pk2).hex(),
        "batch": batch,
        "proof1": {"r": r1.hex(), "proof": proof1.to_bytes().hex()},
        "proof2": {"r": r2.hex(), "proof": proof2.to_bytes().hex()},
        "invalid": [
            {
                "description": "share 1's evaluations and proof, checked against share 2's key",
                "share": 2,
                "elements": [e.hex() for e in evaluated1],
                "proof": proof1.to_bytes().hex(),
            },
            {
                "description": "evaluations under a key no statement certifies, with its proof",
                "share": 2,
                "elements": [e.hex() for e in wrong],
                "proof": wrong_proof.to_bytes().hex(),
            },
            {
                "description": "share 2's proof with its first two evaluations swapped",
                "share": 2,
                "elements": [e.hex() for e in [evaluated2[1], evaluated2[0], *evaluated2[2:]]],
                "proof": proof2.to_bytes().hex(),
            },
        ],
    }
