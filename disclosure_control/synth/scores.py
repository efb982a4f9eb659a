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

    def pair_distances(self, matrix: IntMatrix) -> FloatArray:
        """Return every column pair's distance from independence (see :func:`pair_distances`)."""
        result: FloatArray = self._remembered(
            matrix,
            "pairs",
            lambda: pair_distances(self.compressed(matrix), self.sizes, self.priors, self.n_hat),
        )
        return result


def pair_distances(
    mapped: IntMatrix, sizes: Sequence[int], priors: Sequence[FloatArray], n_hat: float
) -> FloatArray:
    """Return the L1 distance of each real pair marginal from independence.

    Independence is predicted from released values only (the noisy record count times the
    product of the noisy 1-way distributions). Adding or removing one record moves one cell of
    each pair's counts by one and leaves the prediction fixed: every entry moves by at most 1.

    :param mapped: the records, in compressed codes.
    :param sizes: every column's number of compressed values.
    :param priors: every column's released 1-way distribution.
    :param n_hat: the released number of records.

    >>> m = np.array([[0, 0], [1, 1]])
    >>> pair_distances(m, [2, 2], [np.array([0.5, 0.5])] * 2, 2.0).tolist()
    [[0.0, 2.0], [2.0, 0.0]]
    """
    d = len(sizes)
    table = np.zeros((d, d))
    for a in range(d):
        for b in range(a + 1, d):
            counts = np.bincount(
                mapped[:, a] * sizes[b] + mapped[:, b], minlength=sizes[a] * sizes[b]
            )
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
        mapped = statistics.compressed(matrix)
        prior = statistics.priors[child]
        scores = [dependence(mapped, s, child, statistics.sizes, prior) for s in sets]
        return [float(v) for v in np.array(scores) + offsets]

    return score


def dependence(
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
    >>> dependence(m, [0], 1, [2, 2], np.array([0.5, 0.5]))
    4.0
    """
    config = cells(mapped, parents, sizes)
    k = sizes[child]
    joint = np.bincount(
        config * k + mapped[:, child], minlength=prod(sizes[q] for q in parents) * k
    )
    table = joint.reshape(-1, k).astype(np.float64)
    return float(np.abs(table - np.outer(table.sum(axis=1), prior)).sum())
