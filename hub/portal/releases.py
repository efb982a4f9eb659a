"""Public release pages: the list of published releases, and a release with its charts.

The pages are thin over the services the public API uses (:mod:`hub.services.publication`):
what a release says of itself (:func:`~hub.services.publication.get_release`) and its published
files (:func:`~hub.services.publication.release_file`, which serves only what the manifest lists
and checks each file's SHA-256). Every number a chart draws is read from the release's own
published CSV file, the one linked beside the chart: nothing comes from a candidate, the records
or the ledger. A retracted release shows a notice and no file.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from flask import Blueprint, current_app, render_template
from flask.typing import ResponseReturnValue
from flask_babel import gettext
from sqlalchemy.orm import Session

from contributors.schema import load_schema
from hub import jobs
from hub.db import get_session
from hub.domain_errors import HubError
from hub.portal.access import public
from hub.portal.charts import PageChart, answer_chart, chartable, code_label, country_fields
from hub.portal.i18n import current_language
from hub.services import publication

log = logging.getLogger("ctdhub.portal")

#: Kinds of the published data files charted on a release's page (publication's own words).
DP_TABLE, SAFE_TABLE = "differentially private table", "safe frequency table"
#: The columns a published table adds to its dimensions (publication's data files).
_VALUE_COLUMNS = frozenset({"count", "lower_95", "upper_95", "status"})
#: A safe table's margins are rows whose dimension says "Total" (sdc's tables).
_TOTAL = "Total"
#: A table with more cells than this is offered as files only: its bars could not be read.
MAX_CHARTED_CELLS = 120


def register(bp: Blueprint) -> None:
    """Attach the release pages to the portal's blueprint."""
    bp.add_url_rule("/releases", "releases", release_list)
    bp.add_url_rule("/releases/<id:release_id>", "release", release_page)
    bp.add_app_template_filter(field_title, "field_title")


@dataclass(frozen=True)
class TableCell:
    """One published cell: its key, its value (None when suppressed) and 95% interval."""

    key: dict[str, str | None]
    value: float | None
    interval: tuple[float, float] | None
    margin: bool = False

    @property
    def suppressed(self) -> bool:
        """Tell whether the release withheld this cell's value."""
        return self.value is None


@dataclass(frozen=True)
class ReleasedTable:
    """A published aggregate table as a page shows it, read from its published CSV file."""

    stem: str
    kind: str
    dimensions: list[str]
    cells: list[TableCell]
    files: dict[str, str]
    note: dict[str, Any]
    chart: PageChart | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Return the table's name in the release (``counts_by_year``)."""
        return self.stem.rsplit("/", 1)[-1]

    @property
    def anchor(self) -> str:
        """Return the table's id on the page."""
        return f"table-{self.stem.replace('/', '-')}"

    @property
    def has_interval(self) -> bool:
        """Tell whether the table's values come with 95% intervals (DP tables)."""
        return self.kind == DP_TABLE


def _published_directory() -> Path:
    # Where the public API's file route finds a release's files (hub.api.releases).
    directory = jobs.environment(current_app).release_directory
    return publication.Places.under(directory).published


def _release_url(release_id: str, path: str) -> str:
    # The public API's download route (hub.api.releases.release_file): one place serves files.
    return f"/v1/releases/{release_id}/files/{path}"


def _plain(text: str) -> str:
    """Return a published text cell as it was before spreadsheet neutralisation."""
    if text.startswith("'") and text[1:].startswith(publication.FORMULA_STARTS):
        return text[1:]
    return text


def _number(text: str) -> float | None:
    return None if text == "" else float(text)


def read_table(
    session: Session, release: dict[str, Any], stem: str, published: Path
) -> tuple[list[str], list[TableCell]]:
    """Read one published table's dimensions, and its cells if it is charted, from its CSV file
    (checked against the manifest).

    :raises hub.domain_errors.NotFound: if the release has no such file, or was retracted.
    :raises hub.domain_errors.Conflict: if the file no longer matches the manifest.
    """
    path = publication.release_file(session, release["id"], f"{stem}.csv", published)
    header = pd.read_csv(path, dtype="string", keep_default_na=False, nrows=0)
    dimensions = [str(c) for c in header.columns if c not in _VALUE_COLUMNS]
    if not chartable(dimensions):
        return dimensions, []  # offered as files only: its cells are not read
    frame = pd.read_csv(path, dtype="string", keep_default_na=False)
    cells = []
    for row in frame.to_dict("records"):
        key = {d: (None if row[d] == "" else _plain(str(row[d]))) for d in dimensions}
        suppressed = row.get("status") == "suppressed"
        value = None if suppressed else _number(str(row["count"]))
        low, high = row.get("lower_95", ""), row.get("upper_95", "")
        interval = None if value is None or not low or not high else (float(low), float(high))
        margin = any(code == _TOTAL for code in key.values()) and "status" in row
        cells.append(TableCell(key, value, interval, margin))
    return dimensions, cells


def _table_title(dimensions: list[str]) -> str:
    titles = [field_title(d) for d in dimensions]
    return str(gettext("Case records by %(fields)s", fields=gettext(" and ").join(titles)))


def field_title(name: str) -> str:
    """Return a published column's title in the page's language.

    A field of the record schema or a derived attribute by its title; a column the release
    adds (a count, its interval, a cell's status) by what it holds.
    """
    schema = load_schema()
    if name in schema:
        return str(gettext(schema.field(name).title))
    for entry in schema.as_dict().get("ctdhub:derivedAttributes", []):
        if entry["name"] == name:
            return str(gettext(str(entry["title"])))
    own = {
        "count": gettext("Case records"),
        "lower_95": gettext("Lower end of the 95% interval"),
        "upper_95": gettext("Upper end of the 95% interval"),
        "status": gettext("Published or suppressed"),
    }
    return str(own.get(name, name))


#: Charts already drawn, by the table file's SHA-256, its stem and the page's language: a
#: published file never changes, so neither does its chart.
_CHARTS: dict[tuple[str, str, str], PageChart | None] = {}
_CHARTS_KEPT = 256


def _chart(
    digest: str, stem: str, cells: list[TableCell], dimensions: list[str]
) -> PageChart | None:
    """Draw a published table as bars with whiskers, or a map (None if it is not charted)."""
    key = (digest, stem, current_language())
    if key in _CHARTS:
        return _CHARTS[key]
    drawn = [cell for cell in cells if not cell.margin]
    chart = None
    one_country = len(dimensions) == 1 and dimensions[0] in country_fields()
    if drawn and (len(drawn) <= MAX_CHARTED_CELLS or one_country):
        chart = answer_chart(
            {
                "group_by": dimensions,
                "measure": "count",
                "cells": [{"key": c.key, "value": c.value, "interval": c.interval} for c in drawn],
            },
            figure_id=f"chart-{stem.replace('/', '-')}",
            title=_table_title(dimensions),
            measure_label=gettext("case records"),
        )
    if len(_CHARTS) >= _CHARTS_KEPT:
        _CHARTS.clear()
    _CHARTS[key] = chart
    return chart


def released_tables(session: Session, release: dict[str, Any]) -> list[ReleasedTable]:
    """Return a release's aggregate tables, DP tables first, each read from its published file.

    A retracted release has none (its files are no longer published).
    """
    if release["retracted_at"] is not None:
        return []
    published = _published_directory()
    manifest = {item["path"]: item["sha256"] for item in release["files"]}
    notes: dict[str, Any] = release["notes"].get("files", {})
    tables = []
    for wanted in (DP_TABLE, SAFE_TABLE):
        for stem, note in notes.items():
            if note.get("guarantee") is None or _kind(stem) != wanted:
                continue
            dimensions, cells = read_table(session, release, stem, published)
            files = {
                suffix: _release_url(release["id"], f"{stem}.{suffix}")
                for suffix in publication.FORMATS
                if f"{stem}.{suffix}" in manifest
            }
            chart = _chart(manifest[f"{stem}.csv"], stem, cells, dimensions) if cells else None
            # Labels of the codes the page's table shows (only a charted table's is shown).
            labels = {
                f"{d}={code}": code_label(d, code)
                for cell in (cells if chart is not None else [])
                for d, code in cell.key.items()
                if code is not None
            }
            tables.append(
                ReleasedTable(stem, wanted, dimensions, cells, files, note, chart, labels)
            )
    return tables


def _kind(stem: str) -> str | None:
    if stem.startswith("dp/"):
        return DP_TABLE
    if stem.startswith("tables/"):
        return SAFE_TABLE
    return None


def data_files(release: dict[str, Any]) -> list[dict[str, Any]]:
    """Return a release's data files by stem: their note and their CSV, XLSX and Parquet links."""
    if release["retracted_at"] is not None:
        return []
    manifest = {item["path"] for item in release["files"]}
    files = []
    for stem, note in release["notes"].get("files", {}).items():
        links = {
            suffix: _release_url(release["id"], f"{stem}.{suffix}")
            for suffix in publication.FORMATS
            if f"{stem}.{suffix}" in manifest
        }
        files.append({"stem": stem, "note": note, "links": links})
    return files


def dictionary(session: Session, release: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the release's data dictionary: each resource of its data package and its fields."""
    if release["retracted_at"] is not None:
        return []
    published = _published_directory()
    path = publication.release_file(session, release["id"], publication.DATAPACKAGE, published)
    package = json.loads(path.read_text(encoding="utf-8"))
    return [
        {
            "path": resource["path"],
            "fields": [str(item["name"]) for item in resource["schema"]["fields"]],
        }
        for resource in package["resources"]
    ]


def _when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


@public
def release_list() -> ResponseReturnValue:
    """The published releases, newest first."""
    releases = publication.list_releases(get_session())
    for release in releases:
        release["published"] = _when(release["published_at"])
        release["retracted"] = _when(release["retracted_at"])
    return render_template("portal/releases/list.html", releases=releases)


@public
def release_page(release_id: str) -> ResponseReturnValue:
    """One release: its privacy notes, files, data dictionary and charts (none if retracted)."""
    session = get_session()
    release = publication.get_release(session, release_id)
    retracted = release["retracted_at"] is not None
    return render_template(
        "portal/releases/release.html",
        release=release,
        retracted=retracted,
        published=_when(release["published_at"]),
        retracted_on=_when(release["retracted_at"]),
        tables=released_tables(session, release),
        files=data_files(release),
        dictionary=dictionary(session, release),
        manifest_url=None if retracted else _release_url(release_id, publication.MANIFEST),
        notes_url=None if retracted else _release_url(release_id, publication.NOTES),
        schema=load_schema(),
        dp_table=DP_TABLE,
        format_names={"csv": "CSV", "xlsx": "XLSX", "parquet": "Parquet"},
    )


@dataclass(frozen=True)
class Headline:
    """One headline figure: the largest published cell of a one-way DP table."""

    table: ReleasedTable
    cell: TableCell

    @property
    def label(self) -> str:
        """Return the cell's category as the page shows it."""
        (name, code), *_ = self.cell.key.items()
        return code_label(name, code)


def latest_release(session: Session) -> tuple[dict[str, Any] | None, list[Headline]]:
    """Return the newest release still published and its headline figures.

    The headline of each one-way DP table is its largest published cell, with its interval:
    a number the release published, never one computed here.
    """
    release = next(
        (r for r in publication.list_releases(session) if r["retracted_at"] is None), None
    )
    if release is None:
        return None, []
    headlines = []
    try:
        tables = released_tables(session, release)
    except HubError:
        # A file missing or altered on disk: the home page stays up without headlines; the
        # release's own page and its downloads say what is wrong.
        log.warning("release %s: its files do not match its manifest", release["id"])
        return release, []
    for table in tables:
        if table.kind != DP_TABLE or len(table.dimensions) != 1:
            continue
        known = [c for c in table.cells if c.value is not None and c.key[table.dimensions[0]]]
        if known:
            headlines.append(Headline(table, max(known, key=lambda c: c.value or 0.0)))
    return release, headlines
