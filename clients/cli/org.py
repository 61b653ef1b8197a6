"""``schakel org``: what an organisation runs.

Everything lives under ``--home`` (``SCHAKEL_HOME``)::

    keys/            the organisation's key directory (keys.organisation.OrgKeys)
    state.sqlite     local state: inbox cursor, received messages (sealed), directory
                     cache, what was sent, and the outbox
    state.keys.sqlite  one key per message kept: destroyed when its case's retention
                     period ends ('schakel org retention'); back it up apart

This module holds the group and the commands for keys and set-up; the commands for
messages live in :mod:`clients.cli.messages`, those for referrals and case work in
:mod:`clients.cli.cases`, and all are registered here.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import click

from clients.cli import cases, messages
from clients.cli.common import (
    Settings,
    acting,
    day,
    emit,
    guarded,
    offline,
    open_keys,
    pass_settings,
    passphrase,
    read_bounded,
    repeat_on_commands,
    session_options,
    session_repeats,
    warn,
    when,
)
from clients.cli.retention import retention
from clients.errors import ClientError
from clients.organisation import RetiredKey
from clients.retention_policy import retention_policy as policy_of_network
from clients.state import LocalState
from keys.keyfile import kdf_params_from_env, write_public_file
from keys.organisation import OrgKeys
from keys.witness import WitnessKeys
from protocol.certificate import MAX_CERT_BYTES, Certificate
from protocol.encoding import canonical_json
from protocol.envelope import STATUS_CODES
from protocol.types import parse_network_id, parse_org_id
from protocol.witness import MAX_WITNESS_BYTES


def _now() -> int:
    return int(time.time())


@click.group("org")
@session_options(
    purpose_default=None,
    purpose_help="Why you read case data, recorded in the hub's access log (required for "
    "inbox). Env: SCHAKEL_PURPOSE.",
)
@click.pass_context
def org(ctx: click.Context, /, **options: Any) -> None:
    """An organisation: keys, enrolment, signals, the inbox and the outbox.

    \b
    First time:
      schakel org init --org ID --network ID --root root.pem
      (send the printed request to the network authority)
      schakel org import-cert certificate.pem
      schakel org publish
      schakel org linking-key fetch

    --json, --user, --purpose and --purpose-text may also follow the command.
    """
    ctx.obj = Settings.of(**options)


@org.command()
@click.option("--org", "org_id", required=True, help="Your organisation id (a-z, 0-9, '-').")
@click.option("--network", required=True, help="The network id.")
@click.option(
    "--root",
    "root_file",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The network root certificate (PEM), as received from the authority.",
)
@pass_settings
@guarded
def init(settings: Settings, org_id: str, network: str, root_file: Path) -> None:
    """Create the keys, pin the network root and write the enrolment request."""
    params = kdf_params_from_env(os.environ)
    root_pem = read_bounded(root_file, 2 * MAX_CERT_BYTES)
    ids = parse_network_id(network), parse_org_id(org_id)
    secret = passphrase(settings, confirm=True)  # refused before anything is made
    settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    keys = OrgKeys.create(settings.key_dir, *ids, secret, params, allow_weak=params.weak)
    root = keys.pin_root(root_pem, now=_now())
    LocalState(settings.state_path).close()
    request = settings.key_dir / "request.pem"
    emit(
        settings,
        {
            "request": str(request),
            "key_fingerprint": keys.key_fingerprint,
            "root": root.fingerprint,
        },
        f"enrolment request: {request}\n"
        f"key fingerprint:   {keys.key_fingerprint}\n"
        f"pinned root:       {root.fingerprint}\n"
        "Send the request to the network authority and confirm the key fingerprint by phone.",
    )


@org.command("import-cert")
@click.argument("cert_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@pass_settings
@guarded
def import_cert(settings: Settings, cert_file: Path) -> None:
    """Import the certificate the authority issued (checked against the pinned root)."""
    keys = open_keys(settings)
    cert = keys.import_certificate(read_bounded(cert_file, 2 * MAX_CERT_BYTES), now=_now())
    data = _cert_json(cert)
    emit(settings, data, f"certificate {cert.fingerprint} for {cert.org}, roles {data['roles']}")


@org.command("witness-key")
@click.option(
    "--import",
    "cert_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Store the witness certificate the authority issued (CERT.json).",
)
@pass_settings
@guarded
def witness_key(settings: Settings, cert_file: Path | None) -> None:
    """This organisation's witness key: its client cosigns the heads of the hub's log.

    \b
      schakel org witness-key                   create it; send witness/request.json
      schakel authority certify-witness request.json --out witness-cert.json
      schakel org witness-key --import witness-cert.json
    """
    keys = open_keys(settings)
    witness = WitnessKeys.open_beside(keys)
    if cert_file is None:
        if witness is not None:
            raise ClientError(f"a witness key exists already in {witness.directory}")
        witness = WitnessKeys.create_beside(keys, now=_now())
        request = witness.directory / "request.json"
        text = (
            f"witness request: {request} (send it to the network authority)\n"
            f"witness name:    {witness.name}\nkey fingerprint: {witness.key_fingerprint}"
        )
        emit(settings, {"request": str(request), "name": witness.name}, text)
        return
    if witness is None:
        raise ClientError("no witness key yet: run 'schakel org witness-key' first")
    cert = witness.import_witness_certificate(
        read_bounded(cert_file, MAX_WITNESS_BYTES), now=_now()
    )
    emit(
        settings,
        {"serial": cert.serial, "name": cert.name, "not_after": cert.not_after},
        f"witness certificate {cert.serial} for {cert.name}, valid until {day(cert.not_after)}",
    )


@org.command()
@pass_settings
@guarded
def publish(settings: Settings) -> None:
    """Publish the certificate and the current encryption key bundle to the hub."""
    published = acting(settings, lambda organisation: organisation.publish())
    emit(
        settings,
        {"certificate": published.certificate, "bundle": published.bundle},
        f"published certificate {published.certificate}\npublished key bundle {published.bundle}",
    )


@org.command("export-bundle")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the signed key bundle (JSON) for the network authority.",
)
@pass_settings
@guarded
def export_bundle(settings: Settings, out: Path) -> None:
    """Write the current key bundle for the authority, who seals the linking key to it."""
    bundle = open_keys(settings).current_bundle(now=_now())
    write_public_file(out, canonical_json(bundle.to_wire()) + b"\n", overwrite=False)
    emit(
        settings,
        {"bundle": bundle.fingerprint, "file": str(out)},
        f"wrote key bundle {bundle.fingerprint} to {out}\n"
        "give it to the network authority: schakel authority linking-key seal --bundle ...",
    )


@org.group("linking-key")
def linking_key() -> None:
    """The network's linking key, sealed to this organisation by the authority."""


@linking_key.command("fetch")
@pass_settings
@guarded
def linking_key_fetch(settings: Settings) -> None:
    """Fetch, verify and store the linking keys sealed to this organisation."""
    versions = acting(settings, lambda organisation: organisation.fetch_linking_keys())
    if not versions:
        raise ClientError("the hub holds no linking key for this organisation yet")
    emit(settings, {"versions": versions}, f"linking key versions held: {versions}")


@org.command("destroy-linking-key")
@pass_settings
@guarded
def destroy_linking_key(settings: Settings) -> None:
    """Destroy this organisation's linking key once the authority retired it.

    Only after the transition window: the network is on the pseudonymisation services
    and the hub no longer accepts the old version's pseudonyms. Never taken again after.
    """
    destroyed = acting(settings, lambda organisation: organisation.destroy_linking_keys())
    files = [f"linking-key-v{v}.key" for v in destroyed]
    emit(
        settings,
        {"destroyed": list(destroyed), "files": files},
        f"destroyed linking key version(s) {', '.join(map(str, destroyed))}: removed "
        f"{', '.join(files)} from {settings.key_dir}\n"
        "To check: 'schakel org status' shows 'linking keys: none'; "
        f"'ls {settings.key_dir}' lists no linking-key-v*.key; and every backup or copy of "
        "this key directory made before today still holds the key: destroy those too.",
    )


# -- key rotation ----------------------------------------------------------------------


@org.command("retention-policy")
@pass_settings
@guarded
def retention_policy(settings: Settings) -> None:
    """The network's retention policy: fetched from the hub, checked against the root and
    kept when newer. How long the hub keeps envelopes, cases and access-log fields."""
    view = acting(settings, policy_of_network)
    if view.refused is not None:
        warn(view.refused)
    if view.policy is None:
        emit(settings, {"policy": None}, "the network has no retention policy yet")
        return
    periods = view.policy.periods()
    emit(
        settings,
        {"policy": view.policy.to_wire()},
        f"retention policy {view.policy.number} (issued {when(view.policy.issued)}), in days:\n"
        + "\n".join(f"  {name:<24} {days}" for name, days in periods.items()),
    )


@org.command("rotate-keys")
@pass_settings
@guarded
def rotate_keys(settings: Settings) -> None:
    """Make a new encryption key pair and bundle, and publish it.

    Senders seal to the new bundle from now on; clients that saw it refuse the old one
    should the hub serve it again. The older private keys are kept, so that messages
    sealed to them still open; 'schakel org old-keys' lists them and
    'schakel org delete-old-keys' deletes them once no sender can seal to them any more.
    """

    rotation = acting(settings, lambda organisation: organisation.rotate_keys())
    if not rotation.published:
        warn(
            f"encryption key {rotation.key} is current here, but the hub did not take its "
            f"bundle ({rotation.problem}): run 'schakel org publish' when the hub is back"
        )
    emit(
        settings,
        {
            "key": rotation.key,
            "bundle": rotation.bundle.fingerprint,
            "valid_until": rotation.bundle.not_after,
            "old_keys": list(rotation.retired),
            "published": rotation.published,
        },
        f"{'published' if rotation.published else 'made'} key bundle "
        f"{rotation.bundle.fingerprint} for new encryption key {rotation.key}, "
        f"valid until {day(rotation.bundle.not_after)}\n"
        f"older keys kept: {', '.join(map(str, rotation.retired))} "
        "(see 'schakel org old-keys')",
    )


@org.command("old-keys")
@pass_settings
@guarded
def old_keys(settings: Settings) -> None:
    """List the older encryption keys still kept, and when they may be deleted."""
    with offline(settings) as organisation:
        retired = organisation.retired_keys()
    now = _now()
    emit(
        settings,
        {"old_keys": [_retired_json(r) for r in retired]},
        "\n".join(_retired_text(r, now) for r in retired) or "no older keys are kept",
    )


def _retired_json(retired: RetiredKey) -> dict[str, Any]:
    return {
        "key": retired.key,
        "bundles": list(retired.bundles),
        "valid_until": retired.valid_until,
        "messages": retired.messages,
    }


def _retired_text(retired: RetiredKey, now: int) -> str:
    until = day(retired.valid_until)
    state = (
        f"senders may seal to it until {until}"
        if retired.valid_until > now
        else f"no longer sealed to since {until}: can be deleted"
    )
    return f"key {retired.key}: {retired.messages} stored messages sealed to it; {state}"


@org.command("delete-old-keys")
@click.option(
    "--before-expiry",
    is_flag=True,
    help="Also delete keys whose bundle is still valid: a message a sender seals to one "
    "later can never be opened.",
)
@pass_settings
@guarded
def delete_old_keys(settings: Settings, before_expiry: bool) -> None:
    """Delete the older encryption keys for good, after reading the inbox.

    Every message waiting on the hub is received first; what was sealed to a deleted key
    stays readable here (its content is kept encrypted in local state), but a stolen
    copy of the hub's database can no longer be opened with a later theft of the keys.
    """

    deleted = acting(
        settings,
        lambda organisation: organisation.delete_retired_keys(before_expiry=before_expiry),
    )
    keys = open_keys(settings)
    kept = [i for i in keys.kem_ids if i != keys.kem_current]
    text = f"deleted older keys: {', '.join(map(str, deleted))}" if deleted else "deleted none"
    if kept:
        text += f"; kept {', '.join(map(str, kept))} (still valid: see 'schakel org old-keys')"
    emit(settings, {"deleted": list(deleted), "kept": kept}, text)


# -- local status ----------------------------------------------------------------------


@org.command()
@click.argument("referral_id", required=False)
@click.argument("code", required=False, type=click.Choice(STATUS_CODES), metavar="[CODE]")
@click.option(
    "--file",
    "status_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The whole status payload (schakel.status/1) as JSON.",
)
@click.option("--note", help="The explanation: builds the minimal status payload.")
@click.option(
    "--reason",
    type=click.Choice(cases.DECLINE_REASONS),
    help="Why it was declined (with --note and code declined).",
)
@click.option("--started-on", help="The day care started, YYYY-MM-DD (with care_started).")
@pass_settings
@guarded
def status(
    settings: Settings,
    referral_id: str | None,
    code: str | None,
    status_file: Path | None,
    note: str | None,
    reason: str | None,
    started_on: str | None,
) -> None:
    """Without arguments: this organisation's local status. With REFERRAL_ID CODE: move a
    referral on (accepted, declined, care_started, closed) with --file or --note.

    \b
      schakel org status                      keys, linking keys, inbox, outbox (local)
      schakel org status ID accepted --note "we have a place from Monday"
      schakel org status ID declined --note "full" --reason no_capacity
    """
    if referral_id is None:
        if status_file or note or reason or started_on:
            raise click.UsageError("--file, --note, --reason, --started-on need REFERRAL_ID CODE")
        _local_status(settings)
        return
    if code is None:
        raise click.UsageError("give the status CODE after the REFERRAL_ID")
    cases.move_referral(settings, referral_id, code, status_file, note, reason, started_on)


def _cert_json(cert: Certificate) -> dict[str, Any]:
    return {
        "fingerprint": cert.fingerprint,
        "serial": cert.serial,
        "roles": sorted(cert.roles),
        "not_after": cert.not_after,
    }


def _pseudonyms_line(data: dict[str, Any]) -> str:
    """Where this organisation's pseudonyms come from, as far as it knows."""
    linking = f"linking keys: {data['linking_keys'] or 'none'}"
    if data["oprf_version"]:
        version = data["oprf_version"]
        services = f"pseudonyms:   made by the two pseudonymisation services (version {version})"
        return services + (f"\n{linking}" if data["linking_keys"] else "")
    if data["linking_keys"]:
        return linking
    return (
        "pseudonyms:   none made here yet: on a network with pseudonymisation services "
        "the first signal asks them (nothing to do); on an older network, run "
        "schakel org linking-key fetch"
    )


def _local_status(settings: Settings) -> None:
    """Organisation, network, certificate, keys, linking keys, inbox, outbox (local only)."""
    keys = open_keys(settings)
    cert = keys.certificate
    with LocalState(settings.state_path) as state:
        outbox = state.outbox()
        waiting = sum(1 for row in outbox if row.state == "waiting")
        data: dict[str, Any] = {
            "org": keys.org,
            "network": keys.network,
            "key_fingerprint": keys.key_fingerprint,
            "root": keys.root.fingerprint if keys.root_pinned else None,
            "certificate": None if cert is None else _cert_json(cert),
            "bundles": sorted(keys.kem_keys),
            "encryption_key": keys.kem_current,
            "old_keys": [i for i in keys.kem_ids if i != keys.kem_current],
            "linking_keys": sorted(keys.linking_keys),
            "oprf_version": state.oprf_version or None,
            "inbox_cursor": state.cursor,
            "messages": len(state.messages()),
            "rejected": len(state.rejected()),
            "sent": len(state.sent()),
            "outbox": {"waiting": waiting, "refused": len(outbox) - waiting},
            "alerts": state.alerts(),
        }
    bundles = ", ".join(sorted(keys.kem_keys))
    expiry = (
        "none yet: run 'schakel org import-cert CERT.pem'"
        if cert is None
        else f"{cert.fingerprint} (expires {day(cert.not_after)})"
    )
    old = f"; older keys kept: {data['old_keys']}" if data["old_keys"] else ""
    emit(
        settings,
        data,
        f"organisation: {data['org']}\nnetwork:      {data['network']}\n"
        f"certificate:  {expiry}\n"
        f"key bundles:  {bundles or 'none yet: run schakel org publish'}{old}\n"
        f"{_pseudonyms_line(data)}\n"
        f"inbox:        {data['messages']} messages, {data['rejected']} rejected, "
        f"cursor {data['inbox_cursor']}; {data['sent']} sent\n"
        f"outbox:       {data['outbox']['waiting']} waiting, "
        f"{data['outbox']['refused']} refused"
        + "".join(f"\nALERT:        {a['reason']} ({a['evidence']})" for a in data["alerts"]),
    )


for _command in (
    messages.pseudonyms,
    messages.send_signal,
    messages.inbox,
    messages.show,
    messages.outbox,
    messages.sent,
    cases.refer,
    cases.cases,
    cases.case,
    cases.referrals,
    cases.split,
    cases.merge,
    cases.unmerge,
    cases.events,
    cases.comensha,
    retention,
):
    org.add_command(_command)
repeat_on_commands(org, session_repeats())
