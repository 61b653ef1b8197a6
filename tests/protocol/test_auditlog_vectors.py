"""tests/vectors/auditlog.json: reproduced by its generator, and checked through the public API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from protocol import errors, merkle
from protocol.auditlog import AuditEntry, Erasure
from protocol.encoding import canonical_json, digest, loads_strict

VECTORS_DIR = Path(__file__).resolve().parents[1] / "vectors"
VECTORS = json.loads((VECTORS_DIR / "auditlog.json").read_text("utf-8"))


def test_the_file_is_what_its_generator_writes() -> None:
    sys.path.insert(0, str(VECTORS_DIR))
    try:
        import gen_auditlog
    finally:
        sys.path.remove(str(VECTORS_DIR))
    assert json.loads(json.dumps(gen_auditlog.generate())) == VECTORS


@pytest.mark.parametrize("case", VECTORS["entries"], ids=lambda c: c["name"])
def test_valid_entries_parse_to_their_canonical_form_and_leaf(case: dict[str, Any]) -> None:
    entry = AuditEntry.from_wire(loads_strict(json.dumps(case["wire"]).encode()))
    entry.verify_opening()
    assert entry.canonical().decode("utf-8") == case["canonical"]
    assert merkle.leaf_hash(case["canonical"].encode("utf-8")).hex() == case["leaf"]
    assert entry.leaf().hex() == case["leaf"]
    assert entry.to_wire() == case["wire"]
    canonical = json.loads(case["canonical"])
    if entry.v == 1:
        assert canonical == case["wire"]
        return
    # the leaf covers the public fields and the commitment, never the opening
    assert "opening" not in canonical and "user" not in canonical
    assert canonical["personal"] == case["wire"]["personal"]
    if case["P"] is not None:
        salt = entry.salt or b""
        expected = digest("schakel/audit-personal/v1", salt, case["P"].encode("utf-8"))
        assert expected.hex() == case["personal"]
        assert canonical_json(json.loads(case["P"])).decode("utf-8") == case["P"]
    else:
        assert entry.erased and entry.to_wire()["opening"] == "erased"
        assert isinstance(entry.erasure, Erasure)


def test_the_erased_entry_has_the_leaf_it_had_with_its_opening() -> None:
    leaves = [bytes.fromhex(c["leaf"]) for c in VECTORS["entries"]]
    assert merkle.root_hash(leaves).hex() == VECTORS["tree"]["root"]
    case = VECTORS["entries"][3]
    before = AuditEntry.from_wire(case["before"])
    before.verify_opening()
    assert not before.erased and before.user is not None
    assert before.leaf().hex() == case["leaf"]
    erased = AuditEntry.from_wire(case["wire"])
    assert erased.erasure is not None
    assert before.without_opening(erased.erasure) == erased


@pytest.mark.parametrize("case", VECTORS["invalid"], ids=lambda c: c["why"])
def test_invalid_entries_are_refused_with_their_error(case: dict[str, Any]) -> None:
    with pytest.raises(getattr(errors, case["error"])):
        AuditEntry.from_wire(case["wire"])


@pytest.mark.parametrize("case", VECTORS["tampered"], ids=lambda c: c["why"])
def test_a_tampered_opening_parses_and_fails_verification(case: dict[str, Any]) -> None:
    entry = AuditEntry.from_wire(case["wire"])
    assert entry.leaf().hex() == VECTORS["entries"][1]["leaf"]  # the leaf does not see it
    with pytest.raises(errors.VerificationError, match="does not match its commitment"):
        entry.verify_opening()
