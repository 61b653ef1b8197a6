"""Live pages: the desk tells open browsers that the inbox changed (server-sent events).

The desk keeps the hub's WebSocket (``Organisation.watch``, in :mod:`desk.adapter`) and,
after each message received, puts a bare "changed" on every open event stream. No
content, id or count travels this way: the page fetches its list again, as the person,
through the ordinary (authenticated) route. Each stream is bounded: a browser that does
not read loses old notices (one is enough), and the stream ends when the session does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

MAX_STREAMS = 500


class Broadcast:
    """Every open event stream of this desk process."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[str]] = set()

    def __len__(self) -> int:
        return len(self._queues)

    def publish(self, event: str) -> None:
        for queue in self._queues:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

    @contextlib.asynccontextmanager
    async def listen(self) -> AsyncIterator[asyncio.Queue[str]]:
        if len(self._queues) >= MAX_STREAMS:
            raise OverflowError("too many event streams")
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)
