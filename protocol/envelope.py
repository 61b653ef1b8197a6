"""The envelope: routing header in clear, one encrypted body, keys per recipient, a signature.

The bytes are specified in ``docs/protocol.md``. In short:

* ``header``: what the hub needs for routing, as canonical JSON. It is the
  associated data of the body, so a body can not be moved to another header.
* ``body``: ``nonce (24) || XChaCha20-Poly1305(payload)`` under a random
  32-byte content key.
* ``keys``: per recipient, the content key sealed with HPKE
  (ML-KEM-768+X25519 / HKDF-SHA256 / ChaCha20-Poly1305) to the recipient's
  key bundle named in the header, with the message id, recipient, bundle
  fingerprint and sender in the HPKE ``info``.
* ``sig``: Ed25519 by the sender over a domain-separated digest of header,
  body and keys.

``seal`` takes its randomness (content key, nonce) from ``rng``; HPKE draws
its ephemeral randomness from the operating system, which
pyca/cryptography does not let a caller replace. ``open_envelope`` raises
one ``OpenError`` whatever failed.
"""

from __future__ import annotations

import itertools
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import nacl.bindings
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol import keybundle
from protocol.certificate import Certificate
from protocol.encoding import b64d, b64e, canonical_json_unchecked, digest, fingerprint, frame
from protocol.errors import EncodingError, OpenError, ValidationError, VerificationError
from protocol.keybundle import KeyBundle
from protocol.pseudonym import parse_pseudonym
from protocol.types import (
    CaseRef,
    Fingerprint,
    MessageId,
    NetworkId,
    OrgId,
    Pseudonym,
    parse_case_ref,
    parse_fingerprint,
    parse_message_id,
    parse_network_id,
    parse_org_id,
)

VERSION = 1
KINDS: tuple[str, ...] = ("signal", "referral", "status", "reply")
STATUS_CODES: tuple[str, ...] = ("accepted", "declined", "care_started", "closed")
MAX_RECIPIENTS = 16
MAX_PSEUDONYMS = 32
MAX_BODY_BYTES = 256 * 1024  # ciphertext, nonce and tag included
CONTENT_KEY_BYTES = 32
NONCE_BYTES = 24

Rng = Callable[[int], bytes]
_Text = TypeVar("_Text", bound=str)  # an id type (OrgId, ...) or plain text

TAG_BYTES = 16
MIN_BODY_BYTES = NONCE_BYTES + TAG_BYTES
MAX_PAYLOAD_BYTES = MAX_BODY_BYTES - MIN_BODY_BYTES
SIGNATURE_BYTES = 64
MESSAGE_ID_BYTES = 16
MAX_CREATED = 2**40
# HPKE enc (1120) || sealed content key (32) || HPKE AEAD tag (16).
WRAPPED_KEY_BYTES = hpke.KEM.MLKEM768_X25519.enc_length() + CONTENT_KEY_BYTES + TAG_BYTES

LABEL_SIGNATURE = "schakel/envelope/v1"
LABEL_BODY = "schakel/envelope-body/v1"
LABEL_KEY = "schakel/envelope-key/v1"

_REF_KINDS = ("status", "reply")  # a ref is required; a referral may carry one too
_HEADER_REQUIRED = frozenset(
    {"v", "id", "network", "sender", "recipients", "kind", "pseudonyms", "created"}
    | {"sender_cert", "recipient_keys"}
)
_HEADER_OPTIONAL = frozenset({"status", "ref", "case", "prev"})
_ENVELOPE_KEYS = frozenset({"header", "body", "keys", "sig"})


# --- validation helpers -------------------------------------------------------------------


def _check_sorted_unique(values: tuple[str, ...], what: str) -> None:
    if any(a >= b for a, b in itertools.pairwise(values)):
        raise ValidationError(f"{what} must be sorted and unique")


def _as_tuple(value: object, what: str) -> tuple[object, ...]:
    if not isinstance(value, list | tuple):
        raise EncodingError(f"{what} must be a list")
    return tuple(value)


def _as_object(value: object, what: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise EncodingError(f"{what} must be an object")
    return value


def _check_keys(
    data: Mapping[str, object], required: frozenset[str], optional: frozenset[str], what: str
) -> None:
    missing = sorted(required - data.keys())
    extra = sorted(map(str, set(data.keys()) - required - optional))
    if missing:
        raise EncodingError(f"{what} is missing {', '.join(missing)}")
    if extra:
        raise EncodingError(f"{what} has unknown field(s) {', '.join(extra)}")
    for key in sorted(optional & data.keys()):
        if data[key] is None:
            raise EncodingError(f"{what} field {key} must be omitted, not null")


def _check_int(value: object, low: int, high: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValidationError(f"{what} must be an integer from {low} to {high}")
    return value


def _draw(rng: Rng, size: int) -> bytes:
    data = rng(size)
    if not isinstance(data, bytes) or len(data) != size:
        raise ValueError(f"rng must return exactly {size} bytes")
    return data


# --- header fields: each parser takes a raw or typed value and returns the checked one ------


def _parse_version(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value != VERSION:
        raise ValidationError(f"header version must be {VERSION}")
    return value


def _check_recipient_count(recipients: tuple[object, ...]) -> None:
    if not 1 <= len(recipients) <= MAX_RECIPIENTS:
        raise ValidationError(f"an envelope needs 1 to {MAX_RECIPIENTS} recipients")


def _parse_recipients(value: object) -> tuple[OrgId, ...]:
    recipients = _as_tuple(value, "recipients")
    _check_recipient_count(recipients)
    parsed = tuple(parse_org_id(r) for r in recipients)
    _check_sorted_unique(parsed, "recipients")
    return parsed


def _parse_pseudonyms(value: object) -> tuple[Pseudonym, ...]:
    pseudonyms = _as_tuple(value, "pseudonyms")
    if len(pseudonyms) > MAX_PSEUDONYMS:
        raise ValidationError(f"an envelope carries at most {MAX_PSEUDONYMS} pseudonyms")
    parsed = tuple(parse_pseudonym(p) for p in pseudonyms)
    _check_sorted_unique(parsed, "pseudonyms")
    return parsed


def _parse_kind(value: object) -> str:
    if not isinstance(value, str) or value not in KINDS:
        raise ValidationError(f"kind must be one of {', '.join(KINDS)}")
    return value


def _parse_status(value: object) -> str | None:
    if value is not None and (not isinstance(value, str) or value not in STATUS_CODES):
        raise ValidationError(f"status must be one of {', '.join(STATUS_CODES)}")
    return value


def _parse_optional_id(value: object) -> MessageId | None:
    return None if value is None else parse_message_id(value)


def _parse_case(value: object) -> CaseRef | None:
    return None if value is None else parse_case_ref(value)


def _parse_created(value: object) -> int:
    return _check_int(value, 0, MAX_CREATED, "created")


def _org_keyed(value: object, what: str) -> dict[OrgId, object]:
    """An object keyed by organisation, in key order; which keys it may have is a header rule."""
    obj = _as_object(value, what)
    if not all(isinstance(key, str) for key in obj):
        raise ValidationError(f"{what} must be keyed by organisation")
    return {OrgId(key): obj[key] for key in sorted(obj)}


def _parse_recipient_keys(value: object) -> Mapping[OrgId, Fingerprint]:
    keys = _org_keyed(value, "recipient_keys")
    return types.MappingProxyType({r: parse_fingerprint(f) for r, f in keys.items()})


def _parse_prev(value: object) -> Mapping[OrgId, MessageId] | None:
    if value is None:
        return None
    prev = _org_keyed(value, "prev")
    if not prev:
        raise ValidationError("prev must name at least one recipient, or be omitted")
    return types.MappingProxyType({r: parse_message_id(m) for r, m in prev.items()})


# Every header field with its parser, in the order they are checked.
_HEADER_FIELDS: tuple[tuple[str, Callable[[object], object]], ...] = (
    ("v", _parse_version),
    ("id", parse_message_id),
    ("network", parse_network_id),
    ("sender", parse_org_id),
    ("recipients", _parse_recipients),
    ("pseudonyms", _parse_pseudonyms),
    ("kind", _parse_kind),
    ("status", _parse_status),
    ("ref", _parse_optional_id),
    ("case", _parse_case),
    ("created", _parse_created),
    ("sender_cert", parse_fingerprint),
    ("recipient_keys", _parse_recipient_keys),
    ("prev", _parse_prev),
)
# The fields ``seal`` takes from verified key bundles; the others come from its caller.
_BUNDLE_FIELDS = ("recipients", "recipient_keys")
_CALLER_FIELDS = tuple(
    (name, parse) for name, parse in _HEADER_FIELDS if name not in _BUNDLE_FIELDS
)


# --- header -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Header:
    """The routing header. Built from typed values (as ``seal`` does), ``__post_init__``
    checks it; ``from_wire`` parses each field once and checks the same rules itself."""

    id: MessageId
    network: NetworkId
    sender: OrgId
    recipients: tuple[OrgId, ...]  # sorted, unique, 1..MAX_RECIPIENTS, sender not among them
    kind: str
    pseudonyms: tuple[Pseudonym, ...]  # sorted, unique, 0..MAX_PSEUDONYMS
    status: str | None  # required for kind "status", absent otherwise
    ref: MessageId | None  # status/reply: the message it is about; referral: the one it replaces
    created: int
    sender_cert: Fingerprint
    recipient_keys: Mapping[OrgId, Fingerprint]  # exactly the recipients
    v: int = VERSION
    case: CaseRef | None = None  # referral only: the case it is about (a coordinator's)
    # Per recipient (some of them), the id of the sender's previous message to it that the
    # hub accepted: the recipient checks that it holds it, so a withheld one is noticed.
    prev: Mapping[OrgId, MessageId] | None = None

    def __post_init__(self) -> None:
        """Validate every rule of the header; ``ValidationError`` names the broken one."""
        for name, parse in _HEADER_FIELDS:
            object.__setattr__(self, name, parse(getattr(self, name)))
        self._check_rules()

    def _check_rules(self) -> None:
        """The rules between fields, once each field is parsed."""
        if self.sender in self.recipients:
            raise ValidationError("the sender can not be one of the recipients")
        self._check_kind()
        if set(self.recipient_keys) != set(self.recipients):
            raise ValidationError("recipient_keys must name exactly the recipients")
        if self.prev is not None:
            if not set(self.prev) <= set(self.recipients):
                raise ValidationError("prev may name only recipients")
            if self.id in self.prev.values():
                raise ValidationError("prev can not name the message itself")

    def _check_kind(self) -> None:
        if self.kind == "status":
            if self.status is None:
                raise ValidationError(f"status must be one of {', '.join(STATUS_CODES)}")
        elif self.status is not None:
            raise ValidationError("only a status envelope carries a status")
        if self.kind in _REF_KINDS and self.ref is None:
            raise ValidationError(f"a {self.kind} envelope needs a ref")
        if self.ref is not None and self.kind not in (*_REF_KINDS, "referral"):
            raise ValidationError("only status, reply and referral envelopes carry a ref")
        if self.kind == "referral":
            if len(self.recipients) != 1:
                raise ValidationError("a referral goes to exactly one organisation")
            if self.case is None and not self.pseudonyms:
                raise ValidationError("a referral names a case or carries pseudonyms")
        elif self.case is not None:
            raise ValidationError("only a referral envelope names a case")

    def canonical(self) -> bytes:
        """The header's one byte form: what the body binds to and the signature covers.

        Written out directly: every field was checked when the header was made, and every
        text in a header is an id, a code, base64url or base32, which JSON writes as it is;
        so keys in sorted order without whitespace are all there is (the same bytes as
        ``canonical_json(self.to_wire())``; tests/protocol checks it)."""
        members = [
            f'"case":"{self.case}"' if self.case is not None else "",
            f'"created":{self.created}',
            f'"id":"{self.id}"',
            f'"kind":"{self.kind}"',
            f'"network":"{self.network}"',
            '"prev":' + _text_object(self.prev) if self.prev is not None else "",
            '"pseudonyms":' + _text_list(self.pseudonyms),
            '"recipient_keys":' + _text_object(self.recipient_keys),
            '"recipients":' + _text_list(self.recipients),
            f'"ref":"{self.ref}"' if self.ref is not None else "",
            f'"sender":"{self.sender}"',
            f'"sender_cert":"{self.sender_cert}"',
            f'"status":"{self.status}"' if self.status is not None else "",
            f'"v":{self.v}',
        ]
        return ("{" + ",".join(filter(None, members)) + "}").encode("ascii")

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "v": self.v,
            "id": self.id,
            "network": self.network,
            "sender": self.sender,
            "recipients": list(self.recipients),
            "kind": self.kind,
            "pseudonyms": list(self.pseudonyms),
            "created": self.created,
            "sender_cert": self.sender_cert,
            "recipient_keys": dict(self.recipient_keys),
        }
        if self.status is not None:
            wire["status"] = self.status
        if self.ref is not None:
            wire["ref"] = self.ref
        if self.case is not None:
            wire["case"] = self.case
        if self.prev is not None:
            wire["prev"] = dict(self.prev)
        return wire

    @classmethod
    def from_wire(cls, data: object) -> Header:
        """Parse a header object in its one canonical form, each field once.

        ``EncodingError`` for a wrong shape (not an object, missing, unknown or
        ``null`` fields, a non-list); ``ValidationError`` for a broken rule.
        """
        obj = _as_object(data, "header")
        _check_keys(obj, _HEADER_REQUIRED, _HEADER_OPTIONAL, "header")
        header = object.__new__(cls)  # every field is set and checked below, not twice
        for name, parse in _HEADER_FIELDS:
            object.__setattr__(header, name, parse(obj.get(name)))
        header._check_rules()
        return header

    @classmethod
    def _for_seal(
        cls, recipients: Mapping[OrgId, KeyBundle], values: Mapping[str, object]
    ) -> Header:
        """The header ``seal`` makes: every value from the caller parsed as the constructor
        parses it, and every rule between fields checked; the recipients and their key
        fingerprints are taken from the key bundles, which checked their organisation and
        computed their fingerprint when they were made (and ``_check_parties`` matched each
        bundle to its recipient), rather than parsed a second time."""
        names = tuple(sorted(recipients))
        _check_recipient_count(names)
        header = object.__new__(cls)
        for name, parse in _CALLER_FIELDS:
            object.__setattr__(header, name, parse(values[name]))
        object.__setattr__(header, "recipients", names)
        keys = {org: recipients[org].fingerprint for org in names}
        object.__setattr__(header, "recipient_keys", types.MappingProxyType(keys))
        header._check_rules()
        return header


# --- envelope -----------------------------------------------------------------------------


def _check_body(body: object) -> bytes:
    if not isinstance(body, bytes) or not MIN_BODY_BYTES <= len(body) <= MAX_BODY_BYTES:
        raise ValidationError(f"body must be {MIN_BODY_BYTES} to {MAX_BODY_BYTES} bytes")
    return body


def _check_sig(sig: object) -> bytes:
    if not isinstance(sig, bytes) or len(sig) != SIGNATURE_BYTES:
        raise ValidationError(f"sig must be {SIGNATURE_BYTES} bytes")
    return sig


def _check_wrapped_keys(value: object, recipients: tuple[OrgId, ...]) -> Mapping[OrgId, bytes]:
    """``keys`` naming exactly ``recipients``, each of the wrapped-key size, in their order."""
    keys = _as_object(value, "keys")
    if set(keys) != set(recipients):
        raise ValidationError("keys must name exactly the header's recipients")
    checked: dict[OrgId, bytes] = {}
    for recipient in recipients:
        blob = keys[recipient]
        if not isinstance(blob, bytes) or len(blob) != WRAPPED_KEY_BYTES:
            raise ValidationError(f"a wrapped key must be {WRAPPED_KEY_BYTES} bytes")
        checked[recipient] = blob
    return types.MappingProxyType(checked)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A sealed envelope. Built from typed values, ``__post_init__`` checks it;
    ``from_wire`` parses each part once and checks the same rules itself."""

    header: Header
    body: bytes  # nonce (24) || XChaCha20-Poly1305 ciphertext and tag
    keys: Mapping[OrgId, bytes]  # recipient -> HPKE enc || sealed content key
    sig: bytes  # Ed25519 over signed_digest()

    def __post_init__(self) -> None:
        """Check the sizes and that ``keys`` names exactly the header's recipients."""
        if not isinstance(self.header, Header):
            raise ValidationError("header must be a Header")
        object.__setattr__(self, "body", _check_body(self.body))
        object.__setattr__(self, "sig", _check_sig(self.sig))
        object.__setattr__(self, "keys", _check_wrapped_keys(self.keys, self.header.recipients))

    def _keys_wire(self) -> dict[str, str]:
        return {r: b64e(blob) for r, blob in self.keys.items()}

    def signed_digest(self) -> bytes:
        """SHA-256 over the framed header, body and keys: what the sender signs."""
        return _signed_digest(self.header.canonical(), self.body, self._keys_wire())

    def to_wire(self) -> dict[str, Any]:
        return {
            "header": self.header.to_wire(),
            "body": b64e(self.body),
            "keys": self._keys_wire(),
            "sig": b64e(self.sig),
        }

    def canonical(self) -> bytes:
        """The envelope's one byte form: what the hub stores and hands out (checked when
        made, as the header's)."""
        return _dumps(self.to_wire())

    @classmethod
    def from_wire(cls, data: object) -> Envelope:
        """Parse an envelope object, each part once: ``EncodingError`` for a wrong shape or
        bad base64url, ``ValidationError`` for a broken rule (sizes, recipients, header rules)."""
        obj = _as_object(data, "envelope")
        _check_keys(obj, _ENVELOPE_KEYS, frozenset(), "envelope")
        header = Header.from_wire(obj["header"])
        body = b64d(obj["body"], max_len=MAX_BODY_BYTES)
        keys_obj = _as_object(obj["keys"], "keys")
        keys = {OrgId(r): b64d(blob, max_len=WRAPPED_KEY_BYTES) for r, blob in keys_obj.items()}
        sig = b64d(obj["sig"], max_len=SIGNATURE_BYTES)
        envelope = object.__new__(cls)  # every part is set and checked below, not twice
        object.__setattr__(envelope, "header", header)
        object.__setattr__(envelope, "body", _check_body(body))
        object.__setattr__(envelope, "sig", _check_sig(sig))
        object.__setattr__(envelope, "keys", _check_wrapped_keys(keys, header.recipients))
        return envelope

    @property
    def fingerprint(self) -> Fingerprint:
        """SHA-256 of the canonical wire form: what idempotency compares."""
        return Fingerprint(fingerprint(self.canonical()))


@dataclass(frozen=True, slots=True)
class Encoded:
    """An envelope with its canonical bytes, their fingerprint and the digest its sender
    signed, each computed once."""

    envelope: Envelope
    wire: bytes
    fingerprint: Fingerprint
    signed_digest: bytes


def encode(envelope: Envelope) -> Encoded:
    """``envelope`` with its canonical bytes, fingerprint and signed digest, computed once."""
    wire = envelope.canonical()
    return Encoded(envelope, wire, Fingerprint(fingerprint(wire)), envelope.signed_digest())


def parse_encoded(data: object) -> Encoded:
    """Parse an envelope's wire object (strict JSON, as ``loads_strict`` gives it) once:
    the envelope, and its canonical bytes, fingerprint and signed digest taken from ``data``
    itself rather than by encoding the envelope again.

    Sound because ``Envelope.from_wire`` accepts a wire object only when every part of it
    is already the envelope's own wire form (exactly its fields, base64url canonical,
    lists sorted and unique, every text checked against its pattern, integers bounded):
    so ``data`` equals ``envelope.to_wire()`` and has a canonical JSON form, and the same
    holds for its header and keys. Raises as ``Envelope.from_wire`` does.
    """
    envelope = Envelope.from_wire(data)
    parts = cast(Mapping[str, object], data)  # from_wire refused anything but an object
    wire = _dumps(parts)
    signed = _signed_digest(_dumps(parts["header"]), envelope.body, envelope._keys_wire())
    return Encoded(envelope, wire, Fingerprint(fingerprint(wire)), signed)


def _dumps(value: object) -> bytes:
    """canonical_json without its check: for values checked when they were made or parsed."""
    return canonical_json_unchecked(value)


def _signed_digest(header: bytes, body: bytes, keys_wire: Mapping[str, str]) -> bytes:
    """``header``: the header's canonical bytes; ``keys_wire``: checked wrapped keys."""
    return digest(LABEL_SIGNATURE, header, body, _keys_json(keys_wire))


def _keys_json(keys_wire: Mapping[str, str]) -> bytes:
    """The canonical JSON of ``{recipient: base64url}``, written out directly: organisation
    ids and base64url need no escaping, so sorted keys and no whitespace are all there is
    (the same bytes as ``canonical_json``; tests/protocol checks it)."""
    return _text_object(keys_wire).encode("ascii")


def _text_object(texts: Mapping[_Text, str]) -> str:
    """JSON of an object of texts that need no escaping (ids, base64url), keys sorted."""
    return "{" + ",".join(f'"{key}":"{texts[key]}"' for key in sorted(texts)) + "}"


def _text_list(texts: tuple[str, ...]) -> str:
    """JSON of a list of texts that need no escaping (ids, pseudonyms)."""
    return "[" + ",".join(f'"{text}"' for text in texts) + "]"


def _body_aad(header: bytes) -> bytes:
    """``header``: the header's canonical bytes."""
    return frame(LABEL_BODY, header)


def _key_info(header: Header, recipient: OrgId) -> bytes:
    parts = (header.id, recipient, header.recipient_keys[recipient], header.sender)
    return frame(LABEL_KEY, *(part.encode("utf-8") for part in parts))


# --- seal, verify, open -------------------------------------------------------------------


def new_message_id(rng: Rng) -> MessageId:
    """A fresh message id: 16 bytes from ``rng`` as unpadded base64url.

    Never one that starts with ``-`` (one in 64 would): a command line would take it for
    an option. The first six bits 62 become 30 (``e``), which costs under 0.03 bits of
    the 128; ids that others made with a leading ``-`` stay valid.
    """
    raw = bytearray(_draw(rng, MESSAGE_ID_BYTES))
    if raw[0] >> 2 == 62:  # base64url's "-"
        raw[0] ^= 0x80
    return parse_message_id(b64e(bytes(raw)))


def _check_parties(
    network: NetworkId,
    sender: Certificate,
    sender_key: Ed25519PrivateKey,
    recipients: Mapping[OrgId, KeyBundle],
) -> None:
    if sender.network != network:
        raise ValidationError("the sender certificate is for another network")
    _check_signing_key(sender_key, sender)
    for org, bundle in recipients.items():
        if bundle.org != org or bundle.network != network:
            raise ValidationError("a recipient key bundle is for another organisation or network")


# Signing keys found to match a certificate's public key: key object -> that public key
# object. Private keys hash and compare by identity and public keys are immutable, so a hit
# is the very pair checked before. Bounded: a process signs with a key or two.
_MATCHED_KEYS: dict[Ed25519PrivateKey, Ed25519PublicKey] = {}
_MAX_MATCHED_KEYS = 16


def _check_signing_key(sender_key: Ed25519PrivateKey, sender: Certificate) -> None:
    """ValidationError unless ``sender_key`` is the key of ``sender``; deriving its public
    key is done once per key and certificate, not on every seal."""
    if _MATCHED_KEYS.get(sender_key) is sender.public_key:
        return
    if sender_key.public_key() != sender.public_key:  # compares the raw bytes
        raise ValidationError("the signing key does not match the sender certificate")
    if len(_MATCHED_KEYS) >= _MAX_MATCHED_KEYS:
        _MATCHED_KEYS.clear()
    _MATCHED_KEYS[sender_key] = sender.public_key


def seal(
    *,
    message_id: MessageId,
    network: NetworkId,
    sender: Certificate,
    sender_key: Ed25519PrivateKey,
    recipients: Mapping[OrgId, KeyBundle],
    kind: str,
    payload: bytes,
    pseudonyms: tuple[Pseudonym, ...] = (),
    status: str | None = None,
    ref: MessageId | None = None,
    case: CaseRef | None = None,
    prev: Mapping[OrgId, MessageId] | None = None,
    created: int,
    rng: Rng,
) -> Envelope:
    """Encrypt ``payload`` to ``recipients`` (org -> verified key bundle) and sign it.

    ``rng`` supplies the content key (32 bytes, drawn first) and the nonce
    (24 bytes, drawn second). Raises ``ValidationError`` on a bad argument.
    """
    _check_parties(network, sender, sender_key, recipients)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValidationError(f"payload must be at most {MAX_PAYLOAD_BYTES} bytes")
    values = {
        "v": VERSION,
        "id": message_id,
        "network": network,
        "sender": sender.org,
        "kind": kind,
        "pseudonyms": pseudonyms,
        "status": status,
        "ref": ref,
        "case": case,
        "prev": prev or None,
        "created": created,
        "sender_cert": sender.fingerprint,
    }
    header = Header._for_seal(recipients, values)
    content_key = _draw(rng, CONTENT_KEY_BYTES)
    header_bytes = header.canonical()  # once: the body's associated data and the signature
    body = _encrypt_body(header_bytes, payload, content_key, _draw(rng, NONCE_BYTES))
    keys = _wrap_keys(header, recipients, content_key)
    keys_wire: dict[str, str] = {org: b64e(blob) for org, blob in keys.items()}
    sig = sender_key.sign(_signed_digest(header_bytes, body, keys_wire))
    # Every part was made just above, of the checked sizes: assembled without checking again.
    envelope = object.__new__(Envelope)
    object.__setattr__(envelope, "header", header)
    object.__setattr__(envelope, "body", body)
    object.__setattr__(envelope, "keys", types.MappingProxyType(keys))
    object.__setattr__(envelope, "sig", sig)
    return envelope


def _encrypt_body(header: bytes, payload: bytes, content_key: bytes, nonce: bytes) -> bytes:
    sealed: bytes = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        payload, _body_aad(header), nonce, content_key
    )
    return nonce + sealed


def _wrap_keys(
    header: Header, recipients: Mapping[OrgId, KeyBundle], content_key: bytes
) -> dict[OrgId, bytes]:
    return {
        org: keybundle.SUITE.encrypt(
            content_key, recipients[org].hpke_public_key(), info=_key_info(header, org)
        )
        for org in header.recipients
    }


def verify_signature(envelope: Envelope | Encoded, sender_public_key: Ed25519PublicKey) -> None:
    """Raise VerificationError unless the sender's signature holds (what the hub checks).

    An :class:`Encoded` envelope brings its signed digest, computed when it was parsed.
    """
    if isinstance(envelope, Encoded):
        sig, signed = envelope.envelope.sig, envelope.signed_digest
    else:
        sig, signed = envelope.sig, envelope.signed_digest()
    try:
        sender_public_key.verify(sig, signed)
    except InvalidSignature:
        raise VerificationError("the envelope signature does not verify") from None


def _open(
    envelope: Envelope,
    recipient: OrgId,
    kem_keys: Mapping[Fingerprint, hpke.MLKEM768X25519PrivateKey],
    sender: Certificate,
) -> bytes:
    header = envelope.header
    if recipient not in header.recipients:
        raise OpenError
    if (sender.org, sender.network, sender.fingerprint) != (
        header.sender,
        header.network,
        header.sender_cert,
    ):
        raise OpenError
    header_bytes = header.canonical()  # once: the signature and the body's associated data
    signed = _signed_digest(header_bytes, envelope.body, envelope._keys_wire())
    sender.public_key.verify(envelope.sig, signed)  # InvalidSignature: one OpenError below
    private_key = kem_keys[header.recipient_keys[recipient]]
    info = _key_info(header, recipient)
    content_key = keybundle.SUITE.decrypt(envelope.keys[recipient], private_key, info=info)
    nonce, ciphertext = envelope.body[:NONCE_BYTES], envelope.body[NONCE_BYTES:]
    payload: bytes = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
        ciphertext, _body_aad(header_bytes), nonce, content_key
    )
    return payload


def open_envelope(
    envelope: Envelope,
    *,
    recipient: OrgId,
    kem_keys: Mapping[Fingerprint, hpke.MLKEM768X25519PrivateKey],
    sender: Certificate,
) -> bytes:
    """Verify and decrypt; raise OpenError (one message) on any failure.

    ``sender`` is the sender's certificate, already verified against the root
    and CRL by the caller; its fingerprint must equal ``header.sender_cert``.
    ``kem_keys`` maps the recipient's bundle fingerprints to private keys, so
    messages sealed to an older bundle still open while its key is kept.
    """
    try:
        payload: bytes | None = _open(envelope, recipient, kem_keys, sender)
    except Exception:
        # Deliberately broad, and raised outside the handler so that the OpenError
        # carries neither a cause nor a context telling which check failed.
        payload = None
    if payload is None:
        raise OpenError()
    return payload
