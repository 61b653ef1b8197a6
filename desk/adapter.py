"""The desk's one door to the client library: every call into ``clients`` is here.

The desk holds one :class:`clients.organisation.Organisation` (keys unlocked once, at
start) and acts for one person at a time per request: :meth:`Library.acting` names that
person and the purpose (doelbinding) they chose on every hub request made inside it,
so the hub's access log records the person, not the desk. Opening a message re-reads
it from the hub as that person (``read_message(from_hub=True)``), so that every read
leaves an entry that names who read it.

What leaves this module is plain records (:class:`InboxRow`, :class:`MessageView`, ...)
made of header fields and decrypted payloads; the pages never touch the library's own
objects. The library's errors become :class:`LibraryError` with a category the pages
turn into a sentence in the person's language (never the library's English text).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from ssl import SSLContext
from types import MappingProxyType
from typing import IO, Any

from clients import caseview, referrals
from clients.comensha import (
    REGISTRATION_COLUMNS,
    STATISTICS_COLUMNS,
    disagrees,
    registration_rows,
    statistics_rows,
    write_csv,
)
from clients.errors import (
    AuditLogInconsistent,
    ClientError,
    Erased,
    HubProblem,
    HubUnreachable,
    NotReady,
    PayloadInvalid,
    UnknownOrganisation,
    VerificationFailed,
)
from clients.exports import ReportRow, report_csv
from clients.hub_client import HubClient, Purpose, Sleep
from clients.logproofs import (
    ExportChecker,
    ExportUnreadable,
    from_hub,
    parse_export_head,
    parse_export_record,
)
from clients.organisation import Organisation, ReceivedMessage, RejectedMessage
from clients.outbox import REFUSED, OutboxEntry, Sent
from clients.payloads import validate_payload
from clients.privacy_officer import DEFAULT_MAX_OBJECTS_PER_DAY, PrivacyOfficer
from clients.retention import DEFAULTS as RETENTION_DEFAULTS
from clients.retention import MAX_DAYS, LocalRetention, RetentionInvalid, plan, run
from clients.state import LocalState, StoredMessage
from keys.organisation import OrgKeys
from protocol import referral as machine
from protocol.auditlog import TreeHead
from protocol.cases import REFERRAL_TYPES, CaseSummary, OpenReferral, TimelineEntry
from protocol.certificate import (
    ROLE_COORDINATOR,
    ROLE_NETWORK_PRIVACY_OFFICER,
    ROLE_PRIVACY_OFFICER,
)
from protocol.pseudonym import Identity
from protocol.types import OrgId

log = logging.getLogger("schakel.desk")

KINDS = ("signal", "referral", "status")
_RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
ANOMALY_THRESHOLD = DEFAULT_MAX_OBJECTS_PER_DAY  # distinct objects a person touches a day
EXPORT_IN_MEMORY = 4 * 1024 * 1024  # an export larger than this waits in a temporary file


class LibraryError(Exception):
    """A library call failed; ``category`` says how, for a sentence the person reads.

    Categories: ``unreachable`` (the hub can not be reached now), ``refused`` (the hub
    refused: ``status`` holds its HTTP status), ``invalid`` (the payload does not fit its
    schema: ``field`` holds its JSON path), ``verification`` (something did not verify),
    ``not-found``, ``not-ready`` (keys or linking key missing), ``log`` (the hub's access
    log is not consistent with the head kept), ``erased`` (its case's retention period
    ended: gone, not broken).
    """

    def __init__(self, category: str, *, status: int | None = None, field: str = "") -> None:
        super().__init__(category)
        self.category = category
        self.status = status
        self.field = field


def problem_status(exc: LibraryError) -> int:
    """The HTTP status of a page that failed with ``exc``."""
    return {
        "not-found": 404,
        "erased": 410,
        "unreachable": 503,
        "verification": 502,
        "log": 502,
    }.get(exc.category, 500)


def retention_policy(
    kind: str, case_days: int | None = None, grace_days: int | None = None
) -> LocalRetention:
    """The periods of ``kind`` (either set by hand); LibraryError ``invalid`` if out of
    bounds."""
    try:
        return LocalRetention.for_kind(kind, case_days=case_days, grace_days=grace_days)
    except RetentionInvalid as exc:
        raise LibraryError("invalid") from exc


RETENTION_KINDS = tuple(sorted(RETENTION_DEFAULTS))
MAX_RETENTION_DAYS = MAX_DAYS
RetentionPolicy = LocalRetention  # the periods a desk applies (clients.retention)


@dataclass(frozen=True, slots=True)
class RetentionStatus:
    """What the organisation page shows about retention (no content, no ids)."""

    kind: str
    statutory: bool
    case_days: int
    grace_days: int
    open: int
    waiting: int
    next_due: int | None
    erased_cases: int
    last_erased: int | None


@dataclass(frozen=True, slots=True)
class ErasedCases:
    """One retention run: the hub cases erased here (their references), how many cases in
    all, and the ids of the messages erased."""

    cases: tuple[str, ...]
    count: int
    messages: tuple[str, ...]


class CaseLabelKeys:
    """Seals a desk's label of a case under the case's own key (``case:<ref>`` in the
    message-key file), destroyed when the case is erased."""

    def __init__(self, org: Organisation) -> None:
        self._box = org.payload_box

    def seal(self, case: str, label: str) -> bytes:
        return self._box.seal(f"case:{case}", "case-label", label)

    def open(self, case: str, sealed: bytes) -> str | None:
        """The label; None once the case was erased, or if it does not open."""
        try:
            label = self._box.open(f"case:{case}", "case-label", sealed)
        except (Erased, VerificationFailed):
            return None
        return label if isinstance(label, str) else None


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except HubUnreachable as exc:
        raise LibraryError("unreachable") from exc
    except HubProblem as exc:
        category = "not-found" if exc.status == 404 else "refused"
        raise LibraryError(category, status=exc.status) from exc
    except PayloadInvalid as exc:
        raise LibraryError("invalid", field=exc.path or "") from exc
    except AuditLogInconsistent as exc:
        raise LibraryError("log") from exc
    except VerificationFailed as exc:
        raise LibraryError("verification") from exc
    except Erased as exc:
        raise LibraryError("erased") from exc
    except UnknownOrganisation as exc:
        raise LibraryError("not-found") from exc
    except NotReady as exc:
        raise LibraryError("not-ready") from exc
    except ClientError as exc:
        raise LibraryError("refused") from exc


# -- records the pages show ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """A referral's step as far as this organisation knows, and who holds the next one."""

    step: str | None  # None: local state can not tell (the hub decides)
    party: str  # "referrer" or "recipient": this organisation's part
    holder: str | None  # "referrer", "recipient", or None when closed or unknown
    allowed: tuple[str, ...]  # the status codes this organisation may send now


@dataclass(frozen=True, slots=True)
class InboxRow:
    id: str
    kind: str
    sender: str
    created: int
    received: int
    status: str | None  # a status message's code
    step: Step | None  # a referral's step


@dataclass(frozen=True, slots=True)
class DeliveryAlerts:
    """What the hub lost or withheld, as this organisation's client found it (no content):
    the messages a sender named that never arrived (id, sender, the message that named it),
    and the cursor at which the hub's inbox went back (None: it did not)."""

    missing: tuple[tuple[str, str, str], ...]
    went_back: int | None

    def __bool__(self) -> bool:
        return bool(self.missing) or self.went_back is not None


@dataclass(frozen=True, slots=True)
class MessageView:
    id: str
    kind: str
    sender: str
    recipients: tuple[str, ...]
    created: int
    payload: dict[str, Any]
    status: str | None
    ref: str | None
    step: Step | None
    sent_by_us: bool = False


@dataclass(frozen=True, slots=True)
class SentRow:
    id: str
    kind: str
    recipients: tuple[str, ...]
    created: int
    accepted: int | None
    status: str | None
    step: Step | None


@dataclass(frozen=True, slots=True)
class Sending:
    """What became of a signal or answer handed to the hub: sent, or waiting in the outbox."""

    id: str
    waiting: bool


@dataclass(frozen=True, slots=True)
class QueuedRow:
    """One entry of the outbox (no content): what it is, to whom, and why it still waits.

    ``reason`` is a code for a sentence (:data:`desk.messages.OUTBOX_REASONS`): ``queued``
    (not tried yet), ``unreachable`` (no answer from the hub), ``busy`` (the hub answered
    that it can not take it now), ``behind`` (an earlier entry waits), ``refused`` (the hub
    or a recipient refused it: it is not sent again).
    """

    id: str
    kind: str
    recipients: tuple[str, ...]
    created: int
    refused: bool
    reason: str
    attempts: int
    tried_at: int | None
    status: str | None


def outbox_reason(entry: OutboxEntry) -> str:
    """The reason code of an outbox entry, from its state and the library's last problem."""
    if entry.state == REFUSED:
        return "refused"
    problem = entry.problem or ""
    if not problem:
        return "queued"
    if problem.startswith("hub answered"):
        return "busy"
    if problem.startswith("messages written before it"):
        return "behind"
    return "unreachable"


@dataclass(frozen=True, slots=True)
class OrgStatus:
    org: str
    network: str
    roles: tuple[str, ...]
    certificate_not_after: int | None
    bundle_not_after: int | None
    crl_number: int | None
    crl_this_update: int | None
    crl_next_update: int | None
    log_size: int | None
    log_time: int | None
    log_consistent: bool | None  # None: could not be checked now (hub out of reach)
    linking_key: bool
    pseudonym_services: bool  # pseudonyms come from the two services (an OPRF network)
    messages: int
    hub_reachable: bool
    split_views: tuple[SplitViewAlert, ...] = ()  # newest first
    witnesses: Witnesses | None = None  # who cosigned the head last checked (None: not asked)


@dataclass(frozen=True, slots=True)
class SplitViewAlert:
    """The hub showed this organisation another log than the one others cosigned: when,
    at which size, and the name of the evidence file kept beside the local state."""

    at: int
    size: int
    evidence: str


def _split_views(alerts: Sequence[Mapping[str, Any]]) -> tuple[SplitViewAlert, ...]:
    found = [
        SplitViewAlert(int(a["at"]), int(a["size"]), Path(str(a.get("evidence", ""))).name)
        for a in alerts
        if a.get("kind") == "split-view"
        and isinstance(a.get("at"), int)
        and isinstance(a.get("size"), int)
    ]
    return tuple(reversed(found))


@dataclass(frozen=True, slots=True)
class LogCheck:
    """What a verification of the access log proved: ``mode`` is ``full`` (every entry
    rebuilds the signed root), ``all`` (every entry this organisation may see, each with
    its inclusion proof) or ``sample`` (``checked`` random of ``visible`` entries)."""

    mode: str
    checked: int
    visible: int | None
    size: int
    time: int
    erased: int = 0  # checked entries whose personal fields were erased (not an error)


@dataclass(frozen=True, slots=True)
class AnomalyRow:
    """An unusual pattern in the access log: ``volume`` (a person touched ``count``
    distinct objects on ``day``) or ``outside-recipients`` (``count`` denied reads)."""

    kind: str
    day: str
    org: str | None
    user: str | None
    count: int


@dataclass(frozen=True, slots=True)
class AccessRow:
    """One access-log entry as the privacy officer's pages show it (no pseudonyms), proven
    against the signed head: a row of the log page, or an access to a data subject's
    messages (``objects``: how many of them it touched)."""

    index: int
    time: int
    org: str | None
    user: str | None
    role: str | None
    action: str
    purpose: str | None
    outcome: str
    object_type: str
    objects: int
    erased: bool = False  # the entry's personal fields (user, purpose text) were erased


@dataclass(frozen=True, slots=True)
class SubjectReport:
    """Every access to a data subject's messages (oldest first), each entry proven against
    the signed head of ``size`` entries; ``csv`` is the NEN 7513 overview as CSV."""

    size: int
    rows: tuple[AccessRow, ...]
    csv: str

    @property
    def erased(self) -> int:
        """Rows whose personal fields were erased (shown as "gewist")."""
        return sum(row.erased for row in self.rows)


def _access_row(row: ReportRow) -> AccessRow:
    return AccessRow(
        row.index,
        row.time,
        row.org,
        row.user,
        row.role,
        row.action,
        row.purpose,
        row.outcome,
        row.object_type,
        len(row.objects),
        row.erased,
    )


@dataclass(frozen=True, slots=True)
class Witnesses:
    """Who cosigned the last head: ``policy`` None means the hub holds no witness policy."""

    size: int
    policy: int | None
    quorum: int
    cosigners: tuple[str, ...]
    met: bool


@dataclass(frozen=True, slots=True)
class LogPage:
    """One page of the access log below the signed head of ``size`` entries, each row's
    inclusion proof checked against that head (``proven`` of them); ``next`` is the index
    to continue from (None: the last page)."""

    size: int
    time: int
    rows: tuple[AccessRow, ...]
    proven: int
    next: int | None
    witnesses: Witnesses | None

    @property
    def erased(self) -> int:
        """Rows whose personal fields were erased (shown as "gewist")."""
        return sum(row.erased for row in self.rows)


@dataclass(frozen=True, slots=True)
class ReferralRow:
    """An open referral as the coordinator's pages show it (times in seconds)."""

    id: str
    case: str
    referrer: str
    recipient: str
    recipient_type: str
    step: str
    step_at: int
    holder: str  # the organisation that holds the next step
    age: int
    waiting: int
    due: int | None
    overdue: bool


@dataclass(frozen=True, slots=True)
class CaseRow:
    """One case as the cases page lists it (``orgs``: (organisation, its type))."""

    case: str
    state: str
    signals: int
    first_signal: int | None
    last_activity: int | None
    orgs: tuple[tuple[str, str], ...]
    open_referrals: int
    referral: ReferralRow | None  # the open referral shown: overdue first


@dataclass(frozen=True, slots=True)
class TimelineRow:
    """One entry of a case's timeline, with what this organisation can read of it.

    ``readable`` is one of :mod:`clients.caseview`'s states (``opened``, ``sent``, ``not
    addressed to you``, ...); ``payload`` is the decrypted content when it could be read;
    ``linked_by`` names the kinds of identifier (pseudonym types, never values) that a
    signal shares with another signal of the case."""

    at: int
    type: str
    message: str | None
    sender: str | None
    sender_type: str | None
    code: str | None
    referral: str | None
    other: str | None
    automatic: bool | None
    moved: int
    readable: str | None
    payload: dict[str, Any] | None
    linked_by: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CaseFile:
    """A case with its timeline decrypted inline where this organisation may read it."""

    row: CaseRow
    merged_from: str | None
    referrals: tuple[ReferralRow, ...]
    timeline: tuple[TimelineRow, ...]
    truncated: bool


# -- the coordinator's overview and CoMensha files -------------------------------------


@dataclass(frozen=True, slots=True)
class SignalFact:
    """A signal received here, as the overview counts it: when it was written, the type of
    the organisation that sent it, and its form of exploitation (from its decrypted payload)."""

    at: int
    org_type: str
    exploitation: str


@dataclass(frozen=True, slots=True)
class ReferralFact:
    """A referral this organisation sent: when, and when each later step was first
    reported (None: not (yet) reached), from the statuses sent and received here."""

    sent: int
    accepted: int | None
    care_started: int | None
    closed: int | None
    declined: int | None


@dataclass(frozen=True, slots=True)
class OverviewData:
    """What the overview's charts are drawn from: this desk's own decrypted data (and the
    hub's list of open referrals, metadata only); nothing of it is sent anywhere."""

    signals: tuple[SignalFact, ...]
    referrals: tuple[ReferralFact, ...]
    open_referrals: tuple[ReferralRow, ...]


@dataclass(frozen=True, slots=True, repr=False)
class ComenshaFiles:
    """The CoMensha registration (consented cases, with names) and anonymised statistics
    (every other case), as rows of text by column and as the CSV files to download."""

    registrations: tuple[Mapping[str, str], ...]
    statistics: tuple[Mapping[str, str], ...]
    registration_csv: str
    statistics_csv: str
    registration_columns: tuple[str, ...] = REGISTRATION_COLUMNS
    statistics_columns: tuple[str, ...] = STATISTICS_COLUMNS

    def __repr__(self) -> str:
        return f"ComenshaFiles({len(self.registrations)}, {len(self.statistics)})"


def _comensha_csv(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> str:
    buffer = io.StringIO(newline="")
    write_csv(rows, columns, buffer)
    return buffer.getvalue()


def _text_rows(rows: Sequence[Mapping[str, object]]) -> tuple[Mapping[str, str], ...]:
    return tuple(MappingProxyType({k: str(v) for k, v in row.items()}) for row in rows)


@dataclass(frozen=True, slots=True)
class LogExport:
    """A checked access-log export of the head of ``size`` entries, ``entries`` of them
    visible here: ``file`` holds it (NDJSON with proofs); the caller closes it."""

    size: int
    entries: int
    file: IO[bytes]


CASE_EVENT_KINDS = ("match", "referral", "escalation")


@dataclass(frozen=True, slots=True)
class CaseEvent:
    """An event of the hub's feed about ``case``: a ``match`` (``message`` joined the
    case, which absorbed the cases ``merged``), a ``referral`` step entered (``step``), or
    an ``escalation``."""

    id: int
    case: str
    message: str | None
    merged: tuple[str, ...]
    kind: str = "match"
    at: int = 0
    step: str | None = None


def names_that_disagree(payloads: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The name fields on which these signal payloads disagree, compared as the CoMensha
    registration compares them (:func:`clients.comensha.disagrees`)."""
    return tuple(name for name in ("given_names", "family_name") if disagrees(payloads, name))


# -- the library -----------------------------------------------------------------------


class Library:
    """One organisation's keys, state and hub connection, as the desk uses them."""

    def __init__(self, organisation: Organisation) -> None:
        self._org = organisation
        self._recipients: tuple[float, tuple[str, ...]] | None = None
        self._types: tuple[float, dict[str, str]] | None = None

    @classmethod
    def open(
        cls,
        home: Path,
        hub_url: str,
        passphrase: bytes,
        *,
        service_user: str,
        ssl: SSLContext | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> Library:
        """Unlock the key files in ``home/keys`` and open ``home/state.sqlite``; ``sleep``
        is what the hub client waits with between attempts (tests: no wait)."""
        with _translated():
            try:
                keys = OrgKeys.open(home / "keys", passphrase)
            except Exception as exc:  # keys.errors.KeysError and its kin: say which file
                raise LibraryError("not-ready") from exc
            state = LocalState(home / "state.sqlite")
            hub = HubClient(
                hub_url,
                network=keys.network,
                org=keys.org,
                signing_key=keys.signing_key,
                user=service_user,
                purpose=Purpose("signal-intake"),
                ssl=ssl,
                clock=clock,
                sleep=sleep,
            )
            return cls(Organisation(keys, state, hub, clock=clock))

    async def __aenter__(self) -> Library:
        await self._org.hub.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._org.hub.close()
        self._org.state.close()

    @property
    def case_label_keys(self) -> CaseLabelKeys:
        """Seals a case's label under the case's own key (see :mod:`desk.casebook`)."""
        return CaseLabelKeys(self._org)

    # -- retention (desk.retention) ------------------------------------------------------

    def retention_status(self, policy: LocalRetention, *, now: int) -> RetentionStatus:
        """Which periods apply, and how many cases are open, kept and erased here."""
        state = self._org.state
        report = plan(state, policy, now=now)
        shredded = state.shredded()
        return RetentionStatus(
            kind=policy.kind,
            statutory=policy.statutory,
            case_days=policy.case_days,
            grace_days=policy.grace_days,
            open=report.open,
            waiting=report.waiting,
            next_due=report.next_due,
            erased_cases=len(shredded),
            last_erased=shredded[0].at if shredded else None,
        )

    def erase_due(self, policy: LocalRetention, *, now: int) -> ErasedCases:
        """Erase every case whose period has ended (clients.retention.run)."""
        with _translated():
            report = run(self._org.state, policy, now=now)
        return ErasedCases(
            cases=tuple(c.label for c in report.due if c.scope.startswith("case:")),
            count=len(report.due),
            messages=report.erased_ids,
        )

    @property
    def local_state(self) -> LocalState:
        """The organisation's local state."""
        return self._org.state

    @property
    def org(self) -> str:
        return self._org.org

    @property
    def roles(self) -> frozenset[str]:
        cert = self._org.keys.certificate
        return frozenset() if cert is None else cert.roles

    @property
    def keys(self) -> OrgKeys:
        """The organisation's unlocked keys (the desk derives its own sealing key from them)."""
        return self._org.keys

    @contextlib.contextmanager
    def acting(self, person: str, purpose: str) -> Iterator[None]:
        """Every hub request inside names ``person`` and ``purpose`` (this task only)."""
        with _translated(), self._org.hub.acting_for(person, Purpose(purpose)):
            yield

    # -- the inbox -------------------------------------------------------------------

    def inbox(self, offset: int, limit: int) -> tuple[list[InboxRow], int]:
        """One page of received messages, newest first, and how many there are."""
        state = self._org.state
        page = state.message_page(offset, limit)
        about = _statuses_by_ref(state.messages_of_kind("status")) if page else {}
        return [self._row(m, about) for m in page], state.message_count()

    def delivery_alerts(self) -> DeliveryAlerts:
        """Missing messages and a hub inbox that went back, from local state."""
        state = self._org.state
        missing = tuple((m.id, m.sender, m.named_by) for m in state.missing())
        return DeliveryAlerts(missing, state.went_back)

    def _row(self, message: StoredMessage, about: dict[str, list[StoredMessage]]) -> InboxRow:
        step = None
        if message.kind == "referral":
            step = self._step(message.id, machine.RECIPIENT, about.get(message.id, []))
        return InboxRow(
            id=message.id,
            kind=message.kind,
            sender=message.sender,
            created=message.created,
            received=message.received_at,
            status=message.status,
            step=step,
        )

    def _step(self, ref: str, party: machine.Party, received: list[StoredMessage]) -> Step:
        step = referrals.known_step(self._org, ref, party, received=received)
        if step is None:
            return Step(None, party, None, ())
        holder = machine.HOLDER.get(step)
        return Step(step, party, holder, tuple(machine.allowed_codes(step, party)))

    async def open_message(self, message_id: str) -> MessageView:
        """A received message, re-read from the hub as the acting person, and decrypted."""
        with _translated():
            message = await self._org.read_message(message_id, from_hub=True)
        return self._view(message)

    def _view(self, message: ReceivedMessage) -> MessageView:
        step = None
        if message.kind == "referral":
            received = self._org.state.received_about(message.id)
            step = self._step(message.id, machine.RECIPIENT, received)
        return MessageView(
            id=message.id,
            kind=message.kind,
            sender=message.sender,
            recipients=message.recipients,
            created=message.created,
            payload=message.payload,
            status=message.status,
            ref=message.ref,
            step=step,
        )

    async def receive_forever(
        self,
        announce: Callable[[int], Awaitable[None]],
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Keep the hub's WebSocket (``Organisation.watch``), receive, and announce.

        ``announce(n)`` is called after each message received (``n`` = 1) or rejected
        (``n`` = 0); the hub being away is waited out with growing pauses.
        """
        failures = 0
        while True:
            try:
                async for item in self._org.watch():
                    failures = 0
                    await announce(0 if isinstance(item, RejectedMessage) else 1)
            except (ClientError, OSError) as exc:
                status = getattr(exc, "status", None)  # a hub problem's HTTP status, no more
                log.warning("desk receiving: %s %s; trying again", type(exc).__name__, status or "")
            except Exception as exc:  # never end the receiving loop silently
                log.error("desk receiving failed unexpectedly: %s; trying again",
                          type(exc).__name__)  # fmt: skip
            pause = _RETRY_SECONDS[min(failures, len(_RETRY_SECONDS) - 1)]
            failures += 1
            await sleep(pause)

    # -- sending ---------------------------------------------------------------------

    def check_signal(self, payload: dict[str, Any]) -> None:
        """LibraryError ``invalid`` unless the payload fits the signal schema."""
        with _translated():
            validate_payload("signal", payload)

    async def signal_recipients(self) -> tuple[str, ...]:
        """The organisations a signal goes to: the coordinators in the directory."""
        now = time.monotonic()
        if self._recipients is not None and now - self._recipients[0] < 300:
            return self._recipients[1]
        try:
            with _translated():
                orgs = await self._org.hub.list_orgs()
        except LibraryError as exc:  # the hub away: the last list known, so a signal can wait
            if exc.category == "unreachable" and self._recipients is not None:
                return self._recipients[1]
            raise
        found = tuple(
            sorted(
                str(o.get("org"))
                for o in orgs
                if isinstance(o, dict)
                and ROLE_COORDINATOR in (o.get("roles") or ())
                and not o.get("revoked")
                and o.get("org") != self.org
            )
        )
        self._recipients = (now, found)
        return found

    async def send_signal(
        self, payload: dict[str, Any], recipients: list[str], *, unlinked: bool
    ) -> Sending:
        """Send, or leave waiting in the outbox when the hub can not take it now;
        ``unlinked``: the person confirmed that the signal carries nothing that can link it."""
        with _translated():
            return _sending(await self._org.send_signal(payload, recipients, unlinked=unlinked))

    async def referral_recipients(self) -> tuple[tuple[str, str], ...]:
        """(org, type) of each organisation a referral may go to: certified as shelter,
        care or legal aid and not revoked, from the directory (each recipient is verified
        when the referral is sealed to it)."""
        with _translated():
            orgs = await self._org.hub.list_orgs()
        return tuple(
            sorted(
                (str(o.get("org")), str(o.get("type")))
                for o in orgs
                if isinstance(o, dict)
                and o.get("type") in REFERRAL_TYPES
                and not o.get("revoked")
                and o.get("org") != self.org
            )
        )

    async def send_referral(
        self, payload: dict[str, Any], to: str, *, case: str, replaces: str | None
    ) -> Sending:
        """Send a referral about ``case`` (or leave it waiting in the outbox); ``replaces``
        names the declined referral it takes over."""
        with _translated():
            return _sending(
                await self._org.send_referral(payload, to, case=case, replaces=replaces)
            )

    async def answer_referral(
        self, referral_id: str, code: str, payload: dict[str, Any]
    ) -> Sending:
        """Send a status about a referral (or leave it waiting in the outbox)."""
        with _translated():
            return _sending(await self._org.send_status(referral_id, code, payload))

    def local_referral(self, message_id: str) -> MessageView | None:
        """A referral received here, from local state only (no content, no hub request):
        enough to check and send an answer while the hub can not be reached."""
        stored = self._org.state.message(message_id)
        if stored is None or stored.kind != "referral":
            return None
        step = self._step(message_id, machine.RECIPIENT, self._org.state.received_about(message_id))
        return MessageView(
            id=stored.id,
            kind=stored.kind,
            sender=stored.sender,
            recipients=(),
            created=stored.created,
            payload={},
            status=None,
            ref=None,
            step=step,
        )

    # -- the outbox ------------------------------------------------------------------

    def outbox(self) -> list[QueuedRow]:
        """Every outbox entry, oldest first, with the reason it still waits."""
        with _translated():
            entries = self._org.outbox.entries()
        return [
            QueuedRow(
                id=e.id,
                kind=e.kind,
                recipients=e.recipients,
                created=e.created,
                refused=e.state == REFUSED,
                reason=outbox_reason(e),
                attempts=e.attempts,
                tried_at=e.tried_at,
                status=e.status,
            )
            for e in entries
        ]

    def waiting(self) -> int:
        """How many outbox entries wait to be sent (refused ones not counted)."""
        return sum(1 for row in self._org.state.outbox() if row.state != REFUSED)

    async def send_outbox(self) -> int:
        """Send what waits in the outbox now (oldest first); how many went out."""
        with _translated():
            return len((await self._org.send_outbox()).sent)

    def drop_refused(self, message_id: str) -> None:
        """Remove a refused entry from the outbox (a waiting one stays: it will be sent)."""
        row = self._org.state.outbox_entry(message_id)
        if row is None or row.state != REFUSED:
            raise LibraryError("not-found")
        with _translated():
            self._org.outbox.drop(message_id)

    async def send_outbox_forever(
        self,
        announce: Callable[[int], Awaitable[None]],
        *,
        every: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Every ``every`` seconds, send what waits in the outbox; ``announce(n)`` after a
        pass that sent ``n`` > 0. Never ends by itself (a failure is logged, then waited out)."""
        while True:
            await sleep(every)
            await self.send_outbox_once(announce)

    async def send_outbox_once(self, announce: Callable[[int], Awaitable[None]]) -> None:
        """One pass of the background sender: nothing to do when nothing waits."""
        if not self.waiting():
            return
        try:
            sent = await self.send_outbox()
        except LibraryError as exc:
            log.warning("desk outbox: still waiting (%s)", exc.category)
            return
        except Exception as exc:  # never end the sending loop silently
            log.error("desk outbox failed unexpectedly: %s", type(exc).__name__)
            return
        if sent:
            log.info("desk outbox: %d sent", sent)
            await announce(sent)

    # -- what we sent ----------------------------------------------------------------

    def sent(self, offset: int, limit: int) -> tuple[list[SentRow], int]:
        """One page of what this organisation sent, newest first, with each referral's step."""
        state = self._org.state
        everything = state.sent()
        total = len(everything)
        rows = []
        for sent in sorted(everything, key=lambda s: (s.sent_at, s.id), reverse=True)[
            offset : offset + limit
        ]:
            kept = state.sent_payload(sent.id)
            step = None
            if sent.kind == "referral":
                step = self._step(sent.id, machine.REFERRER, state.received_about(sent.id))
            rows.append(
                SentRow(
                    sent.id,
                    sent.kind,
                    sent.recipients,
                    sent.created,
                    sent.accepted,
                    None if kept is None else kept.status,
                    step,
                )
            )
        return rows, total

    async def open_sent(self, message_id: str) -> MessageView:
        """What this organisation sent; the hub records the acting person's read."""
        state = self._org.state
        sent = state.sent_message(message_id)
        if sent is None:
            raise LibraryError("erased" if state.erased(message_id) else "not-found")
        with _translated():
            await self._org.hub.get_message(message_id)  # the access log's entry
            payload = self._org.sent_payload(message_id)
        if payload is None:
            raise LibraryError("not-found")
        kept = state.sent_payload(message_id)
        step = None
        if sent.kind == "referral":
            step = self._step(message_id, machine.REFERRER, state.received_about(message_id))
        return MessageView(
            id=sent.id,
            kind=sent.kind,
            sender=self.org,
            recipients=sent.recipients,
            created=sent.created,
            payload=payload,
            status=None if kept is None else kept.status,
            ref=None if kept is None else kept.ref,
            step=step,
            sent_by_us=True,
        )

    def is_ours(self, message_id: str) -> bool:
        """True when a message of this id was received or sent here (erased since, too)."""
        state = self._org.state
        return (
            state.message(message_id) is not None
            or state.sent_message(message_id) is not None
            or state.erased(message_id)
        )

    # -- the coordinator -------------------------------------------------------------

    @property
    def is_coordinator(self) -> bool:
        return ROLE_COORDINATOR in self.roles

    async def open_referrals(self) -> list[ReferralRow]:
        """Every open referral the hub tracks for this coordinator, overdue first."""
        with _translated():
            found = await self._org.hub.referrals()
        return [_referral_row(r) for r in found]

    async def cases(
        self, *, state: str | None, org_type: str | None, sort: str, order: str, offset: int,
        limit: int,
    ) -> tuple[list[CaseRow], int]:  # fmt: skip
        """One page of live cases (the hub filters and sorts), each with its open referral."""
        with _translated():
            page = await self._org.hub.cases(
                state=state, type=org_type, sort=sort, order=order, offset=offset, limit=limit
            )
            shown = _first_by_case(await self.open_referrals()) if page.cases else {}
        return [_case_row(c, shown.get(c.case)) for c in page.cases], page.total

    async def cases_of(self, refs: list[str]) -> list[CaseRow]:
        """The live cases of ``refs`` (one hub request each; a case gone is left out)."""
        rows = []
        shown = _first_by_case(await self.open_referrals())
        seen = set()
        for ref in refs:
            try:
                with _translated():
                    summary = (await self._org.hub.case(ref)).summary
            except LibraryError as exc:
                if exc.category == "not-found":
                    continue
                raise
            if summary.case not in seen:
                seen.add(summary.case)
                rows.append(_case_row(summary, shown.get(summary.case)))
        return rows

    async def comensha(self) -> ComenshaFiles:
        """The CoMensha registration and statistics made from every live case, each message
        read as the acting person (the hub's access log names them); nothing is written to
        disk here and nothing leaves the desk but the download the person asked for."""
        with _translated():
            materials = await caseview.materials(_ReadAsPerson(self._org))
            registrations = registration_rows(materials)
            statistics = statistics_rows(materials)
        return ComenshaFiles(
            _text_rows(registrations),
            _text_rows(statistics),
            _comensha_csv(registrations, REGISTRATION_COLUMNS),
            _comensha_csv(statistics, STATISTICS_COLUMNS),
        )

    async def overview(self) -> OverviewData:
        """The overview's material: the signals received here (decrypted from local state),
        the referrals sent from here with the steps reported about them, and the hub's
        open referrals (metadata). Only the directory and the open referrals are asked of
        the hub; no content goes to it."""
        types = await self._org_types()
        state = self._org.state
        signals = []
        for stored in state.messages_of_kind("signal"):
            try:
                payload = self._org.show(stored.id).payload
            except ClientError:  # a signal that no longer opens is not counted
                continue
            exploitation = _str(payload.get("exploitation")) or "unknown"
            signals.append(
                SignalFact(stored.created, types.get(stored.sender, "other"), exploitation)
            )
        received = _statuses_by_ref(state.messages_of_kind("status"))
        referrals = tuple(
            self._referral_fact(sent.id, sent.created, received.get(sent.id, []))
            for sent in state.sent()
            if sent.kind == "referral"
        )
        return OverviewData(tuple(signals), referrals, tuple(await self.open_referrals()))

    def _referral_fact(self, ref: str, sent: int, received: list[StoredMessage]) -> ReferralFact:
        """When each step of the referral ``ref`` was first reported (sent or received here)."""
        moves = [(m.created, m.status) for m in received]
        moves += [(p.created, p.status) for p in self._org.state.sent_about(ref)]
        first: dict[str, int] = {}
        for at, code in sorted(moves, key=lambda move: move[0]):
            if code is not None:
                first.setdefault(code, at)
        return ReferralFact(
            sent,
            first.get(machine.ACCEPTED),
            first.get(machine.CARE_STARTED),
            first.get(machine.CLOSED),
            first.get(machine.DECLINED),
        )

    async def _org_types(self) -> dict[str, str]:
        """Each organisation's type from the hub's directory (kept five minutes)."""
        now = time.monotonic()
        if self._types is not None and now - self._types[0] < 300:
            return self._types[1]
        with _translated():
            orgs = await self._org.hub.list_orgs()
        found = {
            str(o.get("org")): str(o.get("type"))
            for o in orgs
            if isinstance(o, dict) and isinstance(o.get("type"), str)
        }
        self._types = (now, found)
        return found

    async def case_file(self, ref: str, *, contents: bool = True) -> CaseFile:
        """A case, its referrals and its timeline with each message this organisation may
        read decrypted inline (read as the acting person), and why signals were linked;
        without ``contents`` the timeline's metadata only (nothing is read or decrypted)."""
        with _translated():
            if contents:
                view = await caseview.case_view(_ReadAsPerson(self._org), ref)
                in_case = caseview.messages_of(view)  # join the case here (clients.retention)
                self._org.state.join_case(in_case, view.case.summary.case)
            else:
                view = caseview.CaseView(await self._org.hub.case(ref), MappingProxyType({}))
            open_rows = [r for r in await self.open_referrals() if r.case == view.case.summary.case]
        detail = view.case
        held = self._pseudonyms([e.message for e in detail.timeline if e.type == "signal"])
        rows = []
        for entry in detail.timeline:
            inline = view.contents.get(entry.message) if entry.message else None
            linked: tuple[str, ...] = ()
            if entry.type == "signal" and entry.message in held:
                others = set().union(*(v for k, v in held.items() if k != entry.message))
                linked = _pseudonym_types(held[entry.message] & others)
            rows.append(_timeline_row(entry, inline, linked))
        shown = _first_by_case(open_rows)
        return CaseFile(
            row=_case_row(detail.summary, shown.get(detail.summary.case)),
            merged_from=detail.merged_from,
            referrals=tuple(open_rows),
            timeline=tuple(rows),
            truncated=detail.truncated,
        )

    async def case_signals(self, ref: str) -> tuple[str, list[tuple[str, str | None]]]:
        """(the live case, each of its signals with its urgency where it can be read here),
        from local state where the signal is held: for the index, nothing is shown."""
        with _translated():
            view = await self._org.case_view(ref)
        found: list[tuple[str, str | None]] = []
        for entry in view.case.timeline:
            if entry.type == "signal" and entry.message is not None:
                inline = view.contents.get(entry.message)
                urgency = (
                    None
                    if inline is None or inline.payload is None
                    else inline.payload.get("urgency")
                )
                found.append((entry.message, _str(urgency)))
        return str(view.case.summary.case), found

    def _pseudonyms(self, message_ids: list[str | None]) -> dict[str, set[str]]:
        """The pseudonyms in the signed header of each signal received here."""
        found: dict[str, set[str]] = {}
        for message_id in message_ids:
            stored = self._org.state.message(message_id) if message_id else None
            if stored is not None:
                try:
                    found[stored.id] = {str(p) for p in self._org.show(stored.id).pseudonyms}
                except ClientError:
                    continue  # erased with its case, or not readable: nothing to compare
        return found

    async def split(self, ref: str, message_ids: list[str]) -> str:
        """Move these messages of ``ref`` to a new case; the new case's reference."""
        with _translated():
            new, _ = await self._org.hub.split(ref, message_ids)
        return new

    async def merge(self, ref: str, other: str) -> None:
        """Merge case ``other`` into ``ref``."""
        with _translated():
            await self._org.hub.merge(ref, other)

    async def unmerge(self, ref: str, other: str) -> None:
        """Undo the newest merge of ``other`` into ``ref``."""
        with _translated():
            await self._org.hub.unmerge(ref, other)

    async def case_events(self, after: int) -> tuple[list[CaseEvent], int]:
        """The ``match``, ``referral`` and ``escalation`` events about a case after
        ``after`` (one page) and the id to read on from."""
        with _translated():
            page = await self._org.hub.events(after)
        found = []
        for event in page.events:
            if event.kind in CASE_EVENT_KINDS and event.case is not None:
                merged = event.detail.get("merged")
                absorbed = (
                    tuple(m for m in merged if isinstance(m, str))
                    if isinstance(merged, list)
                    else ()
                )
                found.append(
                    CaseEvent(
                        event.id,
                        event.case,
                        event.message,
                        absorbed,
                        event.kind,
                        event.at,
                        event.step,
                    )
                )
        return found, page.next

    def signals_after(self, cursor: int, limit: int = 1000) -> tuple[list[tuple[str, int]], int]:
        """(id, received) of the signals received here with an inbox cursor above
        ``cursor`` (at most ``limit`` messages looked at), newest first, and the highest
        cursor looked at, to go on from."""
        state = self._org.state
        found: list[tuple[str, int]] = []
        highest = cursor
        for offset in range(0, limit, 100):
            page = state.message_page(offset, 100)
            newer = [m for m in page if m.cursor > cursor]
            highest = max([highest, *(m.cursor for m in newer)])
            found += [(m.id, m.received_at) for m in newer if m.kind == "signal"]
            if len(newer) < len(page) or len(page) < 100:
                break
        return found, highest

    def signal_urgency(self, message_id: str) -> str | None:
        """A signal's urgency from local state (received here), or None."""
        stored = self._org.state.message(message_id)
        if stored is None or stored.kind != "signal":
            return None
        try:
            payload = self._org.show(message_id).payload
        except ClientError:
            return None
        return _str(payload.get("urgency"))

    # -- the privacy officer -----------------------------------------------------------

    @property
    def is_privacy_officer(self) -> bool:
        return bool(self.roles & {ROLE_PRIVACY_OFFICER, ROLE_NETWORK_PRIVACY_OFFICER})

    @property
    def is_network_privacy_officer(self) -> bool:
        """Sees the whole network's log (others: their own organisation's entries)."""
        return ROLE_NETWORK_PRIVACY_OFFICER in self.roles

    async def verify_log(self) -> LogCheck:
        """The strongest cheap verification of the access log against a fresh signed head
        (see :meth:`clients.privacy_officer.PrivacyOfficer.verify`)."""
        with _translated():
            verified = await PrivacyOfficer(self._org).verify()
        head = verified.head
        return LogCheck(
            verified.mode, verified.checked, verified.visible, head.size, head.time,
            verified.erased,
        )  # fmt: skip

    async def anomalies(self, max_objects: int) -> list[AnomalyRow]:
        """People touching more than ``max_objects`` distinct objects a day, and denied reads."""
        with _translated():
            _head, found = await PrivacyOfficer(self._org).anomalies(max_objects)
        return [AnomalyRow(a.kind, a.day, a.org, a.user, a.count) for a in found]

    async def subject_report(self, identity: Identity) -> SubjectReport:
        """Every access to the messages carrying ``identity``'s pseudonyms (derived here)."""
        with _translated():
            head, rows = await PrivacyOfficer(self._org).subject_report(identity)
        return SubjectReport(head.size, tuple(_access_row(r) for r in rows), report_csv(rows))

    async def user_report(self, user: str, org: str | None) -> SubjectReport:
        """Every access by ``user`` (of ``org``; None: any organisation this officer sees),
        oldest first, each proven against a fresh signed head."""
        with _translated():
            head, rows = await PrivacyOfficer(self._org).user_report(user, org)
        return SubjectReport(head.size, tuple(_access_row(r) for r in rows), report_csv(rows))

    async def export_log(self) -> LogExport:
        """The access-log export (NDJSON, each entry with its inclusion proof, as ``schakel
        audit export`` writes it), checked line by line against a fresh signed head before
        any of it is handed out: the hub's own lines, kept in a temporary file (in memory
        while small) that the caller reads and closes. A line that does not parse, or an
        entry that does not prove, fails the whole export (``log``)."""
        with _translated():
            officer = PrivacyOfficer(self._org)
            head = await officer.fresh_head()
            lines = self._org.hub.audit_export(size=head.size)
            spool = tempfile.SpooledTemporaryFile(max_size=EXPORT_IN_MEMORY)  # noqa: SIM115
            try:
                count = await _checked_export(lines, head, spool)
            except BaseException:
                spool.close()
                raise
        spool.seek(0)
        return LogExport(head.size, count, spool)

    async def access_log(
        self,
        *,
        start: int,
        limit: int,
        object_type: str | None,
        filters: Mapping[str, str | int | None],
    ) -> LogPage:
        """One page of visible entries from ``start`` matching ``filters`` (the hub's) and
        ``object_type`` (checked here: the hub has no such filter), each proven against a
        fresh signed head."""
        with _translated():
            officer = PrivacyOfficer(self._org)
            head = await officer.fresh_head()
            page = await officer.page(head, start=start, limit=limit, proven=True, **filters)
            shown = [e for e in page.entries if object_type in (None, e.object_type)]
        rows = tuple(_access_row(ReportRow.of(e)) for e in shown)
        return LogPage(head.size, head.time, rows, len(shown), page.next, self._witnesses())

    def _witnesses(self) -> Witnesses | None:
        """Who cosigned the head last checked, as the last witnessing round found it."""
        w = self._org.log.witnessed
        if w is None:
            return None
        return Witnesses(w.size, w.policy, w.quorum, tuple(map(str, w.cosigners)), w.met)

    def split_views(self) -> tuple[SplitViewAlert, ...]:
        """The split-view alerts this organisation's client raised, newest first."""
        return _split_views(self._org.alerts)

    # -- the organisation's status ---------------------------------------------------

    async def status(self) -> OrgStatus:
        """Certificate, key bundle, revocation list and the access log's head, checked now."""
        org = self._org
        keys = org.keys
        cert = keys.certificate
        now = org.now()
        bundle_until = None
        with contextlib.suppress(Exception):
            bundle_until = keys.current_bundle(now=now).not_after if cert is not None else None
        crl = None
        head = None
        consistent: bool | None = None
        reachable = True
        try:
            crl = await org.revocation_list()
            head = await org.log.check()
            consistent = True
        except AuditLogInconsistent:
            consistent = False
        except (HubUnreachable, HubProblem):
            reachable = False
        except ClientError:
            consistent = None
        kept = org.state.tree_head if head is None else head
        try:
            linking = bool(keys.linking_keys)
        except Exception:  # a damaged linking-key file shows as "none"
            linking = False
        services = False
        with contextlib.suppress(ClientError):  # the hub out of reach: what was seen last
            services = await org.linking.on_oprf()
        return OrgStatus(
            org=org.org,
            network=keys.network,
            roles=tuple(sorted(self.roles)),
            certificate_not_after=None if cert is None else cert.not_after,
            bundle_not_after=bundle_until,
            crl_number=None if crl is None else crl.number,
            crl_this_update=None if crl is None else crl.this_update,
            crl_next_update=None if crl is None else crl.next_update,
            log_size=None if kept is None else kept.size,
            log_time=None if kept is None else kept.time,
            log_consistent=consistent,
            linking_key=linking,
            pseudonym_services=services,
            messages=org.state.message_count(),
            hub_reachable=reachable,
            split_views=_split_views(org.alerts),
            witnesses=self._witnesses(),
        )


class _ReadAsPerson:
    """The organisation as the case page reads it: every message addressed to it is
    fetched from the hub again, so that the access log names the acting person for each
    signal shown, as opening a message does."""

    def __init__(self, org: Organisation) -> None:
        self._org = org

    @property
    def org(self) -> OrgId:
        return self._org.org

    @property
    def hub(self) -> HubClient:
        return self._org.hub

    def written(self, message_id: str) -> tuple[str, dict[str, Any]] | None:
        return self._org.written(message_id)

    async def read_message(self, message_id: str) -> ReceivedMessage:
        return await self._org.read_message(message_id, from_hub=True)


async def _checked_export(lines: AsyncIterator[bytes], head: TreeHead, out: IO[bytes]) -> int:
    """Copy the hub's export lines to ``out``, each checked against ``head``; the count."""
    first = await anext(lines, None)
    try:
        served = None if first is None else parse_export_head(first)
    except ExportUnreadable as exc:
        raise from_hub(exc) from exc
    if first is None or served is None or (served.size, served.root) != (head.size, head.root):
        raise AuditLogInconsistent("the export is for another head than the verified one")
    checker = ExportChecker(head, full=False)
    out.write(first.rstrip(b"\r\n") + b"\n")
    position = 1
    async for line in lines:
        position += 1
        try:
            checker.feed(parse_export_record(line, position))
        except ExportUnreadable as exc:
            raise from_hub(exc) from exc
        out.write(line.rstrip(b"\r\n") + b"\n")
    return checker.count


def _referral_row(open_: OpenReferral) -> ReferralRow:
    r = open_.referral
    return ReferralRow(
        id=r.id,
        case=r.case,
        referrer=r.referrer,
        recipient=r.recipient,
        recipient_type=r.recipient_type,
        step=r.step,
        step_at=r.step_at,
        holder=open_.holder,
        age=open_.age,
        waiting=open_.waiting,
        due=open_.due,
        overdue=open_.overdue,
    )


def _case_row(summary: CaseSummary, referral: ReferralRow | None) -> CaseRow:
    times = [t for t in (summary.last_signal, referral and referral.step_at) if t]
    return CaseRow(
        case=summary.case,
        state=summary.state,
        signals=summary.signals,
        first_signal=summary.first_signal,
        last_activity=max(times) if times else None,
        orgs=tuple((o.org, o.org_type) for o in summary.orgs),
        open_referrals=summary.open_referrals,
        referral=referral,
    )


def _first_by_case(rows: list[ReferralRow]) -> dict[str, ReferralRow]:
    """Each case's open referral to show: an overdue one first, then the one waiting longest."""
    shown: dict[str, ReferralRow] = {}
    for row in sorted(rows, key=lambda r: (not r.overdue, -r.waiting)):
        shown.setdefault(row.case, row)
    return shown


def _timeline_row(
    entry: TimelineEntry, inline: caseview.Inline | None, linked_by: tuple[str, ...]
) -> TimelineRow:
    return TimelineRow(
        at=entry.at,
        type=entry.type,
        message=entry.message,
        sender=entry.sender,
        sender_type=entry.sender_type,
        code=entry.code,
        referral=entry.referral,
        other=entry.other,
        automatic=entry.automatic,
        moved=len(entry.messages),
        readable=None if inline is None else inline.state,
        payload=None if inline is None or inline.payload is None else dict(inline.payload),
        linked_by=linked_by,
    )


def _pseudonym_types(shared: set[str]) -> tuple[str, ...]:
    """The kinds of identifier of ``shared`` pseudonyms (their type prefix only)."""
    return tuple(sorted({p.split(".", 1)[0] for p in shared}))


def _sending(sent: Sent) -> Sending:
    return Sending(sent.id, sent.waiting)


def _statuses_by_ref(stored: list[StoredMessage]) -> dict[str, list[StoredMessage]]:
    about: dict[str, list[StoredMessage]] = {}
    for message in stored:
        if message.ref is not None:
            about.setdefault(message.ref, []).append(message)
    return about


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
