"""The directory: certificates, key bundles, CRL and linking keys, and every rejection."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.encoding import b64d, b64e
from protocol.keybundle import kem_public_bytes, sign_bundle
from protocol.linkingkey import seal_linking_key
from protocol.pseudonym import LinkingKey

if TYPE_CHECKING:
    from conftest import HubHarness

DAY = 86_400


async def _expect_denied(hub: HubHarness, before: int, action: str, reason: str) -> None:
    entries = await hub.audit()
    assert len(entries) == before + 1
    assert (entries[-1].action, entries[-1].outcome, entries[-1].reason) == (
        action,
        "denied",
        reason,
    )


async def test_certificates_upload_once_and_list(hub: HubHarness) -> None:
    party = hub.authority.enrol("police-west", ["member", "coordinator"])
    first = await hub.upload_certificate(party.cert)
    assert first.status == 201
    assert await first.json() == {
        "org": "police-west",
        "fingerprint": party.cert.fingerprint,
        "roles": ["coordinator", "member"],
    }
    again = await hub.upload_certificate(party.cert)
    assert again.status == 200
    await hub.login(party)
    listing = await (await hub.client.get("/v1/directory/orgs", headers=party.headers())).json()
    assert listing == {
        "orgs": [
            {
                "org": "police-west",
                "roles": ["coordinator", "member"],
                "type": "other",
                "certificate": party.cert.fingerprint,
                "bundle": None,
                "revoked": False,
            }
        ]
    }
    entries = await hub.audit()
    assert [e.action for e in entries[:2]] == ["create"] * 2
    assert [e.reason for e in entries[:2]] == [None, "already-held"]


async def test_fetch_org_with_its_current_bundle_and_older_bundles_by_fingerprint(
    hub: HubHarness,
) -> None:
    party = await hub.enrol("ggd")
    other = await hub.enrol("shelter")
    entry = await hub.client.get("/v1/directory/orgs/ggd", headers=other.headers())
    body = await entry.json()
    assert b64d(body["certificate"]) == party.cert.der
    assert body["bundle"] == party.bundle.to_wire()
    newer = sign_bundle(
        party.key,
        party.cert,
        kem_public_bytes(os.urandom(96)),
        not_before=hub.clock(),
        not_after=hub.clock() + 30 * DAY,
    )
    response = await hub.upload_bundle(party, newer)
    assert await response.json() == {"fingerprint": newer.fingerprint}
    body = await (await hub.client.get("/v1/directory/orgs/ggd", headers=other.headers())).json()
    assert body["bundle"] == newer.to_wire()
    old = await hub.client.get(
        f"/v1/directory/bundles/{party.bundle.fingerprint}", headers=other.headers()
    )
    assert await old.json() == party.bundle.to_wire()
    listing = await (await hub.client.get("/v1/directory/orgs", headers=other.headers())).json()
    assert [o["bundle"] for o in listing["orgs"]] == [newer.fingerprint, other.bundle.fingerprint]


async def test_unknown_orgs_and_bundles_are_404(hub: HubHarness) -> None:
    party = await hub.enrol("ggd")
    for path in (
        "/v1/directory/orgs/nobody",
        "/v1/directory/orgs/NOT_AN_ORG",
        "/v1/directory/bundles/" + "A" * 43,
        "/v1/directory/bundles/short",
    ):
        await hub.problem(await hub.client.get(path, headers=party.headers()), 404, "not-found")


async def test_a_certificate_from_another_root_is_refused(hub: HubHarness) -> None:
    foreign = hub.foreign_authority().enrol("police-west")
    before = len(await hub.audit())
    await hub.problem(await hub.upload_certificate(foreign.cert), 422, "invalid-credential")
    assert (await hub.counts())["organisations"] == 0
    await _expect_denied(hub, before, "create", "invalid-credential")


async def test_a_tampered_certificate_is_refused(hub: HubHarness) -> None:
    party = hub.authority.enrol("police-west")
    der = bytearray(party.cert.der)
    der[-1] ^= 0x01  # inside the signature
    response = await hub.post("/v1/directory/certificates", {"certificate": b64e(bytes(der))})
    await hub.problem(response, 422, "invalid-credential")
    garbage = await hub.post("/v1/directory/certificates", {"certificate": b64e(b"\x30\x03abc")})
    await hub.problem(garbage, 400, "malformed")
    assert (await hub.counts())["organisations"] == 0


async def test_a_hub_certificate_is_not_a_directory_entry(hub: HubHarness) -> None:
    cert = hub.authority.certify("hub", Ed25519PrivateKey.generate(), ["hub"])
    await hub.problem(await hub.upload_certificate(cert), 422, "invalid-credential")


async def test_an_older_certificate_does_not_replace_a_newer_one(hub: HubHarness) -> None:
    party = hub.authority.enrol("care")
    hub.clock.advance(100)
    newer = hub.authority.certify("care", party.key, now=hub.clock())
    assert (await hub.upload_certificate(newer)).status == 201
    await hub.problem(await hub.upload_certificate(party.cert), 409, "conflict")


async def test_bundle_rejections(hub: HubHarness) -> None:
    owner = await hub.enrol("ggd")
    other = await hub.enrol("shelter")
    counts = await hub.counts()
    # Another org's bundle path: 404, whatever the body.
    response = await hub.client.put(
        "/v1/directory/orgs/ggd/bundle", json=other.bundle.to_wire(), headers=other.headers()
    )
    await hub.problem(response, 404, "not-found")
    # A bundle signed by another org, uploaded under one's own name.
    await hub.problem(await hub.upload_bundle(other, owner.bundle), 422, "invalid-credential")
    # A bundle naming our org and certificate but signed with another key.
    forged = sign_bundle(
        other.key,
        other.cert,
        kem_public_bytes(os.urandom(96)),
        not_before=hub.clock() - 1,
        not_after=hub.clock() + DAY,
    )
    wire = {**forged.to_wire(), "org": "ggd", "cert": owner.cert.fingerprint}
    response = await hub.client.put(
        "/v1/directory/orgs/ggd/bundle", json=wire, headers=owner.headers()
    )
    await hub.problem(response, 422, "invalid-credential")
    # Expired, and malformed.
    hub.clock.advance(31 * DAY)
    await hub.login(owner)
    await hub.problem(await hub.upload_bundle(owner, owner.bundle), 422, "invalid-credential")
    response = await hub.client.put(
        "/v1/directory/orgs/ggd/bundle", json={"v": 1}, headers=owner.headers()
    )
    await hub.problem(response, 400, "malformed")
    assert (await hub.counts())["bundles"] == counts["bundles"] == 2
    denied = [e for e in await hub.audit() if e.outcome == "denied"]
    assert [e.reason for e in denied] == [
        "not-found",
        "invalid-credential",
        "invalid-credential",
        "invalid-credential",
        "malformed",
    ]
    assert {e.action for e in denied} == {"create"}


async def test_crl_upload_rules(hub: HubHarness) -> None:
    party = await hub.enrol("school")
    empty = await (await hub.client.get("/v1/directory/crl")).json()
    assert empty == {"crl": None}
    first = hub.authority.crl([])
    response = await hub.put_crl(first)
    assert (response.status, await response.json()) == (200, {"number": 1})
    before = len(await hub.audit())
    await hub.problem(await hub.put_crl(first), 409, "conflict")
    await _expect_denied(hub, before, "create", "conflict")
    second = hub.authority.crl([party.cert])
    assert (await hub.put_crl(second)).status == 200
    held = await (await hub.client.get("/v1/directory/crl")).json()
    assert b64d(held["crl"]) == second.der
    foreign = hub.foreign_authority().crl([])
    await hub.problem(await hub.put_crl(foreign), 422, "invalid-credential")
    response = await hub.client.put("/v1/directory/crl", json={"crl": b64e(b"junk")})
    await hub.problem(response, 400, "malformed")
    assert (await hub.counts())["crl"] == 2
    listing = await hub.client.get("/v1/directory/orgs", headers=(await hub.enrol("x1")).headers())
    revoked = {o["org"]: o["revoked"] for o in (await listing.json())["orgs"]}
    assert revoked == {"school": True, "x1": False}


async def test_a_crl_altered_in_the_database_stops_trust_decisions(hub: HubHarness) -> None:
    party = await hub.enrol("school")
    assert (await hub.put_crl(hub.authority.crl([]))).status == 200
    forged = hub.foreign_authority().crl([])  # verifies against another root only
    await hub.execute("UPDATE crl SET der = :der", der=forged.der)
    response = await hub.client.get("/v1/directory/orgs", headers=party.headers())
    problem = await hub.problem(response, 503, "unavailable")
    assert problem["detail"] == "the revocation list the hub holds does not verify"


async def test_linking_keys_are_held_once_and_served_to_their_org_only(hub: HubHarness) -> None:
    ggd = await hub.enrol("ggd")
    shelter = await hub.enrol("shelter")
    sealed = seal_linking_key(
        LinkingKey(1, os.urandom(32)),
        ggd.bundle,
        root_key=hub.authority.key,
        network=hub.config.network,
    )
    response = await hub.post("/v1/directory/linking-keys", sealed.to_wire())
    assert (response.status, await response.json()) == (201, {"org": "ggd"})
    again = await hub.post("/v1/directory/linking-keys", sealed.to_wire())
    assert (again.status, await again.json()) == (200, {"org": "ggd"})
    other = seal_linking_key(
        LinkingKey(1, os.urandom(32)),
        ggd.bundle,
        root_key=hub.authority.key,
        network=hub.config.network,
    )
    await hub.problem(
        await hub.post("/v1/directory/linking-keys", other.to_wire()), 409, "conflict"
    )
    forged = seal_linking_key(
        LinkingKey(2, os.urandom(32)), ggd.bundle, root_key=ggd.key, network=hub.config.network
    )
    response = await hub.post("/v1/directory/linking-keys", forged.to_wire())
    await hub.problem(response, 422, "invalid-credential")
    mine = await hub.client.get("/v1/directory/linking-keys", headers=ggd.headers())
    assert await mine.json() == {"linking_keys": [sealed.to_wire()]}
    theirs = await hub.client.get("/v1/directory/linking-keys", headers=shelter.headers())
    assert await theirs.json() == {"linking_keys": []}
