"""Planning: cost and accuracy before anything is spent, keys, spend forms, calibration cache."""

from __future__ import annotations

import math

import opendp.prelude as dp
import pytest

from disclosure_control.dp import (
    Field,
    Filter,
    Measure,
    QuerySpec,
    QuerySpecError,
    SpendRequest,
    plan_query,
    rho_to_epsilon,
)
from disclosure_control.dp.plan import MAX_CELLS, _calibrate


def count(*group_by: str, spend: SpendRequest | None = None) -> QuerySpec:
    return QuerySpec(Measure("count"), spend or SpendRequest(rho=0.125), group_by)


def test_preview_states_cost_and_half_width(ctdc_schema: dict[str, Field]) -> None:
    preview = plan_query(count("gender", "ageBroad"), ctdc_schema).preview
    assert preview.spend.rho <= 0.125 and preview.spend.rho == pytest.approx(0.125, rel=1e-9)
    assert preview.spend.delta == 0.0
    assert preview.epsilon == rho_to_epsilon(preview.spend.rho, 1e-6)
    assert preview.delta == 1e-6
    assert preview.cells == 4 * 10  # every code and "missing", for both fields
    assert preview.threshold is None
    (statistic,) = preview.statistics
    # rho = 1 / (2 sigma^2) for a count: sigma = 2 at rho = 1/8.
    assert statistic.scale == pytest.approx(2.0, rel=1e-9)
    assert statistic.half_width == dp.discrete_gaussian_scale_to_accuracy(statistic.scale, 0.05)
    assert preview.mechanism == "discrete Gaussian"


def test_public_keys_cover_every_cell_with_missing_last(ctdc_schema: dict[str, Field]) -> None:
    plan = plan_query(count("Datasource", "isAbduction"), ctdc_schema)
    assert plan.keys is not None
    assert plan.keys.rows() == [
        (source, flag)
        for source in ("Case Management", "Hotline", None)
        for flag in (False, True, None)
    ]


def test_integer_bounds_give_public_keys(ctdc_schema: dict[str, Field]) -> None:
    plan = plan_query(count("yearOfRegistration"), ctdc_schema)
    assert plan.preview.cells == 21  # 2002..2021 and missing


def test_key_selection_spends_at_most_its_delta(ctdc_schema: dict[str, Field]) -> None:
    spec = QuerySpec(Measure("count"), SpendRequest(rho=0.125), ("citizenship",), (), 1e-8)
    preview = plan_query(spec, ctdc_schema).preview
    assert preview.cells is None
    assert preview.threshold is not None and preview.threshold > 1
    assert 0 < preview.spend.delta <= 1e-8
    assert preview.delta == pytest.approx(1e-6 + preview.spend.delta)
    assert "key selection" in preview.mechanism
    # A stricter delta needs a higher threshold.
    stricter = QuerySpec(Measure("count"), SpendRequest(rho=0.125), ("citizenship",), (), 1e-12)
    assert plan_query(stricter, ctdc_schema).preview.threshold > preview.threshold  # type: ignore[operator]


def test_epsilon_delta_request_stays_within_both(ctdc_schema: dict[str, Field]) -> None:
    for group_by in (("gender",), ("citizenship",)):
        spend = SpendRequest(epsilon=1.0, delta=1e-6)
        preview = plan_query(count(*group_by, spend=spend), ctdc_schema).preview
        assert preview.epsilon <= 1.0
        assert preview.epsilon == pytest.approx(1.0, rel=1e-6)
        assert preview.delta <= 1e-6


def test_epsilon_request_must_leave_delta_for_conversion(ctdc_schema: dict[str, Field]) -> None:
    spec = QuerySpec(
        Measure("count"), SpendRequest(epsilon=1.0, delta=1e-9), ("citizenship",), (), 1e-9
    )
    with pytest.raises(QuerySpecError, match="key_selection_delta") as caught:
        plan_query(spec, ctdc_schema)
    assert caught.value.field == "spend.delta"


@pytest.mark.parametrize("half_width", [3, 10, 57])
def test_target_half_width_buys_the_smallest_spend(
    half_width: int, ctdc_schema: dict[str, Field]
) -> None:
    plan = plan_query(count("gender", spend=SpendRequest(half_width=half_width)), ctdc_schema)
    (statistic,) = plan.preview.statistics
    assert statistic.half_width is not None and statistic.half_width <= half_width
    # One percent more noise would miss the target: the spend is not larger than needed.
    assert dp.discrete_gaussian_scale_to_accuracy(statistic.scale * 1.01, 0.05) > half_width


def test_sum_target_half_width_accounts_for_sensitivity(ctdc_schema: dict[str, Field]) -> None:
    spec = QuerySpec(Measure("sum", "isAbduction"), SpendRequest(half_width=20), ("gender",))
    (statistic,) = plan_query(spec, ctdc_schema).preview.statistics
    assert statistic.half_width is not None and statistic.half_width <= 20


def test_sensitivity_of_each_measure(ctdc_schema: dict[str, Field]) -> None:
    rho = 0.02
    # A count moves by 1 when one case is added: sigma = 1 / sqrt(2 rho).
    (counted,) = plan_query(count(spend=SpendRequest(rho=rho)), ctdc_schema).preview.statistics
    assert counted.scale == pytest.approx(1 / math.sqrt(2 * rho), rel=1e-9)
    # A sum of years moves by at most the largest |bound|, 2021.
    summed = QuerySpec(Measure("sum", "yearOfRegistration"), SpendRequest(rho=rho))
    (total,) = plan_query(summed, ctdc_schema).preview.statistics
    assert total.scale == pytest.approx(2021 / math.sqrt(2 * rho), rel=1e-9)
    # A mean releases a centred sum (moves by 2021 - 2002 = 19) and a count, half the rho each.
    mean = QuerySpec(Measure("mean", "yearOfRegistration"), SpendRequest(rho=rho))
    centred, counted_too = plan_query(mean, ctdc_schema).preview.statistics
    assert centred.scale == pytest.approx(19 / math.sqrt(rho), rel=1e-9)
    assert counted_too.scale == pytest.approx(1 / math.sqrt(rho), rel=1e-9)


def test_group_privacy_costs_the_square(ctdc_schema: dict[str, Field]) -> None:
    plan = plan_query(count("gender", "ageBroad", spend=SpendRequest(rho=0.1)), ctdc_schema)
    one = plan.measurement.map(1)  # type: ignore[no-untyped-call]  # opendp is untyped
    # A person reported in k case records is protected at k**2 rho, not k rho.
    three = plan.measurement.map(3)  # type: ignore[no-untyped-call]
    assert three == pytest.approx(9 * one, rel=1e-9)
    assert one <= 0.1


def test_calibration_is_cached_by_shape(ctdc_schema: dict[str, Field]) -> None:
    spec = count("gender", "Datasource", spend=SpendRequest(rho=0.0731))
    before = _calibrate.cache_info()
    first = plan_query(spec, ctdc_schema)
    again = plan_query(count("gender", "Datasource", spend=SpendRequest(rho=0.0731)), ctdc_schema)
    after = _calibrate.cache_info()
    assert again is first  # same shape and spend: nothing rebuilt
    assert after.misses == before.misses + 1


def test_filters_are_part_of_the_plan(ctdc_schema: dict[str, Field]) -> None:
    spec = QuerySpec(
        Measure("count"),
        SpendRequest(rho=0.1),
        ("ageBroad",),
        (Filter("gender", ("Female", None)), Filter("Datasource", ("Hotline",))),
    )
    plan = plan_query(spec, ctdc_schema)
    assert plan.columns == ("ageBroad", "gender", "Datasource")
    # Filtering is 1-stable: it costs nothing extra.
    assert plan.preview.spend.rho == pytest.approx(0.1, rel=1e-9)


def test_too_many_cells_are_refused() -> None:
    schema = {name: Field(name, "integer", bounds=(0, 999)) for name in ("a", "b")}
    with pytest.raises(QuerySpecError, match=str(MAX_CELLS)):
        plan_query(count("a", "b"), schema)


def test_an_unreachable_key_selection_delta_is_refused(ctdc_schema: dict[str, Field]) -> None:
    spec = QuerySpec(Measure("count"), SpendRequest(rho=1e4), ("citizenship",), (), 1e-300)
    with pytest.raises(QuerySpecError, match="smaller than any threshold") as caught:
        plan_query(spec, ctdc_schema)
    assert caught.value.field == "key_selection_delta"
