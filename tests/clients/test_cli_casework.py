"""``schakel org`` case-work commands: bad input, exit codes and what they print.

Bad input is refused with a plain one-line message (exit 1) or a usage error (exit 2)
before the hub is asked; the hub here is unreachable (exit 3 when it is reached for).
The output of the views is checked with a stand-in for the library's facade (an
``Organisation`` whose hub answers with parsed records): it tests how the command line
prints what the library returns, not the hub, which the library's own tests and
``test_cli_hub`` reach for real.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from test_cli_org import NOW, PASS, root_pem, run
from test_cli_org import authority as authority  # the fixture, reused
from test_cli_org import env as env  # the fixture, reused

from clients import caseview
from clients.cli import common
from clients.cli.messages import message_line
from clients.errors import CaseNotFound, MalformedAnswer
from clients.organisation import ReceivedMessage
from keys.authority import Authority
from keys.organisation import OrgKeys
from protocol.cases import (
    CaseDetail,
    CasePage,
    CaseSummary,
    Event,
    EventPage,
    OpenReferral,
    OrgSignals,
    Referral,
    TimelineEntry,
)
from protocol.certificate import pem_encode
from protocol.types import CaseRef, MessageId, OrgId

REF = CaseRef("abcdefghijklmnop")
OTHER = CaseRef("qrstuvwxyz234567")
MSG = MessageId("AAAAAAAAAAAAAAAAAAAAAA")
MSG_2 = MessageId("BBBBBBBBBBBBBBBBBBBBBA")
NAME = "Zwaantje"


@pytest.fixture
def home(authority: Authority, env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """An enrolled organisation ``regie`` (a coordinator) whose hub can not be reached."""
    result = run(env, "init", "--org", "regie", "--network", "test-net",
                 "--root", str(root_pem(authority, tmp_path)))  # fmt: skip
    assert result.exit_code == 0, result.output
    keys = OrgKeys.open(Path(env["SCHAKEL_HOME"]) / "keys", PASS.encode())
    cert = authority.enrol(keys.request_der, ["member", "coordinator"], now=NOW)
    path = tmp_path / "cert.pem"
    path.write_bytes(pem_encode(cert.der, "CERTIFICATE"))
    assert run(env, "import-cert", str(path)).exit_code == 0
    return env | {"SCHAKEL_PURPOSE": "case-coordination"}


def _file(tmp_path: Path, name: str, content: Any) -> str:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def referral(**changes: Any) -> dict[str, Any]:
    return {
        "schema": "schakel.referral/1",
        "service": "shelter",
        "urgency": "urgent",
        "reason": "r",
        "shared_with_person": "s",
        "consent": {"share_with_recipient": True, "comensha_registration": False},
    } | changes


# -- bad input -----------------------------------------------------------------------------


def _bad_input(tmp: Path) -> list[tuple[list[str], int, str]]:
    good = _file(tmp, "good.json", referral())
    return [
        (["refer", "--to", "opvang"], 2, "Missing option '--file'"),
        (["refer", "--to", "opvang", "--file", _file(tmp, "a.json", "{nope")], 1,
         "is not strict JSON"),
        (["refer", "--to", "opvang", "--file", _file(tmp, "b.json", [1])], 1,
         "must hold a JSON object"),
        (["refer", "--to", "opvang", "--file",
          _file(tmp, "c.json", referral(person={"sex": NAME}))], 1,
         "payload invalid at $.person.sex: must be one of"),
        (["refer", "--to", "opvang", "--file", good], 1, "names a case, or a person"),
        (["status", MSG, "care_started", "--note", "x", "--started-on", "2999-01-01"], 1,
         "$.care_started_on: is after today"),
        (["refer", "--to", "opvang", "--case", "NOPE", "--file", good], 1, "at case"),
        (["refer", "--to", "opvang", "--case", REF, "--replaces", "x", "--file", good], 1,
         "at replaces"),
        (["status", MSG, "accepted"], 2, "exactly one of --file or --note"),
        (["status", MSG, "accepted", "--note", "x", "--file", good], 2, "exactly one of"),
        (["status", MSG, "delivered", "--note", "x"], 2, "'delivered' is not one of"),
        (["status", MSG], 2, "give the status CODE"),
        (["status", "--note", "x"], 2, "need REFERRAL_ID CODE"),
        (["status", MSG, "declined", "--note", "x"], 1, "$.reason_code: is required"),
        (["status", MSG, "accepted", "--note", "x", "--reason", "safety"], 1,
         "$.reason_code: is not allowed here"),
        (["status", MSG, "accepted", "--note", ""], 1, "$.explanation: is too short"),
        (["status", MSG, "accepted", "--note", "x"], 1, "schakel org inbox"),
        (["status", MSG, "accepted", "--file", _file(tmp, "d.json", referral())], 1,
         "payload invalid at $"),
        (["cases", "--limit", "0"], 2, "Invalid value for '--limit'"),
        (["cases", "--state", "lost"], 2, "Invalid value for '--state'"),
        (["case", "NOPE"], 1, "case reference"),
        (["split", REF], 2, "Missing argument 'MESSAGE_IDS...'"),
        (["split", REF, "bad"], 1, "message id"),
        (["merge", REF], 2, "Missing argument 'OTHER'"),
        (["unmerge", REF, "NOPE"], 1, "case reference"),
        (["events", "--after", "-1"], 2, "Invalid value for '--after'"),
        (["referrals", "--limit", "201"], 2, "Invalid value for '--limit'"),
        (["comensha", "--registrations", str(tmp / "r.csv")], 2, "Missing option"),
        (["comensha", "--registrations", str(tmp / "r.csv"), "--statistics",
          str(tmp / "r.csv")], 1, "each file must be a different file"),
    ]  # fmt: skip


def test_bad_input_is_refused_with_a_plain_message(home: dict[str, str], tmp_path: Path) -> None:
    for args, code, message in _bad_input(tmp_path):
        result = run(home, *args)
        assert result.exit_code == code, (args, result.output)
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output and NAME not in result.output
        if code == 1:
            assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert not (tmp_path / "r.csv").exists()


def test_views_need_a_purpose_and_a_reachable_hub(home: dict[str, str]) -> None:
    without = {k: v for k, v in home.items() if k != "SCHAKEL_PURPOSE"}
    result = run(without, "cases")
    assert result.exit_code == 1 and "purpose of use" in result.output
    for args in (["cases"], ["referrals"], ["case", REF], ["events"], ["merge", REF, OTHER]):
        result = run(home, *args)
        assert result.exit_code == 3 and "unreachable" in result.output, args


def test_status_without_arguments_is_still_the_local_status(home: dict[str, str]) -> None:
    result = run(home, "status")
    assert result.exit_code == 0 and "organisation: regie" in result.output


# -- what the views print (a fake session) -----------------------------------------------


def _summary(ref: CaseRef = REF, state: str = "referred") -> CaseSummary:
    orgs = (
        OrgSignals(OrgId("police"), "police", 2, 1_700_000_000, 1_700_100_000),
        OrgSignals(OrgId("school"), "school", 1, 1_700_050_000, 1_700_050_000),
    )
    return CaseSummary(ref, state, 3, orgs[0].first, orgs[0].last, orgs,
                       MappingProxyType({"delivered": 1}), 1)  # fmt: skip


def _referral(step: str = "delivered", id: MessageId = MSG) -> Referral:
    steps = MappingProxyType({"sent": 1_700_190_000, step: 1_700_200_000})
    return Referral(
        id, REF, OrgId("regie"), OrgId("opvang"), "shelter", step, 1_700_200_000, steps, None
    )


def _open(overdue: bool, waiting: int, id: MessageId) -> OpenReferral:
    return OpenReferral(_referral(id=id), OrgId("opvang"), 86400 * 3, waiting,
                        1_700_300_000 if overdue else None, overdue)  # fmt: skip


class FakeHub:
    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.asked: list[tuple[str, Any]] = []

    def _check(self, name: str, args: Any) -> None:
        self.asked.append((name, args))
        if self.fail is not None:
            raise self.fail

    async def cases(self, **filters: Any) -> CasePage:
        self._check("cases", filters)
        return CasePage((_summary(), _summary(OTHER, "new")), 12)

    async def referrals(self, limit: int | None = None) -> tuple[OpenReferral, ...]:
        self._check("referrals", limit)
        return (_open(False, 100, MSG_2), _open(True, 50, MSG))

    async def events(self, after: int = 0, limit: int | None = None) -> EventPage:
        self._check("events", after)
        if after >= 9:
            return EventPage((), after)
        detail = {"kind": "signal", "sender": "school", "sender_type": "school",
                  "merged": [OTHER], "kept_apart": []}  # fmt: skip
        return EventPage(
            (
                Event(4, "match", 1_700_000_000, REF, MSG_2, None, MappingProxyType(detail)),
                Event(9, "escalation", 1_700_000_100, REF, MSG, "delivered", MappingProxyType(
                    {"referrer": "regie", "recipient": "opvang", "due": 1_700_000_050})),
            ),
            9,
        )  # fmt: skip

    async def split(self, ref: str, ids: Any) -> tuple[str, str]:
        self._check("split", (ref, tuple(ids)))
        return OTHER, ref

    async def merge(self, ref: str, other: str) -> tuple[str, str]:
        self._check("merge", (ref, other))
        return ref, other

    async def unmerge(self, ref: str, other: str) -> tuple[str, str]:
        self._check("unmerge", (ref, other))
        return other, ref


class FakeOrganisation:
    def __init__(self, hub: FakeHub) -> None:
        self.hub = hub

    async def case_view(self, ref: str) -> caseview.CaseView:
        self.hub._check("case", ref)
        timeline = (
            TimelineEntry(1_700_000_000, "signal", MSG_2, OrgId("police"), "police",
                          (OrgId("regie"),)),
            TimelineEntry(1_700_000_500, "signal", MessageId("C" * 21 + "A"), OrgId("school"),
                          "school", (OrgId("ggd"),)),
            TimelineEntry(1_700_190_000, "referral", MSG, OrgId("regie"), "coordination",
                          (OrgId("opvang"),)),
            TimelineEntry(1_700_200_000, "delivered", None, OrgId("opvang"), referral=MSG),
            TimelineEntry(1_700_300_000, "split", other=OTHER, automatic=False,
                          messages=(MSG_2,)),
        )  # fmt: skip
        contents = {
            MSG_2: caseview.Inline(caseview.OPENED, MappingProxyType({"text": NAME})),
            timeline[1].message: caseview.Inline(caseview.NOT_ADDRESSED),
            MSG: caseview.Inline(caseview.SENT, MappingProxyType({"reason": "place"})),
        }
        detail = CaseDetail(_summary(), OTHER, (_referral(),), timeline, True)
        return caseview.CaseView(detail, MappingProxyType(contents))  # type: ignore[arg-type]


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    hub = FakeHub()

    class Session:
        def __init__(self, settings: Any, **options: Any) -> None:
            pass

        async def __aenter__(self) -> FakeOrganisation:
            return FakeOrganisation(hub)

        async def __aexit__(self, *exc: object) -> None:
            return None

    monkeypatch.setattr(common, "Session", Session)
    yield hub


def test_cases_prints_a_table_and_json(home: dict[str, str], fake_hub: FakeHub) -> None:
    result = run(home, "cases", "--state", "referred", "--type", "school", "--limit", "2")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["case", "state", "signals", "first", "last", "open", "types"]
    assert lines[1].split()[:3] == [REF, "referred", "3"] and lines[1].endswith("police,school")
    assert lines[-1] == "2 of 12 cases"
    assert fake_hub.asked == [("cases", {"state": "referred", "type": "school", "sort": "last",
                                         "order": "desc", "limit": 2, "offset": 0})]  # fmt: skip
    data = json.loads(run(home, "--json", "cases").output)
    assert data["total"] == 12 and data["cases"][0]["orgs"][1]["org_type"] == "school"


def test_case_prints_referrals_and_the_timeline_with_content_inline(
    home: dict[str, str], fake_hub: FakeHub
) -> None:
    result = run(home, "case", OTHER)
    assert result.exit_code == 0, result.output
    text = result.output
    assert f"case {REF}  state referred  (asked for {OTHER}, merged into this case)" in text
    assert f"{MSG}  regie -> opvang (shelter)  delivered since" in text
    assert "OVERDUE" in text and "due 2023-11-18" in text
    assert "(older entries left out)" in text
    assert f'"text": "{NAME}"' in text and "[not addressed to you]" in text
    assert "[written by this organisation]" in text and '"reason": "place"' in text
    assert f"delivered to opvang: referral {MSG}" in text and f"split with {OTHER}" in text
    data = json.loads(run(home, "--json", "case", OTHER).output)
    assert data["contents"][MSG_2] == {"state": "opened", "payload": {"text": NAME}}
    assert data["due"][MSG]["overdue"] is True and data["merged_from"] == OTHER


def test_referrals_lists_overdue_first(home: dict[str, str], fake_hub: FakeHub) -> None:
    result = run(home, "referrals")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].startswith(MSG) and lines[1].endswith("OVERDUE") and "3d" in lines[1]
    assert lines[2].startswith(MSG_2) and "OVERDUE" not in lines[2]
    data = json.loads(run(home, "--json", "referrals", "--limit", "5").output)
    assert [r["referral"]["id"] for r in data["referrals"]] == [MSG, MSG_2]
    assert fake_hub.asked[-1] == ("referrals", 5)


def test_events_split_merge_unmerge(home: dict[str, str], fake_hub: FakeHub) -> None:
    result = run(home, "events", "--after", "2")
    assert result.exit_code == 0, result.output
    first, second = result.output.splitlines()
    assert "match" in first and "signal from school (school), merged " + OTHER in first
    assert "escalation" in second and "regie -> opvang step delivered, due" in second
    assert [a for a in fake_hub.asked if a[0] == "events"] == [("events", 2), ("events", 9)]
    assert run(home, "split", REF, MSG, MSG_2).output == f"split 2 off {REF}: {OTHER}\n"
    assert run(home, "merge", REF, OTHER).output == f"merged {OTHER} into {REF}\n"
    assert run(home, "--json", "unmerge", REF, OTHER).output.count(OTHER) == 1


@pytest.mark.parametrize(
    "fail, code, message",
    [
        (CaseNotFound(f"case {REF}"), 1, "no such case, or this organisation is not a coordinator"),
        (MalformedAnswer("case list", "cases[0].state", "is not one of"), 4,
         "hub's case list did not verify (cases[0].state: is not one of"),
    ],
)  # fmt: skip
def test_hub_refusals_are_one_line(
    home: dict[str, str], fake_hub: FakeHub, fail: Exception, code: int, message: str
) -> None:
    fake_hub.fail = fail
    for args in (["cases"], ["case", REF], ["referrals"], ["merge", REF, OTHER]):
        result = run(home, *args)
        assert result.exit_code == code and message in result.output, (args, result.output)
        assert result.output.count("\n") == 1


# -- inbox and show lines for referrals and statuses ------------------------------------


def _received(kind: str, payload: dict[str, Any], **header: Any) -> ReceivedMessage:
    return ReceivedMessage(MSG, 7, OrgId("regie"), kind, 1_700_000_000, (), payload, **header)


def test_inbox_lines_say_what_a_referral_or_status_is_without_free_text() -> None:
    line = message_line(_received("referral", referral(reason=NAME), case=REF))
    assert line["summary"] == f"referral for shelter, urgency urgent, case {REF}"
    assert line["case"] == REF and "ref" not in line
    status = {"schema": "schakel.status/1", "status": "declined", "explanation": NAME,
              "reason_code": "no_capacity"}  # fmt: skip
    line = message_line(_received("status", status, ref=MSG_2, status="declined"))
    assert line["summary"] == f"status declined about referral {MSG_2} (no_capacity)"
    assert line["status"] == "declined" and NAME not in json.dumps(line)
