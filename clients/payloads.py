"""Payloads: the plaintext inside an envelope, one JSON Schema per kind.

A payload is validated before it is sealed and after it is opened, so that
neither side ever handles a document of the wrong shape. Schemas live in
``clients/schemas/<kind>.json`` (JSON Schema 2020-12, format checks on).

A schema may point into another kind's schema by that schema's ``$id`` (the
referral reuses the signal's ``person``, ``exploitation`` and ``reporter``
definitions that way, so that the two cannot drift apart); every schema of
:data:`KNOWN_KINDS` is in the registry that resolves those references.

Error messages name the JSON path and the rule, never the offending value:
a payload holds the most sensitive data there is.

Beyond its schema, a payload's dates of past events (date of birth, when the person
was seen, when consent was recorded, when care started) may not lie after today in the
Netherlands (:func:`check_dates`), and :func:`link_problem` says why a person's details
can not link a signal to any other.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from clients.errors import PayloadInvalid
from protocol.encoding import canonical_json, loads_strict
from protocol.envelope import MAX_BODY_BYTES
from protocol.errors import EncodingError
from protocol.pseudonym import Identity

KNOWN_KINDS: tuple[str, ...] = ("signal", "referral", "status")
SCHEMA_IDS = {
    "signal": "schakel.signal/1",
    "referral": "schakel.referral/1",
    "status": "schakel.status/1",
}
DUTCH_TIME = ZoneInfo("Europe/Amsterdam")
# Dates of past events, by their JSON path: none may lie after today.
PAST_DATES: tuple[tuple[str, ...], ...] = (
    ("person", "date_of_birth"),
    ("observed_at",),
    ("consent", "recorded_on"),
    ("care_started_on",),
)
_IDENTITY_FIELDS = (
    "bsn",
    "given_names",
    "family_name",
    "date_of_birth",
    "document_number",
    "document_country",
    "phone",
)


@cache
def _schema_file(kind: str) -> dict[str, Any]:
    source = resources.files("clients").joinpath("schemas").joinpath(f"{kind}.json")
    schema: dict[str, Any] = json.loads(source.read_text("utf-8"))
    Draft202012Validator.check_schema(schema)
    return schema


@cache
def _registry() -> Registry[Any]:
    """Every known kind's schema, by its ``$id``, for ``$ref`` between schema files."""
    found = [Resource.from_contents(_schema_file(k), DRAFT202012) for k in KNOWN_KINDS]
    return Registry().with_resources((resource.id() or "", resource) for resource in found)


@cache
def _validator(kind: str) -> Draft202012Validator:
    return Draft202012Validator(
        _schema_file(kind),
        registry=_registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def schema_of(kind: str) -> dict[str, Any]:
    """The JSON Schema of ``kind`` (a copy); PayloadInvalid for an unknown kind.

    A ``$ref`` into another kind's schema is left as it is: resolve it by the ``$id``
    before the ``#`` (``urn:schakel:schema:signal:1`` is ``schema_of("signal")``).
    """
    _check_kind(kind)
    schema: dict[str, Any] = json.loads(json.dumps(_validator(kind).schema))
    return schema


def _check_kind(kind: str) -> None:
    if kind not in KNOWN_KINDS:
        raise PayloadInvalid(f"no schema for payload kind {kind[:32]!r}")


def validate_payload(kind: str, obj: object) -> None:
    """Raise PayloadInvalid (with the JSON path of the first error) unless ``obj`` fits."""
    _check_kind(kind)
    errors = sorted(_validator(kind).iter_errors(obj), key=_error_order)
    if errors:
        path, message = _describe(errors[0])
        raise PayloadInvalid(message, path)


def _error_order(error: SchemaError) -> tuple[int, str]:
    return (len(error.absolute_path), error.json_path)


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if key.isidentifier() else f"{path}[{json.dumps(key)[:70]}]"


def _describe(error: SchemaError) -> tuple[str, str]:
    """(JSON path, message) for one schema error, without echoing the value."""
    keyword, rule, path = error.validator, error.validator_value, error.json_path
    instance = error.instance
    if keyword == "required" and isinstance(instance, dict):
        missing = [name for name in rule if name not in instance]
        return _child(path, missing[0]), "is required"
    if keyword == "additionalProperties" and isinstance(instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(str(name) for name in instance if name not in allowed)
        return _child(path, extra[0]), "is not an allowed property"
    if keyword == "not" and isinstance(rule, dict) and isinstance(instance, dict):
        present = [name for name in rule.get("required", ()) if name in instance]
        if present:  # {"not": {"required": [name]}}: a field forbidden in this case
            why = rule.get("description")
            return _child(path, present[0]), "is not allowed here" + (f" ({why})" if why else "")
    return path, _MESSAGES.get(str(keyword), _fallback)(rule)


def _fallback(rule: Any) -> str:
    return "breaks a schema rule"


def _enum(rule: Any) -> str:
    shown = ", ".join(str(value) for value in rule[:8])
    return f"must be one of: {shown}" + (", ..." if len(rule) > 8 else "")


_MESSAGES: dict[str, Callable[[Any], str]] = {
    "type": lambda rule: f"must be of type {rule}",
    "enum": _enum,
    "const": lambda rule: f"must be {json.dumps(rule)}",
    "maxLength": lambda rule: f"is too long (at most {rule} characters)",
    "minLength": lambda rule: f"is too short (at least {rule} characters)",
    "pattern": lambda rule: "does not have the required form",
    "format": lambda rule: f"is not a valid {rule}",
    "minimum": lambda rule: f"must be at least {rule}",
    "maximum": lambda rule: f"must be at most {rule}",
    "maxItems": lambda rule: f"has too many items (at most {rule})",
    "uniqueItems": lambda rule: "has duplicate items",
}


def encode_payload(obj: Any) -> bytes:
    """The canonical JSON bytes of a payload (sorted keys, no whitespace, UTF-8)."""
    try:
        return canonical_json(obj)
    except EncodingError as exc:
        raise PayloadInvalid(f"has no canonical JSON form: {exc}") from exc


def decode_payload(kind: str, data: bytes) -> dict[str, Any]:
    """Parse decrypted bytes strictly, then validate them as ``kind``."""
    _check_kind(kind)
    try:
        obj = loads_strict(data, max_bytes=MAX_BODY_BYTES)
    except EncodingError as exc:
        raise PayloadInvalid(f"is not strict JSON ({exc})") from exc
    validate_payload(kind, obj)
    return obj  # type: ignore[no-any-return]


def identity_of(payload: dict[str, Any]) -> Identity:
    """The identity attributes of a (validated) payload's ``person``, for pseudonyms.

    Works for every kind with a ``person``: a signal's, or a referral's optional one.
    A payload without a person (a referral may leave it out, a status never has
    one) gives an empty Identity, from which no pseudonym can be derived.
    """
    person = payload.get("person") or {}
    return Identity(**{name: person[name] for name in _IDENTITY_FIELDS if name in person})


def summary_of(kind: str, payload: dict[str, Any]) -> str:
    """One line for a listing: the kind's main coded fields, never names or free text."""
    if kind == "signal":
        count = len(payload.get("indicators", []))
        return (
            f"{payload.get('exploitation', '?')} exploitation, urgency "
            f"{payload.get('urgency', '?')}, {count} indicator{'s' if count != 1 else ''}"
        )
    return kind


def day_of(seconds: int) -> datetime.date:
    """The calendar day in the Netherlands at Unix time ``seconds``."""
    return datetime.datetime.fromtimestamp(seconds, DUTCH_TIME).date()


def check_dates(payload: dict[str, Any], *, today: datetime.date) -> None:
    """PayloadInvalid (naming the field) for a date of a past event after ``today``.

    ``payload`` has been validated, so every date present is an ISO date.
    """
    for path in PAST_DATES:
        value: Any = payload
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str) and datetime.date.fromisoformat(value) > today:
            raise PayloadInvalid(
                f"is after today ({today.isoformat()}): a date that has not come yet",
                "$." + ".".join(path),
            )


class Unlinked(PayloadInvalid):
    """A signal whose person can not be linked to any other signal (it would become a case
    of its own); sent only when the sender confirms that this is what they mean."""


def link_problem(identity: Identity) -> str | None:
    """None when ``identity`` gives a pseudonym; else why it can not link to anything.

    A pseudonym comes from a BSN, a phone number, a travel-document number with its
    issuing country, or given names with family name and date of birth.
    """
    if identity.bsn or identity.phone:
        return None
    if identity.document_number and identity.document_country:
        return None
    names = (identity.given_names, identity.family_name, identity.date_of_birth)
    if all(names):
        return None
    parts = []
    if any(names):
        parts.append("a name links only as given names, family name and date of birth together")
    if identity.document_number or identity.document_country:
        parts.append("a travel-document number links only together with its issuing country")
    if not parts:
        parts.append(
            "it names no BSN, phone number, travel document with its country, or name "
            "with date of birth"
        )
    return "; ".join(parts)
