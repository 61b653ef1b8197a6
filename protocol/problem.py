"""RFC 9457 problem types of every Schakel service (``docs/protocol.md``, "Errors").

A problem's ``type`` is ``urn:schakel:problem:<slug>``; the hub, the pseudonymisation
services and the witness write it, clients read the slug back.
"""

from __future__ import annotations

PROBLEM_PREFIX = "urn:schakel:problem:"


def problem_type(slug: str) -> str:
    """The problem type URI of ``slug``."""
    return PROBLEM_PREFIX + slug
