"""Differencing across releases: may a new table be published beside the tables already out?

**What each table counts.** A table is known by its dimensions *and its population*: a
:class:`Tabulation` is a :class:`~disclosure_control.sdc.tables.SafeTable` with the filter it
was built with (``keep``: only records whose field takes one of these values; ``drop``: records
whose field takes one of these values left out). "Country x year without debt-bondage cases" is
``drop={"meansOfControlDebtBondage": {"1"}}``; a table over a subset of a dimension's categories
counts only the records in those categories. :func:`tabulate` builds one from the records, so
that the filter stated is the filter used; the checker also recounts every table from the
records under its stated population and refuses a table that does not match.

**The attacker** holds every table published and the one proposed, knows what each counts
(its dimensions, categories and filter) and which values each field takes (the public schema's
domains, read at their narrowest: the values the records take), and reasons exactly about
linear sums of counts.

**The model.** Every field that is a dimension or a filter of some table is cut into *atoms*:
each value any table names (a category, a kept or dropped value) and "every other value" where
records take values no table names and some table counts them. The *fine cells* are the
cross-classification of all those atoms; a fine cell that no table counts is left out (nothing
is said about it). Each cell of each table, margins included, is a sum over a set of fine
cells, so every table, filtered, subset or overlapping, is a set of linear equations over the
fine cells' counts (ranges, for a table with controlled rounding to base ``b``: the truth is
within ``b - 1`` of what is shown).

**What is protected.** Every count in ``1 .. threshold - 1`` of a group the tables speak about:
each cell of each table (published, suppressed, or an unpublished total), each fine cell, and
each margin of the fine cross-classification (e.g. "debt-bondage cases in one country, all
years", which the difference of two tables' country totals gives). Such a count is
**disclosed** when the tables together prove that the group is non-empty and smaller than the
threshold: its least and greatest possible value, ``low`` and ``high``, satisfy
``1 <= low`` and ``high <= threshold - 1``. That is exactly what the threshold rule withholds by
suppressing a cell; a count recovered exactly (``low == high``) is the extreme case. An interval
that reaches 0 (the group may be empty) or the threshold (it may be large) is not a disclosure
here. (Within one table, secondary suppression asks more of its own primary cells, both 0 and
the threshold, which :func:`check_suppression` checks with the same programs; across tables,
overlapping populations routinely prove a group non-empty (Fréchet bounds) without telling how
small it is.) Zero counts are not protected.

**The bounds.** ``low`` and ``high`` are bounds of a linear program over the fine cells (counts
``>= 0``, every published cell's equation or range), solved by HiGHS through
``scipy.optimize.linprog``. Counts are integers, so the attacker's interval is the integer
program's; the linear relaxation's interval contains it and is rounded inwards
(``ceil(low)``, ``floor(high)``), which is sound because the true count is an integer. The
relaxation is exact (integral vertices) when the equations are totally unimodular, as for the
union of two laminar families of sets: one table of one or two dimensions with its margins, or
such tables over nested populations (a table beside the same table without some records).
Over three or more crossed fields it can be wider than the integer interval (the bounds of a
three-way table given its two-way margins need not be sharp: Dobra and Fienberg, 2000), so the
check can miss a disclosure that only integer reasoning gives, and never reports one that is
not there. ``integer=True`` closes that gap: the bounds come from integer programs (HiGHS
branch and bound through ``scipy.optimize.milp``), and only integral points clear a count.

**The solver.** Fine cells that an equation fixes (a published zero, a cell alone in a
published sum) are removed first, equation by equation, exactly; published margins whose parts
are all published are dropped (they say nothing new) and the others are rewritten over their
suppressed parts only, which splits the rest into independent blocks (connected components).
Only counts whose true value is in ``1 .. threshold - 1`` are bounded, since an interval always
holds the truth. Most of those are cleared in batches: one program minimising their sum finds a
point where many are 0, one maximising ``sum(min(count, threshold))`` finds one where many reach
the threshold; every feasible point an individual program finds clears others of its blocks.
The rest get their own programs, restricted to the blocks they touch.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import overload

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.optimize import linprog
from scipy.sparse import bmat, csr_array, vstack
from scipy.sparse.csgraph import connected_components

from disclosure_control.sdc.tables import (
    _PRIMARY,
    _PUBLISHED,
    _SECONDARY,
    _UNPUBLISHED,
    TOTAL,
    SafeTable,
    TableError,
    TablePolicy,
    _with_margins,
    frequency_table,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
#: Label of the atom holding every value of a field that no table names.
OTHER = "(other)"
#: Slack on the solver's values when rounding them to integers.
_EPS = 1e-6


@dataclass(frozen=True)
class Tabulation:
    """A table together with the population it counts.

    :param table: the protected table.
    :param keep: per field, the values a record must take to be counted (others left out).
    :param drop: per field, values whose records are left out.

    A table over all records needs neither; the categories of a dimension restrict the
    population on their own (a record outside them is not counted).
    """

    table: SafeTable
    keep: Mapping[str, frozenset[str]] = field(default_factory=dict)
    drop: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def describe(self) -> str:
        """Return the table's dimensions and filter fields in words (no value, no count: fit
        for an error message).

        >>> t = frequency_table(pd.DataFrame({"a": ["x"] * 12}), ["a"])
        >>> Tabulation(t, drop={"b": frozenset({"1"})}).describe()
        'a, without 1 value of b'
        """

        def values(n: int) -> str:
            return f"{n} value{'s' if n != 1 else ''}"

        parts = [" x ".join(self.table.dimensions)]
        parts += [f"only {values(len(v))} of {f}" for f, v in self.keep.items()]
        parts += [f"without {values(len(v))} of {f}" for f, v in self.drop.items()]
        return ", ".join(parts)


def tabulate(
    records: pd.DataFrame,
    dimensions: Sequence[str],
    *,
    keep: Mapping[str, Collection[str]] | None = None,
    drop: Mapping[str, Collection[str]] | None = None,
    policy: TablePolicy | None = None,
    domains: Mapping[str, Sequence[str]] | None = None,
    margins: bool = True,
    secondary: bool = True,
) -> Tabulation:
    """Return the protected frequency table of the records a filter keeps, with that filter.

    The arguments after ``drop`` are those of
    :func:`~disclosure_control.sdc.tables.frequency_table`.

    :param keep: per field, the values a record must take to be counted.
    :param drop: per field, values whose records are left out.
    :raises TableError: for a filter on a field that is not a column, or as ``frequency_table``.

    >>> records = pd.DataFrame({"year": ["2020"] * 30 + ["2021"] * 24, "flag": ["1", ""] * 27})
    >>> t = tabulate(records, ["year"], drop={"flag": ["1"]})
    >>> t.table.cells["value"].tolist()
    [15, 12, 27]
    """
    kept = {f: frozenset(str(v) for v in values) for f, values in (keep or {}).items()}
    dropped = {f: frozenset(str(v) for v in values) for f, values in (drop or {}).items()}
    mask = np.ones(len(records), dtype=np.bool_)
    for name, values, wanted in [
        *((f, v, True) for f, v in kept.items()),
        *((f, v, False) for f, v in dropped.items()),
    ]:
        if name not in records.columns:
            raise TableError(f"filter field {name!r} is not a column of the data")
        inside = records[name].astype("string").fillna("").isin(values).to_numpy(np.bool_)
        mask &= inside if wanted else ~inside
    table = frequency_table(records.loc[mask], dimensions, policy, domains, margins, secondary)
    return Tabulation(table, kept, dropped)


@dataclass(frozen=True)
class Recovered:
    """A count in ``1 .. threshold - 1`` that the tables together disclose.

    :param table: position of the table (published ones first, the new one last), or ``None``
        for a cell or margin of the fine cross-classification that is not a cell of any table.
    :param cell: the category per dimension (``Total`` for a margin); for a fine cell or
        margin, ``field=atom`` for each field it does not sum over.
    :param value: the true count.
    :param low: the least count the tables allow (at least 1).
    :param high: the greatest (below the threshold); ``low == high`` is an exact recovery.
    """

    table: int | None
    cell: tuple[str, ...]
    value: float
    low: int
    high: int

    @property
    def exact(self) -> bool:
        """Return whether the count is recovered exactly."""
        return self.low == self.high


@dataclass(frozen=True)
class DifferencingReport:
    """The verdict on a new table.

    :param safe: no count between 1 and the threshold can be proven so.
    :param recovered: the counts that can be.
    :param suppressed_further: cells of the new table suppressed to make it safe.
    :param fine_cells: size of the fine cross-classification.
    :param programs: linear programs solved.
    """

    safe: bool
    recovered: tuple[Recovered, ...]
    suppressed_further: int = 0
    fine_cells: int = 0
    programs: int = 0


@dataclass
class _Atoms:
    """The atoms of every field and the fine grid they span."""

    fields: list[str]
    labels: list[list[str]]
    other: list[bool]

    @property
    def shape(self) -> tuple[int, ...]:
        """Return the number of atoms of every field: the shape of the fine grid."""
        return tuple(len(a) for a in self.labels)


def _as_tabulation(table: SafeTable | Tabulation) -> Tabulation:
    return table if isinstance(table, Tabulation) else Tabulation(table)


def _atoms(tables: Sequence[Tabulation], records: pd.DataFrame) -> _Atoms:
    """Return the atoms of every dimension and filter field of the tables.

    The attacker is taken to know which values every field takes (the public schema's
    domains, read at their narrowest: the values the records take), so "every other value" is
    an atom only where records take a value no table names and some table counts them.
    """
    named: dict[str, list[str]] = {}
    for t in tables:
        for d, cats in zip(t.table.dimensions, t.table.categories, strict=True):
            named.setdefault(d, [])
            named[d] += [c for c in cats if c not in named[d]]
        for f, values in (*t.keep.items(), *t.drop.items()):
            named.setdefault(f, [])
            named[f] += [v for v in sorted(values) if v not in named[f]]
    fields = list(named)
    for f in fields:
        if f not in records.columns:
            raise TableError(f"field {f!r} of a table is not a column of the records")
    other = [
        any(f not in t.table.dimensions and f not in t.keep for t in tables)
        and not records[f].astype("string").fillna("").isin(named[f]).all()
        for f in fields
    ]
    labels = [[*named[f], *([OTHER] if o else [])] for f, o in zip(fields, other, strict=True)]
    return _Atoms(fields, labels, other)


def _inner_of_fine(t: Tabulation, atoms: _Atoms) -> IntArray:
    """Return, per fine cell (flattened), the inner cell of the table it falls in (-1: none)."""
    shape = atoms.shape
    inner_shape = tuple(len(c) for c in t.table.categories)
    strides = np.cumprod((1, *inner_shape[::-1]))[:-1][::-1]
    flat = np.zeros(shape, dtype=np.int64)
    valid = np.ones(shape, dtype=np.bool_)
    for j, (name, labels) in enumerate(zip(atoms.fields, atoms.labels, strict=True)):
        named = labels[: len(labels) - atoms.other[j]]
        allowed = np.ones(len(labels), dtype=np.bool_)
        if name in t.keep:
            allowed = np.array([v in t.keep[name] for v in named] + [False] * atoms.other[j])
        if name in t.drop:
            allowed &= np.array([v not in t.drop[name] for v in named] + [True] * atoms.other[j])
        view = [1] * len(shape)
        view[j] = len(labels)
        if name in t.table.dimensions:
            k = t.table.dimensions.index(name)
            position = {c: i for i, c in enumerate(t.table.categories[k])}
            cat = np.array([position.get(v, -1) for v in named] + [-1] * atoms.other[j])
            allowed &= cat >= 0
            flat = flat + (strides[k] * np.maximum(cat, 0)).reshape(view)
        valid = valid & allowed.reshape(view)
    return np.where(valid, flat, -1).ravel()


def _margin_map(categories: Sequence[Sequence[str]]) -> csr_array:
    """Return the 0/1 matrix from a table's inner cells to all its cells, margins included."""
    inner_shape = tuple(len(c) for c in categories)
    extended = tuple(s + 1 for s in inner_shape)
    n_inner = math.prod(inner_shape)
    index = np.indices(inner_shape).reshape(len(inner_shape), -1)
    rows, cols = [], []
    for mask in itertools.product((False, True), repeat=len(inner_shape)):
        coords = tuple(
            np.full(n_inner, s) if m else index[j]
            for j, (s, m) in enumerate(zip(inner_shape, mask, strict=True))
        )
        rows.append(np.ravel_multi_index(coords, extended))
        cols.append(np.arange(n_inner))
    data = np.ones(sum(len(r) for r in rows))
    return csr_array(
        (data, (np.concatenate(rows), np.concatenate(cols))),
        shape=(math.prod(extended), n_inner),
    )


@dataclass
class _System:
    """Linear constraints over the fine cells: ``lower <= rows @ x <= upper``, ``x >= 0``;
    ``origin`` names the published cell each row comes from (flat index in its table)."""

    rows: csr_array
    lower: FloatArray
    upper: FloatArray
    origin: IntArray


def _published_values(table: SafeTable) -> FloatArray:
    """Return the values a reader sees, flattened like ``table.values`` (NaN where hidden)."""
    status = table.status.ravel()
    shown = np.full(status.size, np.nan)
    column = table.cells["value"].astype("Float64").to_numpy(np.float64, na_value=np.nan)
    shown[status != _UNPUBLISHED] = column
    shown[status != _PUBLISHED] = np.nan
    return shown


def _constraints(t: Tabulation, inner_of_fine: IntArray, n_fine: int) -> tuple[_System, csr_array]:
    """Return what the table publishes as constraints over the fine cells, and the map from
    every cell of the table (margins included) to the fine cells it adds up."""
    table = t.table
    n_inner = math.prod(len(c) for c in table.categories)
    inside = np.flatnonzero(inner_of_fine >= 0)
    to_fine = csr_array(
        (np.ones(inside.size), (inner_of_fine[inside], inside)), shape=(n_inner, n_fine)
    )
    margin = _margin_map(table.categories)
    cells = (margin @ to_fine).tocsr()
    status = table.status.ravel()
    shown = _published_values(table)
    if table.rounding_base is not None:
        # Rounded: each published cell is known to within base - 1 of what is shown.
        slack = table.rounding_base - 1.0
        pub = np.flatnonzero(status == _PUBLISHED)
        lower = np.maximum(shown[pub] - slack, 0.0)
        return _System(cells[pub], lower, shown[pub] + slack, pub.astype(np.int64)), cells
    inner_cells = np.asarray(
        np.ravel_multi_index(
            np.indices(tuple(len(c) for c in table.categories)).reshape(len(table.categories), -1),
            table.values.shape,
        ),
        dtype=np.int64,
    )
    inner_published = status[inner_cells] == _PUBLISHED
    inner_values = table.values.ravel()[inner_cells]
    # A published margin is the sum of its published parts (known) and its hidden ones: only
    # the hidden part is news, and a margin with none says nothing the inner cells do not.
    is_inner = np.zeros(status.size, dtype=np.bool_)
    is_inner[inner_cells] = True
    margins = np.flatnonzero((status == _PUBLISHED) & ~is_inner)
    over = margin[margins]
    hidden_part = (over[:, np.flatnonzero(~inner_published)] != 0).sum(axis=1) > 0
    margins = margins[hidden_part]
    over = margin[margins]
    rhs = shown[margins] - over @ np.where(inner_published, inner_values, 0.0)
    hidden_inner = csr_array(
        (
            np.ones(int((~inner_published).sum())),
            (np.flatnonzero(~inner_published), np.flatnonzero(~inner_published)),
        ),
        shape=(n_inner, n_inner),
    )
    rows = vstack([to_fine[np.flatnonzero(inner_published)], over @ hidden_inner @ to_fine])
    values = np.concatenate([inner_values[inner_published], rhs])
    origin = np.concatenate([inner_cells[inner_published], margins]).astype(np.int64)
    return _System(rows.tocsr(), values, values, origin), cells


def _fine_counts(records: pd.DataFrame, atoms: _Atoms) -> FloatArray:
    """Return the number of records in every fine cell (records outside all tables left out)."""
    codes = []
    keep = np.ones(len(records), dtype=np.bool_)
    for j, (name, labels) in enumerate(zip(atoms.fields, atoms.labels, strict=True)):
        named = labels[: len(labels) - atoms.other[j]]
        code = pd.Index(named).get_indexer(pd.Index(records[name].astype("string").fillna("")))
        if atoms.other[j]:
            code = np.where(code < 0, len(named), code)
        keep &= code >= 0  # a value outside every table's atoms: counted by no table
        codes.append(code)
    flat = np.ravel_multi_index(tuple(c[keep] for c in codes), atoms.shape)
    return np.bincount(flat, minlength=math.prod(atoms.shape)).astype(np.float64)


def _presolve(system: _System, fixed: FloatArray) -> tuple[FloatArray, BoolArray, IntArray]:
    """Return the fine cells the constraints fix (NaN where not), starting from those given,
    which rows still bind free cells, and the row that fixed each cell (-1: none): a row whose
    upper bound is used up fixes its cells at 0, an equation with one free cell fixes that
    cell. Exact, in integers."""
    rows, lower, upper = system.rows, system.lower, system.upper
    fixed = fixed.copy()
    fixer = np.full(fixed.size, -1, dtype=np.int64)
    exact = lower == upper
    pattern = rows.copy()
    pattern.data = np.ones_like(pattern.data)
    while True:
        free = np.isnan(fixed)
        known = rows @ np.nan_to_num(fixed)
        n_free = pattern @ free.astype(np.float64)
        empty = (n_free > 0) & (upper - known <= _EPS)
        single = (n_free == 1) & exact & ~empty
        if not empty.any() and not single.any():
            return fixed, n_free > 0, fixer
        used_up = pattern[np.flatnonzero(empty)].tocoo()
        hit = free[used_up.col]
        fixed[used_up.col[hit]] = 0.0
        fixer[used_up.col[hit]] = np.flatnonzero(empty)[used_up.row[hit]]
        for r in np.flatnonzero(single).tolist():
            start, stop = rows.indptr[r], rows.indptr[r + 1]
            cols = rows.indices[start:stop]
            here = cols[np.isnan(fixed[cols])]
            if here.size != 1:
                continue  # fixed earlier in this pass
            coefficient = rows.data[start:stop][np.isnan(fixed[cols])][0]
            value = (lower[r] - (rows[[r]] @ np.nan_to_num(fixed))[0]) / coefficient
            if value < -_EPS:
                raise TableError("the tables contradict one another (a count below zero)")
            fixed[here[0]] = max(value, 0.0)
            fixer[here[0]] = r


@dataclass
class _Targets:
    """The counts to bound: rows over the fine cells, with their names, true values and the
    value each must be able to fall to (``floor``)."""

    rows: csr_array
    names: list[tuple[int | None, tuple[str, ...]]]
    values: FloatArray
    floor: FloatArray


def _targets(
    tables: Sequence[Tabulation],
    cell_maps: Sequence[csr_array],
    atoms: _Atoms,
    counts: FloatArray,
    threshold: int,
) -> _Targets:
    """Return every count in ``1 .. threshold - 1`` of a table cell or of a cell or margin of
    the fine cross-classification, each group once (the first table that shows it names it)."""
    rows: list[IntArray] = []
    names: list[tuple[int | None, tuple[str, ...]]] = []
    values: list[float] = []
    seen: set[bytes] = set()

    def add(support: IntArray, name: tuple[int | None, tuple[str, ...]], value: float) -> None:
        key = support.tobytes()
        if key not in seen:
            seen.add(key)
            rows.append(support)
            names.append(name)
            values.append(value)

    for k, (t, cells) in enumerate(zip(tables, cell_maps, strict=True)):
        truth = t.table.values.ravel()
        labels = [[*c, TOTAL] for c in t.table.categories]
        for flat in np.flatnonzero((truth >= 1) & (truth <= threshold - 1)).tolist():
            index = np.unravel_index(flat, t.table.values.shape)
            cell = tuple(labels[j][int(i)] for j, i in enumerate(index))
            support = np.sort(cells.indices[cells.indptr[flat] : cells.indptr[flat + 1]])
            add(support.astype(np.int64), (k, cell), float(truth[flat]))
    shape = atoms.shape
    grid = _with_margins(counts.reshape(shape))
    small = np.argwhere((grid >= 1) & (grid <= threshold - 1))
    for marginal in small.tolist():
        axes = [[i] if i < n else list(range(n)) for i, n in zip(marginal, shape, strict=True)]
        support = np.ravel_multi_index(
            tuple(a.ravel() for a in np.meshgrid(*axes, indexing="ij")), shape
        )
        cell = tuple(
            f"{name}={atom[i]}"
            for name, atom, i in zip(atoms.fields, atoms.labels, marginal, strict=True)
            if i < len(atom)
        )
        add(np.sort(support).astype(np.int64), (None, cell), float(grid[tuple(marginal)]))
    n_fine = math.prod(shape)
    indptr = np.cumsum([0, *(len(r) for r in rows)])
    indices = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    matrix = csr_array((np.ones(indices.size), indices, indptr), shape=(len(rows), n_fine))
    return _Targets(matrix, names, np.array(values, dtype=np.float64), np.zeros(len(rows)))


def _primary_targets(table: SafeTable, cells: csr_array, k: int) -> _Targets:
    """Return the primary suppressed cells of table ``k`` as counts to bound, each with the
    value it must be able to fall to: 0 for an inner cell, one less than its count for a
    margin (a margin falls with its parts, one at a time)."""
    status = table.status.ravel()
    truth = table.values.ravel()
    totals = np.array(table.values.shape) - 1
    labels = [[*c, TOTAL] for c in table.categories]
    flat = np.flatnonzero(status == _PRIMARY)
    names: list[tuple[int | None, tuple[str, ...]]] = []
    floor = np.zeros(flat.size)
    for n, f in enumerate(flat.tolist()):
        index = np.unravel_index(f, table.values.shape)
        names.append((k, tuple(labels[j][int(i)] for j, i in enumerate(index))))
        if (np.array(index) == totals).any():
            floor[n] = max(truth[f] - 1.0, 0.0)
    rows = csr_array(cells[flat]) if flat.size else csr_array((0, cells.shape[1]))
    rows.data = np.ones_like(rows.data)
    return _Targets(rows, names, truth[flat].astype(np.float64), floor)


class _Programs:
    """Linear programs over the blocks of the reduced system (free fine cells only)."""

    def __init__(
        self, rows: csr_array, lower: FloatArray, upper: FloatArray, integer: bool = False
    ) -> None:
        self.rows, self.lower, self.upper, self.integer = rows, lower, upper, integer
        n_rows, n_vars = rows.shape
        graph = bmat([[None, rows.T], [rows, None]], format="csr")
        _, label = connected_components(graph, directed=False)
        self.block = label[:n_vars]
        self.row_block = label[n_vars:]
        self.solved = 0

    def minimise(
        self, objective: FloatArray, blocks: BoolArray
    ) -> tuple[float, FloatArray, IntArray]:
        """Return the least value of ``objective @ x`` over the given blocks, where, and the
        rows that bind it (a non-zero dual value: the rows an attacker's proof combines).

        :param blocks: per block, whether it is in the program (others keep no variable).
        """
        variables = blocks[self.block]
        kept = np.flatnonzero(blocks[self.row_block])
        sub = self.rows[kept][:, np.flatnonzero(variables)]
        lower, upper = self.lower[kept], self.upper[kept]
        if self.integer:
            return self._integer_minimise(objective[variables], sub, lower, upper, variables, kept)
        exact = lower == upper
        ranged = np.flatnonzero(~exact)
        a_ub = vstack([sub[ranged], -sub[ranged]]) if ranged.size else None
        b_ub = np.concatenate([upper[ranged], -lower[ranged]]) if ranged.size else None
        result = linprog(
            objective[variables],
            A_ub=a_ub,
            b_ub=b_ub,
            A_eq=sub[np.flatnonzero(exact)] if exact.any() else None,
            b_eq=lower[exact] if exact.any() else None,
            bounds=(0, None),
            method="highs",
        )
        self.solved += 1
        if result.status != 0:
            raise TableError(f"bounding a count failed in the solver: {result.message}")
        point = np.zeros(len(self.block))
        point[variables] = result.x
        binding = [kept[np.flatnonzero(exact)][np.abs(result.eqlin.marginals) > _EPS]]
        if ranged.size:
            duals = np.abs(result.ineqlin.marginals).reshape(2, -1).sum(axis=0)
            binding.append(kept[ranged][duals > _EPS])
        return float(result.fun), point, np.concatenate(binding).astype(np.int64)

    def _integer_minimise(
        self,
        objective: FloatArray,
        sub: csr_array,
        lower: FloatArray,
        upper: FloatArray,
        variables: BoolArray,
        kept: IntArray,
    ) -> tuple[float, FloatArray, IntArray]:
        """The integer program of :meth:`minimise` (HiGHS branch and bound); every row of the
        blocks is reported as binding (an integer program has no duals)."""
        from scipy.optimize import Bounds, LinearConstraint, milp

        result = milp(
            objective,
            constraints=LinearConstraint(sub, np.ceil(lower - _EPS), np.floor(upper + _EPS)),
            integrality=np.ones(objective.size),
            bounds=Bounds(0, np.inf),
        )
        self.solved += 1
        if result.status != 0 or result.x is None:
            raise TableError(f"bounding a count failed in the solver: {result.message}")
        point = np.zeros(len(self.block))
        point[variables] = np.rint(result.x)
        return float(result.fun), point, kept.astype(np.int64)

    def spread(
        self, targets: csr_array, offset: FloatArray, cap: float, blocks: BoolArray
    ) -> FloatArray:
        """Return a point maximising ``sum(min(offset + targets @ x, cap))`` over the blocks: as
        many targets as it can at ``cap`` or more."""
        variables = np.flatnonzero(blocks[self.block])
        kept = np.flatnonzero(blocks[self.row_block])
        sub = self.rows[kept][:, variables]
        lower, upper = self.lower[kept], self.upper[kept]
        n_t = targets.shape[0]
        part = targets[:, variables]
        # Variables: x, then one s per target with s <= offset + t @ x and 0 <= s <= cap.
        eye = csr_array((np.ones(n_t), (np.arange(n_t), np.arange(n_t))), shape=(n_t, n_t))
        link = bmat([[-part, eye]], format="csr")
        ranged = np.flatnonzero(lower != upper)
        pad_r = csr_array((ranged.size, n_t))
        a_ub = vstack([link, bmat([[sub[ranged], pad_r]]), bmat([[-sub[ranged], pad_r]])])
        b_ub = np.concatenate([offset, upper[ranged], -lower[ranged]])
        exact = np.flatnonzero(lower == upper)
        a_eq = bmat([[sub[exact], csr_array((exact.size, n_t))]], format="csr")
        result = linprog(
            np.concatenate([np.zeros(variables.size), -np.ones(n_t)]),
            A_ub=a_ub,
            b_ub=b_ub,
            A_eq=a_eq if exact.size else None,
            b_eq=lower[exact] if exact.size else None,
            bounds=[*[(0, None)] * variables.size, *[(0, cap)] * n_t],
            method="highs",
        )
        self.solved += 1
        if result.status != 0:
            raise TableError(f"bounding counts failed in the solver: {result.message}")
        point = np.zeros(len(self.block))
        point[variables] = result.x[: variables.size]
        return point


@dataclass
class _Outcome:
    """A verdict with, per count disclosed, its fine cells and the published cells of the new
    table the proof uses (flat indices; empty when it was not traced)."""

    report: DifferencingReport
    disclosed: list[IntArray]
    blamed: list[IntArray]
    new_cells: csr_array


def _blame(
    start: set[int], system: _System, fixer: IntArray, row_table: IntArray, new: int
) -> IntArray:
    """Return the cells of table ``new`` among the rows of a proof: the rows given, then, a few
    times over, the rows that fixed the cells those rows hold in presolve."""
    rows = set(start)
    frontier = set(start)
    for _ in range(6):
        cells = (
            np.unique(
                np.concatenate(
                    [
                        system.rows.indices[system.rows.indptr[r] : system.rows.indptr[r + 1]]
                        for r in frontier
                    ]
                )
            )
            if frontier
            else np.zeros(0, np.int64)
        )
        found = {int(r) for r in fixer[cells] if r >= 0} - rows
        if not found or len(rows) > 5_000:
            break
        rows |= found
        frontier = found
    mine = [r for r in sorted(rows) if row_table[r] == new]
    return system.origin[mine] if mine else np.zeros(0, np.int64)


def _check(
    tables: Sequence[Tabulation],
    records: pd.DataFrame,
    threshold: int,
    max_fine_cells: int,
    integer: bool = False,
    suppression: bool = False,
) -> _Outcome:
    """Bound every small count the tables speak about; see the module's description.

    With ``suppression``, bound instead the primary suppressed cells of the last table, each
    of which must be able to fall to its floor *and* reach the threshold (what secondary
    suppression promises); the report's ``recovered`` then lists those that cannot.
    """
    if threshold < 1:
        raise TableError(f"threshold must be at least 1, got {threshold}")
    atoms = _atoms(tables, records)
    n_fine = math.prod(atoms.shape)
    if n_fine > max_fine_cells:
        raise TableError(
            f"the tables cross {n_fine} fine cells, more than the {max_fine_cells} this check "
            "handles; check fewer tables together"
        )
    counts = _fine_counts(records, atoms)
    systems, cell_maps = [], []
    # Only the records some table counts are spoken about: a group is taken within them, and
    # a fine cell no table counts is left out (as if known to be empty, the cautious reading).
    covered = np.zeros(n_fine, dtype=np.bool_)
    for k, t in enumerate(tables):
        inner_of_fine = _inner_of_fine(t, atoms)
        inside = inner_of_fine >= 0
        covered |= inside
        n_inner = math.prod(len(c) for c in t.table.categories)
        recount = np.bincount(inner_of_fine[inside], counts[inside], n_inner)
        inner = t.table.values[tuple(slice(0, len(c)) for c in t.table.categories)].ravel()
        wrong = int((np.abs(recount - inner) > _EPS).sum())
        if wrong:
            raise TableError(
                f"table {k} ({t.describe()}): {wrong} of its {n_inner} cells do not count the "
                "records under the population stated; state the filter the table was built with"
            )
        system, cells = _constraints(t, inner_of_fine, n_fine)
        systems.append(system)
        cell_maps.append(cells)
    system = _System(
        vstack([s.rows for s in systems]).tocsr(),
        np.concatenate([s.lower for s in systems]),
        np.concatenate([s.upper for s in systems]),
        np.concatenate([s.origin for s in systems]),
    )
    row_table = np.concatenate([np.full(len(s.origin), k) for k, s in enumerate(systems)])
    counts = np.where(covered, counts, 0.0)
    fixed, live, fixer = _presolve(system, np.where(covered, np.nan, 0.0))
    live_rows = np.flatnonzero(live)
    if suppression:
        targets = _primary_targets(tables[-1].table, cell_maps[-1], len(tables) - 1)
    else:
        targets = _targets(tables, cell_maps, atoms, counts, threshold)
    floor = targets.floor
    known = np.nan_to_num(fixed)
    offset = targets.rows @ known
    free = np.flatnonzero(np.isnan(fixed))
    rows = system.rows[np.flatnonzero(live)][:, free].tocsr()
    shift = system.rows[np.flatnonzero(live)] @ known
    programs = _Programs(rows, system.lower[live] - shift, system.upper[live] - shift, integer)
    part = targets.rows[:, free].tocsr()
    bound = (rows != 0).sum(axis=0) > 0  # free cells that some constraint holds
    truth = counts[free]
    n_t = part.shape[0]
    low = np.full(n_t, -1.0)
    high = np.full(n_t, -1.0)
    touches = part.indptr[1:] > part.indptr[:-1]
    loose = (part @ (~bound).astype(np.float64)) > 0
    exact = ~touches
    low[exact] = high[exact] = offset[exact]
    # Per count, whether some table the attacker cannot rule out has it at or below its floor
    # (down) or at or above the threshold (up); a count is cleared by either side, or under
    # ``suppression`` by both.
    down: BoolArray = exact & (offset <= floor + _EPS)
    up: BoolArray = loose | (exact & (offset >= threshold - _EPS))
    # Loose ones may be unbounded above: cleared, but for the floor under ``suppression``.
    open_ = np.flatnonzero(touches & ~loose) if not suppression else np.flatnonzero(touches)

    def cleared() -> BoolArray:
        both: BoolArray = down & up if suppression else down | up
        return both

    def clear(point: FloatArray) -> None:
        if integer and not np.allclose(point, np.rint(point), rtol=0.0, atol=_EPS):
            return  # a fractional point proves nothing about integer counts
        value = offset[open_] + part[open_] @ point
        down[open_[value <= floor[open_] + _EPS]] = True
        up[open_[value >= threshold - _EPS]] = True

    def blocks_of(which: IntArray) -> BoolArray:
        used = np.zeros(int(programs.block.max(initial=-1)) + 1, dtype=np.bool_)
        cols = part[which].indices
        used[programs.block[cols]] = True
        return used

    for _ in range(3):  # batches while they clear something
        todo = open_[~cleared()[open_]]
        if todo.size == 0:
            break
        before = int(down.sum() + up.sum())
        todo = todo[~down[todo]]
        if todo.size:
            blocks = blocks_of(todo)
            _, point, _ = programs.minimise(np.asarray(part[todo].sum(axis=0)).ravel(), blocks)
            clear(np.where(blocks[programs.block], point, truth))
        todo = open_[~cleared()[open_]]
        todo = todo[~up[todo]]
        if todo.size:
            blocks = blocks_of(todo)
            point = programs.spread(part[todo], offset[todo], float(threshold), blocks)
            clear(np.where(blocks[programs.block], point, truth))
        if int(down.sum() + up.sum()) == before:
            break
    proof: dict[int, IntArray] = {}
    for i in open_.tolist():
        if cleared()[i]:
            continue
        blocks = blocks_of(np.array([i]))
        objective = part[[i]].toarray().ravel()
        if not down[i]:
            least, point, proof[i] = programs.minimise(objective, blocks)
            clear(np.where(blocks[programs.block], point, truth))
            low[i] = offset[i] + least
        if cleared()[i] or up[i]:
            continue
        most, point, _ = programs.minimise(-objective, blocks)
        clear(np.where(blocks[programs.block], point, truth))
        high[i] = offset[i] - most
    lows = np.ceil(low - _EPS)
    highs = np.floor(high + _EPS)
    if suppression:
        disclosed = np.flatnonzero(~cleared())
    else:
        disclosed = np.flatnonzero(~cleared() & (lows >= 1) & (highs <= threshold - 1))
    recovered = []
    supports = []
    blamed = []
    for i in disclosed.tolist():
        table, cell = targets.names[i]
        recovered.append(
            Recovered(table, cell, float(targets.values[i]), int(lows[i]), int(highs[i]))
        )
        r = targets.rows
        support = r.indices[r.indptr[i] : r.indptr[i + 1]].astype(np.int64)
        supports.append(support)
        start = {int(x) for x in fixer[support] if x >= 0}
        start |= {int(x) for x in live_rows[proof.get(i, np.zeros(0, np.int64))]}
        blamed.append(_blame(start, system, fixer, row_table, len(tables) - 1))
    report = DifferencingReport(
        safe=not recovered,
        recovered=tuple(recovered),
        fine_cells=n_fine,
        programs=programs.solved,
    )
    return _Outcome(report, supports, blamed, cell_maps[-1])


def check_differencing(
    new: SafeTable | Tabulation,
    published: Sequence[SafeTable | Tabulation],
    records: pd.DataFrame,
    threshold: int = 10,
    max_fine_cells: int = 2_000_000,
    *,
    integer: bool = False,
) -> DifferencingReport:
    """Return whether ``new`` can be published beside ``published`` without the tables
    together proving any count of a group to be between 1 and ``threshold - 1``.

    :param new: the table proposed for release (a bare ``SafeTable`` counts every record).
    :param published: the tables already released from the same records.
    :param records: the records all the tables count (each table's population is a filter of
        them); every table is recounted from them and refused if it does not match.
    :param threshold: counts from 1 to ``threshold - 1`` are protected.
    :param max_fine_cells: largest fine cross-classification the check accepts.
    :param integer: bound the counts by integer programs (HiGHS branch and bound) rather than
        by the linear relaxation: exact where the relaxation is not (three or more crossed
        fields), and slower; a point clears a count only when it is integral.
    :raises TableError: when a table does not count the records under its stated population,
        a field is not a column of the records, or the fine cells are too many.

    The attack of the issue in miniature: a table of all records beside the same table
    without the flagged ones gives the flagged count of each cell by subtraction.

    >>> records = pd.DataFrame(
    ...     {"year": ["2020"] * 40 + ["2021"] * 40, "flag": ["1"] * 3 + [""] * 77}
    ... )
    >>> everyone = tabulate(records, ["year"])
    >>> report = check_differencing(tabulate(records, ["year"], drop={"flag": ["1"]}),
    ...                             [everyone], records)
    >>> report.safe
    False
    >>> [(r.cell, r.low, r.high) for r in report.recovered]
    [(('year=2020', 'flag=1'), 3, 3), (('flag=1',), 3, 3)]
    >>> check_differencing(tabulate(records, ["year"], keep={"year": ["2021"]}), [everyone],
    ...                    records).safe
    True
    """
    tables = [*(_as_tabulation(t) for t in published), _as_tabulation(new)]
    return _check(tables, records, threshold, max_fine_cells, integer).report


@dataclass(frozen=True)
class SuppressionReport:
    """The verdict on one table's own suppression.

    :param primary: primary suppressed cells of the table.
    :param narrowed: those the published cells narrow: the attacker's bounds keep one from
        falling to its floor (0 for an inner cell, one less than its count for a margin) or
        from reaching the threshold; ``low`` and ``high`` are the bounds computed (-1 for a
        side that was not needed).
    :param programs: linear programs solved.
    """

    primary: int
    narrowed: tuple[Recovered, ...]
    programs: int = 0


def records_of(table: SafeTable) -> pd.DataFrame:
    """Return records that a table over every record counts: one per unit of each inner cell's
    true count, taking that cell's categories (the data holder's view; never publish it).

    >>> t = frequency_table(pd.DataFrame({"a": ["x"] * 3 + ["y"] * 2}), ["a"], secondary=False)
    >>> records_of(t)["a"].tolist()
    ['x', 'x', 'x', 'y', 'y']
    """
    inner = table.values[tuple(slice(0, len(c)) for c in table.categories)]
    counts = np.rint(inner).astype(np.int64).ravel()
    index = np.indices(inner.shape).reshape(inner.ndim, -1)
    return pd.DataFrame(
        {
            d: pd.array(np.asarray(cats, dtype=object)[np.repeat(index[j], counts)], "string")
            for j, (d, cats) in enumerate(zip(table.dimensions, table.categories, strict=True))
        }
    )


def check_suppression(
    table: SafeTable,
    threshold: int = 10,
    max_fine_cells: int = 2_000_000,
    *,
    integer: bool = False,
) -> SuppressionReport:
    """Return which primary suppressed cells of one table its published cells narrow.

    Secondary suppression promises more than :func:`check_differencing` asks of a count: each
    primary cell must stay free to be 0 (a margin: one less than its count) and to reach the
    threshold, under the bounds an attacker solves from the published cells, margins and
    non-negativity. The bounds are those of the same linear programs (one table over every
    record is the one-table case; its fine cells are its inner cells).

    :param table: the protected table.
    :param threshold: the value every primary cell must be able to reach.
    :raises TableError: as :func:`check_differencing`.

    >>> records = pd.DataFrame({"a": ["x"] * 30 + ["y"] * 20 + ["z"] * 2})
    >>> bare = frequency_table(records, ["a"], TablePolicy(threshold=11), secondary=False)
    >>> [(r.cell, r.low, r.high) for r in check_suppression(bare, 11).narrowed]
    [(('z',), 2, 2)]
    >>> check_suppression(frequency_table(records, ["a"], TablePolicy(threshold=11)), 11).narrowed
    ()
    """
    tables = [Tabulation(table)]
    outcome = _check(tables, records_of(table), threshold, max_fine_cells, integer, True)
    report = outcome.report
    return SuppressionReport(table.primary, report.recovered, report.programs)


@overload
def protect_against_differencing(
    new: SafeTable,
    published: Sequence[SafeTable | Tabulation],
    records: pd.DataFrame,
    threshold: int = ...,
    max_fine_cells: int = ...,
    *,
    integer: bool = ...,
) -> tuple[SafeTable, DifferencingReport]: ...


@overload
def protect_against_differencing(
    new: Tabulation,
    published: Sequence[SafeTable | Tabulation],
    records: pd.DataFrame,
    threshold: int = ...,
    max_fine_cells: int = ...,
    *,
    integer: bool = ...,
) -> tuple[Tabulation, DifferencingReport]: ...


def protect_against_differencing(
    new: SafeTable | Tabulation,
    published: Sequence[SafeTable | Tabulation],
    records: pd.DataFrame,
    threshold: int = 10,
    max_fine_cells: int = 2_000_000,
    *,
    integer: bool = False,
) -> tuple[SafeTable | Tabulation, DifferencingReport]:
    """Return ``new`` with further cells suppressed until no small count is disclosed.

    Greedy: each round, for every count still disclosed, the smallest published cell of the
    new table that the attacker's proof uses is suppressed (the proof: the rows that fix its
    fine cells, traced back, and the binding rows of its bounding program; failing those, a
    cell that adds up part of the count, or any cell), and everything is checked again; the
    final verdict comes from :func:`check_differencing`, so the result is proven, not assumed.
    Suppressing only ever widens the intervals, so the new table stays as protected on its own
    as it was.

    Returns the same kind of table it was given, with the report (``suppressed_further`` set).

    The parameters are those of :func:`check_differencing`.

    :raises TableError: if even suppressing every cell of the new table leaves a disclosure
        (the tables already published disclose on their own), or as :func:`check_differencing`.
    """
    kept = _as_tabulation(new)
    others = [_as_tabulation(t) for t in published]
    outcome = _check([*others, kept], records, threshold, max_fine_cells, integer)
    further = 0
    while not outcome.report.safe:
        table = kept.table
        status = table.status.copy()
        flat_status = status.ravel()
        values = table.values.ravel()
        chosen: set[int] = set()
        open_cells = flat_status == _PUBLISHED
        if not open_cells.any():
            raise TableError(
                f"{len(outcome.disclosed)} small counts are disclosed by the tables already "
                "published alone; suppressing the new table cannot fix that"
            )
        for support, blamed in zip(outcome.disclosed, outcome.blamed, strict=True):
            # The new table's cells in the attacker's proof, else those adding up any of the
            # count, else any.
            candidates = blamed[open_cells[blamed]]
            if candidates.size == 0:
                touching = np.asarray(outcome.new_cells[:, support].sum(axis=1)).ravel() > 0
                candidates = np.flatnonzero(open_cells & touching)
            if candidates.size == 0:
                candidates = np.flatnonzero(open_cells)
            free = [c for c in candidates.tolist() if c not in chosen]
            if free:
                chosen.add(min(free, key=lambda c: (values[c], c)))
        shown = table.status.ravel() != _UNPUBLISHED
        position = np.cumsum(shown) - 1
        cells = table.cells.copy()
        picks = sorted(chosen)
        flat_status[picks] = _SECONDARY
        cells.loc[position[picks], "value"] = pd.NA
        cells.loc[position[picks], "status"] = "secondary"
        further += len(picks)
        kept = replace(kept, table=replace(table, status=status, cells=cells))
        outcome = _check([*others, kept], records, threshold, max_fine_cells, integer)
    report = replace(outcome.report, suppressed_further=further)
    return (kept if isinstance(new, Tabulation) else kept.table), report
