"""Grouped bar charts for the readable evaluation report, drawn with Vega-Lite.

The report's charts are rendered by :mod:`disclosure_control.charts` (Vega-Lite specifications
rendered to SVG by vl-convert), the same library that draws the release pages' charts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from disclosure_control.charts import PALETTE, VEGA_LITE_VERSION, render_svg

__all__ = ["PALETTE", "grouped_bar_chart", "nice_ceiling"]


def nice_ceiling(value: float) -> float:
    """Return the smallest of 1, 2, 2.5 or 5 times a power of ten at or above ``value``.

    :param value: the largest value the axis must show.

    >>> nice_ceiling(0.137), nice_ceiling(0.25), nice_ceiling(7.0), nice_ceiling(0.0)
    (0.2, 0.25, 10.0, 1.0)
    """
    if not value > 0 or math.isinf(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if step * power >= value * (1 - 1e-12):
            return step * power
    return 10.0 * power  # unreachable: 10 x power always covers value


def _label(value: float, digits: int) -> str:
    """Format a bar's value label."""
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def grouped_bar_chart(
    title: str,
    groups: Sequence[str],
    series: Sequence[str],
    values: Sequence[Sequence[float]],
    *,
    y_label: str,
    figure_id: str,
    digits: int = 3,
) -> str:
    """Draw a grouped bar chart as a standalone SVG element.

    Every bar's ``aria-label`` reads ``series=<name>; group=<name>; value=<repr>`` (``repr`` of
    the exact value), so the figure's numbers can be read back from the document; a NaN value
    (not measured) is drawn as no bar and labelled "n/a".

    :param title: the chart's title.
    :param groups: the labels along the x axis.
    :param series: one label per bar in each group (the legend).
    :param values: ``values[s][g]`` is series ``s`` in group ``g``; NaN means not measured.
    :param y_label: the y axis's label.
    :param figure_id: the SVG element's ``id``.
    :param digits: decimals of the value labels.

    >>> svg = grouped_bar_chart("T", ["a"], ["s"], [[0.5]], y_label="y", figure_id="f")
    >>> svg.startswith('<svg xmlns="http://www.w3.org/2000/svg"')
    True
    >>> 'aria-label="series=s; group=a; value=0.5"' in svg
    True
    """
    if len(values) != len(series) or any(len(row) != len(groups) for row in values):
        raise ValueError("values must hold one row per series and one value per group")
    finite = [v for row in values for v in row if not math.isnan(v)]
    rows = []
    for s, name in enumerate(series):
        for g, group in enumerate(groups):
            value = float(values[s][g])
            measured = not math.isnan(value)
            rows.append(
                {
                    "series": name,
                    "group": group,
                    "value": value if measured else None,
                    "label": _label(value, digits),
                    "labelled": 0.0 if not measured else value,
                    "description": f"series={name}; group={group}; value={value!r}",
                }
            )
    color = {
        "field": "series",
        "type": "nominal",
        "sort": list(series),
        "title": None,
        "scale": {"domain": list(series), "range": list(PALETTE[: len(series)])},
        "legend": {"orient": "bottom", "direction": "horizontal"},
    }
    y_scale = {"domain": [0, nice_ceiling(max(finite, default=0.0))], "nice": False}
    spec: dict[str, Any] = {
        "$schema": f"https://vega.github.io/schema/vega-lite/v{VEGA_LITE_VERSION}.json",
        "title": title,
        "width": {"step": max(16, 72 // max(len(series), 1))},
        "height": 220,
        "background": "white",
        "config": {"font": "sans-serif", "view": {"stroke": None}},
        "data": {"values": rows},
        "encoding": {
            "x": {
                "field": "group",
                "type": "nominal",
                "sort": list(groups),
                "title": None,
                "axis": {"labelAngle": 0},
            },
            "xOffset": {"field": "series", "type": "nominal", "sort": list(series)},
        },
        "layer": [
            {
                "transform": [{"filter": "isValid(datum.value)"}],
                "mark": "bar",
                "encoding": {
                    "y": {
                        "field": "value",
                        "type": "quantitative",
                        "title": y_label,
                        "scale": y_scale,
                    },
                    "color": color,
                    "description": {"field": "description"},
                },
            },
            {
                "mark": {"type": "text", "baseline": "bottom", "dy": -2, "fontSize": 9},
                "encoding": {
                    "y": {"field": "labelled", "type": "quantitative", "scale": y_scale},
                    "text": {"field": "label"},
                },
            },
        ],
    }
    return render_svg(spec, figure_id=figure_id, title=title)
