"""The certificate conformance vectors (tests/vectors/certificates.json) against the code.

The committed file must be exactly what the committed generator makes (``make vectors``),
and every case must come out as it says: a valid certificate verifies with the fields
given, an invalid one is refused (not as revoked), a revoked one verifies without the
CRL and is refused as revoked with it.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from protocol.certificate import (
    ROLES,
    RevocationList,
    RootCertificate,
    load_crl,
    load_enrolment_request,
    load_root,
    verify_certificate,
)
from protocol.encoding import b64d, loads_strict
from protocol.errors import (
    EncodingError,
    ProtocolError,
    RevokedError,
    ValidationError,
    VerificationError,
)

VECTOR_DIR = Path(__file__).resolve().parents[1] / "vectors"
VECTOR_FILE = VECTOR_DIR / "certificates.json"


def _load_generator() -> ModuleType:
    path = VECTOR_DIR / "gen_certificates.py"
    spec = importlib.util.spec_from_file_location("gen_certificates", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_certificates", module)
    spec.loader.exec_module(module)
    return module


def _committed() -> dict[str, Any]:
    assert VECTOR_FILE.is_file(), "tests/vectors/certificates.json is missing: run make vectors"
    vectors: dict[str, Any] = loads_strict(VECTOR_FILE.read_bytes(), max_bytes=4 << 20)
    return vectors


VECTORS = _committed()
NOW: int = VECTORS["now"]


@pytest.fixture(scope="module")
def root() -> RootCertificate:
    return load_root(b64d(VECTORS["root"]["certificate"]), now=NOW)


@pytest.fixture(scope="module")
def crl(root: RootCertificate) -> RevocationList:
    return load_crl(b64d(VECTORS["crl"]), root, now=NOW)


def test_committed_file_is_what_the_generator_makes() -> None:
    generated = json.loads(json.dumps(_load_generator().generate()))
    assert generated == VECTORS, "tests/vectors/certificates.json is stale: run make vectors"


def test_every_outcome_is_covered() -> None:
    outcomes = {case["expected"] for case in VECTORS["certificates"]}
    assert outcomes == {"valid", "invalid", "revoked"}
    for group in ("certificates", "requests", "roots"):
        names = [case["name"] for case in VECTORS[group]]
        assert len(names) == len(set(names)), f"{group}: names must be unique"
    rules = {case["rule"].split(" ")[0] for case in VECTORS["certificates"]}
    assert {str(n) for n in range(1, 12)} <= rules, "a numbered check has no invalid case"


@pytest.mark.parametrize("case", VECTORS["certificates"], ids=lambda case: case["name"])
def test_certificate(case: dict[str, Any], root: RootCertificate, crl: RevocationList) -> None:
    der = b64d(case["der"])
    if case["expected"] == "invalid":
        with pytest.raises((EncodingError, VerificationError)) as refused:
            verify_certificate(der, root, now=NOW, crl=crl)
        assert not isinstance(refused.value, RevokedError)
        return
    cert = verify_certificate(der, root, now=NOW, crl=None)
    if case["expected"] == "revoked":
        with pytest.raises(RevokedError):
            verify_certificate(der, root, now=NOW, crl=crl)
        return
    assert case["expected"] == "valid"
    assert verify_certificate(der, root, now=NOW, crl=crl) == cert
    assert (cert.network, cert.org, cert.org_type) == (root.network, case["org"], case["org_type"])
    assert [role for role in ROLES if role in cert.roles] == case["roles"]
    assert (cert.serial, cert.fingerprint) == (case["serial"], case["fingerprint"])


@pytest.mark.parametrize("case", VECTORS["requests"], ids=lambda case: case["name"])
def test_request(case: dict[str, Any]) -> None:
    der = b64d(case["der"])
    if case["expected"] == "invalid":
        with pytest.raises(ProtocolError) as refused:
            load_enrolment_request(der)
        assert isinstance(refused.value, EncodingError | ValidationError | VerificationError)
        return
    request = load_enrolment_request(der)
    assert (request.org, request.network) == (case["org"], case["network"])


@pytest.mark.parametrize("case", VECTORS["roots"], ids=lambda case: case["name"])
def test_root(case: dict[str, Any]) -> None:
    der = b64d(case["der"])
    if case["expected"] == "invalid":
        with pytest.raises(ProtocolError):
            load_root(der, now=NOW)
        return
    assert load_root(der, now=NOW).network == VECTORS["network"]
