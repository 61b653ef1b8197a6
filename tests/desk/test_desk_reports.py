"""The privacy officer's user report, anomalies, export and printable subject report, and
the witnesses on the log status page.

The network of ``test_desk_privacy`` (a real hub in this process, the shelter's desk with
the privacy officer role): the shelter sent two signals about two people.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from deskharness import Browser
from test_desk_privacy import CANARIES, FORM, Net, _error_next_to, net, officer_browser

from clients.privacy_officer import verify_export_file
from clients.witnessing import Witnessed
from protocol.types import OrgId

__all__ = ["net"]  # the fixture, imported for its use here

HOSTILE = '<script>alert("x")</script>'
PATHS = (
    "/gebruikersrapport",
    "/gebruikersrapport?persoon=p.officer&formaat=csv",
    "/afwijkingen",
    "/toegangslogboek/export",
)


async def test_the_user_report_lists_one_persons_accesses_proven(net: Net) -> None:
    browser = await officer_browser(net.desk)
    await browser.get("/toegangslogboek")  # the officer's own reads of the log
    status, page, _ = await browser.get("/gebruikersrapport")
    assert status == 200 and 'href="/gebruikersrapport" aria-current="page"' in page
    assert "<tbody" not in page
    status, page, _ = await browser.get("/gebruikersrapport?persoon=p.officer")
    assert status == 200, page[:2000]
    proof = re.search(r'id="bewijs">(.*?)</p>', page, re.S)
    assert proof is not None and "bewezen" in proof.group(1)
    body = re.search(r"<tbody.*?</tbody>", page, re.S)
    assert body is not None and "p.officer" in body.group(0)
    assert "Controle van het toegangslogboek" in body.group(0)  # the purpose, in words
    status, page, _ = await browser.get("/gebruikersrapport?persoon=nobody.here")
    assert status == 200 and "Er is geen toegang door deze persoon gevonden." in page


async def test_the_user_report_downloads_as_csv_and_as_a_printable_page(net: Net) -> None:
    browser = await officer_browser(net.desk)
    await browser.get("/toegangslogboek")
    status, text, response = await browser.get("/gebruikersrapport?persoon=p.officer&formaat=csv")
    assert status == 200 and response.content_type == "text/csv"
    assert re.fullmatch(
        r'attachment; filename="gebruikersrapport-\d{4}-\d\d-\d\d\.csv"',
        response.headers["Content-Disposition"],
    )
    assert response.headers["Cache-Control"] == "no-store"
    assert "p.officer" in text and len(text.splitlines()) >= 2
    status, text, response = await browser.get(
        "/gebruikersrapport?persoon=p.officer&formaat=afdruk"
    )
    assert status == 200 and response.content_type == "text/html"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="gebruik')
    assert "@media print" in text and "<script" not in text and "<link" not in text
    assert "default-src 'none'" in text  # the file's own policy when opened from disk
    assert "<h1>Gebruikersrapport</h1>" in text and "Toegang door p.officer, oudste eerst" in text


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ("persoon=", "persoon", "gebruikersnaam"),
        ("persoon=" + "x" * 101, "persoon", "te lang"),
        ("persoon=a%E2%80%AEb", "persoon", "onzichtbare"),
    ],
)
async def test_a_bad_user_is_refused_next_to_the_field(
    net: Net, query: str, field: str, words: str
) -> None:
    browser = await officer_browser(net.desk)
    status, page, _ = await browser.get(f"/gebruikersrapport?{query}")
    assert status == 400
    assert words in _error_next_to(page, field).lower()
    assert "<tbody" not in page


async def test_a_hostile_user_name_is_shown_inert(net: Net) -> None:
    browser = await officer_browser(net.desk)
    status, page, _ = await browser.get(
        "/gebruikersrapport?persoon=%3Cscript%3Ealert(1)%3C/script%3E"
    )
    assert status == 200
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page


async def test_anomalies_follow_both_thresholds(net: Net) -> None:
    browser = await officer_browser(net.desk)
    status, page, _ = await browser.get("/afwijkingen")
    assert status == 200 and 'value="50"' in page and 'value="1"' in page
    assert "Geen afwijkingen gevonden." in page
    status, page, _ = await browser.get("/afwijkingen?drempel=1&geweigerd=1")
    assert status == 200
    body = re.search(r"<tbody.*?</tbody>", page, re.S)
    assert body is not None and "2 verschillende objecten" in body.group(0)
    assert 'href="/gebruikersrapport?persoon=' in body.group(0)  # on to that person's report


@pytest.mark.parametrize("field", ["drempel", "geweigerd"])
@pytest.mark.parametrize("typed", ["0", "abc", "100001", "١٢"])
async def test_a_bad_threshold_is_refused_next_to_its_field(
    net: Net, field: str, typed: str
) -> None:
    browser = await officer_browser(net.desk)
    status, page, _ = await browser.get(f"/afwijkingen?{field}={typed}")
    assert status == 400
    assert "1 tot en met 100000" in _error_next_to(page, field)
    assert "<tbody" not in page


async def test_the_export_downloads_every_visible_entry_with_its_proof(
    net: Net, tmp_path: Path
) -> None:
    browser = await officer_browser(net.desk)
    _, page, _ = await browser.get("/toegangslogboek")
    assert 'href="/toegangslogboek/export"' in page
    response = await net.desk.client.get(
        "/toegangslogboek/export", headers=browser._headers(), allow_redirects=False
    )
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/x-ndjson"
    assert re.fullmatch(
        r'attachment; filename="toegangslogboek-\d+-\d{4}-\d\d-\d\d\.ndjson"',
        response.headers["Content-Disposition"],
    )
    assert response.headers["Cache-Control"] == "no-store"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    data = await response.read()
    lines = data.decode().splitlines()
    assert len(lines) >= 3 and all(json.loads(line) for line in lines)
    export = tmp_path / "export.ndjson"
    export.write_bytes(data)
    verified = verify_export_file(net.desk.services.library._org, export, full=False)
    assert verified.checked == len(lines) - 1


async def test_an_export_that_does_not_prove_is_not_handed_out(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    browser = await officer_browser(net.desk)
    hub = net.desk.services.library._org.hub
    real = hub.audit_export

    async def tampered(**kwargs: Any) -> AsyncIterator[bytes]:
        async for number, line in _numbered(real(**kwargs)):
            yield line.replace(b'"allowed"', b'"denied"') if number == 2 else line

    monkeypatch.setattr(hub, "audit_export", tampered)
    status, page, response = await browser.get("/toegangslogboek/export")
    assert status == 502, page[:1000]
    assert "Content-Disposition" not in response.headers
    assert response.content_type == "text/html"


async def _numbered(lines: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, bytes]]:
    number = 0
    async for line in lines:
        number += 1
        yield number, line


async def test_the_subject_report_downloads_as_a_printable_page(net: Net) -> None:
    browser = await officer_browser(net.desk, purpose="data-subject-request")
    status, text, response = await browser.post(
        "/inzageverzoek", {**FORM, "date_of_birth": "14-03-1999", "formaat": "afdruk"}
    )
    assert status == 200 and response.content_type == "text/html"
    assert re.fullmatch(
        r'attachment; filename="inzageverzoek-\d{4}-\d\d-\d\d\.html"',
        response.headers["Content-Disposition"],
    )
    assert "<h1>Inzageverzoek</h1>" in text and "@media print" in text
    assert "Van elk van deze 1 vermeldingen is bewezen" in text
    assert not any(canary in text for canary in CANARIES)


async def test_a_caseworker_gets_none_of_the_reports(net: Net) -> None:
    net.desk.add_person("w.worker")
    worker = Browser(net.desk)
    await worker.log_in("w.worker")
    _, inbox, _ = await worker.get("/postvak")
    assert 'href="/gebruikersrapport"' not in inbox and 'href="/afwijkingen"' not in inbox
    for path in PATHS:
        status, page, response = await worker.get(path)
        assert status == 404, path
        assert response.content_type == "text/html" and "bewezen" not in page


async def test_the_log_status_shows_how_many_witnesses_cosigned(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a witness policy on the hub, the organisation page says how many organisations
    cosigned the head and whether the quorum is met (the last round's finding)."""
    browser = await officer_browser(net.desk)
    log = net.desk.services.library._org.log
    monkeypatch.setattr(log, "witnessed", None)
    _, page, _ = await browser.get("/organisatie")
    assert 'id="getuigen"' not in page  # no witness policy: nothing to count
    short = Witnessed(5, 3, 2, (OrgId("coordinator"),), cosigned=True)
    monkeypatch.setattr(log, "check", _keeps(log, short))
    _, page, _ = await browser.get("/organisatie")
    witnesses = re.search(r'id="getuigen">(.*?)</dd>', page, re.S)
    assert witnesses is not None and "1 van de 2" in witnesses.group(1)
    assert "NIET gehaald" in witnesses.group(1)
    met = Witnessed(5, 3, 2, (OrgId("coordinator"), OrgId("shelter")), cosigned=True)
    monkeypatch.setattr(log, "check", _keeps(log, met))
    _, page, _ = await browser.get("/organisatie")
    witnesses = re.search(r'id="getuigen">(.*?)</dd>', page, re.S)
    assert witnesses is not None and "2 van de 2" in witnesses.group(1)
    assert "gehaald" in witnesses.group(1) and "NIET" not in witnesses.group(1)


def _keeps(log: Any, found: Witnessed) -> Any:
    """The log's check, after which the witnessing round found ``found``."""
    real = log.check

    async def check(served: Any = None) -> Any:
        head = await real(served)
        log.witnessed = found
        return head

    return check


async def test_the_printable_subject_report_needs_the_token(net: Net) -> None:
    browser = await officer_browser(net.desk, purpose="data-subject-request")
    await browser.get("/inzageverzoek")
    status, page, response = await browser.post(
        "/inzageverzoek", {**FORM, "formaat": "afdruk"}, token=False
    )
    assert status == 403 and "Content-Disposition" not in response.headers
    assert "Canarina" not in page


async def test_every_new_page_needs_a_login(desk_app: Any) -> None:
    anonymous = Browser(desk_app)
    for path in (
        "/overzicht",
        "/overzicht/verwijzingen.svg",
        "/comensha",
        "/comensha/registratie.csv",
        "/gebeurtenissen/lijst",
        *PATHS,
    ):
        status, page, response = await anonymous.get(path)
        assert status == 303, path
        assert response.headers["Location"].startswith("/inloggen?terug=")
        assert "<svg" not in page and "bewezen" not in page
