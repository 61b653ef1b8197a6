"""``exported_leaf``: a version 2 entry checked straight from its exported text.

It may only ever say yes where parsing the entry (``AuditEntry.from_wire`` after the
strict parser) and checking its opening says yes, with the same index and leaf; for
anything else it says None and the caller takes the long way, which names the fault.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from protocol.auditlog import AuditEntry, Erasure, exported_leaf, seal_entry
from protocol.encoding import loads_strict
from protocol.errors import ProtocolError
from protocol.pseudonym import parse_pseudonym
from protocol.types import case_ref_from

MESSAGE = "AAAAAAAAAAAAAAAAAAAAAQ"
CASE = case_ref_from(bytes(range(10)))
P1 = parse_pseudonym("bsn.1." + "a" * 52)
P2 = parse_pseudonym("tel.3." + "b7" * 25 + "aq")


def _sealed(index: int = 7, **changes: Any) -> AuditEntry:
    fields: dict[str, Any] = {
        "index": index, "time": 1_795_000_000 + index, "action": "read",
        "outcome": "allowed", "reason": None, "org": "coordinator", "user": "user-1",
        "role": "coordinator,member", "purpose": "case-coordination",
        "purpose_text": "weekly review of open cases", "object_type": "message",
        "object_ids": (MESSAGE,), "pseudonyms": (), "source": "127.0.0.1",
        "request_id": f"{index:032x}", "salt": bytes(range(32)),
    }  # fmt: skip
    return seal_entry(**(fields | changes))


ENTRIES = [
    _sealed(),
    _sealed(0, pseudonyms=tuple(sorted((P1, P2))), object_ids=tuple(sorted((MESSAGE, CASE)))),
    _sealed(2**53 - 2, time=2**40),
    _sealed(3, org=None, user=None, role=None, purpose=None, purpose_text=None, source=None,
            request_id=None, outcome="denied", reason="not-found", object_ids=()),
    _sealed(4, purpose_text="überprüfung der akte ✓", source="2001:db8::1", user='a"b'),
    _sealed(5, purpose_text="a \"quote\" and a \\ backslash"),
    _sealed(6, object_ids=("coordinator", "police"), object_type="directory"),
    _sealed(8).without_opening(Erasure(time=1_800_000_000, reason="retention", entry=12)),
    _sealed(9).without_opening(Erasure(time=0, reason="erasure-request")),
]  # fmt: skip


def _text(entry: AuditEntry, *, ascii_only: bool = False) -> bytes:
    wire = entry.to_wire()
    return json.dumps(wire, separators=(",", ":"), ensure_ascii=ascii_only).encode("utf-8")


def _long_way(text: bytes) -> tuple[int, bytes, bool] | None:
    """What parsing the entry and checking its opening says."""
    try:
        entry = AuditEntry.from_wire(loads_strict(text))
        entry.verify_opening()
    except ProtocolError:
        return None
    return entry.index, entry.leaf(), entry.erased


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: f"entry-{e.index}")
def test_an_entry_as_written_gives_its_index_and_leaf(entry: AuditEntry) -> None:
    text = _text(entry)
    if "\\" in text.decode():  # a value JSON escapes: the long way
        assert exported_leaf(text) is None
    else:
        assert exported_leaf(text) == (entry.index, entry.leaf(), entry.erased)
    assert _long_way(text) == (entry.index, entry.leaf(), entry.erased)


def test_other_spellings_of_the_same_entry_take_the_long_way() -> None:
    entry = ENTRIES[4]
    wire = entry.to_wire()
    others = [
        _text(entry, ascii_only=True),  # escaped beyond ASCII
        json.dumps(wire, separators=(", ", ":")).encode(),  # spaces
        json.dumps(dict(reversed(wire.items())), separators=(",", ":")).encode(),  # order
    ]
    for text in others:
        assert exported_leaf(text) is None
        assert _long_way(text) == (entry.index, entry.leaf(), False)


def _edited(entry: AuditEntry, **changes: Any) -> bytes:
    wire = entry.to_wire() | changes
    return json.dumps(wire, separators=(",", ":"), ensure_ascii=False).encode()


def _opening(entry: AuditEntry, **changes: Any) -> dict[str, Any]:
    opening = entry.to_wire()["opening"]
    assert isinstance(opening, dict)
    return {key: (opening | changes)[key] for key in sorted(opening)}


@pytest.mark.parametrize(
    "text",
    [
        _edited(ENTRIES[0], opening=_opening(ENTRIES[0], user="mallory")),  # commitment
        _edited(ENTRIES[0], opening=_opening(ENTRIES[0], salt="A" * 43)),
        _edited(ENTRIES[0], personal="A" * 43),
        _edited(ENTRIES[0], index=2**53 - 1),  # out of range
        _edited(ENTRIES[0], time=2**40 + 1),
        _edited(ENTRIES[0], v=1),
        _edited(ENTRIES[0], role="member,coordinator"),  # not sorted
        _edited(ENTRIES[0], role="admin"),
        _edited(ENTRIES[0], org="Police"),
        _edited(ENTRIES[0], object_ids=[MESSAGE, MESSAGE]),
        _edited(ENTRIES[0], object_ids=["AAAAAAAAAAAAAAAAAAAAAB"]),  # not canonical
        _edited(ENTRIES[0], object_ids=[f"org-{i:03d}" for i in range(201)]),
        _edited(ENTRIES[1], opening=_opening(ENTRIES[1], pseudonyms=[P2, P1])),
        _edited(ENTRIES[1], opening=_opening(ENTRIES[1], pseudonyms=["bsn.1.abc"])),
        _edited(ENTRIES[0], opening=_opening(ENTRIES[0], source="127.0.0.1%eth0")),
        _edited(ENTRIES[0], opening=_opening(ENTRIES[0], source="999.0.0.1")),
        _edited(ENTRIES[0], opening=_opening(ENTRIES[0], purpose_text="a\u202eb")),
        _edited(ENTRIES[0], opening=_opening(ENTRIES[0], purpose_text="")),
        _edited(ENTRIES[0], opening=_opening(ENTRIES[0], purpose_text="x" * 201)),
        _edited(ENTRIES[0], opening="erased"),  # erased without an erasure
        _edited(ENTRIES[7], opening=_opening(ENTRIES[0])),  # an erasure beside an opening
        _edited(ENTRIES[7], erasure={"entry": 2**53 - 1, "reason": "x", "time": 0}),
        _edited(ENTRIES[7], erasure={"entry": None, "reason": "x", "time": 2**40 + 1}),
        _edited(ENTRIES[0], extra=1),  # an unknown key
        _text(ENTRIES[0]).replace(b'"org"', b'"action":"read","org"'),  # a duplicate key
        _text(ENTRIES[0]).replace(b'"index":7', b'"index":07'),
        _text(ENTRIES[0]).replace(b'"index":7', b'"index":-7'),
        _text(ENTRIES[0]).replace(b'"index":7', b'"index":7.0'),
        _text(ENTRIES[0]) + b" ",
    ],
)
def test_what_is_wrong_is_left_to_the_long_way(text: bytes) -> None:
    assert exported_leaf(text) is None


def test_no_changed_byte_is_accepted_that_the_long_way_refuses() -> None:
    """Every single-byte change, deletion and insertion over several entries: wherever the
    cheap check says yes, parsing says yes too, with the same index and leaf."""
    rng = random.Random(13)
    alphabet = b'"\\{}[],:0123456789abcdefnulrsAQgw-_. \x00\x1f\x7f\xc3\xa9'
    accepted = 0
    for entry in ENTRIES:
        text = _text(entry)
        for _ in range(1500):
            at = rng.randrange(len(text))
            byte = bytes([rng.choice(alphabet)])
            match rng.randrange(3):
                case 0:
                    changed = text[:at] + byte + text[at + 1 :]
                case 1:
                    changed = text[:at] + text[at + 1 :]
                case _:
                    changed = text[:at] + byte + text[at:]
            found = exported_leaf(changed)
            if found is not None:
                accepted += 1
                assert found == _long_way(changed), changed
    assert accepted > 0  # some changes keep an entry valid (a digit of the time, say)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: f"entry-{e.index}")
def test_the_wire_form_is_in_the_one_order_read_cheaply(entry: AuditEntry) -> None:
    """The hub writes export lines without sorting keys: to_wire itself must give them in
    sorted order, the opening's and the erasure's too, or no line of it is read cheaply."""
    wire = entry.to_wire()
    assert list(wire) == sorted(wire)
    for part in (wire["opening"], wire.get("erasure")):
        if isinstance(part, dict):
            assert list(part) == sorted(part)
    assert json.dumps(wire, separators=(",", ":")) == json.dumps(
        wire, separators=(",", ":"), sort_keys=True
    )
