"""DP researcher queries through the Flask test client, on SQLite and PostgreSQL."""

from __future__ import annotations

import gc
import json
import os
import stat
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from disclosure_control.person import DRAW_COLUMN
from hub.models import AuditEvent, PrivacyLedger, QueryAnswer, ResearcherAllowance
from hub.services import queries
from tests.hub_queries.conftest import MakeHub, MakeResearcher, Researcher, SetCaps

PROBLEM_JSON = "application/problem+json"
GENDER_COUNT: dict[str, Any] = {
    "measure": {"kind": "count"},
    "group_by": ["gender"],
    "spend": {"rho": 0.05},
}


def spent(session: Session, principal_id: str) -> tuple[Fraction, Fraction, int]:
    """Return (dataset spent, researcher spent, stored answers) straight from the tables."""
    session.expire_all()
    ledger = session.scalar(select(PrivacyLedger.spent_rho))
    allowance = session.scalar(
        select(ResearcherAllowance.spent_rho).where(
            ResearcherAllowance.principal_id == principal_id
        )
    )
    answers = session.scalar(select(func.count()).select_from(QueryAnswer)) or 0
    return Fraction(ledger or "0"), Fraction(allowance or "0"), int(answers)


def test_preview_states_spend_and_accuracy_and_charges_nothing(
    client: FlaskClient, researcher: Researcher, accepted_records: int, db_session: Session
) -> None:
    response = client.post("/v1/queries/preview", json=GENDER_COUNT, headers=researcher.headers)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert 0 < body["spend"]["rho"] <= 0.05
    assert body["spend"]["epsilon"] > body["spend"]["rho"]
    assert body["cells"] == 4  # three gender codes and "missing"
    (statistic,) = body["statistics"]
    # The default policy's unit is one person with up to 3 records, who may all fall in one
    # cell: a discrete Gaussian with sigma = 3/sqrt(2 rho) = 3 sqrt(10); 95% half-width near
    # 1.96 sigma.
    assert body["privacy_unit"] == "one person, up to 3 records"
    assert 1.9 * 3 * 10**0.5 <= statistic["half_width"] <= 2.1 * 3 * 10**0.5 + 1
    assert body["fits"] is True
    assert spent(db_session, researcher.principal_id) == (Fraction(0), Fraction(0), 0)
    budget = client.get("/v1/budget", headers=researcher.headers).get_json()
    assert budget["researcher"]["spent"]["rho"] == 0.0


def test_query_charges_exactly_once_and_is_reserved_free(
    client: FlaskClient, researcher: Researcher, accepted_records: int, db_session: Session
) -> None:
    first = client.post("/v1/queries", json=GENDER_COUNT, headers=researcher.headers)
    assert first.status_code == 201, first.get_json()
    answer = first.get_json()
    assert answer["reused"] is False
    assert [cell["key"]["gender"] for cell in answer["cells"]] == [
        "Female",
        "Male",
        "Transgender/NonConforming",
        None,
    ]
    for cell in answer["cells"]:
        low, high = cell["interval"]
        assert low <= max(cell["value"], 0) <= high
    assert "discrete Gaussian" in answer["mechanism"]
    rho = answer["spend"]["rho"]
    assert spent(db_session, researcher.principal_id) == (Fraction(rho), Fraction(rho), 1)

    # The same question (members in another order) is re-served: same values, no charge.
    same = {"spend": {"rho": 0.05}, "group_by": ["gender"], "measure": {"kind": "count"}}
    again = client.post("/v1/queries", json=same, headers=researcher.headers)
    assert again.status_code == 200
    assert again.get_json()["reused"] is True
    assert again.get_json()["cells"] == answer["cells"]
    assert again.get_json()["id"] == answer["id"]
    assert spent(db_session, researcher.principal_id) == (Fraction(rho), Fraction(rho), 1)

    budget = client.get("/v1/budget", headers=researcher.headers).get_json()
    assert budget["researcher"]["spent"]["rho"] == rho
    assert Fraction(budget["researcher"]["remaining"]["rho_exact"]) == Fraction("0.25") - Fraction(
        rho
    )
    assert budget["researcher"]["charges"] == 1
    assert budget["researcher"]["remaining"]["epsilon"] > 0


def test_every_query_is_audited_without_the_answer(
    client: FlaskClient, researcher: Researcher, accepted_records: int, db_session: Session
) -> None:
    answer = client.post("/v1/queries", json=GENDER_COUNT, headers=researcher.headers).get_json()
    client.post("/v1/queries", json=GENDER_COUNT, headers=researcher.headers)
    events = db_session.scalars(
        select(AuditEvent).where(AuditEvent.tag.like("queries:%")).order_by(AuditEvent.id)
    ).all()
    assert [event.tag for event in events] == ["queries:query:run", "queries:query:reuse"]
    run, reuse = events
    assert run.actor_id == reuse.actor_id == researcher.principal_id
    assert run.details["rho"] == answer["spend"]["rho"] and reuse.details["rho"] == 0.0
    assert run.details["spec"]["group_by"] == ["gender"]
    assert run.at is not None
    text = json.dumps([event.details for event in events])
    assert "cells" not in text and "interval" not in text


def test_nonnegative_counts_keep_the_total_and_cost_nothing_more(
    client: FlaskClient, researcher: Researcher, accepted_records: int, db_session: Session
) -> None:
    spec = {**GENDER_COUNT, "spend": {"rho": 0.001}}  # noisy enough to push cells below zero
    raw = client.post("/v1/queries", json=spec, headers=researcher.headers).get_json()
    shown = client.post(
        "/v1/queries?nonnegative_counts=true", json=spec, headers=researcher.headers
    ).get_json()
    assert shown["reused"] is True and shown["post_processed"] is True
    values = [cell["value"] for cell in shown["cells"]]
    assert all(isinstance(value, int) and value >= 0 for value in values)
    assert sum(values) == max(0, round(sum(cell["value"] for cell in raw["cells"])))
    assert [cell["noisy"] for cell in shown["cells"]] == [cell["value"] for cell in raw["cells"]]
    assert spent(db_session, researcher.principal_id)[2] == 1


def test_over_allowance_is_refused_with_what_is_left_and_charges_nothing(
    client: FlaskClient,
    researcher: Researcher,
    accepted_records: int,
    db_session: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = client.post(
        "/v1/queries", json={**GENDER_COUNT, "spend": {"rho": 0.2}}, headers=researcher.headers
    )
    assert first.status_code == 201
    before = spent(db_session, researcher.principal_id)
    # Watch the real release: a refused query must be refused before OpenDP runs at all.
    releases: list[object] = []
    real_release = queries.release  # type: ignore[attr-defined]  # imported there, not exported

    def watched(*args: Any, **kwargs: Any) -> Any:
        releases.append(args)
        return real_release(*args, **kwargs)

    monkeypatch.setattr(queries, "release", watched)
    refused = client.post(
        "/v1/queries",
        json={**GENDER_COUNT, "group_by": ["ageBroad"], "spend": {"rho": 0.1}},
        headers=researcher.headers,
    )
    assert refused.status_code == 409 and refused.mimetype == PROBLEM_JSON
    problem = refused.get_json()
    assert problem["type"] == "urn:ctdhub:problem:privacy-budget-exceeded"
    assert problem["ledger"] == "researcher"
    left = Fraction("0.25") - Fraction(first.get_json()["spend"]["rho"])
    assert Fraction(problem["remaining"]["rho_exact"]) == left
    assert "left" in problem["detail"] and "nothing was charged" in problem["detail"]
    assert spent(db_session, researcher.principal_id) == before
    assert releases == []
    tags = db_session.scalars(
        select(AuditEvent.tag).where(AuditEvent.tag.like("queries:%")).order_by(AuditEvent.id)
    ).all()
    assert tags == ["queries:query:run", "queries:query:refuse"]
    refusal = db_session.scalars(
        select(AuditEvent).where(AuditEvent.tag == "queries:query:refuse")
    ).one()
    assert refusal.details["ledger"] == "researcher"
    assert refusal.details["spec"]["group_by"] == ["ageBroad"]


def test_the_dataset_cap_binds_every_researcher_together(
    make_hub: MakeHub,
    make_researcher: MakeResearcher,
    accepted_records: int,
    db_session: Session,
) -> None:
    # The allowance is the float 0.2 written exactly: under the default policy's unit (one
    # person, up to 3 records) OpenDP's charge for rho 0.2 is that float, a hair above the
    # decimal 0.2, which the ledger (exact, in rationals) would refuse.
    hub = make_hub(
        DP_DATASET_RHO_CAP="0.3",
        DP_RESEARCHER_RHO_ALLOWANCE="0.200000000000000011102230246251565404236316680908203125",
    )
    one, two = make_researcher("University"), make_researcher("Institute")
    spec = {**GENDER_COUNT, "spend": {"rho": 0.2}}
    first = hub.post("/v1/queries", json=spec, headers=one.headers)
    assert first.status_code == 201, first.get_json()
    refused = hub.post("/v1/queries", json=spec, headers=two.headers)
    assert refused.status_code == 409
    assert refused.get_json()["ledger"] == "dataset"
    budget = hub.get("/v1/budget", headers=two.headers).get_json()
    assert budget["researcher"]["spent"]["rho"] == 0.0
    assert budget["researcher"]["allowance"]["rho"] == 0.2
    assert budget["dataset_ledger"]["remaining"]["rho"] <= 0.1 + 1e-12


def test_a_cap_is_compared_exactly_not_in_floating_point(
    client: FlaskClient,
    set_caps: SetCaps,
    make_researcher: MakeResearcher,
    accepted_records: int,
) -> None:
    # An allowance 1e-30 below the exact sum of three charges refuses the third; one equal
    # to it admits all three. Floats cannot tell these two allowances apart: the ledger reads
    # the allowance exactly as the active policy's document writes it.
    probe = make_researcher("Probe")
    specs = [
        {**GENDER_COUNT, "group_by": [field], "spend": {"rho": rho}}
        for field, rho in (("gender", 0.125), ("ageBroad", 0.25), ("Datasource", 0.125))
    ]
    charges = [
        client.post("/v1/queries/preview", json=spec, headers=probe.headers).get_json()["spend"][
            "rho"
        ]
        for spec in specs
    ]
    with localcontext() as context:
        context.prec = 1000
        exact_sum = sum((Decimal(charge) for charge in charges), Decimal(0))
        short = exact_sum - Decimal("1e-30")
    assert float(Fraction(str(short))) == float(Fraction(str(exact_sum)))
    for allowance, expected in ((short, [201, 201, 409]), (exact_sum, [201, 201, 201])):
        set_caps(DP_DATASET_RHO_CAP="1.0", DP_RESEARCHER_RHO_ALLOWANCE=str(allowance))
        researcher = make_researcher(f"Exact {expected[-1]}")
        statuses = [
            client.post("/v1/queries", json=spec, headers=researcher.headers).status_code
            for spec in specs
        ]
        assert statuses == expected


def test_a_spec_outside_the_schema_is_a_clear_problem(
    client: FlaskClient, researcher: Researcher
) -> None:
    bad = {**GENDER_COUNT, "group_by": ["caseNo"]}
    response = client.post("/v1/queries", json=bad, headers=researcher.headers)
    assert response.status_code == 400 and response.mimetype == PROBLEM_JSON
    assert response.get_json()["field"] == "group_by[0]"
    assert "caseNo" in response.get_json()["detail"]
    no_spend = client.post(
        "/v1/queries/preview",
        json={"measure": {"kind": "count"}, "spend": {"rho": 0.1, "half_width": 3}},
        headers=researcher.headers,
    )
    assert no_spend.status_code == 400 and no_spend.get_json()["field"] == "spend"
    unknown = client.post(
        "/v1/queries", json={**GENDER_COUNT, "limit": 3}, headers=researcher.headers
    )
    assert unknown.status_code == 422 and unknown.mimetype == PROBLEM_JSON


def test_partners_and_anonymous_callers_cannot_query(
    client: FlaskClient, partner_a: Any, accepted_records: int
) -> None:
    anonymous = client.post("/v1/queries", json=GENDER_COUNT)
    assert anonymous.status_code == 401 and anonymous.mimetype == PROBLEM_JSON
    for path in ("/v1/queries", "/v1/queries/preview"):
        refused = client.post(path, json=GENDER_COUNT, headers=partner_a.headers)
        assert refused.status_code == 403 and refused.mimetype == PROBLEM_JSON
    assert client.get("/v1/budget", headers=partner_a.headers).status_code == 403


def test_a_new_upload_makes_a_new_snapshot_and_a_new_charge(
    client: FlaskClient,
    researcher: Researcher,
    partner_a: Any,
    accepted_records: int,
    db_session: Session,
    ctdc_file: Any,
) -> None:
    from tests.hub_uploads.test_uploads_api import post, sample_csv

    first = client.post("/v1/queries", json=GENDER_COUNT, headers=researcher.headers).get_json()
    assert (
        post(client, partner_a.headers, sample_csv(ctdc_file, step=250, start=1)).status_code == 201
    )
    second = client.post("/v1/queries", json=GENDER_COUNT, headers=researcher.headers)
    assert second.status_code == 201
    assert second.get_json()["snapshot_id"] != first["snapshot_id"]
    assert spent(db_session, researcher.principal_id)[2] == 2


def test_a_mean_has_an_interval_within_the_bounds(
    client: FlaskClient, researcher: Researcher, accepted_records: int
) -> None:
    spec = {"measure": {"kind": "mean", "field": "yearOfRegistration"}, "spend": {"rho": 0.1}}
    answer = client.post("/v1/queries", json=spec, headers=researcher.headers).get_json()
    (cell,) = answer["cells"]
    low, high = cell["interval"]
    assert 2000 <= low <= cell["value"] <= high <= 2026


def test_a_hub_without_records_answers_zeros_plus_noise(
    client: FlaskClient, researcher: Researcher
) -> None:
    response = client.post("/v1/queries", json=GENDER_COUNT, headers=researcher.headers)
    assert response.status_code == 201, response.get_json()
    assert len(response.get_json()["cells"]) == 4


def test_a_spend_may_be_asked_as_epsilon_or_as_a_target_accuracy(
    client: FlaskClient, researcher: Researcher
) -> None:
    as_epsilon = client.post(
        "/v1/queries/preview",
        json={**GENDER_COUNT, "spend": {"epsilon": 1.0, "delta": 1e-6}},
        headers=researcher.headers,
    ).get_json()
    assert as_epsilon["spend"]["epsilon"] <= 1.0 and as_epsilon["spend"]["delta"] == 1e-6
    as_accuracy = client.post(
        "/v1/queries/preview",
        json={**GENDER_COUNT, "spend": {"half_width": 20}},
        headers=researcher.headers,
    ).get_json()
    assert as_accuracy["statistics"][0]["half_width"] <= 20
    finer = client.post(
        "/v1/queries/preview",
        json={**GENDER_COUNT, "spend": {"half_width": 10}},
        headers=researcher.headers,
    ).get_json()
    assert finer["spend"]["rho"] > as_accuracy["spend"]["rho"]


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({"group_by": ["typeOfLabourBegging"]}, "group_by[0]", "group by 'typeOfLabourBegging'"),
        (
            {"filters": [{"field": "isOtherExploit", "values": [True]}]},
            "filters[0].field",
            "filter on 'isOtherExploit'",
        ),
    ],
)
def test_a_field_the_policy_does_not_allow_is_refused_without_spend(
    client: FlaskClient,
    researcher: Researcher,
    accepted_records: int,
    db_session: Session,
    spec: dict[str, Any],
    field: str,
    words: str,
) -> None:
    # Both fields are in the record schema; the default policy does not list them.
    asked = {**GENDER_COUNT, **spec}
    for path in ("/v1/queries/preview", "/v1/queries"):
        refused = client.post(path, json=asked, headers=researcher.headers)
        assert refused.status_code == 403, refused.get_json()
        assert refused.get_json()["field"] == field
        assert words in refused.get_json()["detail"] and "version 1" in refused.get_json()["detail"]
    assert db_session.scalar(select(func.count()).select_from(QueryAnswer)) == 0
    # Nothing charged (the ledger's row may exist: adopting the first policy version logs it
    # under the ledger's lock).
    assert not any(db_session.scalars(select(PrivacyLedger.charges)))
    assert client.get("/v1/budget", headers=researcher.headers).get_json()["policy_version"] == 1


def test_the_dp_snapshot_is_a_private_tmpfs_image_dropped_with_its_batch_set(
    client: FlaskClient,
    app: APIFlask,
    researcher: Researcher,
    partner_a: Any,
    accepted_records: int,
    ctdc_file: Any,
) -> None:
    """By default OpenDP scans one Arrow image per batch set on tmpfs, readable by the hub's
    user only; a new batch set gets its own, and an image evicted from the cache is removed."""
    from disclosure_control.dp.snapshot import on_tmpfs
    from tests.hub_uploads.test_uploads_api import post, sample_csv

    cache = app.extensions["ctdhub.dp_snapshots"]
    cache.size = 1
    first = client.post("/v1/queries", json=GENDER_COUNT, headers=researcher.headers)
    assert first.status_code == 201
    # Held as a query still measuring holds it, after its charge.
    held = cache._items[first.get_json()["snapshot_id"]]
    image = held._path
    assert image is not None and on_tmpfs(os.path.dirname(image))
    assert stat.S_IMODE(os.stat(image).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(image)).st_mode) == 0o700
    assert (
        post(client, partner_a.headers, sample_csv(ctdc_file, step=250, start=1)).status_code == 201
    )
    second = client.post("/v1/queries", json=GENDER_COUNT, headers=researcher.headers)
    assert second.status_code == 201
    assert second.get_json()["snapshot_id"] != first.get_json()["snapshot_id"]
    # Evicted, but its reader can still scan it; the image goes with the last reader.
    assert first.get_json()["snapshot_id"] not in cache._items
    assert held.scan(["gender"]).collect().height == held.height
    del held
    gc.collect()
    assert not os.path.exists(image) and not os.path.exists(os.path.dirname(image))
    cache._items.popitem()[1].close()


def test_past_the_snapshot_cap_a_query_scans_the_batches_lazily_for_the_same_answer(
    client: FlaskClient,
    app: APIFlask,
    make_hub: MakeHub,
    make_researcher: MakeResearcher,
    partner_a: Any,
    accepted_records: int,
    ctdc_file: Any,
) -> None:
    """A hub capped at 10 records in memory reads the batches one by one into tmpfs images:
    the records OpenDP scans are the in-memory hub's exactly, and the answer states the same
    snapshot, spend, privacy unit and accuracy (only the noise drawn differs)."""
    from tests.hub_uploads.test_uploads_api import post, sample_csv

    assert (
        post(client, partner_a.headers, sample_csv(ctdc_file, step=250, start=1)).status_code == 201
    )
    capped = make_hub(SNAPSHOT_MAX_RECORDS="10")
    one, two = make_researcher("University"), make_researcher("Institute")
    lazy = capped.post("/v1/queries", json=GENDER_COUNT, headers=one.headers)
    whole = client.post("/v1/queries", json=GENDER_COUNT, headers=two.headers)
    assert lazy.status_code == whole.status_code == 201, lazy.get_json()
    lazy_answer, whole_answer = lazy.get_json(), whole.get_json()
    snapshot = lazy_answer["snapshot_id"]
    assert snapshot == whole_answer["snapshot_id"]
    noisy = {"id", "cells", "created_at"}
    assert {k: v for k, v in lazy_answer.items() if k not in noisy} == {
        k: v for k, v in whole_answer.items() if k not in noisy
    }

    # The same cells (intervals are clipped to what a count can be, so only keys compare).
    assert [c["key"] for c in lazy_answer["cells"]] == [c["key"] for c in whole_answer["cells"]]
    lazy_data = capped.application.extensions["ctdhub.dp_snapshots"]._items[snapshot]
    whole_data = app.extensions["ctdhub.dp_snapshots"]._items[snapshot]
    try:
        assert lazy_data.lazy and not whole_data.lazy
        assert len(lazy_data._paths) == 2  # one image per batch
        assert lazy_data.height == whole_data.height
        # The same records and the same linked person keys; the bounding draw is random.
        assert lazy_data.frame.drop(DRAW_COLUMN).equals(whole_data.frame.drop(DRAW_COLUMN))
        # The snapshot of 10 records or fewer was never decrypted as a whole by the capped hub.
        assert capped.application.extensions["ctdhub.snapshots"].get(snapshot) is None
    finally:
        lazy_data.close()
        whole_data.close()
