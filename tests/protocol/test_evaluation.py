"""The evaluation round trip of protocol.evaluation: request, response, unblinding."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import oprf
from protocol import ristretto as group
from protocol.certificate import (
    ROLE_MEMBER,
    Certificate,
    RootCertificate,
    create_enrolment_request,
    create_root,
    issue_certificate,
)
from protocol.encoding import b64e
from protocol.errors import EncodingError, ValidationError, VerificationError
from protocol.evaluation import (
    MAX_BATCH,
    BlindedBatch,
    EvaluationRequest,
    EvaluationResponse,
    blind_batch,
    evaluate_request,
    pseudonyms_from,
    sign_request,
    verify_request,
)
from protocol.oprfkeys import OprfKeySet, key_set, make_key_request, sign_key_statement
from protocol.pseudonym import identifier_input, oprf_pseudonym, parse_pseudonym
from protocol.ristretto import Scalar
from protocol.types import NetworkId, OrgId, ServiceName

NOW = 1_700_000_000
NET = NetworkId("net-utrecht")
VALUES = [("bsn", "111222333"), ("tel", "+31612345678"), ("ndob", "vries|anna|1990-01-31")]


def _scalar(tag: bytes) -> Scalar:
    return oprf.random_scalar(hashlib.sha512(tag).digest())


K1, K2 = _scalar(b"k1"), _scalar(b"k2")


@pytest.fixture(scope="module")
def network() -> tuple[RootCertificate, Certificate, Ed25519PrivateKey, OprfKeySet]:
    root_key = Ed25519PrivateKey.generate()
    root = create_root(root_key, NET, now=NOW, days=3650, serial=1)
    org_key = Ed25519PrivateKey.generate()
    request = create_enrolment_request(org_key, NET, OrgId("politie"))
    cert = issue_certificate(root_key, root, request, [ROLE_MEMBER], now=NOW, days=365, serial=5)
    statements = [
        sign_key_statement(
            root_key,
            root,
            make_key_request(k, NET, ServiceName(f"svc-{i}"), i, r=_scalar(b"r")),
            version=9,
            url=f"https://svc-{i}.example.nl",
            not_before=NOW,
            not_after=NOW + 100,
        )
        for i, k in ((1, K1), (2, K2))
    ]
    return root, cert, org_key, key_set(statements, root, now=NOW, version=9)


def _sign(network: tuple, batch: BlindedBatch, nonce: bytes = bytes(16)) -> EvaluationRequest:
    """The organisation's request to service ``svc-1`` for ``batch``."""
    _root, cert, org_key, _keys = network
    return sign_request(
        org_key, cert, service=ServiceName("svc-1"), version=9, elements=batch.elements,
        time=NOW, nonce=nonce,
    )  # fmt: skip


def _randomness(n: int) -> list[bytes]:
    return [hashlib.sha512(bytes([i])).digest() for i in range(n)]


def test_two_honest_services_give_the_pseudonyms_of_the_summed_key(network: tuple) -> None:
    _root, _cert, _org_key, keys = network
    batch = blind_batch(VALUES, _randomness(3))
    request = _sign(network, batch)
    one = evaluate_request(K1, request, r=_scalar(b"r1"))
    two = evaluate_request(K2, request, r=_scalar(b"r2"))
    pseudonyms = pseudonyms_from(batch, keys, one, two)
    k = group.scalar_add(K1, K2)
    expected = tuple(
        oprf_pseudonym(kind, 9, oprf.evaluate(k, identifier_input(kind, value)))
        for kind, value in VALUES
    )
    assert pseudonyms == expected
    assert [parse_pseudonym(p) for p in pseudonyms] == list(pseudonyms)
    assert pseudonyms[0].startswith("bsn.9.")
    # The same identifiers blinded afresh: other elements on the wire, the same pseudonyms.
    again = blind_batch(VALUES, [hashlib.sha512(b"x" + bytes([i])).digest() for i in range(3)])
    assert set(again.elements).isdisjoint(batch.elements)
    second = dataclasses.replace(request, elements=again.elements)
    answers = (evaluate_request(K, second, r=_scalar(b"r")) for K in (K1, K2))
    assert pseudonyms_from(again, keys, *answers) == pseudonyms


def test_answers_that_do_not_fit_are_refused(network: tuple) -> None:
    _root, _cert, _org_key, keys = network
    batch = blind_batch(VALUES, _randomness(3))
    request = _sign(network, batch)
    one = evaluate_request(K1, request, r=_scalar(b"r1"))
    two = evaluate_request(K2, request, r=_scalar(b"r2"))
    wrong_element = dataclasses.replace(
        one, elements=(one.elements[0], two.elements[1], one.elements[2])
    )
    other_key = evaluate_request(_scalar(b"stranger"), request, r=_scalar(b"r3"))
    swapped = (two, one)  # each proof checked against the other service's key
    wrong_version = dataclasses.replace(one, version=8)
    for first, second in ((wrong_element, two), (other_key, two), swapped, (wrong_version, two)):
        with pytest.raises(VerificationError):
            pseudonyms_from(batch, keys, first, second)
    stale = blind_batch(VALUES, [hashlib.sha512(b"y" + bytes([i])).digest() for i in range(3)])
    with pytest.raises(VerificationError):
        pseudonyms_from(stale, keys, one, two)


def test_a_request_round_trips_and_is_bound_to_every_field(network: tuple) -> None:
    _root, cert, _org_key, _keys = network
    batch = blind_batch(VALUES[:1], _randomness(1))
    request = _sign(network, batch, nonce=b"n" * 16)
    parsed = EvaluationRequest.from_wire(request.to_wire())
    assert parsed == request
    verify_request(parsed, cert)
    for change in ({"service": "svc-2"}, {"version": 8}, {"time": NOW + 1}, {"nonce": b"m" * 16}):
        with pytest.raises(VerificationError):
            verify_request(dataclasses.replace(request, **change), cert)
    with pytest.raises(VerificationError):
        verify_request(dataclasses.replace(request, org=OrgId("ggd")), cert)


def test_the_request_wire_form_is_bounded_and_strict(network: tuple) -> None:
    _root, _cert, _org_key, _keys = network
    batch = blind_batch(VALUES[:1], _randomness(1))
    wire = _sign(network, batch, nonce=b"n" * 16).to_wire()
    element = wire["elements"][0]
    for broken in (
        {**wire, "elements": []},
        {**wire, "elements": [element] * (MAX_BATCH + 1)},
        {**wire, "elements": [b64e(bytes(32))]},
        {**wire, "nonce": b64e(b"short")},
        {**wire, "time": -1},
        {**wire, "extra": 1},
        {**wire, "v": 2},
    ):
        with pytest.raises((EncodingError, ValidationError)):
            EvaluationRequest.from_wire(broken)
    with pytest.raises(ValidationError):
        EvaluationRequest.from_wire({**wire, "elements": [element] * 3}, max_batch=2)


def test_the_response_wire_form_round_trips_and_is_strict(network: tuple) -> None:
    _root, _cert, _org_key, _keys = network
    batch = blind_batch(VALUES, _randomness(3))
    request = _sign(network, batch)
    response = evaluate_request(K1, request, r=_scalar(b"r1"))
    assert EvaluationResponse.from_wire(response.to_wire()) == response
    wire = response.to_wire()
    for broken in ({**wire, "proof": b64e(bytes(63))}, {**wire, "elements": "x"}, {"v": 1}):
        with pytest.raises((EncodingError, ValidationError)):
            EvaluationResponse.from_wire(broken)


def test_blinding_refuses_bad_batches() -> None:
    with pytest.raises(ValidationError):
        blind_batch([], [])
    with pytest.raises(ValidationError):
        blind_batch(VALUES, _randomness(2))
    with pytest.raises(ValidationError):
        blind_batch([("name", "x")], _randomness(1))
    assert "111222333" not in repr(blind_batch(VALUES, _randomness(3)))
