"""problem_middleware, problem_response and read_json against a real aiohttp server on loopback."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hub.errors import (
    Conflict,
    ForbiddenSender,
    HubError,
    InvalidEnvelope,
    Malformed,
    NotFound,
    RateLimited,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnknownRecipient,
    UnsupportedMedia,
)
from hub.logs import access_log_middleware, configure_logging
from hub.problems import (
    ORG,
    REQUEST_ID,
    HTTPProblem,
    MethodNotAllowed,
    problem_middleware,
    problem_response,
    read_json,
)

SECRET = "CONTENT-MARKER-7f3a"
LIMIT = 64
REQUEST_ID_FORM = re.compile(r"[0-9a-f]{32}")
SEEN = web.AppKey("seen", dict)


class RecordingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def recorder() -> RecordingHandler:
    return RecordingHandler()


@pytest.fixture
async def client(recorder: RecordingHandler) -> AsyncIterator[TestClient[Any, Any]]:
    logger = logging.getLogger("test.problems")
    logger.addHandler(recorder)
    logger.propagate = False
    app = web.Application(middlewares=[problem_middleware(logger)], client_max_size=1024)
    seen: dict[str, str] = {}
    app[SEEN] = seen

    async def ok(request: web.Request) -> web.Response:
        seen["request_id"] = request[REQUEST_ID]
        return web.json_response({"ok": True})

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"value": await read_json(request, max_bytes=LIMIT, timeout=5)})

    async def raise_hub(request: web.Request) -> web.Response:
        errors: dict[str, HubError] = {
            "malformed": Malformed("field 'org' is missing"),
            "unauthorized": Unauthorized("token expired at 12:00"),
            "forbidden": ForbiddenSender(),
            "notfound": NotFound(),
            "conflict": Conflict(),
            "toolarge": TooLarge(),
            "media": UnsupportedMedia(),
            "envelope": InvalidEnvelope(),
            "recipient": UnknownRecipient(),
            "limited": RateLimited(7),
            "unavailable": Unavailable(),
        }
        raise errors[request.match_info["name"]]

    async def crash(request: web.Request) -> web.Response:
        raise KeyError(SECRET)

    async def big(request: web.Request) -> web.Response:
        await request.read()  # aiohttp's own client_max_size applies
        return web.Response(status=204)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def teapot(request: web.Request) -> web.Response:
        raise web.HTTPRequestHeaderFieldsTooLarge(text=SECRET)

    app.router.add_get("/ok", ok)
    app.router.add_post("/echo", echo)
    app.router.add_get("/hub/{name}", raise_hub)
    app.router.add_get("/crash", crash)
    app.router.add_post("/big", big)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/headers", teapot)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client
    logger.removeHandler(recorder)
    logger.propagate = True


async def problem_of(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status == status
    assert response.headers["Content-Type"] == "application/problem+json"
    body = json.loads(await response.read())
    assert set(body) == {"type", "title", "status", "detail", "request_id"}
    assert body["type"] == f"urn:schakel:problem:{slug}"
    assert body["status"] == status
    assert REQUEST_ID_FORM.fullmatch(body["request_id"])
    assert response.headers["X-Request-Id"] == body["request_id"]
    return body


# --- middleware ------------------------------------------------------------------------------


async def test_success_gets_a_request_id(client: TestClient[Any, Any]) -> None:
    response = await client.get("/ok")
    assert response.status == 200
    assert REQUEST_ID_FORM.fullmatch(response.headers["X-Request-Id"])
    assert client.app is not None
    assert client.app[SEEN]["request_id"] == response.headers["X-Request-Id"]


async def test_request_ids_are_fresh_and_not_taken_from_the_caller(
    client: TestClient[Any, Any],
) -> None:
    first = await client.get("/ok", headers={"X-Request-Id": "chosen-by-caller"})
    second = await client.get("/ok")
    assert first.headers["X-Request-Id"] != "chosen-by-caller"
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]


@pytest.mark.parametrize(
    ("name", "status", "slug"),
    [
        ("malformed", 400, "malformed"),
        ("unauthorized", 401, "unauthorized"),
        ("forbidden", 403, "forbidden-sender"),
        ("notfound", 404, "not-found"),
        ("conflict", 409, "conflict"),
        ("toolarge", 413, "too-large"),
        ("media", 415, "unsupported-media-type"),
        ("envelope", 422, "invalid-envelope"),
        ("recipient", 422, "unknown-recipient"),
        ("limited", 429, "rate-limited"),
        ("unavailable", 503, "unavailable"),
    ],
)
async def test_hub_errors(client: TestClient[Any, Any], name: str, status: int, slug: str) -> None:
    await problem_of(await client.get(f"/hub/{name}"), status, slug)


async def test_malformed_keeps_its_detail(client: TestClient[Any, Any]) -> None:
    body = await problem_of(await client.get("/hub/malformed"), 400, "malformed")
    assert body["detail"] == "field 'org' is missing"
    assert body["title"] == "Malformed request"


async def test_unauthorized_says_one_thing(client: TestClient[Any, Any]) -> None:
    response = await client.get("/hub/unauthorized")
    body = await problem_of(response, 401, "unauthorized")
    assert body["detail"] == "authentication failed"
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_rate_limited_sets_retry_after(client: TestClient[Any, Any]) -> None:
    response = await client.get("/hub/limited")
    await problem_of(response, 429, "rate-limited")
    assert response.headers["Retry-After"] == "7"


async def test_unknown_route(client: TestClient[Any, Any]) -> None:
    await problem_of(await client.get("/no/such/route"), 404, "not-found")


async def test_method_not_allowed(client: TestClient[Any, Any]) -> None:
    response = await client.delete("/echo")
    body = await problem_of(response, 405, "method-not-allowed")
    assert body["title"] == "Method not allowed"
    assert response.headers["Allow"] == "POST"


async def test_aiohttp_body_limit(client: TestClient[Any, Any]) -> None:
    await problem_of(await client.post("/big", data=b"x" * 5000), 413, "too-large")


async def test_other_http_errors_keep_their_status_but_not_their_text(
    client: TestClient[Any, Any],
) -> None:
    response = await client.get("/headers")
    body = await problem_of(response, 431, "request-header-fields-too-large")
    assert SECRET not in json.dumps(body)


async def test_redirects_pass_through(client: TestClient[Any, Any]) -> None:
    response = await client.get("/redirect", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/ok"
    assert REQUEST_ID_FORM.fullmatch(response.headers["X-Request-Id"])


async def test_unexpected_exception_is_500_and_logged_without_its_message(
    client: TestClient[Any, Any], recorder: RecordingHandler
) -> None:
    response = await client.get("/crash?q=" + SECRET, headers={"X-Secret": SECRET})
    body = await problem_of(response, 500, "internal")
    assert SECRET not in json.dumps(body)
    assert body["detail"] == "Internal error"
    [record] = recorder.records
    assert record.levelno == logging.ERROR
    assert record.request_id == body["request_id"]  # type: ignore[attr-defined]
    assert record.exc_type == "builtins.KeyError"  # type: ignore[attr-defined]
    assert "in crash" in record.traceback  # type: ignore[attr-defined]
    assert record.route == "/crash"  # type: ignore[attr-defined]
    assert record.exc_info is None
    assert SECRET not in repr(record.__dict__)


async def test_logged_500_passes_through_the_json_log(
    client: TestClient[Any, Any], recorder: RecordingHandler
) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("INFO", stream=stream)
        logging.getLogger("test.problems").propagate = True
        await client.get("/crash")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    [line] = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert line["level"] == "ERROR" and line["exc_type"] == "builtins.KeyError"
    assert SECRET not in stream.getvalue()


def test_problem_response_directly() -> None:
    response = problem_response(TooLarge("at most 10 bytes"), "abc123")
    assert response.status == 413
    assert response.content_type == "application/problem+json"
    assert response.headers["X-Request-Id"] == "abc123"
    assert response.headers["Cache-Control"] == "no-store"
    assert isinstance(response.body, bytes)
    assert json.loads(response.body) == {
        "type": "urn:schakel:problem:too-large",
        "title": "Request body too large",
        "status": 413,
        "detail": "at most 10 bytes",
        "request_id": "abc123",
    }


def test_extra_problem_classes() -> None:
    assert MethodNotAllowed().type == "urn:schakel:problem:method-not-allowed"
    assert (HTTPProblem(431).status, HTTPProblem(431).slug) == (
        431,
        "request-header-fields-too-large",
    )
    assert (HTTPProblem(499).status, HTTPProblem(499).slug) == (400, "bad-request")
    assert (HTTPProblem(502).status, HTTPProblem(502).slug) == (500, "internal")
    assert (HTTPProblem(599).status, HTTPProblem(599).slug) == (500, "internal")
    assert HubError.status == 500  # instance attributes never leak into the class


# --- read_json -------------------------------------------------------------------------------


async def test_read_json_accepts_strict_json(client: TestClient[Any, Any]) -> None:
    response = await client.post("/echo", json={"a": [1, 2, "x"]})
    assert response.status == 200
    assert await response.json() == {"value": {"a": [1, 2, "x"]}}


async def test_read_json_accepts_charset_utf8(client: TestClient[Any, Any]) -> None:
    response = await client.post(
        "/echo", data=b"[1]", headers={"Content-Type": "application/json; charset=UTF-8"}
    )
    assert response.status == 200


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
async def test_read_json_media_type(client: TestClient[Any, Any], content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post("/echo", data=b'{"a":1}', headers=headers)
    await problem_of(response, 415, "unsupported-media-type")


async def test_read_json_declared_length_too_large(client: TestClient[Any, Any]) -> None:
    body = json.dumps({"pad": "x" * LIMIT}).encode()
    response = await client.post("/echo", data=body, headers={"Content-Type": "application/json"})
    await problem_of(response, 413, "too-large")


async def test_read_json_streamed_body_too_large(client: TestClient[Any, Any]) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"pad":"'
        for _ in range(10):
            yield b"x" * 16
        yield b'"}'

    response = await client.post(
        "/echo", data=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "Content-Length" not in response.request_info.headers
    await problem_of(response, 413, "too-large")


async def test_read_json_exactly_at_the_limit(client: TestClient[Any, Any]) -> None:
    body = b'{"pad":"' + b"x" * (LIMIT - 10) + b'"}'
    assert len(body) == LIMIT
    response = await client.post("/echo", data=body, headers={"Content-Type": "application/json"})
    assert response.status == 200


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "malformed JSON"),
        (b"{", "malformed JSON"),
        (b'{"a":1,"a":2}', "duplicate key"),
        (b'{"a":1.5}', "integers"),
        (b'{"a":NaN}', "NaN"),
        (b"\xff", "UTF-8"),
        (b"[" * 20 + b"]" * 20, "nested too deeply"),
    ],
)
async def test_read_json_malformed(client: TestClient[Any, Any], body: bytes, reason: str) -> None:
    response = await client.post("/echo", data=body, headers={"Content-Type": "application/json"})
    problem = await problem_of(response, 400, "malformed")
    assert problem["detail"].startswith("the body is not strict JSON: ")
    assert reason in problem["detail"]


async def test_malformed_detail_never_quotes_the_body(client: TestClient[Any, Any]) -> None:
    body = ('{"x":"' + SECRET + '",}').encode()
    response = await client.post("/echo", data=body, headers={"Content-Type": "application/json"})
    problem = await problem_of(response, 400, "malformed")
    assert SECRET not in json.dumps(problem)


async def test_access_log_sees_problem_statuses(recorder: RecordingHandler) -> None:
    logger = logging.getLogger("test.problems.access")
    logger.setLevel(logging.INFO)
    logger.addHandler(recorder)
    logger.propagate = False
    app = web.Application(middlewares=[access_log_middleware(logger), problem_middleware(logger)])

    async def missing(request: web.Request) -> web.Response:
        raise NotFound()

    app.router.add_get("/v1/messages/{id}", missing)
    try:
        async with TestClient(TestServer(app)) as test_client:
            response = await test_client.get("/v1/messages/abc")
            assert response.status == 404
    finally:
        logger.removeHandler(recorder)
    [record] = recorder.records
    assert record.status == 404  # type: ignore[attr-defined]
    assert record.route == "/v1/messages/{id}"  # type: ignore[attr-defined]
    assert record.request_id == response.headers["X-Request-Id"]  # type: ignore[attr-defined]


# --- hub.logs --------------------------------------------------------------------------------


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The root logger writing JSON lines to a buffer; restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging(logging.INFO, stream=stream)
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(text) for text in stream.getvalue().splitlines()]


def test_log_line_shape(json_log: io.StringIO) -> None:
    logging.getLogger("hub.test").warning("started", extra={"org": "ggd-west", "status": 201})
    [line] = lines(json_log)
    assert set(line) == {"time", "level", "logger", "message", "org", "status"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    assert (line["level"], line["logger"], line["message"]) == ("WARNING", "hub.test", "started")
    assert (line["org"], line["status"]) == ("ggd-west", 201)


def test_log_drops_fields_outside_the_allow_list(json_log: io.StringIO) -> None:
    logging.getLogger("hub.test").info(
        "stored", extra={"body": SECRET, "pseudonym": SECRET, "request_id": "r1"}
    )
    [line] = lines(json_log)
    assert line["request_id"] == "r1"
    assert SECRET not in json_log.getvalue()
    assert "body" not in line and "pseudonym" not in line


def test_log_redacts_text_arguments(json_log: io.StringIO) -> None:
    log = logging.getLogger("hub.test")
    log.info("payload %s from %s", SECRET, b"bytes")
    log.info("took %d ms, retry %s, flag %s", 12, None, True)
    log.info("mapping %(value)s", {"value": SECRET})
    log.info({"not": SECRET})
    messages = [line["message"] for line in lines(json_log)]
    assert messages == [
        "payload <redacted> from <redacted>",
        "took 12 ms, retry None, flag True",
        "mapping <redacted>",
        "dict",
    ]
    assert SECRET not in json_log.getvalue()


def test_log_exception_without_its_message(json_log: io.StringIO) -> None:
    try:
        raise ValueError(SECRET)
    except ValueError:
        logging.getLogger("hub.test").exception("failed")
    [line] = lines(json_log)
    assert line["exc_type"] == "builtins.ValueError"
    assert "test_log_exception_without_its_message" in line["traceback"]
    assert SECRET not in json_log.getvalue()


def test_log_drops_aiohttp_access_lines(json_log: io.StringIO) -> None:
    logging.getLogger("aiohttp.access").info('GET /v1/messages/%s?after=1 "%s"', SECRET, "ua")
    logging.getLogger("aiohttp.server").error("kept")
    assert [line["logger"] for line in lines(json_log)] == ["aiohttp.server"]


def test_configure_logging_twice_keeps_one_handler(json_log: io.StringIO) -> None:
    second = io.StringIO()
    configure_logging(logging.INFO, stream=second)
    logging.getLogger("hub.test").info("once")
    assert json_log.getvalue() == ""
    assert len(lines(second)) == 1


async def test_access_log_line(json_log: io.StringIO) -> None:
    ticks = iter([10.0, 10.25])
    logger = logging.getLogger("hub.access")
    app = web.Application(
        middlewares=[
            access_log_middleware(logger, clock=lambda: next(ticks)),
            problem_middleware(logger),
        ]
    )

    async def get_message(request: web.Request) -> web.Response:
        request[ORG] = "politie-oost"
        return web.json_response({"id": request.match_info["id"]})

    app.router.add_get("/v1/messages/{id}", get_message)
    async with TestClient(TestServer(app)) as test_client:
        response = await test_client.get(
            "/v1/messages/" + SECRET + "?after=" + SECRET,
            headers={"Authorization": "Bearer " + SECRET, "Schakel-User": SECRET},
        )
        assert response.status == 200
    [line] = [line for line in lines(json_log) if line["logger"] == "hub.access"]
    assert line == {
        "time": line["time"],
        "level": "INFO",
        "logger": "hub.access",
        "message": "request",
        "request_id": response.headers["X-Request-Id"],
        "method": "GET",
        "route": "/v1/messages/{id}",
        "status": 200,
        "duration_ms": 250.0,
        "org": "politie-oost",
    }
    assert SECRET not in json_log.getvalue()


async def test_access_log_of_unknown_route_and_crash(json_log: io.StringIO) -> None:
    logger = logging.getLogger("hub.access")
    app = web.Application(middlewares=[access_log_middleware(logger), problem_middleware(logger)])

    async def crash(request: web.Request) -> web.Response:
        raise RuntimeError(SECRET)

    app.router.add_post("/crash", crash)
    async with TestClient(TestServer(app)) as test_client:
        assert (await test_client.get("/nowhere/" + SECRET)).status == 404
        assert (await test_client.post("/crash", data=SECRET)).status == 500
    access = [line for line in lines(json_log) if line["message"] == "request"]
    assert [(line["route"], line["status"]) for line in access] == [("-", 404), ("/crash", 500)]
    assert all("org" not in line for line in access)
    assert SECRET not in json_log.getvalue()
