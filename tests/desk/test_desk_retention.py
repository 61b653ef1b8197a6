"""Retention at the desk: the background task erases cases past their period, an erased
message is shown as gone (410, in Dutch), not as an error, and the organisation page
says which periods apply. A real hub in this process (``desk_hub_harness``)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from desk_hub_harness import desk_on_hub
from deskharness import Browser

from clients.retention import DAY, LocalRetention
from desk.adapter import CaseLabelKeys, LibraryError, retention_policy
from desk.casebook import CaseBook
from desk.config import DeskConfig
from desk.errors import DeskError
from desk.factors import Sealer
from desk.retention import erase_due, erase_forever
from schakel import demo as demo_network

SIGNAL = {"schema": "schakel.signal/1", "person": {"bsn": "111222333"},
          "exploitation": "labour", "urgency": "high", "consent_to_share": True,
          "text": "Bewaar-Marker gezien bij de bushalte"}  # fmt: skip


async def test_an_erased_message_is_gone_not_an_error(tmp_path: Path) -> None:
    async with desk_on_hub(tmp_path) as net:
        coordinator = demo_network.open_organisation(net.demo, "coordinator", net.hub_url)
        shelter = demo_network.open_organisation(net.demo, "shelter", net.hub_url)
        try:
            async with coordinator.hub, shelter.hub:
                sent = await coordinator.send_signal(SIGNAL, ["shelter"])
                assert len((await shelter.receive()).messages) == 1  # into the desk's state
        finally:
            coordinator.state.close()
            shelter.state.close()
        services = net.desk.services
        state = services.library.local_state
        received = state.message(sent.id).received_at  # type: ignore[union-attr]
        services.casebook.add_urgent(sent.id, "high", received)
        services.casebook.set_label("case-1", "Bushalte", person="c", now=received)
        net.desk.add_person("o.opvang")
        browser = Browser(net.desk)
        await browser.log_in("o.opvang")
        status, page, _ = await browser.get(f"/bericht/{sent.id}")
        assert status == 200 and "Bewaar-Marker" in page
        _, page, _ = await browser.get("/organisatie")
        assert "Bewaartermijn" in page and "Gewiste casussen" in page and "Nog geen" in page
        assert "1 afgesloten en binnen hun termijn" in page

        # the desk's background task, one pass: the signal's period (1 day) has ended
        later = received + 2 * DAY  # (the desk's own clock stays: sessions stay open)
        announced: list[int] = []
        pauses: list[float] = []

        async def announce(count: int) -> None:
            announced.append(count)

        async def sleep(seconds: float) -> None:
            pauses.append(seconds)
            raise asyncio.CancelledError

        with pytest.raises(asyncio.CancelledError):
            await erase_forever(services.library, services.casebook, LocalRetention(1, 0),
                                every=600, clock=lambda: later, announce=announce,
                                sleep=sleep)  # fmt: skip
        assert announced == [1] and pauses == [600]
        assert state.erased(sent.id) and services.casebook.urgent() == []

        status, page, _ = await browser.get(f"/bericht/{sent.id}")
        assert status == 410
        assert "Gewist" in page and "de bewaartermijn van de casus is verstreken" in page
        assert "Er ging iets mis" not in page and "Bewaar-Marker" not in page
        _, page, _ = await browser.get("/postvak")
        assert sent.id not in page
        _, page, _ = await browser.get("/organisatie")
        assert "Gewiste casussen" in page and "Nog geen" not in page
        status = services.library.retention_status(LocalRetention(1, 0), now=later)
        assert (status.erased_cases, status.open, status.waiting) == (1, 0, 0)
        services.casebook.forget(cases=["case-1"], messages=[])
        assert services.casebook.labels(["case-1"]) == {}


def test_the_desk_refuses_a_retention_run_too_often_or_too_rarely(tmp_path: Path) -> None:
    for every in (0, 59, 24 * 3600 + 1):
        with pytest.raises(DeskError, match="retention runs every"):
            DeskConfig(home=tmp_path, hub_url="http://127.0.0.1:9",
                       origin="http://localhost", retention_every=every)  # fmt: skip
    config = DeskConfig(home=tmp_path, hub_url="http://127.0.0.1:9", origin="http://localhost")
    assert config.retention_kind == "general" and config.retention_every == 6 * 3600
    assert retention_policy("care").statutory and retention_policy("general", 10).case_days == 10
    for kind, days in (("bakery", None), ("care", 0), ("care", 100 * 366 + 1)):
        with pytest.raises(LibraryError, match="invalid"):
            retention_policy(kind, days)


async def test_a_label_is_sealed_under_its_cases_key_and_goes_with_it(tmp_path: Path) -> None:
    async with desk_on_hub(tmp_path, desk_org="coordinator") as net:
        library = net.desk.services.library
        state = library.local_state
        path = tmp_path / "labels.sqlite"
        book = CaseBook(path, Sealer(b"s" * 32), library.case_label_keys)
        try:
            book.set_label("c1", "Bushalte", person="c.coord", now=1)
            book.set_label("c2", "Station", person="c.coord", now=1)
            assert book.labels(["c1", "c2"]) == {"c1": "Bushalte", "c2": "Station"}
            assert state.message_keys.held(["case:c1", "case:c2"]) == {"case:c1", "case:c2"}
            shutil.copy(path, tmp_path / "backup.sqlite")
            state.store_message(message_id="m1", cursor=1, sender="ggd", kind="signal",
                                created=1, header={"case": "c1"}, sealed=b"x", now=1)  # fmt: skip
            erased = erase_due(library, book, LocalRetention(1, 0), now=3 * DAY)
            assert (erased.cases, erased.count, erased.messages) == (("c1",), 1, ("m1",))
            assert state.message_keys.held(["case:c1", "case:c2"]) == {"case:c2"}
            assert book.labels(["c1", "c2"]) == {"c2": "Station"}
            copy = CaseBook(tmp_path / "backup.sqlite", Sealer(b"s" * 32), library.case_label_keys)
            try:  # the copy still holds the label; its case's key is gone
                assert copy.labels(["c1", "c2"]) == {"c2": "Station"}
            finally:
                copy.close()
            # a label sealed before (by the desk's key alone) still reads
            plain = CaseBook(path, Sealer(b"s" * 32))
            plain.set_label("c3", "Oud", person="c.coord", now=1)
            assert book.labels(["c3"]) == {"c3": "Oud"} and plain.labels(["c2"]) == {}
            plain.close()
            assert isinstance(library.case_label_keys, CaseLabelKeys)
            assert library.case_label_keys.open("c2", b"not sealed") is None
        finally:
            book.close()
