"""Key requests, key statements and key sets of the pseudonymisation services."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import oprf
from protocol.certificate import RootCertificate, create_root
from protocol.encoding import b64e, canonical_json, frame
from protocol.errors import EncodingError, ValidationError, VerificationError
from protocol.oprfkeys import (
    OprfKeyRequest,
    OprfKeyStatement,
    key_set,
    make_key_request,
    sign_key_statement,
    verify_key_request,
    verify_key_statement,
)
from protocol.ristretto import Scalar
from protocol.types import NetworkId, ServiceName

NOW = 1_700_000_000
DAY = 86400
URL = "https://oprf-1.example.nl"
NET = NetworkId("net-utrecht")


def _scalar(tag: bytes) -> Scalar:
    return oprf.random_scalar(hashlib.sha512(tag).digest())


@pytest.fixture(scope="module")
def root_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def root(root_key: Ed25519PrivateKey) -> RootCertificate:
    return create_root(root_key, NET, now=NOW, days=3650, serial=1)


def _request(share: int, service: str = "", network: str = NET) -> OprfKeyRequest:
    name = ServiceName(service or f"service-{share}")
    return make_key_request(
        _scalar(name.encode()), NetworkId(network), name, share, r=_scalar(b"r")
    )


def _statement(
    root_key: Ed25519PrivateKey, root: RootCertificate, request: OprfKeyRequest, version: int = 3
) -> OprfKeyStatement:
    return sign_key_statement(
        root_key,
        root,
        request,
        version=version,
        url=URL,
        not_before=NOW,
        not_after=NOW + 365 * DAY,
    )


def test_a_key_request_proves_possession_and_round_trips() -> None:
    request = _request(1)
    verify_key_request(request)
    assert OprfKeyRequest.from_wire(request.to_wire()) == request
    assert request.public_key == oprf.public_key(_scalar(b"service-1"))


@pytest.mark.parametrize("change", ["service", "share", "network", "element", "public_key"])
def test_a_key_request_moved_to_another_name_or_key_does_not_verify(change: str) -> None:
    request = _request(1)
    other = _request(2, service="service-9", network="other-net")
    moved = dataclasses.replace(request, **{change: getattr(other, change)})
    with pytest.raises(VerificationError):
        verify_key_request(moved)


def test_a_key_request_wire_form_is_strict() -> None:
    wire = _request(1).to_wire()
    for broken in (
        {**wire, "extra": 1},
        {k: v for k, v in wire.items() if k != "proof"},
        {**wire, "share": 3},
        {**wire, "share": True},
        {**wire, "suite": "P256-SHA256"},
        {**wire, "v": 2},
        {**wire, "public_key": b64e(bytes(32))},
    ):
        with pytest.raises((EncodingError, ValidationError)):
            OprfKeyRequest.from_wire(broken)


def test_a_statement_verifies_round_trips_and_signs_its_canonical_frame(
    root_key: Ed25519PrivateKey, root: RootCertificate
) -> None:
    statement = _statement(root_key, root, _request(1))
    verify_key_statement(statement, root, now=NOW)
    assert OprfKeyStatement.from_wire(statement.to_wire()) == statement
    unsigned = {k: v for k, v in statement.to_wire().items() if k != "sig"}
    assert statement.signed_bytes() == frame("schakel/oprf-key/v1", canonical_json(unsigned))


def test_a_statement_is_cut_at_the_roots_expiry(
    root_key: Ed25519PrivateKey, root: RootCertificate
) -> None:
    request = _request(1)
    statement = sign_key_statement(
        root_key,
        root,
        request,
        version=3,
        url=URL,
        not_before=NOW,
        not_after=root.not_after + DAY,
    )
    assert statement.not_after == root.not_after


def test_the_authority_refuses_a_request_without_proof_of_possession(
    root_key: Ed25519PrivateKey, root: RootCertificate
) -> None:
    forged = dataclasses.replace(_request(1), public_key=_request(2).public_key)
    with pytest.raises(VerificationError):
        _statement(root_key, root, forged)


@pytest.mark.parametrize(
    "change",
    [
        {"version": 4},
        {"share": 2},
        {"service": "other"},
        {"url": "https://elsewhere.example.nl"},
        {"not_after": NOW + 999 * DAY},
    ],
    ids=lambda c: next(iter(c)),
)
def test_a_statement_with_any_field_changed_does_not_verify(
    root_key: Ed25519PrivateKey, root: RootCertificate, change: dict[str, object]
) -> None:
    statement = dataclasses.replace(_statement(root_key, root, _request(1)), **change)
    with pytest.raises(VerificationError):
        verify_key_statement(statement, root, now=NOW)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://oprf.example.nl",
        "https://user@oprf.example.nl",
        "https://oprf.example.nl/?q=1",
        "https://oprf.example.nl/#x",
        "https://oprf.example.nl/",  # signed as https://oprf.example.nl, one spelling
        "https://oprf example.nl",
        "https://" + "a" * 200 + ".nl",
        "",
        7,
    ],
)
def test_a_statement_names_one_plain_base_url(
    root_key: Ed25519PrivateKey, root: RootCertificate, url: object
) -> None:
    """The URL is signed with the key, so the hub can not send organisations elsewhere;
    one spelling only (no trailing slash, no user, query or fragment)."""
    wire = _statement(root_key, root, _request(1)).to_wire()
    with pytest.raises(ValidationError):
        OprfKeyStatement.from_wire({**wire, "url": url})
    if url == "https://oprf.example.nl/":
        signed = sign_key_statement(
            root_key, root, _request(1), version=3, url=url, not_before=NOW, not_after=NOW + 9
        )
        assert signed.url == "https://oprf.example.nl"
        return
    with pytest.raises(ValidationError):
        sign_key_statement(
            root_key, root, _request(1), version=3, url=url, not_before=NOW, not_after=NOW + 9
        )  # type: ignore[arg-type]


def test_a_statement_outside_its_period_or_of_another_root_does_not_verify(
    root_key: Ed25519PrivateKey, root: RootCertificate
) -> None:
    statement = _statement(root_key, root, _request(1))
    for now in (NOW - 1, NOW + 365 * DAY + 1):
        with pytest.raises(VerificationError):
            verify_key_statement(statement, root, now=now)
    stranger = create_root(Ed25519PrivateKey.generate(), NET, now=NOW, days=10, serial=2)
    with pytest.raises(VerificationError):
        verify_key_statement(statement, stranger, now=NOW)


def test_a_key_set_takes_one_statement_per_share_and_adds_the_keys(
    root_key: Ed25519PrivateKey, root: RootCertificate
) -> None:
    one, two = _statement(root_key, root, _request(1)), _statement(root_key, root, _request(2))
    older = _statement(root_key, root, _request(1, service="old-1"), version=2)
    keys = key_set([older, two, one], root, now=NOW, version=3)
    assert (keys.first, keys.second) == (one, two)
    assert keys.combined == oprf.combine_public_keys(one.public_key, two.public_key)


def test_a_key_set_refuses_a_missing_share_one_service_twice_or_two_keys_for_a_share(
    root_key: Ed25519PrivateKey, root: RootCertificate
) -> None:
    one, two = _statement(root_key, root, _request(1)), _statement(root_key, root, _request(2))
    same_service = _statement(root_key, root, _request(2, service="service-1"))
    rival = _statement(root_key, root, _request(1, service="rival"))
    for statements in ([one], [one, same_service], [one, two, rival]):
        with pytest.raises(VerificationError):
            key_set(statements, root, now=NOW, version=3)
    with pytest.raises(VerificationError):
        key_set([one, two], root, now=NOW + 400 * DAY, version=3)
