"""Pseudonyms: keyed hashes of normalised identifiers, the only link the hub sees.

CONTRACT STUB: signatures and docstrings are fixed; bodies to be written.

``pseudonym = type "." version "." base32(HMAC-SHA256(linking_key, type || 0x00 || value))``,
base32 lower-case without padding (52 characters). Types: ``bsn``, ``ndob``
(name + date of birth), ``doc`` (travel document + issuing country),
``tel`` (E.164 phone number).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol.types import Pseudonym

TYPES: tuple[str, ...] = ("bsn", "ndob", "doc", "tel")
LINKING_KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class LinkingKey:
    version: int
    key: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"LinkingKey(version={self.version}, key=<hidden>)"


@dataclass(frozen=True, slots=True)
class Identity:
    """What a caseworker knows of a person; every field optional."""

    bsn: str | None = None
    given_names: str | None = None
    family_name: str | None = None
    date_of_birth: str | None = None  # YYYY-MM-DD, or DD-MM-YYYY as Dutch forms write it
    document_number: str | None = None
    document_country: str | None = None  # ISO 3166-1 alpha-2 or alpha-3
    phone: str | None = None

    def __repr__(self) -> str:
        return "Identity(<hidden>)"


def normalise_bsn(value: str) -> str: ...
def normalise_name(given_names: str, family_name: str) -> str: ...
def normalise_date(value: str) -> str: ...
def normalise_phone(value: str, *, default_country_code: str = "31") -> str: ...
def normalise_document(number: str, country: str) -> str: ...
def pseudonym(kind: str, normalised: str, key: LinkingKey) -> Pseudonym: ...
def derive_pseudonyms(identity: Identity, key: LinkingKey) -> tuple[Pseudonym, ...]:
    """Every pseudonym the identity allows, sorted; ValidationError on a malformed field."""
def parse_pseudonym(value: object) -> Pseudonym: ...
