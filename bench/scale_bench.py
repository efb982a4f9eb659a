"""How each cost grows with the data: every row beside its floor, at several sizes, with the
exponent of time against records.

Run: ``.venv/bin/python -m bench.scale_bench`` (``make bench BENCH=scale``); ``--sizes`` takes a
comma-separated list of record counts (default 1,000,000 and 5,000,000; 25,000,000 only when
asked, see below), ``--repeats R`` (median of R timed runs). Each size runs in a fresh process
(so one's memory and caches do not colour the next), which prints its figures as JSON; this
process prints them side by side.

Rows (the floor of each, in brackets):

- a fresh DP query over HTTP, ledger included (``bench.query_bench``'s 2-way count, each from a
  new researcher) [plain Polars grouping the same two columns typed as Enum];
- the first query after new uploads: the hub decrypts the batches, builds and types the
  snapshot, calibrates and answers [Polars reading the same batches: decrypting each,
  ``pl.read_parquet`` of the two columns the query reads, the same group-by; the hub reads every
  column of every batch into its snapshot]. The batches are sealed by the hub's own
  ``seal``/``encode_batch`` and written to the store directly, as ingest writes them, without
  going through ingest (whose cost is the upload bench's);
- a repeated query, re-served from the store [none: the aim is under 5 ms];
- the k=11 full-domain search of ``bench.sdc_bench`` on ``skewed_records(N)`` [one pandas
  group-by over the five quasi-identifiers];
- secondary suppression of citizenship x country x year of ``skewed_records(N)`` (459,921
  cells with margins) [the table's counts by one numpy bincount].

The peak memory printed is the size process's high-water mark, which on Linux may include
this launcher's (a few hundred megabytes) inherited at ``exec``: an upper bound.

The exponent of a row is the least-squares slope of log(time) on log(records) over the sizes
run: 1 is linear, below 1 is a fixed cost that the data has not yet outgrown.

25,000,000 records need about 10 GB in the bench process alone (every schema column generated,
a pandas and a Polars copy, the sealed batches) and, on 2 shared cores, an hour of suppression
and lattice search; ask for them with ``--sizes 1000000,5000000,25000000`` on a quiet machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from bench.query_bench import Hub, full_records
from bench.sdc_bench import CONFIG, FIVE_QIS, floor_groupby, skewed_records

#: The table of the suppression row: the issue's 460,000 cells with margins.
TABLE = ["citizenship", "CountryOfExploitation", "yearOfRegistration"]
ROWS = [
    ("query", "fresh DP query over HTTP, ledger included", "Polars group-by, Enum columns"),
    ("first", "first query after new uploads", "Polars reading the batches"),
    ("again", "repeated query (re-served)", "aim: under 5 ms"),
    ("search", "k=11 lattice search (precision)", "pandas group-by of the QIs"),
    ("suppress", "secondary suppression, 3-D table", "numpy bincount of the cells"),
]


#: The CPU seconds of this process (every thread: the hub's too) of each timed run, by the
#: wall-time list it goes with (the machine is shared: wall time alone says little).
CPU: dict[int, list[float]] = {}


def seconds(action: Callable[[], object], repeats: int) -> list[float]:
    """Return the wall time of each of ``repeats`` runs of ``action`` (CPU time in ``CPU``)."""
    out, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        action()
        out.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    CPU[id(out)] = cpu
    return out


def with_cpu(figures: dict[str, Any]) -> dict[str, Any]:
    """Return ``figures`` with the CPU times of each timed row beside it, as ``<row>_cpu``."""
    extra = {f"{k}_cpu": CPU[id(v)] for k, v in figures.items() if id(v) in CPU}
    return {**figures, **extra}


def seal_batches(hub: Hub, records: pd.DataFrame, parts: int) -> list[bytes]:
    """Store ``records`` as ``parts`` sealed batches of one partner; return their plaintexts.

    The batches are what ingest stores (``encode_batch`` then ``seal``, bound to the upload and
    partner), written in one transaction for the bench; ingest's validation is not run.
    """
    from hub.actors import OPERATOR
    from hub.crypto import associated_data, keyring, seal
    from hub.db import session_factory
    from hub.models import RecordBatch, Upload, new_id
    from hub.services import principals
    from hub.services.uploads import encode_batch

    plaintexts = []
    with hub.app.app_context(), session_factory(hub.app)() as session:
        organisation = principals.create_organisation(session, OPERATOR, "Bench partner")
        principal = principals.create_principal(
            session, OPERATOR, organisation.id, "bench partner", ["partner"]
        )
        ring = keyring(hub.app)
        for chunk in np.array_split(np.arange(len(records)), parts):
            part = records.iloc[chunk].reset_index(drop=True)
            plaintext = encode_batch(part)
            plaintexts.append(plaintext)
            upload_id = new_id()
            sealed = seal(ring, plaintext, associated_data(upload_id, organisation.id))
            session.add(
                Upload(
                    id=upload_id,
                    organisation_id=organisation.id,
                    principal_id=principal.id,
                    sha256=hashlib.sha256(plaintext).hexdigest(),
                    idempotency_key=None,
                    media_type="text/csv",
                    size_bytes=len(plaintext),
                    rows_total=len(part),
                    rows_accepted=len(part),
                    rows_rejected=0,
                    accept_valid=False,
                    report={},
                )
            )
            session.flush()
            session.add(
                RecordBatch(
                    upload_id=upload_id,
                    row_count=len(part),
                    key_id=sealed.key_id,
                    wrapped_key=sealed.wrapped_key,
                    nonce=sealed.nonce,
                    ciphertext=sealed.ciphertext,
                )
            )
        session.commit()
    return plaintexts


def query_rows(n: int, repeats: int) -> dict[str, Any]:
    """Time the three query rows and their floors on ``n`` generated records."""
    from hub.crypto import keyring, open_batch
    from hub.db import session_factory
    from hub.models import RecordBatch
    from hub.services.snapshot import live_batches

    out: dict[str, Any] = {}
    records = full_records(n)
    typed = pl.from_pandas(records[["gender", "ageBroad"]]).with_columns(
        pl.col(c).cast(pl.Enum(sorted(set(records[c].dropna())))) for c in ("gender", "ageBroad")
    )
    group = typed.lazy().group_by("gender", "ageBroad").len()
    group.collect()
    out["query_floor"] = seconds(group.collect, repeats)
    with tempfile.TemporaryDirectory(prefix="ctdhub-scale-bench-") as folder:
        hub = Hub(Path(folder))
        try:
            seal_batches(hub, records, parts=10)
            del records
            researchers = [hub.headers(["researcher"]) for _ in range(repeats + 1)]
            out["first"] = seconds(lambda: hub.query(researchers[0], 201), 1)
            fresh = iter(researchers[1:])
            out["query"] = seconds(lambda: hub.query(next(fresh), 201), repeats)
            out["again"] = seconds(lambda: hub.query(researchers[0], 200), repeats)

            def read_batches() -> None:
                from hub.crypto import SealedBatch, associated_data

                with hub.app.app_context(), session_factory(hub.app)() as session:
                    ring = keyring(hub.app)
                    frames = []
                    for batch_id, organisation_id in live_batches(session):
                        batch = session.get_one(RecordBatch, batch_id)
                        plaintext = open_batch(
                            ring,
                            SealedBatch(
                                ciphertext=batch.ciphertext or b"",
                                nonce=batch.nonce,
                                wrapped_key=batch.wrapped_key or b"",
                                key_id=batch.key_id,
                            ),
                            associated_data(batch.upload_id, organisation_id),
                        )
                        frames.append(pl.read_parquet(plaintext, columns=["gender", "ageBroad"]))
                    pl.concat(frames).lazy().group_by("gender", "ageBroad").len().collect()

            out["first_floor"] = seconds(read_batches, repeats)
        finally:
            hub.close()
    return out


def sdc_rows(n: int, repeats: int) -> dict[str, Any]:
    """Time the lattice search and the secondary suppression, with their floors."""
    from disclosure_control.sdc import PrivacyModel, anonymise, frequency_table, load_hierarchies

    out: dict[str, Any] = {}
    frame = skewed_records(n)
    hierarchies = load_hierarchies(CONFIG / "hierarchies")
    out["search_floor"] = seconds(lambda: floor_groupby(frame, FIVE_QIS), repeats)
    out["search"] = seconds(
        lambda: anonymise(frame, FIVE_QIS, hierarchies, PrivacyModel(k=11), metric="precision"),
        repeats,
    )

    def bincount() -> None:
        codes = [pd.factorize(frame[d])[0] for d in TABLE]
        shape = tuple(int(c.max()) + 1 for c in codes)
        np.bincount(np.ravel_multi_index(tuple(codes), shape), minlength=math.prod(shape))

    out["suppress_floor"] = seconds(bincount, repeats)
    table = None

    def suppress() -> None:
        nonlocal table
        table = frequency_table(frame, TABLE)

    out["suppress"] = seconds(suppress, 1)
    if table is not None:
        out["suppress_cells"] = {
            "cells": int(table.values.size),
            "primary": table.primary,
            "secondary": table.secondary,
            "unprotected": len(table.unprotected),
        }
    return out


def one_size(n: int, repeats: int) -> dict[str, Any]:
    """Run every row at ``n`` records; return the figures and this process's peak memory."""
    out = {"records": n, **with_cpu(query_rows(n, repeats)), **with_cpu(sdc_rows(n, repeats))}
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return out


def exponent(sizes: list[int], times: list[float]) -> float | None:
    """Return the least-squares slope of log(time) on log(records), or ``None`` for one size."""
    if len(sizes) < 2:
        return None
    x, y = np.log(np.array(sizes, float)), np.log(np.array(times, float))
    return float(np.polyfit(x, y, 1)[0])


def report(results: list[dict[str, Any]]) -> None:
    """Print every row at every size beside its floor, and the exponents."""
    sizes = [r["records"] for r in results]
    print(
        "\nmedian wall time (min-max), median CPU time, ratios to the floor; sizes "
        f"{[f'{s:,}' for s in sizes]}"
    )
    for key, label, floor_label in ROWS:
        print(f"\n  {label}  [floor: {floor_label}]")
        medians, floors = [], []
        for r in results:
            times = r[key]
            m = statistics.median(times)
            medians.append(m)
            line = f"    {r['records']:>12,}  {m * 1000:10.1f} ms ({min(times) * 1000:.1f}-"
            line += f"{max(times) * 1000:.1f}, {len(times)} runs)"
            cpu = r.get(f"{key}_cpu")
            if cpu:
                line += f" cpu {statistics.median(cpu) * 1000:.1f} ms"
            if f"{key}_floor" in r:
                f = statistics.median(r[f"{key}_floor"])
                floors.append(f)
                line += f"   floor {f * 1000:9.1f} ms   x{m / f:.2f}"
                floor_cpu = r.get(f"{key}_floor_cpu")
                if cpu and floor_cpu:
                    ratio = statistics.median(cpu) / max(statistics.median(floor_cpu), 1e-9)
                    line += f" (cpu {statistics.median(floor_cpu) * 1000:.1f} ms, x{ratio:.2f})"
            if key == "suppress" and "suppress_cells" in r:
                line += f"   {r['suppress_cells']}"
            print(line)
        slope = exponent(sizes, medians)
        if slope is not None:
            floor_slope = exponent(sizes, floors) if floors else None
            shown = f"{floor_slope:.2f}" if floor_slope is not None else "-"
            print(f"    time ~ records^{slope:.2f}  (floor ~ records^{shown})")
    for r in results:
        print(f"  peak memory of the {r['records']:,}-record process: {r['peak_rss_gb']:.2f} GB")


def main(argv: list[str] | None = None) -> int:
    """Run each size in its own process and print the rows side by side."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="1000000,5000000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one_size(args.one, args.repeats)))
        return 0
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        print(f"running {n:,} records ...", flush=True)
        done = subprocess.run(  # noqa: S603 - this interpreter, this module
            [
                sys.executable,
                "-m",
                "bench.scale_bench",
                "--one",
                str(n),
                "--repeats",
                str(args.repeats),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            print(f"  {n:,} records failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    if results:
        report(results)
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
