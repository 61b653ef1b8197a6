"""Structured logs that can not carry an element, identifier, key or certificate.

One JSON object per line (time, level, logger, message and the allow-listed fields).
The same three guards as the hub's logs (``hub/logs.py``, which this package may not
import): attributes outside ``ALLOWED_FIELDS`` are dropped, ``%`` arguments other than
numbers, booleans and ``None`` become ``<redacted>``, and an exception is logged as its
type and stack only, never its message. The access log names the route pattern, never
the raw path, and never a header, query or body.
"""

from __future__ import annotations

import json
import logging
import traceback
from datetime import UTC, datetime
from typing import IO, Any

ALLOWED_FIELDS = frozenset(
    {
        "request_id", "method", "route", "status", "duration_ms", "org", "count", "problem",
        "exc_type", "traceback", "crl_number",
    }
)  # fmt: skip
DROPPED_LOGGERS = frozenset({"aiohttp.access"})
REDACTED = "<redacted>"
MAX_MESSAGE_CHARS = 1000
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_MARK = "_schakel_pseudonymiser_handler"


class AllowListFilter(logging.Filter):
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
        return {key: _safe(value) for key, value in args.items()}
    return tuple(_safe(value) for value in args)


def _safe(value: object) -> object:
    return value if value is None or isinstance(value, bool | int | float) else REDACTED


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = record.msg
        moment = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "time": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": message[:MAX_MESSAGE_CHARS],
        }
        for name in sorted(ALLOWED_FIELDS):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value if isinstance(value, bool | int | float) else str(value)
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))


def configure_logging(level: int | str, *, stream: IO[str]) -> None:
    """Send every record, filtered and as one JSON line, to ``stream``."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    setattr(handler, _MARK, True)
    handler.addFilter(AllowListFilter())
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
