"""What every route module of the HTTP adapter shares: the services, authentication, the
audit scope of a request, the body and query readers, the client address and rendering.

Each route module (:mod:`hub.http.auth`, :mod:`hub.http.directory`, ...) registers its
own routes with ``add_routes(app)``; its handlers authenticate, parse, call one use-case
and render. The API is specified in ``docs/protocol.md``. Every route that touches a
message or the directory runs inside :func:`audited`, so a request that is refused
(authentication, body, or a use-case check) leaves exactly one ``denied`` audit entry,
and an allowed one leaves the entry its use-case committed with the action.
"""

from __future__ import annotations

import ipaddress
import json
import re
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from hub import auth, directory
from hub.accesslog import recording
from hub.accesslog.heads import HeadSigner
from hub.accesslog.recording import Scope
from hub.checkpoints import WitnessSubmitter
from hub.config import Clock, HubConfig, IPAddress, Networks, Rng, unmapped
from hub.errors import Malformed, Unauthorized
from hub.escalation import Escalator
from hub.notify import Notifier
from hub.problems import ORG, REQUEST_ID, read_json
from hub.query import INTEGER, NONE, Spec, parse_query
from hub.ratelimit import TokenBucket
from hub.retention import RetentionJob
from hub.store import Store
from hub.tokens import TokenService
from protocol.auditlog import MAX_PURPOSE_TEXT_CHARS, PURPOSES, check_purpose_text, check_user
from protocol.errors import ValidationError

JSON = "application/json"
USER_HEADER = "Schakel-User"
PURPOSE_HEADER = "Schakel-Purpose"
PURPOSE_TEXT_HEADER = "Schakel-Purpose-Text"
FORWARDED_FOR_HEADER = "X-Forwarded-For"
MAX_FORWARDED_CHARS = 1024  # of X-Forwarded-For read, from its end
MAX_FORWARDED_HOPS = 20  # entries walked at most
# Percent-encoded UTF-8: at most 4 bytes a character, 3 header characters a byte.
MAX_PURPOSE_TEXT_HEADER = MAX_PURPOSE_TEXT_CHARS * 4 * 3
_PERCENT_ENCODED = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/?%"
)


@dataclass(frozen=True, slots=True)
class Services:
    """What the handlers need; built once by :func:`hub.app.make_app`."""

    config: HubConfig
    clock: Clock
    rng: Rng
    store: Store
    trust_cache: directory.TrustCache
    tokens: TokenService
    notifier: Notifier
    org_limits: TokenBucket
    address_limits: TokenBucket
    hub_certificate_der: bytes | None
    openapi: bytes | None
    heads: HeadSigner | None = None  # None: the hub has no log-signing key
    escalator: Escalator | None = None
    witnesses: WitnessSubmitter | None = None  # None: no log key, or no always-on witness
    retention: RetentionJob | None = None


SERVICES = web.AppKey("schakel_services", Services)
# The query parameters of an authenticated request, as hub.query.parse_query passed them.
QUERY = web.RequestKey("schakel_query", dict)


def query_of(request: web.Request) -> dict[str, str]:
    """The query parameters :func:`authenticate` passed for this request."""
    found: dict[str, str] = request[QUERY]
    return found


INBOX_QUERY: Spec = {"after": INTEGER, "limit": INTEGER}


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def client_address(request: web.Request) -> str | None:
    """The client's IP address text: the TCP peer, or behind a trusted proxy the address
    it forwarded (:func:`forwarded_client`). None when the peer is not an IP address."""
    forwarded = request.headers.getall(FORWARDED_FOR_HEADER, [])
    address = forwarded_client(request.remote, forwarded, services(request).config.trusted_proxies)
    return None if address is None else str(address)


def forwarded_client(
    peer: str | None, forwarded_for: Sequence[str], trusted: Networks
) -> IPAddress | None:
    """The client address of a request from ``peer`` carrying ``X-Forwarded-For``.

    Only a trusted peer's header is read. It is walked from right to left (the nearest
    hop first) past the trusted proxies; the first address that is not trusted is the
    client. The walk stops at a malformed entry, and after the rightmost
    ``MAX_FORWARDED_HOPS`` entries within the last ``MAX_FORWARDED_CHARS`` characters;
    where it stops, the last trusted hop is the client. (Entries further left were
    written by the client: a long or broken prefix can not hide the address the
    trusted proxies saw.)
    """
    try:
        hop = unmapped(ipaddress.ip_address(peer or ""))
    except ValueError:
        return None
    if hop not in trusted:
        return hop
    for entry in _rightmost_entries(",".join(forwarded_for)):
        try:
            address = ipaddress.ip_address(entry.strip(" \t"))
        except ValueError:
            return hop
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
            return hop
        hop = unmapped(address)
        if hop not in trusted:
            return hop
    return hop


def _rightmost_entries(header: str) -> list[str]:
    """Up to ``MAX_FORWARDED_HOPS`` whole entries from the end of ``header``, nearest first."""
    if not header:
        return []
    tail = header[-MAX_FORWARDED_CHARS:]
    entries = tail.split(",")
    if len(tail) < len(header):
        entries = entries[1:]  # cut in the middle, perhaps: never read a partial address
    return entries[::-1][:MAX_FORWARDED_HOPS]


def parse_user(header: str | None) -> str:
    """The required ``Schakel-User`` header (400 ``malformed`` without it or malformed)."""
    if header is None:
        raise Malformed(f"the {USER_HEADER} header is required")
    try:
        return check_user(header)
    except ValidationError as exc:
        raise Malformed(f"{USER_HEADER}: {exc}") from None


def parse_purpose(header: str | None, *, required: bool) -> str | None:
    """``Schakel-Purpose``: a code of ``protocol.auditlog.PURPOSES``."""
    if header is None:
        if required:
            raise Malformed(f"the {PURPOSE_HEADER} header is required on this route")
        return None
    if header not in PURPOSES:
        raise Malformed(f"{PURPOSE_HEADER} must be one of {', '.join(PURPOSES)}")
    return header


# A "%" not followed by two hex digits: unquote() would keep it as literal text.
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def parse_purpose_text(header: str | None) -> str | None:
    """``Schakel-Purpose-Text``: percent-encoded UTF-8, checked after decoding."""
    if header is None:
        return None
    if (
        len(header) > MAX_PURPOSE_TEXT_HEADER
        or not set(header) <= _PERCENT_ENCODED
        or _BAD_ESCAPE.search(header)
    ):
        raise Malformed(f"{PURPOSE_TEXT_HEADER} must be percent-encoded UTF-8, 1-200 characters")
    try:
        text = urllib.parse.unquote(header, encoding="utf-8", errors="strict")
        return check_purpose_text(text)
    except UnicodeDecodeError:
        raise Malformed(f"{PURPOSE_TEXT_HEADER} is not percent-encoded UTF-8") from None
    except ValidationError as exc:
        raise Malformed(f"{PURPOSE_TEXT_HEADER}: {exc}") from None


def render(body: Any, *, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8"),
        content_type=JSON,
        headers={"Cache-Control": "no-store"},
    )


@asynccontextmanager
async def audited(request: web.Request, action: str, object_type: str) -> AsyncIterator[Scope]:
    """An audit scope for this request; a refusal escaping it is recorded as denied."""
    s = services(request)
    scope = Scope(
        action=action,
        object_type=object_type,
        request_id=request[REQUEST_ID],
        source=client_address(request),
    )
    async with recording.audited(s.store, s.clock, scope):
        yield scope


async def authenticate(
    request: web.Request, scope: Scope, *, purpose: bool = False, query: Spec = NONE
) -> auth.Caller:
    """The caller behind the bearer token; fills in the audit scope and rate-limits.

    ``Schakel-User`` is required; ``Schakel-Purpose`` too where ``purpose`` (routes that
    read case data). Each value enters the scope only once it passed its check. Then
    the query string, by the route's ``query`` (none by default): the parameters that
    passed are in ``request[QUERY]``.
    """
    s = services(request)
    try:
        caller = await auth.verify_access(
            s.store,
            s.clock,
            s.config,
            tokens=s.tokens,
            cache=s.trust_cache,
            authorization=request.headers.get("Authorization"),
        )
    except Unauthorized:
        s.address_limits.check(client_address(request) or "-")  # failures count per address
        raise
    s.org_limits.check(caller.org)
    request[ORG] = caller.org
    scope.org, scope.role = caller.org, caller.role_text or None
    headers = request.headers
    scope.user = parse_user(headers.get(USER_HEADER))
    scope.purpose = parse_purpose(headers.get(PURPOSE_HEADER), required=purpose)
    scope.purpose_text = parse_purpose_text(headers.get(PURPOSE_TEXT_HEADER))
    request[QUERY] = parse_query(request.query, query)
    return caller


def limit_address(request: web.Request) -> None:
    """What every route before login checks first: the rate per address, no query."""
    services(request).address_limits.check(client_address(request) or "-")
    parse_query(request.query, NONE)


async def body_of(request: web.Request, *, large: bool = False) -> object:
    limits = services(request).config.limits
    return await read_json(
        request,
        max_bytes=limits.max_body_bytes if large else limits.max_json_bytes,
        timeout=limits.body_timeout_ms / 1000,
    )


class _SignedPolicy(Protocol):
    def to_wire(self) -> dict[str, Any]: ...


class _Upload(Protocol):
    def __call__(
        self, store: Store, clock: Clock, scope: Scope, body: object, *, cache: Any
    ) -> Awaitable[int]: ...


def policy_routes(
    path: str,
    object_type: str,
    held: Callable[[Store], Awaitable[_SignedPolicy | None]],
    upload: _Upload,
) -> list[web.RouteDef]:
    """GET and PUT of an authority-signed policy at ``path`` (the witness and retention
    policies). Reading is public and not audited: the policy is signed and no access to
    data. Anyone may relay a new one, since the root's signature is what counts; the
    upload is audited as a ``create`` on ``object_type``."""

    async def get_policy(request: web.Request) -> web.Response:
        s = services(request)
        limit_address(request)
        policy = await held(s.store)
        return render({"policy": None if policy is None else policy.to_wire()})

    async def put_policy(request: web.Request) -> web.Response:
        s = services(request)
        limit_address(request)
        async with audited(request, "create", object_type) as scope:
            body = await body_of(request)
            number = await upload(s.store, s.clock, scope, body, cache=s.trust_cache)
        return render({"number": number})

    return [web.get(path, get_policy, allow_head=False), web.put(path, put_policy)]
