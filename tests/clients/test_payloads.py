"""The signal payload schema and the payload helpers."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from clients.errors import PayloadInvalid
from clients.payloads import (
    decode_payload,
    encode_payload,
    identity_of,
    schema_of,
    summary_of,
    validate_payload,
)

SECRET_NAME = "Zwaantje-Marker"


def full_signal() -> dict[str, Any]:
    return {
        "schema": "schakel.signal/1",
        "person": {
            "bsn": "111222333",
            "given_names": "Anna Maria",
            "family_name": "van der Berg",
            "date_of_birth": "2001-02-03",
            "document_number": "NX1234567",
            "document_country": "NLD",
            "phone": "+31 6 12345678",
            "sex": "female",
            "nationality": "RO",
            "age_estimate": 23,
        },
        "exploitation": "labour",
        "indicators": ["work.no_payment", "housing.at_workplace", "control.documents_withheld"],
        "text": "Seen at the back door of a nail salon.",
        "urgency": "high",
        "reporter": {
            "name": "J. Jansen",
            "role": "inspector",
            "phone": "+31201234567",
            "email": "j.jansen@example.org",
        },
        "consent_to_share": False,
        "observed_at": "2025-05-01",
    }


def minimal_signal() -> dict[str, Any]:
    return {
        "schema": "schakel.signal/1",
        "person": {},
        "exploitation": "unknown",
        "urgency": "normal",
        "consent_to_share": True,
    }


def test_full_and_minimal_signals_are_valid() -> None:
    validate_payload("signal", full_signal())
    validate_payload("signal", minimal_signal())


def test_schema_is_draft_2020_12_and_closed_everywhere() -> None:
    schema = schema_of("signal")
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object":
                assert node.get("additionalProperties") is False
            if node.get("type") == "string":
                assert "maxLength" in node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)


def test_indicator_codes_are_grouped() -> None:
    codes = schema_of("signal")["properties"]["indicators"]["items"]["enum"]
    groups = {code.split(".")[0] for code in codes}
    assert 6 <= len(groups) <= 8
    assert len(codes) >= 30
    assert {"control.documents_withheld", "debt.debt_bondage", "sexual.many_clients"} <= set(codes)


def _mutated(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = full_signal()
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "where", "says"),
    [
        (("schema",), "schakel.signal/2", "$.schema", 'must be "schakel.signal/1"'),
        (("consent_to_share",), _DELETE, "$.consent_to_share", "is required"),
        (("consent_to_share",), "yes", "$.consent_to_share", "must be of type boolean"),
        (("exploitation",), "fraud", "$.exploitation", "must be one of"),
        (("urgency",), "asap", "$.urgency", "must be one of"),
        (("indicators",), ["work.no_payment", "work.too_much_fun"], "$.indicators[1]", "one of"),
        (("indicators",), ["work.no_payment", "work.no_payment"], "$.indicators", "duplicate"),
        (("text",), "x" * 4001, "$.text", "too long"),
        (("person", "bsn"), "12345678X", "$.person.bsn", "required form"),
        (("person", "sex"), "f", "$.person.sex", "one of"),
        (("person", "date_of_birth"), "2001-02-30", "$.person.date_of_birth", "valid date"),
        (("person", "age_estimate"), 121, "$.person.age_estimate", "at most 120"),
        (("person", "given_names"), "x" * 201, "$.person.given_names", "too long"),
        (("person", "nickname"), "Zus", "$.person.nickname", "not an allowed property"),
        (("reporter", "email"), "not-an-address", "$.reporter.email", "valid email"),
        (("reporter", "badge"), "12", "$.reporter.badge", "not an allowed property"),
        (("observed_at",), "yesterday", "$.observed_at", "valid date"),
        (("extra",), 1, "$.extra", "not an allowed property"),
    ],
)
def test_each_rejection_names_the_path(
    path: tuple[Any, ...], value: Any, where: str, says: str
) -> None:
    with pytest.raises(PayloadInvalid) as info:
        validate_payload("signal", _mutated(path, value))
    assert info.value.path == where
    assert says in str(info.value)


def test_rejection_never_echoes_the_value() -> None:
    doc = full_signal()
    doc["person"]["bsn"] = SECRET_NAME
    with pytest.raises(PayloadInvalid) as info:
        validate_payload("signal", doc)
    assert SECRET_NAME not in str(info.value)


def test_not_an_object_and_unknown_kind() -> None:
    with pytest.raises(PayloadInvalid) as info:
        validate_payload("signal", ["a"])
    assert info.value.path == "$"
    with pytest.raises(PayloadInvalid, match="no schema for payload kind 'gossip'"):
        validate_payload("gossip", {})
    with pytest.raises(PayloadInvalid, match="no schema"):
        decode_payload("gossip", b"{}")


def test_encode_is_canonical_and_decode_round_trips() -> None:
    doc = full_signal()
    data = encode_payload(doc)
    assert data.startswith(b'{"consent_to_share":false,"exploitation":"labour"')
    assert data == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert decode_payload("signal", data) == doc


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b'{"a":1,"a":2}', "duplicate"),
        (b'{"a":1.5}', "integers"),
        (b"\xff", "UTF-8"),
        (b"[" * 40 + b"]" * 40, "deeply"),
        (b"{", "malformed"),
    ],
)
def test_decode_rejects_non_strict_json(data: bytes, says: str) -> None:
    with pytest.raises(PayloadInvalid, match=says) as info:
        decode_payload("signal", data)
    assert info.value.path == "$"


def test_decode_validates() -> None:
    doc = minimal_signal()
    doc["urgency"] = "whenever"
    with pytest.raises(PayloadInvalid) as info:
        decode_payload("signal", encode_payload(doc))
    assert info.value.path == "$.urgency"


def test_encode_refuses_floats() -> None:
    doc = minimal_signal()
    doc["person"] = {"age_estimate": 23.5}
    with pytest.raises(PayloadInvalid, match="canonical"):
        encode_payload(doc)


def test_identity_of_takes_only_identifying_fields() -> None:
    identity = identity_of(full_signal())
    assert identity.bsn == "111222333"
    assert identity.family_name == "van der Berg"
    assert identity.document_country == "NLD"
    assert identity.phone == "+31 6 12345678"
    assert "Anna" not in repr(identity)
    empty = identity_of(minimal_signal())
    assert empty.bsn is None and empty.given_names is None


def test_summary_has_no_names_or_text() -> None:
    line = summary_of("signal", full_signal())
    assert line == "labour exploitation, urgency high, 3 indicators"
    doc = copy.deepcopy(full_signal())
    assert doc["person"]["family_name"] not in line
