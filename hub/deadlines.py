"""Deadlines for referral steps: working days in the Netherlands, or hours.

Working days are Monday to Friday in Europe/Amsterdam, without Dutch public holidays
(:mod:`protocol.workdays`, the network's one calendar, which the desk counts on too);
time on other days does not count, so a step entered on a Saturday starts counting at
midnight of the next working day. Days are wall-clock days (a daylight-saving day counts
as one day).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from protocol.workdays import AMSTERDAM, add_working_days, is_working_day

__all__ = ["AMSTERDAM", "Deadline", "add_working_days", "is_working_day"]

_LIMIT = re.compile(r"([1-9][0-9]{0,2})(wd|h)")


@dataclass(frozen=True, slots=True)
class Deadline:
    """How long a referral may wait at a step: ``amount`` working days or hours."""

    amount: int
    unit: str  # "wd" or "h"

    @classmethod
    def parse(cls, text: str) -> Deadline | None:
        """``2wd``, ``36h`` or ``off`` (None); ValueError for anything else."""
        if text == "off":
            return None
        match = _LIMIT.fullmatch(text)
        if match is None:
            raise ValueError("an escalation limit is like 2wd (working days), 36h, or off")
        return cls(int(match.group(1)), match.group(2))

    def due(self, since: int) -> int:
        if self.unit == "h":
            return since + self.amount * 3600
        return add_working_days(since, self.amount)

    @property
    def at_least(self) -> int:
        """Seconds that pass before it can be due, whatever the calendar."""
        return self.amount * (3600 if self.unit == "h" else 86400)

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"
