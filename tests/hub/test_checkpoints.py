"""The hub's checkpoints, cosignatures and witness policy (hub/checkpoints.py), on both
databases: what it serves, what it keeps, what it refuses, and its always-on witnesses."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.checkpoints import WitnessSubmitter
from hub.http.common import SERVICES
from protocol.checkpoint import (
    Checkpoint,
    cosign,
    log_origin,
    log_verifier,
    open_checkpoint,
)
from protocol.note import NoteSignature
from protocol.types import OrgId
from protocol.witness import (
    WitnessCertificate,
    create_witness_request,
    issue_witness_certificate,
)
from protocol.witnesspolicy import WitnessPolicy, create_policy, tally_cosignatures
from witness.app import make_app as make_witness_app
from witness.config import WitnessConfig
from witness.core import Cosigner, Witness, trusted_log
from witness.store import WitnessStore

T0 = 1_760_000_000


@dataclasses.dataclass
class OrgWitness:
    key: Ed25519PrivateKey
    cert: WitnessCertificate

    def line(self, checkpoint: Checkpoint, at: int = T0) -> NoteSignature:
        return cosign(self.key, self.cert.name, checkpoint, timestamp=at)


def witness_of(hub: Any, org: str, serial: int, label: str | None = None) -> OrgWitness:
    key = Ed25519PrivateKey.generate()
    name = None if label is None else f"schakel.invalid/testnet/witness/{org}/{label}"
    request = create_witness_request(key, hub.authority.network, OrgId(org), name)
    cert = issue_witness_certificate(
        hub.authority.key, hub.authority.root, request, serial=serial, now=T0 - 60, days=30
    )
    return OrgWitness(key, cert)


def policy_of(hub: Any, *witnesses: OrgWitness, quorum: int, number: int = 1) -> WitnessPolicy:
    return create_policy(
        hub.authority.key,
        hub.authority.root,
        [w.cert for w in witnesses],
        quorum=quorum,
        number=number,
        issued=T0,
    )


async def put_policy(hub: Any, policy: WitnessPolicy) -> Any:
    return await hub.client.put("/v1/audit/witness-policy", json={"policy": policy.to_wire()})


async def signed_head(hub: Any, party: Any) -> int:
    """Make the log grow (a read) and have the hub sign a head; its size."""
    await hub.client.get("/v1/audit/head", headers=party.headers())
    head = await hub.heads.sign_now()
    assert head is not None
    return int(head.size)


async def checkpoint_at(hub: Any, party: Any, size: int | None = None) -> Any:
    path = "/v1/audit/checkpoint" if size is None else f"/v1/audit/checkpoints/{size}"
    response = await hub.client.get(path, headers=party.headers())
    assert response.status == 200, await response.text()
    text = (await response.json())["checkpoint"]
    if text is None:
        return None
    origin = log_origin(hub.authority.root)
    return open_checkpoint(text.encode(), [log_verifier(origin, hub.hub_cert)], origin=origin)


async def post_line(hub: Any, party: Any, size: int, line: NoteSignature) -> Any:
    body = {"size": size, "cosignature": line.line()[:-1]}
    return await hub.client.post("/v1/audit/cosignatures", json=body, headers=party.headers())


@pytest.fixture
async def parties(hub: Any) -> dict[str, Any]:
    return {org: await hub.register(hub.authority.enrol(org)) for org in ("politie", "ggd")}


async def test_checkpoints_are_served_signed_by_the_log_key(
    hub: Any, parties: dict[str, Any]
) -> None:
    police = parties["politie"]
    assert await checkpoint_at(hub, police) is None
    size = await signed_head(hub, police)
    newest = await checkpoint_at(hub, police)
    head = await hub.store.tree_head(hub.config.network, size)
    assert (newest.checkpoint.size, newest.checkpoint.root) == (size, head.root)
    assert newest.checkpoint.origin == log_origin(hub.authority.root)
    assert (await checkpoint_at(hub, police, size)).to_bytes() == newest.to_bytes()
    missing = await hub.client.get(f"/v1/audit/checkpoints/{size + 5}", headers=police.headers())
    await hub.problem(missing, 404, "not-found")
    anonymous = await hub.client.get("/v1/audit/checkpoint")
    await hub.problem(anonymous, 401, "unauthorized")


async def test_the_policy_is_uploaded_like_the_crl(hub: Any) -> None:
    one = witness_of(hub, "politie", 1001)
    assert (await (await hub.client.get("/v1/audit/witness-policy")).json()) == {"policy": None}
    first = policy_of(hub, one, quorum=1)
    assert (await (await put_policy(hub, first)).json()) == {"number": 1}
    served = await (await hub.client.get("/v1/audit/witness-policy")).json()
    assert WitnessPolicy.from_wire(served["policy"]) == first
    await hub.problem(await put_policy(hub, first), 409, "conflict")
    stranger = hub.foreign_authority()
    forged = create_policy(
        hub.authority.key, hub.authority.root, [one.cert], quorum=1, number=2, issued=T0
    )
    forged = dataclasses.replace(forged, sig=stranger.key.sign(forged.signed_bytes()))
    await hub.problem(await put_policy(hub, forged), 422, "invalid-credential")
    bad = await hub.client.put("/v1/audit/witness-policy", json={"policy": {"v": 1}})
    await hub.problem(bad, 400, "malformed")
    assert WitnessPolicy.from_wire(
        (await (await hub.client.get("/v1/audit/witness-policy")).json())["policy"]
    ) == first  # fmt: skip


async def test_a_cosignature_is_kept_once_and_served_with_the_checkpoint(
    hub: Any, parties: dict[str, Any]
) -> None:
    police, ggd = parties["politie"], parties["ggd"]
    mine, theirs = witness_of(hub, "politie", 1001), witness_of(hub, "ggd", 1002)
    policy = policy_of(hub, mine, theirs, quorum=2)
    size = await signed_head(hub, police)
    no_policy = await post_line(
        hub, police, size, mine.line((await checkpoint_at(hub, police)).checkpoint)
    )
    await hub.problem(no_policy, 422, "invalid-cosignature")
    assert (await put_policy(hub, policy)).status == 200
    signed = await checkpoint_at(hub, police, size)
    assert (await post_line(hub, police, size, mine.line(signed.checkpoint))).status == 201
    assert (await post_line(hub, police, size, mine.line(signed.checkpoint, T0 + 1))).status == 200
    served = await checkpoint_at(hub, police, size)
    tally = tally_cosignatures(
        served.checkpoint, served.note.signatures, policy, hub.authority.root, crl=None, now=T0
    )
    assert tally.organisations == ("politie",) and not tally.met
    assert (await post_line(hub, ggd, size, theirs.line(signed.checkpoint))).status == 201
    served = await checkpoint_at(hub, ggd, size)
    tally = tally_cosignatures(
        served.checkpoint, served.note.signatures, policy, hub.authority.root, crl=None, now=T0
    )
    assert tally.organisations == ("ggd", "politie") and tally.met


async def test_bad_cosignatures_are_refused(hub: Any, parties: dict[str, Any]) -> None:
    police = parties["politie"]
    mine, revoked = witness_of(hub, "politie", 1001), witness_of(hub, "politie", 1003, "b")
    theirs = witness_of(hub, "ggd", 1002)
    assert (await put_policy(hub, policy_of(hub, mine, theirs, revoked, quorum=2))).status == 200
    size = await signed_head(hub, police)
    checkpoint = (await checkpoint_at(hub, police, size)).checkpoint

    async def refused(
        line: NoteSignature, status: int = 422, slug: str = "invalid-cosignature"
    ) -> None:
        await hub.problem(await post_line(hub, police, size, line), status, slug)

    good = mine.line(checkpoint)
    forged = NoteSignature(
        good.name, good.key_id, good.signature[:-1] + bytes([good.signature[-1] ^ 1])
    )
    await refused(forged)
    fork = Checkpoint(checkpoint.origin, checkpoint.size, bytes(32))
    await refused(mine.line(fork))  # another root at that size
    await refused(mine.line(checkpoint, at=T0 + 3600))  # from the future
    uncertified = OrgWitness(Ed25519PrivateKey.generate(), mine.cert)
    await refused(uncertified.line(checkpoint))  # the listed name, another key
    stranger = witness_of(hub, "politie", 1009, "c")  # certified, but not in the policy
    await refused(stranger.line(checkpoint))
    await refused(theirs.line(checkpoint), 403, "forbidden-sender")
    assert (await hub.put_crl(hub.authority.crl([revoked.cert]))).status == 200
    await refused(revoked.line(checkpoint))
    missing = await post_line(hub, police, size + 100, good)
    await hub.problem(missing, 404, "not-found")
    for body in (
        {"size": size},
        {"size": 0, "cosignature": good.line()[:-1]},
        {"size": size, "cosignature": "x"},
    ):
        response = await hub.client.post(
            "/v1/audit/cosignatures", json=body, headers=police.headers()
        )
        await hub.problem(response, 400, "malformed")
    assert (await checkpoint_at(hub, police, size)).note.signatures == (
        (await checkpoint_at(hub, police, size)).log
    )
    assert (await post_line(hub, police, size, good)).status == 201


# -- the always-on witnesses --------------------------------------------------------------


@dataclasses.dataclass
class AlwaysOn:
    url: str
    witness: Witness
    store: WitnessStore
    cert: WitnessCertificate


@pytest.fixture
async def always_on(hub: Any, tmp_path: Path) -> AsyncIterator[Any]:
    """Start (and restart) an always-on witness of the coordinator's, in this process."""
    key = Ed25519PrivateKey.generate()
    request = create_witness_request(key, hub.authority.network, OrgId("coordinator"), None)
    cert = issue_witness_certificate(
        hub.authority.key, hub.authority.root, request, serial=1005, now=T0 - 60, days=30
    )
    url = f"sqlite+aiosqlite:///{tmp_path / 'witness.db'}"
    started: list[tuple[TestServer, WitnessStore]] = []

    async def start() -> AlwaysOn:
        store = await WitnessStore.open(url)
        log = trusted_log(hub.authority.root, [hub.hub_cert.der], crl=None, now=T0)
        witness = Witness(
            store, hub.authority.root, [log], Cosigner(key, cert.name), clock=hub.clock,
            evidence_dir=tmp_path / "evidence",
        )  # fmt: skip
        config = WitnessConfig(database_url=url, evidence_dir=tmp_path / "evidence")
        server = TestServer(make_witness_app(config, witness, store))
        await server.start_server()
        started.append((server, store))
        return AlwaysOn(str(server.make_url("")).rstrip("/"), witness, store, cert)

    async def stop() -> None:
        server, store = started.pop()
        await server.close()
        await store.close()

    yield start, stop
    while started:
        await stop()


def submitter(hub: Any, url: str) -> WitnessSubmitter:
    services = hub.client.server.app[SERVICES]
    config = dataclasses.replace(hub.config, witness_urls=(url,))
    return WitnessSubmitter(hub.store, hub.clock, config, services.trust_cache, hub.heads)


async def test_the_hub_submits_each_new_checkpoint_and_keeps_the_cosignature(
    hub: Any, parties: dict[str, Any], always_on: Any
) -> None:
    start, stop = always_on
    police = parties["politie"]
    witness = await start()
    assert (
        await put_policy(hub, policy_of(hub, OrgWitness(None, witness.cert), quorum=1))
    ).status == 200  # type: ignore[arg-type]
    sending = submitter(hub, witness.url)
    first = await signed_head(hub, police)
    assert await sending.tick() == 1
    assert await sending.tick() == 0  # cosigned already: nothing sent
    served = await checkpoint_at(hub, police, first)
    assert [line.name for line in served.note.signatures[1:]] == [witness.cert.name]
    held = await witness.store.held(served.checkpoint.origin)
    assert held is not None and held.size == first
    # The witness restarts; a new hub process does not know what it holds (old 0 -> 409).
    await sending.stop()
    await stop()
    witness = await start()
    sending = submitter(hub, witness.url)
    second = await signed_head(hub, police)
    assert await sending.tick() == 1  # 409 named the size held; then with the proof
    held = await witness.store.held(served.checkpoint.origin)
    assert held is not None and held.size == second > first
    older = await hub.store.tree_head(hub.config.network, first)
    assert await sending.submit(witness.url, older) == 0  # no rollback of what it holds
    held = await witness.store.held(served.checkpoint.origin)
    assert held is not None and held.size == second
    await sending.stop()


async def test_a_witness_that_answers_garbage_or_fails_keeps_nothing(
    hub: Any, parties: dict[str, Any]
) -> None:
    police = parties["politie"]
    theirs = witness_of(hub, "ggd", 1002)
    assert (await put_policy(hub, policy_of(hub, theirs, quorum=1))).status == 200
    size = await signed_head(hub, police)
    checkpoint = (await checkpoint_at(hub, police, size)).checkpoint
    bad = theirs.line(Checkpoint(checkpoint.origin, size, bytes(32)))
    answers = iter([(200, bad.line().encode()), (500, b"")])

    async def post(url: str, body: bytes) -> tuple[int, bytes]:
        return next(answers)

    config = dataclasses.replace(hub.config, witness_urls=("http://witness.invalid",))
    services = hub.client.server.app[SERVICES]
    sending = WitnessSubmitter(
        hub.store, hub.clock, config, services.trust_cache, hub.heads, post=post
    )
    head = await hub.store.tree_head(hub.config.network, size)
    assert await sending.submit("http://witness.invalid", head) == 0
    assert await sending.submit("http://witness.invalid", head) == 0
    served = await checkpoint_at(hub, police, size)
    assert served.note.signatures == served.log


async def test_two_cosignatures_of_one_organisation_count_once(
    hub: Any, parties: dict[str, Any]
) -> None:
    police = parties["politie"]
    first, second = witness_of(hub, "politie", 1001), witness_of(hub, "politie", 1004, "b")
    other = witness_of(hub, "ggd", 1002)
    policy = policy_of(hub, first, second, other, quorum=2)
    assert (await put_policy(hub, policy)).status == 200
    size = await signed_head(hub, police)
    checkpoint = (await checkpoint_at(hub, police, size)).checkpoint
    assert (await post_line(hub, police, size, first.line(checkpoint))).status == 201
    assert (await post_line(hub, police, size, second.line(checkpoint))).status == 201
    served = await checkpoint_at(hub, police, size)
    assert len(served.note.signatures) == 3  # the log's line and both of politie's
    tally = tally_cosignatures(
        served.checkpoint, served.note.signatures, policy, hub.authority.root, crl=None, now=T0
    )
    assert len(tally.counted) == 2 and tally.organisations == ("politie",) and not tally.met


async def test_a_witness_out_of_reach_does_not_hold_up_the_others(
    hub: Any, parties: dict[str, Any], always_on: Any
) -> None:
    start, _ = always_on
    witness = await start()
    policy = policy_of(hub, OrgWitness(None, witness.cert), quorum=1)  # type: ignore[arg-type]
    assert (await put_policy(hub, policy)).status == 200
    services = hub.client.server.app[SERVICES]
    config = dataclasses.replace(hub.config, witness_urls=("http://127.0.0.1:9", witness.url))
    sending = WitnessSubmitter(hub.store, hub.clock, config, services.trust_cache, hub.heads)
    try:
        await signed_head(hub, parties["politie"])
        assert await sending.tick() == 1  # the first refuses connections; the second cosigns
    finally:
        await sending.stop()
