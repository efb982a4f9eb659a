"""Turn a validated query spec into an OpenDP measurement, calibrated once per query shape.

OpenDP's ``Context`` path finds the noise scale by bisection, rebuilding the whole measurement
about a thousand times per release. Here the scale comes from the inverse-square law every
mechanism we use obeys (rho(scale) = rho(1) / scale**2: Gaussian noise and the exponential
mechanism alike), then OpenDP's own privacy map checks it; the result is cached by query
shape, so a repeated query of the same shape builds nothing.

When the privacy unit is a person with up to ``c`` records, the measurement is OpenDP's own:
its input metric is ``symmetric_id_distance`` on the snapshot's person key (what
``dp.unit_of(contributions=1, identifier=...)`` names), and the query begins with OpenDP's
truncation to ``c`` records per person, kept in the order of the snapshot's seeded draw, so
OpenDP derives every sensitivity and noise scale for one person. At ``c = 1`` its map equals the
case record's exactly. Traps found in OpenDP 0.16: a null identifier is one identifier (every
unlinked record would be one "person"), so the snapshot gives each its own key; truncation by
``rank`` is refused ("rank must be dense"), so the rule is OpenDP's ``keep=SortBy`` form,
``int_range(len).sort_by(draw).over(person) < c``, which keeps a uniformly random c-subset of a
person's records because the draws are a random permutation; and a query on an
identifier-metric frame without truncation is refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from itertools import product
from typing import Any, Literal, cast

import opendp.prelude as dp
import polars as pl
from opendp.accuracy import summarize_polars_measurement
from opendp.extras.polars import Margin, dp_len
from opendp.mod import Measurement

from disclosure_control.dp.accounting import (
    PrivacySpend,
    epsilon_delta_to_rho,
    rho_to_epsilon,
)
from disclosure_control.dp.calibrate import CalibrationError, scale_for_loss, search
from disclosure_control.dp.spec import (
    Code,
    Field,
    QuerySpec,
    QuerySpecError,
    SpendOutOfRange,
    validate_spec,
)
from disclosure_control.person import (
    CASE_RECORD,
    DRAW_COLUMN,
    PERSON_COLUMN,
    PrivacyUnit,
    kept_by_draw,
)

dp.enable_features("contrib")

__all__ = [
    "CONFIDENCE",
    "DISPLAY_DELTA",
    "MAX_CELLS",
    "MAX_RECORDS",
    "Preview",
    "QueryPlan",
    "RECORD_DISTANCE",
    "RHO_RANGE",
    "Statistic",
    "plan_query",
    "polars_dtype",
]

RECORD_DISTANCE = 1
"""Neighbouring snapshots differ by adding or removing one privacy unit: one case record
(symmetric distance 1) or, under the person as the unit, one person with all their records
(symmetric distance 1 over person keys)."""
MAX_RECORDS = 10_000_000
"""Public upper bound on a snapshot's size (OpenDP needs one to bound sums without overflow)."""
MAX_CELLS = 200_000
"""Most cells a public-key table may have; larger cross products are refused, not truncated."""
CONFIDENCE = 0.95
DISPLAY_DELTA = 1e-6
"""The delta at which epsilon is shown beside rho (the ledger itself is kept in rho)."""
RHO_RANGE = (1e-6, 1e9)
"""The rho one query may spend, inclusive, unless the caller declares another range."""
_ALPHA = 1 - CONFIDENCE
_NO_THRESHOLD = 2**32 - 1  # OpenDP's u32 maximum: "suppress everything" while tuning the scale

StatisticKind = Literal["count", "sum", "quantile"]


def polars_dtype(item: Field) -> pl.DataType:
    """Return the polars type a snapshot column of ``item`` carries.

    String fields with a domain become ``Enum`` so OpenDP knows their codes and the data crosses
    into OpenDP as small integers instead of strings.

    :param item: the schema field

    >>> polars_dtype(Field("gender", "string", ("Female", "Male")))
    Enum(categories=['Female', 'Male'])
    >>> polars_dtype(Field("yearOfRegistration", "integer"))
    Int64
    """
    if item.kind == "string":
        return pl.Enum([str(code) for code in item.domain]) if item.domain else pl.String()
    return pl.Int64() if item.kind == "integer" else pl.Boolean()


def _series_domain(item: Field) -> Any:
    if item.kind == "string" and item.domain:
        atom = dp.enum_domain(pl.Series([str(code) for code in item.domain], dtype=pl.String))
    elif item.kind == "string":
        atom = dp.atom_domain(T=dp.String)
    elif item.kind == "integer":
        atom = dp.atom_domain(T=dp.i64)
    else:
        atom = dp.atom_domain(T=bool)
    return dp.series_domain(item.name, dp.option_domain(atom))


@dataclass(frozen=True, slots=True)
class Statistic:
    """The noise on one released statistic, known before anything is spent.

    :param name: the output column (``count``, ``sum``, ``quantile``)
    :param distribution: OpenDP's name for the noise distribution
    :param scale: the noise scale (standard deviation of the Gaussian, Gumbel scale of a
        quantile's exponential mechanism)
    :param half_width: 95% half-width of the noise on each cell (None for a quantile, whose
        error depends on the data)
    """

    name: str
    distribution: str
    scale: float
    half_width: float | None


@dataclass(frozen=True, slots=True)
class Preview:
    """What a query will cost and how accurate it will be, computed without touching data.

    :param spend: the charge, in zCDP (plus key selection's delta)
    :param epsilon: the same charge as epsilon at ``delta``
    :param delta: the delta shown with ``epsilon`` (conversion delta plus key selection's)
    :param mechanism: the mechanism(s) OpenDP runs
    :param statistics: each released statistic's noise
    :param cells: how many cells the answer holds (None under key selection: data-dependent)
    :param threshold: key selection's threshold on the noisy count (None with public keys)
    """

    spend: PrivacySpend
    epsilon: float
    delta: float
    mechanism: str
    statistics: tuple[Statistic, ...]
    cells: int | None
    threshold: int | None


@dataclass(frozen=True, slots=True)
class QueryPlan:
    """A calibrated measurement ready to run, with what it costs.

    :param spec: the validated spec
    :param fields: the schema fields the query reads, in input order
    :param keys: the public key table (None under key selection)
    :param measurement: the OpenDP measurement (input: the projected snapshot LazyFrame)
    :param global_scale: OpenDP's scale, multiplied by each statistic's sensitivity
    :param preview: cost and accuracy
    :param max_records: the public bound on snapshot size the measurement was built for
    :param unit: the privacy unit the spend protects
    """

    spec: QuerySpec
    fields: tuple[Field, ...]
    keys: pl.DataFrame | None
    measurement: Measurement
    global_scale: float
    preview: Preview
    max_records: int = MAX_RECORDS
    unit: PrivacyUnit = CASE_RECORD

    @property
    def columns(self) -> tuple[str, ...]:
        """Return the snapshot columns the measurement reads."""
        names = tuple(item.name for item in self.fields)
        return (*names, PERSON_COLUMN, DRAW_COLUMN) if self.unit.bounded else names


@dataclass(frozen=True, slots=True)
class _Shape:
    """Everything a measurement depends on except the spend: the cache key of calibrations."""

    spec: QuerySpec
    fields: tuple[Field, ...]
    max_records: int
    rho_range: tuple[float, float] = RHO_RANGE
    unit: PrivacyUnit = CASE_RECORD


def _used_fields(spec: QuerySpec, schema: Mapping[str, Field]) -> tuple[Field, ...]:
    names = [*spec.group_by, *(condition.field for condition in spec.filters)]
    if spec.measure.field is not None:
        names.append(spec.measure.field)
    if not names and schema:
        # A frame of no columns has no rows in Polars: a total count reads one column (any;
        # a count does not look at its values) so that OpenDP sees every record.
        names.append(next(iter(schema)))
    return tuple(schema[name] for name in dict.fromkeys(names))


def _filter_expression(spec: QuerySpec) -> pl.Expr | None:
    combined: pl.Expr | None = None
    for condition in spec.filters:
        column = pl.col(condition.field)
        # OpenDP 0.16 refuses ``is_in``; a disjunction of equalities is the same predicate.
        terms = [
            column.is_null() if value is None else column == value for value in condition.values
        ]
        either = terms[0]
        for term in terms[1:]:
            either = either | term
        combined = either if combined is None else combined & either
    return combined


def _noisy(expression: pl.Expr) -> Any:
    """Return OpenDP's ``.dp`` namespace of ``expression`` (registered at runtime, untyped)."""
    return expression.dp  # type: ignore[attr-defined]  # opendp registers it on import


def _noisy_count() -> pl.Expr:
    # signed=True: the default clamps at zero and biases empty cells upward.
    return cast(pl.Expr, dp_len(signed=True)).alias("count")


def _aggregations(
    spec: QuerySpec, schema: Mapping[str, Field], key_selection: bool
) -> list[pl.Expr]:
    measure = spec.measure
    if measure.kind == "count":
        return [_noisy_count()]
    item = schema[str(measure.field)]
    low, high = item.value_bounds or (0, 0)
    value = pl.col(item.name).cast(pl.Int64)
    if measure.kind == "sum":
        total = _noisy(value).sum((low, high)).alias("sum")
        # OpenDP selects unknown keys by thresholding a noisy count, so one rides along.
        return [total, _noisy_count()] if key_selection else [total]
    if measure.kind == "mean":
        # Centre on the lower bound: the sum's sensitivity drops from max(|lo|, |hi|) (2021
        # for a year) to hi - lo (19), and the mean is lo + centred sum / count.
        return [
            _noisy(value - low).sum((0, high - low)).alias("sum"),
            _noisy_count(),
        ]
    candidates = list(range(low, high + 1))
    level = float(measure.quantile or 0.5)
    return [_noisy(value).quantile(level, candidates).alias("quantile")]


def _public_keys(spec: QuerySpec, schema: Mapping[str, Field]) -> pl.DataFrame | None:
    per_field: list[tuple[Code, ...]] = []
    for name in spec.group_by:
        keys = schema[name].public_keys()
        if keys is None:
            return None
        per_field.append(keys)
    cells = math.prod(len(keys) for keys in per_field)
    if cells > MAX_CELLS:
        raise QuerySpecError("group_by", f"{cells} cells exceed the limit of {MAX_CELLS}")
    rows = list(product(*per_field))
    return pl.DataFrame(
        {
            name: pl.Series(name, [row[index] for row in rows], dtype=polars_dtype(schema[name]))
            for index, name in enumerate(spec.group_by)
        }
    )


def _input(shape: _Shape) -> tuple[Any, Any, pl.LazyFrame]:
    """Return OpenDP's input domain and metric, and the input frame bounded per privacy unit."""
    columns = [_series_domain(item) for item in shape.fields]
    dtypes: dict[str, pl.DataType] = {item.name: polars_dtype(item) for item in shape.fields}
    metric: Any = dp.symmetric_distance()
    c = shape.unit.records_per_person
    if c is not None:
        columns += [
            dp.series_domain(PERSON_COLUMN, dp.atom_domain(T=dp.i64)),
            dp.series_domain(DRAW_COLUMN, dp.atom_domain(T=dp.u32)),
        ]
        dtypes |= {PERSON_COLUMN: pl.Int64(), DRAW_COLUMN: pl.UInt32()}
        metric, _ = dp.unit_of(contributions=RECORD_DISTANCE, identifier=PERSON_COLUMN)
    domain = dp.with_margin(
        dp.lazyframe_domain(columns), Margin(by=[], max_length=shape.max_records)
    )
    frame = pl.LazyFrame(schema=dtypes)
    if c is not None:
        # OpenDP's truncation (its ``truncate_per_group(c, keep=SortBy(draw))``), written out
        # because the plan is built on a plain LazyFrame: each person keeps c of their records,
        # before any filter, so every query on a snapshot measures the same bounded records.
        frame = frame.filter(kept_by_draw(c, PERSON_COLUMN, DRAW_COLUMN))
    return domain, metric, frame


@lru_cache(maxsize=256)
def _build(shape: _Shape) -> tuple[Any, pl.LazyFrame, pl.DataFrame | None, Any]:
    """Return OpenDP's input domain, the query LazyFrame, the public keys and output measure."""
    schema = {item.name: item for item in shape.fields}
    spec = shape.spec
    domain, _, frame = _input(shape)
    condition = _filter_expression(spec)
    if condition is not None:
        frame = frame.filter(condition)
    if spec.measure.field is not None:
        # Sums, means and quantiles are over the records where the field is recorded.
        frame = frame.filter(pl.col(spec.measure.field).is_not_null())
    keys = _public_keys(spec, schema) if spec.group_by else None
    aggregations = _aggregations(spec, schema, key_selection=bool(spec.group_by) and keys is None)
    measure = dp.zero_concentrated_divergence()
    if not spec.group_by:
        plan = frame.select(aggregations)
    elif keys is not None:
        grouped = frame.group_by(list(spec.group_by)).agg(aggregations)
        plan = keys.lazy().join(grouped, on=list(spec.group_by), how="left", nulls_equal=True)
    else:
        plan = frame.group_by(list(spec.group_by)).agg(aggregations)
        measure = dp.approximate(measure)
    return domain, plan, keys, measure


def _make(shape: _Shape, scale: float, threshold: int | None) -> Measurement:
    domain, plan, _, measure = _build(shape)
    metric = _input(shape)[1]
    return dp.m.make_private_lazyframe(
        domain, metric, measure, plan, global_scale=scale, threshold=threshold
    )


def _loss(measurement: Measurement) -> tuple[float, float]:
    """Return (rho, delta) that ``measurement`` spends on neighbouring snapshots.

    One unit either way: one record (symmetric distance) or one person (symmetric distance
    over person keys).
    """
    loss = measurement.map(RECORD_DISTANCE)  # type: ignore[no-untyped-call]  # opendp: untyped
    if isinstance(loss, tuple):
        return float(loss[0]), float(loss[1])
    return float(loss), 0.0


@lru_cache(maxsize=256)
def _calibrate(shape: _Shape, rho: float) -> tuple[Measurement, float, int | None]:
    """Return the measurement spending at most ``rho``, its global scale and threshold."""
    approximate = _is_approximate(shape)
    tuning_threshold = _NO_THRESHOLD if approximate else None

    def loss(s: float) -> float:
        return _loss(_make(shape, s, tuning_threshold))[0]

    scale = scale_for_loss(loss, rho)
    measurement = _make(shape, scale, tuning_threshold)
    if not approximate:
        return measurement, scale, None
    delta = shape.spec.key_selection_delta
    # OpenDP wants a threshold above what one unit adds to a cell (1 record, or c records of
    # one person); delta falls as the threshold rises: find the lowest within the budget.
    lowest = (shape.unit.records_per_person or 1) + 1

    def fits(threshold: int) -> bool:
        return _loss(_make(shape, scale, threshold))[1] <= delta

    try:
        high = lowest if fits(lowest) else search(fits, lowest, 2**31 - 1)
    except CalibrationError:
        raise QuerySpecError(
            "key_selection_delta",
            f"{delta} is smaller than any threshold can achieve at this spend",
        ) from None
    measurement = _make(shape, scale, high)
    spent_rho, spent_delta = _loss(measurement)
    if spent_rho > rho or spent_delta > delta:
        raise QuerySpecError(
            "key_selection_delta",
            f"{delta} is smaller than any threshold can achieve at this spend",
        )
    return measurement, scale, high


def _statistics(measurement: Measurement) -> tuple[Statistic, ...]:
    summary = summarize_polars_measurement(measurement, _ALPHA)
    statistics = []
    for row in summary.iter_rows(named=True):
        accuracy = row.get("accuracy")
        statistics.append(
            Statistic(
                name=str(row["column"]),
                distribution=str(row["distribution"]),
                scale=float(row["scale"]),
                half_width=None if accuracy is None else float(accuracy),
            )
        )
    return tuple(statistics)


def _mechanism(statistics: tuple[Statistic, ...], threshold: int | None) -> str:
    names = {
        "Integer Gaussian": "discrete Gaussian",
        "Float Gaussian": "Gaussian",
        "GumbelMin": "exponential mechanism (Gumbel report-noisy-min)",
    }
    parts = dict.fromkeys(names.get(stat.distribution, stat.distribution) for stat in statistics)
    mechanism = " + ".join(parts)
    if threshold is not None:
        mechanism += f" with DP key selection (noisy count >= {threshold})"
    return mechanism


def _is_approximate(shape: _Shape) -> bool:
    """Return True when the query needs DP key selection (it then spends a delta too)."""
    return bool(shape.spec.group_by) and _build(shape)[2] is None


def _rho_for_half_width(shape: _Shape, half_width: float) -> float:
    """Return the smallest rho whose 95% half-width on the count (or sum) is ``half_width``.

    The search explores only the scales that spends within ``shape.rho_range`` buy.
    """
    unit = _make(shape, 1.0, _NO_THRESHOLD if _is_approximate(shape) else None)
    unit_rho = _loss(unit)[0]
    unit_scale = _statistics(unit)[0].scale
    low_rho, high_rho = shape.rho_range

    def within(global_scale: float) -> bool:
        accuracy = dp.discrete_gaussian_scale_to_accuracy(unit_scale * global_scale, _ALPHA)
        return float(accuracy) <= half_width

    # OpenDP's accuracy of a discrete Gaussian is integer-valued and its inverse can land one
    # unit high, so search on the forward map: the largest scale still within ``half_width``.
    try:
        scale = search(within, math.sqrt(unit_rho / high_rho), math.sqrt(unit_rho / low_rho))
    except CalibrationError:
        if within(math.sqrt(unit_rho / low_rho)):
            raise SpendOutOfRange(
                "spend.half_width",
                f"{half_width} is coarser than the smallest spend allowed (rho={low_rho}) gives",
            ) from None
        raise SpendOutOfRange(
            "spend.half_width",
            f"{half_width} is finer than the largest spend allowed (rho={high_rho}) gives",
        ) from None
    # Step back from the jump so the calibration's upward nudges cannot cross it.
    return unit_rho / (scale * (1 - 1e-9)) ** 2


def _resolve_rho(shape: _Shape, display_delta: float) -> tuple[float, float]:
    """Return the rho a spend request buys and the delta at which its epsilon is shown."""
    request = shape.spec.spend
    if request.rho is not None:
        return float(request.rho), display_delta
    if request.epsilon is not None and request.delta is not None:
        # Key selection's delta comes out of the requested delta, so the total stays within it.
        conversion_delta = float(request.delta)
        if _is_approximate(shape):
            conversion_delta -= shape.spec.key_selection_delta
            if conversion_delta <= 0:
                raise QuerySpecError(
                    "spend.delta",
                    f"must exceed key_selection_delta={shape.spec.key_selection_delta}, "
                    "which DP key selection spends from it",
                )
        return epsilon_delta_to_rho(float(request.epsilon), conversion_delta), conversion_delta
    return _rho_for_half_width(shape, float(request.half_width or 0.0)), display_delta


def plan_query(
    spec: QuerySpec,
    schema: Mapping[str, Field],
    *,
    max_records: int = MAX_RECORDS,
    display_delta: float = DISPLAY_DELTA,
    rho_range: tuple[float, float] = RHO_RANGE,
    unit: PrivacyUnit = CASE_RECORD,
) -> QueryPlan:
    """Validate ``spec`` and return its calibrated measurement with cost and accuracy.

    Nothing is spent and no data is read: this is the preview. Plans of the same shape and
    spend come from a cache.

    :param spec: the researcher's query
    :param schema: the record schema, by field name
    :param max_records: public upper bound on the snapshot's size
    :param display_delta: the delta at which epsilon is shown
    :param rho_range: the smallest and largest rho one query may spend, inclusive
    :param unit: the privacy unit: one case record (the default) or one person with up to
        ``c`` records, each person's records beyond ``c`` dropped before measuring
    :raises SpendOutOfRange: if the spend, converted to rho, is outside ``rho_range``

    >>> from disclosure_control.dp.spec import Measure, SpendRequest
    >>> schema = {"gender": Field("gender", "string", ("Female", "Male"))}
    >>> spec = QuerySpec(Measure("count"), SpendRequest(rho=0.5), group_by=("gender",))
    >>> plan = plan_query(spec, schema)
    >>> plan.preview.spend, plan.preview.cells, plan.preview.statistics[0].half_width
    (PrivacySpend(rho=0.5, delta=0.0), 3, 3.0)
    """
    low, high = float(rho_range[0]), float(rho_range[1])
    if not (0 < low < high and math.isfinite(high)):
        raise ValueError(f"rho_range must hold 0 < low < high < inf, got {rho_range!r}")
    validate_spec(spec, schema)
    shape = _Shape(
        spec=spec,
        fields=_used_fields(spec, schema),
        max_records=max_records,
        rho_range=(low, high),
        unit=unit,
    )
    return _plan(shape, display_delta)


@lru_cache(maxsize=256)
def _plan(shape: _Shape, display_delta: float) -> QueryPlan:
    """Calibrate and summarise the measurement of ``shape`` (cached: plans are immutable)."""
    spec = shape.spec
    rho, display_delta = _resolve_rho(shape, display_delta)
    if not (math.isfinite(rho) and rho > 0):
        raise QuerySpecError("spend", f"the requested spend resolves to rho={rho!r}")
    low, high = shape.rho_range
    if not low <= rho <= high:
        raise SpendOutOfRange(
            "spend",
            f"the requested spend resolves to rho={rho:.3g}, outside the range one query may "
            f"spend: {low:g} to {high:g}",
        )
    measurement, scale, threshold = _calibrate(shape, rho)
    charged_rho, key_delta = _loss(measurement)
    spend = PrivacySpend(charged_rho, key_delta)
    statistics = _statistics(measurement)
    keys = _build(shape)[2] if spec.group_by else None
    preview = Preview(
        spend=spend,
        epsilon=rho_to_epsilon(charged_rho, display_delta),
        delta=display_delta + key_delta,
        mechanism=_mechanism(statistics, threshold),
        statistics=statistics,
        cells=(keys.height if keys is not None else (None if spec.group_by else 1)),
        threshold=threshold,
    )
    return QueryPlan(
        spec=spec,
        fields=shape.fields,
        keys=keys,
        measurement=measurement,
        global_scale=scale,
        preview=preview,
        max_records=shape.max_records,
        unit=shape.unit,
    )
