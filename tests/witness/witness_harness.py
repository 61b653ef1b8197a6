"""A witness over a real database (SQLite and PostgreSQL), with an injected clock.

``rig`` gives a :class:`Rig`: the test network (``witness_network``), a fresh witness
database, the :class:`~witness.core.Witness` over it, the evidence directory, and helpers
that build add-checkpoint bodies. Every test that takes ``rig`` runs on both databases.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from fresh_databases import Databases
from witness_network import T0, WitnessNet
from witness_network import Witness as Cosigning

from protocol import merkle
from protocol.checkpoint import log_origin
from protocol.note import Note
from protocol.tlogwitness import AddCheckpoint
from witness.core import Cosigner, TrustedLog, Witness, trusted_log
from witness.store import WitnessStore


class Clock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@dataclass
class Rig:
    net: WitnessNet
    url: str
    store: WitnessStore
    witness: Witness
    log: TrustedLog
    me: Cosigning  # this witness's key and certificate
    clock: Clock
    evidence_dir: Path

    @property
    def cosigner(self) -> Cosigner:
        return Cosigner(self.me.key, self.me.cert.name)

    @property
    def origin(self) -> str:
        return log_origin(self.net.root)

    def body(self, tree: Sequence[bytes], old: int, proof: Sequence[bytes] | None = None) -> bytes:
        """An add-checkpoint body for the hub's checkpoint of ``tree`` from size ``old``."""
        if proof is None:
            proof = merkle.consistency_proof(old, list(tree)) if 0 < old < len(tree) else []
        note = self.net.checkpoint_of(list(tree)).to_bytes()
        return AddCheckpoint(old, tuple(proof), note).to_bytes()

    def note_body(self, note: Note, old: int, proof: Sequence[bytes] = ()) -> bytes:
        return AddCheckpoint(old, tuple(proof), note.to_bytes()).to_bytes()

    async def reopen(self) -> Witness:
        """A new store and witness over the same database: what a restart sees."""
        await self.store.close()
        self.store = await WitnessStore.open(self.url)
        self.witness = make_witness(self)
        return self.witness


def make_witness(rig: Rig) -> Witness:
    return Witness(
        rig.store, rig.net.root, [rig.log], rig.cosigner, clock=rig.clock,
        evidence_dir=rig.evidence_dir,
    )  # fmt: skip


@pytest.fixture
async def rig(databases: Databases, tmp_path: Path) -> AsyncIterator[Rig]:
    net = WitnessNet()
    url = await databases.new(empty=True)
    store = await WitnessStore.open(url)
    me = net.witness("coordinator", "always-on")
    log = trusted_log(net.root, [net.hub_cert.der], crl=None, now=T0)
    rig = Rig(net, url, store, None, log, me, Clock(), tmp_path / "evidence")  # type: ignore[arg-type]
    rig.witness = make_witness(rig)
    try:
        yield rig
    finally:
        await rig.store.close()
