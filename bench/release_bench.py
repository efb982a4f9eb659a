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
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CTDC_FILE = ROOT / ".." / "shared" / "data" / "ctdc" / "ctdc_global_kanon_2021.csv"
TARGET_RATIO = 1.5
TARGET_BYTES = 2 * 1024**3


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
    start = time.perf_counter()
    stages: dict[str, float] = {}
    last = [start, ""]

    def progress(stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if stage != last[1]:
            if last[1]:
                stages[str(last[1])] = stages.get(str(last[1]), 0.0) + now - float(last[0])
            last[0], last[1] = now, stage

    snapshot = Snapshot("bench", ("bench",), records)
    batches = pd.Series(["bench"] * len(records), dtype="string")
    plans = _plans(policy.policy, load_schema())
    built = _build_artefacts(
        snapshot, batches, policy.policy, plans, [], PrivacySpend(0.0), 2021, progress
    )
    now = time.perf_counter()
    stages[str(last[1])] = stages.get(str(last[1]), 0.0) + now - float(last[0])
    with tempfile.TemporaryDirectory() as directory:
        began = time.perf_counter()
        write_candidate_files(Path(directory), built)
        stages["write files"] = time.perf_counter() - began
    return {
        "seconds": time.perf_counter() - start,
        "stages": stages,
        "peak_bytes": _peak_bytes(),
        "passed": built.checks.passed,
    }


def run_floor(limit: int) -> dict[str, Any]:
    """Make the same artefacts by calling the libraries directly, timing each call."""
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
    from hub.services.releases import HIERARCHIES, release_dp_schema, synthesis_domain
    from policies import check_candidate

    records = _records(limit)
    rules = _policy().policy
    schema = load_schema()
    stages: dict[str, float] = {}

    def timed(name: str, work: Callable[[], Any]) -> Any:
        began = time.perf_counter()
        result = work()
        stages[name] = stages.get(name, 0.0) + time.perf_counter() - began
        return result

    start = time.perf_counter()
    coded = timed(
        "prepare", lambda: with_derived_attributes(format_records(records), schema.as_dict())
    )
    micro = rules.microdata
    qis = list(micro.quasi_identifiers)
    sensitive = list(micro.l_diversity.attributes) if micro.l_diversity else []
    anonymised = timed(
        "microdata",
        lambda: anonymise(
            coded[[*qis, *sensitive]], qis, load_hierarchies(HIERARCHIES), micro.privacy_model()
        ),
    )
    safe = {
        t.name: timed(
            "safe tables",
            lambda t=t: frequency_table(coded, list(t.dimensions), rules.tables.table_policy()),
        )
        for t in rules.tables.frequency_tables
    }
    dp_schema = release_dp_schema(schema)
    dp_records = records.assign(exploitationType=coded["exploitationType"].to_numpy())
    with DPSnapshot(dp_records, dp_schema, missing_values=schema.missing_values) as data:
        for table in rules.release.dp_tables:
            spec = QuerySpec(Measure("count"), SpendRequest(rho=table.rho), group_by=table.group_by)
            plan = plan_query(spec, dp_schema, rho_range=(table.rho / 2, 2.0))
            timed("dp tables", lambda plan=plan: release(plan, data, nonnegative_counts=True))
    settings = rules.release.synthetic
    domain = synthesis_domain(schema, settings.columns)
    synthesizer = MarginalSynthesizer(
        domain,
        settings.rho,
        delta=rules.privacy.display_delta,
        shares=BudgetShares(**settings.shares.model_dump()),
        max_cells=settings.max_cells,
        max_parents=settings.max_parents,
    )
    training = coded[list(domain.columns)].sample(frac=0.9, random_state=2021)
    control = coded[list(domain.columns)].drop(training.index)
    model = timed("measure", lambda: synthesizer.fit(training.reset_index(drop=True)))
    synthetic = timed("draw and evaluate", lambda: model.sample(settings.records, 2021))
    timed(
        "draw and evaluate",
        lambda: evaluate_release(
            training.reset_index(drop=True),
            synthetic,
            control.reset_index(drop=True),
            n_attacks=200,
            seed=2021,
        ),
    )
    timed(
        "checks",
        lambda: check_candidate(
            rules,
            microdata=anonymised.data,
            tables=safe,
            charged=rules.release.spends(),
            spent_before=PrivacySpend(0.0),
            records=coded,
        ),
    )

    def write() -> None:
        with tempfile.TemporaryDirectory() as directory:
            for name, frame in [("microdata", anonymised.data), ("synthetic", synthetic)]:
                frame.to_csv(Path(directory) / f"{name}.csv", index=False)
                frame.to_parquet(Path(directory) / f"{name}.parquet", index=False)
                frame.to_excel(Path(directory) / f"{name}.xlsx", index=False)

    timed("write files", write)
    return {"seconds": time.perf_counter() - start, "stages": stages, "peak_bytes": _peak_bytes()}


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
    print(f"release candidate of the CTDC file, default policy; checks passed: {hub['passed']}")
    print(f"{'stage':<20} {'hub s':>8} {'floor s':>8}")
    for stage in sorted(set(hub["stages"]) | set(floor["stages"])):
        mine, theirs = hub["stages"].get(stage, 0.0), floor["stages"].get(stage, 0.0)
        print(f"{stage:<20} {mine:8.1f} {theirs:8.1f}")
    ratio = hub["seconds"] / floor["seconds"]
    print(f"{'total':<20} {hub['seconds']:8.1f} {floor['seconds']:8.1f}   ratio {ratio:.2f}")
    print(
        f"peak memory: hub {hub['peak_bytes'] / 1024**2:.0f} MiB, floor "
        f"{floor['peak_bytes'] / 1024**2:.0f} MiB (target under {TARGET_BYTES / 1024**3:.0f} GiB)"
    )
    within = ratio <= TARGET_RATIO and hub["peak_bytes"] < TARGET_BYTES
    print("target met" if within else "target NOT met")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
