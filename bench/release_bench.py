"""Benchmark a full release candidate's build against the library calls it is made of.

``make bench BENCH=release``: the 97,750 CTDC records, normalised as an upload is, built into a
candidate under the default policy by the hub's own build (:func:`hub.services.releases`'s
artefacts, checks and files, stage by stage) and, as the floor, by the same library calls made
directly in one process (anonymise, the safe tables, the DP tables, the synthesizer's fit, draw
and evaluation, the policy checks, the files). Each side runs in a process of its own, so its
wall time and peak resident memory are its own. Target: the hub within 1.5x of the floor, and
under 2 GB.

    .venv/bin/python -m bench.release_bench [--records N]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CTDC_FILE = ROOT / ".." / "shared" / "data" / "ctdc" / "ctdc_global_kanon_2021.csv"
TARGET_RATIO = 1.5
TARGET_BYTES = 2 * 1024**3
#: The stages in the order the build runs them.
STAGES = (
    "prepare",
    "microdata",
    "safe tables",
    "dp tables",
    "measure",
    "draw and evaluate",
    "checks",
    "write files",
)


def _records(limit: int) -> Any:
    """Return the CTDC records normalised as the hub stores them (case numbers pseudonymised)."""
    import pandas as pd

    from contributors.normalise import validate_records
    from contributors.pseudonym import pseudonymise_column

    frame = pd.read_csv(CTDC_FILE, dtype="string", keep_default_na=False)
    if limit:
        frame = frame.iloc[:limit]
    frame["caseNo"] = pseudonymise_column(
        frame["caseNo"], "bench-only pseudonym key, never used for real data"
    )
    return validate_records(frame).records.reset_index(drop=True)


def _policy() -> Any:
    from hub.services.policies import DEFAULT_POLICY, ActivePolicy, digest, record_fields
    from policies import load_policy

    text = DEFAULT_POLICY.read_text("utf-8")
    return ActivePolicy(1, load_policy(text, record_fields()), digest(text), "bench", text)


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Clock:
    """Wall-clock and CPU seconds per stage (CPU: this process's, every thread's).

    The machine may be shared: the wall clock counts other people's work too, the CPU clock
    only this process's, so the CPU ratio is the one a quiet machine would show.
    """

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._wall0 = time.perf_counter()
        self._cpu0 = time.process_time()
        self._mark = (self._wall0, self._cpu0)

    def lap(self, stage: str) -> None:
        """Charge the time since the last lap to ``stage``."""
        wall, cpu = time.perf_counter(), time.process_time()
        self.wall[stage] = self.wall.get(stage, 0.0) + wall - self._mark[0]
        self.cpu[stage] = self.cpu.get(stage, 0.0) + cpu - self._mark[1]
        self._mark = (wall, cpu)

    def result(self, **extra: Any) -> dict[str, Any]:
        """Return the totals, the stages and the peak memory as JSON data."""
        return {
            "seconds": time.perf_counter() - self._wall0,
            "cpu_seconds": time.process_time() - self._cpu0,
            "stages": self.wall,
            "cpu_stages": self.cpu,
            "peak_bytes": _peak_bytes(),
            **extra,
        }


def run_hub(limit: int) -> dict[str, Any]:
    """Build the candidate the hub's way; return each stage's seconds and the peak memory."""
    import pandas as pd

    from contributors.schema import load_schema
    from disclosure_control.dp import PrivacySpend
    from hub.services.publication import write_candidate_files
    from hub.services.releases import _build_artefacts, _plans
    from hub.services.snapshot import Snapshot

    records = _records(limit)
    policy = _policy()
    clock = Clock()
    # The build reports a stage when it starts it: the time before a report belongs to the
    # stage reported before it ("prepare": formatting the records, before the first one).
    current = ["prepare"]

    def progress(stage: str, done: int, total: int) -> None:
        if stage != current[0]:
            clock.lap(current[0])
            current[0] = stage

    snapshot = Snapshot("bench", ("bench",), records)
    batches = pd.Series(["bench"] * len(records), dtype="string")
    plans = _plans(policy.policy, load_schema())
    built = _build_artefacts(
        snapshot, batches, policy.policy, plans, [], PrivacySpend(0.0), 2021, progress
    )
    clock.lap(current[0])
    with tempfile.TemporaryDirectory() as directory:
        write_candidate_files(Path(directory), built)
        clock.lap("write files")
    return clock.result(passed=built.checks.passed)


#: What the published CSV and XLSX files write before a text cell that a spreadsheet would run.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _write_floor_files(directory: Path, stem: str, frame: Any) -> None:
    """Write ``frame`` as the hub publishes it, by the same libraries called directly: pandas
    for the neutralised CSV and the Parquet file, XlsxWriter (constant memory) for the XLSX."""
    import pandas as pd
    import xlsxwriter

    (directory / stem).parent.mkdir(parents=True, exist_ok=True)
    safe = frame.copy(deep=False)
    for name in frame.columns:
        if not (
            pd.api.types.is_numeric_dtype(frame[name]) or pd.api.types.is_bool_dtype(frame[name])
        ):
            text = frame[name].astype("string")
            risky = text.str.startswith(_FORMULA_STARTS, na=False)
            safe[name] = text.where(~risky, "'" + text)
    safe.to_csv(directory / f"{stem}.csv", index=False, lineterminator="\r\n")
    options = {"constant_memory": True, "strings_to_formulas": False, "strings_to_urls": False}
    book = xlsxwriter.Workbook(str(directory / f"{stem}.xlsx"), options)
    sheet = book.add_worksheet(Path(stem).name[:31])
    sheet.write_row(0, 0, list(safe.columns))
    columns = [safe[name].to_numpy(dtype=object, na_value=None) for name in safe.columns]
    for row, values in enumerate(zip(*columns, strict=True), start=1):
        sheet.write_row(row, 0, values)
    book.close()
    frame.to_parquet(directory / f"{stem}.parquet", index=False)


def run_floor(limit: int) -> dict[str, Any]:
    """Make the same artefacts and files by calling the libraries directly, timing each call."""
    import pandas as pd

    from contributors.normalise import format_records
    from contributors.schema import load_schema
    from disclosure_control.dp import (
        Measure,
        PrivacySpend,
        QuerySpec,
        SpendRequest,
        plan_query,
        release,
    )
    from disclosure_control.dp import Snapshot as DPSnapshot
    from disclosure_control.evaluate import evaluate_release
    from disclosure_control.sdc import anonymise, frequency_table, load_hierarchies
    from disclosure_control.sdc.hierarchies import with_derived_attributes
    from disclosure_control.synth import BudgetShares, MarginalSynthesizer
    from hub.services.queries import query_schema
    from hub.services.releases import HIERARCHIES, synthesis_domain
    from policies import check_candidate

    records = _records(limit)
    rules = _policy().policy
    schema = load_schema()
    clock = Clock()
    coded = with_derived_attributes(format_records(records), schema.as_dict())
    clock.lap("prepare")
    micro = rules.microdata
    qis = list(micro.quasi_identifiers)
    sensitive = list(micro.l_diversity.attributes) if micro.l_diversity else []
    anonymised = anonymise(
        coded[[*qis, *sensitive]],
        qis,
        load_hierarchies(HIERARCHIES),
        micro.privacy_model(),
        risk_threshold=micro.record_risk.threshold,
    )
    clock.lap("microdata")
    table_policy = rules.tables.table_policy()
    safe = {
        t.name: frequency_table(coded, list(t.dimensions), table_policy)
        for t in rules.tables.frequency_tables
    }
    clock.lap("safe tables")
    dp_schema = dict(query_schema())
    dp_records = records.assign(exploitationType=coded["exploitationType"].to_numpy())
    dp_tables = {}
    with DPSnapshot(dp_records, dp_schema, missing_values=schema.missing_values) as data:
        for table in rules.release.dp_tables:
            spec = QuerySpec(Measure("count"), SpendRequest(rho=table.rho), group_by=table.group_by)
            plan = plan_query(
                spec, dp_schema, rho_range=(table.rho / 2, 2.0), unit=rules.privacy.privacy_unit
            )
            dp_tables[table.name] = release(plan, data, nonnegative_counts=True)
    clock.lap("dp tables")
    settings = rules.release.synthetic
    assert settings is not None
    domain = synthesis_domain(schema, settings.columns)
    synthesizer = MarginalSynthesizer(
        domain,
        settings.rho,
        delta=rules.privacy.display_delta,
        shares=BudgetShares(**settings.shares.model_dump()),
        max_cells=settings.max_cells,
        max_parents=settings.max_parents,
        records_per_person=rules.privacy.records_per_person,
    )
    training = coded[list(domain.columns)].sample(frac=1 - settings.holdout, random_state=2021)
    control = coded[list(domain.columns)].drop(training.index)
    model = synthesizer.fit(training.reset_index(drop=True))
    clock.lap("measure")
    synthetic = model.sample(settings.records, 2021)
    evaluate_release(
        training.reset_index(drop=True),
        synthetic,
        control.reset_index(drop=True),
        n_attacks=200,
        seed=2021,
    )
    clock.lap("draw and evaluate")
    check_candidate(
        rules,
        microdata=anonymised.data,
        tables=safe,
        charged=rules.release.spends(),
        spent_before=PrivacySpend(0.0),
        records=coded,
    )
    clock.lap("checks")
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        _write_floor_files(directory, "microdata", anonymised.data)
        for table_name, table in safe.items():
            cells = table.cells
            frame = cells[list(table.dimensions)].astype("string")
            frame["count"] = cells["value"]
            frame["status"] = cells["status"].astype("string")
            _write_floor_files(directory, f"tables/{table_name}", frame)
        for table_name, answer in dp_tables.items():
            frame = pd.DataFrame(
                [
                    [*(str(k) for k in cell.key), cell.value, *(cell.interval or (None, None))]
                    for cell in answer.cells
                ],
                columns=[*answer.group_by, "count", "lower_95", "upper_95"],
            )
            _write_floor_files(directory, f"dp/{table_name}", frame)
        _write_floor_files(directory, "synthetic", synthetic)
        clock.lap("write files")
    return clock.result()


def _child(side: str, limit: int) -> dict[str, Any]:
    output = subprocess.run(  # noqa: S603 - this very module, in a fresh process
        [sys.executable, "-m", "bench.release_bench", "--side", side, "--records", str(limit)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    """Run both sides in their own processes and print the figures side by side."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=0, help="first N records (0: all)")
    parser.add_argument("--side", choices=("hub", "floor"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side is not None:
        result = run_hub(args.records) if args.side == "hub" else run_floor(args.records)
        print(json.dumps(result))
        return 0
    hub = _child("hub", args.records)
    floor = _child("floor", args.records)
    records = args.records or "all"
    print(f"release candidate of the CTDC file ({records} records), default policy")
    print(f"checks passed: {hub['passed']}")
    print(
        f"{'stage':<20} {'hub s':>8} {'floor s':>8} {'hub cpu':>8} {'floor cpu':>9} {'over cpu':>8}"
    )
    names = [s for s in STAGES if s in hub["stages"] or s in floor["stages"]]
    names += sorted((set(hub["stages"]) | set(floor["stages"])) - set(names))
    for stage in names:
        mine, theirs = hub["stages"].get(stage, 0.0), floor["stages"].get(stage, 0.0)
        mine_cpu, theirs_cpu = (
            hub["cpu_stages"].get(stage, 0.0),
            floor["cpu_stages"].get(stage, 0.0),
        )
        print(
            f"{stage:<20} {mine:8.1f} {theirs:8.1f} {mine_cpu:8.1f} {theirs_cpu:9.1f}"
            f" {mine_cpu - theirs_cpu:+8.1f}"
        )
    ratio = hub["seconds"] / floor["seconds"]
    cpu_ratio = hub["cpu_seconds"] / floor["cpu_seconds"]
    print(
        f"{'total':<20} {hub['seconds']:8.1f} {floor['seconds']:8.1f}"
        f" {hub['cpu_seconds']:8.1f} {floor['cpu_seconds']:9.1f}"
        f" {hub['cpu_seconds'] - floor['cpu_seconds']:+8.1f}"
    )
    print(f"ratio hub / floor: wall {ratio:.2f}x, CPU {cpu_ratio:.2f}x (target <= {TARGET_RATIO}x)")
    print(
        f"peak memory: hub {hub['peak_bytes'] / 1024**2:.0f} MiB, floor "
        f"{floor['peak_bytes'] / 1024**2:.0f} MiB (target under {TARGET_BYTES / 1024**3:.0f} GiB)"
    )
    # What stands in the way: the hub's CPU over the floor's, stage by stage (largest first),
    # and the floor's heaviest stage, which is the libraries' own cost and bounds the aim.
    excess = {s: hub["cpu_stages"].get(s, 0.0) - floor["cpu_stages"].get(s, 0.0) for s in names}
    over = [f"{s} {e:+.1f} s" for s, e in sorted(excess.items(), key=lambda i: -i[1]) if e > 0]
    print(f"the hub's CPU over the floor's: {', '.join(over) or 'none'}")
    heaviest = max(floor["cpu_stages"], key=lambda s: floor["cpu_stages"][s])
    print(
        f"the floor's heaviest stage: {heaviest}, {floor['cpu_stages'][heaviest]:.1f} s CPU"
        f" ({floor['cpu_stages'][heaviest] / floor['cpu_seconds']:.0%} of its CPU)"
    )
    # Judged on CPU: on a shared machine the wall clock also counts other people's work.
    within = cpu_ratio <= TARGET_RATIO and hub["peak_bytes"] < TARGET_BYTES
    print("target met" if within else "target NOT met")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
