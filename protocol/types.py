"""Distinct names for the identifiers that travel through Schakel.

They are plain ``str`` at run time; the type checker keeps them apart so an
organisation id can not be passed where a message id is expected. The
``parse_*`` functions are the one place where each is validated.
"""

from __future__ import annotations

import base64
import re
from typing import NewType

from protocol.errors import ValidationError

OrgId = NewType("OrgId", str)
NetworkId = NewType("NetworkId", str)
MessageId = NewType("MessageId", str)
CaseRef = NewType("CaseRef", str)
Pseudonym = NewType("Pseudonym", str)
Fingerprint = NewType("Fingerprint", str)
ServiceName = NewType("ServiceName", str)

CASE_REF_BYTES = 10

# Lower-case letters, digits and inner hyphens; 2 to 32 characters.
_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])")
# 16 random bytes as unpadded base64url: exactly 22 characters.
_MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]{22}")
# 10 random bytes as lower-case base32 without padding: exactly 16 characters.
_CASE_REF = re.compile(r"[a-z2-7]{16}")
# SHA-256 as unpadded base64url: exactly 43 characters.
_FINGERPRINT = re.compile(r"[A-Za-z0-9_-]{43}")


def parse_org_id(value: object) -> OrgId:
    """An organisation id: 2-32 characters of ``a-z``, ``0-9`` and inner ``-``."""
    if not isinstance(value, str) or not _SLUG.fullmatch(value):
        raise ValidationError("organisation id must be 2-32 characters of a-z, 0-9 and '-'")
    return OrgId(value)


def parse_network_id(value: object) -> NetworkId:
    """A network id: same alphabet as an organisation id."""
    if not isinstance(value, str) or not _SLUG.fullmatch(value):
        raise ValidationError("network id must be 2-32 characters of a-z, 0-9 and '-'")
    return NetworkId(value)


def parse_service_name(value: object) -> ServiceName:
    """A pseudonymisation service's name: same alphabet as an organisation id."""
    if not isinstance(value, str) or not _SLUG.fullmatch(value):
        raise ValidationError("service name must be 2-32 characters of a-z, 0-9 and '-'")
    return ServiceName(value)


def parse_message_id(value: object) -> MessageId:
    """A message id: 16 bytes as 22 characters of unpadded base64url."""
    if not isinstance(value, str) or not _MESSAGE_ID.fullmatch(value):
        raise ValidationError("message id must be 22 characters of unpadded base64url")
    # The last character carries 2 padding bits that must be zero.
    if value[-1] not in "AQgw":
        raise ValidationError("message id is not canonical base64url")
    return MessageId(value)


def parse_fingerprint(value: object) -> Fingerprint:
    """A SHA-256 fingerprint: 43 characters of unpadded base64url."""
    if not isinstance(value, str) or not _FINGERPRINT.fullmatch(value):
        raise ValidationError("fingerprint must be 43 characters of unpadded base64url")
    if value[-1] not in "AEIMQUYcgkosw048":
        raise ValidationError("fingerprint is not canonical base64url")
    return Fingerprint(value)


def parse_case_ref(value: object) -> CaseRef:
    """A case reference: 10 random bytes as 16 characters of lower-case base32."""
    if not isinstance(value, str) or not _CASE_REF.fullmatch(value):
        raise ValidationError("case reference must be 16 characters of a-z and 2-7")
    return CaseRef(value)


def case_ref_from(random_bytes: bytes) -> CaseRef:
    """The case reference of 10 random bytes (the caller draws them)."""
    if len(random_bytes) != CASE_REF_BYTES:
        raise ValueError(f"a case reference takes exactly {CASE_REF_BYTES} random bytes")
    return CaseRef(base64.b32encode(random_bytes).decode("ascii").lower())
