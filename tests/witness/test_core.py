"""The add-checkpoint use-case over a real database (SQLite and PostgreSQL).

Each status of C2SP tlog-witness, the cosignature, keeping the checkpoint across a
restart, and the evidence of a fork or of a proven inconsistency.
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from witness_harness import Rig
from witness_network import DAY, T0, fork, leaves, seeded_key

from protocol import merkle
from protocol.checkpoint import open_checkpoint, parse_checkpoint
from protocol.evidence import FORK, INCONSISTENT, parse_evidence, verify_evidence
from protocol.note import Note, NoteSignature, open_note, parse_note
from protocol.witnesspolicy import check_quorum
from witness.core import trusted_log
from witness.errors import Conflict, Forbidden, Malformed, UnknownLog, Unprocessable

# The use-case's decisions are the same on both databases: the tests of statuses run on
# SQLite only; what the store must guarantee (kept, no rollback, compare-and-set, evidence
# kept) runs on both.
sqlite_only = pytest.mark.parametrize("database_kind", ["sqlite"])


async def cosigned_at(rig: Rig, size: int) -> None:
    """Bring the witness to hold the log at ``size`` (from nothing)."""
    await rig.witness.add_checkpoint(rig.body(leaves(size), 0))


async def test_first_checkpoint_is_cosigned_and_kept(rig: Rig) -> None:
    tree = leaves(5)
    line = await rig.witness.add_checkpoint(rig.body(tree, 0))
    signed = rig.net.checkpoint_of(tree)
    note = rig.net.cosigned(signed, line)
    assert open_note(note, [rig.me.cert.verifier()]).verified == (line,)
    held = await rig.store.held(rig.origin)
    assert held is not None and (held.size, held.root) == (5, merkle.root_hash(tree))
    kept = parse_note(held.note.encode())
    assert kept.signatures == (signed.log[0], line)  # the log's line and ours, nothing else
    policy = rig.net.policy([rig.me], quorum=1)
    tally = check_quorum(signed.checkpoint, [line], policy, rig.net.root, crl=None, now=T0)
    assert tally.organisations == ("coordinator",)


@sqlite_only
async def test_advance_with_a_proof_and_recosign_the_same_size(rig: Rig) -> None:
    tree = leaves(13)
    await rig.witness.add_checkpoint(rig.body(tree[:6], 0))
    line = await rig.witness.add_checkpoint(rig.body(tree, 6))
    assert line.signature[:8] == T0.to_bytes(8, "big")
    rig.clock.now += 60
    again = await rig.witness.add_checkpoint(rig.body(tree, 13))  # fresh timestamp, same head
    assert again.signature[:8] == (T0 + 60).to_bytes(8, "big")
    held = await rig.store.held(rig.origin)
    assert held is not None and held.size == 13 and held.updated == T0 + 60


# --- each status of the specification --------------------------------------------------------


@sqlite_only
@pytest.mark.parametrize("body", [b"", b"old 0\n", b"old x\n\n", b"old 0\n\nnot a note"])
async def test_malformed_is_400(rig: Rig, body: bytes) -> None:
    with pytest.raises(Malformed):
        await rig.witness.add_checkpoint(body)


@sqlite_only
async def test_unknown_origin_is_404(rig: Rig) -> None:
    from witness_network import WitnessNet

    other = WitnessNet(root_key=seeded_key("other root"))
    body = rig.note_body(other.checkpoint(3).note, 0)
    with pytest.raises(UnknownLog):
        await rig.witness.add_checkpoint(body)


@sqlite_only
async def test_not_signed_by_the_log_is_403(rig: Rig) -> None:
    signed = rig.net.checkpoint(4)
    thief = seeded_key("thief")
    from protocol.note import sign_note

    unsigned = Note(signed.note.text, (sign_note(signed.note.text, rig.origin, thief),))
    with pytest.raises(Forbidden):
        await rig.witness.add_checkpoint(rig.note_body(unsigned, 0))
    line = signed.log[0]
    broken = Note(signed.note.text, (NoteSignature(line.name, line.key_id, bytes(64)),))
    with pytest.raises(Forbidden):
        await rig.witness.add_checkpoint(rig.note_body(broken, 0))
    assert await rig.store.held(rig.origin) is None


@sqlite_only
async def test_an_expired_or_revoked_hub_key_is_403(rig: Rig) -> None:
    body = rig.body(leaves(4), 0)
    rig.clock.now = T0 + 400 * DAY  # the hub certificate ran out
    with pytest.raises(Forbidden):
        await rig.witness.add_checkpoint(body)
    from protocol.errors import RevokedError

    with pytest.raises(RevokedError):
        trusted_log(
            rig.net.root, [rig.net.hub_cert.der],
            crl=rig.net.crl({rig.net.hub_cert.serial: T0}), now=T0,
        )  # fmt: skip


@sqlite_only
async def test_old_size_above_the_checkpoint_is_400(rig: Rig) -> None:
    with pytest.raises(Malformed, match="larger"):
        await rig.witness.add_checkpoint(rig.body(leaves(4), 5, proof=[]))


@sqlite_only
async def test_old_size_not_held_is_409_with_the_size_held(rig: Rig) -> None:
    with pytest.raises(Conflict) as nothing:
        await rig.witness.add_checkpoint(rig.body(leaves(9), 3))
    assert nothing.value.size == 0
    await cosigned_at(rig, 5)
    with pytest.raises(Conflict) as stale:
        await rig.witness.add_checkpoint(rig.body(leaves(9), 0))
    assert stale.value.size == 5
    with pytest.raises(Conflict) as older:  # a client that holds an older size
        await rig.witness.add_checkpoint(rig.body(leaves(9), 3))
    assert older.value.size == 5


@sqlite_only
async def test_inconsistent_requests_are_422(rig: Rig) -> None:
    empty_with_root = rig.note_body(rig.net.checkpoint_of(leaves(0)).note, 0)
    assert parse_checkpoint(parse_note(empty_with_root.split(b"\n\n", 1)[1]).text).size == 0
    from protocol.checkpoint import sign_checkpoint

    bad_empty = sign_checkpoint(
        rig.net.hub_key, rig.net.hub_cert, rig.net.root, size=0, root_hash=bytes(32)
    )
    with pytest.raises(Unprocessable, match="empty tree"):
        await rig.witness.add_checkpoint(rig.note_body(bad_empty.note, 0))
    with pytest.raises(Unprocessable, match="from size 0"):
        await rig.witness.add_checkpoint(rig.body(leaves(4), 0, proof=[bytes(32)]))
    await cosigned_at(rig, 5)
    proof = merkle.consistency_proof(5, leaves(9))
    with pytest.raises(Unprocessable, match="does not verify"):
        await rig.witness.add_checkpoint(rig.body(leaves(9), 5, proof=proof[:-1]))
    with pytest.raises(Unprocessable, match="does not verify"):
        await rig.witness.add_checkpoint(rig.body(leaves(5), 5, proof=[bytes(32)]))
    assert rig.witness.counters.bad_proofs == 2  # garbage, but no evidence of anything
    assert not rig.evidence_dir.exists()
    held = await rig.store.held(rig.origin)
    assert held is not None and held.size == 5


# --- restart: no rollback --------------------------------------------------------------------


async def test_a_restarted_witness_keeps_its_checkpoint(rig: Rig) -> None:
    tree = leaves(20)
    await rig.witness.add_checkpoint(rig.body(tree[:7], 0))
    await rig.witness.add_checkpoint(rig.body(tree[:12], 7))
    witness = await rig.reopen()
    with pytest.raises(Conflict) as rollback:  # the hub tries to start it over
        await witness.add_checkpoint(rig.body(tree[:7], 0))
    assert rollback.value.size == 12
    await witness.add_checkpoint(rig.body(tree, 12))
    held = await rig.store.held(rig.origin)
    assert held is not None and held.size == 20


async def test_the_database_refuses_a_rollback_even_if_asked(rig: Rig) -> None:
    await cosigned_at(rig, 9)
    engine = create_async_engine(rig.url)
    try:
        for statement in (
            "UPDATE witness_checkpoints SET size = 3",
            "DELETE FROM witness_checkpoints",
        ):
            with pytest.raises(sa.exc.DBAPIError, match="never"):
                async with engine.begin() as conn:
                    await conn.execute(sa.text(statement))
    finally:
        await engine.dispose()
    held = await rig.store.held(rig.origin)
    assert held is not None and held.size == 9


async def test_compare_and_set_refuses_a_stale_read(rig: Rig) -> None:
    """Two processes on one database: the one that read an older state can not advance."""
    await cosigned_at(rig, 4)
    stale = await rig.store.held(rig.origin)
    assert stale is not None
    await rig.witness.add_checkpoint(rig.body(leaves(8), 4))
    assert not await rig.store.advance(
        rig.origin, stale, size=6, root=merkle.root_hash(leaves(6)), note="x", now=T0
    )
    assert not await rig.store.advance(
        rig.origin, None, size=6, root=merkle.root_hash(leaves(6)), note="x", now=T0
    )
    held = await rig.store.held(rig.origin)
    assert held is not None and held.size == 8


# --- evidence --------------------------------------------------------------------------------


async def test_a_fork_is_refused_and_kept_as_evidence(rig: Rig) -> None:
    await cosigned_at(rig, 6)
    forked = fork(6, 2)
    with pytest.raises(Unprocessable, match="another root"):
        await rig.witness.add_checkpoint(rig.body(forked, 6, proof=[]))
    files = list(rig.evidence_dir.iterdir())
    assert len(files) == 1 and files[0].stat().st_mode & 0o777 == 0o600
    evidence = parse_evidence(files[0].read_bytes())
    proven = verify_evidence(evidence, rig.net.root)
    assert proven.kind == FORK and proven.first.size == proven.second.size == 6
    assert {proven.first.root, proven.second.root} == {
        merkle.root_hash(leaves(6)), merkle.root_hash(forked)
    }  # fmt: skip
    assert await rig.store.evidence() == [files[0].read_text()]
    assert rig.witness.counters.split_views == {FORK: 1}
    # the same fork again is the same evidence, kept once; an old size that does not
    # match is answered 409 as the specification says, and still noticed
    with pytest.raises(Conflict):
        await rig.witness.add_checkpoint(rig.body(forked, 0, proof=[]))
    assert len(await rig.store.evidence()) == 1
    held = await rig.store.held(rig.origin)
    assert held is not None and held.root == merkle.root_hash(leaves(6))


async def test_a_proven_inconsistency_is_kept_as_evidence(rig: Rig) -> None:
    await cosigned_at(rig, 5)
    other = fork(9, 3)  # the hub shows this witness another history from leaf 3 on
    proof = merkle.consistency_proof(5, other)  # a real proof, within the other history
    with pytest.raises(Unprocessable):
        await rig.witness.add_checkpoint(rig.body(other, 5, proof=proof))
    [kept] = await rig.store.evidence()
    proven = verify_evidence(parse_evidence(kept.encode()), rig.net.root)
    assert proven.kind == INCONSISTENT
    assert proven.prefix_root == merkle.root_hash(other[:5])
    assert json.loads(kept)["observer"] == rig.cosigner.name


@sqlite_only
async def test_the_held_checkpoint_is_served_with_the_cosignature(rig: Rig) -> None:
    from witness.core import origin_hash

    await cosigned_at(rig, 3)
    note = await rig.witness.held_note(origin_hash(rig.origin))
    signed = open_checkpoint(note.encode(), rig.log.verifiers(T0), origin=rig.origin)
    assert signed.checkpoint.size == 3
    with pytest.raises(UnknownLog):
        await rig.witness.held_note("0" * 64)
