"""A published release's public pages in Debian's chromium: charts drawn, files, right to left.

The release is built and published through the board's API (tests.hub_releases), then read as
the public reads it: no sign-in. axe-core checks each page for serious and critical violations.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.hub_portal.test_browser import _serious, browser, page  # noqa: F401  # fixtures
from tests.hub_releases.conftest import accepted  # noqa: F401  # a fixture
from tests.hub_releases.test_release import places, published  # noqa: F401  # fixtures

pytestmark = pytest.mark.browser

#: Count how many of a chart's marks of one kind the browser laid out with an area (a bar, a
#: country) or, for a whisker (a vertical rule: no width), a length.
_DRAWN = """(svg, [kind, area]) => [...svg.querySelectorAll(`[aria-roledescription="${kind}"]`)]
    .filter(mark => { const box = mark.getBBox();
                      return area ? box.width > 0 && box.height > 0 : box.height > 0; })
    .length"""


def drawn(chart: Locator, kind: str, *, area: bool = True) -> int:
    count: int = chart.evaluate(_DRAWN, [kind, area])
    return count


def test_the_public_release_page_draws_its_charts_and_serves_its_numbers(
    page: Page,  # noqa: F811
    published: dict[str, Any],  # noqa: F811
    tmp_path: Path,
) -> None:
    release_id = published["release"]
    page.goto("/")
    page.locator("#latest-release-link").click()
    expect(page).to_have_url(re.compile(f"/releases/{release_id}$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Release 1")
    # Bars with whiskers for the years; every published year has its mark.
    years = page.locator("#table-dp-counts_by_year")
    chart = years.locator("svg#chart-dp-counts_by_year")
    expect(chart).to_be_visible()
    rows = years.locator("table.numbers tbody tr")
    assert drawn(chart, "bar") > 0
    assert chart.locator('[aria-roledescription="bar"]').count() == rows.count() > 10
    assert drawn(chart, "errorbar", area=False) > 0
    # The world map for the country table: country shapes laid out with an area.
    world = page.locator("svg#chart-dp-counts_by_country_of_exploitation")
    expect(world).to_be_visible()
    assert drawn(world, "geoshape") > 10
    for figure in ("chart-dp-counts_by_type_of_exploitation", "chart-dp-counts_by_gender_and_age"):
        assert drawn(page.locator(f"svg#{figure}"), "bar") > 0
    # The CSV beside the chart downloads the same numbers the table shows.
    with page.expect_download() as download:
        years.locator("a.table-csv").click()
    saved = tmp_path / "years.csv"
    download.value.save_as(saved)
    published_rows = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8"))))
    shown = rows.locator("td.value").evaluate_all("cells => cells.map(c => c.dataset.value)")
    assert [float(v) for v in shown] == [float(r["count"]) for r in published_rows]
    first = published_rows[0]
    expect(rows.first.locator("td.interval")).to_have_text(
        f"{float(first['lower_95']):,.0f} – {float(first['upper_95']):,.0f}"
    )
    # Suppressed cells are labelled in the table and in the chart, never drawn as a bar.
    ages = page.locator("#table-tables-gender_by_age")
    hidden = ages.locator("tr.suppressed")
    assert hidden.count() > 0
    expect(hidden.first.locator("td.value")).to_have_text("suppressed")
    marked = ages.locator('svg [aria-label$=": suppressed"]')
    assert marked.count() > 0
    expect(marked.first).to_be_visible()
    assert ages.locator('svg [aria-roledescription="bar"][aria-label$=": suppressed"]').count() == 0


def test_the_arabic_release_page_is_right_to_left_and_every_page_passes_axe(
    page: Page,  # noqa: F811
    published: dict[str, Any],  # noqa: F811
) -> None:
    release_id = published["release"]
    found: list[str] = []
    for path in ("/", "/releases", f"/releases/{release_id}"):
        page.goto(path)
        found += _serious(page)
    page.goto(f"/releases/{release_id}")
    page.locator("#language-choice").select_option("ar")
    page.locator(".language-switch button").click()
    expect(page.locator("html")).to_have_attribute("dir", "rtl")
    expect(page.get_by_role("heading", level=1)).to_have_text("الإصدار 1")
    assert page.evaluate("getComputedStyle(document.body).direction") == "rtl"
    brand = page.locator(".brand").bounding_box()
    tools = page.locator(".header-tools").bounding_box()
    assert brand is not None and tools is not None and brand["x"] > tools["x"]
    # The charts are drawn in Arabic pages too, their categories in Arabic.
    expect(page.locator("svg#chart-dp-counts_by_year")).to_be_visible()
    assert "سجلات الحالات" in page.locator("#table-dp-counts_by_year h3").inner_text()
    found += _serious(page)
    for path in ("/", "/releases"):
        page.goto(path)
        expect(page.locator("html")).to_have_attribute("dir", "rtl")
        found += _serious(page)
    assert found == []
