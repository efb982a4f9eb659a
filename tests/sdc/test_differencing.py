"""Differencing across tables: the attacks of issue 10 on the real CTDC file, and the checker
cross-checked against a plain linear program over every group, built without the module.

An intruder holds every published table (threshold 10, zeros published) and subtracts; each
attack is reproduced here by subtraction alone and confirmed against the records before the
checker is asked about it.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linprog

from disclosure_control.sdc.differencing import (
    OTHER,
    Tabulation,
    check_differencing,
    protect_against_differencing,
    tabulate,
)
from disclosure_control.sdc.tables import TOTAL, TableError, TablePolicy
from tests.sdc.conftest import zipf_records
from tests.sdc.test_rounding import records_from_counts

COUNTRY, YEAR, DEBT = "CountryOfExploitation", "yearOfRegistration", "meansOfControlDebtBondage"
DIMS = [COUNTRY, YEAR]


def published_grid(t: Tabulation) -> pd.DataFrame:
    """Return what a reader sees: the published values indexed by cell, NaN where hidden."""
    cells = t.table.cells
    return cells.set_index(list(t.table.dimensions))["value"].astype("Float64")


@pytest.fixture(scope="module")
def country_year(ctdc_records: pd.DataFrame) -> tuple[Tabulation, Tabulation]:
    """Country x year on all CTDC records, and the same table without debt-bondage cases."""
    everyone = tabulate(ctdc_records, DIMS)
    domains = dict(zip(DIMS, everyone.table.categories, strict=True))
    without = tabulate(ctdc_records, DIMS, drop={DEBT: ["1"]}, domains=domains)
    return everyone, without


def test_subtracting_the_table_without_debt_bondage_is_flagged(
    ctdc_records: pd.DataFrame, country_year: tuple[Tabulation, Tabulation]
) -> None:
    everyone, without = country_year
    # The attack: subtract every cell published in both tables, margins included.
    difference = (published_grid(everyone) - published_grid(without)).dropna()
    small = difference[(difference >= 1) & (difference <= 9)]
    assert len(small) == 30
    debt = ctdc_records[ctdc_records[DEBT] == "1"]
    expected = set()
    for (country, year), value in small.items():
        # Confirmed in the records: that many debt-bondage cases in the group.
        group = debt
        named = []
        if country != TOTAL:
            group = group[group[COUNTRY] == country]
            named.append(f"{COUNTRY}={country}")
        if year != TOTAL:
            group = group[group[YEAR] == year]
            named.append(f"{YEAR}={year}")
        assert len(group) == value
        expected.add(((*named, f"{DEBT}=1"), int(value)))
    report = check_differencing(without, [everyone], ctdc_records)
    assert not report.safe
    exact = {(r.cell, r.low) for r in report.recovered if r.exact and r.table is None}
    assert expected <= exact
    for r in report.recovered:
        assert 1 <= r.low <= r.value <= r.high <= 9
    # Published the other way round, the same counts fall out.
    assert not check_differencing(everyone, [without], ctdc_records).safe


def test_dropping_one_category_of_a_margin_is_flagged_and_protected(
    ctdc_records: pd.DataFrame, country_year: tuple[Tabulation, Tabulation]
) -> None:
    _, without = country_year
    categories = dict(zip(DIMS, without.table.categories, strict=True))
    years = [y for y in categories[YEAR] if y != "2018"]
    # The same table with the year 2018 dropped: each country's total loses its 2018 cell.
    dropped = tabulate(
        ctdc_records,
        DIMS,
        drop={DEBT: ["1"], YEAR: ["2018"]},
        domains={COUNTRY: categories[COUNTRY], YEAR: years},
    )
    full, part = published_grid(without), published_grid(dropped)
    margin = (full.xs(TOTAL, level=YEAR) - part.xs(TOTAL, level=YEAR)).dropna()
    recovered = margin[(margin >= 1) & (margin <= 9)]
    hidden = without.table.cells.set_index(DIMS)["status"]
    # Two counts suppressed in the first table fall out of the difference of the margins.
    assert len(recovered) == 2
    truth = ctdc_records[(ctdc_records[DEBT] != "1") & (ctdc_records[YEAR] == "2018")]
    for country, value in recovered.items():
        assert hidden[(country, "2018")] == "primary"
        assert (truth[COUNTRY] == country).sum() == value
    report = check_differencing(dropped, [without], ctdc_records)
    assert not report.safe
    found = {(r.cell, r.low, r.high) for r in report.recovered if r.table == 0}
    for country, value in recovered.items():
        assert ((country, "2018"), int(value), int(value)) in found
    # Suppressing further cells of the new table closes every leak, proven by a new check...
    safe, after = protect_against_differencing(dropped, [without], ctdc_records)
    assert after.safe and after.suppressed_further > 0
    assert isinstance(safe, Tabulation) and safe.drop == dropped.drop
    assert check_differencing(safe, [without], ctdc_records).safe
    # ... and the subtraction no longer gives a small count.
    again = (full.xs(TOTAL, level=YEAR) - published_grid(safe).xs(TOTAL, level=YEAR)).dropna()
    assert not ((again >= 1) & (again <= 9)).any()


def test_citizenship_by_country_beside_country_by_year_is_safe(
    ctdc_records: pd.DataFrame, country_year: tuple[Tabulation, Tabulation]
) -> None:
    everyone, without = country_year
    new = tabulate(ctdc_records, ["citizenship", COUNTRY])
    report = check_differencing(new, [everyone], ctdc_records)
    # Over 100,000 fine cells (citizenship x country x year), far beyond the old 20,000 limit.
    assert report.fine_cells > 100_000
    assert report.safe
    # Among the records without debt bondage small counts abound (27 suppressed cells), and
    # gender x year beside country x year leaves every one of them open: bounds are solved.
    beside = tabulate(ctdc_records, ["gender", YEAR], drop={DEBT: ["1"]})
    report = check_differencing(beside, [without], ctdc_records)
    assert without.table.primary + without.table.secondary == 27
    assert report.safe and report.programs >= 1


def test_a_margin_one_table_hides_and_another_publishes_is_flagged(
    ctdc_records: pd.DataFrame,
) -> None:
    # At threshold 30 citizenship x country is safe on its own: a primary cell alone in its
    # country column hides with the country's total. Country x year publishes that total, so
    # five suppressed cells come back exactly (each confirmed by a plain linear program too).
    policy = TablePolicy(threshold=30)
    country_year = tabulate(ctdc_records, DIMS, policy=policy)
    citizenship = tabulate(ctdc_records, ["citizenship", COUNTRY], policy=policy)
    assert check_differencing(citizenship, [], ctdc_records, threshold=30).safe
    report = check_differencing(citizenship, [country_year], ctdc_records, threshold=30)
    assert not report.safe
    truth = ctdc_records.groupby(["citizenship", COUNTRY]).size()
    for r in report.recovered:
        assert r.table == 1 and r.exact
        assert truth[r.cell] == r.value == r.low
    safe, after = protect_against_differencing(
        citizenship, [country_year], ctdc_records, threshold=30
    )
    assert after.safe and check_differencing(safe, [country_year], ctdc_records, 30).safe


def test_protecting_the_table_without_debt_bondage(
    ctdc_records: pd.DataFrame, country_year: tuple[Tabulation, Tabulation]
) -> None:
    everyone, without = country_year
    safe, report = protect_against_differencing(without, [everyone], ctdc_records)
    assert report.safe and report.suppressed_further >= 30
    assert check_differencing(safe, [everyone], ctdc_records).safe
    difference = (published_grid(everyone) - published_grid(safe)).dropna()
    assert not ((difference >= 1) & (difference <= 9)).any()


def test_a_wrong_population_is_refused_without_values(ctdc_records: pd.DataFrame) -> None:
    without = tabulate(ctdc_records, DIMS, drop={DEBT: ["1"]})
    claimed = Tabulation(without.table)  # says it counts everyone
    with pytest.raises(TableError, match=r"table 0 \(CountryOfExploitation x yearOf") as error:
        check_differencing(tabulate(ctdc_records, [COUNTRY]), [claimed], ctdc_records)
    assert "cells do not count the records" in str(error.value)
    assert not any(c in str(error.value) for c in ("PL", "2018"))
    with pytest.raises(TableError, match="filter field 'nope' is not a column"):
        tabulate(ctdc_records, DIMS, keep={"nope": ["1"]})
    stated = Tabulation(without.table, drop={"nope": frozenset({"1"})})
    with pytest.raises(TableError, match="field 'nope' of a table is not a column"):
        check_differencing(stated, [], ctdc_records)
    with pytest.raises(TableError, match=r"cross 203112 fine cells, more than the 20000"):
        check_differencing(
            tabulate(ctdc_records, ["citizenship", COUNTRY]),
            [without],
            ctdc_records,
            max_fine_cells=20_000,
        )


def test_protecting_leaves_the_given_table_as_it_was(ctdc_records: pd.DataFrame) -> None:
    everyone = tabulate(ctdc_records, DIMS)
    without = tabulate(ctdc_records, DIMS, drop={DEBT: ["1"]})
    before = without.table.cells.copy(), without.table.status.copy()
    protect_against_differencing(without, [everyone], ctdc_records)
    pd.testing.assert_frame_equal(without.table.cells, before[0])
    assert np.array_equal(without.table.status, before[1])


# --- cross-check against a plain linear program, built without the module -------------------


def brute_force(
    tables: list[Tabulation], records: pd.DataFrame, fields: list[str], threshold: int
) -> set[tuple[object, ...]]:
    """Return every small count the tables disclose, by two dense linear programs per group.

    Fine cells are every combination of the values the records take (each field has at most
    one value no table names, which plays the module's "other"); no presolve, no blocks.
    """
    values = {f: sorted(records[f].unique().tolist()) for f in fields}
    fine = pd.DataFrame(list(itertools.product(*values.values())), columns=fields)
    counts = (
        records.groupby(fields).size().reindex(pd.MultiIndex.from_frame(fine), fill_value=0)
    ).to_numpy(np.float64)
    rows, lower, upper = [], [], []
    groups: list[tuple[object, np.ndarray]] = []
    for k, t in enumerate(tables):
        population = np.ones(len(fine), dtype=bool)
        for f, v in t.keep.items():
            population &= fine[f].isin(v).to_numpy()
        for f, v in t.drop.items():
            population &= ~fine[f].isin(v).to_numpy()
        for d, cats in zip(t.table.dimensions, t.table.categories, strict=True):
            population &= fine[d].isin(cats).to_numpy()
        slack = (t.table.rounding_base or 1) - 1
        for row in t.table.cells.itertuples(index=False):
            cell = tuple(getattr(row, d) for d in t.table.dimensions)
            mask = population.copy()
            for d, c in zip(t.table.dimensions, cell, strict=True):
                if c != TOTAL:
                    mask &= (fine[d] == c).to_numpy()
            groups.append(((k, cell), mask))
            if row.status == "published":
                rows.append(mask.astype(float))
                lower.append(max(float(row.value) - slack, 0.0))
                upper.append(float(row.value) + slack)
    named = {f: set() for f in fields}
    for t in tables:
        for d, cats in zip(t.table.dimensions, t.table.categories, strict=True):
            named[d] |= set(cats)
        for f, v in (*t.keep.items(), *t.drop.items()):
            named[f] |= set(v)
    for choice in itertools.product(*([None, *values[f]] for f in fields)):
        mask = np.ones(len(fine), dtype=bool)
        name = []
        for f, v in zip(fields, choice, strict=True):
            if v is not None:
                mask &= (fine[f] == v).to_numpy()
                name.append(f"{f}={v if v in named[f] else OTHER}")
        groups.append((frozenset(name), mask))
    a = np.array(rows)
    ranged = np.array(lower) != np.array(upper)
    found = set()
    seen: set[bytes] = set()
    for name, mask in groups:
        value = float(counts @ mask)
        if not 1 <= value <= threshold - 1 or mask.tobytes() in seen:
            continue
        seen.add(mask.tobytes())
        bounds = []
        for sign in (1.0, -1.0):
            result = linprog(
                sign * mask.astype(float),
                A_ub=np.vstack([a[ranged], -a[ranged]]),
                b_ub=np.concatenate([np.array(upper)[ranged], -np.array(lower)[ranged]]),
                A_eq=a[~ranged],
                b_eq=np.array(lower)[~ranged],
                bounds=(0, None),
                method="highs",
            )
            assert result.status == 0
            bounds.append(sign * result.fun)
        low, high = math.ceil(bounds[0] - 1e-6), math.floor(bounds[1] + 1e-6)
        if low >= 1 and high <= threshold - 1:
            found.add((name, low, high))
    return found


@pytest.mark.parametrize(("seed", "base"), [(11, None), (12, None), (13, 3)])
def test_the_checker_agrees_with_a_plain_linear_program(seed: int, base: int | None) -> None:
    records = zipf_records(700, seed, countries=5, years=4)
    rng = np.random.default_rng(seed)
    records["flag"] = pd.array(np.where(rng.random(len(records)) < 0.15, "1", ""), "string")
    # With a base, the table without flagged records is rounded: subtraction gives ranges.
    rounded = TablePolicy(rounding_base=base)
    years = sorted(records["year"].unique())
    tables = [
        tabulate(records, ["country", "year"]),
        tabulate(records, ["country", "year"], drop={"flag": ["1"]}, policy=rounded),
        tabulate(records, ["gender", "country"], keep={"year": years[:2]}),
        tabulate(records, ["gender"], secondary=False),
    ]
    report = check_differencing(tables[-1], tables[:-1], records)
    expected = brute_force(tables, records, ["country", "year", "gender", "flag"], 10)
    got = {
        ((r.table, r.cell) if r.table is not None else frozenset(r.cell), r.low, r.high)
        for r in report.recovered
    }
    assert got == expected
    assert expected, "the combination should disclose something to compare"
    if base is not None:
        assert any(low < high for _, low, high in expected)


@pytest.mark.parametrize("seed", [21, 22, 23, 24])
def test_integer_bounds_match_every_table_the_margins_allow(seed: int) -> None:
    # Three two-way tables of a 2 x 2 x 2 classification, all published: the linear bounds of
    # a three-way table need not be integral, so ``integer=True`` is checked against every
    # integer table with the same margins, enumerated.
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 6, size=(2, 2, 2))
    records, _ = records_from_counts(counts)
    none = TablePolicy(threshold=1)
    tables = [tabulate(records, list(d), policy=none) for d in ("ab", "ac", "bc")]
    ab = counts.sum(axis=2)
    candidates = []
    for low_layer in itertools.product(*(range(int(n) + 1) for n in ab.ravel())):
        x = np.stack([np.reshape(low_layer, (2, 2)), ab - np.reshape(low_layer, (2, 2))], axis=2)
        if np.array_equal(x.sum(axis=1), counts.sum(axis=1)) and np.array_equal(
            x.sum(axis=0), counts.sum(axis=0)
        ):
            candidates.append(x)
    feasible = np.array(candidates)  # every integer table the margins allow
    dims = ("ab", "ac", "bc")
    expected = set()
    for choice in itertools.product((0, 1, None), repeat=3):
        index = tuple(slice(None) if c is None else c for c in choice)
        values = feasible[(slice(None), *index)].reshape(len(feasible), -1).sum(axis=1)
        truth = counts[index].sum()
        low, high = int(values.min()), int(values.max())
        if not (1 <= truth <= 9 and low >= 1 and high <= 9):
            continue
        fixed = {f: f"{f}{c}" for f, c in zip("abc", choice, strict=True) if c is not None}
        if len(fixed) == 3:  # a fine cell, in no table
            expected.add((frozenset(f"{f}={v}" for f, v in fixed.items()), low, high))
        else:  # the first table that shows the group names it
            k = next(k for k, d in enumerate(dims) if set(fixed) <= set(d))
            expected.add(((k, tuple(fixed.get(f, TOTAL) for f in dims[k])), low, high))
    assert expected, "the margins should pin something down to compare"
    report = check_differencing(tables[2], tables[:2], records, integer=True)
    got = {
        ((r.table, r.cell) if r.table is not None else frozenset(r.cell), r.low, r.high)
        for r in report.recovered
    }
    assert got == expected
    # The relaxation may miss a disclosure, never invent one.
    relaxed = check_differencing(tables[2], tables[:2], records)
    assert {(r.table, r.cell) for r in relaxed.recovered} <= {
        (r.table, r.cell) for r in report.recovered
    }
