"""Forbidden combinations: never emit a value combination whose noisy count was no more than noise.

A marginal synthesizer fabricates: its model gives some probability to combinations of values
(an origin with a destination, a country with a year) that no real record holds, and analysts
read them as real corridors. With ``forbid_below=c`` the fit lists, for every marginal it
measured (each column with its parents, each refinement pair), and for every subset of its
columns of two up to ``forbid_length`` columns, the cells whose noisy count is under ``c``
noise deviations; a sampled record never holds any of them. Nor does it hold a value of a
column's rare-value bucket: those values' own noisy counts were under three deviations, and the
marginals count the bucket as one, so no combination of a rare value ever had a count of its
own that cleared the bar (and sharing the bucket out among them is where most fabricated
combinations came from: 973 of 997 in one fit of CTDC's 25 columns at epsilon 1).

This is post-processing of the released noisy counts only: it spends no privacy budget and
reads no record. A subset's count is the sum of the measured cells it covers, whose noise
deviation is ``sigma * sqrt(cells summed)``; the threshold scales with it. Combinations are of
released (compressed) values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from math import prod, sqrt

import numpy as np
import numpy.typing as npt

from disclosure_control.synth.domain import FloatArray, IntMatrix
from disclosure_control.synth.scores import cells


@dataclass(frozen=True)
class ForbiddenCells:
    """The cells of one set of columns that a sampled record may not fall in.

    :param columns: the columns, in increasing order (one column: values never drawn).
    :param cells: the forbidden cells, as mixed-radix numbers (first column slowest).
    """

    columns: tuple[int, ...]
    cells: IntMatrix


def forbidden_cells(
    marginals: Sequence[tuple[Sequence[int], FloatArray, float]],
    sizes: Sequence[int],
    threshold: float,
    length: int,
) -> list[ForbiddenCells]:
    """Return the cells whose noisy count is under ``threshold`` noise deviations.

    A set of columns that several marginals cover is forbidden the union of what each forbids.

    :param marginals: each measured marginal's columns, noisy counts (flat, first column
        slowest) and the noise deviation of one cell.
    :param sizes: every column's number of compressed codes.
    :param threshold: how many noise deviations a count must reach to be allowed.
    :param length: the longest combination checked (at least 2).

    >>> counts = np.array([50.0, 0.4, 30.0, 40.0])  # columns 0 and 1, two codes each
    >>> [f.cells.tolist() for f in forbidden_cells([((0, 1), counts, 1.0)], [2, 2], 3.0, 2)]
    [[1]]
    """
    if length < 2:
        raise ValueError("forbidden combinations must have at least two values")
    if threshold <= 0:
        raise ValueError("the threshold must be a positive number of noise deviations")
    found: dict[tuple[int, ...], set[int]] = {}
    for columns, counts, sigma in marginals:
        table = np.asarray(counts, dtype=np.float64).reshape([sizes[c] for c in columns])
        for k in range(2, min(length, len(columns)) + 1):
            for kept in combinations(range(len(columns)), k):
                summed_out = tuple(i for i in range(len(columns)) if i not in kept)
                sub = table.sum(axis=summed_out) if summed_out else table
                # Sort the subset's columns so the same set is numbered the same way.
                by_column = sorted(range(k), key=lambda i: columns[kept[i]])
                sub = np.transpose(sub, by_column)
                key = tuple(columns[kept[i]] for i in by_column)
                deviation = sigma * sqrt(prod(sizes[columns[i]] for i in summed_out))
                below = np.flatnonzero(sub.ravel() < threshold * deviation)
                found.setdefault(key, set()).update(below.tolist())
    return [
        ForbiddenCells(key, np.array(sorted(cells_), dtype=np.int64))
        for key, cells_ in sorted(found.items())
        if cells_
    ]


def rare_buckets(kept: Sequence[int], sizes: Sequence[int]) -> list[ForbiddenCells]:
    """Return every column's rare-value bucket (its last compressed code) as forbidden.

    :param kept: per column, how many values keep a code of their own.
    :param sizes: per column, the number of compressed codes (one more with a bucket).

    >>> [(f.columns, f.cells.tolist()) for f in rare_buckets([2, 3], [3, 3])]
    [((0,), [2])]
    """
    return [
        ForbiddenCells((j,), np.array([n], dtype=np.int64))
        for j, (n, size) in enumerate(zip(kept, sizes, strict=True))
        if size > n
    ]


def allowed(
    records: IntMatrix, forbidden: Sequence[ForbiddenCells], sizes: Sequence[int]
) -> npt.NDArray[np.bool_]:
    """Return which records (compressed codes) hold no forbidden combination."""
    keep = np.ones(len(records), dtype=bool)
    for entry in forbidden:
        keep &= ~np.isin(cells(records, entry.columns, sizes), entry.cells)
    return keep
