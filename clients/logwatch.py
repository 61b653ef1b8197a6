"""The hub's access log, watched at every contact: each signed tree head extends the last.

:class:`LogWatch` keeps the last signed tree head this client verified (in local
state) and checks each new one: signed by the hub's certified key (role ``hub``,
chained to the pinned root, not revoked), and consistent with the kept head by the
hub's consistency proof. A hub that rewrites, truncates or forks its log, or stops
serving heads after one was seen, raises :class:`~clients.errors.AuditLogInconsistent`;
when the two heads prove it (one size, two roots; or the hub's own proof binding the kept
size to another root), the evidence is kept and :class:`~clients.errors.SplitView` raised
(:mod:`clients.witnessing`). With witnessing, a new head is relied on only once it meets
the witness policy's quorum.
Nothing here trusts the hub: every proof is recomputed locally. Entries are checked
against a head by :mod:`clients.logproofs`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from clients.errors import AuditLogInconsistent, HubProblem, VerificationFailed
from clients.state import LocalState
from clients.witnessing import Witnessed, Witnessing
from protocol import merkle
from protocol.auditlog import TreeHead, check_consistent, verify_tree_head
from protocol.certificate import (
    ROLE_HUB,
    Certificate,
    RevocationList,
    load_root,
    verify_certificate,
)
from protocol.encoding import b64e
from protocol.errors import ProtocolError, RevokedError
from protocol.evidence import Head

CHECK_SECONDS = 60  # an Organisation checks the head at most this often


class LogHub(Protocol):
    """What LogWatch needs of a HubClient."""

    async def audit_head(self) -> TreeHead | None: ...
    async def audit_consistency(self, old_size: int, new_size: int) -> list[bytes]: ...
    async def hub_info(self) -> Any: ...


def head_text(head: TreeHead | None) -> tuple[int, str] | None:
    return None if head is None else (head.size, b64e(head.root))


def inconsistent(
    reason: str, kept: TreeHead | None, served: TreeHead | None
) -> AuditLogInconsistent:
    return AuditLogInconsistent(reason, kept=head_text(kept), served=head_text(served))


class LogWatch:
    """The client's memory of the hub's log: verify each new tree head against the kept one."""

    def __init__(
        self,
        state: LocalState,
        hub: LogHub,
        *,
        root_der: bytes,
        network: str,
        crl: Callable[[int], Awaitable[RevocationList]],
        clock: Callable[[], float] = time.time,
        interval: float = CHECK_SECONDS,
        witnessing: Witnessing | None = None,
    ) -> None:
        self.state = state
        self.hub = hub
        self._root_der = root_der
        self._network = network
        self._crl = crl
        self._clock = clock
        self._interval = interval
        self._checked_at: float | None = None
        self._witnessing = witnessing
        self.witnessed: Witnessed | None = None  # the last round's finding

    @property
    def _root_fp(self) -> str:
        return load_root(self._root_der, now=int(self._clock())).fingerprint

    async def check_if_due(self) -> TreeHead | None:
        """:meth:`check`, unless it ran less than ``interval`` seconds ago."""
        now = self._clock()
        if self._checked_at is not None and now - self._checked_at < self._interval:
            return self.state.tree_head
        return await self.check()

    async def check(self, served: TreeHead | None = None) -> TreeHead | None:
        """Fetch (or take) the newest head, verify it, check it extends the kept one, keep it.

        With witnessing (:mod:`clients.witnessing`), a head is kept and returned only if it
        meets the witness policy's quorum; otherwise the last kept head is returned (None
        before the first), ``witnessed`` says who cosigned the new one, and the new one is
        remembered as unwitnessed: every later head must extend it too, so a hub that
        showed this client a branch of its own and later the others' is caught with
        evidence.
        """
        kept = self.state.tree_head
        if served is None:
            served = await self.hub.audit_head()
        if served is None:
            if kept is not None:
                raise inconsistent("the hub serves no signed tree head", kept, None)
            self._checked_at = self._clock()
            return None
        cert = await self._verify_signature(served, kept)
        await self._check_extends(kept, served)
        if self._witnessing is not None:
            pending = self.state.unwitnessed_head
            if pending is not None and pending != served:
                await self._check_extends(pending, served)  # what it showed us before, too
            self.witnessed = await self._witnessing.round(served, cert, self.current_certificate)
            if not self.witnessed.met:  # reported, not relied on: keep the last that met it
                self.state.keep_unwitnessed_head(served)
                self._checked_at = self._clock()
                return kept
            self.state.keep_unwitnessed_head(None)
        self.state.keep_tree_head(served)
        self._checked_at = self._clock()
        return served

    async def _verify_signature(self, head: TreeHead, kept: TreeHead | None) -> Certificate:
        if head.network != self._network:
            raise inconsistent("the tree head is for another network", kept, head)
        cert = await self.hub_certificate(head.hub_cert)
        try:
            verify_tree_head(head, cert)
        except ProtocolError as exc:
            raise inconsistent(
                "the tree head is not signed by the certified hub key", kept, head
            ) from exc
        return cert

    async def _check_extends(self, kept: TreeHead | None, head: TreeHead) -> None:
        if kept is None:
            return
        if head.size < kept.size:
            raise AuditLogInconsistent(
                "the hub's log is shorter than before (truncated)",
                kept=head_text(kept),
                served=head_text(head),
                index=head.size,
            )
        if kept.size == 0:
            if kept.root != merkle.EMPTY_ROOT:
                raise inconsistent("the kept head of the empty log has a wrong root", kept, head)
            return
        if head.size == kept.size:
            proof: list[bytes] = []
            if head.root != kept.root:
                reason = "two signed heads of the same size differ (fork)"
                await self._split_view(kept, head, [], reason)
                raise inconsistent(reason, kept, head)
        else:
            try:
                proof = await self.hub.audit_consistency(kept.size, head.size)
            except (HubProblem, VerificationFailed) as exc:
                if isinstance(exc, HubProblem) and exc.status >= 500:
                    raise
                raise inconsistent(
                    f"the hub gives no consistency proof ({str(exc)[:120]})", kept, head
                ) from exc
        try:
            check_consistent(kept, head, proof)
        except ProtocolError as exc:
            reason = "the new head does not extend the kept one (history rewritten)"
            await self._split_view(kept, head, proof, reason)
            raise inconsistent(reason, kept, head) from exc

    async def _split_view(
        self, kept: TreeHead, head: TreeHead, proof: list[bytes], reason: str
    ) -> None:
        """With witnessing: keep evidence and raise SplitView when the two heads prove a
        split view (one size, two roots; or a proof binding the kept size to another
        root). A proof that merely fails proves nothing: then this returns."""
        if self._witnessing is None:
            return
        now = int(self._clock())
        try:
            certs = [
                self.kept_hub_certificate(kept.hub_cert, at=kept.time),
                await self.hub_certificate(head.hub_cert),
            ]
        except VerificationFailed:
            return  # a head whose certificate no longer verifies proves nothing
        self._witnessing.keep_split_view(
            Head(tree_head=kept), Head(tree_head=head), certs, reason=f"SPLIT VIEW: {reason}",
            served=head, root=load_root(self._root_der, now=now), now=now, proof=proof,
            kept=kept,
        )  # fmt: skip

    async def hub_certificate(self, fingerprint: str) -> Certificate:
        """The hub certificate of that fingerprint, kept or fetched, verified now (with CRL)."""
        now = int(self._clock())
        der = self.state.hub_certificate(fingerprint, root=self._root_fp)
        if der is None:
            info = await self.hub.hub_info()
            der = info.certificate
            if der is None:
                raise VerificationFailed("hub certificate", reason="the hub serves none")
        cert = verify_hub_certificate(
            der, self._root_der, network=self._network, now=now, crl=await self._crl(now)
        )
        if cert.fingerprint != fingerprint:
            raise VerificationFailed(
                "hub certificate", reason="the tree head names another certificate"
            )
        self.state.remember_hub_certificate(cert.fingerprint, root=self._root_fp, der=cert.der)
        return cert

    async def current_certificate(self) -> Certificate:
        """The certificate the hub serves now (``GET /v1/hub``), verified now (with CRL)."""
        now = int(self._clock())
        der = (await self.hub.hub_info()).certificate
        if der is None:
            raise VerificationFailed("hub certificate", reason="the hub serves none")
        cert = verify_hub_certificate(
            der, self._root_der, network=self._network, now=now, crl=await self._crl(now)
        )
        self.state.remember_hub_certificate(cert.fingerprint, root=self._root_fp, der=cert.der)
        return cert

    def kept_hub_certificate(self, fingerprint: str, *, at: int) -> Certificate:
        """Offline: a hub certificate kept in state, verified against the root at time ``at``."""
        der = self.state.hub_certificate(
            fingerprint, root=load_root(self._root_der, now=at).fingerprint
        )
        if der is None:
            raise VerificationFailed(
                "hub certificate",
                reason="this client has not seen the certificate that signed the head; "
                "run 'schakel audit verify' online once",
            )
        return verify_hub_certificate(der, self._root_der, network=self._network, now=at, crl=None)


def verify_hub_certificate(
    der: bytes, root_der: bytes, *, network: str, now: int, crl: RevocationList | None
) -> Certificate:
    """A hub's certificate: chains to the root, valid at ``now``, not revoked, role hub."""
    try:
        cert = verify_certificate(der, load_root(root_der, now=now), now=now, crl=crl)
    except RevokedError as exc:
        raise VerificationFailed("hub certificate", reason="revoked") from exc
    except ProtocolError as exc:
        raise VerificationFailed("hub certificate", reason=str(exc)[:120]) from exc
    if ROLE_HUB not in cert.roles or cert.network != network:
        raise VerificationFailed("hub certificate", reason="not a hub certificate of this network")
    return cert
