"""Tests of the k-synthetic mode (CTDC's 2021 approach)."""

from __future__ import annotations

import pandas as pd
import pytest

from disclosure_control.synth import Domain
from disclosure_control.synth.ksynthetic import k_synthetic, smallest_support

from .conftest import SMALL_COLUMNS


@pytest.fixture(scope="module")
def domain(ctdc_training: pd.DataFrame) -> Domain:
    return Domain.from_schema(
        {c: tuple(sorted(set(ctdc_training[c]) - {""})) for c in SMALL_COLUMNS}
    )


@pytest.mark.parametrize("max_length", [2, 3])
def test_every_released_combination_has_k_real_records(
    ctdc_training: pd.DataFrame, domain: Domain, max_length: int
) -> None:
    synthetic = k_synthetic(ctdc_training, domain, k=10, max_length=max_length, seed=4)
    assert len(synthetic) == len(ctdc_training)
    assert smallest_support(synthetic, ctdc_training, domain, max_length) >= 10


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
