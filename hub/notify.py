"""New-message notices for live delivery, published after the commit.

:class:`Notifier` is the interface; :class:`LocalNotifier` serves one
process. A PostgreSQL implementation (``LISTEN``/``NOTIFY`` so that notices
cross replicas) can replace it without touching the relay or the WebSocket.

A notice only says "look at your inbox" (``type`` message: the cursor and
message id) or "look at your events" (``type`` event: the event feed's cursor and
the event's kind), never content, a case reference or a pseudonym. A
subscriber that falls behind by more than its queue is closed (it reconnects
and catches up through the inbox and the events), so a slow client can not make
the hub hold notices without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from protocol.types import MessageId, OrgId

DEFAULT_QUEUE = 256


@dataclass(frozen=True, slots=True)
class Notice:
    cursor: int
    id: MessageId | None  # None for an event
    type: str = "message"  # message or event
    kind: str | None = None  # an event's kind


def event_notice(event_id: int, kind: str) -> Notice:
    """The notice of event ``event_id`` in the addressee's feed."""
    return Notice(event_id, None, "event", kind)


class Subscription(Protocol):
    """Notices for one organisation, in publication order, until closed."""

    def __aiter__(self) -> AsyncIterator[Notice]: ...
    async def next(self) -> Notice | None:
        """The next notice; None once the subscription is closed or overflowed."""
        ...

    def close(self) -> None: ...


class Notifier(Protocol):
    async def publish(self, org: OrgId, notice: Notice) -> None: ...
    def subscribe(self, org: OrgId) -> Subscription: ...


_CLOSED = object()


class LocalSubscription:
    __slots__ = ("_closed", "_notifier", "_org", "_queue")

    def __init__(self, notifier: LocalNotifier, org: OrgId, size: int) -> None:
        self._notifier = notifier
        self._org = org
        self._queue: asyncio.Queue[object] = asyncio.Queue(size + 1)  # room for _CLOSED
        self._closed = False

    def offer(self, notice: Notice) -> None:
        if self._closed:
            return
        if self._queue.qsize() >= self._queue.maxsize - 1:
            self.close()  # overflow: the client catches up through the inbox
            return
        self._queue.put_nowait(notice)

    async def next(self) -> Notice | None:
        item = await self._queue.get()
        if item is _CLOSED:
            self._queue.put_nowait(_CLOSED)  # stay closed for later calls
            return None
        assert isinstance(item, Notice)
        return item

    def __aiter__(self) -> AsyncIterator[Notice]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Notice]:
        while (notice := await self.next()) is not None:
            yield notice

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._notifier.forget(self._org, self)
            self._queue.put_nowait(_CLOSED)


class LocalNotifier:
    """In-process notices: every subscriber of an organisation gets every notice."""

    def __init__(self, *, queue_size: int = DEFAULT_QUEUE) -> None:
        self._queue_size = queue_size
        self._subscribers: dict[OrgId, set[LocalSubscription]] = {}

    async def publish(self, org: OrgId, notice: Notice) -> None:
        for subscription in list(self._subscribers.get(org, ())):
            subscription.offer(notice)

    def subscribe(self, org: OrgId) -> LocalSubscription:
        subscription = LocalSubscription(self, org, self._queue_size)
        self._subscribers.setdefault(org, set()).add(subscription)
        return subscription

    def forget(self, org: OrgId, subscription: LocalSubscription) -> None:
        subscribers = self._subscribers.get(org)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[org]

    def subscriber_count(self, org: OrgId) -> int:
        return len(self._subscribers.get(org, ()))
