"""tests/vectors/witness.json: reproduced by its generator, and checked through the public API.

Another implementation checks itself against the same file; the add-checkpoint sequence
is replayed against a real witness in tests/witness/test_vectors.py.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from protocol.certificate import load_crl, load_root, verify_certificate
from protocol.checkpoint import (
    CosignatureVerifier,
    log_origin,
    log_verifier,
    open_checkpoint,
    parse_checkpoint,
)
from protocol.encoding import b64d
from protocol.errors import EncodingError, VerificationError
from protocol.evidence import parse_evidence, verify_evidence
from protocol.note import open_note, parse_note, parse_signature_lines, parse_vkey
from protocol.witness import (
    WitnessCertificate,
    WitnessRequest,
    verify_witness_certificate,
    verify_witness_request,
)
from protocol.witnesspolicy import WitnessPolicy, tally_cosignatures, verify_policy

VECTOR_DIR = Path(__file__).resolve().parents[1] / "vectors"
ERRORS = {"EncodingError": EncodingError, "VerificationError": VerificationError}


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_witness", VECTOR_DIR / "gen_witness.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_witness", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTOR_DIR / "witness.json").read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def root(vectors: dict[str, Any]) -> Any:
    return load_root(b64d(vectors["root"]["certificate"]), now=_generator().T0)


def test_the_generator_reproduces_the_file(vectors: dict[str, Any]) -> None:
    assert json.loads(json.dumps(_generator().generate())) == vectors


def test_log_and_checkpoints(vectors: dict[str, Any], root: Any) -> None:
    t0 = _generator().T0
    hub = verify_certificate(b64d(vectors["log"]["hub_certificate"]), root, now=t0, crl=None)
    origin = log_origin(root)
    assert origin == vectors["log"]["origin"]
    verifier = log_verifier(origin, hub)
    assert verifier.vkey().text() == vectors["log"]["vkey"]
    for case in vectors["checkpoints"].values():
        signed = open_checkpoint(case["note"].encode(), [verifier], origin=origin)
        assert signed.checkpoint.size == case["size"]
        assert signed.note.text.split("\n")[2] == case["root"]


def test_witnesses_policy_and_cosignatures(vectors: dict[str, Any], root: Any) -> None:
    t0 = _generator().T0
    for witness in vectors["witnesses"]:
        verify_witness_request(WitnessRequest.from_wire(witness["request"]))
        cert = WitnessCertificate.from_wire(witness["certificate"])
        verify_witness_certificate(cert, root, now=t0, crl=None)
        assert cert.verifier().vkey().text() == witness["vkey"]
    verify_policy(WitnessPolicy.from_wire(vectors["policy"]), root)
    note = parse_note(vectors["checkpoints"]["9"]["note"].encode())
    for case in vectors["cosignatures"]:
        assert case["message"] == f"cosignature/v1\ntime {case['timestamp']}\n{note.text}"
        vkey = parse_vkey(
            next(w["vkey"] for w in vectors["witnesses"] if w["name"] == case["name"])
        )
        verifier = CosignatureVerifier.of(vkey.name, vkey.ed25519_key())
        [line] = parse_signature_lines(case["line"])
        assert open_note(note.with_signatures([line]), [verifier]).verified == (line,)


def test_quorum_cases(vectors: dict[str, Any], root: Any) -> None:
    policy = verify_policy(WitnessPolicy.from_wire(vectors["policy"]), root)
    for case in vectors["quorum"]:
        note = parse_note(case["note"].encode())
        crl = None if case["crl"] is None else load_crl(b64d(case["crl"]), root, now=case["now"])
        tally = tally_cosignatures(
            parse_checkpoint(note.text), note.signatures, policy, root, crl=crl, now=case["now"]
        )
        assert list(tally.organisations) == case["organisations"], case["description"]
        assert tally.met == case["met"], case["description"]


def test_evidence_cases(vectors: dict[str, Any], root: Any) -> None:
    for case in vectors["evidence"]:
        if "proves" in case:
            proven = verify_evidence(parse_evidence(case["file"].encode()), root)
            assert proven.kind == case["proves"], case["description"]
            continue
        with pytest.raises(ERRORS[case["error"]]):
            verify_evidence(parse_evidence(case["file"].encode()), root)
