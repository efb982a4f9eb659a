"""The search on hierarchies whose levels do not nest: pruning and roll-ups follow the true order.

Year -> 2-year -> 5-year periods does not nest (2004-2005 straddles two 5-year periods), so a
5-year node is not a generalisation of a 2-year node. The search must neither prune a 2-year
node because a 5-year node failed, nor roll a 5-year table up from a 2-year one. Every check
here compares with an exhaustive evaluation written independently with pandas.
"""

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
    PrivacyModel,
    _Lattice,
    anonymise,
)
from disclosure_control.sdc.hierarchies import WITHHELD, Hierarchy


def periods(value: int, width: int) -> str:
    """Label of ``value``'s period of ``width`` years counted from 0."""
    start = value // width * width
    return f"{start}-{start + width - 1}"


#: Years 0-9 -> 2-year -> 5-year -> any: levels 1 and 2 are not ordered either way.
YEAR = Hierarchy.from_mapping(
    "year",
    ["year", "2-year", "5-year", "any"],
    {str(y): [periods(y, 2), periods(y, 5)] for y in range(10)},
)
HIERARCHIES = {
    "year": YEAR,
    "sex": Hierarchy.from_mapping("sex", ["sex", "any"], {"F": [], "M": [], "X": []}),
    "area": Hierarchy.from_mapping(
        "area", ["area", "region", "any"], {"p": ["pq"], "q": ["pq"], "r": ["rs"], "s": ["rs"]}
    ),
}
QIS = ["year", "sex", "area"]


def test_the_year_hierarchy_does_not_nest() -> None:
    assert not YEAR.generalises(1, 2) and not YEAR.generalises(2, 1)
    assert YEAR.generalises(0, 2) and YEAR.generalises(1, 3) and YEAR.generalises(2, 3)


def exhaustive(
    frame: pd.DataFrame, k: int, budget: int, metric: str
) -> dict[tuple[int, ...], float]:
    """Loss of every node that meets k within the budget, each computed from scratch."""
    n, q = len(frame), len(QIS)
    losses = {}
    for node in itertools.product(*(range(HIERARCHIES[c].height + 1) for c in QIS)):
        generalised = pd.DataFrame(
            {c: HIERARCHIES[c].generalise(frame[c], lv) for c, lv in zip(QIS, node, strict=True)}
        )
        sizes = generalised.groupby(QIS, dropna=False)[QIS[0]].transform("size")
        kept = sizes >= k
        if int((~kept).sum()) > budget:
            continue
        total = norm = 0.0
        for c, level in zip(QIS, node, strict=True):
            h = HIERARCHIES[c]
            if metric == "precision":
                cell = pd.Series(level / h.height, index=frame.index)
                top = pd.Series(1.0, index=frame.index)
            elif metric == "loss":
                under = generalised[c].map(
                    pd.Series([row[level] for row in h.labels]).value_counts()
                )
                cell = (under.astype(float) - 1) / (len(h.leaves) - 1)
                top = pd.Series(1.0, index=frame.index)
            else:  # non-uniform entropy: -log2 P(original value | released label)
                leaf_count = frame[c].map(frame[c].value_counts()).astype(float)
                label_count = generalised[c].map(generalised[c].value_counts()).astype(float)
                cell = pd.Series(np.log2(label_count / leaf_count), index=frame.index)
                top = pd.Series(np.log2(n / leaf_count), index=frame.index)
            total += float(cell.where(kept, top).sum())
            norm += float(top.sum())
        losses[node] = (
            total / (norm if norm > 0 else 1.0) if metric == "entropy" else total / (n * q)
        )
    return losses


rows = st.lists(
    st.tuples(
        st.sampled_from([str(y) for y in range(10)]),
        st.sampled_from(["F", "M", "X", ""]),
        st.sampled_from(["p", "q", "r", "s"]),
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=rows,
    k=st.integers(1, 6),
    share=st.sampled_from([0.0, 0.05, 0.2]),
    metric=st.sampled_from(["precision", "loss", "entropy"]),
)
def test_search_finds_the_exhaustive_optimum_on_a_non_nesting_hierarchy(
    rows: list[tuple[str, str, str]], k: int, share: float, metric: str
) -> None:
    frame = pd.DataFrame(rows, columns=QIS, dtype="string")
    budget = math.floor(share * len(frame) + 1e-9)
    losses = exhaustive(frame, k, budget, metric)
    model = PrivacyModel(k=k, max_suppression=share)
    try:
        result = anonymise(frame, QIS, HIERARCHIES, model, metric=metric)  # type: ignore[arg-type]
    except AnonymisationError:
        assert not losses
        return
    report = result.report
    assert report.information_loss[metric] == pytest.approx(min(losses.values()), abs=1e-9)
    node = tuple(report.level_indices[c] for c in QIS)
    assert losses[node] == pytest.approx(report.information_loss[metric], abs=1e-9)
    released = result.data
    if not released.empty:
        assert int(released.groupby(QIS, dropna=False).size().min()) >= k
    assert len(result.suppressed) <= budget
    assert len(released) + len(result.suppressed) == len(frame)


def test_every_node_table_matches_a_group_by_whatever_was_cached_first() -> None:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "year": pd.Series(rng.integers(0, 10, 400).astype(str), dtype="string"),
            "sex": pd.Series(rng.choice(["F", "M", "X", ""], 400), dtype="string"),
            "area": pd.Series(rng.choice(list("pqrs"), 400), dtype="string"),
        }
    )
    lattice = _Lattice(frame, QIS, HIERARCHIES, PrivacyModel(k=3))
    # 2-year nodes first, so a 5-year node would be rolled up from one if the order allowed it.
    nodes = sorted(
        itertools.product(range(4), range(2), range(3)), key=lambda n: (n[0] != 1, sum(n))
    )
    for node in nodes:
        table = lattice.table(node)
        generalised = pd.DataFrame(
            {c: HIERARCHIES[c].generalise(frame[c], lv) for c, lv in zip(QIS, node, strict=True)}
        )
        expected = sorted(generalised.groupby(QIS, dropna=False).size().tolist())
        assert sorted(table.weights.astype(int).tolist()) == expected, node
        rows_of = lattice.record_rows(table)
        assert (table.weights[rows_of] > 0).all()
        sizes = pd.Series(table.weights[rows_of]).astype(int)
        by_pandas = generalised.groupby(QIS, dropna=False)[QIS[0]].transform("size")
        assert sizes.tolist() == by_pandas.astype(int).tolist(), node


def test_a_failed_five_year_node_does_not_prune_two_year_nodes() -> None:
    # Years 4 and 5 share the 2-year period 4-5 but not a 5-year period: with k=2 and no
    # suppression, 2-year periods pass and 5-year periods fail, whatever is tried first.
    frame = pd.DataFrame(
        {"year": ["4", "5"], "sex": ["F", "F"], "area": ["p", "p"]}, dtype="string"
    )
    result = anonymise(frame, QIS, HIERARCHIES, PrivacyModel(k=2, max_suppression=0.0))
    assert result.report.level_indices == {"year": 1, "sex": 0, "area": 0}
    assert result.data["year"].tolist() == ["4-5", "4-5"]
    lattice = _Lattice(frame, QIS, HIERARCHIES, PrivacyModel(k=2, max_suppression=0.0))
    assert not lattice.below((1, 0, 0), (2, 0, 0))
    assert lattice.below((1, 0, 0), (3, 0, 0)) and lattice.below((0, 0, 0), (2, 1, 2))


@pytest.mark.parametrize("strategy", ["full_domain", "local"])
def test_precision_is_arx_precision_with_suppressed_records_fully_generalised(
    ctdc_sample: pd.DataFrame,
    hierarchies: dict[str, Hierarchy],
    quasi_identifiers: list[str],
    strategy: str,
) -> None:
    # ARX's Metric.createPrecisionMetric(): mean over records and quasi-identifiers of level
    # over height, a suppressed record counting as height on each; computed here from the
    # release itself, a withheld value (WITHHELD, below the top level) counting as height too.
    qis = quasi_identifiers
    model = PrivacyModel(k=11, max_suppression=0.05)
    result = anonymise(
        ctdc_sample,
        qis,
        hierarchies,
        model,
        metric="precision",
        strategy=strategy,  # type: ignore[arg-type]
    )
    report = result.report
    # Both kinds of loss occur in this sample, so the check below exercises each.
    assert report.cells_suppressed > 0 if strategy == "local" else report.records_suppressed > 0
    heights = {q: hierarchies[q].height for q in qis}
    assert report.heights == heights
    total = float(len(result.suppressed) * len(qis))
    for q in qis:
        level = report.level_indices[q]
        withheld = result.data[q].eq(WITHHELD) if level < heights[q] else pd.Series(False)
        total += float(withheld.sum()) + (len(result.data) - float(withheld.sum())) * (
            level / heights[q]
        )
    expected = 1.0 - total / (len(ctdc_sample) * len(qis))
    assert report.precision == pytest.approx(expected)
    node_only = 1.0 - sum(report.level_indices[q] / heights[q] for q in qis) / len(qis)
    assert report.generalisation_precision == pytest.approx(node_only)
    assert report.precision <= report.generalisation_precision + 1e-12
