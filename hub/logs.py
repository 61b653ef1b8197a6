"""Structured logs that can not carry content, keys, tokens or pseudonyms.

``configure_logging`` makes the root logger write one JSON object per line::

    {"time": "2025-01-31T12:00:00.123Z", "level": "INFO", "logger": "hub.access",
     "message": "request", "request_id": "...", "method": "POST",
     "route": "/v1/messages", "status": 201, "duration_ms": 4.2, "org": "ggd-west"}

Three guards keep data out, so that nothing slips in by accident:

* ``AllowListFilter`` drops every attribute a caller attached to a record
  (``extra=...``) unless its name is in ``ALLOWED_FIELDS``, and drops the
  record of ``aiohttp.access`` (raw request lines carry paths with message
  ids and query strings) altogether;
* a message's ``%`` arguments are kept only when they are numbers, booleans
  or ``None``; any other argument is replaced by ``<redacted>``. Put values in
  the allow-listed fields instead. (This also mutes SQL parameters that a
  library might log.);
* an exception is logged as its type and stack frames only, never its
  message, which may quote data.

``access_log_middleware`` logs one line per request with the route pattern
(``/v1/messages/{id}``), never the raw path, and never headers, query strings
or bodies. It reads the organisation from ``request[hub.problems.ORG]``.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import IO, Any

from aiohttp import web

from hub.errors import HubError
from hub.problems import ORG, REQUEST_ID, route_pattern

ALLOWED_FIELDS = frozenset(
    {"request_id", "method", "route", "status", "duration_ms", "org", "exc_type", "traceback"}
)
DROPPED_LOGGERS = frozenset({"aiohttp.access"})
REDACTED = "<redacted>"
ACCESS_LOGGER = "hub.access"
MAX_MESSAGE_CHARS = 1000
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_HANDLER_MARK = "_schakel_json_handler"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AllowListFilter(logging.Filter):
    """Strip a record down to the standard attributes and ``ALLOWED_FIELDS``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name in DROPPED_LOGGERS:
            return False
        for name in [name for name in record.__dict__ if name not in _STANDARD]:
            if name not in ALLOWED_FIELDS:
                delattr(record, name)
        record.msg = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        record.args = _safe_args(record.args)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.exc_type = f"{type(exc).__module__}.{type(exc).__qualname__}"
            record.traceback = "".join(traceback.format_tb(exc.__traceback__))
        record.exc_info = None
        record.exc_text = None
        return True


def _safe_args(args: Any) -> Any:
    if not args:
        return args
    if isinstance(args, dict):
        return {key: _safe_value(value) for key, value in args.items()}
    return tuple(_safe_value(value) for value in args)


def _safe_value(value: object) -> object:
    return value if value is None or isinstance(value, bool | int | float) else REDACTED


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the allowed fields."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit the format
            message = record.msg
        entry: dict[str, Any] = {
            "time": _rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": message[:MAX_MESSAGE_CHARS],
        }
        for name in sorted(ALLOWED_FIELDS):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value if isinstance(value, bool | int | float) else str(value)
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))


class LineFormatter(logging.Formatter):
    """One short line per record, for a person watching a terminal (``schakel demo run``).

    A request (``hub.access``) reads ``12:00:01 GET /v1/inbox 200 4 ms police``: method,
    route pattern, status, duration and organisation, nothing else. Any other record
    reads ``12:00:01 ERROR hub.accesslog: message (exception type)``. It shows what the
    :class:`AllowListFilter` left, as :class:`JsonFormatter` does.
    """

    def format(self, record: logging.LogRecord) -> str:
        clock = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        if record.name == ACCESS_LOGGER and getattr(record, "route", None) is not None:
            fields = (record.__dict__.get(name) for name in ("method", "route", "status"))
            duration = getattr(record, "duration_ms", None)
            took = f"{duration:.0f} ms" if isinstance(duration, int | float) else "- ms"
            org = getattr(record, "org", None) or "-"
            return " ".join([clock, *(str(field) for field in fields), took, str(org)])
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = record.msg
        exc_type = getattr(record, "exc_type", None)
        suffix = f" ({exc_type})" if exc_type else ""
        line = f"{clock} {record.levelname} {record.name}: {message[:MAX_MESSAGE_CHARS]}{suffix}"
        return line.replace("\n", " ")


def _rfc3339(created: float) -> str:
    moment = datetime.fromtimestamp(created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def configure_logging(
    level: int | str, *, stream: IO[str], formatter: logging.Formatter | None = None
) -> None:
    """Send every log record, filtered and as one JSON line, to ``stream``.

    ``formatter`` replaces the JSON lines (:class:`LineFormatter` for the demo); the
    filter is the same. Replaces a handler an earlier call installed; leaves other
    handlers alone.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    setattr(handler, _HANDLER_MARK, True)
    handler.addFilter(AllowListFilter())
    handler.setFormatter(formatter or JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)


def access_log_middleware(
    logger: logging.Logger,
    *,
    clock: Callable[[], float] = time.perf_counter,
    observe: Callable[[web.Request, int, float], None] | None = None,
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """One log line per request: method, route pattern, status, duration, org.

    Put it before ``problem_middleware`` in the middleware list, so that it
    sees the status of the problem responses as well. ``observe(request, status,
    seconds)`` is told of each request too (the metrics, :mod:`hub.metrics`).
    """

    @web.middleware
    async def access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = clock()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except (HubError, web.HTTPException) as exc:
            status = exc.status
            raise
        finally:
            seconds = clock() - started
            if observe is not None:
                observe(request, status, seconds)
            org = request.get(ORG, request.get("org"))
            logger.info(
                "request",
                extra={
                    "request_id": request.get(REQUEST_ID),
                    "method": request.method,
                    "route": route_pattern(request),
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "org": org if isinstance(org, str) else None,
                },
            )

    return access_log
