"""Domain compression: each column's codes, decided from its released 1-way counts alone.

A column's schema codes can number hundreds (250 countries) where its records use a few
dozen; the model measures compressed codes instead, and sampling expands them back. Every
decision here is post-processing of released (noisy) counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import sqrt

import numpy as np

from disclosure_control.synth.domain import FloatArray, IntMatrix


def rare_weights(noisy: FloatArray, sigma: float) -> FloatArray:
    """Return how a column's rare-value bucket is shared out among its values when sampling.

    The bucket holds the values whose noisy count was under three noise deviations, most of
    them (for a schema domain of 250 countries) values no record has. Sharing by the clipped
    noisy counts would hand most of the bucket to such values; so only values whose noisy count
    clears two deviations (about 2% of empty values do, by noise alone) take a share, in
    proportion to it, and the bucket is shared by clipped counts only when none does.

    :param noisy: the noisy 1-way counts of the bucket's values.
    :param sigma: the noise deviation of those counts.

    >>> rare_weights(np.array([5.0, -1.0, 0.5, 3.0]), 1.0).round(3).tolist()
    [0.625, 0.0, 0.0, 0.375]
    >>> rare_weights(np.array([1.0, -1.0, 0.0, 1.0]), 1.0).round(3).tolist()
    [0.5, 0.0, 0.0, 0.5]
    """
    if noisy.size == 0:
        return noisy.astype(np.float64)
    weights = np.where(noisy > 2 * sigma, noisy, 0.0)
    if weights.sum() <= 0:
        weights = np.clip(noisy, 0, None)
    weights = weights + 1e-12
    return np.asarray(weights / weights.sum(), dtype=np.float64)


@dataclass(frozen=True)
class Compressed:
    """One column's domain compression, decided from its released 1-way counts alone."""

    lookup: IntMatrix  # schema code -> compressed code
    kept: IntMatrix  # schema codes with a compressed code of their own
    rare: IntMatrix  # schema codes sharing the last compressed code (the bucket)
    weights: FloatArray  # how a drawn bucket is shared among the rare codes
    prior: FloatArray  # the column's distribution over compressed codes

    @property
    def size(self) -> int:
        """Return the number of compressed codes."""
        return len(self.kept) + (1 if self.rare.size else 0)


def compress(counts: FloatArray, sigma: float, n_hat: float) -> Compressed:
    """Compress a column's domain from its noisy 1-way counts (post-processing only).

    Values counted at three noise deviations or more keep a code of their own; the others
    share one bucket code. When the bucket's noisy counts add up to no more than their noise
    (twice its deviation), as for a boolean's "false" where records say only "true" or
    nothing, its values are treated as absent: no code of their own, never drawn, and a record
    that has one is counted with the most frequent value. The bucket's mass is what the kept
    values leave of the record count: summing its values' own noisy counts would add the noise
    of every (mostly empty) schema value, and clipping them first 0.4 deviations each.

    :param counts: the column's noisy 1-way counts, one per schema code.
    :param sigma: their noise deviation.
    :param n_hat: the estimated number of records.

    >>> c = compress(np.array([900.0, 1.0, -2.0, 500.0]), 10.0, 1400.0)
    >>> c.kept.tolist(), c.rare.tolist(), c.lookup.tolist()
    ([0, 3], [], [0, 0, 0, 1])
    >>> c = compress(np.array([900.0, 25.0, 20.0, 500.0]), 10.0, 1450.0)
    >>> c.kept.tolist(), c.rare.tolist(), c.lookup.tolist(), c.prior.round(3).tolist()
    ([0, 3], [1, 2], [0, 2, 2, 1], [0.621, 0.345, 0.034])
    """
    kept = np.flatnonzero(counts >= 3 * sigma)
    if kept.size == 0:
        kept = np.array([int(np.argmax(counts))])
    rare = np.setdiff1d(np.arange(counts.size), kept)
    lookup = np.full(counts.size, len(kept), dtype=np.int64)
    if rare.size and counts[rare].sum() < 2 * sigma * sqrt(rare.size):
        lookup[rare] = int(np.argmax(counts[kept]))
        rare = rare[:0]
    lookup[kept] = np.arange(len(kept))
    clipped = np.clip(counts, 0, None)
    bucket = [max(n_hat - float(clipped[kept].sum()), 0.0)] if rare.size else []
    prior = np.append(clipped[kept], bucket) + 1e-9
    return Compressed(
        lookup=lookup,
        kept=kept.astype(np.int64),
        rare=rare.astype(np.int64),
        weights=rare_weights(counts[rare], sigma),
        prior=np.asarray(prior / prior.sum(), dtype=np.float64),
    )
