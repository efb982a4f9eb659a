"""Charts on the portal's pages, drawn by :mod:`disclosure_control.charts` in the reader's language.

The SVG is made on the server and embedded in the page (no script, no CDN); the page keeps the
numbers beside it as a table and a CSV download, the chart's accessible alternative.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from flask_babel import gettext
from markupsafe import Markup

from contributors.schema import load_countries, load_schema
from disclosure_control.charts import ChartRow, choropleth, interval_bar_chart
from hub.portal.i18n import country_name, current_language

#: The world map's geometry: Natural Earth 1:110m countries (TopoJSON of the npm package
#: world-atlas), fetched once by ``make assets`` (pinned, sha-256 checked) and served by the hub.
WORLD_ATLAS = (
    Path(__file__).resolve().parents[1] / "static/portal/vendor/world-atlas/countries-110m.json"
)

#: Measures whose cells are drawn as bars from zero (a quantile is not an amount).
CHARTED_MEASURES = frozenset({"count", "sum", "mean"})


@dataclass(frozen=True)
class PageChart:
    """A chart for a page: ``bars`` (with whiskers) or a ``map``, and its SVG."""

    kind: Literal["bars", "map"]
    svg: Markup


@functools.cache
def world_topology() -> dict[str, Any]:
    """Return the world map's TopoJSON topology (read once).

    :raises FileNotFoundError: naming the fix, when ``make assets`` has not fetched it.
    """
    if not WORLD_ATLAS.is_file():
        raise FileNotFoundError(
            f"the world map's geometry is missing at {WORLD_ATLAS}: run `make assets`"
        )
    topology: dict[str, Any] = json.loads(WORLD_ATLAS.read_text(encoding="utf-8"))
    return topology


@functools.cache
def _map_ids() -> dict[str, str]:
    # ISO 3166-1 alpha-2 (the schema's country codes) -> numeric (world-atlas's feature ids).
    countries = load_countries()
    return dict(zip(countries["alpha2"], countries["numeric"], strict=True))


@functools.cache
def country_fields() -> frozenset[str]:
    """Return the record schema's fields coded by the country list (charted as a map)."""
    countries = set(_map_ids())
    return frozenset(
        spec.name for spec in load_schema().fields if set(spec.codes or ()) == countries
    )


def answer_chart(answer: dict[str, Any], figure_id: str = "answer-chart") -> PageChart | None:
    """Return the chart of a researcher's answer grouped by one field (a map for a country).

    :param answer: the stored answer (released values only): ``group_by``, ``measure`` and
        ``cells`` with ``key``, ``value`` and ``interval`` (a cell without a value was
        suppressed).
    """
    group_by = answer.get("group_by") or []
    if len(group_by) != 1 or answer.get("measure") not in CHARTED_MEASURES:
        return None
    field = group_by[0]
    if field in country_fields():
        return PageChart("map", _country_map(answer, field, figure_id))
    rows = []
    for cell in answer.get("cells", []):
        code = cell["key"].get(field)
        interval = cell.get("interval")
        rows.append(
            ChartRow(
                gettext("missing") if code is None else str(code),
                None if cell.get("value") is None else float(cell["value"]),
                None if not interval else (float(interval[0]), float(interval[1])),
            )
        )
    if not rows:
        return None
    svg = interval_bar_chart(
        rows,
        title=gettext("Released values with their 95% intervals"),
        category_label=field,
        measure_label=str(answer["measure"]),
        figure_id=figure_id,
    )
    # The SVG is our renderer's output; vl-convert escapes every text and attribute it writes.
    return PageChart("bars", Markup(svg))  # noqa: S704


def _country_map(answer: dict[str, Any], field: str, figure_id: str) -> Markup:
    rows, ids = [], {}
    numeric = _map_ids()
    for cell in answer.get("cells", []):
        code = cell["key"].get(field)
        if code is None or code not in numeric:
            continue  # a missing country is in the table; the map has no place for it
        name = country_name(code, current_language())
        ids[name] = numeric[code]
        interval = cell.get("interval")
        rows.append(
            ChartRow(
                name,
                None if cell.get("value") is None else float(cell["value"]),
                None if not interval else (float(interval[0]), float(interval[1])),
            )
        )
    svg = choropleth(
        rows,
        world_topology(),
        ids=ids,
        title=gettext("Released values by country"),
        measure_label=str(answer["measure"]),
        figure_id=figure_id,
    )
    return Markup(svg)  # noqa: S704  # vl-convert escapes every text and attribute it writes
