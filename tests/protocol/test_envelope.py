"""Envelope seal / verify / open: round trips, tampering, strict parsing and the vectors."""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_encrypt

from protocol.certificate import load_root, verify_certificate
from protocol.encoding import b64d, b64e, canonical_json, fingerprint, frame, loads_strict
from protocol.envelope import (
    LABEL_BODY,
    MAX_BODY_BYTES,
    MAX_PAYLOAD_BYTES,
    MAX_RECIPIENTS,
    WRAPPED_KEY_BYTES,
    Envelope,
    Header,
    _keys_json,
    encode,
    new_message_id,
    open_envelope,
    parse_encoded,
    seal,
    verify_signature,
)
from protocol.errors import EncodingError, OpenError, ValidationError, VerificationError
from protocol.keybundle import SUITE, KeyBundle, kem_private_key, kem_public_bytes, verify_bundle
from protocol.types import CaseRef, Fingerprint, MessageId, NetworkId, OrgId, parse_message_id

VECTOR_DIR = Path(__file__).resolve().parents[1] / "vectors"
VECTOR_FILE = VECTOR_DIR / "envelope.json"
OPEN_ERROR = "envelope could not be opened"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_envelope", VECTOR_DIR / "gen_envelope.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_envelope", module)
    spec.loader.exec_module(module)
    return module


gen = _load_generator()
NETWORK: NetworkId = gen.NETWORK
CREATED: int = gen.CREATED
PAYLOAD = b'{"note":"test payload"}'
OTHER_ID = MessageId("AAAAAAAAAAAAAAAAAAAAAA")


# --- parties ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parties() -> dict[str, Any]:
    """A sender, six recipients, an outsider and a re-issued sender certificate."""
    root_key, root = gen.make_root("unit/root")
    specs = [("sender", "politie-zuid"), ("reissued", "politie-zuid"), ("outsider", "gemeente")]
    specs += [(f"r{i}", f"org-{i}") for i in range(1, 7)]
    return {
        name: gen.make_party(root_key, root, f"unit/{name}", org, serial)
        for serial, (name, org) in enumerate(specs, start=2)
    }


def _seal(parties: dict[str, Any], names: list[str], **kwargs: Any) -> Envelope:
    rng = gen.counter_rng(b"unit/" + repr(sorted(kwargs.items())).encode())
    sender = parties[kwargs.pop("sender", "sender")]
    args: dict[str, Any] = {
        "message_id": new_message_id(rng),
        "network": NETWORK,
        "sender": sender.certificate,
        "sender_key": sender.key,
        "recipients": {parties[n].org: parties[n].bundle for n in names},
        "kind": "signal",
        "payload": PAYLOAD,
        "pseudonyms": (gen.pseudonym_for("bsn", "x"), gen.pseudonym_for("tel", "y")),
        "created": CREATED,
        "rng": rng,
    }
    args.update(kwargs)
    return seal(**args)


def _open(env: Envelope, party: Any, sender: Any, **kwargs: Any) -> bytes:
    return open_envelope(
        env,
        recipient=kwargs.get("recipient", party.org),
        kem_keys=kwargs.get("kem_keys", party.kem_keys()),
        sender=sender.certificate,
    )


def _assert_open_fails(env: Envelope, party: Any, sender: Any, **kwargs: Any) -> None:
    with pytest.raises(OpenError) as info:
        _open(env, party, sender, **kwargs)
    assert str(info.value) == OPEN_ERROR
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


@pytest.fixture(scope="module")
def signal(parties: dict[str, Any]) -> Envelope:
    return _seal(parties, ["r1", "r2"])


@pytest.fixture(scope="module")
def status(parties: dict[str, Any]) -> Envelope:
    return _seal(parties, ["r1"], kind="status", status="accepted", ref=OTHER_ID, pseudonyms=())


# --- round trips --------------------------------------------------------------------------


def test_round_trip_one_recipient(parties: dict[str, Any]) -> None:
    env = _seal(parties, ["r1"])
    assert _open(env, parties["r1"], parties["sender"]) == PAYLOAD
    text = canonical_json(env.to_wire())
    again = Envelope.from_wire(loads_strict(text))
    assert again == env
    assert canonical_json(again.to_wire()) == text
    assert again.fingerprint == env.fingerprint == fingerprint(text)
    assert _open(again, parties["r1"], parties["sender"]) == PAYLOAD


def test_from_wire_checks_each_field_once(
    signal: Envelope, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``from_wire`` builds the checked records itself: no ``__post_init__`` parses again."""
    rechecked: list[str] = []

    def recheck(self: object) -> None:
        rechecked.append(type(self).__name__)

    for cls in (Header, Envelope):
        monkeypatch.setattr(cls, "__post_init__", recheck)
    again = Envelope.from_wire(copy.deepcopy(signal.to_wire()))
    assert rechecked == []
    monkeypatch.undo()
    assert again == signal
    assert dataclasses.replace(again) == signal  # a typed construction still checks


def test_encode_gives_the_canonical_bytes_and_their_fingerprint(signal: Envelope) -> None:
    encoded = encode(signal)
    assert encoded.envelope is signal
    assert encoded.wire == signal.canonical() == canonical_json(signal.to_wire())
    assert encoded.fingerprint == signal.fingerprint == fingerprint(encoded.wire)


def test_parse_encoded_takes_the_canonical_bytes_from_the_parsed_json(
    parties: dict[str, Any], signal: Envelope
) -> None:
    """Whatever order or escapes the JSON arrived in, the bytes, fingerprint and signed
    digest are the envelope's own, as encoding it again would give them."""
    chained = _seal(parties, ["r1", "r2"], prev={parties["r1"].org: OTHER_ID})
    for envelope in (signal, chained):
        wire = envelope.to_wire()
        shuffled = json.dumps(
            {k: wire[k] for k in reversed(list(wire))}
            | {"header": dict(reversed(list(wire["header"].items())))},
            ensure_ascii=True,
            indent=1,
        ).replace('"id"', '"\\u0069d"')
        parsed = parse_encoded(loads_strict(shuffled))
        assert parsed == encode(envelope)
        assert parsed.wire == envelope.canonical()
        assert parsed.signed_digest == envelope.signed_digest()
        verify_signature(parsed, parties["sender"].key.public_key())
    tampered = copy.deepcopy(signal.to_wire())
    tampered["header"]["created"] += 1
    with pytest.raises(VerificationError):
        verify_signature(parse_encoded(tampered), parties["sender"].key.public_key())


def test_round_trip_five_recipients(parties: dict[str, Any]) -> None:
    names = ["r5", "r3", "r1", "r4", "r2"]
    env = _seal(parties, names)
    assert env.header.recipients == ("org-1", "org-2", "org-3", "org-4", "org-5")
    assert set(env.keys) == set(env.header.recipients)
    for name in names:
        assert _open(env, parties[name], parties["sender"]) == PAYLOAD
    outsider = parties["outsider"]
    _assert_open_fails(env, outsider, parties["sender"])
    # The outsider claiming to be a recipient has no key for that recipient's bundle.
    _assert_open_fails(env, outsider, parties["sender"], recipient=OrgId("org-1"))
    # A recipient can not open under another recipient's name with its own keys.
    _assert_open_fails(env, parties["r1"], parties["sender"], recipient=OrgId("org-2"))


def test_status_and_reply_round_trip(parties: dict[str, Any], status: Envelope) -> None:
    assert status.header.to_wire()["status"] == "accepted"
    assert status.header.to_wire()["ref"] == OTHER_ID
    assert _open(status, parties["r1"], parties["sender"]) == PAYLOAD
    reply = _seal(parties, ["r2"], kind="reply", ref=OTHER_ID)
    assert "status" not in reply.header.to_wire()
    assert _open(reply, parties["r2"], parties["sender"]) == PAYLOAD


def test_signal_header_omits_status_and_ref(signal: Envelope) -> None:
    wire = signal.header.to_wire()
    assert set(wire) == {
        "v", "id", "network", "sender", "recipients", "kind", "pseudonyms", "created",
        "sender_cert", "recipient_keys",
    }  # fmt: skip
    assert set(signal.to_wire()) == {"header", "body", "keys", "sig"}


def test_empty_and_largest_payload(parties: dict[str, Any]) -> None:
    empty = _seal(parties, ["r1"], payload=b"")
    assert len(empty.body) == 40
    assert _open(empty, parties["r1"], parties["sender"]) == b""
    largest = _seal(parties, ["r1"], payload=b"x" * MAX_PAYLOAD_BYTES)
    assert len(largest.body) == MAX_BODY_BYTES
    wire = json.loads(json.dumps(largest.to_wire()))
    assert _open(Envelope.from_wire(wire), parties["r1"], parties["sender"]) == b"x" * (
        MAX_PAYLOAD_BYTES
    )


def test_older_bundle_opens_while_its_key_is_kept(parties: dict[str, Any]) -> None:
    r1 = parties["r1"]
    new_seed = gen.seed_bytes("unit/r1/next-kem", 96)
    new_bundle = gen.sign_bundle(
        r1.key,
        r1.certificate,
        kem_public_bytes(new_seed),
        not_before=gen.NOW,
        not_after=gen.NOW + 9,
    )
    env = _seal(parties, ["r1"])  # sealed to the old bundle
    both = {**r1.kem_keys(), new_bundle.fingerprint: kem_private_key(new_seed)}
    assert _open(env, r1, parties["sender"], kem_keys=both) == PAYLOAD
    only_new = {new_bundle.fingerprint: kem_private_key(new_seed)}
    _assert_open_fails(env, r1, parties["sender"], kem_keys=only_new)


def test_seal_is_deterministic_but_for_hpke(parties: dict[str, Any]) -> None:
    first, second = _seal(parties, ["r1", "r2"]), _seal(parties, ["r1", "r2"])
    assert first.header == second.header
    assert first.body == second.body
    assert first.keys != second.keys  # HPKE draws its own randomness
    assert len(first.keys[OrgId("org-1")]) == WRAPPED_KEY_BYTES == 1120 + 32 + 16


def test_body_layout_matches_the_documented_construction(parties: dict[str, Any]) -> None:
    rng = gen.counter_rng(b"unit/layout")
    message_id = new_message_id(rng)
    sender = parties["sender"]
    env = seal(
        message_id=message_id,
        network=NETWORK,
        sender=sender.certificate,
        sender_key=sender.key,
        recipients={parties["r1"].org: parties["r1"].bundle},
        kind="signal",
        payload=PAYLOAD,
        created=CREATED,
        rng=rng,
    )
    stream = gen.counter_rng(b"unit/layout")
    assert message_id == b64e(stream(16))
    key, nonce = stream(32), stream(24)
    aad = frame(LABEL_BODY, env.header.canonical())
    assert env.body == nonce + crypto_aead_xchacha20poly1305_ietf_encrypt(PAYLOAD, aad, nonce, key)
    r1 = parties["r1"]
    assert _unwrap(env, r1.org, r1.kem_seed) == key


def _key_info(env: Envelope, org: str) -> bytes:
    parts = (env.header.id, org, env.header.recipient_keys[OrgId(org)], env.header.sender)
    return frame("schakel/envelope-key/v1", *(part.encode() for part in parts))


def _unwrap(env: Envelope, org: str, kem_seed: bytes) -> bytes:
    """The content key, opened with HPKE and the documented ``info``."""
    blob = env.keys[OrgId(org)]
    return SUITE.decrypt(blob, kem_private_key(kem_seed), info=_key_info(env, org))


def test_header_canonical_bytes_are_pinned() -> None:
    fp_a, fp_b, fp_s = "A" * 43, "B" * 42 + "A", "C" * 42 + "A"
    header = Header(
        id=MessageId("AQIDBAUGBwgJCgsMDQ4PEA"),
        network=NetworkId("net-1"),
        sender=OrgId("police"),
        recipients=(OrgId("care-a"), OrgId("care-b")),
        kind="status",
        pseudonyms=(),
        status="care_started",
        ref=OTHER_ID,
        created=1_700_000_000,
        sender_cert=Fingerprint(fp_s),
        recipient_keys={OrgId("care-b"): Fingerprint(fp_b), OrgId("care-a"): Fingerprint(fp_a)},
    )
    expected = (
        '{"created":1700000000,"id":"AQIDBAUGBwgJCgsMDQ4PEA","kind":"status","network":"net-1",'
        '"pseudonyms":[],"recipient_keys":{"care-a":"' + fp_a + '","care-b":"' + fp_b + '"},'
        '"recipients":["care-a","care-b"],"ref":"AAAAAAAAAAAAAAAAAAAAAA","sender":"police",'
        '"sender_cert":"' + fp_s + '","status":"care_started","v":1}'
    )
    assert header.canonical() == expected.encode()
    assert Header.from_wire(json.loads(expected)) == header


def test_header_and_envelope_mappings_are_frozen_copies(signal: Envelope) -> None:
    keys = dict(signal.header.recipient_keys)
    header = dataclasses.replace(signal.header, recipient_keys=keys)
    keys[OrgId("org-1")] = Fingerprint("Z" * 43)
    assert header.recipient_keys == signal.header.recipient_keys
    with pytest.raises(TypeError):
        header.recipient_keys[OrgId("org-1")] = Fingerprint("Z" * 43)  # type: ignore[index]
    with pytest.raises(TypeError):
        signal.keys[OrgId("org-1")] = b""  # type: ignore[index]


def test_new_message_id(parties: dict[str, Any]) -> None:
    rng = gen.counter_rng(b"ids")
    first = new_message_id(rng)
    assert len(first) == 22
    assert b64d(first) == gen.counter_rng(b"ids")(16)
    assert new_message_id(rng) != first
    with pytest.raises(ValueError, match="exactly 16 bytes"):
        new_message_id(lambda n: b"\x00" * (n - 1))


@pytest.mark.parametrize("first", [0xF8, 0xF9, 0xFA, 0xFB])  # the six bits of "-"
def test_a_new_message_id_never_starts_with_a_dash(first: int) -> None:
    raw = bytes([first]) + bytes(range(15))
    made = new_message_id(lambda n: raw)
    assert made[0] == "e" and b64d(made)[1:] == raw[1:]  # one bit flipped, nothing else
    assert parse_message_id("-" + made[1:]) == "-" + made[1:]  # others' ids stay valid
    assert new_message_id(lambda n: b"\xf4" + raw[1:])[0] == "9"  # other values untouched


# --- tampering: every variant fails to open with the one message -------------------------


def _with_header(env: Envelope, **changes: Any) -> Envelope:
    header = dataclasses.replace(env.header, **changes)
    keys = {r: env.keys[r] for r in header.recipients if r in env.keys}
    return dataclasses.replace(env, header=header, keys=keys)


HEADER_CHANGES: dict[str, Callable[[Envelope, dict[str, Any]], Envelope]] = {
    "id": lambda e, p: _with_header(e, id=OTHER_ID),
    "network": lambda e, p: _with_header(e, network=NetworkId("other-net")),
    "sender": lambda e, p: _with_header(e, sender=OrgId("gemeente")),
    "recipients": lambda e, p: _with_header(
        e,
        recipients=(OrgId("org-1"),),
        recipient_keys={"org-1": e.header.recipient_keys[OrgId("org-1")]},
    ),
    "kind": lambda e, p: _with_header(e, kind="reply", ref=MessageId("BBBBBBBBBBBBBBBBBBBBBA")),
    "pseudonyms-dropped": lambda e, p: _with_header(e, pseudonyms=e.header.pseudonyms[:1]),
    "pseudonyms-added": lambda e, p: _with_header(
        e, pseudonyms=tuple(sorted((*e.header.pseudonyms, gen.pseudonym_for("doc", "z"))))
    ),
    "created": lambda e, p: _with_header(e, created=e.header.created + 1),
    "sender_cert": lambda e, p: _with_header(e, sender_cert=p["reissued"].certificate.fingerprint),
    "recipient_keys": lambda e, p: _with_header(
        e, recipient_keys={**e.header.recipient_keys, "org-1": p["r2"].bundle.fingerprint}
    ),
}
STATUS_CHANGES: dict[str, Callable[[Envelope], Envelope]] = {
    "status": lambda e: _with_header(e, status="declined"),
    "ref": lambda e: _with_header(e, ref=MessageId("BBBBBBBBBBBBBBBBBBBBBA")),
    "kind-to-reply": lambda e: _with_header(e, kind="reply", status=None),
}


@pytest.mark.parametrize("field", sorted(HEADER_CHANGES))
def test_changed_header_field_fails(parties: dict[str, Any], signal: Envelope, field: str) -> None:
    tampered = HEADER_CHANGES[field](signal, parties)
    assert tampered.header != signal.header
    kem_keys = {**parties["r1"].kem_keys(), **parties["r2"].kem_keys()}
    _assert_open_fails(tampered, parties["r1"], parties["sender"], kem_keys=kem_keys)
    with pytest.raises(VerificationError):
        verify_signature(tampered, parties["sender"].certificate.public_key)


@pytest.mark.parametrize("field", sorted(STATUS_CHANGES))
def test_changed_status_header_field_fails(
    parties: dict[str, Any], status: Envelope, field: str
) -> None:
    _assert_open_fails(STATUS_CHANGES[field](status), parties["r1"], parties["sender"])


def _resigned(env: Envelope, key: Ed25519PrivateKey) -> Envelope:
    return dataclasses.replace(env, sig=key.sign(env.signed_digest()))


def test_header_change_resigned_by_sender_fails_on_the_body_binding(
    parties: dict[str, Any], signal: Envelope
) -> None:
    """Even with a valid signature a body does not open under another header."""
    sender = parties["sender"]
    for field in ("created", "kind", "pseudonyms-dropped"):
        tampered = _resigned(HEADER_CHANGES[field](signal, parties), sender.key)
        verify_signature(tampered, sender.certificate.public_key)
        _assert_open_fails(tampered, parties["r1"], sender)


def test_body_moved_to_another_header_fails(parties: dict[str, Any], signal: Envelope) -> None:
    other = _seal(parties, ["r1", "r2"], created=CREATED + 5)
    assert other.body != signal.body
    moved = dataclasses.replace(signal, body=other.body)
    _assert_open_fails(moved, parties["r1"], parties["sender"])
    _assert_open_fails(_resigned(moved, parties["sender"].key), parties["r1"], parties["sender"])


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x80
    return bytes(out)


@pytest.mark.parametrize("index", [0, 23, 24, -17, -1])
def test_body_byte_flip_fails(parties: dict[str, Any], signal: Envelope, index: int) -> None:
    tampered = dataclasses.replace(signal, body=_flip(signal.body, index))
    _assert_open_fails(tampered, parties["r1"], parties["sender"])
    _assert_open_fails(_resigned(tampered, parties["sender"].key), parties["r1"], parties["sender"])


@pytest.mark.parametrize("index", [0, 1119, 1120, 1151, 1152, -1])
def test_wrapped_key_byte_flip_fails(parties: dict[str, Any], signal: Envelope, index: int) -> None:
    keys = dict(signal.keys)
    keys[OrgId("org-1")] = _flip(keys[OrgId("org-1")], index)
    tampered = dataclasses.replace(signal, keys=keys)
    _assert_open_fails(tampered, parties["r1"], parties["sender"])
    _assert_open_fails(_resigned(tampered, parties["sender"].key), parties["r1"], parties["sender"])


@pytest.mark.parametrize("index", [0, 31, 32, 63])
def test_signature_byte_flip_fails(parties: dict[str, Any], signal: Envelope, index: int) -> None:
    tampered = dataclasses.replace(signal, sig=_flip(signal.sig, index))
    _assert_open_fails(tampered, parties["r1"], parties["sender"])


def test_swapped_wrapped_keys_fail(parties: dict[str, Any], signal: Envelope) -> None:
    a, b = OrgId("org-1"), OrgId("org-2")
    swapped = dataclasses.replace(signal, keys={a: signal.keys[b], b: signal.keys[a]})
    for tampered in (swapped, _resigned(swapped, parties["sender"].key)):
        _assert_open_fails(tampered, parties["r1"], parties["sender"])
        _assert_open_fails(tampered, parties["r2"], parties["sender"])


def test_signature_by_another_org_fails(parties: dict[str, Any], signal: Envelope) -> None:
    forged = _resigned(signal, parties["outsider"].key)
    _assert_open_fails(forged, parties["r1"], parties["sender"])
    # The forger's own certificate does not match the header's sender either.
    _assert_open_fails(forged, parties["r1"], parties["outsider"])


def test_wrong_sender_certificate_fails(parties: dict[str, Any], signal: Envelope) -> None:
    r1 = parties["r1"]
    _assert_open_fails(signal, r1, parties["reissued"])  # same org, other cert
    _assert_open_fails(signal, r1, parties["r2"])  # other org
    cert = parties["sender"].certificate
    other_network = dataclasses.replace(parties["sender"], certificate=dataclasses.replace(
        cert, network=NetworkId("other-net")
    ))  # fmt: skip
    _assert_open_fails(signal, r1, other_network)


def test_missing_kem_key_fails(parties: dict[str, Any], signal: Envelope) -> None:
    _assert_open_fails(signal, parties["r1"], parties["sender"], kem_keys={})
    _assert_open_fails(signal, parties["r1"], parties["sender"], kem_keys=parties["r2"].kem_keys())


def test_verify_signature(parties: dict[str, Any], signal: Envelope) -> None:
    public = parties["sender"].certificate.public_key
    verify_signature(signal, public)
    keys = dict(signal.keys)
    keys[OrgId("org-2")] = _flip(keys[OrgId("org-2")], 0)
    tampered = [
        _with_header(signal, created=CREATED + 1),
        dataclasses.replace(signal, body=_flip(signal.body, 30)),
        dataclasses.replace(signal, keys=keys),
        dataclasses.replace(signal, sig=_flip(signal.sig, 0)),
    ]
    for env in tampered:
        with pytest.raises(VerificationError, match="does not verify"):
            verify_signature(env, public)
    with pytest.raises(VerificationError, match="does not verify"):
        verify_signature(signal, parties["reissued"].certificate.public_key)


# --- strict parsing -----------------------------------------------------------------------


def _header(wire: dict[str, Any]) -> dict[str, Any]:
    header: dict[str, Any] = wire["header"]
    return header


def _many_recipients(wire: dict[str, Any], count: int) -> None:
    orgs = sorted(f"org-{i:02d}" for i in range(count))
    _header(wire).update(recipients=orgs, recipient_keys=dict.fromkeys(orgs, "A" * 43))
    wire["keys"] = dict.fromkeys(orgs, b64e(bytes(WRAPPED_KEY_BYTES)))


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(wire: dict[str, Any]) -> None:
        target = wire
        *parents, last = path.split(".")
        for part in parents:
            target = target[part]
        target[last] = value

    return mutate


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(wire: dict[str, Any]) -> None:
        target = wire
        *parents, last = path.split(".")
        for part in parents:
            target = target[part]
        del target[last]

    return mutate


P1, P2 = sorted((gen.pseudonym_for("bsn", "x"), gen.pseudonym_for("tel", "y")))
CASE = CaseRef("abcdefghijklmnop")
# name -> (mutation of the signal's wire form, error type, message fragment)
SIGNAL_REJECTIONS: dict[str, tuple[Callable[[dict[str, Any]], None], type[Exception], str]] = {
    "extra-envelope-key": (_set("extra", 1), EncodingError, "unknown field(s) extra"),
    "missing-envelope-key": (_drop("keys"), EncodingError, "missing keys"),
    "header-not-object": (_set("header", []), EncodingError, "header must be an object"),
    "extra-header-key": (_set("header.note", "x"), EncodingError, "unknown field(s) note"),
    "missing-header-key": (_drop("header.created"), EncodingError, "missing created"),
    "null-status": (_set("header.status", None), EncodingError, "status must be omitted, not null"),
    "null-ref": (_set("header.ref", None), EncodingError, "ref must be omitted, not null"),
    "status-on-signal": (
        _set("header.status", "accepted"),
        ValidationError,
        "only a status envelope",
    ),
    "ref-on-signal": (_set("header.ref", OTHER_ID), ValidationError, "only status, reply and"),
    "case-on-signal": (_set("header.case", CASE), ValidationError, "only a referral"),
    "null-case": (_set("header.case", None), EncodingError, "case must be omitted, not null"),
    "unknown-kind": (_set("header.kind", "gossip"), ValidationError, "kind must be one of"),
    "version-2": (_set("header.v", 2), ValidationError, "header version must be 1"),
    "version-true": (_set("header.v", True), ValidationError, "header version must be 1"),
    "version-string": (_set("header.v", "1"), ValidationError, "header version must be 1"),
    "bad-id": (_set("header.id", "short"), ValidationError, "message id"),
    "bad-network": (_set("header.network", "Net"), ValidationError, "network id"),
    "bad-sender": (_set("header.sender", "x"), ValidationError, "organisation id"),
    "created-negative": (_set("header.created", -1), ValidationError, "created must be"),
    "created-too-large": (_set("header.created", 2**40 + 1), ValidationError, "created must be"),
    "created-string": (_set("header.created", "1"), ValidationError, "created must be"),
    "created-bool": (_set("header.created", True), ValidationError, "created must be"),
    "recipients-unsorted": (
        _set("header.recipients", ["org-2", "org-1"]),
        ValidationError,
        "sorted and unique",
    ),
    "recipients-duplicate": (
        _set("header.recipients", ["org-1", "org-1"]),
        ValidationError,
        "sorted and unique",
    ),
    "recipients-empty": (_set("header.recipients", []), ValidationError, "1 to 16 recipients"),
    "recipients-not-list": (_set("header.recipients", "org-1"), EncodingError, "must be a list"),
    "recipient-bad-id": (
        _set("header.recipients", ["ORG-1", "org-2"]),
        ValidationError,
        "organisation id",
    ),
    "sender-among-recipients": (
        _set("header.sender", "org-1"),
        ValidationError,
        "sender can not be one of the recipients",
    ),
    "17-recipients": (lambda w: _many_recipients(w, 17), ValidationError, "1 to 16 recipients"),
    "recipient-keys-missing-one": (
        _drop("header.recipient_keys.org-2"),
        ValidationError,
        "exactly the recipients",
    ),
    "recipient-keys-extra": (
        _set("header.recipient_keys.org-9", "A" * 43),
        ValidationError,
        "exactly the recipients",
    ),
    "recipient-keys-bad-fingerprint": (
        _set("header.recipient_keys.org-1", "xyz"),
        ValidationError,
        "fingerprint",
    ),
    "recipient-keys-not-object": (
        _set("header.recipient_keys", []),
        EncodingError,
        "recipient_keys must be an object",
    ),
    "pseudonyms-unsorted": (
        _set("header.pseudonyms", [P2, P1]),
        ValidationError,
        "sorted and unique",
    ),
    "pseudonyms-duplicate": (
        _set("header.pseudonyms", [P1, P1]),
        ValidationError,
        "sorted and unique",
    ),
    "pseudonym-malformed": (_set("header.pseudonyms", ["bsn.1.abc"]), ValidationError, "pseudonym"),
    "pseudonyms-33": (
        _set("header.pseudonyms", sorted(gen.pseudonym_for("bsn", str(i)) for i in range(33))),
        ValidationError,
        "at most 32 pseudonyms",
    ),
    "bad-sender-cert": (_set("header.sender_cert", "A" * 42), ValidationError, "fingerprint"),
    "body-too-short": (_set("body", b64e(bytes(39))), ValidationError, "body must be 40 to"),
    "body-oversized": (_set("body", b64e(bytes(MAX_BODY_BYTES + 1))), EncodingError, "too long"),
    "body-bad-base64": (_set("body", "+" * 64), EncodingError, "base64url"),
    "body-padded-base64": (_set("body", b64e(bytes(41)) + "="), EncodingError, "base64url"),
    "body-not-string": (_set("body", 5), EncodingError, "base64url"),
    "sig-63-bytes": (_set("sig", b64e(bytes(63))), ValidationError, "sig must be 64 bytes"),
    "sig-65-bytes": (_set("sig", b64e(bytes(65))), EncodingError, "too long"),
    "keys-not-object": (_set("keys", []), EncodingError, "keys must be an object"),
    "keys-missing-recipient": (_drop("keys.org-2"), ValidationError, "exactly the header's"),
    "keys-extra-org": (
        _set("keys.org-9", b64e(bytes(WRAPPED_KEY_BYTES))),
        ValidationError,
        "exactly the header's",
    ),
    "wrapped-key-short": (
        _set("keys.org-1", b64e(bytes(WRAPPED_KEY_BYTES - 1))),
        ValidationError,
        "1168 bytes",
    ),
    "wrapped-key-long": (
        _set("keys.org-1", b64e(bytes(WRAPPED_KEY_BYTES + 1))),
        EncodingError,
        "too long",
    ),
    "wrapped-key-bad-base64": (_set("keys.org-1", "!!"), EncodingError, "base64url"),
}
STATUS_REJECTIONS: dict[str, tuple[Callable[[dict[str, Any]], None], type[Exception], str]] = {
    "missing-status": (_drop("header.status"), ValidationError, "status must be one of"),
    "null-status": (_set("header.status", None), EncodingError, "status must be omitted, not null"),
    "unknown-status": (_set("header.status", "sent"), ValidationError, "status must be one of"),
    "missing-ref": (_drop("header.ref"), ValidationError, "a status envelope needs a ref"),
    "bad-ref": (_set("header.ref", "x"), ValidationError, "message id"),
}


def _check_rejection(
    env: Envelope, case: tuple[Callable[[dict[str, Any]], None], type[Exception], str]
) -> None:
    mutate, error, fragment = case
    wire = copy.deepcopy(env.to_wire())
    Envelope.from_wire(copy.deepcopy(wire))  # the untouched form parses
    mutate(wire)
    with pytest.raises(error) as info:
        Envelope.from_wire(wire)
    assert fragment in str(info.value)


@pytest.mark.parametrize("name", sorted(SIGNAL_REJECTIONS))
def test_from_wire_rejects_signal(signal: Envelope, name: str) -> None:
    _check_rejection(signal, SIGNAL_REJECTIONS[name])


@pytest.mark.parametrize("name", sorted(STATUS_REJECTIONS))
def test_from_wire_rejects_status(status: Envelope, name: str) -> None:
    _check_rejection(status, STATUS_REJECTIONS[name])


@pytest.mark.parametrize("value", [None, [], "x", 1])
def test_from_wire_rejects_non_objects(value: object) -> None:
    with pytest.raises(EncodingError, match="envelope must be an object"):
        Envelope.from_wire(value)


def test_envelope_construction_validates(signal: Envelope) -> None:
    with pytest.raises(ValidationError, match="exactly the header's recipients"):
        dataclasses.replace(signal, keys={OrgId("org-1"): signal.keys[OrgId("org-1")]})
    with pytest.raises(ValidationError, match="sig must be 64 bytes"):
        dataclasses.replace(signal, sig=b"")


# --- seal refuses bad arguments -----------------------------------------------------------


def test_seal_rejects_sender_certificate_of_another_network(parties: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="another network"):
        _seal(parties, ["r1"], network=NetworkId("other-net"))


def test_seal_rejects_a_key_that_is_not_the_certificates(parties: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="signing key does not match"):
        _seal(parties, ["r1"], sender_key=parties["outsider"].key)


def test_seal_rejects_bundles_of_other_orgs_or_networks(parties: dict[str, Any]) -> None:
    r1, r2 = parties["r1"], parties["r2"]
    with pytest.raises(ValidationError, match="another organisation or network"):
        _seal(parties, [], recipients={r1.org: r2.bundle})
    elsewhere = dataclasses.replace(r1.bundle, network=NetworkId("other-net"))
    with pytest.raises(ValidationError, match="another organisation or network"):
        _seal(parties, [], recipients={r1.org: elsewhere})


def test_seal_rejects_bad_recipient_sets(parties: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="1 to 16 recipients"):
        _seal(parties, [])
    with pytest.raises(ValidationError, match="sender can not be one of the recipients"):
        _seal(parties, ["sender", "r1"])
    bundle = parties["r1"].bundle
    many = {
        OrgId(f"org-{i:02d}"): dataclasses.replace(bundle, org=OrgId(f"org-{i:02d}"))
        for i in range(MAX_RECIPIENTS + 1)
    }
    with pytest.raises(ValidationError, match="1 to 16 recipients"):
        _seal(parties, [], recipients=many)


def test_seal_rejects_bad_header_arguments(parties: dict[str, Any]) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "gossip"}, "kind must be one of"),
        ({"status": "accepted"}, "only a status envelope"),
        ({"kind": "status", "ref": OTHER_ID}, "status must be one of"),
        ({"kind": "status", "status": "accepted"}, "a status envelope needs a ref"),
        ({"kind": "reply"}, "a reply envelope needs a ref"),
        ({"ref": OTHER_ID}, "only status, reply and referral"),
        ({"case": CASE}, "only a referral envelope names a case"),
        ({"kind": "referral", "pseudonyms": ()}, "a referral names a case or carries pseudonyms"),
        ({"kind": "referral", "case": "NOT-A-CASE"}, "case reference"),
        (
            {"kind": "status", "status": "accepted", "ref": OTHER_ID, "case": CASE},
            "only a referral",
        ),
        ({"pseudonyms": (P2, P1)}, "sorted and unique"),
        ({"pseudonyms": ("not-a-pseudonym",)}, "pseudonym must be"),
        ({"created": -1}, "created must be"),
        ({"created": True}, "created must be"),
        ({"message_id": "A" * 21}, "message id must be"),
        ({"message_id": "A" * 21 + "B"}, "message id is not canonical"),
        ({"prev": {OrgId("r2"): "A" * 21}}, "message id must be"),
        ({"prev": {OrgId("stranger"): OTHER_ID}}, "prev may name only recipients"),
    ]
    for kwargs, fragment in cases:
        with pytest.raises(ValidationError, match=fragment):
            _seal(parties, ["r1"], **kwargs)


def test_seal_makes_the_header_the_constructor_makes(parties: dict[str, Any]) -> None:
    """seal takes the recipients and key fingerprints from the bundles without parsing them
    again: the header it makes is the one the checking constructor makes of its values."""
    envelope = _seal(parties, ["r1", "r2"], prev={parties["r1"].org: OTHER_ID})
    header = envelope.header
    rebuilt = Header(**{f.name: getattr(header, f.name) for f in dataclasses.fields(Header)})
    assert rebuilt == header and rebuilt.canonical() == header.canonical()
    assert header.recipients == tuple(sorted((parties["r1"].org, parties["r2"].org)))
    assert dict(header.recipient_keys) == {
        parties[n].org: parties[n].bundle.fingerprint for n in ("r1", "r2")
    }


def test_referral_goes_to_exactly_one_organisation(parties: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="exactly one organisation"):
        _seal(parties, ["r1", "r2"], kind="referral", case=CASE)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"case": CASE, "pseudonyms": ()},
        {"pseudonyms": (P1, P2)},
        {"case": CASE, "pseudonyms": (P1,), "ref": OTHER_ID},
    ],
    ids=["case", "pseudonyms", "case-pseudonyms-ref"],
)
def test_referral_round_trips(parties: dict[str, Any], kwargs: dict[str, Any]) -> None:
    envelope = _seal(parties, ["r1"], kind="referral", **kwargs)
    again = Envelope.from_wire(json.loads(json.dumps(envelope.to_wire())))
    assert again == envelope
    assert again.header.case == kwargs.get("case")
    assert ("case" in envelope.to_wire()["header"]) == ("case" in kwargs)


def test_seal_rejects_oversized_payload(parties: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="payload must be at most"):
        _seal(parties, ["r1"], payload=b"x" * (MAX_PAYLOAD_BYTES + 1))


def test_seal_rejects_a_short_random_stream(parties: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="exactly 32 bytes"):
        _seal(parties, ["r1"], rng=lambda n: b"\x00" * (n - 1))


# --- vectors ------------------------------------------------------------------------------


GENERATED = gen.generate()


def _rebuild_parties(vectors: dict[str, Any]) -> dict[str, Any]:
    now = vectors["now"]
    root = load_root(b64d(vectors["root"]["certificate"]), now=now)
    parties: dict[str, Any] = {}
    for name, item in vectors["parties"].items():
        cert = verify_certificate(b64d(item["certificate"]), root, now=now, crl=None)
        assert cert.fingerprint == item["certificate_fingerprint"]
        key = Ed25519PrivateKey.from_private_bytes(b64d(item["ed25519_seed"]))
        assert key.public_key() == cert.public_key
        bundle = KeyBundle.from_wire(item["bundle"])
        verify_bundle(bundle, cert, now=now)
        assert bundle.fingerprint == item["bundle_fingerprint"]
        kem_seed = b64d(item["kem_seed"])
        assert kem_public_bytes(kem_seed) == bundle.public_key
        parties[name] = gen.Party(name, key, kem_seed, cert, bundle)
    return parties


def _check_sealed(vector: dict[str, Any], parties: dict[str, Any]) -> None:
    env = Envelope.from_wire(vector["envelope"])
    canonical = b64d(vector["header_canonical"])
    assert env.header.canonical() == canonical == canonical_json(vector["envelope"]["header"])
    assert env.signed_digest() == b64d(vector["signed_digest"])
    assert env.fingerprint == vector["fingerprint"]
    verify_signature(env, parties[vector["sender"]].certificate.public_key)
    stream = gen.counter_rng(b64d(vector["rng_seed"]))
    assert env.header.id == b64e(stream(16))
    key, nonce = stream(32), stream(24)
    payload, aad = b64d(vector["payload"]), frame(LABEL_BODY, canonical)
    assert env.body == nonce + crypto_aead_xchacha20poly1305_ietf_encrypt(payload, aad, nonce, key)
    assert set(vector["key_info"]) == set(env.header.recipients)
    for name in vector["recipients"]:
        org = parties[name].org
        assert b64d(vector["key_info"][org]) == _key_info(env, org)
        assert _unwrap(env, org, parties[name].kem_seed) == key


def _check_case(case: dict[str, Any], parties: dict[str, Any]) -> None:
    recipient, sender = parties[case["recipient"]], parties[case["sender"]]
    if case["expected"] == "reject" and case["stage"] == "parse":
        with pytest.raises((EncodingError, ValidationError)):
            Envelope.from_wire(case["envelope"])
        with pytest.raises((EncodingError, ValidationError)):
            parse_encoded(case["envelope"])
        return
    env = Envelope.from_wire(case["envelope"])
    assert parse_encoded(case["envelope"]) == encode(env)  # parsed once, the same bytes
    if case["expected"] == "open":
        assert _open(env, recipient, sender) == b64d(case["payload"])
        return
    assert (case["expected"], case["stage"]) == ("reject", "open")
    _assert_open_fails(env, recipient, sender)


def _check_vectors(vectors: dict[str, Any]) -> None:
    parties = _rebuild_parties(vectors)
    for vector in vectors["envelopes"]:
        _check_sealed(vector, parties)
    for case in vectors["cases"]:
        _check_case(case, parties)


def test_generated_vectors_are_json_and_check_out() -> None:
    vectors = json.loads(json.dumps(GENERATED))
    assert vectors == GENERATED
    _check_vectors(vectors)


@pytest.mark.parametrize("case", GENERATED["cases"], ids=lambda c: c["name"])
def test_generated_case(case: dict[str, Any]) -> None:
    _check_case(case, _rebuild_parties(GENERATED))


def test_generated_vectors_are_stable_but_for_hpke() -> None:
    again = gen.generate()
    assert again["parties"] == GENERATED["parties"]
    assert again["root"] == GENERATED["root"]
    for new, old in zip(again["envelopes"], GENERATED["envelopes"], strict=True):
        assert new["header_canonical"] == old["header_canonical"]
        assert new["envelope"]["body"] == old["envelope"]["body"]


def test_generated_cases_cover_every_outcome() -> None:
    outcomes = {(c["expected"], c.get("stage")) for c in GENERATED["cases"]}
    assert outcomes == {("open", None), ("reject", "open"), ("reject", "parse")}


def test_committed_vector_file() -> None:
    assert VECTOR_FILE.is_file(), "tests/vectors/envelope.json is missing: run make vectors"
    _check_vectors(loads_strict(VECTOR_FILE.read_bytes(), max_bytes=16 << 20))


# --- predecessors (header "prev") ---------------------------------------------------------


@pytest.fixture(scope="module")
def chained(parties: dict[str, Any]) -> Envelope:
    return _seal(parties, ["r1", "r2"], prev={parties["r1"].org: OTHER_ID})


def test_prev_round_trips_and_is_signed(parties: dict[str, Any], chained: Envelope) -> None:
    r1 = parties["r1"].org
    assert _header(chained.to_wire())["prev"] == {r1: OTHER_ID}
    again = Envelope.from_wire(loads_strict(canonical_json(chained.to_wire())))
    assert again == chained and dict(again.header.prev or {}) == {r1: OTHER_ID}
    assert _open(again, parties["r2"], parties["sender"]) == PAYLOAD
    forged = copy.deepcopy(chained.to_wire())
    _header(forged)["prev"] = {r1: "B" * 21 + "A"}  # the hub names another predecessor
    _assert_open_fails(Envelope.from_wire(forged), parties["r1"], parties["sender"])


def test_an_envelope_without_prev_omits_it(parties: dict[str, Any], signal: Envelope) -> None:
    assert "prev" not in _header(signal.to_wire())
    assert signal.header.prev is None
    assert _seal(parties, ["r1"], prev={}).header.prev is None  # nothing to name: omitted


PREV_REJECTIONS: dict[str, tuple[Callable[[dict[str, Any]], None], type[Exception], str]] = {
    "null-prev": (_set("header.prev", None), EncodingError, "prev must be omitted, not null"),
    "empty-prev": (_set("header.prev", {}), ValidationError, "prev must name at least one"),
    "list-prev": (_set("header.prev", []), EncodingError, "prev must be an object"),
    "prev-of-a-stranger": (
        _set("header.prev", {"stranger": OTHER_ID}),
        ValidationError,
        "prev may name only recipients",
    ),
    "prev-bad-id": (_set("header.prev", {"org-1": "x"}), ValidationError, "message id"),
}


@pytest.mark.parametrize("name", sorted(PREV_REJECTIONS))
def test_from_wire_rejects_prev(chained: Envelope, name: str) -> None:
    _check_rejection(chained, PREV_REJECTIONS[name])


def test_prev_can_not_name_the_message_itself(chained: Envelope) -> None:
    wire = copy.deepcopy(chained.to_wire())
    _header(wire)["prev"] = {recipient: chained.header.id for recipient in _header(wire)["prev"]}
    with pytest.raises(ValidationError, match="prev can not name the message itself"):
        Envelope.from_wire(wire)


def test_the_wrapped_keys_are_signed_in_their_canonical_json(
    parties: dict[str, Any], signal: Envelope
) -> None:
    five = _seal(parties, ["r5", "r3", "r1", "r4", "r2"])
    for envelope in (signal, five):
        keys_wire = envelope.to_wire()["keys"]
        assert _keys_json(keys_wire) == canonical_json(keys_wire)
        assert _keys_json(dict(reversed(list(keys_wire.items())))) == canonical_json(keys_wire)


def test_the_header_is_written_in_its_canonical_json(parties: dict[str, Any]) -> None:
    """Header.canonical writes the JSON out itself: the bytes canonical_json makes."""
    headers = [
        _seal(parties, ["r1"], pseudonyms=()).header,
        _seal(parties, ["r5", "r3", "r1", "r4", "r2"]).header,
        _seal(parties, ["r1", "r2"], prev={parties["r2"].org: OTHER_ID}).header,
        _seal(parties, ["r1"], kind="referral", case=CASE, ref=OTHER_ID).header,
        _seal(parties, ["r1"], kind="status", status="care_started", ref=OTHER_ID).header,
        _seal(parties, ["r1"], kind="reply", ref=OTHER_ID, created=0).header,
    ]
    for header in headers:
        assert header.canonical() == canonical_json(header.to_wire())
        assert Header.from_wire(json.loads(header.canonical())) == header


def test_a_signing_key_checked_once_is_still_checked_against_each_certificate(
    parties: dict[str, Any],
) -> None:
    """seal remembers that a key matched a certificate; not that it matches any other."""
    sender, outsider = parties["sender"], parties["outsider"]
    _seal(parties, ["r1"])  # the sender's key and certificate, now remembered
    with pytest.raises(ValidationError, match="signing key does not match"):
        _seal(parties, ["r1"], sender_key=outsider.key)
    with pytest.raises(ValidationError, match="signing key does not match"):
        _seal(parties, ["r1"], sender="outsider", sender_key=sender.key)
    reissued = parties["reissued"]  # another certificate, for another key
    with pytest.raises(ValidationError, match="signing key does not match"):
        _seal(parties, ["r1"], sender="reissued", sender_key=sender.key)
    assert _seal(parties, ["r1"], sender="reissued", sender_key=reissued.key)
