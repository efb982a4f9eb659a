"""Full release candidates as jobs, their policy checks, the board's quorum and publication."""

from __future__ import annotations

import csv
import hashlib
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from apiflask import APIFlask
from flask.testing import FlaskClient
from openpyxl import load_workbook
from scipy.optimize import linprog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contributors.normalise import format_records
from hub import jobs
from hub.actors import OPERATOR, PrincipalActor
from hub.crypto import Keyring
from hub.domain_errors import Conflict, NotAuthorized
from hub.models import (
    AuditEvent,
    Job,
    PrivacyLedger,
    PublishedRelease,
    ReleaseCandidate,
    ReleaseVote,
)
from hub.services import ledger, publication, releases
from hub.services.policies import (
    DEFAULT_POLICY,
    ActivePolicy,
    active_policy,
    digest,
    record_fields,
)
from hub.services.snapshot import analysis_snapshot, live_batches, snapshot_id
from policies import load_policy
from tests.conftest import Bearer, MakeClient
from tests.hub_uploads.test_uploads_api import post, sample_csv

CITIZENSHIP_TABLE = "citizenship_by_country_of_exploitation"


def as_active(document: dict[str, Any]) -> ActivePolicy:
    """A policy document as a version the hub would hold (not stored: built directly)."""
    text = yaml.safe_dump(document)
    policy = load_policy(text, record_fields())
    return ActivePolicy(policy.version, policy, digest(text), "not-stored", text)


def default_document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DEFAULT_POLICY.read_text("utf-8"))
    return loaded


def small_policy(**synthetic: Any) -> ActivePolicy:
    """The shipped policy, less its citizenship x country table (a sample of 2,000 records is
    too sparse for it: the default policy blocks it, as the first test shows), with a small
    synthetic draw."""
    document = default_document()
    tables = document["tables"]["frequency_tables"]
    document["tables"]["frequency_tables"] = [t for t in tables if t["name"] != CITIZENSHIP_TABLE]
    document["release"]["synthetic"] |= {"records": 1000, **synthetic}
    return as_active(document)


@pytest.fixture
def places(app: APIFlask, tmp_path: Path) -> publication.Places:
    """Candidates' and releases' folders in this test's temporary directory."""
    app.config["RELEASE_DIRECTORY"] = str(tmp_path / "releases")
    directory = tmp_path / "releases"
    return publication.Places(candidates=directory, published=directory / "published")


def build(
    app: APIFlask,
    session: Session,
    policy: ActivePolicy,
    places: publication.Places,
    actor: Any = OPERATOR,
) -> ReleaseCandidate:
    return releases.build_release(
        session,
        actor,
        policy,
        keyring=Keyring.from_json(app.config["KEYRING"]),
        snapshots=app.extensions["ctdhub.snapshots"],
        directory=places.candidates,
        seed=7,
    )


def spent(session: Session) -> Fraction:
    session.expire_all()
    row = session.get(PrivacyLedger, ledger.DATASET)
    return Fraction(0) if row is None else ledger.exact(row.spent_rho)


def charges(session: Session) -> int:
    session.expire_all()
    row = session.get(PrivacyLedger, ledger.DATASET)
    return 0 if row is None else row.charges


def count(session: Session, model: Any) -> int:
    session.expire_all()
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def download(client: FlaskClient, url: str) -> tuple[int, bytes]:
    """GET a file and close the response (a file is streamed: the test client keeps it open)."""
    response = client.get(url)
    try:
        return response.status_code, response.get_data()
    finally:
        response.close()


def failed_checks(candidate: ReleaseCandidate) -> list[tuple[str, str]]:
    assert candidate.checks is not None
    return [(r["check"], r["subject"]) for r in candidate.checks["results"] if not r["passed"]]


# --- step 1: the build ----------------------------------------------------------------------


def test_a_release_over_the_api_is_a_job_charged_once_and_a_failed_check_blocks_it(
    app: APIFlask,
    client: FlaskClient,
    db_session: Session,
    make_client: MakeClient,
    bearer: Bearer,
    accepted: int,
    places: publication.Places,
) -> None:
    cid, secret, board = make_client("Board", ["board"])
    headers = bearer(cid, secret)
    response = client.post("/v1/releases", json={"seed": 3}, headers=headers)
    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["id"]
    assert response.headers["Location"] == f"/v1/jobs/{job_id}"
    assert spent(db_session) == 0  # nothing is charged before a worker starts the build

    seen: list[str] = []
    assert jobs.run_job(app, job_id, observe=lambda stage, done, total: seen.append(stage)) == (
        "succeeded"
    )
    shown = client.get(f"/v1/jobs/{job_id}", headers=headers).get_json()
    assert shown["state"] == "succeeded" and shown["charged"] is True
    assert shown["progress"]["done"] == shown["progress"]["total"] > 0
    for stage in ("microdata", "safe tables", "dp tables", "measure", "checks", "write files"):
        assert stage in seen, stage

    shipped = active_policy(db_session, app.config)
    candidate = db_session.get_one(ReleaseCandidate, shown["result"]["release_candidate"])
    assert candidate.kind == "release" and candidate.created_by == board.id
    assert candidate.policy_version == 1 and candidate.policy_digest == shipped.digest
    live = tuple(batch for batch, _ in live_batches(db_session))
    assert tuple(candidate.batch_ids or ()) == live
    assert candidate.snapshot_id == snapshot_id(live)
    # The whole spend, charged once, exactly as the policy states it.
    assert spent(db_session) == Fraction(shipped.policy.release.total().rho)
    assert charges(db_session) == 1
    # The shipped policy's citizenship x country table cannot be protected in so few records:
    # the candidate is blocked, and says which check and why, with figures and no value.
    assert candidate.status == "blocked"
    assert ("secondary_suppression", f"tables.{CITIZENSHIP_TABLE}") in failed_checks(candidate)
    failure = next(
        r
        for r in (candidate.checks or {})["results"]
        if r["check"] == "secondary_suppression" and not r["passed"]
    )
    assert "could not be protected" in failure["reason"] and failure["figures"]["unprotected"] > 0
    shown_candidate = client.get(
        f"/v1/releases/candidates/{candidate.id}", headers=headers
    ).get_json()
    assert shown_candidate["status"] == "blocked" and shown_candidate["checks"]["passed"] is False
    tags = list(
        db_session.execute(
            select(AuditEvent.tag)
            .where(AuditEvent.subject_id == candidate.id)
            .order_by(AuditEvent.id)
        ).scalars()
    )
    assert tags == ["releases:release:charge", "releases:release:block"]


def test_a_full_candidate_holds_every_artefact_and_passes_its_checks(
    app: APIFlask, db_session: Session, accepted: int, places: publication.Places
) -> None:
    policy = small_policy()
    candidate = build(app, db_session, policy, places)
    assert candidate.status == "candidate", failed_checks(candidate)
    checks = {(r["check"], r["subject"]) for r in (candidate.checks or {})["results"]}
    for expected in [
        ("k_anonymity", "microdata"),
        ("l_diversity", "microdata"),
        ("record_risk", "microdata"),
        ("cell_threshold", "tables.by_year"),
        ("linear_bounds", "tables.gender_by_age"),
        ("secondary_suppression", "tables.by_country_of_exploitation"),
        ("differencing", "release"),
        ("artefact_spend", "release.synthetic"),
        ("artefact_spend", "release.dp_tables.counts_by_year"),
        ("dataset_cap", "release"),
    ]:
        assert expected in checks, expected
    files = (candidate.artefacts or {})["files"]
    stems = [
        "microdata",
        "synthetic",
        "tables/by_year",
        "tables/gender_by_age",
        *(f"dp/{t.name}" for t in policy.policy.release.dp_tables),
    ]
    for stem in stems:
        for suffix in ("csv", "xlsx", "parquet"):
            path = places.candidates / candidate.id / "files" / f"{stem}.{suffix}"
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            assert files[f"files/{stem}.{suffix}"] == digest
    # The DP tables carry 95% intervals around every count.
    year = pd.read_csv(places.candidates / candidate.id / "files" / "dp/counts_by_year.csv")
    assert list(year.columns) == ["yearOfRegistration", "count", "lower_95", "upper_95"]
    assert (year["lower_95"] <= year["upper_95"]).all() and (year["count"] >= 0).all()
    assert candidate.report is not None and "synthetic" in candidate.report
    assert candidate.report["microdata"]["records_in"] == accepted
    # Each DP table is charged what OpenDP's map says it spends for one person, which stays
    # within the decimal rho the policy writes (a float hair below it at most).
    total = Fraction(policy.policy.release.total().rho)
    assert total * (1 - Fraction(1, 10**12)) <= spent(db_session) <= total


def test_a_spend_over_the_policy_cap_is_refused_and_changes_nothing(
    app: APIFlask, db_session: Session, accepted: int, places: publication.Places
) -> None:
    document = default_document()
    document["privacy"]["dataset_cap"]["rho"] = 0.05
    document["privacy"]["researcher_allowance"]["rho"] = 0.01
    policy = as_active(document)
    build(app, db_session, small_policy(), places)  # 0.05 of the 0.05 is spent
    before = spent(db_session)
    with pytest.raises(ledger.BudgetExceeded, match="nothing was charged"):
        build(app, db_session, policy, places)
    assert spent(db_session) == before and charges(db_session) == 1
    assert count(db_session, ReleaseCandidate) == 1


# --- step 2: the board and publication ------------------------------------------------------


def _board(make_client: MakeClient, bearer: Bearer, n: int) -> list[tuple[Any, dict[str, str]]]:
    members = []
    for _ in range(n):
        cid, secret, principal = make_client("Board", ["board"])
        members.append((principal, bearer(cid, secret)))
    return members


def vote(
    client: FlaskClient, headers: dict[str, str], candidate_id: str, decision: str = "approve"
) -> Any:
    reason = {"approve": "meets_policy", "reject": "disclosure_risk"}.get(decision, "note")
    body = {"decision": decision, "reason_code": reason, "remark": "checked"}
    return client.post(f"/v1/releases/candidates/{candidate_id}/votes", json=body, headers=headers)


@pytest.fixture
def published(
    app: APIFlask,
    client: FlaskClient,
    db_session: Session,
    make_client: MakeClient,
    bearer: Bearer,
    accepted: int,
    places: publication.Places,
) -> dict[str, Any]:
    """A candidate built by one board member and published by two others' approvals."""
    (builder, builder_headers), (second, second_headers), (third, third_headers) = _board(
        make_client, bearer, 3
    )
    candidate = build(app, db_session, small_policy(), places, PrincipalActor.with_roles(builder))
    assert candidate.status == "candidate", failed_checks(candidate)
    first = vote(client, second_headers, candidate.id)
    assert first.status_code == 201, first.get_json()
    assert first.get_json()["state"] == "proposed" and first.get_json()["needed"] == 1
    assert count(db_session, PublishedRelease) == 0
    done = vote(client, third_headers, candidate.id)
    assert done.status_code == 201, done.get_json()
    outcome = done.get_json()
    assert outcome["state"] == "approved" and outcome["release"]
    return {
        "candidate": candidate.id,
        "release": outcome["release"],
        "board": [builder_headers, second_headers, third_headers],
    }


def test_the_quorum_publishes_an_immutable_release(
    client: FlaskClient, db_session: Session, published: dict[str, Any], places: publication.Places
) -> None:
    release = db_session.get_one(PublishedRelease, published["release"])
    candidate = db_session.get_one(ReleaseCandidate, published["candidate"])
    assert candidate.status == "published" and release.version == 1
    assert release.policy_version == candidate.policy_version == 1
    assert release.snapshot_id == candidate.snapshot_id == snapshot_id(tuple(release.batch_ids))
    # Public: no token.
    listed = client.get("/v1/releases").get_json()
    assert [r["id"] for r in listed] == [release.id]
    shown = client.get(f"/v1/releases/{release.id}").get_json()
    assert shown["version"] == 1 and shown["batch_set_digest"] == release.snapshot_id
    assert shown["built_before_a_withdrawal"] is False
    # Every file verifies against the manifest, served and on disk.
    root = places.published / release.id
    manifest = (root / publication.MANIFEST).read_text().splitlines()
    assert len(manifest) == len(release.manifest) > 20
    for line in manifest:
        digest, path = line.split("  ", 1)
        assert hashlib.sha256((root / path).read_bytes()).hexdigest() == digest
    status, body = download(client, f"/v1/releases/{release.id}/files/microdata.csv")
    assert status == 200
    assert hashlib.sha256(body).hexdigest() == release.manifest["microdata.csv"]
    status, body = download(client, f"/v1/releases/{release.id}/datapackage.json")
    package = json.loads(body)
    assert package["licenses"][0]["name"] == "CC-BY-4.0"
    names = {r["name"]: r for r in package["resources"]}
    micro = names["microdata"]
    assert micro["ctdhub:privacy"]["k"] == 11 and micro["ctdhub:privacy"]["l"] == 2
    gender = next(f for f in micro["schema"]["fields"] if f["name"] == "gender")
    assert gender["title"] and gender["description"]  # from the record schema
    dp = names["dp-counts_by_year"]["ctdhub:privacy"]
    assert (
        dp["privacy_unit"] == "one person, up to 3 records"
        and 0.005 * (1 - 1e-12) <= dp["rho"] <= 0.005  # OpenDP's charge for one person
        and dp["epsilon"] > 0
    )
    table = names["tables-by_year"]["ctdhub:privacy"]
    assert table["guarantee"] == "suppressed below 11" and "suppressed" in table
    notes = (root / publication.NOTES).read_text()
    assert "apostrophe" in notes and "suppressed below 11" in notes
    # A path outside the manifest is not served.
    assert download(client, f"/v1/releases/{release.id}/files/../board/report.json")[0] == 404
    assert download(client, f"/v1/releases/{release.id}/files/nothing.csv")[0] == 404


def test_board_errors_are_refused_and_change_nothing(
    app: APIFlask,
    client: FlaskClient,
    db_session: Session,
    make_client: MakeClient,
    bearer: Bearer,
    accepted: int,
    places: publication.Places,
) -> None:
    (builder, builder_headers), (second, second_headers), (third, third_headers) = _board(
        make_client, bearer, 3
    )
    cid, secret, researcher = make_client("University", ["researcher"])
    researcher_headers = bearer(cid, secret)
    candidate = build(app, db_session, small_policy(), places, PrincipalActor.with_roles(builder))

    def unchanged() -> tuple[int, int, int]:
        return (
            count(db_session, ReleaseVote),
            count(db_session, AuditEvent),
            count(db_session, PublishedRelease),
        )

    before = unchanged()
    # Not on the board: 403, by the token's scope and by the service itself.
    assert vote(client, researcher_headers, candidate.id).status_code == 403
    with pytest.raises(NotAuthorized):
        publication.vote_on_candidate(
            db_session,
            PrincipalActor.with_roles(researcher),
            candidate.id,
            publication.Ballot("approve", "meets_policy"),
            quorum=2,
            places=places,
        )
    # The builder never votes on their own candidate.
    own = vote(client, builder_headers, candidate.id)
    assert own.status_code == 409 and own.get_json()["code"] == "proposer_votes"
    assert unchanged() == before

    assert vote(client, second_headers, candidate.id).status_code == 201
    before = unchanged()
    again = vote(client, second_headers, candidate.id, "reject")
    assert again.status_code == 409 and again.get_json()["code"] == "second_vote"
    assert unchanged() == before

    assert vote(client, third_headers, candidate.id).status_code == 201
    release_count = count(db_session, PublishedRelease)
    assert release_count == 1
    cid4, secret4, _fourth = make_client("Board", ["board"])
    fourth_headers = bearer(cid4, secret4)
    before = unchanged()
    late = vote(client, fourth_headers, candidate.id)
    assert late.status_code == 409 and late.get_json()["code"] == "published"
    with pytest.raises(Conflict, match="already published"):
        publication.publish(db_session, PrincipalActor.with_roles(third), candidate.id, places)
    assert unchanged() == before


def test_a_blocked_candidate_cannot_be_approved(
    app: APIFlask,
    client: FlaskClient,
    db_session: Session,
    make_client: MakeClient,
    bearer: Bearer,
    accepted: int,
    places: publication.Places,
) -> None:
    document = default_document()
    document["release"]["synthetic"]["records"] = 500
    blocked = build(app, db_session, as_active(document), places)
    assert blocked.status == "blocked"
    (_, headers), (_, other) = _board(make_client, bearer, 2)
    before = count(db_session, ReleaseVote)
    refused = vote(client, headers, blocked.id)
    assert refused.status_code == 409 and refused.get_json()["code"] == "blocked"
    assert "failed the policy's checks" in refused.get_json()["detail"]
    assert count(db_session, ReleaseVote) == before
    # A rejection decides a candidate at once.
    candidate = build(app, db_session, small_policy(), places)
    rejected = vote(client, other, candidate.id, "reject")
    assert rejected.status_code == 201 and rejected.get_json()["state"] == "rejected"
    db_session.expire_all()
    assert db_session.get_one(ReleaseCandidate, candidate.id).status == "rejected"


# --- attacking the published files ----------------------------------------------------------


def _suppressed_bounds(table: pd.DataFrame, dimensions: list[str]) -> list[tuple[float, float]]:
    """Bound every suppressed cell of a published 1- or 2-way table with margins by linear
    programs over its published cells (an intruder's attack, written apart from the hub's)."""
    inner = table
    for d in dimensions:
        inner = inner[inner[d] != "Total"]
    hidden = inner[inner["status"] == "suppressed"].reset_index(drop=True)
    if hidden.empty:
        return []
    index = {tuple(row[d] for d in dimensions): i for i, row in hidden.iterrows()}
    equalities: list[np.ndarray] = []
    rights: list[float] = []
    # Every published margin (or total) minus its published inner cells is the sum of its
    # suppressed inner cells.
    margins = table[table[dimensions].eq("Total").any(axis=1) & (table["status"] == "published")]
    for _, margin in margins.iterrows():
        fixed = [d for d in dimensions if margin[d] != "Total"]
        members = inner
        for d in fixed:
            members = members[members[d] == margin[d]]
        row = np.zeros(len(hidden))
        for _, cell in members[members["status"] == "suppressed"].iterrows():
            row[index[tuple(cell[d] for d in dimensions)]] = 1
        known = members.loc[members["status"] == "published", "count"].astype(float).sum()
        equalities.append(row)
        rights.append(float(margin["count"]) - known)
    bounds = []
    for i in range(len(hidden)):
        objective = np.zeros(len(hidden))
        objective[i] = 1
        low = linprog(objective, A_eq=np.array(equalities), b_eq=rights, bounds=(0, None))
        high = linprog(-objective, A_eq=np.array(equalities), b_eq=rights, bounds=(0, None))
        assert low.status == 0
        bounds.append((float(low.fun), float("inf") if high.status == 3 else -float(high.fun)))
    return bounds


def test_an_intruder_learns_nothing_the_policy_forbids_from_the_published_files(
    app: APIFlask, db_session: Session, published: dict[str, Any], places: publication.Places
) -> None:
    root = places.published / published["release"]
    # k and l by an independent group-by of the published microdata.
    micro = pd.read_csv(root / "microdata.csv", dtype="string", keep_default_na=False)
    qis = ["gender", "ageBroad", "citizenship", "CountryOfExploitation", "yearOfRegistration"]
    classes = micro.groupby(qis, dropna=False)
    assert classes.size().min() >= 11
    assert classes["exploitationType"].nunique().min() >= 2
    assert set(micro.columns) == {*qis, "exploitationType"}
    # Row order carries nothing: the records are not in any column's order.
    varied = [column for column in micro.columns if micro[column].nunique() > 1]
    assert varied
    for column in varied:
        assert not micro[column].is_monotonic_increasing
        assert not micro[column].is_monotonic_decreasing
    # No suppressed cell of a published table can be bounded into 1 .. 10 by the margins.
    for name, dims in [
        ("by_year", ["yearOfRegistration"]),
        ("gender_by_age", ["gender", "ageBroad"]),
    ]:
        table = pd.read_csv(
            root / "tables" / f"{name}.csv",
            dtype={d: "string" for d in dims},
            keep_default_na=False,
        )
        assert set(table["status"]) <= {"published", "suppressed"}  # never "primary"
        shown = pd.to_numeric(table.loc[table["status"] == "published", "count"])
        assert ((shown == 0) | (shown >= 11)).all()
        for low, high in _suppressed_bounds(table, dims):
            assert not (low >= 1 - 1e-9 and high <= 10 + 1e-9), (name, low, high)
    # The published tables still recount from the records they were built from.
    snapshot = analysis_snapshot(
        db_session, Keyring.from_json(app.config["KEYRING"]), app.extensions["ctdhub.snapshots"]
    )
    records = format_records(snapshot.records)
    year = pd.read_csv(root / "tables" / "by_year.csv", dtype="string", keep_default_na=False)
    total = year[(year["yearOfRegistration"] == "Total")]
    assert int(total["count"].iloc[0]) == len(records)


def test_spreadsheet_formulas_are_neutralised_and_the_notes_say_how(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "text": pd.array(
                ["=1+1", "+A1", "-2", "@SUM(A1)", "\tx", "\rx", "safe", None], dtype="string"
            ),
            "count": pd.array([1, 2, 3, 4, 5, 6, -7, None], dtype="Int64"),
        }
    )
    publication.write_data_files(tmp_path, "t", frame)
    with (tmp_path / "t.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert [row[0] for row in rows[1:8]] == [
        "'=1+1",
        "'+A1",
        "'-2",
        "'@SUM(A1)",
        "'\tx",
        "'\rx",
        "safe",
    ]
    assert rows[7][1] == "-7"  # a number stays a number
    sheet = load_workbook(tmp_path / "t.xlsx").active
    assert sheet is not None
    cells = [row[0] for row in sheet.iter_rows(min_row=2, max_row=8)]
    assert all(cell.data_type == "s" for cell in cells)
    assert [cell.value for cell in cells][:4] == ["'=1+1", "'+A1", "'-2", "'@SUM(A1)"]
    parquet = pd.read_parquet(tmp_path / "t.parquet")
    assert parquet["text"].tolist()[:2] == ["=1+1", "+A1"]  # typed data: unchanged
    assert "apostrophe" in publication.NEUTRALISATION


def test_the_xlsx_holds_every_text_as_text_and_every_number_as_a_number(tmp_path: Path) -> None:
    # What a spreadsheet would otherwise turn into something else: a link, a number with its
    # leading zero lost, a formula behind a header; and missing values of every kind.
    frame = pd.DataFrame(
        {
            "text": pd.array(
                ["https://example.org", "012", "1e5", "TRUE", "=1+1", None], dtype="string"
            ),
            "count": pd.array([1, None, 3, 4, 5, 6], dtype="Int64"),
            "share": [0.5, float("nan"), 1.25, None, 2.0, 3.0],
        }
    )
    publication.write_data_files(tmp_path, "t", frame)
    book = load_workbook(tmp_path / "t.xlsx")
    sheet = book.active
    assert sheet is not None
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == ("text", "count", "share")
    assert [row[0] for row in rows[1:]] == [
        "https://example.org",
        "012",
        "1e5",
        "TRUE",
        "'=1+1",
        None,
    ]
    assert [row[1] for row in rows[1:]] == [1, None, 3, 4, 5, 6]
    assert [row[2] for row in rows[1:]] == [0.5, None, 1.25, None, 2, 3]
    texts = [row[0] for row in sheet.iter_rows(min_row=2, max_row=6)]
    assert all(cell.data_type == "s" and cell.hyperlink is None for cell in texts)
    with pytest.raises(ValueError, match="do not fit in one worksheet"):
        publication.write_xlsx(
            tmp_path / "big.xlsx", "big", pd.DataFrame(index=range(publication.XLSX_MAX_ROWS))
        )
    # A text a cell cannot hold is refused, never cut short or left out with the row's rest.
    long = pd.DataFrame({"text": ["x" * 32_768], "after": ["kept"]})
    with pytest.raises(ValueError, match="row 1 of long does not fit"):
        publication.write_xlsx(tmp_path / "long.xlsx", "long", long)


def test_the_datapackage_validates_with_frictionless(
    published: dict[str, Any], places: publication.Places
) -> None:
    frictionless = pytest.importorskip("frictionless")
    report = frictionless.validate(
        str(places.published / published["release"] / publication.DATAPACKAGE)
    )
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])


# --- retraction and withdrawal --------------------------------------------------------------


def test_retraction_by_quorum_hides_the_files_and_keeps_the_record(
    client: FlaskClient, db_session: Session, published: dict[str, Any]
) -> None:
    release_id = published["release"]
    builder, second, third = published["board"]
    url = f"/v1/releases/{release_id}/retraction/votes"
    refused = client.post(
        url, json={"decision": "approve", "reason_code": "meets_policy"}, headers=builder
    )
    assert refused.status_code == 400  # a retraction is proposed with a reason first
    proposal = {"decision": "comment", "reason_code": "note", "remark": "consent withdrawn"}
    assert client.post(url, json=proposal, headers=builder).status_code == 201
    approve = {"decision": "approve", "reason_code": "meets_policy"}
    first = client.post(url, json=approve, headers=second).get_json()
    assert first["retracted"] is False and first["needed"] == 1
    assert download(client, f"/v1/releases/{release_id}/files/microdata.csv")[0] == 200
    done = client.post(url, json=approve, headers=third).get_json()
    assert done["retracted"] is True
    shown = client.get(f"/v1/releases/{release_id}").get_json()
    assert shown["retracted_at"] and shown["files"] == [] and shown["notes"]
    assert download(client, f"/v1/releases/{release_id}/files/microdata.csv")[0] == 404
    assert download(client, f"/v1/releases/{release_id}/datapackage.json")[0] == 404
    tags = list(
        db_session.execute(
            select(AuditEvent.tag)
            .where(AuditEvent.subject_id == release_id)
            .order_by(AuditEvent.id)
        ).scalars()
    )
    assert tags[0] == "releases:release:publish" and tags[-1] == "releases:release:retract"
    again = client.post(url, json=approve, headers=builder)
    assert again.status_code == 409


def test_a_withdrawn_upload_is_absent_from_every_later_release(
    app: APIFlask,
    client: FlaskClient,
    db_session: Session,
    make_client: MakeClient,
    bearer: Bearer,
    partner_a: Any,
    ctdc_file: Path,
    places: publication.Places,
) -> None:
    first = post(client, partner_a.headers, sample_csv(ctdc_file, step=50)).get_json()
    second = post(client, partner_a.headers, sample_csv(ctdc_file, step=50, start=25)).get_json()
    (builder, _), (_, b), (_, c) = _board(make_client, bearer, 3)
    actor = PrincipalActor.with_roles(builder)
    old = build(app, db_session, small_policy(), places, actor)
    assert old.status == "candidate", failed_checks(old)
    vote(client, b, old.id)
    old_release = vote(client, c, old.id).get_json()["release"]
    assert (
        client.delete(f"/v1/uploads/{second['id']}", headers=partner_a.headers).status_code == 200
    )
    new = build(app, db_session, small_policy(), places, actor)
    assert new.status == "candidate", failed_checks(new)
    assert len(new.batch_ids or []) == 1 and set(new.batch_ids or []) < set(old.batch_ids or [])
    vote(client, b, new.id)
    new_release = vote(client, c, new.id).get_json()["release"]
    notes = client.get(f"/v1/releases/{new_release}").get_json()["notes"]
    assert notes["withdrawals"]["built_before_a_withdrawal"] == [{"id": old_release, "version": 1}]
    assert client.get(f"/v1/releases/{old_release}").get_json()["built_before_a_withdrawal"]
    assert not client.get(f"/v1/releases/{new_release}").get_json()["built_before_a_withdrawal"]
    _, by_year = download(client, f"/v1/releases/{new_release}/files/tables/by_year.csv")
    total = [line for line in by_year.decode().splitlines() if line.startswith("Total")]
    assert total == [f"Total,{first['rows_accepted']},published"]
    assert json.loads(json.dumps(notes))  # JSON all through
    assert count(db_session, Job) == 0
