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
    page = InboxPage([], set(), 1, 1, 0, alerts)
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
            envelope={"header": {}}, now=2,
        )  # fmt: skip
        state.rewind_inbox()
        assert not Library.delivery_alerts(library)  # type: ignore[arg-type]
