"""The errors of the protocol package.

::

    ProtocolError                  root of everything raised here
    ├── EncodingError              bytes or JSON that are not in canonical, bounded form
    ├── ValidationError            a well-formed value that breaks a rule (bad id, bad size, ...)
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
