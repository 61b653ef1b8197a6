"""The single writer: queued work items committed together (group commit).

Every change to the database is a *work item*: a plain function that gets a
write transaction (``hub.store.Tx``) and returns a value or raises. It is not
a coroutine: it runs inside the batch's transaction and can not wait on
anything else while the batch holds the write lock. One task takes the items
from a bounded queue and hands each batch of them to ``commit``, which:

1. opens one transaction;
2. writes the batch's new messages and access-log entries (values, not functions:
   :mod:`hub.store.bulk`) together, a table at a time, and runs each other item
   inside its own SAVEPOINT, so an item that raises rolls back alone and its
   caller gets that exception;
3. commits once;
4. only then returns each item's outcome, and the writer resolves every
   waiting caller. A failed commit fails every item of the batch with
   :class:`CommitFailed`: nothing of it was stored.

So a caller that got a result knows its change is durable, and the single
writer gives the audit chain its order. A full queue answers
:class:`~hub.errors.Unavailable` (503) at once instead of queueing without end; a
failed commit is a 503 too, with ``Retry-After``: nothing was done, not even the
access-log entry, so the caller may simply try again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from hub.errors import Unavailable

T = TypeVar("T")
TxT = TypeVar("TxT")

Work = Callable[[TxT], T]
ItemOutcome = tuple[bool, Any]  # (True, value) or (False, the exception the item raised)
# Runs the items of one batch in one transaction; each item's outcome once committed.
CommitBatch = Callable[[Sequence[Callable[[Any], Any]]], Awaitable[list[ItemOutcome]]]


class CommitFailed(Unavailable):
    """The batch holding this work item could not be committed; nothing of it was stored."""

    RETRY_AFTER = 5

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, retry_after=self.RETRY_AFTER)


@dataclass(slots=True)
class _Item:
    work: Callable[[Any], Any]
    future: asyncio.Future[Any]


_STOP = object()


class Writer(Generic[TxT]):
    """Runs work items in batches on one connection; see the module docstring."""

    def __init__(
        self,
        commit: CommitBatch,
        *,
        max_queue: int,
        max_batch: int,
        logger: logging.Logger | None = None,
    ) -> None:
        self._commit_batch = commit
        self._queue: asyncio.Queue[Any] = asyncio.Queue(max_queue)
        self._max_batch = max_batch
        self._log = logger or logging.getLogger("hub.writer")
        self._task: asyncio.Task[None] | None = None
        self._accepting = False
        self.batches = 0  # committed batches (tests read it)

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("writer already started")
        self._accepting = True
        self._task = asyncio.get_running_loop().create_task(self._run(), name="hub-writer")

    async def stop(self) -> None:
        """Refuse new work, finish what is queued, then end the task."""
        if self._task is None:
            return
        self._accepting = False
        await self._queue.put(_STOP)
        await self._task
        self._task = None

    @property
    def depth(self) -> int:
        """Work items waiting in the queue now."""
        return self._queue.qsize()

    async def submit(self, work: Work[TxT, T]) -> T:
        """Run ``work`` in the next batch; return its result once the batch is committed."""
        if not self._accepting:
            raise Unavailable("the hub is not accepting writes")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Item(work, future))
        except asyncio.QueueFull:
            raise Unavailable("the hub is overloaded; try again shortly") from None
        return await future

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            if first is _STOP:
                return
            items = [first]
            stop = False
            while len(items) < self._max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is _STOP:
                    stop = True
                    break
                items.append(item)
            await self._commit(items)
            if stop:
                return

    async def _commit(self, items: list[_Item]) -> None:
        live = [item for item in items if not item.future.done()]
        if not live:
            return
        try:
            outcomes = await self._commit_batch([item.work for item in live])
        except Exception as exc:
            self._log.error("commit of a batch of %d work items failed", len(live), exc_info=exc)
            for item in live:
                _resolve(item.future, (False, CommitFailed("the change could not be stored")))
            return
        self.batches += 1
        for item, outcome in zip(live, outcomes, strict=True):
            _resolve(item.future, outcome)


def _resolve(future: asyncio.Future[Any], outcome: ItemOutcome) -> None:
    if future.done():  # the caller went away; its work is committed all the same
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
