"""Differencing across releases: may a new table be published beside the tables already out?

Every published cell of every table is a linear equation over the finest cross-classification
of all their dimensions (the "fine cells"). A count is recovered when it is fixed by those
equations: a suppressed cell of any table, or a fine cell that no table publishes (linked
tables can pin down a combination none of them shows). The checker first peels equations with a
single unknown (exact, in integers: the case of a row with one suppressed cell and a published
row total), then decides the rest by linear algebra: a count is fixed exactly when its row lies
in the row space of the equations, i.e. when it is orthogonal to their null space.

Non-negativity can narrow an interval further without fixing it; the linear-bounds check of a
single table's secondary suppression covers that case (see ``tests/sdc``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from disclosure_control.sdc.tables import (
    _PUBLISHED,
    _SECONDARY,
    TOTAL,
    SafeTable,
    TableError,
    _long_form,
)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Recovered:
    """A small count an attacker can compute from the tables.

    :param table: position of the table (published ones first, the new one last), or ``None``
        for a fine cell that no table publishes.
    :param cell: the category per dimension (``Total`` for a margin); for a fine cell, one
        category per dimension of all the tables, as ``dimension=category``.
    :param value: the count recovered.
    """

    table: int | None
    cell: tuple[str, ...]
    value: float


@dataclass(frozen=True)
class DifferencingReport:
    """The verdict on a new table.

    :param safe: no count between 1 and the threshold can be recovered.
    :param recovered: the counts that can be.
    :param suppressed_further: cells of the new table suppressed to make it safe.
    """

    safe: bool
    recovered: tuple[Recovered, ...]
    suppressed_further: int = 0


def _fine_rows(
    table: SafeTable, dimensions: Sequence[str], categories: Sequence[Sequence[str]]
) -> BoolArray:
    """Return, per cell of the table (flattened), which fine cells it adds up."""
    shape = tuple(len(c) for c in categories)
    position = {d: i for i, d in enumerate(dimensions)}
    masks = []
    extended = table.values.shape
    for index in np.ndindex(*extended):
        mask = np.ones(shape, dtype=np.bool_)
        for j, d in enumerate(table.dimensions):
            if index[j] == extended[j] - 1:
                continue  # a total covers every category
            selector = [slice(None)] * len(shape)
            keep = np.zeros(shape[position[d]], dtype=np.bool_)
            keep[index[j]] = True
            selector[position[d]] = ~keep  # type: ignore[call-overload]
            mask[tuple(selector)] = False
        masks.append(mask.ravel())
    return np.array(masks)


def _system(
    tables: Sequence[SafeTable], max_fine_cells: int
) -> tuple[list[str], list[list[str]], list[BoolArray]]:
    """Return the union of dimensions, their categories, and each table's fine-cell rows."""
    dimensions: list[str] = []
    categories: dict[str, tuple[str, ...]] = {}
    for t in tables:
        for d, cats in zip(t.dimensions, t.categories, strict=True):
            if d not in categories:
                dimensions.append(d)
                categories[d] = cats
            elif categories[d] != cats:
                raise TableError(
                    f"dimension {d!r} has different categories in two tables; give both the "
                    "same domain so their cells can be compared"
                )
    domains = [list(categories[d]) for d in dimensions]
    if math.prod(len(c) for c in domains) > max_fine_cells:
        raise TableError(
            f"the tables cross {math.prod(len(c) for c in domains)} fine cells, more than the "
            f"{max_fine_cells} this check handles; check fewer tables together"
        )
    return dimensions, domains, [_fine_rows(t, dimensions, domains) for t in tables]


def _determined(
    rows: BoolArray, rhs: FloatArray, targets: BoolArray
) -> tuple[BoolArray, FloatArray]:
    """Return which target rows the equations fix, and their values where fixed."""
    n_fine = rows.shape[1]
    known = np.zeros(n_fine, dtype=np.bool_)
    value = np.zeros(n_fine)
    a = rows.astype(np.float64)
    b = rhs.astype(np.float64).copy()
    # Peel equations with one unknown left: exact and cheap, and enough for most differencing.
    while True:
        unknown_count = (a[:, ~known] != 0).sum(axis=1)
        single = np.flatnonzero(unknown_count == 1)
        if single.size == 0:
            break
        progressed = False
        for e in single.tolist():
            cols = np.flatnonzero((a[e] != 0) & ~known)
            if cols.size != 1:
                continue
            f = int(cols[0])
            rest = a[e] @ np.where(known, value, 0.0)
            value[f] = (b[e] - rest) / a[e, f]
            known[f] = True
            progressed = True
        if not progressed:
            break
    free = np.flatnonzero(~known)
    fixed = np.ones(len(targets), dtype=np.bool_)
    result = targets.astype(np.float64) @ np.where(known, value, 0.0)
    if free.size:
        live = np.flatnonzero((a[:, free] != 0).any(axis=1))
        sub = a[np.ix_(live, free)]
        sub_rhs = b[live] - a[live] @ np.where(known, value, 0.0)
        if sub.size:
            _, singular, vt = np.linalg.svd(sub, full_matrices=True)
            tol = max(sub.shape) * np.finfo(np.float64).eps * (singular[0] if singular.size else 1)
            rank = int((singular > tol).sum())
            null = vt[rank:].T
            solution = np.linalg.lstsq(sub, sub_rhs, rcond=None)[0]
        else:
            null = np.eye(free.size)
            solution = np.zeros(free.size)
        part = targets[:, free].astype(np.float64)
        fixed = np.abs(part @ null).max(axis=1, initial=0.0) < 1e-7
        result = result + part @ solution
    return fixed, result


def check_differencing(
    new: SafeTable,
    published: Sequence[SafeTable],
    threshold: int = 10,
    max_fine_cells: int = 20_000,
) -> DifferencingReport:
    """Return whether ``new`` can be published beside ``published`` without a small count
    being recovered by subtracting cells of one table from another.

    :param new: the table proposed for release.
    :param published: the tables already released (from the same records).
    :param threshold: counts from 1 to ``threshold - 1`` must not be recoverable.
    :param max_fine_cells: largest cross-classification the check accepts.
    :raises TableError: if shared dimensions have different categories, or the tables are too
        many to check together.
    """
    tables = [*published, new]
    dimensions, cats, fine_rows = _system(tables, max_fine_cells)
    equations, rhs, targets, target_names = [], [], [], []
    for t_index, (table, rows) in enumerate(zip(tables, fine_rows, strict=True)):
        status = table.status.ravel()
        values = table.values.ravel()
        labels = [[*c, TOTAL] for c in table.categories]
        for cell, flat in enumerate(np.ndindex(*table.values.shape)):
            if status[cell] == _PUBLISHED:
                equations.append(rows[cell])
                rhs.append(values[cell])
            elif status[cell] in (1, _SECONDARY):
                targets.append(rows[cell])
                target_names.append(
                    (t_index, tuple(labels[j][i] for j, i in enumerate(flat)), values[cell])
                )
    n_fine = math.prod(len(c) for c in cats)
    # Every fine cell is a target too: linked tables may pin down a combination none shows.
    # Fine cells that are cells of a table are already equations or targets.
    singles = np.array([*equations, *targets]).reshape(-1, n_fine)
    singles = singles[singles.sum(axis=1) == 1]
    as_cell = set(np.flatnonzero(singles.any(axis=0)).tolist())
    fine_index = [f for f in range(n_fine) if f not in as_cell]
    eye = np.eye(n_fine, dtype=np.bool_)[fine_index]
    all_targets = np.vstack([np.array(targets).reshape(-1, n_fine), eye])
    if equations:
        fixed, value = _determined(np.array(equations), np.array(rhs), all_targets)
    else:
        fixed = np.zeros(len(all_targets), dtype=np.bool_)
        value = np.zeros(len(all_targets))
    recovered: list[Recovered] = []
    for i in np.flatnonzero(fixed & (value > 0.5) & (value < threshold - 0.5)).tolist():
        if i < len(targets):
            t_index, names, _ = target_names[i]
            recovered.append(Recovered(t_index, names, float(round(value[i]))))
        else:
            flat = np.unravel_index(fine_index[i - len(targets)], [len(c) for c in cats])
            fine = tuple(
                f"{d}={cats[j][int(k)]}"
                for j, (d, k) in enumerate(zip(dimensions, flat, strict=True))
            )
            recovered.append(Recovered(None, fine, float(round(value[i]))))
    return DifferencingReport(safe=not recovered, recovered=tuple(recovered))


def protect_against_differencing(
    new: SafeTable,
    published: Sequence[SafeTable],
    threshold: int = 10,
    max_fine_cells: int = 20_000,
) -> tuple[SafeTable, DifferencingReport]:
    """Return ``new`` with further cells suppressed until no small count can be recovered.

    Greedy: while a count is recovered, suppress the smallest published cell of the new table
    that adds up any part of it, and check everything again; each round's verdict comes from
    :func:`check_differencing`, so the result is proven, not assumed.

    :raises TableError: if even suppressing every cell of the new table leaves a recovery
        (the tables already published disclose on their own).
    """
    report = check_differencing(new, published, threshold, max_fine_cells)
    status = new.status.copy()
    further = 0
    tables = [*published, new]
    dimensions, cats, fine_rows = _system(tables, max_fine_cells)
    rows = fine_rows[-1]
    values = new.values.ravel()
    while not report.safe:
        first = report.recovered[0]
        support = np.zeros(rows.shape[1], dtype=np.bool_)
        if first.table is None:
            named = dict(part.split("=", 1) for part in first.cell)
            flat = [cats[j].index(named[d]) for j, d in enumerate(dimensions)]
            support[np.ravel_multi_index(flat, [len(c) for c in cats])] = True
        else:
            table = tables[first.table]
            labels = [[*c, TOTAL] for c in table.categories]
            index = tuple(labels[j].index(v) for j, v in enumerate(first.cell))
            flat_cell = int(np.ravel_multi_index(index, table.values.shape))
            support = fine_rows[first.table][flat_cell]
        flat_status = status.ravel()
        candidates = np.flatnonzero((flat_status == _PUBLISHED) & (rows & support).any(axis=1))
        if candidates.size == 0:
            raise TableError(
                f"a count of {first.value:g} at {first.cell} is recovered from the tables already "
                "published alone; the new table cannot fix that"
            )
        pick = int(candidates[np.argmin(values[candidates])])
        flat_status[pick] = _SECONDARY
        further += 1
        updated = replace(
            new,
            status=status,
            cells=_long_form(
                new.dimensions, [list(c) for c in new.categories], new.values, status, new.values
            ),
        )
        report = check_differencing(updated, published, threshold, max_fine_cells)
        new = updated
    return new, DifferencingReport(True, (), further)
