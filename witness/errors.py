"""What the witness answers when it does not cosign, as exceptions carrying their status.

::

    WitnessError          500 internal: anything unexpected (the log says which request)
    ├── Malformed         400 the body is not an add-checkpoint request, or old size > size
    ├── Forbidden         403 no trusted key of the log signed it, or one signature failed
    ├── UnknownLog        404 the origin is not a log this witness follows (or no route)
    ├── Conflict          409 the old size is not the size the witness holds (carries it)
    ├── Unprocessable     422 bad proof, wrong empty root, or another root at the same size
    ├── TooLarge          413 the body exceeds the limit
    └── Unavailable       503 the database can not be reached

The 409 answers as tlog-witness says (``<size>\\n``, ``text/x.tlog.size``); every other
error is an RFC 9457 problem document (the specification leaves their bodies open).
Details never hold request bodies or keys.
"""

from __future__ import annotations

PROBLEM_BASE = "https://schakel.invalid/problems/witness/"


class WitnessError(Exception):
    status = 500
    slug = "internal"
    title = "Internal error"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug


class Malformed(WitnessError):
    status, slug, title = 400, "malformed", "Not an add-checkpoint request"


class Forbidden(WitnessError):
    status, slug, title = 403, "not-signed-by-the-log", "Not signed by a trusted log key"


class UnknownLog(WitnessError):
    status, slug, title = 404, "unknown-log", "Unknown log"


class Conflict(WitnessError):
    status, slug, title = 409, "old-size-mismatch", "The old size is not the size held"

    def __init__(self, size: int) -> None:
        super().__init__(f"the witness holds a checkpoint of size {size}")
        self.size = size


class Unprocessable(WitnessError):
    status, slug, title = 422, "inconsistent", "Not consistent with the checkpoint held"


class TooLarge(WitnessError):
    status, slug, title = 413, "too-large", "Request body too large"


class MethodNotAllowed(WitnessError):
    status, slug, title = 405, "method-not-allowed", "Method not allowed"


class Unavailable(WitnessError):
    status, slug, title = 503, "unavailable", "Service unavailable"
