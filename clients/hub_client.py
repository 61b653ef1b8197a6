"""The hub's HTTP API (docs/protocol.md) as async methods.

Open it with ``async with``; it reaches the hub through a transport
(:mod:`clients.transport`: aiohttp with explicit timeouts, or one a test swaps in).
The client:

* authenticates by challenge-response with the organisation's signing key,
  caches the access token until 60 s before it expires, and fetches a new one
  once when the hub answers 401;
* retries connection errors, 429 (honouring ``Retry-After``), 502, 503 and 504
  up to ``attempts`` times with bounded exponential backoff. ``send`` posts the
  very same envelope again, which is safe: the hub is idempotent on message id;
* turns every other non-2xx answer into ``HubProblem`` and a hub that cannot be
  reached into ``HubUnreachable``;
* reads every response with a size bound and parses it with ``loads_strict``;
* says who and why on every request: ``Schakel-User`` (the organisation's own user
  id, required by the hub on every authenticated request) and, where set,
  ``Schakel-Purpose`` with ``Schakel-Purpose-Text`` (percent-encoded UTF-8). Requests
  that read case data (the inbox, a message, the access log) refuse to go out
  without a purpose. A service acting for several people (the desk) names the
  person per task with :meth:`HubClient.acting_for`, which overrides both for every
  request made inside it, in that task only (a ``contextvars`` variable);

Nothing the hub returns is trusted: certificates, bundles and envelopes come
back parsed but unverified; :mod:`clients.directory` and :mod:`clients.inbox` verify
them, and :mod:`clients.logwatch` the access log's heads. The
coordinator's case answers are parsed, every field checked, by :mod:`clients.caseanswers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ipaddress
import itertools
import json
import re
import time
import urllib.parse
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clients.caseanswers import (
    case_detail,
    case_page,
    case_pair,
    case_query,
    event_page,
    is_int,
    page_limit,
    referral_list,
)
from clients.errors import (
    CaseNotFound,
    ClientError,
    HubProblem,
    HubUnreachable,
    MalformedAnswer,
    VerificationFailed,
)
from clients.transport import (
    AiohttpTransport,
    AnswerTooLarge,
    Request,
    Transport,
    TransportFailed,
    WebSocketRefused,
)
from protocol.auditlog import PURPOSES, AuditEntry, TreeHead, check_purpose_text
from protocol.cases import (
    EVENT_KINDS,
    MAX_PAGE,
    MAX_SPLIT,
    CaseDetail,
    CasePage,
    EventPage,
    OpenReferral,
)
from protocol.certificate import MAX_CERT_BYTES, MAX_CRL_BYTES, MAX_TIME
from protocol.challenge import auth_message
from protocol.encoding import b64d, b64e, loads_strict
from protocol.envelope import Envelope
from protocol.errors import ProtocolError
from protocol.keybundle import KeyBundle
from protocol.linkingkey import SealedLinkingKey
from protocol.note import MAX_NOTE_BYTES, NoteSignature
from protocol.oprfkeys import OprfKeyStatement
from protocol.retention import ErasureReport, RetentionPolicy, parse_deleted
from protocol.retirement import Retirement
from protocol.types import (
    CaseRef,
    MessageId,
    OrgId,
    parse_case_ref,
    parse_fingerprint,
    parse_message_id,
    parse_org_id,
)
from protocol.witnesspolicy import WitnessPolicy

TOKEN_MARGIN = 60  # seconds before expiry at which a cached token is replaced
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
MAX_RETRY_AFTER = 30.0
MAX_BACKOFF = 8.0
MAX_EXPORT_LINE = 256 * 1024
MAX_OPRF_STATEMENTS = 64  # key statements a hub may serve: two per pseudonym version
_USER = re.compile(r"[\x21-\x7e]{1,64}")
AUDIT_FILTERS = ("org", "user", "action", "object", "pseudonym", "since", "until")

Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")

# (client, user, purpose): the person a service acts for in the current task; acting_for.
_ACTING: contextvars.ContextVar[tuple[HubClient, str, Purpose | None] | None] = (
    contextvars.ContextVar("schakel_hub_client_acting", default=None)
)


@dataclass(frozen=True, slots=True)
class HubInfo:
    network: str
    audience: str
    issuer: str
    certificate: bytes | None
    limits: dict[str, int]


@dataclass(frozen=True, slots=True)
class InboxItem:
    """One inbox entry; ``envelope`` is the wire form as served, not yet parsed or verified."""

    cursor: int
    envelope: Any
    acknowledged: bool


@dataclass(frozen=True, slots=True)
class InboxAt:
    """Which of our messages the hub holds at the cursor asked from (``id`` None: none)."""

    cursor: int
    id: MessageId | None


@dataclass(frozen=True, slots=True)
class InboxPage:
    messages: tuple[InboxItem, ...]
    next: int
    at: InboxAt | None = None  # present when asked from a cursor above 0


@dataclass(frozen=True, slots=True)
class SentDelivery:
    org: OrgId
    acknowledged: bool


@dataclass(frozen=True, slots=True)
class SentItem:
    """A message we sent as the hub holds it: the deliveries it keeps (no content)."""

    cursor: int
    id: MessageId
    kind: str
    accepted: int
    deliveries: tuple[SentDelivery, ...]
    deleted: tuple[int, str] | None = None  # (when, why) the hub deleted the envelope


@dataclass(frozen=True, slots=True)
class SentPage:
    messages: tuple[SentItem, ...]
    next: int


@dataclass(frozen=True, slots=True)
class Notice:
    """A WebSocket notice that a message arrived; fetch it through the inbox."""

    cursor: int
    id: MessageId


@dataclass(frozen=True, slots=True)
class EventNotice:
    """A WebSocket notice that event ``cursor`` entered this organisation's feed.

    ``cursor`` is the event's id (a sequence of its own, not an inbox cursor): read the
    event with :meth:`HubClient.events`.
    """

    cursor: int
    kind: str


@dataclass(frozen=True, slots=True)
class Purpose:
    """Why a request is made: a code from ``protocol.auditlog.PURPOSES`` and free text."""

    code: str
    text: str | None = None

    def __post_init__(self) -> None:
        if self.code not in PURPOSES:
            raise ClientError(f"purpose must be one of {', '.join(PURPOSES)}")
        if self.text is not None:
            try:
                check_purpose_text(self.text)
            except ProtocolError as exc:
                raise ClientError(f"purpose text: {exc}") from exc

    def headers(self) -> dict[str, str]:
        headers = {"Schakel-Purpose": self.code}
        if self.text is not None:
            headers["Schakel-Purpose-Text"] = urllib.parse.quote(self.text, safe="")
        return headers


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """``GET /v1/audit/entries/{index}/proof`` as served (unverified)."""

    index: int
    size: int
    leaf: bytes
    proof: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class EntryPage:
    entries: tuple[AuditEntry, ...]
    next: int | None
    proofs: tuple[tuple[bytes, ...], ...] | None = None  # asked with ``size``: one per entry


class _Retry(Exception):
    """Internal: this attempt may be repeated after ``delay`` seconds (None: backoff)."""

    def __init__(self, cause: ClientError, delay: float | None = None) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.delay = delay


class HubClient:
    """An async client of one hub, acting for one organisation (or anonymously)."""

    def __init__(
        self,
        base_url: str,
        *,
        network: str,
        org: str | None = None,
        signing_key: Ed25519PrivateKey | None = None,
        user: str | None = None,
        purpose: Purpose | None = None,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        ssl: Any = None,
        sleep: Sleep = asyncio.sleep,
        attempts: int = 3,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        transport: Transport | None = None,
    ) -> None:
        """``transport`` replaces the aiohttp one (then ``timeout`` and ``ssl`` are its own)."""
        if user is not None and not _USER.fullmatch(user):
            raise ClientError("user id must be 1-64 printable ASCII characters without spaces")
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.base_url = _checked_base_url(base_url)
        self.network = network
        self.org = org
        self._key = signing_key
        self._user = user
        self.purpose = purpose
        self._transport = transport or AiohttpTransport(timeout=timeout, ssl=ssl)
        self._clock = clock
        self._sleep = sleep
        self._attempts = attempts
        self._max_bytes = max_response_bytes
        self._open = False
        self._token: tuple[str, float] | None = None
        self._info: HubInfo | None = None

    def __repr__(self) -> str:
        return f"HubClient({self.base_url!r}, network={self.network!r}, org={self.org!r})"

    async def __aenter__(self) -> HubClient:
        await self._transport.open()
        self._open = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._open:
            self._open = False
            await self._transport.close()

    # -- transport ---------------------------------------------------------------------

    @property
    def user(self) -> str | None:
        acting = self._acting()
        return self._user if acting is None else acting[0]

    def _acting(self) -> tuple[str, Purpose | None] | None:
        acting = _ACTING.get()
        return None if acting is None or acting[0] is not self else (acting[1], acting[2])

    @property
    def acting(self) -> tuple[str, Purpose | None] | None:
        """The person and purpose :meth:`acting_for` names in this task now, or None."""
        return self._acting()

    @contextlib.contextmanager
    def acting_for(self, user: str, purpose: Purpose | None) -> Iterator[None]:
        """Every request made inside, in this task, carries ``user`` and ``purpose``.

        For a service that acts for several people over one connection and token (the
        desk): the hub's access log then names the person, not the service.
        """
        if not _USER.fullmatch(user):
            raise ClientError("user id must be 1-64 printable ASCII characters without spaces")
        reset = _ACTING.set((self, user, purpose))
        try:
            yield
        finally:
            _ACTING.reset(reset)

    def _headers(self, token: str | None, purpose: Purpose | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        user = self.user
        acting = self._acting()
        if acting is not None and purpose is None:
            purpose = acting[1]
        if token is not None:
            if user is None:
                raise ClientError(
                    "requests to the hub need your user id (--user or SCHAKEL_USER): "
                    "the hub records it in its access log"
                )
            headers["Authorization"] = f"Bearer {token}"
        if user is not None:
            headers["Schakel-User"] = user
        purpose = purpose or self.purpose
        if purpose is not None:
            headers.update(purpose.headers())
        return headers

    def _purpose(self, purpose: Purpose | None) -> Purpose:
        """The purpose of a request that reads case data; refuse to send one without."""
        acting = self._acting()
        chosen = purpose or (acting[1] if acting is not None else None) or self.purpose
        if chosen is None:
            raise ClientError(
                "this request reads case data and needs a purpose of use "
                f"(--purpose or SCHAKEL_PURPOSE; one of {', '.join(PURPOSES)})"
            )
        return chosen

    def _request(
        self, method: str, path: str, token: str | None, purpose: Purpose | None, body: Any = None
    ) -> Request:
        if not self._open:
            raise ClientError("HubClient is not open: use 'async with HubClient(...)'")
        headers = self._headers(token, purpose)
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json"
        return Request(method, self.base_url + path, headers, data)

    async def _exchange(
        self, method: str, path: str, body: Any, token: str | None, purpose: Purpose | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        """One HTTP request; (status, parsed JSON or None, headers)."""
        request = self._request(method, path, token, purpose, body)
        try:
            response = await self._transport.request(request, max_bytes=self._max_bytes)
        except AnswerTooLarge as exc:
            raise ClientError("hub response is too large") from exc
        except TransportFailed as exc:
            if not exc.retry:
                raise HubUnreachable(f"hub {self.base_url} unusable: {exc}") from exc
            raise _Retry(HubUnreachable(f"hub {self.base_url} unreachable: {exc}")) from exc
        status = response.status
        return (
            status,
            self._parse(response.body, strict=200 <= status < 300),
            dict(response.headers),
        )

    def _parse(self, data: bytes, *, strict: bool) -> Any:
        """Parse a body; an error page that is not JSON (a proxy's 502) is just None."""
        if not data:
            return None
        try:
            return loads_strict(data, max_bytes=self._max_bytes)
        except ProtocolError as exc:
            if not strict:
                return None
            raise ClientError(f"hub answered with malformed JSON ({exc})") from exc

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        auth: bool = True,
        purpose: Purpose | None = None,
    ) -> tuple[int, Any]:
        """A request with authentication, one token refresh on 401 and bounded retries."""
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            try:
                token = await self._ensure_token() if auth else None
                status, parsed, headers = await self._exchange(method, path, body, token, purpose)
                if status == 401 and auth and not refreshed:
                    refreshed, self._token = True, None
                    attempt -= 1
                    continue
                return self._check(status, parsed, headers)
            except _Retry as retry:
                if attempt >= self._attempts:
                    raise retry.cause from retry
                delay = retry.delay if retry.delay is not None else _backoff(attempt)
                await self._sleep(delay)

    async def _retried(self, step: Callable[[], Awaitable[T]]) -> T:
        """``step`` with the bounded retries of :meth:`_call` (a ``_Retry`` never escapes)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await step()
            except _Retry as retry:
                if attempt >= self._attempts:
                    raise retry.cause from retry
                delay = retry.delay if retry.delay is not None else _backoff(attempt)
                await self._sleep(delay)

    def _check(self, status: int, parsed: Any, headers: dict[str, str]) -> tuple[int, Any]:
        if 200 <= status < 300:
            return status, parsed
        problem = HubProblem.from_document(status, parsed)
        if status in RETRY_STATUSES:
            raise _Retry(problem, _retry_after(headers.get("retry-after")))
        raise problem

    # -- authentication ----------------------------------------------------------------

    async def _ensure_token(self) -> str:
        if self._token is not None and self._clock() < self._token[1] - TOKEN_MARGIN:
            return self._token[0]
        if self.org is None or self._key is None:
            raise ClientError("this request needs an organisation and its signing key")
        info = await self._hub_info_once()
        status, body, headers = await self._exchange(
            "POST", "/v1/auth/challenge", {"org": self.org}, None
        )
        _, body = self._check(status, body, headers)
        challenge = b64d(_field(body, "challenge", str), max_len=64)
        signed = auth_message(self.network, self.org, challenge, info.audience)
        request = {
            "org": self.org,
            "challenge": b64e(challenge),
            "signature": b64e(self._key.sign(signed)),
        }
        issued_at = self._clock()
        status, body, headers = await self._exchange("POST", "/v1/auth/token", request, None)
        _, body = self._check(status, body, headers)
        token: str = _field(body, "access_token", str)
        lifetime = _field(body, "expires_in", int)
        self._token = (token, issued_at + lifetime)
        return token

    async def _hub_info_once(self) -> HubInfo:
        if self._info is None:
            status, body, headers = await self._exchange("GET", "/v1/hub", None, None)
            _, body = self._check(status, body, headers)
            self._info = _hub_info(body)
            if self._info.network != self.network:
                raise VerificationFailed("hub information", reason="hub serves another network")
        return self._info

    # -- public API: hub and directory -------------------------------------------------

    async def hub_info(self) -> HubInfo:
        _, body = await self._call("GET", "/v1/hub", auth=False)
        info = _hub_info(body)
        if info.network != self.network:
            raise VerificationFailed("hub information", reason="hub serves another network")
        self._info = info
        return info

    async def publish_certificate(self, der: bytes) -> dict[str, Any]:
        """Publish a certificate; returns ``{"org", "fingerprint", "roles", "created"}``."""
        status, body = await self._call(
            "POST", "/v1/directory/certificates", {"certificate": b64e(der)}, auth=False
        )
        result = dict(_object(body))
        result["created"] = status == 201
        return result

    async def list_orgs(self) -> list[dict[str, Any]]:
        """The directory's listing (``org``, ``roles``, ...) as the hub serves it: unverified,
        to offer recipients; each recipient is verified when a message is sealed to it."""
        _, body = await self._call("GET", "/v1/directory/orgs")
        return list(_field(body, "orgs", list))

    async def get_org(self, org: str) -> tuple[bytes, KeyBundle | None]:
        """The certificate DER and current key bundle the hub holds for ``org`` (unverified)."""
        _, body = await self._call("GET", f"/v1/directory/orgs/{_checked(parse_org_id, org)}")
        if _field(body, "org", str) != org:
            raise VerificationFailed("directory entry", org, "hub answered for another org")
        der = _b64_field(body, "certificate", MAX_CERT_BYTES, "certificate", org)
        bundle = body.get("bundle")
        return der, None if bundle is None else _bundle(bundle, org)

    async def get_bundle(self, fingerprint: str) -> KeyBundle:
        fingerprint = _checked(parse_fingerprint, fingerprint)
        _, body = await self._call("GET", f"/v1/directory/bundles/{fingerprint}")
        bundle = _bundle(body, None)
        if bundle.fingerprint != fingerprint:
            raise VerificationFailed("key bundle", bundle.org, "fingerprint does not match")
        return bundle

    async def publish_bundle(self, bundle: KeyBundle) -> str:
        _, body = await self._call(
            "PUT", f"/v1/directory/orgs/{bundle.org}/bundle", bundle.to_wire()
        )
        return str(_field(body, "fingerprint", str))

    async def get_crl(self) -> bytes | None:
        _, body = await self._call("GET", "/v1/directory/crl", auth=False)
        if _object(body).get("crl") is None:
            return None
        return _b64_field(body, "crl", MAX_CRL_BYTES, "revocation list", None)

    async def put_crl(self, der: bytes) -> None:
        await self._call("PUT", "/v1/directory/crl", {"crl": b64e(der)}, auth=False)

    async def put_linking_key(self, sealed: SealedLinkingKey) -> bool:
        """Relay a sealed linking key; True if the hub did not hold it yet."""
        status, _ = await self._call(
            "POST", "/v1/directory/linking-keys", sealed.to_wire(), auth=False
        )
        return status == 201

    async def get_linking_keys(self) -> list[SealedLinkingKey]:
        _, body = await self._call("GET", "/v1/directory/linking-keys")
        try:
            return [SealedLinkingKey.from_wire(w) for w in _field(body, "linking_keys", list)]
        except ProtocolError as exc:
            raise VerificationFailed("sealed linking key", self.org, "malformed") from exc

    async def put_oprf_key(self, statement: OprfKeyStatement) -> bool:
        """Relay a pseudonymisation service's key statement; True if the hub took it as new."""
        status, _ = await self._call(
            "POST", "/v1/directory/oprf-keys", statement.to_wire(), auth=False
        )
        return status == 201

    async def get_oprf_keys(self) -> list[OprfKeyStatement]:
        """The key statements the hub serves, parsed (not yet verified: see key_set)."""
        _, body = await self._call("GET", "/v1/directory/oprf-keys", auth=False)
        items = _field(body, "oprf_keys", list)
        if len(items) > MAX_OPRF_STATEMENTS:
            raise VerificationFailed("OPRF key statements", None, "too many")
        try:
            return [OprfKeyStatement.from_wire(item) for item in items]
        except ProtocolError as exc:
            raise VerificationFailed("OPRF key statement", None, "malformed") from exc

    async def put_retirement(self, retirement: Retirement) -> bool:
        """Relay the retirement of a linking-key version; True if the hub took it as new."""
        status, _ = await self._call(
            "POST", "/v1/directory/retired-linking-keys", retirement.to_wire(), auth=False
        )
        return status == 201

    async def get_retirements(self) -> list[Retirement]:
        """The retirements the hub serves, parsed (each verified by the caller)."""
        _, body = await self._call("GET", "/v1/directory/retired-linking-keys", auth=False)
        items = _field(body, "retired_linking_keys", list)
        if len(items) > MAX_OPRF_STATEMENTS:
            raise VerificationFailed("linking-key retirements", None, "too many")
        try:
            return [Retirement.from_wire(item) for item in items]
        except ProtocolError as exc:
            raise VerificationFailed("linking-key retirement", None, "malformed") from exc

    # -- public API: relay -------------------------------------------------------------

    async def send(self, envelope: Envelope) -> tuple[MessageId, int, bool]:
        """Post an envelope; (id, accepted time, True if new). Retries post the same bytes."""
        wire = envelope.to_wire()  # built once: every retry posts these same bytes
        status, body = await self._call("POST", "/v1/messages", wire)
        message_id = _message_id(_field(body, "id", str))
        if message_id != envelope.header.id:
            raise ClientError("hub acknowledged another message id")
        return message_id, _field(body, "accepted", int), status == 201

    async def inbox(
        self, after: int = 0, limit: int = 50, *, purpose: Purpose | None = None
    ) -> InboxPage:
        _, body = await self._call(
            "GET",
            f"/v1/inbox?after={int(after)}&limit={int(limit)}",
            purpose=self._purpose(purpose),
        )
        items = []
        for entry in _field(body, "messages", list):
            items.append(
                InboxItem(
                    cursor=_field(entry, "cursor", int),
                    envelope=_object(entry).get("envelope"),
                    acknowledged=_field(entry, "acknowledged", bool),
                )
            )
        at = _inbox_at(body, int(after))
        return InboxPage(tuple(items), _field(body, "next", int), at)

    async def sent(self, after: int = 0, limit: int = 50) -> SentPage:
        """One page of the messages we sent (``GET /v1/sent``), with their deliveries."""
        _, body = await self._call("GET", f"/v1/sent?after={int(after)}&limit={int(limit)}")
        items = []
        for entry in _field(body, "messages", list):
            deliveries = tuple(
                SentDelivery(
                    OrgId(_checked(parse_org_id, _field(d, "org", str))),
                    _field(d, "acknowledged", bool),
                )
                for d in _field(entry, "deliveries", list)
            )
            items.append(
                SentItem(
                    cursor=_field(entry, "cursor", int),
                    id=_message_id(_field(entry, "id", str)),
                    kind=_field(entry, "kind", str),
                    accepted=_field(entry, "accepted", int),
                    deliveries=deliveries,
                    deleted=_deleted(_object(entry).get("deleted")),
                )
            )
        next_cursor = _field(body, "next", int)
        if any(b.cursor <= a.cursor for a, b in itertools.pairwise(items)) or (
            items and (items[0].cursor <= after or next_cursor != items[-1].cursor)
        ):
            raise ClientError("hub answered with sent messages out of order")
        return SentPage(tuple(items), next_cursor)

    async def get_message(
        self, message_id: str, *, purpose: Purpose | None = None
    ) -> tuple[int | None, Any]:
        """(cursor or None, envelope wire form) of a message we sent or received."""
        _, body = await self._call(
            "GET", f"/v1/messages/{_message_id(message_id)}", purpose=self._purpose(purpose)
        )
        cursor = _object(body).get("cursor")
        if cursor is not None and not is_int(cursor):
            raise ClientError("hub answered with a malformed cursor")
        return cursor, body.get("envelope")

    async def ack(self, message_id: str) -> None:
        await self._call("POST", f"/v1/messages/{_message_id(message_id)}/ack")

    async def notifications(self, *, opened: bool = False) -> AsyncIterator[Notice | None]:
        """Message notices from the hub's WebSocket until it closes (events are skipped).

        With ``opened``, first ``None`` as soon as the socket is open: what arrives from
        then on is announced, so the caller reads what waits *now* and misses nothing.
        """
        async for notice in self._frames(events=False, opened=opened):
            if notice is None or isinstance(notice, Notice):
                yield notice

    async def live(self, *, opened: bool = False) -> AsyncIterator[Notice | EventNotice | None]:
        """Message notices and event notices, each as its own type, until the socket closes.

        ``opened`` as for :meth:`notifications`. Reconnecting is the caller's; a frame that
        is not well formed is skipped.
        """
        async for notice in self._frames(events=True, opened=opened):
            yield notice

    async def _frames(
        self, *, events: bool, opened: bool
    ) -> AsyncIterator[Notice | EventNotice | None]:
        for refreshed in (False, True):
            token = await self._retried(self._ensure_token)
            request = self._request("GET", "/v1/ws", token, None)
            try:
                async with self._transport.websocket(request) as frames:
                    if opened:
                        yield None
                    async for frame_text in frames:
                        notice = _notice(frame_text)
                        if notice is not None and (events or isinstance(notice, Notice)):
                            yield notice
                return
            except WebSocketRefused as exc:
                if exc.status == 401 and not refreshed:
                    self._token = None
                    continue
                raise HubProblem(
                    exc.status, "urn:schakel:problem:websocket", "WebSocket refused", str(exc)
                ) from exc
            except TransportFailed as exc:
                raise HubUnreachable(f"hub {self.base_url} unreachable: {exc}") from exc

    # -- public API: cases, referrals and events (coordinators) ------------------------

    async def cases(self, **filters: str | int | None) -> CasePage:
        """One page of live cases; filters ``state``, ``type``, ``since``, ``sort``,
        ``order``, ``offset``, ``limit`` (checked here before anything is sent)."""
        query = case_query(filters)
        body = await self._case_call("GET", f"/v1/cases{query}", "cases")
        return case_page(body, limit=int(filters.get("limit") or 50))

    async def case(self, ref: str) -> CaseDetail:
        """One case, its referrals and timeline; a merged reference gives the live case."""
        ref = _case_ref(ref)
        body = await self._case_call("GET", f"/v1/cases/{ref}", f"case {ref}")
        detail = case_detail(body)
        if ref not in (detail.summary.case, detail.merged_from):
            raise MalformedAnswer("case", "case", "is not the case asked for")
        return detail

    async def split(self, ref: str, message_ids: Iterable[str]) -> tuple[CaseRef, CaseRef]:
        """Move these messages to a new case, kept apart; (new case, the case split)."""
        ref = _case_ref(ref)
        ids = sorted({_message_id(m) for m in message_ids})
        if not 1 <= len(ids) <= MAX_SPLIT:
            raise ClientError(f"a split moves 1 to {MAX_SPLIT} messages")
        body = await self._case_call(
            "POST", f"/v1/cases/{ref}/split", f"case {ref}", {"messages": ids}
        )
        new, old = case_pair("split", body, "case", "from")
        if old != ref or new == ref:
            raise MalformedAnswer("split", "from", "is not the case split")
        return new, old

    async def merge(self, ref: str, other: str) -> tuple[CaseRef, CaseRef]:
        """Merge ``other`` into ``ref``; (the surviving case, the absorbed one)."""
        ref, other = _case_ref(ref), _case_ref(other)
        body = await self._case_call(
            "POST", f"/v1/cases/{ref}/merge", f"case {ref}", {"case": other}
        )
        if case_pair("merge", body, "case", "absorbed") != (ref, other):
            raise MalformedAnswer("merge", "case", "is not the merge asked for")
        return CaseRef(ref), CaseRef(other)

    async def unmerge(self, ref: str, other: str) -> tuple[CaseRef, CaseRef]:
        """Undo the newest merge of ``other`` into ``ref``; (the revived case, ``ref``)."""
        ref, other = _case_ref(ref), _case_ref(other)
        body = await self._case_call(
            "POST", f"/v1/cases/{ref}/unmerge", f"case {ref}", {"case": other}
        )
        if case_pair("unmerge", body, "case", "from") != (other, ref):
            raise MalformedAnswer("unmerge", "case", "is not the unmerge asked for")
        return CaseRef(other), CaseRef(ref)

    async def referrals(self, limit: int | None = None) -> tuple[OpenReferral, ...]:
        """Open referrals, overdue first (as the hub orders them)."""
        query = "" if limit is None else f"?limit={page_limit(limit)}"
        body = await self._case_call("GET", f"/v1/referrals{query}", "referrals")
        return referral_list(body, limit=limit or MAX_PAGE)

    async def events(self, after: int = 0, limit: int | None = None) -> EventPage:
        """This organisation's events with an id above ``after``, ascending."""
        if not is_int(after) or not 0 <= after <= MAX_TIME:
            raise ClientError("after must be an event id (an integer >= 0)")
        query = f"?after={after}" + ("" if limit is None else f"&limit={page_limit(limit)}")
        _, body = await self._call("GET", f"/v1/events{query}", purpose=self._purpose(None))
        return event_page(body, after=after, limit=limit or MAX_PAGE)

    async def _case_call(self, method: str, path: str, what: str, body: Any = None) -> Any:
        """A case route: a purpose is required, and 404 means no case or no coordinator."""
        try:
            _, answer = await self._call(method, path, body, purpose=self._purpose(None))
        except HubProblem as exc:
            if exc.status == 404:
                raise CaseNotFound(what) from None
            raise
        return answer

    # -- public API: the access log ----------------------------------------------------

    async def audit_head(self) -> TreeHead | None:
        """The newest signed tree head (parsed, not verified), or None before the first."""
        _, body = await self._call("GET", "/v1/audit/head")
        wire = _object(body).get("head", _MISSING)
        if wire is _MISSING:
            raise ClientError("hub answer lacks a 'head'")
        return None if wire is None else _tree_head(wire)

    async def sign_audit_head(self, *, purpose: Purpose | None = None) -> TreeHead:
        """Privacy officers: ask the hub to sign a head for its current size now."""
        _, body = await self._call("POST", "/v1/audit/head", purpose=self._purpose(purpose))
        return _tree_head(_object(body).get("head"))

    async def audit_head_at(self, size: int, *, purpose: Purpose | None = None) -> TreeHead:
        """The head the hub signed for ``size`` (parsed, not verified: LogWatch.check does)."""
        _, body = await self._call(
            "GET", f"/v1/audit/heads/{int(size)}", purpose=self._purpose(purpose)
        )
        return _tree_head(_object(body).get("head", body))

    async def audit_consistency(self, old_size: int, new_size: int) -> list[bytes]:
        """The consistency proof between two tree sizes, as served (unverified)."""
        _, body = await self._call(
            "GET", f"/v1/audit/consistency?from={int(old_size)}&to={int(new_size)}"
        )
        if _field(body, "from", int) != old_size or _field(body, "to", int) != new_size:
            raise ClientError("hub answered a consistency proof for other sizes")
        return _hashes(_field(body, "proof", list))

    async def audit_checkpoint(self, size: int | None = None) -> bytes | None:
        """The checkpoint note of the head of ``size`` (newest: None) with the cosignatures
        the hub holds, as served (unverified: clients.witnessing checks it)."""
        path = "/v1/audit/checkpoint" if size is None else f"/v1/audit/checkpoints/{int(size)}"
        _, body = await self._call("GET", path)
        note = _object(body).get("checkpoint", _MISSING)
        if note is None:
            return None
        if not isinstance(note, str) or len(note) > MAX_NOTE_BYTES:
            raise ClientError("hub answer lacks a 'checkpoint'")
        return note.encode("utf-8")

    async def post_cosignature(self, size: int, line: NoteSignature) -> bool:
        """Post our witness's cosignature of the head of ``size``; True if the hub kept it
        now, False if it held it already."""
        body = {"size": int(size), "cosignature": line.line()[:-1]}
        status, _ = await self._call("POST", "/v1/audit/cosignatures", body)
        return status == 201

    async def witness_policy(self) -> dict[str, Any] | None:
        """The witness policy the hub holds, as served (wire form, unverified), or None."""
        _, body = await self._call("GET", "/v1/audit/witness-policy", auth=False)
        policy = _object(body).get("policy", _MISSING)
        if policy is not None and not isinstance(policy, dict):
            raise ClientError("hub answer lacks a 'policy'")
        return policy

    async def put_witness_policy(self, policy: WitnessPolicy) -> int:
        """Relay the authority's witness policy; its number."""
        _, body = await self._call(
            "PUT", "/v1/audit/witness-policy", {"policy": policy.to_wire()}, auth=False
        )
        return int(_field(body, "number", int))

    async def retention_policy(self) -> dict[str, Any] | None:
        """The retention policy the hub holds, as served (wire form, unverified), or None."""
        _, body = await self._call("GET", "/v1/directory/retention-policy", auth=False)
        policy = _object(body).get("policy", _MISSING)
        if policy is not None and not isinstance(policy, dict):
            raise ClientError("hub answer lacks a 'policy'")
        return policy

    async def put_retention_policy(self, policy: RetentionPolicy) -> int:
        """Relay the authority's retention policy; its number."""
        _, body = await self._call(
            "PUT", "/v1/directory/retention-policy", {"policy": policy.to_wire()}, auth=False
        )
        return int(_field(body, "number", int))

    async def erase(
        self, pseudonyms: Sequence[str], *, purpose: Purpose | None = None
    ) -> ErasureReport:
        """Ask the hub to erase what it holds about the person of ``pseudonyms`` (network
        privacy officer); the hub's report of what it erased and kept."""
        _, body = await self._call(
            "POST",
            "/v1/audit/erasures",
            {"pseudonyms": sorted(pseudonyms)},
            purpose=self._purpose(purpose),
        )
        try:
            return ErasureReport.from_wire(body)
        except ProtocolError as exc:
            raise ClientError(f"hub answered a malformed erasure report: {exc}") from exc

    async def audit_entries(
        self,
        *,
        start: int | None = None,
        end: int | None = None,
        limit: int = 1000,
        size: int | None = None,
        purpose: Purpose | None = None,
        filters: Mapping[str, str | int | None] | None = None,
    ) -> EntryPage:
        """One page of visible entries, parsed and validated (not yet proven); with
        ``size``, entries below it, each with its inclusion proof against the signed head
        of that size (checking them is the caller's: :mod:`clients.logproofs`)."""
        query = _audit_query(
            {"start": start, "end": end, "limit": limit, "size": size, **(filters or {})}
        )
        _, body = await self._call(
            "GET", f"/v1/audit/entries{query}", purpose=self._purpose(purpose)
        )
        entries = tuple(_entry(wire) for wire in _field(body, "entries", list))
        after = _object(body).get("next")
        if after is not None and not is_int(after):
            raise ClientError("hub answer lacks a valid 'next'")
        if size is None:
            return EntryPage(entries, after)
        proofs = _field(body, "proofs", list)
        if len(proofs) != len(entries) or not all(isinstance(p, list) for p in proofs):
            raise ClientError("hub answer lacks a valid 'proofs': one list per entry")
        return EntryPage(entries, after, tuple(tuple(_hashes(p)) for p in proofs))

    async def audit_inclusion(
        self, index: int, size: int | None = None, *, purpose: Purpose | None = None
    ) -> InclusionProof:
        query = "" if size is None else f"?size={int(size)}"
        _, body = await self._call(
            "GET", f"/v1/audit/entries/{int(index)}/proof{query}", purpose=self._purpose(purpose)
        )
        leaf = _hashes([_object(body).get("leaf")])[0]
        return InclusionProof(
            _field(body, "index", int),
            _field(body, "size", int),
            leaf,
            tuple(_hashes(_field(body, "proof", list))),
        )

    async def audit_export(
        self,
        *,
        size: int | None = None,
        proofs: bool = True,
        purpose: Purpose | None = None,
        filters: Mapping[str, str | int | None] | None = None,
    ) -> AsyncIterator[bytes]:
        """The NDJSON export, line by line (each bounded), exactly as the hub streams it."""
        purpose = self._purpose(purpose)
        proof_flag = None if proofs else "false"
        query = _audit_query({"size": size, "proofs": proof_flag, **(filters or {})})
        for refreshed in (False, True):
            token = await self._ensure_token()
            request = self._request("GET", f"/v1/audit/export{query}", token, purpose)
            try:
                async with self._transport.stream(request, max_line=MAX_EXPORT_LINE) as answer:
                    if answer.status == 401 and not refreshed:
                        self._token = None
                        continue
                    if answer.status != 200:
                        data = b"".join([line async for line in answer.lines])[: self._max_bytes]
                        raise HubProblem.from_document(
                            answer.status, self._parse(data, strict=False)
                        )
                    async for line in answer.lines:
                        yield line
                    return
            except TransportFailed as exc:
                if not exc.retry:  # the stream itself is wrong (a line too long)
                    raise ClientError(f"hub export unusable: {exc}") from exc
                raise HubUnreachable(f"hub {self.base_url} unreachable: {exc}") from exc


# -- parsing helpers -------------------------------------------------------------------


def _checked_base_url(base_url: str) -> str:
    """The hub's base URL: https, or http only to this machine (tokens travel in headers)."""
    url = urllib.parse.urlsplit(base_url)
    if url.scheme == "https" and url.hostname:
        return base_url.rstrip("/")
    if url.scheme == "http" and url.hostname is not None and _is_loopback(url.hostname):
        return base_url.rstrip("/")
    raise ClientError(
        f"hub URL {base_url!r}: use https:// (plain http is only allowed to this machine, "
        "as in the demo)"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _checked(parse: Callable[[object], str], value: object) -> str:
    try:
        return parse(value)
    except ProtocolError as exc:
        raise ClientError(str(exc)) from exc


def _deleted(value: object) -> tuple[int, str] | None:
    try:
        return parse_deleted(value)
    except ProtocolError as exc:
        raise ClientError(f"hub answer: {exc}") from exc


def _message_id(value: object) -> MessageId:
    return MessageId(_checked(parse_message_id, value))


def _case_ref(value: object) -> CaseRef:
    return CaseRef(_checked(parse_case_ref, value))


def _backoff(attempt: int) -> float:
    return float(min(MAX_BACKOFF, 0.5 * 2 ** (attempt - 1)))


def _retry_after(value: str | None) -> float | None:
    if value is None or not value.isdigit():
        return None
    return min(MAX_RETRY_AFTER, float(value))


def _inbox_at(body: Any, after: int) -> InboxAt | None:
    """The inbox answer's ``at``: required when asked from a cursor above 0, for it."""
    at = _object(body).get("at")
    if after == 0:
        if at is not None:
            raise ClientError("hub answer has an 'at' for an inbox read from its start")
        return None
    if not isinstance(at, dict):
        # A hub that says nothing about the cursor asked from could hide that it went back.
        raise MalformedAnswer("inbox", "at", "missing: the message at the cursor read from")
    if _field(at, "cursor", int) != after:
        raise MalformedAnswer("inbox", "at.cursor", "not the cursor read from")
    found = at.get("id")
    return InboxAt(after, None if found is None else _message_id(found))


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ClientError("hub answered with an unexpected document")
    return body


def _field(body: Any, name: str, kind: type) -> Any:
    value = _object(body).get(name)
    ok = is_int(value) if kind is int else isinstance(value, kind)
    if not ok:
        raise ClientError(f"hub answer lacks a valid {name!r}")
    return value


def _b64_field(body: Any, name: str, limit: int, what: str, org: str | None) -> bytes:
    try:
        return b64d(_object(body).get(name), max_len=limit)
    except ProtocolError as exc:
        raise VerificationFailed(what, org, "malformed") from exc


def _bundle(wire: Any, org: str | None) -> KeyBundle:
    try:
        bundle = KeyBundle.from_wire(wire)
    except ProtocolError as exc:
        raise VerificationFailed("key bundle", org, "malformed") from exc
    if org is not None and bundle.org != org:
        raise VerificationFailed("key bundle", org, "belongs to another organisation")
    return bundle


def _hub_info(body: Any) -> HubInfo:
    certificate = _object(body).get("certificate")
    limits = body.get("limits") or {}
    return HubInfo(
        network=_field(body, "network", str),
        audience=_field(body, "audience", str),
        issuer=_field(body, "issuer", str),
        certificate=None
        if certificate is None
        else _b64_field(body, "certificate", MAX_CERT_BYTES, "hub certificate", None),
        limits={k: v for k, v in _object(limits).items() if is_int(v)},
    )


def _notice(data: str) -> Notice | EventNotice | None:
    try:
        doc = loads_strict(data, max_bytes=4096)
    except ProtocolError:
        return None
    if not isinstance(doc, dict):
        return None
    try:
        if doc.get("type") == "message":
            return Notice(_field(doc, "cursor", int), _message_id(doc.get("id")))
        if doc.get("type") == "event" and doc.get("kind") in EVENT_KINDS:
            return EventNotice(_field(doc, "cursor", int), str(doc["kind"]))
    except ClientError:
        return None
    return None


_MISSING = object()


def _audit_query(params: dict[str, str | int | None]) -> str:
    for name in params:
        if name not in (*AUDIT_FILTERS, "start", "end", "limit", "size", "proofs"):
            raise ClientError(f"unknown audit filter {name!r}")
    given = {k: str(v) for k, v in params.items() if v is not None}
    return "?" + urllib.parse.urlencode(given) if given else ""


def _hashes(values: list[Any]) -> list[bytes]:
    try:
        hashes = [b64d(value, max_len=32) for value in values]
    except ProtocolError as exc:
        raise VerificationFailed("audit proof", reason="malformed hash") from exc
    if any(len(h) != 32 for h in hashes):
        raise VerificationFailed("audit proof", reason="a hash is not 32 bytes")
    return hashes


def _tree_head(wire: Any) -> TreeHead:
    try:
        return TreeHead.from_wire(wire)
    except ProtocolError as exc:
        raise VerificationFailed("tree head", reason="malformed") from exc


def _entry(wire: Any) -> AuditEntry:
    try:
        return AuditEntry.from_wire(wire)
    except ProtocolError as exc:
        raise VerificationFailed("audit entry", reason=str(exc)[:120]) from exc
