"""Workload-aware refinement: measure the pairs the model gets most wrong, and fit them.

After the Bayesian network is fitted, the run spends the rest of its budget as AIM does:
each round a noisy max picks, among all column pairs (the workload of 2-way marginals), the
one whose real counts lie farthest from what the current model predicts, less the noise its
measurement would add; the Gaussian mechanism measures it; and the model is refitted to every
measurement so far. AIM refits a graphical model (Private-PGM); here the model is a fixed
pool of records drawn from the network, reweighted by iterative proportional fitting to the
measured marginals (as PrivSyn's GUM adjusts a table), which costs seconds. A release samples
from the weighted pool.

Everything but the noisy max and the measurement is post-processing of released values: the
pool is drawn from the released network with a fixed seed, and the weights are a
deterministic function of the pool and the released counts (:func:`pool_weights`), so a
saved model reproduces them exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from math import pi, sqrt

import numpy as np
import numpy.typing as npt
from scipy import sparse

from disclosure_control.synth.domain import FloatArray, IntMatrix
from disclosure_control.synth.estimation import Factor, draw_compressed
from disclosure_control.synth.measure import Measurements
from disclosure_control.synth.scores import RecordStatistics, cells, pair_error_score

#: Records in the pool the refinement reweights, and the seed they are drawn with.
POOL_SIZE = 100_000
POOL_SEED = 0
#: Sweeps of iterative proportional fitting over all measured marginals.
SWEEPS = 4


@dataclass(frozen=True)
class Refinement:
    """The released values a refinement adds to the model.

    :param n_hat: the released number of records.
    :param priors: every column's released 1-way distribution (compressed codes).
    :param marginals: each measured pair and its noisy counts (flat, first column slowest).
    :param pool_size: how many records the pool holds.
    """

    n_hat: float
    priors: list[FloatArray]
    marginals: list[tuple[tuple[int, ...], FloatArray]]
    pool_size: int = POOL_SIZE

    def targets(self) -> list[tuple[tuple[int, ...], FloatArray]]:
        """Return what the pool is fitted to: every 1-way estimate, then every measured pair.

        A pair measured more than once is fitted to the mean of its measurements (they have
        the same noise). A noisy count under zero says the cell is (nearly) empty: its target
        is zero.
        """
        one_way = [((j,), self.n_hat * prior) for j, prior in enumerate(self.priors)]
        measured: dict[tuple[int, ...], list[FloatArray]] = {}
        for columns, counts in self.marginals:
            measured.setdefault(columns, []).append(counts)
        pairs = [
            (columns, np.clip(np.mean(counts, axis=0), 0.0, None))
            for columns, counts in measured.items()
        ]
        return [*one_way, *pairs]


@dataclass(frozen=True)
class Pool:
    """Records drawn from the network, each distinct record once with its multiplicity.

    Keeping distinct records only changes no marginal (every copy of a record gets the same
    weight) and makes the refinement's work proportional to the records that differ.
    """

    records: IntMatrix
    multiplicity: FloatArray

    @classmethod
    def draw(cls, factors: Sequence[Factor], sizes: Sequence[int], size: int) -> Pool:
        """Draw the pool from the network, always with the same seed."""
        drawn = draw_compressed(factors, sizes, size, np.random.default_rng(POOL_SEED))
        records, counts = np.unique(drawn, axis=0, return_counts=True)
        return cls(records, counts.astype(np.float64))


def number_targets(
    pool: IntMatrix,
    sizes: Sequence[int],
    targets: Sequence[tuple[tuple[int, ...], FloatArray]],
    known: dict[tuple[int, ...], IntMatrix] | None = None,
) -> list[tuple[IntMatrix, FloatArray]]:
    """Pair every target with the cell each pool record falls in, for :func:`fit_weights`.

    :param known: cells already numbered, by columns; new ones are added to it.
    """
    numbered = {} if known is None else known
    for columns, _ in targets:
        if columns not in numbered:
            numbered[columns] = cells(pool, columns, sizes)
    return [(numbered[columns], target) for columns, target in targets]


def fit_weights(
    numbered: Sequence[tuple[IntMatrix, FloatArray]], weights: FloatArray, sweeps: int = SWEEPS
) -> FloatArray:
    """Reweight the pool so its marginals move to the targets (iterative proportional fitting).

    Each step scales the weights of every cell of one marginal by target / current; a cell
    with no pool record stays empty. The result is deterministic.

    :param numbered: each target's pool cells and counts (see :func:`number_targets`).
    :param weights: the starting weights.
    :param sweeps: how many times to go through the targets.

    >>> pool = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    >>> numbered = number_targets(pool, [2, 2], [((0,), np.array([3.0, 1.0]))])
    >>> fit_weights(numbered, np.ones(4), 1).tolist()
    [1.5, 1.5, 0.5, 0.5]
    """
    fitted = np.array(weights, dtype=np.float64)
    for _ in range(sweeps):
        for cell, target in numbered:
            current = np.bincount(cell, weights=fitted, minlength=target.size)
            ratio = np.where(current > 0, target / np.where(current > 0, current, 1.0), 1.0)
            fitted *= ratio[cell]
    return fitted


def _start(pool: Pool, n_hat: float) -> FloatArray:
    """Return the pool's weights before fitting: its multiplicities, scaled to ``n_hat``."""
    return np.asarray(pool.multiplicity * (n_hat / pool.multiplicity.sum()), dtype=np.float64)


def pool_weights(
    pool: Pool,
    sizes: Sequence[int],
    refinement: Refinement,
    keep: npt.NDArray[np.bool_] | None = None,
) -> FloatArray:
    """Return the pool's final weights: fitted to all of the refinement's targets.

    :param keep: which pool records may be drawn; the others start (and so stay, the fit
        being multiplicative) at weight zero.
    """
    numbered = number_targets(pool.records, sizes, refinement.targets())
    start = _start(pool, refinement.n_hat)
    if keep is not None:
        start = np.where(keep, start, 0.0)
    return fit_weights(numbered, start)


def _one_hot(pool: IntMatrix, sizes: Sequence[int]) -> tuple[sparse.csr_matrix, list[int]]:
    """Return the pool as one indicator column per (column, code), and each column's offset."""
    offsets = [0, *np.cumsum(sizes)[:-1].tolist()]
    rows = np.repeat(np.arange(len(pool)), len(sizes))
    codes = (pool + np.array(offsets)[None, :]).ravel()
    indicators = sparse.csr_matrix(
        (np.ones(codes.size), (rows, codes)), shape=(len(pool), int(sum(sizes)))
    )
    return indicators, offsets


def refine(
    measurements: Measurements,
    statistics: RecordStatistics,
    pool: Pool,
    rounds: tuple[int, float, float],
    max_cells: int,
    names: Sequence[str],
) -> Refinement:
    """Spend the refinement rounds: select a pair by noisy max, measure it, refit the pool.

    :param measurements: the run's composition.
    :param statistics: the shared statistics of the records (released priors and count).
    :param pool: the pool drawn from the network, in compressed codes.
    :param rounds: ``(how many, rho of each selection, rho of each measurement)``.
    :param max_cells: the largest marginal a round may measure.
    :param names: the column names, for the measurements' labels.
    """
    count, rho_select, rho_measure = rounds
    sizes = statistics.sizes
    refinement = Refinement(statistics.n_hat, list(statistics.priors), [], POOL_SIZE)
    penalty = sqrt(2 / pi) * sqrt(0.5 / rho_measure)
    known: dict[tuple[int, ...], IntMatrix] = {}
    numbered = number_targets(pool.records, sizes, refinement.targets(), known)
    weights = fit_weights(numbered, _start(pool, statistics.n_hat))
    indicators, offsets = _one_hot(pool.records, sizes)
    transposed = indicators.T.tocsr()
    pairs = list(combinations(range(len(sizes)), 2))
    # The largest marginals are left out, unless that leaves no pair at all.
    candidates = [(a, b) for a, b in pairs if sizes[a] * sizes[b] <= max_cells] or pairs
    for _ in range(count):
        # Every pair's predicted counts at once: the weighted co-occurrences of all codes.
        weighted = sparse.csr_matrix(
            (np.repeat(weights, len(sizes)), indicators.indices, indicators.indptr),
            shape=indicators.shape,
        )
        joint = (transposed @ weighted).toarray()
        predicted = [
            joint[offsets[a] : offsets[a] + sizes[a], offsets[b] : offsets[b] + sizes[b]].ravel()
            for a, b in candidates
        ]
        bias = np.array([-penalty * sizes[a] * sizes[b] for a, b in candidates])
        score = pair_error_score(statistics, candidates, predicted, bias)
        chosen = candidates[measurements.select("refinement pair", score, rho_select)]
        noisy = measurements.counts(
            f"marginal {names[chosen[0]]}/{names[chosen[1]]}",
            chosen,
            statistics.lookups,
            rho_measure,
        )
        refinement.marginals.append((chosen, noisy))
        numbered = number_targets(pool.records, sizes, refinement.targets(), known)
        latest = [
            n
            for n, (columns, _) in zip(numbered, refinement.targets(), strict=True)
            if columns == chosen
        ]
        weights = fit_weights(latest, weights, 1)
        weights = fit_weights(numbered, weights, 1)
    return refinement
