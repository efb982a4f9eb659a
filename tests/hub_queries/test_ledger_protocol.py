"""The ledger's protocol for queries: lock, check, charge, commit, then measure.

The measurement is observed (or made to fail) by wrapping the real OpenDP call the service
makes, ``hub.services.queries.release``: the wrapper pauses before it, or raises instead of it.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from disclosure_control.dp import PrivacySpend
from hub.models import AuditEvent, PrivacyLedger, QueryAnswer, utcnow
from hub.services import ledger, queries, transparency
from tests.hub_queries.conftest import Researcher
from tests.hub_uploads.test_uploads_api import post, sample_csv

SPEC = {"measure": {"kind": "count"}, "group_by": ["gender"], "spend": {"rho": 0.01}}
#: Bounds the wait of a paused measurement, so a broken test ends instead of hanging.
GUARD_SECONDS = 120


def _charges(session: Session) -> int:
    session.rollback()
    return int(session.scalar(select(PrivacyLedger.charges)) or 0)


def _states(session: Session) -> list[str]:
    session.rollback()
    return list(session.scalars(select(QueryAnswer.state)))


def test_an_upload_is_not_blocked_while_a_query_measures(
    client: FlaskClient,
    researcher: Researcher,
    partner_a: Any,
    accepted_records: int,
    ctdc_file: Path,
    db_session: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    measuring, proceed = threading.Event(), threading.Event()
    real_release = queries.release

    def paused_release(*args: Any, **kwargs: Any) -> Any:
        measuring.set()
        proceed.wait(GUARD_SECONDS)
        return real_release(*args, **kwargs)

    monkeypatch.setattr(queries, "release", paused_release)
    answered: list[Any] = []
    asking = threading.Thread(
        target=lambda: answered.append(
            client.application.test_client().post(
                "/v1/queries", json=SPEC, headers=researcher.headers
            )
        )
    )
    asking.start()
    try:
        assert measuring.wait(GUARD_SECONDS), "the query never reached its measurement"
        # The charge is committed before OpenDP runs: visible to another connection now.
        assert _charges(db_session) == 1 and _states(db_session) == ["measuring"]
        # An upload takes the database's write lock (SQLite) to store its batch; it must not
        # wait behind the measurement (before, the ledger's lock was held while measuring).
        stored = post(client, partner_a.headers, sample_csv(ctdc_file, step=301))
        assert stored.status_code == 201, stored.get_json()
    finally:
        proceed.set()
        asking.join(GUARD_SECONDS)
    assert [response.status_code for response in answered] == [201]
    assert _states(db_session) == ["answered"] and _charges(db_session) == 1


def test_a_measurement_failing_after_the_charge_leaves_the_charge(
    client: FlaskClient,
    researcher: Researcher,
    accepted_records: int,
    db_session: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def failing_release(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("measurement broke near the value 'Ukraine'")

    with monkeypatch.context() as patch:
        patch.setattr(queries, "release", failing_release)
        failed = client.post("/v1/queries", json=SPEC, headers=researcher.headers)
    assert failed.status_code == 500
    problem = failed.get_json()
    assert problem["type"] == "urn:ctdhub:problem:measurement-failed"
    assert "the charge stands" in problem["detail"] and "Ukraine" not in failed.get_data(
        as_text=True
    )
    # The charge stands; the answer is marked failed with the error's type, never its text.
    assert _charges(db_session) == 1 and _states(db_session) == ["failed"]
    row = db_session.scalars(select(QueryAnswer)).one()
    # Nothing measured is stored: only the unit the charge was made under.
    assert row.error == "RuntimeError" and row.answer == {
        "privacy_unit": "one person, up to 3 records"
    }
    budget = client.get("/v1/budget", headers=researcher.headers).get_json()
    assert 0.01 * (1 - 1e-12) <= budget["researcher"]["spent"]["rho"] <= 0.01
    tags = list(
        db_session.scalars(
            select(AuditEvent.tag)
            .where(AuditEvent.tag.startswith("queries:"))
            .order_by(AuditEvent.id)
        )
    )
    assert tags == ["queries:query:run", "queries:query:fail"]

    # Asking again is not a free re-measurement: it is charged again, then measured.
    again = client.post("/v1/queries", json=SPEC, headers=researcher.headers)
    assert again.status_code == 201 and again.get_json()["reused"] is False
    assert _charges(db_session) == 2 and _states(db_session) == ["answered"]
    # An answer released is re-served free, as before.
    served = client.post("/v1/queries", json=SPEC, headers=researcher.headers)
    assert served.status_code == 200 and served.get_json()["cells"] == again.get_json()["cells"]
    assert _charges(db_session) == 2
    runs = db_session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.tag == "queries:query:run")
    )
    assert runs == 2
    # The log holds both charges of the one answer, each written with its charge: the second
    # is named after the first, and the chain verifies against the answer as it stands.
    spends = [e for e in transparency.entries(db_session) if e["kind"] == "privacy_spend"]
    assert len(spends) == 2 and spends[0]["body"]["rho"] == spends[1]["body"]["rho"] == 0.01
    assert Fraction(spends[1]["body"]["left_rho_exact"]) == Fraction(
        spends[0]["body"]["left_rho_exact"]
    ) - Fraction(0.01)
    assert transparency.verify(db_session) == []


def test_a_measurement_cut_off_is_charged_again_before_it_is_measured_again(
    client: FlaskClient,
    researcher: Researcher,
    accepted_records: int,
    db_session: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def dying_release(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("stands in for the process dying mid-measurement")

    with monkeypatch.context() as patch:
        patch.setattr(queries, "release", dying_release)
        assert client.post("/v1/queries", json=SPEC, headers=researcher.headers).status_code == 500
    # What a process killed while measuring leaves: the row measuring, charged long ago.
    db_session.execute(
        update(QueryAnswer).values(
            state="measuring",
            error=None,
            charged_at=utcnow() - queries.ABANDONED_AFTER - timedelta(seconds=1),
        )
    )
    db_session.commit()
    again = client.post("/v1/queries", json=SPEC, headers=researcher.headers)
    assert again.status_code == 201, again.get_json()
    assert _charges(db_session) == 2 and _states(db_session) == ["answered"]


def test_admit_checks_and_charges_under_the_lock_or_charges_nothing(
    app: Any, db_session: Session
) -> None:
    caps = ledger.BudgetPolicy(
        dataset_rho=Fraction(3, 10),
        dataset_delta=Fraction(0),
        researcher_rho=Fraction(1, 10),
        researcher_delta=Fraction(0),
        display_delta=1e-6,
    )
    ledger.lock_dataset(db_session)
    ledger.admit(db_session, None, PrivacySpend(0.25), caps, what="this release")
    db_session.commit()
    ledger.lock_dataset(db_session)
    with pytest.raises(ledger.BudgetExceeded, match="this release costs rho=0.25"):
        ledger.admit(db_session, None, PrivacySpend(0.25), caps, what="this release")
    db_session.rollback()
    assert _charges(db_session) == 1
    spent = ledger.dataset_spent(db_session)
    assert spent == (Fraction(0.25), Fraction(0))
