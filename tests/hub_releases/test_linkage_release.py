"""The DP count of people recorded by more than one partner, in a published release (issue 16).

Two partners upload overlapping cases with linkage encodings; a release built under the default
policy charges the count with the rest before measuring, publishes it with its privacy unit and
spend, and no file, note or API answer holds a person key, a link or an encoding.
"""

from __future__ import annotations

import io
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from contributors.linkage import ENCODING_COLUMN, encode_all, encoding_text
from disclosure_control.person import PERSON_COLUMN
from hub.actors import PrincipalActor
from hub.crypto import keyring
from hub.models import PublishedRelease
from hub.services import publication, releases
from hub.services.snapshot import SnapshotCache, analysis_snapshot
from tests.conftest import Bearer, MakeClient
from tests.hub_releases.test_release import (
    _board,
    build,
    download,
    failed_checks,
    places,
    small_policy,
    spent,
    vote,
)
from tests.hub_uploads.test_linkage_upload import distinct_people, typo, with_encodings
from tests.hub_uploads.test_uploads_api import post, sample_csv

__all__ = ["places"]  # the fixture, used by name

SECRET = "linkage-secret-shared-by-partners-0001"
SHARED = 120


@pytest.fixture
def overlapping(
    client: FlaskClient, partner_a: Any, partner_b: Any, ctdc_file: Path
) -> list[bytes]:
    """Partner A's cases, and partner B's, of whom the first SHARED are A's people again."""
    body_a, body_b = sample_csv(ctdc_file, step=50), sample_csv(ctdc_file, step=200, start=1)
    n_a, n_b = body_a.count(b"\n") - 1, body_b.count(b"\n") - 1
    crowd = distinct_people(n_a + n_b, seed=16)
    ours = crowd[:n_a]
    theirs = [typo(p) for p in ours[:SHARED]] + crowd[n_a + SHARED :]
    enc_a, enc_b = encode_all(ours, SECRET), encode_all(theirs, SECRET)
    for partner, body, enc in ((partner_a, body_a, enc_a), (partner_b, body_b, enc_b)):
        response = post(client, partner.headers, with_encodings(body, list(enc)))
        assert response.status_code == 201, response.get_json()
    return [*enc_a, *enc_b]


def test_the_published_release_counts_people_in_several_sources_and_leaks_no_link(
    app: APIFlask,
    client: FlaskClient,
    db_session: Session,
    make_client: MakeClient,
    bearer: Bearer,
    overlapping: list[bytes],
    places: publication.Places,
) -> None:
    truth = analysis_snapshot(db_session, keyring(app), SnapshotCache(0))
    assert truth.people_in_several_sources == SHARED
    (builder, _), (_, second), (_, third) = _board(make_client, bearer, 3)
    policy = small_policy()
    assert policy.policy.release.linkage_count is not None
    candidate = build(app, db_session, policy, places, PrincipalActor.with_roles(builder))
    assert candidate.status == "candidate", failed_checks(candidate)
    # Charged with the rest, before measuring, and checked against what the policy allows.
    assert spent(db_session) == Fraction(policy.policy.release.total().rho)
    assert (candidate.spend or {})["linkage_count"]["rho"] == 0.005
    checks = {(r["check"], r["subject"]) for r in (candidate.checks or {})["results"]}
    assert ("artefact_spend", "release.linkage_count") in checks

    for member in (second, third):
        assert vote(client, member, candidate.id).status_code == 201
    release = db_session.query(PublishedRelease).one()
    status, body = download(
        client, f"/v1/releases/{release.id}/files/dp/people_in_several_sources.csv"
    )
    assert status == 200, body
    published = pd.read_csv(io.BytesIO(body))
    assert list(published.columns) == ["statistic", "count", "lower_95", "upper_95"]
    (row,) = published.to_dict("records")
    # Scale 10 at rho 0.005: six scales off the truth happens with probability below 1e-8.
    assert abs(row["count"] - SHARED) <= 60
    assert row["lower_95"] <= row["count"] <= row["upper_95"]
    status, package = download(client, f"/v1/releases/{release.id}/datapackage.json")
    resources = {r["name"]: r for r in json.loads(package)["resources"]}
    note = resources["dp-people_in_several_sources"]["ctdhub:privacy"]
    assert note["privacy_unit"] == releases.LINKAGE_UNIT
    assert note["rho"] == 0.005 and note["epsilon"] > 0
    assert "rho = 0.005" in note["stated_as"]

    # The intruder's walk: every published file, every candidate file (the board's report
    # too), every API answer about the release: no person key, no encoding, no link.
    texts: list[str] = []
    for root in (places.published / release.id, places.candidates / candidate.id):
        for path in sorted(root.rglob("*")):
            if path.is_file():
                texts.append(path.read_bytes().decode("latin-1"))
                if path.suffix == ".csv":
                    assert PERSON_COLUMN not in pd.read_csv(path).columns, path
    for url in (
        "/v1/releases",
        f"/v1/releases/{release.id}",
        f"/v1/releases/candidates/{candidate.id}",
    ):
        headers = bearer(*make_client("Board", ["board"])[:2]) if "candidates" in url else {}
        texts.append(client.get(url, headers=headers).get_data(as_text=True))
    text = "\n".join(texts)
    assert PERSON_COLUMN not in text and ENCODING_COLUMN not in text
    for encoding in overlapping:
        assert encoding_text(encoding)[:24] not in text
