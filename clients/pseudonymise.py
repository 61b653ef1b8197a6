"""An organisation's side of the pseudonymisation services: one round trip per signal.

:func:`pseudonymise` blinds every identifier of a signal, sends the one batch to both
services at once (each request signed with the organisation's certified key), checks
each service's proof against that service's key statement, and combines, unblinds and
finalizes. It imports nothing else from :mod:`clients`, so that the wiring into
``Organisation.send_signal`` (and the outbox that keeps a signal while a service is
down or a limit is reached) can come on top without changes here.

Errors (all :class:`PseudonymisationError`):

::

    PseudonymisationError
    ├── ServiceUnavailable    a service could not be reached, timed out or answered 5xx
    ├── ServiceRefused        a service refused the request (4xx); ``retry_after`` on 429
    └── ServiceMisbehaved     an answer that is malformed or whose proof does not verify

No message carries an identifier, a blinded element or a key.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.certificate import Certificate
from protocol.encoding import canonical_json, loads_strict
from protocol.errors import ProtocolError
from protocol.evaluation import (
    NONCE_BYTES,
    BlindedBatch,
    EvaluationResponse,
    blind_batch,
    check_response,
    pseudonyms_from,
    sign_request,
)
from protocol.oprfkeys import OprfKeySet, OprfKeyStatement
from protocol.types import Pseudonym

MAX_RESPONSE_BYTES = 64 * 1024
DEFAULT_TIMEOUT = 10.0
PROBLEM_DETAIL_CHARS = 200


class PseudonymisationError(Exception):
    """Root of the errors of :func:`pseudonymise`; ``service`` names the service concerned."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(f"pseudonymisation service {service}: {message}")
        self.service = service


class ServiceUnavailable(PseudonymisationError):
    """Not reached, too slow, or a 5xx: try again later (the signal waits)."""


class ServiceRefused(PseudonymisationError):
    """A 4xx problem; ``status``, and ``retry_after`` seconds for a 429."""

    def __init__(self, service: str, status: int, detail: str, retry_after: int | None) -> None:
        super().__init__(service, f"refused ({status}): {detail}")
        self.status = status
        self.retry_after = retry_after


class ServiceMisbehaved(PseudonymisationError):
    """The answer is malformed or its proof does not verify against the key statement."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a service answers, and the statement of the key share it must prove."""

    url: str  # its base URL, e.g. https://oprf-a.example.nl
    statement: OprfKeyStatement


@dataclass(frozen=True, slots=True)
class Signer:
    """The organisation's certified signing key."""

    key: Ed25519PrivateKey
    certificate: Certificate


async def pseudonymise(
    session: aiohttp.ClientSession,
    keys: OprfKeySet,
    urls: tuple[str, str],
    signer: Signer,
    values: Sequence[tuple[str, str]],
    *,
    now: int,
    rng: Callable[[int], bytes] = os.urandom,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[Pseudonym, ...]:
    """The pseudonyms of ``(kind, normalised value)`` pairs, in order, from both services.

    ``urls`` are the base URLs of the services of ``keys.first`` and ``keys.second``.
    Both are asked concurrently; if either fails, nothing is returned (the error of the
    first service that failed, in share order, is raised).
    """
    batch = blind_batch(values, [rng(64) for _ in values])
    endpoints = (Endpoint(urls[0], keys.first), Endpoint(urls[1], keys.second))
    answers = await asyncio.gather(
        *(_ask(session, endpoint, signer, batch, now, rng, timeout) for endpoint in endpoints),
        return_exceptions=True,
    )
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
    first, second = answers
    assert isinstance(first, EvaluationResponse) and isinstance(second, EvaluationResponse)
    try:
        return pseudonyms_from(batch, keys, first, second)
    except ProtocolError as exc:  # both proofs held (_ask), so only a sum can be refused
        raise ServiceMisbehaved("both", f"the two answers do not combine: {exc}") from None


async def _ask(
    session: aiohttp.ClientSession,
    endpoint: Endpoint,
    signer: Signer,
    batch: BlindedBatch,
    now: int,
    rng: Callable[[int], bytes],
    timeout: float,
) -> EvaluationResponse:
    statement = endpoint.statement
    request = sign_request(
        signer.key,
        signer.certificate,
        service=statement.service,
        version=statement.version,
        elements=batch.elements,
        time=now,
        nonce=rng(NONCE_BYTES),
    )
    name = statement.service
    url = endpoint.url.rstrip("/") + "/v1/evaluate"
    try:
        async with session.post(
            url,
            data=canonical_json(request.to_wire()),
            headers={"Content-Type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            body = await response.content.read(MAX_RESPONSE_BYTES + 1)
            status, retry_after = response.status, response.headers.get("Retry-After")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ServiceUnavailable(name, f"not reachable ({type(exc).__name__})") from None
    if len(body) > MAX_RESPONSE_BYTES:
        raise ServiceMisbehaved(name, "the answer is too large")
    if status >= 500:
        raise ServiceUnavailable(name, f"answered {status}")
    if status != 200:
        raise ServiceRefused(name, status, _detail(body), _seconds(retry_after))
    try:
        answer = EvaluationResponse.from_wire(loads_strict(body, max_bytes=MAX_RESPONSE_BYTES))
        check_response(batch, statement, answer)
    except ProtocolError as exc:
        raise ServiceMisbehaved(name, f"the answer is refused: {exc}") from None
    return answer


def _detail(body: bytes) -> str:
    """The problem's ``detail`` (the service promises it holds no data), cut short."""
    try:
        problem = loads_strict(body, max_bytes=MAX_RESPONSE_BYTES)
    except ProtocolError:
        return "no problem document"
    detail = problem.get("detail") if isinstance(problem, dict) else None
    if not isinstance(detail, str) or not detail.isprintable():
        return "no detail"
    return detail[:PROBLEM_DETAIL_CHARS]


def _seconds(header: str | None) -> int | None:
    if header is None or not header.isdigit() or len(header) > 9:
        return None
    return int(header)
