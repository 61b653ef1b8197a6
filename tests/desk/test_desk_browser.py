"""The desk in real Chromium, against ``schakel demo run`` (hub and desks) in a child process.

One demo network and one browser for one test whose steps follow the README's browser
tour in order: log in with password and TOTP, send the tour's two signals from
the police and the GGD desks while the coordinator's inbox receives them live, a shelter
answers a referral, a person sets up and uses a security key (Chromium's virtual
authenticator), a keyboard-only walk through the signal form, axe-core's WCAG 2.1 A/AA
rules on every page, and, last, the canary: no name, BSN, free-text marker or pseudonym
in the desk's or the hub's logs, and no name, BSN or marker in the hub's database.

Pages are driven by label, role and visible text, as a person (or a screen reader) finds
them, never by CSS class.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from deskbrowser import (
    at,
    axe_violations,
    button,
    choose,
    describe,
    field,
    heading,
    link,
    press,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.common.virtual_authenticator import Protocol, VirtualAuthenticatorOptions
from selenium.webdriver.support.ui import WebDriverWait

from clients.errors import ClientError
from desk.demo import DEMO_PASSWORD
from desk.i18n import ZONE
from protocol.pseudonym import Identity
from schakel.demo import load, open_organisation

MARKER = "Kanarie-7Q4 bij de bushalte"
GGD_MARKER = "Kanarie-9Z1 onbehandelde wond"
HOSTILE = '<script>alert("x")</script>\u202eevil\u202c'
OWN_PASSWORD = "mijn eigen lange wachtwoord"
WAIT = 25
IMAGES_LOADED = (
    "return Array.from(document.querySelectorAll('main img'))"
    ".every(i => i.complete && i.naturalWidth > 0);"
)


def screenshot(chrome: Any, name: str) -> None:
    """With SCHAKEL_SCREENSHOTS set to a folder, the whole page as NAME.png there (to look at)."""
    folder = os.environ.get("SCHAKEL_SCREENSHOTS")
    if not folder:
        return
    height = chrome.execute_script("return document.documentElement.scrollHeight;")
    chrome.set_window_size(1280, max(1000, min(int(height) + 100, 6000)))
    chrome.save_screenshot(str(Path(folder) / f"{name}.png"))
    chrome.set_window_size(1280, 1000)


def wait_for(chrome: Any, condition: Any, timeout: float = WAIT) -> Any:
    return WebDriverWait(chrome, timeout, poll_frequency=0.2).until(lambda _: condition())


def checked_axe(chrome: Any, seen: dict[str, int]) -> None:
    """axe-core on the current page: 0 violations; remembers which page was checked."""
    violations = axe_violations(chrome)
    assert violations == [], f"{chrome.current_url}:\n{describe(violations)}"
    seen[heading(chrome)] = seen.get(heading(chrome), 0) + 1


def log_in(chrome: Any, url: str, person: str, seen: dict[str, int] | None = None) -> None:
    """Log in with password and the demo TOTP code (waiting out a code already used)."""
    chrome.get(url + "/postvak")
    if heading(chrome) == "Postvak":
        return
    assert at(chrome, "Inloggen op de desk") == "Inloggen op de desk"
    if seen is not None:
        checked_axe(chrome, seen)
    field(chrome, "Gebruikersnaam").send_keys(person)
    field(chrome, "Wachtwoord").send_keys(DEMO_PASSWORD)
    press(chrome, button(chrome, "Inloggen"))
    assert at(chrome, "Bevestig dat u het bent") == "Bevestig dat u het bent"
    if seen is not None:
        checked_axe(chrome, seen)
    # each person logs in once in the tour: the demo code of this 30 s step is unused
    box = chrome.find_element(By.ID, "demo-code")
    assert "Alleen demo" in box.find_element(By.XPATH, "..").text
    field(chrome, "Code").send_keys(box.text)
    press(chrome, button(chrome, "Bevestigen"))
    assert at(chrome, "Waar werkt u aan?") == "Waar werkt u aan?", text(chrome)[:1500]
    if seen is not None:
        checked_axe(chrome, seen)
    press(chrome, button(chrome, "Doorgaan"))
    assert at(chrome, "Postvak") == "Postvak"


def text(chrome: Any) -> str:
    """What the page reads, as a person sees it."""
    found = chrome.execute_script("return document.body ? document.body.innerText : '';")
    return str(found or "")


def shows(chrome: Any, phrase: str, timeout: float = 15.0) -> bool:
    """True once the page reads ``phrase`` (the page after a form may still be coming)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if phrase in text(chrome):
            return True
        time.sleep(0.1)
    return False


def inbox_rows(chrome: Any) -> list[str]:
    """The inbox's rows as they read, in one script run (htmx may swap the table)."""
    rows = chrome.execute_script(
        "return Array.from(document.querySelectorAll('#postvak tbody tr'), r => r.innerText);"
    )
    return [str(row) for row in rows or []]


def fill_signal(chrome: Any, values: dict[str, str], choices: list[tuple[str, str]]) -> None:
    for label, value in values.items():
        control = field(chrome, label)
        if control.tag_name == "select":
            from selenium.webdriver.support.select import Select

            Select(control).select_by_visible_text(value)
        else:
            control.clear()
            control.send_keys(value)
    for group, option in choices:
        choose(chrome, group, option)


def step_police_logs_in_with_password_and_totp(
    chrome: Any, demo_desks: Any, checked_pages: dict[str, int]
) -> None:
    url = demo_desks.urls["police"]
    chrome.get(url + "/inloggen")
    field(chrome, "Gebruikersnaam").send_keys("demo.police")
    field(chrome, "Wachtwoord").send_keys("wrong password")
    press(chrome, button(chrome, "Inloggen"))
    assert shows(chrome, "De gebruikersnaam of het wachtwoord klopt niet."), text(chrome)[:1500]
    assert field(chrome, "Gebruikersnaam").get_attribute("value") == "demo.police"
    checked_axe(chrome, checked_pages)
    log_in(chrome, url, "demo.police", checked_pages)
    assert shows(chrome, "Doelbinding: Signalen ontvangen en beoordelen"), text(chrome)[:1500]
    cookies = {c["name"]: c for c in chrome.get_cookies()}
    cookie = cookies["__Host-schakel-desk-police"]
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    checked_axe(chrome, checked_pages)
    assert {
        "Inloggen op de desk",
        "Bevestig dat u het bent",
        "Waar werkt u aan?",
        "Postvak",
    } <= set(checked_pages)


def step_signal_form_errors_and_every_page_pass_axe(
    chrome: Any, demo_desks: Any, checked_pages: dict[str, int]
) -> None:
    url = demo_desks.urls["police"]
    log_in(chrome, url, "demo.police")
    chrome.get(url + "/signaal/nieuw")
    checked_axe(chrome, checked_pages)
    fill_signal(
        chrome,
        {
            "BSN (burgerservicenummer)": "123456789",
            "Voornamen": HOSTILE,
            "Geboortedatum": "31-02-1999",
        },
        [],
    )
    press(chrome, button(chrome, "Signaal controleren"))
    summary = chrome.find_element(By.CSS_SELECTOR, "[role=alert]").text
    assert "Dit BSN klopt niet" in summary
    assert "Vul bij een voornaam ook de achternaam in" in summary
    assert "Vul een datum in zoals 14-03-1999." in summary
    assert "Kies de vorm van uitbuiting" in summary
    # input kept, shown inert (escaped, the bidi override replaced)
    assert field(chrome, "BSN (burgerservicenummer)").get_attribute("value") == "123456789"
    assert field(chrome, "Voornamen").get_attribute("value") == HOSTILE.replace(
        "\u202e", "\ufffd"
    ).replace("\u202c", "\ufffd")
    assert not chrome.find_elements(By.XPATH, "//script[contains(., 'alert')]")
    checked_axe(chrome, checked_pages)
    for path in ("/verzonden", "/organisatie", "/beheer", "/doelbinding", "/bestaat-niet"):
        chrome.get(url + path)
        if path == "/organisatie":  # the demo is an OPRF network
            assert "Via de twee pseudonimiseringsdiensten" in text(chrome), text(chrome)[:1500]
        checked_axe(chrome, checked_pages)
    assert {
        "Nieuw signaal",
        "Verzonden",
        "Uw organisatie in het netwerk",
        "Accounts van deze desk",
        "Pagina niet gevonden",
    } <= set(checked_pages)


def send_signal(
    chrome: Any,
    url: str,
    values: dict[str, str],
    choices: list[tuple[str, str]],
    seen: dict[str, int] | None = None,
) -> None:
    chrome.get(url + "/signaal/nieuw")
    fill_signal(chrome, values, choices)
    press(chrome, button(chrome, "Signaal controleren"))
    assert at(chrome, "Controleer het signaal voordat u het verstuurt") == (
        "Controleer het signaal voordat u het verstuurt"
    ), text(chrome)[:3000]
    if seen is not None:
        checked_axe(chrome, seen)
    press(chrome, button(chrome, "Signaal versturen"))
    assert at(chrome, "Verzonden") == "Verzonden"
    assert shows(chrome, "Uw signaal is verstuurd."), text(chrome)[:1500]


def step_tour_signals_reach_the_coordinator_live(
    chrome: Any, demo_desks: Any, checked_pages: dict[str, int]
) -> None:
    coordinator = demo_desks.urls["coordinator"]
    log_in(chrome, coordinator, "demo.coordinator")
    coordinator_tab = chrome.current_window_handle
    before = len(inbox_rows(chrome))
    checked_axe(chrome, checked_pages)

    chrome.switch_to.new_window("tab")
    police = demo_desks.urls["police"]
    log_in(chrome, police, "demo.police")
    send_signal(
        chrome,
        police,
        {
            "BSN (burgerservicenummer)": "111 222 333",
            "Voornamen": "Anna Maria",
            "Achternaam": "de Vries",
            "Geboortedatum": "14-03-1999",
            "Waar gezien": "Bushalte Vredenburg, Utrecht",
            "Wat er gebeurde (in uw eigen woorden)": MARKER,
        },
        [
            ("Vorm van uitbuiting", "Seksuele uitbuiting"),
            ("Controle en dwang", "Identiteitspapieren zijn in handen van een ander"),
            ("Hoe dringend is het?", "Hoog"),
            ("Heeft de persoon toestemming gegeven om dit signaal te delen?", "Ja"),
        ],
        checked_pages,
    )
    checked_axe(chrome, checked_pages)
    press(chrome, link(chrome, "Signaal"))
    assert shows(chrome, MARKER), text(chrome)[:1500]
    assert "Bushalte Vredenburg, Utrecht" in text(chrome)
    checked_axe(chrome, checked_pages)

    chrome.switch_to.window(coordinator_tab)  # not reloaded: the row arrives by itself
    wait_for(chrome, lambda: len(inbox_rows(chrome)) == before + 1)
    assert "police" in inbox_rows(chrome)[0] and "Nieuw" in inbox_rows(chrome)[0]

    chrome.switch_to.new_window("tab")
    ggd = demo_desks.urls["ggd"]
    log_in(chrome, ggd, "demo.ggd")
    send_signal(
        chrome,
        ggd,
        {
            "Voornamen": "ANNA",
            "Achternaam": "De  Vries",
            "Geboortedatum": "14-03-1999",
            "Telefoonnummer van de persoon": "06-12345678",
            "Wat er gebeurde (in uw eigen woorden)": GGD_MARKER,
        },
        [
            ("Vorm van uitbuiting", "Seksuele uitbuiting"),
            ("Gezondheid", "Onbehandelde verwondingen"),
            ("Hoe dringend is het?", "Normaal"),
            ("Heeft de persoon toestemming gegeven om dit signaal te delen?", "Ja"),
        ],
    )
    chrome.close()
    chrome.switch_to.window(coordinator_tab)
    wait_for(chrome, lambda: len(inbox_rows(chrome)) == before + 2)
    press(chrome, link(chrome, "Signaal"))  # the newest: the GGD's
    assert shows(chrome, GGD_MARKER), text(chrome)[:1500]
    assert shows(chrome, "Onbehandelde verwondingen"), text(chrome)[:1500]
    checked_axe(chrome, checked_pages)
    expected = {"Postvak", "Controleer het signaal voordat u het verstuurt", "Signaal"}
    assert expected <= set(checked_pages)
    assert {"Postvak", "Controleer het signaal voordat u het verstuurt", "Signaal"} <= set(
        checked_pages
    )


def event_rows(chrome: Any) -> list[str]:
    """The events page's rows as they read, in one script run (htmx may swap the table)."""
    rows = chrome.execute_script(
        "return Array.from(document.querySelectorAll('#gebeurtenissen tbody tr'),"
        " r => r.innerText);"
    )
    return [str(row) for row in rows or []]


def _signal_from(demo_desks: Any, org: str) -> None:
    """A signal about Anna (her BSN) from ``org`` to the coordinator, through the library."""
    demo = load(demo_desks.directory)
    assert demo is not None
    payload = {
        "schema": "schakel.signal/1",
        "person": {"bsn": "111222333"},
        "exploitation": "sexual",
        "urgency": "normal",
        "consent_to_share": True,
    }

    async def go() -> None:
        organisation = open_organisation(demo, org, demo_desks.hub_url, user=f"demo.{org}")
        try:
            async with organisation.hub:
                await organisation.send_signal(payload, ["coordinator"])
        finally:
            organisation.state.close()

    asyncio.run(go())


def _refer_to_shelter(demo_desks: Any) -> str:
    """The coordinator refers Anna to the shelter (through the library: part 2's page)."""
    demo = load(demo_desks.directory)
    assert demo is not None
    payload = {
        "schema": "schakel.referral/1",
        "service": "shelter",
        "urgency": "urgent",
        "reason": "Drie signalen; ze is niet veilig waar ze nu woont",
        "shared_with_person": "Dat een opvang in de regio haar vannacht kan opnemen",
        "consent": {"share_with_recipient": True, "comensha_registration": True},
        "person": {"bsn": "111222333", "given_names": "Anna", "family_name": "de Vries"},
    }

    async def go() -> str:
        organisation = open_organisation(
            demo, "coordinator", demo_desks.hub_url, user="demo.coordinator"
        )
        try:
            async with organisation.hub:
                return str(await organisation.send_referral(payload, "shelter"))
        finally:
            organisation.state.close()

    return asyncio.run(go())


def step_shelter_answers_a_referral(
    chrome: Any, demo_desks: Any, checked_pages: dict[str, int]
) -> None:
    shelter = demo_desks.urls["shelter"]
    chrome.switch_to.new_window("tab")
    log_in(chrome, shelter, "demo.shelter")
    _refer_to_shelter(demo_desks)
    wait_for(chrome, lambda: any("Verwijzing" in row for row in inbox_rows(chrome)))
    assert "Uw organisatie" in inbox_rows(chrome)[0]  # the shelter holds the next step
    press(chrome, link(chrome, "Verwijzing"))
    assert shows(chrome, "Drie signalen"), text(chrome)[:1500]
    checked_axe(chrome, checked_pages)
    press(chrome, link(chrome, "De verwijzing accepteren"))
    checked_axe(chrome, checked_pages)
    press(chrome, button(chrome, "Antwoord versturen"))  # no explanation: an error
    assert shows(chrome, "Licht uw antwoord toe"), text(chrome)[:1500]
    checked_axe(chrome, checked_pages)
    field(chrome, "Toelichting").send_keys("We nemen haar vannacht op")
    press(chrome, button(chrome, "Antwoord versturen"))
    assert shows(chrome, "Uw antwoord is verstuurd."), text(chrome)[:1500]
    press(chrome, link(chrome, "De zorg is gestart"))
    field(chrome, "Als de zorg is gestart: op welke dag?").send_keys("01-01-2001")
    field(chrome, "Toelichting").send_keys("Intake gedaan")
    press(chrome, button(chrome, "Antwoord versturen"))
    assert shows(chrome, "De zorg kan niet gestart zijn vóór de verwijzing is verstuurd."), text(
        chrome
    )[:1500]
    today = datetime.now(ZONE).strftime("%d-%m-%Y")  # the desk's dates are the Netherlands'
    started = field(chrome, "Als de zorg is gestart: op welke dag?")
    started.clear()
    started.send_keys(today)
    press(chrome, button(chrome, "Antwoord versturen"))
    assert shows(chrome, "Uw antwoord is verstuurd."), text(chrome)[:1500]
    chrome.get(shelter + "/verzonden")
    assert len(chrome.find_elements(By.CSS_SELECTOR, "tbody tr")) == 2
    checked_axe(chrome, checked_pages)
    assert {"Verwijzing", "De verwijzing beantwoorden", "Verzonden"} <= set(checked_pages)


def step_coordinator_works_on_the_case(
    chrome: Any, demo_desks: Any, checked_pages: dict[str, int]
) -> None:
    """The coordinator's pages: the cases, the case with its signals inline and why they
    were linked, a label set, a referral (refused empty, then sent), a split's
    confirmation (not confirmed), the referrals and the events."""
    coordinator = demo_desks.urls["coordinator"]
    chrome.switch_to.new_window("tab")
    log_in(chrome, coordinator, "demo.coordinator")
    press(chrome, link(chrome, "Casussen"))
    assert at(chrome, "Casussen") == "Casussen"
    checked_axe(chrome, checked_pages)
    case_link = chrome.find_element(By.CSS_SELECTOR, "tbody a[href^='/casussen/']")
    ref = (case_link.get_attribute("href") or "").rsplit("/", 1)[1]
    press(chrome, case_link)
    assert at(chrome, f"Casus {ref}") == f"Casus {ref}", text(chrome)[:1500]
    assert shows(chrome, "Anna"), text(chrome)[:3000]
    # the police gave a BSN, the GGD a phone number: name and date of birth linked them
    linked = "Gekoppeld aan andere signalen van deze casus via: naam en geboortedatum"
    assert shows(chrome, linked), text(chrome)[:3000]
    checked_axe(chrome, checked_pages)
    field(chrome, "Uw label voor deze casus").send_keys("Anna, tour")
    press(chrome, button(chrome, "Label bewaren"))
    assert at(chrome, "Anna, tour") == "Anna, tour", text(chrome)[:1500]
    assert shows(chrome, "Het label is bewaard.")
    checked_axe(chrome, checked_pages)
    press(chrome, link(chrome, "Verwijs de persoon naar opvang, zorg of rechtshulp"))
    assert at(chrome, "Verwijzen: Anna, tour") == "Verwijzen: Anna, tour", text(chrome)[:1500]
    assert shows(chrome, "Anna"), text(chrome)[:3000]  # filled from the case
    press(chrome, button(chrome, "Verwijzing versturen"))  # nothing filled in: errors
    assert shows(chrome, "Kies een van de mogelijkheden.")
    checked_axe(chrome, checked_pages)
    from selenium.webdriver.support.select import Select

    Select(field(chrome, "Verwijzen naar")).select_by_index(1)
    fill_signal(
        chrome,
        {
            "Soort zorg": "Opvang",
            "Reden: waarom deze organisatie, waarom nu": "Niet veilig waar ze woont",
            "Wat de persoon over deze verwijzing is verteld": "Dat een opvang haar opneemt",
        },
        [("Urgentie", "Dringend")],
    )
    press(chrome, chrome.find_element(By.CSS_SELECTOR, "label[for='delen-ja']"))
    press(chrome, button(chrome, "Verwijzing versturen"))
    assert at(chrome, "Anna, tour") == "Anna, tour", text(chrome)[:1500]
    assert shows(chrome, "De verwijzing is verzonden.")
    press(
        chrome, button(chrome, "Splitsen: de gekozen berichten naar een nieuwe casus verplaatsen")
    )
    assert at(chrome, "Anna, tour") == "Anna, tour"  # nothing chosen: the error on the page
    assert shows(chrome, "Kies ten minste één signaal")
    checked_axe(chrome, checked_pages)
    first = chrome.find_element(By.CSS_SELECTOR, "input[name=bericht]")
    press(chrome, chrome.find_element(By.CSS_SELECTOR, f"label[for='{first.get_attribute('id')}']"))
    press(
        chrome, button(chrome, "Splitsen: de gekozen berichten naar een nieuwe casus verplaatsen")
    )
    assert at(chrome, "Deze casus splitsen?") == "Deze casus splitsen?"
    checked_axe(chrome, checked_pages)
    press(chrome, link(chrome, "Nee, ga terug"))
    assert at(chrome, "Anna, tour") == "Anna, tour"
    press(chrome, link(chrome, "Verwijzingen"))
    assert at(chrome, "Open verwijzingen") == "Open verwijzingen"
    checked_axe(chrome, checked_pages)
    press(chrome, link(chrome, "Gebeurtenissen"))
    assert at(chrome, "Gebeurtenissen") == "Gebeurtenissen"
    assert shows(chrome, "Signaal aan de casus gekoppeld"), text(chrome)[:3000]
    checked_axe(chrome, checked_pages)
    before = len(event_rows(chrome))
    _signal_from(demo_desks, "school")  # about Anna: a match, the page not reloaded
    wait_for(chrome, lambda: len(event_rows(chrome)) == before + 1)
    assert "Signaal aan de casus gekoppeld" in event_rows(chrome)[0]
    screenshot(chrome, "gebeurtenissen")
    press(chrome, link(chrome, "Overzicht"))
    assert at(chrome, "Overzicht") == "Overzicht"
    assert shows(chrome, "Signalen per week, naar soort organisatie")
    assert shows(chrome, "Verwijzingen: hoe ver ze kwamen en hoe lang elke stap duurde")
    wait_for(chrome, lambda: chrome.execute_script(IMAGES_LOADED))  # each SVG drawn
    checked_axe(chrome, checked_pages)
    screenshot(chrome, "overzicht")
    press(chrome, link(chrome, "CoMensha"))
    assert at(chrome, "CoMensha") == "CoMensha"
    assert shows(chrome, "Alleen met die toestemming komt een naam bij CoMensha")
    assert shows(chrome, "De statistiek, zoals in het bestand"), text(chrome)[:3000]
    checked_axe(chrome, checked_pages)
    screenshot(chrome, "comensha")
    assert {
        "Overzicht",
        "CoMensha",
        "Casussen",
        "Anna, tour",
        "Verwijzen: Anna, tour",
        "Deze casus splitsen?",
        "Open verwijzingen",
        "Gebeurtenissen",
    } <= set(checked_pages)


def step_privacy_officer_checks_the_log_and_answers_a_subject_request(
    chrome: Any, demo_desks: Any, checked_pages: dict[str, int]
) -> None:
    """The privacy officer's pages: the access log with each entry proven, the check in
    words, and a subject access request under its own purpose (the BSN typed into the form,
    never into an address: the canary step looks for it in every log)."""
    police = demo_desks.urls["police"]
    chrome.switch_to.new_window("tab")
    log_in(chrome, police, "demo.police")
    press(chrome, link(chrome, "Toegangslogboek"))
    assert at(chrome, "Toegangslogboek") == "Toegangslogboek", text(chrome)[:1500]
    assert shows(chrome, "is bewezen dat ze in het ondertekende logboek"), text(chrome)[:1500]
    checked_axe(chrome, checked_pages)
    press(chrome, link(chrome, "Controle"))
    assert at(chrome, "Controle van het toegangslogboek") == "Controle van het toegangslogboek"
    assert shows(chrome, "bewezen"), text(chrome)[:1500]
    checked_axe(chrome, checked_pages)
    press(chrome, link(chrome, "Inzageverzoek"))
    assert at(chrome, "Inzageverzoek") == "Inzageverzoek"
    checked_axe(chrome, checked_pages)
    press(chrome, link(chrome, "Kies het doel 'Een inzageverzoek van een betrokkene beantwoorden'"))
    assert at(chrome, "Waar werkt u aan?") == "Waar werkt u aan?"
    choose(chrome, "Doel", "Een inzageverzoek van een betrokkene beantwoorden")
    press(chrome, button(chrome, "Doorgaan"))
    assert at(chrome, "Inzageverzoek") == "Inzageverzoek", text(chrome)[:1500]
    field(chrome, "BSN (burgerservicenummer)").send_keys("111222333")
    press(chrome, button(chrome, "Rapport tonen"))
    assert shows(chrome, "Van elk van deze"), text(chrome)[:3000]
    assert "111222333" not in chrome.current_url
    checked_axe(chrome, checked_pages)
    screenshot(chrome, "inzageverzoek")
    press(chrome, link(chrome, "Gebruikersrapport"))
    assert at(chrome, "Gebruikersrapport") == "Gebruikersrapport"
    field(chrome, "Gebruikersnaam").send_keys("demo.police")
    press(chrome, button(chrome, "Rapport tonen"))
    assert shows(chrome, "Toegang door demo.police, oudste eerst"), text(chrome)[:3000]
    checked_axe(chrome, checked_pages)
    screenshot(chrome, "gebruikersrapport")
    press(chrome, link(chrome, "Afwijkingen"))
    assert at(chrome, "Afwijkingen") == "Afwijkingen"
    threshold = field(
        chrome, "Aantal verschillende objecten per persoon per dag voordat het opvalt"
    )
    threshold.clear()
    threshold.send_keys("0")
    press(chrome, button(chrome, "Afwijkingen zoeken"))
    assert at(chrome, "Afwijkingen") == "Afwijkingen"
    assert chrome.find_elements(By.ID, "drempel-fout"), text(chrome)[:2000]  # next to it
    assert shows(chrome, "Er is een probleem"), text(chrome)[:2000]  # and summarised
    checked_axe(chrome, checked_pages)
    # by keyboard only: from the skip link, Tab to the field, correct it, Enter sends it
    chrome.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    chrome.switch_to.active_element.send_keys(Keys.ENTER)
    threshold = field(
        chrome, "Aantal verschillende objecten per persoon per dag voordat het opvalt"
    )
    for _ in range(40):
        chrome.switch_to.active_element.send_keys(Keys.TAB)
        if chrome.switch_to.active_element == threshold:
            break
    assert chrome.switch_to.active_element == threshold, "Tab never reached the threshold"
    threshold.send_keys(Keys.BACKSPACE, "1", Keys.ENTER)
    wait_for(chrome, lambda: "drempel=1&" in chrome.current_url)
    assert at(chrome, "Afwijkingen") == "Afwijkingen"
    assert not chrome.find_elements(By.ID, "drempel-fout")
    assert shows(chrome, "Geen afwijkingen gevonden.") or chrome.find_elements(
        By.CSS_SELECTOR, "main tbody tr"
    ), text(chrome)[:2000]
    checked_axe(chrome, checked_pages)
    screenshot(chrome, "afwijkingen")
    press(chrome, link(chrome, "Organisatie"))
    # the demo runs a witness with a policy: the log status counts its cosignatures
    assert shows(chrome, "Medeondertekend door"), text(chrome)[:2000]
    screenshot(chrome, "organisatie")
    assert {
        "Toegangslogboek",
        "Controle van het toegangslogboek",
        "Inzageverzoek",
        "Gebruikersrapport",
        "Afwijkingen",
    } <= set(checked_pages)


def step_security_key_set_up_and_used(
    chrome: Any, demo_desks: Any, checked_pages: dict[str, int]
) -> None:
    school = demo_desks.urls["school"]
    chrome.switch_to.new_window("tab")
    log_in(chrome, school, "demo.school")
    chrome.get(school + "/beheer")
    field(chrome, "Gebruikersnaam").send_keys("k.wit")
    field(chrome, "Naam").send_keys("Karin Wit")
    field(chrome, "Eerste wachtwoord").send_keys("een lang eerste wachtwoord")
    press(chrome, button(chrome, "Medewerker toevoegen"))
    assert shows(chrome, "De medewerker is toegevoegd"), text(chrome)[:1500]
    checked_axe(chrome, checked_pages)
    press(chrome, button(chrome, "Uitloggen"))
    assert shows(chrome, "U bent uitgelogd."), text(chrome)[:1500]

    options = VirtualAuthenticatorOptions()
    options.protocol = Protocol.CTAP2
    options.is_user_verified = True
    options.has_user_verification = True
    chrome.add_virtual_authenticator(options)
    password = "een lang eerste wachtwoord"
    try:
        for expected in ("Stel uw tweede stap in", "Bevestig dat u het bent"):
            chrome.get(school + "/inloggen")
            field(chrome, "Gebruikersnaam").send_keys("k.wit")
            field(chrome, "Wachtwoord").send_keys(password)
            press(chrome, button(chrome, "Inloggen"))
            assert at(chrome, expected) == expected, text(chrome)[:1500]
            checked_axe(chrome, checked_pages)
            name = (
                "Beveiligingssleutel instellen"
                if expected.startswith("Stel")
                else ("Mijn beveiligingssleutel gebruiken")
            )
            press(chrome, button(chrome, name))
            if expected.startswith("Stel"):  # the administrator's password is a first one
                wait_for(chrome, lambda: heading(chrome) == "Kies uw eigen wachtwoord")
                field(chrome, "Nieuw wachtwoord").send_keys(OWN_PASSWORD)
                field(chrome, "Herhaal het nieuwe wachtwoord").send_keys(OWN_PASSWORD + "!")
                press(chrome, button(chrome, "Wachtwoord opslaan"))
                assert shows(chrome, "De twee wachtwoorden zijn niet gelijk."), text(chrome)[:1500]
                checked_axe(chrome, checked_pages)
                field(chrome, "Nieuw wachtwoord").send_keys(OWN_PASSWORD)
                field(chrome, "Herhaal het nieuwe wachtwoord").send_keys(OWN_PASSWORD)
                press(chrome, button(chrome, "Wachtwoord opslaan"))
                password = OWN_PASSWORD
            wait_for(chrome, lambda: heading(chrome) == "Waar werkt u aan?")
            press(chrome, button(chrome, "Doorgaan"))
            assert at(chrome, "Postvak") == "Postvak"
            press(chrome, button(chrome, "Uitloggen"))
        assert len(chrome.get_credentials()) == 1
    finally:
        chrome.remove_virtual_authenticator()
    assert {
        "Accounts van deze desk",
        "Stel uw tweede stap in",
        "Kies uw eigen wachtwoord",
        "Bevestig dat u het bent",
    } <= set(checked_pages)


def step_signal_form_by_keyboard_only(
    chrome: Any, demo_desks: Any, checked_pages: dict[str, int]
) -> None:
    municipality = demo_desks.urls["municipality"]
    chrome.switch_to.new_window("tab")
    log_in(chrome, municipality, "demo.municipality")
    chrome.get(municipality + "/signaal/nieuw")
    body = chrome.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)  # the first stop is the skip link
    active = chrome.switch_to.active_element
    assert active.text == "Naar de inhoud"
    active.send_keys(Keys.ENTER)

    def tab_to(label: str) -> Any:
        target = field(chrome, label)
        for _ in range(80):
            chrome.switch_to.active_element.send_keys(Keys.TAB)
            if chrome.switch_to.active_element == target:
                return target
        raise AssertionError(f"Tab never reached {label!r}")

    tab_to("BSN (burgerservicenummer)").send_keys("111222333")
    tab_to("Voornamen").send_keys("Anna")
    tab_to("Achternaam").send_keys("de Vries")
    radio = tab_to("Seksuele uitbuiting")
    radio.send_keys(Keys.SPACE)
    assert radio.is_selected()
    tab_to("Laag").send_keys(Keys.ARROW_DOWN, Keys.ARROW_DOWN)  # within a radio group: arrows
    assert field(chrome, "Hoog").is_selected()
    tab_to("Ja").send_keys(Keys.SPACE)
    text = tab_to("Wat er gebeurde (in uw eigen woorden)")
    text.send_keys("Met het toetsenbord ingevuld")
    for _ in range(60):  # on to the button, and press it with Enter
        chrome.switch_to.active_element.send_keys(Keys.TAB)
        if chrome.switch_to.active_element.text == "Signaal controleren":
            break
    chrome.switch_to.active_element.send_keys(Keys.ENTER)
    assert (
        at(chrome, "Controleer het signaal voordat u het verstuurt")
        == "Controleer het signaal voordat u het verstuurt"
    )
    assert shows(chrome, "Met het toetsenbord ingevuld"), text(chrome)[:1500]


def step_a_refused_message_waits_in_the_queue_until_removed(
    chrome: Any, demo_desks: Any, checked_pages: dict[str, int]
) -> None:
    """A signal to an organisation the hub does not know is refused and kept in the
    police desk's outbox (written here through the library, on the desk's own state):
    the Verzonden page shows it with its reason, and a person removes it."""
    demo = load(demo_desks.directory)
    assert demo is not None

    async def refused() -> str:
        organisation = open_organisation(demo, "police", demo_desks.hub_url)
        payload = {
            "schema": "schakel.signal/1",
            "person": {"phone": "0612345678"},
            "exploitation": "unknown",
            "urgency": "low",
            "consent_to_share": False,
        }
        try:
            async with organisation.hub:
                with pytest.raises(ClientError):
                    await organisation.send_signal(payload, ["spook"])
            [entry] = organisation.outbox.entries()
            assert entry.state == "refused"
            return str(entry.id)
        finally:
            organisation.state.close()

    asyncio.run(refused())
    police = demo_desks.urls["police"]
    chrome.get(police + "/verzonden")
    assert shows(chrome, "Wachtrij: nog niet verstuurd"), text(chrome)[:1500]
    assert "Geweigerd door de hub of de ontvanger" in text(chrome)
    assert "Nu versturen" not in text(chrome)  # nothing waits: a refused one is not retried
    checked_axe(chrome, checked_pages)
    press(chrome, button(chrome, "Uit de wachtrij halen"))
    assert shows(chrome, "Het geweigerde bericht is uit de wachtrij gehaald."), text(chrome)[:1500]
    assert "Wachtrij: nog niet verstuurd" not in text(chrome)


def step_canary_nothing_personal_in_logs_or_the_hub(
    chrome: Any, demo_desks: Any, checked_pages: dict[str, int]
) -> None:
    demo = load(demo_desks.directory)
    assert demo is not None

    async def pseudonyms() -> tuple[str, ...]:
        organisation = open_organisation(demo, "police", demo_desks.hub_url)
        try:
            identity = Identity(
                bsn="111222333",
                given_names="Anna Maria",
                family_name="de Vries",
                date_of_birth="1999-03-14",
            )
            async with organisation.hub:  # the demo's pseudonyms come from its services
                return tuple(await organisation.derive_pseudonyms(identity))
        finally:
            organisation.state.close()

    derived = asyncio.run(pseudonyms())
    assert derived
    secrets_ = [
        "Vries",
        "VRIES",
        "111222333",
        "111 222 333",
        "Anna Maria",
        MARKER,
        GGD_MARKER,
        "We nemen haar",
        "Drie signalen",
        "een lang eerste wachtwoord",
        OWN_PASSWORD,
    ]
    log = demo_desks.log_text()
    for value in [*secrets_, *derived, *[p.split(".")[-1] for p in derived]]:
        assert value not in log, f"{value[:12]}... in the demo's log"
    assert "__Host-schakel-desk-" not in log
    for path in demo_desks.directory.glob("hub.db*"):
        data = path.read_bytes()
        for value in secrets_:
            assert value.encode() not in data, f"{value[:12]}... in {path.name}"


STEPS = (
    step_police_logs_in_with_password_and_totp,
    step_signal_form_errors_and_every_page_pass_axe,
    step_tour_signals_reach_the_coordinator_live,
    step_shelter_answers_a_referral,
    step_coordinator_works_on_the_case,
    step_privacy_officer_checks_the_log_and_answers_a_subject_request,
    step_security_key_set_up_and_used,
    step_signal_form_by_keyboard_only,
    step_a_refused_message_waits_in_the_queue_until_removed,
    step_canary_nothing_personal_in_logs_or_the_hub,
)


def test_the_browser_tour(chrome: Any, demo_desks: Any) -> None:
    """The steps in order, in one test: one demo network and one browser, on one worker
    whatever the test runner's distribution (each step asserts the pages it ran axe on)."""
    for step in STEPS:
        step(chrome, demo_desks, {})
