"""Where a passphrase comes from: a file descriptor, a systemd credential, the environment,
or a terminal.

Never from a command-line argument: those are visible to every user of the
machine (``ps``) and end up in shell history. The order is:

1. ``fd``: one line read from that open file descriptor (``--passphrase-fd 3``
   with ``3<file`` or a pipe), without the trailing newline;
2. ``credential``: the first line of the systemd credential of that name
   (``LoadCredential=`` / ``LoadCredentialEncrypted=``), read from the directory
   that systemd names in ``$CREDENTIALS_DIRECTORY``;
3. the environment variable ``env_var``, when it is set;
4. an interactive prompt on the terminal (asked twice when ``confirm``).

With none of these, :class:`PassphraseError` says how to supply one.

A *new* passphrase (``confirm``: a key is being created) must also be strong enough
(:func:`check_new_passphrase`): at least :data:`MIN_NEW_CHARS` characters, not a run of
a few characters, a keyboard or alphabet sequence, or a common password with digits.
A key file is only as strong as its passphrase: Argon2id slows guessing down, it does
not make "short" hard to guess.
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

MIN_NEW_CHARS = 12
MIN_DISTINCT_CHARS = 5
_SEQUENCES = (
    "01234567890123456789",
    "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz",
    "qwertyuiopasdfghjklzxcvbnm",
    "azertyuiopqsdfghjklmwxcvbn",
)
_COMMON = frozenset(
    {
        "password", "passwort", "passphrase", "wachtwoord", "geheim", "welkom", "welcome",
        "schakel", "qwerty", "azerty", "letmein", "admin", "secret", "iloveyou", "monkey",
        "dragon", "changeme", "trustno",
    }
)  # fmt: skip
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
    *,
    env_var: str | None,
    fd: int | None,
    prompt: str,
    confirm: bool = False,
    credential: str | None = None,
) -> bytes:
    """The passphrase as UTF-8 bytes, from ``fd``, ``credential`` (a systemd credential),
    ``env_var``, then the terminal.

    With ``confirm`` (a new key), the passphrase must pass :func:`check_new_passphrase`.
    """
    if fd is not None:
        return _new(_checked(_read_line(fd), f"file descriptor {fd}"), confirm)
    if credential is not None:
        source = f"systemd credential {credential}"
        return _new(_checked(_read_credential(credential), source), confirm)
    if env_var is not None and env_var in os.environ:
        source = f"environment variable {env_var}"
        return _new(_checked(os.environ[env_var].encode("utf-8"), source), confirm)
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


def _new(passphrase: bytes, confirm: bool) -> bytes:
    return check_new_passphrase(passphrase) if confirm else passphrase


def check_new_passphrase(passphrase: bytes) -> bytes:
    """``passphrase``, if it is strong enough to protect a new key; else PassphraseError
    saying what is wrong (never echoing it)."""
    try:
        text = passphrase.decode("utf-8")
    except UnicodeDecodeError:
        raise PassphraseError("the new passphrase is not valid UTF-8") from None
    if len(text) < MIN_NEW_CHARS:
        raise PassphraseError(
            f"the new passphrase is too short: use at least {MIN_NEW_CHARS} characters "
            "(a few unrelated words make a good passphrase)"
        )
    folded = text.casefold()
    letters = "".join(c for c in folded if c.isalpha())
    digits = "".join(c for c in folded if c.isdigit())
    if (
        len(set(folded)) < MIN_DISTINCT_CHARS
        or _in_sequence(folded)
        or (_in_sequence(letters) and _in_sequence(digits))  # "qwertyuiop12"
        or letters in _COMMON
        or _repeats(folded)
    ):
        raise PassphraseError(
            "the new passphrase is too easy to guess (a repeated or well-known sequence, "
            "or a common password): use a few unrelated words"
        )
    return passphrase


def _in_sequence(text: str) -> bool:
    """True when ``text`` is a run of the digits, the alphabet or a keyboard row (or empty)."""
    return any(text in sequence for sequence in _SEQUENCES)


def _repeats(text: str) -> bool:
    """True when ``text`` is one short piece written again and again ("abcabcabcabc")."""
    return any(
        len(text) % size == 0 and text == text[:size] * (len(text) // size)
        for size in range(1, len(text) // 2 + 1)
    )


def _prompt(prompt: str, confirm: bool) -> bytes:
    first = _checked(getpass.getpass(prompt).encode("utf-8"), "the terminal")
    if confirm:
        check_new_passphrase(first)
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


def _read_credential(name: str) -> bytes:
    """The first line of ``$CREDENTIALS_DIRECTORY/name`` (systemd's credentials)."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise PassphraseError(
            f"no systemd credential {name!r}: CREDENTIALS_DIRECTORY is not set "
            "(LoadCredential= in the unit sets it)"
        )
    if not name or "/" in name or name in (".", ".."):
        raise PassphraseError("a credential name is a file name, without '/'")
    try:
        fd = os.open(os.path.join(directory, name), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise PassphraseError(f"can not read the systemd credential {name!r}") from exc
    try:
        return _read_line(fd)
    finally:
        os.close(fd)


def _checked(passphrase: bytes, source: str) -> bytes:
    if not passphrase:
        raise PassphraseError(f"the passphrase from {source} is empty")
    if len(passphrase) > MAX_PASSPHRASE_BYTES:
        raise PassphraseError(
            f"the passphrase from {source} is longer than {MAX_PASSPHRASE_BYTES} bytes"
        )
    return passphrase
