"""Signed notes (protocol.note) against C2SP's and Go's published examples, and bad input."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.errors import EncodingError, ValidationError, VerificationError
from protocol.note import (
    MAX_NOTE_BYTES,
    MAX_SIGNATURES,
    TYPE_ED25519,
    Ed25519Verifier,
    Note,
    NoteSignature,
    Vkey,
    check_key_name,
    key_id,
    open_note,
    parse_note,
    parse_signature_lines,
    parse_vkey,
    sign_note,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "vectors/third_party/signed-note/examples.json"


@pytest.fixture(scope="module")
def examples() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXAMPLES.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def go(examples: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = examples["go_sumdb_note"]
    return result


def verifier_of(vkey_text: str) -> Ed25519Verifier:
    vkey = parse_vkey(vkey_text)
    assert vkey.sig_type == TYPE_ED25519
    return Ed25519Verifier.of(vkey.name, vkey.ed25519_key())


def peter_key(go: dict[str, Any]) -> Ed25519PrivateKey:
    """The Ed25519 seed inside Go's skey ``PRIVATE+KEY+<name>+<id>+base64(0x01 || seed)``."""
    raw = base64.b64decode(go["peter_skey"].split("+", 4)[-1])
    assert raw[0] == TYPE_ED25519
    return Ed25519PrivateKey.from_private_bytes(raw[1:])


# --- published vectors ----------------------------------------------------------------------


def test_c2sp_example_vkey_verifies_its_note(examples: dict[str, Any]) -> None:
    example = examples["c2sp"]["signed_note_example"]
    verifier = verifier_of(example["vkey"])
    opened = open_note(example["note"].encode(), [verifier])
    assert opened.note.text == "This is an example message.\n"
    assert [s.name for s in opened.verified] == ["example.com/foo"]
    assert verifier.vkey().text() == example["vkey"]


def test_go_key_signs_exactly_the_published_signature(go: dict[str, Any]) -> None:
    key = peter_key(go)
    signature = sign_note(go["text"], "PeterNeumann", key)
    assert signature.line() == go["peter_sig"]  # Ed25519 is deterministic
    public = Ed25519Verifier.of("PeterNeumann", key.public_key()).vkey().public_key
    assert Vkey.of("PeterNeumann", TYPE_ED25519, public).text() == go["peter_vkey"]
    assert verifier_of(go["peter_vkey"]).key_id == 0xC74F20A3 == signature.key_id
    note = Note(go["text"], (signature,))
    assert note.to_bytes().decode() == go["text"] + "\n" + go["peter_sig"]


def test_go_open_one_known_one_unknown(go: dict[str, Any]) -> None:
    data = (go["text"] + "\n" + go["peter_sig"] + go["enoch_sig"]).encode()
    peter, enoch = verifier_of(go["peter_vkey"]), verifier_of(go["enoch_vkey"])
    assert [s.name for s in open_note(data, [peter]).verified] == ["PeterNeumann"]
    both = open_note(data, [peter, enoch]).verified
    assert [s.name for s in both] == ["PeterNeumann", "EnochRoot"]
    with pytest.raises(VerificationError, match="no known key"):
        open_note(data, [])


def test_go_repeated_signatures_are_checked_once(go: dict[str, Any]) -> None:
    data = (go["text"] + "\n" + go["peter_sig"] * 3).encode()
    opened = open_note(data, [verifier_of(go["peter_vkey"])])
    assert len(opened.verified) == 1 and len(opened.note.signatures) == 3


def test_go_a_failing_signature_of_a_known_key_refuses_the_note(go: dict[str, Any]) -> None:
    sig = go["peter_sig"]
    bad = sig[:60] + "ABCD" + sig[64:]
    data = (go["text"] + "\n" + go["enoch_sig"] + bad).encode()
    with pytest.raises(VerificationError):
        open_note(data, [verifier_of(go["peter_vkey"]), verifier_of(go["enoch_vkey"])])
    # the same line from a key nobody knows is ignored
    assert open_note(data, [verifier_of(go["enoch_vkey"])]).verified


@pytest.mark.parametrize("index", range(6))
def test_go_malformed_notes(go: dict[str, Any], index: int) -> None:
    with pytest.raises(EncodingError):
        parse_note(go["bad_messages"][index].encode())


def test_go_malformed_note_not_utf8(go: dict[str, Any]) -> None:
    with pytest.raises(EncodingError, match="UTF-8"):
        parse_note(b"\xff" + (go["text"] + "\n" + go["peter_sig"]).encode())


def test_go_vkey_manglings_are_refused(go: dict[str, Any]) -> None:
    vkey = go["peter_vkey"]
    assert parse_vkey(vkey).text() == vkey
    for i in range(len(vkey)):
        changed = vkey[:i] + chr(ord(vkey[i]) + 1) + vkey[i + 1 :]
        with pytest.raises(EncodingError):
            parse_vkey(changed)
    for cut in (1, 10, len(vkey) - 1):
        with pytest.raises(EncodingError):
            parse_vkey(vkey[:cut])


def test_c2sp_cosigned_checkpoint_parses(examples: dict[str, Any]) -> None:
    note = parse_note(examples["c2sp"]["cosignature_example"]["note"].encode())
    assert [s.name for s in note.signatures] == [
        "example.com/behind-the-sofa",
        "witness.example.com/w1",
    ]
    assert note.to_bytes().decode() == examples["c2sp"]["cosignature_example"]["note"]


# --- our own rules --------------------------------------------------------------------------


def test_last_empty_line_separates_text_and_signatures() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    text = "a\n\nb\n"  # a note text may hold empty lines
    note = Note(text, (sign_note(text, "k", key),))
    parsed = parse_note(note.to_bytes())
    assert parsed.text == text
    assert open_note(parsed, [Ed25519Verifier.of("k", key.public_key())]).verified


@pytest.mark.parametrize(
    "name", ["", "a b", "a+b", "a\u00a0b", "a\u3000b", "a\tb", "x" * 256, "\u2014"]
)
def test_bad_key_names(name: str) -> None:
    if name == "\u2014":  # a non-ASCII name is allowed by the specification
        assert check_key_name(name) == name
        return
    with pytest.raises(EncodingError):
        check_key_name(name)


def test_key_id_is_sha256_prefix() -> None:
    import hashlib

    public = bytes(range(32))
    expected = hashlib.sha256(b"name\n\x01" + public).digest()[:4]
    assert key_id("name", TYPE_ED25519, public) == int.from_bytes(expected, "big")


@pytest.mark.parametrize(
    "line",
    [
        "- k AAAAAAA=",  # hyphen, not em dash
        "\u2014 k",  # no signature
        "\u2014 k AAAA",  # key id only (4 bytes): no signature after it
        "\u2014 k AAAAAA",  # not padded
        "\u2014 k AAAAAB==",  # stray bits: not canonical
        "\u2014 k AA AA AA==",
        "\u2014 k+1 AAAAAAA=",
    ],
)
def test_bad_signature_lines(line: str) -> None:
    with pytest.raises(EncodingError):
        parse_signature_lines(line + "\n")


def test_bounds() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    line = sign_note("t\n", "k", key)
    assert len(parse_note(Note("t\n", (line,) * MAX_SIGNATURES).to_bytes()).signatures) == 128
    too_many = ("t\n\n" + line.line() * (MAX_SIGNATURES + 1)).encode()
    with pytest.raises(EncodingError, match="at most"):
        parse_note(too_many)
    with pytest.raises(EncodingError, match="at most"):
        parse_note(b"x" * (MAX_NOTE_BYTES + 1))
    with pytest.raises(EncodingError, match="control"):
        parse_note(b"t\r\n\n" + line.line().encode())
    with pytest.raises(EncodingError):
        NoteSignature("k", 1 << 32, b"x")


def test_two_verifiers_for_one_key_are_a_configuration_error() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    verifier = Ed25519Verifier.of("k", key.public_key())
    note = Note("t\n", (sign_note("t\n", "k", key),))
    with pytest.raises(ValidationError):
        open_note(note, [verifier, verifier])


def test_a_signature_of_the_wrong_length_fails() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    verifier = Ed25519Verifier.of("k", key.public_key())
    note = Note("t\n", (NoteSignature("k", verifier.key_id, b"\x00" * 63),))
    with pytest.raises(VerificationError, match="64 bytes"):
        open_note(note, [verifier])


@pytest.mark.parametrize(
    "text",
    [
        "k+00000000+AQ==",  # key too short for a type byte and key
        "k+ABCDEF01+" + base64.b64encode(b"\x01" + bytes(32)).decode(),  # upper-case hex
        "k+1234567+" + base64.b64encode(b"\x01" + bytes(32)).decode(),  # seven digits
        "k+12345678+" + base64.b64encode(b"\x01" + bytes(32)).decode(),  # wrong id
        "k+12345678+x+y",
    ],
)
def test_bad_vkeys(text: str) -> None:
    with pytest.raises(EncodingError):
        parse_vkey(text)
