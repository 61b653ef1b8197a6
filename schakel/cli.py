"""Root of the ``schakel`` command line.

Each role's command group is imported when it is used, not before: ``schakel hub serve``
(started once per replica, and again after every restart) loads neither the client
side nor the demo.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

# command -> "module:attribute" of its click group
GROUPS = {
    "authority": "clients.cli.authority:authority",
    "org": "clients.cli.org:org",
    "audit": "clients.cli.audit:audit",
    "hub": "hub.cli:hub",
    "desk": "desk.cli:desk",
    "pseudonymiser": "pseudonymiser.cli:pseudonymiser",
    "witness": "witness.cli:witness",
    "demo": "schakel.demo:demo",
}


class _LazyGroup(click.Group):
    """A group whose subcommands are imported on first use (click's documented pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(GROUPS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = GROUPS.get(cmd_name)
        if target is None:
            return None
        module, name = target.split(":")
        command: Any = getattr(importlib.import_module(module), name)
        assert isinstance(command, click.Command), target
        return command


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="schakel")
def cli() -> None:
    """Schakel: end-to-end-encrypted signals and referrals between organisations.

    \b
    Roles and their command groups:
      authority      the network authority: root, certificates, revocation, linking key
      org            an organisation: keys, enrolment, signals, inbox
      audit          a privacy officer: verify, export and report on the access log
      hub            the hub operator: keys, database, serve
      desk           an organisation's web application for its people (Dutch)
      pseudonymiser  a pseudonymisation service: one share of the split OPRF key
      witness        an always-on witness: cosigns the hub's checkpoints it has checked
      demo           a local demo network for trying Schakel on one machine
    """


def main() -> None:
    cli(prog_name="schakel")
