"""The noise has the calibrated scale and the stated intervals hold their 95% level.

OpenDP draws noise from a cryptographic generator that cannot be seeded, so these tests fix the
data (seeded) and bound each statistic at a stated confidence: every check below fails with
probability at most 1e-6 when the implementation is right. Each release of a table with many
public cells gives that many independent draws of the same noise distribution.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from disclosure_control.dp import (
    Field,
    Measure,
    QuerySpec,
    Snapshot,
    SpendRequest,
    plan_query,
    release,
)

FAILURE = 1e-6  # per check, when the noise is right
CODES = 1500  # public keys of the field "code": 0..1499 and missing
SCHEMA = {
    "code": Field("code", "integer", bounds=(0, CODES - 1)),
    "value": Field("value", "integer", bounds=(0, 10)),
}


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    """Return records with known counts per code (code % 5 records each, 3 missing)."""
    rng = np.random.default_rng(20261123)
    codes = [code for code in range(CODES) for _ in range(code % 5)] + [None] * 3
    values = rng.integers(0, 11, len(codes))
    frame = pl.DataFrame(
        {"code": pl.Series(codes, dtype=pl.Int64), "value": pl.Series(values, dtype=pl.Int64)}
    )
    return Snapshot(frame, SCHEMA)


def truth(snapshot: Snapshot, column: str | None) -> list[int]:
    """Return the true count (or sum of ``column``) per public key, in key order."""
    grouped = snapshot.frame.group_by("code").agg(
        pl.len().alias("count") if column is None else pl.col(column).sum().alias("count")
    )
    table = {row["code"]: row["count"] for row in grouped.iter_rows(named=True)}
    return [table.get(code, 0) for code in [*range(CODES), None]]


def noise_draws(
    snapshot: Snapshot, spec: QuerySpec, column: str | None
) -> tuple[np.ndarray, float]:
    plan = plan_query(spec, SCHEMA)
    answer = release(plan, snapshot)
    expected = truth(snapshot, column)
    released = [cell.noisy for cell in answer.cells]
    (statistic,) = plan.preview.statistics
    return np.array(released, dtype=float) - np.array(expected, dtype=float), statistic.scale


def assert_gaussian_scale(noise: np.ndarray, sigma: float) -> None:
    """Check mean and variance against N(0, sigma^2) at the stated failure rate.

    The discrete Gaussian with sigma >= 5 has the continuous one's variance to within 1e-100,
    so (n - 1) s^2 / sigma^2 is chi-square with n - 1 degrees of freedom.
    """
    n = noise.size
    z = stats.norm.ppf(1 - FAILURE / 2)
    assert abs(noise.mean()) <= z * sigma / math.sqrt(n)
    statistic = (n - 1) * noise.var(ddof=1) / sigma**2
    low, high = stats.chi2.ppf([FAILURE / 2, 1 - FAILURE / 2], n - 1)
    assert low <= statistic <= high, f"variance ratio {statistic / (n - 1):.4f} off sigma^2"


@pytest.mark.parametrize("sigma", [5.0, 20.0])
def test_count_noise_has_the_calibrated_scale(snapshot: Snapshot, sigma: float) -> None:
    rho = 1 / (2 * sigma**2)  # a count's sensitivity is one case
    spec = QuerySpec(Measure("count"), SpendRequest(rho=rho), ("code",))
    noise, scale = noise_draws(snapshot, spec, None)
    assert scale == pytest.approx(sigma, rel=1e-9)
    assert_gaussian_scale(noise, sigma)


def test_sum_noise_scales_with_the_value_bound(snapshot: Snapshot) -> None:
    rho = 0.01
    spec = QuerySpec(Measure("sum", "value"), SpendRequest(rho=rho), ("code",))
    noise, scale = noise_draws(snapshot, spec, "value")
    sigma = 10 / math.sqrt(2 * rho)  # one case adds at most 10 to a sum
    assert scale == pytest.approx(sigma, rel=1e-9)
    assert_gaussian_scale(noise, sigma)


def test_too_little_noise_would_be_caught(snapshot: Snapshot) -> None:
    # The check above has power: noise of sd 5 is refused as sd 6.
    spec = QuerySpec(Measure("count"), SpendRequest(rho=1 / 50), ("code",))
    noise, _ = noise_draws(snapshot, spec, None)
    with pytest.raises(AssertionError, match="variance ratio"):
        assert_gaussian_scale(noise, 6.0)


def coverage_floor(cells: int) -> int:
    """Return the fewest covering cells a 95% interval may show at the stated failure rate."""
    return int(stats.binom.ppf(FAILURE, cells, 0.95))


def test_count_intervals_cover_at_95_percent(snapshot: Snapshot) -> None:
    spec = QuerySpec(Measure("count"), SpendRequest(rho=0.02), ("code",))
    answer = release(plan_query(spec, SCHEMA), snapshot)
    expected = truth(snapshot, None)
    covered = sum(
        cell.interval[0] <= true <= cell.interval[1]
        for cell, true in zip(answer.cells, expected, strict=True)
        if cell.interval is not None
    )
    assert covered >= coverage_floor(len(expected))


def test_mean_intervals_cover_at_95_percent(snapshot: Snapshot) -> None:
    spec = QuerySpec(Measure("mean", "value"), SpendRequest(rho=0.5), ("code",))
    answer = release(plan_query(spec, SCHEMA), snapshot)
    grouped = snapshot.frame.group_by("code").agg(pl.col("value").mean())
    means = {row["code"]: row["value"] for row in grouped.iter_rows(named=True)}
    # Cells without records have no mean to cover.
    judged = [(cell, means[cell.key[0]]) for cell in answer.cells if cell.key[0] in means]
    covered = sum(
        cell.interval is not None and cell.interval[0] <= mean <= cell.interval[1]
        for cell, mean in judged
    )
    assert covered >= coverage_floor(len(judged))
