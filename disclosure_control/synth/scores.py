"""Selection scores of the synthesizer's noisy max rounds, and the statistics they share.

Each score is a user transformation from records to a vector of scores whose L-inf
sensitivity is argued in its docstring and checked by property tests on neighbouring record
sets (``tests/synth/test_stability.py``): :func:`tree_score` moves by at most 1 per record,
:func:`parent_set_score` by at most 2.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import prod
from typing import Any

import numpy as np

from disclosure_control.synth.domain import FloatArray, IntMatrix
from disclosure_control.synth.measure import compress_records


def cells(matrix: IntMatrix, columns: Sequence[int], sizes: Sequence[int]) -> IntMatrix:
    """Return the mixed-radix cell of every row over some columns (first column slowest)."""
    numbers = np.zeros(len(matrix), dtype=np.int64)
    for j in columns:
        numbers = numbers * sizes[j] + matrix[:, j]
    return numbers


class RecordStatistics:
    """Statistics of one record matrix that several selection scores share, computed once.

    A value is reused only for the very matrix object it was computed from, and only while
    that matrix is read-only (``fit`` freezes its matrix); the statistics hold a reference to
    it, so its ``id`` cannot pass to another matrix. Any other matrix, a neighbour included,
    gets freshly computed values.

    :param lookups: per column, the compressed code of each schema code.
    :param priors: per column, its released (noisy) 1-way distribution in compressed codes.
    :param n_hat: the released (noisy) number of records.
    """

    def __init__(
        self, lookups: Sequence[IntMatrix], priors: Sequence[FloatArray], n_hat: float
    ) -> None:
        """Keep the released values the statistics are computed against."""
        self.lookups = list(lookups)
        self.sizes = [int(lk.max()) + 1 for lk in lookups]
        self.priors = list(priors)
        self.n_hat = n_hat
        self._matrix: IntMatrix | None = None
        self._values: dict[str, Any] = {}
        self.computed = 0  # how many values were computed rather than reused, for the tests

    def _remembered(self, matrix: IntMatrix, key: str, compute: Callable[[], Any]) -> Any:
        """Return a value of ``matrix``, reusing it only for the same frozen matrix."""
        if matrix.flags.writeable:
            self.computed += 1
            return compute()
        if self._matrix is not matrix:
            self._matrix, self._values = matrix, {}
        if key not in self._values:
            self.computed += 1
            self._values[key] = compute()
        return self._values[key]

    def compressed(self, matrix: IntMatrix) -> IntMatrix:
        """Return the records in compressed codes."""
        result: IntMatrix = self._remembered(
            matrix, "compressed", lambda: compress_records(matrix, self.lookups)
        )
        return result

    def distinct(self, matrix: IntMatrix) -> tuple[IntMatrix, FloatArray]:
        """Return the distinct records in compressed codes, and how many records each is.

        Counting distinct records with their multiplicities gives every count exactly as the
        records do, in a fraction of the time (CTDC's 97,750 records are 18,580 distinct).
        """
        result: tuple[IntMatrix, FloatArray] = self._remembered(
            matrix, "distinct", lambda: _distinct(self.compressed(matrix))
        )
        return result

    def pair_counts(self, matrix: IntMatrix) -> dict[tuple[int, int], FloatArray]:
        """Return every column pair's counts (see :func:`pair_counts`)."""
        result: dict[tuple[int, int], FloatArray] = self._remembered(
            matrix, "pair counts", lambda: pair_counts(*self.distinct(matrix), self.sizes)
        )
        return result

    def pair_distances(self, matrix: IntMatrix) -> FloatArray:
        """Return every column pair's distance from independence (see :func:`pair_distances`)."""
        result: FloatArray = self._remembered(
            matrix,
            "pairs",
            lambda: pair_distances(
                self.distinct(matrix)[0],
                self.sizes,
                self.priors,
                self.n_hat,
                self.distinct(matrix)[1],
            ),
        )
        return result


def _distinct(mapped: IntMatrix) -> tuple[IntMatrix, FloatArray]:
    """Return the distinct rows of a matrix and how many times each occurs."""
    if len(mapped) == 0:
        return mapped, np.zeros(0)
    rows, counts = np.unique(mapped, axis=0, return_counts=True)
    return rows, counts.astype(np.float64)


def pair_counts(
    mapped: IntMatrix, multiplicity: FloatArray | None, sizes: Sequence[int]
) -> dict[tuple[int, int], FloatArray]:
    """Return the counts of every column pair's marginal, flat (first column slowest).

    :param mapped: the records, in compressed codes.
    :param multiplicity: how many records each row stands for (one each if None).
    :param sizes: every column's number of compressed values.

    >>> pair_counts(np.array([[0, 1], [1, 1]]), None, [2, 2])[0, 1].tolist()
    [0.0, 1.0, 0.0, 1.0]
    """
    d = len(sizes)
    return {
        (a, b): np.bincount(
            mapped[:, a] * sizes[b] + mapped[:, b],
            weights=multiplicity,
            minlength=sizes[a] * sizes[b],
        ).astype(np.float64)
        for a in range(d)
        for b in range(a + 1, d)
    }


def pair_distances(
    mapped: IntMatrix,
    sizes: Sequence[int],
    priors: Sequence[FloatArray],
    n_hat: float,
    multiplicity: FloatArray | None = None,
) -> FloatArray:
    """Return the L1 distance of each real pair marginal from independence.

    Independence is predicted from released values only (the noisy record count times the
    product of the noisy 1-way distributions). Adding or removing one record moves one cell of
    each pair's counts by one and leaves the prediction fixed: every entry moves by at most 1.

    :param mapped: the records, in compressed codes.
    :param sizes: every column's number of compressed values.
    :param priors: every column's released 1-way distribution.
    :param n_hat: the released number of records.
    :param multiplicity: how many records each row stands for (one each if None).

    >>> m = np.array([[0, 0], [1, 1]])
    >>> pair_distances(m, [2, 2], [np.array([0.5, 0.5])] * 2, 2.0).tolist()
    [[0.0, 2.0], [2.0, 0.0]]
    """
    d = len(sizes)
    table = np.zeros((d, d))
    for (a, b), counts in pair_counts(mapped, multiplicity, sizes).items():
        expected = n_hat * np.outer(priors[a], priors[b]).ravel()
        table[a, b] = table[b, a] = np.abs(counts - expected).sum()
    return table


def tree_score(
    statistics: RecordStatistics, candidates: Sequence[tuple[int, int]], bias: FloatArray
) -> Callable[[IntMatrix], list[float]]:
    """Return the score function of one round of the tree's noisy max (sensitivity 1).

    Each candidate edge scores its pair's distance from independence plus a fixed (public)
    bias, so the scores move as the distances do: by at most 1 per record.

    :param statistics: the shared statistics of the records.
    :param candidates: the candidate edges.
    :param bias: each candidate's fixed bias.
    """
    pairs = list(candidates)
    offsets = np.asarray(bias, dtype=np.float64)

    def score(matrix: IntMatrix) -> list[float]:
        table = statistics.pair_distances(matrix)
        return [float(v) for v in np.array([table[x, y] for x, y in pairs]) + offsets]

    return score


def pair_error_score(
    statistics: RecordStatistics,
    candidates: Sequence[tuple[int, int]],
    model_counts: Sequence[FloatArray],
    bias: FloatArray,
) -> Callable[[IntMatrix], list[float]]:
    """Return the score function of one round of the refinement's noisy max (sensitivity 1).

    Each candidate pair scores the L1 distance between its real counts and what the current
    model predicts (released values only), plus a fixed (public) bias: one record added or
    removed moves one real count by one and the prediction not at all, so every score moves
    by at most 1.

    :param statistics: the shared statistics of the records.
    :param candidates: the candidate pairs.
    :param model_counts: each candidate's counts as the current model predicts them (flat).
    :param bias: each candidate's fixed bias.
    """
    pairs = list(candidates)
    predicted = [np.asarray(m, dtype=np.float64) for m in model_counts]
    offsets = np.asarray(bias, dtype=np.float64)

    def score(matrix: IntMatrix) -> list[float]:
        real = statistics.pair_counts(matrix)
        errors = np.array(
            [np.abs(real[p] - m).sum() for p, m in zip(pairs, predicted, strict=True)]
        )
        return [float(v) for v in errors + offsets]

    return score


def parent_set_score(
    statistics: RecordStatistics,
    options: Sequence[tuple[int, ...]],
    child: int,
    bias: FloatArray,
) -> Callable[[IntMatrix], list[float]]:
    """Return the score function of a column's parent-set noisy max (sensitivity 2).

    Each candidate set scores :func:`dependence` plus a fixed (public) bias, so the scores
    move by at most 2 per record.

    :param statistics: the shared statistics of the records.
    :param options: the candidate parent sets.
    :param child: the column whose parents are chosen.
    :param bias: each candidate's fixed bias.
    """
    sets = list(options)
    offsets = np.asarray(bias, dtype=np.float64)

    def score(matrix: IntMatrix) -> list[float]:
        mapped, multiplicity = statistics.distinct(matrix)
        prior = statistics.priors[child]
        scores = [dependence(mapped, s, child, statistics.sizes, prior, multiplicity) for s in sets]
        return [float(v) for v in np.array(scores) + offsets]

    return score


def dependence(
    mapped: IntMatrix,
    parents: Sequence[int],
    child: int,
    sizes: Sequence[int],
    prior: FloatArray,
    multiplicity: FloatArray | None = None,
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
    :param multiplicity: how many records each row stands for (one each if None).

    >>> m = np.array([[0, 0], [0, 0], [1, 1], [1, 1]])
    >>> dependence(m, [0], 1, [2, 2], np.array([0.5, 0.5]))
    4.0
    """
    config = cells(mapped, parents, sizes)
    k = sizes[child]
    joint = np.bincount(
        config * k + mapped[:, child],
        weights=multiplicity,
        minlength=prod(sizes[q] for q in parents) * k,
    )
    table = joint.reshape(-1, k).astype(np.float64)
    return float(np.abs(table - np.outer(table.sum(axis=1), prior)).sum())
