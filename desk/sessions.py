"""Server-side sessions: the browser holds only a random id in a ``__Host-`` cookie.

A session is one of three stages: ``anonymous`` (before login: only a CSRF token),
``second-factor`` (the password was right; a second factor is due or must be set up),
and ``full``. Every change of stage gets a new id (no fixation). A session ends after
``idle`` seconds without a request that counts as activity, after ``absolute`` seconds in
all, at logout, and at once when its person's account changes (disabled, second factor
reset, password changed): each request compares the session's account generation with
the database's, so this holds across processes.

Sessions live in this process's memory, keyed by the SHA-256 of the id, so a memory
dump shows no usable cookie; the number of anonymous sessions is bounded.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ANONYMOUS = "anonymous"
SECOND_FACTOR = "second-factor"
FULL = "full"
COOKIE_PREFIX = "__Host-schakel-desk-"  # + the organisation: cookies ignore ports


def cookie_name(org: str) -> str:
    """The session cookie of ``org``'s desk (desks of one host name, as in the demo, on
    other ports, must not overwrite each other's cookie: browsers key cookies by host)."""
    return COOKIE_PREFIX + org


MAX_ANONYMOUS = 5000
MAX_SESSIONS = 20000


@dataclass(slots=True)
class Session:
    created: float
    seen: float
    csrf: str
    stage: str = ANONYMOUS
    person: str | None = None
    generation: int = 0
    purpose: str | None = None
    purpose_text: str | None = None
    locale: str = "nl"
    flash: str | None = None  # one message id shown on the next page
    scratch: dict[str, Any] = field(default_factory=dict)  # pending TOTP secret, challenges

    def __repr__(self) -> str:
        return f"Session(stage={self.stage!r}, person={self.person!r})"


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii", "replace")).hexdigest()


class Sessions:
    """Every session of this desk process."""

    def __init__(self, *, idle: int, absolute: int, clock: Callable[[], float] = time.time) -> None:
        self.idle = idle
        self.absolute = absolute
        self._clock = clock
        self._live: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._live)

    def new(self, *, locale: str = "nl") -> tuple[str, Session]:
        now = self._clock()
        self._evict()
        session_id = secrets.token_urlsafe(32)
        session = Session(created=now, seen=now, csrf=secrets.token_urlsafe(32), locale=locale)
        self._live[_key(session_id)] = session
        return session_id, session

    def get(self, session_id: str | None, *, touch: bool = True) -> Session | None:
        """The live session of this id, or None (unknown, idle too long, too old)."""
        if not session_id or len(session_id) > 100:
            return None
        key = _key(session_id)
        session = self._live.get(key)
        if session is None:
            return None
        now = self._clock()
        idle = self.idle if session.stage == FULL else min(self.idle, 15 * 60)
        if now - session.seen > idle or now - session.created > self.absolute:
            del self._live[key]
            return None
        if touch:
            session.seen = now
            self._live.move_to_end(key)
        return session

    def rotate(self, session_id: str, session: Session) -> str:
        """Give ``session`` a new id (at every change of stage); the old id is dead."""
        self._live.pop(_key(session_id), None)
        new_id = secrets.token_urlsafe(32)
        session.csrf = secrets.token_urlsafe(32)
        self._live[_key(new_id)] = session
        return new_id

    def end(self, session_id: str | None) -> None:
        if session_id:
            self._live.pop(_key(session_id), None)

    def end_person(self, person: str) -> int:
        """End every session of ``person``; how many ended."""
        keys = [k for k, s in self._live.items() if s.person == person]
        for key in keys:
            del self._live[key]
        return len(keys)

    def _evict(self) -> None:
        """Drop expired sessions; bound anonymous ones and the total (oldest first)."""
        now = self._clock()
        for key in [
            k
            for k, s in self._live.items()
            if now - s.seen > self.idle or now - s.created > self.absolute
        ]:
            del self._live[key]
        anonymous = [k for k, s in self._live.items() if s.stage == ANONYMOUS]
        for key in anonymous[: max(0, len(anonymous) - MAX_ANONYMOUS + 1)]:
            del self._live[key]
        while len(self._live) >= MAX_SESSIONS:
            self._live.popitem(last=False)
