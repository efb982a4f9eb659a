"""Privacy measures agree with a plain pandas implementation written independently here."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from disclosure_control.sdc.measures import (
    class_sizes,
    k_anonymity,
    l_diversity,
    measure,
    reidentification_risk,
    t_closeness,
)
from tests.sdc.conftest import CTDC_PUBLISHED_QIS


def pandas_sizes(frame: pd.DataFrame, qis: list[str]) -> pd.Series:
    """Class size per record by a pandas group-by (missing values kept as a group)."""
    return frame.groupby(qis, dropna=False, observed=True)[qis[0]].transform("size")


def pandas_k(frame: pd.DataFrame, qis: list[str]) -> int:
    """Smallest class by a pandas group-by."""
    return int(frame.groupby(qis, dropna=False, observed=True).size().min())


def pandas_l(frame: pd.DataFrame, qis: list[str], sensitive: str) -> tuple[float, float]:
    """Distinct and entropy l-diversity by pandas, from per-class value counts."""
    counts = frame.groupby(qis + [sensitive], dropna=False, observed=True).size()
    distinct = counts.groupby(level=list(range(len(qis))), dropna=False).size().min()
    entropies = []
    for _, group in counts.groupby(level=list(range(len(qis))), dropna=False):
        p = group.to_numpy() / group.sum()
        entropies.append(-(p * np.log(p)).sum())
    return float(distinct), float(math.exp(min(entropies)))


def pandas_t(frame: pd.DataFrame, qis: list[str], sensitive: str) -> float:
    """t-closeness (total variation, equal ground distance) by a pandas crosstab."""
    keys = frame[qis].astype("string").fillna("<NA>").agg("|".join, axis=1)
    table = pd.crosstab(keys, frame[sensitive].astype("string").fillna("<NA>"))
    overall = table.sum() / table.to_numpy().sum()
    share = table.div(table.sum(axis=1), axis=0)
    return float((share - overall).abs().sum(axis=1).max() / 2)


def test_measures_match_pandas_on_a_ctdc_sample(ctdc_sample: pd.DataFrame) -> None:
    qis = list(CTDC_PUBLISHED_QIS)
    m = measure(ctdc_sample, qis, "exploitationType")
    sizes = pandas_sizes(ctdc_sample, qis)
    assert m.k == pandas_k(ctdc_sample, qis)
    assert m.classes == ctdc_sample.groupby(qis).ngroups
    assert (class_sizes(ctdc_sample, qis) == sizes.to_numpy()).all()
    distinct, entropy = pandas_l(ctdc_sample, qis, "exploitationType")
    assert m.l_distinct == distinct
    assert m.l_entropy == pytest.approx(entropy)
    assert m.t == pytest.approx(pandas_t(ctdc_sample, qis, "exploitationType"))
    risk = 1 / sizes
    assert m.risk.prosecutor.highest == pytest.approx(risk.max())
    assert m.risk.prosecutor.average == pytest.approx(risk.mean())
    assert m.risk.prosecutor.share_above == pytest.approx((risk > 0.2).mean())
    assert m.risk.sample_uniques == int((sizes == 1).sum())
    assert m.risk.marketer == pytest.approx(m.classes / len(ctdc_sample))


@pytest.mark.slow
def test_ctdc_release_is_11_anonymous_on_its_published_quasi_identifiers(
    ctdc_records: pd.DataFrame,
) -> None:
    # The data README states the smallest class on these five columns is 11.
    assert k_anonymity(ctdc_records, list(CTDC_PUBLISHED_QIS)) == 11
    assert pandas_k(ctdc_records, list(CTDC_PUBLISHED_QIS)) == 11
    distinct, _ = pandas_l(ctdc_records, list(CTDC_PUBLISHED_QIS), "exploitationType")
    assert l_diversity(ctdc_records, list(CTDC_PUBLISHED_QIS), "exploitationType") == distinct


def test_journalist_risk_uses_population_class_sizes() -> None:
    population = pd.DataFrame({"g": ["F"] * 6 + ["M"] * 3 + ["X"]})
    sample = population.iloc[[0, 1, 6, 9]]
    report = reidentification_risk(sample, ["g"], threshold=0.4, population=population)
    # Sample classes: F 2, M 1, X 1; population classes: F 6, M 3, X 1.
    assert report.prosecutor.highest == 1.0
    assert report.prosecutor.average == pytest.approx((0.5 + 0.5 + 1 + 1) / 4)
    assert report.journalist.average == pytest.approx((1 / 6 + 1 / 6 + 1 / 3 + 1) / 4)
    assert report.journalist.share_above == 0.25
    assert report.marketer == pytest.approx(report.journalist.average)
    assert report.sample_uniques == 2 and report.population_uniques == 1


def test_risk_refuses_a_release_not_in_the_population() -> None:
    population = pd.DataFrame({"g": ["F", "M"]})
    with pytest.raises(ValueError, match="do not occur in the population"):
        reidentification_risk(pd.DataFrame({"g": ["Z"]}), ["g"], population=population)


def test_missing_values_form_their_own_class() -> None:
    frame = pd.DataFrame({"g": ["F", "", "", pd.NA]}, dtype="string")
    # "" and NA are different codings; each is a value of its own, never dropped.
    assert class_sizes(frame, ["g"]).tolist() == [1, 2, 2, 1]


def test_ordered_t_closeness_uses_cumulative_distance() -> None:
    frame = pd.DataFrame({"g": ["a", "a", "b", "b"], "s": ["low", "low", "high", "high"]})
    order = ["low", "mid", "high"]
    # Class a is all "low", overall is half low, half high: cumulative gaps 0.5, 0.5, 0.
    assert t_closeness(frame, ["g"], "s", order) == pytest.approx((0.5 + 0.5) / 2)
    assert t_closeness(frame, ["g"], "s") == pytest.approx(0.5)


def test_unknown_quasi_identifier_is_named() -> None:
    with pytest.raises(KeyError, match="nope"):
        k_anonymity(pd.DataFrame({"g": ["F"]}), ["nope"])


values = st.sampled_from(["a", "b", "c", ""])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(values, values, st.sampled_from(["x", "y", "z"])), min_size=1, max_size=40),
    st.booleans(),
)
def test_measures_match_pandas_on_random_frames(
    rows: list[tuple[str, str, str]], categorical: bool
) -> None:
    frame = pd.DataFrame(rows, columns=["q1", "q2", "s"], dtype="string")
    if categorical:
        frame = frame.astype({"q1": "category"})
    qis = ["q1", "q2"]
    m = measure(frame, qis, "s")
    assert m.k == pandas_k(frame, qis)
    distinct, entropy = pandas_l(frame, qis, "s")
    assert m.l_distinct == distinct
    assert m.l_entropy == pytest.approx(entropy)
    assert m.t == pytest.approx(pandas_t(frame, qis, "s"))
    assert m.risk.prosecutor.average == pytest.approx((1 / pandas_sizes(frame, qis)).mean())
