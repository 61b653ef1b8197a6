"""clients/pseudonymise.py against two real services on loopback, and against services
that are down, refuse, or answer with something other than the evaluation they certified."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from oprf_harness import VALUES, VERSION, Services, scalar

from clients.pseudonymise import (
    ServiceMisbehaved,
    ServiceRefused,
    ServiceUnavailable,
    Signer,
    pseudonymise,
)
from protocol import oprf
from protocol import ristretto as group
from protocol.encoding import b64e
from protocol.evaluation import EvaluationRequest, EvaluationResponse, evaluate_request
from protocol.pseudonym import identifier_input, oprf_pseudonym

pytestmark = pytest.mark.parametrize("database_kind", ["sqlite"])  # storage: test_service.py


def _signer(services: Services, name: str = "politie") -> Signer:
    key, cert = services.network.org(name)
    return Signer(key, cert)


async def _run(services: Services, urls: tuple[str, str], signer: Signer | None = None) -> tuple:
    async with aiohttp.ClientSession() as session:
        return await pseudonymise(
            session,
            services.network.keys,
            urls,
            signer or _signer(services),
            VALUES,
            now=services.clock(),
        )


async def test_both_services_give_the_pseudonyms_of_the_whole_key(services: Services) -> None:
    pseudonyms = await _run(services, (services.first.url, services.second.url))
    k = group.scalar_add(*services.network.shares)
    expected = tuple(
        oprf_pseudonym(kind, VERSION, oprf.evaluate(k, identifier_input(kind, value)))
        for kind, value in VALUES
    )
    assert pseudonyms == expected
    # Another organisation, other blinds, the same pseudonyms: the hub can cluster them.
    assert (
        await _run(services, (services.first.url, services.second.url), _signer(services, "ggd"))
        == expected
    )


async def test_one_service_down_gives_no_pseudonym(services: Services) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(ServiceUnavailable) as caught:
        await _run(services, (services.first.url, closed))
    assert caught.value.service == "oprf-2"
    with pytest.raises(ServiceUnavailable):
        await _run(services, (closed, services.second.url))


async def test_a_limit_reached_is_a_refusal_with_retry_after(services: Services) -> None:
    """Service 1 allows 10 evaluations an hour (conftest); each call asks 3."""
    signer = _signer(services)
    for _ in range(3):
        await _run(services, (services.first.url, services.second.url), signer)
    with pytest.raises(ServiceRefused) as caught:
        await _run(services, (services.first.url, services.second.url), signer)
    assert (caught.value.status, caught.value.retry_after) == (429, 3200)
    assert caught.value.service == "oprf-1"


async def test_a_revoked_organisation_is_refused(services: Services) -> None:
    signer = _signer(services)
    crl = services.network.crl({signer.certificate.serial: services.clock()}, number=1)
    for service in (services.first, services.second):
        assert (await service.client.put("/v1/crl", json={"crl": b64e(crl.der)})).status == 200
    with pytest.raises(ServiceRefused) as caught:
        await _run(services, (services.first.url, services.second.url), signer)
    assert caught.value.status == 401


Tamper = Callable[[EvaluationRequest, EvaluationResponse], EvaluationResponse]


@contextlib.asynccontextmanager
async def _rogue(services: Services, tamper: Tamper) -> AsyncIterator[str]:
    """A service 2 that evaluates honestly with share 2, then ``tamper``s the answer."""

    async def evaluate(request: web.Request) -> web.Response:
        parsed = EvaluationRequest.from_wire(await request.json())
        honest = evaluate_request(services.network.shares[1], parsed, r=scalar(b"r"))
        return web.json_response(tamper(parsed, honest).to_wire())

    app = web.Application()
    app.router.add_post("/v1/evaluate", evaluate)
    server = TestServer(app)
    await server.start_server()
    try:
        yield str(server.make_url("/")).rstrip("/")
    finally:
        await server.close()


def _other_key(request: EvaluationRequest, honest: EvaluationResponse) -> EvaluationResponse:
    return evaluate_request(scalar(b"a key the authority never certified"), request, r=scalar(b"r"))


def _one_element_replaced(
    request: EvaluationRequest, honest: EvaluationResponse
) -> EvaluationResponse:
    wrong = group.times(scalar(b"x"), request.elements[0])
    return EvaluationResponse(honest.version, (wrong, *honest.elements[1:]), honest.proof)


def _reordered(request: EvaluationRequest, honest: EvaluationResponse) -> EvaluationResponse:
    elements = honest.elements
    return EvaluationResponse(
        honest.version, (elements[1], elements[0], *elements[2:]), honest.proof
    )


def _share_one_s_answer(services: Services) -> Tamper:
    def tamper(request: EvaluationRequest, honest: EvaluationResponse) -> EvaluationResponse:
        return evaluate_request(services.network.shares[0], request, r=scalar(b"r"))

    return tamper


@pytest.mark.parametrize("kind", ["other key", "element replaced", "reordered", "share 1's"])
async def test_an_answer_that_is_not_the_certified_evaluation_is_refused(
    services: Services, kind: str
) -> None:
    tamper = {
        "other key": _other_key,
        "element replaced": _one_element_replaced,
        "reordered": _reordered,
        "share 1's": _share_one_s_answer(services),
    }[kind]
    async with _rogue(services, tamper) as url:
        with pytest.raises(ServiceMisbehaved) as caught:
            await _run(services, (services.first.url, url))
    assert caught.value.service == "oprf-2"
    assert "111222333" not in str(caught.value)


async def test_an_honest_rogue_is_indistinguishable_from_the_real_service(
    services: Services,
) -> None:
    """The fake of the tests above, without tampering, passes: so they test the tampering."""
    async with _rogue(services, lambda _request, honest: honest) as url:
        assert await _run(services, (services.first.url, url)) == await _run(
            services, (services.first.url, services.second.url)
        )
