"""The demo network on the OPRF (issue 15): ``schakel demo run``'s steps in-process, the
hub on both databases, both pseudonymisation services as the demo runs them, and the
README tour's two signals about the same woman meeting at the coordinator."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp.test_utils import TestServer

from hub.app import make_app
from keys.hub import HubKeys
from schakel import demo as demo_network

if TYPE_CHECKING:
    from conftest import HubDatabase

ORGS = {"police": ("member",), "ggd": ("member",), "coordinator": ("member", "coordinator")}


def signal(person: dict[str, str], text: str) -> dict[str, Any]:
    return {
        "schema": "schakel.signal/1",
        "person": person,
        "exploitation": "sexual",
        "urgency": "high",
        "consent_to_share": True,
        "text": text,
    }


async def test_the_tour_meets_at_the_coordinator_through_the_services(
    tmp_path: Path, hub_database: HubDatabase
) -> None:
    now = int(time.time())
    demo = demo_network.provision(tmp_path / "demo", now=now, orgs=ORGS, oprf=True)
    assert demo.on_oprf
    hub_keys = HubKeys.open(demo.hub_dir, demo.passphrase)
    config = dataclasses.replace(
        demo_network.hub_config(demo, host="127.0.0.1", port=0), database_url=hub_database.url
    )
    app = make_app(
        config,
        token_key_pem=hub_keys.token_key_pem,
        hub_certificate_der=hub_keys.certificate.der if hub_keys.certificate else None,
        log_signing_key=hub_keys.signing_key,
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    base_url = str(server.make_url("")).rstrip("/")
    try:
        async with demo_network.pseudonymisation_services(
            demo, base_url, host="127.0.0.1", now=now
        ) as urls:
            assert len(urls) == 2 and all(u.startswith("http://127.0.0.1:") for u in urls)
            await demo_network.bootstrap(demo, base_url, now=now)
            assert await demo_network.publish_retention_policy(demo, base_url, now=now) == 1
            sent = []
            for org, person in (
                ("police", {"bsn": "111 222 333", "given_names": "Anna Maria",
                            "family_name": "de Vries", "date_of_birth": "1999-03-14"}),
                ("ggd", {"given_names": "ANNA", "family_name": "De  Vries",
                         "date_of_birth": "1999-03-14", "phone": "06-12345678"}),
            ):  # fmt: skip
                organisation = demo_network.open_organisation(demo, org, base_url)
                try:
                    async with organisation.hub:
                        assert organisation.keys.linking_keys == {}  # nothing to steal
                        sent.append(
                            await organisation.send_signal(signal(person, "Zwaan"), ["coordinator"])
                        )
                finally:
                    organisation.state.close()
            shared = set(sent[0].pseudonyms) & set(sent[1].pseudonyms)
            assert [p.split(".")[0] for p in shared] == ["ndob"]
            coordinator = demo_network.open_organisation(demo, "coordinator", base_url)
            try:
                async with coordinator.hub:
                    page = await coordinator.hub.cases()
                    assert len(page.cases) == 1  # the hub clustered them on the OPRF pseudonym
                    received = (await coordinator.receive()).messages
                    assert {m.id for m in received} == {s.id for s in sent}
            finally:
                coordinator.state.close()
            envelopes = await hub_database.rows("SELECT envelope FROM messages")
            assert len(envelopes) == 2
            assert not any("Vries" in str(row[0]) or "Zwaan" in str(row[0]) for row in envelopes)
    finally:
        await server.close()
