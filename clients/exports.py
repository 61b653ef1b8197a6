"""What the client writes out for people: harmless to open, readable by its owner only.

Audit entries, reports and the CoMensha files hold strings that organisations typed
(user ids, purpose text, names) and that the hub merely bounded; a file must not let
them act on whoever opens it.

* NDJSON: ``json.dumps(..., ensure_ascii=True)``; every non-ASCII or control
  character travels as a ``\\uXXXX`` escape and ``json.loads`` gives the exact
  string back.
* CSV (``csv`` module): every field goes through :func:`neutral_cell`: each
  character of Unicode category C (controls, bidi and other format marks,
  surrogates, private use, unassigned) and U+2028/U+2029 is shown as the text
  ``\\uXXXX`` (``\\UXXXXXXXX`` beyond the BMP), and a field starting with
  ``= + - @``, tab or carriage return gets a leading ``'`` so that no
  spreadsheet takes it for a formula.
* HTML: :func:`neutral_text` (the same ``\\uXXXX`` display) then ``html.escape``.

Personal fields of an access-log entry that were erased (``protocol.auditlog``, version
2) are written as the word ``erased``, never left empty: empty would read as "none".

Every file is new and private (:func:`new_private_file`, :func:`write_new_files`):
mode 0600, never written through a symlink, never over an existing file; several files
that belong together are written all or none.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import secrets
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from clients.errors import ClientError
from protocol.auditlog import ERASED, AuditEntry

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
ENTRY_COLUMNS = (
    "index",
    "time",
    "action",
    "outcome",
    "reason",
    "org",
    "user",
    "role",
    "purpose",
    "purpose_text",
    "object_type",
    "object_ids",
    "pseudonyms",
    "source",
    "request_id",
)


def ndjson_line(document: Any) -> str:
    """One NDJSON line: ASCII only, sorted keys, no spaces, ending in a newline."""
    return json.dumps(document, ensure_ascii=True, sort_keys=True, separators=(",", ":")) + "\n"


def _shown(char: str) -> str:
    if unicodedata.category(char).startswith("C") or char in "\u2028\u2029":
        code = ord(char)
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
    return char


def neutral_text(value: object) -> str:
    """``value`` as text with every invisible or control character shown as ``\\uXXXX``."""
    text = "" if value is None else str(value)
    return "".join(_shown(c) for c in text)


def neutral_cell(value: object) -> str:
    """A CSV field: :func:`neutral_text`, and a leading ``'`` before a formula start."""
    text = "" if value is None else str(value)
    shown = neutral_text(text)
    return "'" + shown if text.startswith(FORMULA_START) else shown


def iso_time(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def entry_row(entry: AuditEntry) -> list[object]:
    """The CSV row of ``entry``; its personal fields read ``erased`` once erased."""
    erased = ERASED if entry.erased else None
    return [
        entry.index,
        iso_time(entry.time),
        entry.action,
        entry.outcome,
        entry.reason,
        entry.org,
        erased or entry.user,
        entry.role,
        entry.purpose,
        erased or entry.purpose_text,
        entry.object_type,
        " ".join(entry.object_ids),
        erased or " ".join(entry.pseudonyms),
        erased or entry.source,
        entry.request_id,
    ]


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A CSV document (RFC 4180 line ends) with every field neutralised."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL)
    writer.writerow([neutral_cell(h) for h in header])
    for row in rows:
        writer.writerow([neutral_cell(v) for v in row])
    return out.getvalue()


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One line of the NEN 7513 overview."""

    index: int
    time: int
    org: str | None
    user: str | None
    role: str | None
    action: str
    purpose: str | None
    purpose_text: str | None
    outcome: str
    reason: str | None
    object_type: str
    objects: tuple[str, ...]
    erased: bool = False  # user and purpose text were erased (shown as "erased")

    @classmethod
    def of(cls, entry: AuditEntry, objects: Iterable[str] | None = None) -> ReportRow:
        shown = entry.object_ids if objects is None else tuple(objects)
        return cls(
            entry.index,
            entry.time,
            entry.org,
            entry.user,
            entry.role,
            entry.action,
            entry.purpose,
            entry.purpose_text,
            entry.outcome,
            entry.reason,
            entry.object_type,
            tuple(shown),
            entry.erased,
        )

    def cells(self) -> list[object]:
        outcome = self.outcome if self.reason is None else f"{self.outcome} ({self.reason})"
        erased = ERASED if self.erased else None
        return [
            iso_time(self.time),
            self.org,
            erased or self.user,
            self.role,
            self.action,
            self.purpose,
            erased or self.purpose_text,
            outcome,
            self.object_type,
            " ".join(self.objects),
            self.index,
        ]


REPORT_COLUMNS = (
    "time (UTC)",
    "organisation",
    "user",
    "role",
    "action",
    "purpose",
    "purpose text",
    "outcome",
    "object type",
    "objects",
    "log index",
)


def report_csv(rows: Sequence[ReportRow]) -> str:
    return csv_text(REPORT_COLUMNS, (row.cells() for row in rows))


_STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
    "th,td{border:1px solid #999;padding:4px 8px;text-align:left;vertical-align:top}"
    "th{background:#eee}td{font-family:monospace}"
)


def report_html(title: str, summary: Sequence[str], rows: Sequence[ReportRow]) -> str:
    """A self-contained page (no scripts, no external resources), every value escaped."""

    def cell(value: object, tag: str = "td") -> str:
        return f"<{tag}>{html.escape(neutral_text(value), quote=True)}</{tag}>"

    head = "".join(cell(c, "th") for c in REPORT_COLUMNS)
    body = "\n".join("<tr>" + "".join(cell(v) for v in row.cells()) + "</tr>" for row in rows)
    lines = "".join(f"<p>{html.escape(neutral_text(s))}</p>" for s in summary)
    safe_title = html.escape(neutral_text(title))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">"
        f"<title>{safe_title}</title><style>{_STYLE}</style></head>\n<body>"
        f"<h1>{safe_title}</h1>{lines}\n<table><thead><tr>{head}</tr></thead><tbody>\n"
        f"{body}\n</tbody></table></body></html>\n"
    )


# -- private files ---------------------------------------------------------------------


_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


def new_private_file(path: Path) -> IO[str]:
    """A new text file, 0600, never through a symlink, never over an existing file."""
    try:
        fd = os.open(path, _NEW, 0o600)
    except FileExistsError:
        raise ClientError(f"{path} exists already: choose another file") from None
    return os.fdopen(fd, "w", encoding="utf-8", newline="")


def check_new_files(targets: Sequence[Path]) -> None:
    """ClientError unless every target is a different file that does not exist yet (check
    before doing the work that fills them; :func:`write_new_files` checks again)."""
    if len({target.resolve() for target in targets}) != len(targets):
        raise ClientError("each file must be a different file")
    for target in targets:
        if target.exists() or target.is_symlink():
            raise ClientError(f"{target} already exists: choose another name, or remove it")


def write_new_files(targets: Sequence[Path], texts: Sequence[bytes]) -> None:
    """Write every file, or none: each to a private temporary name, then linked into place.

    ``os.link`` refuses an existing target, so nothing is overwritten; if any step
    fails, every file written so far (temporary or linked) is removed again.
    """
    check_new_files(targets)
    made: list[Path] = []
    try:
        temps = [
            _write_private(target, text, made) for target, text in zip(targets, texts, strict=True)
        ]
        for temp, target in zip(temps, targets, strict=True):
            os.link(temp, target)
            made.append(target)
        for temp in temps:
            temp.unlink()
            made.remove(temp)
    except BaseException:
        for path in made:
            path.unlink(missing_ok=True)
        raise


def _write_private(target: Path, data: bytes, made: list[Path]) -> Path:
    temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temp, _NEW, 0o600)
    made.append(temp)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return temp
