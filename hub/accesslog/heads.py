"""Signed tree heads: the hub signs the size and root of its access log.

A :class:`HeadSigner` holds the hub's certified log-signing key. :meth:`HeadSigner.sign_in`
is a piece of a work item: inside the writer's transaction it reads the tree as stored,
and if it grew past the newest signed head, signs ``(size, root, now)`` with
``protocol.auditlog.sign_tree_head`` and stores the head. Every head the hub signs is
kept (``tree_heads``), so a client can ask for the head of any size it saw.

Heads are signed on request (``POST /v1/audit/head``) and by a background task
(:meth:`HeadSigner.run`) that calls :meth:`HeadSigner.tick` once a second; a tick signs
when ``tree_head_interval`` seconds of the injected clock passed since the last head it
signed or tried to, and the tree grew. Tests call :meth:`tick` with their own clock.
"""

from __future__ import annotations

import logging

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.config import Clock
from hub.periodic import Periodic
from hub.store import Store, Tx
from protocol.auditlog import TreeHead, sign_tree_head
from protocol.certificate import ROLE_HUB, Certificate, RootCertificate
from protocol.checkpoint import SignedCheckpoint, sign_checkpoint


class HeadSigner(Periodic):
    task_name = "hub-tree-heads"
    failure = "signing a tree head failed"

    """Signs tree heads with the hub's certified log-signing key; see the module docstring."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        key: Ed25519PrivateKey,
        certificate: Certificate,
        interval: int,
        logger: logging.Logger | None = None,
    ) -> None:
        if ROLE_HUB not in certificate.roles or key.public_key() != certificate.public_key:
            raise ValueError("the log-signing key must be the key of the hub certificate")
        self._store = store
        self._clock = clock
        self._key = key
        self._certificate = certificate
        self._interval = interval
        self._log = logger or logging.getLogger("hub.treeheads")
        self._last_tick: int | None = None

    @property
    def certificate(self) -> Certificate:
        return self._certificate

    def sign_in(self, tx: Tx, *, now: int) -> TreeHead | None:
        """Inside a work item: sign and store a head of the stored tree if it grew, else None."""
        tree = tx.audit_tree(fresh=True)
        newest = tx.latest_head_size()
        if tree.size == 0 or (newest is not None and newest >= tree.size):
            return None
        head = sign_tree_head(
            self._key, self._certificate, size=tree.size, root=tree.root(), time=now
        )
        tx.insert_head(head)
        return head

    def checkpoint(self, head: TreeHead, root: RootCertificate) -> SignedCheckpoint:
        """``head`` as a C2SP checkpoint signed with the log key (``docs/protocol.md``,
        "Witnesses"). Ed25519 is deterministic: the same head gives the same note."""
        return sign_checkpoint(
            self._key, self._certificate, root, size=head.size, root_hash=head.root
        )

    async def sign_now(self) -> TreeHead | None:
        """Sign a head of the current tree if it grew since the newest head (own work item)."""
        now = self._clock()

        def sign(tx: Tx) -> TreeHead | None:
            return self.sign_in(tx, now=now)

        return await self._store.write(sign)

    async def tick(self) -> TreeHead | None:
        """What the background task does each second: sign when the interval has passed."""
        now = self._clock()
        if self._last_tick is not None and now - self._last_tick < self._interval:
            return None
        self._last_tick = now
        return await self.sign_now()
