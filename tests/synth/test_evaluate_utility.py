"""Tests of the utility measures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from disclosure_control.evaluate import (
    AnalystQuery,
    evaluate_utility,
    total_variation,
)
from disclosure_control.evaluate._encoding import encode_tables
from disclosure_control.evaluate.utility import (
    analyst_query_errors,
    combination_errors,
    marginal_tvd,
    sample_column_sets,
)


def _frame(**columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(columns, dtype="string")


def test_total_variation_matches_hand_computation() -> None:
    # p = (0.5, 0.5, 0), q = (0.2, 0.3, 0.5): half of 0.3 + 0.2 + 0.5.
    assert total_variation(np.array([1.0, 1.0, 0.0]), np.array([2.0, 3.0, 5.0])) == pytest.approx(
        0.5
    )


def test_total_variation_refuses_an_empty_table() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        total_variation(np.zeros(2), np.ones(2))


def test_one_way_tvd_of_a_known_shift() -> None:
    real = _frame(g=["F"] * 80 + ["M"] * 20)
    synthetic = _frame(g=["F"] * 50 + ["M"] * 50)
    summary = marginal_tvd(encode_tables([real, synthetic], ["g"]), 1)
    assert summary.mean == pytest.approx(0.3)
    assert summary.worst == ("g",)


def test_shuffled_columns_keep_one_way_but_lose_two_way(ctdc_training: pd.DataFrame) -> None:
    rng = np.random.default_rng(3)
    shuffled = ctdc_training.copy()
    for column in shuffled.columns:
        shuffled[column] = shuffled[column].to_numpy()[rng.permutation(len(shuffled))]
    report = evaluate_utility(ctdc_training, shuffled, n_three_way=40, queries=())
    assert report.mean_tvd(1) == pytest.approx(0.0, abs=1e-12)
    # Year, country and exploitation type are strongly associated in CTDC: independence is off.
    assert report.mean_tvd(2) > 0.05
    assert report.mean_tvd(3) > report.mean_tvd(2)


def test_identical_table_scores_zero_everywhere(ctdc_training: pd.DataFrame) -> None:
    report = evaluate_utility(ctdc_training, ctdc_training.copy(), n_three_way=30)
    assert all(s.mean == 0.0 and s.max == 0.0 for s in report.tvd)
    assert all(c.preserved_share == 1.0 and c.fabricated_share == 0.0 for c in report.combinations)
    assert all(c.mean_count_error == 0.0 for c in report.combinations)
    answered = [q for q in report.queries if q.status == "answered"]
    assert answered and all(q.mean_error == 0.0 for q in answered)


def test_three_way_sample_is_fixed_by_the_seed() -> None:
    assert sample_column_sets(25, 3, 300, 7) == sample_column_sets(25, 3, 300, 7)
    assert sample_column_sets(25, 3, 300, 7) != sample_column_sets(25, 3, 300, 8)
    assert len(set(sample_column_sets(25, 3, 300, 7))) == 300


def test_combinations_preserved_and_fabricated_by_hand() -> None:
    # Real combinations of length 2 (both recorded): (x,1) twice, (y,1) once.
    real = _frame(a=["x", "x", "y", "y"], b=["1", "1", "1", ""])
    # Synthetic: (x,1) once, (z,1) once -> preserves 1 of 2, fabricates 1 of 2.
    synthetic = _frame(a=["x", "z", "y", "y"], b=["1", "1", "", ""])
    by_length = {
        c.length: c for c in combination_errors(encode_tables([real, synthetic], ["a", "b"]), 2)
    }
    two = by_length[2]
    assert (two.real_combinations, two.synthetic_combinations) == (2, 2)
    assert two.preserved_share == 0.5
    assert two.fabricated_share == 0.5
    # Errors over real combinations: |1-2| for (x,1), |0-1| for (y,1).
    assert two.mean_count_error == 1.0
    # Length 1 ignores empty values: real a in {x,y}, b in {1}; synthetic adds z.
    assert by_length[1].real_combinations == 3
    assert by_length[1].fabricated_share == pytest.approx(1 / 4)


def test_rate_query_error_by_hand() -> None:
    real = _frame(gender=["F", "F", "M", "M"], isX=["1", "", "1", "1"])
    synthetic = _frame(gender=["F", "F", "M", "M"], isX=["1", "1", "1", ""])
    query = AnalystQuery("x by gender", "gender", "rate", ("isX",))
    (result,) = analyst_query_errors(real, synthetic, [query])
    # F: 0.5 vs 1.0, M: 1.0 vs 0.5, equal group sizes.
    assert result.mean_error == pytest.approx(0.5)
    assert result.n_groups == 2


def test_distribution_query_counts_a_missing_group_as_wholly_wrong() -> None:
    real = _frame(gender=["F", "F", "M", "M"], age=["a", "b", "a", "a"])
    synthetic = _frame(gender=["F", "F", "F", "F"], age=["a", "b", "a", "b"])
    query = AnalystQuery("age by gender", "gender", "distribution", ("age",))
    (result,) = analyst_query_errors(real, synthetic, [query])
    assert result.max_error == 1.0
    assert result.mean_error == pytest.approx(0.5)


def test_query_without_its_columns_is_reported_skipped() -> None:
    real = _frame(gender=["F"])
    query = AnalystQuery("labour by year", "yearOfRegistration", "rate", target_prefix="typeOf")
    (result,) = analyst_query_errors(real, real, [query])
    assert result.status.startswith("skipped")


def test_missing_column_is_a_clear_error(ctdc_training: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"#1 table lacks column\(s\) \['gender'\]"):
        evaluate_utility(ctdc_training, ctdc_training.drop(columns=["gender"]))
