"""What a person proves at login: a password (Argon2id), then a second factor.

* Passwords are hashed with Argon2id through PyNaCl (libsodium's ``crypto_pwhash``), in
  libsodium's own string format, which carries its parameters.
* TOTP (RFC 6238, 30 s, 6 digits, SHA-1, as every authenticator app speaks it) through
  pyotp; a code is accepted for the step before, the current and the next one, and each
  step only once per person (the desk database keeps the last step used). The secret is
  kept sealed (:class:`Sealer`), and shown once, at enrolment, as a QR code drawn as
  inline SVG (segno), with no script and no external image.
* WebAuthn (security keys, passkeys) through py_webauthn: see :mod:`desk.webauthn`.

The sealing key is HKDF-SHA256 of the organisation's signing-key seed with its own label,
so a copy of the desk database alone opens no TOTP secret.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from dataclasses import dataclass

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import pyotp
import segno
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from desk.config import PasswordCost

MAX_PASSWORD_BYTES = 1024
MIN_PASSWORD_CHARS = 12
TOTP_STEP = 30
SEALING_LABEL = b"schakel/desk-secrets/v1"


# -- passwords -----------------------------------------------------------------------------


def hash_password(password: str, cost: PasswordCost) -> str:
    data = password.encode("utf-8")
    if len(data) > MAX_PASSWORD_BYTES:
        raise ValueError("password too long")
    return nacl.pwhash.argon2id.str(data, opslimit=cost.ops, memlimit=cost.mem).decode("ascii")


def check_password(password: str, hashed: str) -> bool:
    """True when ``password`` matches; False for anything else (never raises on bad input)."""
    data = password.encode("utf-8", "replace")
    if len(data) > MAX_PASSWORD_BYTES:
        return False
    try:
        return bool(nacl.pwhash.verify(hashed.encode("ascii"), data))
    except (nacl.exceptions.InvalidkeyError, nacl.exceptions.CryptoError, ValueError):
        return False


def password_problem(password: str) -> str | None:
    """Why a new password is not acceptable (a message id for the page), or None."""
    if len(password) < MIN_PASSWORD_CHARS:
        return "too-short"
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        return "too-long"
    return None


# -- sealing -------------------------------------------------------------------------------


class Sealer:
    """Seals the desk's secrets at rest under a key derived from the signing key."""

    def __init__(self, key: bytes) -> None:
        self._box = nacl.secret.SecretBox(key)

    def __repr__(self) -> str:
        return "Sealer(...)"

    @classmethod
    def for_signing_key(cls, key: Ed25519PrivateKey, org: str) -> Sealer:
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=SEALING_LABEL, info=org.encode()
        ).derive(seed)
        return cls(derived)

    def seal(self, label: str, secret: bytes) -> bytes:
        return bytes(self._box.encrypt(label.encode() + b"\x00" + secret))

    def open(self, label: str, sealed: bytes) -> bytes | None:
        try:
            plain = self._box.decrypt(sealed)
        except nacl.exceptions.CryptoError:
            return None
        prefix = label.encode() + b"\x00"
        return plain[len(prefix) :] if plain.startswith(prefix) else None


# -- TOTP ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class TotpSecret:
    value: str  # base32

    def __repr__(self) -> str:
        return "TotpSecret(...)"

    @classmethod
    def new(cls) -> TotpSecret:
        return cls(base64.b32encode(secrets.token_bytes(20)).decode("ascii"))

    def code(self, now: float) -> str:
        return pyotp.TOTP(self.value, interval=TOTP_STEP).at(int(now))

    def matching_step(self, code: str, now: float) -> int | None:
        """The time step ``code`` belongs to (previous, current or next), or None."""
        code = code.replace(" ", "")
        if len(code) != 6 or not code.isascii() or not code.isdigit():
            return None
        totp = pyotp.TOTP(self.value, interval=TOTP_STEP)
        step = int(now) // TOTP_STEP
        found = None
        for candidate in (step - 1, step, step + 1):
            if hmac.compare_digest(totp.at(candidate * TOTP_STEP), code):
                found = candidate
        return found

    def uri(self, account: str, issuer: str) -> str:
        return pyotp.TOTP(self.value, interval=TOTP_STEP).provisioning_uri(
            name=account, issuer_name=issuer
        )

    def grouped(self) -> str:
        """The secret in groups of four, for typing into an app by hand."""
        return " ".join(self.value[i : i + 4] for i in range(0, len(self.value), 4))


def qr_svg(text: str, title: str) -> str:
    """An inline SVG QR code (no script, no external reference), with a title.

    It has a ``viewBox`` and no fixed size, so the style sheet scales all of it (with a
    fixed width and height, a page that sets its size crops the quiet zone and the last
    modules, and a phone may not read it)."""
    qr = segno.make(text, error="m")
    svg: str = qr.svg_inline(
        scale=5, title=title, dark="#000", light="#fff", border=4, omitsize=True
    )
    return svg
