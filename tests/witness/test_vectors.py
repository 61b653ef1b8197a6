"""The add-checkpoint sequence of tests/vectors/witness.json, replayed against a witness."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from witness_network import seeded_key

from protocol.certificate import load_root
from protocol.encoding import b64d
from witness.core import Cosigner, Witness, trusted_log
from witness.errors import WitnessError
from witness.store import WitnessStore

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "witness.json"
T0 = 1_767_225_600


@pytest.mark.parametrize("database_kind", ["sqlite"])
async def test_add_checkpoint_sequence(databases, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    root = load_root(b64d(vectors["root"]["certificate"]), now=T0)
    log = trusted_log(root, [b64d(vectors["log"]["hub_certificate"])], crl=None, now=T0)
    store = await WitnessStore.open(await databases.new(empty=True))
    witness = Witness(
        store, root, [log], Cosigner(seeded_key("any witness"), "w.example/vectors"),
        clock=lambda: T0, evidence_dir=tmp_path / "evidence",
    )  # fmt: skip
    try:
        for step in vectors["add_checkpoint"]:
            try:
                await witness.add_checkpoint(step["body"].encode())
                status = 200
            except WitnessError as exc:
                status = exc.status
            assert status == step["status"], step["description"]
            held = await store.held(log.origin)
            assert (None if held is None else held.size) == step["held_after"], step["description"]
        assert len(await store.evidence()) == 1  # the fork of the last step
    finally:
        await store.close()
