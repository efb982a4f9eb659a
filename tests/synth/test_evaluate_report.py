"""Tests of the readable report: its charts, its Markdown and HTML, and the files it writes."""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from disclosure_control.evaluate import EvaluationReport, evaluate_release
from disclosure_control.evaluate.charts import grouped_bar_chart, nice_ceiling

SVG = "{http://www.w3.org/2000/svg}"
VOID = {"meta", "br", "hr", "img", "input", "link"}


@pytest.fixture(scope="module")
def report(ctdc_training: pd.DataFrame, ctdc_control: pd.DataFrame) -> EvaluationReport:
    # The held-out records stand in for a synthetic table; the training table scores itself
    # as a reference (TVD 0), so the chart must hold a zero bar beside non-zero ones.
    return evaluate_release(
        ctdc_training,
        ctdc_control,
        ctdc_control,
        metadata={"synthesizer": "held-out <sample> & co", "rho": 0.5},
        references={"self": ctdc_training},
        n_three_way=20,
        n_attacks=60,
    )


def _bars(svg: str) -> dict[tuple[str, str], float]:
    """Read every bar's series, group and value back from an SVG chart (its aria-labels)."""
    root = ET.fromstring(svg)  # noqa: S314  # the SVG is our own output, not untrusted input
    bars = {}
    for mark in root.iter():
        if mark.attrib.get("aria-roledescription") != "bar":
            continue
        found = re.fullmatch(r"series=(.*); group=(.*); value=(.*)", mark.attrib["aria-label"])
        assert found is not None, mark.attrib["aria-label"]
        bars[(found.group(1), found.group(2))] = float(found.group(3))
    return bars


def test_tvd_chart_holds_the_reports_numbers(report: EvaluationReport) -> None:
    data = report.to_dict()
    bars = _bars(report.figures()["tvd-by-order"])
    expected = {("synthetic", f"{t['order']}-way"): t["mean"] for t in data["utility"]["tvd"]}
    expected |= {
        ("self", f"{t['order']}-way"): t["mean"] for t in data["references"]["self"]["tvd"]
    }
    assert bars == expected
    assert {group for _, group in bars} == {"1-way", "2-way", "3-way"}
    assert bars[("self", "3-way")] == 0.0 < bars[("synthetic", "3-way")]


def test_attack_chart_holds_success_and_baselines(report: EvaluationReport) -> None:
    data = report.to_dict()
    bars = _bars(report.figures()["attacks"])
    assert len(bars) == 3 * len(data["privacy"]["attacks"]) == 9
    for attack in data["privacy"]["attacks"]:
        name = attack["name"]
        assert bars[("on training records", name)] == attack["main_rate"]
        assert bars[("on held-out records", name)] == attack["control_rate"]
        assert bars[("naive baseline", name)] == attack["baseline_rate"]


def test_markdown_embeds_the_charts_and_its_tables_match(report: EvaluationReport) -> None:
    text = report.to_markdown()
    figures = report.figures()
    embedded = re.findall(r"^<svg .*?^</svg>$", text, flags=re.MULTILINE | re.DOTALL)
    assert embedded == [figures["tvd-by-order"], figures["attacks"]]
    # Each chart is one CommonMark HTML block: no blank line inside it, blank lines around it.
    for svg in embedded:
        assert "\n\n" not in svg and f"\n\n{svg}\n\n" in text
    rows = re.findall(
        r"^\| (synthetic|self) \| (\d) \| (\d+) \| ([\d.]+) \| ([\d.]+) \|", text, re.M
    )
    data = report.to_dict()
    tables = {"synthetic": data["utility"]["tvd"], "self": data["references"]["self"]["tvd"]}
    assert len(rows) == 6
    for label, order, count, mean, worst in rows:
        summary = next(t for t in tables[label] if t["order"] == int(order))
        assert int(count) == summary["n_marginals"]
        assert float(mean) == pytest.approx(summary["mean"], abs=5e-5)
        assert float(worst) == pytest.approx(summary["max"], abs=5e-5)
    assert "held-out <sample> & co" in text


class _Tags(HTMLParser):
    """Collect an HTML document's elements and check that they nest properly."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.seen: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack.pop() == tag, f"</{tag}> closes nothing open"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_is_one_page_with_tables_and_charts(report: EvaluationReport) -> None:
    page = report.to_html()
    parser = _Tags()
    parser.feed(page)
    parser.close()
    assert parser.stack == []
    assert parser.seen.count("svg") == 2 and parser.seen.count("table") == 4
    for svg in report.figures().values():
        assert svg in page
    text = "".join(parser.text)
    assert "held-out <sample> & co" in text
    for heading in ("Utility: total-variation", "Utility: analyst queries", "Privacy"):
        assert heading in text


def test_report_files_are_written_and_agree(report: EvaluationReport, tmp_path: Path) -> None:
    paths = report.write(tmp_path, "run-1")
    assert {p.name for p in paths.values()} == {"run-1.json", "run-1.md", "run-1.html"}
    assert json.loads(paths["json"].read_text()) == json.loads(report.to_json())
    assert paths["markdown"].read_text() == report.to_markdown()
    assert paths["html"].read_text() == report.to_html()
    with pytest.raises(ValueError, match="does not exist"):
        report.write(tmp_path / "absent")


def test_report_without_privacy_has_no_attack_chart(
    ctdc_training: pd.DataFrame, ctdc_control: pd.DataFrame
) -> None:
    utility_only = evaluate_release(ctdc_training, ctdc_control, n_three_way=5, queries=())
    assert list(utility_only.figures()) == ["tvd-by-order"]
    assert utility_only.to_html().count("<svg") == 1


def test_missing_value_is_drawn_as_no_bar_and_labelled() -> None:
    svg = grouped_bar_chart(
        "a <chart> & more", ["x", "y"], ["s"], [[0.3, math.nan]], y_label="v", figure_id="f"
    )
    root = ET.fromstring(svg)  # noqa: S314  # our own output
    assert _bars(svg) == {("s", "x"): 0.3}, "the missing value is drawn as no bar"
    assert "n/a" in svg
    assert root.find(f"{SVG}title").text == "a <chart> & more"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="one row per series"):
        grouped_bar_chart("t", ["x"], ["s", "t"], [[1.0]], y_label="v", figure_id="f")


@given(st.floats(1e-9, 1e9))
def test_axis_top_is_the_nearest_round_value_above(value: float) -> None:
    top = nice_ceiling(value)
    assert top >= value * (1 - 1e-12)
    assert top <= 2 * value * (1 + 1e-12)
