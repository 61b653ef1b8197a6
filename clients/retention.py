"""How long an organisation keeps what it received and sent, and erasing it after.

An organisation keeps messages under a key per message (:mod:`clients.localbox`), each
message in one case (``scope`` in :mod:`clients.state`: ``case:<ref>`` for a referral's
case and the statuses about it, else ``msg:<id>``, a case of its own). When a case's
period ends, the keys of all its messages are destroyed and its rows deleted
(crypto-shredding): from then on nothing of it can be read from the state file, its WAL
or any backup of them, with every key the organisation still holds. A hub case's own key
(``case:<ref>``), which seals what is kept about the case itself (a desk's label), goes
with it.

**When a case is closed.** A case is closed when every referral in it has reached a last
step (``closed``, or ``declined`` without a referral replacing it): at the time of the
case's newest message. A case without a referral (a signal, a case of its own) is closed
when its last message was received or written: a signal is a fact recorded once. A
message that arrives later opens the case again (its clock starts over); one that
arrives after the case was erased starts a case of its own.

**How long.** An organisation's own legal duty sets the period, not the network: it may
be longer than the network's (a care provider keeps its records under the WGBO) or
shorter (the police under the Wpg). :class:`LocalRetention` holds the period
(``case_days`` after closing) and a margin (``grace_days``) within which a late message
(a status after ``closed``, a clock a little off) still finds the case. The defaults per
kind of organisation (:data:`DEFAULTS`) are starting points an organisation's privacy
officer checks against its own duties:

* ``care``, 20 years: the WGBO (art. 7:454 BW) keeps medical records 20 years from
  their last change; shelters and care organisations that keep a care record;
* ``police``, 5 years: the Wpg (art. 8-14) keeps police data for an investigation or a
  task at most 5 years after recording, shorter for daily police work;
* ``legal``, 7 years: the advocate's file and the fiscal duty (AWR art. 52);
* ``municipal``, 2 years: what a municipality, school or GGD keeps about a signal without
  a care record, as the Verwijsindex keeps a signal (2 years);
* ``coordinator``, 5 years: the care coordinator's case file, the network's default;
* ``general``, 2 years: no statutory duty, the GDPR's storage limitation (art. 5(1)(e)).

The first three are statutory (``statutory``): the organisation's own duty.

:func:`with_network_policy` is the hook through which the network's signed retention
policy (served by the hub, kept by the client) bounds these periods once it is there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from clients.errors import ClientError
from clients.state import CaseMember, LocalState
from protocol.errors import ProtocolError
from protocol.retention import RetentionPolicy

DAY = 86_400
ENV_KIND = "SCHAKEL_RETENTION_KIND"
ENV_CASE_DAYS = "SCHAKEL_RETENTION_CASE_DAYS"
ENV_GRACE_DAYS = "SCHAKEL_RETENTION_GRACE_DAYS"
MAX_DAYS = 100 * 366  # a century: anything longer is a typing error
TERMINAL = frozenset({"closed", "declined"})


class RetentionInvalid(ClientError):
    """A retention setting out of bounds; the message names it."""


@dataclass(frozen=True, slots=True)
class LocalRetention:
    """The periods an organisation applies to its own local state, in days.

    ``kind`` names the row of :data:`DEFAULTS` it came from (``custom`` when a period was
    set by hand) and ``statutory`` whether a law sets the period (then the network's
    policy does not shorten it: see :func:`with_network_policy`).
    """

    case_days: int
    grace_days: int = 30
    kind: str = "general"
    statutory: bool = False

    def __post_init__(self) -> None:
        for name in ("case_days", "grace_days"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise RetentionInvalid(f"{name} must be a whole number of days")
            if not 0 <= value <= MAX_DAYS:
                raise RetentionInvalid(f"{name} must be between 0 and {MAX_DAYS} days")
        if self.case_days < 1:
            raise RetentionInvalid("case_days must be at least 1 day")

    @classmethod
    def for_kind(
        cls, kind: str, *, case_days: int | None = None, grace_days: int | None = None
    ) -> LocalRetention:
        """The defaults of ``kind`` (:data:`DEFAULTS`), with either period set by hand."""
        try:
            base = DEFAULTS[kind]
        except KeyError:
            known = ", ".join(sorted(DEFAULTS))
            raise RetentionInvalid(
                f"unknown kind of organisation {kind!r} (one of {known})"
            ) from None
        changes: dict[str, int | str] = {}
        if case_days is not None:
            changes.update(case_days=case_days, kind="custom")
        if grace_days is not None:
            changes["grace_days"] = grace_days
        return dataclasses.replace(base, **changes)  # type: ignore[arg-type]

    def due_at(self, closed_at: int) -> int:
        """When a case closed at ``closed_at`` is erased."""
        return closed_at + (self.case_days + self.grace_days) * DAY


DEFAULTS: Mapping[str, LocalRetention] = {
    "care": LocalRetention(20 * 365 + 5, 30, "care", statutory=True),
    "police": LocalRetention(5 * 365 + 1, 30, "police", statutory=True),
    "legal": LocalRetention(7 * 365 + 2, 30, "legal", statutory=True),
    "municipal": LocalRetention(2 * 365, 30, "municipal"),
    "coordinator": LocalRetention(5 * 365 + 1, 30, "coordinator"),
    "general": LocalRetention(2 * 365, 30, "general"),
}


def with_network_policy(local: LocalRetention, network_case_days: int | None) -> LocalRetention:
    """The periods to apply once the network's retention policy gives its case period.

    ``network_case_days`` is the case period of the verified network policy
    (:func:`network_case_days`; ``None`` while none is kept). A statutory period is the
    organisation's own legal duty and stands (the network can neither shorten a WGBO duty
    nor lengthen a Wpg limit); any other period is capped by the network's
    (storage limitation: keep no longer than the network needs).
    """
    if network_case_days is None or local.statutory:
        return local
    if network_case_days >= local.case_days:
        return local
    return dataclasses.replace(local, case_days=network_case_days, kind=f"{local.kind}/network")


def network_case_days(state: LocalState) -> int | None:
    """The case period (days) of the network's retention policy this client verified and
    keeps, or None while it keeps none.

    The policy is kept only after its root signature verified
    (:func:`clients.retention_policy.retention_policy`, ``schakel org retention-policy``);
    its ``case_closed_days`` is the network's period for a closed case. A kept policy
    that no longer parses (a file edited by hand) bounds nothing and is reported.
    """
    wire = state.retention_policy()
    if wire is None:
        return None
    try:
        return RetentionPolicy.from_wire(wire).case_closed_days
    except ProtocolError as exc:
        raise RetentionInvalid(f"the kept network retention policy is unreadable: {exc}") from None


def effective(state: LocalState, local: LocalRetention) -> LocalRetention:
    """The periods a run applies: the organisation's own, bounded by the network's policy
    where it is kept (:func:`with_network_policy`, :func:`network_case_days`)."""
    return with_network_policy(local, network_case_days(state))


@dataclass(frozen=True, slots=True)
class CaseState:
    """One case kept here, as retention sees it (no content)."""

    scope: str
    messages: int
    closed_at: int | None  # None while open
    due_at: int | None  # when it is erased; None while open

    @property
    def label(self) -> str:
        """The case reference, or the id of the message that is a case of its own."""
        return self.scope.partition(":")[2]


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What a retention run found (``dry_run``: and left alone) or erased."""

    retention: LocalRetention
    now: int
    due: tuple[CaseState, ...]  # erased (or, dry run, to be erased)
    open: int  # cases still open
    waiting: int  # cases closed whose period has not ended
    next_due: int | None  # when the next closed case is due
    dry_run: bool
    finished: tuple[str, ...] = ()  # erasures a killed run had left half done, finished now
    unchecked: bool = False  # a reader kept a WAL checkpoint from finishing: run again
    erased_ids: tuple[str, ...] = ()  # the messages erased (for what else keeps their ids)

    @property
    def erased_messages(self) -> int:
        return sum(case.messages for case in self.due)


def cases(members: Iterable[CaseMember], retention: LocalRetention) -> list[CaseState]:
    """Every case, closed or open, from its messages (see the module docstring)."""
    grouped: dict[str, list[CaseMember]] = {}
    for member in members:
        grouped.setdefault(member.scope, []).append(member)
    found = []
    for scope, rows in sorted(grouped.items()):
        closed_at = _closed_at(rows)
        due = None if closed_at is None else retention.due_at(closed_at)
        found.append(CaseState(scope, len(rows), closed_at, due))
    return found


def _closed_at(rows: list[CaseMember]) -> int | None:
    referrals = {r.id for r in rows if r.kind == "referral"}
    replaced = {r.ref for r in rows if r.kind == "referral" and r.ref}
    steps: dict[str, tuple[int, str]] = {}
    for row in rows:
        about = row.ref
        if row.kind != "status" or about not in referrals or not row.status:
            continue
        if about not in steps or row.at >= steps[about][0]:
            steps[about] = (row.at, row.status)
    for referral in referrals - replaced:
        if referral not in steps or steps[referral][1] not in TERMINAL:
            return None
    return max(r.at for r in rows)


def plan(state: LocalState, retention: LocalRetention, *, now: int) -> RetentionReport:
    """What a run at ``now`` would erase, changing nothing."""
    return _report(state, retention, now, dry_run=True)


def _report(
    state: LocalState, local: LocalRetention, now: int, *, dry_run: bool
) -> RetentionReport:
    retention = effective(state, local)
    every = cases(state.case_members(), retention)
    due = tuple(c for c in every if c.due_at is not None and c.due_at <= now)
    waiting = [c.due_at for c in every if c.due_at is not None and c.due_at > now]
    return RetentionReport(
        retention=retention,
        now=now,
        due=due,
        open=sum(1 for c in every if c.closed_at is None),
        waiting=len(waiting),
        next_due=min(waiting, default=None),
        dry_run=dry_run,
    )


def run(state: LocalState, retention: LocalRetention, *, now: int) -> RetentionReport:
    """Erase every case whose period has ended, each in three steps that a run killed
    half-way can resume: note the case and its message ids (``shredding``), destroy the
    message keys (deleted with ``secure_delete``, key file WAL checkpointed TRUNCATE), then
    delete the rows and remember the ids as erased (state WAL checkpointed TRUNCATE).
    Erasures a killed run left half done are finished first."""
    checked = True
    finished = []
    erased: list[str] = []
    for scope, _, _ in state.pending_shreds():
        checked &= _erase(state, scope, now, erased)
        finished.append(scope)
    report = _report(state, retention, now, dry_run=False)
    for case in report.due:
        assert case.closed_at is not None
        state.begin_shred(case.scope, closed_at=case.closed_at, now=now)
        checked &= _erase(state, case.scope, now, erased)
    return dataclasses.replace(
        report, finished=tuple(finished), unchecked=not checked, erased_ids=tuple(erased)
    )


def _erase(state: LocalState, scope: str, now: int, erased: list[str]) -> bool:
    """Destroy the keys of a case noted as being erased (its messages', and the case's own,
    which seals what is kept about the case itself, such as a desk's label), then its rows."""
    ids = next((i for s, i, _ in state.pending_shreds() if s == scope), ())
    own = (scope,) if scope.startswith("case:") else ()
    keys_gone = state.message_keys.destroy([*ids, *own])
    rows_gone = state.finish_shred(scope, now=now)
    erased.extend(ids)
    return keys_gone and rows_gone
