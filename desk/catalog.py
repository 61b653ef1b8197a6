"""``python -m desk.catalog``: bring the desk's ``.po`` files up to date with the code.

Extracts every message from the desk's Python (``N_``, ``_``, ``gettext``, ``ngettext``)
and templates (Jinja2's i18n extension), and merges them into
``desk/locale/<locale>/LC_MESSAGES/desk.po``: new messages appear untranslated, gone ones
are dropped, translations are kept. Then translate what is new; the tests fail while any
message lacks its Dutch. ``--check`` only reports, and exits 1 when the catalogue is not
up to date.
"""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

HERE = Path(__file__).resolve().parent
METHODS = [("**.py", "python"), ("templates/**.html", "jinja2")]
OPTIONS = {"templates/**.html": {"extensions": "jinja2.ext.i18n", "newstyle_gettext": "true"}}
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}


def extracted() -> Catalog:
    """Every message the code and templates use (message id -> where)."""
    catalog = Catalog(domain="desk")
    for filename, lineno, message, _comments, context in extract_from_dir(
        HERE, METHODS, OPTIONS, KEYWORDS, strip_comment_tags=True
    ):
        catalog.add(message, None, [(filename, lineno)], context=context)
    return catalog


def po_file(locale: str) -> Path:
    return HERE / "locale" / locale / "LC_MESSAGES" / "desk.po"


def missing(locale: str = "nl") -> list[str]:
    """Message ids the code uses that the catalogue does not translate."""
    with po_file(locale).open("rb") as handle:
        known = read_po(handle, locale=locale)
    wanted = extracted()
    gaps = []
    for message in wanted:
        if not message.id:
            continue
        have = known.get(message.id)
        strings = have.string if have is not None else None
        texts = strings if isinstance(strings, (list, tuple)) else [strings]
        if have is None or have.fuzzy or not all(texts):
            gaps.append(message.id if isinstance(message.id, str) else message.id[0])
    return gaps


def update(locale: str = "nl") -> None:
    path = po_file(locale)
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=locale)
    catalog.update(extracted(), no_fuzzy_matching=True)
    with path.open("wb") as handle:
        write_po(
            handle,
            catalog,
            width=100,
            omit_header=False,
            sort_output=True,
            ignore_obsolete=True,
            include_lineno=False,
        )


def main(argv: list[str]) -> int:
    if "--check" in argv:
        gaps = missing()
        for gap in gaps:
            print(f"untranslated: {gap!r}")
        return 1 if gaps else 0
    update()
    gaps = missing()
    print(f"desk.po updated; {len(gaps)} message(s) still need Dutch")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
