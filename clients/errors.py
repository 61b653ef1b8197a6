"""The errors an organisation's client raises.

::

    ClientError                root of everything raised by :mod:`clients`
    ├── HubProblem             the hub answered with an RFC 9457 problem document
    │   └── CaseNotFound       404 on a case route: no such case, or not a coordinator
    ├── HubUnreachable         no answer from the hub (connection, timeout, retries spent)
    ├── VerificationFailed     a certificate, key bundle, CRL or envelope did not verify
    │   └── MalformedAnswer    a hub answer breaks its documented form (names the field)
    ├── PayloadInvalid         a payload breaks its kind's schema (names the JSON path)
    ├── UnknownOrganisation    the hub's directory has no such organisation
    ├── NotReady               a local step is missing (says which command to run)
    ├── PseudonymsUnavailable  the pseudonymisation services made no pseudonyms now
    ├── InboxWentBack          the hub no longer holds, at this client's inbox cursor, the
    │                          message it took there (a restored backup?): nothing more is read
    ├── Erased                 a message whose case passed its retention period: its key
    │                          was destroyed (crypto-shredding) and nothing of it opens
    └── AuditLogInconsistent   the hub's access log does not match what this client saw
        │                      before, or an entry does not match the signed tree head
        └── SplitView          the hub's key signed two heads that can not both be true;
                               an evidence file proves it

Messages never hold content, keys, tokens or pseudonyms: they name the kind of
object and the organisation involved, so that they can be shown and logged.
"""

from __future__ import annotations

from typing import Any

from protocol.problem import PROBLEM_PREFIX


class ClientError(Exception):
    """Root of every error raised by :mod:`clients`."""


class HubProblem(ClientError):
    """The hub refused a request; ``status``, ``type``, ``title`` and ``detail`` say why."""

    def __init__(self, status: int, type: str, title: str, detail: str) -> None:
        super().__init__(f"hub answered {status} {title}: {detail}")
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail

    @property
    def slug(self) -> str:
        """The problem type without its ``urn:schakel:problem:`` prefix."""
        return self.type.removeprefix(PROBLEM_PREFIX)

    @classmethod
    def from_document(cls, status: int, document: Any) -> HubProblem:
        """Build from a parsed problem document; tolerate a missing or odd one."""
        doc = document if isinstance(document, dict) else {}

        def text(name: str, default: str) -> str:
            value = doc.get(name)
            return value[:300] if isinstance(value, str) else default

        return cls(
            status,
            text("type", PROBLEM_PREFIX + "unknown"),
            text("title", "HTTP error"),
            text("detail", f"HTTP status {status}"),
        )


class CaseNotFound(HubProblem):
    """404 from a case route: the case does not exist, or this organisation may not see it.

    The hub answers both the same way on purpose (nobody can probe for cases), so the
    client can not tell them apart either: check the reference, and that this
    organisation's certificate carries the coordinator role.
    """

    MESSAGE = "no such case, or this organisation is not a coordinator"

    def __init__(self, what: str = "case") -> None:
        super().__init__(404, PROBLEM_PREFIX + "not-found", "Not Found", self.MESSAGE)
        self.args = (f"{what}: {self.MESSAGE} (only coordinators see cases and referrals)",)


class HubUnreachable(ClientError):
    """The hub could not be reached, or kept failing after the retries."""


class VerificationFailed(ClientError):
    """Something the hub served did not verify: never trust or use it."""

    def __init__(self, what: str, org: str | None = None, reason: str | None = None) -> None:
        message = (
            f"{what} of organisation {org!r} did not verify" if org else f"{what} did not verify"
        )
        if reason:
            message += f" ({reason})"
        super().__init__(message)
        self.what = what
        self.org = org


class MalformedAnswer(VerificationFailed):
    """A hub answer that breaks its documented form: never show or use any of it.

    ``where`` names the field (``cases[3].orgs[0].org_type``) and ``rule`` what is
    wrong with it; neither ever holds the value.
    """

    def __init__(self, what: str, where: str, rule: str) -> None:
        super().__init__(f"hub's {what}", reason=f"{where}: {rule}")
        self.where = where
        self.rule = rule


class PayloadInvalid(ClientError):
    """A payload does not match its kind's schema; ``path`` is the first error's JSON path."""

    def __init__(self, message: str, path: str = "$") -> None:
        super().__init__(f"payload invalid at {path}: {message}")
        self.path = path


class UnknownOrganisation(ClientError):
    """The hub's directory has no organisation of that id."""

    def __init__(self, org: str) -> None:
        super().__init__(f"organisation {org!r} is not in the hub's directory")
        self.org = org


class NotReady(ClientError):
    """A local set-up step has not been done yet; the message names the command to run."""


class Erased(ClientError):
    """A message kept here whose case passed its retention period: its key was destroyed
    (:mod:`clients.retention`), so nothing of it can be read, from this file or any backup.
    Not a fault: show it as gone."""

    def __init__(self, message_id: str) -> None:
        super().__init__(
            f"message {message_id[:32]!r} was erased when its case's retention period ended"
        )
        self.message_id = message_id


class PseudonymsUnavailable(ClientError):
    """The two pseudonymisation services did not make a signal's pseudonyms.

    ``transient`` when waiting may help (a service down, slow, over its limit, or answering
    with an evaluation whose proof does not verify): the message waits in the outbox and
    goes out once both services answer. Otherwise (the service refuses this organisation,
    for example because its certificate was revoked) the message is refused. The message
    names the service and the cause, never an identifier or element.
    """

    def __init__(self, message: str, *, transient: bool, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


class InboxWentBack(ClientError):
    """The hub's inbox went backwards: at the cursor this client read up to, the hub holds
    another message than the one taken there, or none.

    A hub restored from a backup does this: it hands new messages cursors this client
    already passed, and they would never be read. Nothing more is read or acknowledged.
    Once the hub's operator confirms a restore, ``schakel org inbox --resync`` reads the
    inbox from its start again (messages already held are not taken twice); otherwise
    tell the network's privacy officer.
    """

    def __init__(self, cursor: int, kept: str | None, served: str | None) -> None:
        super().__init__(
            f"INBOX WENT BACKWARDS: at cursor {cursor} this client took message {kept}, "
            f"but the hub now holds {served or 'no message of ours'} there (was the hub "
            "restored from a backup?); nothing more was read. Ask the hub's operator; once "
            "a restore is confirmed, run 'schakel org inbox --resync'"
        )
        self.cursor = cursor
        self.kept = kept
        self.served = served


class AuditLogInconsistent(ClientError):
    """The hub's access log history does not match what this client saw before.

    Raised when a signed tree head does not verify, is not consistent with the head
    this client kept (a rewritten, truncated or forked log), when the hub withholds a
    head after one was seen, or when an entry does not match a verified head (``index``
    names the first bad entry). Stop using the hub and tell the network's privacy officer.
    """

    def __init__(
        self,
        reason: str,
        *,
        kept: tuple[int, str] | None = None,
        served: tuple[int, str] | None = None,
        index: int | None = None,
    ) -> None:
        parts = [f"AUDIT LOG INCONSISTENT: {reason}"]
        if kept is not None or served is not None:
            parts.append(
                "the hub's log history does not match what this client saw before "
                f"(kept head: {_head_text(kept)}; hub's head: {_head_text(served)})"
            )
        if index is not None:
            parts.append(f"first bad entry: index {index}")
        super().__init__("; ".join(parts))
        self.reason = reason
        self.kept = kept
        self.served = served
        self.index = index


def _head_text(head: tuple[int, str] | None) -> str:
    return "none" if head is None else f"size {head[0]}, root {head[1]}"


class SplitView(AuditLogInconsistent):
    """The hub showed two histories: its key signed two heads that can not both be true.

    ``evidence`` is the evidence file written (``schakel audit evidence verify FILE``
    checks it offline). Stop using the hub and tell the network's privacy officer.
    """

    def __init__(
        self,
        reason: str,
        *,
        kept: tuple[int, str] | None = None,
        served: tuple[int, str] | None = None,
        evidence: str,
    ) -> None:
        super().__init__(f"{reason}; evidence: {evidence}", kept=kept, served=served)
        self.evidence = evidence
