"""The desk's pure parts: the signal form, answers, sessions, second factors, words, files."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from clients.payloads import schema_of
from desk import catalog, signalform, vocabulary
from desk.accounts import Accounts
from desk.config import PasswordCost
from desk.factors import Sealer, TotpSecret, check_password, hash_password
from desk.i18n import Formats, translations
from desk.inbox import check_answer
from desk.messages import FORM_ERRORS
from desk.sessions import FULL, Sessions
from desk.web import inert

ROOT = Path(__file__).resolve().parents[2]
TODAY = datetime.date(2026, 12, 3)
COORDINATORS = ("coordinator",)


def form(**values: str) -> signalform.SignalForm:
    base = {"exploitation": "sexual", "urgency": "high", "consent": "yes"}
    return signalform.read(
        {**base, **values}, [], ["coordinator"], allowed_recipients=COORDINATORS, today=TODAY
    )


def test_a_complete_signal_becomes_a_schema_payload() -> None:
    result = signalform.read(
        {
            "bsn": "111 222 333",
            "given_names": "Anna Maria",
            "family_name": "de Vries",
            "date_of_birth": "14-03-1999",
            "phone": "06-12345678",
            "document_number": "NW12345A",
            "document_country": "NLD",
            "sex": "female",
            "nationality": "NL",
            "age_estimate": "",
            "exploitation": "sexual",
            "urgency": "high",
            "observed_at": "2026-11-20",
            "observed_place": "Bushalte Vredenburg, Utrecht",
            "text": "Gezien\r\nbij de halte",
            "reporter_name": "J. Agent",
            "reporter_role": "wijkagent",
            "reporter_phone": "+31 20 1234567",
            "reporter_email": "j.agent@politie.example",
            "consent": "yes",
        },
        ["control.documents_withheld", "health.fearful"],
        ["coordinator"],
        allowed_recipients=COORDINATORS,
        today=TODAY,
    )
    assert result.ok and result.linkable
    payload = result.payload
    assert payload is not None
    assert payload["person"]["bsn"] == "111222333"
    assert payload["person"]["date_of_birth"] == "1999-03-14"
    assert payload["person"]["nationality"] == "NL"
    assert payload["text"] == "Gezien\nbij de halte"
    assert payload["reporter"]["role"] == "wijkagent"
    assert payload["observed_at"] == "2026-11-20"
    assert payload["observed_place"] == "Bushalte Vredenburg, Utrecht"
    from clients.payloads import validate_payload

    validate_payload("signal", payload)


@pytest.mark.parametrize(
    ("values", "field", "error"),
    [
        ({"bsn": "123456789"}, "bsn", "bsn"),
        ({"bsn": "12345"}, "bsn", "bsn"),
        ({"given_names": "Anna"}, "family_name", "name_pair"),
        ({"date_of_birth": "31-02-1999"}, "date_of_birth", "date"),
        ({"observed_at": "2030-01-01"}, "observed_at", "date-future"),
        ({"phone": "bel me"}, "phone", "phone"),
        ({"document_number": "NW12345A"}, "document_country", "document_pair"),
        ({"document_country": "XYZ", "document_number": "NW12345A"}, "document_country", "country"),
        ({"age_estimate": "121"}, "age_estimate", "age"),
        ({"exploitation": "other"}, "exploitation", "exploitation"),
        ({"consent": ""}, "consent", "consent"),
        ({"reporter_email": "nobody"}, "reporter_email", "email"),
        ({"given_names": "An\u202ena", "family_name": "x"}, "given_names", "invisible"),
        ({"text": "x" * 4001}, "text", "too-long"),
        ({"observed_place": "x" * 201}, "observed_place", "too-long"),
        ({"observed_place": "Halte\u202e"}, "observed_place", "invisible"),
    ],
)
def test_every_wrong_field_gets_its_own_message(
    values: dict[str, str], field: str, error: str
) -> None:
    result = form(**values)
    assert not result.ok
    assert result.errors[field] == error
    assert error in FORM_ERRORS
    assert result.values[next(iter(values))] == values[next(iter(values))].strip()[:5000]


def test_unknown_indicators_and_recipients_are_errors() -> None:
    result = signalform.read(
        {"exploitation": "sexual", "urgency": "high", "consent": "yes"},
        ["control.documents_withheld", "made.up"],
        ["evil"],
        allowed_recipients=COORDINATORS,
        today=TODAY,
    )
    assert result.errors["indicators"] == "indicators"
    assert result.errors["recipients"] == "recipients"
    assert result.indicators == ["control.documents_withheld"]


def test_a_signal_without_identifiers_is_not_linkable() -> None:
    assert form().ok and not form().linkable
    assert not form(given_names="Anna", family_name="de Vries").linkable  # no birth date
    assert form(phone="0612345678").linkable


def test_error_summary_follows_the_page() -> None:
    result = form(bsn="1", consent="", text="\x00", observed_place="\x00", urgency="")
    assert [name for name, _ in result.summary()] == [
        "bsn",
        "observed_place",
        "urgency",
        "text",
        "consent",
    ]


def _form_names(schema: dict[str, Any], prefix: str = "") -> set[str]:
    """The form field each property of the signal schema is typed into."""
    renamed = {"consent_to_share": "consent", "reporter.": "reporter_"}
    names = set()
    for key, rule in schema["properties"].items():
        if key == "schema":
            continue
        if rule.get("type") == "object":
            names |= _form_names(rule, "" if key == "person" else renamed[key + "."])
        else:
            names.add(prefix + renamed.get(key, key))
    return names


async def test_every_field_of_the_signal_schema_is_on_the_form(desk_app: Any) -> None:
    from deskharness import Browser

    wanted = _form_names(schema_of("signal"))
    assert {"observed_at", "observed_place", "reporter_email", "consent", "indicators"} <= wanted
    assert wanted <= {*signalform.TEXT_FIELDS, "indicators"}
    desk_app.add_person("a.jansen")
    browser = Browser(desk_app)
    await browser.log_in("a.jansen")
    _, page, _ = await browser.get("/signaal/nieuw")
    for name in wanted:  # each with a label of its own, or a group with a legend
        assert f'name="{name}"' in page, name
        assert f'<label class="utrecht-form-label" for="{name}">' in page or (
            f'name="{name}" value=' in page and "<legend" in page
        ), name
    # an error comes back next to its field, in Dutch, with what was typed kept
    typed = {"observed_place": "Halte \u202e", "observed_at": "gisteren", "urgency": "high"}
    status, page, _ = await browser.post("/signaal/nieuw", typed)
    assert status == 400
    assert 'id="observed_place-fout"' in page and 'id="observed_at-fout"' in page
    assert "Vul een datum in zoals 14-03-1999." in page
    assert 'value="gisteren"' in page and 'value="Halte \ufffd"' in page


def test_answers_check_dates_reasons_and_steps() -> None:
    created = int(datetime.datetime(2026, 11, 22, 12, tzinfo=datetime.UTC).timestamp())
    allowed = ("accepted", "declined", "closed")
    errors, payload = check_answer(
        {"code": "declined", "explanation": "vol", "reason": "", "started": ""},
        allowed,
        created,
        today=TODAY,
    )
    assert errors == {"reden": "reason"} and payload is None
    errors, payload = check_answer(
        {"code": "care_started", "explanation": "x", "reason": "", "started": "01-01-2026"},
        allowed,
        created,
        today=TODAY,
    )
    assert errors["stap"] == "code"
    for started, error in (
        ("21-11-2026", "date-early"),
        ("04-12-2026", "date-future"),
        ("gisteren", "date"),
    ):
        errors, _ = check_answer(
            {"code": "care_started", "explanation": "x", "reason": "", "started": started},
            ("care_started",),
            created,
            today=TODAY,
        )
        assert errors == {"gestart": error}
    errors, payload = check_answer(
        {"code": "care_started", "explanation": "Intake", "reason": "x", "started": "22-11-2026"},
        ("care_started",),
        created,
        today=TODAY,
    )
    assert errors == {} and payload == {
        "schema": "schakel.status/1",
        "status": "care_started",
        "explanation": "Intake",
        "care_started_on": "2026-11-22",
    }


def test_sessions_rotate_expire_and_end_per_person() -> None:
    now = [1000.0]
    sessions = Sessions(idle=900, absolute=8 * 3600, clock=lambda: now[0])
    first, session = sessions.new()
    session.person, session.stage = "a", FULL
    second = sessions.rotate(first, session)
    assert sessions.get(first) is None and sessions.get(second) is session
    now[0] += 901
    assert sessions.get(second) is None
    third, other = sessions.new()
    other.person = "b"
    assert sessions.end_person("b") == 1 and sessions.get(third) is None


def test_totp_steps_and_passwords() -> None:
    secret = TotpSecret.new()
    now = 1_800_000_000.0
    code = secret.code(now)
    assert secret.matching_step(code, now) == int(now) // 30
    assert secret.matching_step(code, now + 30) == int(now) // 30  # the step before still counts
    assert secret.matching_step(code, now + 90) is None
    assert secret.matching_step("12345x", now) is None
    assert repr(secret) == "TotpSecret(...)"
    hashed = hash_password("een goed wachtwoord", PasswordCost.for_tests())
    assert hashed.startswith("$argon2id$")
    assert check_password("een goed wachtwoord", hashed)
    assert not check_password("een fout wachtwoord", hashed)
    assert not check_password("x", "not a hash")


def test_a_totp_step_is_used_once(tmp_path: Path) -> None:
    with Accounts(tmp_path / "desk.sqlite") as accounts:
        accounts.add("a.jansen", "A. Jansen", ["caseworker"], "h", now=1)
        assert accounts.use_totp_step("a.jansen", 10)
        assert not accounts.use_totp_step("a.jansen", 10)
        assert not accounts.use_totp_step("a.jansen", 9)
        assert accounts.use_totp_step("a.jansen", 11)
    assert (tmp_path / "desk.sqlite").stat().st_mode & 0o777 == 0o600


def test_sealed_secrets_open_only_with_their_key_and_label() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    sealer = Sealer.for_signing_key(key, "police")
    sealed = sealer.seal("totp", b"SECRET")
    assert sealer.open("totp", sealed) == b"SECRET"
    assert sealer.open("other", sealed) is None
    assert Sealer.for_signing_key(key, "ggd").open("totp", sealed) is None


def test_every_schema_code_has_a_label_and_no_label_is_orphaned() -> None:
    signal = schema_of("signal")["properties"]
    status = schema_of("status")["properties"]
    referral = schema_of("referral")["properties"]
    assert set(vocabulary.INDICATORS) == set(signal["indicators"]["items"]["enum"])
    assert set(vocabulary.EXPLOITATION) == set(signal["exploitation"]["enum"])
    assert set(vocabulary.URGENCY) == set(signal["urgency"]["enum"])
    assert set(vocabulary.SEX) == set(signal["person"]["properties"]["sex"]["enum"])
    assert set(vocabulary.DECLINE_REASONS) == set(status["reason_code"]["enum"])
    assert set(vocabulary.STATUS_ACTIONS) == set(status["status"]["enum"])
    assert set(vocabulary.SERVICES) == set(referral["service"]["enum"])
    assert set(vocabulary.REFERRAL_URGENCY) == set(referral["urgency"]["enum"])
    assert {code.split(".")[0] for code in vocabulary.INDICATORS} == set(
        vocabulary.INDICATOR_THEMES
    )
    from protocol import certificate
    from protocol.auditlog import PURPOSES

    assert set(vocabulary.PURPOSES) == set(PURPOSES)
    org_roles = {
        certificate.ROLE_MEMBER,
        certificate.ROLE_COORDINATOR,
        certificate.ROLE_PRIVACY_OFFICER,
        certificate.ROLE_NETWORK_PRIVACY_OFFICER,
    }
    assert set(vocabulary.ORG_ROLES) == org_roles


def test_every_message_has_its_dutch() -> None:
    assert catalog.missing("nl") == []
    dutch = translations("nl")
    assert dutch.gettext("Inbox") == "Postvak"
    assert translations("en").gettext("Inbox") == "Inbox"


def test_dates_and_countries_in_dutch() -> None:
    moment = int(datetime.datetime(2026, 12, 3, 15, 47, tzinfo=datetime.UTC).timestamp())
    dutch = Formats("nl")
    assert dutch.datetime(moment) == "3 december 2026, 16:47"  # Amsterdam, winter time
    assert dutch.iso_date("1999-03-14") == "14 maart 1999"
    assert dutch.country("NLD") == "Nederland (NLD)"
    assert dutch.ago(moment - 7200, moment) == "2 uur geleden"
    assert Formats("en").date(moment) == "3 December 2026"


def test_inert_replaces_controls_and_bidi_overrides() -> None:
    assert inert("a\u202eb\u0000c\nd\te\u2066") == "a\ufffdb\ufffdc\nd\te\ufffd"
    assert inert("<b>") == "<b>"  # markup is escaped by the template, not here


VENDORED = [
    (ROOT / "desk/static/vendor/VENDORED.md", ROOT / "desk/static/vendor"),
    (ROOT / "tests/desk/vendor/VENDORED.md", ROOT / "tests/desk/vendor"),
]


@pytest.mark.parametrize(("record", "folder"), VENDORED)
def test_vendored_files_match_their_recorded_checksums(record: Path, folder: Path) -> None:
    rows = re.findall(r"^\| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|$", record.read_text(), re.M)
    assert rows
    for name, digest in rows:
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
        licence = next((folder / name).parent.glob("LICENSE*"))
        assert licence.stat().st_size > 100


def test_desk_user_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from desk.cli import desk

    monkeypatch.setenv("SCHAKEL_WEAK_KDF", "1")
    monkeypatch.setenv("FIRST_PASSWORD", "een goed eerste wachtwoord")
    runner = CliRunner()
    home = ["--home", str(tmp_path)]
    result = runner.invoke(
        desk,
        [
            "user",
            "add",
            *home,
            "a.admin",
            "--name",
            "A. Admin",
            "--role",
            "admin",
            "--role",
            "caseworker",
            "--password-env",
            "FIRST_PASSWORD",
        ],
    )
    assert result.exit_code == 0, result.output
    again = runner.invoke(
        desk, ["user", "add", *home, "a.admin", "--name", "x", "--password-env", "FIRST_PASSWORD"]
    )
    assert again.exit_code == 2 and "already" in again.output
    bad = runner.invoke(
        desk,
        ["user", "add", *home, "with space", "--name", "x", "--password-env", "FIRST_PASSWORD"],
    )
    assert bad.exit_code == 2 and "without spaces" in bad.output
    with Accounts(tmp_path / "desk.sqlite") as accounts:
        assert accounts.require("a.admin").must_change  # a first password
        accounts.set_password(
            "a.admin", hash_password("mijn eigen wachtwoord", PasswordCost.for_tests())
        )
        assert not accounts.require("a.admin").must_change
    assert runner.invoke(desk, ["user", "disable", *home, "a.admin"]).exit_code == 0
    assert runner.invoke(desk, ["user", "reset-2fa", *home, "a.admin"]).exit_code == 0
    assert runner.invoke(desk, ["user", "disable", *home, "nobody"]).exit_code == 2
    monkeypatch.setenv("NEW_PASSWORD", "een nieuw eerste wachtwoord")
    reset = ["user", "reset-password", *home, "a.admin", "--password-env", "NEW_PASSWORD"]
    done = runner.invoke(desk, reset)
    assert done.exit_code == 0 and "sessions ended" in done.output
    monkeypatch.setenv("NEW_PASSWORD", "te kort")
    short = runner.invoke(desk, reset)
    assert short.exit_code == 2 and "too short" in short.output
    nobody = ["user", "reset-password", *home, "nobody", "--password-env", "FIRST_PASSWORD"]
    assert runner.invoke(desk, nobody).exit_code == 2
    listing = runner.invoke(desk, ["user", "list", *home])
    assert "a.admin" in listing.output and "disabled" in listing.output
    with Accounts(tmp_path / "desk.sqlite") as accounts:
        events = [row.event for row in accounts.log_rows()]
        person = accounts.require("a.admin")
    assert events == ["password-reset", "second-factor-reset", "account-disabled",
                      "account-added"]  # fmt: skip
    assert person.disabled and person.must_change and person.generation == 5
    assert check_password("een nieuw eerste wachtwoord", person.password_hash)
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("desk.sqlite*")).decode("latin-1")
    assert "een goed eerste wachtwoord" not in stored and "een nieuw eerste" not in stored


def test_an_older_desk_database_gets_the_new_columns(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "desk.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(
            "CREATE TABLE people (id TEXT PRIMARY KEY, name TEXT NOT NULL, roles TEXT NOT NULL, "
            "password TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0, generation INTEGER "
            "NOT NULL DEFAULT 1, locale TEXT NOT NULL DEFAULT 'nl', totp_secret BLOB, "
            "totp_last_step INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0, "
            "last_failure INTEGER NOT NULL DEFAULT 0, locked_until INTEGER NOT NULL DEFAULT 0, "
            "created INTEGER NOT NULL)"
        )
        db.execute("INSERT INTO people (id, name, roles, password, created) VALUES "
                   "('a.jansen', 'A. Jansen', 'caseworker', 'x', 1)")  # fmt: skip
        db.commit()
    with Accounts(path) as accounts:
        assert accounts.require("a.jansen").must_change is False
        accounts.reset_password("a.jansen", "y")
        assert accounts.require("a.jansen").must_change is True


def test_local_state_pages_messages_newest_first(tmp_path: Path) -> None:
    from clients.state import LocalState

    with LocalState(tmp_path / "state.sqlite") as state:
        for cursor, kind in ((1, "signal"), (2, "status"), (3, "referral"), (4, "status")):
            state.store_message(
                message_id=f"m{cursor}",
                cursor=cursor,
                sender="ggd",
                kind=kind,
                created=cursor,
                header={},
                sealed=b"sealed",
                now=cursor,
            )
        assert [m.id for m in state.message_page(0, 2)] == ["m4", "m3"]
        assert [m.id for m in state.message_page(2, 10)] == ["m2", "m1"]
        assert state.message_page(10, 10) == []
        assert state.message_count() == 4
        assert [m.id for m in state.messages_of_kind("status")] == ["m2", "m4"]


def test_every_account_event_has_a_label() -> None:
    pattern = re.compile(
        r"(?:\.log\(|_failed\([^)]*?|_logged\(request, |_change\(home, person, |_logged_in\("
        r'request, [^,]+, )\s*"([a-z]+(?:-[a-z0-9]+)+)"',
        re.S,
    )
    used = set()
    for name in ("login.py", "pages.py", "cli.py", "demo.py"):
        used |= set(pattern.findall((ROOT / "desk" / name).read_text()))
    assert len(used) >= 15
    assert used <= set(vocabulary.EVENTS), sorted(used - set(vocabulary.EVENTS))


def test_the_qr_code_scales_whole() -> None:
    from desk.factors import qr_svg

    svg = qr_svg("otpauth://totp/Schakel:a.jansen?secret=JBSWY3DPEHPK3PXP", "QR-code")
    assert re.match(r'<svg viewBox="0 0 (\d+) \1"', svg), svg[:80]
    assert " width=" not in svg.split(">", 1)[0] and "<title>QR-code</title>" in svg
