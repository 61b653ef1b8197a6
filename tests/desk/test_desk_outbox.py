"""Nothing typed is lost: what can not reach the hub waits in the desk's outbox, visibly.

A real hub in this process (``desk_hub_harness``), stopped and started again on the same
port and database while the shelter's desk keeps running: a signal and an answer
written while the hub is away wait on the Verzonden page with their state and reason in
Dutch, go out by "Nu versturen" and by the desk's background sender once the hub is
back, and reach the hub under the very message id they were given when written.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from desk_hub_harness import HubAndDesk, desk_on_hub
from deskharness import Browser

from schakel import demo as demo_network

SIGNAL = {
    "bsn": "111222333",
    "given_names": "Anna",
    "family_name": "de Vries",
    "exploitation": "labour",
    "urgency": "high",
    "consent": "yes",
    "recipients": "coordinator",
    "text": "Gezien bij de bushalte",
}
REFERRAL = {
    "schema": "schakel.referral/1",
    "service": "shelter",
    "urgency": "urgent",
    "reason": "Niet veilig waar ze nu woont",
    "shared_with_person": "Dat een opvang haar kan opnemen",
    "consent": {"share_with_recipient": True, "comensha_registration": False},
}


async def write_signal(browser: Browser) -> None:
    """The form, the check page and 'Signaal versturen', as a person goes through them."""
    status, _, response = await browser.post("/signaal/nieuw", SIGNAL)
    assert status == 303 and response.headers["Location"] == "/signaal/controleren", status
    status, _, response = await browser.post(
        "/signaal/versturen", {}, from_path="/signaal/controleren"
    )
    assert status == 303 and response.headers["Location"] == "/verzonden"


async def logged_in(net: HubAndDesk) -> Browser:
    net.desk.add_person("i.intake")
    browser = Browser(net.desk)
    await browser.log_in("i.intake")
    status, page, _ = await browser.get("/signaal/nieuw")  # the coordinators, while reachable
    assert status == 200 and 'value="coordinator"' in page
    return browser


async def test_a_signal_waits_while_the_hub_is_down_and_goes_out_with_its_id(
    tmp_path: Path,
) -> None:
    async with desk_on_hub(tmp_path) as net:
        browser = await logged_in(net)
        library = net.desk.services.library
        await net.stop_hub()
        await write_signal(browser)
        _, page, _ = await browser.get("/verzonden")
        assert "Uw signaal staat veilig in de wachtrij" in page
        assert "Wachtrij: nog niet verstuurd" in page and "<strong>Wacht</strong>" in page
        assert "De hub was niet bereikbaar." in page and "Nu versturen" in page
        assert "Uw signaal is verstuurd." not in page
        [entry] = library.outbox()
        assert (entry.kind, entry.recipients, entry.reason) == ("signal", ("coordinator",),
                                                                "unreachable")  # fmt: skip
        assert net.hub_message_ids() == []

        # 'Nu versturen' while the hub is still away: it keeps waiting, one attempt more
        status, _, _ = await browser.post("/verzonden/nu-versturen", {}, from_path="/verzonden")
        assert status == 303
        _, page, _ = await browser.get("/verzonden")
        assert "Nog niet alles kon worden verstuurd" in page
        [again] = library.outbox()
        assert again.id == entry.id and again.attempts == entry.attempts + 1

        await net.start_hub()
        status, _, _ = await browser.post("/verzonden/nu-versturen", {}, from_path="/verzonden")
        assert status == 303
        _, page, _ = await browser.get("/verzonden")
        assert "Alles uit de wachtrij is verstuurd." in page
        assert "Wachtrij: nog niet verstuurd" not in page
        assert f'href="/verzonden/{entry.id}"' in page
        assert library.outbox() == [] and net.hub_message_ids() == [entry.id]


async def test_the_background_sender_sends_what_waits_once_the_hub_is_back(
    tmp_path: Path,
) -> None:
    async with desk_on_hub(tmp_path) as net:
        browser = await logged_in(net)
        library = net.desk.services.library
        await net.stop_hub()
        await write_signal(browser)
        [entry] = library.outbox()
        pauses: list[float] = []
        announced: list[int] = []

        async def sleep(seconds: float) -> None:
            pauses.append(seconds)
            if len(pauses) == 2:  # the hub comes back during the second pause
                await net.start_hub()
            if len(pauses) == 3:
                raise asyncio.CancelledError

        async def announce(count: int) -> None:
            announced.append(count)

        with pytest.raises(asyncio.CancelledError):
            await library.send_outbox_forever(announce, every=30, sleep=sleep)
        assert pauses == [30, 30, 30]
        assert announced == [1]  # the first pass found the hub away and sent nothing
        assert library.outbox() == [] and net.hub_message_ids() == [entry.id]
        # sent by the desk's own task, yet the access log names the person who wrote it
        assert net.hub_access(entry.id) == [("create", "allowed", "i.intake", "signal-intake")]


async def test_an_answer_written_while_the_hub_is_down_waits_too(tmp_path: Path) -> None:
    async with desk_on_hub(tmp_path) as net:
        coordinator = demo_network.open_organisation(net.demo, "coordinator", net.hub_url)
        shelter = demo_network.open_organisation(net.demo, "shelter", net.hub_url)
        try:
            async with coordinator.hub, shelter.hub:
                referral = await coordinator.send_referral(
                    {**REFERRAL, "person": {"bsn": "111222333"}}, "shelter"
                )
                assert len((await shelter.receive()).messages) == 1  # into the desk's state
            net.desk.add_person("o.opvang")
            browser = Browser(net.desk)
            await browser.log_in("o.opvang")
            await net.stop_hub()
            answer = {"stap": "accepted", "toelichting": "We nemen haar vannacht op"}
            status, _, response = await browser.post(
                f"/bericht/{referral.id}/antwoord", answer, from_path="/verzonden"
            )
            assert status == 303 and response.headers["Location"] == "/verzonden"
            _, page, _ = await browser.get("/verzonden")
            assert "Uw antwoord staat veilig in de wachtrij" in page
            assert "Statusbericht: Geaccepteerd" in page
            [entry] = net.desk.services.library.outbox()
            assert entry.kind == "status" and entry.status == "accepted"

            await net.start_hub()
            await browser.post("/verzonden/nu-versturen", {}, from_path="/verzonden")
            assert entry.id in net.hub_message_ids()
            async with coordinator.hub:
                [status_message] = (await coordinator.receive()).messages
            assert status_message.id == entry.id and status_message.status == "accepted"
        finally:
            coordinator.state.close()
            shelter.state.close()
