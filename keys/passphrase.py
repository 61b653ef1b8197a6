"""Where a passphrase comes from: a file descriptor, the environment, or a terminal.

Never from a command-line argument: those are visible to every user of the
machine (``ps``) and end up in shell history. The order is:

1. ``fd``: one line read from that open file descriptor (``--passphrase-fd 3``
   with ``3<file`` or a pipe), without the trailing newline;
2. the environment variable ``env_var``, when it is set;
3. an interactive prompt on the terminal (asked twice when ``confirm``).

With none of these, :class:`PassphraseError` says how to supply one.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from keys.errors import PassphraseError
from keys.keyfile import MAX_PASSPHRASE_BYTES

F = TypeVar("F", bound=Callable[..., Any])


def passphrase_options(func: F) -> F:
    """``--passphrase-fd N`` and ``--passphrase-env NAME``, for a command that opens keys."""
    func = click.option(
        "--passphrase-fd",
        type=click.IntRange(min=0),
        metavar="N",
        help="Read the passphrase as one line from file descriptor N (wins over the env).",
    )(func)
    return click.option(
        "--passphrase-env",
        default="SCHAKEL_PASSPHRASE",
        show_default=True,
        metavar="NAME",
        help="Environment variable that holds the passphrase.",
    )(func)


def get_passphrase(
    *, env_var: str | None, fd: int | None, prompt: str, confirm: bool = False
) -> bytes:
    """The passphrase as UTF-8 bytes, from ``fd``, then ``env_var``, then the terminal."""
    if fd is not None:
        return _checked(_read_line(fd), f"file descriptor {fd}")
    if env_var is not None and env_var in os.environ:
        return _checked(os.environ[env_var].encode("utf-8"), f"environment variable {env_var}")
    if not _interactive():
        via = f"the environment variable {env_var}" if env_var else "an environment variable"
        raise PassphraseError(
            f"no passphrase: no terminal to ask on; supply it in {via} "
            "or on a file descriptor (--passphrase-fd N)"
        )
    return _prompt(prompt, confirm)


def _interactive() -> bool:
    stdin = sys.stdin
    return stdin is not None and stdin.isatty()


def _prompt(prompt: str, confirm: bool) -> bytes:
    first = _checked(getpass.getpass(prompt).encode("utf-8"), "the terminal")
    if confirm:
        again = getpass.getpass("Repeat the passphrase: ").encode("utf-8")
        if again != first:
            raise PassphraseError("the two passphrases differ")
    return first


def _read_line(fd: int) -> bytes:
    """Read up to the first newline, one byte at a time so nothing past it is consumed."""
    line = bytearray()
    try:
        while len(line) <= MAX_PASSPHRASE_BYTES:
            byte = os.read(fd, 1)
            if not byte or byte == b"\n":
                break
            line += byte
    except OSError as exc:
        raise PassphraseError(f"can not read a passphrase from file descriptor {fd}") from exc
    if line.endswith(b"\r"):
        del line[-1]
    return bytes(line)


def _checked(passphrase: bytes, source: str) -> bytes:
    if not passphrase:
        raise PassphraseError(f"the passphrase from {source} is empty")
    if len(passphrase) > MAX_PASSPHRASE_BYTES:
        raise PassphraseError(
            f"the passphrase from {source} is longer than {MAX_PASSPHRASE_BYTES} bytes"
        )
    return passphrase
