"""Benchmark a DP 2-way grouped count against plain Polars on the same records, same run.

Run: ``.venv/bin/python -m bench.dp_bench`` (``--help`` for options). Prints medians and ratios
for 1,000,000 generated case records and for the CTDC file. Records stay in memory throughout
(``tmpfs`` mode writes its Arrow image to RAM-backed /dev/shm and removes it).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from disclosure_control.dp import (
    Field,
    Measure,
    QuerySpec,
    Snapshot,
    SpendRequest,
    plan_query,
    release,
)

CTDC = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ctdc"
CTDC_FILE = CTDC / "ctdc_global_kanon_2021.csv"
GENDERS = ("Female", "Male", "Transgender/NonConforming")
AGES = ("0--8", "9--17", "18--20", "21--23", "24--26", "27--29", "30--38", "39--47", "48+")
SCHEMA = {
    "gender": Field("gender", "string", GENDERS),
    "ageBroad": Field("ageBroad", "string", AGES),
}
SPEC = QuerySpec(Measure("count"), SpendRequest(rho=0.1), ("gender", "ageBroad"))


def generated_records(size: int, seed: int = 5) -> pl.DataFrame:
    """Return ``size`` CTDC-like records as decrypted strings, about 10% missing per field."""
    rng = np.random.default_rng(seed)
    genders = pl.Series([*GENDERS, None], dtype=pl.String)
    ages = pl.Series([*AGES, None], dtype=pl.String)
    gender_weights = np.array([0.6, 0.28, 0.02, 0.1])
    age_weights = np.r_[np.full(len(AGES), 0.9 / len(AGES)), 0.1]
    return pl.DataFrame(
        {
            "gender": genders.gather(rng.choice(len(genders), size, p=gender_weights)),
            "ageBroad": ages.gather(rng.choice(len(ages), size, p=age_weights)),
        }
    )


def median_seconds(action: Callable[[], object], repeats: int) -> float:
    """Return the median wall time of ``action`` over ``repeats`` runs, after one warm-up."""
    action()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(label: str, records: pl.DataFrame, repeats: int) -> None:
    """Print the medians of plain Polars and of the DP release paths on ``records``."""
    start = time.perf_counter()
    snapshot = Snapshot(records, SCHEMA)
    typed_seconds = time.perf_counter() - start
    start = time.perf_counter()
    shm = Snapshot(records, SCHEMA, spill="tmpfs")
    shm_seconds = time.perf_counter() - start
    try:
        plain_raw = median_seconds(
            lambda: records.lazy().group_by("gender", "ageBroad").len().collect(), repeats
        )
        plain_typed = median_seconds(
            lambda: snapshot.frame.lazy().group_by("gender", "ageBroad").len().collect(), repeats
        )
        memory = median_seconds(lambda: release(plan_query(SPEC, SCHEMA), snapshot), repeats)
        tmpfs = median_seconds(lambda: release(plan_query(SPEC, SCHEMA), shm), repeats)
    finally:
        shm.close()
    floor = plain_raw
    typed_ratio = plain_typed / floor
    print(
        f"\n{label}: {records.height:,} records, 2-way count gender x ageBroad, median of {repeats}"
    )
    print(
        f"  one-off: type the snapshot {typed_seconds:.3f} s; with tmpfs image {shm_seconds:.3f} s"
    )
    print(f"  plain Polars, decrypted string frame    {plain_raw:8.4f} s  (floor)")
    print(f"  plain Polars, typed snapshot frame      {plain_typed:8.4f} s  x{typed_ratio:.2f}")
    print(f"  DP release, in-memory snapshot          {memory:8.4f} s  x{memory / floor:.2f}")
    print(f"  DP release, tmpfs Arrow image           {tmpfs:8.4f} s  x{tmpfs / floor:.2f}")


def main() -> None:
    """Parse options and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="generated records")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per path")
    parser.add_argument("--no-ctdc", action="store_true", help="skip the CTDC file")
    options = parser.parse_args()

    start = time.perf_counter()
    plan_query(SPEC, SCHEMA)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    plan_query(SPEC, SCHEMA)
    warm = time.perf_counter() - start
    print(f"plan (calibration) cold {cold * 1000:.1f} ms, cached {warm * 1e6:.1f} us")

    measure("generated", generated_records(options.records), options.repeats)
    if not options.no_ctdc:
        ctdc = pd.read_csv(
            CTDC_FILE, dtype="string", keep_default_na=False, usecols=["gender", "ageBroad"]
        )
        # Partner files mark missing as an empty field; plain Polars sees the same nulls.
        frame = pl.from_pandas(ctdc).with_columns(
            pl.when(pl.col(name) == "").then(None).otherwise(pl.col(name)).alias(name)
            for name in ("gender", "ageBroad")
        )
        measure("CTDC 2021", frame, options.repeats)


if __name__ == "__main__":
    main()
