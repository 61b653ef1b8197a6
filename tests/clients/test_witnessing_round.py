"""One witnessing round (clients.witnessing) against a recording fake hub: the policy kept
(never a lower number, never one the root did not sign), the count, the bounded wait, and
a checkpoint signed by the hub's new key after a key change."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from witness_network import T0, WitnessNet, leaves, seeded_key

from clients.errors import AuditLogInconsistent
from clients.state import LocalState
from clients.witnessing import Witnessing
from protocol import merkle
from protocol.auditlog import TreeHead, sign_tree_head
from protocol.certificate import ROLE_HUB, Certificate, RevocationList
from protocol.checkpoint import sign_checkpoint
from protocol.note import NoteSignature
from protocol.types import OrgId


@dataclasses.dataclass
class FakeHub:
    """Serves what the test put here; records the cosignatures posted."""

    policy: dict[str, Any] | None = None
    notes: list[bytes] = dataclasses.field(default_factory=list)  # one per read, last repeats
    posted: list[tuple[int, NoteSignature]] = dataclasses.field(default_factory=list)

    async def witness_policy(self) -> dict[str, Any] | None:
        return self.policy

    async def audit_checkpoint(self, size: int | None = None) -> bytes | None:
        return self.notes.pop(0) if len(self.notes) > 1 else self.notes[0]

    async def post_cosignature(self, size: int, line: NoteSignature) -> bool:
        self.posted.append((size, line))
        return True


@pytest.fixture
def net() -> WitnessNet:
    return WitnessNet()


def rig(net: WitnessNet, hub: FakeHub, tmp_path: Path, **kw: Any) -> tuple[Witnessing, LocalState]:
    state = LocalState(tmp_path / "state.sqlite")

    async def no_crl(now: int) -> RevocationList:
        return net.crl({})

    witnessing = Witnessing(
        state, hub, root=lambda now: net.root, witness=lambda: None, crl=no_crl,
        clock=lambda: T0, evidence_dir=tmp_path / "evidence", observer="client/test", **kw,
    )  # fmt: skip
    return witnessing, state


def head_of(net: WitnessNet, size: int) -> TreeHead:
    return sign_tree_head(
        net.hub_key, net.hub_cert, size=size, root=merkle.root_hash(leaves(size)), time=T0
    )


async def test_the_policy_kept_only_grows_and_must_be_the_roots(
    net: WitnessNet, tmp_path: Path
) -> None:
    one, two = net.witness("police"), net.witness("ggd")
    hub = FakeHub(policy=net.policy([one, two], quorum=1, number=2).to_wire())
    witnessing, state = rig(net, hub, tmp_path)
    assert (await witnessing.policy(T0)).number == 2  # type: ignore[union-attr]
    hub.policy = net.policy([one], quorum=1, number=1).to_wire()  # a rollback: ignored
    assert (await witnessing.policy(T0)).number == 2  # type: ignore[union-attr]
    forged = net.policy([one], quorum=1, number=3)
    hub.policy = dataclasses.replace(forged, sig=seeded_key("x").sign(b"x")).to_wire()
    assert (await witnessing.policy(T0)).number == 2  # type: ignore[union-attr]
    hub.policy = {"v": 1}  # not a policy at all: ignored as well
    assert (await witnessing.policy(T0)).number == 2  # type: ignore[union-attr]
    state.close()


async def test_the_wait_for_the_quorum_is_bounded(net: WitnessNet, tmp_path: Path) -> None:
    one, two = net.witness("police"), net.witness("ggd")
    signed = net.checkpoint(5)
    alone = net.cosigned(signed, one.cosign(signed, at=T0)).to_bytes()
    both = net.cosigned(signed, one.cosign(signed, at=T0), two.cosign(signed, at=T0)).to_bytes()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    hub = FakeHub(net.policy([one, two], quorum=2).to_wire(), [alone, alone, both])
    witnessing, state = rig(net, hub, tmp_path, sleep=sleep, quorum_wait=5)
    found = await witnessing.round(head_of(net, 5), net.hub_cert)
    assert found.met and found.cosigners == ("ggd", "police") and slept == [1.0, 1.0]
    hub.notes = [alone]
    slept.clear()
    found = await witnessing.round(head_of(net, 5), net.hub_cert)
    assert not found.met and found.cosigners == ("police",) and slept == [1.0] * 5
    state.close()


async def test_a_checkpoint_signed_by_the_hubs_new_key_is_accepted(
    net: WitnessNet, tmp_path: Path
) -> None:
    one = net.witness("police")
    new_key = seeded_key("hub, after the key change")
    new_cert: Certificate = net.certify(new_key, OrgId("hub"), {ROLE_HUB})
    signed = sign_checkpoint(
        new_key, new_cert, net.root, size=5, root_hash=merkle.root_hash(leaves(5))
    )
    note = net.cosigned(signed, one.cosign(signed, at=T0)).to_bytes()
    hub = FakeHub(net.policy([one], quorum=1).to_wire(), [note])
    witnessing, state = rig(net, hub, tmp_path)
    asked: list[int] = []

    async def current() -> Certificate:
        asked.append(1)
        return new_cert

    found = await witnessing.round(head_of(net, 5), net.hub_cert, current)
    assert found.met and asked == [1]
    with pytest.raises(AuditLogInconsistent, match="checkpoint does not verify"):
        await witnessing.round(head_of(net, 5), net.hub_cert)  # without the new certificate
    state.close()
