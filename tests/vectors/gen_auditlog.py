"""Access-log entry vectors: version 1, version 2 with its opening, version 2 erased.

``generate()`` is deterministic: the salts are ``SHA-256("salt <i>")``. Sections:

* ``entries``: valid entries, each with its wire object, the canonical form (text, the
  bytes the leaf covers), the leaf hash (hex) and, for version 2, the commitment's input
  ``P`` (text) and ``personal`` (hex); the erased entry also its wire object before the
  erasure (``before``), whose leaf is the same;
* ``tree``: the root (hex) of the entries' leaves, as in a log, before and after the
  erasure (the same);
* ``invalid``: wire objects a parser must refuse, with the error class
  (``EncodingError`` or ``ValidationError``) and what is wrong;
* ``tampered``: wire objects that parse but whose opening does not match its commitment
  (``VerificationError`` from ``AuditEntry.verify_opening``).
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from protocol import merkle
from protocol.auditlog import AuditEntry, Erasure, seal_entry
from protocol.encoding import canonical_json

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
PSEUDONYMS = ("bsn.1." + "a" * 52, "tel.1." + "b" * 51 + "q")
FIELDS: dict[str, Any] = {
    "time": T0,
    "action": "read",
    "outcome": "allowed",
    "reason": None,
    "org": "ggd-utrecht",
    "user": "j.jansen",
    "role": "coordinator,member",
    "purpose": "case-coordination",
    "purpose_text": "Onderzoek naar één signaal",
    "object_type": "message",
    "object_ids": ("AAAAAAAAAAAAAAAAAAAAAA",),
    "pseudonyms": PSEUDONYMS,
    "source": "192.0.2.10",
    "request_id": "0f1e",
}


def _salt(i: int) -> bytes:
    return hashlib.sha256(f"salt {i}".encode()).digest()


def _case(name: str, entry: AuditEntry) -> dict[str, Any]:
    case: dict[str, Any] = {
        "name": name,
        "wire": entry.to_wire(),
        "canonical": entry.canonical().decode("utf-8"),
        "leaf": entry.leaf().hex(),
    }
    if entry.v == 2:
        personal = {
            "pseudonyms": list(entry.pseudonyms),
            "purpose_text": entry.purpose_text,
            "source": entry.source,
            "user": entry.user,
        }
        case["personal"] = (entry.personal or b"").hex()
        case["P"] = None if entry.erased else canonical_json(personal).decode("utf-8")
    return case


def _entries() -> tuple[list[AuditEntry], AuditEntry]:
    v1 = AuditEntry(index=0, **FIELDS)
    opened = seal_entry(index=1, **FIELDS, salt=_salt(1))
    bare = seal_entry(
        index=2, **{**FIELDS, "user": None, "purpose_text": None, "pseudonyms": ()},
        salt=_salt(2),
    )  # fmt: skip
    gone = seal_entry(index=3, **FIELDS, salt=_salt(3))
    erased = gone.without_opening(Erasure(time=T0 + 86400, reason="retention", entry=4))
    return [v1, opened, bare, erased], gone


def _invalid(opened: dict[str, Any], erased: dict[str, Any]) -> list[dict[str, Any]]:
    def change(base: dict[str, Any], why: str, error: str, **edits: Any) -> dict[str, Any]:
        wire = copy.deepcopy(base)
        for key, value in edits.items():
            if value is ...:
                del wire[key]
            else:
                wire[key] = value
        return {"why": why, "error": error, "wire": wire}

    opening = opened["opening"]
    return [
        change(opened, "no opening", "EncodingError", opening=...),
        change(opened, "a personal field in the public part", "EncodingError", user="x"),
        change(
            opened,
            "opening lacks the salt",
            "EncodingError",
            opening={k: v for k, v in opening.items() if k != "salt"},
        ),
        change(
            opened,
            "salt of 31 bytes",
            "ValidationError",
            opening={**opening, "salt": "A" * 41 + "Q"},
        ),
        change(opened, "salt not base64url", "EncodingError", opening={**opening, "salt": "!"}),
        change(opened, "commitment of 31 bytes", "ValidationError", personal="A" * 41 + "Q"),
        change(opened, "opening is another string", "EncodingError", opening="gone"),
        change(
            opened,
            "unsorted pseudonyms in the opening",
            "ValidationError",
            opening={**opening, "pseudonyms": opening["pseudonyms"][::-1]},
        ),
        change(opened, "version 3", "EncodingError", v=3),
        change(erased, "erased without erasure", "EncodingError", erasure=...),
        change(opened, "erasure beside an opening", "EncodingError", erasure=erased["erasure"]),
        change(
            erased,
            "erasure reason not a slug",
            "ValidationError",
            erasure={**erased["erasure"], "reason": "Retention"},
        ),
        change(
            erased,
            "erasure entry not an integer",
            "EncodingError",
            erasure={**erased["erasure"], "entry": "4"},
        ),
    ]


def _tampered(opened: dict[str, Any]) -> list[dict[str, Any]]:
    opening = opened["opening"]
    return [
        {"why": "user changed", "wire": {**opened, "opening": {**opening, "user": "mallory"}}},
        {"why": "a pseudonym dropped",
         "wire": {**opened, "opening": {**opening, "pseudonyms": opening["pseudonyms"][:1]}}},
        {"why": "another salt",
         "wire": {**opened, "opening": {**opening, "salt": "A" * 43}}},
    ]  # fmt: skip


def generate() -> dict[str, Any]:
    entries, before = _entries()
    cases = [
        _case(n, e) for n, e in zip(("v1", "v2", "v2-empty", "v2-erased"), entries, strict=True)
    ]
    cases[3]["before"] = before.to_wire()
    return {
        "description": "protocol.auditlog entries; docs/protocol.md, Entry version 2",
        "entries": cases,
        "tree": {"root": merkle.root_hash([e.leaf() for e in entries]).hex()},
        "invalid": _invalid(cases[1]["wire"], cases[3]["wire"]),
        "tampered": _tampered(cases[1]["wire"]),
    }
