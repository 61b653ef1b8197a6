"""The coordinator's CoMensha page, overview charts and live events page.

The network of ``test_desk_casework`` (a real hub in this process): the shelter sends two
signals about Anna (one case) and a lone one, the coordinator refers Anna to the shelter
without consent to CoMensha registration. The pages are read as a person would, and the
figures are checked against what was sent.
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET

import pytest
from deskharness import Browser
from test_desk_casework import REFERRAL, Network, _signal, coordinator_browser, network

from clients.comensha import REGISTRATION_COLUMNS, STATISTICS_COLUMNS
from desk import charts, overview
from desk.adapter import ReferralFact, ReferralRow
from protocol.workdays import add_working_days, working_days_between

__all__ = ["network"]  # the fixture, imported for its use here

HOSTILE = '<script>alert("x")</script>'


# -- CoMensha --------------------------------------------------------------------------------


async def test_the_comensha_page_explains_consent_and_previews_both_files(
    network: Network,
) -> None:
    browser = await coordinator_browser(network.desk)
    status, page, response = await browser.get("/comensha")
    assert status == 200, page[:2000]
    assert response.headers["Cache-Control"] == "no-store"
    assert 'href="/comensha" aria-current="page"' in page
    assert "Alleen met die toestemming komt een naam bij CoMensha" in page
    assert "ingetrokken toestemming telt als ingetrokken" in page
    # no consent was given: no registration row, a statistics row per case with a signal
    assert "Geen enkele casus heeft toestemming voor registratie" in page
    assert "Anna" not in page and "de Vries" not in page
    table = re.search(r"De statistiek, zoals in het bestand.*?</table>", page, re.S)
    assert table is not None
    assert table.group(0).count("<tr class") == 3  # the header and two cases
    assert "labour" in table.group(0) and "shelter" in table.group(0)


async def test_the_comensha_files_download_as_safe_attachments(network: Network) -> None:
    browser = await coordinator_browser(network.desk)
    status, text, response = await browser.get("/comensha/statistiek.csv")
    assert status == 200 and response.content_type == "text/csv"
    disposition = response.headers["Content-Disposition"]
    assert re.fullmatch(
        r'attachment; filename="comensha-statistiek-\d{4}-\d\d-\d\d\.csv"', disposition
    )
    assert response.headers["Cache-Control"] == "no-store"
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == STATISTICS_COLUMNS and len(rows) == 3
    assert network.case not in text and "Anna" not in text
    status, text, response = await browser.get("/comensha/registratie.csv")
    assert status == 200 and tuple(next(csv.reader(io.StringIO(text)))) == REGISTRATION_COLUMNS
    status, _, _ = await browser.get("/comensha/iets-anders.csv")
    assert status == 404


async def test_consent_puts_the_case_in_the_registration_with_names_shown_inert(
    network: Network,
) -> None:
    coordinator, shelter = network.coordinator, network.shelter
    async with coordinator.hub, shelter.hub:
        hostile = {"bsn": "111222333", "given_names": HOSTILE, "family_name": "de Vries"}
        await shelter.send_signal(_signal(hostile, "normal", "derde"), ["coordinator"])
        await coordinator.receive()
        consent = {
            "share_with_recipient": True,
            "comensha_registration": True,
            "recorded_on": "2026-01-02",
        }
        await coordinator.send_referral(
            {**REFERRAL, "consent": consent, "person": {"bsn": "111222333"}},
            "shelter",
            case=network.case,
        )
    browser = await coordinator_browser(network.desk)
    status, page, _ = await browser.get("/comensha")
    assert status == 200
    assert HOSTILE not in page and "&lt;script&gt;" in page
    assert "de Vries" in page and "given_names" in page  # the disagreement is named
    _, text, _ = await browser.get("/comensha/registratie.csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["case_ref"] for r in rows] == [network.case]
    assert "given_names" in rows[0]["disagreements"]


async def test_a_caseworker_gets_no_comensha_and_no_overview(network: Network) -> None:
    network.desk.add_person("w.worker")
    worker = Browser(network.desk)
    await worker.log_in("w.worker")
    _, inbox, _ = await worker.get("/postvak")
    assert 'href="/comensha"' not in inbox and 'href="/overzicht"' not in inbox
    for path in (
        "/comensha",
        "/comensha/registratie.csv",
        "/overzicht",
        "/overzicht/verwijzingen.svg",
        "/gebeurtenissen/lijst",
    ):
        status, page, response = await worker.get(path)
        assert status == 404, path
        assert (
            response.content_type == "text/html" and "<svg" not in page and "case_ref" not in page
        )


# -- the overview ----------------------------------------------------------------------------


async def test_the_overview_shows_each_chart_with_a_text_alternative_and_its_table(
    network: Network,
) -> None:
    browser = await coordinator_browser(network.desk)
    status, page, _ = await browser.get("/overzicht")
    assert status == 200, page[:2000]
    images = re.findall(r'<img class="schakel-chart__image" src="([^"]+)" alt="([^"]+)"', page)
    assert [src for src, _ in images] == [f"/overzicht/{n}.svg" for n in overview.CHART_NAMES]
    assert all("tabel" in alt for _, alt in images)
    assert "3 signalen ontvangen in de laatste 12 weken" in page
    by_type = re.search(r"naar soort organisatie'</caption>.*?</table>", page, re.S)
    assert by_type is not None and "Opvang" in by_type.group(0)
    # the week of now: three signals, all from the shelter
    assert re.search(r"W\d\d</th><td[^>]*>3</td><td[^>]*>3</td></tr>\s*</tbody>", by_type.group(0))
    funnel = re.search(r"hoe lang elke stap duurde'</caption>.*?</table>", page, re.S)
    assert funnel is not None
    assert re.search(r"Verzonden</th><td[^>]*>1</td>", funnel.group(0))
    assert re.search(r"Geaccepteerd</th><td[^>]*>0</td>", funnel.group(0))
    ages = re.search(r"werkdagen sinds verstuurd\)'</caption>.*?</table>", page, re.S)
    assert ages is not None and re.search(r"0 tot en met 2</th><td[^>]*>1</td>", ages.group(0))
    for src, _ in images:
        status, svg, response = await browser.get(src)
        assert status == 200 and response.content_type == "image/svg+xml", src
        policy = response.headers["Content-Security-Policy"]
        assert "script-src" not in policy and policy.startswith("default-src 'none'")
        assert "<script" not in svg and 'href="http' not in svg
        ET.fromstring(svg.encode())  # well-formed XML
    status, _, _ = await browser.get("/overzicht/iets.svg")
    assert status == 404


def test_chart_labels_are_escaped_text_in_the_svg() -> None:
    svg = charts.stacked_bars(
        ["week 1", HOSTILE], [(HOSTILE, [1, 2]), ("GGD", [0, 1])], title=HOSTILE, y_label="n"
    )
    assert b"<script" not in svg
    assert svg.count(b"&lt;script&gt;") >= 3
    root = ET.fromstring(svg)
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert HOSTILE in texts
    assert charts.bars(["a"], [1], title="t", y_label="n") == charts.bars(
        ["a"], [1], title="t", y_label="n"
    )  # the same figures, the same bytes


def test_the_funnel_counts_steps_and_takes_medians_in_working_days() -> None:
    monday = 1_767_567_600  # Monday 2026-01-05 00:00 in Amsterdam
    friday = add_working_days(monday, 4)
    facts = [
        ReferralFact(monday, add_working_days(monday, 1), None, None, None),
        ReferralFact(monday, add_working_days(monday, 3), friday, None, None),
        ReferralFact(friday, None, None, None, add_working_days(friday, 1)),
    ]
    result = overview.funnel(facts)
    assert result.reached == (3, 2, 1, 0)
    assert result.median_days == (None, 2.0, 1.0, None)
    assert result.declined == 1
    # a weekend does not count: Friday noon to Monday noon is one working day
    assert working_days_between(friday + 12 * 3600, friday + 3 * 86_400 + 12 * 3600) == 1.0


@pytest.mark.parametrize(
    ("days", "band"), [(0, 0), (2.9, 0), (3, 1), (5, 1), (6, 2), (10.5, 2), (11, 3), (400, 3)]
)
def test_open_referrals_fall_in_age_bands_by_whole_working_days(days: float, band: int) -> None:
    assert overview.age_band(days) == band


def test_open_referrals_by_age_count_from_the_hubs_age() -> None:
    now = 1_767_870_000  # Thursday 2026-01-08 12:00 in Amsterdam
    rows = [
        ReferralRow("m", "c", "a", "b", "shelter", "sent", now, "b", age, 0, None, False)
        for age in (0, 86_400, 10 * 86_400, 20 * 86_400)
    ]
    # 10 days back (29 December) holds 7 working days, New Year's Day left out; 20 days
    # back (19 December) 11, Christmas left out too
    assert overview.open_by_age(rows, now) == (2, 0, 1, 1)


def test_weeks_are_iso_weeks_in_amsterdam() -> None:
    sunday_late = 1_767_565_800  # Sunday 2026-01-04 23:30 in Amsterdam (22:30 UTC)
    assert overview.iso_week(sunday_late) == (2026, 1)
    assert overview.iso_week(sunday_late + 3600) == (2026, 2)  # Monday in Amsterdam
    weeks = overview.last_weeks(sunday_late, 3)
    assert weeks == [(2025, 51), (2025, 52), (2026, 1)]
    counts = overview.per_week([(sunday_late, "police"), (0, "school")], weeks)
    assert counts == {"police": (0, 0, 1)}


# -- events, live ----------------------------------------------------------------------------


async def test_the_events_page_updates_itself_through_the_desks_own_script(
    network: Network,
) -> None:
    browser = await coordinator_browser(network.desk)
    status, page, _ = await browser.get("/gebeurtenissen")
    assert status == 200
    assert 'data-live="/postvak/live"' in page
    assert 'hx-get="/gebeurtenissen/lijst"' in page and "inbox-changed from:body" in page
    assert "<script>" not in page  # the page's own scripts are files of the desk
    status, rows, _ = await browser.get("/gebeurtenissen/lijst")
    assert status == 200 and rows.startswith('<div id="gebeurtenissen"')
    assert "<html" not in rows and "Signaal aan de casus gekoppeld" in rows
