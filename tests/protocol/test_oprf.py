"""RFC 9497 (ristretto255-SHA512) and RFC 9380 (expand_message_xmd, SHA-512) in protocol.oprf,
against the RFCs' own test vectors, and the split-key combination Schakel builds on them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from protocol import oprf
from protocol import ristretto as group
from protocol.errors import EncodingError, ValidationError, VerificationError
from protocol.ristretto import Element, Scalar

THIRD_PARTY = Path(__file__).resolve().parents[1] / "vectors" / "third_party"
RFC9497 = json.loads((THIRD_PARTY / "rfc9497" / "ristretto255-SHA512.json").read_text())
XMD = json.loads((THIRD_PARTY / "rfc9380" / "expand_message_xmd_SHA512_38.json").read_text())


def _hexes(text: str) -> list[bytes]:
    return [bytes.fromhex(part) for part in text.split(",")]


def _suite(mode: int) -> dict[str, Any]:
    (suite,) = [entry for entry in RFC9497 if entry["mode"] == mode]
    assert suite["identifier"] == oprf.SUITE
    return suite


def _scalar(seed: bytes) -> Scalar:
    return oprf.random_scalar(hashlib.sha512(seed).digest())


# -- the published vectors -----------------------------------------------------------------


def test_the_vector_files_hold_both_modes_single_and_batched() -> None:
    modes = {entry["mode"]: [v["Batch"] for v in entry["vectors"]] for entry in RFC9497}
    assert modes == {0: [1, 1], 1: [1, 1, 2]}
    assert len(XMD["tests"]) == 10


@pytest.mark.parametrize("case", XMD["tests"], ids=lambda c: f"{c['msg'][:12]}-{c['len_in_bytes']}")
def test_expand_message_xmd_matches_rfc9380(case: dict[str, str]) -> None:
    out = oprf.expand_message_xmd(
        case["msg"].encode(), XMD["DST"].encode(), int(case["len_in_bytes"], 16)
    )
    assert out.hex() == case["uniform_bytes"]


@pytest.mark.parametrize("mode", [oprf.MODE_OPRF, oprf.MODE_VOPRF])
def test_derive_key_pair_matches_rfc9497(mode: int) -> None:
    suite = _suite(mode)
    key, public = oprf.derive_key_pair(
        bytes.fromhex(suite["seed"]), bytes.fromhex(suite["keyInfo"]), mode
    )
    assert key.hex() == suite["skSm"]
    assert public == oprf.public_key(key)
    if "pkSm" in suite:
        assert public.hex() == suite["pkSm"]
    assert oprf.context_string(mode).hex() in suite["groupDST"]


def _vectors(mode: int) -> list[dict[str, Any]]:
    return list(_suite(mode)["vectors"])


@pytest.mark.parametrize("vector", _vectors(oprf.MODE_OPRF), ids=lambda v: v["Input"][:8])
def test_oprf_mode_matches_rfc9497(vector: dict[str, Any]) -> None:
    key = group.decode_scalar(bytes.fromhex(_suite(oprf.MODE_OPRF)["skSm"]))
    (data,) = _hexes(vector["Input"])
    blind = group.decode_scalar(bytes.fromhex(vector["Blind"]))
    blinded = oprf.blind(data, blind, mode=oprf.MODE_OPRF)
    assert blinded.hex() == vector["BlindedElement"]
    evaluated = oprf.blind_evaluate_oprf(key, blinded)
    assert evaluated.hex() == vector["EvaluationElement"]
    assert oprf.finalize(data, blind, evaluated).hex() == vector["Output"]
    assert oprf.evaluate(key, data, mode=oprf.MODE_OPRF).hex() == vector["Output"]


@pytest.mark.parametrize(
    "vector", _vectors(oprf.MODE_VOPRF), ids=lambda v: f"batch{v['Batch']}-{v['Input'][:8]}"
)
def test_voprf_mode_matches_rfc9497(vector: dict[str, Any]) -> None:
    suite = _suite(oprf.MODE_VOPRF)
    key = group.decode_scalar(bytes.fromhex(suite["skSm"]))
    public = group.decode_element(bytes.fromhex(suite["pkSm"]))
    inputs = _hexes(vector["Input"])
    blinds = [group.decode_scalar(b) for b in _hexes(vector["Blind"])]
    blinded = [oprf.blind(data, b) for data, b in zip(inputs, blinds, strict=True)]
    assert [e.hex() for e in blinded] == vector["BlindedElement"].split(",")
    r = group.decode_scalar(bytes.fromhex(vector["Proof"]["r"]))
    evaluated, proof = oprf.blind_evaluate(key, blinded, r=r)
    assert [e.hex() for e in evaluated] == vector["EvaluationElement"].split(",")
    assert proof.to_bytes().hex() == vector["Proof"]["proof"]
    published = oprf.Proof.from_bytes(bytes.fromhex(vector["Proof"]["proof"]))
    oprf.verify_proof(oprf.GENERATOR, public, blinded, evaluated, published, mode=oprf.MODE_VOPRF)
    outputs = [oprf.finalize(d, b, e) for d, b, e in zip(inputs, blinds, evaluated, strict=True)]
    assert [o.hex() for o in outputs] == vector["Output"].split(",")


# -- refusals --------------------------------------------------------------------------------

P = 2**255 - 19
NON_CANONICAL = {
    "identity": bytes(32),
    "field prime p": P.to_bytes(32, "little"),
    "p + 1": (P + 1).to_bytes(32, "little"),
    "high bit set": bytes(31) + b"\x80",
    # libsodium 1.0.18 (bundled by rbcl) takes this as a second spelling of pkSm
    "a valid element with its top bit set": bytes.fromhex(_suite(1)["pkSm"])[:31]
    + bytes([bytes.fromhex(_suite(1)["pkSm"])[31] | 0x80]),
    "negative (odd) s": (1).to_bytes(32, "little"),
    "all ones": b"\xff" * 32,
    "short": bytes.fromhex(_suite(1)["pkSm"])[:31],
    "long": bytes.fromhex(_suite(1)["pkSm"]) + b"\x00",
}


@pytest.mark.parametrize("name", sorted(NON_CANONICAL))
def test_decode_element_refuses_identity_and_non_canonical_encodings(name: str) -> None:
    with pytest.raises(EncodingError):
        group.decode_element(NON_CANONICAL[name])


def test_decode_element_refuses_what_is_not_bytes() -> None:
    with pytest.raises(EncodingError):
        group.decode_element(bytes.fromhex(_suite(1)["pkSm"]).hex())


@pytest.mark.parametrize(
    "value", [group.ORDER, group.ORDER + 1, 2**256 - 1, 2**255], ids=["L", "L+1", "max", "2^255"]
)
def test_decode_scalar_refuses_values_at_or_above_the_order(value: int) -> None:
    with pytest.raises(EncodingError):
        group.decode_scalar(value.to_bytes(32, "little"))
    assert group.decode_scalar((group.ORDER - 1).to_bytes(32, "little"))


def test_random_scalar_refuses_zero_and_wrong_lengths() -> None:
    with pytest.raises(ValueError, match="zero"):
        oprf.random_scalar(group.ORDER.to_bytes(64, "little"))
    with pytest.raises(ValueError):
        oprf.random_scalar(bytes(32))


def test_inputs_longer_than_the_rfc_allows_are_refused() -> None:
    key = _scalar(b"k")
    with pytest.raises(ValidationError):
        oprf.blind(b"x" * (oprf.MAX_INPUT_BYTES + 1), _scalar(b"b"))
    with pytest.raises(ValidationError):
        oprf.evaluate(key, b"x" * (oprf.MAX_INPUT_BYTES + 1))
    assert len(oprf.evaluate(key, b"x" * oprf.MAX_INPUT_BYTES)) == oprf.HASH_BYTES


def test_expand_message_xmd_refuses_lengths_and_dsts_out_of_range() -> None:
    for length in (0, 255 * 64 + 1):
        with pytest.raises(ValueError):
            oprf.expand_message_xmd(b"", b"dst", length)
    for dst in (b"", b"d" * 256):
        with pytest.raises(ValueError):
            oprf.expand_message_xmd(b"", dst, 32)


@pytest.fixture(scope="module")
def batch() -> tuple[Scalar, Element, list[Element], list[Element], oprf.Proof]:
    key = _scalar(b"service key")
    blinded = [oprf.blind(bytes([i]), _scalar(bytes([i]))) for i in range(3)]
    evaluated, proof = oprf.blind_evaluate(key, blinded, r=_scalar(b"r"))
    return key, oprf.public_key(key), blinded, evaluated, proof


def test_a_proof_verifies_for_its_own_key_and_batch(batch: Any) -> None:
    _key, public, blinded, evaluated, proof = batch
    oprf.verify_proof(oprf.GENERATOR, public, blinded, evaluated, proof, mode=oprf.MODE_VOPRF)


def test_a_proof_for_another_key_is_refused(batch: Any) -> None:
    _key, _public, blinded, _evaluated, _proof = batch
    other = _scalar(b"another service")
    evaluated, proof = oprf.blind_evaluate(other, blinded, r=_scalar(b"r2"))
    with pytest.raises(VerificationError):
        oprf.verify_proof(oprf.GENERATOR, batch[1], blinded, evaluated, proof, mode=1)


def test_a_wrong_evaluation_is_refused_even_with_an_honest_looking_proof(batch: Any) -> None:
    _key, public, blinded, evaluated, proof = batch
    wrong = [evaluated[0], group.times(_scalar(b"x"), blinded[1]), evaluated[2]]
    with pytest.raises(VerificationError):
        oprf.verify_proof(oprf.GENERATOR, public, blinded, wrong, proof, mode=1)
    swapped = [evaluated[1], evaluated[0], evaluated[2]]
    with pytest.raises(VerificationError):
        oprf.verify_proof(oprf.GENERATOR, public, blinded, swapped, proof, mode=1)
    fewer = evaluated[:2]
    with pytest.raises(VerificationError):
        oprf.verify_proof(oprf.GENERATOR, public, blinded[:2], fewer, proof, mode=1)


@pytest.mark.parametrize("byte", [0, 31, 32, 63])
def test_a_proof_with_one_bit_flipped_is_refused(batch: Any, byte: int) -> None:
    _key, public, blinded, evaluated, proof = batch
    raw = bytearray(proof.to_bytes())
    raw[byte] ^= 0x01
    try:
        tampered = oprf.Proof.from_bytes(bytes(raw))
    except EncodingError:
        return  # the flip made a scalar non-canonical: refused while parsing
    with pytest.raises(VerificationError):
        oprf.verify_proof(oprf.GENERATOR, public, blinded, evaluated, tampered, mode=1)


def test_a_proof_of_the_oprf_mode_context_does_not_verify_in_voprf_mode(batch: Any) -> None:
    key, public, blinded, evaluated, _proof = batch
    other = oprf.generate_proof(
        key, oprf.GENERATOR, public, blinded, evaluated, r=_scalar(b"r"), mode=oprf.MODE_OPRF
    )
    with pytest.raises(VerificationError):
        oprf.verify_proof(oprf.GENERATOR, public, blinded, evaluated, other, mode=1)


# -- the split key ------------------------------------------------------------------------


def test_the_two_shares_give_the_output_of_the_summed_key() -> None:
    k1, k2 = _scalar(b"share one"), _scalar(b"share two")
    k = group.scalar_add(k1, k2)
    inputs = [b"bsn\x00111222333", b"tel\x00+31612345678", b""]
    blinds = [_scalar(b"blind" + data) for data in inputs]
    blinded = [oprf.blind(data, b) for data, b in zip(inputs, blinds, strict=True)]
    first, proof1 = oprf.blind_evaluate(k1, blinded, r=_scalar(b"r1"))
    second, proof2 = oprf.blind_evaluate(k2, blinded, r=_scalar(b"r2"))
    oprf.verify_proof(oprf.GENERATOR, oprf.public_key(k1), blinded, first, proof1, mode=1)
    oprf.verify_proof(oprf.GENERATOR, oprf.public_key(k2), blinded, second, proof2, mode=1)
    outputs = oprf.finalize_shares(inputs, blinds, first, second)
    assert outputs == [oprf.evaluate(k, data) for data in inputs]
    assert oprf.combine_public_keys(oprf.public_key(k1), oprf.public_key(k2)) == oprf.public_key(k)
    # Neither share alone gives it: the output of one share is another function.
    assert all(oprf.evaluate(k1, d) != o for d, o in zip(inputs, outputs, strict=True))
    assert all(oprf.evaluate(k2, d) != o for d, o in zip(inputs, outputs, strict=True))


def test_opposite_shares_are_refused() -> None:
    k1 = _scalar(b"share one")
    k2 = group.scalar_sub(Scalar(bytes(32)), k1)
    with pytest.raises(VerificationError):
        oprf.combine_public_keys(oprf.public_key(k1), oprf.public_key(k2))
    blinded = oprf.blind(b"x", _scalar(b"b"))
    first, second = oprf.blind_evaluate_oprf(k1, blinded), oprf.blind_evaluate_oprf(k2, blinded)
    with pytest.raises(VerificationError):
        oprf.finalize_shares([b"x"], [_scalar(b"b")], [first], [second])


# -- the project's own split-key vectors (tests/vectors/oprf_split.json) -------------------

SPLIT = json.loads((THIRD_PARTY.parent / "oprf_split.json").read_text())


def test_the_split_key_vectors_replay() -> None:
    assert SPLIT["suite"] == oprf.SUITE
    pks = []
    for name in ("share1", "share2"):
        share = SPLIT[name]
        key, public = oprf.derive_key_pair(
            bytes.fromhex(share["seed"]), bytes.fromhex(share["info"]), oprf.MODE_VOPRF
        )
        assert (key.hex(), public.hex()) == (share["sk"], share["pk"])
        pks.append(public)
    assert oprf.combine_public_keys(*pks).hex() == SPLIT["combined_pk"]
    batch = SPLIT["batch"]
    inputs = [bytes.fromhex(case["input"]) for case in batch]
    blinds = [group.decode_scalar(bytes.fromhex(case["blind"])) for case in batch]
    blinded = [oprf.blind(d, b) for d, b in zip(inputs, blinds, strict=True)]
    assert [e.hex() for e in blinded] == [case["blinded"] for case in batch]
    answers = []
    for index, public in ((1, pks[0]), (2, pks[1])):
        elements = [group.decode_element(bytes.fromhex(c[f"evaluated{index}"])) for c in batch]
        proof = oprf.Proof.from_bytes(bytes.fromhex(SPLIT[f"proof{index}"]["proof"]))
        oprf.verify_proof(oprf.GENERATOR, public, blinded, elements, proof, mode=1)
        answers.append(elements)
    outputs = oprf.finalize_shares(inputs, blinds, *answers)
    assert [o.hex() for o in outputs] == [case["output"] for case in batch]
    assert [case["output_whole_key"] for case in batch] == [case["output"] for case in batch]
    from protocol.pseudonym import oprf_pseudonym

    assert [
        oprf_pseudonym(c["kind"], SPLIT["version"], o) for c, o in zip(batch, outputs, strict=True)
    ] == [case["pseudonym"] for case in batch]


@pytest.mark.parametrize("case", SPLIT["invalid"], ids=lambda c: c["description"][:40])
def test_the_split_key_invalid_vectors_are_refused(case: dict[str, Any]) -> None:
    public = group.decode_element(bytes.fromhex(SPLIT[f"share{case['share']}"]["pk"]))
    blinded = [group.decode_element(bytes.fromhex(c["blinded"])) for c in SPLIT["batch"]]
    elements = [group.decode_element(bytes.fromhex(e)) for e in case["elements"]]
    proof = oprf.Proof.from_bytes(bytes.fromhex(case["proof"]))
    with pytest.raises(VerificationError):
        oprf.verify_proof(oprf.GENERATOR, public, blinded, elements, proof, mode=1)


def test_the_committed_split_key_vectors_are_what_the_generator_makes() -> None:
    import sys

    sys.path.insert(0, str(THIRD_PARTY.parent))
    try:
        from gen_oprf_split import generate
    finally:
        sys.path.remove(str(THIRD_PARTY.parent))
    assert json.loads(json.dumps(generate())) == SPLIT
