"""Controlled rounding of safe tables, checked against exhaustive enumeration.

A controlled rounding to base b moves every cell and every margin to one of its two adjacent
multiples of b (a multiple stays) so that the rounded cells add up to the rounded margins in
every direction. For small tables every choice of rounding the inner cells up or down is tried
here, independently of the module, so a table the module refuses is proven to have no
controlled rounding, and one it rounds is checked cell by cell.
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from disclosure_control.sdc.tables import TOTAL, SafeTable, TableError, TablePolicy, frequency_table
from tests.sdc.conftest import zipf_records

IntArray = npt.NDArray[np.int64]
NAMES = ("a", "b", "c", "d")


def records_from_counts(counts: IntArray) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Return case records whose table over the first ``counts.ndim`` names is ``counts``."""
    names = NAMES[: counts.ndim]
    rows = [
        tuple(f"{name}{i}" for name, i in zip(names, cell, strict=True))
        for cell in np.ndindex(*counts.shape)
        for _ in range(int(counts[cell]))
    ]
    domains = {
        name: [f"{name}{i}" for i in range(s)] for name, s in zip(names, counts.shape, strict=True)
    }
    return pd.DataFrame(rows, columns=list(names), dtype="string"), domains


def margins(batch: IntArray) -> IntArray:
    """Return tables (first axis: one table each) with a trailing total on every other axis."""
    out = batch
    for axis in range(1, batch.ndim):
        out = np.concatenate([out, out.sum(axis=axis, keepdims=True)], axis=axis)
    return out


def all_controlled_roundings(counts: IntArray, base: int) -> IntArray:
    """Return every controlled rounding of the table (margins included), by enumeration."""
    residual = counts % base
    free = np.argwhere(residual > 0)
    choices = np.array(list(itertools.product((0, 1), repeat=len(free))), dtype=np.int64)
    batch = np.repeat((counts - residual)[None], len(choices), axis=0)
    for k, cell in enumerate(free):
        batch[(slice(None), *cell)] += base * choices[:, k]
    rounded = margins(batch)
    truth = margins(counts[None])
    adjacent = (np.abs(rounded - truth) < base).reshape(len(choices), -1).all(axis=1)
    kept: IntArray = rounded[adjacent]
    return kept


def rounded_grid(table: SafeTable) -> IntArray:
    """Return the published values of a table without suppression, margins included."""
    values = table.cells["value"]
    assert values.notna().all()
    return values.to_numpy(dtype=np.int64).reshape(table.values.shape)


def assert_controlled(grid: IntArray, truth: npt.NDArray[np.float64], base: int) -> None:
    """Every value an adjacent multiple, multiples kept, every line adding up to its total."""
    exact = truth.astype(np.int64)
    assert (grid % base == 0).all()
    assert (np.abs(grid - exact) < base).all()
    assert (grid[exact % base == 0] == exact[exact % base == 0]).all()
    for axis in range(grid.ndim):
        parts = np.take(grid, range(grid.shape[axis] - 1), axis=axis).sum(axis=axis)
        assert np.array_equal(parts, np.take(grid, grid.shape[axis] - 1, axis=axis))


# Shapes of at most 16 inner cells, so that enumerating every rounding stays cheap.
SHAPES = [(2, 2, 2), (2, 2, 3), (3, 2, 2), (2, 3, 2), (2, 2, 4), (2, 2, 2, 2), (3, 2, 2, 1)]


@settings(max_examples=60, deadline=None)
@given(
    shape=st.sampled_from(SHAPES),
    base=st.sampled_from([3, 5, 10]),
    data=st.data(),
)
def test_three_and_four_dimensional_tables_are_rounded_or_proven_unroundable(
    shape: tuple[int, ...], base: int, data: st.DataObject
) -> None:
    size = int(np.prod(shape))
    cells = data.draw(st.lists(st.integers(0, 3 * base), min_size=size, max_size=size))
    counts = np.array(cells, dtype=np.int64).reshape(shape)
    if counts.sum() == 0:
        return
    records, domains = records_from_counts(counts)
    names = list(NAMES[: len(shape)])
    possible = all_controlled_roundings(counts, base)
    policy = TablePolicy(threshold=1, rounding_base=base)
    if len(possible) == 0:
        dims = f"{len(shape)}-dimensional table ({' x '.join(map(str, shape))} categories)"
        with pytest.raises(TableError, match=rf"base {base} exists for this {re.escape(dims)}"):
            frequency_table(records, names, policy, domains)
        return
    table = frequency_table(records, names, policy, domains)
    grid = rounded_grid(table)
    assert_controlled(grid, table.values, base)
    assert any(np.array_equal(grid, option) for option in possible)


def three_cells_of_five(extra: tuple[int, ...] = ()) -> IntArray:
    """Return a 2 x 2 x 2 table (times ``extra``) with three cells of 5: no rounding to 10.

    Cells (0,0,0) and (0,1,1) are the only non-multiples of 10 in the plane a0, whose total 10
    is a multiple and stays: one of them goes to 10, the other to 0. So do (0,0,0) and (1,1,0)
    in plane c0, and (0,1,1) and (1,1,0) in plane b1. Three cells cannot each differ from both
    others. Further dimensions of one category change nothing.
    """
    counts = np.zeros((2, 2, 2, *extra), dtype=np.int64)
    for cell in [(0, 0, 0), (0, 1, 1), (1, 1, 0)]:
        counts[(*cell, *([0] * len(extra)))] = 5
    return counts


# Found by a random search; the enumeration in the test is the proof.
NO_ROUNDING_TO_THREE = [[[0, 1, 0], [2, 1, 0], [0, 1, 2]], [[2, 0, 0], [1, 0, 0], [0, 2, 0]]]


@pytest.mark.parametrize(
    ("counts", "base"),
    [
        (three_cells_of_five(), 10),
        (three_cells_of_five((1,)), 10),
        (np.array(NO_ROUNDING_TO_THREE, dtype=np.int64), 3),
    ],
)
def test_a_table_without_controlled_rounding_is_refused(counts: IntArray, base: int) -> None:
    assert len(all_controlled_roundings(counts, base)) == 0
    records, domains = records_from_counts(counts)
    names = list(NAMES[: counts.ndim])
    dims = f"{counts.ndim}-dimensional table ({' x '.join(map(str, counts.shape))} categories)"
    with pytest.raises(
        TableError,
        match=rf"no controlled rounding to base {base} exists for this {re.escape(dims)}",
    ):
        frequency_table(records, names, TablePolicy(threshold=1, rounding_base=base), domains)
    # Suppression does not rescue it: the whole table is rounded before cells are hidden.
    with pytest.raises(TableError, match="no controlled rounding"):
        frequency_table(records, names, TablePolicy(rounding_base=base), domains)


def test_the_refused_cube_rounds_to_a_base_its_cells_are_multiples_of() -> None:
    counts = three_cells_of_five()
    assert len(all_controlled_roundings(counts, 5)) == 1
    records, domains = records_from_counts(counts)
    table = frequency_table(
        records, ["a", "b", "c"], TablePolicy(threshold=1, rounding_base=5), domains
    )
    assert np.array_equal(rounded_grid(table), table.values.astype(np.int64))


def four_dimensional_records(n: int, seed: int) -> pd.DataFrame:
    """Return skewed case records with an age band beside gender, country and year."""
    records = zipf_records(n, seed, countries=6, years=5)
    rng = np.random.default_rng(seed + 1000)
    bands = np.array(["0-8", "9-17", "18-29", "30-47", "48+"], dtype=object)
    records["age"] = pd.array(bands[rng.integers(0, len(bands), n)], dtype="string")
    return records


@pytest.mark.parametrize(
    ("dimensions", "base"),
    [
        (["gender", "country", "year"], 3),
        (["gender", "country", "year"], 10),
        (["gender", "age", "country", "year"], 5),
        (["gender", "age", "country", "year"], 10),
    ],
)
def test_suppressed_cells_stay_marked_in_rounded_tables(dimensions: list[str], base: int) -> None:
    records = four_dimensional_records(3000, 11)
    full = frequency_table(records, dimensions, TablePolicy(threshold=1, rounding_base=base))
    grid = rounded_grid(full)
    assert_controlled(grid, full.values, base)
    # With suppression, the same rounding is published wherever a cell is published; the
    # suppression itself is the one of the unrounded table.
    rounded = frequency_table(records, dimensions, TablePolicy(rounding_base=base))
    plain = frequency_table(records, dimensions)
    assert rounded.primary > 0 and rounded.secondary > 0
    assert np.array_equal(rounded.status, plain.status)
    cells = rounded.cells
    hidden = cells["status"] != "published"
    assert cells.loc[hidden, "value"].isna().all()
    assert hidden.sum() == rounded.primary + rounded.secondary
    shown = cells.loc[~hidden].set_index(dimensions)["value"]
    everything = full.cells.set_index(dimensions)["value"]
    assert (shown == everything.loc[shown.index]).all()
    assert (shown % base == 0).all()


def test_unpublished_totals_stay_out_of_a_rounded_table() -> None:
    records = four_dimensional_records(2000, 12)
    dimensions = ["gender", "country", "year"]
    table = frequency_table(
        records, dimensions, TablePolicy(threshold=1, rounding_base=5), margins=False
    )
    cells = table.cells
    assert not cells[dimensions].isin([TOTAL]).any().any()
    assert (cells["value"].astype(int) % 5 == 0).all()


# Outputs of the maximum-flow rounding, recorded before the integer program was added: tables
# of one and two dimensions keep exactly the rounding they had.
ONE_DIMENSION = [27, 1, 17, 7, 26, 1]
TWO_DIMENSIONS = [
    [15, 12, 1, 21, 27],
    [15, 20, 15, 1, 2],
    [2, 25, 12, 0, 27],
    [28, 26, 15, 24, 19],
]


@pytest.mark.parametrize(
    ("counts", "base", "expected"),
    [
        (ONE_DIMENSION, 5, [30, 0, 15, 5, 25, 0, 75]),
        (
            TWO_DIMENSIONS,
            3,
            [
                [15, 12, 3, 21, 27, 78],
                [15, 21, 15, 0, 0, 51],
                [3, 24, 12, 0, 27, 66],
                [27, 24, 15, 24, 21, 111],
                [60, 81, 45, 45, 75, 306],
            ],
        ),
        (
            TWO_DIMENSIONS,
            10,
            [
                [20, 10, 0, 20, 30, 80],
                [20, 20, 10, 0, 0, 50],
                [0, 30, 10, 0, 20, 60],
                [20, 30, 20, 20, 20, 110],
                [60, 90, 40, 40, 70, 300],
            ],
        ),
    ],
)
def test_one_and_two_dimensional_rounding_is_unchanged(
    counts: list[int] | list[list[int]], base: int, expected: list[int] | list[list[int]]
) -> None:
    array = np.array(counts, dtype=np.int64)
    records, domains = records_from_counts(array)
    names = list(NAMES[: array.ndim])
    table = frequency_table(records, names, TablePolicy(threshold=1, rounding_base=base), domains)
    grid = rounded_grid(table)
    assert grid.tolist() == expected
    assert_controlled(grid, table.values, base)
