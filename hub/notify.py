"""Notices for live delivery: published when, and only when, their change is committed.

A work item asks for a notice with ``Tx.notify(org, notice)``; the store hands the notices
of every committed item to the :class:`Notifier` after the commit (:meth:`Notifier.deliver`),
and the WebSocket route (:mod:`hub.http.ws`) takes them from a :class:`Subscription`.

* :class:`LocalNotifier` serves one process (SQLite: one hub).
* :class:`PgNotifier` (PostgreSQL) also reaches the WebSocket clients of every other
  replica: the store issues ``pg_notify`` for the batch's notices inside the batch's own
  transaction, so PostgreSQL sends them to every listening replica at the commit and never
  for a batch that rolled back; each replica ``LISTEN``s on one connection of its own and
  hands what others committed to its local subscribers. Its own notices it delivers
  locally at once and skips when they come back (each payload names its origin).

A notice only says "look at your inbox" (``type`` message: the cursor and message id),
"look at your events" (``type`` event: the event feed's cursor and the event's kind),
or, to the replicas themselves, "the directory changed" (``type`` directory, addressed
to no organisation: :func:`directory_notice`; the trust state each replica holds in
memory is read again, :class:`hub.directory.TrustCache`), never content, a case
reference or a pseudonym. A subscriber that falls behind by more than its queue is
closed; so is every subscriber of a replica whose ``LISTEN`` connection was lost, when
it is lost and again when it is back (notices may have gone by unheard; the directory
watchers hear a change then too). A closed client reconnects and catches up through the
inbox and the events, so nothing is lost, only announced late, and no slow client makes
the hub hold notices without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from protocol.errors import ProtocolError
from protocol.types import MessageId, OrgId, parse_message_id, parse_org_id

DEFAULT_QUEUE = 256
CHANNEL = "schakel_notices"
MAX_PAYLOAD = 512  # characters of one notice on the wire; PostgreSQL allows 8000 bytes
MAX_CURSOR = 2**63 - 1
MAX_KIND = 32
RECONNECT_MIN, RECONNECT_MAX = 0.5, 10.0  # seconds between attempts to LISTEN again
CONNECT_TIMEOUT = 10.0
HEALTH_INTERVAL = 5.0  # seconds between checks that the listening connection lives
APPLICATION_NAME = "schakel-hub-listen"  # how the listening connection shows in pg_stat_activity


Notices = Sequence[tuple[OrgId, "Notice"]]


@dataclass(frozen=True, slots=True)
class Notice:
    cursor: int
    id: MessageId | None  # None for an event
    type: str = "message"  # message or event
    kind: str | None = None  # an event's kind


def event_notice(event_id: int, kind: str) -> Notice:
    """The notice of event ``event_id`` in the addressee's feed."""
    return Notice(event_id, None, "event", kind)


DIRECTORY = "directory"  # the type of a directory notice
NO_ORG = OrgId("-")  # the address of a directory notice: no organisation can be named so


def directory_notice() -> tuple[OrgId, Notice]:
    """What a work item that changed the directory (a certificate, a key bundle, the CRL,
    a retirement) hands to ``Tx.notify``: every replica reads its trust state again."""
    return NO_ORG, Notice(1, None, DIRECTORY)


DirectoryWatcher = Callable[[], None]


class Subscription(Protocol):
    """Notices for one organisation, in publication order, until closed."""

    def __aiter__(self) -> AsyncIterator[Notice]: ...
    async def next(self) -> Notice | None:
        """The next notice; None once the subscription is closed or overflowed."""
        ...

    def ready(self) -> list[Notice]:
        """The notices queued now, in order, without waiting (a batch's notices arrive
        together: they go out together). After the last of them, :meth:`next` says
        whether the subscription was closed."""
        ...

    def close(self) -> None: ...


class Notifier(Protocol):
    """Where committed notices go, and where the WebSocket route subscribes."""

    @property
    def origin(self) -> str:
        """This process's tag on the notices it sends to other replicas."""
        ...

    @property
    def listening(self) -> bool:
        """True while notices committed by other replicas reach this one (or none exist)."""
        ...

    def deliver(self, notices: Notices) -> None: ...
    def watch_directory(self, watcher: DirectoryWatcher) -> None:
        """Call ``watcher`` after the directory changed (here or, committed, elsewhere), and
        whenever changes may have gone unheard (the listening connection lost or back)."""
        ...

    def subscribe(self, org: OrgId) -> Subscription: ...
    def subscriber_total(self) -> int: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


# -- the wire form between replicas ---------------------------------------------------


def encode(origin: str, org: OrgId, notice: Notice) -> str:
    """One notice as ``pg_notify`` carries it: compact JSON, no content."""
    return json.dumps(
        {
            "from": origin,
            "org": org,
            "type": notice.type,
            "cursor": notice.cursor,
            "id": notice.id,
            "kind": notice.kind,
        },
        separators=(",", ":"),
    )


class BadPayload(ValueError):
    """A payload on the channel that no replica of this hub sent."""


def decode(payload: str) -> tuple[str, OrgId, Notice]:
    """(origin, organisation, notice) from :func:`encode`'s form; BadPayload otherwise.

    Anyone who may connect to the database can ``NOTIFY`` on the channel, so a payload is
    checked like any input before a subscriber sees it.
    """
    if len(payload) > MAX_PAYLOAD:
        raise BadPayload("too long")
    try:
        doc = json.loads(payload)
    except ValueError:
        raise BadPayload("not JSON") from None
    if not isinstance(doc, dict) or set(doc) != {"from", "org", "type", "cursor", "id", "kind"}:
        raise BadPayload("not a notice")
    origin, kind, cursor = doc["from"], doc["kind"], doc["cursor"]
    if not isinstance(origin, str) or not 0 < len(origin) <= 64:
        raise BadPayload("origin")
    if type(cursor) is not int or not 0 < cursor <= MAX_CURSOR:
        raise BadPayload("cursor")
    if doc["type"] == DIRECTORY:
        if doc["org"] == NO_ORG and doc["id"] is None and kind is None and cursor == 1:
            return origin, NO_ORG, Notice(1, None, DIRECTORY)
        raise BadPayload("directory")
    try:
        org = parse_org_id(doc["org"])
        if doc["type"] == "message" and kind is None:
            return origin, org, Notice(cursor, parse_message_id(doc["id"]))
    except ProtocolError:
        raise BadPayload("organisation or message id") from None
    if doc["type"] == "event" and doc["id"] is None and _is_kind(kind):
        return origin, org, event_notice(cursor, kind)
    raise BadPayload("type")


def _is_kind(kind: object) -> bool:
    return isinstance(kind, str) and 0 < len(kind) <= MAX_KIND and kind.isascii() and kind.isalpha()


# -- one process ------------------------------------------------------------------------

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

    def ready(self) -> list[Notice]:
        found = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is _CLOSED:
                self._queue.put_nowait(_CLOSED)  # the last item: next() answers None
                break
            assert isinstance(item, Notice)
            found.append(item)
        return found

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
        self._directory_watchers: list[DirectoryWatcher] = []
        self.origin = secrets.token_hex(8)

    @property
    def listening(self) -> bool:
        return True  # one process: there is nobody else to hear

    def deliver(self, notices: Notices) -> None:
        directory = False
        for org, notice in notices:
            if notice.type == DIRECTORY:
                directory = True
                continue
            for subscription in list(self._subscribers.get(org, ())):
                subscription.offer(notice)
        if directory:
            self.directory_changed()

    def watch_directory(self, watcher: DirectoryWatcher) -> None:
        self._directory_watchers.append(watcher)

    def directory_changed(self) -> None:
        for watcher in self._directory_watchers:
            watcher()

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

    def close_all(self) -> int:
        """Close every subscription (their clients reconnect and catch up); how many.

        The directory watchers hear of a change too: whatever was missed, they read again.
        """
        closing = [s for subscribers in self._subscribers.values() for s in subscribers]
        for subscription in closing:
            subscription.close()
        self.directory_changed()
        return len(closing)

    def subscriber_count(self, org: OrgId) -> int:
        return len(self._subscribers.get(org, ()))

    def subscriber_total(self) -> int:
        return sum(len(subscribers) for subscribers in self._subscribers.values())

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.close_all()


# -- several replicas on PostgreSQL -----------------------------------------------------

Connect = Callable[[], Any]  # an awaitable asyncpg connection


class PgNotifier(LocalNotifier):
    """:class:`LocalNotifier`, plus what other replicas commit, heard through ``LISTEN``.

    One task keeps one asyncpg connection listening on :data:`CHANNEL`, and reconnects
    (backing off up to :data:`RECONNECT_MAX` seconds) when it is lost. While it is not
    listening, :attr:`listening` is false and no subscriber stays open for long: every
    subscriber is closed when the connection is lost and again once it is back.
    """

    def __init__(
        self,
        dsn: str,
        *,
        queue_size: int = DEFAULT_QUEUE,
        logger: logging.Logger | None = None,
        connect: Connect | None = None,
    ) -> None:
        super().__init__(queue_size=queue_size)
        self._dsn = dsn
        self._connect = connect or self._asyncpg_connect
        self._log = logger or logging.getLogger("hub.notify")
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self.received = 0  # notices from other replicas (the tests read these counts)
        self.refused = 0  # payloads on the channel that were not a notice
        self.backend_pid: int | None = None  # the listening connection's server process

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    async def _asyncpg_connect(self) -> Any:
        import asyncpg  # the postgres extra; only a PostgreSQL hub gets here

        return await asyncpg.connect(
            self._dsn,
            timeout=CONNECT_TIMEOUT,
            server_settings={"application_name": APPLICATION_NAME},
        )

    async def start(self) -> None:
        """Start listening; returns once the first ``LISTEN`` is in place (or failed)."""
        if self._task is not None:
            raise RuntimeError("the notifier already runs")
        first = asyncio.get_running_loop().create_future()
        self._task = asyncio.get_running_loop().create_task(self._run(first), name="hub-listen")
        await first

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.close_all()

    async def _run(self, first: asyncio.Future[None]) -> None:
        delay = RECONNECT_MIN
        while True:
            try:
                conn = await self._connect()
            except Exception as exc:  # unreachable, refused, timed out: try again later
                self._log.warning("could not listen for notices: %s", type(exc).__name__)
            else:
                try:
                    await self._listen(conn, first)
                except Exception as exc:  # a lost connection, of whatever kind
                    self._log.warning("listening for notices failed: %s", type(exc).__name__)
                finally:
                    if self._listening.is_set():
                        delay = RECONNECT_MIN  # it worked for a while: retry soon
                    self._listening.clear()
                    await _close(conn)
                if self.close_all():
                    self._log.info("closed live subscriptions: notices may have been missed")
            if not first.done():
                first.set_result(None)  # the hub starts deaf; /readyz and metrics show it
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)

    async def _listen(self, conn: Any, first: asyncio.Future[None]) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(CHANNEL, self._heard)
        self.backend_pid = conn.get_server_pid()
        self._listening.set()
        self.close_all()  # subscribed while deaf: they may have missed notices
        if not first.done():
            first.set_result(None)
        self._log.info("listening for notices of other replicas")
        while not lost.is_set():
            # asyncpg notices a dead socket only when it uses it: ask it now and then.
            try:
                await asyncio.wait_for(lost.wait(), timeout=HEALTH_INTERVAL)
            except TimeoutError:
                await conn.execute("SELECT 1", timeout=HEALTH_INTERVAL)
        raise ConnectionError("listening connection closed")

    def _heard(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            origin, org, notice = decode(payload)
        except BadPayload:
            self.refused += 1
            return
        if origin == self.origin:
            return  # delivered here at the commit already
        self.received += 1
        self.deliver([(org, notice)])


async def _close(conn: Any) -> None:
    try:
        await asyncio.wait_for(conn.close(), timeout=1.0)
    except Exception:  # closing a broken connection: drop it
        conn.terminate()


def notifier_for(database_url: str, *, logger: logging.Logger | None = None) -> Notifier:
    """The notifier a hub on this database needs: PostgreSQL's reaches other replicas."""
    if database_url.startswith("postgresql"):
        import sqlalchemy as sa

        url = sa.make_url(database_url).set(drivername="postgresql")
        return PgNotifier(url.render_as_string(hide_password=False), logger=logger)
    return LocalNotifier()
