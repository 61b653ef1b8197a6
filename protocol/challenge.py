"""What an organisation signs to log in at the hub (``docs/protocol.md``, "Tokens").

The hub hands out a random challenge; the organisation signs
``frame("schakel/auth/v1", network, org, challenge, audience)`` with its signing key,
and the hub checks that signature against the organisation's certificate before it
issues a token. Both sides build the bytes here, so they can not drift apart.
"""

from __future__ import annotations

from protocol.encoding import frame

AUTH_LABEL = "schakel/auth/v1"


def auth_message(network: str, org: str, challenge: bytes, audience: str) -> bytes:
    """The bytes an organisation signs to answer ``challenge`` of the hub ``audience``."""
    return frame(AUTH_LABEL, network.encode(), org.encode(), challenge, audience.encode())
