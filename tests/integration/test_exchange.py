"""The foundation end to end: a real hub on loopback, real clients, real cryptography.

Police and the GGD each send a signal about the same person, written differently;
the coordinator is pushed a notice over the WebSocket for each, receives both over
HTTP, opens them, and finds the same pseudonym on both. Afterwards the raw bytes of
the hub's database files and everything the hub logged contain none of the
plaintext, the identity, nor the linking key (canary strings).
"""

from __future__ import annotations

import asyncio
import base64
from typing import TYPE_CHECKING

import pytest

from clients.errors import UnknownOrganisation
from schakel import demo as demo_network

if TYPE_CHECKING:
    from conftest import Network

# Canaries: none of these may ever reach the hub's database or logs.
TEXT_CANARY = "CANARY-plaintext-d41d8cd98f00"
GIVEN = "Fenneke"
FAMILY_POLICE = "van Oosterwijk"
FAMILY_GGD = "OOSTERWIJK"
BSN = "111222333"
PHONE = "+31 6 1234 5678"


def _signal(text: str, person: dict[str, str]) -> dict[str, object]:
    return {
        "schema": "schakel.signal/1",
        "person": person,
        "exploitation": "sexual",
        "indicators": ["control.documents_withheld"],
        "text": text,
        "urgency": "high",
        "consent_to_share": True,
    }


async def _send(network: Network, org: str, person: dict[str, str], text: str) -> str:
    organisation = demo_network.open_organisation(network.demo, org, network.base_url)
    try:
        async with organisation.hub:
            message_id = await organisation.send_signal(_signal(text, person), ["coordinator"])
    finally:
        organisation.state.close()
    return message_id


async def _collect_notices(network: Network, count: int, ready: asyncio.Event) -> list[str]:
    organisation = demo_network.open_organisation(network.demo, "coordinator", network.base_url)
    notices: list[str] = []
    try:
        async with organisation.hub:
            stream = organisation.hub.notifications()
            first = asyncio.ensure_future(anext(stream))
            await asyncio.sleep(0.2)  # the socket is open and subscribed before anyone sends
            ready.set()
            notices.append((await first).id)
            while len(notices) < count:
                notices.append((await anext(stream)).id)
            await stream.aclose()
    finally:
        organisation.state.close()
    return notices


def _hub_bytes(network: Network) -> bytes:
    files = sorted(network.db_path.parent.glob("hub.db*"))
    assert network.db_path in files
    return b"".join(path.read_bytes() for path in files)


def _canaries(network: Network) -> dict[str, bytes]:
    key = network.linking_key
    values = {
        "text": TEXT_CANARY,
        "given name": GIVEN,
        "family name": "Oosterwijk",
        "normalised family name": "oosterwyk",
        "BSN": BSN,
        "phone": "612345678",
        "linking key (hex)": key.hex(),
        "linking key (base64url)": base64.urlsafe_b64encode(key).decode().rstrip("="),
        "linking key (base64)": base64.b64encode(key).decode().rstrip("="),
    }
    encoded = {name: value.encode() for name, value in values.items()}
    encoded["linking key (raw)"] = key
    encoded["given name (lower)"] = GIVEN.lower().encode()
    return encoded


async def test_two_signals_reach_the_coordinator_and_the_hub_sees_no_plaintext(
    network: Network,
) -> None:
    ready = asyncio.Event()
    watcher = asyncio.create_task(_collect_notices(network, 2, ready))
    await asyncio.wait_for(ready.wait(), 10)

    police_id = await _send(
        network,
        "police",
        {
            "given_names": f"{GIVEN} Maria",
            "family_name": FAMILY_POLICE,
            "date_of_birth": "1999-03-14",
            "bsn": BSN,
        },
        f"{TEXT_CANARY} seen at a car stop",
    )
    ggd_id = await _send(
        network,
        "ggd",
        {
            "given_names": GIVEN.upper(),
            "family_name": FAMILY_GGD,
            "date_of_birth": "1999-03-14",
            "phone": PHONE,
        },
        f"{TEXT_CANARY} untreated injuries",
    )

    # pushed over the WebSocket
    assert sorted(await asyncio.wait_for(watcher, 10)) == sorted([police_id, ggd_id])

    # received over HTTP, verified and opened
    coordinator = demo_network.open_organisation(network.demo, "coordinator", network.base_url)
    try:
        async with coordinator.hub:
            result = await coordinator.receive()
    finally:
        coordinator.state.close()
    assert result.rejected == () or list(result.rejected) == []
    received = {message.id: message for message in result.messages}
    assert set(received) == {police_id, ggd_id}
    assert received[police_id].sender == "police"
    assert received[ggd_id].sender == "ggd"
    assert received[police_id].payload["text"] == f"{TEXT_CANARY} seen at a car stop"
    assert received[ggd_id].payload["text"] == f"{TEXT_CANARY} untreated injuries"
    shared = set(received[police_id].pseudonyms) & set(received[ggd_id].pseudonyms)
    assert len(shared) == 1 and next(iter(shared)).startswith("ndob.1.")

    # the hub holds neither plaintext, identity nor linking key: database and logs
    stored = _hub_bytes(network)
    logged = network.log.getvalue().encode()
    assert logged, "the hub logged nothing: the log check would prove nothing"
    assert police_id.encode() in stored  # the check reads the real database
    for name, canary in _canaries(network).items():
        assert canary not in stored, f"{name} found in the hub's database"
        assert canary not in logged, f"{name} found in the hub's log"
    # logs never carry pseudonyms either
    for pseudonym in received[police_id].pseudonyms:
        assert pseudonym.encode() not in logged, "a pseudonym was logged"


async def test_a_second_receive_is_idempotent(network: Network) -> None:
    message_id = await _send(network, "police", {"bsn": BSN}, f"{TEXT_CANARY} once only")
    coordinator = demo_network.open_organisation(network.demo, "coordinator", network.base_url)
    try:
        async with coordinator.hub:
            first = await coordinator.receive()
            again = await coordinator.receive()
            shown = coordinator.show(message_id)
    finally:
        coordinator.state.close()
    assert [m.id for m in first.messages] == [message_id]
    assert list(again.messages) == []
    assert shown.payload["text"] == f"{TEXT_CANARY} once only"


async def test_an_unknown_recipient_is_named_and_nothing_is_sent(network: Network) -> None:
    police = network.open("police")
    try:
        async with police.hub:
            with pytest.raises(UnknownOrganisation, match="'nobody' is not in the hub's directory"):
                await police.send_signal(_signal("to nobody", {"bsn": BSN}), ["nobody"])
            sent = police.state.sent()
    finally:
        police.state.close()
    assert sent == []
