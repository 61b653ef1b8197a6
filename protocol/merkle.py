"""RFC 9162 Merkle tree hashing, proofs and their verification.

The audit log is a Merkle tree exactly as in RFC 9162 section 2.1
(Certificate Transparency v2), with SHA-256:

* ``leaf_hash(entry) = SHA-256(0x00 || entry)``
* ``node_hash(left, right) = SHA-256(0x01 || left || right)``
* the root of the empty tree is ``SHA-256("")``; the root of ``n > 1``
  leaves splits them at ``k``, the largest power of two below ``n``.

Proofs are lists of 32-byte hashes in the order of RFC 9162 2.1.3.1
(inclusion) and 2.1.4.1 (consistency). Generation is pure and linear in
the number of leaves; verification follows RFC 9162 2.1.3.2 and 2.1.4.2 to
the letter, after checking every size, index, length and hash width, and
raises :class:`~protocol.errors.VerificationError` on any failure.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from protocol.errors import ValidationError, VerificationError

HASH_BYTES = 32
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    """``SHA-256(0x00 || entry)``: the hash of one log entry."""
    return hashlib.sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an inner node."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle tree hash (RFC 9162 2.1.1) of a list of leaf hashes.

    Computed level by level: pairs of neighbours hashed, an odd last node carried up
    unchanged, which gives RFC 9162's tree (split at the largest power of two below the
    size) without a Python call per node (tests/protocol checks it against the recursive
    definition).
    """
    _check_leaves(leaf_hashes)
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    sha256, prefix = hashlib.sha256, _NODE_PREFIX
    while len(level) > 1:
        carried = level[-1] if len(level) & 1 else None
        pairs = zip(level[0::2], level[1::2], strict=False)  # the odd last one is left out
        level = [sha256(prefix + left + right).digest() for left, right in pairs]
        if carried is not None:
            level.append(carried)
    return level[0]


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """The audit path ``PATH(index, D[n])`` of RFC 9162 2.1.3.1, leaf to root."""
    _check_leaves(leaf_hashes)
    _check_int(index, "leaf index")
    if not 0 <= index < len(leaf_hashes):
        raise ValidationError("leaf index must be below the tree size")
    proof: list[bytes] = []
    _path(leaf_hashes, index, 0, len(leaf_hashes), proof)
    return proof


def consistency_proof(old_size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """``PROOF(old_size, D[n])`` of RFC 9162 2.1.4.1; empty when the sizes are equal."""
    _check_leaves(leaf_hashes)
    _check_int(old_size, "old tree size")
    if not 1 <= old_size <= len(leaf_hashes):
        raise ValidationError("old tree size must be between 1 and the tree size")
    proof: list[bytes] = []
    if old_size < len(leaf_hashes):
        _subproof(leaf_hashes, old_size, 0, len(leaf_hashes), True, proof)
    return proof


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf`` (a leaf hash) is at ``index`` in the tree ``(size, root)``.

    RFC 9162 2.1.3.2. Raises ``VerificationError`` on any failure.
    """
    _check_hashes("inclusion", leaf, root, *proof)
    if not _is_int(index) or not _is_int(size) or not 0 <= index < size:
        raise VerificationError("inclusion proof: leaf index must be below the tree size")
    if len(proof) != _inclusion_length(index, size):
        raise VerificationError("inclusion proof has the wrong length")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise VerificationError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or not hmac.compare_digest(r, root):
        raise VerificationError("inclusion proof does not match the root hash")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree ``(new_size, new_root)`` extends ``(old_size, old_root)``.

    RFC 9162 2.1.4.2. ``old_size`` must be at least 1 (every tree extends the
    empty tree; there is nothing to prove). Raises ``VerificationError``.
    """
    _check_hashes("consistency", old_root, new_root, *proof)
    if not _is_int(old_size) or not _is_int(new_size) or not 1 <= old_size <= new_size:
        raise VerificationError("consistency proof: need 1 <= old size <= new size")
    if len(proof) != _consistency_length(old_size, new_size):
        raise VerificationError("consistency proof has the wrong length")
    if old_size == new_size:
        if not hmac.compare_digest(old_root, new_root):
            raise VerificationError("trees of equal size have different roots")
        return
    fr, sr, sn = _consistency_roots(old_size, new_size, old_root, proof)
    if sn != 0 or not hmac.compare_digest(fr, old_root) or not hmac.compare_digest(sr, new_root):
        raise VerificationError("consistency proof does not match the root hashes")


def committed_prefix_root(
    old_size: int, new_size: int, new_root: bytes, proof: Sequence[bytes]
) -> bytes:
    """The root of the first ``old_size`` leaves that ``proof`` binds the tree
    ``(new_size, new_root)`` to.

    RFC 9162 2.1.4.2 recomputes both roots from the proof. When the recomputed new root is
    ``new_root``, the proof's hashes are, short of a SHA-256 collision, the real subtree
    hashes of that tree, so the recomputed old root is the real root of its first
    ``old_size`` leaves: a signed checkpoint of size ``old_size`` with another root cannot
    be consistent with it. When ``old_size`` is a power of two the proof leaves that
    subtree out (the verifier supplies it), so nothing is bound: ``VerificationError``,
    as for a proof that does not reproduce ``new_root``.
    """
    _check_hashes("consistency", new_root, *proof)
    if not _is_int(old_size) or not _is_int(new_size) or not 1 <= old_size < new_size:
        raise VerificationError("consistency proof: need 1 <= old size < new size")
    if old_size & (old_size - 1) == 0:
        raise VerificationError("a proof from a power-of-two size binds no old root")
    if len(proof) != _consistency_length(old_size, new_size):
        raise VerificationError("consistency proof has the wrong length")
    fr, sr, sn = _consistency_roots(old_size, new_size, bytes(HASH_BYTES), proof)
    if sn != 0 or not hmac.compare_digest(sr, new_root):
        raise VerificationError("consistency proof does not reproduce the new root")
    return fr


def _consistency_roots(
    old_size: int, new_size: int, old_root: bytes, proof: Sequence[bytes]
) -> tuple[bytes, bytes, int]:
    """Steps 2-6 of RFC 9162 2.1.4.2: the two recomputed roots and the final ``sn``."""
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr, sr, sn


def _inclusion_length(index: int, size: int) -> int:
    """Hashes in the audit path of leaf ``index`` in a tree of ``size`` leaves."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def _consistency_length(old_size: int, new_size: int) -> int:
    """Hashes in a consistency proof from ``old_size`` to ``new_size`` leaves."""
    if old_size == new_size:
        return 0
    shift = (old_size & -old_size).bit_length() - 1
    length = _inclusion_length(old_size - 1, new_size) - shift
    return length if old_size == 1 << shift else length + 1


def _subtree(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    """MTH of ``leaves[lo:hi]`` (non-empty), without copying the slice."""
    if hi - lo == 1:
        return leaves[lo]
    mid = lo + _split(hi - lo)
    return node_hash(_subtree(leaves, lo, mid), _subtree(leaves, mid, hi))


def _path(leaves: Sequence[bytes], m: int, lo: int, hi: int, out: list[bytes]) -> None:
    """Append ``PATH(m, leaves[lo:hi])`` to ``out``; ``m`` is relative to ``lo``."""
    if hi - lo == 1:
        return
    k = _split(hi - lo)
    if m < k:
        _path(leaves, m, lo, lo + k, out)
        out.append(_subtree(leaves, lo + k, hi))
    else:
        _path(leaves, m - k, lo + k, hi, out)
        out.append(_subtree(leaves, lo, lo + k))


def _subproof(
    leaves: Sequence[bytes], m: int, lo: int, hi: int, complete: bool, out: list[bytes]
) -> None:
    """Append ``SUBPROOF(m, leaves[lo:hi], complete)`` (RFC 9162 2.1.4.1) to ``out``."""
    n = hi - lo
    if m == n:
        if not complete:
            out.append(_subtree(leaves, lo, hi))
        return
    k = _split(n)
    if m <= k:
        _subproof(leaves, m, lo, lo + k, complete, out)
        out.append(_subtree(leaves, lo + k, hi))
    else:
        _subproof(leaves, m - k, lo + k, hi, False, out)
        out.append(_subtree(leaves, lo, lo + k))


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(value: object, name: str) -> None:
    if not _is_int(value):
        raise ValidationError(f"{name} must be an integer")


def _check_leaves(leaf_hashes: Sequence[bytes]) -> None:
    for item in leaf_hashes:
        if not isinstance(item, bytes) or len(item) != HASH_BYTES:
            raise ValidationError(f"every leaf hash must be {HASH_BYTES} bytes")


def _check_hashes(kind: str, *hashes: object) -> None:
    for item in hashes:
        if not isinstance(item, bytes) or len(item) != HASH_BYTES:
            raise VerificationError(f"{kind} proof: every hash must be {HASH_BYTES} bytes")
