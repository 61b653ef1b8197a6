"""The privacy officer's pages: the access-log check (controle) and the subject report.

A real hub in this process (``desk_hub_harness``) with the shelter's desk, the shelter
holding the network role ``privacy_officer``: the shelter sends two signals to the
coordinator (two people), and the desk's pages are read and posted as a person would.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from desk_hub_harness import HubAndDesk, desk_on_hub
from deskharness import Browser, DeskUnderTest

from desk import vocabulary
from desk.adapter import LibraryError, SplitViewAlert
from hub.accesslog import erasure
from hub.http.common import SERVICES
from hub.store import AuditQuery, Tx
from protocol.auditlog import ACTIONS, OUTCOMES
from schakel import demo as demo_network

ORGS = {"shelter": ("member", "privacy_officer"), "coordinator": ("member", "coordinator")}
OFFICER = ("caseworker", "privacy_officer")


ANNA = {
    "bsn": "111222333",
    "given_names": "Canarina",
    "family_name": "Zeldzaamheid",
    "date_of_birth": "1999-03-14",
}
PEOPLE = (ANNA, {"bsn": "123456782"})
CANARIES = ("111222333", "111 222 333", "Canarina", "Zeldzaamheid", "14-03-1999")


def _signal(person: dict[str, str]) -> dict[str, object]:
    return {
        "schema": "schakel.signal/1",
        "person": person,
        "exploitation": "labour",
        "indicators": ["control.documents_withheld"],
        "text": "Zonder paspoort in de kas",
        "urgency": "normal",
        "consent_to_share": True,
    }


@dataclass
class Net:
    hub: HubAndDesk
    signals: tuple[str, str]  # about ANNA, about the other person

    @property
    def desk(self) -> DeskUnderTest:
        return self.hub.desk


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    async with desk_on_hub(tmp_path, desk_org="shelter", orgs=ORGS) as net:
        shelter = demo_network.open_organisation(net.demo, "shelter", net.hub_url)
        try:
            async with shelter.hub:
                sent = [await shelter.send_signal(_signal(p), ["coordinator"]) for p in PEOPLE]
        finally:
            shelter.state.close()
        yield Net(net, (sent[0].id, sent[1].id))


async def officer_browser(
    desk: DeskUnderTest, person: str = "p.officer", purpose: str = "audit"
) -> Browser:
    desk.add_person(person, OFFICER)
    browser = Browser(desk)
    await browser.log_in(person)
    status, _, _ = await browser.post("/doelbinding", {"doel": purpose, "terug": "/controle"})
    assert status == 303
    return browser


def _error_next_to(page: str, field: str) -> str:
    found = re.search(rf'id="{field}-fout">(.*?)</p>', page, re.S)
    assert found, f"no error next to {field}"
    return found.group(1)


async def test_the_check_page_proves_the_visible_log_in_words(net: Net) -> None:
    browser = await officer_browser(net.desk)
    status, page, _ = await browser.get("/controle")
    assert status == 200
    assert 'href="/controle" aria-current="page"' in page
    outcome = re.search(r'id="uitkomst">(.*?)</p>', page, re.S)
    assert outcome is not None
    assert "Alle" in outcome.group(1) and "bewezen" in outcome.group(1)
    assert "Geen afwijkingen gevonden." in page


async def test_anomalies_follow_the_threshold_and_the_check_is_logged_for_the_person(
    net: Net,
) -> None:
    browser = await officer_browser(net.desk)
    status, page, _ = await browser.get("/controle?drempel=1")
    assert status == 200
    row = re.search(r"<tbody.*?</tbody>", page, re.S)
    assert row is not None and "shelter" in row.group(0)
    assert "2 verschillende objecten" in row.group(0)
    assert 'href="/gebruikersrapport?persoon=' in row.group(0)  # each person: their report
    status, page, _ = await browser.get("/controle?drempel=100")
    assert status == 200 and "<tbody" not in page


@pytest.mark.parametrize("typed", ["0", "abc", "100001", "-1", "١٢"])
async def test_a_bad_threshold_is_refused_next_to_the_field(net: Net, typed: str) -> None:
    browser = await officer_browser(net.desk)
    status, page, _ = await browser.get(f"/controle?drempel={typed}")
    assert status == 400
    assert "1 tot en met 100000" in _error_next_to(page, "drempel")
    assert "<tbody" not in page


async def test_a_log_that_does_not_verify_is_said_in_words(
    net: Net, monkeypatch: pytest.MonkeyPatch
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


async def test_the_split_view_alerts_the_client_raised_are_shown(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    browser = await officer_browser(net.desk)
    alert = SplitViewAlert(at=1_800_000_000, size=7, evidence="split-view-7.json")
    monkeypatch.setattr(net.desk.services.library, "split_views", lambda: (alert,))
    status, page, _ = await browser.get("/controle")
    assert status == 200
    assert 'role="alert"' in page and "split-view-7.json" in page and "(7 " in page


async def test_a_caseworker_gets_nothing(net: Net) -> None:
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


# -- the subject report ----------------------------------------------------------------------

FORM = {"bsn": "111 222 333", "given_names": "Canarina", "family_name": "Zeldzaamheid"}


async def test_the_subject_report_lists_the_accesses_to_that_person_only(net: Net) -> None:
    browser = await officer_browser(net.desk, purpose="data-subject-request")
    status, form, _ = await browser.get("/inzageverzoek")
    assert status == 200 and 'href="/inzageverzoek" aria-current="page"' in form
    status, page, _ = await browser.post("/inzageverzoek", {"bsn": "111 222 333"})
    assert status == 200
    assert "Van elk van deze 1 vermeldingen is bewezen" in page
    row = re.search(r"<tbody.*?</tbody>", page, re.S)
    assert row is not None and "shelter" in row.group(0)
    assert "Aangemaakt" in row.group(0) and "Toegestaan" in row.group(0)

    status, csv, response = await browser.post(
        "/inzageverzoek", {**FORM, "date_of_birth": "14-03-1999", "formaat": "csv"}
    )
    assert status == 200 and response.content_type == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.headers["Cache-Control"] == "no-store"
    anna, other = net.signals
    assert anna in csv and other not in csv
    assert not any(canary in csv for canary in CANARIES)


async def test_the_typed_identifiers_appear_in_no_log_no_address_and_no_database(
    net: Net, caplog: pytest.LogCaptureFixture
) -> None:
    browser = await officer_browser(net.desk, purpose="data-subject-request")
    caplog.set_level(logging.DEBUG)
    typed = {**FORM, "date_of_birth": "14-03-1999"}
    for extra in ({}, {"formaat": "csv"}, {"phone": "not a phone"}):
        status, _, response = await browser.post("/inzageverzoek", {**typed, **extra})
        assert status in (200, 400)
        assert not any(c in str(response.url) for c in CANARIES)
        assert not any(c in response.headers.get("Location", "") for c in CANARIES)
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert caplog.records and not any(c in logged for c in CANARIES)
    desk_files = b"".join(
        p.read_bytes() for p in net.desk.services.config.database_path.parent.glob("desk.sqlite*")
    )
    hub_files = b"".join(p.read_bytes() for p in net.hub.demo.directory.glob("hub.db*"))
    for canary in ("Canarina", "Zeldzaamheid"):
        assert canary.encode() not in desk_files and canary.encode() not in hub_files


@pytest.mark.parametrize(
    ("form", "field", "says"),
    [
        ({"bsn": "123456789"}, "bsn", "elfproef"),
        ({}, "bsn", "ten minste een BSN"),
        ({"given_names": "Canarina"}, "family_name", "achternaam"),
        ({"date_of_birth": "31-02-1999", "bsn": "111222333"}, "date_of_birth", "14-03-1999"),
        ({"bsn": "111\u200b222333"}, "bsn", "onzichtbare"),
        ({"bsn": "1" * 13}, "bsn", "te lang"),
        ({"document_number": "AB1234567"}, "document_country", "land"),
    ],
)
async def test_bad_identifiers_are_refused_next_to_the_field(
    net: Net, form: dict[str, str], field: str, says: str
) -> None:
    browser = await officer_browser(net.desk, purpose="data-subject-request")
    status, page, _ = await browser.post("/inzageverzoek", form)
    assert status == 400
    assert says in _error_next_to(page, field)
    assert 'id="bewijs"' not in page


async def test_the_subject_report_needs_its_purpose_and_a_valid_token(net: Net) -> None:
    browser = await officer_browser(net.desk, purpose="audit")
    status, page, _ = await browser.get("/inzageverzoek")
    assert status == 200 and "/doelbinding?terug=/inzageverzoek" in page
    status, page, _ = await browser.post("/inzageverzoek", FORM)
    assert status == 400 and 'id="bewijs"' not in page
    assert 'href="#purpose"' in page

    right = await officer_browser(net.desk, "p.second", purpose="data-subject-request")
    status, _, _ = await right.post("/inzageverzoek", {**FORM, "csrf": "wrong"}, token=False)
    assert status == 403


async def test_a_caseworker_gets_no_subject_report(net: Net) -> None:
    net.desk.add_person("w.worker")
    worker = Browser(net.desk)
    await worker.log_in("w.worker")
    status, page, _ = await worker.get("/inzageverzoek")
    assert status == 404 and "bsn" not in page
    status, page, _ = await worker.post("/inzageverzoek", FORM, from_path="/postvak")
    assert status == 404 and 'id="bewijs"' not in page


def test_every_action_and_outcome_of_the_access_log_has_words() -> None:
    assert set(vocabulary.LOG_ACTIONS) == set(ACTIONS)
    assert set(vocabulary.LOG_OUTCOMES) == set(OUTCOMES)


# -- the access log --------------------------------------------------------------------------


async def test_the_access_log_lists_proven_entries_with_filters_and_paging(net: Net) -> None:
    browser = await officer_browser(net.desk)
    status, page, _ = await browser.get("/toegangslogboek")
    assert status == 200 and 'href="/toegangslogboek" aria-current="page"' in page
    proof = re.search(r'id="bewijs">(.*?)</p>', page, re.S)
    assert proof is not None and "bewezen" in proof.group(1)
    assert "geen getuigenbeleid" in page
    rows = re.findall(r'<tr class="utrecht-table__row">\s*<td', page)
    assert rows

    status, page, _ = await browser.get("/toegangslogboek?handeling=create&type=message")
    assert status == 200
    body = re.search(r"<tbody.*?</tbody>", page, re.S)
    assert body is not None
    assert body.group(0).count("Aangemaakt") == 2 and "Gelezen" not in body.group(0)

    status, page, _ = await browser.get("/toegangslogboek?persoon=nobody.here")
    assert status == 200 and "<tbody" not in page

    status, page, _ = await browser.get("/toegangslogboek?van=01-01-2000&tot=02-01-2000")
    assert status == 200 and "<tbody" not in page


async def test_the_access_log_pages_on(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("desk.privacy.LOG_PAGE", 1)
    browser = await officer_browser(net.desk)
    status, page, _ = await browser.get("/toegangslogboek?type=message")
    assert status == 200
    found = re.search(r'href="(/toegangslogboek\?[^"]*vanaf=(\d+))" rel="next"', page)
    assert found is not None and "type=message" in found.group(1)
    status, second, _ = await browser.get(found.group(1).replace("&amp;", "&"))
    assert status == 200 and "Eerste pagina" in second


@pytest.mark.parametrize(
    ("query", "field", "says"),
    [
        ("handeling=steal", "handeling", "Kies een van"),
        ("type=secret", "type", "Kies een van"),
        ("van=31-02-2026", "van", "14-03-1999"),
        ("van=02-01-2026&tot=01-01-2026", "tot", "voor het begin"),
        ("persoon=" + "a" * 101, "persoon", "te lang"),
        ("persoon=a%E2%80%8Bb", "persoon", "onzichtbare"),
    ],
)
async def test_bad_log_filters_are_refused_next_to_the_field(
    net: Net, query: str, field: str, says: str
) -> None:
    browser = await officer_browser(net.desk)
    status, page, _ = await browser.get(f"/toegangslogboek?{query}")
    assert status == 400
    assert says in _error_next_to(page, field)
    assert 'id="bewijs"' not in page


async def test_a_caseworker_gets_no_access_log(net: Net) -> None:
    net.desk.add_person("w.worker")
    worker = Browser(net.desk)
    await worker.log_in("w.worker")
    _, inbox, _ = await worker.get("/postvak")
    assert 'href="/toegangslogboek"' not in inbox
    status, page, _ = await worker.get("/toegangslogboek")
    assert status == 404 and 'id="bewijs"' not in page


async def _erase_reads_of(net: Net, message_id: str) -> list[int]:
    """Erase, on the hub, the personal fields of every entry about ``message_id`` but its
    create (as retention or an erasure request would)."""
    assert net.hub.server is not None
    store = net.hub.server.app[SERVICES].store
    about = await store.audit_entries(AuditQuery(viewer=None, object_id=message_id))
    seqs = [e.index for e in about if e.action != "create"]

    def item(tx: Tx) -> int:
        return erasure.erase_openings(tx, seqs, reason="retention", now=int(time.time()))

    assert await store.write(item) == len(seqs) > 0
    await erasure.scrub(store)
    return seqs


async def test_erased_accesses_say_gewist_in_the_log_and_the_subject_report(net: Net) -> None:
    anna, _ = net.signals
    coordinator = demo_network.open_organisation(net.hub.demo, "coordinator", net.hub.hub_url)
    try:
        async with coordinator.hub:
            await coordinator.receive()  # reads and acknowledges both signals
    finally:
        coordinator.state.close()
    erased = await _erase_reads_of(net, anna)
    browser = await officer_browser(net.desk, purpose="data-subject-request")
    status, page, _ = await browser.post("/inzageverzoek", {"bsn": "111 222 333"})
    assert status == 200
    body = re.search(r"<tbody.*?</tbody>", page, re.S)
    assert body is not None
    assert body.group(0).count("<em>gewist</em>") == len(erased)
    assert "Gewist: de persoonsgegevens van deze toegang" in page
    assert "klopt niet" not in page and "ontbreekt" not in page

    status, page, _ = await browser.get("/toegangslogboek")
    assert status == 200
    assert page.count("<em>gewist</em>") == len(erased)
    proof = re.search(r'id="bewijs">(.*?)</p>', page, re.S)
    assert proof is not None and "bewezen" in proof.group(1)

    checker = await officer_browser(net.desk, person="q.officer")
    status, page, _ = await checker.get("/controle")
    assert status == 200
    outcome = re.search(r'id="uitkomst">(.*?)</p>', page, re.S)
    assert outcome is not None and "bewezen" in outcome.group(1)
    said = re.search(r'id="gewist">(.*?)</p>', page, re.S)
    assert said is not None and f"Van {len(erased)} van de gecontroleerde" in said.group(1)
