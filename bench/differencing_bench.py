"""Benchmark the differencing check on the whole CTDC file, against the plain linear program.

Run as ``python -m bench.differencing_bench`` (``make bench BENCH=differencing``). Options:
``--repeats R`` (median of R runs, default 3), ``--sample S`` (counts the plain program bounds,
default 12).

The cases are the issue's: citizenship x country beside country x year on all records (about
100,000 fine cells: citizenship x country x year), at the threshold of 10 and at 30 and 100,
where suppression and small counts abound and the bounds need solving; and country x year
beside the same table without debt-bondage cases (the subtraction attack), checked and then
protected.

Citizenship x country beside age x year (1,015,560 fine cells) shows how it scales; the plain
program is not run there.

The peer is the plain way to bound the same counts: one program to minimise and one to
maximise each small count over every fine cell, with every published cell an equation (no
presolve, no blocks, no batches; the cross-check in ``tests/sdc/test_differencing.py``). It is
timed on ``--sample`` of the counts and extrapolated to all of them, and so labelled.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linprog
from scipy.sparse import csr_array, vstack

from bench.sdc_bench import timed
from disclosure_control.sdc.differencing import (
    Tabulation,
    _atoms,
    _fine_counts,
    _inner_of_fine,
    _margin_map,
    _targets,
    check_differencing,
    protect_against_differencing,
    tabulate,
)
from disclosure_control.sdc.tables import TablePolicy

ROOT = Path(__file__).resolve().parents[1]
CTDC = ROOT / ".." / "shared" / "data" / "ctdc" / "ctdc_global_kanon_2021.csv"
COUNTRY, YEAR, DEBT = "CountryOfExploitation", "yearOfRegistration", "meansOfControlDebtBondage"


def plain_program(
    tables: list[Tabulation], records: pd.DataFrame, threshold: int, sample: int
) -> tuple[int, float]:
    """Return how many counts need bounds, and the plain way's seconds per count (two dense
    programs over every fine cell), measured on ``sample`` of them spread evenly."""
    atoms = _atoms(tables, records)
    n_fine = math.prod(atoms.shape)
    counts = _fine_counts(records, atoms)
    rows, values, cell_maps = [], [], []
    covered = np.zeros(n_fine, dtype=np.bool_)
    for t in tables:
        inner_of_fine = _inner_of_fine(t, atoms)
        inside = np.flatnonzero(inner_of_fine >= 0)
        covered[inside] = True
        n_inner = math.prod(len(c) for c in t.table.categories)
        to_fine = csr_array(
            (np.ones(inside.size), (inner_of_fine[inside], inside)), shape=(n_inner, n_fine)
        )
        cells = (_margin_map(t.table.categories) @ to_fine).tocsr()
        cell_maps.append(cells)
        published = np.flatnonzero(t.table.status.ravel() == 0)
        rows.append(cells[published])
        values.append(t.table.values.ravel()[published])
    a_eq, b_eq = vstack(rows).tocsr(), np.concatenate(values)
    targets = _targets(tables, cell_maps, atoms, np.where(covered, counts, 0.0), threshold)
    n = targets.rows.shape[0]
    if n == 0:
        return 0, 0.0
    picks = np.unique(np.linspace(0, n - 1, min(sample, n)).astype(np.int64))
    start = time.perf_counter()
    for i in picks.tolist():
        objective = targets.rows[[i]].toarray().ravel()
        for sign in (1.0, -1.0):
            result = linprog(
                sign * objective, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs"
            )
            if result.status != 0:
                raise RuntimeError(f"the plain program failed: {result.message}")
    return n, (time.perf_counter() - start) / len(picks)


def case(
    label: str,
    new: Tabulation,
    published: list[Tabulation],
    records: pd.DataFrame,
    threshold: int,
    repeats: int,
    sample: int,
) -> None:
    """Time one check and the plain program on the same tables; print both and the ratio
    (``sample`` 0: ours alone)."""
    seconds, report = timed(lambda: check_differencing(new, published, records, threshold), repeats)
    if sample == 0:
        verdict = "safe" if report.safe else f"{len(report.recovered)} counts disclosed"
        print(f"{label} (threshold {threshold})")
        print(
            f"  ours   {seconds:8.2f} s  {report.fine_cells:,} fine cells, "
            f"{report.programs} programs; {verdict} (the plain program: not run at this size)"
        )
        return
    n, per_count = plain_program([*published, new], records, threshold, sample)
    plain = n * per_count
    verdict = "safe" if report.safe else f"{len(report.recovered)} counts disclosed"
    print(f"{label} (threshold {threshold})")
    print(
        f"  ours   {seconds:8.2f} s  {report.fine_cells:,} fine cells, {n} small counts, "
        f"{report.programs} programs; {verdict}"
    )
    if n:
        print(
            f"  plain  {plain:8.2f} s  (extrapolated: {per_count:.3f} s per count x {n}, "
            f"timed on {min(sample, n)})   ratio plain/ours {plain / seconds:6.1f}"
        )
    else:
        print("  plain      0.00 s  (no count to bound)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sample", type=int, default=12)
    args = parser.parse_args(argv)
    records = pd.read_csv(CTDC, dtype="string", keep_default_na=False)
    print(f"CTDC global k-anonymised file: {len(records):,} records")
    for threshold in (10, 30, 100):
        policy = TablePolicy(threshold=threshold)
        start = time.perf_counter()
        country_year = tabulate(records, [COUNTRY, YEAR], policy=policy)
        citizenship = tabulate(records, ["citizenship", COUNTRY], policy=policy)
        built = time.perf_counter() - start
        print(f"\n(both tables built and suppressed in {built:.2f} s)")
        case(
            "citizenship x country beside country x year",
            citizenship,
            [country_year],
            records,
            threshold,
            args.repeats,
            args.sample,
        )
    print()
    for threshold in (10, 30):
        policy = TablePolicy(threshold=threshold)
        case(
            "citizenship x country beside age x year",
            tabulate(records, ["citizenship", COUNTRY], policy=policy),
            [tabulate(records, ["ageBroad", YEAR], policy=policy)],
            records,
            threshold,
            args.repeats,
            0,
        )
    everyone = tabulate(records, [COUNTRY, YEAR])
    domains = dict(zip([COUNTRY, YEAR], everyone.table.categories, strict=True))
    without = tabulate(records, [COUNTRY, YEAR], drop={DEBT: ["1"]}, domains=domains)
    print()
    case(
        "country x year without debt bondage beside country x year",
        without,
        [everyone],
        records,
        10,
        args.repeats,
        args.sample,
    )
    seconds, (_, report) = timed(
        lambda: protect_against_differencing(without, [everyone], records), 1
    )
    print(
        f"  protect {seconds:7.2f} s  {report.suppressed_further} cells suppressed further, "
        f"then safe={report.safe}"
    )


if __name__ == "__main__":
    main()
