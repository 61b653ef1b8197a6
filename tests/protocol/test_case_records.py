"""protocol/cases.py against tests/vectors/cases.json (written by hand from
docs/protocol.md, "Cases"): states, clustering, and every record on the wire."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from protocol import cases
from protocol.cases import Held, place, state_of
from protocol.errors import FieldError
from protocol.types import CaseRef

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "cases.json").read_text("utf-8"))


def _reader(vector: dict[str, Any]) -> Callable[[Any], Any]:
    name = vector["record"]
    parse = getattr(cases, f"{name}_from_wire")
    if name == "event_page":
        return lambda wire: parse(wire, after=vector["after"])
    return parse  # type: ignore[no-any-return]


def _wire(record: Any) -> Any:
    if isinstance(record, tuple):  # a referral list is a tuple of open referrals
        return {"referrals": [item.to_wire() for item in record]}
    return record.to_wire()


@pytest.mark.parametrize("vector", VECTORS["state_of"], ids=lambda v: str(v["referrals"]))
def test_state_of(vector: dict[str, Any]) -> None:
    assert state_of(vector["referrals"]) == vector["state"]


@pytest.mark.parametrize("vector", VECTORS["place"], ids=lambda v: v["name"])
def test_place(vector: dict[str, Any]) -> None:
    holding = {CaseRef(ref): Held(*held) for ref, held in vector["holding"].items()}
    apart = {frozenset(pair) for pair in vector["kept_apart"]}
    found = place(holding, apart, target=vector["target"])
    assert (found.case, list(found.merge), list(found.apart)) == (
        vector["case"],
        vector["merge"],
        vector["apart"],
    )


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["record"])
def test_valid_records_round_trip(vector: dict[str, Any]) -> None:
    record = _reader(vector)(vector["wire"])
    assert _wire(record) == vector["wire"]
    assert _reader(vector)(_wire(record)) == record


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["where"])
def test_invalid_records_name_the_field_never_the_value(vector: dict[str, Any]) -> None:
    with pytest.raises(FieldError) as caught:
        _reader(vector)(vector["wire"])
    assert caught.value.where == vector["where"]
    assert "<script>" not in str(caught.value)


def test_a_summary_made_of_its_parts_reads_back() -> None:
    wire = VECTORS["valid"][0]["wire"]["cases"][0]
    page = cases.case_page_from_wire({"cases": [wire], "total": 1})
    summary = page.cases[0]
    rebuilt = cases.CaseSummary.of(summary.case, summary.orgs, dict(summary.referrals))
    assert rebuilt.to_wire() == wire


@pytest.mark.parametrize("body", [None, [], "x", {"cases": "x", "total": 0}, {"total": 0}])
def test_not_a_case_list(body: Any) -> None:
    with pytest.raises(FieldError):
        cases.case_page_from_wire(body)


def test_a_page_longer_than_asked_is_refused() -> None:
    wire = VECTORS["valid"][0]["wire"]
    with pytest.raises(FieldError) as caught:
        cases.case_page_from_wire(wire, limit=0)
    assert caught.value.where == "cases"
