"""Charts of released numbers: Vega-Lite specifications rendered to SVG on the server.

The specifications are plain dictionaries (Vega-Lite, a maintained grammar of graphics) and
vl-convert renders them to SVG in-process, without a browser or a network: a page embeds the
SVG as it is, so charts work on a closed network and without script. Every mark carries a
``description`` (its ``aria-label`` in the SVG) naming its category and its exact number, so the
drawing can be read back and checked against the table beside it.

A DP table's chart draws each released value as a bar with its 95% interval as a whisker. A
suppressed cell (nothing released) is drawn as no bar at all and marked "suppressed" in its
place: a zero would be a number the hub never released.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import vl_convert

__all__ = [
    "PALETTE",
    "ChartRow",
    "choropleth",
    "choropleth_spec",
    "interval_bar_chart",
    "interval_bar_spec",
    "render_svg",
    "rows_csv",
]

#: The Vega-Lite version the specifications are written for (bundled in vl-convert).
VEGA_LITE_VERSION = "5.21"
#: Colours of series, in order (colour-blind safe, Okabe-Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
SUPPRESSED = "suppressed"
_SVG_OPEN = re.compile(r"^<svg\b([^>]*)>")


@dataclass(frozen=True, slots=True)
class ChartRow:
    """One cell of a released table, as charted.

    :param label: the category, as the reader sees it.
    :param value: the released value; None if the cell was suppressed (nothing released).
    :param interval: its 95% interval, if the release has one.
    """

    label: str
    value: float | None
    interval: tuple[float, float] | None = None

    @property
    def suppressed(self) -> bool:
        """Tell whether nothing was released for this cell."""
        return self.value is None or (isinstance(self.value, float) and math.isnan(self.value))

    def description(self) -> str:
        """Say what the cell's mark shows, with exact numbers: its accessible name.

        >>> ChartRow("2019", 12.0, (3.5, 20.5)).description(), ChartRow("2020", None).description()
        ('2019: 12.0 (95% interval 3.5 to 20.5)', '2020: suppressed')
        """
        if self.suppressed:
            return f"{self.label}: {SUPPRESSED}"
        text = f"{self.label}: {_number(self.value)}"
        if self.interval is not None:
            text += f" (95% interval {_number(self.interval[0])} to {_number(self.interval[1])})"
        return text


def render_svg(spec: dict[str, Any], *, figure_id: str, title: str) -> str:
    """Render a Vega-Lite specification to a standalone SVG element, labelled for readers.

    The root element gets ``id``, ``role="img"``, an ``aria-label`` and a ``<title>``; the
    closing tag stands on its own line (a Markdown HTML block ends there).

    >>> spec = {"data": {"values": [{"v": 1}]}, "mark": "bar",
    ...         "encoding": {"y": {"field": "v", "type": "quantitative"}}}
    >>> svg = render_svg(spec, figure_id="f", title="A & B")
    >>> svg.startswith('<svg xmlns="http://www.w3.org/2000/svg"'), 'aria-label="A &amp; B"' in svg
    (True, True)
    """
    raw = vl_convert.vegalite_to_svg(json.dumps(spec), vl_version=VEGA_LITE_VERSION).strip()
    opening = _SVG_OPEN.match(raw)
    if opening is None or not raw.endswith("</svg>"):  # pragma: no cover - vl-convert's contract
        raise ValueError("vl-convert returned something other than one SVG element")
    attributes = opening.group(1).replace(' class="marks"', "")
    head = (
        f'<svg{attributes} id={quoteattr(figure_id)} role="img" '
        f"aria-label={quoteattr(title)}><title>{escape(title)}</title>"
    )
    body = raw[opening.end() : -len("</svg>")].replace("\n", " ")
    return f"{head}{body}\n</svg>"


def _number(value: float | None) -> str:
    return "" if value is None else repr(value)


def _drawn(values: Sequence[dict[str, Any]], released: list[Any], suppressed: Any) -> list[Any]:
    """Return the layers that draw something.

    An empty layer's mark container has no name, so screen readers (and axe-core's
    svg-img-alt) would meet an unlabelled graphic.
    """
    statuses = {value["status"] for value in values}
    layers = list(released) if "released" in statuses else []
    return layers + [suppressed] if SUPPRESSED in statuses else layers


def interval_bar_spec(
    rows: Sequence[ChartRow], *, title: str, category_label: str, measure_label: str
) -> dict[str, Any]:
    """Return the Vega-Lite specification of a released table's bar chart with 95% whiskers.

    :param rows: the cells in the order to draw them.
    :param title: the chart's title.
    :param category_label: the x axis's label (the grouping field).
    :param measure_label: the y axis's label (what was released, e.g. "count of case records").
    """
    values = []
    for row in rows:
        low, high = row.interval if row.interval is not None else (None, None)
        description = row.description()
        values.append(
            {
                "label": row.label,
                "value": None if row.suppressed else row.value,
                "low": None if row.suppressed else low,
                "high": None if row.suppressed else high,
                "status": SUPPRESSED if row.suppressed else "released",
                "description": description,
                "whisker": f"{row.label}: 95% interval {_number(low)} to {_number(high)}",
            }
        )
    x = {
        "field": "label",
        "type": "nominal",
        "sort": None,
        "title": category_label,
        "axis": {"labelAngle": -30, "labelLimit": 140},
        "scale": {"domain": [row.label for row in rows]},
    }
    released = {"filter": "datum.status === 'released'"}
    return {
        "$schema": f"https://vega.github.io/schema/vega-lite/v{VEGA_LITE_VERSION}.json",
        "title": title,
        "width": max(240, 48 * len(rows)),
        "height": 240,
        "background": "white",
        "config": {"font": "sans-serif", "view": {"stroke": None}},
        "data": {"values": values},
        "encoding": {"x": x},
        "layer": _drawn(
            values,
            [
                {
                    "transform": [released],
                    "mark": {"type": "bar", "color": PALETTE[0]},
                    "encoding": {
                        "y": {"field": "value", "type": "quantitative", "title": measure_label},
                        "description": {"field": "description"},
                    },
                },
                # Whiskers only where some released value has an interval (an exact table has
                # none): an empty layer would be an unlabelled graphic.
                *(
                    [
                        {
                            "transform": [released, {"filter": "isValid(datum.low)"}],
                            "mark": {"type": "errorbar", "ticks": True, "color": "#333333"},
                            "encoding": {
                                "y": {
                                    "field": "low",
                                    "type": "quantitative",
                                    "title": measure_label,
                                },
                                "y2": {"field": "high"},
                                "description": {"field": "whisker"},
                            },
                        }
                    ]
                    if any(v["low"] is not None for v in values)
                    else []
                ),
            ],
            {
                "transform": [{"filter": f"datum.status === '{SUPPRESSED}'"}],
                "mark": {
                    "type": "text",
                    "angle": 270,
                    "align": "left",
                    "dx": 4,
                    "color": "#555555",
                    "fontStyle": "italic",
                },
                "encoding": {
                    "y": {"datum": 0, "type": "quantitative"},
                    "text": {"value": SUPPRESSED},
                    "description": {"field": "description"},
                },
            },
        ),
    }


def interval_bar_chart(
    rows: Sequence[ChartRow],
    *,
    title: str,
    category_label: str,
    measure_label: str,
    figure_id: str,
) -> str:
    """Draw a released table as bars with 95% whiskers (SVG); suppressed cells marked so.

    >>> svg = interval_bar_chart(
    ...     [ChartRow("2019", 120.0, (110.5, 129.5)), ChartRow("2020", None)],
    ...     title="Case records by year", category_label="year",
    ...     measure_label="count", figure_id="by-year")
    >>> 'aria-label="2019: 120.0 (95% interval 110.5 to 129.5)"' in svg
    True
    >>> 'aria-label="2020: suppressed"' in svg, '>suppressed</text>' in svg
    (True, True)
    """
    spec = interval_bar_spec(
        rows, title=title, category_label=category_label, measure_label=measure_label
    )
    return render_svg(spec, figure_id=figure_id, title=title)


def rows_csv(rows: Sequence[ChartRow], *, category_label: str, measure_label: str) -> str:
    """Write a chart's numbers as CSV: category, value, 95% interval, and whether suppressed.

    >>> print(rows_csv([ChartRow("a", 3.0, (1.0, 5.0)), ChartRow("b", None)],
    ...                category_label="year", measure_label="count"), end="")
    year,count,95% lower,95% upper,status
    a,3.0,1.0,5.0,released
    b,,,,suppressed
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([category_label, measure_label, "95% lower", "95% upper", "status"])
    for row in rows:
        low, high = (
            row.interval if row.interval is not None and not row.suppressed else (None, None)
        )
        writer.writerow(
            [
                row.label,
                "" if row.suppressed else _number(row.value),
                _number(low),
                _number(high),
                SUPPRESSED if row.suppressed else "released",
            ]
        )
    return out.getvalue()


def choropleth_spec(
    rows: Sequence[ChartRow],
    topology: dict[str, Any],
    *,
    ids: dict[str, str],
    title: str,
    measure_label: str,
    feature: str = "countries",
) -> dict[str, Any]:
    """Return the Vega-Lite specification of a world map shaded by a released country table.

    :param rows: one per country; ``label`` is the country's name as the reader sees it.
    :param topology: a TopoJSON topology whose ``feature`` object holds the countries, each with
        an ``id`` (e.g. Natural Earth's world-atlas: ISO 3166-1 numeric codes).
    :param ids: the topology id of each row's label (a country the map lacks is left out of
        the map, and stays in the table beside it).
    :param title: the map's title.
    :param measure_label: what the shading shows (the legend's title).
    """
    values = []
    for row in rows:
        if row.label not in ids:
            continue
        low, high = row.interval if row.interval is not None else (None, None)
        description = row.description()
        values.append(
            {
                "id": ids[row.label],
                "value": None if row.suppressed else row.value,
                "status": SUPPRESSED if row.suppressed else "released",
                "description": description,
            }
        )
    lookup = {
        "lookup": "id",
        "from": {
            "data": {"values": values},
            "key": "id",
            "fields": ["value", "status", "description"],
        },
    }
    shape = {"type": "geoshape", "stroke": "white", "strokeWidth": 0.5}
    return {
        "$schema": f"https://vega.github.io/schema/vega-lite/v{VEGA_LITE_VERSION}.json",
        "title": title,
        "width": 640,
        "height": 340,
        "background": "white",
        "config": {"font": "sans-serif", "view": {"stroke": None}},
        "projection": {"type": "equalEarth"},
        "data": {"values": topology, "format": {"type": "topojson", "feature": feature}},
        "layer": [
            # Countries the table does not hold: the map's background, not figures.
            {"mark": {**shape, "fill": "#eeeeee", "aria": False}},
            *_drawn(
                values,
                [
                    {
                        "transform": [lookup, {"filter": "datum.status === 'released'"}],
                        "mark": shape,
                        "encoding": {
                            "color": {
                                "field": "value",
                                "type": "quantitative",
                                "title": measure_label,
                                "scale": {"scheme": "blues", "zero": True},
                            },
                            "description": {"field": "description"},
                        },
                    },
                ],
                {
                    # Suppressed: a hatch-like dark grey with a dashed outline, never a zero shade.
                    "transform": [lookup, {"filter": f"datum.status === '{SUPPRESSED}'"}],
                    "mark": {**shape, "fill": "#777777", "stroke": "#222222", "strokeDash": [2, 2]},
                    "encoding": {"description": {"field": "description"}},
                },
            ),
        ],
    }


def choropleth(
    rows: Sequence[ChartRow],
    topology: dict[str, Any],
    *,
    ids: dict[str, str],
    title: str,
    measure_label: str,
    figure_id: str,
) -> str:
    """Draw a world map shaded by a released country table (SVG); suppressed ones marked.

    See :func:`choropleth_spec` for the parameters.
    """
    spec = choropleth_spec(rows, topology, ids=ids, title=title, measure_label=measure_label)
    return render_svg(spec, figure_id=figure_id, title=title)
