"""Answers checked against ``hub/openapi.json``: the hub tests' server validates every
JSON answer it gives against the schema of its operation and status (tests/hub/conftest.py),
strictly, as a client written from the document alone would read it."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
from aiohttp import web

OPENAPI: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[2] / "hub" / "openapi.json").read_text()
)
JSON_TYPES = ("application/json", "application/problem+json")


def _resolve(item: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in item:
        node: Any = OPENAPI
        for part in item["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        item = node
    return item


@functools.cache
def _validator(method: str, path: str, status: str, media: str) -> Any:
    """The schema of one documented answer, with the whole document around it for refs."""
    content = _resolve(OPENAPI["paths"][path][method]["responses"][status])["content"]
    return jsonschema.Draft202012Validator({**OPENAPI, **content[media]["schema"]})


def response_mismatches(key: tuple[str, str, int], response: web.StreamResponse) -> list[str]:
    """How ``response`` differs from what hub/openapi.json says of ``key``: its media
    type, and its JSON body against the schema of its status, validated strictly."""
    method, path, status = key
    documented = OPENAPI["paths"].get(path, {}).get(method, {}).get("responses", {})
    if str(status) not in documented:
        return []  # _check_documented reports it
    content = _resolve(documented[str(status)]).get("content", {})
    media = response.content_type
    label = f"{method.upper()} {path} {status}"
    if not content:
        body = response.body if isinstance(response, web.Response) else None
        return [f"{label}: a body the document does not describe"] if body else []
    if media not in content:
        return [f"{label}: media type {media!r}, the document says {sorted(content)}"]
    if media not in JSON_TYPES or not isinstance(response, web.Response):
        return []  # NDJSON streams and the like: checked by their own tests
    assert isinstance(response.body, bytes)
    validator = _validator(method, path, str(status), media)
    errors = sorted(validator.iter_errors(json.loads(response.body)), key=str)
    return [f"{label}: {error.message} at {list(error.absolute_path)}" for error in errors[:3]]
