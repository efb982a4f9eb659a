"""``/docs`` as a person sees it: headless Chromium loads the page from a live hub.

Swagger UI 4 showed "Unable to render this definition" for the hub's OpenAPI 3.1 document while
every file of the page was served; only a browser running the page's scripts sees that. Chromium
is Debian's ``chromium`` package (``make test`` installs it when missing); nothing is downloaded.
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

from tests.conftest import LiveHub

#: Swagger UI renders asynchronously; Chromium's virtual clock lets it finish without waiting
#: on the wall clock (a budget, not an assertion on time).
VIRTUAL_TIME_BUDGET_MS = 30_000
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def chromium() -> str:
    """Return the Chromium executable, or fail saying how to install it."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("Chromium is not installed: run `make test` (it installs Debian's chromium)")


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
        tag = operation["tags"][0].replace(" ", "_")
        operation_id = operation.get("operationId") or (
            method + path.replace("/", "_").replace("{", "_").replace("}", "_")
        )
        html = dump_dom(f"{live_hub.url}/docs#/{tag}/{operation_id}", tmp_path / "profile")
        page = rendered(html)
        assert {"opblock-section-request-body", "try-out__btn"} <= page.classes, (method, path)
