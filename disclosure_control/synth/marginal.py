"""A differentially private, marginal-based synthesizer of case records.

The method, in the family of PrivBayes, MST and AIM (the winners on categorical data):

1. measure every column's 1-way marginal; merge each column's rare values (those whose noisy
   count is under three noise deviations) into one bucket, as MST implementations do;
2. select a maximum spanning tree of strongly associated column pairs with the exponential
   mechanism (noisy max), one edge per round;
3. give each column a parent set by noisy max: its tree parent plus up to two columns placed
   before it, scored by how far the child's counts given the set lie from its released 1-way
   distribution, less the noise the larger marginal costs (so 3- and 4-way structure is
   modelled where the budget affords it);
4. measure each column's marginal with its parents with the Gaussian mechanism;
5. turn the noisy marginals into a Bayesian network of smoothed conditional tables and sample.

Every access to the real records is an OpenDP measurement inside one OpenDP adaptive
composition under rho-zCDP, so the run's privacy loss is OpenDP's figure.

Determinism, and its limit: OpenDP 0.16 draws all noise (Gaussian and noisy max alike) from
the operating system's cryptographically secure generator and offers no seed or deterministic
mode (by design: a seeded generator would let anyone who learns the seed subtract the noise).
So two fits of the same records differ by their noise, and a fit cannot be replayed. Everything
after the measurements is deterministic: compression, tree rooting and ordering, tie-breaks
(lowest column index), candidate order, estimation; and sampling a fitted model is
deterministic given its seed. To reproduce a release, keep its fitted model (which holds only
released, noisy values), not the seed of the fit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations
from math import pi, prod, sqrt
from typing import Any

import numpy as np
import numpy.typing as npt
import opendp.prelude as dp
import pandas as pd

from disclosure_control.synth.accounting import PrivacySpend, epsilon_for_rho
from disclosure_control.synth.domain import Domain, IntMatrix

# User transformations (record codes -> cells, records -> selection scores) need this flag;
# their stability is argued in each function's docstring.
dp.enable_features("contrib", "honest-but-curious")

FloatArray = npt.NDArray[np.float64]
#: ``progress(stage, done, total)``: called as the run advances.
ProgressCallback = Callable[[str, int, int], None]


def _ignore_progress(stage: str, done: int, total: int) -> None:
    """Discard a progress report."""


@dataclass(frozen=True)
class BudgetShares:
    """How the run's rho is split between its four kinds of measurement.

    :param one_way: 1-way marginals (domain compression and smoothing priors).
    :param tree: the noisy-max choice of tree edges.
    :param parent_sets: the noisy-max choice of each column's parent set.
    :param model: the Gaussian measurement of each column with its parents.
    """

    one_way: float = 0.15
    tree: float = 0.1
    parent_sets: float = 0.1
    model: float = 0.65

    def __post_init__(self) -> None:
        """Refuse shares that are not positive or do not add up to one."""
        parts = (self.one_way, self.tree, self.parent_sets, self.model)
        if min(parts) <= 0 or abs(sum(parts) - 1.0) > 1e-9:
            raise ValueError(f"budget shares must be positive and add up to 1, got {parts}")


def _cells(matrix: IntMatrix, columns: Sequence[int], sizes: Sequence[int]) -> IntMatrix:
    """Return the mixed-radix cell of every row over some columns (first column slowest)."""
    cells = np.zeros(len(matrix), dtype=np.int64)
    for j in columns:
        cells = cells * sizes[j] + matrix[:, j]
    return cells


def _loss(measurement: dp.Measurement, d_in: Any) -> float:
    """Return OpenDP's privacy loss of a measurement at an input distance."""
    return float(measurement.map(d_in))  # type: ignore[no-untyped-call]  # opendp is untyped


def _calibrate(make: Callable[[float], dp.Measurement], d_in: Any, rho: float) -> dp.Measurement:
    """Return the measurement, built with the smallest scale tried, whose loss is within rho.

    Both the Gaussian mechanism and noisy max lose ``c / scale**2`` zCDP, so the scale is
    solved from one probe, then nudged up until OpenDP's own map confirms it.
    """
    probe = _loss(make(1.0), d_in)
    scale = sqrt(probe / rho)
    measurement = make(scale)
    while _loss(measurement, d_in) > rho:
        scale *= 1 + 1e-9
        measurement = make(scale)
    return measurement


@dataclass
class _Factor:
    """One column's conditional distribution given its parents, in compressed codes."""

    child: int
    parents: tuple[int, ...]
    table: FloatArray  # shape (product of parent sizes, child size); rows sum to 1


@dataclass
class SynthesisModel:
    """A fitted synthesizer: released (noisy) information only, safe to keep and to publish.

    :param domain: the schema domain of the synthetic columns.
    :param order: columns in sampling order.
    :param factors: each column's conditional table, in sampling order.
    :param expand: per column, ``(kept codes, rare codes, rare weights)`` turning a compressed
        code back into a schema code.
    :param spend: the privacy loss of the run that fitted the model.
    :param tree: the selected tree edges, as column name pairs.
    """

    domain: Domain
    order: list[int]
    factors: list[_Factor]
    expand: list[tuple[IntMatrix, IntMatrix, FloatArray]]
    spend: PrivacySpend
    tree: list[tuple[str, str]]

    def parents(self) -> dict[str, tuple[str, ...]]:
        """Return each column's parents in the model, by name."""
        names = self.domain.columns
        return {names[f.child]: tuple(names[p] for p in f.parents) for f in self.factors}

    def sample(self, n_records: int, seed: int) -> pd.DataFrame:
        """Draw synthetic case records from the model; the same seed gives the same table.

        :param n_records: how many records to draw.
        :param seed: seed of the draw.
        """
        if n_records < 0:
            raise ValueError("the number of synthetic records cannot be negative")
        rng = np.random.default_rng(seed)
        d = len(self.domain.columns)
        compressed = np.zeros((n_records, d), dtype=np.int64)
        sizes = [len(kept) + (1 if rare.size else 0) for kept, rare, _ in self.expand]
        for factor in self.factors:
            config = _cells(compressed, factor.parents, sizes)
            cdf = np.cumsum(factor.table, axis=1)
            cdf[:, -1] = 1.0
            u = rng.random(n_records)
            drawn = np.empty(n_records, dtype=np.int64)
            for start in range(0, n_records, 65536):
                part = slice(start, start + 65536)
                drawn[part] = (cdf[config[part]] < u[part, None]).sum(axis=1)
            compressed[:, factor.child] = drawn
        codes = np.empty_like(compressed)
        for j, (kept, rare, weights) in enumerate(self.expand):
            column = compressed[:, j]
            in_bucket = column >= len(kept)
            codes[:, j] = kept[np.minimum(column, len(kept) - 1)]
            if rare.size and in_bucket.any():
                codes[in_bucket, j] = rng.choice(rare, size=int(in_bucket.sum()), p=weights)
        return self.domain.decode(codes)


class MarginalSynthesizer:
    """Fit a differentially private Bayesian network of low-order marginals to case records.

    :param domain: the schema domain of the columns to synthesise.
    :param rho: the run's total privacy loss (zero-concentrated DP, privacy unit one record).
    :param delta: the delta at which the spend is also stated as (epsilon, delta).
    :param shares: how rho is split between the kinds of measurement.
    :param max_cells: the largest marginal (in compressed cells) the model measures.
    :param max_parents: the most parents a column may have (its tree parent included).
    """

    def __init__(
        self,
        domain: Domain,
        rho: float,
        *,
        delta: float = 1e-6,
        shares: BudgetShares | None = None,
        max_cells: int = 20_000,
        max_parents: int = 3,
    ) -> None:
        """Keep the run's settings; nothing touches data until :meth:`fit`."""
        if rho <= 0:
            raise ValueError("rho must be positive")
        if len(domain.columns) < 2:
            raise ValueError("a marginal-based synthesizer needs at least two columns")
        self.domain = domain
        self.rho = rho
        self.delta = delta
        self.shares = shares or BudgetShares()
        self.max_cells = max_cells
        if max_parents < 1:
            raise ValueError("every column but the first needs at least its tree parent")
        self.max_parents = max_parents

    def fit(
        self, records: pd.DataFrame, progress: ProgressCallback | None = None
    ) -> SynthesisModel:
        """Measure the records through OpenDP and fit the model.

        :param records: the analysis snapshot's case records, as strings.
        :param progress: called with ``(stage, done, total)`` as the run advances.
        """
        report = progress or _ignore_progress
        data = self.domain.encode(records)
        d = len(self.domain.columns)
        full_sizes = self.domain.cardinalities
        records_domain = dp.user_domain(
            "EncodedCaseRecords",
            member=lambda x: isinstance(x, np.ndarray) and x.ndim == 2 and x.shape[1] == d,
        )
        metric = dp.symmetric_distance()
        # The run's budget is cut a hair below rho so float rounding in the sum of the parts
        # can never take the composition over it.
        budget = self.rho * (1 - 1e-9)
        n_rounds = {"one_way": d, "tree": d - 1, "parent_sets": d - 2, "model": d - 1}
        per_round = {
            kind: budget * getattr(self.shares, kind) / count
            for kind, count in n_rounds.items()
            if count > 0
        }

        def to_cells(columns: Sequence[int], lookups: Sequence[IntMatrix]) -> dp.Transformation:
            """Map each record to its cell of a marginal: a row-by-row map, so 1-stable."""
            sizes = [int(lk.max()) + 1 for lk in lookups]

            def function(matrix: IntMatrix) -> list[int]:
                mapped = np.column_stack([lookups[j][matrix[:, j]] for j in range(d)])
                return [int(v) for v in _cells(mapped, columns, sizes)]

            return dp.t.make_user_transformation(
                records_domain,
                metric,
                dp.vector_domain(dp.atom_domain(T=int)),
                metric,
                function=function,
                stability_map=lambda d_in: d_in,
            )

        def count_query(
            columns: Sequence[int], lookups: Sequence[IntMatrix], rho: float
        ) -> dp.Measurement:
            n_cells = prod(int(lookups[j].max()) + 1 for j in columns)
            counts = to_cells(columns, lookups) >> dp.t.then_count_by_categories(
                categories=list(range(n_cells)), null_category=False, MO="L2Distance<int>"
            )
            return _calibrate(lambda s: counts >> dp.m.then_gaussian(scale=s), 1, rho)

        def select_query(
            score: Callable[[IntMatrix], list[float]], rho: float, sensitivity: float = 1.0
        ) -> dp.Measurement:
            """Return a noisy max over scores that move by at most ``sensitivity`` per record.

            A record added or removed moves every score by at most ``sensitivity``; each score
            function argues its own bound.
            """
            scores = dp.t.make_user_transformation(
                records_domain,
                metric,
                dp.vector_domain(dp.atom_domain(T=float, nan=False)),
                dp.linf_distance(T=float),
                function=score,
                stability_map=lambda d_in: sensitivity * float(d_in),
            )
            return _calibrate(
                lambda s: scores >> dp.m.then_noisy_max(dp.zero_concentrated_divergence(), s),
                1,
                rho,
            )

        identity = [np.arange(k, dtype=np.int64) for k in full_sizes]
        probe_one_way = count_query([0], identity, per_round["one_way"])
        probe_model = count_query([0], identity, per_round["model"])
        d_mids = [_loss(probe_one_way, 1)] * d
        d_mids += [per_round["tree"]] * (d - 1)
        d_mids += [per_round["parent_sets"]] * (d - 2)
        d_mids += [_loss(probe_model, 1)] * (d - 1)
        composition = dp.c.make_adaptive_composition(
            records_domain, metric, dp.zero_concentrated_divergence(), d_in=1, d_mids=d_mids
        )
        total_steps = len(d_mids)
        queryable = composition(data)
        ledger: list[tuple[str, float]] = []
        names = self.domain.columns

        def release(label: str, measurement: dp.Measurement) -> Any:
            ledger.append((label, _loss(measurement, 1)))
            answer = queryable(measurement)
            report("measure", len(ledger), total_steps)
            return answer

        # 1. One-way marginals, then domain compression (post-processing of released counts).
        one_way_sigma = sqrt(0.5 / d_mids[0])
        one_way: list[FloatArray] = []
        for j in range(d):
            noisy = release(f"1-way {names[j]}", count_query([j], identity, per_round["one_way"]))
            one_way.append(np.asarray(noisy, dtype=np.float64))
        n_hat = max(float(np.mean([c.sum() for c in one_way])), 1.0)
        lookups, expand, sizes, priors = [], [], [], []
        for j in range(d):
            counts = one_way[j]
            kept = np.flatnonzero(counts >= 3 * one_way_sigma)
            if kept.size == 0:
                kept = np.array([int(np.argmax(counts))])
            rare = np.setdiff1d(np.arange(full_sizes[j]), kept)
            if rare.size == 1:
                kept, rare = np.sort(np.append(kept, rare)), rare[:0]
            lookup = np.full(full_sizes[j], len(kept), dtype=np.int64)
            lookup[kept] = np.arange(len(kept))
            clipped = np.clip(counts, 0, None)
            rare_weights = clipped[rare] + 1e-9
            expand.append(
                (kept.astype(np.int64), rare.astype(np.int64), rare_weights / rare_weights.sum())
            )
            lookups.append(lookup)
            sizes.append(len(kept) + (1 if rare.size else 0))
            prior = np.append(clipped[kept], clipped[rare].sum() if rare.size else [])
            priors.append((prior + 1e-9) / (prior + 1e-9).sum())

        model_sigma = sqrt(0.5 / d_mids[-1])
        penalty = sqrt(2 / pi) * model_sigma

        cache: dict[str, FloatArray] = {}
        mapped_cache: dict[int, IntMatrix] = {}

        def compressed(matrix: IntMatrix) -> IntMatrix:
            """Return the records in compressed codes (computed once per run)."""
            if id(matrix) not in mapped_cache:
                mapped_cache.clear()
                mapped_cache[id(matrix)] = np.column_stack(
                    [lookups[j][matrix[:, j]] for j in range(d)]
                )
            return mapped_cache[id(matrix)]

        def pair_scores(matrix: IntMatrix) -> FloatArray:
            """L1 distance of each real pair marginal from independence under the noisy 1-ways.

            Adding or removing one record moves one cell of each pair's counts by one and
            leaves the (already released) independence prediction fixed: sensitivity 1.
            """
            if "pairs" not in cache:
                mapped = compressed(matrix)
                table = np.zeros((d, d))
                for a in range(d):
                    for b in range(a + 1, d):
                        counts = np.bincount(
                            mapped[:, a] * sizes[b] + mapped[:, b], minlength=sizes[a] * sizes[b]
                        )
                        expected = n_hat * np.outer(priors[a], priors[b]).ravel()
                        table[a, b] = table[b, a] = np.abs(counts - expected).sum()
                cache["pairs"] = table
            return cache["pairs"]

        # 2. Maximum spanning tree by noisy max (Kruskal's rule: join two components per round).
        component = list(range(d))
        tree: list[tuple[int, int]] = []
        for _ in range(d - 1):
            candidates = [
                (a, b) for a in range(d) for b in range(a + 1, d) if component[a] != component[b]
            ]
            bias = np.array([-penalty * sizes[a] * sizes[b] for a, b in candidates])

            def tree_score(
                matrix: IntMatrix, cands: list[tuple[int, int]] = candidates, b: FloatArray = bias
            ) -> list[float]:
                table = pair_scores(matrix)
                return [float(v) for v in np.array([table[x, y] for x, y in cands]) + b]

            chosen = release("tree edge", select_query(tree_score, per_round["tree"]))
            a, b = candidates[int(chosen)]
            tree.append((a, b))
            old, new = component[b], component[a]
            component = [new if c == old else c for c in component]

        # Root the tree at its best-connected column; order columns breadth first.
        neighbours: dict[int, list[int]] = {j: [] for j in range(d)}
        for a, b in tree:
            neighbours[a].append(b)
            neighbours[b].append(a)
        root = max(range(d), key=lambda j: (len(neighbours[j]), -j))
        order, tree_parent = [root], {root: -1}
        for node in order:
            for child in sorted(neighbours[node]):
                if child not in tree_parent:
                    tree_parent[child] = node
                    order.append(child)

        # 3. Each column's parent set by noisy max: its tree parent, plus up to
        # ``max_parents - 1`` columns placed before it, scored by how far the child's real
        # counts given the set lie from the child's released 1-way distribution, less the
        # noise the larger marginal would cost.
        parents: dict[int, tuple[int, ...]] = {root: ()}
        for position, child in enumerate(order[1:], start=1):
            parent = tree_parent[child]
            if position == 1:
                parents[child] = (parent,)
                continue
            options = _parent_sets(
                parent,
                [q for q in order[:position] if q != parent],
                [sizes[q] for q in range(d)],
                self.max_parents,
                self.max_cells // sizes[child],
            )
            bias = np.array([-penalty * sizes[child] * prod(sizes[q] for q in s) for s in options])

            def set_score(
                matrix: IntMatrix,
                opts: list[tuple[int, ...]] = options,
                b: FloatArray = bias,
                c: int = child,
            ) -> list[float]:
                mapped = compressed(matrix)
                scores = [_dependence(mapped, s, c, sizes, priors[c]) for s in opts]
                return [float(v) for v in np.array(scores) + b]

            chosen = release(
                f"parents of {names[child]}",
                select_query(set_score, per_round["parent_sets"], sensitivity=2),
            )
            parents[child] = options[int(chosen)]

        # 4. Measure each column with its parents; 5. smooth into conditional tables.
        factors = [_Factor(root, (), priors[root][None, :])]
        for child in order[1:]:
            columns = [*parents[child], child]
            noisy = release(
                f"marginal {'/'.join(names[c] for c in columns)}",
                count_query(columns, lookups, per_round["model"]),
            )
            counts = np.asarray(noisy, dtype=np.float64).reshape([sizes[c] for c in columns])
            factors.append(
                _Factor(child, parents[child], _conditional(counts, priors[child], model_sigma))
            )

        rho_spent = _loss(composition, 1)
        spend = PrivacySpend(rho_spent, self.delta, epsilon_for_rho(rho_spent, self.delta), ledger)
        return SynthesisModel(
            domain=self.domain,
            order=order,
            factors=factors,
            expand=expand,
            spend=spend,
            tree=[(names[a], names[b]) for a, b in tree],
        )


def _conditional(counts: FloatArray, prior: FloatArray, pseudo: float) -> FloatArray:
    """Turn a noisy marginal (parents..., child) into a smoothed conditional table.

    Negative noisy counts are clipped; every parent configuration is shrunk towards the
    child's distribution given fewer parents (then its 1-way distribution) with ``pseudo``
    pseudo-records, so sparse configurations fall back on what was measured more reliably.

    :param counts: noisy counts with the child on the last axis.
    :param prior: the child's 1-way distribution.
    :param pseudo: the pseudo-count of the shrinkage, about one noise deviation.

    >>> t = _conditional(np.array([[90.0, 10.0], [-3.0, -1.0]]), np.array([0.5, 0.5]), 10.0)
    >>> t.round(3).tolist()
    [[0.95, 0.05], [0.5, 0.5]]
    """
    k = counts.shape[-1]
    if counts.ndim <= 2:
        base_rows = np.broadcast_to(prior, (max(counts.size // k, 1), k))
    else:
        # Condition on the first parent alone, then repeat for each value of the others
        # (cells run first parent slowest, so its rows repeat in consecutive blocks).
        coarser = counts.sum(axis=tuple(range(1, counts.ndim - 1)))
        base_rows = np.repeat(
            _conditional(coarser, prior, pseudo), int(np.prod(counts.shape[1:-1])), axis=0
        )
    # Cells under one noise deviation are mostly noise; keeping them would spread mass evenly
    # over empty cells, so they are zeroed (the shrinkage still covers them).
    flat = counts.reshape(-1, k)
    table = np.where(flat > pseudo, flat, 0.0) + pseudo * base_rows
    return np.asarray(table / table.sum(axis=1, keepdims=True), dtype=np.float64)


def _parent_sets(
    parent: int, others: Sequence[int], sizes: Sequence[int], max_parents: int, max_cells: int
) -> list[tuple[int, ...]]:
    """List a column's candidate parent sets, smallest first.

    Each set is the tree parent plus up to ``max_parents - 1`` of the other placed columns,
    with at most ``max_cells`` parent configurations.

    :param parent: the column's tree parent, in every set.
    :param others: the other columns placed before it.
    :param sizes: every column's number of (compressed) values.
    :param max_parents: the largest set.
    :param max_cells: the most parent configurations a set may have.

    >>> _parent_sets(0, [1, 2], [2, 3, 4], 3, 100)
    [(0,), (0, 1), (0, 2), (0, 1, 2)]
    >>> _parent_sets(0, [1, 2], [2, 3, 4], 3, 10)
    [(0,), (0, 1), (0, 2)]
    """
    sets: list[tuple[int, ...]] = [(parent,)]
    for extra in range(1, max_parents):
        for chosen in combinations(others, extra):
            candidate = (parent, *chosen)
            if prod(sizes[q] for q in candidate) <= max_cells:
                sets.append(candidate)
    return sets


def _dependence(
    mapped: IntMatrix, parents: Sequence[int], child: int, sizes: Sequence[int], prior: FloatArray
) -> float:
    """Return how far a column's counts given a parent set lie from its released distribution.

    The score is the L1 distance between the real counts of (parents, child) and what the
    parents' real counts times the child's released 1-way distribution predict. Adding or
    removing one record moves one count by one and one row of the prediction by a vector
    summing to one: the score moves by at most 2 (its sensitivity). Refining the parent set
    never lowers it.

    :param mapped: the records, in compressed codes.
    :param parents: the parent set.
    :param child: the column.
    :param sizes: every column's number of compressed values.
    :param prior: the child's released (noisy) 1-way distribution.

    >>> m = np.array([[0, 0], [0, 0], [1, 1], [1, 1]])
    >>> _dependence(m, [0], 1, [2, 2], np.array([0.5, 0.5]))
    4.0
    """
    config = _cells(mapped, parents, sizes)
    k = sizes[child]
    joint = np.bincount(
        config * k + mapped[:, child], minlength=prod(sizes[q] for q in parents) * k
    )
    table = joint.reshape(-1, k).astype(np.float64)
    return float(np.abs(table - np.outer(table.sum(axis=1), prior)).sum())
