"""Checkpoints, cosignatures and the add-checkpoint bodies (protocol.checkpoint, .tlogwitness)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from witness_network import T0, WitnessNet, leaves, seeded_key

from protocol import merkle
from protocol.checkpoint import (
    Checkpoint,
    CosignatureVerifier,
    cosign,
    cosignature_message,
    cosignature_time,
    log_origin,
    log_verifier,
    open_checkpoint,
    parse_checkpoint,
    public_key_fingerprint,
    sign_checkpoint,
)
from protocol.errors import EncodingError, ValidationError, VerificationError
from protocol.note import TYPE_COSIGNATURE_V1, Note, NoteSignature, open_note, parse_note
from protocol.tlogwitness import (
    MAX_PROOF_LINES,
    AddCheckpoint,
    cosignature_body,
    parse_add_checkpoint,
    parse_cosignature_body,
    parse_size_body,
    size_body,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "vectors/third_party/signed-note/examples.json"
SOFA = "example.com/behind-the-sofa"


@pytest.fixture(scope="module")
def c2sp() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXAMPLES.read_text(encoding="utf-8"))["c2sp"]
    return data


@pytest.fixture(scope="module")
def net() -> WitnessNet:
    return WitnessNet()


# --- the C2SP examples ----------------------------------------------------------------------


def test_c2sp_checkpoint_example(c2sp: dict[str, Any]) -> None:
    note = parse_note(c2sp["checkpoint_example"]["note"].encode())
    checkpoint = parse_checkpoint(note.text)
    assert checkpoint.origin == SOFA
    assert checkpoint.size == 20852163
    assert checkpoint.root == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert checkpoint.extensions == ()
    assert checkpoint.text() == note.text


def test_c2sp_cosignature_example_structure(c2sp: dict[str, Any]) -> None:
    """The example's witness line: key id, then the timestamp of its signed message."""
    example = c2sp["cosignature_example"]
    note = parse_note(example["note"].encode())
    line = note.signatures[1]
    assert line.name == "witness.example.com/w1"
    assert len(line.signature) == 72
    assert example["signed_message"].startswith(f"cosignature/v1\ntime {cosignature_time(line)}\n")
    checkpoint = parse_checkpoint(note.text)
    assert cosignature_message(checkpoint, 1679315147).decode() == example["signed_message"]


def test_c2sp_add_checkpoint_request_example(c2sp: dict[str, Any]) -> None:
    body = c2sp["add_checkpoint_request"]["body"].encode()
    request = parse_add_checkpoint(body)
    assert request.old_size == 20852014
    assert len(request.proof) == 4
    assert request.proof[0] == base64.b64decode("PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=")
    note = parse_note(request.note)
    assert parse_checkpoint(note.text).size == 20852163
    assert len(note.signatures) == 2
    assert request.to_bytes() == body


def test_c2sp_add_checkpoint_response_example(c2sp: dict[str, Any]) -> None:
    body = c2sp["add_checkpoint_response"]["body"].encode()
    lines = parse_cosignature_body(body)
    assert [line.name for line in lines] == ["witness.example/w1"] * 2 + ["witness.example/w2"]
    assert all(len(line.signature) == 72 for line in lines)
    assert cosignature_body(lines) == body


# --- Schakel's log as a checkpoint ------------------------------------------------------------


def test_origin(net: WitnessNet) -> None:
    fp = public_key_fingerprint(net.root.public_key)
    assert log_origin(net.root) == f"schakel.invalid/witness-test/{fp}"
    raw = net.root.public_key.public_bytes_raw()
    assert base64.urlsafe_b64decode(fp + "=") == hashlib.sha256(raw).digest()


def test_hub_signs_a_checkpoint_with_its_log_key(net: WitnessNet) -> None:
    tree = leaves(5)
    signed = net.checkpoint_of(tree)
    origin = log_origin(net.root)
    assert signed.note.text == f"{origin}\n5\n{base64.b64encode(merkle.root_hash(tree)).decode()}\n"
    assert signed.log[0].name == origin
    verifier = log_verifier(origin, net.hub_cert)
    again = open_checkpoint(signed.to_bytes(), [verifier], origin=origin)
    assert again.checkpoint == signed.checkpoint
    # the signature is plain Ed25519 over the note text, as signed-note type 0x01 says
    net.hub_cert.public_key.verify(signed.log[0].signature, signed.note.text.encode())


def test_checkpoint_of_another_log_or_key_is_refused(net: WitnessNet) -> None:
    signed = net.checkpoint(3)
    origin = log_origin(net.root)
    other = WitnessNet(root_key=seeded_key("another root"))
    with pytest.raises(VerificationError, match="another log"):
        open_checkpoint(signed.to_bytes(), [log_verifier(log_origin(other.root), other.hub_cert)],
                        origin=log_origin(other.root))  # fmt: skip
    stranger = net.certify(seeded_key("stranger"), "hub", {"hub"})
    with pytest.raises(VerificationError, match="no known key"):
        open_checkpoint(signed.to_bytes(), [log_verifier(origin, stranger)], origin=origin)
    with pytest.raises(ValidationError, match="hub role"):
        log_verifier(origin, net.certify(seeded_key("member"), "police"))
    with pytest.raises(ValidationError, match="named after"):
        open_checkpoint(signed.to_bytes(), [log_verifier("x", net.hub_cert)], origin=origin)


def test_sign_checkpoint_refuses_a_foreign_key(net: WitnessNet) -> None:
    with pytest.raises(ValidationError):
        sign_checkpoint(
            seeded_key("x"), net.hub_cert, net.root, size=0, root_hash=merkle.EMPTY_ROOT
        )


@pytest.mark.parametrize(
    "text",
    [
        "o\n1\n",  # two lines
        "o\n01\n" + base64.b64encode(bytes(32)).decode() + "\n",  # leading zero
        "o\n-1\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "o\n1\n" + base64.b64encode(bytes(31)).decode() + "\n",  # short hash
        "o\n1\n" + base64.b64encode(bytes(32)).decode().rstrip("=") + "\n",  # unpadded
        "o\n1\n" + base64.b64encode(bytes(32)).decode() + "\n\n",  # empty extension line
        "\n1\n" + base64.b64encode(bytes(32)).decode() + "\n",  # empty origin
        "o\n9223372036854775808\n" + base64.b64encode(bytes(32)).decode() + "\n",  # > 2^63-1
        "o\n 1\n" + base64.b64encode(bytes(32)).decode() + "\n",
    ],
)
def test_malformed_checkpoints(text: str) -> None:
    with pytest.raises(EncodingError):
        parse_checkpoint(text)


def test_extension_lines_round_trip() -> None:
    checkpoint = Checkpoint("o", 7, bytes(32), ("ext one", "ext two"))
    assert parse_checkpoint(checkpoint.text()) == checkpoint
    assert checkpoint.text().endswith("ext one\next two\n")


# --- cosignatures -----------------------------------------------------------------------------


def test_cosignature_bytes_follow_the_specification() -> None:
    """Built by hand from tlog-cosignature's text, not through the module."""
    key = seeded_key("w")
    checkpoint = Checkpoint("example.com/log", 10, bytes(range(32)))
    line = cosign(key, "w.example/1", checkpoint, timestamp=1_700_000_000)
    raw = key.public_key().public_bytes_raw()
    expected_id = hashlib.sha256(b"w.example/1\n\x04" + raw).digest()[:4]
    assert line.key_id.to_bytes(4, "big") == expected_id
    message = b"cosignature/v1\ntime 1700000000\n" + checkpoint.text().encode()
    assert line.signature[:8] == (1_700_000_000).to_bytes(8, "big")
    key.public_key().verify(line.signature[8:], message)
    assert cosignature_time(line) == 1_700_000_000


def test_cosignature_verifies_in_a_note_and_forgeries_fail(net: WitnessNet) -> None:
    witness = net.witness("police")
    signed = net.checkpoint(4)
    line = witness.cosign(signed, at=T0)
    verifier = witness.cert.verifier()
    assert verifier.vkey().sig_type == TYPE_COSIGNATURE_V1
    opened = open_note(net.cosigned(signed, line), [verifier])
    assert opened.verified == (line,)
    forged = NoteSignature(line.name, line.key_id, line.signature[:-1] + b"\x00")
    with pytest.raises(VerificationError):
        open_note(net.cosigned(signed, forged), [verifier])
    shifted = NoteSignature(
        line.name, line.key_id, (T0 + 1).to_bytes(8, "big") + line.signature[8:]
    )
    with pytest.raises(VerificationError):
        open_note(net.cosigned(signed, shifted), [verifier])
    # the log key's verifier does not accept a cosignature, nor the reverse
    assert CosignatureVerifier.of(line.name, witness.key.public_key()).key_id != (
        log_verifier(line.name, net.hub_cert).key_id
    )


def test_cosignature_on_another_checkpoint_fails(net: WitnessNet) -> None:
    witness = net.witness("ggd")
    line = witness.cosign(net.checkpoint(4), at=T0)
    with pytest.raises(VerificationError):
        open_note(net.cosigned(net.checkpoint(5), line), [witness.cert.verifier()])


def test_timestamp_bounds() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    checkpoint = Checkpoint("o", 1, bytes(32))
    with pytest.raises(ValidationError):
        cosign(key, "w", checkpoint, timestamp=2**63)
    top = NoteSignature("w", 1, b"\xff" * 72)
    with pytest.raises(EncodingError):
        cosignature_time(top)
    with pytest.raises(VerificationError):
        CosignatureVerifier.of("w", key.public_key()).verify(b"x\n", b"\xff" * 72)


# --- add-checkpoint bodies --------------------------------------------------------------------


def test_request_round_trip(net: WitnessNet) -> None:
    tree = leaves(9)
    proof = tuple(merkle.consistency_proof(3, tree))
    request = AddCheckpoint(3, proof, net.checkpoint_of(tree).to_bytes())
    assert parse_add_checkpoint(request.to_bytes()) == request


@pytest.mark.parametrize(
    "head",
    [
        b"old 1\n",  # no empty line
        b"new 1\n\n",
        b"old 01\n\n",
        b"old -1\n\n",
        b"old 1 \n\n",
        b"old 1\nAAAA\n\n",  # not a 32-byte hash
        b"old 1\n" + base64.b64encode(bytes(32)).rstrip(b"=") + b"\n\n",
        b"old 1\n\xc3\xa9\n\n",
        b"old 1\n" + (base64.b64encode(bytes(32)) + b"\n") * (MAX_PROOF_LINES + 1) + b"\n",
    ],
)
def test_malformed_requests(head: bytes) -> None:
    with pytest.raises(EncodingError):
        parse_add_checkpoint(head + b"o\n1\n" + base64.b64encode(bytes(32)) + b"\n\n")


def test_size_body() -> None:
    assert size_body(12) == b"12\n"
    assert parse_size_body(b"12\n") == 12
    for bad in (b"12", b"012\n", b"x\n", b"1" * 30 + b"\n"):
        with pytest.raises(EncodingError):
            parse_size_body(bad)


def test_empty_cosignature_body_is_refused() -> None:
    with pytest.raises(EncodingError):
        parse_cosignature_body(b"")
    with pytest.raises(EncodingError):
        cosignature_body([])


def test_note_text_of_a_checkpoint_is_what_the_log_key_signs(net: WitnessNet) -> None:
    signed = net.checkpoint(2)
    assert isinstance(signed.note, Note)
    assert parse_note(signed.to_bytes()) == signed.note
