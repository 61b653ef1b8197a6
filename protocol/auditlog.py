"""The verifiable access log: entries, signed tree heads, and proofs from stored subtrees.

Entries are the leaves of an RFC 9162 Merkle tree (``protocol.merkle``): the leaf
of entry ``e`` is ``merkle.leaf_hash(e.canonical())``. A version 1 entry holds every
field in its canonical form. A version 2 entry holds, instead of its personal fields
(``PERSONAL_FIELDS``: user, purpose text, pseudonyms, source address), a salted
commitment to them, ``personal = SHA-256(frame(PERSONAL_LABEL, salt,
canonical_json(personal fields)))``; the fields and the 32-byte salt travel beside it as
its *opening*, until they are erased. Erasing the opening leaves the leaf, and with it
every proof, as it was. The hub stores, besides
each leaf, the hash of every *perfect* subtree (a node at ``level`` L and
``index`` i covers leaves ``[i * 2**L, (i + 1) * 2**L)``), so that roots and
proofs for any tree size come from O(log n) stored nodes (``needed_*`` tells
which, ``*_from_nodes`` computes from them).

A signed tree head is ``{"v":1,"network","size","root","time","hub_cert","sig"}``;
the hub's certified log-signing key (role ``hub``) signs
``frame("schakel/tree-head/v1", canonical_json(all fields but "sig"))``.

Errors: ``EncodingError`` for input of the wrong shape (not an object, other keys,
a JSON type that does not fit, bad base64url); ``ValidationError`` for a value that
breaks a rule (and for bad arguments to the node functions, a missing node included);
``VerificationError`` for a tree head or consistency proof that does not verify.
Messages name the field and the rule, never the value.
"""

from __future__ import annotations

import binascii
import hmac
import ipaddress
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import pairwise
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import merkle
from protocol.certificate import ROLE_HUB, ROLES, Certificate
from protocol.encoding import (
    MAX_SAFE_INT,
    b64d,
    b64e,
    canonical_json,
    canonical_json_unchecked,
    digest,
    frame,
)
from protocol.errors import EncodingError, ValidationError, VerificationError
from protocol.pseudonym import parse_pseudonym
from protocol.types import (
    Fingerprint,
    NetworkId,
    parse_case_ref,
    parse_fingerprint,
    parse_message_id,
    parse_network_id,
    parse_org_id,
)

ENTRY_VERSION = 1  # the version without a commitment (old entries)
ENTRY_VERSION_2 = 2  # personal fields behind a salted commitment
ENTRY_VERSIONS = (ENTRY_VERSION, ENTRY_VERSION_2)
PERSONAL_LABEL = "schakel/audit-personal/v1"
SALT_BYTES = 32
ERASED = "erased"
TREE_HEAD_LABEL = "schakel/tree-head/v1"

# NEN 7513 action codes.
ACTIONS: tuple[str, ...] = (
    "create", "read", "list", "acknowledge", "update", "delete", "merge", "split",
    "export", "login", "login-failed",
)  # fmt: skip
OUTCOMES: tuple[str, ...] = ("allowed", "denied")
OBJECT_TYPES: tuple[str, ...] = ("message", "inbox", "directory", "audit", "auth", "case")
# Purpose of use: a fixed vocabulary; free text may follow (purpose_text).
PURPOSES: tuple[str, ...] = (
    "signal-intake",          # receiving and assessing signals
    "case-coordination",      # the coordinator linking signals and following a case
    "referral",               # referring a person to care or support
    "care-delivery",          # providing the care or shelter referred for
    "legal-support",          # legal aid to the person
    "audit",                  # a privacy officer checking the access log
    "data-subject-request",   # answering a person's request about their data
    "incident-investigation", # investigating a suspected breach or misuse
    "system-administration",  # operating the network (keys, directory)
)  # fmt: skip
MAX_USER_CHARS = 64
MAX_PURPOSE_TEXT_CHARS = 200
MAX_OBJECT_IDS = 200
MAX_PSEUDONYMS = 32

TREE_HEAD_VERSION = 1
# Indexes and sizes travel in canonical JSON, whose integers stop at 2**53 - 1.
MAX_TREE_SIZE = MAX_SAFE_INT
MAX_TIME = 2**40
SIG_BYTES = 64

_USER = re.compile(r"[\x21-\x7e]{1,64}")
_REASON = re.compile(r"[a-z0-9-]{1,64}")
_REQUEST_ID = re.compile(r"[0-9a-f-]{1,64}")
_MAX_ADDRESS_CHARS = 45  # the longest IPv6 text form (IPv4-mapped, uncompressed)
_ENTRY_KEYS = frozenset(
    {
        "v", "index", "time", "action", "outcome", "reason", "org", "user", "role",
        "purpose", "purpose_text", "object_type", "object_ids", "pseudonyms", "source",
        "request_id",
    }
)  # fmt: skip
# Personal data in NEN 7513 / GDPR terms: who the user is, what they wrote about why,
# which persons (pseudonyms) the request was about, and the address it came from.
PERSONAL_FIELDS = ("user", "purpose_text", "pseudonyms", "source")
_ENTRY_KEYS_2 = (_ENTRY_KEYS - frozenset(PERSONAL_FIELDS)) | {"personal"}
_SORTED_KEYS = tuple(sorted(_ENTRY_KEYS))
_SORTED_KEYS_2 = tuple(sorted(_ENTRY_KEYS_2))
_OPENING_KEYS = frozenset({"salt", *PERSONAL_FIELDS})
_ERASURE_KEYS = frozenset({"time", "reason", "entry"})
_ENTRY_INTS = ("v", "index", "time")
_ENTRY_LISTS = ("object_ids", "pseudonyms")
_HEAD_KEYS = frozenset({"v", "network", "size", "root", "time", "hub_cert", "sig"})


# --- small checks -------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_in(value: object, low: int, high: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"{name} must be an integer in {low}..{high}")
    return value


def _code(value: object, allowed: tuple[str, ...], name: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValidationError(f"{name} must be one of {', '.join(allowed)}")
    return value


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (``n >= 2``), as in RFC 9162."""
    return 1 << ((n - 1).bit_length() - 1)


def _match(value: object, pattern: re.Pattern[str], name: str, rule: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValidationError(f"{name} must be {rule}")
    return value


def check_user(value: object) -> str:
    """A user id as organisations send it (``Schakel-User``); ValidationError otherwise."""
    rule = f"1..{MAX_USER_CHARS} printable ASCII characters without spaces"
    return _match(value, _USER, "user", rule)


# Characters that can corrupt or disguise an export, as a fixed list so that every version
# of every implementation agrees on which stored entries are well formed: C0 and C1
# controls, surrogates, zero-width and bidirectional formatting, the line and paragraph
# separators, the byte-order mark, the interlinear annotation and object characters, and
# the tag characters.
_NEVER_IN_TEXT_CHARS = (
    "\x00-\x1f\x7f-\x9f\ud800-\udfff\u061c\u180e\u200b-\u200f\u2028-\u202e"
    "\u2060-\u206f\ufeff\ufff9-\ufffc\U000e0000-\U000e007f"
)
_NEVER_IN_TEXT = re.compile(f"[{_NEVER_IN_TEXT_CHARS}]")


def _check_text_shape(value: object) -> str:
    """The version-stable rule every stored purpose text obeys (see ``_NEVER_IN_TEXT``)."""
    if not isinstance(value, str):
        raise ValidationError("purpose text must be a string")
    if not 1 <= len(value) <= MAX_PURPOSE_TEXT_CHARS:
        raise ValidationError(f"purpose text must be 1..{MAX_PURPOSE_TEXT_CHARS} characters")
    if _NEVER_IN_TEXT.search(value):
        raise ValidationError("purpose text contains a control, format or separator character")
    return value


def check_purpose_text(value: object) -> str:
    """Free purpose text as an organisation sends it; ValidationError naming the rule.

    Stricter than what a stored entry must obey: at the edge, every character of Unicode
    category C (including unassigned ones) and the line and paragraph separators are
    refused. A stored entry is only checked against a fixed list (``_check_text_shape``),
    because which code points are unassigned depends on the Unicode version of whoever
    checks, and a verifier must not reject an entry that a newer hub accepted.
    """
    text = _check_text_shape(value)
    for char in text:
        category = unicodedata.category(char)
        if category[0] == "C" or category in ("Zl", "Zp"):
            raise ValidationError(
                "purpose text contains a control, format, separator or unassigned character"
            )
    return text


# The validators below depend on the text alone; an access log repeats the same few roles,
# addresses and object ids, so each answer is kept (bounded; failures too: both are pure).
_REMEMBERED = 4096


def _check_role(value: object, name: str) -> None:
    if not isinstance(value, str) or not _role_ok(value):
        rule = "a sorted, comma-separated list of distinct certificate roles"
        raise ValidationError(f"{name} must be {rule}")


@lru_cache(maxsize=_REMEMBERED)
def _role_ok(value: str) -> bool:
    if len(value) > 200:
        return False
    parts = value.split(",")
    return all(part in ROLES for part in parts) and parts == sorted(set(parts))


def _check_source(value: object, name: str) -> None:
    """An IPv4 or IPv6 address as ``ipaddress`` parses it, kept as given; no zone id."""
    if not isinstance(value, str) or not _source_ok(value):
        raise ValidationError(f"{name} must be an IPv4 or IPv6 address without zone")


@lru_cache(maxsize=_REMEMBERED)
def _source_ok(value: str) -> bool:
    if len(value) > _MAX_ADDRESS_CHARS or not value.isascii() or "%" in value:
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _check_object_id(value: object) -> None:
    if not isinstance(value, str) or not _object_id_ok(value):
        raise ValidationError("every object id must be a message id, an org id or a case reference")


@lru_cache(maxsize=_REMEMBERED)
def _object_id_ok(value: str) -> bool:
    # A case reference also has the form of an org id; it is named for the reader.
    for parse in (parse_message_id, parse_case_ref, parse_org_id):
        try:
            parse(value)
            return True
        except ValidationError:
            continue
    return False


def _sorted_unique(value: object, limit: int, name: str) -> tuple[str, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ValidationError(f"{name} must be a list of strings")
    items = tuple(value)
    if len(items) > limit:
        raise ValidationError(f"{name} may hold at most {limit} items")
    if not all(isinstance(item, str) for item in items):
        raise ValidationError(f"{name} must be a list of strings")
    if any(a >= b for a, b in pairwise(items)):
        raise ValidationError(f"{name} must be sorted and without duplicates")
    return items


# --- the personal part of a version 2 entry ------------------------------------------------


def commit_personal(
    salt: bytes,
    *,
    user: str | None,
    purpose_text: str | None,
    pseudonyms: Sequence[str],
    source: str | None,
) -> bytes:
    """``SHA-256(frame(PERSONAL_LABEL, salt, canonical_json(personal fields)))``."""
    if not isinstance(salt, bytes) or len(salt) != SALT_BYTES:
        raise ValidationError(f"the salt of an audit entry must be {SALT_BYTES} bytes")
    fields = {
        "user": user,
        "purpose_text": purpose_text,
        "pseudonyms": list(pseudonyms),
        "source": source,
    }
    return digest(PERSONAL_LABEL, salt, canonical_json(fields))


def _commitment(salt: bytes, fields: dict[str, Any]) -> bytes:
    """:func:`commit_personal` of an entry's own fields, which its constructor validated
    (every text valid Unicode): the same bytes without walking them again."""
    return digest(PERSONAL_LABEL, salt, canonical_json_unchecked(fields))


@dataclass(frozen=True, slots=True)
class Erasure:
    """Why and when the opening of a version 2 entry was erased.

    Wire form ``{"time", "reason", "entry"}``: the time of the erasure (integer seconds),
    a slug naming why (``retention``, ``erasure-request``, ...), and the index of the
    access-log entry that records the erasure (``null`` when none was named).
    """

    time: int
    reason: str
    entry: int | None = None

    def __post_init__(self) -> None:
        _int_in(self.time, 0, MAX_TIME, "erasure time")
        _match(self.reason, _REASON, "erasure reason", "1..64 of [a-z0-9-]")
        if self.entry is not None:
            _int_in(self.entry, 0, MAX_TREE_SIZE - 1, "erasure entry")

    def to_wire(self) -> dict[str, Any]:
        return {"entry": self.entry, "reason": self.reason, "time": self.time}

    @classmethod
    def from_wire(cls, data: object) -> Erasure:
        if not isinstance(data, dict) or set(data) != _ERASURE_KEYS:
            raise EncodingError("erasure must be an object with keys time, reason, entry")
        if not _is_int(data["time"]) or not isinstance(data["reason"], str):
            raise EncodingError("erasure time must be an integer and reason a string")
        if data["entry"] is not None and not _is_int(data["entry"]):
            raise EncodingError("erasure entry must be an integer or null")
        return cls(time=data["time"], reason=data["reason"], entry=data["entry"])


# --- entries ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One access, as NEN 7513 asks: who, in which role, did what, to what, why, when, from where.

    Wire form of version 1: a JSON object with exactly these keys (``null`` for absent
    strings, ``[]`` for empty lists): ``v``, ``index``, ``time``, ``action``, ``outcome``,
    ``reason``, ``org``, ``user``, ``role``, ``purpose``, ``purpose_text``,
    ``object_type``, ``object_ids``, ``pseudonyms``, ``source``, ``request_id``.

    Version 2 replaces the personal fields (``PERSONAL_FIELDS``) with ``personal``, the
    base64url commitment to them (:func:`commit_personal`); that is its canonical form,
    the bytes the leaf covers. Beside those keys its wire form carries ``opening``:
    either ``{"salt", "user", "purpose_text", "pseudonyms", "source"}``, or the string
    ``"erased"`` together with ``erasure`` (:class:`Erasure`). On a version 2 value the
    personal attributes hold the opening (``None`` and ``()`` once erased), ``salt`` its
    salt. Whether the opening matches the commitment is checked by
    :meth:`verify_opening`, as the leaf is checked against a signed head: by a verifier.

    Validated on construction: codes from the vocabularies above; ``user`` printable ASCII
    without spaces (1..64); ``purpose_text`` 1..200 characters with no character of
    Unicode category C (control, format such as bidi marks, surrogates, private use,
    unassigned) and no line or paragraph separator; ``object_ids`` sorted unique
    (message ids, org ids or case references, at most 200); ``pseudonyms`` sorted unique
    (``protocol.pseudonym.parse_pseudonym``, at most 32); ``reason`` a slug; ``source``
    an IP address text; ``request_id`` 1..64 of ``[0-9a-f-]``.
    """

    index: int
    time: int
    action: str
    outcome: str
    reason: str | None
    org: str | None
    user: str | None
    role: str | None
    purpose: str | None
    purpose_text: str | None
    object_type: str
    object_ids: tuple[str, ...]
    pseudonyms: tuple[str, ...]
    source: str | None
    request_id: str | None
    v: int = ENTRY_VERSION
    personal: bytes | None = None  # version 2: the commitment to the personal fields
    salt: bytes | None = None  # version 2 with its opening: the commitment's salt
    erasure: Erasure | None = None  # version 2 without it: why and when it went

    def __post_init__(self) -> None:
        if not _is_int(self.v) or self.v not in ENTRY_VERSIONS:
            raise ValidationError("audit entry version must be 1 or 2")
        _int_in(self.index, 0, MAX_TREE_SIZE - 1, "entry index")
        _int_in(self.time, 0, MAX_TIME, "entry time")
        _code(self.action, ACTIONS, "action")
        _code(self.outcome, OUTCOMES, "outcome")
        _code(self.object_type, OBJECT_TYPES, "object type")
        self._check_who()
        self._check_what()
        if self.v == ENTRY_VERSION:
            if self.personal is not None or self.salt is not None or self.erasure is not None:
                raise ValidationError("a version 1 audit entry has no commitment or opening")
        else:
            self._check_opening()

    def _check_who(self) -> None:
        if self.reason is not None:
            _match(self.reason, _REASON, "reason", "1..64 of [a-z0-9-]")
        if self.org is not None:
            parse_org_id(self.org)
        if self.user is not None:
            check_user(self.user)
        if self.role is not None:
            _check_role(self.role, "role")
        if self.purpose is not None:
            _code(self.purpose, PURPOSES, "purpose")
        if self.purpose_text is not None:
            _check_text_shape(self.purpose_text)
        if self.source is not None:
            _check_source(self.source, "source")
        if self.request_id is not None:
            _match(self.request_id, _REQUEST_ID, "request id", "1..64 of [0-9a-f-]")

    def _check_what(self) -> None:
        object_ids = _sorted_unique(self.object_ids, MAX_OBJECT_IDS, "object ids")
        for item in object_ids:
            _check_object_id(item)
        pseudonyms = _sorted_unique(self.pseudonyms, MAX_PSEUDONYMS, "pseudonyms")
        for item in pseudonyms:
            parse_pseudonym(item)
        object.__setattr__(self, "object_ids", object_ids)
        object.__setattr__(self, "pseudonyms", pseudonyms)

    def _check_opening(self) -> None:
        if not isinstance(self.personal, bytes) or len(self.personal) != merkle.HASH_BYTES:
            raise ValidationError(
                f"a version 2 audit entry's commitment is {merkle.HASH_BYTES} bytes"
            )
        if self.erasure is not None:
            if not isinstance(self.erasure, Erasure):
                raise ValidationError("an audit entry's erasure must be an Erasure")
            if self.salt is not None or any(self._personal_values().values()):
                raise ValidationError("an erased audit entry holds no salt or personal field")
            return
        self._salt()

    def verify_opening(self) -> None:
        """VerificationError unless this version 2 entry's opening matches its commitment.

        Nothing to check for version 1 (every field is in the leaf) or once erased. Parsing
        does not check it, as parsing a version 1 entry does not check its leaf: a
        verifier checks both (the opening here, the leaf against a signed head)."""
        if self.v == ENTRY_VERSION or self.erasure is not None:
            return
        fields = self._personal_values()
        fields["pseudonyms"] = list(self.pseudonyms)
        expected = _commitment(self._salt(), fields)
        if not hmac.compare_digest(expected, self.personal or b""):
            raise VerificationError(
                f"the opening of audit entry {self.index} does not match its commitment"
            )

    def _salt(self) -> bytes:
        if not isinstance(self.salt, bytes) or len(self.salt) != SALT_BYTES:
            raise ValidationError("a version 2 audit entry has a 32-byte salt or an erasure")
        return self.salt

    def _personal_values(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "purpose_text": self.purpose_text,
            "pseudonyms": self.pseudonyms,
            "source": self.source,
        }

    @property
    def erased(self) -> bool:
        """True for a version 2 entry whose personal fields were erased."""
        return self.erasure is not None

    def without_opening(self, erasure: Erasure) -> AuditEntry:
        """This version 2 entry as it is once its opening is erased (same leaf)."""
        if self.v != ENTRY_VERSION_2:
            raise ValidationError("only a version 2 audit entry can shed its personal fields")
        return replace(
            self, user=None, purpose_text=None, pseudonyms=(), source=None, salt=None,
            erasure=erasure,
        )  # fmt: skip

    def canonical(self) -> bytes:
        """The bytes the leaf hash covers: version 1 every field, version 2 the public
        fields and ``personal`` (never the opening). The constructor validated every
        field (codes, slugs, ids, addresses, texts without surrogates, integers in range),
        so the canonical encoder runs without walking the value again."""
        return canonical_json_unchecked(self._canonical_wire())

    def leaf(self) -> bytes:
        """``merkle.leaf_hash(self.canonical())``."""
        return merkle.leaf_hash(self.canonical())

    def _canonical_wire(self) -> dict[str, Any]:
        """The canonical keys in sorted order (the order :func:`exported_leaf` reads)."""
        if self.v == ENTRY_VERSION:
            wire = {key: getattr(self, key) for key in _SORTED_KEYS}
        else:
            wire = {key: getattr(self, key) for key in _SORTED_KEYS_2}
            wire["personal"] = b64e(self.personal or b"")
        wire["object_ids"] = list(self.object_ids)
        if "pseudonyms" in wire:
            wire["pseudonyms"] = list(self.pseudonyms)
        return wire

    def opening_wire(self) -> dict[str, Any] | str | None:
        """Version 2: the opening's wire form, or ``"erased"``; version 1: None."""
        if self.v == ENTRY_VERSION:
            return None
        if self.erasure is not None:
            return ERASED
        opening = {**self._personal_values(), "salt": b64e(self._salt()),
                   "pseudonyms": list(self.pseudonyms)}  # fmt: skip
        return {key: opening[key] for key in sorted(opening)}

    def to_wire(self) -> dict[str, Any]:
        """The canonical keys and, for version 2, ``opening`` (and ``erasure``) beside them;
        every object's keys in sorted order, so that an export line written without
        ``sort_keys`` is still in the one order :func:`exported_leaf` reads."""
        wire = self._canonical_wire()
        if self.v == ENTRY_VERSION_2:
            wire["opening"] = self.opening_wire()
            if self.erasure is not None:
                wire["erasure"] = self.erasure.to_wire()
            wire = {key: wire[key] for key in sorted(wire)}
        return wire

    @classmethod
    def from_wire(cls, data: object) -> AuditEntry:
        """Parse the wire form strictly: exactly the keys, JSON types that fit, every rule
        (not whether an opening matches its commitment: :meth:`verify_opening`)."""
        if isinstance(data, dict) and data.get("v") == ENTRY_VERSION_2:
            return _from_wire_2(data)
        if not isinstance(data, dict) or set(data) != _ENTRY_KEYS:
            raise EncodingError("audit entry must be an object with exactly the entry keys")
        for key, value in data.items():
            if not _fits(key, value):
                raise EncodingError(f"audit entry field {key} has the wrong JSON type")
        fields = {key: data[key] for key in _ENTRY_KEYS}
        for key in _ENTRY_LISTS:
            fields[key] = tuple(fields[key])
        return cls(**fields)


def _from_wire_2(data: dict[str, Any]) -> AuditEntry:
    erased = data.get("opening") == ERASED
    expected = _ENTRY_KEYS_2 | ({"opening", "erasure"} if erased else {"opening"})
    if set(data) != expected:
        raise EncodingError(
            "a version 2 audit entry must be an object with exactly its keys and an opening"
        )
    fields = {key: data[key] for key in _ENTRY_KEYS_2 - {"personal"}}
    for key, value in fields.items():
        if not _fits(key, value):
            raise EncodingError(f"audit entry field {key} has the wrong JSON type")
    fields["object_ids"] = tuple(fields["object_ids"])
    personal = b64d(data["personal"], max_len=merkle.HASH_BYTES)
    if erased:
        erasure = Erasure.from_wire(data["erasure"])
        return AuditEntry(
            **fields, user=None, purpose_text=None, pseudonyms=(), source=None,
            personal=personal, erasure=erasure,
        )  # fmt: skip
    opening = data["opening"]
    if not isinstance(opening, dict) or set(opening) != _OPENING_KEYS:
        raise EncodingError("an audit entry's opening must be an object with exactly its keys")
    for key in PERSONAL_FIELDS:
        if not _fits(key, opening[key]):
            raise EncodingError(f"audit entry opening field {key} has the wrong JSON type")
    salt = b64d(opening["salt"], max_len=SALT_BYTES)
    return AuditEntry(
        **fields, user=opening["user"], purpose_text=opening["purpose_text"],
        pseudonyms=tuple(opening["pseudonyms"]), source=opening["source"],
        personal=personal, salt=salt,
    )  # fmt: skip


def seal_entry(
    *,
    index: int,
    time: int,
    action: str,
    outcome: str,
    reason: str | None,
    org: str | None,
    user: str | None,
    role: str | None,
    purpose: str | None,
    purpose_text: str | None,
    object_type: str,
    object_ids: tuple[str, ...],
    pseudonyms: tuple[str, ...],
    source: str | None,
    request_id: str | None,
    salt: bytes,
) -> AuditEntry:
    """A version 2 entry committing to its personal fields with ``salt`` (32 random bytes,
    from the caller: this module never reads the random source)."""
    personal = commit_personal(
        salt, user=user, purpose_text=purpose_text, pseudonyms=pseudonyms, source=source
    )
    return AuditEntry(
        index=index, time=time, action=action, outcome=outcome, reason=reason, org=org,
        user=user, role=role, purpose=purpose, purpose_text=purpose_text,
        object_type=object_type, object_ids=object_ids, pseudonyms=pseudonyms, source=source,
        request_id=request_id, v=ENTRY_VERSION_2, personal=personal, salt=salt,
    )  # fmt: skip


def _fits(key: str, value: object) -> bool:
    if key in _ENTRY_INTS:
        return _is_int(value)
    if key in _ENTRY_LISTS:
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    if key in ("action", "outcome", "object_type"):
        return isinstance(value, str)
    return value is None or isinstance(value, str)


# --- a version 2 entry read straight from its exported text -------------------------------


def _passes(parse: Callable[[str], object]) -> Callable[[str], bool]:
    """``parse`` as a remembered yes or no (it depends on the text alone)."""

    @lru_cache(maxsize=_REMEMBERED)
    def passes(value: str) -> bool:
        try:
            parse(value)
        except ValidationError:
            return False
        return True

    return passes


_org_ok = _passes(parse_org_id)
_pseudonym_ok = _passes(parse_pseudonym)

# The one sorted, compact text of a version 2 entry (``to_wire`` in JSON without spaces), for
# :func:`exported_leaf`. Every string in it is matched only when JSON writes it without an
# escape (no quote, backslash or control character; beyond ASCII only as the character), so
# every value is written exactly as the canonical encoder writes it. Patterns check what
# they can; the rest is checked after the match, by the same checks as the constructor's.
_ANY = r'[^"\\\x00-\x1f]'  # a character JSON writes as itself
_STRINGS = rf'((?:"{_ANY}*"(?:,"{_ANY}*")*)?)'  # a list of strings, without its brackets
_B64_32 = r'"([A-Za-z0-9_-]{42}[AEIMQUYcgkosw048])"'  # 32 bytes, canonical (as in b64d)
_COUNT = r"(0|[1-9][0-9]{0,15})"  # no sign, no leading zero; the range is checked after
_OBJECT_ID = r'"(?:[A-Za-z0-9_-]{21}[AQgw]|[a-z0-9][a-z0-9-]{0,30}[a-z0-9])"'  # message or slug


def _one_of(codes: tuple[str, ...]) -> str:
    return '"(?:' + "|".join(map(re.escape, codes)) + ')"'


def _or_null(pattern: str) -> str:
    return f"(?:null|{pattern})"


_EXPORTED_2 = re.compile(
    "".join(
        (
            '{"action":', _one_of(ACTIONS), ",",
            '("erasure":{"entry":', _or_null(_COUNT), ',"reason":"[a-z0-9-]{1,64}"',
            ',"time":', _COUNT, "},)?",
            '"index":', _COUNT, ",",
            rf'"object_ids":\[((?:{_OBJECT_ID}(?:,{_OBJECT_ID})*)?)\],',
            '"object_type":', _one_of(OBJECT_TYPES), ",",
            '("opening":(?:"erased"|',
            r'({"pseudonyms":\[', _STRINGS, r"\],",
            '"purpose_text":', _or_null(f'"[^"\\\\{_NEVER_IN_TEXT_CHARS}]{{1,200}}"'), ",)",
            '"salt":', _B64_32, ",",
            '("source":', _or_null(f'"({_ANY}*)"'), ",",
            '"user":', _or_null(r'"[!#-\[\]-~]{1,64}"'), "})),)",
            '"org":', _or_null(f'"({_ANY}*)"'), ",",
            '"outcome":', _one_of(OUTCOMES), ",",
            '"personal":', _B64_32, ",",
            '"purpose":', _or_null(_one_of(PURPOSES)), ",",
            '"reason":', _or_null('"[a-z0-9-]{1,64}"'), ",",
            '"request_id":', _or_null('"[0-9a-f-]{1,64}"'), ",",
            '"role":', _or_null(f'"({_ANY}*)"'), ",",
            '"time":', _COUNT, ',"v":2}',
        )
    )
)  # fmt: skip


def exported_leaf(text: bytes) -> tuple[int, bytes, bool] | None:
    """``(index, leaf, erased)`` of a version 2 entry whose wire form is ``text``, exactly as
    ``to_wire`` in compact JSON writes it (keys sorted, no escapes), when it obeys every
    rule of :meth:`AuditEntry.from_wire` and its opening, unless erased, matches its
    commitment; None otherwise, and then the caller parses it with ``from_wire`` (which
    says what is wrong; or accepts an entry written another way).

    The cheap way to verify an exported entry: one match over the text instead of a parse,
    and no second encoding, because such a text *is* the canonical form with the opening
    (and erasure) beside it: the leaf covers the text without them, and the commitment the
    opening without its salt."""
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        return None
    match = _EXPORTED_2.fullmatch(decoded)
    if match is None:
        return None
    (erasure, erased_entry, erased_time, index_text, object_ids, _opening, fields, pseudonyms,
     salt, more_fields, source, org, personal, role, time) = match.groups()  # fmt: skip
    index = int(index_text)
    if (
        index >= MAX_TREE_SIZE
        or int(time) > MAX_TIME
        or (erasure is None) != (salt is not None)
        or not _sorted_strings(object_ids, MAX_OBJECT_IDS, None)
        or (org is not None and not _org_ok(org))
        or (role is not None and not _role_ok(role))
    ):
        return None
    if erasure is None:
        if not (
            _sorted_strings(pseudonyms, MAX_PSEUDONYMS, _pseudonym_ok)
            and (source is None or _source_ok(source))
            and _opens(salt, fields + more_fields, personal)
        ):
            return None
    elif int(erased_time) > MAX_TIME or (
        erased_entry is not None and int(erased_entry) >= MAX_TREE_SIZE
    ):
        return None
    opening_start, opening_end = match.span(6)
    before = decoded[:opening_start]
    if erasure is not None:
        erasure_start, erasure_end = match.span(1)
        before = decoded[:erasure_start] + decoded[erasure_end:opening_start]
    canonical = (before + decoded[opening_end:]).encode("utf-8")
    return index, merkle.leaf_hash(canonical), erasure is not None


def _sorted_strings(items: str, limit: int, check: Callable[[str], bool] | None) -> bool:
    """The strings of a matched list (``"a","b"``, no brackets) sorted, unique, at most
    ``limit`` of them, each passing ``check``: the rule of ``_sorted_unique``."""
    if not items:
        return True
    if '","' not in items:  # one string (no string matched holds a quote)
        return check is None or check(items[1:-1])
    values = items[1:-1].split('","')
    return (
        len(values) <= limit
        and all(a < b for a, b in pairwise(values))
        and (check is None or all(map(check, values)))
    )


def _opens(salt: str, fields: str, personal: str) -> bool:
    """Whether ``fields`` (the canonical JSON of the personal fields) with ``salt`` make the
    commitment ``personal`` (both canonical base64url of 32 bytes)."""
    salt_bytes = binascii.a2b_base64(salt.encode("ascii").translate(_FROM_URLSAFE) + b"=")
    expected = digest(PERSONAL_LABEL, salt_bytes, fields.encode("utf-8"))
    return hmac.compare_digest(b64e(expected), personal)


_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


# --- tree heads ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TreeHead:
    network: NetworkId
    size: int
    root: bytes  # 32 bytes
    time: int
    hub_cert: Fingerprint  # the certificate of the key that signed
    sig: bytes
    v: int = 1

    def __post_init__(self) -> None:
        if not _is_int(self.v) or self.v != TREE_HEAD_VERSION:
            raise ValidationError(f"tree head version must be {TREE_HEAD_VERSION}")
        parse_network_id(self.network)
        _int_in(self.size, 0, MAX_TREE_SIZE, "tree size")
        _int_in(self.time, 0, MAX_TIME, "tree head time")
        parse_fingerprint(self.hub_cert)
        if not isinstance(self.root, bytes) or len(self.root) != merkle.HASH_BYTES:
            raise ValidationError(f"tree head root must be {merkle.HASH_BYTES} bytes")
        if not isinstance(self.sig, bytes) or len(self.sig) != SIG_BYTES:
            raise ValidationError(f"tree head signature must be {SIG_BYTES} bytes")
        if self.size == 0 and self.root != merkle.EMPTY_ROOT:
            raise ValidationError("the root of an empty tree must be SHA-256 of nothing")

    def _unsigned(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "network": self.network,
            "size": self.size,
            "root": b64e(self.root),
            "time": self.time,
            "hub_cert": self.hub_cert,
        }

    def signed_bytes(self) -> bytes:
        """``frame(TREE_HEAD_LABEL, canonical_json(wire form without "sig"))``."""
        return frame(TREE_HEAD_LABEL, canonical_json(self._unsigned()))

    def to_wire(self) -> dict[str, Any]:
        return {**self._unsigned(), "sig": b64e(self.sig)}

    @classmethod
    def from_wire(cls, data: object) -> TreeHead:
        """Parse the wire form strictly (exact keys, JSON types, canonical base64url)."""
        if not isinstance(data, dict) or set(data) != _HEAD_KEYS:
            raise EncodingError("tree head must be an object with exactly the tree head keys")
        if not all(_is_int(data[key]) for key in ("v", "size", "time")):
            raise EncodingError("tree head v, size and time must be integers")
        if not isinstance(data["network"], str) or not isinstance(data["hub_cert"], str):
            raise EncodingError("tree head network and hub_cert must be strings")
        return cls(
            network=NetworkId(data["network"]),
            size=data["size"],
            root=b64d(data["root"], max_len=merkle.HASH_BYTES),
            time=data["time"],
            hub_cert=Fingerprint(data["hub_cert"]),
            sig=b64d(data["sig"], max_len=SIG_BYTES),
            v=data["v"],
        )


def sign_tree_head(
    key: Ed25519PrivateKey, hub_cert: Certificate, *, size: int, root: bytes, time: int
) -> TreeHead:
    """Sign ``(size, root, time)`` with the hub's key; ``hub_cert`` must certify it as hub."""
    if ROLE_HUB not in hub_cert.roles:
        raise ValidationError("tree heads are signed with a certificate holding the hub role")
    if key.public_key() != hub_cert.public_key:
        raise ValidationError("signing key is not the key of the hub certificate")
    unsigned = TreeHead(
        network=hub_cert.network,
        size=size,
        root=root,
        time=time,
        hub_cert=hub_cert.fingerprint,
        sig=bytes(SIG_BYTES),
    )
    return replace(unsigned, sig=key.sign(unsigned.signed_bytes()))


def verify_tree_head(head: TreeHead, hub_cert: Certificate) -> None:
    """VerificationError unless ``hub_cert`` (already verified against the root, role hub,
    same network, fingerprint == head.hub_cert) signed ``head``."""
    if ROLE_HUB not in hub_cert.roles:
        raise VerificationError("tree head certificate does not hold the hub role")
    if hub_cert.network != head.network:
        raise VerificationError("tree head is for another network than the hub certificate")
    if not hmac.compare_digest(hub_cert.fingerprint.encode(), head.hub_cert.encode()):
        raise VerificationError("tree head names another certificate than the hub's")
    try:
        hub_cert.public_key.verify(head.sig, head.signed_bytes())
    except InvalidSignature as exc:
        raise VerificationError("tree head signature does not verify") from exc


def check_consistent(old: TreeHead, new: TreeHead, proof: Sequence[bytes]) -> None:
    """VerificationError unless ``new`` extends ``old`` (same network; sizes; a valid
    consistency proof, or equal roots when the sizes are equal). Signatures are checked
    by the caller with verify_tree_head."""
    if old.network != new.network:
        raise VerificationError("tree heads are for different networks")
    if new.size < old.size:
        raise VerificationError("the new tree head is smaller than the old one")
    if old.size == new.size and not hmac.compare_digest(old.root, new.root):
        raise VerificationError("two tree heads of the same size have different roots (fork)")
    if old.size == 0:
        if len(proof):
            raise VerificationError("a consistency proof from the empty tree must be empty")
        return
    merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)


# -- proofs from stored perfect subtrees ---------------------------------------------------

Node = tuple[int, int]  # (level, index)
Range = tuple[int, int]  # leaves [lo, hi)


def nodes_to_store(size_before: int) -> list[Node]:
    """The perfect subtrees that appending leaf number ``size_before`` completes, lowest
    first: always (0, size_before), then (1, i), (2, j)... while they close."""
    _int_in(size_before, 0, MAX_TREE_SIZE - 1, "tree size before the append")
    size_after = size_before + 1
    nodes: list[Node] = []
    level = 0
    while size_after % (1 << level) == 0:
        nodes.append((level, (size_after >> level) - 1))
        level += 1
    return nodes


def needed_for_root(size: int) -> list[Node]:
    """The stored nodes ``root_from_nodes(size, ...)`` reads (none for the empty tree)."""
    _int_in(size, 0, MAX_TREE_SIZE, "tree size")
    return _nodes_for([(0, size)] if size else [])


def needed_for_inclusion(index: int, size: int) -> list[Node]:
    """The stored nodes ``inclusion_from_nodes(index, size, ...)`` reads."""
    return _nodes_for(_inclusion_ranges(index, size))


def needed_for_consistency(old_size: int, new_size: int) -> list[Node]:
    """The stored nodes ``consistency_from_nodes(old_size, new_size, ...)`` reads."""
    return _nodes_for(_consistency_ranges(old_size, new_size))


def root_from_nodes(size: int, nodes: Mapping[Node, bytes]) -> bytes:
    """``merkle.root_hash`` of the first ``size`` leaves, from stored nodes."""
    _int_in(size, 0, MAX_TREE_SIZE, "tree size")
    return _range_hash(0, size, nodes) if size else merkle.EMPTY_ROOT


def inclusion_from_nodes(index: int, size: int, nodes: Mapping[Node, bytes]) -> list[bytes]:
    """``merkle.inclusion_proof(index, leaves[:size])``, from stored nodes."""
    return [_range_hash(lo, hi, nodes) for lo, hi in _inclusion_ranges(index, size)]


def consistency_from_nodes(
    old_size: int, new_size: int, nodes: Mapping[Node, bytes]
) -> list[bytes]:
    """``merkle.consistency_proof(old_size, leaves[:new_size])``, from stored nodes."""
    return [_range_hash(lo, hi, nodes) for lo, hi in _consistency_ranges(old_size, new_size)]


def _inclusion_ranges(index: int, size: int) -> list[Range]:
    """The leaf ranges whose hashes form ``PATH(index, D[0:size])``, in proof order."""
    _int_in(size, 1, MAX_TREE_SIZE, "tree size")
    _int_in(index, 0, size - 1, "leaf index")
    ranges: list[Range] = []
    lo, hi = 0, size
    while hi - lo > 1:  # walk down; the proof lists siblings leaf first, so reverse at the end
        mid = lo + _split(hi - lo)
        if index < mid:
            ranges.append((mid, hi))
            hi = mid
        else:
            ranges.append((lo, mid))
            lo = mid
    return ranges[::-1]


def _consistency_ranges(old_size: int, new_size: int) -> list[Range]:
    """The leaf ranges whose hashes form ``PROOF(old_size, D[0:new_size])``, in order."""
    _int_in(new_size, 1, MAX_TREE_SIZE, "new tree size")
    _int_in(old_size, 1, new_size, "old tree size")
    if old_size == new_size:
        return []
    ranges: list[Range] = []
    lo, hi, m, complete = 0, new_size, old_size, True
    while m != hi - lo:  # SUBPROOF of RFC 9162 2.1.4.1, unrolled; siblings reversed at the end
        k = _split(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        ranges.append((lo, hi))
    return ranges[::-1]


def _range_nodes(lo: int, hi: int) -> list[Node]:
    """The perfect subtrees, left to right, whose right fold is the hash of ``[lo, hi)``.

    Every range the RFC 9162 recursion meets is a perfect aligned subtree (one node) or
    has ``lo`` aligned to a power of two at least ``hi - lo``, so the binary
    decomposition of ``hi - lo`` from the largest power down gives aligned subtrees.
    """
    nodes: list[Node] = []
    rest = hi - lo
    while rest:
        level = rest.bit_length() - 1
        nodes.append((level, lo >> level))
        lo += 1 << level
        rest -= 1 << level
    return nodes


def _nodes_for(ranges: list[Range]) -> list[Node]:
    return sorted({node for lo, hi in ranges for node in _range_nodes(lo, hi)})


def _range_hash(lo: int, hi: int, nodes: Mapping[Node, bytes]) -> bytes:
    parts = [_node(node, nodes) for node in _range_nodes(lo, hi)]
    result = parts[-1]
    for part in reversed(parts[:-1]):
        result = merkle.node_hash(part, result)
    return result


def _node(node: Node, nodes: Mapping[Node, bytes]) -> bytes:
    value = nodes.get(node)
    if value is None:
        raise ValidationError(f"missing node (level {node[0]}, index {node[1]})")
    if not isinstance(value, bytes) or len(value) != merkle.HASH_BYTES:
        raise ValidationError(f"node (level {node[0]}, index {node[1]}) is not a 32-byte hash")
    return value
