"""Logging in: a password, then a second factor (TOTP or a security key), then a purpose.

Failed attempts slow down, then lock, per account and per client address
(:class:`desk.config.LoginLimits`); the waits are counted on the desk's clock, never
slept. Every login, failure, lock and logout is written to the account log and to the
desk's log, naming the person id and the address, never a password, code or session id.
A new session id is issued when the password is right and again when the second factor
is; a person without a second factor sets one up before anything else.
"""

from __future__ import annotations

import logging

from aiohttp import web

from desk import webauthn
from desk.accounts import Person
from desk.factors import TotpSecret, check_password, hash_password, password_problem, qr_svg
from desk.i18n import LOCALES
from desk.sessions import FULL, SECOND_FACTOR, Session
from desk.vocabulary import PURPOSES
from desk.web import (
    PASSWORD_PAGE,
    PERSON,
    SESSION_ENDED,
    SESSION_ID,
    client_address,
    form_value,
    gettext,
    markup,
    person_of,
    render,
    require,
    safe_next,
    see_other,
    services,
    session_of,
)

log = logging.getLogger("schakel.desk")


# -- password ------------------------------------------------------------------------------


async def login_page(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    if session.stage == FULL and request.get(PERSON) is not None:
        raise see_other("/postvak")
    return render(
        request,
        "login.html",
        next=safe_next(request.query.get("terug")),
        error=None,
        user="",
        request_logged_out="uitgelogd" in request.query,
    )


async def login(request: web.Request) -> web.StreamResponse:
    s = services(request)
    session = session_of(request)
    user = form_value(request, "gebruiker", 64).strip()
    password = form_value(request, "wachtwoord", 1024)
    target = safe_next(form_value(request, "terug", 200))
    address = client_address(request)
    now = s.now()

    def again(error: str, status: int = 200) -> web.Response:
        return render(
            request,
            "login.html",
            status=status,
            next=target,
            error=error,
            user=user,
            request_logged_out=False,
        )

    blocked = _address_blocked(request, address, now)
    if blocked:
        s.accounts.log("login-blocked-address", now=now, person=user or None, address=address)
        return again("locked", 429)
    person = s.accounts.person(user) if user else None
    if person is not None and person.locked_until > now:
        s.accounts.log("login-blocked-account", now=now, person=person.id, address=address)
        return again("locked", 429)
    if person is not None and _must_wait(request, person, now):
        s.accounts.log("login-too-soon", now=now, person=person.id, address=address)
        return again("wait", 429)
    right = check_password(password, person.password_hash if person else s.dummy_hash)
    if person is None or not right or person.disabled:
        _failed(request, person, user, address, now, "login-failed")
        return again("credentials")
    s.accounts.clear_failures(person.id)
    s.address_failures.pop(address, None)
    _advance(request, session, person, SECOND_FACTOR)
    session.scratch["next"] = target
    s.accounts.log("password-accepted", now=now, person=person.id, address=address)
    raise see_other("/inloggen/tweede-stap")


def _address_blocked(request: web.Request, address: str, now: int) -> bool:
    s = services(request)
    count, last = s.address_failures.get(address, (0, 0.0))
    return count >= s.config.limits.address_lock_after and now - last < (
        s.config.limits.address_lock_seconds
    )


def _must_wait(request: web.Request, person: Person, now: int) -> bool:
    limits = services(request).config.limits
    extra = person.failures - limits.free_failures
    if extra < 0:
        return False
    wait: int = min(2**extra, limits.max_wait)
    return now - person.last_failure < wait


def _failed(
    request: web.Request, person: Person | None, user: str, address: str, now: int, event: str
) -> None:
    s = services(request)
    limits = s.config.limits
    count, _ = s.address_failures.get(address, (0, 0.0))
    if len(s.address_failures) > 100_000:
        s.address_failures.clear()
    s.address_failures[address] = (count + 1, now)
    if person is not None:
        failures = s.accounts.note_failure(
            person.id,
            now=now,
            lock_after=limits.account_lock_after,
            lock_seconds=limits.account_lock_seconds,
        )
        if failures == limits.account_lock_after:
            s.accounts.log("account-locked", now=now, person=person.id, address=address)
            log.warning("desk account locked after failed logins: %s", person.id)
    s.accounts.log(
        event, now=now, person=(person.id if person else user[:64]) or None, address=address
    )
    log.info("desk %s from %s", event, address)


def _advance(request: web.Request, session: Session, person: Person, stage: str) -> None:
    """Move the session to ``stage`` under a new id (no fixation)."""
    s = services(request)
    old = request[SESSION_ID]
    session.stage = stage
    session.person = person.id
    session.generation = person.generation
    session.locale = person.locale if person.locale in LOCALES else session.locale
    request[SESSION_ID] = s.sessions.rotate(old, session)


# -- second factor -------------------------------------------------------------------------


def _pending(request: web.Request) -> Person:
    """The person whose password was right and whose second factor is due."""
    session = session_of(request)
    person = request.get(PERSON)
    if session.stage != SECOND_FACTOR or person is None:
        raise see_other("/inloggen")
    return person  # type: ignore[no-any-return]


async def second_factor_page(request: web.Request) -> web.StreamResponse:
    person = _pending(request)
    s = services(request)
    keys = s.accounts.credentials(person.id)
    if person.totp_secret is None and not keys:
        raise see_other("/inloggen/instellen")
    return _second_factor(request, person, error=None)


def _second_factor(request: web.Request, person: Person, error: str | None) -> web.Response:
    s = services(request)
    session = session_of(request)
    keys = s.accounts.credentials(person.id)
    options = None
    if keys:
        options, challenge = webauthn.authentication(rp_id=s.config.rp_id, credentials=keys)
        session.scratch["challenge"] = challenge
    demo_code = None
    if s.config.demo and person.totp_secret is not None:
        demo_code = _totp(request, person).code(s.clock())
    return render(
        request,
        "second_factor.html",
        status=200 if error is None else 400,
        has_totp=person.totp_secret is not None,
        options=options,
        error=error,
        demo_code=demo_code,
    )


def _totp(request: web.Request, person: Person) -> TotpSecret:
    s = services(request)
    opened = None if person.totp_secret is None else s.sealer.open("totp", person.totp_secret)
    if opened is None:
        raise web.HTTPInternalServerError(text="second factor unreadable")
    return TotpSecret(opened.decode("ascii"))


async def check_code(request: web.Request) -> web.StreamResponse:
    person = _pending(request)
    s = services(request)
    now = s.now()
    address = client_address(request)
    if person.locked_until > now or _address_blocked(request, address, now):
        return _second_factor(request, person, "locked")
    if _must_wait(request, person, now):
        return _second_factor(request, person, "wait")
    code = form_value(request, "code", 16)
    step = None if person.totp_secret is None else _totp(request, person).matching_step(code, now)
    if step is None or not s.accounts.use_totp_step(person.id, step):
        _failed(request, person, person.id, address, now, "code-failed")
        return _second_factor(request, person, "code")
    return _logged_in(request, person, "login-code")


async def check_key(request: web.Request) -> web.StreamResponse:
    person = _pending(request)
    s = services(request)
    session = session_of(request)
    now = s.now()
    address = client_address(request)
    challenge = session.scratch.pop("challenge", None)
    if person.locked_until > now or challenge is None:
        return _second_factor(request, person, "key")
    try:
        credential, count = webauthn.verify_authentication(
            form_value(request, "antwoord", webauthn.MAX_CREDENTIAL_JSON),
            challenge=challenge,
            rp_id=s.config.rp_id,
            origin=s.config.secure_origin,
            credentials=s.accounts.credentials(person.id),
        )
    except webauthn.WebAuthnFailed:
        _failed(request, person, person.id, address, now, "key-failed")
        return _second_factor(request, person, "key")
    s.accounts.update_sign_count(credential.credential_id, count)
    return _logged_in(request, person, "login-key")


def _logged_in(request: web.Request, person: Person, event: str) -> web.StreamResponse:
    s = services(request)
    session = session_of(request)
    s.accounts.clear_failures(person.id)
    fresh = s.accounts.require(person.id)
    _advance(request, session, fresh, FULL)
    session.scratch.pop("challenge", None)
    s.accounts.log(event, now=s.now(), person=person.id, address=client_address(request))
    log.info("desk login: %s", person.id)
    target = session.scratch.pop("next", "/postvak")
    raise see_other("/doelbinding?terug=" + safe_next(target))


# -- setting up a second factor ------------------------------------------------------------


async def setup_page(request: web.Request) -> web.StreamResponse:
    person = _pending(request)
    if person.totp_secret is not None or services(request).accounts.credentials(person.id):
        raise see_other("/inloggen/tweede-stap")
    return _setup(request, person, error=None)


def _setup(request: web.Request, person: Person, error: str | None) -> web.Response:
    s = services(request)
    session = session_of(request)
    secret = session.scratch.get("totp")
    if not isinstance(secret, TotpSecret):
        secret = TotpSecret.new()
        session.scratch["totp"] = secret
    _ = gettext(request)
    qr = qr_svg(secret.uri(person.id, f"Schakel {s.library.org}"), _("QR code for your app"))
    options, challenge = webauthn.registration(
        rp_id=s.config.rp_id,
        org=s.library.org,
        person=person.id,
        name=person.name,
        existing=[],
    )
    session.scratch["register"] = challenge
    return render(
        request,
        "setup.html",
        status=200 if error is None else 400,
        qr=markup(qr),
        secret=secret.grouped(),
        options=options,
        error=error,
        demo_code=secret.code(s.clock()) if s.config.demo else None,
    )


async def setup_code(request: web.Request) -> web.StreamResponse:
    person = _pending(request)
    s = services(request)
    session = session_of(request)
    secret = session.scratch.get("totp")
    now = s.now()
    step = None
    if isinstance(secret, TotpSecret):
        step = secret.matching_step(form_value(request, "code", 16), now)
    if step is None or not isinstance(secret, TotpSecret):
        _failed(request, person, person.id, client_address(request), now, "setup-code-failed")
        return _setup(request, person, "code")
    s.accounts.set_totp(person.id, s.sealer.seal("totp", secret.value.encode()), step)
    session.scratch.pop("totp", None)
    s.accounts.log("second-factor-set-up", now=now, person=person.id, actor=person.id)
    return _logged_in(request, s.accounts.require(person.id), "login-code")


async def setup_key(request: web.Request) -> web.StreamResponse:
    person = _pending(request)
    s = services(request)
    session = session_of(request)
    challenge = session.scratch.pop("register", None)
    now = s.now()
    try:
        if challenge is None:
            raise webauthn.WebAuthnFailed("no challenge")
        credential = webauthn.verify_registration(
            form_value(request, "antwoord", webauthn.MAX_CREDENTIAL_JSON),
            challenge=challenge,
            rp_id=s.config.rp_id,
            origin=s.config.secure_origin,
            person=person.id,
        )
    except webauthn.WebAuthnFailed:
        _failed(request, person, person.id, client_address(request), now, "setup-key-failed")
        return _setup(request, person, "key")
    s.accounts.add_credential(credential, now=now)
    s.accounts.log("security-key-added", now=now, person=person.id, actor=person.id)
    return _logged_in(request, s.accounts.require(person.id), "login-key")


# -- a first password, changed --------------------------------------------------------------


@require(FULL)
async def password_page(request: web.Request) -> web.StreamResponse:
    if not person_of(request).must_change:
        raise see_other("/postvak")
    return render(request, "password.html", problems={})


@require(FULL)
async def change_password(request: web.Request) -> web.StreamResponse:
    """The person replaces the first password an administrator gave them with their own."""
    s = services(request)
    person = person_of(request)
    if not person.must_change:
        raise see_other("/postvak")
    new = form_value(request, "nieuw", 1024)
    again = form_value(request, "herhaal", 1024)
    errors = {}
    problem = password_problem(new)
    if problem:
        errors["nieuw"] = problem
    elif check_password(new, person.password_hash):
        errors["nieuw"] = "same"
    elif new != again:
        errors["herhaal"] = "mismatch"
    if errors:
        return render(request, "password.html", status=400, problems=errors)
    s.accounts.set_password(person.id, hash_password(new, s.config.password_cost))
    fresh = s.accounts.require(person.id)
    _advance(request, session_of(request), fresh, FULL)  # its other sessions end
    request[PERSON] = fresh
    s.accounts.log(
        "password-changed",
        now=s.now(),
        person=person.id,
        actor=person.id,
        address=client_address(request),
    )
    log.info("desk password changed: %s", person.id)
    raise see_other("/doelbinding")


# -- purpose, language, logout -------------------------------------------------------------


@require(FULL)
async def purpose_page(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    return render(
        request,
        "purpose.html",
        next=safe_next(request.query.get("terug")),
        chosen=session.purpose or _default_purpose(person_of(request)),
        text=session.purpose_text or "",
        error=None,
        purposes=PURPOSES,
    )


def _default_purpose(person: Person) -> str:
    if "coordinator" in person.roles:
        return "case-coordination"
    return "signal-intake"


@require(FULL)
async def choose_purpose(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    chosen = form_value(request, "doel", 64)
    text = form_value(request, "toelichting", 300).strip()
    target = safe_next(form_value(request, "terug", 200))
    error = None
    if chosen not in PURPOSES:
        error = "purpose"
    elif len(text) > 200 or any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in text):
        error = "purpose-text"
    if error:
        return render(
            request,
            "purpose.html",
            status=400,
            next=target,
            chosen=chosen if chosen in PURPOSES else None,
            text=text[:200],
            error=error,
            purposes=PURPOSES,
        )
    session.purpose = chosen
    session.purpose_text = text or None
    raise see_other(target)


async def logout(request: web.Request) -> web.StreamResponse:
    s = services(request)
    session = session_of(request)
    if session.person is not None:
        s.accounts.log(
            "logout", now=s.now(), person=session.person, address=client_address(request)
        )
    s.sessions.end(request[SESSION_ID])
    request[SESSION_ENDED] = True
    raise see_other("/inloggen?uitgelogd=1")


async def choose_language(request: web.Request) -> web.StreamResponse:
    s = services(request)
    session = session_of(request)
    locale = form_value(request, "taal", 4)
    if locale in LOCALES:
        session.locale = locale
        if session.person is not None and session.stage == FULL:
            s.accounts.set_locale(session.person, locale)
    raise see_other(safe_next(form_value(request, "terug", 200)))


def routes() -> list[web.RouteDef]:
    return [
        web.get("/inloggen", login_page),
        web.post("/inloggen", login),
        web.get("/inloggen/tweede-stap", second_factor_page),
        web.post("/inloggen/code", check_code),
        web.post("/inloggen/sleutel", check_key),
        web.get("/inloggen/instellen", setup_page),
        web.post("/inloggen/instellen/code", setup_code),
        web.post("/inloggen/instellen/sleutel", setup_key),
        web.get(PASSWORD_PAGE, password_page),
        web.post(PASSWORD_PAGE, change_password),
        web.get("/doelbinding", purpose_page),
        web.post("/doelbinding", choose_purpose),
        web.post("/uitloggen", logout),
        web.post("/taal", choose_language),
    ]
