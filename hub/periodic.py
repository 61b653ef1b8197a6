"""A background task that calls ``tick()`` once a second until it is stopped.

The hub's periodic work (signing tree heads, escalating overdue referrals) decides in
``tick`` itself, from the injected clock, whether it is due; tests call ``tick`` (or the
work behind it) directly instead of starting the task. A failing tick is logged by its
type only (never its message, which could hold data) and tried again a second later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

TICK_SECONDS = 1.0


class Periodic:
    """Mixin: ``run``/``start``/``stop`` around the subclass's ``tick``."""

    _task: asyncio.Task[None] | None = None
    _log: logging.Logger
    task_name = "hub-periodic"
    failure = "periodic work failed"

    async def tick(self) -> Any:
        raise NotImplementedError

    async def run(self) -> None:
        """Tick once a second until cancelled; a failed tick is logged and retried."""
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next tick tries again
                # The text is built here, not from %-arguments: hub.logs redacts those.
                self._log.error(
                    f"{self.failure}: {type(exc).__name__}; trying again",
                    extra={"exc_type": f"{type(exc).__module__}.{type(exc).__qualname__}"},
                )
            await asyncio.sleep(TICK_SECONDS)

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"{self.task_name} already runs")
        self._task = asyncio.get_running_loop().create_task(self.run(), name=self.task_name)

    async def stop(self) -> None:
        """Cancel the background task and wait for it to end."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
