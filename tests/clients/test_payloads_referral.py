"""The referral and status payload schemas, and the payload helpers for them."""

from __future__ import annotations

from typing import Any

import pytest

from clients.errors import PayloadInvalid
from clients.payloads import (
    KNOWN_KINDS,
    SCHEMA_IDS,
    decode_payload,
    encode_payload,
    identity_of,
    schema_of,
    validate_payload,
)

SECRET_NAME = "Zwaantje-Marker"
SIGNAL_ID = "urn:schakel:schema:signal:1"
_DELETE = object()


def full_referral() -> dict[str, Any]:
    return {
        "schema": "schakel.referral/1",
        "service": "reflection_period",
        "urgency": "urgent",
        "reason": "Signals from three organisations; she asked for a safe place.",
        "shared_with_person": "That a shelter will call her today.",
        "consent": {
            "share_with_recipient": True,
            "comensha_registration": False,
            "recorded_on": "2025-05-02",
            "note": "Asked through an interpreter.",
        },
        "person": {
            "bsn": "111222333",
            "given_names": "Anna Maria",
            "family_name": "van der Berg",
            "date_of_birth": "2001-02-03",
            "sex": "female",
            "nationality": "RO",
        },
        "exploitation": "sexual",
        "contact": {"name": "C. Coördinator", "role": "care coordinator", "phone": "+31201234567"},
    }


def minimal_referral() -> dict[str, Any]:
    return {
        "schema": "schakel.referral/1",
        "service": "shelter",
        "urgency": "routine",
        "reason": "r",
        "shared_with_person": "s",
        "consent": {"share_with_recipient": False, "comensha_registration": False},
    }


def status(code: str, **extra: Any) -> dict[str, Any]:
    return {"schema": "schakel.status/1", "status": code, "explanation": "x", **extra}


def _mutated(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


def _resolve(node: Any) -> Any:
    """Follow a ``$ref`` into the signal schema (the only file referrals point into)."""
    if isinstance(node, dict) and "$ref" in node:
        target, _, pointer = node["$ref"].partition("#/")
        assert target == SIGNAL_ID
        resolved: Any = schema_of("signal")
        for part in pointer.split("/"):
            resolved = resolved[part]
        return resolved
    return node


def _assert_closed(node: Any) -> None:
    node = _resolve(node)
    if isinstance(node, dict):
        if node.get("type") == "object":
            assert node.get("additionalProperties") is False
        if node.get("type") == "string":
            assert "maxLength" in node
        for value in node.values():
            _assert_closed(value)
    elif isinstance(node, list):
        for value in node:
            _assert_closed(value)


# --- kinds and ids ------------------------------------------------------------------------


def test_known_kinds_and_schema_ids() -> None:
    assert KNOWN_KINDS == ("signal", "referral", "status")
    for kind in KNOWN_KINDS:
        schema = schema_of(kind)
        assert schema["properties"]["schema"] == {"const": SCHEMA_IDS[kind]}
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == f"urn:schakel:schema:{kind}:1"


@pytest.mark.parametrize("kind", ["referral", "status"])
def test_schemas_are_closed_and_bounded_everywhere(kind: str) -> None:
    _assert_closed(schema_of(kind))


def test_referral_shares_the_signals_definitions() -> None:
    referral = schema_of("referral")["properties"]
    signal = schema_of("signal")["properties"]
    assert _resolve(referral["person"]) == signal["person"]
    assert _resolve(referral["exploitation"]) == signal["exploitation"]
    assert _resolve(referral["contact"]) == signal["reporter"]


# --- referral -----------------------------------------------------------------------------


def test_full_and_minimal_referrals_are_valid() -> None:
    validate_payload("referral", full_referral())
    validate_payload("referral", minimal_referral())


def test_referral_text_limits_are_inclusive() -> None:
    doc = full_referral()
    doc["reason"] = "x" * 4000
    doc["shared_with_person"] = "y" * 2000
    doc["consent"]["note"] = "z" * 500
    validate_payload("referral", doc)


@pytest.mark.parametrize(
    "service",
    [
        "shelter",
        "medical_care",
        "mental_health_care",
        "legal_aid",
        "victim_support",
        "reflection_period",
        "return_support",
        "other",
    ],
)
def test_every_service_is_accepted(service: str) -> None:
    validate_payload("referral", _mutated(minimal_referral(), ("service",), service))


@pytest.mark.parametrize(
    ("path", "value", "where", "says"),
    [
        (("schema",), "schakel.referral/2", "$.schema", 'must be "schakel.referral/1"'),
        (("schema",), "schakel.signal/1", "$.schema", 'must be "schakel.referral/1"'),
        (("schema",), _DELETE, "$.schema", "is required"),
        (("service",), _DELETE, "$.service", "is required"),
        (("urgency",), _DELETE, "$.urgency", "is required"),
        (("reason",), _DELETE, "$.reason", "is required"),
        (("shared_with_person",), _DELETE, "$.shared_with_person", "is required"),
        (("consent",), _DELETE, "$.consent", "is required"),
        (("service",), "housing", "$.service", "must be one of"),
        (("urgency",), "high", "$.urgency", "must be one of"),
        (("exploitation",), "fraud", "$.exploitation", "must be one of"),
        (("reason",), "x" * 4001, "$.reason", "too long (at most 4000"),
        (("reason",), "", "$.reason", "too short"),
        (("reason",), 7, "$.reason", "must be of type string"),
        (("shared_with_person",), "x" * 2001, "$.shared_with_person", "at most 2000"),
        (("consent", "share_with_recipient"), _DELETE, "$.consent.share_with_recipient", "req"),
        (("consent", "comensha_registration"), _DELETE, "$.consent.comensha_registration", "req"),
        (("consent", "comensha_registration"), "yes", "$.consent.comensha_registration", "bool"),
        (("consent", "recorded_on"), "2025-13-01", "$.consent.recorded_on", "valid date"),
        (("consent", "note"), "x" * 501, "$.consent.note", "at most 500"),
        (("consent", "by"), "me", "$.consent.by", "not an allowed property"),
        (("consent",), True, "$.consent", "must be of type object"),
        (("person", "nickname"), "Zus", "$.person.nickname", "not an allowed property"),
        (("person", "sex"), "f", "$.person.sex", "must be one of"),
        (("person", "family_name"), "x" * 201, "$.person.family_name", "too long"),
        (("contact", "email"), "not-an-address", "$.contact.email", "valid email"),
        (("contact", "badge"), "12", "$.contact.badge", "not an allowed property"),
        (("case",), "c-1", "$.case", "not an allowed property"),
    ],
)
def test_each_referral_rejection_names_the_path(
    path: tuple[str, ...], value: Any, where: str, says: str
) -> None:
    with pytest.raises(PayloadInvalid) as info:
        validate_payload("referral", _mutated(full_referral(), path, value))
    assert info.value.path == where
    assert says in str(info.value)


def test_referral_person_follows_the_signal_rules() -> None:
    """The same bad person gives the same error in a signal and in a referral."""
    bad = {"bsn": "12345678X"}
    signal = {
        "schema": "schakel.signal/1",
        "person": bad,
        "exploitation": "unknown",
        "urgency": "normal",
        "consent_to_share": True,
    }
    referral = minimal_referral() | {"person": bad}
    messages = []
    for kind, doc in (("signal", signal), ("referral", referral)):
        with pytest.raises(PayloadInvalid) as info:
            validate_payload(kind, doc)
        assert info.value.path == "$.person.bsn"
        messages.append(str(info.value))
    assert messages[0] == messages[1]


def test_referral_rejection_never_echoes_the_value() -> None:
    for path in (("person", "bsn"), ("person", "date_of_birth"), ("contact", "email")):
        with pytest.raises(PayloadInvalid) as info:
            validate_payload("referral", _mutated(full_referral(), path, SECRET_NAME))
        assert SECRET_NAME not in str(info.value)
    with pytest.raises(PayloadInvalid) as info:
        validate_payload("referral", _mutated(full_referral(), ("reason",), SECRET_NAME * 400))
    assert SECRET_NAME not in str(info.value)


def test_referral_round_trips() -> None:
    doc = full_referral()
    assert decode_payload("referral", encode_payload(doc)) == doc
    doc["urgency"] = "whenever"
    with pytest.raises(PayloadInvalid) as info:
        decode_payload("referral", encode_payload(doc))
    assert info.value.path == "$.urgency"


def test_identity_of_a_referral() -> None:
    identity = identity_of(full_referral())
    assert identity.bsn == "111222333"
    assert identity.family_name == "van der Berg"
    assert identity.date_of_birth == "2001-02-03"
    assert identity.phone is None
    assert "Anna" not in repr(identity)


@pytest.mark.parametrize(
    "payload", [minimal_referral(), minimal_referral() | {"person": {}}, status("accepted")]
)
def test_identity_of_a_payload_without_person_is_empty(payload: dict[str, Any]) -> None:
    identity = identity_of(payload)
    assert all(getattr(identity, name) is None for name in identity.__dataclass_fields__)


# --- status -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [
        status("accepted"),
        status("declined", reason_code="no_capacity"),
        status("declined", reason_code="safety"),
        status("care_started"),
        status("care_started", care_started_on="2025-06-01"),
        status("closed"),
        status("closed", explanation="e" * 4000),
    ],
)
def test_valid_statuses(doc: dict[str, Any]) -> None:
    validate_payload("status", doc)
    assert decode_payload("status", encode_payload(doc)) == doc


@pytest.mark.parametrize(
    "code",
    ["no_capacity", "not_eligible", "person_unreachable", "person_declined", "safety", "other"],
)
def test_every_reason_code_is_accepted_with_declined(code: str) -> None:
    validate_payload("status", status("declined", reason_code=code))


@pytest.mark.parametrize(
    ("doc", "where", "says"),
    [
        (status("declined"), "$.reason_code", "is required"),
        (status("declined", reason_code="busy"), "$.reason_code", "must be one of"),
        (status("accepted", reason_code="safety"), "$.reason_code", "only with status declined"),
        (status("care_started", reason_code="other"), "$.reason_code", "not allowed here"),
        (status("closed", reason_code="other"), "$.reason_code", "not allowed here"),
        (status("accepted", care_started_on="2025-06-01"), "$.care_started_on", "care_started"),
        (
            status("declined", reason_code="safety", care_started_on="2025-06-01"),
            "$.care_started_on",
            "only with status care_started",
        ),
        (status("closed", care_started_on="2025-06-01"), "$.care_started_on", "not allowed"),
        (status("care_started", care_started_on="2025-02-30"), "$.care_started_on", "valid date"),
        (status("started"), "$.status", "must be one of"),
        (status("accepted", explanation="x" * 4001), "$.explanation", "at most 4000"),
        (status("accepted", explanation=""), "$.explanation", "too short"),
        (status("accepted", by="me"), "$.by", "not an allowed property"),
        (status("accepted", schema="schakel.status/2"), "$.schema", "schakel.status/1"),
        (status("accepted", schema="schakel.referral/1"), "$.schema", "schakel.status/1"),
    ],
)
def test_each_status_rejection_names_the_path(doc: dict[str, Any], where: str, says: str) -> None:
    with pytest.raises(PayloadInvalid) as info:
        validate_payload("status", doc)
    assert info.value.path == where
    assert says in str(info.value)


@pytest.mark.parametrize("field", ["schema", "status", "explanation"])
def test_status_required_fields(field: str) -> None:
    doc = status("accepted")
    del doc[field]
    with pytest.raises(PayloadInvalid) as info:
        validate_payload("status", doc)
    assert info.value.path == f"$.{field}"
    assert "is required" in str(info.value)


def test_status_rejection_never_echoes_the_value() -> None:
    with pytest.raises(PayloadInvalid) as info:
        validate_payload("status", status("accepted", explanation=SECRET_NAME * 300))
    assert SECRET_NAME not in str(info.value)
    with pytest.raises(PayloadInvalid) as info:
        validate_payload("status", status(SECRET_NAME))
    assert SECRET_NAME not in str(info.value)
