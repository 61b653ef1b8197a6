"""The errors of the keys package.

::

    KeysError                  root of everything raised here
    ├── KeyFileError           a key or state file can not be read, decrypted or parsed,
    │                          or would be written unsafely (weak KDF, empty passphrase,
    │                          existing file)
    ├── PassphraseError        no passphrase could be obtained (or it is empty / unusable)
    ├── AuthorityError         the network authority refuses an operation: unknown serial,
    │                          already revoked, an organisation that already holds a
    │                          certificate for another key, a request for another network...
    └── KeyStoreError          an organisation's or the hub's key directory refuses an
                               operation: no pinned root yet, a different root, a
                               certificate for another key or organisation, no certificate

Messages name the file or the object concerned and say what to do; they never
contain a passphrase or key material. Errors raised by :mod:`protocol` while
checking a certificate, bundle or sealed key are passed through unchanged
(``protocol.errors.ProtocolError``), so callers catch both roots.
"""

from __future__ import annotations


class KeysError(Exception):
    """Root of every error raised by :mod:`keys`."""


class KeyFileError(KeysError):
    """A key or state file could not be read, decrypted, parsed or safely written."""


class PassphraseError(KeysError):
    """No usable passphrase was supplied."""


class AuthorityError(KeysError):
    """The network authority refuses the operation."""


class KeyStoreError(KeysError):
    """An organisation's or the hub's key directory refuses the operation."""
