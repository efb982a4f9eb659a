"""Cross-check the hub's privacy attacks against Anonymeter on the CTDC file, side by side.

The hub's ``evaluate_privacy`` (singling out, linkability, inference, each against a naive
baseline and against control records) is an Anonymeter-style design of its own. This script
runs both on the same tables with settings matched as far as the two designs allow, and prints
attack, baseline and control success rates and the derived risk with their 95 % intervals.
Anonymeter 1.1.0 needs numpy<1.27, so it runs in ``bench/.venv-anon`` (made by
``bench/peers_anon.sh``) through this script's ``--worker`` mode, never in the hub's environment.

Data: the seeded split of bench/synth_bench.py (permutation seed 2021, its 25-column subset);
``--train`` training records from its training half, and from its held-out half ``--control``
control records and then, disjoint from them, the held-out "synthetic" table. Synthetic tables:

* ``training copy``: the training records themselves, the memorisation worst case (risk high);
* ``held-out real``: real records the synthesizer never saw (attacks succeed often, on training
  and control records alike: high rates, risk near 0);
* ``independent``: every training column shuffled on its own (low rates, risk near 0);
* ``ctdhub eps 1``: the hub's marginal synthesizer at epsilon 1, delta 1e-6 (its measurement
  noise is fresh in every run, so this table, unlike the others, changes from run to run).

Matched: the number of attacks, the columns compared, the columns per singling-out predicate,
the singling-out attempt budget, the linkability column split (ctdhub's own random split, given
to Anonymeter), the inference secrets and their auxiliary columns (all other columns).
The designs differ where the script cannot match them; ``DIFFERENCES`` lists each.

    bash bench/peers_anon.sh                   # once: the Anonymeter environment
    .venv/bin/python bench/anon_check.py       # or: python -m bench anon
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "anon"
ANON_PYTHON = ROOT / "bench" / ".venv-anon" / "bin" / "python"
N_ATTACKS = 500
#: Columns per singling-out predicate: ctdhub's default (Anonymeter's is 3).
PREDICATE_COLUMNS = 4
#: Singling-out attempts allowed per requested attack, given to both (ctdhub's default is 2000;
#: Anonymeter's run time at that budget was not tried).
ATTEMPTS_PER_ATTACK = 20
SECRETS = ("gender", "ageBroad", "citizenship", "isForcedLabour")
SEED = 0
EPSILON = 1.0
#: How Anonymeter logs the number of singling-out predicates it made when short of the request.
MADE = re.compile(r"Returning (\d+) instead of the requested")
DIFFERENCES = """\
made: singling-out predicates made (or targets attacked); n: the rates' denominator.
Where the two designs differ (not matchable through either public API):
 singling out  Anonymeter drops duplicate rows of every table first, so a predicate matching two
               identical real records counts as singling one out; ctdhub counts rows (persons),
               and skips a synthetic record that is duplicated. Anonymeter divides by the attacks
               requested, ctdhub by the predicates it made. Anonymeter's baseline draws values
               from the synthetic table with == or != at random; ctdhub's draws codes uniformly
               with == only. Sizes: Anonymeter fits a size correction when the (deduplicated)
               control and training differ in size; ctdhub keeps the smaller table whole and
               takes a seeded random sample of the larger.
 linkability   Both take one nearest synthetic record per half; ctdhub breaks ties uniformly at
               random (seeded), Anonymeter by sort order. Both baselines are two random records
               (about 1/n).
 inference     Same attack (Hamming = Gower on categorical columns, one nearest neighbour);
               ties go to the lowest synthetic index in ctdhub, to sort order in Anonymeter.
               Baseline: Anonymeter 1.1.0 aligns its random synthetic guesses to the targets
               by index label (reindex_like), so a target gets a guess only if its label is
               among the n_attacks sampled synthetic rows; the others count as misses, so its
               baseline is about n_attacks / synthetic rows (1/20 here) of the marginal guess
               it means. ctdhub's baseline is that marginal guess.
 intervals     Both give Wilson rate intervals; Anonymeter's rate point is the Wilson centre,
               ctdhub's is k/n (printed here: k/n for both). Risk: Anonymeter propagates the two
               rate errors (delta method); ctdhub's pairs the ends of its Wilson bounds
               (lowest main with highest control, and the reverse). ctdhub floors risk at 0,
               Anonymeter clips.
 randomness    Different generators: matched counts, not matched draws. Anonymeter's
               linkability baseline uses an unseeded generator (its value varies run to run)."""


# ---------------------------------------------------------------- Anonymeter side (.venv-anon)


class _Collector(logging.Handler):
    """Keep the messages of the warnings Anonymeter logs."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep one record's message."""
        self.messages.append(record.getMessage())


def _anonymeter_worker(spec_path: str) -> None:
    """Run Anonymeter's three evaluators on the spec's tables and print their counts as JSON."""
    import numpy as np
    import pandas as pd
    from anonymeter.evaluators import (
        InferenceEvaluator,
        LinkabilityEvaluator,
        SinglingOutEvaluator,
    )

    spec = json.loads(Path(spec_path).read_text())

    def read(path: str) -> Any:
        # Plain object columns: Anonymeter compares guesses with ``==`` over numpy arrays, which
        # pandas' nullable string dtype (its pd.NA) refuses.
        return pd.read_csv(path, dtype=str, keep_default_na=False).astype(object)

    training, synthetic, control = (
        read(spec["training"]),
        read(spec["synthetic"]),
        read(spec["control"]),
    )
    n_attacks, seed = spec["n_attacks"], spec["seed"]
    # Anonymeter says through its logger when it made fewer singling-out predicates than asked.
    collector = _Collector()
    logging.getLogger("anonymeter").addHandler(collector)
    logged = collector.messages

    def run(name: str, evaluate: Any) -> dict[str, Any]:
        """Evaluate one attack; return its counts, rates, risk and Anonymeter's notes."""
        logged.clear()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # Linkability and inference draw their targets through pandas' global generator.
            np.random.seed(seed)
            start = time.perf_counter()
            evaluator = evaluate()
            seconds = time.perf_counter() - start
        results = evaluator.results()
        risk = evaluator.risk()

        def rate(successes: float, trials: int, estimate: Any) -> dict[str, Any]:
            low = max(0.0, estimate.value - estimate.error)
            return {
                "successes": float(successes),
                "trials": int(trials),
                "rate": float(successes) / trials if trials else 0.0,
                "interval": [low, min(1.0, estimate.value + estimate.error)],
            }

        made = [int(m.group(1)) for m in map(MADE.search, logged) if m]
        notes = {str(w.message).split(".")[0] for w in caught} | {m.split(".")[0] for m in logged}
        return {
            "name": name,
            "made": made[0] if made else int(results.n_attacks_ori),
            "main": rate(results.n_success, results.n_attacks_ori, results.attack_rate),
            "baseline": rate(results.n_baseline, results.n_attacks_baseline, results.baseline_rate),
            "control": rate(results.n_control, results.n_attacks_control, results.control_rate),
            "risk": risk.value,
            "risk_interval": list(risk.ci),
            "seconds": seconds,
            "warnings": sorted(notes),
        }

    attacks = [
        run(
            "singling out",
            lambda: SinglingOutEvaluator(
                ori=training,
                syn=synthetic,
                control=control,
                n_attacks=n_attacks,
                n_cols=spec["predicate_columns"],
                max_attempts=spec["max_attempts"],
                seed=seed,
            ).evaluate(mode="multivariate"),
        ),
        run(
            "linkability",
            lambda: LinkabilityEvaluator(
                ori=training,
                syn=synthetic,
                control=control,
                aux_cols=tuple(spec["link_columns"]),
                n_attacks=n_attacks,
                n_neighbors=1,
            ).evaluate(n_jobs=1),
        ),
    ]
    for secret in spec["secrets"]:
        aux = [c for c in training.columns if c != secret]
        attacks.append(
            run(
                f"inference of {secret}",
                lambda secret=secret, aux=aux: InferenceEvaluator(
                    ori=training,
                    syn=synthetic,
                    control=control,
                    aux_cols=aux,
                    secret=secret,
                    regression=False,
                    n_attacks=n_attacks,
                ).evaluate(n_jobs=1),
            )
        )
    print(json.dumps(attacks))


# ---------------------------------------------------------------------- ctdhub side (.venv)


def _ctdhub_attacks(
    training: Any, synthetic: Any, control: Any, columns: list[str]
) -> tuple[list[dict[str, Any]], dict[str, Any], list[list[str]]]:
    """Run ctdhub's attacks; return them, the exact-match shares and the linkability split.

    Singling out and inference come from ``evaluate_privacy``. Its linkability draws a random
    column split it does not expose, so linkability is also run through ctdhub's own
    ``linkability`` with a fresh generator, whose first draw is that split: Anonymeter then
    gets the same two halves. ``evaluate_privacy``'s own linkability is kept for reference.
    """
    import numpy as np

    from disclosure_control.evaluate import evaluate_privacy
    from disclosure_control.evaluate._encoding import encode_tables
    from disclosure_control.evaluate.privacy import AttackResult, linkability, wilson_interval

    start = time.perf_counter()
    report = evaluate_privacy(
        training,
        synthetic,
        control,
        columns,
        n_attacks=N_ATTACKS,
        singling_out_columns=PREDICATE_COLUMNS,
        singling_out_attempts=ATTEMPTS_PER_ATTACK * N_ATTACKS,
        secrets=SECRETS,
        seed=SEED,
    )
    encoding = encode_tables([training, synthetic, control], columns)
    train_m, synth_m, control_m = encoding.matrices
    order = np.random.default_rng(SEED).permutation(len(columns))
    split = [[columns[j] for j in order[: len(columns) // 2]]]
    split.append([columns[j] for j in order[len(columns) // 2 :]])
    linked = linkability(train_m, synth_m, control_m, N_ATTACKS, np.random.default_rng(SEED))
    seconds = time.perf_counter() - start

    def rate(value: float, n: int) -> dict[str, Any]:
        successes = round(value * n)
        interval = list(wilson_interval(successes, n)) if n else [0.0, 1.0]
        return {"successes": successes, "trials": n, "rate": value, "interval": interval}

    def summary(result: AttackResult, name: str) -> dict[str, Any]:
        main = rate(result.main_rate, result.n_attacks)
        control_rate = rate(result.control_rate, result.n_attacks)
        return {
            "name": name,
            "made": result.n_attacks,
            "main": main,
            "baseline": rate(result.baseline_rate, result.n_attacks),
            "control": control_rate,
            "risk": result.risk,
            "risk_interval": list(result.risk_interval),
            "seconds": seconds,
            "warnings": [],
        }

    by_name = {a.name: a for a in report.attacks}
    attacks = [summary(by_name["singling out"], "singling out")]
    attacks.append(summary(linked, "linkability"))
    attacks.extend(summary(by_name[f"inference of {s}"], f"inference of {s}") for s in SECRETS)
    attacks.append(summary(by_name["linkability"], "linkability, own split"))
    shares = {
        "exact": report.exact_match_share,
        "control exact": report.control_exact_match_share,
    }
    return attacks, shares, split


def _anonymeter_attacks(
    tables: dict[str, Path], split: list[list[str]], timeout: float
) -> list[dict[str, Any]] | str:
    """Run this script's worker in the Anonymeter environment; return its attacks or an error."""
    spec = {
        **{k: str(v) for k, v in tables.items()},
        "n_attacks": N_ATTACKS,
        "predicate_columns": PREDICATE_COLUMNS,
        "max_attempts": ATTEMPTS_PER_ATTACK * N_ATTACKS,
        "link_columns": split,
        "secrets": list(SECRETS),
        "seed": SEED,
    }
    spec_file = tables["synthetic"].with_suffix(".spec.json")
    spec_file.write_text(json.dumps(spec))
    command = ["nice", "-n", "10", str(ANON_PYTHON), __file__, "--worker", str(spec_file)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, cwd=ROOT, check=False, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return f"no result within {timeout:g} s (stopped)"
    if done.returncode != 0:
        return " | ".join(done.stderr.strip().splitlines()[-3:])
    attacks: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return attacks


def _cell(rate: dict[str, Any]) -> str:
    """Format a rate and its interval."""
    low, high = rate["interval"]
    return f"{rate['rate']:.3f} [{low:.3f},{high:.3f}]"


def _print_table(label: str, ours: list[dict[str, Any]], peer: list[dict[str, Any]] | str) -> None:
    """Print both implementations' attacks on one synthetic table, side by side."""
    print(f"{'attack':<30}{'by':<11}{'made':>5}{'n':>5}  {'attack rate':<21}{'baseline rate':<21}"
          f"{'control rate':<21}{'risk':<21}{'s':>5}")  # fmt: skip
    peer_by_name = {} if isinstance(peer, str) else {a["name"]: a for a in peer}
    for attack in ours:
        pairs = [("ctdhub", attack)]
        if attack["name"] in peer_by_name:
            pairs.append(("anonymeter", peer_by_name[attack["name"]]))
        for who, a in pairs:
            low, high = a["risk_interval"]
            risk = f"{a['risk']:.3f} [{low:.3f},{high:.3f}]"
            name = attack["name"] if who == "ctdhub" else ""
            counts = f"{a['made']:>5}{a['main']['trials']:>5}"
            print(f"{name:<30}{who:<11}{counts}  {_cell(a['main']):<21}{_cell(a['baseline']):<21}"
                  f"{_cell(a['control']):<21}{risk:<21}"
                  f"{a['seconds']:>5.0f}")  # fmt: skip
    if isinstance(peer, str):
        print(f"anonymeter failed on {label}: {peer}")
        return
    for a in peer:
        for message in a["warnings"]:
            print(f"  anonymeter warned ({a['name']}): {message}")


def main() -> None:
    """Split the CTDC records, build the four synthetic tables and print both evaluations."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", help="(internal) run Anonymeter on this spec file")
    parser.add_argument("--train", type=int, default=10_000, help="training records")
    parser.add_argument("--control", type=int, default=10_000, help="control records")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per Anonymeter run")
    args = parser.parse_args()
    if args.worker:
        _anonymeter_worker(args.worker)
        return

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # run as a script: make bench and the packages importable
    import numpy as np
    import pandas as pd

    from bench.synth_bench import CTDC_FILE, DELTA, split_ctdc
    from contributors.schema import load_schema
    from disclosure_control.dp import epsilon_delta_to_rho
    from disclosure_control.synth import MarginalSynthesizer
    from hub.services.releases import synthesis_domain

    records = pd.read_csv(CTDC_FILE, dtype="string", keep_default_na=False).drop(columns=["caseNo"])
    # bench/synth_bench.py's split and 25-column subset, so both benches look at the same data.
    training_half, held_out_half, columns = split_ctdc(records, len(records))
    half = len(training_half)
    if args.train > half or args.control + args.train > half:
        raise SystemExit(f"--train and --control must fit the halves of {len(records)} records")
    training = training_half[columns].iloc[: args.train].reset_index(drop=True)
    control = held_out_half[columns].iloc[: args.control].reset_index(drop=True)
    held_out = held_out_half[columns].iloc[args.control : args.control + args.train]
    rng = np.random.default_rng(0)
    independent = pd.DataFrame(
        {c: training[c].to_numpy()[rng.permutation(len(training))] for c in columns},
        dtype="string",
    )
    start = time.perf_counter()
    domain = synthesis_domain(load_schema(), columns)
    model = MarginalSynthesizer(domain, epsilon_delta_to_rho(EPSILON, DELTA), delta=DELTA)
    synthesized = model.fit(training).sample(len(training), seed=0)[columns]
    synth_seconds = time.perf_counter() - start
    tables = {
        "training copy": training.copy(),
        "held-out real": held_out.reset_index(drop=True),
        "independent": independent,
        f"ctdhub eps {EPSILON:g}": synthesized,
    }

    OUT.mkdir(parents=True, exist_ok=True)
    training_file, control_file = OUT / "training.csv", OUT / "control.csv"
    training.to_csv(training_file, index=False)
    control.to_csv(control_file, index=False)
    print(f"{len(columns)} columns; {len(training)} training, {len(control)} control records, "
          f"{N_ATTACKS} attacks, {PREDICATE_COLUMNS} columns per predicate, seed {SEED}; "
          f"ctdhub synthesizer fit and sample {synth_seconds:.0f} s")  # fmt: skip
    if not ANON_PYTHON.exists():
        print("anonymeter: run bench/peers_anon.sh first; printing ctdhub's side only")
    results: dict[str, Any] = {}
    for i, (label, synthetic) in enumerate(tables.items()):
        ours, shares, split = _ctdhub_attacks(training, synthetic, control, columns)
        synthetic_file = OUT / f"synthetic-{i}.csv"
        synthetic.to_csv(synthetic_file, index=False)
        files = {"training": training_file, "synthetic": synthetic_file, "control": control_file}
        peer = (
            _anonymeter_attacks(files, split, args.timeout)
            if ANON_PYTHON.exists()
            else "environment missing"
        )
        print(f"\n== synthetic: {label} ({len(synthetic)} records; exact-match share "
              f"{shares['exact']:.3f}, control's {shares['control exact']:.3f}) ==")  # fmt: skip
        print(f"linkability halves: {split[0]} | {split[1]}")
        _print_table(label, ours, peer)
        results[label] = {"ctdhub": ours, "anonymeter": peer, "split": split, **shares}
    (OUT / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\n{DIFFERENCES}")


if __name__ == "__main__":
    main()
