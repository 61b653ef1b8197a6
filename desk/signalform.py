"""The new-signal form: what a caseworker typed, checked field by field, as a payload.

Pure: a mapping of form fields in, a :class:`SignalForm` out, holding the values as
typed (to show them again), an error per field (a message id for the page), and, when
there are no errors, the payload of ``clients/schemas/signal.json``. Identifiers are
checked as the pseudonyms will read them (``protocol.pseudonym``: the BSN's 11-test,
dates, phone numbers, travel documents); ``linkable`` says whether the signal carries
anything that can link it to another (the page warns, and asks to confirm, when not).
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from desk.vocabulary import EXPLOITATION, INDICATORS, SEX, URGENCY, alpha2
from protocol.errors import ValidationError
from protocol.pseudonym import (
    Identity,
    normalise_bsn,
    normalise_date,
    normalise_phone,
    normalised_values,
)

TEXT_FIELDS = (
    "bsn",
    "given_names",
    "family_name",
    "date_of_birth",
    "phone",
    "document_number",
    "document_country",
    "sex",
    "nationality",
    "age_estimate",
    "exploitation",
    "urgency",
    "observed_at",
    "observed_place",
    "text",
    "reporter_name",
    "reporter_role",
    "reporter_phone",
    "reporter_email",
    "consent",
)
LIMITS = {
    "bsn": 12,
    "given_names": 200,
    "family_name": 200,
    "date_of_birth": 10,
    "phone": 32,
    "document_number": 32,
    "document_country": 3,
    "nationality": 3,
    "age_estimate": 3,
    "observed_at": 10,
    "observed_place": 200,
    "text": 4000,
    "reporter_name": 200,
    "reporter_role": 100,
    "reporter_phone": 32,
    "reporter_email": 254,
}
# The order errors are summarised in: the order of the page.
ORDER = (
    *TEXT_FIELDS[: TEXT_FIELDS.index("exploitation") + 1],
    "indicators",
    "observed_at",
    "observed_place",
    "urgency",
    *TEXT_FIELDS[TEXT_FIELDS.index("text") :],
    "recipients",
)


_IDENTITY_FIELDS = tuple(f.name for f in dataclasses.fields(Identity))
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")
_DOCUMENT = re.compile(r"[A-Za-z0-9 -]{1,32}")


@dataclass(slots=True)
class SignalForm:
    values: dict[str, str]
    indicators: list[str]
    recipients: list[str]
    errors: dict[str, str] = field(default_factory=dict)
    payload: dict[str, Any] | None = None
    linkable: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors and self.payload is not None

    def summary(self) -> list[tuple[str, str]]:
        """(field, message id) of every error, in the page's order."""
        return [(name, self.errors[name]) for name in ORDER if name in self.errors]


def empty() -> SignalForm:
    return SignalForm(values=dict.fromkeys(TEXT_FIELDS, ""), indicators=[], recipients=[])


def read(
    form: Mapping[str, Any],
    indicators: list[str],
    recipients: list[str],
    *,
    allowed_recipients: tuple[str, ...],
    today: datetime.date,
) -> SignalForm:
    """Check every field of a posted form; the payload when all are right."""
    values = {name: _text(form.get(name)) for name in TEXT_FIELDS}
    result = SignalForm(values=values, indicators=indicators[:64], recipients=recipients[:16])
    errors = result.errors
    for name, limit in LIMITS.items():
        if len(values[name]) > limit:
            errors[name] = "too-long"
        elif invisible(values[name], multiline=name == "text"):
            errors[name] = "invisible"
    person = _person(values, errors, today)
    _choices(values, result, errors, allowed_recipients)
    reporter = _reporter(values, errors)
    observed = _date(values, "observed_at", errors, today)
    if errors:
        return result
    payload: dict[str, Any] = {
        "schema": "schakel.signal/1",
        "person": person,
        "exploitation": values["exploitation"],
        "urgency": values["urgency"],
        "consent_to_share": values["consent"] == "yes",
    }
    if result.indicators:
        payload["indicators"] = sorted(result.indicators)
    if values["text"].strip():
        payload["text"] = values["text"].strip().replace("\r\n", "\n")
    if reporter:
        payload["reporter"] = reporter
    if observed:
        payload["observed_at"] = observed
    if values["observed_place"]:
        payload["observed_place"] = values["observed_place"]
    result.payload = payload
    identity = Identity(**{k: person[k] for k in _IDENTITY_FIELDS if k in person})
    result.linkable = bool(normalised_values(identity))
    return result


SUBJECT_FIELDS = (
    "bsn",
    "given_names",
    "family_name",
    "date_of_birth",
    "phone",
    "document_number",
    "document_country",
)


def read_identity(
    form: Mapping[str, Any], *, today: datetime.date
) -> tuple[dict[str, str], Identity | None, dict[str, str]]:
    """A data subject's identifiers from a posted form, checked as the signal form checks
    them: (the values typed, the identity when every field is right and at least one
    identifier can be linked, the errors by field; ``subject-none`` when none can)."""
    values = {name: _text(form.get(name)) if name in SUBJECT_FIELDS else "" for name in TEXT_FIELDS}
    errors: dict[str, str] = {}
    for name in SUBJECT_FIELDS:
        if len(values[name]) > LIMITS[name]:
            errors[name] = "too-long"
        elif invisible(values[name], multiline=False):
            errors[name] = "invisible"
    person = _person(values, errors, today)
    typed = {name: values[name] for name in SUBJECT_FIELDS}
    if errors:
        return typed, None, errors
    identity = Identity(**{k: person[k] for k in _IDENTITY_FIELDS if k in person})
    try:
        linkable = bool(normalised_values(identity))
    except ValidationError:
        linkable = False
    if not linkable:
        return typed, None, {"bsn": "subject-none"}
    return typed, identity, errors


def _text(value: object) -> str:
    if not isinstance(value, str):
        return ""
    return value[:5000].strip() if "\n" not in value else value[:5000]


def invisible(value: str, *, multiline: bool) -> bool:
    allowed = "\n\r\t" if multiline else ""
    return any(unicodedata.category(c).startswith("C") and c not in allowed for c in value)


def _person(values: dict[str, str], errors: dict[str, str], today: datetime.date) -> dict[str, Any]:
    person: dict[str, Any] = {}
    if values["bsn"] and "bsn" not in errors:
        try:
            person["bsn"] = normalise_bsn(values["bsn"])
        except ValidationError:
            errors["bsn"] = "bsn"
    for name in ("given_names", "family_name"):
        if values[name] and name not in errors:
            person[name] = values[name]
    if bool(values["given_names"]) != bool(values["family_name"]):
        errors.setdefault(
            "given_names" if not values["given_names"] else "family_name", "name_pair"
        )
    born = _date(values, "date_of_birth", errors, today)
    if born:
        person["date_of_birth"] = born
    if values["phone"] and "phone" not in errors:
        try:
            normalise_phone(values["phone"])
            person["phone"] = values["phone"]
        except ValidationError:
            errors["phone"] = "phone"
    _document(values, errors, person)
    for name in ("nationality",):
        if values[name]:
            if alpha2(values[name]) is None:
                errors[name] = "country"
            else:
                person[name] = values[name].upper()
    if values["sex"]:
        if values["sex"] in SEX:
            person["sex"] = values["sex"]
        else:
            errors["sex"] = "choose"
    if values["age_estimate"] and "age_estimate" not in errors:
        age = values["age_estimate"]
        if age.isascii() and age.isdigit() and 0 <= int(age) <= 120:
            person["age_estimate"] = int(age)
        else:
            errors["age_estimate"] = "age"
    return person


def _document(values: dict[str, str], errors: dict[str, str], person: dict[str, Any]) -> None:
    number, country = values["document_number"], values["document_country"]
    if not number and not country:
        return
    if number and "document_number" not in errors:
        compact = number.replace(" ", "").replace("-", "")
        if not _DOCUMENT.fullmatch(number) or not 5 <= len(compact) <= 20:
            errors["document_number"] = "document_number"
        else:
            person["document_number"] = number
    if country and "document_country" not in errors:
        if alpha2(country) is None:
            errors["document_country"] = "country"
        else:
            person["document_country"] = country.upper()
    if not number:
        errors.setdefault("document_number", "document_pair")
    elif not country:
        errors.setdefault("document_country", "document_pair")


def _date(
    values: dict[str, str], name: str, errors: dict[str, str], today: datetime.date
) -> str | None:
    if not values[name] or name in errors:
        return None
    try:
        iso = normalise_date(values[name])
    except ValidationError:
        errors[name] = "date"
        return None
    if datetime.date.fromisoformat(iso) > today:
        errors[name] = "date-future"
        return None
    return iso


def _choices(
    values: dict[str, str],
    result: SignalForm,
    errors: dict[str, str],
    allowed_recipients: tuple[str, ...],
) -> None:
    if values["exploitation"] not in EXPLOITATION:
        errors["exploitation"] = "exploitation"
    if values["urgency"] not in URGENCY:
        errors["urgency"] = "urgency"
    if values["consent"] not in ("yes", "no"):
        errors["consent"] = "consent"
    if any(code not in INDICATORS for code in result.indicators) or len(
        set(result.indicators)
    ) != len(result.indicators):
        errors["indicators"] = "indicators"
        result.indicators = [
            code for code in dict.fromkeys(result.indicators) if code in INDICATORS
        ]
    chosen = [org for org in result.recipients if org in allowed_recipients]
    if not chosen or len(chosen) != len(result.recipients):
        errors["recipients"] = "recipients"
    result.recipients = chosen


def _reporter(values: dict[str, str], errors: dict[str, str]) -> dict[str, str]:
    reporter: dict[str, str] = {}
    for name, key in (("reporter_name", "name"), ("reporter_role", "role")):
        if values[name] and name not in errors:
            reporter[key] = values[name]
    if values["reporter_phone"] and "reporter_phone" not in errors:
        try:
            normalise_phone(values["reporter_phone"])
            reporter["phone"] = values["reporter_phone"]
        except ValidationError:
            errors["reporter_phone"] = "phone"
    if values["reporter_email"] and "reporter_email" not in errors:
        if _EMAIL.fullmatch(values["reporter_email"]):
            reporter["email"] = values["reporter_email"]
        else:
            errors["reporter_email"] = "email"
    return reporter
