"""A differentially private, marginal-based synthesizer of case records.

The method, in the family of PrivBayes, MST and AIM (the winners on categorical data), one
module per step:

1. measure every column's 1-way marginal; merge each column's rare values (those whose noisy
   count is under three noise deviations) into one bucket, as MST implementations do, or drop
   them as absent when the bucket's counts are no more than noise
   (:mod:`~disclosure_control.synth.compression`);
2. select a maximum spanning tree of strongly associated column pairs with the exponential
   mechanism (noisy max), one edge per round (:mod:`~disclosure_control.synth.structure`);
3. give each column a parent set by noisy max: its tree parent plus up to two columns placed
   before it, scored by how far the child's counts given the set lie from its released 1-way
   distribution, less the noise the larger marginal costs (so 3- and 4-way structure is
   modelled where the budget affords it);
4. measure each column's marginal with its parents with the Gaussian mechanism;
5. turn the noisy marginals into a Bayesian network of smoothed conditional tables
   (:mod:`~disclosure_control.synth.estimation`);
6. rake each column's conditional table so its marginal moves to the inverse-variance
   combination of the network's marginal and its own 1-way measurement;
7. refine, as AIM does: with the rest of the budget, round by round, pick by noisy max the
   column pair the model gets most wrong, measure it, and reweight a pool of the network's
   records to every measurement (:mod:`~disclosure_control.synth.refine`); then sample
   (:mod:`~disclosure_control.synth.model`).

Optionally (``forbid_below``, off by default), the model never samples a combination of values
whose noisy count in a measured marginal did not clear a threshold: post-processing of the
noisy counts, at no extra privacy spend (:mod:`~disclosure_control.synth.forbid`).

Every access to the real records is an OpenDP measurement inside one OpenDP adaptive
composition under rho-zCDP (:mod:`~disclosure_control.synth.measure`), so the run's privacy
loss is OpenDP's figure, accounted in :class:`disclosure_control.dp.accounting.ItemisedSpend`.

Why the counts stay on the encoded matrix: OpenDP 0.16 can count marginals natively (a Polars
plan: ``replace_strict`` for the compression, ``group_by(...).agg(dp.len(...))`` joined to the
public cells), but then the composition's input is a LazyFrame that OpenDP hands to every
Python score function by serialising the whole table: measured 0.7 s per score call for
50,000 x 54 Int32 columns (0.85 s for 97,750), times about 105 score releases, against about
27 s for the whole fit of 50,000 records.

Determinism, and its limit: OpenDP 0.16 draws all noise from the operating system's
cryptographically secure generator and offers no seed (by design: a seeded generator would let
anyone who learns the seed subtract the noise). So two fits of the same records differ by
their noise. Everything after the measurements is deterministic: compression, tree rooting and
ordering, tie-breaks (lowest column index), candidate order, estimation; and sampling a fitted
model is deterministic given its seed (see :mod:`~disclosure_control.synth.model`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import pi, sqrt

import numpy as np
import pandas as pd
import polars as pl

from disclosure_control.person import (
    PERSON_COLUMN,
    PrivacyUnit,
    bound_contributions,
    person_keys,
)
from disclosure_control.synth.compression import Compressed, compress
from disclosure_control.synth.domain import Domain, FloatArray, IntMatrix
from disclosure_control.synth.estimation import Factor, conditional, rake
from disclosure_control.synth.forbid import forbidden_cells, rare_buckets
from disclosure_control.synth.measure import Measurements, ProgressCallback, ignore_progress
from disclosure_control.synth.model import SynthesisModel
from disclosure_control.synth.refine import POOL_SIZE, Pool, refine
from disclosure_control.synth.scores import RecordStatistics
from disclosure_control.synth.structure import root_tree, select_parent_sets, select_tree

__all__ = ["BudgetShares", "MarginalSynthesizer", "ProgressCallback", "SynthesisModel"]


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

    def per_round(self, rho: float, d: int) -> dict[str, tuple[int, float]]:
        """Return, per kind, how many rounds a run over ``d`` columns makes and each one's rho.

        The run's budget is cut a hair below ``rho`` so float rounding in the sum of the parts
        can never take the composition over it.

        >>> count, rho = BudgetShares().per_round(1.0, 3)["tree"]
        >>> count, round(rho, 6)
        (2, 0.05)
        """
        budget = rho * (1 - 1e-9)
        rounds = {"one_way": d, "tree": d - 1, "parent_sets": d - 2, "model": d - 1}
        return {
            kind: (count, budget * getattr(self, kind) / count if count > 0 else 0.0)
            for kind, count in rounds.items()
        }


#: The share of rho the refinement spends by default, and the part of each round that
#: selects its pair (measured on the CTDC file: see bench/synth_bench.py).
REFINE_SHARE = 0.3
REFINE_SELECT = 0.1
#: Refinement rounds per column by default (25 CTDC columns at eps 1, three fits each: one
#: round per column 0.035, two 0.032, four 0.032 and twice the time).
REFINE_ROUNDS_PER_COLUMN = 2


@dataclass(frozen=True)
class _OneWay:
    """Step 1's outcome: every column's compression and the estimated number of records."""

    columns: list[Compressed]
    n_hat: float
    sigma: float

    @property
    def lookups(self) -> list[IntMatrix]:
        """Return per column the compressed code of each schema code."""
        return [c.lookup for c in self.columns]

    @property
    def sizes(self) -> list[int]:
        """Return per column the number of compressed codes."""
        return [c.size for c in self.columns]

    @property
    def priors(self) -> list[FloatArray]:
        """Return per column the released distribution over compressed codes."""
        return [c.prior for c in self.columns]


class MarginalSynthesizer:
    """Fit a differentially private Bayesian network of low-order marginals to case records.

    :param domain: the schema domain of the columns to synthesise.
    :param rho: the run's total privacy loss (zero-concentrated DP, privacy unit one record).
    :param delta: the delta at which the spend is also stated as (epsilon, delta).
    :param shares: how rho is split between the kinds of measurement.
    :param max_cells: the largest marginal (in compressed cells) the model measures.
    :param max_parents: the most parents a column may have (its tree parent included).
    :param refine_share: the share of rho spent after the network, on the pairs it gets most
        wrong (:mod:`~disclosure_control.synth.refine`); the network's kinds of measurement
        split the rest by ``shares``. 0 samples the network itself.
    :param refine_rounds: how many pairs the refinement measures; by default two per column
        (at most every pair).
    :param forbid_below: off by default. When set to ``c``, the model never samples a
        combination of 2 to ``forbid_length`` values whose noisy count, in any marginal the fit
        measured, is under ``c`` noise deviations (:mod:`~disclosure_control.synth.forbid`):
        fewer fabricated combinations, at some cost in fidelity. It is post-processing of the
        noisy measurements only and spends no extra privacy budget.
    :param forbid_length: the longest combination ``forbid_below`` checks (at least 2).
    :param records_per_person: ``c`` when the privacy unit is a person: :meth:`fit` keeps at
        most c records of each person (by :data:`~disclosure_control.person.PERSON_COLUMN`,
        dropping the rest by a seeded draw) and ``rho`` is the loss for one whole person:
        every measurement is calibrated to ``rho / c**2`` per record, which OpenDP's
        composition, taken at c records, states as at most ``rho``. None (the default): the
        unit is one case record. At c = 1 the noise is the case record's.
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
        refine_share: float = REFINE_SHARE,
        refine_rounds: int | None = None,
        forbid_below: float | None = None,
        forbid_length: int = 2,
        records_per_person: int | None = None,
    ) -> None:
        """Keep the run's settings; nothing touches data until :meth:`fit`."""
        if rho <= 0:
            raise ValueError("rho must be positive")
        if len(domain.columns) < 2:
            raise ValueError("a marginal-based synthesizer needs at least two columns")
        self.domain = domain
        self.rho = rho
        self.unit = PrivacyUnit(records_per_person)
        c = records_per_person or 1
        # Every mechanism here loses c**2 times as much on c records as on one (Gaussian
        # counts, noisy max: sensitivity grows c-fold); the slack absorbs OpenDP's rounding up.
        self._record_rho = rho if c == 1 else rho / c**2 * (1 - 1e-9)
        self.delta = delta
        self.shares = shares or BudgetShares()
        self.max_cells = max_cells
        if max_parents < 1:
            raise ValueError("every column but the first needs at least its tree parent")
        self.max_parents = max_parents
        if not 0 <= refine_share < 1:
            raise ValueError(f"refine_share must lie in [0, 1), got {refine_share}")
        d = len(domain.columns)
        pairs = d * (d - 1) // 2
        default_rounds = min(REFINE_ROUNDS_PER_COLUMN * d, pairs)
        self.refine_rounds = default_rounds if refine_rounds is None else refine_rounds
        if self.refine_rounds < 0 or self.refine_rounds > pairs:
            raise ValueError("refine_rounds must lie between 0 and the number of column pairs")
        self.refine_share = refine_share if self.refine_rounds else 0.0
        if forbid_below is not None and forbid_below <= 0:
            raise ValueError(f"forbid_below must be a positive number, got {forbid_below}")
        if forbid_length < 2:
            raise ValueError(f"forbid_length must be at least 2, got {forbid_length}")
        self.forbid_below = forbid_below
        self.forbid_length = forbid_length

    def fit(
        self,
        records: pd.DataFrame,
        progress: ProgressCallback | None = None,
        *,
        bounding_seed: int | None = None,
    ) -> SynthesisModel:
        """Measure the records through OpenDP and fit the model.

        :param records: the analysis snapshot's case records, as strings, with the person key
            column when the unit is a person (without it each record is its own person).
        :param progress: called with ``("measure", done, total)`` as the run advances.
        :param bounding_seed: seeds the draw of which records of a person beyond c are dropped,
            for tests only. Leave it None (a fresh seed kept nowhere) for anything released: the
            bound is c-stable only while the draw is secret (a known seed makes which records of
            the others are kept a known function of how many records there are, so removing
            one person changes them).
        """
        data = self.domain.encode(self._bounded(records, bounding_seed))
        names = self.domain.columns
        rounds = self.shares.per_round(self._record_rho * (1 - self.refine_share), len(names))
        refine_rounds = self._refine_rounds()
        measurements = Measurements(
            data,
            [
                (*rounds["one_way"], None),
                (*rounds["tree"], 1.0),
                (*rounds["parent_sets"], 2.0),
                (*rounds["model"], None),
                *[(1, refine_rounds[1], 1.0), (1, refine_rounds[2], None)] * refine_rounds[0],
            ],
            progress or ignore_progress,
            self.unit.records_per_person or 1,
        )
        one_way = self._measure_one_way(measurements, rounds["one_way"][1])
        model_sigma = sqrt(0.5 / measurements.round_losses[-1 - 2 * refine_rounds[0]])
        # The expected absolute noise of one measured cell: what a larger marginal costs.
        penalty = sqrt(2 / pi) * model_sigma
        statistics = RecordStatistics(one_way.lookups, one_way.priors, one_way.n_hat)
        tree = select_tree(measurements, statistics, penalty, rounds["tree"][1])
        order, tree_parent = root_tree(tree, len(names))
        parents = select_parent_sets(
            measurements,
            statistics,
            order,
            tree_parent,
            (self.max_parents, self.max_cells),
            penalty,
            rounds["parent_sets"][1],
            names,
        )
        factors, measured = self._measure_factors(
            measurements, one_way, order, parents, rounds["model"][1], model_sigma
        )
        refinement = None
        if refine_rounds[0]:
            pool = Pool.draw(factors, one_way.sizes, POOL_SIZE)
            refinement = refine(
                measurements, statistics, pool, refine_rounds, self.max_cells, names
            )
            refine_sigma = sqrt(0.5 / refine_rounds[2])
            measured += [(c, counts, refine_sigma) for c, counts in refinement.marginals]
        forbidden = None
        if self.forbid_below is not None:
            forbidden = forbidden_cells(
                measured, one_way.sizes, self.forbid_below, self.forbid_length
            )
            forbidden += rare_buckets([len(c.kept) for c in one_way.columns], one_way.sizes)
        return SynthesisModel(
            domain=self.domain,
            order=order,
            factors=factors,
            expand=[(c.kept, c.rare, c.weights) for c in one_way.columns],
            spend=measurements.spend(self.delta),
            tree=[(names[a], names[b]) for a, b in tree],
            refinement=refinement,
            forbidden=forbidden,
        )

    def _bounded(self, records: pd.DataFrame, seed: int | None) -> pd.DataFrame:
        """Return the records with each person's beyond c dropped, without the person key."""
        if not self.unit.bounded:
            return records.drop(columns=[PERSON_COLUMN], errors="ignore")
        frame = pl.DataFrame({PERSON_COLUMN: person_keys(records), "__row": range(len(records))})
        kept = bound_contributions(frame, self.unit.records_per_person, seed)["__row"]
        chosen = records.iloc[kept.to_numpy()]
        return chosen.drop(columns=[PERSON_COLUMN], errors="ignore").reset_index(drop=True)

    def _refine_rounds(self) -> tuple[int, float, float]:
        """Return the refinement's rounds and the rho of each selection and measurement.

        A round spends a tenth on choosing its pair and the rest on measuring it.
        """
        if not self.refine_rounds or not self.refine_share:
            return 0, 0.0, 0.0
        per_round = self._record_rho * (1 - 1e-9) * self.refine_share / self.refine_rounds
        return self.refine_rounds, per_round * REFINE_SELECT, per_round * (1 - REFINE_SELECT)

    def _measure_one_way(self, measurements: Measurements, rho: float) -> _OneWay:
        """Step 1: measure every column's 1-way marginal and compress its domain."""
        identity = [np.arange(k, dtype=np.int64) for k in self.domain.cardinalities]
        one_way = [
            measurements.counts(f"1-way {name}", [j], identity, rho)
            for j, name in enumerate(self.domain.columns)
        ]
        sigma = sqrt(0.5 / measurements.round_losses[0])
        # The record count, from every column's noisy total weighted by the inverse of its
        # noise variance (a total over k cells has k times one cell's variance).
        weights = np.array([1.0 / c.size for c in one_way])
        totals = np.array([c.sum() for c in one_way])
        n_hat = max(float((weights * totals).sum() / weights.sum()), 1.0)
        n_hat_var = sigma**2 / float(weights.sum())
        columns = [compress(counts, sigma, n_hat, n_hat_var) for counts in one_way]
        return _OneWay(columns, n_hat, sigma)

    def _measure_factors(
        self,
        measurements: Measurements,
        one_way: _OneWay,
        order: list[int],
        parents: dict[int, tuple[int, ...]],
        rho: float,
        model_sigma: float,
    ) -> tuple[list[Factor], list[tuple[Sequence[int], FloatArray, float]]]:
        """Steps 4 to 6: measure each column with its parents, smooth, and rake.

        Return the factors, and each measured marginal with its noise deviation.
        """
        names, sizes, priors = self.domain.columns, one_way.sizes, one_way.priors
        root = order[0]
        factors = [Factor(root, (), priors[root][None, :])]
        measured: list[tuple[Sequence[int], FloatArray, float]] = []
        for child in order[1:]:
            columns = [*parents[child], child]
            noisy = measurements.counts(
                f"marginal {'/'.join(names[c] for c in columns)}", columns, one_way.lookups, rho
            )
            measured.append((columns, noisy, model_sigma))
            counts = noisy.reshape([sizes[c] for c in columns])
            factors.append(
                Factor(child, parents[child], conditional(counts, priors[child], model_sigma))
            )
        # Post-processing: pull each column's marginal towards its 1-way measurement,
        # weighting the two estimates by the inverse of their noise variance.
        one_way_var = [one_way.sigma**2] * len(names)
        model_var = [one_way.sigma**2 if f.child == root else model_sigma**2 * len(f.table)
                     for f in factors]  # fmt: skip
        return rake(factors, sizes, priors, one_way_var, model_var), measured
