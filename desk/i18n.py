"""Languages: Dutch by default, English as a person's choice; Dutch dates and times.

Message ids are English; ``desk/locale/nl/LC_MESSAGES/desk.po`` holds the Dutch. The
catalogue is compiled in memory when the desk starts (Babel's reader and writer), so no
build step and no compiled file exists; ``python -m desk.catalog`` brings the ``.po``
up to date with the templates and code after a change, and a test fails while any
message lacks its Dutch.

Times are shown in the Netherlands' time zone (``Europe/Amsterdam``), in the person's
language: "3 december 2026, 16:47", "2 uur geleden".
"""

from __future__ import annotations

import datetime
import io
from collections.abc import Callable
from functools import cache
from importlib import resources
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations

DOMAIN = "desk"
DEFAULT_LOCALE = "nl"
LOCALES = ("nl", "en")
ZONE = ZoneInfo("Europe/Amsterdam")


def N_(message: str) -> str:
    """Mark ``message`` for the catalogue; it is translated where it is shown."""
    return message


def po_path(locale: str) -> str:
    return f"locale/{locale}/LC_MESSAGES/{DOMAIN}.po"


@cache
def translations(locale: str) -> NullTranslations:
    """The compiled catalogue of ``locale`` (English: the message ids themselves)."""
    if locale not in LOCALES:
        locale = DEFAULT_LOCALE
    if locale == "en":
        return NullTranslations()
    source = resources.files("desk").joinpath(po_path(locale))
    with source.open("rb") as handle:
        catalog = read_po(handle, locale=locale, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


def gettext_for(locale: str) -> Callable[[str], str]:
    return translations(locale).gettext


class Formats:
    """Dates, times and durations in one language."""

    def __init__(self, locale: str) -> None:
        self.locale = Locale.parse(locale if locale in LOCALES else DEFAULT_LOCALE)

    def datetime(self, seconds: int | None) -> str:
        if seconds is None:
            return ""
        moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
        return format_datetime(moment, "d MMMM y, HH:mm", tzinfo=ZONE, locale=self.locale)

    def date(self, seconds: int | None) -> str:
        if seconds is None:
            return ""
        moment = datetime.datetime.fromtimestamp(seconds, tz=ZONE).date()
        return format_date(moment, "d MMMM y", locale=self.locale)

    def iso_date(self, value: str | None) -> str:
        """A payload's ``YYYY-MM-DD`` in words; the text itself if it is not a date."""
        if not value:
            return ""
        try:
            day = datetime.date.fromisoformat(value)
        except ValueError:
            return value
        return format_date(day, "d MMMM y", locale=self.locale)

    def ago(self, seconds: int | None, now: float) -> str:
        if seconds is None:
            return ""
        delta = datetime.timedelta(seconds=seconds - now)
        return format_timedelta(delta, add_direction=True, locale=self.locale)

    def decimal(self, value: float) -> str:
        """A number with one decimal, as this language writes it (1,5 in Dutch)."""
        return format_decimal(value, format="0.0", locale=self.locale)

    def duration(self, seconds: int) -> str:
        return format_timedelta(datetime.timedelta(seconds=seconds), locale=self.locale)

    def country(self, code: str | None) -> str:
        """A country's name in this language, from its ISO 3166 alpha-2 or alpha-3 code."""
        if not code:
            return ""
        from desk.vocabulary import alpha2

        two = alpha2(code)
        name = self.locale.territories.get(two) if two else None
        return f"{name} ({code.upper()})" if name else code.upper()
