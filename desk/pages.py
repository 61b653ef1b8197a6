"""Sent messages, the organisation's status, and the desk administrator's page."""

from __future__ import annotations

import logging

from aiohttp import web

from desk.accounts import ROLE_ADMIN, ROLES, check_name, check_person_id, check_roles
from desk.adapter import LibraryError, retention_policy
from desk.errors import AccountError
from desk.factors import hash_password, password_problem
from desk.inbox import PAGE, _message_id, _page_number, _status
from desk.messages import ADMIN_NOTICES
from desk.sessions import FULL
from desk.web import (
    FORM,
    acting,
    client_address,
    form_value,
    person_of,
    render,
    require,
    see_other,
    services,
    session_of,
)

log = logging.getLogger("schakel.desk")


# -- sent ----------------------------------------------------------------------------------


@require(FULL)
async def sent(request: web.Request) -> web.StreamResponse:
    return _sent_page(request)


def _sent_page(request: web.Request, status: int = 200, problem: str | None = None) -> web.Response:
    """What was sent, and above it the outbox: what waits for the hub, and why."""
    s = services(request)
    page = _page_number(request)
    rows, total = s.library.sent((page - 1) * PAGE, PAGE)
    pages = max(1, -(-total // PAGE))
    return render(
        request,
        "sent.html",
        status=status,
        rows=rows,
        queued=s.library.outbox(),
        problem=problem,
        page=min(page, pages),
        pages=pages,
        total=total,
    )


@require(FULL)
async def send_now(request: web.Request) -> web.StreamResponse:
    """'Nu versturen': send what waits in the outbox now, as the person pressing it."""
    s = services(request)
    try:
        with acting(request, "signal-intake"):
            sent_count = await s.library.send_outbox()
    except LibraryError as exc:
        log.warning("desk outbox: could not send now (%s)", exc.category)
        return _sent_page(request, status=_status(exc), problem=exc.category)
    session_of(request).flash = "outbox-sent" if s.library.waiting() == 0 else "outbox-waiting"
    log.info("desk outbox: %d sent on request", sent_count)
    raise see_other("/verzonden")


@require(FULL)
async def drop_refused(request: web.Request) -> web.StreamResponse:
    """Remove a refused entry from the outbox (it would never be sent)."""
    s = services(request)
    try:
        s.library.drop_refused(form_value(request, "bericht", 40))
    except LibraryError:
        return _sent_page(request, status=404, problem="not-found")
    session_of(request).flash = "outbox-dropped"
    _logged(request, "outbox-entry-dropped", person_of(request).id)
    raise see_other("/verzonden")


@require(FULL)
async def sent_message(request: web.Request) -> web.StreamResponse:
    s = services(request)
    message_id = _message_id(request)
    try:
        with acting(request, "signal-intake"):
            view = await s.library.open_sent(message_id)
    except LibraryError as exc:
        return render(request, "problem.html", status=_status(exc), problem=exc.category)
    return render(request, "message.html", message=view, actions=())


# -- the organisation's status -------------------------------------------------------------


@require(FULL)
async def organisation(request: web.Request) -> web.StreamResponse:
    s = services(request)
    with acting(request, "audit"):
        status = await s.library.status()
    config = s.config
    policy = retention_policy(
        config.retention_kind, config.retention_case_days, config.retention_grace_days
    )
    retention = s.library.retention_status(policy, now=s.now())
    return render(request, "organisation.html", state=status, retention=retention)


# -- the desk administrator ----------------------------------------------------------------


def _admin_page(request: web.Request, status: int = 200, **extra: object) -> web.Response:
    s = services(request)
    record: dict[str, object] = {
        "people": s.accounts.people(),
        "with_keys": s.accounts.with_security_keys(),
        "log_rows": s.accounts.log_rows(50),
        "roles": ROLES,
        "errors": {},
        "values": {"person": "", "name": "", "roles": ["caseworker"]},
        "notice": None,
        "reset_for": "",
    }
    record.update(extra)
    return render(request, "admin.html", status=status, **record)


@require(FULL, role=ROLE_ADMIN)
async def admin(request: web.Request) -> web.StreamResponse:
    notice = request.query.get("gedaan")
    return _admin_page(request, notice=notice if notice in ADMIN_NOTICES else None)


@require(FULL, role=ROLE_ADMIN)
async def add_person(request: web.Request) -> web.StreamResponse:
    s = services(request)
    person_id = form_value(request, "gebruiker", 64).strip()
    name = form_value(request, "naam", 200).strip()
    roles = [r for r in request[FORM].getall("rollen", []) if isinstance(r, str)]
    values = {"person": person_id, "name": name, "roles": roles}
    password = form_value(request, "wachtwoord", 1024)
    errors = {}
    for field, check in (
        ("gebruiker", lambda: check_person_id(person_id)),
        ("naam", lambda: check_name(name)),
        ("rollen", lambda: check_roles(roles)),
    ):
        try:
            check()
        except AccountError:
            errors[field] = {"gebruiker": "person", "naam": "name", "rollen": "roles"}[field]
    problem = password_problem(password)
    if problem:
        errors["wachtwoord"] = problem
    if not errors:
        try:
            s.accounts.add(
                person_id,
                name,
                roles,
                hash_password(password, s.config.password_cost),
                now=s.now(),
                first_password=True,
            )
        except AccountError:
            errors["gebruiker"] = "exists"
    if errors:
        return _admin_page(request, status=400, errors=errors, values=values)
    _logged(request, "account-added", person_id)
    raise see_other("/beheer?gedaan=added")


def _logged(request: web.Request, event: str, person: str) -> None:
    s = services(request)
    actor = person_of(request).id
    s.accounts.log(event, now=s.now(), person=person, actor=actor, address=client_address(request))
    log.info("desk %s: %s by %s", event, person, actor)


@require(FULL, role=ROLE_ADMIN)
async def change_person(request: web.Request) -> web.StreamResponse:
    s = services(request)
    target = form_value(request, "gebruiker", 64)
    action = form_value(request, "actie", 20)
    person = s.accounts.person(target)
    if person is None or action not in ("disable", "enable", "reset-2fa", "password"):
        return _admin_page(request, status=400, errors={"wijzigen": "unknown"})
    if action == "disable":
        if person.id == person_of(request).id:
            return _admin_page(request, status=400, errors={"wijzigen": "self"})
        s.accounts.set_disabled(person.id, True)
        s.sessions.end_person(person.id)
        _logged(request, "account-disabled", person.id)
        raise see_other("/beheer?gedaan=disabled")
    if action == "enable":
        s.accounts.set_disabled(person.id, False)
        _logged(request, "account-enabled", person.id)
        raise see_other("/beheer?gedaan=enabled")
    if action == "reset-2fa":
        s.accounts.reset_second_factor(person.id)
        s.sessions.end_person(person.id)
        _logged(request, "second-factor-reset", person.id)
        raise see_other("/beheer?gedaan=reset-2fa")
    password = form_value(request, "wachtwoord", 1024)
    problem = password_problem(password)
    if problem:
        return _admin_page(
            request, status=400, errors={"nieuw-wachtwoord": problem}, reset_for=person.id
        )
    s.accounts.reset_password(person.id, hash_password(password, s.config.password_cost))
    s.sessions.end_person(person.id)
    _logged(request, "password-reset", person.id)
    raise see_other("/beheer?gedaan=password")


def routes() -> list[web.RouteDef]:
    return [
        web.get("/verzonden", sent),
        web.post("/verzonden/nu-versturen", send_now),
        web.post("/verzonden/weggooien", drop_refused),
        web.get("/verzonden/{id}", sent_message),
        web.get("/organisatie", organisation),
        web.get("/beheer", admin),
        web.post("/beheer/toevoegen", add_person),
        web.post("/beheer/wijzigen", change_person),
    ]
