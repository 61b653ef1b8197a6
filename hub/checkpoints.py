"""Checkpoints, cosignatures and the witness policy: the hub's side of witnessing.

``docs/protocol.md``, "Witnesses", specifies the routes:

* ``GET /v1/audit/checkpoint`` and ``GET /v1/audit/checkpoints/{size}``: a signed tree
  head as a C2SP checkpoint (signed note, :mod:`protocol.checkpoint`) signed with the
  log key, with the verified cosignatures the hub holds for it;
* ``POST /v1/audit/cosignatures``: an organisation's client posts its cosignature of a
  head it checked. The hub keeps it only if it is a cosignature/v1 line of a witness the
  held policy lists, of the caller's own organisation, whose certificate is valid now and
  not revoked, over the checkpoint of the stored head of that size (422
  ``invalid-cosignature`` otherwise; 403 ``forbidden-sender`` for another organisation's);
* ``GET`` and ``PUT /v1/audit/witness-policy``: the authority's signed policy, uploaded
  like the CRL (verified against the root, a higher number than the held one's).

:class:`WitnessSubmitter` sends each new checkpoint to the always-on witnesses of
``HubConfig.witness_urls`` (C2SP tlog-witness ``add-checkpoint``, with the consistency
proof from the size the witness holds) and keeps the cosignatures they answer, checked
as posted ones are. The hub never needs a witness: without a policy or witnesses it
serves checkpoints with the log signature only.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from hub.accesslog import recording
from hub.accesslog.heads import HeadSigner
from hub.accesslog.recording import Outcome, Scope
from hub.config import Clock, HubConfig
from hub.directory import Trust, TrustCache, exact_object
from hub.errors import (
    Conflict,
    ForbiddenSender,
    InvalidCosignature,
    InvalidCredential,
    Malformed,
    NotFound,
    Unavailable,
)
from hub.periodic import Periodic
from hub.store import Store, Tx
from protocol.auditlog import TreeHead
from protocol.checkpoint import SignedCheckpoint, cosignature_key_id, cosignature_time
from protocol.encoding import MAX_SAFE_INT
from protocol.errors import EncodingError, ProtocolError, ValidationError, VerificationError
from protocol.note import NoteSignature, parse_signature_line
from protocol.tlogwitness import (
    ADD_CHECKPOINT_PATH,
    AddCheckpoint,
    parse_cosignature_body,
    parse_size_body,
)
from protocol.witness import WitnessCertificate
from protocol.witnesspolicy import DEFAULT_MAX_SKEW, WitnessPolicy, verify_policy

log = logging.getLogger("hub.checkpoints")

MAX_LINE_CHARS = 1024
WITNESS_TIMEOUT = 10.0  # seconds for one add-checkpoint call
MAX_WITNESS_ANSWER = 64 * 1024


def head_signer(signer: HeadSigner | None) -> HeadSigner:
    if signer is None:
        raise Unavailable("this hub has no log-signing key and signs no checkpoints")
    return signer


# -- use-cases -------------------------------------------------------------------------


async def checkpoint_of(
    store: Store, config: HubConfig, cache: TrustCache, signer: HeadSigner, now: int,
    size: int | None,
) -> bytes | None:  # fmt: skip
    """The checkpoint note of the head of ``size`` (newest: None) with its cosignatures."""
    head = await store.tree_head(config.network, size)
    if head is None:
        return None
    signed = signer.checkpoint(head, cache.root(now))
    held = await store.cosignatures(head.size)
    return signed.note.with_signatures(c.line for c in held).to_bytes()


async def held_policy(store: Store) -> WitnessPolicy | None:
    return await store.witness_policy()


async def upload_policy(
    store: Store, clock: Clock, scope: Scope, body: object, *, cache: TrustCache
) -> int:
    """Hold a root-signed witness policy whose number is above the held one's (else 409)."""
    try:
        policy = WitnessPolicy.from_wire(exact_object(body, "policy")["policy"])
    except (EncodingError, ValidationError) as exc:
        raise Malformed(f"policy: {str(exc)[:200]}") from None
    now = clock()
    try:
        verify_policy(policy, cache.root(now))
    except VerificationError:
        raise InvalidCredential("the witness policy is not signed by the network root") from None

    def hold(tx: Tx) -> Outcome[None]:
        if not tx.witnessing.put_policy(policy):
            raise Conflict("a witness policy with this or a higher number is held")
        return Outcome(None)

    await recording.act(store, scope, now=now, work=hold)
    return policy.number


def check_cosignature(
    policy: WitnessPolicy, trust: Trust, signed: SignedCheckpoint, line: NoteSignature
) -> WitnessCertificate:
    """The policy's witness certificate under which ``line`` cosigns ``signed``.

    InvalidCosignature unless the line's (name, key id) is a witness the policy lists,
    whose certificate is valid now and not revoked, with a timestamp not ahead of now by
    more than ``DEFAULT_MAX_SKEW`` and a signature that verifies.
    """
    witness = next(
        (w for w in policy.witnesses if w.name == line.name and _key_id(w) == line.key_id), None
    )
    if witness is None:
        raise InvalidCosignature("the key is not a witness of the held witness policy")
    if not witness.not_before <= trust.now <= witness.not_after:
        raise InvalidCosignature("the witness certificate is not valid now")
    if trust.revoked(witness.serial):
        raise InvalidCosignature("the witness certificate has been revoked")
    try:
        if cosignature_time(line) > trust.now + DEFAULT_MAX_SKEW:
            raise InvalidCosignature("the cosignature's time lies in the future")
        witness.verifier().verify(signed.checkpoint.text().encode("utf-8"), line.signature)
    except ProtocolError:
        raise InvalidCosignature("the cosignature does not verify for this head") from None
    return witness


def _key_id(witness: WitnessCertificate) -> int:
    return cosignature_key_id(witness.name, witness.public_key)


@dataclass(frozen=True, slots=True)
class Posted:
    size: int
    created: bool


def _posted(body: object) -> tuple[int, NoteSignature]:
    fields = exact_object(body, "size", "cosignature")
    size, text = fields["size"], fields["cosignature"]
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_SAFE_INT:
        raise Malformed(f"size must be an integer from 1 to {MAX_SAFE_INT}")
    if not isinstance(text, str) or len(text) > MAX_LINE_CHARS:
        raise Malformed("cosignature must be one signature line")
    try:
        return size, parse_signature_line(text)
    except (EncodingError, ValidationError) as exc:
        raise Malformed(f"cosignature: {str(exc)[:200]}") from None


async def add_cosignature(
    store: Store, clock: Clock, config: HubConfig, scope: Scope, *, caller: str,
    body: object, cache: TrustCache, signer: HeadSigner | None,
) -> Posted:  # fmt: skip
    """Keep an organisation's cosignature of a head (see the module docstring)."""
    chosen = head_signer(signer)
    size, line = _posted(body)
    now = clock()
    policy = await held_policy(store)
    if policy is None:
        raise InvalidCosignature("the hub holds no witness policy")
    head = await store.tree_head(config.network, size)
    if head is None:
        raise NotFound("no tree head of that size was signed")
    trust = cache.trust(await store.latest_crl(), now)
    witness = check_cosignature(policy, trust, chosen.checkpoint(head, trust.root), line)
    if witness.org != caller:
        raise ForbiddenSender("the witness is another organisation's")

    def keep(tx: Tx) -> Outcome[bool]:
        kept = tx.witnessing.put_cosignature(size, witness.serial, witness.org, line, now=now)
        return Outcome(kept)

    created = await recording.act(store, scope, now=now, work=keep)
    return Posted(size, created)


# -- the always-on witnesses ---------------------------------------------------------------

Post = Callable[[str, bytes], Awaitable[tuple[int, bytes]]]


class WitnessSubmitter(Periodic):
    """Submits each new checkpoint to the always-on witnesses; keeps their cosignatures.

    Per witness it remembers the size the witness holds (learnt from its answers: a 409
    names it) and the size it last cosigned; a tick submits the newest head to each
    witness that has not cosigned it. Tests call :meth:`tick` with their own clock.
    """

    task_name = "hub-witnesses"
    failure = "submitting a checkpoint to a witness failed"

    def __init__(
        self, store: Store, clock: Clock, config: HubConfig, cache: TrustCache,
        signer: HeadSigner, *, post: Post | None = None, logger: logging.Logger | None = None,
    ) -> None:  # fmt: skip
        self._store = store
        self._clock = clock
        self._config = config
        self._cache = cache
        self._signer = signer
        self._post = post
        self._session: aiohttp.ClientSession | None = None
        self._log = logger or log
        self._held: dict[str, int] = {}
        self._cosigned: dict[str, int] = {}

    async def tick(self) -> int:
        """Submit the newest head where it is not cosigned yet; the cosignatures kept."""
        head = await self._store.tree_head(self._config.network)
        if head is None:
            return 0
        kept = 0
        for url in self._config.witness_urls:
            if self._cosigned.get(url, 0) >= head.size:
                continue
            try:
                kept += await self.submit(url, head)
            except (aiohttp.ClientError, TimeoutError, EncodingError) as exc:
                # One witness out of reach, or answering garbage, does not hold up the others.
                self._log.warning("witness %d: %s", self._index(url), type(exc).__name__)
        return kept

    async def submit(self, url: str, head: TreeHead) -> int:
        """add-checkpoint of ``head`` at ``url`` (once more after a 409); cosignatures kept."""
        now = self._clock()
        signed = self._signer.checkpoint(head, self._cache.root(now))
        for _ in range(2):
            old = min(self._held.get(url, 0), head.size)
            proof: list[bytes] = []
            if 0 < old < head.size:
                proof = await self._store.consistency(old, head.size) or []
            request = AddCheckpoint(old, tuple(proof), signed.to_bytes())
            status, answer = await self._send(url + ADD_CHECKPOINT_PATH, request.to_bytes())
            if status == 409:
                self._held[url] = parse_size_body(answer)
                continue
            if status != 200:
                self._log.warning("witness %d answered %d", self._index(url), status)
                return 0
            self._held[url] = self._cosigned[url] = head.size
            return await self._keep(signed, parse_cosignature_body(answer), now)
        return 0

    async def _keep(
        self, signed: SignedCheckpoint, lines: tuple[NoteSignature, ...], now: int
    ) -> int:
        policy = await held_policy(self._store)
        if policy is None:
            return 0
        trust = self._cache.trust(await self._store.latest_crl(), now)
        verified = []
        for line in lines:
            try:
                verified.append((check_cosignature(policy, trust, signed, line), line))
            except InvalidCosignature as exc:
                self._log.warning("a witness's cosignature was refused: %s", exc.detail)
        size = signed.checkpoint.size

        def keep(tx: Tx) -> int:
            return sum(
                tx.witnessing.put_cosignature(size, w.serial, w.org, line, now=now)
                for w, line in verified
            )

        return await self._store.write(keep) if verified else 0

    def _index(self, url: str) -> int:
        """The witness's position in the configuration (logs name it, never its URL)."""
        return self._config.witness_urls.index(url)

    async def _send(self, url: str, body: bytes) -> tuple[int, bytes]:
        if self._post is not None:
            return await self._post(url, body)
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=WITNESS_TIMEOUT)
            )
        async with self._session.post(url, data=body) as response:
            return response.status, await response.content.read(MAX_WITNESS_ANSWER)

    async def stop(self) -> None:
        await super().stop()
        session, self._session = self._session, None
        if session is not None:
            await session.close()
