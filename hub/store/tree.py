"""The writer's view of the audit tree: its size and right frontier, kept in memory.

The *frontier* of a tree of ``size`` leaves is, per level ``L``, the newest complete
perfect subtree at that level: node ``(L, (size >> L) - 1)`` wherever ``size >> L >= 1``.
Appending leaf ``size`` completes the nodes ``protocol.auditlog.nodes_to_store(size)``
names; each one above level 0 is the hash of the frontier node one level down (its left
sibling) and the node just completed (its right sibling). The frontier also holds every
node the root needs (``needed_for_root(size)`` is a subset), so a head is signed without
a read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from protocol import merkle
from protocol.auditlog import Node, nodes_to_store, root_from_nodes


def frontier_nodes(size: int) -> list[Node]:
    """The nodes of the frontier of a tree of ``size`` leaves (to read it from the database)."""
    return [(level, (size >> level) - 1) for level in range(size.bit_length())]


@dataclass(slots=True)
class Frontier:
    """Size and right frontier of the tree, as the entries stored so far left them."""

    size: int = 0
    nodes: dict[int, bytes] = field(default_factory=dict)  # level -> hash

    @classmethod
    def from_nodes(cls, size: int, stored: Mapping[Node, bytes]) -> Frontier:
        return cls(size, {level: stored[(level, idx)] for level, idx in frontier_nodes(size)})

    def append(self, leaf: bytes) -> list[tuple[Node, bytes]]:
        """The nodes appending ``leaf`` completes, with their hashes (not yet applied)."""
        done: list[tuple[Node, bytes]] = []
        value = leaf
        for level, idx in nodes_to_store(self.size):
            if level:
                value = merkle.node_hash(self.nodes[level - 1], value)
            done.append(((level, idx), value))
        return done

    def appended(self, done: list[tuple[Node, bytes]]) -> Frontier:
        """The frontier after the append whose nodes are ``done`` (a new value)."""
        nodes = dict(self.nodes)
        for (level, _idx), value in done:
            nodes[level] = value
        return Frontier(self.size + 1, nodes)

    def root(self) -> bytes:
        stored = {(level, idx): self.nodes[level] for level, idx in frontier_nodes(self.size)}
        return root_from_nodes(self.size, stored)
