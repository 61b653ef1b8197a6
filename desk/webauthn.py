"""Security keys and passkeys (WebAuthn), through py_webauthn.

The browser's part needs a script (``static/webauthn.js``): it reads the options from
the form's ``data-options`` attribute, asks the browser, and posts the answer in an
ordinary form field, so the page still ends in a POST-redirect-GET. The challenge is
kept in the server-side session and used once. Without JavaScript, TOTP is the way in.
"""

from __future__ import annotations

import hashlib
import json

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from desk.accounts import Credential

MAX_CREDENTIAL_JSON = 16 * 1024
RP_NAME = "Schakel"


class WebAuthnFailed(Exception):
    """The browser's answer did not verify (whatever the reason)."""


def _user_handle(person: str, org: str) -> bytes:
    """A stable, opaque user handle: no person id goes to the authenticator in clear."""
    return hashlib.sha256(f"schakel-desk\x00{org}\x00{person}".encode()).digest()


def registration(
    *, rp_id: str, org: str, person: str, name: str, existing: list[Credential]
) -> tuple[str, bytes]:
    """(options JSON for the browser, challenge to keep)."""
    options = generate_registration_options(
        rp_id=rp_id,
        rp_name=RP_NAME,
        user_name=person,
        user_id=_user_handle(person, org),
        user_display_name=name,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.DISCOURAGED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=c.credential_id) for c in existing],
    )
    return options_to_json(options), options.challenge


def verify_registration(
    answer: str, *, challenge: bytes, rp_id: str, origin: str, person: str
) -> Credential:
    if not answer or len(answer) > MAX_CREDENTIAL_JSON:
        raise WebAuthnFailed("no answer")
    try:
        json.loads(answer)
        verified = verify_registration_response(
            credential=answer,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
        raise WebAuthnFailed("registration did not verify") from exc
    return Credential(
        credential_id=verified.credential_id,
        person=person,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
    )


def authentication(*, rp_id: str, credentials: list[Credential]) -> tuple[str, bytes]:
    options = generate_authentication_options(
        rp_id=rp_id,
        allow_credentials=[PublicKeyCredentialDescriptor(id=c.credential_id) for c in credentials],
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    return options_to_json(options), options.challenge


def verify_authentication(
    answer: str, *, challenge: bytes, rp_id: str, origin: str, credentials: list[Credential]
) -> tuple[Credential, int]:
    """(the credential used, its new signature count); WebAuthnFailed otherwise."""
    if not answer or len(answer) > MAX_CREDENTIAL_JSON:
        raise WebAuthnFailed("no answer")
    try:
        raw_id = json.loads(answer).get("rawId", "")
        credential_id = base64url_to_bytes(str(raw_id))
    except (ValueError, TypeError, AttributeError) as exc:
        raise WebAuthnFailed("malformed answer") from exc
    known = {c.credential_id: c for c in credentials}
    credential = known.get(credential_id)
    if credential is None:
        raise WebAuthnFailed("unknown credential")
    try:
        verified = verify_authentication_response(
            credential=answer,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            credential_public_key=credential.public_key,
            credential_current_sign_count=credential.sign_count,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
        raise WebAuthnFailed("authentication did not verify") from exc
    return credential, verified.new_sign_count
