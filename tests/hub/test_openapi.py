"""hub/openapi.json: well formed, self-consistent, equal to the HTTP contract and to the app."""

from __future__ import annotations

import inspect
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from openapi_harness import response_mismatches

from hub.errors import HubError, RateLimited
from hub.problems import MethodNotAllowed, problem_response
from hub.tokens import generate_signing_key
from protocol.encoding import b64e
from protocol.envelope import Envelope

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "hub" / "openapi.json"
CONTRACT = ROOT / "docs" / "protocol.md"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    value = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    assert isinstance(value, dict)
    return value


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method.upper(), path, operation


def document_routes(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for method, path, _ in operations(doc)}


def contract_routes() -> set[tuple[str, str]]:
    text = CONTRACT.read_text(encoding="utf-8")
    found = re.findall(r"`(GET|POST|PUT|DELETE|PATCH) (/[^`?\s]*)", text)
    return {(method, path) for method, path in found}


def schema_of(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """A JSON Schema that is the whole document with a root ``$ref``, so refs resolve."""
    return {**doc, "$ref": f"#/components/schemas/{name}"}


def test_openapi_version(doc: dict[str, Any]) -> None:
    assert re.fullmatch(r"3\.1\.\d+", doc["openapi"])
    assert doc["info"]["title"] and doc["info"]["version"]


def test_every_operation_has_responses_and_a_unique_id(doc: dict[str, Any]) -> None:
    ids = []
    for method, path, operation in operations(doc):
        assert operation.get("responses"), f"{method} {path} has no responses"
        assert "500" in operation["responses"], f"{method} {path} does not name its 500"
        ids.append(operation["operationId"])
    assert len(ids) == len(set(ids))


def test_every_ref_resolves(doc: dict[str, Any]) -> None:
    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    refs = set(walk(doc))
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        target: Any = doc
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            assert isinstance(target, dict) and part in target, f"unresolved {ref}"
            target = target[part]


def test_component_schemas_are_valid_json_schema(doc: dict[str, Any]) -> None:
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_document_equals_the_http_contract(doc: dict[str, Any]) -> None:
    contract = contract_routes()
    assert len(contract) >= 20
    assert document_routes(doc) == contract


def test_security_matches_the_contract(doc: dict[str, Any]) -> None:
    open_routes = {
        ("POST", "/v1/auth/challenge"),
        ("POST", "/v1/auth/token"),
        ("GET", "/v1/hub"),
        ("POST", "/v1/directory/certificates"),
        ("GET", "/v1/directory/crl"),
        ("PUT", "/v1/directory/crl"),
        ("POST", "/v1/directory/linking-keys"),
        ("POST", "/v1/directory/oprf-keys"),
        ("GET", "/v1/directory/oprf-keys"),
        ("POST", "/v1/directory/retired-linking-keys"),
        ("GET", "/v1/directory/retired-linking-keys"),
        ("GET", "/v1/audit/witness-policy"),
        ("PUT", "/v1/audit/witness-policy"),
        ("GET", "/v1/directory/retention-policy"),
        ("PUT", "/v1/directory/retention-policy"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/v1/openapi.json"),
        ("GET", "/metrics"),  # no token: the peer's network decides (hub.metrics)
    }
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        **doc["components"]["securitySchemes"]["bearerAuth"],
        "type": "http",
        "scheme": "bearer",
    }
    for method, path, operation in operations(doc):
        if (method, path) in open_routes:
            assert operation["security"] == [], f"{method} {path}"
        else:
            assert operation["security"] == [{"bearerAuth": []}], f"{method} {path}"
            assert "401" in operation["responses"], f"{method} {path}"


def test_v1_operations_take_the_schakel_headers(doc: dict[str, Any]) -> None:
    """Schakel-User is required with a token; Schakel-Purpose where case data is read."""
    parameters = doc["components"]["parameters"]
    assert (parameters["SchakelUser"]["name"], parameters["SchakelUser"]["required"]) == (
        "Schakel-User",
        True,
    )
    assert parameters["SchakelPurpose"]["required"] is True
    purpose_required = {
        ("GET", "/v1/inbox"),
        ("GET", "/v1/messages/{id}"),
        ("POST", "/v1/audit/head"),
        ("GET", "/v1/audit/heads/{size}"),
        ("GET", "/v1/audit/entries"),
        ("GET", "/v1/audit/entries/{index}/proof"),
        ("GET", "/v1/audit/export"),
        ("GET", "/v1/cases"),
        ("GET", "/v1/cases/{ref}"),
        ("POST", "/v1/cases/{ref}/split"),
        ("POST", "/v1/cases/{ref}/merge"),
        ("POST", "/v1/cases/{ref}/unmerge"),
        ("GET", "/v1/referrals"),
        ("GET", "/v1/events"),
        ("POST", "/v1/audit/erasures"),
    }
    for method, path, operation in operations(doc):
        refs = {p.get("$ref", "").rpartition("/")[2] for p in operation.get("parameters", [])}
        authenticated = operation["security"] == [{"bearerAuth": []}]
        assert ("SchakelUser" in refs) == authenticated, (method, path)
        assert ("SchakelUserOptional" in refs) == (path.startswith("/v1/") and not authenticated)
        assert ("SchakelPurpose" in refs) == ((method, path) in purpose_required), (method, path)
        if authenticated:
            assert "400" in operation["responses"], (method, path)


def test_every_problem_slug_of_the_contract_is_documented(doc: dict[str, Any]) -> None:
    table = re.findall(r"^\| `([a-z-]+)` \| (\d{3}) \|", CONTRACT.read_text(), re.MULTILINE)
    assert len(table) >= 10
    described = " ".join(r["description"] for r in doc["components"]["responses"].values())
    for slug, _status in table:
        assert f"`urn:schakel:problem:{slug}`" in described, slug


@pytest.mark.parametrize(
    "err", [HubError(), RateLimited(3), MethodNotAllowed(frozenset({"GET"}))], ids=repr
)
def test_problem_responses_match_the_problem_schema(doc: dict[str, Any], err: HubError) -> None:
    response = problem_response(err, "0" * 32)
    assert isinstance(response.body, bytes)
    jsonschema.validate(json.loads(response.body), schema_of(doc, "Problem"))


def test_envelope_schema_agrees_with_the_protocol_parser(doc: dict[str, Any]) -> None:
    recipients = ["ggd-west", "politie-oost"]
    fingerprint = b64e(bytes(32))
    wire = {
        "header": {
            "v": 1,
            "id": b64e(bytes(range(16))),
            "network": "test-net",
            "sender": "school-12",
            "recipients": recipients,
            "kind": "signal",
            "pseudonyms": [],
            "created": 1_700_000_000,
            "sender_cert": fingerprint,
            "recipient_keys": {r: fingerprint for r in recipients},
        },
        "body": b64e(bytes(100)),
        "keys": {r: b64e(bytes(1168)) for r in recipients},
        "sig": b64e(bytes(64)),
    }
    Envelope.from_wire(wire)  # the protocol's own parser accepts it
    validator = jsonschema.Draft202012Validator(schema_of(doc, "Envelope"))
    assert list(validator.iter_errors(wire)) == []
    for broken in (
        {**wire, "extra": 1},
        {**wire, "sig": b64e(bytes(63))},
        {**wire, "header": {**wire["header"], "kind": "gossip"}},
        {**wire, "header": {**wire["header"], "id": "not-a-message-id"}},
    ):
        assert list(validator.iter_errors(broken)), broken


# --- the running app -------------------------------------------------------------------------


def _app_routes(app: web.Application) -> set[tuple[str, str]]:
    routes = set()
    for resource in app.router.resources():
        if isinstance(resource, web.PrefixedSubAppResource):
            prefix = resource.canonical
            routes |= {(m, prefix + p) for m, p in _app_routes(resource._app)}
            continue
        for route in resource:
            if route.method not in ("HEAD", "OPTIONS", "*"):
                routes.add((route.method, resource.canonical))
    return routes


async def test_app_serves_exactly_the_documented_routes(
    doc: dict[str, Any], tmp_path: Path
) -> None:
    try:
        from hub.app import make_app  # type: ignore[import-not-found,unused-ignore]
        from hub.config import HubConfig
    except ImportError:
        pytest.skip("hub.app not yet available")
    from protocol.certificate import create_root
    from protocol.types import NetworkId

    now = int(time.time())
    root = create_root(
        Ed25519PrivateKey.generate(), NetworkId("test-net"), now=now - 60, days=30, serial=1
    )
    config = HubConfig.for_tests(
        network="test-net",
        root_der=root.der,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}",
    )
    app = make_app(config, token_key_pem=generate_signing_key())
    if inspect.isawaitable(app):
        app = await app
    assert isinstance(app, web.Application)
    assert _app_routes(app) == document_routes(doc)


def test_the_answer_validator_refuses_what_the_document_does_not_say() -> None:
    """The check every hub test's server runs on each answer (openapi_harness) can fail."""
    key = ("get", "/v1/directory/orgs", 200)
    org = {
        "org": "police",
        "roles": ["member"],
        "type": "police",
        "certificate": "A" * 43,
        "bundle": None,
        "revoked": False,
    }
    assert response_mismatches(key, web.json_response({"orgs": [org]})) == []
    extra = web.json_response({"orgs": [{**org, "secret": "x"}]})
    assert "Additional properties are not allowed" in response_mismatches(key, extra)[0]
    wrong = web.json_response({"orgs": [{**org, "type": "pirates"}]})
    assert "'pirates' is not one of" in response_mismatches(key, wrong)[0]
    text = web.Response(text="ok")
    assert "media type 'text/plain'" in response_mismatches(key, text)[0]
    problem = problem_response(HubError(), "0" * 32)
    assert response_mismatches(("get", "/v1/directory/orgs", 500), problem) == []
    broken = web.json_response({"type": "x"}, status=500, content_type="application/problem+json")
    assert response_mismatches(("get", "/v1/directory/orgs", 500), broken)
