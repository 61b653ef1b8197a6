"""The desk's defences at the HTTP level (aiohttp's test client; no browser, no hub).

CSRF token and origin checks, session fixation, cookie flags, security headers, idle and
absolute timeouts (an injected clock), an account disabled mid-session (also from
another process: the command line), login brute force per account and per address,
TOTP replay, and hostile text shown inert.
"""

from __future__ import annotations

from deskharness import PASSWORD, SAME, Browser, DeskUnderTest

from desk.accounts import Accounts, Credential
from desk.sessions import cookie_name
from desk.signalform import TEXT_FIELDS

COOKIE = cookie_name("police")


async def test_login_sets_a_host_cookie_and_a_new_id_at_every_step(desk_app: DeskUnderTest) -> None:
    desk_app.add_person("a.jansen")
    browser = Browser(desk_app)
    status, _, response = await browser.get("/inloggen")
    assert status == 200
    raw = next(v for v in response.headers.getall("Set-Cookie") if v.startswith(COOKIE))
    flags = {part.strip().split("=")[0].lower() for part in raw.split(";")}
    assert {"secure", "httponly", "path", "samesite"} <= flags
    assert "samesite=strict" in raw.lower() and "domain" not in flags
    anonymous = browser.cookie
    await browser.post("/inloggen", {"gebruiker": "a.jansen", "wachtwoord": PASSWORD})
    after_password = browser.cookie
    assert after_password not in (None, anonymous)  # a fixed id does not survive login
    status, _, _ = await Browser_with(desk_app, anonymous).get("/postvak")
    assert status == 303  # the pre-login id opens nothing
    secret = desk_app.totp["a.jansen"]
    await browser.post(
        "/inloggen/code", {"code": secret.code(desk_app.clock())}, from_path="/inloggen/tweede-stap"
    )
    assert browser.cookie not in (anonymous, after_password)
    status, _, _ = await Browser_with(desk_app, after_password).get("/postvak")
    assert status == 303


def Browser_with(desk: DeskUnderTest, cookie: str | None) -> Browser:
    browser = Browser(desk)
    browser.cookie = cookie
    return browser


async def test_security_headers_on_every_page(desk_app: DeskUnderTest) -> None:
    desk_app.add_person("a.jansen")
    browser = Browser(desk_app)
    await browser.log_in("a.jansen")
    for path in ("/inloggen", "/postvak", "/signaal/nieuw", "/verzonden", "/bestaat-niet"):
        _, _, response = await browser.get(path)
        headers = response.headers
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
        assert "style-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["Cache-Control"] == "no-store"
        assert headers["X-Content-Type-Options"] == "nosniff"
    _, _, response = await browser.get("/static/desk.css")
    assert "no-store" not in response.headers["Cache-Control"]


async def test_posts_without_the_token_or_from_elsewhere_are_refused(
    desk_app: DeskUnderTest,
) -> None:
    desk_app.add_person("a.jansen")
    browser = Browser(desk_app)
    await browser.log_in("a.jansen")
    cases = [
        ({}, SAME, False),  # no token
        ({"csrf": "wrong"}, SAME, False),
        ({}, {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, True),
        ({}, {"Origin": "null", "Sec-Fetch-Site": "cross-site"}, True),
        ({}, {"Sec-Fetch-Site": "same-site"}, True),
        ({}, {"Origin": "null"}, True),
    ]
    for data, headers, token in cases:
        status, page, _ = await browser.post(
            "/doelbinding", {"doel": "audit", **data}, headers, token=token
        )
        assert status == 403, (data, headers)
        assert "Niet uitgevoerd" in page
    _, page, _ = await browser.get("/postvak")
    assert "Signalen ontvangen en beoordelen" in page  # the purpose did not change


async def test_idle_and_absolute_timeouts(desk_app: DeskUnderTest) -> None:
    desk_app.add_person("a.jansen")
    browser = Browser(desk_app)
    await browser.log_in("a.jansen")
    desk_app.clock.advance(14 * 60)
    assert (await browser.get("/postvak"))[0] == 200
    desk_app.clock.advance(15 * 60 + 1)  # idle too long
    status, _, response = await browser.get("/postvak")
    assert status == 303 and response.headers["Location"].startswith("/inloggen")

    desk_app.clock.advance(31)  # a new TOTP step
    await browser.log_in("a.jansen")
    for _ in range(8 * 4 + 2):  # active every 15 minutes, for more than 8 hours
        desk_app.clock.advance(15 * 60 - 1)
        status, _, _ = await browser.get("/postvak")
        if status != 200:
            break
    assert status == 303  # the absolute limit ends it however active


async def test_disabling_an_account_ends_its_sessions_at_once(desk_app: DeskUnderTest) -> None:
    desk_app.add_person("a.jansen")
    desk_app.add_person("b.admin", ("caseworker", "admin"))
    worker, admin = Browser(desk_app), Browser(desk_app)
    await worker.log_in("a.jansen")
    await admin.log_in("b.admin")
    assert (await worker.get("/postvak"))[0] == 200
    status, _, _ = await admin.post(
        "/beheer/wijzigen", {"gebruiker": "a.jansen", "actie": "disable"}, from_path="/beheer"
    )
    assert status == 303
    assert (await worker.get("/postvak"))[0] == 303
    status, page, _ = await worker.post(
        "/inloggen", {"gebruiker": "a.jansen", "wachtwoord": PASSWORD}
    )
    assert status == 200 and "klopt niet" in page


async def test_an_administrator_resets_a_password_and_the_person_chooses_their_own(
    desk_app: DeskUnderTest,
) -> None:
    desk_app.add_person("a.jansen")
    desk_app.add_person("b.admin", ("caseworker", "admin"))
    worker, admin = Browser(desk_app), Browser(desk_app)
    await worker.log_in("a.jansen")
    await admin.log_in("b.admin")
    reset = {"gebruiker": "a.jansen", "actie": "password", "wachtwoord": "te kort"}
    status, page, _ = await admin.post("/beheer/wijzigen", reset, from_path="/beheer")
    assert status == 400 and 'id="wachtwoord-nieuw-fout"' in page
    assert "Een wachtwoord heeft minstens 12 tekens." in page
    assert '<option value="a.jansen" selected>' in page  # the person chosen is kept
    first = "een nieuw eerste wachtwoord"
    status, _, response = await admin.post(
        "/beheer/wijzigen", {**reset, "wachtwoord": first}, from_path="/beheer"
    )
    assert status == 303 and response.headers["Location"] == "/beheer?gedaan=password"
    assert (await worker.get("/postvak"))[0] == 303  # its session ended at once

    desk_app.clock.advance(30)  # a new TOTP step
    status, _, _ = await worker.post("/inloggen", {"gebruiker": "a.jansen", "wachtwoord": first})
    assert status == 303
    code = desk_app.totp["a.jansen"].code(desk_app.clock())
    await worker.post("/inloggen/code", {"code": code}, from_path="/inloggen/tweede-stap")
    for path in ("/postvak", "/doelbinding", "/verzonden"):  # nothing before a new password
        status, _, response = await worker.get(path)
        assert status == 303 and response.headers["Location"] == "/wachtwoord", path
    for new, again, field, message in (
        (first, first, "nieuw", "Kies een eigen wachtwoord"),
        ("kort", "kort", "nieuw", "minstens 12 tekens"),
        ("mijn eigen wachtwoord", "mijn eigen wachtwoord!", "herhaal", "niet gelijk"),
    ):
        status, page, _ = await worker.post("/wachtwoord", {"nieuw": new, "herhaal": again})
        assert status == 400 and message in page and f'id="{field}-fout"' in page, message
        assert new not in page  # a password is never shown again
    own = {"nieuw": "mijn eigen wachtwoord", "herhaal": "mijn eigen wachtwoord"}
    status, _, response = await worker.post("/wachtwoord", own)
    assert status == 303 and response.headers["Location"] == "/doelbinding"
    await worker.post("/doelbinding", {"doel": "signal-intake", "terug": "/postvak"})
    assert (await worker.get("/postvak"))[0] == 200
    assert (await worker.get("/wachtwoord"))[2].headers["Location"] == "/postvak"

    rows = [(r.event, r.person, r.actor) for r in desk_app.services.accounts.log_rows()]
    assert ("password-reset", "a.jansen", "b.admin") in rows
    assert ("password-changed", "a.jansen", "a.jansen") in rows
    stored = b"".join(p.read_bytes() for p in desk_app.services.accounts.path.parent.glob("*"))
    for secret in (first, "mijn eigen wachtwoord"):
        assert secret.encode() not in stored


async def test_an_administrator_resets_a_second_factor_and_enables_an_account(
    desk_app: DeskUnderTest,
) -> None:
    desk_app.add_person("a.jansen")
    desk_app.add_person("b.admin", ("caseworker", "admin"))
    worker, admin = Browser(desk_app), Browser(desk_app)
    await worker.log_in("a.jansen")
    await admin.log_in("b.admin")
    change = {"gebruiker": "a.jansen", "actie": "reset-2fa"}
    status, _, _ = await admin.post("/beheer/wijzigen", change, from_path="/beheer")
    assert status == 303
    assert (await worker.get("/postvak"))[0] == 303  # its session ended at once
    status, _, _ = await worker.post("/inloggen", {"gebruiker": "a.jansen", "wachtwoord": PASSWORD})
    assert status == 303
    assert (await worker.get("/inloggen/tweede-stap"))[2].headers["Location"] == (
        "/inloggen/instellen"
    )  # a new second factor is set up before anything else
    for action, state in (("disable", True), ("enable", False)):
        await admin.post("/beheer/wijzigen", {**change, "actie": action}, from_path="/beheer")
        assert desk_app.services.accounts.require("a.jansen").disabled is state
    events = [r.event for r in desk_app.services.accounts.log_rows() if r.actor == "b.admin"]
    assert events == ["account-enabled", "account-disabled", "second-factor-reset"]
    accounts = desk_app.services.accounts
    accounts.add("c.sleutel", "C. Sleutel", ["caseworker"], "x", now=1, first_password=True)
    accounts.add_credential(Credential(b"key-1", "c.sleutel", b"public", 0), now=1)
    _, page, _ = await admin.get("/beheer")
    cell = '<td class="utrecht-table__cell">'
    row = {
        who: page.split(f"{cell}{who}</td>", 1)[1].split("</tr>")[0]
        for who in ("a.jansen", "c.sleutel")
    }
    assert "nog geen tweede stap" in row["a.jansen"]  # its code was reset
    assert "nog geen tweede stap" not in row["c.sleutel"]  # a security key is one
    assert "eerste wachtwoord nog niet gewijzigd" in row["c.sleutel"]
    assert "eerste wachtwoord nog niet gewijzigd" not in row["a.jansen"]
    status, _, _ = await admin.post(
        "/beheer/wijzigen", {"gebruiker": "b.admin", "actie": "disable"}, from_path="/beheer"
    )
    assert status == 400  # not one's own account


async def test_disabling_from_the_command_line_ends_sessions(desk_app: DeskUnderTest) -> None:
    desk_app.add_person("a.jansen")
    worker = Browser(desk_app)
    await worker.log_in("a.jansen")
    with Accounts(desk_app.services.config.database_path) as other_process:
        other_process.set_disabled("a.jansen", True)
    assert (await worker.get("/postvak"))[0] == 303


async def test_failed_logins_slow_down_then_lock_the_account(desk_app: DeskUnderTest) -> None:
    desk_app.add_person("a.jansen")
    limits = desk_app.services.config.limits
    browser = Browser(desk_app)
    wrong = {"gebruiker": "a.jansen", "wachtwoord": "guess"}
    for _ in range(limits.free_failures):
        status, page, _ = await browser.post("/inloggen", wrong)
        assert status == 200 and "klopt niet" in page
    status, page, _ = await browser.post(
        "/inloggen", {"gebruiker": "a.jansen", "wachtwoord": PASSWORD}
    )
    assert status == 429 and "Wacht een minuut" in page  # even the right password waits
    for _ in range(limits.account_lock_after):
        desk_app.clock.advance(limits.max_wait + 1)
        await browser.post("/inloggen", wrong)
    desk_app.clock.advance(limits.max_wait + 1)
    status, page, _ = await browser.post(
        "/inloggen", {"gebruiker": "a.jansen", "wachtwoord": PASSWORD}
    )
    assert status == 429 and "geblokkeerd" in page
    desk_app.clock.advance(limits.account_lock_seconds + 1)
    status, _, _ = await browser.post(
        "/inloggen", {"gebruiker": "a.jansen", "wachtwoord": PASSWORD}
    )
    assert status == 303
    events = [row.event for row in desk_app.services.accounts.log_rows()]
    assert "account-locked" in events and events.count("login-failed") >= 10


async def test_one_address_guessing_many_accounts_is_locked(desk_app: DeskUnderTest) -> None:
    desk_app.add_person("a.jansen")
    browser = Browser(desk_app)
    limits = desk_app.services.config.limits
    for index in range(limits.address_lock_after):
        await browser.post("/inloggen", {"gebruiker": f"u{index}", "wachtwoord": "x"})
    status, page, _ = await browser.post(
        "/inloggen", {"gebruiker": "a.jansen", "wachtwoord": PASSWORD}
    )
    assert status == 429 and "geblokkeerd" in page


async def test_a_totp_code_works_once(desk_app: DeskUnderTest) -> None:
    desk_app.add_person("a.jansen")
    first = Browser(desk_app)
    code = desk_app.totp["a.jansen"].code(desk_app.clock())
    await first.log_in("a.jansen", code=code)
    second = Browser(desk_app)
    await second.post("/inloggen", {"gebruiker": "a.jansen", "wachtwoord": PASSWORD})
    status, page, _ = await second.post(
        "/inloggen/code", {"code": code}, from_path="/inloggen/tweede-stap"
    )
    assert status == 400 and "al eerder gebruikt" in page


async def test_demo_code_only_in_demo_mode(desk_app: DeskUnderTest) -> None:
    desk_app.add_person("a.jansen")
    browser = Browser(desk_app)
    await browser.post("/inloggen", {"gebruiker": "a.jansen", "wachtwoord": PASSWORD})
    _, page, _ = await browser.get("/inloggen/tweede-stap")
    code = desk_app.totp["a.jansen"].code(desk_app.clock())
    assert "Alleen demo" not in page and code not in page and "demo-code" not in page


async def test_hostile_text_is_shown_inert(desk_app: DeskUnderTest) -> None:
    desk_app.add_person("a.jansen")
    browser = Browser(desk_app)
    await browser.log_in("a.jansen")
    hostile = '<script>alert(1)</script>"><img src=x onerror=alert(2)>\u202e\u0000' + "x" * 2000
    form = {name: hostile for name in (*TEXT_FIELDS, "indicators", "recipients")}
    status, page, _ = await browser.post("/signaal/nieuw", form)
    assert status == 400
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "\u202e" not in page and "\x00" not in page
    assert "Dit is te lang." in page
    status, _, _ = await browser.post("/signaal/nieuw", {"text": "x" * 70_000})
    assert status == 413  # a body over the bound is refused whole
    short = {k: v[:60] for k, v in form.items()}
    status, page, _ = await browser.post("/signaal/nieuw", short)
    assert status == 400 and "<script>alert" not in page and "&lt;script&gt;" in page
    assert "Hierin staan onzichtbare tekens" in page


async def test_pages_need_a_login_and_admin_pages_an_admin(desk_app: DeskUnderTest) -> None:
    desk_app.add_person("a.jansen")
    anonymous = Browser(desk_app)
    for path in (
        "/postvak",
        "/signaal/nieuw",
        "/verzonden",
        "/organisatie",
        "/beheer",
        "/bericht/AAAAAAAAAAAAAAAAAAAAAA",
    ):
        status, _, response = await anonymous.get(path)
        assert status == 303 and response.headers["Location"].startswith("/inloggen?terug=")
    worker = Browser(desk_app)
    await worker.log_in("a.jansen")
    status, page, _ = await worker.get("/beheer")
    assert status == 404 and "Accounts van deze desk" not in page


async def test_login_redirect_stays_on_this_desk(desk_app: DeskUnderTest) -> None:
    desk_app.add_person("a.jansen")
    browser = Browser(desk_app)
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        status, _, _ = await browser.post(
            "/inloggen", {"gebruiker": "a.jansen", "wachtwoord": PASSWORD, "terug": target}
        )
        assert status == 303
        browser.cookie = None
        desk_app.services.accounts.clear_failures("a.jansen")
    session = next(iter(desk_app.services.sessions._live.values()))
    assert session.scratch.get("next") == "/postvak"


async def test_english_is_a_per_person_choice(desk_app: DeskUnderTest) -> None:
    desk_app.add_person("a.jansen")
    browser = Browser(desk_app)
    await browser.log_in("a.jansen")
    _, page, _ = await browser.get("/postvak")
    assert "Postvak" in page and 'lang="nl"' in page
    status, _, _ = await browser.post(
        "/taal", {"taal": "en", "terug": "/postvak"}, from_path="/postvak"
    )
    assert status == 303
    _, page, _ = await browser.get("/postvak")
    assert '<h1 class="utrecht-heading-1">Inbox</h1>' in page and 'lang="en"' in page
    assert desk_app.services.accounts.require("a.jansen").locale == "en"
    other = Browser(desk_app)  # the next login is in English too
    desk_app.clock.advance(31)
    await other.log_in("a.jansen")
    _, page, _ = await other.get("/postvak")
    assert 'lang="en"' in page


async def test_the_live_page_does_not_keep_an_idle_session_alive(desk_app: DeskUnderTest) -> None:
    desk_app.add_person("a.jansen")
    browser = Browser(desk_app)
    await browser.log_in("a.jansen")
    headers = {"Cookie": f"{COOKIE}={browser.cookie}", "HX-Request": "true"}
    for _ in range(3):  # pushes make htmx fetch the list again: not the person's activity
        desk_app.clock.advance(6 * 60)
        response = await desk_app.client.get("/postvak/lijst", headers=headers)
        assert response.status in (200, 204)
    assert response.status == 204 and response.headers["HX-Redirect"] == "/inloggen"


async def test_no_message_is_shown_without_the_hub_recording_the_read(
    desk_app: DeskUnderTest,
) -> None:
    desk_app.add_person("a.jansen")
    browser = Browser(desk_app)
    await browser.log_in("a.jansen")
    state = desk_app.services.library._org.state
    message_id = "HubAwayTestMessage0000A"[:21] + "A"
    state.store_message(
        message_id=message_id,
        cursor=10**9,
        sender="ggd",
        kind="signal",
        created=1,
        header={"id": message_id},
        sealed=b"sealed",
        now=1,
    )
    status, page, _ = await browser.get(f"/bericht/{message_id}")
    assert status == 503 and "De hub is nu niet bereikbaar" in page
    assert message_id not in desk_app.services.accounts.read_by("a.jansen", [message_id])
    _, page, _ = await browser.get("/postvak")
    assert f"/bericht/{message_id}" in page and "Nieuw" in page  # listed, still unread
