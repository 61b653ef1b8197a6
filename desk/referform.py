"""The coordinator's referral form (verwijzen) from a case: filled from the case, checked.

Pure: the case's timeline and the posted fields in, a :class:`ReferForm` out, holding
the values as typed (shown again next to their errors) and, when every field is right,
the ``schakel.referral/1`` payload.

The person's details and the contact come from the case's signals: the signal that
carries a BSN is preferred (a BSN is checked at the source; a name may be a guess or a
misspelling), else the one that says most. Names that disagree between signals are
listed so the coordinator sees them before sending.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from desk.adapter import TimelineRow, names_that_disagree
from desk.signalform import invisible
from protocol import referral as machine

SERVICES = (
    "shelter",
    "medical_care",
    "mental_health_care",
    "legal_aid",
    "victim_support",
    "reflection_period",
    "return_support",
    "other",
)
URGENCIES = ("routine", "soon", "urgent", "immediate")
LIMITS: Mapping[str, int] = {"reden": 4000, "gedeeld": 2000}


@dataclass(frozen=True, slots=True)
class Known:
    """What the case tells of the person: the best-known details, a contact, and the
    name fields (``given_names``, ``family_name``) on which its signals disagree."""

    person: dict[str, Any]
    contact: dict[str, Any]
    disagree: tuple[str, ...]
    declined: tuple[str, ...]  # declined referrals of the case a new one may replace


@dataclass(slots=True)
class ReferForm:
    """A posted referral form: its values, the errors per field, and the payload."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    payload: dict[str, Any] | None = None


def known(timeline: Sequence[TimelineRow]) -> Known:
    """The best-known details of the case's person, from the signals readable here."""
    signals = [
        e.payload
        for e in timeline
        if e.type == "signal" and isinstance(e.payload, dict)
        and isinstance(e.payload.get("person"), dict)
    ]  # fmt: skip
    last: dict[str, str | None] = {}  # each referral's last step in the timeline
    for e in timeline:
        if e.type == "status" and e.referral:
            last[e.referral] = e.code
    declined = tuple(ref for ref, code in last.items() if code == machine.DECLINED)
    if not signals:
        return Known({}, {}, (), declined)
    best = max(signals, key=lambda p: ("bsn" in p["person"], len(p["person"])))
    disagree = names_that_disagree(signals)
    contact = best.get("reporter")
    return Known(dict(best["person"]), dict(contact or {}), disagree, declined)


def read(form: Mapping[str, Any], *, recipients: tuple[str, ...], case: Known) -> ReferForm:
    """Check every field of a posted form; the payload when all are right."""
    names = ("naar", "dienst", "urgentie", "reden", "gedeeld", "delen", "comensha", "vervangt")
    values = {n: _text(form.get(n)) for n in names}
    result = ReferForm(values=values)
    errors = result.errors
    for name, allowed in (("naar", recipients), ("dienst", SERVICES), ("urgentie", URGENCIES)):
        if values[name] not in allowed:
            errors[name] = "choose"
    if values["vervangt"] and values["vervangt"] not in case.declined:
        errors["vervangt"] = "choose"
    for name, limit in LIMITS.items():
        text = values[name].strip()
        if not text:
            errors[name] = "required"
        elif len(text) > limit:
            errors[name] = "too-long"
        elif invisible(text, multiline=True):
            errors[name] = "invisible"
    if values["delen"] != "ja":
        errors["delen"] = "refer-consent"
    if errors:
        return result
    payload: dict[str, Any] = {
        "schema": "schakel.referral/1",
        "service": values["dienst"],
        "urgency": values["urgentie"],
        "reason": values["reden"].strip().replace("\r\n", "\n"),
        "shared_with_person": values["gedeeld"].strip().replace("\r\n", "\n"),
        "consent": {
            "share_with_recipient": True,
            "comensha_registration": values["comensha"] == "ja",
        },
    }
    if case.person:
        payload["person"] = case.person
    if case.contact:
        payload["contact"] = case.contact
    result.payload = payload
    return result


def _text(value: object) -> str:
    return value[:5000] if isinstance(value, str) else ""
