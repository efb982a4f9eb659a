"""Tests of the k-synthetic mode (CTDC's 2021 approach)."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from disclosure_control.evaluate import evaluate_utility
from disclosure_control.synth import Domain
from disclosure_control.synth.ksynthetic import k_synthetic, smallest_support

from .conftest import SMALL_COLUMNS


@pytest.fixture(scope="module")
def domain(ctdc_training: pd.DataFrame) -> Domain:
    return Domain.from_schema(
        {c: tuple(sorted(set(ctdc_training[c]) - {""})) for c in SMALL_COLUMNS}
    )


def least_support_by_grouping(synthetic: pd.DataFrame, real: pd.DataFrame, length: int) -> int:
    """Count, by pandas grouping on the values themselves, the least real support of any
    combination of up to ``length`` recorded values in a synthetic row (no encoding shared
    with the code under test)."""
    least = len(real) + 1
    for size in range(1, length + 1):
        for columns in itertools.combinations(list(real.columns), size):
            names = list(columns)
            released = synthetic[names][(synthetic[names] != "").all(axis=1)].drop_duplicates()
            if released.empty:
                continue
            support = real[names].value_counts()
            for values in released.itertuples(index=False):
                key = values[0] if size == 1 else tuple(values)
                least = min(least, int(support.get(key, 0)))
    return least


@pytest.mark.parametrize("max_length", [2, 3])
def test_every_released_combination_has_k_real_records(
    ctdc_training: pd.DataFrame, domain: Domain, max_length: int
) -> None:
    synthetic = k_synthetic(ctdc_training, domain, k=10, max_length=max_length, seed=4)
    assert len(synthetic) == len(ctdc_training)
    assert smallest_support(synthetic, ctdc_training, domain, max_length) >= 10
    assert least_support_by_grouping(synthetic, ctdc_training, max_length) >= 10


def test_the_independent_check_finds_a_rare_combination(ctdc_training: pd.DataFrame) -> None:
    # The real table holds country pairs seen fewer than 10 times: the check must fail on it.
    assert least_support_by_grouping(ctdc_training, ctdc_training, 2) < 10


def test_k_synthetic_beats_independent_columns(ctdc_training: pd.DataFrame, domain: Domain) -> None:
    # Issue 15: CTDC's 2021 approach must carry more of the joint distribution than drawing
    # each column on its own, and must not leave the countries empty far more than the data.
    synthetic = k_synthetic(ctdc_training, domain, k=10, seed=5)
    shuffled = pd.DataFrame(
        {c: ctdc_training[c].sample(frac=1.0, random_state=i).to_numpy()
         for i, c in enumerate(ctdc_training.columns)}
    )  # fmt: skip
    ours = evaluate_utility(ctdc_training, synthetic, queries=())
    baseline = evaluate_utility(ctdc_training, shuffled, queries=())
    for order in (1, 2):  # the 2-way and 3-way summaries
        assert ours.tvd[order].mean < baseline.tvd[order].mean
    for column in ("citizenship", "CountryOfExploitation"):
        real_empty = (ctdc_training[column] == "").mean()
        assert (synthetic[column] == "").mean() < real_empty + 0.15


def test_k_synthetic_is_deterministic_and_not_all_empty(
    ctdc_training: pd.DataFrame, domain: Domain
) -> None:
    first = k_synthetic(ctdc_training, domain, k=5, n_records=300, seed=1)
    pd.testing.assert_frame_equal(
        first, k_synthetic(ctdc_training, domain, k=5, n_records=300, seed=1)
    )
    # Common values such as the data source survive the k check.
    assert (first["Datasource"] != "").mean() > 0.9


def test_the_real_table_itself_is_not_k_synthetic(
    ctdc_training: pd.DataFrame, domain: Domain
) -> None:
    # Rare country triples exist in the real records: the check must be able to fail.
    assert smallest_support(ctdc_training, ctdc_training, domain, 3) < 10


def test_k_synthetic_rows_owe_nothing_to_the_order_of_the_real_records(
    ctdc_training: pd.DataFrame, domain: Domain
) -> None:
    # Issue 10: no record-level output may leave in an order derived from its input (CTDC's
    # file is sorted by year). The draw reads the records only through counts, so a shuffled
    # input gives the very same table, row for row, with a fresh index.
    shuffled = ctdc_training.sample(frac=1.0, random_state=3)
    shuffled.index = shuffled.index[::-1] + 1000
    first = k_synthetic(ctdc_training, domain, k=5, seed=2)
    pd.testing.assert_frame_equal(first, k_synthetic(shuffled, domain, k=5, seed=2))
    assert first.index.equals(pd.RangeIndex(len(ctdc_training)))
