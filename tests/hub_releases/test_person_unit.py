"""The person as the privacy unit through the hub: releases and queries over linked records.

Record linkage (another part of the hub) fills the snapshot's person key; here the analysis
snapshot the services read is the real one with a person key added the way linkage gives it:
some people with several records, the other records unlinked. The key must shape every DP
figure and the microdata's k, and must never leave the hub.
"""

from __future__ import annotations

import dataclasses
import io
import zipfile
from typing import Any

import numpy as np
import pandas as pd
import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from disclosure_control.person import PERSON_COLUMN
from hub.services import publication, queries, releases
from hub.services.snapshot import Snapshot, analysis_snapshot
from tests.hub_queries.conftest import (  # noqa: F401 - fixtures used by name
    Researcher,
    accepted_records,
    make_researcher,
    researcher,
)
from tests.hub_releases.test_release import (  # noqa: F401 - places is a fixture
    build,
    failed_checks,
    places,
    small_policy,
)

UNIT = "one person, up to 3 records"


def linked(*args: Any, **kwargs: Any) -> Snapshot:
    """Return the live analysis snapshot with person keys: records 0-1, 2-3, ... of the first
    300 are pairs of one person each, the first 30 people have a third record, the rest are
    unlinked (no key)."""
    snapshot = analysis_snapshot(*args, **kwargs)
    n = len(snapshot.records)
    keys = pd.array([None] * n, dtype="Int64")
    pairs = min(n, 300)
    keys[:pairs] = np.arange(pairs) // 2
    keys[pairs : pairs + 30] = np.arange(min(30, max(n - pairs, 0)))
    return dataclasses.replace(snapshot, records=snapshot.records.assign(**{PERSON_COLUMN: keys}))


@pytest.fixture
def linkage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(releases, "analysis_snapshot", linked)
    monkeypatch.setattr(queries, "analysis_snapshot", linked)


def test_a_release_over_linked_records_states_the_person_unit_and_never_writes_the_key(
    app: APIFlask,
    db_session: Session,
    accepted: int,
    places: publication.Places,  # noqa: F811 - the fixture imported above
    linkage: None,
) -> None:
    policy = small_policy()
    assert policy.policy.privacy.privacy_unit.description == UNIT
    candidate = build(app, db_session, policy, places)
    assert candidate.status == "candidate", failed_checks(candidate)
    k_check = next(r for r in (candidate.checks or {})["results"] if r["check"] == "k_anonymity")
    assert "persons" in k_check["reason"]
    root = places.candidates / candidate.id
    written = [path for path in root.rglob("*") if path.is_file()]
    assert written
    for path in written:
        if path.suffix in (".xlsx", ".parquet"):
            # Column names inside these containers are stored as plain text too.
            body = path.read_bytes()
            texts = [body]
            if path.suffix == ".xlsx":
                with zipfile.ZipFile(io.BytesIO(body)) as book:
                    texts = [book.read(name) for name in book.namelist()]
            assert not any(PERSON_COLUMN.encode() in text for text in texts), path
        else:
            assert PERSON_COLUMN not in path.read_text("utf-8", errors="replace"), path
    microdata = pd.read_csv(root / "files" / "microdata.csv")
    assert PERSON_COLUMN not in microdata.columns
    # The figures the notes publish count what the persons' step withheld too.
    summary = (candidate.report or {})["microdata"]
    assert summary["records_kept"] == len(microdata)
    assert summary["records_kept"] + summary["records_suppressed"] == summary["records_in"]
    assert (
        summary["records_suppressed"]
        >= summary["records_suppressed_in_classes_of_fewer_than_k_people"]
    )


def test_a_query_over_linked_records_states_the_unit_and_never_returns_the_key(
    client: FlaskClient,
    researcher: Researcher,  # noqa: F811 - the fixture imported above
    accepted_records: int,  # noqa: F811 - the fixture imported above
    linkage: None,
) -> None:
    spec = {"measure": {"kind": "count"}, "group_by": ["gender"], "spend": {"rho": 0.05}}
    preview = client.post("/v1/queries/preview", json=spec, headers=researcher.headers)
    assert preview.get_json()["privacy_unit"] == UNIT
    # Three records of one person can share a cell: the noise is three times the record's.
    (statistic,) = preview.get_json()["statistics"]
    assert statistic["scale"] == pytest.approx(3 * (1 / (2 * 0.05)) ** 0.5, rel=1e-9)
    answered = client.post("/v1/queries", json=spec, headers=researcher.headers)
    assert answered.status_code == 201, answered.get_json()
    assert answered.get_json()["privacy_unit"] == UNIT
    assert PERSON_COLUMN not in answered.get_data(as_text=True)
    for field in ("group_by", "filters"):
        asked = (
            {**spec, "group_by": [PERSON_COLUMN]}
            if field == "group_by"
            else {**spec, "filters": [{"field": PERSON_COLUMN, "values": [1]}]}
        )
        refused = client.post("/v1/queries", json=asked, headers=researcher.headers)
        assert 400 <= refused.status_code < 500
        # The refusal names the field the researcher wrote, and no record value.
        assert "problem" in refused.content_type
