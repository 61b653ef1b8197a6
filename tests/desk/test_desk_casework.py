"""The coordinator's pages: cases, one case (split, merge, unmerge, label), referrals.

A real hub in this process (``desk_hub_harness``) with the coordinator's desk: the
shelter sends two signals about one person (same BSN: one case) and the coordinator
refers her to the shelter; the desk's pages are read and posted as a person would.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from desk_hub_harness import HubAndDesk, desk_on_hub
from deskharness import Browser, DeskUnderTest, csrf_of

from clients.organisation import Organisation
from desk import referform
from desk.adapter import TimelineRow
from desk.casebook import CaseBook, label_problem
from desk.errors import DeskError
from desk.factors import Sealer
from schakel import demo as demo_network

MARK = "Zonder paspoort in de kas"


def _signal(person: dict[str, str], urgency: str, text: str) -> dict[str, Any]:
    return {
        "schema": "schakel.signal/1",
        "person": person,
        "exploitation": "labour",
        "indicators": ["control.documents_withheld"],
        "text": text,
        "urgency": urgency,
        "consent_to_share": True,
    }


REFERRAL = {
    "schema": "schakel.referral/1",
    "service": "shelter",
    "urgency": "urgent",
    "reason": "Niet veilig waar ze nu woont",
    "shared_with_person": "Dat een opvang haar kan opnemen",
    "consent": {"share_with_recipient": True, "comensha_registration": False},
}


@dataclass
class Network:
    net: HubAndDesk
    coordinator: Organisation
    shelter: Organisation
    case: str
    signals: tuple[str, str]
    lone: str  # a case of one signal that matches nothing

    @property
    def desk(self) -> DeskUnderTest:
        return self.net.desk


@pytest.fixture
async def network(tmp_path: Path) -> AsyncIterator[Network]:
    async with desk_on_hub(tmp_path, desk_org="coordinator") as net:
        coordinator = demo_network.open_organisation(net.demo, "coordinator", net.hub_url)
        shelter = demo_network.open_organisation(net.demo, "shelter", net.hub_url)
        try:
            async with coordinator.hub, shelter.hub:
                anna = {"bsn": "111222333", "given_names": "Anna", "family_name": "de Vries"}
                first = await shelter.send_signal(_signal(anna, "normal", MARK), ["coordinator"])
                second = await shelter.send_signal(
                    _signal({"bsn": "111222333"}, "immediate_danger", "Tweede melding"),
                    ["coordinator"],
                )
                await shelter.send_signal(
                    _signal({"bsn": "123456782"}, "low", "Los signaal"), ["coordinator"]
                )
                assert len((await coordinator.receive()).messages) == 3  # the desk's state
                page = await coordinator.hub.cases()
                by_signals = {c.signals: c.case for c in page.cases}
                await coordinator.send_referral(
                    {**REFERRAL, "person": {"bsn": "111222333"}}, "shelter", case=by_signals[2]
                )
            yield Network(
                net,
                coordinator,
                shelter,
                by_signals[2],
                (first.id, second.id),
                by_signals[1],
            )
        finally:
            coordinator.state.close()
            shelter.state.close()


async def coordinator_browser(desk: DeskUnderTest, person: str = "c.coord") -> Browser:
    desk.add_person(person, ("caseworker", "coordinator"))
    browser = Browser(desk)
    await browser.log_in(person)
    return browser


def _files(database: Path) -> bytes:
    """A SQLite database's bytes, its write-ahead log included."""
    return b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))


def _error_next_to(page: str, field: str) -> str:
    found = re.search(rf'id="{field}-fout">(.*?)</p>', page, re.S)
    assert found, f"no error next to {field}"
    return found.group(1)


async def test_the_cases_page_lists_each_case_with_urgency_referral_and_label(
    network: Network,
) -> None:
    browser = await coordinator_browser(network.desk)
    status, page, response = await browser.get("/casussen")
    assert status == 200, page[:500]
    assert response.headers["Cache-Control"] == "no-store"
    assert f'href="/casussen/{network.case}"' in page and f'href="/casussen/{network.lone}"' in page
    row = page[page.index(f'href="/casussen/{network.case}"') :].split("</tr>")[0]
    assert "Direct gevaar" in row  # the highest urgency of its two signals, decrypted here
    assert "shelter (Opvang)" in row and '<td class="utrecht-table__cell">2</td>' in row
    assert "Verzonden" in row and "volgende stap: shelter" in row
    lone = page[page.index(f'href="/casussen/{network.lone}"') :].split("</tr>")[0]
    assert "Laag" in lone and "Geen" in lone
    # the index is local: a second view asks the hub for no case view again
    assert network.desk.services.casebook.indexed([network.case, network.lone]) == {
        network.case,
        network.lone,
    }

    status, _, response = await browser.post(
        f"/casussen/{network.case}/label",
        {"label": "Anna, kas Westland"},
        from_path=f"/casussen/{network.case}",
    )
    assert status == 303 and response.headers["Location"] == f"/casussen/{network.case}"
    _, page, _ = await browser.get("/casussen")
    assert "<bdi>Anna, kas Westland</bdi>" in page
    hub_db = network.net.demo.directory / "hub.db"
    assert b"kas Westland" not in _files(hub_db)  # the label never reaches the hub
    desk_db = network.desk.services.config.database_path
    assert b"kas Westland" not in _files(desk_db)  # and is sealed at rest

    # filters: a state the case is not in, and overdue only (nothing is overdue yet)
    _, page, _ = await browser.get("/casussen?status=in_care")
    assert f'href="/casussen/{network.case}"' not in page and "Geen casussen gevonden" in page
    _, page, _ = await browser.get("/casussen?status=referred&type=shelter&sorteer=signals")
    assert f'href="/casussen/{network.case}"' in page
    assert f'href="/casussen/{network.lone}"' not in page
    _, page, _ = await browser.get("/casussen?te-laat=1")
    assert "Geen casussen gevonden" in page

    # a new signal joins the lone case: the match event brings its urgency to the index
    # (the case was indexed before, so it is not opened again)
    async with network.shelter.hub, network.coordinator.hub:
        await network.shelter.send_signal(
            _signal({"bsn": "123456782"}, "immediate_danger", "Nu in gevaar"), ["coordinator"]
        )
        assert len((await network.coordinator.receive()).messages) == 1
    _, page, _ = await browser.get("/casussen?sorteer=signals&volgorde=asc")
    lone = page[page.index(f'href="/casussen/{network.lone}"') :].split("</tr>")[0]
    assert "Direct gevaar" in lone and '<td class="utrecht-table__cell">2</td>' in lone


async def test_bad_filters_are_shown_next_to_the_field(network: Network) -> None:
    browser = await coordinator_browser(network.desk)
    status, page, _ = await browser.get("/casussen?status=%3Cscript%3E&sorteer=name")
    assert status == 400
    assert "Kies een van de mogelijkheden" in _error_next_to(page, "status")
    assert "Kies een van de mogelijkheden" in _error_next_to(page, "sorteer")
    assert "<script>" not in page


async def test_the_case_page_shows_signals_inline_and_why_they_were_linked(
    network: Network,
) -> None:
    browser = await coordinator_browser(network.desk)
    status, page, _ = await browser.get(f"/casussen/{network.case}")
    assert status == 200, page[:500]
    assert MARK in page and "Tweede melding" in page and "de Vries" in page
    assert "Gekoppeld aan andere signalen van deze casus via: BSN" in page
    assert "Verwijzing" in page and "Opvang" in page
    # the hub's access log names the person for what the page read
    by_desk = [e for e in network.net.hub_access(network.case) if e[2] != "demo.user"]
    assert by_desk and all(e[2] == "c.coord" for e in by_desk), by_desk
    for signal in network.signals:  # each signal shown inline was read as the person
        reads = [e for e in network.net.hub_access(signal) if e[0] == "read"]
        assert ("read", "allowed", "c.coord", "signal-intake") in reads, reads


async def test_label_refusals_are_shown_next_to_the_field(network: Network) -> None:
    browser = await coordinator_browser(network.desk)
    path = f"/casussen/{network.case}"
    for label, sentence in (
        ("x" * 81, "Een label heeft hoogstens 80 tekens."),
        ("Anna\u202egnilrits", "onzichtbare tekens of stuurtekens"),
    ):
        status, page, _ = await browser.post(f"{path}/label", {"label": label}, from_path=path)
        assert status == 400
        assert sentence in _error_next_to(page, "label")
    assert network.desk.services.casebook.labels([network.case]) == {}
    hostile = "<script>alert(1)</script>"
    status, _, _ = await browser.post(f"{path}/label", {"label": hostile}, from_path=path)
    assert status == 303
    _, page, _ = await browser.get(path)
    assert hostile not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


async def test_split_asks_for_confirmation_then_moves_the_signal(network: Network) -> None:
    browser = await coordinator_browser(network.desk)
    path = f"/casussen/{network.case}"
    second = network.signals[1]
    status, page, _ = await browser.post(f"{path}/splitsen", {"bericht": second}, from_path=path)
    assert status == 200 and "Deze casus splitsen?" in page
    assert "Ja, splits de casus" in page
    async with network.coordinator.hub:
        assert (await network.coordinator.hub.case(network.case)).summary.signals == 2
        status, _, response = await browser.post(
            f"{path}/splitsen", {"bericht": second, "bevestigd": "1"}, from_path=path
        )
        assert status == 303
        new = response.headers["Location"].rsplit("/", 1)[1]
        assert new != network.case
        assert (await network.coordinator.hub.case(network.case)).summary.signals == 1
        assert (await network.coordinator.hub.case(new)).summary.signals == 1
    _, page, _ = await browser.get(f"/casussen/{new}")
    assert "Tweede melding" in page and MARK not in page


async def test_merge_and_unmerge_ask_for_confirmation(network: Network) -> None:
    browser = await coordinator_browser(network.desk)
    path = f"/casussen/{network.case}"
    status, page, _ = await browser.post(
        f"{path}/samenvoegen", {"zaak": network.lone}, from_path=path
    )
    assert status == 200 and "Deze casussen samenvoegen?" in page
    status, _, response = await browser.post(
        f"{path}/samenvoegen", {"zaak": network.lone, "bevestigd": "1"}, from_path=path
    )
    assert status == 303 and response.headers["Location"] == path
    _, page, _ = await browser.get(path)
    assert "Los signaal" in page and "Een samenvoeging ongedaan maken" in page
    status, page, _ = await browser.post(
        f"{path}/ontkoppelen", {"zaak": network.lone}, from_path=path
    )
    assert status == 200 and "Deze samenvoeging ongedaan maken?" in page
    status, _, response = await browser.post(
        f"{path}/ontkoppelen", {"zaak": network.lone, "bevestigd": "1"}, from_path=path
    )
    assert status == 303 and response.headers["Location"] == f"/casussen/{network.lone}"
    _, page, _ = await browser.get(path)
    assert "Los signaal" not in page


async def test_bad_case_references_are_refused_next_to_the_field(network: Network) -> None:
    browser = await coordinator_browser(network.desk)
    path = f"/casussen/{network.case}"
    for other, sentence in (
        ("not a case", "Een casusnummer bestaat uit 16 letters en cijfers"),
        (network.case, "Kies een andere casus dan deze."),
    ):
        status, page, _ = await browser.post(
            f"{path}/samenvoegen", {"zaak": other, "bevestigd": "1"}, from_path=path
        )
        assert status == 400
        assert sentence in _error_next_to(page, "samenvoegen-zaak")
    status, page, _ = await browser.post(f"{path}/splitsen", {}, from_path=path)
    assert status == 400 and "Kies ten minste één signaal" in _error_next_to(page, "berichten")
    status, _, _ = await browser.get("/casussen/aaaaaaaaaaaaaaaa")  # a well-formed unknown
    assert status == 404
    status, _, _ = await browser.get("/casussen/..%2Fbeheer")
    assert status == 404


async def test_the_referrals_page_lists_open_referrals(network: Network) -> None:
    browser = await coordinator_browser(network.desk)
    status, page, _ = await browser.get("/verwijzingen")
    assert status == 200
    assert f'href="/casussen/{network.case}"' in page
    assert "coordinator" in page and "shelter (Opvang)" in page and "Verzonden" in page


async def test_a_caseworker_and_a_forged_post_get_nothing(network: Network) -> None:
    network.desk.add_person("w.worker")
    worker = Browser(network.desk)
    await worker.log_in("w.worker")
    _, inbox, _ = await worker.get("/postvak")
    assert 'href="/casussen"' not in inbox and 'href="/gebeurtenissen"' not in inbox
    for path in (
        "/casussen",
        f"/casussen/{network.case}",
        f"/casussen/{network.case}/verwijzen",
        "/verwijzingen",
        "/gebeurtenissen",
    ):
        status, page, _ = await worker.get(path)
        assert status == 404 and MARK not in page and "Tijdlijn" not in page
        assert "Anna" not in page and "Gebeurtenissen</h1>" not in page
    for action in ("label", "verwijzen"):
        status, _, _ = await worker.post(
            f"/casussen/{network.case}/{action}", {**REFER_FORM, "label": "x"}, from_path="/postvak"
        )
        assert status == 404
    assert network.desk.services.library.outbox() == []

    browser = await coordinator_browser(network.desk)
    _, page, _ = await browser.get(f"/casussen/{network.case}")
    token = csrf_of(page)
    path = f"/casussen/{network.case}/samenvoegen"
    form = {"zaak": network.lone, "bevestigd": "1"}
    status, _, _ = await browser.post(path, {**form, "csrf": "wrong"}, token=False)
    assert status == 403
    status, _, _ = await browser.post(
        path, {**form, "csrf": token}, {"Origin": "https://evil.example"}, token=False
    )
    assert status == 403
    async with network.coordinator.hub:
        assert (await network.coordinator.hub.case(network.lone)).summary.case == network.lone


async def test_a_desk_of_an_organisation_without_the_coordinator_role_has_no_cases(
    desk_app: DeskUnderTest,
) -> None:
    browser = await coordinator_browser(desk_app)
    _, inbox, _ = await browser.get("/postvak")
    assert 'href="/casussen"' not in inbox
    for path in ("/casussen", "/verwijzingen"):
        status, _, _ = await browser.get(path)
        assert status == 404


def test_the_casebook_keeps_labels_and_urgency_sealed_and_follows_merges(tmp_path: Path) -> None:
    path = tmp_path / "desk.sqlite"
    book = CaseBook(path, Sealer(b"k" * 32))
    try:
        book.index("m1", "case-a", "normal")
        book.index("m2", "case-a", "high")
        book.index("m3", "case-b", "immediate_danger")
        book.index("m2", "case-a", None)  # seen again without its payload: urgency kept
        book.index("m4", "case-c", "not-an-urgency")
        assert book.urgency(["case-a", "case-b", "case-c"]) == {
            "case-a": "high",
            "case-b": "immediate_danger",
        }
        assert book.indexed(["case-a", "case-c", "case-d"]) == {"case-a", "case-c"}
        book.moved(["case-b"], "case-a")  # a merge: b's signals count for a
        assert book.urgency(["case-a", "case-b"]) == {"case-a": "immediate_danger"}

        book.set_label("case-a", "Anna <script>", person="c.coord", now=1)
        assert book.labels(["case-a", "case-b"]) == {"case-a": "Anna <script>"}
        book.set_label("case-a", "", person="c.coord", now=2)
        assert book.labels(["case-a"]) == {}
        assert label_problem("x" * 80) is None and label_problem("x" * 81) == "label-long"
        assert label_problem("a\u2066b") == "invisible" and label_problem("a\nb") == "invisible"
        book.set_label("case-a", "Geheim label", person="c.coord", now=3)
        # another desk's key opens nothing: a copy of the database alone reads no label
        other = CaseBook(path, Sealer(b"o" * 32))
        try:
            assert other.labels(["case-a"]) == {} and other.urgency(["case-a"]) == {}
        finally:
            other.close()
        assert book.event_cursor == 0
        book.set_event_cursor(7)
        book.set_event_cursor(5)  # never back
        assert book.event_cursor == 7
        book.add_urgent("u1", "high", 10)
        book.add_urgent("u2", "immediate_danger", 10)
        book.add_urgent("u1", "high", 11)  # kept once
        with pytest.raises(DeskError):
            book.add_urgent("u3", "normal", 12)
        assert book.urgent() == [("u2", "immediate_danger", 10), ("u1", "high", 10)]
        book.set_urgent_cursor(9)
        book.set_urgent_cursor(3)  # never back
        assert book.urgent_cursor == 9
        book.add_event(2, "referral", 20, "case-a", None, "declined")
        book.add_event(1, "match", 19, "case-a", "m1", None)
        book.add_event(2, "referral", 20, "case-a", None, "declined")  # taken in once
        assert [(e.id, e.kind, e.step) for e in book.events()] == [
            (2, "referral", "declined"),
            (1, "match", None),
        ]
        assert len(book.events(limit=10_000)) == 2
    finally:
        book.close()
    assert b"Geheim label" not in _files(path) and b"immediate_danger" not in _files(path)


# -- refer (verwijzen) ---------------------------------------------------------------------

REFER_FORM = {
    "naar": "shelter",
    "dienst": "shelter",
    "urgentie": "urgent",
    "reden": "Niet veilig waar ze nu woont",
    "gedeeld": "Dat een opvang haar kan opnemen",
    "delen": "ja",
}


async def _received_referrals(shelter: Organisation) -> list[dict[str, Any]]:
    async with shelter.hub:
        messages = (await shelter.receive()).messages
        return [
            (await shelter.read_message(m.id)).payload for m in messages if m.kind == "referral"
        ]


async def _decline(shelter: Organisation) -> Any:
    """The shelter receives the network's referral and declines it; the referral."""
    async with shelter.hub:
        referral = next(m for m in (await shelter.receive()).messages if m.kind == "referral")
        await shelter.send_status(
            referral.id,
            "declined",
            {"schema": "schakel.status/1", "status": "declined", "explanation": "Vol",
             "reason_code": "no_capacity"},
        )  # fmt: skip
    return referral


async def test_refer_fills_the_person_from_the_case_and_sends_it(network: Network) -> None:
    browser = await coordinator_browser(network.desk)
    path = f"/casussen/{network.case}/verwijzen"
    status, page, _ = await browser.get(f"/casussen/{network.case}")
    assert f'href="{path}"' in page
    status, page, _ = await browser.get(path)
    assert status == 200, page[:500]
    assert "111222333" in page and "Anna" in page and "de Vries" in page
    assert '<option value="shelter">shelter (Opvang)</option>' in page
    assert 'value="coordinator"' not in page  # not a shelter, care or legal-aid organisation
    status, _, response = await browser.post(path, {**REFER_FORM, "comensha": "ja"})
    assert status == 303 and response.headers["Location"] == f"/casussen/{network.case}"
    _, page, _ = await browser.get(f"/casussen/{network.case}")
    assert "De verwijzing is verzonden" in page
    sent = (await _received_referrals(network.shelter))[-1]
    assert sent["person"] == {"bsn": "111222333", "given_names": "Anna", "family_name": "de Vries"}
    assert sent["service"] == "shelter" and sent["urgency"] == "urgent"
    assert sent["consent"] == {"share_with_recipient": True, "comensha_registration": True}


async def test_refer_refuses_bad_input_next_to_the_field_and_keeps_it(network: Network) -> None:
    browser = await coordinator_browser(network.desk)
    path = f"/casussen/{network.case}/verwijzen"
    before = len(network.desk.services.library.outbox())
    bad = {
        "naar": "coordinator",  # not a shelter, care or legal-aid organisation
        "dienst": "massage",
        "urgentie": "",
        "reden": "Echt dringend",
        "gedeeld": "Gezegd\u202e",
        "vervangt": "0" * 26,  # no declined referral of this case
    }
    status, page, _ = await browser.post(path, bad)
    assert status == 400
    for field in ("naar", "dienst", "urgentie", "vervangt"):
        assert "Kies een van de mogelijkheden." in _error_next_to(page, field)
    assert "onzichtbare tekens" in _error_next_to(page, "gedeeld")
    assert "toestemming" in _error_next_to(page, "delen")
    assert "Echt dringend</textarea>" in page  # the input is kept
    status, page, _ = await browser.post(path, {**REFER_FORM, "reden": "  "})
    assert status == 400 and "Vul dit in." in _error_next_to(page, "reden")
    assert len(network.desk.services.library.outbox()) == before
    status, _, _ = await browser.post(path, REFER_FORM, token=False)
    assert status == 403


async def test_re_refer_after_a_decline_replaces_it_and_a_refusal_is_shown(
    network: Network,
) -> None:
    referral = await _decline(network.shelter)
    browser = await coordinator_browser(network.desk)
    path = f"/casussen/{network.case}/verwijzen"
    status, page, _ = await browser.get(path)
    assert f'<option value="{referral.id}" selected>' in page
    form = {**REFER_FORM, "vervangt": referral.id}
    status, _, _ = await browser.post(path, form)
    assert status == 303
    status, page, _ = await browser.post(path, form)  # replaced already: the hub refuses
    assert status == 409
    assert "De hub weigerde deze verwijzing" in _error_next_to(page, "naar")
    assert "Echt" not in page and "Niet veilig waar ze nu woont</textarea>" in page


def test_refer_prefers_the_bsn_backed_person_and_flags_names_that_disagree() -> None:
    def signal(person: dict[str, str], reporter: dict[str, str] | None = None) -> TimelineRow:
        payload: dict[str, Any] = {"person": person}
        if reporter:
            payload["reporter"] = reporter
        return TimelineRow(
            0, "signal", "m", "school", "school", None, None, None, None, 0, "opened",
            payload, (),
        )  # fmt: skip

    police = signal(
        {"bsn": "111222333", "given_names": "Anna", "family_name": "de Vries"},
        {"name": "Agent Jansen", "phone": "0612345678"},
    )
    school = signal(
        {"given_names": "Ana", "family_name": "de Vries", "date_of_birth": "2008-01-02",
         "nationality": "NL"},
    )  # fmt: skip
    found = referform.known((school, police))
    assert found.person["bsn"] == "111222333" and found.person["given_names"] == "Anna"
    assert found.contact == {"name": "Agent Jansen", "phone": "0612345678"}
    assert found.disagree == ("given_names",)
    assert referform.known((school,)).disagree == ()
    ggd = signal({"given_names": "ANNA", "family_name": "De  Vries"})  # as the README tour
    assert referform.known((police, ggd)).disagree == ()  # case and spaces: the same name
    assert referform.known(()).person == {}

    def step(referral: str, code: str) -> TimelineRow:
        return TimelineRow(
            0, "status", "s", "shelter", "shelter", code, referral, None, None, 0, "opened",
            None, (),
        )  # fmt: skip

    steps = (step("r1", "declined"), step("r1", "closed"), step("r2", "declined"))
    assert referform.known((police, *steps)).declined == ("r2",)  # r1 was closed after


async def test_the_events_page_lists_matches_and_referral_steps_newest_first(
    network: Network,
) -> None:
    browser = await coordinator_browser(network.desk)
    status, page, _ = await browser.get("/gebeurtenissen")  # before the shelter answers
    assert status == 200, page[:500]
    assert "Stap in een verwijzing" not in page  # the coordinator's own step raises none
    await _decline(network.shelter)
    status, page, _ = await browser.get("/gebeurtenissen")
    assert status == 200, page[:500]
    assert 'href="/gebeurtenissen" aria-current="page"' in page
    table = page[page.index("<tbody") :]
    assert table.count("Signaal aan de casus gekoppeld") == 1  # the second signal of Anna
    assert "Stap in een verwijzing: Afgewezen" in table
    assert f'href="/casussen/{network.case}"' in table
    assert table.index("Stap in een verwijzing") < table.index("Signaal aan de casus gekoppeld")
    kept = network.desk.services.casebook.events()
    assert [e.kind for e in kept] == ["referral", "referral", "match"] and [
        e.id for e in kept
    ] == sorted((e.id for e in kept), reverse=True)


async def test_a_high_urgency_signal_is_an_alert_until_someone_opens_it(network: Network) -> None:
    async with network.shelter.hub:  # urgent, and it matches nothing
        lone = await network.shelter.send_signal(
            _signal({"bsn": "200000007"}, "high", "Alleen en bang"), ["coordinator"]
        )
    async with network.coordinator.hub:
        assert len((await network.coordinator.receive()).messages) == 1
    urgent_link = f'href="/bericht/{lone.id}"'
    danger_link = f'href="/bericht/{network.signals[1]}"'  # immediate danger, matched
    normal_link = f'href="/bericht/{network.signals[0]}"'
    browser = await coordinator_browser(network.desk)
    for path in ("/postvak", "/postvak/lijst", "/gebeurtenissen"):
        status, page, _ = await browser.get(path)
        assert status == 200
        alert = page[page.index("Signalen met hoge urgentie") :].split("</ul>")[0]
        assert urgent_link in alert and danger_link in alert and normal_link not in alert
        assert alert.index(urgent_link) < alert.index(danger_link)  # newest first
        assert "Hoog: signaal ontvangen op" in alert and "Direct gevaar" in alert
    status, _, _ = await browser.get(f"/bericht/{lone.id}")
    assert status == 200
    network.desk.add_person("w.worker")  # an alert is gone for everyone once opened
    worker = Browser(network.desk)
    await worker.log_in("w.worker")
    _, page, _ = await worker.get("/postvak")
    alert = page[page.index("Signalen met hoge urgentie") :].split("</ul>")[0]
    assert urgent_link not in alert and danger_link in alert
    status, _, _ = await worker.get(f"/bericht/{network.signals[1]}")
    _, page, _ = await worker.get("/postvak")
    assert "Signalen met hoge urgentie" not in page
    assert network.desk.services.casebook.urgent_cursor > 0
