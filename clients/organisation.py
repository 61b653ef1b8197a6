"""One organisation's keys, local state and hub connection, working together.

:class:`Organisation` is the client library's facade: the command line and the desk
use it and nothing below it. Its methods return frozen records and raise the errors
of :mod:`clients.errors`; none prints, prompts or exits. What it is made of:

* :class:`~clients.directory.Directory`: everything the hub serves about other
  organisations (certificates, key bundles, the revocation list), verified before use;
* :class:`~clients.logwatch.LogWatch`: the hub's access log, checked at every contact,
  with a witnessing round (:mod:`clients.witnessing`) when the organisation has a witness
  key: it cosigns the heads it checked and relies only on heads that meet the quorum;
* :class:`~clients.outbox.Outbox`: every message written goes through it, so nothing
  is lost while the hub can not be reached;
* :class:`~clients.inbox.Inbox`: receiving, verifying and opening messages;
* :mod:`clients.referrals` and :mod:`clients.caseview`: referrals, statuses and the
  coordinator's case view, which use an organisation through narrow interfaces.

Sending validates the payload, writes the message to the outbox and sends what waits
there (:meth:`Organisation.send_outbox`). Pseudonyms come from the two pseudonymisation
services on an OPRF network (:mod:`clients.linking`: made when the message is sealed, so
that it waits in the outbox while a service can not answer), else from the linking key
(derived locally before the message is kept). The result is a
:class:`~clients.outbox.Sent`: accepted by the hub, or waiting in the outbox with the
reason. A refusal (the hub's, or a recipient that does not verify) is raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from clients import caseview, referrals, sentview
from clients.comensha import write_comensha
from clients.directory import Directory
from clients.errors import (
    ClientError,
    Erased,
    HubProblem,
    HubUnreachable,
    NotReady,
    PayloadInvalid,
    VerificationFailed,
)
from clients.exports import check_new_files
from clients.hub_client import HubClient, Purpose
from clients.inbox import Inbox, ReceivedMessage, ReceiveResult, RejectedMessage
from clients.linking import Linked, Linking
from clients.localbox import PayloadBox
from clients.logwatch import CHECK_SECONDS, LogWatch
from clients.outbox import Draft, Outbox, OutboxReport, Sent
from clients.payloads import (
    Unlinked,
    check_dates,
    day_of,
    encode_payload,
    identity_of,
    link_problem,
    validate_payload,
)
from clients.pseudonymise import Signer
from clients.state import LocalState
from clients.witnessing import QUORUM_WAIT, Witnessing
from keys.errors import KeysError
from keys.organisation import OrgKeys
from keys.witness import WitnessKeys
from protocol.certificate import Certificate, RevocationList, load_root
from protocol.envelope import Envelope, new_message_id, seal
from protocol.errors import ProtocolError
from protocol.keybundle import KeyBundle
from protocol.pseudonym import Identity, derive_pseudonyms, normalised_values
from protocol.types import CaseRef, Fingerprint, MessageId, OrgId, Pseudonym, parse_org_id

# The facade's records, importable from here (some are defined beside their logic).
__all__ = [
    "ComenshaFiles",
    "Organisation",
    "Published",
    "ReceiveResult",
    "ReceivedMessage",
    "RejectedMessage",
    "RetiredKey",
    "Rotation",
    "Sent",
]


class Published(NamedTuple):
    """What :meth:`Organisation.publish` put on the hub: two fingerprints."""

    certificate: Fingerprint
    bundle: Fingerprint


@dataclass(frozen=True, slots=True)
class Rotation:
    """A key rotation: the new current bundle, and the older keys still kept.

    ``published`` is False when the hub could not take the new bundle (``problem`` says
    why): the new key is current here all the same, and :meth:`Organisation.publish`
    publishes it later.
    """

    key: int  # the new KEM key's number
    bundle: KeyBundle
    retired: tuple[int, ...]
    published: bool = True
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class RetiredKey:
    """An older KEM key, kept so that messages sealed to it still open.

    ``valid_until`` is when its last bundle stops being valid: until then a sender may
    still seal to it. ``messages`` counts the stored messages sealed to it.
    """

    key: int
    bundles: tuple[Fingerprint, ...]
    valid_until: int
    messages: int


@dataclass(frozen=True, slots=True)
class ComenshaFiles:
    """The CoMensha files written: rows in each, and the registrations (by case) in which
    signals disagree about a personal field (see :mod:`clients.comensha`)."""

    registrations: int
    statistics: int
    disagreements: tuple[tuple[str, str], ...]  # (case reference, fields)


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
        quorum_wait: float = QUORUM_WAIT,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._keys = keys
        self._state = state
        self._hub = hub
        self._clock = clock
        self._rng = rng
        self._log_interval = log_interval
        self._log: LogWatch | None = None
        self._quorum_wait = quorum_wait
        self._sleep = sleep
        self._witness: WitnessKeys | None = None
        self.payload_box = PayloadBox.for_signing_key(
            keys.signing_key, keys.org, state.message_keys
        )
        self.directory = Directory(lambda: keys.root.der, state, hub, clock=clock)
        self.linking = Linking(lambda: keys.root.der, state, hub, clock=clock, rng=rng)
        self.outbox = Outbox(state, self.payload_box, clock=clock)
        self.inbox = Inbox(
            keys,
            state,
            hub,
            self.directory,
            self.payload_box,
            before_contact=self._before_receiving,
            clock=clock,
        )
        self.inbox.reseal()  # a version-1 state: what it kept, under message keys now

    def __repr__(self) -> str:
        return f"Organisation({self.org!r})"

    # -- who we are ------------------------------------------------------------------

    @property
    def keys(self) -> OrgKeys:
        return self._keys

    @property
    def state(self) -> LocalState:
        return self._state

    @property
    def hub(self) -> HubClient:
        return self._hub

    @property
    def org(self) -> OrgId:
        return self._keys.org

    def now(self) -> int:
        return int(self._clock())

    def certificate(self) -> Certificate:
        """Our own certificate; NotReady until it has been imported."""
        cert = self._keys.certificate
        if cert is None:
            raise NotReady("no certificate imported yet: run 'schakel org import-cert CERT.pem'")
        return cert

    @property
    def log(self) -> LogWatch:
        """This client's memory of the hub's access log (the last verified tree head)."""
        if self._log is None:
            self._log = LogWatch(
                self._state,
                self._hub,
                root_der=self._keys.root.der,
                network=self._keys.network,
                crl=self.directory.crl,
                clock=self._clock,
                interval=self._log_interval,
                witnessing=Witnessing(
                    self._state,
                    self._hub,
                    root=lambda now: load_root(self._keys.root.der, now=now),
                    witness=self.witness_keys,
                    crl=self.directory.crl,
                    clock=self._clock,
                    evidence_dir=self._state.path.parent / "evidence",
                    observer=f"client/{self.org}",
                    quorum_wait=self._quorum_wait,
                    sleep=self._sleep,
                ),
            )
        return self._log

    def witness_keys(self) -> WitnessKeys | None:
        """This organisation's witness key directory (``schakel org witness-key``), if any."""
        if self._witness is None:
            self._witness = WitnessKeys.open_beside(self._keys)
        return self._witness

    @property
    def alerts(self) -> tuple[dict[str, Any], ...]:
        """Alerts for the privacy officer, oldest first: each a small record without content
        (``kind`` such as ``split-view``, ``at``, ``size``, ``reason``, ``evidence``)."""
        return tuple(self._state.alerts())

    # -- publishing and keys -----------------------------------------------------------

    async def publish(self) -> Published:
        """Publish our certificate, then our current key bundle; their fingerprints."""
        cert = self.certificate()
        await self._hub.publish_certificate(cert.der)
        await self.log.check_if_due()  # the first request that can authenticate
        bundle = self._keys.current_bundle(now=self.now())
        await self._hub.publish_bundle(bundle)
        return Published(cert.fingerprint, bundle.fingerprint)

    async def rotate_keys(self) -> Rotation:
        """A new KEM key pair and bundle, published; older keys are kept (see retired_keys).

        The key is rotated locally first: if the hub can not take the bundle now, the new
        key is current all the same (``published`` False) and :meth:`publish` publishes
        it later.
        """
        self.certificate()
        bundle = self._keys.rotate_kem(now=self.now(), rng=self._rng)
        rotation = Rotation(self._keys.kem_current, bundle, self._retired_ids())
        try:
            await self.publish()
        except (HubUnreachable, HubProblem) as exc:
            return dataclasses.replace(rotation, published=False, problem=str(exc)[:300])
        return rotation

    def _retired_ids(self) -> tuple[int, ...]:
        return tuple(i for i in self._keys.kem_ids if i != self._keys.kem_current)

    def retired_keys(self) -> tuple[RetiredKey, ...]:
        """The older KEM keys still kept, with how long a sender may still seal to them."""
        sealed_to: dict[str, int] = {}
        for stored in self._state.messages():
            key = stored.recipient_keys.get(self.org)
            if key is not None:
                sealed_to[key] = sealed_to.get(key, 0) + 1
        found = []
        for index in self._retired_ids():
            bundles = self._keys.bundles(index)
            prints = tuple(b.fingerprint for b in bundles)
            until = max((b.not_after for b in bundles), default=0)
            found.append(RetiredKey(index, prints, until, sum(sealed_to.get(p, 0) for p in prints)))
        return tuple(found)

    async def delete_retired_keys(self, *, before_expiry: bool = False) -> tuple[int, ...]:
        """Delete the older KEM keys; the numbers of the keys deleted.

        First the inbox is read (:meth:`receive`), so every message sealed to an older key
        that waits on the hub is received and acknowledged; the payload of each stored
        message sealed to a key is then kept sealed locally, so :meth:`show` still reads
        it. A key whose bundle may still be sealed to (``valid_until`` in the future) is
        kept unless ``before_expiry``: a message sealed to it later could not be opened.
        """
        await self.receive()
        now = self.now()
        deleted = []
        for retired in self.retired_keys():
            if retired.valid_until > now and not before_expiry:
                continue
            self.inbox.keep_payloads(set(retired.bundles))
            self._keys.delete_kem(retired.key)
            deleted.append(retired.key)
        return tuple(deleted)

    async def destroy_linking_keys(self) -> tuple[int, ...]:
        """Destroy every linking key held whose transition window has ended; their versions.

        Only on an OPRF network (the services carry the links from now on), and only for a
        version the authority retired (root-signed, served by the hub) whose ``until`` has
        passed: before that, signals must still carry its pseudonyms. NotReady otherwise,
        saying what is missing.
        """
        held = sorted(self._keys.linking_keys)
        if not held:
            raise NotReady("this organisation holds no linking key")
        if await self.linking.key_set() is None:
            raise NotReady(
                "the network is not on the pseudonymisation services yet: the linking key is "
                "still the only way to link signals"
            )
        retirements = await self.linking.retirements()
        now = self.now()
        open_ = [v for v in held if v not in retirements or not retirements[v].retired_at(now)]
        if open_:
            raise NotReady(
                f"the transition window of linking key version(s) {open_} has not ended: the "
                "authority retires a version ('schakel authority retire-linking-key') and the "
                "window ends at its date"
            )
        for version in held:
            self._keys.destroy_linking_key(version)
        return tuple(held)

    async def fetch_linking_keys(self) -> list[int]:
        """Fetch, verify (root signature) and store the linking keys sealed to us."""
        versions = []
        for sealed in await self._hub.get_linking_keys():
            if sealed.version in self._keys.destroyed_linking_keys:
                continue  # retired and destroyed here: never taken again
            try:
                key = self._keys.store_linking_key(sealed, now=self.now())
            except (KeysError, ProtocolError) as exc:
                raise VerificationFailed("sealed linking key", self.org, str(exc)[:120]) from exc
            versions.append(key.version)
        return sorted(set(versions))

    async def derive_pseudonyms(self, identity: Identity) -> tuple[Pseudonym, ...]:
        """Every pseudonym of ``identity``, sorted: on an OPRF network from both
        pseudonymisation services (one round trip), else with the current linking key."""
        try:
            values = normalised_values(identity)
        except ProtocolError as exc:
            raise PayloadInvalid(str(exc), "$.person") from exc
        if values and await self.linking.on_oprf():
            return await self._oprf_pseudonyms(identity, sorted(values.items()))
        return self.linking_key_pseudonyms(identity)

    async def _oprf_pseudonyms(
        self, identity: Identity, values: list[tuple[str, str]]
    ) -> tuple[Pseudonym, ...]:
        """The services' pseudonyms and, during the transition window (a linking key still
        held, its version not retired), the linking key's too: a message carries both."""
        made = await self.linking.pseudonyms(self.signer(), values)
        if not self._keys.linking_keys:
            return made
        key = self._keys.current_linking_key
        if not await self.linking.in_window(key.version):
            return made
        return tuple(sorted({*made, *derive_pseudonyms(identity, key)}))

    def signer(self) -> Signer:
        """Our certified signing key, as the pseudonymisation services authenticate us."""
        return Signer(self._keys.signing_key, self.certificate())

    def linking_key_pseudonyms(self, identity: Identity) -> tuple[Pseudonym, ...]:
        """Pseudonyms of ``identity`` with the current linking key (derived locally)."""
        try:
            key = self._keys.current_linking_key
        except KeysError as exc:
            raise NotReady("no linking key yet: run 'schakel org linking-key fetch'") from exc
        try:
            return derive_pseudonyms(identity, key)
        except ProtocolError as exc:
            raise PayloadInvalid(str(exc), "$.person") from exc

    def pseudonyms_of(self, payload: dict[str, Any]) -> tuple[Pseudonym, ...]:
        """The linking-key pseudonyms of the payload's ``person``: none when no identifier
        links (then no linking key is needed, but every field given is still checked)."""
        identity = identity_of(payload)
        try:
            linkable = normalised_values(identity)
        except ProtocolError as exc:
            raise PayloadInvalid(str(exc), "$.person") from exc
        return self.linking_key_pseudonyms(identity) if linkable else ()

    async def link(self, payload: dict[str, Any]) -> Linked:
        """How the payload's ``person`` is linked (every field given is checked first): on
        an OPRF network by pseudonyms the services make when the message is sealed, else
        by linking-key pseudonyms made now; nothing when no identifier links."""
        identity = identity_of(payload)
        try:
            linkable = normalised_values(identity)
        except ProtocolError as exc:
            raise PayloadInvalid(str(exc), "$.person") from exc
        if not linkable:
            return Linked()
        if await self.linking.on_oprf():
            return Linked(later=True)
        return Linked(self.linking_key_pseudonyms(identity))

    # -- trust -------------------------------------------------------------------------

    async def revocation_list(self) -> RevocationList:
        """The current revocation list, verified against the root (cached for a while)."""
        return await self.directory.crl(self.now())

    async def trust_anchors(self) -> None:
        """Our certificate, then the trust anchors: the revocation list needs no login, the
        log's head does."""
        self.certificate()
        await self.directory.crl(self.now())
        await self.log.check_if_due()

    async def _before_receiving(self) -> None:
        await self.directory.crl(self.now())
        await self.log.check_if_due()

    async def recipient(self, org: str) -> tuple[Certificate, KeyBundle]:
        """A recipient's certificate and key bundle, both verified (fetched fresh)."""
        return await self.directory.recipient(_org(org))

    def recipients_of(self, kind: str, recipients: Iterable[str]) -> list[OrgId]:
        """The recipients, checked and sorted; never empty, never this organisation."""
        orgs = sorted({OrgId(_org(org)) for org in recipients})
        if not orgs:
            raise PayloadInvalid(f"a {kind} needs at least one recipient", "recipients")
        if self.org in orgs:
            raise PayloadInvalid(f"an organisation can not send a {kind} to itself", "recipients")
        return orgs

    # -- sending -----------------------------------------------------------------------

    async def send_signal(
        self, payload: dict[str, Any], recipients: Iterable[str], *, unlinked: bool = False
    ) -> Sent:
        """Validate a signal and send it (through the outbox) to every recipient.

        A signal whose person can not be linked to any other (no BSN, phone, travel
        document with country, or name with date of birth) raises
        :class:`~clients.payloads.Unlinked` unless ``unlinked`` confirms it is meant so.
        """
        validate_payload("signal", payload)
        check_dates(payload, today=day_of(self.now()))
        self.certificate()
        orgs = self.recipients_of("signal", recipients)
        problem = link_problem(identity_of(payload))
        if problem is not None and not unlinked:
            raise Unlinked(
                f"no identifier can link this signal to another one ({problem}); it becomes "
                "a case of its own: confirm that this is what you mean",
                "$.person",
            )
        linked = await self.link(payload)
        return await self.dispatch(
            "signal", payload, orgs, pseudonyms=linked.pseudonyms, pseudonymise=linked.later
        )

    async def send_referral(
        self,
        payload: dict[str, Any],
        to: str,
        case: str | None = None,
        replaces: str | None = None,
    ) -> Sent:
        """Refer a person to one shelter, care or legal-aid organisation (see referrals)."""
        return await referrals.send_referral(self, payload, to, case=case, replaces=replaces)

    async def send_status(self, referral_id: str, code: str, payload: dict[str, Any]) -> Sent:
        """Move a referral on: a status to the referral's other party (see referrals)."""
        return await referrals.send_status(self, referral_id, code, payload)

    async def dispatch(
        self,
        kind: str,
        payload: dict[str, Any],
        orgs: list[OrgId],
        *,
        pseudonyms: tuple[Pseudonym, ...] = (),
        pseudonymise: bool = False,
        status: str | None = None,
        ref: MessageId | None = None,
        case: CaseRef | None = None,
    ) -> Sent:
        """Put a validated payload in the outbox under a new message id, then send what
        waits; what became of it. A refusal of this message is raised. With
        ``pseudonymise`` the person's pseudonyms are made by the pseudonymisation services
        when the message is sealed."""
        self.certificate()
        encode_payload(payload)  # refuse what has no canonical form before keeping it
        author, purpose = self._hub.acting or (None, None)
        draft = Draft(
            id=new_message_id(self._rng),
            kind=kind,
            payload=payload,
            recipients=tuple(orgs),
            created=self.now(),
            pseudonyms=pseudonyms,
            ref=ref,
            case=case,
            status=status,
            pseudonymise=pseudonymise,
            author=author,
            purpose=None if purpose is None else purpose.code,
            purpose_text=None if purpose is None else purpose.text,
        )
        self.outbox.put(draft)
        report = await self.send_outbox()
        return _outcome(draft, report)

    async def send_outbox(self) -> OutboxReport:
        """Send what waits in the outbox, oldest first (see :mod:`clients.outbox`)."""
        return await self.outbox.send(self)

    def waiting_about(self, ref: str) -> list[Draft]:
        return self.outbox.waiting_about(ref)

    async def seal(self, draft: Draft) -> Envelope:
        """Seal a draft to its recipients' bundles (verified fresh): for the outbox. A draft
        whose pseudonyms are still to be made gets them from the services first."""
        await self.trust_anchors()
        pseudonyms = draft.pseudonyms
        if draft.pseudonymise:
            identity = identity_of(dict(draft.payload))
            values = normalised_values(identity)
            pseudonyms = await self._oprf_pseudonyms(identity, sorted(values.items()))
        bundles = {org: (await self.recipient(org))[1] for org in draft.recipients}
        try:
            return seal(
                message_id=draft.id,
                network=self._keys.network,
                sender=self.certificate(),
                sender_key=self._keys.signing_key,
                recipients=bundles,
                kind=draft.kind,
                payload=encode_payload(dict(draft.payload)),
                pseudonyms=pseudonyms,
                status=draft.status,
                ref=draft.ref,
                case=draft.case,
                prev={  # (another process may have sent this very draft meanwhile)
                    OrgId(org): MessageId(last)
                    for org, last in self._state.previous_to(draft.recipients).items()
                    if last != draft.id
                },
                created=draft.created,
                rng=self._rng,
            )
        except ProtocolError as exc:
            raise PayloadInvalid(str(exc)[:200], "header") from exc

    async def check_sent(self, *, older_than: int) -> tuple[sentview.SentCheck, ...]:
        """Sent messages the hub lost (for some recipient), or that were not acknowledged
        ``older_than`` seconds after the hub accepted them (see :mod:`clients.sentview`)."""
        await self.log.check_if_due()
        return await sentview.check_sent(
            self._state, self._hub, now=self.now(), older_than=older_than
        )

    async def resend(self, message_id: str) -> sentview.Resent:
        """Send a sent message again, unchanged, from the envelope kept locally."""
        await self.log.check_if_due()
        return await sentview.resend(self._state, self._hub, self.payload_box, message_id)

    def acting_as(self, draft: Draft) -> contextlib.AbstractContextManager[None]:
        """Hub requests inside name the person who wrote ``draft`` and their purpose (a
        draft written while a desk acted for a person), so that the access log names its
        author whoever sends it (the desk's background sender); else they change nothing."""
        if draft.author is None:
            return contextlib.nullcontext()
        purpose = None if draft.purpose is None else Purpose(draft.purpose, draft.purpose_text)
        return self._hub.acting_for(draft.author, purpose)

    async def post(self, envelope: Envelope) -> int:
        """Post a sealed envelope (retries post the same bytes); when the hub accepted it."""
        await self.log.check_if_due()
        _, accepted, _ = await self._hub.send(envelope)
        return accepted

    def sent_payload(self, message_id: str) -> dict[str, Any] | None:
        """What this organisation wrote in a message it sent; None if it kept nothing."""
        written = self.written(message_id)
        return None if written is None else written[1]

    def written(self, message_id: str) -> tuple[str, dict[str, Any]] | None:
        """(kind, payload) of a message this organisation sent; None if it kept nothing."""
        kept = self._state.sent_payload(message_id)
        if kept is None:
            if self._state.erased(message_id):
                raise Erased(message_id)
            return None
        return kept.kind, self.payload_box.open_object(kept.id, kept.kind, kept.sealed)

    # -- receiving ---------------------------------------------------------------------

    async def receive(self) -> ReceiveResult:
        """Read the inbox: verify, store and acknowledge each new message."""
        return await self.inbox.receive()

    async def resync(self) -> ReceiveResult:
        """Read the whole inbox again from its start, once a restore of the hub is
        confirmed (after :class:`~clients.errors.InboxWentBack`); nothing is taken twice."""
        return await self.inbox.resync()

    def show(self, message_id: str) -> ReceivedMessage:
        """Open a stored message again."""
        return self.inbox.show(message_id)

    async def read_message(self, message_id: str, *, from_hub: bool = False) -> ReceivedMessage:
        """A message addressed to us: from local state, else fetched and verified; with
        ``from_hub`` always fetched, so that the hub's access log names who read it."""
        return await self.inbox.read_message(message_id, from_hub=from_hub)

    def watch(self) -> AsyncIterator[ReceivedMessage | RejectedMessage]:
        """Everything waiting, then each new message as the hub announces it."""
        return self.inbox.watch()

    # -- the coordinator ---------------------------------------------------------------

    async def case_view(self, ref: str) -> caseview.CaseView:
        """The coordinator's case, with what it may read of each message inline; the
        messages of it held here join its case for retention (clients.retention)."""
        view = await caseview.case_view(self, ref)
        self._state.join_case(caseview.messages_of(view), view.case.summary.case)
        return view

    async def comensha(
        self, out_registrations: str | os.PathLike[str], out_statistics: str | os.PathLike[str]
    ) -> ComenshaFiles:
        """Write the CoMensha CSVs for every case (new files, 0600, both or neither)."""
        check_new_files((Path(out_registrations), Path(out_statistics)))
        materials = await caseview.materials(self)
        registrations, statistics = write_comensha(materials, out_registrations, out_statistics)
        disagreements = tuple(
            (str(row["case_ref"]), str(row["disagreements"]))
            for row in registrations
            if row["disagreements"]
        )
        return ComenshaFiles(len(registrations), len(statistics), disagreements)


def _outcome(draft: Draft, report: OutboxReport) -> Sent:
    """What became of ``draft`` in one pass of the outbox; its refusal is raised."""
    for sent in report.sent:
        if sent.id == draft.id:
            return sent
    error = report.errors.get(draft.id)
    if error is not None:
        raise error
    waiting = next((entry for entry in report.waiting if entry.id == draft.id), None)
    if waiting is None:
        raise ClientError(f"message {draft.id} left the outbox unsent")
    problem = waiting.problem or "messages written before it wait in the outbox"
    return Sent(
        draft.id, draft.kind, draft.recipients, draft.pseudonyms, draft.created, None, problem
    )


def _org(value: str) -> str:
    try:
        return parse_org_id(value)
    except ProtocolError as exc:
        raise PayloadInvalid(str(exc), "recipients") from exc
