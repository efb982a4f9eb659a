"""Estimation: from noisy marginals to a Bayesian network of conditional tables, and draws.

Everything here is post-processing of released values, deterministic given its seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from disclosure_control.synth.domain import FloatArray, IntMatrix
from disclosure_control.synth.scores import cells


@dataclass
class Factor:
    """One column's conditional distribution given its parents, in compressed codes."""

    child: int
    parents: tuple[int, ...]
    table: FloatArray  # shape (product of parent sizes, child size); rows sum to 1


def conditional(counts: FloatArray, prior: FloatArray, pseudo: float) -> FloatArray:
    """Turn a noisy marginal (parents..., child) into a smoothed conditional table.

    Negative noisy counts are clipped; every parent configuration is shrunk towards the
    child's distribution given fewer parents (then its 1-way distribution) with ``pseudo``
    pseudo-records, so sparse configurations fall back on what was measured more reliably.

    :param counts: noisy counts with the child on the last axis.
    :param prior: the child's 1-way distribution.
    :param pseudo: the pseudo-count of the shrinkage, about one noise deviation.

    >>> t = conditional(np.array([[90.0, 10.0], [-3.0, -1.0]]), np.array([0.5, 0.5]), 10.0)
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
            conditional(coarser, prior, pseudo), int(np.prod(counts.shape[1:-1])), axis=0
        )
    # Cells under one noise deviation are mostly noise; keeping them would spread mass evenly
    # over empty cells, so they are zeroed (the shrinkage still covers them).
    flat = counts.reshape(-1, k)
    table = np.where(flat > pseudo, flat, 0.0) + pseudo * base_rows
    return np.asarray(table / table.sum(axis=1, keepdims=True), dtype=np.float64)


def draw_compressed(
    factors: Sequence[Factor], sizes: Sequence[int], n_records: int, rng: np.random.Generator
) -> IntMatrix:
    """Draw records in compressed codes from a Bayesian network's factors, in their order."""
    compressed = np.zeros((n_records, len(sizes)), dtype=np.int64)
    for factor in factors:
        config = cells(compressed, factor.parents, sizes)
        cdf = np.cumsum(factor.table, axis=1)
        cdf[:, -1] = 1.0
        u = rng.random(n_records)
        drawn = np.empty(n_records, dtype=np.int64)
        for start in range(0, n_records, 65536):
            part = slice(start, start + 65536)
            drawn[part] = (cdf[config[part]] < u[part, None]).sum(axis=1)
        compressed[:, factor.child] = drawn
    return compressed


#: Records drawn to read the network's marginals while raking, and rounds of raking.
RAKE_DRAW = 100_000
RAKE_ROUNDS = 3


def rake(
    factors: list[Factor],
    sizes: Sequence[int],
    measured: Sequence[FloatArray],
    measured_var: Sequence[float],
    model_var: Sequence[float],
) -> list[Factor]:
    """Rescale each factor so its column's marginal moves to a combined estimate (post-processing).

    A column's marginal as the network draws it sums its noisy marginal over every parent
    configuration, so its noise grows with their number; the column's own 1-way measurement
    has one cell's noise. Each round draws records from the network (seeded: deterministic),
    reads every column's marginal, combines it with the measured one by inverse variance (per
    cell, in counts), and multiplies the factor's columns by target / drawn, renormalising rows.

    :param factors: the network, in sampling order.
    :param sizes: every column's number of compressed codes.
    :param measured: every column's measured 1-way distribution (compressed).
    :param measured_var: the noise variance of one measured count, per column.
    :param model_var: the noise variance of the network's marginal, in counts, per factor.
    """
    rng = np.random.default_rng(0)
    raked = [Factor(f.child, f.parents, f.table.copy()) for f in factors]
    for _ in range(RAKE_ROUNDS):
        drawn = draw_compressed(raked, sizes, RAKE_DRAW, rng)
        for position, factor in enumerate(raked):
            j = factor.child
            current = np.bincount(drawn[:, j], minlength=sizes[j]) / RAKE_DRAW
            w_model = 1.0 / model_var[position]
            w_measured = 1.0 / measured_var[j]
            target = (w_model * current + w_measured * measured[j]) / (w_model + w_measured)
            ratio = np.where(current > 0, target / np.maximum(current, 1e-300), 1.0)
            table = factor.table * ratio[None, :]
            sums = table.sum(axis=1, keepdims=True)
            factor.table = np.where(sums > 0, table / np.where(sums > 0, sums, 1.0), factor.table)
    return raked
