"""The verifiable access log: entries, signed tree heads, and proofs from stored subtrees.

CONTRACT STUB: names, signatures and docstrings are fixed; bodies to be written.

Entries are the leaves of an RFC 9162 Merkle tree (``protocol.merkle``): the leaf
of entry ``e`` is ``merkle.leaf_hash(e.canonical())``. The hub stores, besides
each leaf, the hash of every *perfect* subtree (a node at ``level`` L and
``index`` i covers leaves ``[i * 2**L, (i + 1) * 2**L)``), so that roots and
proofs for any tree size come from O(log n) stored nodes (``needed_*`` tells
which, ``*_from_nodes`` computes from them).

A signed tree head is ``{"v":1,"network","size","root","time","hub_cert","sig"}``;
the hub's certified log-signing key (role ``hub``) signs
``frame("schakel/tree-head/v1", canonical_json(all fields but "sig"))``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.certificate import Certificate
from protocol.types import Fingerprint, NetworkId

ENTRY_VERSION = 1
TREE_HEAD_LABEL = "schakel/tree-head/v1"

# NEN 7513 action codes.
ACTIONS: tuple[str, ...] = (
    "create", "read", "list", "acknowledge", "update", "delete", "merge", "split",
    "export", "login", "login-failed",
)  # fmt: skip
OUTCOMES: tuple[str, ...] = ("allowed", "denied")
OBJECT_TYPES: tuple[str, ...] = ("message", "inbox", "directory", "audit", "auth", "case")
# Purpose of use: a fixed vocabulary; free text may follow (purpose_text).
PURPOSES: tuple[str, ...] = (
    "signal-intake",          # receiving and assessing signals
    "case-coordination",      # the coordinator linking signals and following a case
    "referral",               # referring a person to care or support
    "care-delivery",          # providing the care or shelter referred for
    "legal-support",          # legal aid to the person
    "audit",                  # a privacy officer checking the access log
    "data-subject-request",   # answering a person's request about their data
    "incident-investigation", # investigating a suspected breach or misuse
    "system-administration",  # operating the network (keys, directory)
)  # fmt: skip
MAX_USER_CHARS = 64
MAX_PURPOSE_TEXT_CHARS = 200
MAX_OBJECT_IDS = 200
MAX_PSEUDONYMS = 32


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One access, as NEN 7513 asks: who, in which role, did what, to what, why, when, from where.

    Wire form: a JSON object with exactly these keys (``null`` for absent strings, ``[]``
    for empty lists): ``v``, ``index``, ``time``, ``action``, ``outcome``, ``reason``,
    ``org``, ``user``, ``role``, ``purpose``, ``purpose_text``, ``object_type``,
    ``object_ids``, ``pseudonyms``, ``source``, ``request_id``.

    Validated on construction: codes from the vocabularies above; ``user`` printable ASCII
    without spaces (1..64); ``purpose_text`` 1..200 characters with no character of
    Unicode category C (control, format such as bidi marks, surrogates, private use,
    unassigned) and no line or paragraph separator; ``object_ids`` sorted unique
    (message ids, org ids or case references, at most 200); ``pseudonyms`` sorted unique
    (``protocol.pseudonym.parse_pseudonym``, at most 32); ``reason`` a slug; ``source``
    an IP address text; ``request_id`` 1..64 of ``[0-9a-f-]``.
    """

    index: int
    time: int
    action: str
    outcome: str
    reason: str | None
    org: str | None
    user: str | None
    role: str | None
    purpose: str | None
    purpose_text: str | None
    object_type: str
    object_ids: tuple[str, ...]
    pseudonyms: tuple[str, ...]
    source: str | None
    request_id: str | None
    v: int = ENTRY_VERSION

    def canonical(self) -> bytes: ...
    def leaf(self) -> bytes:
        """``merkle.leaf_hash(self.canonical())``."""
        ...

    def to_wire(self) -> dict[str, Any]: ...
    @classmethod
    def from_wire(cls, data: object) -> AuditEntry: ...


def check_user(value: object) -> str:
    """A user id as organisations send it (``Schakel-User``); ValidationError otherwise."""
    ...


def check_purpose_text(value: object) -> str:
    """Free purpose text (see AuditEntry); ValidationError naming the rule, never the value."""
    ...


@dataclass(frozen=True, slots=True)
class TreeHead:
    network: NetworkId
    size: int
    root: bytes  # 32 bytes
    time: int
    hub_cert: Fingerprint  # the certificate of the key that signed
    sig: bytes
    v: int = 1

    def signed_bytes(self) -> bytes: ...
    def to_wire(self) -> dict[str, Any]: ...
    @classmethod
    def from_wire(cls, data: object) -> TreeHead: ...


def sign_tree_head(
    key: Ed25519PrivateKey, hub_cert: Certificate, *, size: int, root: bytes, time: int
) -> TreeHead: ...
def verify_tree_head(head: TreeHead, hub_cert: Certificate) -> None:
    """VerificationError unless ``hub_cert`` (already verified against the root, role hub,
    same network, fingerprint == head.hub_cert) signed ``head``."""


def check_consistent(
    old: TreeHead, new: TreeHead, proof: Sequence[bytes]
) -> None:
    """VerificationError unless ``new`` extends ``old`` (same network; sizes; a valid
    consistency proof, or equal roots when the sizes are equal). Signatures are checked
    by the caller with verify_tree_head."""


# -- proofs from stored perfect subtrees ---------------------------------------------------

Node = tuple[int, int]  # (level, index)


def nodes_to_store(size_before: int) -> list[Node]:
    """The perfect subtrees that appending leaf number ``size_before`` completes, lowest
    first: always (0, size_before), then (1, i), (2, j)... while they close."""
    ...


def needed_for_root(size: int) -> list[Node]: ...
def needed_for_inclusion(index: int, size: int) -> list[Node]: ...
def needed_for_consistency(old_size: int, new_size: int) -> list[Node]: ...
def root_from_nodes(size: int, nodes: Mapping[Node, bytes]) -> bytes: ...
def inclusion_from_nodes(index: int, size: int, nodes: Mapping[Node, bytes]) -> list[bytes]: ...
def consistency_from_nodes(
    old_size: int, new_size: int, nodes: Mapping[Node, bytes]
) -> list[bytes]: ...
