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

#: A value without a code of its own is drawn only if its noisy count clears this many noise
#: deviations (a value no record has does so with probability 2.3%, by noise alone) ...
EMIT_DEVIATIONS = 2.0
#: ... and only if the bucket's mass, what the kept values leave of the record count, clears
#: this many deviations of its own noise (0.13% by noise alone, when the kept values hold all).
BUCKET_DEVIATIONS = 3.0
#: A value keeps a code of its own when its noisy count clears this many deviations.
KEEP_DEVIATIONS = 3.0


def rare_weights(noisy: FloatArray, sigma: float) -> FloatArray:
    """Return how a column's rare-value bucket is shared out among its values when sampling.

    The bucket holds the values whose noisy count was under three noise deviations, most of
    them (for a schema domain of 250 countries) values no record has. Sharing by the clipped
    noisy counts would hand most of the bucket to such values; so only values whose noisy count
    clears two deviations take a share, in proportion to it. A value under that never takes
    one: a synthetic value is always one the release's own counts show (issue 15: a boolean's
    unused "0" came out of the bucket when no value cleared the bar).

    :param noisy: the noisy 1-way counts of the bucket's values.
    :param sigma: the noise deviation of those counts.
    :raises ValueError: if no value clears the bar (the bucket must then be absent).

    >>> rare_weights(np.array([5.0, -1.0, 0.5, 3.0]), 1.0).round(3).tolist()
    [0.625, 0.0, 0.0, 0.375]
    >>> rare_weights(np.array([1.0, -1.0, 0.0, 1.0]), 1.0)
    Traceback (most recent call last):
    ...
    ValueError: no rare value clears 2.0 noise deviations: the bucket is absent
    """
    if noisy.size == 0:
        return noisy.astype(np.float64)
    weights = np.where(noisy > EMIT_DEVIATIONS * sigma, noisy, 0.0)
    if weights.sum() <= 0:
        raise ValueError(
            f"no rare value clears {EMIT_DEVIATIONS} noise deviations: the bucket is absent"
        )
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

    @property
    def emitted(self) -> IntMatrix:
        """Return the schema codes a model with this compression can draw, in code order."""
        return np.sort(np.concatenate([self.kept, self.rare[self.weights > 0]]))


def compress(counts: FloatArray, sigma: float, n_hat: float, n_hat_var: float = 0.0) -> Compressed:
    """Compress a column's domain from its noisy 1-way counts (post-processing only).

    Values counted at three noise deviations or more keep a code of their own; the others
    share one bucket code, whose mass is what the kept values leave of the record count
    (summing its values' own noisy counts would add the noise of every, mostly empty, schema
    value). The bucket is drawn only when that mass clears three deviations of its noise and
    some rare value clears two (:func:`rare_weights`). Otherwise, as for a boolean's "0"
    where records say only "1" or nothing, the rare values are absent: no code of their own,
    never drawn, and a record that has one is counted with the most frequent value.

    :param counts: the column's noisy 1-way counts, one per schema code.
    :param sigma: their noise deviation.
    :param n_hat: the estimated number of records.
    :param n_hat_var: the noise variance of ``n_hat``.

    >>> c = compress(np.array([900.0, 1.0, -2.0, 500.0]), 10.0, 1400.0)
    >>> c.kept.tolist(), c.rare.tolist(), c.lookup.tolist(), c.emitted.tolist()
    ([0, 3], [], [0, 0, 0, 1], [0, 3])
    >>> c = compress(np.array([900.0, 25.0, 20.0, 500.0]), 10.0, 1500.0)
    >>> c.kept.tolist(), c.rare.tolist(), c.lookup.tolist(), c.prior.round(3).tolist()
    ([0, 3], [1, 2], [0, 2, 2, 1], [0.6, 0.333, 0.067])

    A boolean's "0" (code 0) just under two deviations stays absent, however much the kept
    values leave of the record count:

    >>> compress(np.array([19.0, 5000.0, 3000.0]), 10.0, 8100.0).emitted.tolist()
    [1, 2]
    """
    kept = np.flatnonzero(counts >= KEEP_DEVIATIONS * sigma)
    if kept.size == 0:
        kept = np.array([int(np.argmax(counts))])
    rare = np.setdiff1d(np.arange(counts.size), kept)
    clipped = np.clip(counts, 0, None)
    residual = n_hat - float(clipped[kept].sum())
    residual_sd = sqrt(n_hat_var + kept.size * sigma**2)
    drawable = bool((counts[rare] > EMIT_DEVIATIONS * sigma).any())
    lookup = np.full(counts.size, len(kept), dtype=np.int64)
    if rare.size and not (drawable and residual >= BUCKET_DEVIATIONS * residual_sd):
        lookup[rare] = int(np.argmax(counts[kept]))
        rare = rare[:0]
    lookup[kept] = np.arange(len(kept))
    bucket = [residual] if rare.size else []
    prior = np.append(clipped[kept], bucket) + 1e-9
    return Compressed(
        lookup=lookup,
        kept=kept.astype(np.int64),
        rare=rare.astype(np.int64),
        weights=rare_weights(counts[rare], sigma),
        prior=np.asarray(prior / prior.sum(), dtype=np.float64),
    )
