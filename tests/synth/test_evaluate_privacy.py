"""Tests of the privacy measures and the report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from disclosure_control.evaluate import evaluate_privacy, evaluate_release
from disclosure_control.evaluate.privacy import hamming_to_nearest, wilson_interval


def test_hamming_nearest_on_a_subset_of_columns() -> None:
    queries = np.array([[0, 5, 1]])
    reference = np.array([[1, 5, 1], [0, 4, 0]])
    distances, nearest = hamming_to_nearest(queries, reference, [0, 2])
    assert distances.tolist() == [1]
    assert nearest.tolist() == [0]


def test_wilson_interval_holds_the_rate() -> None:
    low, high = wilson_interval(0, 40)
    assert low == 0.0 and 0.05 < high < 0.1


def test_a_copy_of_the_training_records_is_flagged(
    ctdc_training: pd.DataFrame, ctdc_control: pd.DataFrame
) -> None:
    report = evaluate_privacy(
        ctdc_training,
        ctdc_training.copy(),
        ctdc_control,
        n_attacks=150,
        n_distance_sample=150,
        secrets=["CountryOfExploitation"],
    )
    assert report.exact_match_share == 1.0
    assert report.distance.synthetic_exact_share == 1.0
    assert report.distance.synthetic_median == 0.0
    by_name = {a.name: a for a in report.attacks}
    # A copy singles out whoever it singles out in itself.
    assert by_name["singling out"].main_rate == 1.0
    assert by_name["singling out"].risk > 0.5
    # Ties on the known columns can point to another record, so inference is not perfect.
    inferred = by_name["inference of CountryOfExploitation"]
    assert inferred.main_rate > inferred.control_rate > inferred.baseline_rate
    # Linking half a record to the other half through a copy is not sure, as duplicates tie,
    # but it beats the baseline's Binomial(150, 1/n) by far: 3 successes or more has P < 1e-4.
    assert round(by_name["linkability"].main_rate * 150) > 3


def test_a_fresh_real_sample_shows_little_risk(
    ctdc_training: pd.DataFrame, ctdc_control: pd.DataFrame
) -> None:
    # A third sample of the same population stands in for a perfect synthesizer.
    fresh = ctdc_training.iloc[: len(ctdc_training) // 2]
    other_control = ctdc_control.iloc[: len(ctdc_control) // 2]
    report = evaluate_privacy(
        ctdc_training.iloc[len(ctdc_training) // 2 :].reset_index(drop=True),
        other_control,
        fresh,
        n_attacks=150,
        n_distance_sample=150,
        seed=1,
    )
    # With 150 attacks the rates' standard error is at most 0.041; 0.25 is about six of them.
    assert all(a.risk < 0.25 for a in report.attacks)
    assert report.distance.synthetic_median == pytest.approx(report.distance.control_median, abs=1)


def test_privacy_needs_non_empty_tables(ctdc_training: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="the control table is empty"):
        evaluate_privacy(ctdc_training, ctdc_training, ctdc_training.iloc[:0])


def test_unknown_secret_is_refused(ctdc_training: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"secret column\(s\) \['name'\]"):
        evaluate_privacy(ctdc_training, ctdc_training, ctdc_training, secrets=["name"])


def test_release_report_round_trips_as_json_and_markdown(
    ctdc_training: pd.DataFrame, ctdc_control: pd.DataFrame
) -> None:
    report = evaluate_release(
        ctdc_training,
        ctdc_control,
        ctdc_control,
        metadata={"synthesizer": "held-out sample", "rho": 0.5},
        references={"self": ctdc_training},
        n_three_way=20,
        n_attacks=60,
    )
    data = json.loads(report.to_json())
    assert data["metadata"]["synthesizer"] == "held-out sample"
    assert data["metadata"]["training records"] == len(ctdc_training)
    assert {t["order"] for t in data["utility"]["tvd"]} == {1, 2, 3}
    assert data["references"]["self"]["tvd"][0]["mean"] == 0.0
    assert len(data["privacy"]["attacks"]) == 3
    text = report.to_markdown()
    for heading in ("## Utility: total-variation", "## Utility: analyst queries", "## Privacy"):
        assert heading in text
    assert "█" in text


def test_synthetic_table_without_unique_records_cannot_single_out(
    ctdc_training: pd.DataFrame, ctdc_control: pd.DataFrame
) -> None:
    # Every synthetic record is the same: no predicate is unique, so no attack can be made.
    repeated = pd.concat([ctdc_training.iloc[[0]]] * 50, ignore_index=True)
    report = evaluate_privacy(ctdc_training, repeated, ctdc_control, n_attacks=20)
    singling = next(a for a in report.attacks if a.name == "singling out")
    assert singling.n_attacks == 0 and singling.risk == 0.0
