"""The errors of the protocol package.

::

    ProtocolError                  root of everything raised here
    ├── EncodingError              bytes or JSON that are not in canonical, bounded form
    ├── ValidationError            a well-formed value that breaks a rule (bad id, bad size, ...)
    │   └── FieldError             a wire record's field breaks its form (names the field)
    ├── VerificationError          a signature, chain, proof or MAC that does not verify
    │   ├── RevokedError           the certificate is on the network's revocation list
    │   └── QuorumNotMet           too few organisations cosigned a checkpoint
    └── OpenError                  an envelope could not be opened; deliberately says no more

Verification raises, it never returns a bool. ``OpenError`` carries one
fixed message whatever failed, so that a caller can not be used as an oracle.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Root of every error raised by :mod:`protocol`."""


class EncodingError(ProtocolError):
    """Input is not in the canonical, bounded encoding the protocol requires."""


class ValidationError(ProtocolError):
    """A value is well formed but breaks one of the protocol's rules."""


class FieldError(ValidationError):
    """A wire record breaks its documented form at one field.

    ``what`` names the record (``case list``), ``where`` the field
    (``cases[3].orgs[0].org_type``) and ``rule`` what is wrong; none holds the value.
    """

    def __init__(self, what: str, where: str, rule: str) -> None:
        super().__init__(f"{what}: {where}: {rule}")
        self.what, self.where, self.rule = what, where, rule


class VerificationError(ProtocolError):
    """A signature, certificate chain, proof or MAC did not verify."""


class RevokedError(VerificationError):
    """The certificate has been revoked by the network authority."""


class QuorumNotMet(VerificationError):
    """A checkpoint does not carry the cosignatures the witness policy asks for."""


class OpenError(ProtocolError):
    """The envelope could not be verified or decrypted.

    The message is always the same, whichever check failed.
    """

    def __init__(self) -> None:
        super().__init__("envelope could not be opened")
