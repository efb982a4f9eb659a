"""Utility measures: how faithfully a synthetic table reproduces the real case records."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from math import comb
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from disclosure_control.evaluate._encoding import (
    IntMatrix,
    SharedEncoding,
    cell_index,
    encode_tables,
)

#: Above this many cells a marginal is tallied sparsely (``np.unique``) instead of densely.
_DENSE_CELL_LIMIT = 1 << 22

FloatArray = npt.NDArray[np.float64]


def total_variation(p_counts: FloatArray, q_counts: FloatArray) -> float:
    """Return the total-variation distance between two count vectors, each normalised.

    :param p_counts: counts of the first table over the cells of a marginal.
    :param q_counts: counts of the second table over the same cells.

    >>> total_variation(np.array([2.0, 2.0]), np.array([1.0, 3.0]))
    0.25
    >>> total_variation(np.array([5.0, 0.0]), np.array([0.0, 7.0]))
    1.0
    """
    p_total, q_total = p_counts.sum(), q_counts.sum()
    if p_total <= 0 or q_total <= 0:
        raise ValueError("total variation needs two non-empty tables")
    return float(0.5 * np.abs(p_counts / p_total - q_counts / q_total).sum())


def _paired_counts(
    a: IntMatrix, b: IntMatrix, column_indices: Sequence[int], sizes: Sequence[int]
) -> tuple[FloatArray, FloatArray]:
    """Count two encoded tables over the cells of one marginal, aligned cell by cell."""
    n_cells = int(np.prod([sizes[j] for j in column_indices], dtype=np.float64))
    cells_a = cell_index(a, column_indices, sizes)
    cells_b = cell_index(b, column_indices, sizes)
    if n_cells <= _DENSE_CELL_LIMIT:
        return (
            np.bincount(cells_a, minlength=n_cells).astype(np.float64),
            np.bincount(cells_b, minlength=n_cells).astype(np.float64),
        )
    # Large products (several country columns) are tallied on the cells that occur only.
    uniques, inverse = np.unique(np.concatenate([cells_a, cells_b]), return_inverse=True)
    counts_a = np.bincount(inverse[: len(cells_a)], minlength=len(uniques)).astype(np.float64)
    counts_b = np.bincount(inverse[len(cells_a) :], minlength=len(uniques)).astype(np.float64)
    return counts_a, counts_b


@dataclass(frozen=True)
class TvdSummary:
    """Mean and max total-variation distance over a set of marginals of one order.

    :param order: how many columns each marginal spans.
    :param n_marginals: how many marginals were measured.
    :param mean: mean distance.
    :param max: largest distance.
    :param worst: the columns of the marginal with the largest distance.
    """

    order: int
    n_marginals: int
    mean: float
    max: float
    worst: tuple[str, ...]


def sample_column_sets(
    n_columns: int, order: int, n_sample: int | None, seed: int
) -> list[tuple[int, ...]]:
    """Return every column set of a given order, or a fixed random sample of them.

    The sample depends on the seed and the number of columns only, never on the data, so two
    synthesizers scored with the same seed are scored on the same marginals.

    :param n_columns: how many columns the table has.
    :param order: how many columns each set holds.
    :param n_sample: how many sets to draw without replacement; ``None`` for all of them.
    :param seed: seed of the draw.

    >>> sample_column_sets(4, 2, None, 0)
    [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    >>> len(sample_column_sets(10, 3, 5, 0))
    5
    """
    total = comb(n_columns, order)
    if n_sample is None or n_sample >= total:
        return list(itertools.combinations(range(n_columns), order))
    rng = np.random.default_rng(seed)
    chosen: set[tuple[int, ...]] = set()
    while len(chosen) < n_sample:
        picked = rng.choice(n_columns, size=order, replace=False)
        chosen.add(tuple(sorted(int(i) for i in picked)))
    return sorted(chosen)


def marginal_tvd(
    encoding: SharedEncoding, order: int, n_sample: int | None = None, seed: int = 0
) -> TvdSummary:
    """Compare the first two encoded tables on all (or a sample of) marginals of one order.

    :param encoding: shared encoding whose first matrix is the reference (real) table and whose
        second is the table under test.
    :param order: how many columns each marginal spans.
    :param n_sample: how many marginals to sample; ``None`` for all.
    :param seed: seed of the marginal sample.
    """
    real, other = encoding.matrices[0], encoding.matrices[1]
    sizes = encoding.cardinalities
    column_sets = sample_column_sets(len(encoding.columns), order, n_sample, seed)
    if not column_sets:
        raise ValueError(f"no {order}-way marginals over {len(encoding.columns)} columns")
    distances = np.array(
        [total_variation(*_paired_counts(real, other, cs, sizes)) for cs in column_sets]
    )
    worst = column_sets[int(np.argmax(distances))]
    return TvdSummary(
        order=order,
        n_marginals=len(column_sets),
        mean=float(distances.mean()),
        max=float(distances.max()),
        worst=tuple(encoding.columns[j] for j in worst),
    )


@dataclass(frozen=True)
class CombinationSummary:
    """SDS-style comparison of attribute combinations of one length.

    An attribute is a (column, value) pair with a recorded (non-empty) value; a combination of
    length ``L`` is ``L`` attributes of distinct columns that occur together in a record.

    :param length: the combination length.
    :param n_column_sets: how many column sets of this length were examined.
    :param real_combinations: distinct combinations in the real table.
    :param synthetic_combinations: distinct combinations in the synthetic table.
    :param mean_count_error: mean absolute error of the synthetic count (scaled to the real
        table's size) over the real combinations.
    :param mean_relative_error: mean of that error divided by the real count.
    :param preserved_share: share of real combinations the synthetic table also holds.
    :param fabricated_share: share of synthetic combinations that never occur in the real table.
    """

    length: int
    n_column_sets: int
    real_combinations: int
    synthetic_combinations: int
    mean_count_error: float
    mean_relative_error: float
    preserved_share: float
    fabricated_share: float


def combination_errors(
    encoding: SharedEncoding,
    max_length: int = 4,
    n_sample: int = 200,
    seed: int = 0,
) -> list[CombinationSummary]:
    """Compare attribute-combination counts of the first two encoded tables, by length.

    Lengths 1 and 2 use every column set; longer lengths use a fixed sample of ``n_sample``
    column sets, so the cost stays bounded on 54 columns.

    :param encoding: shared encoding; first matrix real, second synthetic.
    :param max_length: the longest combination length.
    :param n_sample: column sets sampled per length above 2.
    :param seed: seed of the column-set sample.
    """
    real, synthetic = encoding.matrices[0], encoding.matrices[1]
    sizes = encoding.cardinalities
    missing = [encoding.missing_code(j) for j in range(len(encoding.columns))]
    scale = len(real) / len(synthetic)
    summaries = []
    for length in range(1, max_length + 1):
        column_sets = sample_column_sets(
            len(encoding.columns), length, None if length <= 2 else n_sample, seed + length
        )
        real_total = synthetic_total = preserved = fabricated = 0
        abs_errors: list[FloatArray] = []
        rel_errors: list[FloatArray] = []
        for cs in column_sets:
            real_rows = np.all([real[:, j] != missing[j] for j in cs], axis=0)
            synthetic_rows = np.all([synthetic[:, j] != missing[j] for j in cs], axis=0)
            real_counts, synthetic_counts = _paired_counts(
                real[real_rows], synthetic[synthetic_rows], cs, sizes
            )
            in_real = real_counts > 0
            in_synthetic = synthetic_counts > 0
            real_total += int(in_real.sum())
            synthetic_total += int(in_synthetic.sum())
            preserved += int((in_real & in_synthetic).sum())
            fabricated += int((in_synthetic & ~in_real).sum())
            error = np.abs(synthetic_counts[in_real] * scale - real_counts[in_real])
            abs_errors.append(error)
            rel_errors.append(error / real_counts[in_real])
        all_abs = np.concatenate(abs_errors) if abs_errors else np.zeros(0)
        all_rel = np.concatenate(rel_errors) if rel_errors else np.zeros(0)
        summaries.append(
            CombinationSummary(
                length=length,
                n_column_sets=len(column_sets),
                real_combinations=real_total,
                synthetic_combinations=synthetic_total,
                mean_count_error=float(all_abs.mean()) if all_abs.size else 0.0,
                mean_relative_error=float(all_rel.mean()) if all_rel.size else 0.0,
                preserved_share=preserved / real_total if real_total else 1.0,
                fabricated_share=fabricated / synthetic_total if synthetic_total else 0.0,
            )
        )
    return summaries


@dataclass(frozen=True)
class AnalystQuery:
    """A question researchers ask of CTDC, answered on both tables and compared.

    ``kind="rate"`` compares, within each group of ``group_by``, the share of records whose
    target column holds ``value`` (one rate per target column); ``kind="distribution"``
    compares the distribution of one target column within each group (total variation).

    :param name: a readable name for the report.
    :param group_by: the grouping column (e.g. the year of registration).
    :param kind: ``"rate"`` or ``"distribution"``.
    :param targets: target columns named outright.
    :param target_prefix: also take every column starting with this prefix as a target, so a
        query names a family (``meansOfControl``) without restating the schema's column list.
    :param value: the value counted by a rate query (indicator columns hold ``"1"``).
    """

    name: str
    group_by: str
    kind: str
    targets: tuple[str, ...] = ()
    target_prefix: str | None = None
    value: str = "1"

    def resolve_targets(self, columns: Sequence[str]) -> tuple[str, ...]:
        """Return the target columns present in a table, named ones first.

        :param columns: the table's columns.

        >>> q = AnalystQuery("q", "gender", "rate", ("isAbduction",), "meansOf")
        >>> q.resolve_targets(["gender", "meansOfA", "meansOfB", "isAbduction"])
        ('isAbduction', 'meansOfA', 'meansOfB')
        """
        found = [t for t in self.targets if t in columns]
        if self.target_prefix is not None:
            found += [c for c in columns if c.startswith(self.target_prefix) and c not in found]
        return tuple(found)


#: The fixed analyst query set scored on every synthetic release of CTDC-like records.
CTDC_ANALYST_QUERIES: tuple[AnalystQuery, ...] = (
    AnalystQuery("exploitation type by year", "yearOfRegistration", "rate", target_prefix="is"),
    AnalystQuery("means of control by gender", "gender", "rate", target_prefix="meansOfControl"),
    AnalystQuery("type of labour by gender", "gender", "rate", target_prefix="typeOfLabour"),
    AnalystQuery(
        "type of sexual exploitation by age", "ageBroad", "rate", target_prefix="typeOfSex"
    ),
    AnalystQuery("age group by gender", "gender", "distribution", ("ageBroad",)),
    AnalystQuery(
        "country of exploitation by year",
        "yearOfRegistration",
        "distribution",
        ("CountryOfExploitation",),
    ),
    AnalystQuery(
        "recruiter relation by gender", "gender", "rate", target_prefix="recruiterRelation"
    ),
    AnalystQuery("citizenship by data source", "Datasource", "distribution", ("citizenship",)),
)


@dataclass(frozen=True)
class QueryResult:
    """Error of one analyst query: synthetic answer against real answer.

    :param name: the query's name.
    :param status: ``"answered"`` or ``"skipped: <reason>"``.
    :param mean_error: group-size-weighted mean error (absolute rate error or total variation).
    :param max_error: the largest error over groups and targets.
    :param n_groups: number of groups in the real table.
    """

    name: str
    status: str
    mean_error: float = float("nan")
    max_error: float = float("nan")
    n_groups: int = 0


def group_distribution_error(
    real: pd.DataFrame, synthetic: pd.DataFrame, group_by: str, target: str
) -> tuple[FloatArray, FloatArray]:
    """Return per-group total variation of one target's distribution, and the group weights."""
    real_table = pd.crosstab(real[group_by], real[target])
    synthetic_table = pd.crosstab(synthetic[group_by], synthetic[target])
    synthetic_table = synthetic_table.reindex(
        index=real_table.index, columns=real_table.columns.union(synthetic_table.columns)
    ).fillna(0)
    real_table = real_table.reindex(columns=synthetic_table.columns, fill_value=0)
    real_share = real_table.div(real_table.sum(axis=1), axis=0).to_numpy(dtype=np.float64)
    synthetic_sum = synthetic_table.sum(axis=1).to_numpy(dtype=np.float64)
    synthetic_share = np.divide(
        synthetic_table.to_numpy(dtype=np.float64),
        synthetic_sum[:, None],
        out=np.zeros_like(real_share),
        where=synthetic_sum[:, None] > 0,
    )
    # A group the synthetic table never produced is wholly wrong: distance 1.
    errors = np.where(synthetic_sum > 0, 0.5 * np.abs(real_share - synthetic_share).sum(axis=1), 1)
    return errors, real_table.sum(axis=1).to_numpy(dtype=np.float64)


def analyst_query_errors(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    queries: Sequence[AnalystQuery] = CTDC_ANALYST_QUERIES,
) -> list[QueryResult]:
    """Answer each analyst query on both tables and report the synthetic table's error.

    A query whose columns the tables lack is reported as skipped, with the reason.

    :param real: the real (training) case records, as strings.
    :param synthetic: the synthetic case records, same columns.
    :param queries: the query set.
    """
    results = []
    columns = [c for c in real.columns if c in synthetic.columns]
    for query in queries:
        if query.kind not in ("rate", "distribution"):
            raise ValueError(f"analyst query {query.name!r}: unknown kind {query.kind!r}")
        targets = [t for t in query.resolve_targets(columns) if t != query.group_by]
        if query.group_by not in columns or not targets:
            results.append(
                QueryResult(query.name, f"skipped: needs {query.group_by!r} and a target column")
            )
            continue
        real_part = real[[query.group_by, *targets]].astype("string").fillna("")
        synthetic_part = synthetic[[query.group_by, *targets]].astype("string").fillna("")
        errors: list[FloatArray] = []
        weights: list[FloatArray] = []
        for target in targets:
            if query.kind == "distribution":
                error, weight = group_distribution_error(
                    real_part, synthetic_part, query.group_by, target
                )
            else:
                real_hit = (real_part[target] == query.value).astype("float64")
                synthetic_hit = (synthetic_part[target] == query.value).astype("float64")
                real_rate = real_hit.groupby(real_part[query.group_by])
                real_mean = real_rate.mean()
                synthetic_mean = (
                    synthetic_hit.groupby(synthetic_part[query.group_by])
                    .mean()
                    .reindex(real_mean.index)
                )
                # A group absent from the synthetic table answers nothing: count it as rate 0.
                difference = synthetic_mean.fillna(0.0) - real_mean
                error = np.asarray(difference.abs(), dtype=np.float64)
                weight = np.asarray(real_rate.size(), dtype=np.float64)
            errors.append(error)
            weights.append(weight)
        all_errors = np.concatenate(errors)
        all_weights = np.concatenate(weights)
        results.append(
            QueryResult(
                name=query.name,
                status="answered",
                mean_error=float(np.average(all_errors, weights=all_weights)),
                max_error=float(all_errors.max()),
                n_groups=int(real_part[query.group_by].nunique()),
            )
        )
    return results


@dataclass
class UtilityReport:
    """All utility measures of one synthetic table against its real (training) table.

    :param tvd: total-variation summaries by marginal order.
    :param combinations: SDS-style combination comparison by length.
    :param queries: analyst query errors.
    """

    tvd: list[TvdSummary] = field(default_factory=list)
    combinations: list[CombinationSummary] = field(default_factory=list)
    queries: list[QueryResult] = field(default_factory=list)

    def mean_tvd(self, order: int) -> float:
        """Return the mean total-variation distance of the marginals of one order.

        :param order: marginal order (1, 2 or 3).
        """
        for summary in self.tvd:
            if summary.order == order:
                return summary.mean
        raise KeyError(f"no {order}-way marginals in this report")

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON-ready data."""
        return {
            "tvd": [vars(s) | {"worst": list(s.worst)} for s in self.tvd],
            "combinations": [vars(c) for c in self.combinations],
            "queries": [vars(q) for q in self.queries],
        }


def evaluate_utility(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    columns: Sequence[str] | None = None,
    *,
    n_three_way: int = 300,
    max_combination_length: int = 4,
    n_combination_sets: int = 200,
    queries: Sequence[AnalystQuery] = CTDC_ANALYST_QUERIES,
    seed: int = 0,
) -> UtilityReport:
    """Measure how faithfully a synthetic table reproduces the real records.

    :param real: the real (training) case records, as strings.
    :param synthetic: the synthetic case records.
    :param columns: the columns to compare; by default the real table's columns.
    :param n_three_way: how many 3-way marginals to sample (fixed by ``seed``).
    :param max_combination_length: the longest attribute combination examined.
    :param n_combination_sets: column sets sampled per combination length above 2.
    :param queries: the analyst query set.
    :param seed: seed of every sample of marginals, so reports are comparable.

    >>> real = pd.DataFrame({"a": ["x", "y"] * 50, "b": ["1", ""] * 50, "c": ["p"] * 100})
    >>> report = evaluate_utility(real, real.copy(), queries=())
    >>> [s.mean for s in report.tvd]
    [0.0, 0.0, 0.0]
    """
    chosen = list(real.columns if columns is None else columns)
    if len(real) == 0 or len(synthetic) == 0:
        raise ValueError("utility evaluation needs a non-empty real and synthetic table")
    encoding = encode_tables([real, synthetic], chosen)
    report = UtilityReport()
    for order, n_sample in ((1, None), (2, None), (3, n_three_way)):
        if order <= len(chosen):
            report.tvd.append(marginal_tvd(encoding, order, n_sample, seed))
    report.combinations = combination_errors(
        encoding, min(max_combination_length, len(chosen)), n_combination_sets, seed
    )
    report.queries = analyst_query_errors(real[chosen], synthetic[chosen], queries)
    return report
