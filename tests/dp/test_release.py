"""Releases: every public cell answered in order, contributions bounded, post-processing."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from disclosure_control.dp import (
    Field,
    Filter,
    Measure,
    QuerySpec,
    Snapshot,
    SpendRequest,
    mean_interval,
    nonnegative_integer_counts,
    plan_query,
    release,
)

SCHEMA = {
    "gender": Field("gender", "string", ("Female", "Male", "Transgender/NonConforming")),
    "source": Field("source", "string", ("Case Management", "Hotline")),
    "citizenship": Field("citizenship", "string"),
    "age": Field("age", "integer", bounds=(0, 90)),
}
# With rho this large the discrete Gaussian's scale is 7e-4: P(noise != 0) < 1e-300, so each
# release shows the exact statistic and differences between neighbours are visible.
EXACT = SpendRequest(rho=1e6)


def records(seed: int, size: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "gender": pl.Series(["Female", "Male", None]).gather(rng.integers(0, 3, size)),
            "source": pl.Series(["Case Management", "Hotline"]).gather(rng.integers(0, 2, size)),
            "citizenship": pl.Series(["UA", "NA", "VN"]).gather(rng.integers(0, 3, size)),
            "age": pl.Series(rng.integers(0, 91, size), dtype=pl.Int64),
        }
    )


def test_every_public_cell_is_answered_in_key_order() -> None:
    data = records(1, 300)
    spec = QuerySpec(Measure("count"), EXACT, ("gender", "source"))
    answer = release(plan_query(spec, SCHEMA), Snapshot(data, SCHEMA))
    truth = {
        (row["gender"], row["source"]): row["len"]
        for row in data.group_by("gender", "source").len().iter_rows(named=True)
    }
    expected_keys = [
        (gender, source)
        for gender in ("Female", "Male", "Transgender/NonConforming", None)
        for source in ("Case Management", "Hotline", None)
    ]
    assert [cell.key for cell in answer.cells] == expected_keys
    # Cells with no records (no Transgender/NonConforming, no missing source) are answered too.
    assert [cell.value for cell in answer.cells] == [truth.get(key, 0) for key in expected_keys]
    for cell in answer.cells:
        assert cell.interval is not None and cell.value is not None
        assert cell.interval[0] <= cell.value <= cell.interval[1]
    assert answer.spend.rho <= 1e6 and answer.measure == "count"


@pytest.mark.parametrize(
    ("measure", "bound"),
    [(Measure("count"), 1), (Measure("sum", "age"), 90)],
)
def test_one_case_moves_one_cell_by_at_most_its_bound(measure: Measure, bound: int) -> None:
    data = records(2, 200)
    extra = pl.DataFrame(
        {"gender": ["Male"], "source": ["Hotline"], "citizenship": ["UA"], "age": [90]},
        schema=data.schema,
    )
    neighbour = pl.concat([data, extra])
    spec = QuerySpec(measure, EXACT, ("gender", "source"))
    plan = plan_query(spec, SCHEMA)
    before = [int(cell.value or 0) for cell in release(plan, Snapshot(data, SCHEMA)).cells]
    after = [int(cell.value or 0) for cell in release(plan, Snapshot(neighbour, SCHEMA)).cells]
    moved = [(a - b) for a, b in zip(after, before, strict=True) if a != b]
    assert moved == [bound]  # one cell, by exactly the record's (bounded) contribution


def test_filters_select_the_records() -> None:
    data = records(3, 400)
    spec = QuerySpec(Measure("count"), EXACT, ("source",), (Filter("gender", ("Female", None)),))
    answer = release(plan_query(spec, SCHEMA), Snapshot(data, SCHEMA))
    kept = data.filter(pl.col("gender").is_null() | (pl.col("gender") == "Female"))
    assert [cell.value for cell in answer.cells] == [
        kept.filter(pl.col("source") == "Case Management").height,
        kept.filter(pl.col("source") == "Hotline").height,
        0,
    ]


def test_key_selection_releases_only_frequent_keys() -> None:
    data = pl.concat([records(4, 600), records(5, 1).with_columns(citizenship=pl.lit("ZZ"))])
    spec = QuerySpec(Measure("count"), SpendRequest(rho=1.0), ("citizenship",))
    plan = plan_query(spec, SCHEMA)
    answer = release(plan, Snapshot(data, SCHEMA))
    threshold = plan.preview.threshold
    # Noise sd is 0.71: the lone ZZ case clears a threshold of 6 or more with probability
    # below exp(-25) ~ 1.4e-11 (noise >= 5), and the keys with ~200 cases each miss it with less.
    assert threshold is not None and 5 < threshold < 100
    assert [cell.key for cell in answer.cells] == [("NA",), ("UA",), ("VN",)]  # ZZ suppressed
    assert answer.spend.delta > 0


def test_mean_and_quantile_are_exact_at_vanishing_noise() -> None:
    data = records(6, 500)
    snapshot = Snapshot(data, SCHEMA)
    mean = release(plan_query(QuerySpec(Measure("mean", "age"), EXACT), SCHEMA), snapshot)
    (cell,) = mean.cells
    true_mean = float(data["age"].mean())  # type: ignore[arg-type]
    assert cell.value == pytest.approx(true_mean)
    assert cell.interval is not None and cell.interval[0] <= true_mean <= cell.interval[1]
    median = QuerySpec(Measure("quantile", "age", 0.5), SpendRequest(rho=1e3))
    (middle,) = release(plan_query(median, SCHEMA), snapshot).cells
    assert isinstance(middle.value, int)
    ranks = np.searchsorted(np.sort(data["age"].to_numpy()), middle.value) / data.height
    assert abs(ranks - 0.5) < 0.05
    assert middle.interval is None


def test_post_processed_counts_are_nonnegative_and_keep_the_total() -> None:
    data = records(7, 30)
    spec = QuerySpec(Measure("count"), SpendRequest(rho=0.01), ("gender", "source"))
    answer = release(plan_query(spec, SCHEMA), Snapshot(data, SCHEMA), nonnegative_counts=True)
    values = [cell.value for cell in answer.cells]
    noisy = [cell.noisy for cell in answer.cells]
    assert all(isinstance(value, int) and value >= 0 for value in values)
    assert sum(values) == max(0, sum(noisy))  # type: ignore[arg-type]
    assert answer.post_processed


def test_post_processing_is_for_counts_only() -> None:
    spec = QuerySpec(Measure("sum", "age"), SpendRequest(rho=0.1))
    with pytest.raises(ValueError, match="counts"):
        release(plan_query(spec, SCHEMA), Snapshot(records(8, 10), SCHEMA), nonnegative_counts=True)


@given(st.lists(st.integers(-50, 500), min_size=1, max_size=30))
def test_post_processing_properties(noisy: list[int]) -> None:
    shown = nonnegative_integer_counts(noisy)
    assert all(value >= 0 for value in shown)
    assert sum(shown) == max(0, sum(noisy))
    if all(value >= 0 for value in noisy):
        assert shown == noisy  # nothing to repair: nothing changes


@given(st.lists(st.integers(0, 100), min_size=1, max_size=20), st.integers(0, 3000))
def test_post_processing_hits_a_given_total(noisy: list[int], total: int) -> None:
    assert sum(nonnegative_integer_counts(noisy, total=total)) == total


@given(
    count=st.integers(1, 500),
    mean=st.floats(0, 1),
    sum_error=st.floats(-1, 1),
    count_error=st.floats(-1, 1),
    sum_half=st.floats(0, 400),
    count_half=st.floats(0, 30),
)
def test_mean_interval_covers_whenever_both_intervals_do(
    count: int,
    mean: float,
    sum_error: float,
    count_error: float,
    sum_half: float,
    count_half: float,
) -> None:
    low, high = 2002, 2021
    true_sum = mean * (high - low) * count
    noisy_sum = true_sum + sum_error * sum_half
    noisy_count = count + count_error * count_half
    interval = mean_interval(noisy_sum, noisy_count, sum_half, count_half, (low, high))
    truth = low + true_sum / count
    assert interval[0] - 1e-9 <= truth <= interval[1] + 1e-9
    assert low <= interval[0] <= interval[1] <= high


def test_sum_by_unknown_keys_carries_the_count_key_selection_needs() -> None:
    data = records(9, 900)
    spec = QuerySpec(Measure("sum", "age"), EXACT, ("citizenship",))
    plan = plan_query(spec, SCHEMA)
    assert [statistic.name for statistic in plan.preview.statistics] == ["sum", "count"]
    answer = release(plan, Snapshot(data, SCHEMA))
    sums = data.group_by("citizenship").agg(pl.col("age").sum()).sort("citizenship")
    assert [cell.key[0] for cell in answer.cells] == sums["citizenship"].to_list()
    assert [cell.value for cell in answer.cells] == sums["age"].to_list()


def test_a_snapshot_over_the_public_size_bound_is_refused() -> None:
    plan = plan_query(QuerySpec(Measure("sum", "age"), EXACT), SCHEMA, max_records=100)
    with pytest.raises(ValueError, match="public bound of 100 records"):
        release(plan, Snapshot(records(10, 101), SCHEMA))
    (cell,) = release(plan, Snapshot(records(10, 100), SCHEMA)).cells
    assert cell.value == records(10, 100)["age"].sum()
