"""Charging is atomic under real concurrency: several processes racing for one ledger.

Each worker is a separate process (spawned, so it shares no state, not even an import) with
its own hub, engine and connection pool on the same database; all wait at a barrier and then
post their queries as fast as they can. With a dataset cap of exactly ``FITTING`` charges, the
ledger must end at exactly that many charges, never above the cap, whatever the interleaving.
"""

from __future__ import annotations

import multiprocessing
import threading
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.crypto import Keyring
from hub.models import AuditEvent, PrivacyLedger, QueryAnswer
from hub.services import transparency
from tests.hub_queries.conftest import MakeResearcher, SetCaps, hub_settings
from tests.hub_queries.worker import run_into

WORKERS = 4
QUERIES_PER_WORKER = 3
FITTING = 5
YEARS = range(2010, 2010 + WORKERS * QUERIES_PER_WORKER)


def _spec(year: int) -> dict[str, Any]:
    # Distinct questions of one shape: each is charged (none is a re-served repeat) and all
    # cost the same, so exactly FITTING of them fit under the cap.
    return {
        "measure": {"kind": "count"},
        "group_by": ["gender"],
        "filters": [{"field": "yearOfRegistration", "values": [year]}],
        "spend": {"rho": 0.01},
    }


def test_concurrent_charges_never_pass_the_cap(
    client: FlaskClient,
    make_researcher: MakeResearcher,
    set_caps: SetCaps,
    accepted_records: int,
    database_url: str,
    test_keyring: Keyring,
    db_session: Session,
) -> None:
    researchers = [make_researcher(f"Lab {index}") for index in range(WORKERS)]
    costs = {
        client.post(
            "/v1/queries/preview", json=_spec(year), headers=researchers[0].headers
        ).get_json()["spend"]["rho"]
        for year in YEARS
    }
    assert len(costs) == 1, "the specs were meant to cost the same"
    (cost,) = costs
    with localcontext() as context:
        context.prec = 1000
        cap = str(Decimal(cost) * FITTING)  # exact: a float is a finite decimal
    assert Fraction(cap) == FITTING * Fraction(cost)
    # The caps are the active policy's, exactly as the board wrote them.
    set_caps(DP_DATASET_RHO_CAP=cap, DP_RESEARCHER_RHO_ALLOWANCE=cap)
    overrides = hub_settings(database_url, test_keyring)
    years = list(YEARS)
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(WORKERS)
    results = spawn.Queue()
    workers = [
        spawn.Process(
            target=run_into,
            args=(
                overrides,
                researcher.headers,
                [_spec(year) for year in years[index::WORKERS]],
                barrier,
                results,
            ),
        )
        for index, researcher in enumerate(researchers)
    ]
    for worker in workers:
        worker.start()
    reports = [results.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert all(isinstance(report, list) for report in reports), reports
    outcomes = [outcome for report in reports for outcome in report]

    statuses = sorted(status for status, _, _ in outcomes)
    assert statuses == [201] * FITTING + [409] * (len(years) - FITTING)
    assert {slug for status, _, slug in outcomes if status == 409} == {
        "urn:ctdhub:problem:privacy-budget-exceeded"
    }
    db_session.expire_all()
    ledger = db_session.scalars(select(PrivacyLedger)).one()
    assert ledger.charges == FITTING
    assert Fraction(ledger.spent_rho) == FITTING * Fraction(cost) <= Fraction(cap)
    answers = db_session.scalar(select(func.count()).select_from(QueryAnswer))
    runs = db_session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.tag == "queries:query:run")
    )
    assert answers == runs == FITTING
    # Each charge wrote its transparency entry in its own transaction: one intact chain with
    # one spend entry per charge, the last stating what the ledger had left.
    log = transparency.entries(db_session)
    spends = [entry["body"] for entry in log if entry["kind"] == "privacy_spend"]
    assert len(spends) == FITTING
    assert [entry["seq"] for entry in log] == list(range(1, len(log) + 1))
    assert Fraction(spends[-1]["left_rho_exact"]) == Fraction(cap) - FITTING * Fraction(cost)
    assert transparency.verify(db_session) == []


def test_the_same_question_asked_at_once_is_charged_once(
    client: FlaskClient,
    make_researcher: MakeResearcher,
    accepted_records: int,
    db_session: Session,
) -> None:
    # Threads of one process, each with its own request context, session and connection: the
    # stored answer is looked up again under the ledger's lock, so the losers re-serve it.
    researcher = make_researcher("Lab")
    spec = _spec(2015)
    barrier = threading.Barrier(WORKERS)
    statuses: list[int] = []
    answers: list[list[Any]] = []

    def ask() -> None:
        own = client.application.test_client()
        barrier.wait(timeout=60)
        response = own.post("/v1/queries", json=spec, headers=researcher.headers)
        statuses.append(response.status_code)
        answers.append(response.get_json()["cells"])

    threads = [threading.Thread(target=ask) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(statuses) == [200] * (WORKERS - 1) + [201]
    assert all(cells == answers[0] for cells in answers)
    db_session.expire_all()
    assert db_session.scalars(select(PrivacyLedger)).one().charges == 1
    assert db_session.scalar(select(func.count()).select_from(QueryAnswer)) == 1
