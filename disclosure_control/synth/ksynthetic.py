"""CTDC's 2021 approach: k-synthetic records, for comparison with the DP synthesizer.

Every combination of up to ``max_length`` recorded attributes (column = value, empty fields
excluded) that occurs in a k-synthetic record occurs at least ``k`` times in the real records.
This is a k-anonymity-style guarantee for one release only, *not* differential privacy: the
release report must say so, and the hub's ledger is not charged.
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
import pandas as pd

from disclosure_control.synth.domain import Domain, IntMatrix
from disclosure_control.synth.measure import ProgressCallback, ignore_progress

_MAX_RETRIES = 8


def _counts(data: IntMatrix, columns: tuple[int, ...], sizes: tuple[int, ...]) -> IntMatrix:
    """Count the real records in every cell of a marginal (first column slowest)."""
    cells = np.zeros(len(data), dtype=np.int64)
    for j in columns:
        cells = cells * sizes[j] + data[:, j]
    total = int(np.prod([sizes[j] for j in columns]))
    return np.bincount(cells, minlength=total).reshape([sizes[j] for j in columns])


def k_synthetic(
    records: pd.DataFrame,
    domain: Domain,
    *,
    k: int = 10,
    max_length: int = 3,
    n_records: int | None = None,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> pd.DataFrame:
    """Generate k-synthetic case records: short attribute combinations all k-frequent.

    Records are built column by column. A value is allowed when it, with every one or two
    recorded values already placed in the record, forms combinations occurring at least ``k``
    times in the real records; among allowed values one is drawn in proportion to its real
    count next to the previous column's value. The empty value is always allowed.

    :param records: the real case records, as strings.
    :param domain: the schema domain of the columns.
    :param k: the least real support of every released combination.
    :param max_length: the longest combination checked, 1 to 3.
    :param n_records: records to generate; as many as the real table by default.
    :param seed: seed of the draw; the output is a function of records, settings and seed.
        It depends on the records only through counts of value combinations, so it is the same
        whatever order they come in: row ``i`` is the ``i``-th draw of the seeded generator,
        never a real record's position (issue 10). That is why no CSPRNG shuffle is needed
        here, and why the output can be redrawn exactly from records, settings and seed.
    :param progress: called with ``("column", done, total)``.
    """
    if k < 1 or max_length not in (1, 2, 3):
        raise ValueError("k must be at least 1 and max_length 1, 2 or 3")
    report = progress or ignore_progress
    data = domain.encode(records)
    sizes = domain.cardinalities
    d = len(sizes)
    n = len(records) if n_records is None else n_records
    rng = np.random.default_rng(seed)
    out = np.zeros((n, d), dtype=np.int64)
    missing = [s - 1 for s in sizes]  # the empty value is encoded last
    rows = np.arange(n)
    for j in range(d):
        allowed = np.ones((n, sizes[j]), dtype=bool)
        allowed[:, : missing[j]] = _counts(data, (j,), sizes)[None, : missing[j]] >= k
        if max_length >= 2:
            for i in range(j):
                pair_ok = _counts(data, (i, j), sizes) >= k
                pair_ok[missing[i], :] = True  # an empty field forms no combination
                allowed &= pair_ok[out[:, i]]
        allowed[:, missing[j]] = True
        if j == 0:
            weights = _counts(data, (0,), sizes)[None, :].astype(np.float64)
        else:
            weights = _counts(data, (j - 1, j), sizes)[out[:, j - 1]].astype(np.float64)
        weights = np.where(allowed, weights + 1e-12, 0.0)
        triples = (
            [(a, b) for a, b in itertools.combinations(range(j), 2)] if max_length == 3 else []
        )
        triple_ok = {}
        for a, b in triples:
            table = _counts(data, (a, b, j), sizes) >= k
            table[missing[a], :, :] = True
            table[:, missing[b], :] = True
            triple_ok[(a, b)] = table
        pending = rows
        for _ in range(_MAX_RETRIES):
            if pending.size == 0:
                break
            w = weights[pending]
            cdf = np.cumsum(w, axis=1)
            u = rng.random(len(pending)) * cdf[:, -1]
            choice = np.minimum((cdf < u[:, None]).sum(axis=1), sizes[j] - 1)
            ok = np.ones(len(pending), dtype=bool)
            for (a, b), table in triple_ok.items():
                ok &= table[out[pending, a], out[pending, b], choice]
            ok |= choice == missing[j]
            out[pending[ok], j] = choice[ok]
            # A value failing a triple is struck off for that record and the draw repeated.
            weights[pending[~ok], choice[~ok]] = 0.0
            pending = pending[~ok]
        out[pending, j] = missing[j]
        report("column", j + 1, d)
    return domain.decode(out)


def smallest_support(
    synthetic: pd.DataFrame, records: pd.DataFrame, domain: Domain, max_length: int
) -> int:
    """Return the least real support of any recorded combination the synthetic records hold.

    :param synthetic: synthetic records over the domain.
    :param records: the real records.
    :param domain: the schema domain.
    :param max_length: the longest combination examined.
    """
    real, fake = domain.encode(records), domain.encode(synthetic)
    sizes = domain.cardinalities
    least = np.iinfo(np.int64).max
    for length in range(1, max_length + 1):
        for columns in itertools.combinations(range(len(sizes)), length):
            recorded = np.all([fake[:, j] != sizes[j] - 1 for j in columns], axis=0)
            if not recorded.any():
                continue
            counts = _counts(real, columns, sizes)
            support: npt.NDArray[np.int64] = counts[tuple(fake[recorded][:, j] for j in columns)]
            least = min(least, int(support.min()))
    return int(least)
