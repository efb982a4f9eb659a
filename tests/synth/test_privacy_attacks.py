"""Tests of the privacy attacks' design: like-for-like baselines, attempt budgets, samples."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from disclosure_control.evaluate import evaluate_privacy
from disclosure_control.evaluate._encoding import IntMatrix, encode_tables
from disclosure_control.evaluate.privacy import (
    _random_nearest,
    linkability,
    singling_out,
)

#: Chance a test allows a correct implementation to fail, for bounds taken from a distribution.
ALPHA = 1e-6


def _encoded(
    training: pd.DataFrame, synthetic: pd.DataFrame, control: pd.DataFrame
) -> tuple[IntMatrix, IntMatrix, IntMatrix]:
    """Encode three tables over one code book."""
    train_m, synth_m, control_m = encode_tables(
        [training, synthetic, control], list(training.columns)
    ).matrices
    return train_m, synth_m, control_m


def _baseline_bound(targets: int, synthetic_rows: int) -> int:
    """Return the count the 1/n baseline exceeds with probability at most ``ALPHA``."""
    return int(binom.isf(ALPHA, targets, 1 / synthetic_rows))


def _independent_columns(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Shuffle every column on its own: the marginals stay, every link between columns goes."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {c: frame[c].to_numpy()[rng.permutation(len(frame))] for c in frame.columns},
        dtype="string",
    )


def test_ties_are_broken_uniformly_at_random() -> None:
    rows = 3000
    distances = np.tile(np.array([0, 0, 1, 0, 2]), (rows, 1))
    picks = np.bincount(_random_nearest(distances, np.random.default_rng(7)), minlength=5)
    assert picks[2] == picks[4] == 0
    # Each tied column is Binomial(3000, 1/3): mean 1000, sd 25.8; 6 sd is P < 1e-8 each.
    assert all(abs(int(c) - rows / 3) < 6 * 25.8 for c in picks[[0, 1, 3]])


def test_the_test_table_is_duplicate_heavy(ctdc_training: pd.DataFrame) -> None:
    # The linkability tests below mean something only where ties are the rule.
    assert ctdc_training.duplicated(keep=False).mean() > 0.5


def test_linkability_through_independent_columns_is_no_better_than_baseline(
    ctdc_training: pd.DataFrame, ctdc_control: pd.DataFrame
) -> None:
    independent = _independent_columns(ctdc_training, seed=3)
    train_m, synth_m, control_m = _encoded(ctdc_training, independent, ctdc_control)
    n = min(len(train_m), len(control_m))
    result = linkability(train_m, synth_m, control_m, n, np.random.default_rng(11))
    # The two halves of the shuffled table are independent and its rows exchangeable, so with
    # ties broken at random each half's pick is independent of the other and uniform over the
    # synthetic rows: a target is linked with probability exactly 1/n_synthetic, the baseline's
    # Binomial(n, 1/n_synthetic). (Counting a link when any tied closest record is closest to
    # both halves linked 717 of these 2444 targets, against a bound of 9.)
    bound = _baseline_bound(n, len(synth_m))
    assert round(result.main_rate * n) <= bound
    assert round(result.control_rate * n) <= bound
    assert result.risk_interval[0] == 0.0


def test_linkability_through_a_copy_beats_its_baseline(
    ctdc_training: pd.DataFrame, ctdc_control: pd.DataFrame
) -> None:
    train_m, synth_m, control_m = _encoded(ctdc_training, ctdc_training.copy(), ctdc_control)
    n = min(len(train_m), len(control_m))
    result = linkability(train_m, synth_m, control_m, n, np.random.default_rng(11))
    assert result.n_attacks == result.n_requested == n
    # The baseline's own count stays within its binomial bound; the attack's goes far past it.
    bound = _baseline_bound(n, len(synth_m))
    assert round(result.baseline_rate * n) <= bound
    assert round(result.main_rate * n) > 3 * bound


def test_linkability_draws_its_column_split_first(ctdc_training: pd.DataFrame) -> None:
    # bench/anon_check.py repeats the split from a fresh generator of the same seed; the split
    # decides the result, so a different first draw would show as a different result.
    train_m, synth_m, control_m = _encoded(ctdc_training, ctdc_training, ctdc_training)
    first = linkability(train_m, synth_m, control_m, 200, np.random.default_rng(5))
    again = linkability(train_m, synth_m, control_m, 200, np.random.default_rng(5))
    assert first == again


def _identified(rows: int, columns: int, start: int = 0) -> IntMatrix:
    """Return records that differ from each other in every column: unique on any predicate."""
    return np.repeat(np.arange(start, start + rows)[:, None], columns, axis=1).astype(np.int64)


def test_singling_out_spends_its_attempt_budget_exactly() -> None:
    columns = 5
    unique = _identified(100, columns)
    repeated = np.full((100, columns), 100, dtype=np.int64)
    synthetic = np.concatenate([unique, repeated])
    sizes = [101] * columns
    # Half the synthetic rows are unique on every predicate, so an attempt makes a predicate
    # with probability 1/2: 1000 attempts make Binomial(1000, 1/2) predicates (sd 15.8).
    result = singling_out(
        unique, synthetic, unique, sizes, 10_000, 3, np.random.default_rng(2), max_attempts=1000
    )
    assert result.n_requested == 10_000
    assert abs(result.n_attacks - 500) < 6 * 15.8
    assert result.main_rate == result.control_rate == 1.0
    # A generous budget makes every predicate asked for, and no more.
    enough = singling_out(unique, synthetic, unique, sizes, 50, 3, np.random.default_rng(2))
    assert enough.n_attacks == enough.n_requested == 50


def test_singling_out_budget_is_validated() -> None:
    unique = _identified(10, 3)
    with pytest.raises(ValueError, match="max_attempts must be at least 1, not 0"):
        singling_out(
            unique, unique, unique, [10] * 3, 5, 2, np.random.default_rng(0), max_attempts=0
        )


def test_singling_out_needs_a_column_per_predicate() -> None:
    unique = _identified(10, 3)
    with pytest.raises(ValueError, match="a predicate needs at least one column, not 0"):
        singling_out(unique, unique, unique, [10] * 3, 5, 0, np.random.default_rng(0))


def test_singling_out_samples_the_larger_table_at_random() -> None:
    columns = 5
    training = _identified(200, columns)
    # A sorted control table: 200 copies of one record first, then the training records. Cut to
    # its first 200 rows, it would hold no training record and single out nobody.
    control = np.concatenate([np.full((200, columns), 200, dtype=np.int64), training])
    result = singling_out(
        training, training, control, [201] * columns, 400, 3, np.random.default_rng(4)
    )
    assert result.n_attacks == 400 and result.main_rate == 1.0
    # A uniform sample of 200 of the 400 control rows holds each training record with
    # probability 1/2, and a predicate succeeds exactly when its record is held: the rate's sd
    # is below 0.04 (hypergeometric count, then 400 draws), so 0.3 is five sd away.
    assert 0.3 < result.control_rate < 0.7


def test_evaluate_privacy_takes_and_reports_the_attempt_budget(
    ctdc_training: pd.DataFrame, ctdc_control: pd.DataFrame
) -> None:
    # About 1 attempt in 36 makes a predicate on these duplicate-heavy records (27 of 1000).
    scant = evaluate_privacy(
        ctdc_training, ctdc_control, ctdc_control, n_attacks=100, singling_out_attempts=1000
    )
    singled = next(a for a in scant.attacks if a.name == "singling out")
    assert singled.n_requested == 100 and 0 < singled.n_attacks < 100
    default = evaluate_privacy(ctdc_training, ctdc_control, ctdc_control, n_attacks=100)
    singled = next(a for a in default.attacks if a.name == "singling out")
    assert singled.n_attacks == singled.n_requested == 100
    data = json.loads(json.dumps(default.to_dict()))
    assert all(a["risk_interval"][0] <= a["risk"] <= a["risk_interval"][1] for a in data["attacks"])


def test_evaluate_privacy_needs_an_attack(ctdc_training: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="n_attacks must be at least 1, not 0"):
        evaluate_privacy(ctdc_training, ctdc_training, ctdc_training, n_attacks=0)
