"""Safe tables: suppression verified by solving the linear bounds an attacker would solve.

The bounds use scipy's HiGHS linear programming: for every suppressed cell, the least and
greatest value it can take given every published cell, all the additivity relations of the
table with its margins, and non-negativity.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from disclosure_control.sdc import tables
from disclosure_control.sdc.differencing import (
    check_differencing,
    check_suppression,
    protect_against_differencing,
)
from disclosure_control.sdc.tables import (
    TOTAL,
    SafeTable,
    TableError,
    TablePolicy,
    frequency_table,
    magnitude_table,
)
from tests.sdc.conftest import zipf_records


def linear_bounds(table: SafeTable) -> dict[tuple[int, ...], tuple[float, float]]:
    """Least and greatest value of every hidden cell given what the table publishes."""
    values = table.values
    hidden = np.argwhere(table.status != 0)
    position = {tuple(int(i) for i in cell): k for k, cell in enumerate(hidden)}
    rows, rhs = [], []
    shape = values.shape
    for axis in range(values.ndim):
        rest = [s for k, s in enumerate(shape) if k != axis]
        for fixed in np.ndindex(*rest):
            row, b = np.zeros(len(hidden)), 0.0
            for i in range(shape[axis]):
                cell = (*fixed[:axis], i, *fixed[axis:])
                sign = -1.0 if i == shape[axis] - 1 else 1.0  # parts minus their total
                if cell in position:
                    row[position[cell]] += sign
                else:
                    b -= sign * values[cell]
            if row.any():
                rows.append(row)
                rhs.append(b)
    bounds = {}
    for cell, k in position.items():
        objective = np.zeros(len(hidden))
        objective[k] = 1.0
        low = linprog(objective, A_eq=np.array(rows), b_eq=np.array(rhs), method="highs")
        high = linprog(-objective, A_eq=np.array(rows), b_eq=np.array(rhs), method="highs")
        assert low.status == 0 and high.status == 0
        bounds[cell] = (float(low.fun), float(-high.fun))
    return bounds


def assert_protected(table: SafeTable, threshold: int) -> None:
    """Primary cells may reach the threshold, inner ones zero too; no hidden cell is fixed.

    A cell the table lists as ``unprotected`` (no hypercube had room enough) must still move
    by at least one either way.
    """
    assert len(table.unprotected) <= 0.02 * table.primary
    labels = [[*c, TOTAL] for c in table.categories]
    partial = {tuple(labels[j].index(v) for j, v in enumerate(c)) for c in table.unprotected}
    totals = np.array(table.values.shape) - 1
    for cell, (low, high) in linear_bounds(table).items():
        assert high - low > 1e-6, f"cell {cell} is recovered exactly"
        if cell in partial:
            assert high - low >= 1 - 1e-6, f"cell {cell} is narrowed below one"
        elif table.status[cell] == 1:
            value = table.values[cell]
            floor = 0.0 if not (np.array(cell) == totals).any() else max(value - 1, 0.0)
            assert low <= floor + 1e-6, f"primary cell {cell} is known to be at least {low}"
            assert high >= threshold - 1e-6, f"primary cell {cell} is known below {high}"


@pytest.mark.parametrize(
    ("dimensions", "n", "seed"),
    [
        (["country"], 400, 1),
        (["country", "year"], 3000, 2),
        (["gender", "country", "year"], 4000, 3),
    ],
)
def test_secondary_suppression_survives_the_linear_bounds(
    dimensions: list[str], n: int, seed: int
) -> None:
    records = zipf_records(n, seed, countries=12, years=8)
    table = frequency_table(records, dimensions)
    assert table.primary > 0
    assert_protected(table, 10)


def test_a_one_dimensional_table_of_two_categories_hides_both() -> None:
    # The small category's only partners are the other category and the grand total, which
    # is never hidden: before, the total was offered twice and the 3 was left recoverable.
    records = pd.DataFrame({"flag": ["1"] * 3 + [""] * 77}, dtype="string")
    table = frequency_table(records, ["flag"])
    assert table.unprotected == ()
    assert dict(zip(table.cells["flag"], table.cells["status"], strict=True)) == {
        "": "secondary",
        "1": "primary",
        TOTAL: "published",
    }
    assert_protected(table, 10)
    assert check_differencing(table, [], records).safe


def test_zero_cells_are_protected_when_the_policy_says_so() -> None:
    records = zipf_records(600, 4, countries=25, years=8)
    table = frequency_table(records, ["country", "year"], TablePolicy(suppress_zeros=True))
    zeros = (table.values == 0) & (table.status == 1)
    assert zeros.any()
    assert_protected(table, 10)


def test_suppressed_cells_are_marked_never_zero() -> None:
    records = zipf_records(2000, 5, countries=10, years=6)
    table = frequency_table(records, ["country", "year"])
    cells = table.cells
    hidden = cells["status"] != "published"
    assert hidden.sum() == table.primary + table.secondary
    assert cells.loc[hidden, "value"].isna().all()
    assert cells.loc[~hidden, "value"].notna().all()
    # Published counts are the true counts, margins included.
    shown = cells.loc[~hidden & cells["country"].ne(TOTAL) & cells["year"].ne(TOTAL)]
    truth = records.groupby(["country", "year"]).size()
    for row in shown.itertuples(index=False):
        assert row.value == truth.get((row.country, row.year), 0)
    total = cells.loc[cells["country"].eq(TOTAL) & cells["year"].eq(TOTAL), "value"]
    assert total.tolist() == [len(records)]


def test_declared_domains_add_empty_categories_and_refuse_strays() -> None:
    records = pd.DataFrame({"g": ["F"] * 12 + ["M"] * 3}, dtype="string")
    table = frequency_table(records, ["g"], domains={"g": ["F", "M", "X"]})
    statuses = dict(zip(table.cells["g"], table.cells["status"], strict=True))
    assert statuses == {"F": "secondary", "M": "primary", "X": "published", TOTAL: "published"}
    with pytest.raises(TableError, match=r"values \['M'\] are not in its domain"):
        frequency_table(records, ["g"], domains={"g": ["F"]})


@pytest.mark.parametrize(
    ("dimensions", "base"),
    [(["country"], 5), (["country", "year"], 3), (["gender", "country", "year"], 5)],
)
def test_controlled_rounding_keeps_tables_additive(dimensions: list[str], base: int) -> None:
    records = zipf_records(1500, 6, countries=14, years=7)
    table = frequency_table(records, dimensions, TablePolicy(rounding_base=base))
    shown = table.cells.set_index(dimensions)["value"]
    assert (shown.dropna().astype(int) % base == 0).all()
    # Rounded again without suppression, every cell is an adjacent multiple and sums hold.
    full = frequency_table(records, dimensions, TablePolicy(threshold=1, rounding_base=base))
    rounded = full.cells.set_index(dimensions)["value"].astype(float)
    exact = pd.Series(full.values.ravel(), index=rounded.index)
    assert ((rounded - exact).abs() < base).all()
    assert (rounded[exact % base == 0] == exact[exact % base == 0]).all()
    grid = rounded.to_numpy().reshape(full.values.shape)
    for axis in range(grid.ndim):
        parts = np.take(grid, range(grid.shape[axis] - 1), axis=axis).sum(axis=axis)
        assert np.array_equal(parts, np.take(grid, grid.shape[axis] - 1, axis=axis))


def test_dominance_and_p_percent_rules_flag_cells() -> None:
    frame = pd.DataFrame(
        {
            "region": ["A"] * 12 + ["B"] * 12 + ["C"] * 12 + ["D"] * 3,
            "partner": [f"p{i}" for i in range(12)] * 3 + ["p0", "p1", "p2"],
            # A: one partner holds 95 %; B: even; C: second partner can estimate the first
            "amount": [950.0]
            + [50 / 11] * 11
            + [10.0] * 12
            + [100.0, 95.0]
            + [0.4] * 10
            + [10.0] * 3,
        }
    )
    table = magnitude_table(frame, ["region"], "amount", contributor="partner")
    status = dict(zip(table.cells["region"], table.cells["status"], strict=True))
    # Independent check of the UK rules (top 2 > 90 %, p = 10 %, fewer than 10 partners).
    sums = frame.groupby(["region", "partner"])["amount"].sum()
    for region, parts in sums.groupby(level=0):
        top = parts.sort_values(ascending=False).to_numpy()
        dominated = top[:2].sum() > 0.9 * top.sum()
        p_rule = top.sum() - top[0] - top[1] < 0.1 * top[0]
        expected = dominated or p_rule or len(top) < 10
        assert (status[region] == "primary") == expected, region
    assert status["B"] != "primary"
    for cell, (low, high) in linear_bounds(table).items():
        assert high - low > 1e-6, cell


def test_magnitude_table_refuses_negative_amounts() -> None:
    frame = pd.DataFrame({"region": ["A", "B"], "amount": ["5", "-1"]})
    with pytest.raises(TableError, match=r"'amount', row 1: '-1'"):
        magnitude_table(frame, ["region"], "amount")


def test_differencing_recovers_singletons_and_the_checker_refuses() -> None:
    records = zipf_records(3000, 7, countries=15, years=10)
    inner = frequency_table(records, ["country", "year"], margins=False, secondary=False)
    hidden = inner.status[:-1, :-1] == 1
    singletons = {
        (inner.categories[0][r], inner.categories[1][int(np.flatnonzero(hidden[r])[0])])
        for r in np.flatnonzero(hidden.sum(axis=1) == 1)
    }
    assert singletons, "the sample should have rows with a single suppressed cell"
    totals = frequency_table(records, ["country"])
    report = check_differencing(totals, [inner], records)
    assert not report.safe
    recovered = {r.cell for r in report.recovered if r.table == 0}
    assert singletons <= recovered
    for r in report.recovered:
        if r.table == 0:
            row, col = (inner.categories[j].index(v) for j, v in enumerate(r.cell))
            assert r.value == inner.values[row, col]
    safe, after = protect_against_differencing(totals, [inner], records)
    assert after.safe and after.suppressed_further > 0
    assert check_differencing(safe, [inner], records).safe


def test_a_table_with_secondary_suppression_survives_its_own_margins() -> None:
    records = zipf_records(3000, 8, countries=15, years=10)
    table = frequency_table(records, ["country", "year"])
    totals = frequency_table(records, ["country"])
    assert check_differencing(totals, [table], records).safe


@settings(max_examples=25, deadline=None)
@given(
    cells=st.lists(st.integers(0, 40), min_size=12, max_size=12),
    shape=st.sampled_from([(3, 4), (4, 3), (2, 6), (6, 2)]),
    zeros=st.booleans(),
)
def test_random_tables_are_protected_or_report_why(
    cells: list[int], shape: tuple[int, int], zeros: bool
) -> None:
    rows, cols = shape
    records = pd.DataFrame(
        [
            (f"r{i}", f"c{j}")
            for i in range(rows)
            for j in range(cols)
            for _ in range(cells[i * cols + j])
        ],
        columns=["a", "b"],
        dtype="string",
    )
    if records.empty:
        return
    domains = {"a": [f"r{i}" for i in range(rows)], "b": [f"c{j}" for j in range(cols)]}
    table = frequency_table(records, ["a", "b"], TablePolicy(suppress_zeros=zeros), domains)
    if table.values[-1, -1] < 10:
        # A table of fewer than 10 records cannot be published at all: everything is hidden.
        assert (table.status != 0).all()
        return
    bounds = linear_bounds(table)
    labels = [[*c, TOTAL] for c in table.categories]
    partial = {tuple(labels[j].index(v) for j, v in enumerate(c)) for c in table.unprotected}
    for cell, (low, high) in bounds.items():
        if table.status[cell] == 1 and cell not in partial:
            assert high >= 10 - 1e-6, cell
        if table.status[cell] == 1 and table.values[cell] > 0:
            # Never pinned down exactly, whatever else happens.
            assert high - low > 1e-6, cell


def peel(table: SafeTable) -> set[tuple[int, ...]]:
    """Return the hidden cells an intruder recovers exactly by differencing alone: any line of
    the table (parts and their total) with one unknown left gives it, and every cell recovered
    is substituted into the other lines it lies on, until no line has one unknown left."""
    values = table.values
    known = table.status == 0
    recovered: set[tuple[int, ...]] = set()
    progress = True
    while progress:
        progress = False
        for axis in range(values.ndim):
            unknown = np.moveaxis(~known, axis, -1)
            lone = unknown.sum(axis=-1) == 1
            for rest in np.argwhere(lone):
                position = int(np.flatnonzero(unknown[tuple(rest)])[0])
                cell = (*rest[:axis], position, *rest[axis:])
                recovered.add(tuple(int(i) for i in cell))
                known[cell] = True
                progress = True
    return recovered


def test_cells_short_of_one_hypercube_are_protected_by_several(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A skewed 3-D table whose small cells sit among other small cells: many primary cells
    have no single hypercube with room enough and get several; the attacker's linear bounds
    (this module's own programs, and the checker's) still leave every one free, and
    differencing recovers none."""
    spied: list[int] = []
    several = tables._several_hypercubes

    def counted(cubes: Any, *args: Any, **kwargs: Any) -> Any:
        spied.append(cubes[0].shape[1])
        return several(cubes, *args, **kwargs)

    monkeypatch.setattr(tables, "_several_hypercubes", counted)
    records = zipf_records(2500, 11, countries=14, years=9)
    table = frequency_table(records, ["gender", "country", "year"])
    assert sum(spied) >= 3, "the sample should need several hypercubes for some cells"
    assert_protected(table, 10)
    assert check_suppression(table, 10).narrowed == ()
    primaries = {tuple(int(i) for i in c) for c in np.argwhere(table.status == 1)}
    assert not peel(table) & primaries


def test_a_large_3d_table_resists_differencing_and_the_checker() -> None:
    """The bench's table shape at a smaller size (citizenship x country x year, thousands of
    cells, hundreds of primary cells in batches of the vectorised search): the checker's
    bounds clear every primary cell and differencing recovers no hidden cell at all."""
    rng = np.random.default_rng(2021)

    def draw(size: int, exponent: float, n: int) -> np.ndarray:
        weights = 1.0 / np.arange(1, size + 1) ** exponent
        return rng.choice(size, size=n, p=weights / weights.sum())

    n = 15_000
    records = pd.DataFrame(
        {
            "citizenship": pd.array([f"A{i:03d}" for i in draw(24, 1.25, n)], "string"),
            "country": pd.array([f"B{i:03d}" for i in draw(20, 1.25, n)], "string"),
            "year": pd.array([str(2002 + i) for i in draw(10, 0.7, n)], "string"),
        }
    )
    table = frequency_table(records, ["citizenship", "country", "year"])
    assert table.primary > 200
    assert len(table.unprotected) <= 0.02 * table.primary
    # A cell the search reports unprotected got the most room it found; every other primary
    # cell must be free to reach 0 and the threshold.
    narrowed = {r.cell for r in check_suppression(table, 10).narrowed}
    assert narrowed <= set(table.unprotected)
    assert not peel(table)
    # The same attack does recover cells of the table with primary suppression alone.
    bare = frequency_table(records, ["citizenship", "country", "year"], secondary=False)
    assert peel(bare) & {tuple(int(i) for i in c) for c in np.argwhere(bare.status == 1)}
