"""The portal as a person uses it: Playwright driving Debian's chromium against a live hub.

Playwright's Python package drives the system's ``/usr/bin/chromium`` (``make browser``
installs it); no browser is downloaded. axe-core (shipped inside axe-playwright-python) checks
every page built for serious and critical accessibility violations. Select these tests with
``-m browser``.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
import requests
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy.orm import Session

from examples.make_examples import CTDC_FILE
from hub.actors import OPERATOR
from hub.services import people
from tests.conftest import LiveHub
from tests.hub_portal.conftest import MakePerson, Someone

pytestmark = pytest.mark.browser

#: How long Playwright waits for a page to reach a state: a guard, never an assertion on time.
WAIT_MS = 60_000


def chromium() -> str:
    """Return Debian's chromium, or fail saying how to install it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is not installed: `make browser` installs Debian's package")
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium(), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser, live_hub: LiveHub) -> Iterator[Page]:
    context = browser.new_context(base_url=live_hub.url, locale="en-GB")
    context.set_default_timeout(WAIT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def sign_in(page: Page, someone: Someone) -> None:
    """Sign in through the form, as a person types it."""
    page.goto("/sign-in")
    page.get_by_label("E-mail address").fill(someone.email)
    page.get_by_label("Password").fill(someone.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/account$"))


def bad_file(tmp_path: Path) -> Path:
    """The sample file with a gender no schema code matches on data row 7."""
    lines = CTDC_FILE.read_text(encoding="utf-8").splitlines()
    column = lines[0].split(",").index("gender")
    cells = lines[7].split(",")
    cells[column] = "Unicorn"
    lines[7] = ",".join(cells)
    path = tmp_path / "cases.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_partner_uploads_a_file_with_an_invalid_row(
    page: Page, make_person: MakePerson, tmp_path: Path
) -> None:
    sign_in(page, make_person("Browser NGO", ["partner"]))
    page.get_by_role("link", name="Upload a file").first.click()
    page.get_by_label("File").set_input_files(bad_file(tmp_path))
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("The file was not stored.")
    row = page.locator("tr.row-error")
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(0)).to_have_text("7")
    expect(row.locator("td").nth(1)).to_have_text("gender")
    assert "Unicorn" not in page.content()


def test_a_researcher_previews_runs_and_sees_the_budget_go_down(
    page: Page, browser: Browser, live_hub: LiveHub, make_person: MakePerson
) -> None:
    partner = browser.new_context(base_url=live_hub.url)
    partner_page = partner.new_page()
    sign_in(partner_page, make_person("Browser NGO", ["partner"]))
    partner_page.goto("/partner/uploads/new")
    partner_page.get_by_label("File").set_input_files(CTDC_FILE)
    partner_page.get_by_role("button", name="Upload", exact=True).click()
    expect(partner_page.get_by_role("status")).to_contain_text("checked and stored")
    partner.close()

    sign_in(page, make_person("Browser University", ["researcher"]))
    page.goto("/researcher/queries")
    left_before = float(page.locator("#budget-left").get_attribute("data-rho") or "nan")
    page.get_by_label("Fields").select_option("gender")
    page.get_by_label("Spend as").select_option("rho")
    page.get_by_label("Amount").fill("0.02")
    page.get_by_role("button", name="Preview the cost").click()
    expect(page.locator("#preview-cost")).to_contain_text("rho 0.02")
    assert float(page.locator("#budget-left").get_attribute("data-rho") or "nan") == left_before
    page.get_by_role("button", name="Run the query").click()
    expect(page.locator("#answer-table")).to_contain_text("Female")
    # The answer's chart, drawn on the server: a bar per released value, its numbers in the table.
    chart = page.locator("svg#answer-chart")
    expect(chart).to_be_visible()
    female = chart.locator('[aria-roledescription="bar"][aria-label^="Female: "]')
    expect(female).to_have_count(1)
    value = (female.get_attribute("aria-label") or "").split(": ")[1].split(" ")[0]
    expect(page.locator("#answer-table")).to_contain_text(f"{float(value):,.0f}")
    left_after = float(page.locator("#budget-left").get_attribute("data-rho") or "nan")
    assert left_after == pytest.approx(left_before - 0.02, rel=1e-9)
    assert 0 < left_after < left_before


def test_the_language_switch_and_arabic_right_to_left(page: Page) -> None:
    page.goto("/privacy")
    page.get_by_label("Language").select_option("fr")
    page.get_by_role("button", name="Change language").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Comment la vie privée est protégée")
    page.get_by_label("Langue").select_option("ar")
    page.get_by_role("button", name="Changer de langue").click()
    expect(page.locator("html")).to_have_attribute("dir", "rtl")
    expect(page.get_by_role("heading", level=1)).to_have_text("كيف تُحمى الخصوصية")
    assert page.evaluate("getComputedStyle(document.body).direction") == "rtl"
    # Laid out right to left: the hub's name starts the header on the right.
    brand = page.locator(".brand").bounding_box()
    tools = page.locator(".header-tools").bounding_box()
    assert brand is not None and tools is not None and brand["x"] > tools["x"]


def _serious(page: Page) -> list[str]:
    results = Axe().run(page)
    assert results.response["passes"], f"axe-core checked nothing on {page.url}"
    return [
        f"{page.url}: {violation['id']} ({violation['impact']}) "
        f"{[node['html'][:300] for node in violation['nodes'][:3]]}"
        for violation in results.response["violations"]
        if violation["impact"] in {"serious", "critical"}
    ]


def test_no_serious_accessibility_violation_on_any_page(
    page: Page,
    browser: Browser,
    live_hub: LiveHub,
    make_person: MakePerson,
    tmp_path: Path,
    db_session: Session,
) -> None:
    found: list[str] = []
    for path in ("/", "/dictionary", "/privacy", "/sign-in"):
        for language in ("en", "ar"):
            page.goto(path)
            if language == "ar":
                page.locator("#language-choice").select_option("ar")
                page.locator(".language-switch button").click()
                expect(page.locator("html")).to_have_attribute("dir", "rtl")
            found += _serious(page)
            if language == "ar":
                page.locator("#language-choice").select_option("en")
                page.locator(".language-switch button").click()
    partner = make_person("Axe NGO", ["partner", "researcher"])
    sign_in(page, partner)
    found += _serious(page)
    page.goto("/partner/uploads/new")
    page.get_by_label("File").set_input_files(bad_file(tmp_path))
    page.get_by_role("button", name="Upload", exact=True).click()
    found += _serious(page)  # the refusal with its report
    page.get_by_label("Store the valid rows even if some rows are refused").check()
    page.get_by_label("File").set_input_files(bad_file(tmp_path))
    page.get_by_role("button", name="Upload", exact=True).click()
    found += _serious(page)  # a receipt
    for path in ("/partner/uploads", "/researcher/queries"):
        page.goto(path)
        found += _serious(page)
    page.get_by_label("Fields").select_option("gender")
    page.get_by_label("Amount").fill("50")
    page.get_by_role("button", name="Preview the cost").click()
    found += _serious(page)
    page.get_by_role("button", name="Run the query").click()
    expect(page.locator("#answer-table")).to_be_visible()
    found += _serious(page)
    # An answer by country: its chart is a world map.
    page.goto("/researcher/queries")
    page.get_by_label("Fields").select_option("CountryOfExploitation")
    page.get_by_label("Amount").fill("50")
    page.get_by_role("button", name="Run the query").click()
    expect(
        page.locator('svg#answer-chart [aria-roledescription="geoshape"]').first
    ).to_be_attached()
    found += _serious(page)
    # A board member's invitation: the password and the second factor's key on one page.
    invited = people.create_person(
        db_session,
        OPERATOR,
        partner.organisation_id,
        "Axe board member",
        "axe.board@axe-ngo.example.org",
        ["board"],
        link_lifetime=timedelta(hours=1),
    )
    welcome = browser.new_context(base_url=live_hub.url)
    welcome_page = welcome.new_page()
    welcome_page.goto(f"/welcome/{invited.token}")
    expect(welcome_page.locator("#totp-secret")).to_be_visible()
    found += _serious(welcome_page)
    welcome.close()
    assert found == []


def sign_in_with_code(page: Page, someone: Someone) -> list[str]:
    """Sign in a board member: password, then the code pyotp computes from their key, as their
    authenticator app would; return axe-core's findings on the code page."""
    assert someone.totp_secret is not None
    page.goto("/sign-in")
    page.get_by_label("E-mail address").fill(someone.email)
    page.get_by_label("Password").fill(someone.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/sign-in/code$"))
    found = _serious(page)
    page.get_by_label("The 6-digit code your authenticator app shows").fill(
        pyotp.TOTP(someone.totp_secret).now()
    )
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(re.compile(r"/account$"))
    return found


def test_board_members_sign_in_with_a_code_and_their_approvals_publish_a_candidate(
    browser: Browser,
    live_hub: LiveHub,
    board_people: list[Someone],
    candidate_id: str,
) -> None:
    found: list[str] = []
    _builder, *approvers = board_people
    release_url = ""
    for number, member in enumerate(approvers):
        context = browser.new_context(base_url=live_hub.url, locale="en-GB")
        context.set_default_timeout(WAIT_MS)
        page = context.new_page()
        found += sign_in_with_code(page, member)
        page.get_by_role("link", name="Board", exact=True).click()
        expect(page.get_by_role("heading", level=1)).to_have_text("The board's reviews")
        found += _serious(page)
        if number == 0:
            page.get_by_role("link", name="Version 1").click()
            expect(page.locator("#policy-state")).to_have_text("active")
            found += _serious(page)
            page.goto("/board/policies/new")
            found += _serious(page)
            page.goto("/board")
        page.get_by_role("link", name=f"Candidate {candidate_id[:8]}").click()
        expect(page.locator("#checks-verdict")).to_have_text("Every check passed.")
        checks = page.locator("#candidate-checks tbody tr")
        assert checks.count() >= 10
        expect(page.locator("#candidate-checks tr.failed")).to_have_count(0)
        expect(page.locator("svg#tvd-by-order")).to_be_visible()
        found += _serious(page)
        page.get_by_label("Your decision and its reason").select_option("approve:meets_policy")
        page.get_by_role("button", name="Send").click()
        if number == 0:
            expect(page.get_by_role("status")).to_have_text("Recorded.")
            expect(page.locator("#candidate-status")).to_have_text("awaiting the board")
            found += _serious(page)
        else:
            # The second approval meets the quorum of 2: published, shown on its board page.
            expect(page).to_have_url(re.compile(r"/board/releases/[0-9a-f-]{36}$"))
            expect(page.locator("#release-status")).to_have_text("published")
            found += _serious(page)
            release_url = page.url
        context.close()
    release_id = release_url.rsplit("/", 1)[1]
    listed = requests.get(f"{live_hub.url}/v1/releases", timeout=30).json()
    assert [r["id"] for r in listed] == [release_id]
    shown = requests.get(f"{live_hub.url}/v1/releases/{release_id}", timeout=30).json()
    assert shown["retracted_at"] is None and len(shown["files"]) > 20
    # The public, signed out, meets the release on its page, charts drawn.
    public = browser.new_context(base_url=live_hub.url, locale="en-GB")
    public.set_default_timeout(WAIT_MS)
    page = public.new_page()
    page.goto("/releases")
    page.locator(f"a[href$='/releases/{release_id}']").first.click()
    expect(page).to_have_url(re.compile(f"/releases/{release_id}$"))
    expect(page.locator("svg#chart-dp-counts_by_year")).to_be_visible()
    assert (
        page.locator("svg#chart-dp-counts_by_year rect, svg#chart-dp-counts_by_year path").count()
        > 0
    )
    found += _serious(page)
    public.close()
    assert found == []
