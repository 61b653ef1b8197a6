"""Evidence of a split view (protocol.evidence) and the prefix root a proof binds (merkle)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import pytest
from witness_network import T0, WitnessNet, fork, leaves, seeded_key

from protocol import merkle
from protocol.auditlog import sign_tree_head
from protocol.encoding import b64e
from protocol.errors import EncodingError, ValidationError, VerificationError
from protocol.evidence import (
    FORK,
    INCONSISTENT,
    Evidence,
    Head,
    make_evidence,
    parse_evidence,
    verify_evidence,
)
from protocol.note import Note


@pytest.fixture(scope="module")
def net() -> WitnessNet:
    return WitnessNet()


def checkpoint_head(net: WitnessNet, tree: list[bytes]) -> Head:
    return Head(checkpoint=net.checkpoint_of(tree).to_bytes())


def evidence(net: WitnessNet, first: Head, second: Head, proof: Sequence[bytes] = ()) -> Evidence:
    return make_evidence(
        first, second, [net.hub_cert], net.root, proof=proof, observed=T0, observer="test"
    )


# --- committed_prefix_root --------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new"), [(3, 4), (3, 8), (5, 9), (6, 7), (7, 100), (13, 31)])
def test_a_valid_proof_binds_the_real_prefix_root(old: int, new: int) -> None:
    tree = leaves(new)
    proof = merkle.consistency_proof(old, tree)
    bound = merkle.committed_prefix_root(old, new, merkle.root_hash(tree), proof)
    assert bound == merkle.root_hash(tree[:old])


@pytest.mark.parametrize(("old", "new"), [(1, 2), (2, 5), (4, 9), (8, 9)])
def test_a_power_of_two_prefix_binds_nothing(old: int, new: int) -> None:
    tree = leaves(new)
    with pytest.raises(VerificationError, match="power-of-two"):
        merkle.committed_prefix_root(
            old, new, merkle.root_hash(tree), merkle.consistency_proof(old, tree)
        )


def test_a_proof_that_does_not_reproduce_the_new_root_binds_nothing() -> None:
    tree = leaves(9)
    proof = merkle.consistency_proof(5, tree)
    with pytest.raises(VerificationError, match="reproduce"):
        merkle.committed_prefix_root(5, 9, merkle.root_hash(leaves(9, "x")), proof)
    with pytest.raises(VerificationError, match="length"):
        merkle.committed_prefix_root(5, 9, merkle.root_hash(tree), proof[:-1])
    with pytest.raises(VerificationError):
        merkle.committed_prefix_root(9, 9, merkle.root_hash(tree), [])


# --- fork ------------------------------------------------------------------------------------


def test_fork_of_checkpoints(net: WitnessNet) -> None:
    made = evidence(net, checkpoint_head(net, leaves(6)), checkpoint_head(net, fork(6, 2)))
    assert made.kind == FORK
    again = parse_evidence(made.to_bytes())
    assert again == made
    assert made.to_bytes().endswith(b"\n") and b"\n" not in made.to_bytes()[:-1]
    proven = verify_evidence(again, net.root)
    assert proven.kind == FORK
    assert proven.first.size == proven.second.size == 6
    assert proven.first.root != proven.second.root
    assert proven.first.signer.fingerprint == net.hub_cert.fingerprint


def test_fork_of_tree_heads(net: WitnessNet) -> None:
    """The JSON tree heads clients keep today are evidence too."""
    heads = [
        sign_tree_head(net.hub_key, net.hub_cert, size=6, root=merkle.root_hash(tree), time=T0)
        for tree in (leaves(6), fork(6, 5))
    ]
    made = evidence(net, Head(tree_head=heads[0]), Head(tree_head=heads[1]))
    assert verify_evidence(parse_evidence(made.to_bytes()), net.root).kind == FORK


def test_same_head_twice_is_no_evidence(net: WitnessNet) -> None:
    head = checkpoint_head(net, leaves(6))
    with pytest.raises(VerificationError, match="one size and two roots"):
        verify_evidence(evidence(net, head, head), net.root)


def test_heads_not_signed_by_the_hub_are_no_evidence(net: WitnessNet) -> None:
    impostor = WitnessNet(hub_key=seeded_key("thief"))  # a hub key the evidence does not name
    forged = Head(
        checkpoint=Note(
            net.checkpoint_of(fork(6, 2)).note.text,
            impostor.checkpoint_of(fork(6, 2)).note.signatures,
        ).to_bytes()
    )
    with pytest.raises(VerificationError):
        verify_evidence(evidence(net, checkpoint_head(net, leaves(6)), forged), net.root)


def test_evidence_against_another_root_is_refused(net: WitnessNet) -> None:
    made = evidence(net, checkpoint_head(net, leaves(6)), checkpoint_head(net, fork(6, 2)))
    other = WitnessNet(root_key=seeded_key("other root"))
    with pytest.raises(VerificationError, match="another log"):
        verify_evidence(made, other.root)
    with pytest.raises(VerificationError):  # the right origin, but certificates it did not issue
        verify_evidence(dataclasses.replace(made, origin=made.origin), other.root)


def test_a_member_certificate_can_not_stand_in_for_the_hub(net: WitnessNet) -> None:
    member_key = seeded_key("member")
    member = net.certify(member_key, "police")
    made = make_evidence(
        checkpoint_head(net, leaves(6)), checkpoint_head(net, fork(6, 2)), [member], net.root,
        observed=T0, observer="test",
    )  # fmt: skip
    with pytest.raises(VerificationError, match="not the hub"):
        verify_evidence(made, net.root)


# --- inconsistent ----------------------------------------------------------------------------


def test_inconsistent_heads_with_the_hubs_proof(net: WitnessNet) -> None:
    """The hub signed 5 leaves, then 9 leaves of another history, and proved 5 -> 9 in it."""
    seen_first = leaves(5)
    other_history = fork(9, 3)
    proof = merkle.consistency_proof(5, other_history)
    made = evidence(
        net, checkpoint_head(net, seen_first), checkpoint_head(net, other_history), proof
    )
    assert made.kind == INCONSISTENT
    proven = verify_evidence(parse_evidence(made.to_bytes()), net.root)
    assert proven.kind == INCONSISTENT
    assert proven.prefix_root == merkle.root_hash(other_history[:5]) != proven.first.root


def test_consistent_heads_are_no_evidence(net: WitnessNet) -> None:
    tree = leaves(9)
    made = evidence(
        net, checkpoint_head(net, tree[:5]), checkpoint_head(net, tree),
        merkle.consistency_proof(5, tree),
    )  # fmt: skip
    with pytest.raises(VerificationError, match="consistent"):
        verify_evidence(made, net.root)


def test_a_proof_that_proves_nothing_is_no_evidence(net: WitnessNet) -> None:
    made = evidence(
        net, checkpoint_head(net, leaves(5)), checkpoint_head(net, fork(9, 3)),
        [bytes(32)] * len(merkle.consistency_proof(5, leaves(9))),
    )  # fmt: skip
    with pytest.raises(VerificationError, match="reproduce"):
        verify_evidence(made, net.root)
    smaller_second = evidence(
        net, checkpoint_head(net, fork(9, 3)), checkpoint_head(net, leaves(5))
    )
    with pytest.raises(VerificationError, match="smaller"):
        verify_evidence(smaller_second, net.root)


# --- the file --------------------------------------------------------------------------------


@pytest.fixture
def wire(net: WitnessNet) -> dict[str, object]:
    made = evidence(net, checkpoint_head(net, leaves(6)), checkpoint_head(net, fork(6, 2)))
    result: dict[str, object] = json.loads(made.to_bytes())
    return result


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("format", "other"),
        ("v", 2),
        ("v", True),
        ("kind", "split"),
        ("observer", "two words"),
        ("observed", -1),
        ("hub_certs", []),
        ("proof", [b64e(bytes(32))]),  # a fork carries no proof
        ("first", {"checkpoint": "not a note"}),
        ("first", {"tree_head": {}}),
        ("first", {"checkpoint": "x", "tree_head": {}}),
        ("network", "Bad"),
    ],
)
def test_malformed_files(wire: dict[str, object], key: str, value: object) -> None:
    wire[key] = value
    with pytest.raises((EncodingError, ValidationError)):
        parse_evidence(json.dumps(wire).encode())


def test_not_json_or_too_large() -> None:
    for data in (b"", b"{", b"[]", b'{"format": "schakel-evidence"}', b" " * (3 << 20)):
        with pytest.raises((EncodingError, ValidationError)):
            parse_evidence(data)
