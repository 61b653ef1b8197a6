"""CoMensha: what the coordinator reports to the national registration of victims.

CoMensha, the national coordination centre against human trafficking, registers
(possible) victims. The coordinator's client produces, locally and from what it
has decrypted, two CSV files; the hub never sees either:

* a **registration** row per case in which the person consented to being
  registered (:func:`registration_rows`), with name, date of birth and case
  reference, so that CoMensha can recognise the same person reported twice;
* an anonymised **statistics** row per case without that consent
  (:func:`statistics_rows`): coded fields and the year only.

The rows are pure functions over values; :func:`write_comensha` writes both files (new,
0600, both or neither). A :class:`CaseMaterial` checks its payloads against their
schemas when it is built, so that no free text can reach a statistics row through a
field that should hold a code.

Rules, so that two runs over the same material give the same file:

* **Consent** (:func:`consented`) comes from the referrals' ``consent.comensha_registration``.
  When they disagree, the newest by ``consent.recorded_on`` wins; a referral without
  ``recorded_on`` counts as older than any dated one; among equally new ones, a
  "no" wins. So a withdrawn consent counts, and doubt means no registration.
* **Personal fields** (names, date of birth, sex, nationality, age estimate) come from
  the signals' ``person``; a referral's person is not used. The best-identified
  signals that give a field win: a signal with a BSN before one with a travel document
  and its country, before one with name and date of birth, before one with a phone
  number, before one with none of these (:func:`identification`). Among equally well
  identified signals the value most of them give wins; a tie goes to the value whose
  newest signal has the latest ``observed_at`` (a signal without one counts as oldest),
  and a tie after that to the value of the signal listed last. Values are compared
  with their spaces collapsed and case folded (nationalities are written in upper
  case); sex ``unknown`` counts as not given.
* **Disagreement** is flagged, not hidden: the registration column ``disagreements``
  names every personal field (:data:`PERSONAL_FIELDS`) to which two signals of the case
  give different values, so that whoever sends the file checks those first.
* A field nobody gave is empty (names, date of birth) or ``unknown`` (coded fields).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, TextIO

from clients.errors import PayloadInvalid
from clients.exports import csv_text, write_new_files
from clients.payloads import DUTCH_TIME, validate_payload
from protocol.certificate import MAX_TIME, ORG_TYPES

UNKNOWN = "unknown"
MAX_REF_CHARS = 200
REGISTRATION_COLUMNS: tuple[str, ...] = (
    "case_ref",
    "first_signal_date",
    "family_name",
    "given_names",
    "date_of_birth",
    "sex",
    "nationality",
    "exploitation_forms",
    "reporting_org_types",
    "signal_count",
    "disagreements",
)
# The registration's personal fields, each taken from the signals' ``person``.
PERSONAL_FIELDS: tuple[str, ...] = (
    "family_name",
    "given_names",
    "date_of_birth",
    "sex",
    "nationality",
)
STATISTICS_COLUMNS: tuple[str, ...] = (
    "year",
    "exploitation_forms",
    "age_band",
    "sex",
    "country_of_origin",
    "reporting_org_types",
)
# (lowest age, highest age or None for no limit, label), in years completed.
AGE_BANDS: tuple[tuple[int, int | None, str], ...] = (
    (0, 11, "0-11"),
    (12, 17, "12-17"),
    (18, 22, "18-22"),
    (23, 29, "23-29"),
    (30, 39, "30-39"),
    (40, 49, "40-49"),
    (50, 64, "50-64"),
    (65, None, "65+"),
)


@dataclass(frozen=True, slots=True, repr=False)
class CaseMaterial:
    """What the coordinator holds about one case (checked on construction).

    ``signals`` must be valid ``schakel.signal/1`` payloads and ``referrals`` valid
    ``schakel.referral/1`` payloads (PayloadInvalid names e.g. ``signals[2].person.sex``);
    ``reporting_types`` are organisation types from the hub's case metadata.
    """

    ref: str  # opaque case reference
    first_signal: int  # Unix seconds, first signal in the case
    reporting_types: tuple[str, ...]  # org types of every signalling org (hub metadata)
    signals: tuple[dict[str, Any], ...]  # decrypted schakel.signal/1 payloads
    referrals: tuple[dict[str, Any], ...]  # decrypted schakel.referral/1 payloads

    def __post_init__(self) -> None:
        if not isinstance(self.ref, str) or not 0 < len(self.ref) <= MAX_REF_CHARS:
            raise ValueError(f"CaseMaterial.ref must be 1 to {MAX_REF_CHARS} characters")
        first = self.first_signal
        if not isinstance(first, int) or isinstance(first, bool) or not 0 <= first <= MAX_TIME:
            raise ValueError("CaseMaterial.first_signal must be Unix seconds (an int >= 0)")
        _check_types(self.reporting_types)
        _check_payloads("signal", self.signals, "signals")
        _check_payloads("referral", self.referrals, "referrals")

    def __repr__(self) -> str:
        return (
            f"CaseMaterial(ref={self.ref!r}, signals={len(self.signals)}, "
            f"referrals={len(self.referrals)})"
        )


def _check_types(types: object) -> None:
    if not isinstance(types, tuple):
        raise TypeError("CaseMaterial.reporting_types must be a tuple")
    for index, kind in enumerate(types):
        if kind not in ORG_TYPES:
            raise ValueError(
                f"CaseMaterial.reporting_types[{index}] is not an organisation type "
                f"(one of: {', '.join(ORG_TYPES)})"
            )


def _check_payloads(kind: str, payloads: object, field: str) -> None:
    if not isinstance(payloads, tuple):
        raise TypeError(f"CaseMaterial.{field} must be a tuple of payloads")
    for index, payload in enumerate(payloads):
        try:
            validate_payload(kind, payload)
        except PayloadInvalid as exc:
            rule = str(exc).removeprefix(f"payload invalid at {exc.path}: ")
            raise PayloadInvalid(rule, f"{field}[{index}]{exc.path.removeprefix('$')}") from exc


# --- consent ------------------------------------------------------------------------------


def consented(material: CaseMaterial) -> bool:
    """True when the person consented to registration with CoMensha.

    The newest consent by ``recorded_on`` wins when referrals disagree (undated counts
    as oldest; among equally new ones a "no" wins), so a withdrawn consent counts.
    No referral, or none saying yes, means no consent.
    """
    given = [_consent_of(referral) for referral in material.referrals]
    if not any(yes for _, yes in given):
        return False
    newest = max(recorded for recorded, _ in given)
    return all(yes for recorded, yes in given if recorded == newest)


def _consent_of(referral: Mapping[str, Any]) -> tuple[str, bool]:
    consent = referral["consent"]
    return str(consent.get("recorded_on", "")), consent["comensha_registration"] is True


# --- rows ---------------------------------------------------------------------------------


def registration_rows(materials: Iterable[CaseMaterial]) -> list[dict[str, Any]]:
    """One row per consented case (:data:`REGISTRATION_COLUMNS`), oldest case first."""
    cases = sorted(_checked(materials), key=lambda m: (m.first_signal, m.ref))
    return [_registration_row(m) for m in cases if consented(m)]


def statistics_rows(materials: Iterable[CaseMaterial]) -> list[dict[str, Any]]:
    """One anonymised row per case WITHOUT consent (:data:`STATISTICS_COLUMNS`).

    A row holds codes and the year of the first signal only: no case reference, no
    name, no date finer than the year, no free text. Rows are sorted by their own
    content, so their order says nothing about which case came first or its reference.
    Small groups (fewer than 3 cases sharing a row) are NOT suppressed here: CoMensha
    aggregates before it publishes; suppress them yourself before sharing further.
    """
    rows = [_statistics_row(m) for m in _checked(materials) if not consented(m)]
    return sorted(rows, key=lambda row: tuple(str(row[c]) for c in STATISTICS_COLUMNS))


def _checked(materials: Iterable[CaseMaterial]) -> list[CaseMaterial]:
    cases = list(materials)
    seen: set[str] = set()
    for index, material in enumerate(cases):
        if not isinstance(material, CaseMaterial):
            raise TypeError(f"materials[{index}] is not a CaseMaterial")
        if material.ref in seen:
            raise ValueError(f"materials[{index}] repeats an earlier case reference")
        seen.add(material.ref)
    return cases


def _registration_row(material: CaseMaterial) -> dict[str, Any]:
    signals = material.signals
    return {
        "case_ref": material.ref,
        "first_signal_date": _first_day(material).isoformat(),
        "family_name": _text(_consensus(signals, "family_name")),
        "given_names": _text(_consensus(signals, "given_names")),
        "date_of_birth": _text(_consensus(signals, "date_of_birth")),
        "sex": _code(_consensus(signals, "sex")),
        "nationality": _code(_consensus(signals, "nationality")),
        "exploitation_forms": _exploitation_forms(material),
        "reporting_org_types": _joined(material.reporting_types),
        "signal_count": len(signals),
        "disagreements": ";".join(f for f in PERSONAL_FIELDS if disagrees(signals, f)),
    }


def _statistics_row(material: CaseMaterial) -> dict[str, Any]:
    signals = material.signals
    return {
        "year": _first_day(material).year,
        "exploitation_forms": _exploitation_forms(material),
        "age_band": _age_band(signals, _first_day(material)),
        "sex": _code(_consensus(signals, "sex")),
        "country_of_origin": _code(_consensus(signals, "nationality")),
        "reporting_org_types": _joined(material.reporting_types),
    }


def _first_day(material: CaseMaterial) -> date:
    """The day of the case's first signal in the Netherlands (a signal at 00:30 on New
    Year's Day counts in the new year, though it is still the old one in UTC)."""
    return datetime.fromtimestamp(material.first_signal, DUTCH_TIME).date()


def _text(value: str | int | None) -> str:
    return "" if value is None else str(value)


def _code(value: str | int | None) -> str:
    return UNKNOWN if value is None else str(value)


def _joined(values: Iterable[str]) -> str:
    return ";".join(sorted(set(values))) or UNKNOWN


def _exploitation_forms(material: CaseMaterial) -> str:
    """Every form named by a signal or referral, sorted; ``unknown`` only if none is."""
    named = {p.get("exploitation") for p in (*material.signals, *material.referrals)}
    return _joined(form for form in named if isinstance(form, str) and form != UNKNOWN)


# --- personal fields ----------------------------------------------------------------------


def identification(signal: Mapping[str, Any]) -> int:
    """How well a signal identifies its person: 4 BSN, 3 travel document with its country,
    2 name with date of birth, 1 phone number, 0 none of these."""
    person = signal.get("person") or {}
    if person.get("bsn"):
        return 4
    if person.get("document_number") and person.get("document_country"):
        return 3
    if all(person.get(f) for f in ("given_names", "family_name", "date_of_birth")):
        return 2
    return 1 if person.get("phone") else 0


def _consensus(signals: Sequence[Mapping[str, Any]], name: str) -> str | int | None:
    """The value of ``person[name]`` that the best-identified signals give (ties: see the
    module docstring)."""
    given = [
        (identification(signal), position, signal, value)
        for position, signal in enumerate(signals)
        if (value := _person_value(signal, name)) is not None
    ]
    if not given:
        return None
    best = max(rank for rank, *_ in given)
    # count, newest observed_at, last position, and the spelling of that last signal
    tally: dict[str | int, tuple[int, str, int, str | int]] = {}
    for rank, position, signal, value in given:
        if rank == best:
            key = _compared(value)
            count, newest, _, _ = tally.get(key, (0, "", -1, value))
            observed = str(signal.get("observed_at", ""))
            tally[key] = (count + 1, max(newest, observed), position, value)
    return tally[max(tally, key=lambda key: tally[key][:3])][3]


def disagrees(signals: Sequence[Mapping[str, Any]], name: str) -> bool:
    """True when two signals give different values to ``person[name]`` (compared without
    regard to case and runs of spaces: "De  Vries" and "de Vries" agree)."""
    values = {_compared(v) for s in signals if (v := _person_value(s, name)) is not None}
    return len(values) > 1


def _compared(value: str | int) -> str | int:
    return value.casefold() if isinstance(value, str) else value


def _person_value(signal: Mapping[str, Any], name: str) -> str | int | None:
    value = (signal.get("person") or {}).get(name)
    if isinstance(value, str):
        value = " ".join(value.split())
        if name == "nationality":
            value = value.upper()
        if not value or (name == "sex" and value == UNKNOWN):
            return None
    return value if isinstance(value, str | int) and not isinstance(value, bool) else None


def _age_band(signals: Sequence[Mapping[str, Any]], on: date) -> str:
    """The age band on day ``on``: from the date of birth, else the age estimate.

    A date of birth after ``on`` gives no age (the estimate is used instead); a
    person born on ``on`` is 0. Neither known: ``unknown``.
    """
    born = _consensus(signals, "date_of_birth")
    age = _age_on(date.fromisoformat(born), on) if isinstance(born, str) else None
    if age is None:
        estimate = _consensus(signals, "age_estimate")
        age = estimate if isinstance(estimate, int) else None
    return UNKNOWN if age is None else _band(age)


def _age_on(born: date, day: date) -> int | None:
    if born > day:
        return None
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def _band(age: int) -> str:
    for low, high, label in AGE_BANDS:
        if age >= low and (high is None or age <= high):
            return label
    return UNKNOWN


# --- CSV ----------------------------------------------------------------------------------


def write_csv(rows: Iterable[Mapping[str, object]], columns: Sequence[str], handle: TextIO) -> None:
    """Write ``rows`` as CSV under the fixed header ``columns`` (RFC 4180 line ends).

    Every cell is neutralised as in the audit exports (:func:`clients.exports.
    neutral_cell`): control and bidi characters are shown as ``\\uXXXX`` and a cell
    starting with ``= + - @``, tab or CR gets a leading ``'``. A column missing from a
    row is left empty; a row key the header does not name raises ValueError before
    anything is written. Open ``handle`` with ``newline=""``.
    """
    cells = [_cells(index, row, columns) for index, row in enumerate(rows)]
    handle.write(csv_text(columns, cells))


def _cells(index: int, row: Mapping[str, object], columns: Sequence[str]) -> list[object]:
    extra = [str(key)[:40] for key in row if key not in columns]
    if extra:
        raise ValueError(f"row {index} has columns the header does not name: {sorted(extra)}")
    return [row.get(column, "") for column in columns]


def write_comensha(
    materials: Iterable[CaseMaterial],
    out_registrations: str | os.PathLike[str],
    out_statistics: str | os.PathLike[str],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Write both CSVs (new files, 0600, both or neither); the rows written."""
    cases = list(materials)
    registrations, statistics = registration_rows(cases), statistics_rows(cases)
    texts = (_csv(registrations, REGISTRATION_COLUMNS), _csv(statistics, STATISTICS_COLUMNS))
    write_new_files((Path(out_registrations), Path(out_statistics)), texts)
    return registrations, statistics


def _csv(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> bytes:
    buffer = io.StringIO(newline="")
    write_csv(rows, columns, buffer)
    return buffer.getvalue().encode("utf-8")
