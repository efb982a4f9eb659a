"""DP synthetic release candidates: charged to the dataset's ledger, exactly, before any fit."""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest
from apiflask import APIFlask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contributors.schema import load_schema
from hub.actors import OPERATOR, Actor, PrincipalActor
from hub.cli import release
from hub.crypto import Keyring
from hub.domain_errors import InvalidInput, NotAuthorized
from hub.models import AuditEvent, PrivacyLedger, ReleaseCandidate, ResearcherAllowance
from hub.services import ledger, releases, transparency
from hub.services.policies import active_policy, budget_policy
from hub.services.releases import SyntheticRequest
from tests.conftest import MakeClient

COLUMNS = ("gender", "ageBroad", "majorityStatus", "isForcedLabour", "isSexualExploit")


def build(
    app: APIFlask,
    session: Session,
    request: SyntheticRequest,
    directory: Path,
    actor: Actor = OPERATOR,
) -> ReleaseCandidate:
    return releases.build_synthetic(
        session,
        actor,
        request,
        keyring=Keyring.from_json(app.config["KEYRING"]),
        snapshots=app.extensions["ctdhub.snapshots"],
        policy=budget_policy(active_policy(session, app.config), app.config),
        directory=directory,
    )


def spent(session: Session) -> Fraction:
    session.expire_all()
    row = session.get(PrivacyLedger, ledger.DATASET)
    return Fraction(0) if row is None else ledger.exact(row.spent_rho)


def tags(session: Session) -> list[str]:
    return list(session.execute(select(AuditEvent.tag).order_by(AuditEvent.id)).scalars())


def test_a_candidate_charges_its_rho_exactly_and_keeps_its_files(
    app: APIFlask, db_session: Session, accepted: int, tmp_path: Path
) -> None:
    request = SyntheticRequest(records=500, epsilon=1.0, columns=COLUMNS, seed=7)
    row = build(app, db_session, request, tmp_path)

    rho = request.checked_rho()
    assert spent(db_session) == Fraction(rho)
    assert row.status == "candidate" and row.kind == releases.SYNTHETIC
    assert Fraction(row.rho) == Fraction(rho)
    assert row.spend is not None and 0 < row.spend["rho"] <= rho
    assert row.spend["epsilon"] <= 1.0
    # A release charges the dataset's ledger alone: no researcher's allowance is touched.
    assert db_session.execute(select(func.count()).select_from(ResearcherAllowance)).scalar() == 0
    assert tags(db_session)[-2:] == ["releases:synthetic:charge", "releases:synthetic:build"]
    # The public log states the unit the synthesizer bounded (the default policy's person).
    (logged,) = [
        e["body"]
        for e in transparency.entries(db_session)
        if e["body"].get("release_candidate") == row.id
    ]
    assert logged["privacy_unit"] == "one person, up to 3 records"
    assert transparency.candidate_unit(row) == logged["privacy_unit"]

    folder = tmp_path / row.id
    assert row.artefacts is not None
    assert sorted(p.name for p in folder.iterdir()) == sorted(releases.ARTEFACTS)
    for name, digest in row.artefacts.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    table = pd.read_csv(folder / "synthetic.csv", dtype="string", keep_default_na=False)
    assert list(table.columns) == list(COLUMNS) and len(table) == 500
    domain = releases.synthesis_domain(load_schema(), COLUMNS)
    for column, codes in zip(domain.columns, domain.codes, strict=True):
        assert set(table[column]) <= {*codes, ""}, column
    assert row.report is not None and row.report["privacy"] is not None
    assert row.report["metadata"]["training records"] == accepted - accepted // 10


def test_a_candidate_is_redrawn_exactly_from_its_stored_model(
    app: APIFlask, db_session: Session, accepted: int, tmp_path: Path
) -> None:
    row = build(app, db_session, SyntheticRequest(records=300, rho=0.05, columns=COLUMNS), tmp_path)
    kept = pd.read_csv(tmp_path / row.id / "synthetic.csv", dtype="string", keep_default_na=False)
    again = releases.redraw(db_session, OPERATOR, row.id)
    pd.testing.assert_frame_equal(again, kept, check_dtype=False)


def test_a_spend_over_the_cap_is_refused_and_changes_nothing(
    app: APIFlask, db_session: Session, accepted: int, tmp_path: Path
) -> None:
    # The active release policy's dataset cap governs (rho 1 in the default policy); the
    # settings' caps were only the defaults of its first version.
    cap = Fraction(active_policy(db_session, app.config).policy.privacy.dataset_cap.rho)
    over = SyntheticRequest(records=10, rho=float(cap) * 1.5)
    with pytest.raises(ledger.BudgetExceeded, match="this synthetic release costs"):
        build(app, db_session, over, tmp_path)
    assert spent(db_session) == 0
    assert db_session.execute(select(func.count()).select_from(ReleaseCandidate)).scalar() == 0
    assert tags(db_session)[-1] == "releases:synthetic:refuse"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (SyntheticRequest(records=10), "exactly one of epsilon or rho"),
        (SyntheticRequest(records=10, epsilon=1.0, rho=0.1), "exactly one of epsilon or rho"),
        (SyntheticRequest(records=0, epsilon=1.0), "records must be between"),
        (SyntheticRequest(records=10, epsilon=-1.0), "epsilon must be positive"),
        (SyntheticRequest(records=10, rho=float("nan")), "rho must be positive"),
        (SyntheticRequest(records=10, epsilon=1.0, delta=0.0), "delta must be in"),
        (SyntheticRequest(records=10, epsilon=1.0, holdout=0.6), "holdout must be in"),
        (SyntheticRequest(records=10, epsilon=1.0, columns=("nope",)), "not in the record schema"),
        (
            SyntheticRequest(records=10, epsilon=1.0, columns=("caseNo", "gender")),
            "no enumerated domain",
        ),
        (SyntheticRequest(records=10, epsilon=1.0, columns=("gender",)), "at least two columns"),
    ],
)
def test_bad_requests_are_refused_before_any_charge(
    app: APIFlask,
    db_session: Session,
    accepted: int,
    tmp_path: Path,
    request_: SyntheticRequest,
    message: str,
) -> None:
    with pytest.raises(InvalidInput, match=message):
        build(app, db_session, request_, tmp_path)
    assert spent(db_session) == 0


def test_no_records_no_candidate(app: APIFlask, db_session: Session, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no accepted records"):
        build(app, db_session, SyntheticRequest(records=10, epsilon=1.0), tmp_path)
    assert spent(db_session) == 0


def test_a_failed_build_is_marked_leaves_no_files_and_its_charge_stands(
    app: APIFlask, db_session: Session, accepted: int, tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the candidates' folder should be")
    request = SyntheticRequest(records=50, rho=0.02, columns=COLUMNS)
    with pytest.raises(OSError):
        build(app, db_session, request, blocked)
    db_session.expire_all()
    row = db_session.execute(select(ReleaseCandidate)).scalar_one()
    assert row.status == "failed" and row.error is not None and row.model is None
    # The records were measured before the failure: the privacy loss is real and stays charged.
    assert spent(db_session) == Fraction(0.02)
    assert tags(db_session)[-2:] == ["releases:synthetic:charge", "releases:synthetic:fail"]
    assert blocked.read_text().startswith("a file")
    with pytest.raises(InvalidInput, match="no finished synthetic model"):
        releases.redraw(db_session, OPERATOR, row.id)


def test_only_the_board_builds_candidates(
    app: APIFlask, db_session: Session, make_client: MakeClient, accepted: int, tmp_path: Path
) -> None:
    _, _, researcher = make_client("University", ["researcher"])
    request = SyntheticRequest(records=20, rho=0.01, columns=COLUMNS)
    with pytest.raises(NotAuthorized, match="releases:create"):
        build(app, db_session, request, tmp_path, actor=PrincipalActor.with_roles(researcher))
    assert spent(db_session) == 0
    _, _, board = make_client("Board", ["board"])
    board_actor = PrincipalActor.with_roles(board)
    row = build(app, db_session, request, tmp_path, actor=board_actor)
    assert row.created_by == board.id
    assert [r.id for r in releases.list_candidates(db_session, board_actor)] == [row.id]


def test_the_command_line_builds_lists_and_redraws(
    app: APIFlask, db_session: Session, accepted: int, tmp_path: Path
) -> None:
    app.config["RELEASE_DIRECTORY"] = str(tmp_path / "candidates")
    runner = app.test_cli_runner()
    args = ["release", "synthetic", "--records", "40", "--rho", "0.03", "--seed", "3"]
    args += [arg for column in COLUMNS for arg in ("--column", column)]
    built = runner.invoke(release, args[1:])
    assert built.exit_code == 0, built.output
    candidate_id = built.output.split()[0]
    listed = runner.invoke(release, ["list"])
    assert listed.exit_code == 0 and candidate_id in listed.output
    out = tmp_path / "again.csv"
    redrawn = runner.invoke(release, ["redraw", candidate_id, "--out", str(out)])
    assert redrawn.exit_code == 0, redrawn.output
    kept = tmp_path / "candidates" / candidate_id / "synthetic.csv"
    assert out.read_bytes() == kept.read_bytes()
    refused = runner.invoke(release, ["synthetic", "--records", "5"])
    assert refused.exit_code != 0 and "exactly one of epsilon or rho" in refused.output


def test_a_stored_model_that_no_longer_reads_is_refused_clearly(
    app: APIFlask, db_session: Session, accepted: int, tmp_path: Path
) -> None:
    row = build(app, db_session, SyntheticRequest(records=20, rho=0.02, columns=COLUMNS), tmp_path)
    row.model = (row.model or "")[:-40]  # a truncated model file
    with pytest.raises(InvalidInput, match="cannot be redrawn: synthesis model"):
        releases.redraw(db_session, OPERATOR, row.id)
    db_session.rollback()


def test_the_command_line_says_when_files_cannot_be_written(
    app: APIFlask, db_session: Session, accepted: int, tmp_path: Path
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    app.config["RELEASE_DIRECTORY"] = str(blocked)
    args = ["synthetic", "--records", "10", "--rho", "0.01", "--column", "gender"]
    args += ["--column", "ageBroad"]
    result = app.test_cli_runner().invoke(release, args)
    assert result.exit_code == 1
    assert "the candidate's files could not be written" in result.output
    assert "Traceback" not in result.output
    db_session.expire_all()
    assert db_session.execute(select(ReleaseCandidate.status)).scalar_one() == "failed"
