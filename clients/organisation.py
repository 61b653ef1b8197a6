"""What an organisation does with the hub: publish, send signals, receive and verify.

Every object the hub serves is verified here before it is used:

* a recipient's certificate against the pinned network root and the current
  revocation list (itself verified against the root, and never older than
  the newest one seen before), then its key bundle against that certificate;
* a sender's certificate in the same way, and it must be the one named in
  the envelope header; then ``open_envelope`` checks the signature, that we
  are a recipient, and decrypts; the payload is parsed strictly and checked
  against its kind's schema.

A received envelope that fails any check is recorded as rejected with a
reason category and is *not* acknowledged, so that the hub keeps it for an
investigation. Nothing is decrypted into local state: envelopes are kept
encrypted and opened again by :meth:`Organisation.show`.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from clients import casework
from clients.audit import CHECK_SECONDS, LogWatch
from clients.errors import (
    HubProblem,
    NotReady,
    PayloadInvalid,
    UnknownOrganisation,
    VerificationFailed,
)
from clients.hub_client import HubClient, InboxItem
from clients.payloads import decode_payload, encode_payload, identity_of, validate_payload
from clients.state import LocalState, PayloadBox, SentPayload
from keys.errors import KeysError
from keys.organisation import OrgKeys
from protocol.certificate import (
    ROLE_HUB,
    Certificate,
    RevocationList,
    load_crl,
    load_root,
    verify_certificate,
)
from protocol.envelope import Envelope, new_message_id, open_envelope, seal
from protocol.errors import OpenError, ProtocolError, RevokedError
from protocol.keybundle import KeyBundle, verify_bundle
from protocol.pseudonym import Identity, derive_pseudonyms
from protocol.types import (
    CaseRef,
    MessageId,
    OrgId,
    Pseudonym,
    parse_message_id,
    parse_org_id,
)

CACHE_SECONDS = 300  # how long a directory entry or CRL is used without asking the hub again
INBOX_PAGE = 50

# Reason categories of a rejected message: what failed, never why in detail.
REASON_MALFORMED = "malformed"
REASON_SENDER = "sender-certificate"
REASON_ENVELOPE = "envelope"
REASON_PAYLOAD = "payload"


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    id: MessageId
    cursor: int
    sender: OrgId
    kind: str
    created: int
    pseudonyms: tuple[Pseudonym, ...]
    payload: dict[str, Any]
    recipients: tuple[OrgId, ...] = ()
    case: CaseRef | None = None  # a referral's case, from the header
    ref: MessageId | None = None  # what a status (the referral) or referral (replaced) is about
    status: str | None = None  # a status envelope's code, from the header

    def __repr__(self) -> str:
        return f"ReceivedMessage(id={self.id!r}, sender={self.sender!r}, kind={self.kind!r})"


@dataclass(frozen=True, slots=True)
class RejectedMessage:
    """A message that failed verification; kept on the hub (not acknowledged)."""

    id: str
    cursor: int
    sender: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class ReceiveResult:
    messages: tuple[ReceivedMessage, ...]
    rejected: tuple[RejectedMessage, ...]


class _Rejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Organisation:
    """One organisation's keys, local state and hub connection, working together."""

    def __init__(
        self,
        keys: OrgKeys,
        state: LocalState,
        hub: HubClient,
        *,
        clock: Callable[[], float] = time.time,
        rng: Callable[[int], bytes] = os.urandom,
        log_interval: float = CHECK_SECONDS,
    ) -> None:
        self.keys = keys
        self.state = state
        self.hub = hub
        self._clock = clock
        self._rng = rng
        self._crl: tuple[int, RevocationList] | None = None
        self._log_interval = log_interval
        self._log: LogWatch | None = None
        self._box: PayloadBox | None = None

    def now(self) -> int:
        return int(self._clock())

    @property
    def org(self) -> OrgId:
        return self.keys.org

    def certificate(self) -> Certificate:
        """Our own certificate; NotReady until it has been imported."""
        cert = self.keys.certificate
        if cert is None:
            raise NotReady("no certificate imported yet: run 'schakel org import-cert CERT.pem'")
        return cert

    @property
    def _root_fp(self) -> str:
        return self.keys.root.fingerprint

    @property
    def log(self) -> LogWatch:
        """This client's memory of the hub's access log (the last verified tree head)."""
        if self._log is None:
            self._log = LogWatch(
                self.state,
                self.hub,
                root_der=self.keys.root.der,
                network=self.keys.network,
                crl=self._current_crl,
                clock=self._clock,
                interval=self._log_interval,
            )
        return self._log

    # -- publishing and keys -----------------------------------------------------------

    async def publish(self) -> tuple[str, str]:
        """Publish our certificate, then our current key bundle; their fingerprints."""
        cert = self.certificate()
        await self.hub.publish_certificate(cert.der)
        await self.log.check_if_due()  # the first request that can authenticate
        bundle = self.keys.current_bundle(now=self.now())
        await self.hub.publish_bundle(bundle)
        return cert.fingerprint, bundle.fingerprint

    async def fetch_linking_keys(self) -> list[int]:
        """Fetch, verify (root signature) and store the linking keys sealed to us."""
        versions = []
        for sealed in await self.hub.get_linking_keys():
            try:
                key = self.keys.store_linking_key(sealed, now=self.now())
            except (KeysError, ProtocolError) as exc:
                raise VerificationFailed("sealed linking key", self.org, str(exc)[:120]) from exc
            versions.append(key.version)
        return sorted(set(versions))

    def derive_pseudonyms(self, identity: Identity) -> tuple[Pseudonym, ...]:
        """Pseudonyms of ``identity`` with the current linking key (derived locally)."""
        try:
            key = self.keys.current_linking_key
        except KeysError as exc:
            raise NotReady("no linking key yet: run 'schakel org linking-key fetch'") from exc
        try:
            return derive_pseudonyms(identity, key)
        except ProtocolError as exc:
            raise PayloadInvalid(str(exc), "$.person") from exc

    # -- the directory -----------------------------------------------------------------

    async def _current_crl(self, now: int) -> RevocationList:
        if self._crl is not None and now - self._crl[0] < CACHE_SECONDS:
            return self._crl[1]
        der = await self.hub.get_crl()
        if der is None:
            # Fail closed: a hub that withholds the list could hide every revocation.
            # The network authority publishes one when it sets the network up.
            raise VerificationFailed("revocation list", reason="the hub serves none")
        crl = self._load_crl(der, now)
        self.state.note_crl_number(crl.number)
        self._crl = (now, crl)
        return crl

    def _load_crl(self, der: bytes, now: int) -> RevocationList:
        try:
            crl = load_crl(der, load_root(self.keys.root.der, now=now), now=now)
        except ProtocolError as exc:
            raise VerificationFailed("revocation list", reason=str(exc)[:120]) from exc
        if crl.number < self.state.crl_number:
            raise VerificationFailed("revocation list", reason="older than one seen before")
        return crl

    def _verify_cert(
        self, org: str, der: bytes, now: int, crl: RevocationList | None
    ) -> Certificate:
        try:
            cert = verify_certificate(der, load_root(self.keys.root.der, now=now), now=now, crl=crl)
        except RevokedError as exc:
            raise VerificationFailed("certificate", org, "revoked") from exc
        except ProtocolError as exc:
            raise VerificationFailed("certificate", org, str(exc)[:120]) from exc
        if cert.org != org or ROLE_HUB in cert.roles:
            raise VerificationFailed("certificate", org, "issued to another party")
        return cert

    async def _directory(self, org: str, *, fresh: bool) -> tuple[Certificate, KeyBundle | None]:
        """Verified certificate and (unverified) bundle of ``org``, from cache or the hub."""
        now = self.now()
        crl = await self._current_crl(now)
        cached = None if fresh else self.state.cached_directory(org, root=self._root_fp)
        if cached is not None and now - cached.verified_at < CACHE_SECONDS:
            der, wire = cached.certificate, cached.bundle
            bundle = None if wire is None else KeyBundle.from_wire(wire)
        else:
            try:
                der, bundle = await self.hub.get_org(org)
            except HubProblem as exc:
                if exc.status != 404:
                    raise
                raise UnknownOrganisation(org) from None
        cert = self._verify_cert(org, der, now, crl)
        if cached is None or cached.certificate != der or fresh:
            # The bundle is cached only once recipient() has verified it.
            self.state.cache_directory(
                org, root=self._root_fp, certificate=der, bundle=None, now=now
            )
        self.state.remember_certificate(cert.fingerprint, org=org, root=self._root_fp, der=der)
        return cert, bundle

    async def recipient(self, org: str) -> tuple[Certificate, KeyBundle]:
        """A recipient's certificate and key bundle, both verified (fetched fresh)."""
        org = _org(org)
        cert, bundle = await self._directory(org, fresh=True)
        if bundle is None:
            raise NotReady(f"organisation {org!r} has not published a key bundle yet")
        now = self.now()
        try:
            verify_bundle(bundle, cert, now=now)
        except ProtocolError as exc:
            self.state.forget_directory(org)
            raise VerificationFailed("key bundle", org, str(exc)[:120]) from exc
        self.state.cache_directory(
            org, root=self._root_fp, certificate=cert.der, bundle=bundle.to_wire(), now=now
        )
        return cert, bundle

    # -- sending -----------------------------------------------------------------------

    async def send_signal(self, payload: dict[str, Any], recipients: Iterable[str]) -> MessageId:
        """Validate, seal to every recipient's verified bundle, send (retries reuse the id)."""
        validate_payload("signal", payload)
        await self.trust_anchors()
        orgs = self.recipients_of("signal", recipients)
        return await self.send_sealed(
            "signal", payload, orgs, pseudonyms=self.pseudonyms_of(payload)
        )

    async def trust_anchors(self) -> None:
        """Our certificate, then the trust anchors: the revocation list needs no login, the
        log's head does."""
        self.certificate()
        await self._current_crl(self.now())
        await self.log.check_if_due()

    def recipients_of(self, kind: str, recipients: Iterable[str]) -> list[OrgId]:
        """The recipients, checked and sorted; never empty, never this organisation."""
        orgs = sorted({OrgId(_org(org)) for org in recipients})
        if not orgs:
            raise PayloadInvalid(f"a {kind} needs at least one recipient", "recipients")
        if self.org in orgs:
            raise PayloadInvalid(f"an organisation can not send a {kind} to itself", "recipients")
        return orgs

    def pseudonyms_of(self, payload: dict[str, Any]) -> tuple[Pseudonym, ...]:
        """The pseudonyms of the payload's ``person`` (none when it names nobody)."""
        identity = identity_of(payload)
        return self.derive_pseudonyms(identity) if _has_fields(identity) else ()

    async def send_sealed(
        self,
        kind: str,
        payload: dict[str, Any],
        orgs: list[OrgId],
        *,
        pseudonyms: tuple[Pseudonym, ...] = (),
        status: str | None = None,
        ref: MessageId | None = None,
        case: CaseRef | None = None,
    ) -> MessageId:
        """Seal a validated payload to ``orgs`` (bundles verified fresh), send it, and keep
        the id and (encrypted) the payload, so that this organisation can read what it sent."""
        data = encode_payload(payload)
        cert = self.certificate()
        bundles = {org: (await self.recipient(org))[1] for org in orgs}
        created = self.now()
        try:
            envelope = seal(
                message_id=new_message_id(self._rng),
                network=self.keys.network,
                sender=cert,
                sender_key=self.keys.signing_key,
                recipients=bundles,
                kind=kind,
                payload=data,
                pseudonyms=pseudonyms,
                status=status,
                ref=ref,
                case=case,
                created=created,
                rng=self._rng,
            )
        except ProtocolError as exc:
            raise PayloadInvalid(str(exc)[:200], "header") from exc
        message_id, accepted, _ = await self.hub.send(envelope)
        self.state.record_sent(
            message_id, kind=kind, recipients=tuple(orgs), created=created, now=self.now(),
            accepted=accepted,
        )  # fmt: skip
        sealed = self.payload_box.seal(message_id, kind, payload, self._rng)
        self.state.keep_sent_payload(
            SentPayload(message_id, kind, ref, case, status, created, sealed)
        )
        return message_id

    @property
    def payload_box(self) -> PayloadBox:
        """The key that keeps sent payloads encrypted at rest (see :class:`PayloadBox`)."""
        if self._box is None:
            self._box = PayloadBox.for_signing_key(self.keys.signing_key, self.org)
        return self._box

    def sent_payload(self, message_id: str) -> dict[str, Any] | None:
        """What this organisation wrote in a message it sent; None if it kept nothing."""
        kept = self.state.sent_payload(message_id)
        if kept is None:
            return None
        payload = self.payload_box.open(kept.id, kept.kind, kept.sealed)
        if not isinstance(payload, dict):
            raise VerificationFailed("stored sent payload", reason="not an object")
        return payload

    # -- case work (clients.casework) --------------------------------------------------

    async def send_referral(
        self,
        payload: dict[str, Any],
        to: str,
        case: str | None = None,
        replaces: str | None = None,
    ) -> MessageId:
        """Refer a person to one shelter, care or legal-aid organisation (see casework)."""
        return await casework.send_referral(self, payload, to, case=case, replaces=replaces)

    async def send_status(self, referral_id: str, code: str, payload: dict[str, Any]) -> MessageId:
        """Move a referral on: a status to the referral's other party (see casework)."""
        return await casework.send_status(self, referral_id, code, payload)

    async def case_view(self, ref: str) -> casework.CaseView:
        """The coordinator's case, with what it may read of each message inline."""
        return await casework.case_view(self, ref)

    async def comensha(
        self, out_registrations: str | os.PathLike[str], out_statistics: str | os.PathLike[str]
    ) -> tuple[int, int]:
        """Write the CoMensha CSVs for every case; (registration rows, statistics rows)."""
        return await casework.write_comensha(self, out_registrations, out_statistics)

    # -- receiving ---------------------------------------------------------------------

    async def receive(self) -> ReceiveResult:
        """Page through the inbox from the stored cursor; verify, store and ack each message."""
        received: list[ReceivedMessage] = []
        rejected: list[RejectedMessage] = []
        await self._current_crl(self.now())
        await self.log.check_if_due()
        while True:
            after = self.state.cursor
            page = await self.hub.inbox(after=after, limit=INBOX_PAGE)
            for item in page.messages:
                if item.cursor <= self.state.cursor:
                    continue  # a hub that repeats itself: nothing to do twice
                outcome = await self._process(item)
                if isinstance(outcome, ReceivedMessage):
                    received.append(outcome)
                elif isinstance(outcome, RejectedMessage):
                    rejected.append(outcome)
                self.state.advance_cursor(item.cursor)
            if not page.messages or self.state.cursor <= after:
                return ReceiveResult(tuple(received), tuple(rejected))

    async def _process(self, item: InboxItem) -> ReceivedMessage | RejectedMessage | None:
        header = _object(item.envelope).get("header")
        # Only well-formed ids and org names from a rejected envelope reach state or a terminal.
        label = _valid(parse_message_id, _object(header).get("id")) or f"cursor-{item.cursor}"
        sender = _valid(parse_org_id, _object(header).get("sender"))
        try:
            envelope = _parse_envelope(item.envelope)
            if self.state.message(envelope.header.id) is not None:
                await self._ack(envelope.header.id)
                return None
            message = await self._open(envelope, item.cursor)
        except _Rejected as rejection:
            self.state.record_rejected(
                label, cursor=item.cursor, reason=rejection.reason, now=self.now()
            )
            return RejectedMessage(label, item.cursor, sender, rejection.reason)
        self.state.store_message(
            message_id=message.id,
            cursor=item.cursor,
            sender=message.sender,
            kind=message.kind,
            created=message.created,
            envelope=envelope.to_wire(),
            now=self.now(),
        )
        await self._ack(message.id)
        return message

    async def _ack(self, message_id: MessageId) -> None:
        await self.hub.ack(message_id)
        self.state.mark_acked(message_id, now=self.now())

    async def _open(self, envelope: Envelope, cursor: int) -> ReceivedMessage:
        header = envelope.header
        if header.network != self.keys.network or self.org not in header.recipients:
            raise _Rejected(REASON_ENVELOPE)
        cert = await self._sender_certificate(header.sender, header.sender_cert)
        return self._decrypt(envelope, cert, cursor)

    async def _sender_certificate(self, org: str, fingerprint: str) -> Certificate:
        try:
            cert, _ = await self._directory(org, fresh=False)
            if cert.fingerprint != fingerprint:
                cert, _ = await self._directory(org, fresh=True)
        except VerificationFailed as exc:
            raise _Rejected(REASON_SENDER) from exc
        except UnknownOrganisation as exc:
            raise _Rejected(REASON_SENDER) from exc
        if cert.fingerprint != fingerprint:
            raise _Rejected(REASON_SENDER)
        return cert

    def _decrypt(self, envelope: Envelope, cert: Certificate, cursor: int) -> ReceivedMessage:
        header = envelope.header
        try:
            plaintext = open_envelope(
                envelope, recipient=self.org, kem_keys=self.keys.kem_keys, sender=cert
            )
        except OpenError as exc:
            raise _Rejected(REASON_ENVELOPE) from exc
        try:
            payload = decode_payload(header.kind, plaintext)
        except PayloadInvalid as exc:
            raise _Rejected(REASON_PAYLOAD) from exc
        return ReceivedMessage(
            id=header.id,
            cursor=cursor,
            sender=header.sender,
            kind=header.kind,
            created=header.created,
            pseudonyms=header.pseudonyms,
            payload=payload,
            recipients=header.recipients,
            case=header.case,
            ref=header.ref,
            status=header.status,
        )

    def show(self, message_id: str) -> ReceivedMessage:
        """Open a stored message again (its sender certificate as verified on receipt)."""
        stored = self.state.message(message_id)
        if stored is None:
            raise NotReady(f"no message {message_id[:32]!r} here: run 'schakel org inbox' first")
        try:
            envelope = _parse_envelope(stored.envelope)
            der = self.state.certificate(envelope.header.sender_cert, root=self._root_fp)
            if der is None:
                raise _Rejected(REASON_SENDER)
            cert = self._verify_cert(stored.sender, der, stored.received_at, None)
            return self._decrypt(envelope, cert, stored.cursor)
        except (_Rejected, VerificationFailed) as exc:
            raise VerificationFailed("stored message", stored.sender) from exc

    async def read_message(self, message_id: str) -> ReceivedMessage:
        """A message addressed to us: from local state, else fetched from the hub.

        A fetched envelope (``GET /v1/messages/{id}``) is verified exactly as on receipt
        (network, recipient, sender certificate, signature, payload schema) and must be
        the message asked for; it is neither stored nor acknowledged here (the inbox does
        that). VerificationFailed when it does not verify.
        """
        if self.state.message(message_id) is not None:
            return self.show(message_id)
        cursor, wire = await self.hub.get_message(message_id)
        try:
            envelope = _parse_envelope(wire)
            if envelope.header.id != message_id:
                raise _Rejected(REASON_ENVELOPE)
            await self._current_crl(self.now())
            return await self._open(envelope, cursor or 0)
        except _Rejected as exc:
            raise VerificationFailed("message", reason=exc.reason) from None

    async def watch(self) -> AsyncIterator[ReceivedMessage | RejectedMessage]:
        """Everything waiting, then each new message as the hub announces it.

        What waits is read once the WebSocket is open, so nothing that arrives in between
        goes unannounced. Ends when the hub closes the WebSocket; reconnecting (and so
        reading what waits again) is the caller's choice.
        """
        async for notice in self.hub.notifications(opened=True):
            if notice is not None and notice.cursor <= self.state.cursor:
                continue
            for item in _items(await self.receive()):
                yield item


def _items(result: ReceiveResult) -> list[ReceivedMessage | RejectedMessage]:
    return [*result.messages, *result.rejected]


def _valid(parse: Callable[[object], str], value: object) -> str | None:
    try:
        return parse(value)
    except ProtocolError:
        return None


def _org(value: str) -> str:
    try:
        return parse_org_id(value)
    except ProtocolError as exc:
        raise PayloadInvalid(str(exc), "recipients") from exc


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _has_fields(identity: Identity) -> bool:
    return any(getattr(identity, name) is not None for name in Identity.__dataclass_fields__)


def _parse_envelope(wire: Any) -> Envelope:
    try:
        return Envelope.from_wire(wire)
    except ProtocolError as exc:
        raise _Rejected(REASON_MALFORMED) from exc
