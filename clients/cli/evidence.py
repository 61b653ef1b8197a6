"""``schakel audit evidence verify FILE``: does an evidence file prove a split view?

Offline: it reads the file (``protocol.evidence``), checks every signature against the
pinned network root (``<home>/keys/root.pem``, or ``--root``) and the hub certificates it
carries, and says in plain words what it proves.

Exit codes: ``0`` the file proves that the hub showed two histories; ``4`` it is a
well-formed evidence file that proves nothing (a signature, certificate or proof does not
hold); ``6`` it is not an evidence file at all (does not parse); ``1`` the root can not
be read; ``2`` usage.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from clients.cli.common import (
    EXIT_FAILED,
    EXIT_FILE_UNREADABLE,
    EXIT_UNVERIFIED,
    Settings,
    emit,
    fail,
)
from keys.errors import KeysError
from keys.keyfile import read_bounded
from protocol.certificate import MAX_CERT_BYTES, RootCertificate, load_root, pem_decode
from protocol.encoding import b64e
from protocol.errors import ProtocolError, VerificationError
from protocol.evidence import (
    FORK,
    MAX_EVIDENCE_BYTES,
    Proven,
    SeenHead,
    parse_evidence,
    verify_evidence,
)


@click.group("evidence")
def evidence() -> None:
    """Evidence files: two heads the hub's key signed that can not both be true."""


@evidence.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--root",
    "root_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The network root certificate (default: the one pinned in <home>/keys/root.pem).",
)
@click.pass_obj
def verify(settings: Settings, file: Path, root_path: Path | None) -> None:
    """Check FILE offline and say what it proves (exit 0: a split view is proven)."""
    try:
        found = parse_evidence(read_bounded(file, MAX_EVIDENCE_BYTES))
    except (ProtocolError, KeysError, OSError) as exc:
        fail(f"{file} is not an evidence file: {_reason(exc)}", EXIT_FILE_UNREADABLE)
    try:
        root = _root(root_path or settings.key_dir / "root.pem", found.observed)
    except (ProtocolError, KeysError, OSError) as exc:
        fail(f"can not read the network root: {_reason(exc)}", EXIT_FAILED)
    try:
        proven = verify_evidence(found, root)
    except VerificationError as exc:
        emit(
            settings,
            {"proves": False, "reason": str(exc)},
            f"NOT EVIDENCE of a split view: {exc}.",
        )
        raise click.exceptions.Exit(EXIT_UNVERIFIED) from None
    emit(settings, _fields(proven, found.observer, found.observed), _text(proven, root,
          found.observer, found.observed))  # fmt: skip


def _reason(exc: BaseException) -> str:
    return (getattr(exc, "strerror", None) or str(exc))[:200]


def _root(path: Path, at: int) -> RootCertificate:
    data = read_bounded(path, 2 * MAX_CERT_BYTES)
    der = pem_decode(data, "CERTIFICATE") if data.lstrip().startswith(b"-----BEGIN") else data
    return load_root(der, now=at)


def _head(head: SeenHead) -> dict[str, Any]:
    return {"size": head.size, "root": b64e(head.root), "certificate": head.signer.fingerprint,
            "serial": head.signer.serial}  # fmt: skip


def _fields(proven: Proven, observer: str, observed: int) -> dict[str, Any]:
    return {
        "proves": True,
        "kind": proven.kind,
        "origin": proven.origin,
        "first": _head(proven.first),
        "second": _head(proven.second),
        "prefix_root": None if proven.prefix_root is None else b64e(proven.prefix_root),
        "observer": observer,
        "observed": observed,
    }


def _text(proven: Proven, root: RootCertificate, observer: str, observed: int) -> str:
    first, second = proven.first, proven.second
    when = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(observed))
    lines = [
        f"PROVEN: the hub of network {root.network} showed two different histories of its "
        "access log (a split view).",
        f"Its certified log key signed a head of {first.size} entries with root "
        f"{b64e(first.root)} (certificate serial {first.signer.serial}),",
        f"and a head of {second.size} entries with root {b64e(second.root)} (certificate "
        f"serial {second.signer.serial}).",
    ]
    if proven.kind == FORK:
        lines.append("A log has one root for each size, so both can not be true.")
    else:
        assert proven.prefix_root is not None
        lines.append(
            f"The hub's own consistency proof shows that the first {first.size} entries of the "
            f"second head have root {b64e(proven.prefix_root)}, not the first head's: the "
            "second history changed entries the first already held."
        )
    lines.append(f"Seen by {observer} at {when}. Checked against root {root.fingerprint}.")
    return "\n".join(lines)
