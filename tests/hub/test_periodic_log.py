"""hub.periodic: a failing tick is logged as what failed and its type, never its message."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator

import pytest

from hub.logs import configure_logging
from hub.periodic import Periodic


class Failing(Periodic):
    failure = "signing a tree head failed"

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self.ticks = 0

    async def tick(self) -> None:
        self.ticks += 1
        raise ValueError("pseudonym AbCdEf of a person")


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging(logging.INFO, stream=stream)
    yield stream
    root.handlers[:], root.level = handlers, level


async def test_a_failed_tick_says_what_failed_and_its_type_only(stream: io.StringIO) -> None:
    work = Failing(logging.getLogger("hub.treeheads"))
    work.start()
    for _ in range(100):
        if work.ticks:
            break
        await asyncio.sleep(0.01)
    await work.stop()
    text = stream.getvalue()
    assert "signing a tree head failed: ValueError; trying again" in text
    assert '"exc_type":"builtins.ValueError"' in text
    assert "AbCdEf" not in text and "<redacted>" not in text
