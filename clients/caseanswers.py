"""The coordinator's case answers of the hub, read with :mod:`protocol.cases`.

The records and their checks live in :mod:`protocol.cases`, which the hub renders with;
here a record that breaks its form becomes :class:`MalformedAnswer` (naming the answer
and the field, never the value), and the queries of the case routes are checked before
anything is sent.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from clients.errors import ClientError, MalformedAnswer
from protocol import cases
from protocol.cases import (
    CASE_FILTERS,
    CASE_ORDERS,
    CASE_SORTS,
    CASE_STATES,
    MAX_PAGE,
    CaseDetail,
    CasePage,
    EventPage,
    Fields,
    OpenReferral,
)
from protocol.certificate import MAX_TIME, ORG_TYPES
from protocol.errors import FieldError
from protocol.types import CaseRef

T = TypeVar("T")


def read(parse: Callable[..., T], body: Any, **limits: int) -> T:
    """``parse(body)`` from :mod:`protocol.cases`; a broken answer is MalformedAnswer."""
    try:
        return parse(body, **limits)
    except FieldError as exc:
        raise MalformedAnswer(exc.what, exc.where, exc.rule) from None


def case_page(body: Any, *, limit: int) -> CasePage:
    return read(cases.case_page_from_wire, body, limit=limit)


def case_detail(body: Any) -> CaseDetail:
    return read(cases.case_detail_from_wire, body)


def referral_list(body: Any, *, limit: int) -> tuple[OpenReferral, ...]:
    return read(cases.referral_list_from_wire, body, limit=limit)


def event_page(body: Any, *, after: int, limit: int) -> EventPage:
    return read(cases.event_page_from_wire, body, after=after, limit=limit)


def case_pair(what: str, body: Any, first: str, second: str) -> tuple[CaseRef, CaseRef]:
    """The two case references of a split, merge or unmerge answer."""

    def parse(value: Any) -> tuple[CaseRef, CaseRef]:
        doc = Fields(what, value, {first, second})
        return doc.case_ref(first), doc.case_ref(second)

    return read(parse, body)


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def page_limit(limit: object) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
        raise ClientError(f"limit must be from 1 to {MAX_PAGE}")
    return limit


def case_query(filters: Mapping[str, str | int | None]) -> str:
    """The query of ``GET /v1/cases``, every filter checked before anything is sent."""
    given = {k: v for k, v in filters.items() if v is not None}
    for name, value in given.items():
        if name not in CASE_FILTERS:
            raise ClientError(
                f"unknown case filter {name[:32]!r} (one of {', '.join(CASE_FILTERS)})"
            )
        allowed = {
            "state": CASE_STATES,
            "type": ORG_TYPES,
            "sort": CASE_SORTS,
            "order": CASE_ORDERS,
        }.get(name)
        if allowed is not None and value not in allowed:
            raise ClientError(f"case filter {name} must be one of {', '.join(allowed)}")
        if allowed is None and (not is_int(value) or not 0 <= int(value) <= MAX_TIME):
            raise ClientError(f"case filter {name} must be an integer >= 0")
    if "limit" in given:
        page_limit(given["limit"])
    return "?" + urllib.parse.urlencode({k: str(v) for k, v in given.items()}) if given else ""
