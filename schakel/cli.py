"""Root of the ``schakel`` command line."""

from __future__ import annotations

import click

from clients.cli import org
from clients.cli_audit import audit
from clients.cli_authority import authority
from hub.cli import hub
from schakel.demo import demo


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="schakel")
def cli() -> None:
    """Schakel: end-to-end-encrypted signals and referrals between organisations.

    \b
    Roles and their command groups:
      authority   the network authority: root, certificates, revocation, linking key
      org         an organisation: keys, enrolment, signals, inbox
      audit       a privacy officer: verify, export and report on the access log
      hub         the hub operator: keys, database, serve
      demo        a local demo network for trying Schakel on one machine
    """


cli.add_command(authority)
cli.add_command(org)
cli.add_command(audit)
cli.add_command(hub)
cli.add_command(demo)


def main() -> None:
    cli(prog_name="schakel")
