"""The client library on an OPRF network (issue 15): signals, referrals, the pseudonyms
command's call and the subject report get their pseudonyms from the two real
pseudonymisation services, through the real hub; a service down, lying, over its limit,
or refusing a revoked organisation leaves the signal in the outbox, never half-sent."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from client_harness import MARKER, PASS, Hub
from oprf_network_harness import OprfServices, scalar, start_services

from clients.cli.authority import _publish, _publishable
from clients.errors import HubProblem, NotReady, PseudonymsUnavailable, VerificationFailed
from clients.hub_client import HubClient
from clients.organisation import Organisation
from clients.outbox import REFUSED, WAITING
from clients.privacy_officer import PrivacyOfficer
from clients.transport import Request, Response
from keys.keyfile import KIND_ED25519, KIND_KEM_SEED, KIND_LINKING_KEY, read_key_file
from protocol import oprf
from protocol import ristretto as group
from protocol.encoding import canonical_json
from protocol.oprfkeys import make_key_request
from protocol.pseudonym import (
    Identity,
    encode_pseudonym,
    identifier_input,
    oprf_pseudonym,
    pseudonym,
)
from protocol.types import OrgId, ServiceName

BSN = "111222333"
ANNA = {"bsn": BSN, "given_names": "Anna", "family_name": "de Vries", "date_of_birth": "1999-03-14"}


def signal(person: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "schema": "schakel.signal/1",
        "person": person or ANNA,
        "exploitation": "sexual",
        "urgency": "high",
        "consent_to_share": True,
        "text": MARKER,
    }


@pytest.fixture
async def services(hub: Hub, tmp_path: Path) -> AsyncIterator[OprfServices]:
    async with start_services(hub, tmp_path / "oprf") as running:
        yield running


def expected(services: OprfServices, kind: str, value: str) -> str:
    """What only both shares together compute: the pseudonym of the whole key."""
    whole = group.scalar_add(*services.shares)
    output = oprf.evaluate(whole, identifier_input(kind, value))
    return oprf_pseudonym(kind, services.version, output)


async def join(hub: Hub, *names: str) -> list[Organisation]:
    roles = {"regie": ("coordinator",)}
    types = {"police": "police", "ggd": "ggd", "regie": "coordination", "opvang": "shelter"}
    return [
        await hub.join(n, *roles.get(n, ()), org_type=types.get(n, "other"), link=False)
        for n in names
    ]


def posted(hub: Hub) -> int:
    return hub.rows("SELECT count(*) FROM messages")[0][0]


async def test_two_organisations_signals_about_one_person_meet_at_the_coordinator(
    hub: Hub, services: OprfServices
) -> None:
    police, ggd, regie = await join(hub, "police", "ggd", "regie")
    first = await police.send_signal(signal(), ["regie"])
    second = await ggd.send_signal(
        signal({"bsn": "1112.22.333", "phone": "06 1234 5678"}), ["regie"]
    )
    bsn = expected(services, "bsn", BSN)
    assert bsn in first.pseudonyms and bsn in second.pseudonyms
    assert expected(services, "ndob", "vries|anna|1999-03-14") in first.pseudonyms
    assert expected(services, "tel", "+31612345678") in second.pseudonyms
    assert all(p.split(".")[1] == str(services.version) for p in first.pseudonyms)
    # One round trip per signal to each service, all identifiers in one batch.
    assert [s.asked for s in services.switches] == [2, 2]
    # The hub clusters them into one case; the coordinator sees both signals there.
    page = await regie.hub.cases()
    assert len(page.cases) == 1
    view = await regie.case_view(page.cases[0].case)
    assert {e.message for e in view.case.timeline if e.message} >= {first.id, second.id}
    # What the recipient opens carries the same pseudonyms, made by the sender.
    received = (await regie.receive()).messages
    assert {m.id: m.pseudonyms for m in received}[first.id] == first.pseudonyms
    # The pseudonyms command (and the coordinator's search) ask the services too.
    assert await regie.derive_pseudonyms(Identity(bsn=BSN)) == (bsn,)


async def test_a_referral_and_the_subject_report_use_the_services(
    hub: Hub, services: OprfServices
) -> None:
    police, _opvang = await join(hub, "police", "opvang")
    referral = {
        "schema": "schakel.referral/1",
        "service": "shelter",
        "urgency": "urgent",
        "reason": f"{MARKER} reason",
        "shared_with_person": "told",
        "consent": {"share_with_recipient": True, "comensha_registration": True},
        "person": {"bsn": BSN},
    }
    sent = await police.send_referral(referral, "opvang")
    assert sent.pseudonyms == (expected(services, "bsn", BSN),)
    officer = await hub.join("privacy", "network_privacy_officer", link=False)
    found = await PrivacyOfficer(officer).subject_pseudonyms(Identity(bsn=BSN))
    assert found == {expected(services, "bsn", BSN)}


async def test_a_service_down_keeps_the_signal_waiting_until_both_answer(
    hub: Hub, services: OprfServices
) -> None:
    (police,) = await join(hub, "police")
    await join(hub, "regie")
    services.switches[1].down = True
    sent = await police.send_signal(signal(), ["regie"])
    assert sent.waiting and sent.pseudonyms == ()
    assert sent.problem is not None and "oprf-2" in sent.problem and "outbox" in sent.problem
    assert BSN not in sent.problem
    (entry,) = police.outbox.entries()
    assert (entry.state, entry.sealed) == (WAITING, False)
    assert posted(hub) == 0  # nothing half-sent: no message without its pseudonyms
    # After a restart (the draft is kept on disk), with both services back, it goes out.
    police = await hub.restart("police")
    services.switches[1].down = False
    report = await police.send_outbox()
    assert [s.id for s in report.sent] == [sent.id]
    assert expected(services, "bsn", BSN) in report.sent[0].pseudonyms
    assert police.outbox.entries() == () and posted(hub) == 1


async def test_an_answer_under_another_key_is_refused_and_no_pseudonym_is_made(
    hub: Hub, services: OprfServices
) -> None:
    police, _ = await join(hub, "police", "regie")
    services.switches[0].lie = True
    sent = await police.send_signal(signal(), ["regie"])
    assert sent.waiting and sent.problem is not None
    assert "oprf-1" in sent.problem and "no pseudonym made" in sent.problem
    assert posted(hub) == 0
    services.switches[0].lie = False
    assert [s.id for s in (await police.send_outbox()).sent] == [sent.id]


async def test_a_limit_reached_waits_for_the_next_hour(hub: Hub, services: OprfServices) -> None:
    """The services allow 12 evaluations an hour (harness); each signal asks for 2."""
    police, _ = await join(hub, "police", "regie")
    person = {"bsn": BSN, "phone": "0612345678"}
    for _ in range(6):
        assert not (await police.send_signal(signal(person), ["regie"])).waiting
    sent = await police.send_signal(signal(person), ["regie"])
    assert sent.waiting and sent.problem is not None and "429" in sent.problem
    with pytest.raises(PseudonymsUnavailable) as caught:
        await police.derive_pseudonyms(Identity(bsn=BSN))
    assert caught.value.transient and caught.value.retry_after
    await hub.advance(3600)
    assert [s.id for s in (await police.send_outbox()).sent] == [sent.id]


async def test_an_organisation_revoked_mid_way_is_refused_by_the_services(
    hub: Hub, services: OprfServices
) -> None:
    police, _ = await join(hub, "police", "regie")
    services.switches[0].down = True
    sent = await police.send_signal(signal(), ["regie"])
    assert sent.waiting
    crl = hub.authority.revoke(police.certificate().serial, now=hub.clock.seconds())
    await services.push_crl(crl.der)
    services.switches[0].down = False
    report = await police.send_outbox()
    assert report.sent == () and [e.id for e in report.refused] == [sent.id]
    assert "401" in str(report.errors[sent.id]) and not report.errors[sent.id].transient  # type: ignore[attr-defined]
    assert police.outbox.entries()[0].state == REFUSED  # kept until dropped: nothing lost
    assert posted(hub) == 0


async def test_a_hub_that_stops_serving_the_key_set_is_refused_not_a_fall_back(
    hub: Hub, services: OprfServices
) -> None:
    police, _ = await join(hub, "police", "regie")
    assert not (await police.send_signal(signal(), ["regie"])).waiting
    hub.sql("DELETE FROM oprf_keys")
    police = await hub.restart("police")
    with pytest.raises(VerificationFailed, match="no longer serves"):
        await police.send_signal(signal(), ["regie"])


# -- the attack of issue 15, end to end -------------------------------------------------------


def _secrets(directory: Path) -> list[bytes]:
    """Every secret in an organisation's key directory, decrypted with its passphrase."""
    kinds = {"signing.key": KIND_ED25519, "kem-": KIND_KEM_SEED, "linking-key-": KIND_LINKING_KEY}
    found = []
    for path in sorted(directory.glob("*.key")):
        kind = next(k for prefix, k in kinds.items() if path.name.startswith(prefix))
        found.append(read_key_file(path, PASS, kind=kind))
    return found


def _blobs(database: Path) -> list[bytes]:
    """Every stored value of the hub's database that could be a 32-byte key."""
    found = []
    with sqlite3.connect(database) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                found += [v for v in row if isinstance(v, bytes) and len(v) == 32]
    return found


def _computed(secret: bytes, version: int) -> set[str]:
    """The BSN's pseudonym with ``secret`` as linking key, or as (a hash to) the OPRF key."""
    data = identifier_input("bsn", BSN)
    scalars = [oprf.random_scalar(hashlib.sha512(secret).digest())]
    if len(secret) == 32 and 0 < int.from_bytes(secret, "little") < group.ORDER:
        scalars.append(group.decode_scalar(secret))
    found = {oprf_pseudonym("bsn", version, oprf.evaluate(k, data)) for k in scalars}
    mac = hmac.new(secret, data, hashlib.sha256).digest()
    return found | {encode_pseudonym("bsn", version, mac)}


async def test_the_attack_works_on_a_linking_key_network_and_fails_on_an_oprf_one(
    hub: Hub, services: OprfServices
) -> None:
    """From one organisation's files (or the hub's database, or one service's share) the
    pseudonym of a given BSN, as the hub holds it, is computed on a linking-key network,
    and is not on an OPRF network."""
    old = await hub.join("school")  # a linking-key organisation (version 1)
    linking = pseudonym("bsn", BSN, hub.authority.linking_key(1))
    assert linking in set().union(*(_computed(s, 1) for s in _secrets(old.keys.directory)))

    police, _ = await join(hub, "police", "regie")
    sent = await police.send_signal(signal(), ["regie"])
    target = expected(services, "bsn", BSN)
    assert target in sent.pseudonyms  # the hub holds it
    header = hub.rows("SELECT envelope FROM messages")[0][0]
    assert target in (header if isinstance(header, str) else header.decode())
    stolen = [
        *_secrets(police.keys.directory),  # the organisation's files: no linking key at all
        *_blobs(hub.database),  # the hub's database
        services.shares[0],  # one service's key share
    ]
    assert len(_secrets(police.keys.directory)) == 2  # signing key and KEM seed only
    tried = set().union(*(_computed(s, services.version) for s in stolen))
    assert target not in tried
    # Only both shares (two parties) compute it without asking a service.
    assert target in _computed(group.scalar_add(*services.shares), services.version)


async def test_the_authority_relays_a_statement_file_through_the_hub(
    hub: Hub, services: OprfServices, tmp_path: Path
) -> None:
    """`schakel authority publish STATEMENT.json`: a renewed statement reaches the hub,
    replaces the held one, and organisations take it into their key set."""
    hub.clock.advance(1)
    request = make_key_request(
        services.shares[1], hub.authority.network, ServiceName("oprf-2"), 2, r=scalar(b"pop")
    )
    renewed = hub.authority.certify_oprf_key(
        request, url=services.urls[1] + "/", now=hub.clock.seconds()
    )
    assert renewed != services.statements[1] and renewed.url == services.urls[1]
    path = tmp_path / "statement.json"
    path.write_bytes(canonical_json(renewed.to_wire()))
    lines = await _publish(hub.url, hub.authority.network, [(path, *_publishable(path))])
    assert lines == [
        f"{path}: key statement of oprf-2 (share 2 of pseudonym version {services.version}, "
        f"{services.urls[1]}) published"
    ]
    (police,) = await join(hub, "police")
    keys = await police.linking.key_set()
    assert keys is not None and keys.second == renewed


# -- the move of a linking-key network ----------------------------------------------------------


async def test_a_linking_key_network_moves_to_the_oprf_without_losing_a_link(
    hub: Hub, tmp_path: Path
) -> None:
    async with start_services(hub, tmp_path / "oprf", publish=False) as services:
        school = await hub.join("school")  # holds linking key version 1
        regie = await hub.join("regie", "coordinator", org_type="coordination")
        person = {"bsn": BSN}
        old_bsn = pseudonym("bsn", BSN, hub.authority.linking_key(1))
        new_bsn = expected(services, "bsn", BSN)
        before = await school.send_signal(signal(person), ["regie"])
        assert before.pseudonyms == (old_bsn,)
        # The authority certifies the services and relays their statements: the window.
        await services.publish(hub)
        school.linking.forget()
        during = await school.send_signal(signal(person), ["regie"])
        assert set(during.pseudonyms) == {old_bsn, new_bsn}  # both
        (police,) = await join(hub, "police")  # a new member: no linking key at all
        after = await police.send_signal(signal(person), ["regie"])
        assert after.pseudonyms == (new_bsn,)
        # The hub's clustering joins across versions: one case, all three signals.
        page = await regie.hub.cases()
        assert len(page.cases) == 1
        timeline = (await regie.hub.case(page.cases[0].case)).timeline
        assert {e.message for e in timeline if e.message} >= {before.id, during.id, after.id}
        # Destroying the key before the window has ended is refused.
        with pytest.raises(NotReady, match="window"):
            await school.destroy_linking_keys()
        # The authority ends the window in a day; then the hub refuses version 1 ...
        retirement = hub.authority.retire_linking_key(1, now=hub.clock.seconds(), days=1)
        async with HubClient(hub.url, network=hub.authority.network) as anonymous:
            assert await anonymous.put_retirement(retirement)
        await hub.advance(86400 + 1)
        school.linking.forget()
        late = await school.send_signal(signal(person), ["regie"])
        assert late.pseudonyms == (new_bsn,)  # ... and clients stop making it
        with pytest.raises(HubProblem) as caught:
            await school.dispatch("signal", signal(person), [OrgId("regie")], pseudonyms=(old_bsn,))
        assert caught.value.status == 422 and "retired" in caught.value.detail
        # Every organisation destroys its copy, for good.
        assert await school.destroy_linking_keys() == (1,)
        assert school.keys.linking_keys == {}
        assert not (school.keys.directory / "linking-key-v1.key").exists()
        assert await school.fetch_linking_keys() == []  # the hub's sealed copy is not taken
        assert (await school.send_signal(signal(person), ["regie"])).pseudonyms == (new_bsn,)


async def test_a_hub_from_before_the_services_is_a_linking_key_network(hub: Hub) -> None:
    """A hub without the key-statement route (404) leaves the network on its linking key."""
    school = await hub.join("school")
    await hub.join("regie", "coordinator", org_type="coordination")
    problem = {"type": "urn:schakel:problem:not-found", "title": "Not Found", "status": 404}

    def gone(request: Request, response: Response) -> Response | None:
        if "/v1/directory/oprf-keys" not in request.url:
            return None
        return Response(
            404, {"content-type": "application/problem+json"}, json.dumps(problem).encode()
        )

    hub.taps["school"].answer = gone
    sent = await school.send_signal(signal({"bsn": BSN}), ["regie"])
    assert sent.pseudonyms == (pseudonym("bsn", BSN, hub.authority.linking_key(1)),)
