"""Organisations as witnesses, end to end on a real hub (both databases): each client
cosigns the heads it checked, relies only on heads that meet the quorum, and a hub that
shows one organisation a forked log is caught by the others' cosignatures within one
witnessing round, with an evidence file that verifies offline."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestServer
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clients.cli.audit import audit
from clients.errors import ClientError, HubProblem, SplitView
from clients.hub_client import HubClient, Purpose
from clients.organisation import Organisation
from clients.privacy_officer import PrivacyOfficer
from clients.state import LocalState
from hub.accesslog.heads import HeadSigner
from hub.app import make_app
from hub.checkpoints import WitnessSubmitter
from hub.http.common import SERVICES
from keys.authority import Authority
from keys.hub import HubKeys
from keys.organisation import OrgKeys
from keys.witness import WitnessKeys
from protocol.auditlog import TreeHead, sign_tree_head
from protocol.certificate import load_root
from protocol.checkpoint import Checkpoint, cosign, log_origin, sign_checkpoint
from protocol.encoding import canonical_json
from protocol.evidence import parse_evidence, verify_evidence
from protocol.types import OrgId
from protocol.witness import create_witness_request
from schakel import demo as demo_network
from witness.app import make_app as make_witness_app
from witness.config import WitnessConfig
from witness.core import Cosigner, Witness, trusted_log
from witness.store import WitnessStore

if TYPE_CHECKING:
    from conftest import HubDatabase

ORGS = {"police": ("member", "privacy_officer"), "ggd": ("member",), "shelter": ("member",)}
ALWAYS_ON = OrgId("network-authority")  # runs the always-on witness; counts as one more


@dataclasses.dataclass
class Rig:
    demo: demo_network.DemoNetwork
    base_url: str
    heads: HeadSigner
    hub_keys: HubKeys
    now: int
    submitter: WitnessSubmitter
    always_on: WitnessStore

    def org(
        self, name: str, hub: HubClient | None = None, *, quorum_wait: float = 0,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> Organisation:  # fmt: skip
        """``name``'s client; by default it relies on a head only if it met the quorum when
        first counted (no waiting)."""
        keys = OrgKeys.open(self.demo.home(name) / "keys", self.demo.passphrase)
        client = hub or HubClient(
            self.base_url, network=self.demo.network, org=name, signing_key=keys.signing_key,
            user="tester", purpose=Purpose("case-coordination"),
        )  # fmt: skip
        state = LocalState(self.demo.home(name) / "state.sqlite")
        return Organisation(keys, state, client, quorum_wait=quorum_wait, sleep=sleep)

    async def new_head(self) -> TreeHead:
        """Make the log grow by one read, then have the hub sign a head."""
        async with self.org("ggd").hub as hub:
            await hub.audit_head()
        head = await self.heads.sign_now()
        assert head is not None
        return head

    def fork_of(self, head: TreeHead) -> TreeHead:
        """A head of the same size with another root, signed with the hub's key."""
        cert = self.hub_keys.certificate
        assert cert is not None
        other = bytes(b ^ 0xFF for b in head.root)
        return sign_tree_head(
            self.hub_keys.signing_key, cert, size=head.size, root=other, time=self.now
        )


class ForkingHub(HubClient):
    """A HubClient that receives what a forking hub shows this one organisation."""

    fork: TreeHead | None = None
    fork_checkpoints: bool = False
    hub_keys: HubKeys | None = None
    root_der: bytes = b""

    async def audit_head(self) -> TreeHead | None:
        return self.fork if self.fork is not None else await super().audit_head()

    async def audit_checkpoint(self, size: int | None = None) -> bytes | None:
        if not self.fork_checkpoints or self.fork is None:
            return await super().audit_checkpoint(size)
        assert self.hub_keys is not None and self.hub_keys.certificate is not None
        root = load_root(self.root_der, now=self.fork.time)
        signed = sign_checkpoint(
            self.hub_keys.signing_key, self.hub_keys.certificate, root,
            size=self.fork.size, root_hash=self.fork.root,
        )  # fmt: skip
        return signed.to_bytes()


@pytest.fixture
async def rig(tmp_path: Path, hub_database: HubDatabase) -> AsyncIterator[Rig]:
    """Three organisations, each with a certified witness key; a policy of quorum 2."""
    now = int(time.time())
    demo = demo_network.provision(tmp_path / "demo", now=now, orgs=ORGS)
    hub_keys = HubKeys.open(demo.hub_dir, demo.passphrase)
    assert hub_keys.certificate is not None
    authority = Authority.open(demo.authority_dir, demo.passphrase)
    witness_key = Ed25519PrivateKey.generate()
    request = create_witness_request(witness_key, demo.network, ALWAYS_ON)
    always_on_cert = authority.certify_witness(request, now=now, days=30)
    witness_store = await WitnessStore.open(f"sqlite+aiosqlite:///{tmp_path / 'witness.db'}")
    log = trusted_log(authority.root, [hub_keys.certificate.der], crl=None, now=now)
    always_on = Witness(
        witness_store, authority.root, [log], Cosigner(witness_key, always_on_cert.name),
        clock=lambda: int(time.time()), evidence_dir=tmp_path / "witness-evidence",
    )  # fmt: skip
    witness_server = TestServer(
        make_witness_app(WitnessConfig(), always_on, witness_store), host="127.0.0.1"
    )
    await witness_server.start_server()
    config = dataclasses.replace(
        demo_network.hub_config(demo, host="127.0.0.1", port=0),
        database_url=hub_database.url,
        witness_urls=(str(witness_server.make_url("")).rstrip("/"),),
    )
    app = make_app(
        config, token_key_pem=hub_keys.token_key_pem,
        hub_certificate_der=hub_keys.certificate.der, log_signing_key=hub_keys.signing_key,
        sign_heads=False, escalate=False,
    )  # fmt: skip
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        base_url = str(server.make_url("")).rstrip("/")
        await demo_network.bootstrap(demo, base_url, now=now)
        serials = [always_on_cert.serial]
        for org in ORGS:
            keys = OrgKeys.open(demo.home(org) / "keys", demo.passphrase)
            witness = WitnessKeys.create_beside(keys, now=now)
            cert = authority.certify_witness(witness.request, now=now, days=30)
            witness.import_witness_certificate(canonical_json(cert.to_wire()), now=now)
            serials.append(cert.serial)
        policy, _ = authority.witness_policy(serials, quorum=2, now=now)
        async with HubClient(base_url, network=demo.network) as anonymous:
            assert await anonymous.put_witness_policy(policy) == policy.number
        heads, submitter = app[SERVICES].heads, app[SERVICES].witnesses
        assert heads is not None and submitter is not None
        yield Rig(demo, base_url, heads, hub_keys, now, submitter, witness_store)
    finally:
        await server.close()
        await witness_server.close()
        await witness_store.close()


async def check(organisation: Organisation) -> TreeHead | None:
    try:
        async with organisation.hub:
            return await organisation.log.check()
    finally:
        organisation.state.close()


async def test_heads_are_relied_on_only_once_a_quorum_of_organisations_cosigned(
    rig: Rig,
) -> None:
    # The privacy officer's fresh head, without waiting: only police cosigned it.
    police = rig.org("police")
    try:
        async with police.hub:
            with pytest.raises(ClientError, match="no tree head meets the witness quorum yet"):
                await PrivacyOfficer(police).verify()
    finally:
        police.state.close()
    assert police.log.witnessed is not None and police.log.witnessed.cosigners == ("police",)
    # A new head: ggd alone is not enough, ggd and shelter are (two organisations).
    head = await rig.new_head()
    ggd = rig.org("ggd")
    assert await check(ggd) is None  # reported, not relied on
    assert ggd.log.witnessed is not None and not ggd.log.witnessed.met
    assert ggd.log.witnessed.cosigners == ("ggd",) and ggd.log.witnessed.cosigned
    assert "does NOT meet" in ggd.log.witnessed.text()
    shelter = rig.org("shelter")
    assert await check(shelter) == head
    assert shelter.log.witnessed is not None
    assert shelter.log.witnessed.cosigners == ("ggd", "shelter")
    with LocalState(rig.demo.home("ggd") / "state.sqlite") as state:
        assert state.unwitnessed_head == head and state.tree_head is None
    assert await check(rig.org("ggd")) == head  # now ggd relies on it too
    with LocalState(rig.demo.home("ggd") / "state.sqlite") as state:
        assert state.tree_head == head and state.unwitnessed_head is None
    # A fresh head waits briefly: meanwhile the hub submits it to the always-on witness.
    waits: list[float] = []

    async def wait(seconds: float) -> None:
        waits.append(seconds)
        await rig.submitter.tick()  # what the hub's background task does each second

    police = rig.org("police", quorum_wait=5, sleep=wait)
    try:
        async with police.hub:
            verified = await PrivacyOfficer(police).verify()
    finally:
        police.state.close()
    witnessed = police.log.witnessed
    assert witnessed is not None and witnessed.met and waits == [1.0]
    assert witnessed.cosigners == (ALWAYS_ON, "police") and witnessed.size == verified.head.size
    held = await rig.always_on.held(log_origin(police.keys.root))
    assert held is not None and held.size == verified.head.size


async def test_a_forked_head_shown_to_one_organisation_is_caught_by_the_others(
    rig: Rig,
) -> None:
    head = await rig.new_head()
    assert await check(rig.org("ggd")) is None
    assert await check(rig.org("shelter")) == head  # the others cosigned the real head
    keys = OrgKeys.open(rig.demo.home("police") / "keys", rig.demo.passphrase)
    forking = ForkingHub(
        rig.base_url, network=rig.demo.network, org="police", signing_key=keys.signing_key,
        user="tester", purpose=Purpose("case-coordination"),
    )  # fmt: skip
    forked = forking.fork = rig.fork_of(head)
    police = rig.org("police", forking)
    with pytest.raises(SplitView) as caught:
        await check(police)
    evidence = Path(caught.value.evidence)
    proven = verify_evidence(parse_evidence(evidence.read_bytes()), keys.root)
    assert proven.kind == "fork" and proven.first.size == proven.second.size == head.size
    assert {proven.first.root, proven.second.root} == {head.root, forked.root}
    with LocalState(rig.demo.home("police") / "state.sqlite") as state:
        assert state.tree_head is None  # the forked head was never relied on
        [alert] = state.alerts()
    assert alert["kind"] == "split-view" and alert["evidence"] == str(evidence)
    shown = CliRunner().invoke(
        audit,
        ["--home", str(rig.demo.home("police")), "--json", "evidence", "verify", str(evidence)],
    )
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["proves"] is True
    # A hub that keeps the fork up in its checkpoints too gets no quorum for it.
    forking.fork_checkpoints, forking.hub_keys, forking.root_der = True, rig.hub_keys, keys.root.der
    police = rig.org("police", forking)
    assert await check(police) is None  # nothing relied on
    assert police.log.witnessed is not None and police.log.witnessed.cosigners == ()
    # When the hub later shows police the others' branch, the fork it showed is caught.
    forking.fork = None
    with pytest.raises(SplitView, match="same size differ") as again:
        await check(rig.org("police", forking))
    assert verify_evidence(
        parse_evidence(Path(again.value.evidence).read_bytes()), keys.root
    ).kind == "fork"  # fmt: skip
    # ... and the honest hub refuses a listed witness's cosignature of the fork.
    witness = WitnessKeys.open_beside(keys)
    assert witness is not None
    fork = Checkpoint(log_origin(keys.root), head.size, forked.root)
    line = cosign(witness.signing_key, witness.name, fork, timestamp=rig.now)
    honest = rig.org("police")
    try:
        async with honest.hub as hub:
            with pytest.raises(HubProblem) as refused:
                await hub.post_cosignature(head.size, line)
            assert (refused.value.status, refused.value.slug) == (422, "invalid-cosignature")
    finally:
        honest.state.close()
