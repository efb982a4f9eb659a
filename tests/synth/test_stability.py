"""Property tests of the synthesizer's user transformations on neighbouring record sets.

OpenDP cannot check a user transformation's stability map; these tests check, on random small
record matrices and random public parameters, that the output really moves by at most what
the map tells OpenDP, for one record added or removed (symmetric distance 1) and one record
substituted (distance 2). They also check that the score cache can never serve a value of one
matrix for another, and that the run's spend is the composition of its measurements.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from disclosure_control.synth import Domain, MarginalSynthesizer
from disclosure_control.synth.measure import (
    compress_records,
    encoded_records_domain,
    make_marginal_counts,
    make_score_transformation,
    marginal_cells,
)
from disclosure_control.synth.scores import (
    RecordStatistics,
    cells,
    pair_distances,
    pair_error_score,
    parent_set_score,
    tree_score,
)

#: Score sums are float sums of a few dozen terms; their rounding stays far below this.
FLOAT_SLACK = 1e-9

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Scenario:
    """Random encoded records, a neighbour of them, and random public (released) values."""

    matrix: npt.NDArray[np.int64]
    neighbour: npt.NDArray[np.int64]
    distance: int
    lookups: list[npt.NDArray[np.int64]]
    priors: list[npt.NDArray[np.float64]]
    n_hat: float

    @property
    def sizes(self) -> list[int]:
        return [int(lk.max()) + 1 for lk in self.lookups]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    d = draw(st.integers(2, 4))
    full_sizes = [draw(st.integers(1, 4)) for _ in range(d)]
    lookups = []
    for k in full_sizes:
        compressed = draw(st.integers(1, k))
        codes = draw(st.lists(st.integers(0, compressed - 1), min_size=k, max_size=k))
        lookups.append(np.array(codes, dtype=np.int64))
    record = st.tuples(*[st.integers(0, k - 1) for k in full_sizes])
    rows = draw(st.lists(record, max_size=14))
    matrix = np.array(rows, dtype=np.int64).reshape(len(rows), d)
    kinds = ["add"] + (["remove", "substitute"] if rows else [])
    kind = draw(st.sampled_from(kinds))
    neighbour, distance = matrix, 0
    if kind in ("remove", "substitute"):
        drop = draw(st.integers(0, len(rows) - 1))
        neighbour, distance = np.delete(neighbour, drop, axis=0), 1
    if kind in ("add", "substitute"):
        added = np.array([draw(record)], dtype=np.int64)
        at = draw(st.integers(0, len(neighbour)))
        neighbour = np.insert(neighbour, at, added, axis=0)
        distance += 1
    sizes = [int(lk.max()) + 1 for lk in lookups]
    priors = []
    for k in sizes:
        weights = draw(st.lists(st.floats(0.01, 1.0), min_size=k, max_size=k))
        priors.append(np.array(weights) / sum(weights))
    n_hat = draw(st.floats(1.0, 40.0))
    # Frozen, as fit freezes its matrix: the case in which the score cache is used.
    matrix.setflags(write=False)
    neighbour.setflags(write=False)
    return Scenario(matrix, neighbour, distance, lookups, priors, n_hat)


def _linf(a: list[float], b: list[float]) -> float:
    return float(np.max(np.abs(np.array(a) - np.array(b)))) if a else 0.0


@PROPERTY
@given(scenarios(), st.data())
def test_marginal_count_vector_moves_by_at_most_its_l2_map(
    case: Scenario, data: st.DataObject
) -> None:
    d = case.matrix.shape[1]
    columns = data.draw(st.permutations(range(d)).flatmap(lambda p: st.just(p[: 1 + d // 2])))
    domain = encoded_records_domain(d)
    counts = make_marginal_counts(domain, columns, case.lookups)
    before = np.array(counts(case.matrix), dtype=np.int64)
    after = np.array(counts(case.neighbour), dtype=np.int64)
    assert np.linalg.norm(before - after) <= counts.map(case.distance)
    # And the vector is the marginal itself: the counts of the compressed records' cells.
    n_cells = int(np.prod([case.sizes[j] for j in columns]))
    real_cells = cells(compress_records(case.matrix, case.lookups), columns, case.sizes)
    assert before.tolist() == np.bincount(real_cells, minlength=n_cells).tolist()
    # The user part itself: the cells are a record-by-record map, so the multisets of cells
    # differ by at most as many records as the tables do.
    cells_before = Counter(marginal_cells(case.matrix, columns, case.lookups))
    cells_after = Counter(marginal_cells(case.neighbour, columns, case.lookups))
    changed = (cells_before - cells_after).total() + (cells_after - cells_before).total()
    assert changed <= case.distance


@PROPERTY
@given(scenarios(), st.data())
def test_tree_scores_move_by_at_most_their_linf_map(case: Scenario, data: st.DataObject) -> None:
    d = case.matrix.shape[1]
    pairs = list(combinations(range(d), 2))
    candidates = data.draw(st.lists(st.sampled_from(pairs), min_size=1, unique=True))
    bias = np.array(
        data.draw(st.lists(st.floats(-50, 50), min_size=len(candidates), max_size=len(candidates)))
    )
    statistics = RecordStatistics(case.lookups, case.priors, case.n_hat)
    scores = make_score_transformation(
        encoded_records_domain(d), tree_score(statistics, candidates, bias), 1.0
    )
    moved = _linf(scores(case.matrix), scores(case.neighbour))
    assert scores.map(case.distance) == case.distance
    assert moved <= scores.map(case.distance) + FLOAT_SLACK


@PROPERTY
@given(scenarios(), st.data())
def test_refinement_scores_move_by_at_most_their_linf_map(
    case: Scenario, data: st.DataObject
) -> None:
    d = case.matrix.shape[1]
    pairs = list(combinations(range(d), 2))
    candidates = data.draw(st.lists(st.sampled_from(pairs), min_size=1, unique=True))
    sizes = case.sizes
    # Any public prediction of each pair's counts (the weighted pool's, in a run).
    predicted = [
        np.array(data.draw(st.lists(st.floats(0, 20), min_size=n, max_size=n)))
        for n in (sizes[a] * sizes[b] for a, b in candidates)
    ]
    bias = np.array(
        data.draw(st.lists(st.floats(-50, 50), min_size=len(candidates), max_size=len(candidates)))
    )
    statistics = RecordStatistics(case.lookups, case.priors, case.n_hat)
    scores = make_score_transformation(
        encoded_records_domain(d), pair_error_score(statistics, candidates, predicted, bias), 1.0
    )
    moved = _linf(scores(case.matrix), scores(case.neighbour))
    assert moved <= scores.map(case.distance) + FLOAT_SLACK


@PROPERTY
@given(scenarios(), st.data())
def test_parent_set_scores_move_by_at_most_their_linf_map(
    case: Scenario, data: st.DataObject
) -> None:
    d = case.matrix.shape[1]
    child = data.draw(st.integers(0, d - 1))
    others = [q for q in range(d) if q != child]
    subsets = [s for r in range(1, len(others) + 1) for s in combinations(others, r)]
    options = data.draw(st.lists(st.sampled_from(subsets), min_size=1, unique=True))
    bias = np.array(
        data.draw(st.lists(st.floats(-50, 50), min_size=len(options), max_size=len(options)))
    )
    statistics = RecordStatistics(case.lookups, case.priors, case.n_hat)
    scores = make_score_transformation(
        encoded_records_domain(d), parent_set_score(statistics, options, child, bias), 2.0
    )
    moved = _linf(scores(case.matrix), scores(case.neighbour))
    assert scores.map(case.distance) == 2 * case.distance
    assert moved <= scores.map(case.distance) + FLOAT_SLACK


@PROPERTY
@given(scenarios())
def test_score_cache_never_serves_another_matrix(case: Scenario) -> None:
    statistics = RecordStatistics(case.lookups, case.priors, case.n_hat)

    def fresh(matrix: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        return RecordStatistics(case.lookups, case.priors, case.n_hat).pair_distances(matrix)

    first = statistics.pair_distances(case.matrix)
    np.testing.assert_array_equal(statistics.pair_distances(case.neighbour), fresh(case.neighbour))
    np.testing.assert_array_equal(statistics.pair_distances(case.matrix), first)
    # An equal copy is another object: recomputed, with the same result.
    np.testing.assert_array_equal(statistics.pair_distances(case.matrix.copy()), first)


def test_score_cache_reuses_only_the_same_frozen_matrix() -> None:
    lookups = [np.arange(3, dtype=np.int64), np.arange(2, dtype=np.int64)]
    priors = [np.full(3, 1 / 3), np.full(2, 0.5)]
    statistics = RecordStatistics(lookups, priors, 4.0)
    frozen = np.array([[0, 0], [1, 1], [2, 1], [2, 0]], dtype=np.int64)
    frozen.setflags(write=False)
    table = statistics.pair_distances(frozen)
    computed = statistics.computed
    assert statistics.pair_distances(frozen) is table
    assert statistics.computed == computed
    # A writeable matrix could change in place between calls, so nothing of it is reused.
    open_matrix = frozen.copy()
    before = statistics.pair_distances(open_matrix)
    open_matrix[0] = [2, 1]
    after = statistics.pair_distances(open_matrix)
    np.testing.assert_array_equal(after, pair_distances(open_matrix, [3, 2], priors, 4.0))
    assert not np.array_equal(before, after)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.integers(1, 3), min_size=2, max_size=4),
    st.integers(0, 40),
    st.floats(0.05, 5.0),
    st.integers(0, 2**32 - 1),
)
def test_spend_is_the_composition_of_the_listed_measurements(
    n_codes: list[int], n_records: int, rho: float, seed: int
) -> None:
    domain = Domain.from_schema(
        {f"c{j}": tuple(f"v{v}" for v in range(k)) for j, k in enumerate(n_codes)}
    )
    rng = np.random.default_rng(seed)
    codes = np.column_stack([rng.integers(0, k + 1, size=n_records) for k in n_codes])
    records: pd.DataFrame = domain.decode(codes.reshape(n_records, len(n_codes)))
    model = MarginalSynthesizer(domain, rho).fit(records)
    losses = [part.rho for _, part in model.spend.measurements]
    d = len(n_codes)
    # The network's rounds, then one selection and one measurement per refinement round.
    assert len(losses) == 4 * d - 4 + 2 * min(2 * d, d * (d - 1) // 2)
    # OpenDP's composition adds the parts rounding up, so it is never below their exact sum.
    assert math.fsum(losses) <= model.spend.rho <= rho
    assert model.spend.rho == pytest.approx(math.fsum(losses), rel=1e-12)
