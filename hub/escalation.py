"""Escalation: a referral that waits too long at one step is raised with the coordinators.

The network configures, per open step of a referral, how long it may wait there
(``SCHAKEL_HUB_ESCALATE_<STEP>``: ``2wd`` for two working days, ``36h`` for hours,
``off``). Working days are Monday to Friday in Europe/Amsterdam, without Dutch public
holidays (the ``holidays`` package); a step entered on a weekend starts counting on the
next working day, at midnight.

An :class:`Escalator` ticks like the tree-head signer: each tick (at most every
``escalation_interval`` seconds of the injected clock) runs one work item that finds the
referrals past their step's deadline that were not escalated for that step yet, records
one escalation per (referral, step) (a primary key, so one replica fires each), and keeps
an ``escalation`` event for every coordinator and the referrer and a ``reminder`` for the
holder of the next step. Their notices go out with the commit.
"""

from __future__ import annotations

import logging

from hub import placement
from hub.config import Clock, EscalationLimits
from hub.periodic import Periodic
from hub.placement import Notices
from hub.store import Store, Tx
from hub.store.casewrites import Referral
from protocol import referral as machine

MAX_PER_TICK = 500


def escalate_in(tx: Tx, limits: EscalationLimits, *, now: int) -> int:
    """Inside a work item: escalate every referral past its step's deadline, once a step;
    how many notices that raised."""
    notices: Notices = []
    for step, deadline in sorted(limits.items()):
        for referral in tx.cases.waiting(
            step, entered_before=now - deadline.at_least, limit=MAX_PER_TICK
        ):
            due = deadline.due(referral.step_at)
            if due <= now and tx.cases.add_escalation(referral, due=due, now=now):
                notices += _escalated(tx, referral, due, now=now)
    for org, notice in notices:
        tx.notify(org, notice)
    return len(notices)


def _escalated(tx: Tx, referral: Referral, due: int, *, now: int) -> Notices:
    detail = {"referrer": referral.referrer, "recipient": referral.recipient, "due": due}
    audience = placement.audience(tx, referral.case, also=[referral.referrer])
    recipient_holds = machine.HOLDER[referral.step] == machine.RECIPIENT
    holder = referral.recipient if recipient_holds else referral.referrer
    notices = placement.events(tx, "escalation", audience, now, referral.id, referral.step, detail)
    reminder = {holder: audience.get(holder)}
    notices += placement.events(tx, "reminder", reminder, now, referral.id, referral.step, detail)
    return list(notices)


class Escalator(Periodic):
    task_name = "hub-escalation"
    failure = "escalating overdue referrals failed"

    """Runs :func:`escalate_in` every ``interval`` seconds of the injected clock."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        limits: EscalationLimits,
        interval: int,
        logger: logging.Logger | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._limits = dict(limits)
        self._interval = interval
        self._log = logger or logging.getLogger("hub.escalation")
        self._last: int | None = None

    async def escalate_now(self) -> int:
        """Escalate what is overdue now; returns how many notices went out."""
        now = self._clock()

        def work(tx: Tx) -> int:
            return escalate_in(tx, self._limits, now=now)

        return await self._store.write(work)

    async def tick(self) -> int:
        now = self._clock()
        if not self._limits or (self._last is not None and now - self._last < self._interval):
            return 0
        self._last = now
        return await self.escalate_now()
