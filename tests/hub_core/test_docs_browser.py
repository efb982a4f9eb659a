"""``/docs`` as a person sees it: headless Chromium loads the page from a live hub.

Swagger UI 4 showed "Unable to render this definition" for the hub's OpenAPI 3.1 document while
every file of the page was served; only a browser running the page's scripts sees that. Chromium
and chromedriver are Debian's packages (``make test`` installs them when missing); Selenium drives
them and nothing is downloaded.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from examples.make_examples import CTDC_FILE
from tests.conftest import LiveHub

#: Swagger UI renders asynchronously; Chromium's virtual clock lets it finish without waiting
#: on the wall clock (a budget, not an assertion on time).
VIRTUAL_TIME_BUDGET_MS = 30_000
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def installed(*names: str) -> str:
    """Return the first of ``names`` on PATH, or fail saying how to install it."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(f"{names[0]} is not installed: `make browser` installs Debian's package")


def chromium() -> str:
    """Return the Chromium executable."""
    return installed("chromium", "chromium-browser")


def dump_dom(url: str, profile: Path) -> str:
    """Load ``url`` in headless Chromium and return the DOM after its scripts ran."""
    result = subprocess.run(  # noqa: S603 - fixed arguments, a local URL
        [
            chromium(),
            "--headless",
            "--no-sandbox",  # the tests may run as root (CI does)
            "--disable-gpu",
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


class RenderedOperations(HTMLParser):
    """Collect what Swagger UI rendered: each operation's method and path, and its sections."""

    def __init__(self) -> None:
        super().__init__()
        self.methods: list[str] = []
        self.paths: list[str] = []
        self.classes: set[str] = set()
        self._in_method = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        self.classes.update(classes)
        if "opblock-summary-method" in classes:
            self._in_method = True
        if "opblock-summary-path" in classes and attributes.get("data-path"):
            self.paths.append(str(attributes["data-path"]))

    def handle_data(self, data: str) -> None:
        if self._in_method and data.strip():
            self.methods.append(data.strip().lower())
            self._in_method = False

    @property
    def operations(self) -> set[tuple[str, str]]:
        return set(zip(self.methods, self.paths, strict=True))


def rendered(html: str) -> RenderedOperations:
    parser = RenderedOperations()
    parser.feed(html)
    return parser


def spec_operations(spec: dict[str, dict[str, dict[str, object]]]) -> set[tuple[str, str]]:
    return {
        (method, path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method in METHODS
    }


def test_docs_page_has_no_inline_script(live_hub: LiveHub) -> None:
    page = requests.get(f"{live_hub.url}/docs", timeout=30).text
    scripts = page.split("<script")[1:]
    assert scripts, "the page loads Swagger UI"
    for script in scripts:
        opening, _, rest = script.partition(">")
        assert " src=" in opening and rest.startswith("</script>"), f"inline script: {script!r}"
    assert "//" not in page.replace("http://www.w3.org", ""), "every file comes from the hub"


def test_chromium_renders_every_operation(live_hub: LiveHub, tmp_path: Path) -> None:
    spec = requests.get(f"{live_hub.url}/openapi.json", timeout=30).json()
    html = dump_dom(f"{live_hub.url}/docs", tmp_path / "profile")
    assert "Unable to render this definition" not in html
    page = rendered(html)
    assert page.operations == spec_operations(spec)
    assert len(page.operations) >= 10


def test_operations_with_a_body_can_be_tried(live_hub: LiveHub, tmp_path: Path) -> None:
    """Opened by its deep link, each operation taking a body shows the body and "Try it out"."""
    spec = requests.get(f"{live_hub.url}/openapi.json", timeout=30).json()
    with_body = [
        (method, path, operation)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if method in METHODS and "requestBody" in operation
    ]
    assert with_body, "the queries take JSON bodies"
    for method, path, operation in with_body:
        tag = operation["tags"][0].replace(" ", "%20")  # as Swagger UI writes a deep link
        operation_id = operation.get("operationId") or (
            method + path.replace("/", "_").replace("{", "_").replace("}", "_")
        )
        html = dump_dom(f"{live_hub.url}/docs#/{tag}/{operation_id}", tmp_path / "profile")
        page = rendered(html)
        assert {"opblock-section-request-body", "try-out__btn"} <= page.classes, (method, path)


#: How long Selenium waits for the page to reach a state: a guard, never an assertion on time.
WAIT_S = 120


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebDriver]:
    """Headless Chromium under Debian's chromedriver (Selenium Manager stays offline)."""
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium()
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,2000"):
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={tmp_path / 'selenium-profile'}")
    service = Service(executable_path=installed("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


SET_TEXTAREA = """
const [area, value] = arguments;
Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, "value").set.call(area, value);
area.dispatchEvent(new Event("input", {bubbles: true}));
"""


def click(driver: WebDriver, element: WebElement) -> None:
    # A script click: Swagger UI's sticky parts can overlap a button in a small headless window.
    driver.execute_script("arguments[0].click()", element)


def authorize(driver: WebDriver, hub: LiveHub) -> WebDriverWait[WebDriver]:
    """Open /docs and authorize with the partner's client id and secret, as a person does."""
    wait = WebDriverWait(driver, WAIT_S)
    driver.get(f"{hub.url}/docs")
    click(driver, wait.until(expected_conditions.element_to_be_clickable(
        (By.CSS_SELECTOR, "button.authorize"))))  # fmt: skip
    wait.until(
        expected_conditions.visibility_of_element_located((By.ID, "client_id_clientCredentials"))
    ).send_keys(hub.client_id)
    driver.find_element(By.ID, "client_secret_clientCredentials").send_keys(hub.client_secret)
    click(driver, driver.find_element(By.CSS_SELECTOR, ".auth-btn-wrapper button.authorize"))
    wait.until(expected_conditions.text_to_be_present_in_element(
        (By.CSS_SELECTOR, ".modal-ux"), "Authorized"))  # fmt: skip
    click(driver, driver.find_element(By.CSS_SELECTOR, ".modal-ux button.btn-done"))
    return wait


def try_out(driver: WebDriver, wait: WebDriverWait[WebDriver], element_id: str) -> WebElement:
    """Open an operation and press "Try it out"; return the operation's element."""
    operation = wait.until(expected_conditions.presence_of_element_located((By.ID, element_id)))
    click(driver, operation.find_element(By.CSS_SELECTOR, ".opblock-summary-control"))
    click(
        driver, wait.until(lambda _: operation.find_element(By.CSS_SELECTOR, "button.try-out__btn"))
    )
    return operation


def execute(driver: WebDriver, wait: WebDriverWait[WebDriver], operation: WebElement) -> str:
    """Press Execute and return the status code the page shows."""
    click(driver, wait.until(lambda _: operation.find_element(By.CSS_SELECTOR, "button.execute")))
    status = wait.until(lambda _: operation.find_element(
        By.CSS_SELECTOR, ".live-responses-table tbody .response-col_status"))  # fmt: skip
    return str(status.text.split()[0])


def test_a_person_authorizes_and_tries_an_operation(live_hub: LiveHub, browser: WebDriver) -> None:
    """The Authorize dialog gets a token from /oauth/token; "Execute" then sends it."""
    wait = authorize(browser, live_hub)
    operation = try_out(browser, wait, "operations-Uploads-get_v1_uploads")
    assert execute(browser, wait, operation) == "200"


def test_a_person_tries_an_upload(live_hub: LiveHub, browser: WebDriver) -> None:
    """Upload the README's sample file from the docs page; the hub stores it."""
    spec: dict[str, Any] = requests.get(f"{live_hub.url}/openapi.json", timeout=30).json()
    assert "requestBody" in spec["paths"]["/v1/uploads"]["post"], "the page cannot offer a body"
    wait = authorize(browser, live_hub)
    operation = try_out(browser, wait, "operations-Uploads-post_v1_uploads")
    body = operation.find_element(By.CSS_SELECTOR, ".opblock-section-request-body")
    files = body.find_elements(By.CSS_SELECTOR, "input[type=file]")
    if files:
        files[0].send_keys(str(CTDC_FILE))
    else:
        # Typing 6 kB key by key takes minutes; set the field as React expects instead.
        browser.execute_script(SET_TEXTAREA, body.find_element(By.CSS_SELECTOR, "textarea"),
                               CTDC_FILE.read_text(encoding="utf-8"))  # fmt: skip
    assert execute(browser, wait, operation) == "201"
    listed = requests.get(
        f"{live_hub.url}/v1/uploads",
        headers={"Authorization": f"Bearer {live_hub.token()}"},
        timeout=30,
    ).json()["uploads"]
    assert [u["rows_accepted"] for u in listed] == [40]
