"""``schakel org``: signals, the inbox and the outbox.

``send-signal`` builds the payload from options (identifying details the safe way,
:mod:`clients.cli.person`) or takes it whole from ``--file``; ``inbox`` receives,
verifies and lists (and says loudly which messages a sender named that never arrived);
``show`` opens one message again; ``outbox`` shows what waits for the hub and sends it;
``sent`` shows the sends the hub lost or that were not acknowledged, and sends one again.
Registered on the ``org`` group by :mod:`clients.cli.org`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from clients.cli.common import (
    Settings,
    acting,
    emit,
    given,
    guarded,
    load_json,
    offline,
    pass_settings,
    plain,
    report_outbox,
    report_sent,
    warn,
    when,
)
from clients.cli.person import person_given, person_options, read_person
from clients.errors import ClientError, HubUnreachable
from clients.inbox import ReceivedMessage, RejectedMessage
from clients.organisation import Organisation
from clients.outbox import OutboxEntry, Sent
from clients.payloads import Unlinked, summary_of
from clients.sentview import SentCheck
from clients.state import MissingMessage
from protocol.pseudonym import Identity

WATCH_RETRY_SECONDS = 10
# The options that build a signal, which --file (the whole signal) leaves no room for.
SIGNAL_OPTIONS = {
    "exploitation": "--exploitation",
    "indicators": "--indicator",
    "text": "--text",
    "urgency": "--urgency",
    "consent": "--consent/--no-consent",
}


@click.command()
@person_options
@pass_settings
@guarded
def pseudonyms(settings: Settings, **values: Any) -> None:
    """Derive the pseudonyms of a person (no message is sent).

    On an OPRF network the two pseudonymisation services make them (they see only blinded
    values); else they are derived locally with the linking key.
    """
    person = read_person(click.get_current_context(), values, now=int(time.time()))
    if not person:
        raise click.UsageError("give at least one identifying detail (--person, --ask, ...)")
    identity = Identity(**person)
    derived = acting(
        settings, lambda organisation: organisation.derive_pseudonyms(identity), send_outbox=False
    )
    emit(settings, {"pseudonyms": list(derived)}, "\n".join(derived) or "(none)")


@click.command("send-signal")
@click.option("--to", "recipients", multiple=True, required=True, help="Recipient org (repeat).")
@click.option(
    "--file",
    "signal_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The whole signal payload as JSON (instead of the options below).",
)
@person_options
@click.option(
    "--exploitation",
    type=click.Choice(["sexual", "labour", "criminal", "organ_removal", "unknown"]),
    default="unknown",
    show_default=True,
)
@click.option("--indicator", "indicators", multiple=True, help="Indicator code (repeat).")
@click.option("--text", help="Free text (at most 4000 characters).")
@click.option(
    "--urgency",
    type=click.Choice(["low", "normal", "high", "immediate_danger"]),
    default="normal",
    show_default=True,
)
@click.option("--consent/--no-consent", default=None, help="Did the person consent to sharing?")
@click.option(
    "--unlinked",
    is_flag=True,
    help="Send it although no identifier can link it to another signal (it becomes a case "
    "of its own).",
)
@pass_settings
@guarded
def send_signal(
    settings: Settings,
    recipients: tuple[str, ...],
    signal_file: Path | None,
    exploitation: str,
    indicators: tuple[str, ...],
    text: str | None,
    urgency: str,
    consent: bool | None,
    unlinked: bool,
    **values: Any,
) -> None:
    """Send a signal about a possible victim to one or more organisations.

    Identifying details come from --person FILE (or - for standard input) or --ask, so
    that they stay out of shell history and the process list. What the hub can not take
    yet waits in the outbox and goes out with the next command that reaches it.
    """
    ctx = click.get_current_context()
    if signal_file is not None:
        mixed = person_given(ctx) + [SIGNAL_OPTIONS[n] for n in given(ctx, *SIGNAL_OPTIONS)]
        if mixed:
            raise click.UsageError(
                f"--file holds the whole signal: leave out {', '.join(mixed)} (they would be "
                "ignored), or leave out --file"
            )
        payload = load_json(signal_file)
    else:
        if consent is None:
            raise click.UsageError("say --consent or --no-consent (or give --file)")
        payload = {
            "schema": "schakel.signal/1",
            "person": read_person(ctx, values, now=int(time.time())),
            "exploitation": exploitation,
            "urgency": urgency,
            "consent_to_share": consent,
        }
        if indicators:
            payload["indicators"] = list(indicators)
        if text is not None:
            payload["text"] = text

    async def send(organisation: Organisation) -> Sent:
        try:
            return await organisation.send_signal(payload, recipients, unlinked=unlinked)
        except Unlinked as exc:
            raise ClientError(f"{exc}: --unlinked") from None

    sent = acting(settings, send)
    if unlinked and not sent.pseudonyms:
        warn("no identifier links this signal to any other: it becomes a case of its own")
    report_sent(settings, sent, "signal")


# -- the inbox ---------------------------------------------------------------------------


def message_line(message: ReceivedMessage) -> dict[str, Any]:
    line = {
        "cursor": message.cursor,
        "id": message.id,
        "sender": message.sender,
        "kind": message.kind,
        "created": message.created,
        "pseudonyms": [p[:16] for p in message.pseudonyms],
        "summary": summary(message.kind, message.payload, message.ref, message.case),
    }
    header = {"case": message.case, "ref": message.ref, "status": message.status}
    return line | {key: value for key, value in header.items() if value is not None}


def summary(
    kind: str, payload: Mapping[str, Any], ref: str | None = None, case: str | None = None
) -> str:
    """One line about a payload: its coded fields, never names or free text."""
    if kind == "referral":
        text = f"referral for {payload.get('service', '?')}, urgency {payload.get('urgency', '?')}"
        text += f", case {case}" if case else ""
        return text + (f", replaces {ref}" if ref else "")
    if kind == "status":
        reason = payload.get("reason_code")
        about = f" about referral {ref}" if ref else ""
        return f"status {payload.get('status', '?')}{about}" + (f" ({reason})" if reason else "")
    return summary_of(kind, dict(payload))


def _text_line(item: dict[str, Any]) -> str:
    created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(item["created"]))
    short = ",".join(item["pseudonyms"]) or "-"
    return (
        f"{item['cursor']:>6}  {item['id']}  {item['sender']:<16} {item['kind']:<8} "
        f"{created}Z  {short}  {item['summary']}"
    )


def _rejected_line(item: RejectedMessage) -> dict[str, Any]:
    return {"cursor": item.cursor, "id": item.id, "sender": item.sender, "rejected": item.reason}


def _missing_line(item: MissingMessage) -> dict[str, Any]:
    return {"id": item.id, "sender": item.sender, "named_by": item.named_by, "since": item.at}


def _missing_text(item: MissingMessage) -> str:
    return (
        f"MISSING {item.id} from {item.sender}: named as sent before {item.named_by}, but "
        "neither held here nor served by the hub (withheld?)"
    )


@click.command()
@click.option("--watch", is_flag=True, help="Keep listening for new messages.")
@click.option(
    "--resync",
    is_flag=True,
    help="Read the whole inbox again from its start: only once the hub's operator confirmed "
    "that the hub was restored from a backup (after 'INBOX WENT BACKWARDS'). Messages held "
    "here are kept and not taken twice.",
)
@pass_settings
@guarded
def inbox(settings: Settings, watch: bool, resync: bool) -> None:
    """Receive new messages, verify and acknowledge them, then list the inbox.

    Messages that a sender named as sent before another one, but that never arrived, are
    listed as MISSING (and warned about) until they arrive.
    """

    async def read(organisation: Organisation) -> None:
        result = await (organisation.resync() if resync else organisation.receive())
        lines = [message_line(organisation.show(m.id)) for m in organisation.state.messages()]
        rejected = [_rejected_line(r) for r in result.rejected]
        missing = organisation.state.missing()
        for gone in missing:
            warn(_missing_text(gone))
        if settings.as_json:
            document = {
                "messages": lines,
                "rejected": rejected,
                "missing": [_missing_line(m) for m in missing],
            }
            click.echo(json.dumps(document, indent=2))
        else:
            for line in lines:
                click.echo(_text_line(line))
            for item in rejected:
                click.echo(f"{item['cursor']:>6}  {item['id']}  REJECTED ({item['rejected']})")
            for lost in missing:
                click.echo(f"{'-':>6}  {lost.id}  {_missing_text(lost)}")
        if watch:
            await _watch(settings, organisation)

    acting(settings, read)


async def _watch(settings: Settings, organisation: Organisation) -> None:
    while True:
        try:
            async for item in organisation.watch():
                if isinstance(item, RejectedMessage):
                    data: dict[str, Any] = _rejected_line(item)
                    text = f"{item.cursor:>6}  {item.id}  REJECTED ({item.reason})"
                else:
                    data = message_line(item)
                    text = _text_line(data)
                click.echo(json.dumps(data) if settings.as_json else text)
        except HubUnreachable as exc:
            warn(f"{exc}; retrying in {WATCH_RETRY_SECONDS} s")
        await asyncio.sleep(WATCH_RETRY_SECONDS)


@click.command()
@click.argument("message_id")
@pass_settings
@guarded
def show(settings: Settings, message_id: str) -> None:
    """Decrypt and show one received message in full."""
    with offline(settings) as organisation:
        message = organisation.show(message_id)
    data = {
        **message_line(message),
        "pseudonyms": list(message.pseudonyms),
        "payload": message.payload,
    }
    del data["summary"]
    shown = {**data, "created": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(message.created))}
    header = "\n".join(f"{k}: {v}" for k, v in shown.items() if k not in ("payload", "pseudonyms"))
    emit(
        settings,
        data,
        header
        + "\npseudonyms:\n"
        + "".join(f"  {p}\n" for p in message.pseudonyms)
        + json.dumps(message.payload, indent=2, ensure_ascii=False, sort_keys=True),
    )


# -- the outbox --------------------------------------------------------------------------


@click.group(invoke_without_command=True)
@pass_settings
@click.pass_context
def outbox(ctx: click.Context, settings: Settings) -> None:
    """What waits for the hub, and what it refused.

    \b
      schakel org outbox              list what waits (oldest first) and what was refused
      schakel org outbox send         send what waits now
      schakel org outbox drop ID      remove a message: it will not be sent
    """
    if ctx.invoked_subcommand is None:
        guarded(_list_outbox)(settings)


def _list_outbox(settings: Settings) -> None:
    with offline(settings) as organisation:
        entries = organisation.outbox.entries()
    emit(
        settings,
        {"outbox": plain(entries)},
        "\n".join(_entry_text(e) for e in entries) if entries else "the outbox is empty",
    )


def _entry_text(entry: OutboxEntry) -> str:
    about = f" {entry.status} about {entry.ref}" if entry.status else ""
    why = f": {entry.problem}" if entry.problem else ""
    tried = f", {entry.attempts} attempts, last {when(entry.tried_at)}" if entry.attempts else ""
    return (
        f"{entry.state.upper():<8} {entry.id}  {entry.kind}{about} to {','.join(entry.recipients)}"
        f", written {when(entry.created)}{tried}{why}"
    )


@outbox.command("send")
@pass_settings
@guarded
def outbox_send(settings: Settings) -> None:
    """Send what waits in the outbox now, oldest first."""
    report = acting(settings, lambda organisation: organisation.send_outbox(), send_outbox=False)
    if not settings.as_json:
        report_outbox(report)
    emit(
        settings,
        {
            "sent": [s.id for s in report.sent],
            "refused": plain(report.refused),
            "waiting": plain(report.waiting),
        },
        f"{len(report.sent)} sent, {len(report.refused)} refused, "
        f"{len(report.waiting)} still waiting",
    )
    if report.waiting and not report.sent and not report.refused:
        problem = report.waiting[0].problem or ""
        services = problem.startswith("pseudonymisation service")
        warn(f"{'still waiting' if services else 'the hub is still out of reach'}: {problem}")


@outbox.command("drop")
@click.argument("message_id")
@pass_settings
@guarded
def outbox_drop(settings: Settings, message_id: str) -> None:
    """Remove a waiting or refused message from the outbox: it will not be sent."""
    with offline(settings) as organisation:
        organisation.outbox.drop(message_id)
    emit(settings, {"dropped": message_id}, f"dropped {message_id} from the outbox")


# -- what was sent -----------------------------------------------------------------------

DEFAULT_UNACKNOWLEDGED_HOURS = 24
DELETED_TEXT = {
    "expired": "it reached the network's maximum age before every recipient acknowledged it",
    "case-ended": "its case's retention period ended",
    "erased": "erased on a person's request by the network's privacy officer",
}


def _check_text(check: SentCheck) -> str:
    parts = []
    if check.deleted is not None:
        at, reason = check.deleted
        parts.append(f"the hub deleted it {when(at)} ({DELETED_TEXT.get(reason, reason)})")
    if not check.held:
        parts.append("the hub no longer holds it")
    elif check.lost:
        parts.append(f"the hub holds no delivery to {','.join(check.lost)}")
    if check.unacknowledged:
        parts.append(f"not acknowledged by {','.join(check.unacknowledged)}")
    again = "; send it again with --resend ID" if check.resendable and check.lost else ""
    label = "LOST" if check.lost else "DELETED" if check.deleted else "UNACKED"
    return (
        f"{label:<8} {check.id}  {check.kind} to "
        f"{','.join(check.recipients)}, accepted {when(check.accepted)}: "
        f"{'; '.join(parts)}{again}"
    )


@click.command()
@click.option(
    "--older-than",
    "hours",
    type=click.IntRange(0, 24 * 365),
    default=DEFAULT_UNACKNOWLEDGED_HOURS,
    show_default=True,
    help="List a send as not acknowledged once this many hours passed since the hub took it.",
)
@click.option(
    "--resend",
    "resend_id",
    metavar="ID",
    help="Send message ID again, unchanged, from the copy kept here (same id: the hub takes "
    "it once).",
)
@pass_settings
@guarded
def sent(settings: Settings, hours: int, resend_id: str | None) -> None:
    """Sends the hub lost, or that recipients did not acknowledge in time.

    Compares what this organisation sent with what the hub still holds (GET /v1/sent):
    LOST when the hub holds no delivery to a recipient (the message, or one delivery,
    is gone: a restored backup, or withheld), UNACKED when a recipient did not
    acknowledge it within --older-than hours, DELETED when the hub deleted it under the
    network's retention policy (or an erasure) before every recipient acknowledged it.
    Nothing is listed when all is well.
    """
    if resend_id is not None:
        resent = acting(settings, lambda organisation: organisation.resend(resend_id))
        text = (
            f"sent again: {resent.id} (the hub took it anew)"
            if resent.created
            else f"the hub already holds {resent.id}: it took nothing new; a recipient it "
            "holds no delivery for still lacks it (tell the privacy officer)"
        )
        emit(settings, {"id": resent.id, "created": resent.created}, text)
        return
    checks = acting(settings, lambda organisation: organisation.check_sent(older_than=hours * 3600))
    for check in checks:
        if check.lost:
            warn(f"message {check.id} to {','.join(check.lost)} is lost on the hub")
    emit(
        settings,
        {"sent": plain(checks)},
        "\n".join(_check_text(c) for c in checks)
        or f"every send is held by the hub and acknowledged (within {hours} h)",
    )
