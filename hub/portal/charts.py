"""Charts on the portal's pages, drawn by :mod:`disclosure_control.charts` in the reader's language.

The SVG is made on the server and embedded in the page (no script, no CDN); the page keeps the
numbers beside it as a table and a CSV download, the chart's accessible alternative.
"""

from __future__ import annotations

from typing import Any

from flask_babel import gettext
from markupsafe import Markup

from disclosure_control.charts import ChartRow, interval_bar_chart

#: Measures whose cells are drawn as bars from zero (a quantile is not an amount).
CHARTED_MEASURES = frozenset({"count", "sum", "mean"})


def answer_chart(answer: dict[str, Any], figure_id: str = "answer-chart") -> Markup | None:
    """Return the SVG chart of a researcher's answer grouped by one field, else None.

    :param answer: the stored answer (released values only): ``group_by``, ``measure`` and
        ``cells`` with ``key``, ``value`` and ``interval`` (a cell without a value was
        suppressed).
    """
    group_by = answer.get("group_by") or []
    if len(group_by) != 1 or answer.get("measure") not in CHARTED_MEASURES:
        return None
    field = group_by[0]
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
    return Markup(svg)  # noqa: S704
