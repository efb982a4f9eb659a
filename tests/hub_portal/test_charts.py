"""Charts of released tables: every drawn number is a released one, suppressed cells are marked.

The charts are Vega-Lite rendered to SVG by vl-convert (disclosure_control.charts); each bar's
``aria-label`` names its category and exact value, so the drawing is read back and compared
with the numbers it was given, and its CSV.
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET

import pytest

from disclosure_control.charts import (
    SUPPRESSED,
    ChartRow,
    choropleth,
    interval_bar_chart,
    rows_csv,
)
from hub.portal.charts import world_topology

SVG = "{http://www.w3.org/2000/svg}"
# A DP count table by year: released counts with 95% intervals, one cell suppressed, one whose
# interval reaches below zero (a released number may be small; it is drawn as released).
TABLE = [
    ChartRow("2016", 812.0, (790.4, 833.6)),
    ChartRow("2017", 1204.0, (1182.4, 1225.6)),
    ChartRow("2018", None),
    ChartRow("2019", 9.0, (-12.6, 30.6)),
]


def _chart() -> str:
    return interval_bar_chart(
        TABLE,
        title="Case records by year of registration",
        category_label="year",
        measure_label="count of case records",
        figure_id="by-year",
    )


def _marks(svg: str, kind: str) -> dict[str, str]:
    root = ET.fromstring(svg)  # noqa: S314  # our own renderer's output
    return {
        mark.attrib["aria-label"].split(": ")[0]: mark.attrib["aria-label"]
        for mark in root.iter()
        if mark.attrib.get("aria-roledescription") == kind
    }


def test_every_bar_is_a_released_value_with_its_interval() -> None:
    bars = _marks(_chart(), "bar")
    assert set(bars) == {"2016", "2017", "2019"}, "the suppressed cell has no bar"
    for row in TABLE:
        if row.value is None:
            continue
        assert row.interval is not None
        assert bars[row.label] == (
            f"{row.label}: {row.value!r} (95% interval {row.interval[0]!r} to {row.interval[1]!r})"
        )


def test_a_suppressed_cell_is_marked_not_drawn_as_zero() -> None:
    svg = _chart()
    root = ET.fromstring(svg)  # noqa: S314  # our own renderer's output
    texts = [t for t in root.iter(f"{SVG}text") if (t.text or "").strip() == SUPPRESSED]
    assert len(texts) == 1
    assert texts[0].attrib["aria-label"] == "2018: suppressed"
    assert "2018: 0" not in svg


def test_the_whiskers_span_each_interval() -> None:
    root = ET.fromstring(_chart())  # noqa: S314  # our own renderer's output
    bars = {
        m.attrib["aria-label"].split(": ")[0]: m
        for m in root.iter()
        if m.attrib.get("aria-roledescription") == "bar"
    }
    # Pixel heights are proportional to the values: 2017's bar is 1204/812 of 2016's.
    heights = {
        label: float(re.search(r"v(-?[\d.]+)", m.attrib["d"]).group(1))  # type: ignore[union-attr]
        for label, m in bars.items()
    }
    assert heights["2017"] / heights["2016"] == pytest.approx(1204 / 812, rel=0.01)
    whiskers = {
        m.attrib["aria-label"].split(": ")[0]: m
        for m in root.iter()
        if m.attrib.get("aria-roledescription") == "errorbar" and "aria-label" in m.attrib
    }
    assert set(whiskers) == {"2016", "2017", "2019"}
    for row in TABLE:
        if row.interval is None:
            continue
        low, high = row.interval
        whisker = whiskers[row.label]
        assert whisker.attrib["aria-label"] == f"{row.label}: 95% interval {low!r} to {high!r}"
        if row.label in heights:
            length = abs(float(whisker.attrib["y2"]))
            assert length / heights["2016"] == pytest.approx((high - low) / 812, rel=0.02)


def test_the_chart_and_its_csv_hold_the_same_numbers() -> None:
    text = rows_csv(TABLE, category_label="year", measure_label="count of case records")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["year"] for r in rows] == [row.label for row in TABLE]
    assert rows[2] == {
        "year": "2018",
        "count of case records": "",
        "95% lower": "",
        "95% upper": "",
        "status": SUPPRESSED,
    }
    bars = _marks(_chart(), "bar")
    for row in rows:
        if row["status"] == "released":
            assert (
                f": {row['count of case records']} (95% interval {row['95% lower']} to "
                in (bars[row["year"]])
            )


def test_labels_are_escaped_in_the_svg() -> None:
    svg = interval_bar_chart(
        [ChartRow('<script>"x"</script>', 1.0, (0.5, 1.5))],
        title="a <b> & c",
        category_label="field",
        measure_label="count",
        figure_id="escaped",
    )
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    ET.fromstring(svg)  # noqa: S314  # well-formed XML


def test_a_country_table_is_a_map_with_each_country_labelled() -> None:
    rows = [
        ChartRow("Ukraine", 1200.0, (1150.5, 1249.5)),
        ChartRow("Philippines", 15.0, (-3.2, 33.2)),
        ChartRow("Moldova", None),
        ChartRow("Atlantis", 7.0, (1.0, 13.0)),  # no place on the map: left to the table
    ]
    ids = {"Ukraine": "804", "Philippines": "608", "Moldova": "498"}
    svg = choropleth(
        rows,
        world_topology(),
        ids=ids,
        title="Case records by country of exploitation",
        measure_label="count",
        figure_id="by-country",
    )
    root = ET.fromstring(svg)  # noqa: S314  # our own renderer's output
    shapes = [
        m.attrib["aria-label"]
        for m in root.iter()
        if m.attrib.get("aria-roledescription") == "geoshape" and "aria-label" in m.attrib
    ]
    assert sorted(shapes) == [
        "Moldova: suppressed",
        "Philippines: 15.0 (95% interval -3.2 to 33.2)",
        "Ukraine: 1200.0 (95% interval 1150.5 to 1249.5)",
    ]
    # Every other country is drawn as background, unlabelled (it holds no figure).
    background = [m for m in root.iter(f"{SVG}path") if m.attrib.get("fill") == "#eeeeee"]
    assert len(background) > 150
