"""The public release pages: a published release's charts, files and notes, read from its files.

An intruder's view: the pages must show nothing a published file does not hold (no figure of a
candidate the board did not publish, of a retracted release, or of a record), and every number
they draw or print must be one of the published file's numbers.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import re
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from hub.actors import PrincipalActor
from hub.models import PublishedRelease
from hub.services import publication
from tests.conftest import Bearer, MakeClient
from tests.hub_releases.conftest import accepted  # noqa: F401  # a fixture
from tests.hub_releases.test_release import (  # noqa: F401  # places, published: fixtures
    _board,
    as_active,
    build,
    default_document,
    download,
    failed_checks,
    places,
    published,
    small_policy,
    vote,
)

#: A mark of a chart: its accessible name says its category and its exact numbers.
_MARK = re.compile(
    r'aria-roledescription="(bar|geoshape|text mark)"[^>]*?aria-label="([^"]*)"'
    r'|aria-label="([^"]*)"[^>]*?aria-roledescription="(bar|geoshape|text mark)"'
)
_NUMBERS = re.compile(
    r"^(?P<label>.*): (?:(?P<value>-?[\d.e+-]+)(?: \(95% interval (?P<low>\S+) to (?P<high>\S+)\))?"
    r"|(?P<suppressed>suppressed))$"
)
_ROW = re.compile(r"<tr( class=\"suppressed\")?>(.*?)</tr>", re.S)
_VALUE = re.compile(r'class="value" data-value="([^"]*)">(.*?)</td>', re.S)
_INTERVAL = re.compile(r'class="interval" data-low="([^"]*)" data-high="([^"]*)"')


def page(client: FlaskClient, path: str, language: str = "en") -> str:
    response = client.get(path, headers={"Accept-Language": language})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_data(as_text=True)


def section(text: str, anchor: str) -> str:
    """The part of a release page about one published table."""
    start = text.index(f'id="{anchor}"')
    end = text.find('<section class="released-table"', start + 1)
    return text[start : end if end != -1 else len(text)]


def svg(text: str, figure_id: str) -> str:
    start = text.index(f'id="{figure_id}"')
    return text[start : text.index("</svg>", start)]


def marks(drawing: str) -> list[dict[str, str | None]]:
    """Every drawn mark's category and numbers, read from its accessible name."""
    found = []
    for match in _MARK.finditer(drawing):
        label = html.unescape(match.group(2) or match.group(3))
        numbers = _NUMBERS.match(label)
        assert numbers is not None, label
        found.append(numbers.groupdict())
    return found


def published_rows(client: FlaskClient, url: str) -> list[dict[str, str]]:
    status, body = download(client, url)
    assert status == 200
    return list(csv.DictReader(io.StringIO(body.decode("utf-8"))))


def test_a_published_release_on_the_public_pages(
    client: FlaskClient,
    db_session: Session,
    published: dict[str, Any],  # noqa: F811
    places: publication.Places,  # noqa: F811
) -> None:
    """One release built for four checks (a build is the slow part)."""
    release_id = published["release"]
    every_dp_table_is_drawn_from_its_published_file(client, db_session, release_id)
    suppressed_cells_are_marked_and_never_drawn_as_zero(client, release_id)
    the_page_in_other_languages_and_the_home_page(client, release_id)
    a_missing_or_altered_file_is_a_clear_refusal(client, places, release_id)


def a_missing_or_altered_file_is_a_clear_refusal(
    client: FlaskClient,
    places: publication.Places,  # noqa: F811
    release_id: str,
) -> None:
    """A file gone or changed on disk: the home page stays up without headlines, and the
    release's page and the download say so (409), never a 500 and never the changed numbers."""
    folder = places.published / release_id
    table = next(p for p in sorted(folder.rglob("dp/*.csv")) if "by_year" in p.name)
    original = table.read_bytes()
    download_url = f"/v1/releases/{release_id}/files/{table.relative_to(folder)}"
    try:
        for damage in (table.unlink, lambda: table.write_bytes(original.replace(b"1", b"7"))):
            damage()
            home = client.get("/")
            assert home.status_code == 200 and release_id in home.get_data(as_text=True)
            assert client.get(f"/releases/{release_id}").status_code == 409
            answer = client.get(download_url)
            assert answer.status_code == 409
            assert answer.get_json()["code"] in ("missing", "tampered")
    finally:
        table.write_bytes(original)
    assert client.get(f"/releases/{release_id}").status_code == 200


def every_dp_table_is_drawn_from_its_published_file(
    client: FlaskClient, db_session: Session, release_id: str
) -> None:
    release = db_session.get_one(PublishedRelease, release_id)
    text = page(client, f"/releases/{release_id}")
    assert f"Release {release.version}" in text
    assert f"<dd>{release.policy_version} " in text  # the policy version
    for stem in ("counts_by_year", "counts_by_country_of_exploitation"):
        part = section(text, f"table-dp-{stem}")
        # The CSV beside the chart is the release's own file, as its manifest has it.
        url = f"/v1/releases/{release_id}/files/dp/{stem}.csv"
        assert f'class="table-csv" href="{url}"' in part
        status, body = download(client, url)
        assert hashlib.sha256(body).hexdigest() == release.manifest[f"dp/{stem}.csv"]
        rows = published_rows(client, url)
        triples = Counter(
            (float(r["count"]), float(r["lower_95"]), float(r["upper_95"])) for r in rows
        )
        # Every mark drawn is a published cell with its interval, and every cell is drawn.
        drawn = marks(svg(part, f"chart-dp-{stem}"))
        kinds = Counter(
            (float(m["value"] or "nan"), float(m["low"] or "nan"), float(m["high"] or "nan"))
            for m in drawn
        )
        if stem == "counts_by_year":
            assert kinds == triples
        else:  # a map: every country the world map has; the rest stay in the table
            assert 0 < len(drawn) <= len(rows) and not kinds - triples
            assert 'aria-roledescription="geoshape"' in part
        # The table beside it: each published row, in the file's order, with exact numbers.
        table = part[part.index('<table class="numbers">') :]
        values = [(float(v), shown) for v, shown in _VALUE.findall(table)]
        intervals = [(float(low), float(high)) for low, high in _INTERVAL.findall(table)]
        assert [v for v, _ in values] == [float(r["count"]) for r in rows]
        assert intervals == [(float(r["lower_95"]), float(r["upper_95"])) for r in rows]
        assert [shown for _, shown in values] == [f"{float(r['count']):,.0f}" for r in rows]
    # Type of exploitation and gender by age band are charted too, with intervals.
    for stem in ("counts_by_type_of_exploitation", "counts_by_gender_and_age"):
        drawn = marks(svg(text, f"chart-dp-{stem}"))
        assert drawn and all(m["low"] is not None for m in drawn if m["suppressed"] is None)
    assert "Type of exploitation: sexual exploitation" in text  # codes by their titles
    # The table of every citizenship by every country is too big to chart: files only.
    assert "chart-dp-counts_by_citizenship_and_country_of_exploitation" not in text
    # Downloads: each format, the data package and the manifest.
    for suffix in ("csv", "xlsx", "parquet"):
        assert f"/v1/releases/{release_id}/files/microdata.{suffix}" in text
    assert f"/v1/releases/{release_id}/datapackage.json" in text
    assert f"/v1/releases/{release_id}/files/{publication.MANIFEST}" in text
    assert "rho 0.005 (epsilon" in text  # the privacy notes, with each table's spend


def suppressed_cells_are_marked_and_never_drawn_as_zero(
    client: FlaskClient, release_id: str
) -> None:
    text = page(client, f"/releases/{release_id}")
    part = section(text, "table-tables-gender_by_age")
    rows = published_rows(client, f"/v1/releases/{release_id}/files/tables/gender_by_age.csv")
    hidden = [r for r in rows if r["status"] == "suppressed"]
    assert hidden, "the sample's gender by age table has suppressed cells"
    inner = [r for r in hidden if "Total" not in (r["gender"], r["ageBroad"])]
    drawn = marks(svg(part, "chart-tables-gender_by_age"))
    suppressed_marks = [m for m in drawn if m["suppressed"]]
    assert len(suppressed_marks) == len(inner)
    assert all(m["value"] is None for m in suppressed_marks)
    table_rows = _ROW.findall(part[part.index('<table class="numbers">') :])
    marked = [cells for flag, cells in table_rows if flag]
    assert len(marked) == len(hidden)
    for cells in marked:
        value, shown = _VALUE.search(cells).groups()  # type: ignore[union-attr]
        assert value == "" and "suppressed" in shown and ">0<" not in shown
    # Every number of the table, margins included, is the published file's, in its order.
    shown_values = [value for value, _ in _VALUE.findall(part)]
    assert shown_values == [
        "" if r["status"] == "suppressed" else str(float(r["count"])) for r in rows
    ]
    # Every bar drawn is a published, unsuppressed inner cell's count.
    published_counts = Counter(
        float(r["count"])
        for r in rows
        if r["status"] == "published" and "Total" not in (r["gender"], r["ageBroad"])
    )
    assert Counter(float(m["value"] or "nan") for m in drawn if not m["suppressed"]) == (
        published_counts
    )


def the_page_in_other_languages_and_the_home_page(client: FlaskClient, release_id: str) -> None:
    arabic = page(client, f"/releases/{release_id}", "ar")
    assert '<html lang="ar" dir="rtl">' in arabic and "الإصدار 1" in arabic
    french = page(client, f"/releases/{release_id}", "fr")
    assert "Dossiers par Année d’enregistrement" in french
    # The release's own privacy unit, from its published notes: the default policy's person.
    english = page(client, f"/releases/{release_id}")
    assert '<dd id="privacy-unit">one person, up to 3 records</dd>' in english
    assert "(privacy unit: one person, up to 3 records)</caption>" in english
    assert "per privacy unit (one person, up to 3 records)" in english
    assert "one case record" not in english
    assert '<dd id="privacy-unit">une personne, jusqu’à 3 dossiers</dd>' in french
    assert '<dd id="privacy-unit">شخص واحد، بحد أقصى 3 سجلات</dd>' in arabic
    listed = page(client, "/releases")
    assert f'href="/releases/{release_id}"' in listed
    home = page(client, "/")
    assert f'href="/releases/{release_id}"' in home
    assert "No release has been published yet." not in home
    assert "interval (privacy unit: one person, up to 3 records):" in home
    # Each headline is a published cell of a one-way DP table, with its interval.
    year = published_rows(client, f"/v1/releases/{release_id}/files/dp/counts_by_year.csv")
    largest = max(year, key=lambda r: float(r["count"]))
    headline = re.search(
        r'<span class="headline-what">Year of registration: (\d+)</span>\s*'
        r'<strong class="headline-value" data-value="([^"]+)">.*?'
        r'data-low="([^"]+)" data-high="([^"]+)"',
        home,
        re.S,
    )
    assert headline is not None
    assert headline.group(1) == largest["yearOfRegistration"]
    assert float(headline.group(2)) == float(largest["count"])
    assert (float(headline.group(3)), float(headline.group(4))) == (
        float(largest["lower_95"]),
        float(largest["upper_95"]),
    )


def _public_pages(client: FlaskClient, release_id: str) -> str:
    return "".join(
        page(client, path, language)
        for path in ("/", "/releases", f"/releases/{release_id}")
        for language in ("en", "ar")
    )


def _figures(directory: Path) -> set[str]:
    """A candidate's DP figures as a page would draw them: count and 95% interval together."""
    return _all_published_figures(directory / "files")


def test_the_public_pages_leak_nothing_beyond_the_published_files(
    app: APIFlask,
    client: FlaskClient,
    db_session: Session,
    published: dict[str, Any],  # noqa: F811
    places: publication.Places,  # noqa: F811
    ctdc_file: Path,
) -> None:
    release_id = published["release"]
    release = db_session.get_one(PublishedRelease, release_id)
    shown = _public_pages(client, release_id)
    ours = _all_published_figures(places.published / release_id)
    # Every figure drawn (a count with its interval) is one of the published DP files' own.
    assert _page_figures(shown) and _page_figures(shown) <= ours
    # A candidate the board did not publish, and one its checks blocked: none of their
    # figures that the release does not share appears on any public page.
    pending = build(app, db_session, small_policy(), places)
    document = default_document()
    document["release"]["synthetic"]["records"] = 500
    blocked = build(app, db_session, as_active(document), places)
    assert pending.status == "candidate" and blocked.status == "blocked"
    theirs = (
        _figures(places.candidates / pending.id) | _figures(places.candidates / blocked.id)
    ) - ours
    assert theirs, "the other candidates' noise differs from the release's"
    shown = _public_pages(client, release_id)
    assert not theirs & _page_figures(shown)
    assert _page_figures(shown) <= ours
    # No record value: the uploaded records' pseudonymous case numbers never appear.
    assert "caseNo" not in shown.replace('<code dir="ltr">caseNo</code>', "")
    assert not re.search(r"\b[0-9a-f]{64}\b", shown.replace(release.policy_digest, ""))
    # Retracted: a notice, and no file, chart or figure of the release is left.
    builder, second, third = published["board"]
    url = f"/v1/releases/{release_id}/retraction/votes"
    proposal = {"decision": "comment", "reason_code": "note", "remark": "consent withdrawn"}
    assert client.post(url, json=proposal, headers=builder).status_code == 201
    approve = {"decision": "approve", "reason_code": "meets_policy"}
    client.post(url, json=approve, headers=second)
    assert client.post(url, json=approve, headers=third).get_json()["retracted"] is True
    text = page(client, f"/releases/{release_id}")
    assert 'id="retracted"' in text and "was retracted on" in text
    assert "/files/" not in text and "<svg" not in text.split("</header>")[1]
    assert not _page_figures(text) and 'class="value"' not in text
    home = page(client, "/")
    assert "No release has been published yet." in home and release_id not in home
    assert "retracted on" in page(client, "/releases")


def _page_figures(text: str) -> set[str]:
    """Every count with its interval on a page: drawn as a mark, or a row of a table."""
    drawn = {
        f"{m['value']} (95% interval {m['low']} to {m['high']})"
        for m in marks(text)
        if m["low"] is not None
    }
    # A value and the interval of the same table row or headline (never across them).
    rows = re.findall(
        r'data-value="([^"]+)">(?:(?!</tr>|</li>).)*?data-low="([^"]+)" data-high="([^"]+)"',
        text,
        re.S,
    )
    return drawn | {f"{v} (95% interval {low} to {high})" for v, low, high in rows}


def _figures_of(path: Path) -> set[str]:
    with path.open(encoding="utf-8") as handle:
        return {
            f"{float(r['count'])!r} (95% interval {float(r['lower_95'])!r} to "
            f"{float(r['upper_95'])!r})"
            for r in csv.DictReader(handle)
        }


def _all_published_figures(root: Path) -> set[str]:
    found: set[str] = set()
    for path in (root / "dp").glob("*.csv"):
        found |= _figures_of(path)
    return found


def test_a_release_under_a_case_record_policy_states_that_unit(
    app: APIFlask,
    client: FlaskClient,
    db_session: Session,
    make_client: MakeClient,
    bearer: Bearer,
    accepted: int,  # noqa: F811
    places: publication.Places,  # noqa: F811
) -> None:
    document = yaml.safe_load(small_policy().document)
    document["privacy"]["unit"] = "case record"
    del document["privacy"]["records_per_person"]
    (builder, _), (_, second), (_, third) = _board(make_client, bearer, 3)
    candidate = build(
        app, db_session, as_active(document), places, PrincipalActor.with_roles(builder)
    )
    assert candidate.status == "candidate", failed_checks(candidate)
    vote(client, second, candidate.id)
    release_id = vote(client, third, candidate.id).get_json()["release"]
    assert publication.get_release(db_session, release_id)["notes"]["privacy_unit"] == (
        "one case record"
    )
    text = page(client, f"/releases/{release_id}")
    assert '<dd id="privacy-unit">one case record</dd>' in text
    assert "(privacy unit: one case record)</caption>" in text
    assert "per privacy unit (one case record)" in text
    assert "one person, up to" not in text
    # The linkage count's own unit stays every record of a person, whatever the policy's.
    assert "per privacy unit (one person (all their records, as the hub links them))" in text
    caption = "(privacy unit: one person (all their records, as the hub links them))</caption>"
    assert caption in section(text, "table-dp-people_in_several_sources")
    spanish = page(client, f"/releases/{release_id}", "es")
    assert '<dd id="privacy-unit">un registro de caso</dd>' in spanish
    assert "(una persona (todos sus registros, tal como el hub los vincula))" in spanish
    assert "interval (privacy unit: one case record):" in page(client, "/")
