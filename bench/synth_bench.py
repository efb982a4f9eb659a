"""Benchmark the hub's DP synthesizer against peers on the CTDC file, side by side.

Protocol (issue 4): a fixed random split of the CTDC records into a training half (what every
synthesizer sees) and a held-out half. Utility is measured against the training half; the
held-out half is scored too, as the floor (a fresh real sample of the same size), and an
independent-columns table as the baseline to beat. Each synthesizer runs in its own process,
so its wall time and peak resident memory are its own; peers run in ``bench/.venv-synth``
(made by ``bench/peers_synth.sh``), never in the hub's environment.

Peers: ``pac-synth`` (SDS), and smartnoise-synth's ``mst`` and ``aim`` (bounded settings, see
:func:`_smartnoise`); each run is stopped after ``--timeout`` seconds and reported as such.

    WITH_SMARTNOISE=1 bench/peers_synth.sh                     # once: the peer environment
    .venv/bin/python bench/synth_bench.py --columns 25         # one column set, eps 1 and 4
    .venv/bin/python bench/synth_bench.py --columns all --timeout 600
    .venv/bin/python bench/synth_bench.py --columns 25 --peers --repeats 3
    .venv/bin/python bench/synth_bench.py --columns whole --peers --epsilon 1

``--repeats`` fits the hub's synthesizer that many times (its noise cannot be seeded) and
prints each fit and the mean and standard deviation of the 3-way TVD. ``fab2``/``fab3`` are
the shares of the synthetic table's distinct 2- and 3-value combinations (empty fields
excluded) that never occur in the real records. With ``--columns all`` the fit on every column
is also scored on the 25 columns (``3-way@25``), what a release of every column gives them.
``--forbid-below C`` fits the hub's synthesizer with ``forbid_below=C`` (no sampled
combination of two, or up to ``--forbid-length``, values whose noisy count is under C noise
deviations; see :mod:`disclosure_control.synth.forbid`), to weigh its fabrication against its
TVD.
``--columns whole`` fits the whole CTDC file (every record, every column): the time and memory
a release of all of CTDC costs, scored against the whole file (no held-out half exists there).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CTDC_FILE = ROOT / ".." / "shared" / "data" / "ctdc" / "ctdc_global_kanon_2021.csv"
#: Where runs write their tables and reports (SYNTH_BENCH_OUT lets two runs go side by side).
OUT = Path(os.environ.get("SYNTH_BENCH_OUT", str(ROOT / "bench" / "out")))
PEER_PYTHON = ROOT / "bench" / ".venv-synth" / "bin" / "python"


def split_ctdc(records: Any, size: int) -> tuple[Any, Any, list[str]]:
    """Return the fixed training and held-out halves of the CTDC records, and the 25 columns.

    The 25-column subset is the schema's coded columns (the demographic ones) and the 18
    indicators most often recorded in the training half.

    :param records: the CTDC file, as strings, without the case number.
    :param size: the most records in each half.
    """
    import numpy as np

    order = np.random.default_rng(2021).permutation(len(records))
    half = min(size, len(records) // 2)
    training = records.iloc[order[:half]].reset_index(drop=True)
    held_out = records.iloc[order[half : 2 * half]].reset_index(drop=True)
    demographic = _demographic()
    indicators = [c for c in records.columns if c not in demographic]
    top = (training[indicators] != "").sum().sort_values(ascending=False).index[:18]
    return training, held_out, demographic + list(top)


def _demographic() -> list[str]:
    """Return the record schema's columns with a public coded domain (not the indicators).

    Read from the schema rather than listed here; the peer environment, which has no
    ``contributors``, never needs them.
    """
    from contributors.schema import load_schema

    schema = load_schema()
    return [name for name in schema.names if schema.domain(name) is not None]


DELTA = 1e-6
#: AIM's bounded settings (see :func:`_smartnoise`).
AIM_ROUNDS_PER_COLUMN = 2
AIM_ITERATIONS = 1000
#: Sample smartnoise's models with mbi's upstream sampling fixes (see _repair_mbi_sampling).
REPAIR_MBI = True


def _worker(args: argparse.Namespace) -> None:
    """Run one synthesizer on the training CSV and write its synthetic CSV and its costs."""
    import pandas as pd  # imported here: the peer environment has pandas but not the hub

    train = pd.read_csv(args.train, dtype="string", keep_default_na=False)
    start = time.perf_counter()
    if args.worker == "ctdhub":
        from disclosure_control.dp import epsilon_delta_to_rho
        from disclosure_control.synth import Domain, MarginalSynthesizer

        domains = json.loads(Path(args.domains).read_text())
        domain = Domain.from_schema({k: tuple(v) for k, v in domains.items()}, list(train.columns))
        rho = epsilon_delta_to_rho(args.epsilon, DELTA)
        model = MarginalSynthesizer(
            domain, rho, forbid_below=args.forbid_below, forbid_length=args.forbid_length
        ).fit(train)
        synthetic = model.sample(len(train), seed=0)
        extra = {"rho": model.spend.rho, "epsilon": model.spend.epsilon}
    elif args.worker == "pac-synth":
        import pacsynth

        rows = [list(train.columns), *train.astype(str).values.tolist()]
        parameters = (
            pacsynth.DpAggregateSeededParametersBuilder()
            .reporting_length(3)
            .epsilon(args.epsilon)
            .delta(DELTA)
            .build()
        )
        synthesizer = pacsynth.DpAggregateSeededSynthesizer(parameters)
        synthesizer.fit(pacsynth.Dataset(rows))
        produced = synthesizer.sample()
        synthetic = pd.DataFrame(produced[1:], columns=produced[0], dtype="string")
        extra = {}
    elif args.worker in ("mst", "aim"):
        synthetic = _smartnoise(args.worker, train, args.epsilon)
        extra = {}
    else:
        raise SystemExit(f"unknown synthesizer {args.worker!r}")
    seconds = time.perf_counter() - start
    synthetic.to_csv(args.out, index=False)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, **extra}))


def _repair_mbi_sampling() -> None:
    """Apply mbi's two sampling fixes (mbi PR #145) to the mbi 1.1.0 smartnoise-synth pins.

    As shipped, mbi 1.1.0's ``synthetic_data`` (a) conditions each column only on its
    measurement cliques, not on the junction tree's maximal cliques, and (b) in its default
    rounding mode ranks rows by position within each parent group, so columns sharing parents
    come out spuriously correlated. Measured on 25 CTDC columns, MST's synthetic 2-way error
    was then no better than independent columns. mbi 2.0.0 fixes both, but smartnoise-synth
    1.0.8 requires mbi<2 and breaks on 2.0.0's Dataset API; so the peers sample here with the
    fixes' effect: junction-tree cliques, and i.i.d. sampling. The fitted model (the part that
    spends privacy budget) is untouched; this is post-processing.
    """
    from mbi import junction_tree, marginal_oracles
    from mbi.markov_random_field import MarkovRandomField

    shipped = MarkovRandomField.synthetic_data

    def synthetic_data(self: Any, rows: int | None = None, method: str = "round") -> Any:
        tree, _ = junction_tree.make_junction_tree(self.domain, [set(c) for c in self.cliques])
        potentials = self.potentials.expand([tuple(n) for n in tree.nodes])
        marginals = marginal_oracles.message_passing_stable(potentials)
        model = MarkovRandomField(potentials=potentials, marginals=marginals, total=self.total)
        return shipped(model, rows, method="sample")

    MarkovRandomField.synthetic_data = synthetic_data


def _smartnoise(method: str, train: Any, epsilon: float) -> Any:
    """Fit smartnoise-synth's MST or AIM (Private-PGM inside) and sample a table.

    Settings, chosen so both finish in minutes on 2 shared cores: MST as shipped (its
    estimation runs 1,000 mirror-descent iterations per selection and 5,000 at the end); AIM
    with its default 2-way workload, ``AIM_ROUNDS_PER_COLUMN`` rounds per column (the package
    default is 16) and every mirror-descent estimation cut to ``AIM_ITERATIONS`` iterations
    (from 1,000) by wrapping the package's estimator. AIM needs at least about 0.9 rounds per
    column, or its one-way measurements alone overspend rho. Both infer each column's
    categories from the training data without spending budget, as the package does by default.
    """
    import pandas as pd

    frame = train.astype(object)
    if REPAIR_MBI:
        _repair_mbi_sampling()
    if method == "mst":
        from snsynth.mst import MSTSynthesizer

        synthesizer: Any = MSTSynthesizer(epsilon=epsilon, delta=DELTA)
    else:
        from mbi import estimation
        from snsynth.aim import AIMSynthesizer
        from snsynth.aim import aim as aim_module

        full = estimation.mirror_descent

        def bounded(*args: Any, **kwargs: Any) -> Any:
            kwargs["iters"] = min(int(kwargs.get("iters", AIM_ITERATIONS)), AIM_ITERATIONS)
            return full(*args, **kwargs)

        aim_module.estimation.mirror_descent = bounded
        synthesizer = AIMSynthesizer(
            epsilon=epsilon, delta=DELTA, rounds=AIM_ROUNDS_PER_COLUMN * len(frame.columns)
        )
    synthesizer.fit(frame, categorical_columns=list(frame.columns))
    produced = synthesizer.sample(len(frame))
    return pd.DataFrame(produced, columns=list(frame.columns)).astype("string")


def _run(
    name: str,
    python: Path,
    train: Path,
    domains: Path,
    epsilon: float,
    tag: str,
    timeout: float,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Run one synthesizer in a child process and return its costs and output path."""
    out = OUT / f"{tag}-{name}-eps{epsilon:g}.csv"
    command = [
        str(python), __file__, "--worker", name, "--train", str(train),
        "--domains", str(domains), "--epsilon", str(epsilon), "--out", str(out), *extra,
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, cwd=ROOT, check=False, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"name": name, "error": [f"no result within {timeout:g} s (stopped)"]}
    if done.returncode != 0:
        return {"name": name, "error": done.stderr.strip().splitlines()[-1:]}
    return {"name": name, "out": out, **json.loads(done.stdout.strip().splitlines()[-1])}


def main() -> None:
    """Run the benchmark and print utility, time and memory side by side."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker")
    parser.add_argument("--train")
    parser.add_argument("--domains")
    parser.add_argument("--out")
    parser.add_argument("--epsilon", type=float, nargs="*", default=[1.0, 4.0])
    parser.add_argument("--columns", choices=["25", "all", "both", "whole"], default="both")
    parser.add_argument("--repeats", type=int, default=1, help="fits of the hub's synthesizer")
    parser.add_argument("--peers", nargs="*", default=["pac-synth", "mst", "aim"])
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    parser.add_argument("--train-size", type=int, default=50_000)
    parser.add_argument(
        "--forbid-below", type=float, help="the hub's forbid_below (noise deviations)"
    )
    parser.add_argument("--forbid-length", type=int, default=2, help="the hub's forbid_length")
    args = parser.parse_args()
    if args.worker:
        args.epsilon = args.epsilon[0] if isinstance(args.epsilon, list) else args.epsilon
        _worker(args)
        return

    import numpy as np
    import pandas as pd

    from disclosure_control.evaluate import evaluate_release

    OUT.mkdir(parents=True, exist_ok=True)
    records = pd.read_csv(CTDC_FILE, dtype="string", keep_default_na=False).drop(columns=["caseNo"])
    training_all, held_out_all, columns_25 = split_ctdc(records, args.train_size)
    subsets = {"25": columns_25, "all": list(records.columns), "whole": list(records.columns)}
    chosen = ["25", "all"] if args.columns == "both" else [args.columns]
    # Every column's domain comes from the record schema, never from the data (as in the hub).
    from contributors.schema import load_schema
    from hub.services.releases import synthesis_domain

    domain = synthesis_domain(load_schema(), list(records.columns))
    domains = dict(zip(domain.columns, domain.codes, strict=True))
    domains_file = OUT / "domains.json"
    domains_file.write_text(json.dumps(domains))
    for label in chosen:
        columns = subsets[label]
        if label == "whole":
            training, held_out = records, records
        else:
            training, held_out = training_all[columns], held_out_all[columns]
        train_file = OUT / f"train-{label}.csv"
        training.to_csv(train_file, index=False)
        rng = np.random.default_rng(0)
        independent = pd.DataFrame(
            {c: training[c].to_numpy()[rng.permutation(len(training))] for c in columns}
        )
        print(f"\n== {label} columns ({len(columns)}), {len(training)} training records ==")
        print(f"{'synthesizer':<24}{'eps':>5}{'1-way':>8}{'2-way':>8}{'3-way':>8}{'3-max':>8}"
              f"{'fab2':>7}{'fab3':>7}{'3-way@25':>9}{'seconds':>9}{'peak MB':>9}")  # fmt: skip
        references = {"independent": independent}
        if label != "whole":
            references = {"held-out floor": held_out, **references}
        for name, table in references.items():
            print(f"{name:<24}{'-':>5}" + _scores(training, table, columns, columns_25, label))
        for epsilon in args.epsilon:
            runs = [
                _run(
                    "ctdhub", Path(sys.executable), train_file, domains_file, epsilon,
                    f"{label}-{repeat}", args.timeout,
                    () if args.forbid_below is None else (
                        "--forbid-below", str(args.forbid_below),
                        "--forbid-length", str(args.forbid_length),
                    ),
                )
                for repeat in range(args.repeats)
            ]  # fmt: skip
            for peer in args.peers:
                if not PEER_PYTHON.exists():
                    print(f"{peer}: run bench/peers_synth.sh first")
                    continue
                runs.append(
                    _run(peer, PEER_PYTHON, train_file, domains_file, epsilon, label, args.timeout)
                )
            three_way: list[float] = []
            for run in runs:
                shown = run["name"]
                if shown == "ctdhub" and args.forbid_below is not None:
                    shown += f" forbid<{args.forbid_below:g} len{args.forbid_length}"
                if "error" in run:
                    print(f"{shown:<24}{epsilon:>5g}  failed: {run['error']}")
                    continue
                synthetic = pd.read_csv(run["out"], dtype="string", keep_default_na=False)
                line = _scores(training, synthetic[columns], columns, columns_25, label)
                costs = f"{run['seconds']:>9.1f}{run['peak_mb']:>9.0f}"
                print(f"{shown:<24}{epsilon:>5g}{line}{costs}")
                if run["name"] == "ctdhub":
                    three_way.append(float(line.split()[2]))
                if label != "whole" and run is runs[0]:
                    report = evaluate_release(
                        training, synthetic[columns], held_out,
                        metadata={"synthesizer": run["name"], "epsilon": epsilon, "delta": DELTA},
                        references={"held-out floor": held_out, "independent columns": independent},
                        n_three_way=300, n_attacks=200,
                    )  # fmt: skip
                    stem = OUT / f"report-{label}-{run['name']}-eps{epsilon:g}"
                    stem.with_suffix(".json").write_text(report.to_json())
                    stem.with_suffix(".md").write_text(report.to_markdown())
            if len(three_way) > 1:
                print(
                    f"{'ctdhub mean (sd), ' + str(len(three_way)) + ' fits':<29}"
                    f"{'':>16}{np.mean(three_way):>8.4f} ({np.std(three_way, ddof=1):.4f})"
                )


def _scores(
    training: Any, synthetic: Any, columns: list[str], columns_25: list[str], label: str
) -> str:
    """Return one table row: TVDs, fabrication, and (for every column) the 3-way TVD on 25."""
    from disclosure_control.evaluate import evaluate_utility

    utility = evaluate_utility(
        training, synthetic, columns, n_three_way=300, max_combination_length=3, queries=()
    )
    tvd = utility.tvd
    fabricated = {c.length: c.fabricated_share for c in utility.combinations}
    line = "".join(f"{s.mean:>8.4f}" for s in tvd) + f"{tvd[2].max:>8.4f}"
    line += f"{fabricated.get(2, float('nan')):>7.3f}{fabricated.get(3, float('nan')):>7.3f}"
    if label == "25":
        return line + f"{'':>9}"
    on_25 = evaluate_utility(training, synthetic, columns_25, n_three_way=300, queries=())
    return line + f"{on_25.tvd[2].mean:>9.4f}"


if __name__ == "__main__":
    main()
