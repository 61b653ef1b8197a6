"""A person's identifying details, read so that they stay out of shell history and ``ps``.

Three ways keep them out of both:

* ``--person FILE``: a JSON object with the fields below (``bsn``, ``given_names``,
  ``family_name``, ``date_of_birth``, ``phone``, ``document_number``,
  ``document_country``), in a file only you can read;
* ``--person -``: the same JSON object on standard input (from another program);
* ``--ask``: each detail asked on the terminal, Enter to leave one out.

The flags (``--bsn``, ``--given-names``, ...) remain for scripts that accept the risk:
whatever is typed in them stays in the shell's history and shows in the process list of
the machine, so using one prints a warning. A date of birth may be written as forms do
(DD-MM-YYYY); one after today is refused. No message ever repeats a value.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from clients.cli.common import given, warn
from clients.errors import ClientError, PayloadInvalid
from clients.payloads import day_of
from protocol.encoding import loads_strict
from protocol.errors import ProtocolError, ValidationError
from protocol.pseudonym import normalise_date

MAX_PERSON_BYTES = 4096
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Detail:
    option: str  # the click parameter name of its flag
    key: str  # the payload's field
    label: str  # what --ask asks


DETAILS: tuple[Detail, ...] = (
    Detail("bsn", "bsn", "BSN"),
    Detail("given_names", "given_names", "Given names"),
    Detail("family_name", "family_name", "Family name"),
    Detail("dob", "date_of_birth", "Date of birth (YYYY-MM-DD or DD-MM-YYYY)"),
    Detail("phone", "phone", "Phone number"),
    Detail("document", "document_number", "Travel-document number"),
    Detail("country", "document_country", "Country that issued the document (ISO 3166)"),
)
FLAGS = tuple(detail.option for detail in DETAILS)
INPUTS = ("person_file", "ask", *FLAGS)


def person_options(func: F) -> F:
    """``--person FILE|-``, ``--ask``, and the flags for scripts that accept the risk."""
    risky = "stays in shell history: prefer --person or --ask"
    options = [
        click.option(
            "--person",
            "person_file",
            metavar="FILE|-",
            help="The person's identifying details as a JSON object, from FILE or, with -, "
            "from standard input (keeps them out of shell history).",
        ),
        click.option("--ask", is_flag=True, help="Ask each identifying detail on the terminal."),
        click.option("--bsn", help=f"Citizen service number (BSN); {risky}."),
        click.option("--given-names", help=f"Given names; {risky}."),
        click.option("--family-name", help=f"Family name; {risky}."),
        click.option("--dob", help=f"Date of birth, YYYY-MM-DD or DD-MM-YYYY; {risky}."),
        click.option("--phone", help=f"Phone number; {risky}."),
        click.option("--document", help=f"Travel-document number (with --country); {risky}."),
        click.option("--country", help="Issuing country of the document (ISO 3166)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def person_given(ctx: click.Context) -> list[str]:
    """The identifying inputs given (option names as typed), for commands that refuse them."""
    names = {"person_file": "--person", "ask": "--ask"}
    return [names.get(name, "--" + name.replace("_", "-")) for name in given(ctx, *INPUTS)]


def read_person(ctx: click.Context, values: dict[str, Any], *, now: int) -> dict[str, str]:
    """The person's details as payload fields, from exactly one of the three ways."""
    flags = {d.key: values[d.option] for d in DETAILS if values.get(d.option) is not None}
    ways = [bool(flags), values.get("person_file") is not None, bool(values.get("ask"))]
    if sum(ways) > 1:
        raise click.UsageError("give the person's details one way: --person, --ask, or the flags")
    if flags:
        named = ", ".join("--" + d.option.replace("_", "-") for d in DETAILS if d.key in flags)
        warn(
            f"{named}: identifying details typed as options stay in your shell history and "
            "are visible in the process list; use --person FILE, --person - or --ask"
        )
        person = flags
    elif values.get("person_file") is not None:
        person = _from_file(str(values["person_file"]))
    elif values.get("ask"):
        person = _asked()
    else:
        person = {}
    return _checked(person, now)


def _from_file(name: str) -> dict[str, str]:
    where = "standard input" if name == "-" else name
    if name == "-":
        data = sys.stdin.buffer.read(MAX_PERSON_BYTES + 1)
    else:
        with Path(name).open("rb") as handle:
            data = handle.read(MAX_PERSON_BYTES + 1)
    if len(data) > MAX_PERSON_BYTES:
        raise ClientError(
            f"the person's details on {where} are larger than {MAX_PERSON_BYTES} bytes"
        )
    try:
        doc = loads_strict(data, max_bytes=MAX_PERSON_BYTES)
    except ProtocolError as exc:
        raise PayloadInvalid(
            f"the person's details on {where} are not strict JSON ({exc})"
        ) from exc
    if not isinstance(doc, dict):
        raise PayloadInvalid(f"the person's details on {where} must be a JSON object")
    known = {d.key for d in DETAILS}
    for key, value in doc.items():
        if key not in known:
            raise PayloadInvalid("is not an identifying detail", _path(key))
        if not isinstance(value, str):
            raise PayloadInvalid("must be a string", _path(key))
    return {key: value for key, value in doc.items() if value.strip()}


def _asked() -> dict[str, str]:
    person = {}
    for detail in DETAILS:
        answer = click.prompt(detail.label, default="", show_default=False, err=True)
        if answer.strip():
            person[detail.key] = answer.strip()
    return person


def _checked(person: dict[str, str], now: int) -> dict[str, str]:
    born = person.get("date_of_birth")
    if born is None:
        return person
    try:
        iso = normalise_date(born)
    except ValidationError as exc:
        raise PayloadInvalid(str(exc), "$.person.date_of_birth") from None
    today = day_of(now)
    if iso > today.isoformat():
        raise PayloadInvalid(
            f"is after today ({today.isoformat()}): a date of birth can not lie ahead",
            "$.person.date_of_birth",
        )
    return {**person, "date_of_birth": iso}


def _path(key: str) -> str:
    return "$.person." + key if key.isidentifier() else "$.person[...]"
