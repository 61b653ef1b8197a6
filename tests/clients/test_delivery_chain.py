"""The header ``prev`` as senders write it: first message, per recipient, two senders at once.

The real hub (``client_harness``). Each envelope names, per recipient, the last message
the hub accepted from this sender for it; the recipient finds nothing missing when
nothing was withheld, whatever the order in which two processes of one sender sealed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any, cast

import pytest
from client_harness import NETWORK, PASS, USER, Hub, no_sleep

from clients.errors import ClientError, InboxWentBack
from clients.hub_client import HubClient, Purpose
from clients.organisation import Organisation
from clients.state import LocalState
from clients.transport import Request, Response
from keys.organisation import OrgKeys
from protocol.encoding import loads_strict


def signal() -> dict[str, Any]:
    return {
        "schema": "schakel.signal/1",
        "person": {"bsn": "111222333", "given_names": "Anna", "family_name": "Zwaan"},
        "exploitation": "labour",
        "urgency": "high",
        "consent_to_share": True,
    }


def copy_database(source: Path, target: Path) -> None:
    """SQLite's online backup: a consistent copy of a live database file."""
    with (
        contextlib.closing(sqlite3.connect(source)) as live,
        contextlib.closing(sqlite3.connect(target)) as copy,
    ):
        live.backup(copy)


def prev_of(organisation: Organisation, message_id: str) -> dict[str, str] | None:
    stored = organisation.state.message(message_id)
    assert stored is not None
    return stored.prev


def second_process(hub: Hub, name: str) -> Organisation:
    """Another process of the same organisation: its own hub client, the same home."""
    keys = OrgKeys.open(hub.home(name) / "keys", PASS)
    client = HubClient(
        hub.url, network=NETWORK, org=name, signing_key=keys.signing_key, user=USER,
        purpose=Purpose("case-coordination"), clock=hub.clock, sleep=no_sleep,
    )  # fmt: skip
    state = LocalState(hub.home(name) / "state.sqlite")
    return Organisation(keys, state, client, clock=hub.clock)


async def test_each_envelope_names_the_last_one_per_recipient(hub: Hub) -> None:
    police, ggd, shelter = (
        await hub.join("politie"),
        await hub.join("ggd"),
        await hub.join("opvang"),
    )
    first = (await police.send_signal(signal(), ["ggd"])).id
    both = (await police.send_signal(signal(), ["ggd", "opvang"])).id
    third = (await police.send_signal(signal(), ["opvang"])).id
    ggd_got = await ggd.receive()
    shelter_got = await shelter.receive()
    assert [m.id for m in ggd_got.messages] == [first, both]
    assert [m.id for m in shelter_got.messages] == [both, third]
    assert prev_of(ggd, first) is None  # the first message names nothing
    assert prev_of(ggd, both) == {"ggd": first}  # opvang had nothing from politie yet
    assert prev_of(shelter, third) == {"opvang": both}
    assert ggd_got.missing == shelter_got.missing == ()


async def test_two_processes_sending_at_once_raise_no_alarm(hub: Hub) -> None:
    police, ggd = await hub.join("politie"), await hub.join("ggd")
    start = (await police.send_signal(signal(), ["ggd"])).id
    other = second_process(hub, "politie")
    try:
        async with other.hub:
            sent = await asyncio.gather(
                police.send_signal(signal(), ["ggd"]), other.send_signal(signal(), ["ggd"])
            )
    finally:
        other.state.close()
    got = await ggd.receive()
    assert sorted(m.id for m in got.messages) == sorted([start, *(s.id for s in sent)])
    assert got.missing == () and ggd.state.missing() == []
    named = [prev_of(ggd, s.id) for s in sent]
    assert {"ggd": start} in named  # at least one names the first; the other it or its twin
    assert all(p is not None and p["ggd"] in {start, *(s.id for s in sent)} for p in named)


# -- a hub that says nothing, or something else, about the cursor read from ---------------


def _answer(change: Callable[[Any], None]) -> Callable[[Request, Response], Response]:
    def answer(request: Request, response: Response) -> Response:
        if "/v1/inbox" not in request.url or response.status != 200:
            return response
        doc = loads_strict(response.body)
        change(doc)
        return Response(response.status, response.headers, json.dumps(doc).encode())

    return answer


def _drop_at(doc: Any) -> None:
    doc.pop("at", None)


def _other_cursor(doc: Any) -> None:
    if "at" in doc:
        doc["at"]["cursor"] += 1


def _at_from_the_start(doc: Any) -> None:
    doc["at"] = {"cursor": 0, "id": None}


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (_drop_at, "hub's inbox did not verify (at: missing"),
        (_other_cursor, "hub's inbox did not verify (at.cursor: not the cursor read from)"),
        (_at_from_the_start, "hub answer has an 'at' for an inbox read from its start"),
    ],
)
async def test_an_inbox_answer_that_hides_the_cursor_is_refused(
    hub: Hub, change: Callable[[Any], None], error: str
) -> None:
    police, ggd = await hub.join("politie"), await hub.join("ggd")
    await police.send_signal(signal(), ["ggd"])
    if change is not _at_from_the_start:
        await ggd.receive()  # the cursor is past 0 now
    await police.send_signal(signal(), ["ggd"])
    hub.taps["ggd"].answer = _answer(change)
    with pytest.raises(ClientError) as info:
        await ggd.receive()
    assert error in str(info.value)
    hub.taps["ggd"].answer = None
    assert len((await ggd.receive()).messages) == 1 + (change is _at_from_the_start)


async def test_a_watching_recipient_stops_when_the_hub_went_back(hub: Hub, tmp_path: Path) -> None:
    """The hub announces a new message at a cursor the recipient already passed (its
    database restored): the watch reads the inbox anyway, and stops loudly."""
    police, ggd = await hub.join("politie"), await hub.join("ggd")
    backup = tmp_path / "backup.db"
    copy_database(hub.database, backup)
    m1 = (await police.send_signal(signal(), ["ggd"])).id
    watching = cast(AsyncGenerator[Any, None], ggd.watch())  # closed below
    try:
        first = await asyncio.wait_for(anext(watching), 10)  # the socket is open now
        assert first.id == m1
        copy_database(backup, hub.database)
        m2 = (await police.send_signal(signal(), ["ggd"])).id
        with pytest.raises(InboxWentBack) as info:
            await asyncio.wait_for(anext(watching), 10)
        assert (info.value.kept, info.value.served) == (m1, m2)
    finally:
        await watching.aclose()
