"""The problems a pseudonymisation service answers with; each renders as RFC 9457.

::

    ServiceError             500 internal           root; anything unexpected maps here
    ├── Malformed            400 malformed          not strict JSON, wrong form, bad element
    ├── Unauthorized         401 unauthorized       every authentication failure, one message
    ├── NotFound             404 not-found
    ├── Timeout              408 request-timeout    the body did not arrive in time
    ├── Replayed             409 replayed           this organisation used this nonce before
    ├── Conflict             409 conflict           a CRL that is not newer than the one held
    ├── TooLarge             413 too-large          body or batch over the limit
    ├── UnsupportedMedia     415 unsupported-media-type
    ├── WrongService         422 wrong-service      for another network or service
    ├── UnknownVersion       422 unknown-version    a key version this service does not hold
    ├── InvalidCredential    422 invalid-credential a CRL that does not verify
    ├── RateLimited          429 rate-limited       carries retry_after seconds
    └── Unavailable          503 unavailable

``detail`` is shown to the caller and logged by type only: it never holds an element,
identifier, key or certificate.
"""

from __future__ import annotations

from protocol.problem import PROBLEM_PREFIX


class ServiceError(Exception):
    status = 500
    slug = "internal"
    title = "Internal error"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title

    @property
    def type(self) -> str:
        return PROBLEM_PREFIX + self.slug


class Malformed(ServiceError):
    status, slug, title = 400, "malformed", "Malformed request"


class Unauthorized(ServiceError):
    status, slug, title = 401, "unauthorized", "Authentication failed"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__("authentication failed")  # one message, whatever the cause


class NotFound(ServiceError):
    status, slug, title = 404, "not-found", "Not found"


class Timeout(ServiceError):
    status, slug, title = 408, "request-timeout", "The request body took too long"


class Replayed(ServiceError):
    status, slug, title = 409, "replayed", "This request was seen before"


class Conflict(ServiceError):
    status, slug, title = 409, "conflict", "Conflict"


class TooLarge(ServiceError):
    status, slug, title = 413, "too-large", "Request too large"


class UnsupportedMedia(ServiceError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class WrongService(ServiceError):
    status, slug, title = 422, "wrong-service", "The request is for another service"


class UnknownVersion(ServiceError):
    status, slug, title = 422, "unknown-version", "This service holds no key of that version"


class InvalidCredential(ServiceError):
    status, slug, title = 422, "invalid-credential", "Revocation list rejected"


class RateLimited(ServiceError):
    status, slug, title = 429, "rate-limited", "Evaluation limit reached"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class Unavailable(ServiceError):
    status, slug, title = 503, "unavailable", "Service unavailable"
