"""docs/protocol.md against the code and hub/openapi.json: the lists that must agree do.

The document is the contract; an implementation written from it alone failed where a
list in it was incomplete (8 of the 11 action codes), split by a stray paragraph (the
envelope header table) or named fields the vectors lack. These tests read the tables
of the document (GitHub-flavoured Markdown: a header row, a delimiter row, then rows
that start with ``|``) and compare them with the constants the code checks against and
with the enums of the API description. A table is found by its section and its header
row, so prose around it may change freely.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from hub.tokens import CLAIM_NAMES
from protocol.auditlog import ACTIONS, OBJECT_TYPES, PURPOSES
from protocol.certificate import ORG_TYPES, ROLE_OID_ARC, ROLES
from protocol.envelope import _HEADER_OPTIONAL, _HEADER_REQUIRED

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
OPENAPI = json.loads((ROOT / "hub" / "openapi.json").read_text(encoding="utf-8"))
ENVELOPE_VECTORS = json.loads((ROOT / "tests" / "vectors" / "envelope.json").read_text())
_DELIMITER = re.compile(r"\|(\s*:?-{3,}:?\s*\|)+")
_CELL_SEPARATOR = re.compile(r"(?<!\\)\|")


# --- reading the document -----------------------------------------------------------------


def _section(*headings: str) -> str:
    """The text under the last of ``headings`` (each searched after the one before), up to
    the next heading of the same or a higher level."""
    start = 0
    for heading in headings:
        found = re.compile(rf"^{re.escape(heading)}[ \t]*$", re.MULTILINE).search(DOC, start)
        assert found, f"docs/protocol.md has no heading {heading!r} where expected"
        start = found.end()
    level = len(headings[-1]) - len(headings[-1].lstrip("#"))
    end = re.compile(rf"^#{{1,{level}}} ", re.MULTILINE).search(DOC, start)
    return DOC[start : end.start() if end else len(DOC)]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in _CELL_SEPARATOR.split(line.strip())[1:-1]]


def _tables(text: str) -> list[list[list[str]]]:
    """Every table in ``text`` (indented ones too): its rows of cells, the header first."""
    lines, tables, i = [line.strip() for line in text.splitlines()], [], 0
    while i < len(lines):
        if (
            lines[i].startswith("|")
            and i + 1 < len(lines)
            and _DELIMITER.fullmatch(lines[i + 1].strip())
        ):
            rows, i = [_cells(lines[i])], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            tables.append(rows)
        else:
            i += 1
    return tables


def _table(text: str, *header: str) -> list[list[str]]:
    """The body rows of the one table in ``text`` whose header row starts with ``header``."""
    found = [table for table in _tables(text) if tuple(table[0][: len(header)]) == header]
    assert len(found) == 1, f"expected one table headed {header}, found {len(found)}"
    return found[0][1:]


def _codes(rows: list[list[str]]) -> list[str]:
    """The first column, each cell exactly one code in backticks, each code once."""
    codes = []
    for row in rows:
        match = re.fullmatch(r"`([^`]+)`", row[0])
        assert match, f"first cell {row[0]!r} is not one `code`"
        codes.append(match.group(1))
    assert len(codes) == len(set(codes)), f"a code is listed twice: {codes}"
    return codes


def test_the_table_reader_sees_a_table_broken_by_a_paragraph() -> None:
    broken = "| key | value |\n| --- | --- |\n| `a` | 1 |\n\nprose\n| `b` | 2 |\n"
    assert [_codes(table[1:]) for table in _tables(broken)] == [["a"]]
    assert _cells(r"| `x` | a \| b |") == ["`x`", r"a \| b"]


# --- reading hub/openapi.json -------------------------------------------------------------


def _enums(node: Any, owner: str, found: dict[str, list[list[Any]]]) -> None:
    """Every ``enum`` in ``node``, by the name of the property, parameter or schema it
    belongs to."""
    if isinstance(node, list):
        for item in node:
            _enums(item, owner, found)
        return
    if not isinstance(node, dict):
        return
    if isinstance(node.get("name"), str) and "in" in node:
        owner = node["name"]
    if isinstance(node.get("enum"), list):
        found.setdefault(owner, []).append(node["enum"])
    for key, value in node.items():
        if key in ("properties", "schemas") and isinstance(value, dict):
            for name, child in value.items():
                _enums(child, name, found)
        elif key != "enum":
            _enums(value, owner, found)


OPENAPI_ENUMS: dict[str, list[list[Any]]] = {}
_enums(OPENAPI, "", OPENAPI_ENUMS)


def _openapi(*owners: str) -> list[list[Any]]:
    lists = [enum for owner in owners for enum in OPENAPI_ENUMS.get(owner, [])]
    assert lists, f"hub/openapi.json has no enum for {owners}"
    return lists


# --- the access log's codes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "constant", "owners"),
    [
        (("code", "meaning"), ACTIONS, ("action",)),
        (("code", "object"), OBJECT_TYPES, ("object_type",)),
        (("code", "purpose of use"), PURPOSES, ("purpose", "Schakel-Purpose")),
    ],
    ids=["actions", "object-types", "purposes"],
)
def test_audit_codes_agree(
    header: tuple[str, ...], constant: tuple[str, ...], owners: tuple[str, ...]
) -> None:
    codes = _section("## The access log (`/v1/audit`)", "### Codes")
    documented = _codes(_table(codes, *header))
    assert set(documented) == set(constant) and len(documented) == len(constant)
    for enum in _openapi(*owners):
        assert sorted(enum) == sorted(constant), f"hub/openapi.json {owners}: {enum}"


def test_every_audit_code_is_listed_once_in_the_document() -> None:
    """The codes are listed in "Codes" only, not again in prose with a shorter list."""
    listing = re.compile(r"[Aa]ction codes?:")
    assert not listing.search(DOC), "docs/protocol.md lists action codes outside 'Codes'"


# --- certificates -------------------------------------------------------------------------

CERTIFICATES = "## Certificates, key bundles and the sealed linking key"


def test_organisation_types_agree() -> None:
    names = _section(CERTIFICATES, "### Names")
    documented = _codes(_table(names, "type", "organisation"))
    assert documented == list(ORG_TYPES)
    for enum in _openapi("OrgType"):
        assert enum == list(ORG_TYPES)


def test_roles_and_their_oids_agree() -> None:
    rows = _table(_section(CERTIFICATES, "### Organisation and hub certificates"), "role", "OID")
    assert _codes(rows) == list(ROLES)
    assert [row[1] for row in rows] == [f"`{ROLE_OID_ARC}.{n}`" for n in range(1, 6)]
    for enum in _openapi("Role"):
        assert enum == list(ROLES)


# --- envelopes ----------------------------------------------------------------------------


def test_envelope_header_table_names_every_key() -> None:
    """One unbroken table lists every header key; a paragraph inside it would cut it."""
    rows = _table(_section("## Envelope", "### Header"), "key", "value")
    assert set(_codes(rows)) == _HEADER_REQUIRED | _HEADER_OPTIONAL


def test_envelope_vector_tables_describe_the_vector_file() -> None:
    tables = _tables(_section("## Envelope", "### Test vectors"))
    assert [table[0] for table in tables] == [["key", "value"]] * 3
    file_keys, envelope_keys, case_keys = (set(_codes(table[1:])) for table in tables)
    assert set(ENVELOPE_VECTORS) == file_keys
    for envelope in ENVELOPE_VECTORS["envelopes"]:
        assert set(envelope) == envelope_keys, envelope["name"]
    for case in ENVELOPE_VECTORS["cases"]:
        optional = {"payload"} if case["expected"] == "open" else {"stage"}
        assert set(case) == case_keys - ({"payload", "stage"} - optional), case["name"]


# --- access tokens ------------------------------------------------------------------------


def test_token_claims_agree() -> None:
    rows = _table(_section("## Access tokens", "### Token format"), "claim", "type", "value")
    assert set(_codes(rows)) == CLAIM_NAMES and len(rows) == len(CLAIM_NAMES)
