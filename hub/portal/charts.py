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


def code_label(field: str, code: str | None) -> str:
    """Return how a page shows one code of a field: a flag set by its flags' titles.

    A derived flag-set attribute (e.g. ``exploitationType``) holds the names of the flags
    recorded for the case, joined by its separator; each is shown by its field's title.
    """
    if code is None or code == "":
        return str(gettext("missing"))
    if field in country_fields():
        return country_name(code, current_language())
    attribute = _flag_sets().get(field)
    if attribute is None:
        return code
    separator, none_value = attribute
    if code == none_value:
        return str(gettext("none recorded"))
    schema = load_schema()
    names = code.split(separator)
    if not all(name in schema for name in names):
        return code
    return " + ".join(gettext(schema.field(name).title) for name in names)


@functools.cache
def _flag_sets() -> dict[str, tuple[str, str]]:
    # A flag-set attribute's separator and "none" value, by name (from the record schema).
    found = {}
    for entry in load_schema().as_dict().get("ctdhub:derivedAttributes", []):
        derivation = entry.get("ctdhub:derivation", {})
        if derivation.get("kind") == "flagSet":
            found[str(entry["name"])] = (str(derivation["separator"]), str(derivation["noneValue"]))
    return found


def _cell_label(group_by: list[str], key: dict[str, Any]) -> str:
    return ", ".join(code_label(field, key.get(field)) for field in group_by)


def chartable(group_by: list[str]) -> bool:
    """Tell whether a table grouped by these fields is charted.

    One field (a country as a map), or two of which neither is a country: a country crossed
    with another field has too many cells to read as bars.
    """
    return len(group_by) == 1 or (len(group_by) == 2 and not country_fields() & set(group_by))


def answer_chart(
    answer: dict[str, Any],
    figure_id: str = "answer-chart",
    *,
    title: str | None = None,
    measure_label: str | None = None,
) -> PageChart | None:
    """Return the chart of a table of released values (a world map for one country field).

    Only a :func:`chartable` table is charted.

    :param answer: the released table (released values only): ``group_by``, ``measure`` and
        ``cells`` with ``key``, ``value`` and ``interval`` (a cell without a value was
        suppressed).
    :param title: the chart's title (by default it says what is drawn).
    :param measure_label: what the values are (by default the measure's name).
    """
    group_by = list(answer.get("group_by") or [])
    if answer.get("measure") not in CHARTED_MEASURES or not chartable(group_by):
        return None
    measure = measure_label or str(answer["measure"])
    if len(group_by) == 1 and group_by[0] in country_fields():
        return PageChart("map", _country_map(answer, group_by[0], figure_id, title, measure))
    rows = []
    for cell in answer.get("cells", []):
        interval = cell.get("interval")
        rows.append(
            ChartRow(
                _cell_label(group_by, cell["key"]),
                None if cell.get("value") is None else float(cell["value"]),
                None if not interval else (float(interval[0]), float(interval[1])),
            )
        )
    if not rows:
        return None
    svg = interval_bar_chart(
        rows,
        title=title or gettext("Released values with their 95% intervals"),
        category_label=" × ".join(group_by),
        measure_label=measure,
        figure_id=figure_id,
    )
    # The SVG is our renderer's output; vl-convert escapes every text and attribute it writes.
    return PageChart("bars", Markup(svg))  # noqa: S704


def _country_map(
    answer: dict[str, Any], field: str, figure_id: str, title: str | None, measure_label: str
) -> Markup:
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
        title=title or gettext("Released values by country"),
        measure_label=measure_label,
        figure_id=figure_id,
    )
    return Markup(svg)  # noqa: S704  # vl-convert escapes every text and attribute it writes
