"""Errors the hub answers with. Each renders as one RFC 9457 problem document.

::

    HubError                 500 internal        root; anything unexpected maps here
    ├── Malformed            400 malformed       not strict JSON / wrong form
    ├── Unauthorized         401 unauthorized    every authentication failure, one message
    ├── ForbiddenSender      403 forbidden-sender
    ├── NotFound             404 not-found       also "exists but not yours"
    ├── Conflict             409 conflict
    │   └── IllegalTransition    409 illegal-transition  a referral step that can not follow
    ├── TooLarge             413 too-large
    ├── UnsupportedMedia     415 unsupported-media-type
    ├── InvalidEnvelope      422 invalid-envelope
    ├── InvalidCredential    422 invalid-credential  certificate, bundle, CRL or linking key
    ├── UnknownRecipient     422 unknown-recipient
    ├── InvalidReferral      422 invalid-referral    wrong kind of recipient, wrong parties
    ├── UnknownCase          422 unknown-case        no case this organisation may name
    ├── UnknownReferral      422 unknown-referral    no referral this organisation is party to
    ├── RequestTimeout       408 request-timeout the body did not arrive in time
    ├── InvalidCosignature   422 invalid-cosignature forged, uncertified, revoked or expired
    ├── RateLimited          429 rate-limited    carries retry_after seconds
    └── Unavailable          503 unavailable     may carry retry_after seconds
        └── AccessLogUnavailable 503 access-log-unavailable  no entry can be appended

``detail`` is shown to the caller: it must never hold content, keys, tokens or
pseudonyms.

:class:`StartError` stands apart: the hub process could not start at all (its port
taken, a database file others can read); it is never an HTTP answer.
"""

from __future__ import annotations

from protocol.problem import PROBLEM_PREFIX


class HubError(Exception):
    status = 500
    slug = "internal"
    title = "Internal error"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title

    @property
    def type(self) -> str:
        return PROBLEM_PREFIX + self.slug


class Malformed(HubError):
    status, slug, title = 400, "malformed", "Malformed request"


class Unauthorized(HubError):
    status, slug, title = 401, "unauthorized", "Authentication failed"

    def __init__(self, detail: str | None = None) -> None:
        # One message for every cause, so failures can not be told apart.
        super().__init__("authentication failed")


class ForbiddenSender(HubError):
    status, slug, title = 403, "forbidden-sender", "Sender is not the authenticated organisation"


class NotFound(HubError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(HubError):
    status, slug, title = 409, "conflict", "Conflict"


class TooLarge(HubError):
    status, slug, title = 413, "too-large", "Request body too large"


class UnsupportedMedia(HubError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class InvalidEnvelope(HubError):
    status, slug, title = 422, "invalid-envelope", "Envelope rejected"


class InvalidCredential(HubError):
    status, slug, title = (
        422,
        "invalid-credential",
        "Certificate, key bundle, CRL or linking key rejected",
    )


class UnknownRecipient(HubError):
    status, slug, title = 422, "unknown-recipient", "Unknown or revoked recipient"


class IllegalTransition(Conflict):
    status, slug, title = 409, "illegal-transition", "Referral step not allowed"


class InvalidReferral(HubError):
    status, slug, title = 422, "invalid-referral", "Referral rejected"


class UnknownCase(HubError):
    status, slug, title = 422, "unknown-case", "Unknown case"


class UnknownReferral(HubError):
    status, slug, title = 422, "unknown-referral", "Unknown referral"


class InvalidCosignature(HubError):
    status, slug, title = 422, "invalid-cosignature", "Cosignature rejected"


class RateLimited(HubError):
    status, slug, title = 429, "rate-limited", "Too many requests"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class RequestTimeout(HubError):
    status, slug, title = 408, "request-timeout", "The request body took too long"


class Unavailable(HubError):
    """503: the hub can not serve the request now; ``retry_after`` (seconds), when set,
    becomes the ``Retry-After`` header."""

    status, slug, title = 503, "unavailable", "Service unavailable"

    def __init__(self, detail: str | None = None, *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class AccessLogUnavailable(Unavailable):
    """No entry can be appended to the access log (its rows were cut, or the write
    failed), so nothing that must be audited is done: fail closed, retry later."""

    status, slug, title = 503, "access-log-unavailable", "Access log unavailable"
    RETRY_AFTER = 30

    def __init__(self, *, cause: str) -> None:
        super().__init__(
            "the access log is unavailable, so the request was not carried out; try again later",
            retry_after=self.RETRY_AFTER,
        )
        self.cause = cause  # for the operator's log: a fixed text, never data


class StartError(Exception):
    """The hub could not start; the message says where and why (never data).

    ``schakel hub serve`` and ``schakel demo run`` both print it as it is.
    """
