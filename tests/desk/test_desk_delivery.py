"""The desk's inbox warns, in Dutch, about messages the hub lost or withheld (no content)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import desk
from clients.state import LocalState
from desk.adapter import DeliveryAlerts, Library
from desk.inbox import InboxPage
from desk.web import environments

TEMPLATES = Path(desk.__file__).resolve().parent / "templates"
M1, M2 = "AAAAAAAAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBBBBBBBA"


def _rows(alerts: DeliveryAlerts) -> str:
    env = environments(TEMPLATES)["nl"]
    page = InboxPage([], set(), 1, 1, 0, alerts, [])
    return env.get_template("_inbox_rows.html").render(inbox=page)


def test_the_inbox_names_a_missing_message_and_a_hub_gone_back() -> None:
    html = _rows(DeliveryAlerts(((M1, "politie", M2),), went_back=7))
    assert 'role="alert"' in html
    assert f"Bericht {M1} van politie is nooit aangekomen" in html
    assert f"vóór bericht {M2}" in html
    assert "is er een back-up teruggezet?" in html


def test_no_alert_when_all_is_well() -> None:
    html = _rows(DeliveryAlerts((), went_back=None))
    assert 'role="alert"' not in html and "nooit aangekomen" not in html


def test_the_alerts_come_from_local_state(tmp_path: Path) -> None:
    with LocalState(tmp_path / "state.sqlite") as state:
        library = SimpleNamespace(_org=SimpleNamespace(state=state))
        assert not Library.delivery_alerts(library)  # type: ignore[arg-type]
        state.record_missing(M1, sender="politie", named_by=M2, now=1)
        state.note_went_back(7)
        alerts = Library.delivery_alerts(library)  # type: ignore[arg-type]
        assert alerts == DeliveryAlerts(((M1, "politie", M2),), went_back=7)
        state.store_message(
            message_id=M1, cursor=3, sender="politie", kind="signal", created=1,
            header={}, sealed=b"sealed", now=2,
        )  # fmt: skip
        state.rewind_inbox()
        assert not Library.delivery_alerts(library)  # type: ignore[arg-type]


def _organisation_page(state: object) -> str:
    from desk.web import Formats

    env = environments(TEMPLATES)["nl"]
    context = {"fmt": Formats("nl"), "now": 1_800_000_000, "org": "politie", "person": None,
               "session": None, "csrf": "", "demo": False, "path": "/organisatie",
               "flash": None, "locale": "nl", "state": state}  # fmt: skip
    return env.get_template("organisation.html").render(context)


def test_the_organisation_page_shows_a_split_view_and_its_evidence(tmp_path: Path) -> None:
    from desk.adapter import _split_views

    with LocalState(tmp_path / "state.sqlite") as state:
        evidence = str(tmp_path / "e" / "x.json")
        state.raise_alert(
            {"kind": "split-view", "at": 1_799_990_000, "size": 41, "reason": "fork",
             "evidence": evidence}
        )  # fmt: skip
        alerts = _split_views(state.alerts())
    page = _organisation_page(
        SimpleNamespace(
            org="politie", network="demo", roles=(), certificate_not_after=None,
            bundle_not_after=None, crl_number=None, crl_this_update=None, crl_next_update=None,
            log_size=41, log_time=1_799_990_000, log_consistent=False, linking_key=False,
            pseudonym_services=True, messages=0, hub_reachable=True, split_views=alerts,
            witnesses=None,
        )
    )  # fmt: skip
    assert 'role="alert"' in page
    assert "(41 regels) dat de andere organisaties niet hebben medeondertekend" in page
    assert "Het bewijs is bewaard in x.json" in page
    assert str(tmp_path) not in page  # the file's name, never the directory it is in
