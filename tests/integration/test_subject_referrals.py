"""A person's subject report covers their referral: the coordinator refers their case to a
shelter by naming the case (the referral carries no pseudonyms of its own), the shelter
receives it and answers with a status, and the network privacy officer's report by the
person's BSN lists the referral, the shelter's reads of it and the status update, each
proven against a signed head. A real hub on loopback, real clients."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestServer

from clients.hub_client import Purpose
from clients.organisation import Organisation
from clients.privacy_officer import PrivacyOfficer
from hub.app import make_app
from keys.hub import HubKeys
from protocol.pseudonym import Identity
from schakel import demo as demo_network

if TYPE_CHECKING:
    from conftest import HubDatabase

ORGS = {
    "police": ("member",),
    "shelter": ("member",),
    "coordinator": ("member", "coordinator"),
    "privacy": ("member", "network_privacy_officer"),
}
ANNA = {"bsn": "111222333", "given_names": "Anna", "family_name": "de Vries"}
BRAM = {"bsn": "123456782", "given_names": "Bram", "family_name": "Bakker"}
REFERRAL = {
    "schema": "schakel.referral/1",
    "service": "shelter",
    "urgency": "urgent",
    "reason": "needs a safe place tonight",
    "shared_with_person": "told about the shelter",
    "consent": {
        "share_with_recipient": True,
        "comensha_registration": False,
        "recorded_on": "2025-01-10",
    },
    "exploitation": "sexual",
}
ACCEPTED = {"schema": "schakel.status/1", "status": "accepted", "explanation": "room 4"}


@dataclasses.dataclass
class Net:
    demo: demo_network.DemoNetwork
    base_url: str

    @contextlib.asynccontextmanager
    async def acting(self, org: str) -> AsyncIterator[Organisation]:
        organisation = demo_network.open_organisation(self.demo, org, self.base_url)
        try:
            async with organisation.hub:
                yield organisation
        finally:
            organisation.state.close()


@pytest.fixture
async def net(tmp_path: Path, hub_database: HubDatabase) -> AsyncIterator[Net]:
    now = int(time.time())
    demo = demo_network.provision(tmp_path / "demo", now=now, orgs=ORGS)
    hub_keys = HubKeys.open(demo.hub_dir, demo.passphrase)
    assert hub_keys.certificate is not None
    config = dataclasses.replace(
        demo_network.hub_config(demo, host="127.0.0.1", port=0), database_url=hub_database.url
    )
    app = make_app(
        config,
        token_key_pem=hub_keys.token_key_pem,
        hub_certificate_der=hub_keys.certificate.der,
        log_signing_key=hub_keys.signing_key,
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        base_url = str(server.make_url("")).rstrip("/")
        await demo_network.bootstrap(demo, base_url, now=now)
        yield Net(demo, base_url)
    finally:
        await server.close()


def _signal(person: dict[str, str]) -> dict[str, Any]:
    return {
        "schema": "schakel.signal/1",
        "person": person,
        "exploitation": "sexual",
        "urgency": "high",
        "consent_to_share": True,
    }


@pytest.mark.parametrize("database_kind", ["sqlite"])  # the hub's store runs on both in tests/hub
async def test_the_subject_report_finds_the_referral_its_reads_and_its_status(net: Net) -> None:
    async with net.acting("police") as police:
        signal = (await police.send_signal(_signal(ANNA), ["coordinator"])).id
    async with net.acting("coordinator") as coordinator:
        await coordinator.receive()
        [anna_case] = [c.case for c in (await coordinator.hub.cases()).cases]
        referral = (await coordinator.send_referral(REFERRAL, "shelter", case=anna_case)).id
    async with net.acting("police") as police:  # another person, another case
        other = (await police.send_signal(_signal(BRAM), ["coordinator"])).id
    async with net.acting("shelter") as shelter:
        await shelter.receive()
        status = (await shelter.send_status(referral, "accepted", ACCEPTED)).id
    async with net.acting("coordinator") as coordinator:
        await coordinator.receive()

    async with net.acting("privacy") as officer:
        officer.hub.purpose = Purpose("audit")
        _, rows = await PrivacyOfficer(officer).subject_report(Identity(**ANNA))

    seen = {(row.org, row.action, objects) for row in rows for objects in row.objects}
    assert ("police", "create", signal) in seen
    assert ("coordinator", "create", referral) in seen
    assert ("shelter", "acknowledge", referral) in seen  # the shelter received it
    assert {("shelter", "list", referral), ("shelter", "read", referral)} & seen
    assert ("shelter", "create", status) in seen  # its status update
    assert ("coordinator", "acknowledge", status) in seen  # and the coordinator's receipt
    assert other not in str(rows)  # nothing of another person
