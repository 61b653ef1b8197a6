"""The coordinator's overview (overzicht): charts of the desk's own data, drawn as SVG.

Only for the coordinator (as :mod:`desk.casework`: anyone else gets 404). The figures come
from :meth:`desk.adapter.Library.overview`: the signals received here and the referrals
sent from here, decrypted from local state, and the hub's list of open referrals
(metadata); nothing is sent to the hub. Four charts:

* signals per week (the last :data:`WEEKS` ISO weeks, Amsterdam time) by the type of
  organisation that sent them, and by form of exploitation;
* the referral funnel: how many referrals reached each step (sent, accepted, care
  started, closed) and the median number of Dutch working days (:mod:`protocol.workdays`)
  from the step before;
* open referrals by age, in working days since they were sent.

The page shows each chart as ``<img src="/overzicht/NAME.svg">`` with a text alternative,
and the same figures as a table beneath it. The SVG route draws with :mod:`desk.charts`
and answers ``image/svg+xml`` under a policy of its own: no script, no fetch, only the
styles the drawing carries. The figures of one person are kept :data:`KEEP_SECONDS`, so
that a page and its four images ask the hub once.
"""

from __future__ import annotations

import datetime
import itertools
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

from desk import charts, vocabulary
from desk.adapter import OverviewData, ReferralFact, ReferralRow
from desk.casework import PURPOSE, coordinator
from desk.i18n import ZONE, Formats
from desk.web import acting, gettext, person_of, render, services, session_of
from protocol.workdays import working_days_between

WEEKS = 12
KEEP_SECONDS = 60.0
# (fewest, most or None for no limit) working days an open referral has waited
AGE_BANDS: tuple[tuple[int, int | None], ...] = ((0, 2), (3, 5), (6, 10), (11, None))
FUNNEL = ("sent", "accepted", "care_started", "closed")
SVG_POLICY = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
NO_VALUE = "\u2013"  # an en dash: no figure
CHART_NAMES = ("signalen-type", "signalen-uitbuiting", "verwijzingen", "open-verwijzingen")


@dataclass(frozen=True, slots=True)
class Chart:
    """One chart: what it shows in words (its text alternative), its figures as a table
    (``head``, ``rows``), and what to draw: ``series`` of values per category, stacked
    when there is more than one; ``notes`` are written over the bars."""

    name: str
    title: str
    summary: str
    head: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    categories: tuple[str, ...]
    series: tuple[tuple[str, tuple[int, ...]], ...]
    y_label: str
    notes: tuple[str, ...] = ()

    def svg(self) -> bytes:
        if len(self.series) == 1 and not self.series[0][0]:
            return charts.bars(
                self.categories,
                self.series[0][1],
                title=self.title,
                y_label=self.y_label,
                notes=self.notes,
            )
        return charts.stacked_bars(
            self.categories, self.series, title=self.title, y_label=self.y_label
        )


# -- the figures (pure) --------------------------------------------------------------------


def iso_week(seconds: int) -> tuple[int, int]:
    """(ISO year, ISO week) of a moment, in Amsterdam."""
    year, week, _ = datetime.datetime.fromtimestamp(seconds, tz=ZONE).isocalendar()
    return year, week


def last_weeks(now: float, count: int = WEEKS) -> list[tuple[int, int]]:
    """The ``count`` ISO weeks up to and including the one of ``now``, oldest first."""
    today = datetime.datetime.fromtimestamp(now, tz=ZONE).date()
    weeks = []
    for back in range(count - 1, -1, -1):
        year, week, _ = (today - datetime.timedelta(weeks=back)).isocalendar()
        weeks.append((year, week))
    return weeks


def per_week(
    facts: Sequence[tuple[int, str]], weeks: Sequence[tuple[int, int]]
) -> dict[str, tuple[int, ...]]:
    """For each code, how many facts ``(at, code)`` fell in each of ``weeks``; codes with
    none in those weeks are left out."""
    position = {week: index for index, week in enumerate(weeks)}
    counts: dict[str, list[int]] = {}
    for at, code in facts:
        index = position.get(iso_week(at))
        if index is not None:
            counts.setdefault(code, [0] * len(weeks))[index] += 1
    return {code: tuple(values) for code, values in sorted(counts.items())}


@dataclass(frozen=True, slots=True)
class Funnel:
    """How many referrals reached each step of :data:`FUNNEL`, the median working days
    from the step before (None: no referral made that step yet), and how many were declined."""

    reached: tuple[int, ...]
    median_days: tuple[float | None, ...]
    declined: int


def funnel(referrals: Sequence[ReferralFact]) -> Funnel:
    steps: list[Callable[[ReferralFact], int | None]] = [
        lambda r: r.sent,
        lambda r: r.accepted,
        lambda r: r.care_started,
        lambda r: r.closed,
    ]
    reached = tuple(sum(1 for r in referrals if step(r) is not None) for step in steps)
    medians: list[float | None] = [None]
    for before, after in itertools.pairwise(steps):
        spans = [
            working_days_between(start, end)
            for r in referrals
            if (start := before(r)) is not None and (end := after(r)) is not None
        ]
        medians.append(statistics.median(spans) if spans else None)
    return Funnel(reached, tuple(medians), sum(1 for r in referrals if r.declined is not None))


def age_band(days: float) -> int:
    """The index in :data:`AGE_BANDS` of an age in working days (whole days passed)."""
    whole = int(days)
    for index, (low, high) in enumerate(AGE_BANDS):
        if whole >= low and (high is None or whole <= high):
            return index
    return len(AGE_BANDS) - 1


def open_by_age(rows: Sequence[ReferralRow], now: float) -> tuple[int, ...]:
    counts = Counter(age_band(working_days_between(int(now) - r.age, int(now))) for r in rows)
    return tuple(counts.get(index, 0) for index in range(len(AGE_BANDS)))


# -- the charts, in the person's language ---------------------------------------------------


def overview_charts(
    data: OverviewData, now: float, _: Callable[[str], str], decimal: Callable[[float], str]
) -> list[Chart]:
    weeks = last_weeks(now)
    week_names = tuple(_("week %(week)s") % {"week": w} for _y, w in weeks)
    week_head = tuple(f"{y}-W{w:02d}" for y, w in weeks)
    by_type = per_week([(s.at, s.org_type) for s in data.signals], weeks)
    by_form = per_week([(s.at, s.exploitation) for s in data.signals], weeks)
    shown = sum(sum(v) for v in by_type.values())
    made = [
        _weekly(
            "signalen-type",
            _("Signals per week, by type of organisation"),
            {_(vocabulary.ORG_TYPES.get(k, "Other")): v for k, v in by_type.items()},
            week_names,
            week_head,
            shown,
            _,
        ),
        _weekly(
            "signalen-uitbuiting",
            _("Signals per week, by form of exploitation"),
            {_(vocabulary.EXPLOITATION.get(k, "Not known yet")): v for k, v in by_form.items()},
            week_names,
            week_head,
            shown,
            _,
        ),
        _funnel_chart(funnel(data.referrals), _, decimal),
        _age_chart(open_by_age(data.open_referrals, now), _),
    ]
    return made


def _weekly(
    name: str,
    title: str,
    series: dict[str, tuple[int, ...]],
    week_names: tuple[str, ...],
    week_head: tuple[str, ...],
    shown: int,
    _: Callable[[str], str],
) -> Chart:
    labels = tuple(series)
    rows = tuple(
        (week_head[i], *(str(series[label][i]) for label in labels),
         str(sum(series[label][i] for label in labels)))
        for i in range(len(week_head))
    )  # fmt: skip
    summary = _(
        "Stacked bar chart: %(count)s signals received in the last %(weeks)s weeks, one bar "
        "per week; the figures are in the table below the chart."
    ) % {"count": shown, "weeks": len(week_names)}
    return Chart(
        name,
        title,
        summary,
        (_("Week"), *labels, _("Total")),
        rows,
        week_names,
        tuple(series.items()),
        _("Signals"),
    )


def _days(value: float | None, _: Callable[[str], str], decimal: Callable[[float], str]) -> str:
    if value is None:
        return NO_VALUE
    return _("%(days)s working days") % {"days": decimal(value)}


def _funnel_chart(
    result: Funnel, _: Callable[[str], str], decimal: Callable[[float], str]
) -> Chart:
    names = tuple(_(vocabulary.STEPS[step]) for step in FUNNEL)
    notes = tuple("" if m is None else _days(m, _, decimal) for m in result.median_days)
    rows = tuple(
        (name, str(count), _days(median, _, decimal))
        for name, count, median in zip(names, result.reached, result.median_days, strict=True)
    )
    rows += ((_(vocabulary.STEPS["declined"]), str(result.declined), NO_VALUE),)
    summary = _(
        "Bar chart: of %(sent)s referrals sent, %(accepted)s were accepted, care started for "
        "%(started)s and %(closed)s were closed; over each bar the median number of working "
        "days since the step before. The figures are in the table below the chart."
    ) % {
        "sent": result.reached[0],
        "accepted": result.reached[1],
        "started": result.reached[2],
        "closed": result.reached[3],
    }
    return Chart(
        "verwijzingen",
        _("Referrals: how far they got, and how long each step took"),
        summary,
        (_("Step"), _("Referrals"), _("Median time since the step before")),
        rows,
        names,
        (("", result.reached),),
        _("Referrals"),
        notes,
    )


def _age_chart(counts: tuple[int, ...], _: Callable[[str], str]) -> Chart:
    names = tuple(
        _("%(low)s to %(high)s") % {"low": low, "high": high}
        if high is not None
        else _("more than %(days)s") % {"days": low - 1}
        for low, high in AGE_BANDS
    )
    summary = _(
        "Bar chart: %(count)s open referrals by the working days since they were sent; the "
        "figures are in the table below the chart."
    ) % {"count": sum(counts)}
    return Chart(
        "open-verwijzingen",
        _("Open referrals by age (working days since sent)"),
        summary,
        (_("Working days since sent"), _("Open referrals")),
        tuple((name, str(count)) for name, count in zip(names, counts, strict=True)),
        names,
        (("", counts),),
        _("Open referrals"),
    )


# -- the pages -----------------------------------------------------------------------------


async def _data(request: web.Request) -> OverviewData:
    """This person's overview figures, kept :data:`KEEP_SECONDS` for the page's images."""
    s = services(request)
    person = person_of(request).id
    kept = s.overview_cache.get(person)
    if kept is not None and s.clock() - kept[0] < KEEP_SECONDS:
        return kept[1]
    with acting(request, PURPOSE):
        data = await s.library.overview()
    for stale in [p for p, (at, _) in s.overview_cache.items() if s.clock() - at >= KEEP_SECONDS]:
        del s.overview_cache[stale]
    s.overview_cache[person] = (s.clock(), data)
    return data


def _decimal(request: web.Request) -> Callable[[float], str]:
    return Formats(session_of(request).locale).decimal


@coordinator
async def overview(request: web.Request) -> web.StreamResponse:
    data = await _data(request)
    now = services(request).clock()
    return render(
        request,
        "overview.html",
        charts=overview_charts(data, now, gettext(request), _decimal(request)),
        signals=len(data.signals),
        weeks=WEEKS,
    )


@coordinator
async def chart(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in CHART_NAMES:
        raise web.HTTPNotFound()
    data = await _data(request)
    made = overview_charts(data, services(request).clock(), gettext(request), _decimal(request))
    drawn = next(c for c in made if c.name == name).svg()
    return web.Response(
        body=drawn,
        content_type="image/svg+xml",
        headers={"Content-Security-Policy": SVG_POLICY},
    )


def routes() -> list[web.RouteDef]:
    return [
        web.get("/overzicht", overview),
        web.get("/overzicht/{name}.svg", chart),
    ]
