"""One witnessing round: an organisation's client cosigns the heads it checked, and relies
only on heads that a quorum of organisations cosigned (``docs/protocol.md``,
"Organisations as witnesses, and the quorum").

:meth:`Witnessing.round` runs after :class:`~clients.logwatch.LogWatch` checked a new
head (signature, consistency with the kept head). It keeps the newest witness policy the
hub serves once it verified it against the pinned root (never a lower number); cosigns
the head's checkpoint with this organisation's certified witness key, when it has one the
policy lists, and posts the line; then reads the checkpoint the hub serves for that size,
with the cosignatures collected, and counts them (``tally_cosignatures``), waiting for
the quorum at most ``quorum_wait`` seconds. A checkpoint of that size with another root
than the head's is a split view: both are kept as an evidence file
(:mod:`protocol.evidence`), an alert is raised for the privacy officer, and
:class:`~clients.errors.SplitView` is raised. Nothing the hub serves is trusted: the
policy, the log signature and every cosignature are verified here.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from clients.errors import AuditLogInconsistent, HubProblem, SplitView
from clients.state import LocalState
from keys.keyfile import atomic_write
from keys.witness import WitnessKeys
from protocol.auditlog import TreeHead
from protocol.certificate import Certificate, RevocationList, RootCertificate
from protocol.checkpoint import (
    Checkpoint,
    SignedCheckpoint,
    cosign,
    log_origin,
    log_verifier,
    open_checkpoint,
)
from protocol.encoding import b64e
from protocol.errors import ProtocolError
from protocol.evidence import Head, make_evidence, verify_evidence
from protocol.note import NoteSignature
from protocol.types import OrgId
from protocol.witnesspolicy import WitnessPolicy, tally_cosignatures, verify_policy

QUORUM_WAIT = 10.0  # seconds a fresh head may wait for its quorum
POLL_SECONDS = 1.0


class WitnessHub(Protocol):
    """What a witnessing round needs of a HubClient."""

    async def audit_checkpoint(self, size: int | None = None) -> bytes | None: ...
    async def post_cosignature(self, size: int, line: NoteSignature) -> bool: ...
    async def witness_policy(self) -> dict[str, Any] | None: ...


@dataclass(frozen=True, slots=True)
class Witnessed:
    """What a round found about the head of ``size``: who cosigned it, against which quorum.

    ``policy`` is the number of the policy applied (None: the hub holds none, and the head
    is relied on as before witnesses); ``cosigned`` whether this client cosigned it.
    """

    size: int
    policy: int | None
    quorum: int
    cosigners: tuple[OrgId, ...]
    cosigned: bool

    @property
    def met(self) -> bool:
        return self.policy is None or len(self.cosigners) >= self.quorum

    def text(self) -> str:
        if self.policy is None:
            return f"head {self.size}: no witness policy on the hub, not witnessed"
        who = ", ".join(self.cosigners) or "nobody"
        verdict = "meets" if self.met else "does NOT meet (not relied on)"
        return (
            f"head {self.size}: cosigned by {len(self.cosigners)} of the {self.quorum} "
            f"organisations witness policy {self.policy} asks for ({who}); {verdict} the quorum"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "policy": self.policy,
            "quorum": self.quorum,
            "cosigners": list(self.cosigners),
            "cosigned": self.cosigned,
            "met": self.met,
        }


class Witnessing:
    """This client's witnessing rounds (see the module docstring)."""

    def __init__(
        self,
        state: LocalState,
        hub: WitnessHub,
        *,
        root: Callable[[int], RootCertificate],
        witness: Callable[[], WitnessKeys | None],
        crl: Callable[[int], Awaitable[RevocationList]],
        clock: Callable[[], float],
        evidence_dir: Path,
        observer: str,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        quorum_wait: float = QUORUM_WAIT,
    ) -> None:
        self._state = state
        self._hub = hub
        self._root = root
        self._witness = witness
        self._crl = crl
        self._clock = clock
        self._evidence_dir = evidence_dir
        self._observer = observer
        self._sleep = sleep
        self._quorum_wait = quorum_wait

    async def policy(self, now: int) -> WitnessPolicy | None:
        """The kept policy, after keeping a newer one the hub serves if it verifies."""
        root = self._root(now)
        served = await self._hub.witness_policy()
        if served is not None:
            try:
                policy = verify_policy(WitnessPolicy.from_wire(served), root)
            except ProtocolError:
                policy = None  # a bad policy is not kept; the kept one still applies
            if policy is not None:
                self._state.keep_witness_policy(policy.to_wire(), policy.number)
        kept = self._state.witness_policy()
        return None if kept is None else WitnessPolicy.from_wire(kept)

    async def round(
        self,
        head: TreeHead,
        hub_cert: Certificate,
        current: Callable[[], Awaitable[Certificate]] | None = None,
    ) -> Witnessed:
        """Cosign ``head`` (checked by the caller, signed by ``hub_cert``), then count its
        cosignatures. The hub signs checkpoints with its current key: after a key change,
        ``current`` gives the hub's current certificate (verified by the caller)."""
        now = int(self._clock())
        policy = await self.policy(now)
        if policy is None:
            return Witnessed(head.size, None, 0, (), False)
        root = self._root(now)
        checkpoint = Checkpoint(log_origin(root), head.size, head.root)
        cosigned = await self._cosign(checkpoint, policy, now)
        waited = 0.0
        while True:
            signatures = await self._served(head, hub_cert, current, root, now)
            crl = await self._crl(now)
            tally = tally_cosignatures(checkpoint, signatures, policy, root, crl=crl, now=now)
            if tally.met or waited >= self._quorum_wait:
                break
            await self._sleep(POLL_SECONDS)
            waited += POLL_SECONDS
            now = int(self._clock())
        return Witnessed(head.size, policy.number, policy.quorum, tally.organisations, cosigned)

    async def _cosign(self, checkpoint: Checkpoint, policy: WitnessPolicy, now: int) -> bool:
        keys = self._witness()
        if keys is None or not keys.certified:
            return False
        cert = keys.witness_certificate
        if all(w.key != cert.key for w in policy.witnesses):
            return False  # not (yet) a witness of the policy: its line would not count
        line = cosign(keys.signing_key, cert.name, checkpoint, timestamp=now)
        try:
            await self._hub.post_cosignature(checkpoint.size, line)
        except HubProblem as exc:
            if exc.status >= 500:
                raise
            return False  # the hub refused it (e.g. it signed another root): the tally tells
        return True

    async def _served(
        self, head: TreeHead, hub_cert: Certificate,
        current: Callable[[], Awaitable[Certificate]] | None, root: RootCertificate, now: int,
    ) -> tuple[NoteSignature, ...]:  # fmt: skip
        """The signature lines of the checkpoint served for ``head``; SplitView on a fork."""
        note = await self._hub.audit_checkpoint(head.size)
        if note is None:
            raise AuditLogInconsistent(
                "the hub serves no checkpoint for a head it signed",
                served=(head.size, b64e(head.root)),
            )
        certs = [hub_cert]
        try:
            signed = _opened(note, certs, root)
        except ProtocolError as exc:
            newer = None if current is None else await current()
            if newer is None or newer.fingerprint == hub_cert.fingerprint:
                raise AuditLogInconsistent(
                    f"the hub's checkpoint does not verify ({str(exc)[:120]})",
                    served=(head.size, b64e(head.root)),
                ) from exc
            certs.append(newer)  # the hub's key changed since it signed the head
            signed = _opened(note, certs, root)
        if signed.checkpoint.size != head.size:
            raise AuditLogInconsistent("the hub served a checkpoint of another size")
        if not hmac.compare_digest(signed.checkpoint.root, head.root):
            await self._split_view(head, note, certs, root, now)
        return signed.note.signatures

    async def _split_view(
        self, head: TreeHead, note: bytes, certs: Sequence[Certificate], root: RootCertificate,
        now: int,
    ) -> None:  # fmt: skip
        reason = (
            f"SPLIT VIEW: the hub's key signed two roots for size {head.size} "
            "(a tree head, and the checkpoint the other organisations cosigned)"
        )
        self.keep_split_view(
            Head(tree_head=head), Head(checkpoint=note), certs, reason=reason,
            served=head, root=root, now=now,
        )  # fmt: skip
        raise AuditLogInconsistent(reason, served=(head.size, b64e(head.root)))

    def keep_split_view(
        self, first: Head, second: Head, certs: Sequence[Certificate], *, reason: str,
        served: TreeHead, root: RootCertificate, now: int, proof: Sequence[bytes] = (),
        kept: TreeHead | None = None,
    ) -> None:  # fmt: skip
        """If ``first`` and ``second`` prove a split view, write the evidence file, raise an
        alert and raise SplitView; return (nothing kept) if they prove nothing."""
        evidence = make_evidence(
            first, second, certs, root, proof=proof, observed=now, observer=self._observer
        )
        try:
            proven = verify_evidence(evidence, root)
        except ProtocolError:
            return
        data = evidence.to_bytes()
        name = f"{now}-{proven.kind}-{hashlib.sha256(data).hexdigest()[:16]}.json"
        path = self._evidence_dir / name
        self._evidence_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(path, data, mode=0o600, overwrite=True)
        self._state.raise_alert(
            {"kind": "split-view", "at": now, "size": served.size, "reason": reason,
             "evidence": str(path)}
        )  # fmt: skip
        raise SplitView(
            reason,
            kept=None if kept is None else (kept.size, b64e(kept.root)),
            served=(served.size, b64e(served.root)),
            evidence=str(path),
        )


def _opened(note: bytes, certs: Sequence[Certificate], root: RootCertificate) -> SignedCheckpoint:
    """The checkpoint ``note`` of the network's log, signed by the key of one of ``certs``."""
    origin = log_origin(root)
    verifiers = {v.key_id: v for v in (log_verifier(origin, cert) for cert in certs)}
    return open_checkpoint(note, list(verifiers.values()), origin=origin)
