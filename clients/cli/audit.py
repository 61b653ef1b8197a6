"""``schakel audit``: what a privacy officer runs against the hub's access log.

Every command first has the hub sign a fresh tree head and checks it (signed by the
certified hub key, consistent with the head this client kept), then checks what the
hub serves against it. Exit codes as ``schakel org`` (:mod:`clients.cli`); 5 means the
log does not hold together (the message names sizes, roots and the first bad index),
6 that a file given to ``verify --export`` is not an export at all.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from clients.cli.common import (
    Settings,
    acting,
    emit,
    guarded,
    offline,
    pass_settings,
    repeat_on_commands,
    session_options,
    session_repeats,
)
from clients.cli.evidence import evidence
from clients.cli.person import person_options, read_person
from clients.errors import AuditLogInconsistent
from clients.exports import (
    ENTRY_COLUMNS,
    ReportRow,
    csv_text,
    entry_row,
    ndjson_line,
    new_private_file,
    report_csv,
    report_html,
)
from clients.logproofs import (
    ExportChecker,
    ExportUnreadable,
    from_hub,
    parse_export_head,
    parse_export_record,
)
from clients.organisation import Organisation
from clients.privacy_officer import (
    DEFAULT_MAX_OBJECTS_PER_DAY,
    PrivacyOfficer,
    Verified,
    verify_export_file,
)
from clients.retention_policy import erase_subject, report_lines
from clients.witnessing import Witnessed
from protocol.auditlog import ACTIONS, AuditEntry, TreeHead
from protocol.encoding import b64e
from protocol.pseudonym import Identity


@click.group("audit")
@session_options(
    purpose_default="audit",
    purpose_help="Why you read the log (e.g. data-subject-request for a subject report).",
)
@click.pass_context
def audit(ctx: click.Context, /, **options: Any) -> None:
    """A privacy officer: verify, export and report on the hub's access log.

    \b
      schakel audit verify                  the strongest check that is cheap (see --help)
      schakel audit verify --full           the whole log (network privacy officer)
      schakel audit verify --export FILE    offline, an export file
      schakel audit export --format csv --out log.csv
      schakel audit report --subject --person - --out-html report.html
      schakel audit anomalies
      schakel audit erase --person -        erase what the hub holds about one person
      schakel audit evidence verify FILE    does an evidence file prove a split view?

    --json, --user, --purpose and --purpose-text may also follow the command.
    """
    ctx.obj = Settings.of(**options)


audit.add_command(evidence)


def _head_json(head: TreeHead) -> dict[str, Any]:
    return {"size": head.size, "root": b64e(head.root), "time": head.time}


def _verified(
    settings: Settings,
    result: Verified,
    witnessed: Witnessed | None = None,
    alerts: tuple[dict[str, Any], ...] = (),
) -> None:
    """The verdict; with ``witnessed``, who cosigned the newest head and the quorum; and
    every alert this organisation's client raised (a split view, with its evidence)."""
    text = result.text()
    data = {
        "verified": result.checked,
        "mode": result.mode,
        "visible": result.visible,
        "erased": result.erased,
        "head": _head_json(result.head),
        "proves": text,
    }
    if witnessed is not None:
        data["witnessed"] = witnessed.to_json()
        text = f"{text}\nwitnesses: {witnessed.text()}"
    if alerts:
        data["alerts"] = list(alerts)
        text += "".join(f"\nALERT: {a['reason']} (evidence: {a['evidence']})" for a in alerts)
    emit(settings, data, text)


@audit.command()
@click.option(
    "--sample",
    "sample",
    type=click.IntRange(1, 100_000),
    default=None,
    metavar="N",
    help="Prove N random visible entries only: shows that those are in the signed log, "
    "not that no other entry was changed.",
)
@click.option("--all", "every", is_flag=True, help="Prove every entry this organisation sees.")
@click.option("--full", is_flag=True, help="Rebuild the whole tree (network privacy officer).")
@click.option(
    "--export",
    "export_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Verify an export file offline (no hub contact).",
)
@pass_settings
@guarded
def verify(
    settings: Settings, sample: int | None, every: bool, full: bool, export_file: Path | None
) -> None:
    """Check the log against signed tree heads; name the first bad index (exit 5).

    Without an option, the strongest check that is cheap: the network privacy officer
    rebuilds the whole log (up to 100,000 entries; beyond that a sample of 20, and the
    output says what a sample does not prove); an organisation's officer proves every
    entry it sees (the proofs come with the pages of entries). A file given to --export
    that is not an export at all exits 6.
    """
    if sum([sample is not None, every, full]) > 1:
        raise click.UsageError("--sample, --all and --full exclude each other")
    if export_file is not None:
        if sample is not None or every:
            raise click.UsageError("--export checks a file: --sample and --all ask the hub")
        with offline(settings) as organisation:
            _verified(settings, verify_export_file(organisation, export_file, full=full))
        return

    async def go(
        organisation: Organisation,
    ) -> tuple[Verified, Witnessed | None, tuple[dict[str, Any], ...]]:
        officer = PrivacyOfficer(organisation)
        if full:
            result = await officer.verify_full()
        elif every:
            result = await officer.verify_visible()
        elif sample is not None:
            result = await officer.verify_sample(sample)
        else:
            result = await officer.verify()
        return result, organisation.log.witnessed, organisation.alerts

    _verified(settings, *acting(settings, go))


def _filter_options(func: Any) -> Any:
    options = [
        click.option("--by-org", help="Only entries of this organisation's requests."),
        click.option("--by-user", help="Only entries of this user id."),
        click.option("--action", type=click.Choice(ACTIONS)),
        click.option("--object", "object_id", help="Only entries touching this object id."),
        click.option("--pseudonym", help="Only entries carrying this pseudonym."),
        click.option("--since", type=int, metavar="UNIX", help="From this time (Unix seconds)."),
        click.option("--until", type=int, metavar="UNIX", help="Up to this time (Unix seconds)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@audit.command()
@click.option("--format", "fmt", type=click.Choice(["ndjson", "csv"]), default="ndjson")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@_filter_options
@pass_settings
@guarded
def export(
    settings: Settings,
    fmt: str,
    out: Path,
    by_org: str | None,
    by_user: str | None,
    action: str | None,
    object_id: str | None,
    pseudonym: str | None,
    since: int | None,
    until: int | None,
) -> None:
    """Export the visible entries: NDJSON with inclusion proofs, or CSV (one row per entry)."""
    filters = {
        "org": by_org,
        "user": by_user,
        "action": action,
        "object": object_id,
        "pseudonym": pseudonym,
        "since": since,
        "until": until,
    }

    async def go(organisation: Organisation) -> tuple[TreeHead, int, AuditLogInconsistent | None]:
        officer = PrivacyOfficer(organisation)
        head = await officer.fresh_head()
        lines = organisation.hub.audit_export(size=head.size, filters=filters)
        return await _write_export(lines, head, out, fmt)

    head, count, problem = acting(settings, go)
    if problem is not None:
        raise AuditLogInconsistent(f"{problem} (the export was written to {out} all the same)")
    emit(
        settings,
        {"entries": count, "file": str(out), "format": fmt, "head": _head_json(head)},
        f"exported {count} entries to {out} ({fmt}), proven against head of size {head.size}",
    )


async def _write_export(
    lines: Any, head: TreeHead, out: Path, fmt: str
) -> tuple[TreeHead, int, AuditLogInconsistent | None]:
    """Write the hub's export to ``out`` while checking it; a stream that breaks off or
    does not parse leaves no file behind."""
    first = await anext(lines, None)
    try:
        served = None if first is None else parse_export_head(first)
    except ExportUnreadable as exc:
        raise from_hub(exc) from exc
    if served is None or (served.size, served.root) != (head.size, head.root):
        raise AuditLogInconsistent("the export is for another head than the verified one")
    checker = ExportChecker(head, full=False)
    problem: AuditLogInconsistent | None = None
    entries: list[AuditEntry] = []
    handle = new_private_file(out)  # refuses an existing file: only ours is removed below
    try:
        with handle:
            if fmt == "ndjson":
                handle.write(ndjson_line({"head": head.to_wire()}))
            position = 1
            async for line in lines:
                position += 1
                record = parse_export_record(line, position)
                try:
                    checker.feed(record)
                except AuditLogInconsistent as exc:
                    problem = problem or exc
                if fmt == "ndjson":
                    proof = None if record.proof is None else [b64e(h) for h in record.proof]
                    handle.write(ndjson_line({"entry": record.entry.to_wire(), "proof": proof}))
                else:
                    entries.append(record.entry)
            if fmt == "csv":
                handle.write(csv_text(ENTRY_COLUMNS, (entry_row(e) for e in entries)))
    except ExportUnreadable as exc:
        out.unlink(missing_ok=True)
        raise from_hub(exc) from exc
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return head, checker.count, problem


@audit.command()
@click.option(
    "--subject", is_flag=True, help="A data subject, named by --person, --ask or the flags."
)
@person_options
@click.option("--employee", metavar="ID", help="One employee's accesses instead (a user id).")
@click.option("--org", "employee_org", help="With --employee: the employee's organisation.")
@click.option("--out-csv", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out-html", type=click.Path(dir_okay=False, path_type=Path))
@pass_settings
@guarded
def report(
    settings: Settings,
    subject: bool,
    employee: str | None,
    employee_org: str | None,
    out_csv: Path | None,
    out_html: Path | None,
    **values: Any,
) -> None:
    """The chronological NEN 7513 overview: who accessed a subject's data, or one user's
    accesses (time, organisation, user, role, action, purpose, outcome)."""
    if subject == (employee is not None):
        raise click.UsageError("give either --subject with the person's details, or --employee ID")
    if out_csv is None and out_html is None:
        raise click.UsageError("give --out-csv FILE and/or --out-html FILE")
    person = read_person(click.get_current_context(), values, now=int(time.time()))
    if subject and not person:
        raise click.UsageError("--subject needs the person's details (--person, --ask, ...)")
    if not subject and person:
        raise click.UsageError("--employee reports one user's accesses: leave out the person")

    async def go(organisation: Organisation) -> tuple[TreeHead, list[ReportRow]]:
        officer = PrivacyOfficer(organisation)
        if subject:
            return await officer.subject_report(Identity(**person))
        assert employee is not None
        return await officer.user_report(employee, employee_org)

    head, rows = acting(settings, go)
    title = "Access to a data subject's messages" if subject else f"Accesses by user {employee}"
    summary = [
        f"Schakel access log, {len(rows)} entries, each proven against the signed tree head "
        f"of size {head.size} (root {b64e(head.root)}).",
        f"Made {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime())}.",
    ]
    if out_csv is not None:
        with new_private_file(out_csv) as handle:
            handle.write(report_csv(rows))
    if out_html is not None:
        with new_private_file(out_html) as handle:
            handle.write(report_html(title, summary, rows))
    emit(
        settings,
        {
            "entries": len(rows),
            "head": _head_json(head),
            "csv": _str(out_csv),
            "html": _str(out_html),
        },
        f"{len(rows)} entries; " + ", ".join(str(p) for p in (out_csv, out_html) if p),
    )


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


@audit.command()
@person_options
@pass_settings
@guarded
def erase(settings: Settings, **values: Any) -> None:
    """Erase what the hub holds about one person, where the law allows (network privacy
    officer; use --purpose data-subject-request).

    The person's pseudonyms are derived here, as for 'report --subject'; the hub erases the
    person's closed cases with their pseudonyms and messages, and acknowledged messages of
    open cases that name only this person, and says what it kept and why (a case still
    handled, a message not yet fetched, a case or message that also names others, the
    access log within its legal period). The erasure is itself an access-log entry.
    """
    person = read_person(click.get_current_context(), values, now=int(time.time()))
    if not person:
        raise click.UsageError("name the person (--person, --ask, or the flags)")

    async def go(organisation: Organisation) -> Any:
        return await erase_subject(organisation, Identity(**person))

    report = acting(settings, go)
    emit(settings, report.to_wire(), "\n".join(report_lines(report)))


@audit.command()
@click.option(
    "--max-objects-per-day",
    type=click.IntRange(1),
    default=DEFAULT_MAX_OBJECTS_PER_DAY,
    show_default=True,
    help="Flag a user who touched more distinct messages in one UTC day.",
)
@pass_settings
@guarded
def anomalies(settings: Settings, max_objects_per_day: int) -> None:
    """Flag unusual volumes per user and day, and denied reads of messages (an organisation
    asking for a message it neither sent nor received)."""

    async def go(organisation: Organisation) -> Any:
        return await PrivacyOfficer(organisation).anomalies(max_objects_per_day)

    head, found = acting(settings, go)
    emit(
        settings,
        {
            "head": _head_json(head),
            "anomalies": [
                {
                    "kind": a.kind,
                    "day": a.day,
                    "org": a.org,
                    "user": a.user,
                    "count": a.count,
                    "indexes": list(a.indexes),
                }
                for a in found
            ],
        },
        "\n".join(a.text() for a in found) or f"no anomalies in {head.size} entries",
    )


repeat_on_commands(audit, session_repeats())
