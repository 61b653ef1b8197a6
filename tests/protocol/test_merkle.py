"""RFC 9162 Merkle tree: fixed hashes, the transparency-dev vectors, and exhaustive small trees."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from protocol.errors import ValidationError, VerificationError
from protocol.merkle import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "third_party"
MERKLE_VECTORS = VECTORS / "transparency-dev-merkle"
MAX_SIZE = 64

# The RFC 6962 / transparency-dev reference tree of 8 leaves.
RFC_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
# Roots of the first 1..8 leaves, from transparency-dev/merkle testonly/reference_test.go.
RFC_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# --- hashing ------------------------------------------------------------------------------


def test_hash_prefixes() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    left, right = b"L" * 32, b"R" * 32
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert leaf_hash(b"") != node_hash(b"", b"")


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert root_hash([]) == hashlib.sha256(b"").digest()


def test_single_leaf_root_is_the_leaf_hash() -> None:
    assert root_hash([leaf_hash(b"x")]) == leaf_hash(b"x")


@pytest.mark.parametrize("size", range(1, len(RFC_LEAVES) + 1))
def test_reference_roots(size: int) -> None:
    leaves = [leaf_hash(entry) for entry in RFC_LEAVES[:size]]
    assert root_hash(leaves).hex() == RFC_ROOTS[size - 1]


def test_root_splits_at_largest_power_of_two_below_size() -> None:
    leaves = _leaves(7)
    left = node_hash(node_hash(leaves[0], leaves[1]), node_hash(leaves[2], leaves[3]))
    right = node_hash(node_hash(leaves[4], leaves[5]), leaves[6])
    assert root_hash(leaves) == node_hash(left, right)


def _recursive_root(leaves: list[bytes]) -> bytes:
    """RFC 9162 2.1.1 to the letter: split at the largest power of two below the size."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(_recursive_root(leaves[:k]), _recursive_root(leaves[k:]))


def test_the_level_by_level_root_is_the_rfc_root_at_every_size() -> None:
    leaves = _leaves(300)
    for size in range(1, 301):
        assert root_hash(leaves[:size]) == _recursive_root(leaves[:size]), size
    for size in (511, 512, 513, 1000, 1024, 1025):
        more = _leaves(size)
        assert root_hash(more) == _recursive_root(more), size


@pytest.mark.parametrize("bad", [b"", b"x" * 31, b"x" * 33, "a" * 32, bytearray(32)])
def test_root_rejects_leaf_hashes_of_the_wrong_width(bad: Any) -> None:
    with pytest.raises(ValidationError, match="32 bytes"):
        root_hash([leaf_hash(b"a"), bad])


# --- proof generation: argument checks ----------------------------------------------------


@pytest.mark.parametrize("index", [-1, 4, 100])
def test_inclusion_proof_rejects_index_outside_tree(index: int) -> None:
    with pytest.raises(ValidationError, match="below the tree size"):
        inclusion_proof(index, _leaves(4))


def test_inclusion_proof_rejects_empty_tree_and_non_integer_index() -> None:
    with pytest.raises(ValidationError, match="below the tree size"):
        inclusion_proof(0, [])
    with pytest.raises(ValidationError, match="integer"):
        inclusion_proof(True, _leaves(4))


@pytest.mark.parametrize("old_size", [0, -1, 5])
def test_consistency_proof_rejects_old_size_outside_tree(old_size: int) -> None:
    with pytest.raises(ValidationError, match="old tree size"):
        consistency_proof(old_size, _leaves(4))


def test_proofs_reject_leaf_hashes_of_the_wrong_width() -> None:
    with pytest.raises(ValidationError, match="32 bytes"):
        inclusion_proof(0, [b"short"])
    with pytest.raises(ValidationError, match="32 bytes"):
        consistency_proof(1, [b"short", b"x" * 32])


# --- the RFC 9162 example tree (section 2.1.5) --------------------------------------------


def test_rfc9162_example_proofs() -> None:
    # Leaves d0..d6; RFC 9162 2.1.5 names the nodes a..l.
    d = _leaves(7)
    a, b, c, dd, e, f, j = d
    g, h, i = node_hash(a, b), node_hash(c, dd), node_hash(e, f)
    k, l_ = node_hash(g, h), node_hash(i, j)
    assert inclusion_proof(0, d) == [b, h, l_]
    assert inclusion_proof(3, d) == [c, g, l_]
    assert inclusion_proof(4, d) == [f, j, k]
    assert inclusion_proof(6, d) == [i, k]
    assert consistency_proof(3, d[:4]) == [c, dd, g]
    assert consistency_proof(4, d[:6]) == [i]
    assert consistency_proof(6, d) == [i, j, k]
    assert consistency_proof(3, d) == [c, dd, g, l_]
    assert consistency_proof(4, d) == [l_]


# --- exhaustive small trees ---------------------------------------------------------------


LEAVES = _leaves(MAX_SIZE)
ROOTS = [root_hash(LEAVES[:n]) for n in range(MAX_SIZE + 1)]


@pytest.mark.parametrize("size", range(1, MAX_SIZE + 1))
def test_every_inclusion_proof_verifies_and_every_change_fails(size: int) -> None:
    leaves, root = LEAVES[:size], ROOTS[size]
    for index in range(size):
        proof = inclusion_proof(index, leaves)
        verify_inclusion(leaves[index], index, size, proof, root)
        _inclusion_must_fail(leaves[index], index, size, proof, root)


def _inclusion_must_fail(
    leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes
) -> None:
    bits = range(256) if size <= 8 else (0, 7, 100, 255)
    for bit in bits:
        _expect_bad_inclusion(_flip(leaf, bit), index, size, proof, root)
        _expect_bad_inclusion(leaf, index, size, proof, _flip(root, bit))
        for pos in range(len(proof)):
            changed = [*proof[:pos], _flip(proof[pos], bit), *proof[pos + 1 :]]
            _expect_bad_inclusion(leaf, index, size, changed, root)
    for other in range(size + 2):
        if other != index:
            _expect_bad_inclusion(leaf, other, size, proof, root)
    # The root does not commit to the size: the path of leaf 0 in a 3-leaf tree also checks
    # out as a 4-leaf path to the same root. Only the bound index < size is enforced.
    _expect_bad_inclusion(leaf, index, index, proof, root)
    _expect_bad_inclusion(leaf, index, size, [*proof, proof[0] if proof else leaf], root)
    if proof:
        _expect_bad_inclusion(leaf, index, size, proof[:-1], root)
    if len(proof) > 1:
        _expect_bad_inclusion(leaf, index, size, proof[::-1], root)


def _expect_bad_inclusion(
    leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes
) -> None:
    with pytest.raises(VerificationError):
        verify_inclusion(leaf, index, size, proof, root)


@pytest.mark.parametrize("new_size", range(1, MAX_SIZE + 1))
def test_every_consistency_proof_verifies_and_every_change_fails(new_size: int) -> None:
    leaves = LEAVES[:new_size]
    for old_size in range(1, new_size + 1):
        proof = consistency_proof(old_size, leaves)
        verify_consistency(old_size, new_size, ROOTS[old_size], ROOTS[new_size], proof)
        _consistency_must_fail(old_size, new_size, proof)


def _consistency_must_fail(old_size: int, new_size: int, proof: list[bytes]) -> None:
    old_root, new_root = ROOTS[old_size], ROOTS[new_size]
    bits = range(256) if new_size <= 8 else (0, 7, 100, 255)
    for bit in bits:
        _expect_bad_consistency(old_size, new_size, _flip(old_root, bit), new_root, proof)
        _expect_bad_consistency(old_size, new_size, old_root, _flip(new_root, bit), proof)
        for pos in range(len(proof)):
            changed = [*proof[:pos], _flip(proof[pos], bit), *proof[pos + 1 :]]
            _expect_bad_consistency(old_size, new_size, old_root, new_root, changed)
    for other_old in (0, old_size - 1, old_size + 1):
        if other_old != old_size:
            _expect_bad_consistency(other_old, new_size, old_root, new_root, proof)
    # As with inclusion, the new size is bound only through the proof's shape; an old size
    # above it is always refused.
    _expect_bad_consistency(old_size, old_size - 1, old_root, new_root, proof)
    _expect_bad_consistency(old_size, new_size, old_root, new_root, [*proof, new_root])
    if proof:
        _expect_bad_consistency(old_size, new_size, old_root, new_root, proof[:-1])
    if old_size != new_size:
        _expect_bad_consistency(old_size, new_size, new_root, old_root, proof)


def _expect_bad_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> None:
    with pytest.raises(VerificationError):
        verify_consistency(old_size, new_size, old_root, new_root, proof)


def test_inclusion_proof_of_leaf_from_another_position_fails() -> None:
    leaves = LEAVES[:10]
    proof = inclusion_proof(3, leaves)
    with pytest.raises(VerificationError):
        verify_inclusion(leaves[4], 3, 10, proof, ROOTS[10])


# --- verification: argument checks -------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "size"), [(0, 0), (-1, 4), (4, 4), (5, 4), (True, 4), (0, 4.0), ("0", 4)]
)
def test_verify_inclusion_rejects_bad_index_or_size(index: Any, size: Any) -> None:
    with pytest.raises(VerificationError, match="below the tree size"):
        verify_inclusion(LEAVES[0], index, size, [], ROOTS[1])


@pytest.mark.parametrize("bad", [b"", b"x" * 31, b"x" * 33, "x" * 32, bytearray(32), None])
def test_verify_inclusion_rejects_hashes_of_the_wrong_width(bad: Any) -> None:
    proof = inclusion_proof(1, LEAVES[:2])
    for args in (
        (bad, 1, 2, proof, ROOTS[2]),
        (LEAVES[1], 1, 2, [bad], ROOTS[2]),
        (LEAVES[1], 1, 2, proof, bad),
    ):
        with pytest.raises(VerificationError, match="32 bytes"):
            verify_inclusion(*args)


@pytest.mark.parametrize(
    ("old_size", "new_size"), [(0, 0), (0, 3), (4, 3), (-1, 3), (True, 3), (1, 3.0)]
)
def test_verify_consistency_rejects_bad_sizes(old_size: Any, new_size: Any) -> None:
    with pytest.raises(VerificationError, match="old size"):
        verify_consistency(old_size, new_size, ROOTS[1], ROOTS[3], [])


@pytest.mark.parametrize("bad", [b"", b"x" * 31, b"x" * 33, "x" * 32, None])
def test_verify_consistency_rejects_hashes_of_the_wrong_width(bad: Any) -> None:
    proof = consistency_proof(3, LEAVES[:5])
    for args in (
        (3, 5, bad, ROOTS[5], proof),
        (3, 5, ROOTS[3], bad, proof),
        (3, 5, ROOTS[3], ROOTS[5], [*proof[:-1], bad]),
    ):
        with pytest.raises(VerificationError, match="32 bytes"):
            verify_consistency(*args)


def test_equal_sizes_need_equal_roots_and_an_empty_proof() -> None:
    verify_consistency(5, 5, ROOTS[5], ROOTS[5], [])
    with pytest.raises(VerificationError, match="different roots"):
        verify_consistency(5, 5, ROOTS[5], ROOTS[4], [])
    with pytest.raises(VerificationError, match="wrong length"):
        verify_consistency(5, 5, ROOTS[5], ROOTS[5], [ROOTS[5]])


# --- transparency-dev/merkle vectors ------------------------------------------------------


def _vector_files(kind: str) -> list[Path]:
    folder = MERKLE_VECTORS / kind
    if not folder.is_dir():
        pytest.fail(
            f"third-party Merkle vectors missing: expected {folder} "
            "(tests/vectors/third_party, see its README.md)"
        )
    files = sorted(folder.rglob("*.json"))
    if not files:
        pytest.fail(f"no Merkle vector files under {folder}")
    return files


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:  # a deliberately broken vector; the verifier must reject it
        return text.encode()


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _ids(files: list[Path]) -> list[str]:
    return [str(path.relative_to(MERKLE_VECTORS)) for path in files]


# Upstream accepts equal sizes with equal roots whatever the roots are, here the 12-byte
# string "don't care 2"; Schakel requires every hash to be 32 bytes, so rejects it.
STRICTER_THAN_UPSTREAM = {"consistency/additional/sizes-are-equal-one-and-proof-is-empty.json"}


def test_vector_folder_is_complete() -> None:
    inclusion, consistency = _vector_files("inclusion"), _vector_files("consistency")
    assert len(inclusion) + len(consistency) == 196
    assert sum(not _load(p)["wantErr"] for p in inclusion + consistency) == 12


@pytest.mark.parametrize("path", _vector_files("inclusion"), ids=_ids(_vector_files("inclusion")))
def test_transparency_dev_inclusion(path: Path) -> None:
    case = _load(path)
    args = (
        _b64(case["leafHash"]),
        case["leafIdx"],
        case["treeSize"],
        [_b64(p) for p in case["proof"] or []],
        _b64(case["root"]),
    )
    if case["wantErr"]:
        with pytest.raises(VerificationError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize(
    "path", _vector_files("consistency"), ids=_ids(_vector_files("consistency"))
)
def test_transparency_dev_consistency(path: Path) -> None:
    case = _load(path)
    args = (
        case["size1"],
        case["size2"],
        _b64(case["root1"]),
        _b64(case["root2"]),
        [_b64(p) for p in case["proof"] or []],
    )
    if case["wantErr"] or str(path.relative_to(MERKLE_VECTORS)) in STRICTER_THAN_UPSTREAM:
        with pytest.raises(VerificationError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_stricter_case_passes_with_full_width_roots() -> None:
    path = MERKLE_VECTORS / next(iter(STRICTER_THAN_UPSTREAM))
    case = _load(path)
    assert (case["size1"], case["size2"], case["proof"], case["wantErr"]) == (1, 1, [], False)
    verify_consistency(1, 1, ROOTS[7], ROOTS[7], [])


def test_happy_path_vectors_match_generated_proofs() -> None:
    """The upstream happy paths use the reference tree: our generator must produce them."""
    leaves = [leaf_hash(entry) for entry in RFC_LEAVES]
    for path in _vector_files("inclusion"):
        case = _load(path)
        if case["wantErr"] or path.parent.name == "single-entry":
            continue
        size, index = case["treeSize"], case["leafIdx"]
        assert _b64(case["leafHash"]) == leaves[index]
        assert inclusion_proof(index, leaves[:size]) == [_b64(p) for p in case["proof"] or []]
        assert root_hash(leaves[:size]) == _b64(case["root"])
    for path in _vector_files("consistency"):
        case = _load(path)
        if case["wantErr"] or path.parent.name == "additional":
            continue
        size1, size2 = case["size1"], case["size2"]
        expected = [_b64(p) for p in case["proof"] or []]
        assert consistency_proof(size1, leaves[:size2]) == expected
        assert root_hash(leaves[:size1]) == _b64(case["root1"])


# --- the proof lengths as docs/protocol.md defines them -----------------------------------


def _doc_inner(i: int, n: int) -> int:
    return (i ^ (n - 1)).bit_length()


def _doc_border(i: int, n: int) -> int:
    return (i >> _doc_inner(i, n)).bit_count()


def _doc_tz(m: int) -> int:
    return (m & -m).bit_length() - 1


def test_proof_lengths_follow_the_documented_formulas() -> None:
    """docs/protocol.md gives the lengths with inner, border and tz; the proofs agree."""
    leaves = [leaf_hash(bytes([k])) for k in range(33)]
    for n in range(1, len(leaves) + 1):
        for i in range(n):
            expected = _doc_inner(i, n) + _doc_border(i, n)
            assert len(inclusion_proof(i, leaves[:n])) == expected
        for m in range(1, n + 1):
            expected = 0
            if m < n:
                expected = _doc_inner(m - 1, n) + _doc_border(m - 1, n) - _doc_tz(m)
                expected += 0 if m & (m - 1) == 0 else 1
            assert len(consistency_proof(m, leaves[:n])) == expected
