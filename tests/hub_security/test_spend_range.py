"""Issue 11 item 4: a spend outside the declared range is refused at once, never calibrated.

``"rho": 1e-16`` used to hang the free preview: OpenDP's accuracy summary of a discrete
Gaussian costs time in proportion to its scale (here about 10^8).
"""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from disclosure_control.dp import accounting as dp_accounting
from disclosure_control.dp.calibrate import CalibrationError, search
from disclosure_control.dp.plan import plan_query
from disclosure_control.dp.spec import Field, Measure, QuerySpec, SpendOutOfRange, SpendRequest

COUNT = {"measure": {"kind": "count"}, "group_by": ["gender"]}


@pytest.mark.parametrize(
    ("spend", "where"),
    [
        ({"rho": 1e-16}, "spend"),
        ({"rho": 1e6}, "spend"),
        ({"epsilon": 1e-9, "delta": 1e-6}, "spend"),
        ({"half_width": 1e12}, "spend.half_width"),
        ({"half_width": 1e-3}, "spend.half_width"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/queries/preview", "/v1/queries"])
def test_a_spend_outside_the_range_is_refused_with_422(
    client: FlaskClient,
    researcher_headers: dict[str, str],
    spend: dict[str, float],
    where: str,
    path: str,
) -> None:
    response = client.post(path, json={**COUNT, "spend": spend}, headers=researcher_headers)
    assert response.status_code == 422, response.get_json()
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["field"] == where
    assert "rho" in body["detail"]


def test_the_range_comes_from_settings(
    client: FlaskClient, researcher_headers: dict[str, str], app: object
) -> None:
    app.config["DP_QUERY_RHO_MIN"] = "0.01"  # type: ignore[attr-defined]
    spec = {**COUNT, "spend": {"rho": 0.005}}
    response = client.post("/v1/queries/preview", json=spec, headers=researcher_headers)
    assert response.status_code == 422
    assert "0.01" in response.get_json()["detail"]
    spec = {**COUNT, "spend": {"rho": 0.02}}
    assert (
        client.post("/v1/queries/preview", json=spec, headers=researcher_headers).status_code == 200
    )


def test_the_plan_refuses_before_calibrating() -> None:
    schema = {"gender": Field("gender", "string", ("Female", "Male"))}
    spec = QuerySpec(Measure("count"), SpendRequest(rho=1e-16), group_by=("gender",))
    with pytest.raises(SpendOutOfRange, match="outside the range"):
        plan_query(spec, schema, rho_range=(1e-6, 1.0))


@pytest.mark.parametrize("rho_range", [(0.0, 1.0), (1.0, 1.0), (1.0, 0.5), (1e-6, float("inf"))])
def test_a_malformed_range_is_refused_plainly(rho_range: tuple[float, float]) -> None:
    schema = {"gender": Field("gender", "string", ("Female", "Male"))}
    spec = QuerySpec(Measure("count"), SpendRequest(rho=0.1), group_by=("gender",))
    with pytest.raises(ValueError, match="rho_range must hold"):
        plan_query(spec, schema, rho_range=rho_range)


def test_searches_are_bounded_in_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = 0

    def tiny(value: float) -> bool:
        nonlocal steps
        steps += 1
        return value <= 1e-300

    # The worst float search: the boundary next to zero, found by halving every exponent.
    assert search(tiny, 0.0, 1.0) == pytest.approx(1e-300)
    assert steps <= 1100
    with pytest.raises(CalibrationError):
        search(lambda value: value < 0, 0.0, 1.0)

    # Queries and synthesis convert epsilon to rho through the same bounded search.
    calls = 0
    real = dp_accounting.rho_to_epsilon

    def counted(rho: float, delta: float) -> float:
        nonlocal calls
        calls += 1
        return real(rho, delta)

    monkeypatch.setattr(dp_accounting, "rho_to_epsilon", counted)
    rho = dp_accounting.epsilon_delta_to_rho.__wrapped__(1.0, 1e-6)  # past the cache
    assert real(rho, 1e-6) <= 1.0
    assert 0 < calls <= 1100
