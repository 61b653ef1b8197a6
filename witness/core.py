"""The add-checkpoint use-case, as C2SP tlog-witness specifies it, and the evidence it keeps.

:meth:`Witness.add_checkpoint` takes a request body and returns this witness's
cosignature line, or raises the :mod:`witness.errors` error whose status the
specification gives, checked in its order:

1. the body is not ``old <size>``, proof lines, an empty line and a checkpoint: 400;
2. the origin is not a log this witness follows: 404;
3. no trusted key of that log (a root-certified hub key, valid now) signed the note, or
   a signature line of a trusted key fails: 403;
4. the old size is larger than the checkpoint's: 400;
5. the old size is not the size of the checkpoint held (0 when none): 409 with that size;
6. a checkpoint of size 0 without the empty tree's root, a proof when the old size is 0,
   a proof that does not verify, or another root at the held size: 422.

Only then is the checkpoint cosigned (timestamp: the injected clock) and kept, as a
compare-and-set on what was read; the line is returned after the commit. Per log, one
request at a time runs steps 5-6 in this process; across processes the compare-and-set
decides (the loser is answered 409 with the new size).

**Evidence.** Whenever a validly signed checkpoint has the held size and another root
(whatever its old size said), or the hub's consistency proof from the held checkpoint
binds the held size to another root (``protocol.merkle.committed_prefix_root``), the
witness keeps both checkpoints as an evidence file (``protocol.evidence``): stored in the
database, written to the evidence directory, logged as an error without secrets, and
counted. A proof that merely fails proves nothing and is only counted.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keys.keyfile import atomic_write
from protocol import merkle
from protocol.certificate import (
    ROLE_HUB,
    Certificate,
    RevocationList,
    RootCertificate,
    verify_certificate,
)
from protocol.checkpoint import (
    Checkpoint,
    SignedCheckpoint,
    cosign,
    log_origin,
    log_verifier,
    open_checkpoint,
    parse_checkpoint,
)
from protocol.errors import EncodingError, ProtocolError, VerificationError
from protocol.evidence import Evidence, Head, Proven, make_evidence, verify_evidence
from protocol.note import Ed25519Verifier, Note, NoteSignature, parse_note
from protocol.tlogwitness import AddCheckpoint, parse_add_checkpoint
from witness.errors import Conflict, Forbidden, Malformed, UnknownLog, Unprocessable
from witness.store import Held, WitnessStore

log = logging.getLogger("witness")


@dataclass(frozen=True, slots=True)
class TrustedLog:
    """A log this witness follows: its origin and the hub certificates that sign it."""

    origin: str
    certificates: tuple[Certificate, ...]

    def verifiers(self, now: int) -> list[Ed25519Verifier]:
        """The log keys of the certificates valid at ``now``, one per key."""
        by_key: dict[int, Ed25519Verifier] = {}
        for cert in self.certificates:
            if cert.not_before <= now <= cert.not_after:
                verifier = log_verifier(self.origin, cert)
                by_key.setdefault(verifier.key_id, verifier)
        return list(by_key.values())


def trusted_log(
    root: RootCertificate, hub_certs: Sequence[bytes], *, crl: RevocationList | None, now: int
) -> TrustedLog:
    """The network's log, trusting the hub certificates (DER) that chain to ``root``, are
    valid at ``now``, are not on ``crl`` and hold the role ``hub``."""
    certs = []
    for der in hub_certs:
        cert = verify_certificate(der, root, now=now, crl=crl)
        if ROLE_HUB not in cert.roles:
            raise VerificationError(f"certificate {cert.serial} is not a hub certificate")
        certs.append(cert)
    if not certs:
        raise VerificationError("the witness needs the hub's certificate to follow its log")
    return TrustedLog(log_origin(root), tuple(certs))


@dataclass(frozen=True, slots=True)
class Cosigner:
    """This witness's key and the name its cosignature lines carry."""

    key: Ed25519PrivateKey = field(repr=False)
    name: str


@dataclass
class Counters:
    """What the metrics read: split views found (by kind) and proofs that failed."""

    split_views: dict[str, int] = field(default_factory=dict)
    bad_proofs: int = 0
    cosigned: int = 0


def origin_hash(origin: str) -> str:
    """Lower-case hex SHA-256 of an origin (tlog-witness's monitoring path)."""
    return hashlib.sha256(origin.encode("utf-8")).hexdigest()


class Witness:
    """The witness of one network's log (or several logs, each with its own keys)."""

    def __init__(
        self,
        store: WitnessStore,
        root: RootCertificate,
        logs: Sequence[TrustedLog],
        cosigner: Cosigner,
        *,
        clock: Callable[[], int],
        evidence_dir: Path,
    ) -> None:
        self._store = store
        self._root = root
        self._logs = {trusted.origin: trusted for trusted in logs}
        self._by_hash = {origin_hash(origin): origin for origin in self._logs}
        self._locks = {origin: asyncio.Lock() for origin in self._logs}
        self._cosigner = cosigner
        self._clock = clock
        self._evidence_dir = evidence_dir
        self.counters = Counters()

    @property
    def origins(self) -> tuple[str, ...]:
        return tuple(self._logs)

    # -- add-checkpoint ----------------------------------------------------------------------

    async def add_checkpoint(self, body: bytes) -> NoteSignature:
        """The cosignature of the checkpoint in ``body``, or the error the spec names."""
        request, note, checkpoint = _parse(body)
        trusted = self._logs.get(checkpoint.origin)
        if trusted is None:
            raise UnknownLog("this witness does not follow that log")
        now = self._clock()
        try:
            signed = open_checkpoint(note, trusted.verifiers(now), origin=trusted.origin)
        except ProtocolError as exc:
            raise Forbidden("no trusted key of the log signed the checkpoint") from exc
        if request.old_size > checkpoint.size:
            raise Malformed("the old size is larger than the checkpoint's size")
        async with self._locks[trusted.origin]:
            held = await self._store.held(trusted.origin)
            await self._check(request, signed, held, trusted, now)
            return await self._cosign_and_keep(signed, held, now)

    async def _check(
        self, request: AddCheckpoint, signed: SignedCheckpoint, held: Held | None,
        trusted: TrustedLog, now: int,
    ) -> None:  # fmt: skip
        checkpoint = signed.checkpoint
        held_size = 0 if held is None else held.size
        if held is not None and checkpoint.size == held.size and checkpoint.root != held.root:
            await self._split_view(held, signed, trusted, (), now)
            if request.old_size == held_size:
                raise Unprocessable("another root at the size this witness holds")
        if request.old_size != held_size:
            raise Conflict(held_size)
        if checkpoint.size == 0 and checkpoint.root != merkle.EMPTY_ROOT:
            raise Unprocessable("a checkpoint of size 0 must carry the empty tree's root")
        if request.old_size == 0:
            if request.proof:
                raise Unprocessable("a proof from size 0 must be empty")
            return
        assert held is not None
        try:
            merkle.verify_consistency(
                held.size, checkpoint.size, held.root, checkpoint.root, request.proof
            )
        except VerificationError as exc:
            await self._failed_proof(request, signed, held, trusted, now)
            raise Unprocessable("the consistency proof does not verify") from exc

    async def _failed_proof(
        self, request: AddCheckpoint, signed: SignedCheckpoint, held: Held,
        trusted: TrustedLog, now: int,
    ) -> None:  # fmt: skip
        try:
            bound = merkle.committed_prefix_root(
                held.size, signed.checkpoint.size, signed.checkpoint.root, request.proof
            )
        except VerificationError:
            self.counters.bad_proofs += 1
            log.warning(
                "a consistency proof from size %d to %d of %s did not verify",
                held.size, signed.checkpoint.size, trusted.origin,
            )  # fmt: skip
            return
        if bound != held.root:
            await self._split_view(held, signed, trusted, request.proof, now)

    async def _cosign_and_keep(
        self, signed: SignedCheckpoint, held: Held | None, now: int
    ) -> NoteSignature:
        checkpoint = signed.checkpoint
        line = cosign(self._cosigner.key, self._cosigner.name, checkpoint, timestamp=now)
        kept = Note(signed.note.text, (*signed.log, line)).to_bytes().decode("utf-8")
        advanced = await self._store.advance(
            checkpoint.origin, held, size=checkpoint.size, root=checkpoint.root, note=kept, now=now
        )
        if not advanced:
            now_held = await self._store.held(checkpoint.origin)
            raise Conflict(0 if now_held is None else now_held.size)
        self.counters.cosigned += 1
        return line

    # -- evidence ----------------------------------------------------------------------------

    async def _split_view(
        self, held: Held, signed: SignedCheckpoint, trusted: TrustedLog,
        proof: Sequence[bytes], now: int,
    ) -> None:  # fmt: skip
        evidence = make_evidence(
            Head(checkpoint=held.note.encode("utf-8")),
            Head(checkpoint=signed.to_bytes()),
            trusted.certificates,
            self._root,
            proof=proof,
            observed=now,
            observer=self._cosigner.name,
        )
        try:
            proven = verify_evidence(evidence, self._root)
        except ProtocolError:
            log.exception("evidence of %s did not verify; not kept", trusted.origin)
            return
        await self._keep(evidence, proven)

    async def _keep(self, evidence: Evidence, proven: Proven) -> None:
        data = evidence.to_bytes()
        new = await self._store.keep_evidence(
            data, origin=proven.origin, kind=proven.kind, observed=evidence.observed
        )
        digest = hashlib.sha256(data).hexdigest()
        path = self._evidence_dir / f"{evidence.observed}-{proven.kind}-{digest[:16]}.json"
        if new:
            await asyncio.to_thread(_write_evidence, path, data)
            found = self.counters.split_views
            found[proven.kind] = found.get(proven.kind, 0) + 1
        log.error(
            "SPLIT VIEW of log %s (%s): the hub's key signed size %d with root %s and size %d "
            "with root %s, which can not both be true; evidence: %s",
            proven.origin, proven.kind, proven.first.size, proven.first.root.hex()[:16],
            proven.second.size, proven.second.root.hex()[:16], path,
        )  # fmt: skip

    # -- monitoring ---------------------------------------------------------------------------

    async def held_note(self, hashed: str) -> str:
        """The checkpoint held for the origin whose SHA-256 hex is ``hashed``, cosigned."""
        origin = self._by_hash.get(hashed)
        held = None if origin is None else await self._store.held(origin)
        if held is None:
            raise UnknownLog("this witness holds no checkpoint of that log")
        return held.note


def _parse(body: bytes) -> tuple[AddCheckpoint, Note, Checkpoint]:
    try:
        request = parse_add_checkpoint(body)
        note = parse_note(request.note)
        return request, note, parse_checkpoint(note.text)
    except (EncodingError, ProtocolError) as exc:
        raise Malformed(str(exc)[:200]) from exc


def _write_evidence(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(path, data, mode=0o600, overwrite=True)
