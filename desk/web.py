"""The desk's web plumbing: services, rendering, and the middlewares every page passes.

Every response gets a strict Content-Security-Policy (scripts and styles from the desk
itself only: no inline script, no inline style, no ``eval``), ``frame-ancestors 'none'``,
``Referrer-Policy: no-referrer``, ``X-Content-Type-Options: nosniff`` and ``Cache-Control:
no-store`` (static files excepted). Every unsafe request (POST) must come from the desk's
own origin (``Origin`` when the browser names one, else ``Sec-Fetch-Site: same-origin``;
a request with neither, from a client without Fetch Metadata, rests on the token alone)
and carry the session's CSRF token; one that does not is refused with 403 and nothing is
done.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from markupsafe import Markup
from multidict import MultiDictProxy

from desk import vocabulary
from desk.accounts import Accounts, Person
from desk.adapter import Library, OverviewData
from desk.casebook import CaseBook
from desk.config import DeskConfig
from desk.factors import Sealer
from desk.i18n import DEFAULT_LOCALE, LOCALES, Formats, gettext_for, translations
from desk.live import Broadcast
from desk.messages import TABLES
from desk.sessions import ANONYMOUS, FULL, Session, Sessions, cookie_name

log = logging.getLogger("schakel.desk")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATIC = "/static/"
MAX_FORM_BYTES = 64 * 1024
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# where a person with a first password must choose their own
PASSWORD_PAGE = "/wachtwoord"  # noqa: S105 - a path, not a password


@dataclass(slots=True)
class Services:
    """What every handler may use; one per desk process."""

    config: DeskConfig
    accounts: Accounts
    sessions: Sessions
    library: Library
    sealer: Sealer
    casebook: CaseBook
    clock: Callable[[], float] = time.time
    broadcast: Broadcast = field(default_factory=Broadcast)
    dummy_hash: str = ""  # checked against when the person is unknown (same timing)
    address_failures: dict[str, tuple[int, float]] = field(default_factory=dict)
    # the coordinator's overview figures per person, (when made, figures): desk.overview
    overview_cache: dict[str, tuple[float, OverviewData]] = field(default_factory=dict)

    def now(self) -> int:
        return int(self.clock())

    def close(self) -> None:
        """Close the desk's database connections."""
        self.casebook.close()
        self.accounts.close()

    @property
    def cookie(self) -> str:
        return cookie_name(self.library.org)


SERVICES: web.AppKey[Services] = web.AppKey("services", Services)
SESSION = web.RequestKey("desk_session", Session)
SESSION_ID = web.RequestKey("desk_session_id", str)
PERSON = web.RequestKey("desk_person", Person)
FORM = web.RequestKey("desk_form", MultiDictProxy)
SESSION_ENDED = web.RequestKey("desk_session_ended", bool)
TEMPLATES: web.AppKey[dict[str, jinja2.Environment]] = web.AppKey("templates", dict)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def session_of(request: web.Request) -> Session:
    session: Session = request[SESSION]
    return session


def person_of(request: web.Request) -> Person:
    person: Person = request[PERSON]
    return person


def acting(request: web.Request, fallback: str) -> contextlib.AbstractContextManager[None]:
    """Hub requests inside name the logged-in person and the purpose they chose."""
    purpose = session_of(request).purpose or fallback
    return services(request).library.acting(person_of(request).id, purpose)


# -- templates -----------------------------------------------------------------------------


def environments(directory: Path) -> dict[str, jinja2.Environment]:
    """One Jinja2 environment per language, autoescaping everything, undefined is an error."""
    made = {}
    for locale in LOCALES:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            extensions=["jinja2.ext.i18n"],
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.install_gettext_translations(translations(locale), newstyle=True)  # type: ignore[attr-defined]
        env.filters["inert"] = inert
        env.globals["vocabulary"] = vocabulary
        env.globals.update(TABLES)
        made[locale] = env
    return made


_INVISIBLE = {0x200E, 0x200F, 0x061C} | set(range(0x202A, 0x202F)) | set(range(0x2066, 0x206A))


def inert(value: object) -> str:
    """Text from a message or a person, shown as it is and nothing more.

    Autoescaping already makes markup inert; this also replaces control characters
    (other than line breaks and tabs) and bidirectional overrides, which could make
    text look other than it is, with U+FFFD. The template wraps the result in ``<bdi>``.
    """
    text = "" if value is None else str(value)
    return "".join(
        "\ufffd"
        if (ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) < 0xA0 or ord(c) in _INVISIBLE
        else c
        for c in text
    )


def render(request: web.Request, template: str, status: int = 200, **record: Any) -> web.Response:
    """The page ``template`` filled with ``record``, in the session's language."""
    session: Session | None = request.get(SESSION)
    locale = session.locale if session is not None else DEFAULT_LOCALE
    env = request.app[TEMPLATES][locale]
    s = services(request)
    person: Person | None = request.get(PERSON)
    flash = None
    if session is not None and not template.startswith("_"):
        flash, session.flash = session.flash, None
    context = {
        "flash": flash,
        "locale": locale,
        "fmt": Formats(locale),
        "now": s.clock(),
        "org": s.library.org,
        "person": person,
        "session": session,
        "csrf": session.csrf if session is not None else "",
        "demo": s.config.demo,
        "coordinator_desk": s.library.is_coordinator,
        "privacy_desk": s.library.is_privacy_officer,
        "path": request.path,
        **record,
    }
    body = env.get_template(template).render(context)
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def gettext(request: web.Request) -> Callable[[str], str]:
    session: Session | None = request.get(SESSION)
    return gettext_for(session.locale if session is not None else DEFAULT_LOCALE)


def see_other(location: str) -> web.HTTPSeeOther:
    """The redirect after a POST (POST-redirect-GET); only paths of this desk."""
    if not location.startswith("/") or location.startswith("//"):
        location = "/"
    return web.HTTPSeeOther(location)


def safe_next(value: str | None) -> str:
    """A path to return to after login: this desk's own, never another site."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/postvak"
    if any(ord(c) < 33 for c in value) or len(value) > 200:
        return "/postvak"
    return value


# -- middlewares ---------------------------------------------------------------------------


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
        _headers(request, response)
        raise
    _headers(request, response)
    return response


def _headers(request: web.Request, response: web.StreamResponse) -> None:
    if response.prepared:
        return
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith(STATIC) and response.status == 200:
        response.headers["Cache-Control"] = "public, max-age=3600"
    else:
        response.headers["Cache-Control"] = "no-store"
    if services(request).config.origin.startswith("https://"):
        response.headers["Strict-Transport-Security"] = "max-age=31536000"


def client_address(request: web.Request) -> str:
    """The browser's address: the peer, or X-Forwarded-For's last hop from a trusted proxy."""
    peer = request.remote or "unknown"
    trusted = services(request).config.trusted_proxies
    if peer in trusted:
        forwarded = request.headers.get("X-Forwarded-For", "")
        last = forwarded.split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(last))
        except ValueError:
            return peer
    return peer


@web.middleware
async def sessions_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Find the session (or make an anonymous one) and its person; set the cookie back."""
    if request.path.startswith(STATIC):
        return await handler(request)
    s = services(request)
    cookie = request.cookies.get(s.cookie)
    # What the page does by itself (the live stream, htmx fetching the list again after a
    # push) is not the person's activity: it does not keep an idle session alive.
    background = request.path.endswith("/live") or request.headers.get("HX-Request") == "true"
    session = s.sessions.get(cookie, touch=not background)
    session_id = cookie
    if session is not None and session.person is not None:
        person = s.accounts.person(session.person)
        if person is None or person.disabled or person.generation != session.generation:
            s.sessions.end(cookie)
            session = None
            log.info("desk session ended: the account changed")
        else:
            request[PERSON] = person
    if session is None or session_id is None:
        session_id, session = s.sessions.new()
    request[SESSION] = session
    request[SESSION_ID] = session_id
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _set_cookie(request, exc)
        raise
    _set_cookie(request, response)
    return response


def _set_cookie(request: web.Request, response: web.StreamResponse) -> None:
    if response.prepared:
        return
    s = services(request)
    session_id = request.get(SESSION_ID)
    if session_id is None or request.get(SESSION_ENDED):
        response.del_cookie(s.cookie, path="/", secure=True, httponly=True, samesite="Strict")
        return
    if session_id != request.cookies.get(s.cookie):
        response.set_cookie(
            s.cookie,
            session_id,
            path="/",
            secure=True,
            httponly=True,
            samesite="Strict",
            max_age=s.config.absolute_timeout,
        )


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unsafe methods: from this desk's own origin, with the session's token; else 403."""
    if request.method in SAFE_METHODS:
        return await handler(request)
    s = services(request)
    # With Referrer-Policy no-referrer, browsers send "Origin: null" on form posts; then
    # Fetch Metadata (Sec-Fetch-Site) says where the request came from.
    origin = request.headers.get("Origin")
    site = request.headers.get("Sec-Fetch-Site")
    if origin is not None and origin != "null":
        if origin.rstrip("/") != s.config.secure_origin:
            return _refused(request, "origin")
    elif site is not None:
        if site != "same-origin":
            return _refused(request, "site")
    elif origin == "null":
        return _refused(request, "origin")
    if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
        raise web.HTTPRequestEntityTooLarge(MAX_FORM_BYTES, request.content_length)
    form = await request.post()
    token = form.get("csrf")
    session: Session = request[SESSION]
    if not isinstance(token, str) or not hmac.compare_digest(token, session.csrf):
        return _refused(request, "token")
    request[FORM] = form
    return await handler(request)


def _refused(request: web.Request, why: str) -> web.Response:
    log.warning("desk refused a %s request: %s check failed", request.method, why)
    return render(request, "refused.html", status=403)


def require(stage: str = FULL, role: str | None = None) -> Callable[[Handler], Handler]:
    """A handler for people in ``stage`` (with ``role``); others go to the login page."""

    def wrap(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            session = session_of(request)
            if session.stage != stage or request.get(PERSON) is None:
                if request.headers.get("HX-Request") == "true":  # htmx: a whole new page
                    raise web.HTTPNoContent(headers={"HX-Redirect": "/inloggen"})
                if session.stage == ANONYMOUS or request.get(PERSON) is None:
                    target = urllib.parse.quote(request.path_qs, safe="/?=&")
                    raise see_other(f"/inloggen?terug={target}")
                raise see_other("/inloggen/tweede-stap")
            if stage == FULL and person_of(request).must_change and request.path != PASSWORD_PAGE:
                raise see_other(PASSWORD_PAGE)  # a first password: nothing else until it is changed
            choosing = request.path in ("/doelbinding", PASSWORD_PAGE)
            if stage == FULL and session.purpose is None and not choosing:
                raise see_other("/doelbinding")
            if role is not None and role not in person_of(request).roles:
                raise web.HTTPNotFound()
            return await handler(request)

        return guarded

    return wrap


def form_value(request: web.Request, name: str, limit: int = 4000) -> str:
    """One text field of the posted form ('' when absent), bounded."""
    value = request[FORM].get(name, "")
    return value[: limit + 1] if isinstance(value, str) else ""


def markup(text: str) -> Markup:
    """Markup the desk made itself (never text from a message or a person)."""
    return Markup(text)  # noqa: S704 - only for SVG the desk draws
