"""The privacy officer's pages: the access-log check (controle).

A real hub in this process (``desk_hub_harness``) with the shelter's desk, the shelter
holding the network role ``privacy_officer``: the shelter sends two signals to the
coordinator, and the desk's check page is read as a person would.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from desk_hub_harness import HubAndDesk, desk_on_hub
from deskharness import Browser, DeskUnderTest

from desk.adapter import LibraryError
from schakel import demo as demo_network

ORGS = {"shelter": ("member", "privacy_officer"), "coordinator": ("member", "coordinator")}
OFFICER = ("caseworker", "privacy_officer")


def _signal(bsn: str) -> dict[str, object]:
    return {
        "schema": "schakel.signal/1",
        "person": {"bsn": bsn},
        "exploitation": "labour",
        "indicators": ["control.documents_withheld"],
        "text": "Zonder paspoort in de kas",
        "urgency": "normal",
        "consent_to_share": True,
    }


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[HubAndDesk]:
    async with desk_on_hub(tmp_path, desk_org="shelter", orgs=ORGS) as net:
        shelter = demo_network.open_organisation(net.demo, "shelter", net.hub_url)
        try:
            async with shelter.hub:
                for bsn in ("111222333", "123456782"):
                    await shelter.send_signal(_signal(bsn), ["coordinator"])
        finally:
            shelter.state.close()
        yield net


async def officer_browser(desk: DeskUnderTest, person: str = "p.officer") -> Browser:
    desk.add_person(person, OFFICER)
    browser = Browser(desk)
    await browser.log_in(person)
    status, _, _ = await browser.post("/doelbinding", {"doel": "audit", "terug": "/controle"})
    assert status == 303
    return browser


def _error_next_to(page: str, field: str) -> str:
    found = re.search(rf'id="{field}-fout">(.*?)</p>', page, re.S)
    assert found, f"no error next to {field}"
    return found.group(1)


async def test_the_check_page_proves_the_visible_log_in_words(net: HubAndDesk) -> None:
    browser = await officer_browser(net.desk)
    status, page, _ = await browser.get("/controle")
    assert status == 200
    assert 'href="/controle" aria-current="page"' in page
    outcome = re.search(r'id="uitkomst">(.*?)</p>', page, re.S)
    assert outcome is not None
    assert "Alle" in outcome.group(1) and "bewezen" in outcome.group(1)
    assert "Geen afwijkingen gevonden." in page


async def test_anomalies_follow_the_threshold_and_the_check_is_logged_for_the_person(
    net: HubAndDesk,
) -> None:
    browser = await officer_browser(net.desk)
    status, page, _ = await browser.get("/controle?drempel=1")
    assert status == 200
    row = re.search(r"<tbody.*?</tbody>", page, re.S)
    assert row is not None and "shelter" in row.group(0)
    assert "2 verschillende objecten" in row.group(0)
    status, page, _ = await browser.get("/controle?drempel=100")
    assert status == 200 and "<tbody" not in page


@pytest.mark.parametrize("typed", ["0", "abc", "100001", "-1", "١٢"])
async def test_a_bad_threshold_is_refused_next_to_the_field(net: HubAndDesk, typed: str) -> None:
    browser = await officer_browser(net.desk)
    status, page, _ = await browser.get(f"/controle?drempel={typed}")
    assert status == 400
    assert "1 tot en met 100000" in _error_next_to(page, "drempel")
    assert "<tbody" not in page


async def test_a_log_that_does_not_verify_is_said_in_words(
    net: HubAndDesk, monkeypatch: pytest.MonkeyPatch
) -> None:
    browser = await officer_browser(net.desk)

    async def inconsistent() -> None:
        raise LibraryError("log")

    monkeypatch.setattr(net.desk.services.library, "verify_log", inconsistent)
    status, page, _ = await browser.get("/controle")
    assert status == 200
    outcome = re.search(r'id="uitkomst">(.*?)</p>', page, re.S)
    assert outcome is not None and "NIET" in outcome.group(1)
    assert "Nu niet gezocht." in page


async def test_a_caseworker_gets_nothing(net: HubAndDesk) -> None:
    net.desk.add_person("w.worker")
    worker = Browser(net.desk)
    await worker.log_in("w.worker")
    _, inbox, _ = await worker.get("/postvak")
    assert 'href="/controle"' not in inbox
    status, page, _ = await worker.get("/controle")
    assert status == 404 and "uitkomst" not in page


async def test_a_desk_of_an_organisation_without_the_role_has_no_check(
    desk_app: DeskUnderTest,
) -> None:
    browser = await officer_browser(desk_app)
    _, inbox, _ = await browser.get("/postvak")
    assert 'href="/controle"' not in inbox
    status, page, _ = await browser.get("/controle")
    assert status == 404 and "uitkomst" not in page
