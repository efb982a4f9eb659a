"""Benchmark the hub's DP synthesizer against peers on the CTDC file, side by side.

Protocol (issue 4): a fixed random split of the CTDC records into a training half (what every
synthesizer sees) and a held-out half. Utility is measured against the training half; the
held-out half is scored too, as the floor (a fresh real sample of the same size), and an
independent-columns table as the baseline to beat. Each synthesizer runs in its own process,
so its wall time and peak resident memory are its own; peers run in ``bench/.venv-synth``
(made by ``bench/peers_synth.sh``), never in the hub's environment.

Peers: ``pac-synth`` (SDS), and smartnoise-synth's ``mst`` and ``aim`` (bounded settings, see
:func:`_smartnoise`); dpmm's ``dpmm-aim``, ``dpmm-mst`` and ``dpmm-privbayes`` in their own
environment ``bench/.venv-dpmm`` (capped AIM and its ``rounds`` trap: :func:`_dpmm` and
``bench/SYNTH_PEERS.md``); and ``k-synthetic``, CTDC's 2021 approach (not DP), in the hub's
environment. Each run is stopped after ``--timeout`` seconds and reported as such. Under each
epsilon, every other synthesizer's 3-way TVD, country-by-year error, wall and CPU time are
printed over the mean of the hub's fits in the same run.

    WITH_SMARTNOISE=1 bench/peers_synth.sh                     # once: the peer environment
    bench/peers_dpmm.sh                                        # once: dpmm's environment
    .venv/bin/python bench/synth_bench.py --columns 25         # one column set, eps 1 and 4
    .venv/bin/python bench/synth_bench.py --columns all --timeout 600
    .venv/bin/python bench/synth_bench.py --columns 25 --peers --repeats 3
    .venv/bin/python bench/synth_bench.py --columns whole --peers --epsilon 1
    nice .venv/bin/python bench/synth_bench.py --columns 25 --epsilon 1 --repeats 3 \
        --peers k-synthetic pac-synth dpmm-mst dpmm-privbayes dpmm-aim --timeout 3000

``--repeats`` fits the hub's synthesizer that many times (its noise cannot be seeded) and
prints each fit and the mean and standard deviation of the 3-way TVD. ``fab2``/``fab3`` are
the shares of the synthetic table's distinct 2- and 3-value combinations (empty fields
excluded) that never occur in the real records. ``qmax``, ``qmax1%`` and ``qmean`` score the
"country of exploitation by year" analyst query (:data:`COUNTRY_BY_YEAR`): the total
variation distance between the real and synthetic distributions of the country (empty value
included) within each year of registration, at its worst over all years, at its worst over
the years holding at least 1% of the records, and averaged over years weighted by records.
With ``--columns all`` the fit on every column
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
#: dpmm's own environment (bench/peers_dpmm.sh): it pins opendp 0.12, numpy 1.26, pandas 2.1.
DPMM_PYTHON = ROOT / "bench" / ".venv-dpmm" / "bin" / "python"
DPMM_PEERS = ("dpmm-aim", "dpmm-mst", "dpmm-privbayes")


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
#: dpmm AIM's capped settings (see :func:`_dpmm` and bench/SYNTH_PEERS.md): its ``rounds``
#: divides the budget (it is not a cap on the rounds run), 100 is above the 0.9 x 25 columns
#: under which its one-way measurements alone overspend; 200 mirror-descent iterations per
#: estimate instead of 1,000.
DPMM_AIM_ROUNDS = 100
DPMM_AIM_ITERATIONS = 200
#: The k-synthetic mode's k and longest checked combination (CTDC's 2021 settings).
K_SYNTHETIC_K = 10
K_SYNTHETIC_LENGTH = 3


def _cpu_seconds() -> float:
    """CPU seconds of this process and its children so far."""
    used = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in used)


def _worker(args: argparse.Namespace) -> None:
    """Run one synthesizer on the training CSV and write its synthetic CSV and its costs."""
    import pandas as pd  # imported here: the peer environment has pandas but not the hub

    train = pd.read_csv(args.train, dtype="string", keep_default_na=False)
    start = time.perf_counter()
    start_cpu = _cpu_seconds()  # the same span as the wall clock: not start-up or reading
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
    elif args.worker in DPMM_PEERS:
        synthetic = _dpmm(
            args.worker, train, args.epsilon, json.loads(Path(args.domains).read_text())
        )
        extra = {}
    elif args.worker == "k-synthetic":
        from disclosure_control.synth import Domain
        from disclosure_control.synth.ksynthetic import k_synthetic

        domains = json.loads(Path(args.domains).read_text())
        domain = Domain.from_schema({k: tuple(v) for k, v in domains.items()}, list(train.columns))
        synthetic = k_synthetic(train, domain, k=K_SYNTHETIC_K, max_length=K_SYNTHETIC_LENGTH)
        extra = {}
    else:
        raise SystemExit(f"unknown synthesizer {args.worker!r}")
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds() - start_cpu
    synthetic.to_csv(args.out, index=False)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "peak_mb": peak_mb, **extra}))


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


def _dpmm(method: str, train: Any, epsilon: float, domains: dict[str, list[str]]) -> Any:
    """Fit dpmm's AIM, MST or PrivBayes (Private-PGM inside) and sample a table.

    Every column is categorical with the record schema's codes and the empty value as its
    public domain (as the hub's synthesizer has it), so dpmm's binner spends nothing and infers
    nothing from the data; ``delta`` is the protocol's. One worker process (``n_jobs=1``), as
    the hub's fit. MST and PrivBayes run as shipped; AIM is capped (``DPMM_AIM_ROUNDS``,
    ``DPMM_AIM_ITERATIONS``; its defaults, ``16 x columns`` rounds and 1,000 iterations per
    estimate, would take hours on 2 shared cores). dpmm's ``rounds`` is not a cap: it sizes
    every measurement's noise as if the budget were cut in ``rounds`` equal parts, the one-way
    marginals take ``0.9 x columns`` of them at once, and the loop then runs until the budget
    is gone; below ``0.9 x columns`` rounds the one-way marginals alone overspend the budget and
    no error is raised, so this refuses such a setting.
    """
    import pandas as pd
    from dpmm.pipelines import AIMPipeline, MSTPipeline, PrivBayesPipeline

    columns = list(train.columns)
    domain = {c: {"categories": sorted({*domains[c], ""})} for c in columns}
    if method == "dpmm-aim":
        if DPMM_AIM_ROUNDS < 0.9 * len(columns):
            raise SystemExit(
                f"dpmm AIM: {DPMM_AIM_ROUNDS} rounds overspend on {len(columns)} columns"
            )
        pipeline: Any = AIMPipeline(
            epsilon=epsilon, delta=DELTA, n_jobs=1, proc_epsilon=None,
            gen_kwargs={"rounds": DPMM_AIM_ROUNDS, "n_iters": DPMM_AIM_ITERATIONS},
        )  # fmt: skip
    elif method == "dpmm-mst":
        pipeline = MSTPipeline(epsilon=epsilon, delta=DELTA, n_jobs=1, proc_epsilon=None)
    else:
        pipeline = PrivBayesPipeline(epsilon=epsilon, delta=DELTA, n_jobs=1, proc_epsilon=None)
    pipeline.fit(train.astype(str), domain=domain)
    produced = pipeline.generate(n_records=len(train))
    return pd.DataFrame(produced, columns=columns).fillna("").astype("string")


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
              f"{'fab2':>7}{'fab3':>7}{'qmax':>7}{'qmax1%':>7}{'qmean':>7}{'3-way@25':>9}"
              f"{'seconds':>9}{'CPU s':>9}{'peak MB':>9}")  # fmt: skip
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
                python = _peer_python(peer)
                if not python.exists():
                    print(f"{peer}: run {_peer_setup(peer)} first")
                    continue
                runs.append(
                    _run(peer, python, train_file, domains_file, epsilon, label, args.timeout)
                )
            three_way: list[float] = []
            scored: list[tuple[str, dict[str, Any], list[float]]] = []
            for run in runs:
                shown = run["name"]
                if shown == "ctdhub" and args.forbid_below is not None:
                    shown += f" forbid<{args.forbid_below:g} len{args.forbid_length}"
                if "error" in run:
                    print(f"{shown:<24}{epsilon:>5g}  failed: {run['error']}")
                    continue
                synthetic = pd.read_csv(run["out"], dtype="string", keep_default_na=False)
                line = _scores(training, synthetic[columns], columns, columns_25, label)
                costs = f"{run['seconds']:>9.1f}{run['cpu_seconds']:>9.1f}{run['peak_mb']:>9.0f}"
                print(f"{shown:<24}{epsilon:>5g}{line}{costs}")
                figures = [float(f) for f in line.split()]
                scored.append((shown, run, figures))
                if run["name"] == "ctdhub":
                    three_way.append(figures[2])
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
            _print_ratios(scored, epsilon)


def _peer_python(peer: str) -> Path:
    """Return the interpreter a synthesizer runs in: the hub's, dpmm's or the other peers'."""
    if peer == "k-synthetic":
        return Path(sys.executable)
    return DPMM_PYTHON if peer in DPMM_PEERS else PEER_PYTHON


def _peer_setup(peer: str) -> str:
    """Return the script that makes a peer's environment."""
    return "bench/peers_dpmm.sh" if peer in DPMM_PEERS else "bench/peers_synth.sh"


def _print_ratios(scored: list[tuple[str, dict[str, Any], list[float]]], epsilon: float) -> None:
    """Print every other synthesizer's 3-way TVD, query error and times over ctdhub's mean.

    Ratios are of figures measured in the same run (the machine's load varies between runs).
    Above 1 means worse (or slower) than ctdhub.
    """
    hub = [(run, figures) for name, run, figures in scored if run["name"] == "ctdhub"]
    if not hub:
        return
    mean = [sum(f[i] for _, f in hub) / len(hub) for i in range(len(hub[0][1]))]
    seconds = sum(run["seconds"] for run, _ in hub) / len(hub)
    cpu = sum(run["cpu_seconds"] for run, _ in hub) / len(hub)
    print(f"  over ctdhub's mean (eps {epsilon:g}): 3-way TVD, query max, wall, CPU time")
    for name, run, figures in scored:
        if run["name"] == "ctdhub":
            continue
        print(
            f"  {name:<22}{figures[2] / mean[2]:>8.2f}{_ratio(figures[6], mean[6]):>8}"
            f"{run['seconds'] / seconds:>8.1f}{run['cpu_seconds'] / cpu:>8.1f}"
        )


def _ratio(value: float, reference: float) -> str:
    """Return value / reference to two places, or '-' where the reference is 0 or undefined."""
    return f"{value / reference:.2f}" if reference > 0 else "-"


#: The analyst query whose worst group the bench reports (issue 15): for each year of
#: registration, the total variation distance between the real and synthetic distribution of
#: the country of exploitation (the empty value included); a year the synthetic table never
#: produces counts as distance 1. ``qmax`` is the largest over the real table's years; ``qmax1%``
#: the largest over the years holding at least 1% of the real records; ``qmean`` the mean
#: weighted by the real records in each year (see disclosure_control.evaluate.utility).
COUNTRY_BY_YEAR = "country of exploitation by year"


def _country_by_year(training: Any, synthetic: Any) -> tuple[float, float, float]:
    """Return the country-by-year query's (max, max over years with >= 1%, weighted mean)."""
    import numpy as np

    from disclosure_control.evaluate.utility import group_distribution_error

    if not {"yearOfRegistration", "CountryOfExploitation"} <= set(training.columns):
        return float("nan"), float("nan"), float("nan")
    errors, weights = group_distribution_error(
        training, synthetic, "yearOfRegistration", "CountryOfExploitation"
    )
    large = weights >= 0.01 * weights.sum()
    return (
        float(errors.max()),
        float(errors[large].max()),
        float(np.average(errors, weights=weights)),
    )


def _scores(
    training: Any, synthetic: Any, columns: list[str], columns_25: list[str], label: str
) -> str:
    """Return one table row: TVDs, fabrication, the country-by-year query's error, 3-way on 25."""
    from disclosure_control.evaluate import evaluate_utility

    utility = evaluate_utility(
        training, synthetic, columns, n_three_way=300, max_combination_length=3, queries=()
    )
    tvd = utility.tvd
    fabricated = {c.length: c.fabricated_share for c in utility.combinations}
    line = "".join(f"{s.mean:>8.4f}" for s in tvd) + f"{tvd[2].max:>8.4f}"
    line += f"{fabricated.get(2, float('nan')):>7.3f}{fabricated.get(3, float('nan')):>7.3f}"
    line += "".join(f"{q:>7.3f}" for q in _country_by_year(training, synthetic))
    if label == "25":
        return line + f"{'':>9}"
    on_25 = evaluate_utility(training, synthetic, columns_25, n_three_way=300, queries=())
    return line + f"{on_25.tvd[2].mean:>9.4f}"


if __name__ == "__main__":
    main()
