"""A pseudonymisation service's key directory, and the authority certifying its key share."""

from __future__ import annotations

import dataclasses
import json
import stat
from pathlib import Path

import pytest

from keys.authority import Authority
from keys.errors import AuthorityError, KeyFileError, KeyStoreError
from keys.keyfile import KdfParams
from keys.pseudonymiser import ServiceKeys
from protocol import oprf
from protocol.errors import VerificationError
from protocol.oprfkeys import verify_key_request
from protocol.types import NetworkId, ServiceName

WEAK = KdfParams.for_tests()
NET = NetworkId("region-west")
NOW = 1_750_000_000
URL = "https://oprf.example.nl"
PASS = b"service passphrase"


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority.create(
        tmp_path / "authority", NET, b"root pass", WEAK, now=NOW, allow_weak=True
    )


def _service(tmp_path: Path, name: str, share: int, network: NetworkId = NET) -> ServiceKeys:
    return ServiceKeys.create(
        tmp_path / name, network, ServiceName(name), share, PASS, WEAK, allow_weak=True
    )


def test_create_makes_a_private_share_and_a_request_that_proves_it(tmp_path: Path) -> None:
    keys = _service(tmp_path, "oprf-a", 1)
    assert stat.S_IMODE((tmp_path / "oprf-a").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "oprf-a" / "share.key").stat().st_mode) == 0o600
    request = keys.request
    verify_key_request(request)
    assert (request.service, request.share, request.public_key) == ("oprf-a", 1, keys.public_key)
    assert keys.key.hex() not in (tmp_path / "oprf-a" / "share.key").read_text()
    assert keys.key.hex() not in repr(keys)
    reopened = ServiceKeys.open(tmp_path / "oprf-a", PASS)
    assert reopened.key == keys.key and reopened.statement is None
    with pytest.raises(KeyFileError):
        ServiceKeys.open(tmp_path / "oprf-a", b"wrong")
    with pytest.raises(KeyFileError):
        ServiceKeys.create(tmp_path / "strong", NET, ServiceName("s-b"), 2, PASS, WEAK)


def test_the_authority_certifies_two_shares_of_one_version_and_the_service_imports_it(
    tmp_path: Path, authority: Authority
) -> None:
    one, two = _service(tmp_path, "oprf-a", 1), _service(tmp_path, "oprf-b", 2)
    first = authority.certify_oprf_key(one.request, url=URL, now=NOW)
    second = authority.certify_oprf_key(two.request, url=URL, now=NOW)
    assert first.version == second.version == 1
    assert authority.certify_oprf_key(one.request, url=URL, now=NOW + 10).version == 1  # renewed
    one.import_statement(first, authority.root.der, now=NOW)
    reopened = ServiceKeys.open(tmp_path / "oprf-a", PASS)
    assert reopened.statement == first
    assert reopened.root.fingerprint == authority.root_fingerprint
    with pytest.raises(KeyStoreError):
        one.import_statement(second, authority.root.der, now=NOW)  # another service's key
    # Versions are one number space with the linking keys.
    assert authority.new_linking_key().version == 2
    three = _service(tmp_path, "oprf-c", 1)
    assert authority.certify_oprf_key(three.request, url=URL, now=NOW).version == 3
    with pytest.raises(AuthorityError):
        authority.certify_oprf_key(
            _service(tmp_path, "x-1", 1).request, url=URL, now=NOW, version=2
        )


def test_the_authority_refuses_a_second_key_for_a_share_or_one_service_for_both(
    tmp_path: Path, authority: Authority
) -> None:
    one = _service(tmp_path, "oprf-a", 1)
    authority.certify_oprf_key(one.request, url=URL, now=NOW)
    rival = _service(tmp_path, "oprf-z", 1)
    with pytest.raises(AuthorityError, match="another key"):
        authority.certify_oprf_key(rival.request, url=URL, now=NOW, version=1)
    same_name = ServiceKeys.create(
        tmp_path / "same-name", NET, ServiceName("oprf-a"), 2, PASS, WEAK, allow_weak=True
    )
    with pytest.raises(AuthorityError, match="two different parties"):
        authority.certify_oprf_key(same_name.request, url=URL, now=NOW, version=1)
    assert (
        authority.certify_oprf_key(
            _service(tmp_path, "oprf-b", 2).request, url=URL, now=NOW
        ).version
        == 1
    )
    stranger = _service(tmp_path, "elsewhere", 2, network=NetworkId("other-net"))
    with pytest.raises(AuthorityError, match="network"):
        authority.certify_oprf_key(stranger.request, url=URL, now=NOW)


def test_the_authority_state_keeps_the_certified_shares_across_opening(
    tmp_path: Path, authority: Authority
) -> None:
    one = _service(tmp_path, "oprf-a", 1)
    authority.certify_oprf_key(one.request, url=URL, now=NOW)
    reopened = Authority.open(tmp_path / "authority", b"root pass")
    assert reopened.oprf_keys[1][1].service == "oprf-a"
    state = json.loads((tmp_path / "authority" / "state.json").read_text())["state"]
    assert set(state["oprf_keys"]["1"]) == {"1"}


def test_a_forged_request_is_refused(tmp_path: Path, authority: Authority) -> None:
    one, two = _service(tmp_path, "oprf-a", 1), _service(tmp_path, "oprf-b", 1)
    forged = dataclasses.replace(one.request, public_key=two.public_key)
    with pytest.raises(VerificationError):
        authority.certify_oprf_key(forged, url=URL, now=NOW)
    assert authority.oprf_keys == {}
    assert oprf.public_key(one.key) == one.public_key
