"""Run a calibrated query plan on a snapshot and shape the answer: values, intervals, spend."""

from __future__ import annotations

from dataclasses import dataclass

import opendp.prelude as dp
import polars as pl

from disclosure_control.dp.accounting import PrivacySpend
from disclosure_control.dp.plan import CONFIDENCE, QueryPlan, Statistic
from disclosure_control.dp.postprocess import nonnegative_integer_counts
from disclosure_control.dp.snapshot import Snapshot
from disclosure_control.dp.spec import Code
from disclosure_control.person import CASE_RECORD, PrivacyUnit

__all__ = ["Cell", "Release", "mean_interval", "release"]

_ALPHA = 1 - CONFIDENCE


@dataclass(frozen=True, slots=True)
class Cell:
    """One released cell.

    :param key: the group key, one value per ``group_by`` field (None = missing)
    :param value: the released value (post-processed when asked)
    :param interval: a 95% confidence interval for the true value (None for a quantile)
    :param noisy: the value as the mechanism released it, before any post-processing
    """

    key: tuple[Code, ...]
    value: float | int | None
    interval: tuple[float, float] | None
    noisy: float | int | None


@dataclass(frozen=True, slots=True)
class Release:
    """A DP answer: every cell with its interval, the mechanism and what it cost.

    :param group_by: the grouping fields, naming the parts of each cell's key
    :param measure: ``count``, ``sum``, ``mean`` or ``quantile``
    :param cells: the cells, in public-key order (or key order under key selection)
    :param mechanism: the mechanism(s) OpenDP ran
    :param spend: the charge
    :param epsilon: the charge as epsilon at ``delta``
    :param delta: conversion delta plus key selection's delta
    :param statistics: the noise on each released statistic
    :param post_processed: whether counts were made non-negative integers with a kept total
    :param unit: the privacy unit the spend protects (``unit.description`` says it in words)
    """

    group_by: tuple[str, ...]
    measure: str
    cells: tuple[Cell, ...]
    mechanism: str
    spend: PrivacySpend
    epsilon: float
    delta: float
    statistics: tuple[Statistic, ...]
    post_processed: bool
    unit: PrivacyUnit = CASE_RECORD


def _half_width(statistic: Statistic, alpha: float) -> float:
    if statistic.distribution == "Integer Gaussian":
        return float(dp.discrete_gaussian_scale_to_accuracy(statistic.scale, alpha))
    if statistic.distribution == "Float Gaussian":
        return float(dp.gaussian_scale_to_accuracy(statistic.scale, alpha))
    raise ValueError(f"no accuracy for {statistic.distribution} noise")  # pragma: no cover


def mean_interval(
    noisy_sum: float,
    noisy_count: float,
    sum_half_width: float,
    count_half_width: float,
    bounds: tuple[float, float],
) -> tuple[float, float]:
    """Return an interval for sum / count from intervals on each, clipped to the value bounds.

    If the true sum and count lie in their intervals (each held at level 1 - alpha/2, so both
    hold with probability >= 1 - alpha by the union bound), the true mean lies in the range of
    sum / count over that box. A box reaching count <= 0 says nothing: the whole range.

    :param noisy_sum: the released sum of (value - lower bound)
    :param noisy_count: the released count of records with a value
    :param sum_half_width: half-width of the sum's interval
    :param count_half_width: half-width of the count's interval
    :param bounds: the field's (lower, upper) bounds; the sum is centred on the lower one

    >>> mean_interval(500, 100, 20, 5, (0, 10))
    (4.571428571428571, 5.473684210526316)
    >>> mean_interval(30, 4, 20, 5, (2000, 2020))
    (2000, 2020)
    """
    low, high = bounds
    count_low, count_high = noisy_count - count_half_width, noisy_count + count_half_width
    if count_low <= 0:
        return (low, high)
    sum_low, sum_high = noisy_sum - sum_half_width, noisy_sum + sum_half_width
    least = sum_low / count_high if sum_low >= 0 else sum_low / count_low
    most = sum_high / count_low if sum_high >= 0 else sum_high / count_high
    span = high - low
    return (low + min(max(least, 0), span), low + min(max(most, 0), span))


def _python_key(value: object) -> Code:
    if value is None or isinstance(value, str | bool | int):
        return value
    raise TypeError(f"unexpected key type {type(value).__name__}")  # pragma: no cover


def _codes_as_text(frame: pl.DataFrame, names: list[str]) -> pl.DataFrame:
    """Cast coded key columns to strings (OpenDP hands Enum keys back as Categorical)."""
    coded = [
        pl.col(name).cast(pl.String)
        for name in names
        if isinstance(frame.schema[name], pl.Enum | pl.Categorical)
    ]
    return frame.with_columns(coded) if coded else frame


def _ordered(plan: QueryPlan, released: pl.DataFrame) -> pl.DataFrame:
    """Put released rows (which come back shuffled) in public-key order, or in key order."""
    group_by = list(plan.spec.group_by)
    if not group_by:
        return released
    released = _codes_as_text(released, group_by)
    if plan.keys is None:
        return released.sort(group_by, nulls_last=True)
    order = _codes_as_text(plan.keys, group_by).with_row_index("__order")
    joined = order.join(released, on=group_by, how="left", nulls_equal=True)
    return joined.sort("__order").drop("__order")


def release(plan: QueryPlan, snapshot: Snapshot, *, nonnegative_counts: bool = False) -> Release:
    """Run ``plan`` on ``snapshot`` once and return the answer.

    This spends ``plan.preview.spend``: the caller checks and charges its ledger first.

    :param plan: a calibrated plan from :func:`~disclosure_control.dp.plan.plan_query`
    :param snapshot: the accepted case records
    :param nonnegative_counts: post-process counts to non-negative integers that keep the
        table's total (counts only)
    """
    measure = plan.spec.measure
    if nonnegative_counts and measure.kind != "count":
        raise ValueError(f"non-negative post-processing applies to counts, not a {measure.kind}")
    if snapshot.height > plan.max_records:
        # OpenDP bounds sums by this public size; past it the overflow analysis would not hold.
        raise ValueError(
            f"the snapshot exceeds the public bound of {plan.max_records} records the plan "
            "was calibrated for: plan with a larger max_records"
        )
    released = plan.measurement(snapshot.scan(plan.columns)).collect()
    rows = _ordered(plan, released)
    group_by = list(plan.spec.group_by)
    keys = (
        [tuple(_python_key(value) for value in row) for row in rows.select(group_by).rows()]
        if group_by
        else [()] * rows.height
    )
    statistics = {statistic.name: statistic for statistic in plan.preview.statistics}
    cells: list[Cell] = []
    if measure.kind in ("count", "sum"):
        values = [int(value) for value in rows[measure.kind].to_list()]
        half = _half_width(statistics[measure.kind], _ALPHA)
        shown: list[int] = nonnegative_integer_counts(values) if nonnegative_counts else values
        for key, noisy, value in zip(keys, values, shown, strict=True):
            low, high = noisy - half, noisy + half
            # A count is never negative: clipping at zero keeps every covered true count inside.
            if measure.kind == "count":
                low, high = max(low, 0.0), max(high, 0.0)
            cells.append(Cell(key, value, (float(low), float(high)), noisy))
    elif measure.kind == "mean":
        field = next(item for item in plan.fields if item.name == measure.field)
        bounds = field.value_bounds or (0, 0)
        sum_half = _half_width(statistics["sum"], _ALPHA / 2)
        count_half = _half_width(statistics["count"], _ALPHA / 2)
        for key, total, count in zip(
            keys, rows["sum"].to_list(), rows["count"].to_list(), strict=True
        ):
            estimate = None
            if count > 0:
                estimate = bounds[0] + min(max(total / count, 0.0), float(bounds[1] - bounds[0]))
            interval = mean_interval(total, count, sum_half, count_half, bounds)
            cells.append(Cell(key, estimate, (float(interval[0]), float(interval[1])), estimate))
    else:
        for key, value in zip(keys, rows["quantile"].to_list(), strict=True):
            cells.append(Cell(key, value, None, value))
    preview = plan.preview
    return Release(
        group_by=plan.spec.group_by,
        measure=measure.kind,
        cells=tuple(cells),
        mechanism=preview.mechanism,
        spend=preview.spend,
        epsilon=preview.epsilon,
        delta=preview.delta,
        statistics=preview.statistics,
        post_processed=nonnegative_counts,
        unit=plan.unit,
    )
