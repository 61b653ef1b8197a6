"""The HTTP adapter: each handler authenticates, parses, calls one use-case, renders.

The API is specified in ``docs/protocol.md``. Every route that
touches a message or the directory runs inside :func:`hub.audit.audited`,
so a request that is refused (authentication, body, or a use-case check)
leaves exactly one ``denied`` audit entry, and an allowed one leaves the entry
its use-case committed with the action.
"""

from __future__ import annotations

import ipaddress
import json
import re
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from hub import audit, auth, directory, relay
from hub.audit import Scope
from hub.config import Clock, HubConfig, IPAddress, Networks, Rng, unmapped
from hub.errors import Malformed, NotFound, Unauthorized, Unavailable
from hub.notify import Notifier
from hub.problems import ORG, REQUEST_ID, read_json
from hub.query import INTEGER, NONE, Spec, parse_query
from hub.ratelimit import TokenBucket
from hub.store import InboxItem, SentItem, Store
from hub.tokens import TokenService
from hub.treeheads import HeadSigner

if TYPE_CHECKING:
    from hub.checkpoints import WitnessSubmitter
    from hub.escalation import Escalator
from protocol.auditlog import MAX_PURPOSE_TEXT_CHARS, PURPOSES, check_purpose_text, check_user
from protocol.encoding import b64e
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
    async with audit.audited(s.store, s.clock, scope):
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


# -- authentication and hub -------------------------------------------------------------


async def post_challenge(request: web.Request) -> web.Response:
    s = services(request)
    limit_address(request)
    body = await body_of(request)
    challenge = await auth.issue_challenge(s.store, s.clock, s.config, body=body, rng=s.rng)
    return render({"challenge": challenge.challenge, "expires": challenge.expires})


async def post_token(request: web.Request) -> web.Response:
    s = services(request)
    limit_address(request)
    async with audited(request, "login", "auth") as scope:
        body = await body_of(request)
        token = await auth.issue_token(
            s.store,
            s.clock,
            s.config,
            scope,
            tokens=s.tokens,
            cache=s.trust_cache,
            body=body,
            rng=s.rng,
        )
    return render(
        {"access_token": token.access_token, "token_type": "Bearer", "expires_in": token.expires_in}
    )


async def get_hub(request: web.Request) -> web.Response:
    s = services(request)
    limit_address(request)
    der = s.hub_certificate_der
    return render(
        {
            "network": s.config.network,
            "audience": s.config.audience,
            "issuer": s.config.issuer,
            "certificate": None if der is None else b64e(der),
            "limits": {
                "max_body_bytes": s.config.limits.max_body_bytes,
                "max_inbox_limit": s.config.limits.max_inbox_limit,
            },
        }
    )


# -- directory --------------------------------------------------------------------------


async def post_certificate(request: web.Request) -> web.Response:
    s = services(request)
    limit_address(request)
    async with audited(request, "create", "directory") as scope:
        body = await body_of(request)
        held = await directory.upload_certificate(
            s.store, s.clock, s.config, scope, body, cache=s.trust_cache
        )
    return render(
        {"org": held.org, "fingerprint": held.fingerprint, "roles": sorted(held.roles)},
        status=201 if held.created else 200,
    )


async def get_orgs(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "list", "directory") as scope:
        await authenticate(request, scope)
        listings = await directory.list_organisations(
            s.store, s.clock, s.config, scope, cache=s.trust_cache
        )
    return render(
        {
            "orgs": [
                {
                    "org": item.summary.org,
                    "roles": sorted(item.summary.roles),
                    "type": item.summary.org_type,
                    "certificate": item.summary.fingerprint,
                    "bundle": item.summary.bundle,
                    "revoked": item.revoked,
                }
                for item in listings
            ]
        }
    )


async def get_org(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "read", "directory") as scope:
        await authenticate(request, scope)
        entry = await directory.fetch_organisation(
            s.store, s.clock, s.config, scope, request.match_info["org"]
        )
    bundle = None if entry.bundle is None else entry.bundle.to_wire()
    return render({"org": entry.org, "certificate": b64e(entry.certificate), "bundle": bundle})


async def put_bundle(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "create", "directory") as scope:
        caller = await authenticate(request, scope)
        body = await body_of(request)
        fp = await directory.upload_bundle(
            s.store,
            s.clock,
            s.config,
            scope,
            caller=caller.org,
            org_text=request.match_info["org"],
            body=body,
            cache=s.trust_cache,
        )
    return render({"fingerprint": fp})


async def get_bundle(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "read", "directory") as scope:
        await authenticate(request, scope)
        bundle = await directory.fetch_bundle(
            s.store, s.clock, s.config, scope, request.match_info["fingerprint"]
        )
    return render(bundle.to_wire())


async def get_crl(request: web.Request) -> web.Response:
    s = services(request)
    limit_address(request)
    async with audited(request, "read", "directory") as scope:
        der = await directory.fetch_crl(s.store, s.clock, scope)
    return render({"crl": None if der is None else b64e(der)})


async def put_crl(request: web.Request) -> web.Response:
    s = services(request)
    limit_address(request)
    async with audited(request, "create", "directory") as scope:
        body = await body_of(request)
        number = await directory.upload_crl(
            s.store, s.clock, s.config, scope, body, cache=s.trust_cache
        )
    return render({"number": number})


async def post_linking_key(request: web.Request) -> web.Response:
    s = services(request)
    limit_address(request)
    async with audited(request, "create", "directory") as scope:
        body = await body_of(request)
        created = await directory.upload_linking_key(
            s.store, s.clock, s.config, scope, body, cache=s.trust_cache
        )
    return render({"org": scope.object_ids[0]}, status=201 if created else 200)


async def get_linking_keys(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "list", "directory") as scope:
        caller = await authenticate(request, scope)
        keys = await directory.list_linking_keys(s.store, s.clock, scope, caller=caller.org)
    return render({"linking_keys": [key.to_wire() for key in keys]})


async def post_oprf_key(request: web.Request) -> web.Response:
    s = services(request)
    limit_address(request)
    async with audited(request, "create", "directory") as scope:
        body = await body_of(request)
        created = await directory.upload_oprf_key(
            s.store, s.clock, s.config, scope, body, cache=s.trust_cache
        )
    return render({}, status=201 if created else 200)


async def get_oprf_keys(request: web.Request) -> web.Response:
    s = services(request)
    limit_address(request)
    async with audited(request, "read", "directory") as scope:
        statements = await directory.list_oprf_keys(s.store, s.clock, scope)
    return render({"oprf_keys": [statement.to_wire() for statement in statements]})


async def post_retirement(request: web.Request) -> web.Response:
    s = services(request)
    limit_address(request)
    async with audited(request, "create", "directory") as scope:
        body = await body_of(request)
        created = await directory.upload_retirement(
            s.store, s.clock, s.config, scope, body, cache=s.trust_cache
        )
    return render({}, status=201 if created else 200)


async def get_retirements(request: web.Request) -> web.Response:
    s = services(request)
    limit_address(request)
    async with audited(request, "read", "directory") as scope:
        retirements = await directory.list_retirements(s.store, s.clock, scope)
    return render({"retired_linking_keys": [r.to_wire() for r in retirements]})


# -- relay ------------------------------------------------------------------------------


async def post_message(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "create", "message") as scope:
        caller = await authenticate(request, scope)
        body = await body_of(request, large=True)
        accepted = await relay.send_message(
            s.store,
            s.clock,
            s.config,
            scope,
            caller=caller.org,
            cache=s.trust_cache,
            body=body,
            rng=s.rng,
        )
    return render(
        {"id": accepted.id, "accepted": accepted.accepted},
        status=201 if accepted.created else 200,
    )


def _inbox_item(item: InboxItem) -> dict[str, Any]:
    return {"cursor": item.cursor, "envelope": item.envelope, "acknowledged": item.acknowledged}


async def get_inbox(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "list", "inbox") as scope:
        caller = await authenticate(request, scope, purpose=True, query=INBOX_QUERY)
        page = await relay.read_inbox(
            s.store,
            s.clock,
            s.config,
            scope,
            caller=caller.org,
            after=query_of(request).get("after"),
            limit=query_of(request).get("limit"),
        )
    body: dict[str, Any] = {
        "messages": [_inbox_item(item) for item in page.items],
        "next": page.next,
    }
    if page.after:
        body["at"] = {"cursor": page.after, "id": page.at}
    return render(body)


def _sent_item(item: SentItem) -> dict[str, Any]:
    return {
        "cursor": item.cursor,
        "id": item.id,
        "kind": item.kind,
        "accepted": item.accepted,
        "deliveries": [
            {"org": d.recipient, "acknowledged": d.acknowledged} for d in item.deliveries
        ],
    }


async def get_sent(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "list", "message") as scope:
        caller = await authenticate(request, scope, query=INBOX_QUERY)  # same paging
        page = await relay.read_sent(
            s.store,
            s.clock,
            s.config,
            scope,
            caller=caller.org,
            after=query_of(request).get("after"),
            limit=query_of(request).get("limit"),
        )
    return render({"messages": [_sent_item(item) for item in page.items], "next": page.next})


async def get_message(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "read", "message") as scope:
        caller = await authenticate(request, scope, purpose=True)
        view = await relay.fetch_message(
            s.store, s.clock, scope, caller=caller.org, message_id=request.match_info["id"]
        )
    return render({"cursor": view.cursor, "envelope": view.envelope})


async def post_ack(request: web.Request) -> web.Response:
    s = services(request)
    async with audited(request, "acknowledge", "message") as scope:
        caller = await authenticate(request, scope)
        await relay.acknowledge(
            s.store,
            s.clock,
            scope,
            caller=caller.org,
            message_id=request.match_info["id"],
        )
    return web.Response(status=204, headers={"Cache-Control": "no-store"})


# -- operations -------------------------------------------------------------------------


async def get_healthz(request: web.Request) -> web.Response:
    parse_query(request.query, NONE)
    return render({"status": "ok"})


async def get_readyz(request: web.Request) -> web.Response:
    parse_query(request.query, NONE)
    if not await services(request).store.ready():
        raise Unavailable("the database is not reachable or not migrated")
    return render({"status": "ok"})


async def get_openapi(request: web.Request) -> web.Response:
    limit_address(request)
    document = services(request).openapi
    if document is None:
        raise NotFound()
    return web.Response(body=document, content_type=JSON)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_routes(app: web.Application, *, websocket: Handler) -> None:
    routes = [
        web.post("/v1/auth/challenge", post_challenge),
        web.post("/v1/auth/token", post_token),
        web.get("/v1/hub", get_hub, allow_head=False),
        web.post("/v1/directory/certificates", post_certificate),
        web.get("/v1/directory/orgs", get_orgs, allow_head=False),
        web.get("/v1/directory/orgs/{org}", get_org, allow_head=False),
        web.put("/v1/directory/orgs/{org}/bundle", put_bundle),
        web.get("/v1/directory/bundles/{fingerprint}", get_bundle, allow_head=False),
        web.get("/v1/directory/crl", get_crl, allow_head=False),
        web.put("/v1/directory/crl", put_crl),
        web.post("/v1/directory/linking-keys", post_linking_key),
        web.get("/v1/directory/linking-keys", get_linking_keys, allow_head=False),
        web.post("/v1/directory/oprf-keys", post_oprf_key),
        web.get("/v1/directory/oprf-keys", get_oprf_keys, allow_head=False),
        web.post("/v1/directory/retired-linking-keys", post_retirement),
        web.get("/v1/directory/retired-linking-keys", get_retirements, allow_head=False),
        web.post("/v1/messages", post_message),
        web.get("/v1/inbox", get_inbox, allow_head=False),
        web.get("/v1/sent", get_sent, allow_head=False),
        web.get("/v1/messages/{id}", get_message, allow_head=False),
        web.post("/v1/messages/{id}/ack", post_ack),
        web.get("/v1/ws", websocket, allow_head=False),
        web.get("/healthz", get_healthz, allow_head=False),
        web.get("/readyz", get_readyz, allow_head=False),
        web.get("/v1/openapi.json", get_openapi, allow_head=False),
    ]
    app.add_routes(routes)
