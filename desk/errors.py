"""The desk's errors.

::

    DeskError                 a configuration or account problem (command line: exit 2)
    └── AccountError          an account operation that can not be done (unknown, exists)
"""

from __future__ import annotations


class DeskError(Exception):
    """The desk can not do this; the message says what to change."""


class AccountError(DeskError):
    """An account operation that can not be done."""
