"""Charts drawn on the server as SVG, with matplotlib (no JavaScript in the browser).

matplotlib is the charting library of the scientific Python world, kept by a large team
under NumFOCUS with regular releases; its SVG backend needs no display and no native
toolkit. Only its object API is used (:class:`matplotlib.figure.Figure`, never
``pyplot``), so that nothing global is shared between requests.

Text in a chart is written as SVG ``<text>`` (``svg.fonttype`` ``none``), escaped by the
backend like any XML text: a label can never become markup. The SVG holds no script and
no link; the desk serves it as ``image/svg+xml`` under its own strict policy, and pages
show it with ``<img>`` next to a table of the same figures (the text alternative).

Each function takes plain values (labels already in the person's language) and returns
the SVG's bytes; the same values always give the same bytes (no date, fixed ids).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib
from matplotlib.figure import Figure

# Okabe and Ito's palette: told apart by people with any common colour vision deficiency.
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
HATCHES = ("", "//", "..", "xx", "\\\\", "++", "oo", "--")  # a second cue besides colour
_STYLE: dict[Any, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "schakel-desk",
    "font.family": "DejaVu Sans",
    "font.size": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
WIDTH, HEIGHT = 8.0, 4.2  # inches; the page scales the image to its column


def stacked_bars(
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[int]]],
    *,
    title: str,
    y_label: str,
) -> bytes:
    """Vertical bars per category, stacked by series (each ``(label, one value per
    category)``), with a legend."""
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(WIDTH, HEIGHT))
        axes = figure.add_subplot()
        bottom = [0] * len(categories)
        positions = list(range(len(categories)))
        for index, (label, values) in enumerate(series):
            axes.bar(
                positions,
                values,
                bottom=bottom,
                label=label,
                color=COLOURS[index % len(COLOURS)],
                hatch=HATCHES[index % len(HATCHES)],
                edgecolor="white",
                linewidth=0.5,
            )
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        axes.set_xticks(positions, list(categories), rotation=45, ha="right")
        _finish(figure, axes, title, y_label)
        if series:
            axes.legend(frameon=False, fontsize=9, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return _svg(figure)


def bars(
    categories: Sequence[str],
    values: Sequence[int],
    *,
    title: str,
    y_label: str,
    notes: Sequence[str] = (),
) -> bytes:
    """One bar per category; ``notes`` (one per category, may be empty) are written above
    the bars."""
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(WIDTH, HEIGHT))
        axes = figure.add_subplot()
        positions = list(range(len(categories)))
        drawn = axes.bar(positions, values, color=COLOURS[0], edgecolor="white")
        if notes:
            axes.bar_label(drawn, labels=list(notes), padding=3, fontsize=9)
        axes.set_xticks(positions, list(categories))
        axes.margins(y=0.2)
        _finish(figure, axes, title, y_label)
        return _svg(figure)


def _finish(figure: Figure, axes: object, title: str, y_label: str) -> None:
    axes.set_title(title, loc="left", fontsize=12)  # type: ignore[attr-defined]
    axes.set_ylabel(y_label)  # type: ignore[attr-defined]
    axes.yaxis.get_major_locator().set_params(integer=True)  # type: ignore[attr-defined]
    figure.set_layout_engine("constrained")


def _svg(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return buffer.getvalue()
