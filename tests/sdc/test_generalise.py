"""Anonymisation: releases are k-anonymous, lose no row silently, and the search is optimal."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from disclosure_control.sdc.generalise import (
    AnonymisationError,
    AnonymisationResult,
    PrivacyModel,
    anonymise,
)
from disclosure_control.sdc.hierarchies import (
    MARKERS,
    MISSING,
    TOP,
    WITHHELD,
    Hierarchy,
    HierarchyError,
)

#: A column the tests add to the input to follow each record through the (shuffled) release.
ROW = "testRowTag"


def tagged(frame: pd.DataFrame) -> pd.DataFrame:
    """Return the records with :data:`ROW`: each one's position, as a string."""
    return frame.assign(**{ROW: pd.array([str(i) for i in range(len(frame))], dtype="string")})


def independent_k(frame: pd.DataFrame, qis: list[str]) -> int:
    """Smallest class of a release by a plain pandas group-by."""
    return int(frame.groupby(qis, dropna=False).size().min())


def assert_release_consistent(
    original: pd.DataFrame,
    result: AnonymisationResult,
    qis: list[str],
    hierarchies: dict[str, Hierarchy],
) -> None:
    """Check no row is lost silently and every released value is its original's label.

    ``original`` carries :data:`ROW` (see :func:`tagged`), which follows each record into the
    release: the release's own index is a fresh ``RangeIndex`` that says nothing.
    """
    assert result.data.index.equals(pd.RangeIndex(len(result.data)))
    kept, suppressed = original.index[result.data[ROW].astype(int).to_numpy()], result.suppressed
    assert len(kept) + len(suppressed) == len(original)
    assert kept.intersection(suppressed).empty
    assert kept.union(suppressed).sort_values().equals(original.index.sort_values())
    report = result.report
    assert report.records_kept == len(kept) and report.records_suppressed == len(suppressed)
    stars = 0
    for q in qis:
        level = report.level_indices[q]
        expected = hierarchies[q].generalise(original.loc[kept, q], level).reset_index(drop=True)
        released = result.data[q]
        withheld = released.eq(WITHHELD)
        assert not expected.eq(WITHHELD).any()
        # The top label is the level's own: it appears exactly where the level is the top.
        assert released.eq(TOP).any() == (level == report.heights[q] and len(released) > 0)
        stars += int(withheld.sum())
        assert report.cells_suppressed_by_field[q] == int(withheld.sum())
        assert released[~withheld].equals(expected[~withheld]), q
        if report.strategy == "full_domain":
            assert not withheld.any()
    assert stars == report.cells_suppressed
    others = [c for c in original.columns if c not in qis]
    assert result.data[others].equals(original.loc[kept, others].reset_index(drop=True))


@pytest.mark.slow
def test_ctdc_release_at_k_11_is_11_anonymous(
    ctdc_records: pd.DataFrame, quasi_identifiers: list[str], hierarchies: dict[str, Hierarchy]
) -> None:
    records = tagged(ctdc_records)
    result = anonymise(records, quasi_identifiers, hierarchies, PrivacyModel(k=11))
    assert independent_k(result.data, quasi_identifiers) >= 11
    assert result.report.records_suppressed <= math.floor(0.05 * len(ctdc_records))
    assert result.report.after.k >= 11
    assert_release_consistent(records, result, quasi_identifiers, hierarchies)
    two_diverse = anonymise(
        ctdc_records,
        quasi_identifiers,
        hierarchies,
        PrivacyModel(k=11, sensitive="exploitationType", l=2),
    )
    per_class = two_diverse.data.groupby(quasi_identifiers, dropna=False)["exploitationType"]
    assert per_class.nunique().min() >= 2
    assert independent_k(two_diverse.data, quasi_identifiers) >= 11


def brute_force_loss(
    frame: pd.DataFrame,
    qis: list[str],
    hierarchies: dict[str, Hierarchy],
    k: int,
    budget: int,
    metric: str,
) -> float:
    """Least loss over every node of the lattice, each evaluated with pandas from scratch."""
    best = math.inf
    n, q = len(frame), len(qis)
    for node in itertools.product(*(range(hierarchies[c].height + 1) for c in qis)):
        generalised = pd.DataFrame(
            {c: hierarchies[c].generalise(frame[c], lv) for c, lv in zip(qis, node, strict=True)}
        )
        sizes = generalised.groupby(qis, dropna=False)[qis[0]].transform("size")
        kept = sizes >= k
        if (~kept).sum() > budget:
            continue
        total = 0.0
        for c, level in zip(qis, node, strict=True):
            h = hierarchies[c]
            if metric == "precision":
                cell = pd.Series(level / h.height, index=frame.index)
            else:  # Iyengar's loss: leaves under the label, less one, over leaves less one
                under = {
                    label: sum(1 for row in h.labels if row[level] == label)
                    for label in {row[level] for row in h.labels}
                }
                cell = generalised[c].map(under).astype(float).sub(1) / (len(h.leaves) - 1)
            total += float(cell.where(kept, 1.0).sum())
        best = min(best, total / (n * q))
    return best


@pytest.mark.parametrize("metric", ["precision", "loss"])
def test_search_finds_the_least_loss_of_the_whole_lattice(
    ctdc_sample: pd.DataFrame, hierarchies: dict[str, Hierarchy], metric: str
) -> None:
    qis = ["gender", "ageBroad", "citizenship", "yearOfRegistration"]
    frame = ctdc_sample[qis]
    model = PrivacyModel(k=25, max_suppression=0.03)
    result = anonymise(frame, qis, hierarchies, model, metric=metric)  # type: ignore[arg-type]
    budget = math.floor(0.03 * len(frame))
    expected = brute_force_loss(frame, qis, hierarchies, 25, budget, metric)
    assert result.report.information_loss[metric] == pytest.approx(expected)
    assert result.report.nodes_evaluated < result.report.lattice_size
    assert independent_k(result.data, qis) >= 25


def test_local_strategy_keeps_more_and_stays_k_anonymous(
    ctdc_sample: pd.DataFrame, hierarchies: dict[str, Hierarchy], quasi_identifiers: list[str]
) -> None:
    model = PrivacyModel(k=11, max_suppression=0.02)
    ctdc_sample = tagged(ctdc_sample)
    result = anonymise(ctdc_sample, quasi_identifiers, hierarchies, model, strategy="best")
    report = result.report
    assert set(report.alternatives) == {"full_domain", "local"}
    assert report.information_loss["loss"] == pytest.approx(min(report.alternatives.values()))
    assert independent_k(result.data, quasi_identifiers) >= 11
    assert_release_consistent(ctdc_sample, result, quasi_identifiers, hierarchies)
    local = anonymise(ctdc_sample, quasi_identifiers, hierarchies, model, strategy="local")
    assert local.report.strategy == "local"
    assert local.report.cells_suppressed > 0
    assert independent_k(local.data, quasi_identifiers) >= 11
    assert_release_consistent(ctdc_sample, local, quasi_identifiers, hierarchies)


def test_l_diversity_and_t_closeness_hold_in_the_release(
    ctdc_sample: pd.DataFrame, hierarchies: dict[str, Hierarchy], quasi_identifiers: list[str]
) -> None:
    qis = quasi_identifiers
    entropy = anonymise(
        ctdc_sample,
        qis,
        hierarchies,
        PrivacyModel(k=5, sensitive="exploitationType", l=1.5, l_kind="entropy"),
    )
    counts = entropy.data.groupby(qis, dropna=False)["exploitationType"].value_counts()
    shares = counts / counts.groupby(level=list(range(len(qis))), dropna=False).transform("sum")
    per_class = (-shares * np.log(shares)).groupby(level=list(range(len(qis))), dropna=False)
    assert np.exp(per_class.sum()).min() >= 1.5 - 1e-9
    close = anonymise(
        ctdc_sample, qis, hierarchies, PrivacyModel(k=5, sensitive="exploitationType", t=0.6)
    )
    # t-closeness compares each class with the whole input, as the model defines it.
    overall = ctdc_sample["exploitationType"].value_counts(normalize=True)
    released = close.data
    table = pd.crosstab(
        released[qis].astype("string").agg("|".join, axis=1), released["exploitationType"]
    )
    share = table.div(table.sum(axis=1), axis=0)
    assert (share - overall[table.columns]).abs().sum(axis=1).max() / 2 <= 0.6 + 1e-9


def test_no_generalisation_meets_k_above_the_record_count(
    hierarchies: dict[str, Hierarchy],
) -> None:
    frame = pd.DataFrame({"gender": ["Female", "Male", "Male"]}, dtype="string")
    with pytest.raises(AnonymisationError, match="no generalisation meets k=4"):
        anonymise(frame, ["gender"], hierarchies, PrivacyModel(k=4))


def test_missing_hierarchy_and_bad_model_are_refused(hierarchies: dict[str, Hierarchy]) -> None:
    frame = pd.DataFrame({"Datasource": ["Hotline"]}, dtype="string")
    with pytest.raises(KeyError, match="no generalisation hierarchy"):
        anonymise(frame, ["Datasource"], hierarchies)
    with pytest.raises(ValueError, match="need a sensitive attribute"):
        PrivacyModel(l=2)
    with pytest.raises(ValueError, match="max_suppression"):
        PrivacyModel(max_suppression=1.5)


TOY = {
    "a": Hierarchy.from_mapping(
        "a", ["v", "pair", "any"], {"1": ["12"], "2": ["12"], "3": ["34"], "4": ["34"]}
    ),
    "b": Hierarchy.from_mapping("b", ["v", "any"], {"x": [], "y": [], "z": []}),
    "c": Hierarchy.from_mapping(
        "c",
        ["v", "half", "any"],
        {"p": ["pq"], "q": ["pq"], "r": ["rs"], "s": ["rs"]},
    ),
}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["1", "2", "3", "4", ""]),
            st.sampled_from(["x", "y", "z", ""]),
            st.sampled_from(["p", "q", "r", "s"]),
        ),
        min_size=1,
        max_size=60,
    ),
    k=st.integers(1, 6),
    budget=st.sampled_from([0.0, 0.05, 0.2]),
    strategy=st.sampled_from(["full_domain", "local", "best"]),
    metric=st.sampled_from(["precision", "loss", "entropy", "discernibility"]),
)
def test_release_is_k_anonymous_or_refused_and_loses_no_row(
    rows: list[tuple[str, str, str]], k: int, budget: float, strategy: str, metric: str
) -> None:
    frame = tagged(pd.DataFrame(rows, columns=["a", "b", "c"], dtype="string"))
    frame.index = pd.Index([f"r{i}" for i in range(len(frame))])
    frame["payload"] = np.arange(len(frame))
    qis = ["a", "b", "c"]
    try:
        result = anonymise(
            frame,
            qis,
            TOY,
            PrivacyModel(k=k, max_suppression=budget),
            metric=metric,  # type: ignore[arg-type]
            strategy=strategy,  # type: ignore[arg-type]
        )
    except AnonymisationError:
        # Everything generalised to "*" is one class of all records: only too few records fail.
        assert len(frame) < k
        return
    assert result.data.empty or independent_k(result.data, qis) >= k
    assert len(result.suppressed) <= math.floor(budget * len(frame) + 1e-9)
    assert_release_consistent(frame, result, qis, TOY)


def test_average_risk_cap_holds_in_the_release(
    ctdc_sample: pd.DataFrame, hierarchies: dict[str, Hierarchy], quasi_identifiers: list[str]
) -> None:
    model = PrivacyModel(k=11, sensitive="exploitationType", l=2, max_average_risk=0.03)
    for strategy in ("full_domain", "local"):
        result = anonymise(ctdc_sample, quasi_identifiers, hierarchies, model, strategy=strategy)
        released = result.data
        classes = released.groupby(quasi_identifiers, dropna=False).ngroups
        assert classes / len(released) <= 0.03
        assert result.report.after.risk.prosecutor.average <= 0.03
        assert independent_k(released, quasi_identifiers) >= 11
        assert released.groupby(quasi_identifiers)["exploitationType"].nunique().min() >= 2


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["1", "2", "3", "4", ""]),
            st.sampled_from(["x", "y", "z"]),
            st.sampled_from(["u", "v", "w"]),
        ),
        min_size=1,
        max_size=60,
    ),
    k=st.integers(1, 5),
    l_value=st.sampled_from([1.5, 2.0, 3.0]),
    l_kind=st.sampled_from(["distinct", "entropy"]),
    strategy=st.sampled_from(["full_domain", "local"]),
)
def test_release_is_l_diverse_or_refused(
    rows: list[tuple[str, str, str]], k: int, l_value: float, l_kind: str, strategy: str
) -> None:
    frame = tagged(pd.DataFrame(rows, columns=["a", "b", "s"], dtype="string"))
    qis = ["a", "b"]
    model = PrivacyModel(
        k=k,
        max_suppression=0.1,
        sensitive="s",
        l=l_value,
        l_kind=l_kind,  # type: ignore[arg-type]
    )
    try:
        result = anonymise(frame, qis, TOY, model, strategy=strategy)  # type: ignore[arg-type]
    except AnonymisationError:
        # Refused only when even one class of every record breaks the model.
        shares = frame["s"].value_counts(normalize=True)
        diversity = (
            len(shares) if l_kind == "distinct" else float(np.exp(-(shares * np.log(shares)).sum()))
        )
        assert len(frame) < k or diversity < l_value - 1e-9
        return
    released = result.data
    if released.empty:
        return
    assert independent_k(released, qis) >= k
    for _, group in released.groupby(qis, dropna=False)["s"]:
        shares = group.value_counts(normalize=True)
        if l_kind == "distinct":
            assert len(shares) >= l_value
        else:
            assert float(np.exp(-(shares * np.log(shares)).sum())) >= l_value - 1e-9
    assert_release_consistent(frame, result, qis, TOY)


def test_local_strategy_never_withholds_a_value_already_at_the_top() -> None:
    # Found by the property test above: at a node where "a" is already "*", withholding "a"
    # again cost nothing, so the greedy step chose it, counted cells no one could see and split
    # a class on an invisible code.
    rows = [("1", "x", "p")] * 3 + [("1", "x", "q"), ("1", "y", "p"), ("1", "y", "q")]
    frame = tagged(pd.DataFrame([*rows, ("3", "x", "p")], columns=["a", "b", "c"], dtype="string"))
    model = PrivacyModel(k=3, max_suppression=0.0)
    result = anonymise(frame, ["a", "b", "c"], TOY, model, metric="entropy", strategy="local")
    assert result.report.level_indices["a"] == 2
    assert_release_consistent(frame, result, ["a", "b", "c"], TOY)
    assert independent_k(result.data, ["a", "b", "c"]) >= 3


def test_withheld_and_fully_generalised_values_carry_distinct_documented_markers() -> None:
    # Issue 10, item 2: both were written "*", so a reader could not tell "withheld for this
    # record" from "not published at this level for anyone".
    rows = [("1", "x", "p")] * 3 + [("1", "x", "q"), ("1", "y", "p"), ("1", "y", "q")]
    frame = tagged(pd.DataFrame([*rows, ("3", "x", "p")], columns=["a", "b", "c"], dtype="string"))
    model = PrivacyModel(k=3, max_suppression=0.0)
    result = anonymise(frame, ["a", "b", "c"], TOY, model, metric="entropy", strategy="local")
    report = result.report
    assert report.level_indices["a"] == TOY["a"].height
    assert result.data["a"].eq(TOP).all()
    withheld = result.data[["b", "c"]] == WITHHELD
    assert int(withheld.to_numpy().sum()) == report.cells_suppressed > 0
    assert TOP != WITHHELD and MISSING not in (TOP, WITHHELD)
    # Each marker is documented, and the report says which field may carry which.
    assert set(MARKERS) == {TOP, WITHHELD, MISSING}
    assert all(MARKERS.values())
    assert set(report.markers["a"]) == {TOP}
    for q in ("b", "c"):
        expected = {MISSING, WITHHELD} if report.cells_suppressed_by_field[q] else {MISSING}
        assert set(report.markers[q]) == expected
    assert_release_consistent(frame, result, ["a", "b", "c"], TOY)


def test_a_hierarchy_cannot_use_a_marker_as_a_label() -> None:
    with pytest.raises(HierarchyError, match="reserved"):
        Hierarchy.from_mapping("bad", ["v", "any"], {WITHHELD: []})
    with pytest.raises(HierarchyError, match="reserved markers"):
        Hierarchy.from_mapping("bad", ["v", "band", "any"], {"x": [WITHHELD], "y": ["Y"]})
