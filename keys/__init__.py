"""Key management for every party of a Schakel network.

* :mod:`keys.keyfile`: passphrase-encrypted key files (Argon2id + secretbox),
  atomic writes, authenticated state files.
* :mod:`keys.passphrase`: a passphrase from a file descriptor, the environment
  or the terminal; never from an argument.
* :mod:`keys.authority`: the network authority (root, enrolment, revocation,
  linking keys).
* :mod:`keys.organisation`: an organisation's keys (signing, KEM, bundles,
  certificate, linking keys).
* :mod:`keys.hub`: the hub's log-signing and token keys.
* :mod:`keys.witness`: an always-on witness's key, pinned root and witness certificate.

``keys`` imports only :mod:`protocol`, cryptography, PyNaCl and the standard
library. The formats are in ``docs/protocol.md``; the errors in
:mod:`keys.errors`.
"""

from keys.authority import Authority, IssuedCertificate
from keys.errors import AuthorityError, KeyFileError, KeysError, KeyStoreError, PassphraseError
from keys.hub import HubKeys
from keys.keyfile import KdfParams, read_key_file, write_key_file, write_public_file
from keys.organisation import OrgKeys
from keys.passphrase import get_passphrase

__all__ = [
    "Authority",
    "AuthorityError",
    "HubKeys",
    "IssuedCertificate",
    "KdfParams",
    "KeyFileError",
    "KeyStoreError",
    "KeysError",
    "OrgKeys",
    "PassphraseError",
    "get_passphrase",
    "read_key_file",
    "write_key_file",
    "write_public_file",
]
