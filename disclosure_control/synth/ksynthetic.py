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


def _counts(data: IntMatrix, columns: tuple[int, ...], sizes: tuple[int, ...]) -> IntMatrix:
    """Count the real records in every cell of a marginal (first column slowest)."""
    cells = np.zeros(len(data), dtype=np.int64)
    for j in columns:
        cells = cells * sizes[j] + data[:, j]
    total = int(np.prod([sizes[j] for j in columns]))
    return np.bincount(cells, minlength=total).reshape([sizes[j] for j in columns])


def _dependence(pair: IntMatrix) -> float:
    """Return the mutual information of a 2-way count table less its expectation under
    independence, ``(rows - 1)(columns - 1) / 2n``, so wide columns are not favoured for
    their many values alone."""
    total = max(int(pair.sum()), 1)
    joint = pair / total
    outer = joint.sum(axis=1, keepdims=True) @ joint.sum(axis=0, keepdims=True)
    seen = joint > 0
    information = float((joint[seen] * np.log(joint[seen] / outer[seen])).sum())
    rows, columns = pair.shape
    return float(information - (rows - 1) * (columns - 1) / (2 * total))


def _plan(data: IntMatrix, sizes: tuple[int, ...]) -> list[tuple[int, tuple[int, ...]]]:
    """Return the order columns are drawn in, each with the (up to 2) columns it is drawn from.

    Each column after the first is drawn from the two already drawn that tell most about it
    (bias-corrected mutual information of the real 2-way counts), as in a Bayesian network of
    degree 2; the next column is always the one best explained by those already drawn.
    """
    d = len(sizes)
    score = np.zeros((d, d))
    for i, j in itertools.combinations(range(d), 2):
        score[i, j] = score[j, i] = _dependence(_counts(data, (i, j), sizes))
    first = int(np.argmax(score.sum(axis=1)))
    plan: list[tuple[int, tuple[int, ...]]] = [(first, ())]
    placed = [first]
    while len(placed) < d:
        best: tuple[float, int, tuple[int, ...]] | None = None
        for j in (c for c in range(d) if c not in placed):
            parents = tuple(sorted(placed, key=lambda i: (-score[i, j], i))[:2])
            gain = float(sum(score[i, j] for i in parents))
            if best is None or gain > best[0]:
                best = (gain, j, parents)
        assert best is not None  # noqa: S101 - some column is left while placed < d
        plan.append((best[1], tuple(sorted(best[2]))))
        placed.append(best[1])
    return plan


def _draw(
    data: IntMatrix,
    plan: list[tuple[int, tuple[int, ...]]],
    sizes: tuple[int, ...],
    n: int,
    rng: np.random.Generator,
) -> IntMatrix:
    """Draw ``n`` records column by column in the plan's order, each value in proportion to
    its real count next to the record's values of the column's parents (:func:`_plan`)."""
    out = np.zeros((n, len(sizes)), dtype=np.int64)
    for j, parents in plan:
        table = _counts(data, (*parents, j), sizes).reshape(-1, sizes[j])
        cell = np.zeros(n, dtype=np.int64)
        for i in parents:
            cell = cell * sizes[i] + out[:, i]
        weights = table[cell].astype(np.float64)
        cdf = np.cumsum(weights, axis=1)
        u = rng.random(n) * cdf[:, -1]
        out[:, j] = np.minimum((cdf <= u[:, None]).sum(axis=1), sizes[j] - 1)
    return out


def _allowed(
    data: IntMatrix, part: IntMatrix, j: int, sizes: tuple[int, ...], k: int, length: int
) -> npt.NDArray[np.bool_]:
    """Return, for each record of ``part``, which values of column ``j`` keep it k-synthetic.

    A value is allowed when every combination it forms with up to ``length - 1`` recorded
    values of the record's other fields occurs at least ``k`` times in the real records. The
    empty value forms no combination and is always allowed.
    """
    others = [i for i in range(len(sizes)) if i != j]
    missing = sizes[j] - 1
    allowed = np.ones((len(part), sizes[j]), dtype=bool)
    allowed[:, :missing] = _counts(data, (j,), sizes)[None, :missing] >= k
    if length >= 2:
        for i in others:
            pair_ok = _counts(data, (i, j), sizes) >= k
            pair_ok[sizes[i] - 1, :] = True  # an empty field forms no combination
            allowed &= pair_ok[part[:, i]]
    if length == 3:
        for a, b in itertools.combinations(others, 2):
            table = _counts(data, (a, b, j), sizes) >= k
            table[sizes[a] - 1, :, :] = True
            table[:, sizes[b] - 1, :] = True
            allowed &= table.reshape(-1, sizes[j])[part[:, a] * sizes[b] + part[:, b]]
    allowed[:, missing] = True
    return allowed


def _redraw(
    data: IntMatrix,
    part: IntMatrix,
    j: int,
    parents: tuple[int, ...],
    sizes: tuple[int, ...],
    allowed: npt.NDArray[np.bool_],
    rng: np.random.Generator,
) -> IntMatrix:
    """Draw column ``j`` again for each record of ``part``, among its allowed values only.

    A value weighs its real count next to the record's values of the column's parents; where
    no allowed value has such a count, next to the first parent's value; where none has that
    either, its own count. With no allowed value counted at all, the field is left empty.
    """
    weights = np.where(allowed, _counts(data, (j,), sizes)[None, :], 0).astype(np.float64)
    for depth in range(1, len(parents) + 1):
        table = _counts(data, (*parents[:depth], j), sizes).reshape(-1, sizes[j])
        cell = np.zeros(len(part), dtype=np.int64)
        for i in parents[:depth]:
            cell = cell * sizes[i] + part[:, i]
        conditional = np.where(allowed, table[cell], 0).astype(np.float64)
        informed = conditional.sum(axis=1) > 0
        weights[informed] = conditional[informed]
    weights[:, -1] += weights.sum(axis=1) == 0
    cdf = np.cumsum(weights, axis=1)
    u = rng.random(len(part)) * cdf[:, -1]
    drawn: IntMatrix = np.minimum((cdf <= u[:, None]).sum(axis=1), sizes[j] - 1)
    return drawn


def _repair(
    data: IntMatrix,
    out: IntMatrix,
    plan: list[tuple[int, tuple[int, ...]]],
    sizes: tuple[int, ...],
    k: int,
    length: int,
    rng: np.random.Generator,
) -> None:
    """Change fields of the drawn records, in place, until every combination of up to
    ``length`` recorded values in each occurs at least ``k`` times in the real records.

    Each pass counts, for every record, the too-rare combinations each of its fields takes part
    in, and draws the field in most of them again among the values that form no too-rare
    combination with the record's other fields (:func:`_redraw`; ties: the field the real
    records leave empty most often). Each pass clears every rare combination that field was in
    and makes no new one, so a record's count falls at every pass and the loop ends.
    """
    d = len(sizes)
    parents = dict(plan)
    empty_share = np.array([np.mean(data[:, j] == sizes[j] - 1) for j in range(d)])
    rare: dict[tuple[int, ...], npt.NDArray[np.bool_]] = {}
    for size in range(1, length + 1):
        for columns in itertools.combinations(range(d), size):
            table = _counts(data, columns, sizes) < k
            for position, j in enumerate(columns):
                index: list[slice | int] = [slice(None)] * size
                index[position] = sizes[j] - 1
                table[tuple(index)] = False  # an empty field forms no combination
            rare[columns] = table.ravel()
    rows = np.arange(len(out))
    while rows.size:
        part = out[rows]
        votes = np.zeros((len(rows), d))
        for columns, table in rare.items():
            cell = np.zeros(len(rows), dtype=np.int64)
            for j in columns:
                cell = cell * sizes[j] + part[:, j]
            hit = table[cell]
            for j in columns:
                votes[:, j] += hit
        violating = votes.max(axis=1) > 0
        rows, votes = rows[violating], votes[violating]
        choice = np.argmax(votes + 0.5 * empty_share[None, :] * (votes > 0), axis=1)
        for j in np.unique(choice):
            chosen = rows[choice == j]
            allowed = _allowed(data, out[chosen], int(j), sizes, k, length)
            out[chosen, j] = _redraw(data, out[chosen], int(j), parents[j], sizes, allowed, rng)


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

    Records are first drawn column by column from the real counts (each value next to the
    record's values of the two most informative columns already drawn, :func:`_plan`), then
    the fields taking part in combinations of up to ``max_length`` recorded values that occur
    fewer than ``k`` times in the real records are drawn again among the values that form no
    such combination with the rest of their record, the most offending field first, and
    emptied only where no value qualifies (:func:`_repair`), until none is left. Repairing
    fields only after whole records are drawn, rather than refusing each value against the ones
    drawn before it, keeps the columns drawn last (the countries, in CTDC's 2021 order) from
    being emptied for the rest.

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
    :param progress: called with ``("step", done, 2)``: drawn, then checked.
    """
    if k < 1 or max_length not in (1, 2, 3):
        raise ValueError("k must be at least 1 and max_length 1, 2 or 3")
    report = progress or ignore_progress
    data = domain.encode(records)
    sizes = domain.cardinalities
    n = len(records) if n_records is None else n_records
    rng = np.random.default_rng(seed)
    plan = _plan(data, sizes)
    out = _draw(data, plan, sizes, n, rng)
    report("step", 1, 2)
    _repair(data, out, plan, sizes, k, max_length, rng)
    report("step", 2, 2)
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
