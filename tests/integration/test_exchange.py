"""The foundation end to end: a real hub on loopback, real clients, real cryptography.

Police and the GGD each send a signal about the same person, written differently;
the coordinator is pushed a notice over the WebSocket for each, receives both over
HTTP, opens them, and finds the same pseudonym on both. Afterwards the hub's
database (the raw bytes of its SQLite files; every row of every table on
PostgreSQL) and everything the hub logged contain none of the plaintext, the
identity, the linking key nor any private key of the network (canaries).
"""

from __future__ import annotations

import asyncio
import base64
from typing import TYPE_CHECKING

import pytest

from clients.errors import UnknownOrganisation
from keys.errors import KeyFileError
from keys.keyfile import KINDS, read_key_file
from schakel import demo as demo_network

if TYPE_CHECKING:
    from conftest import HubDatabase, Network

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
            message_id = (await organisation.send_signal(_signal(text, person), ["coordinator"])).id
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


async def _hub_bytes(network: Network) -> bytes:
    """Everything the hub's database holds, as bytes.

    SQLite: the raw bytes of the database file and its ``-wal`` and ``-shm`` files.
    PostgreSQL: every row of every table of the public schema in its text form,
    and the raw bytes of every ``bytea`` value (the text form shows those as hex).
    """
    database = network.database
    if database.path is not None:
        files = sorted(database.path.parent.glob(database.path.name + "*"))
        assert database.path in files
        return b"".join(path.read_bytes() for path in files)
    return await _postgres_bytes(database)


async def _postgres_bytes(database: HubDatabase) -> bytes:
    tables = [
        name
        for (name,) in await database.rows(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
    ]
    assert "messages" in tables and "audit_log" in tables, tables
    binary = [
        (table, column)
        for table, column in await database.rows(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type = 'bytea'"
        )
    ]
    assert ("organisations", "certificate") in binary, binary
    parts: list[bytes] = []
    for table in tables:
        assert table.replace("_", "").isalnum(), table  # a name from the catalogue, quoted
        rows = await database.rows(f'SELECT t::text FROM "{table}" t')
        parts.extend(text.encode() for (text,) in rows)
    for table, column in binary:
        assert f"{table}{column}".replace("_", "").isalnum(), (table, column)
        values = await database.rows(f'SELECT "{column}" FROM "{table}"')
        parts.extend(bytes(value) for (value,) in values if value is not None)
    return b"\n".join(parts)


def _secrets(demo: demo_network.DemoNetwork) -> dict[str, bytes]:
    """Every private key of the network, from its key files: authority, hub, organisations."""
    found: dict[str, bytes] = {}
    for path in sorted(demo.directory.rglob("*.key")):
        for kind in KINDS:
            try:
                secret = read_key_file(path, demo.passphrase, kind=kind)
            except KeyFileError:
                continue
            found[str(path.relative_to(demo.directory))] = secret
            break
        else:
            raise AssertionError(f"{path} could not be read as any kind of key")
    return found


def _encodings(name: str, secret: bytes) -> dict[str, bytes]:
    """A secret as raw bytes and in the text forms it could be written in."""
    return {
        f"{name} (raw)": secret,
        f"{name} (hex)": secret.hex().encode(),
        f"{name} (base64url)": base64.urlsafe_b64encode(secret).rstrip(b"="),
        f"{name} (base64)": base64.b64encode(secret).rstrip(b"="),
    }


def _canaries(network: Network) -> dict[str, bytes]:
    values = {
        "text": TEXT_CANARY,
        "given name": GIVEN,
        "given name (lower)": GIVEN.lower(),
        "family name": "Oosterwijk",
        "normalised family name": "oosterwyk",
        "BSN": BSN,
        "phone": "612345678",
    }
    encoded = {name: value.encode() for name, value in values.items()}
    encoded.update(_encodings("linking key", network.linking_key))
    secrets = _secrets(network.demo)
    assert any("linking-key" in name for name in secrets), sorted(secrets)
    assert sum(name.endswith("signing.key") for name in secrets) > len(network.demo.orgs)
    for name, secret in secrets.items():
        encoded.update(_encodings(f"private key {name}", secret))
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
    stored = await _hub_bytes(network)
    logged = network.log.getvalue().encode()
    assert logged, "the hub logged nothing: the log check would prove nothing"
    assert police_id.encode() in stored  # the check reads the real database
    police = network.open("police")
    try:
        assert police.certificate().der in stored  # binary columns as raw bytes too
    finally:
        police.state.close()
    for name, canary in _canaries(network).items():
        assert canary not in stored, f"{name} found in the hub's database"
        assert canary not in logged, f"{name} found in the hub's log"
    # logs never carry pseudonyms either
    for pseudonym in received[police_id].pseudonyms:
        assert pseudonym.encode() not in logged, "a pseudonym was logged"


# The tests below read nothing from the hub's database themselves: they run on SQLite
# only (tests/hub runs the hub's store on both kinds), which keeps tests/integration fast.
ON_SQLITE_ONLY = pytest.mark.parametrize("database_kind", ["sqlite"])


@ON_SQLITE_ONLY
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


@ON_SQLITE_ONLY
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
