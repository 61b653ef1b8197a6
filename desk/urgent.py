"""Signals of high urgency, brought to attention on arrival.

A signal this desk receives with urgency ``high`` or ``immediate_danger`` is an alert
on the Postvak (whose table the live page swaps in as messages arrive) and on the
events page, whether it matches a case or not, until a person at the desk opens it.
The inbox is looked through from the last cursor seen; each new signal is decrypted
here, once, for its urgency (kept sealed in :mod:`desk.casebook`).
"""

from __future__ import annotations

from dataclasses import dataclass

from desk.casebook import URGENT
from desk.web import Services


@dataclass(frozen=True, slots=True)
class UrgentAlert:
    """A received signal of high urgency that no one at this desk has opened yet."""

    message: str
    urgency: str
    received: int


def urgent_alerts(s: Services) -> list[UrgentAlert]:
    """The urgent signals not yet opened, newest first (new arrivals taken in first)."""
    book = s.casebook
    found, cursor = s.library.signals_after(book.urgent_cursor)
    for message, received in reversed(found):  # oldest first, as they arrived
        urgency = s.library.signal_urgency(message)
        if urgency in URGENT:
            book.add_urgent(message, urgency, received)
    book.set_urgent_cursor(cursor)
    kept = book.urgent()
    opened = s.accounts.read_by_anyone(m for m, _, _ in kept)
    return [UrgentAlert(m, u, r) for m, u, r in kept if m not in opened]
