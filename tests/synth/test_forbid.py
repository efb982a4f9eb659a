"""Tests of ``forbid_below``: no sampled record holds a combination whose noisy count was noise."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from disclosure_control.synth import Domain, MarginalSynthesizer, SynthesisModel
from disclosure_control.synth.domain import IntMatrix
from disclosure_control.synth.forbid import ForbiddenCells, allowed, forbidden_cells

from .conftest import SMALL_COLUMNS, read_ctdc_sample


@pytest.fixture(scope="module")
def domain() -> Domain:
    wide = read_ctdc_sample(5)
    return Domain.from_schema({c: tuple(sorted(set(wide[c]) - {""})) for c in SMALL_COLUMNS})


@pytest.fixture(scope="module")
def forbidding(domain: Domain, ctdc_training: pd.DataFrame) -> SynthesisModel:
    return MarginalSynthesizer(domain, rho=0.5, forbid_below=3.0).fit(ctdc_training)


def _compressed(model: SynthesisModel, table: pd.DataFrame) -> tuple[IntMatrix, list[int]]:
    """Return a sampled table in the model's compressed codes, and each column's size."""
    codes = model.domain.encode(table)
    compressed = np.empty_like(codes)
    sizes = []
    for j, (kept, rare, _) in enumerate(model.expand):
        lookup = {int(c): i for i, c in enumerate(kept)} | {int(c): len(kept) for c in rare}
        compressed[:, j] = [lookup[int(c)] for c in codes[:, j]]
        sizes.append(len(kept) + (1 if rare.size else 0))
    return compressed, sizes


def test_a_combination_is_forbidden_by_the_sum_it_has_in_each_marginal() -> None:
    # Columns given out of order (2 then 0), each with two codes: counts[a, b] for a in
    # column 2 and b in column 0. Cell (column 0 = 1, column 2 = 0) holds 1: under 3 sigma.
    counts = np.array([[50.0, 1.0], [40.0, 30.0]])
    found = forbidden_cells([((2, 0), counts.ravel(), 1.0)], [2, 2, 2], 3.0, 2)
    assert [(f.columns, f.cells.tolist()) for f in found] == [((0, 2), [2])]
    # A 3-way marginal: summing out column 1 (two codes) leaves noise sqrt(2) per cell, so a
    # pair count of 4 (under 3 sqrt 2 = 4.24) is forbidden where 5 is not.
    three = np.full((2, 2, 2), 20.0)
    three[0, :, 1] = [2.0, 2.0]  # columns 0 = 0, 2 = 1: 4 in all
    three[1, :, 1] = [2.5, 2.5]  # columns 0 = 1, 2 = 1: 5 in all
    found = forbidden_cells([((0, 1, 2), three.ravel(), 1.0)], [2, 2, 2], 3.0, 3)
    by_columns = {f.columns: f.cells.tolist() for f in found}
    assert by_columns[(0, 2)] == [1]
    assert by_columns[(0, 1, 2)] == [1, 3, 5, 7]  # every 3-way cell of 2 or 2.5 < 3


def test_nonsense_settings_are_refused(domain: Domain) -> None:
    with pytest.raises(ValueError, match="forbid_below must be a positive number"):
        MarginalSynthesizer(domain, 1.0, forbid_below=0.0)
    with pytest.raises(ValueError, match="forbid_length must be at least 2"):
        MarginalSynthesizer(domain, 1.0, forbid_below=3.0, forbid_length=1)


def test_no_sampled_record_holds_a_forbidden_combination(forbidding: SynthesisModel) -> None:
    assert forbidding.forbidden and forbidding.refinement is not None
    drawn = forbidding.sample(20_000, seed=5)
    compressed, sizes = _compressed(forbidding, drawn)
    assert allowed(compressed, forbidding.forbidden, sizes).all()
    # The same model without the option draws forbidden combinations: the check can fail.
    unchecked, _ = _compressed(forbidding, replace(forbidding, forbidden=None).sample(20_000, 5))
    assert not allowed(unchecked, forbidding.forbidden, sizes).all()


def test_a_network_without_refinement_redraws_forbidden_records(
    domain: Domain, ctdc_training: pd.DataFrame
) -> None:
    model = MarginalSynthesizer(domain, rho=0.5, refine_share=0.0, forbid_below=3.0).fit(
        ctdc_training
    )
    assert model.forbidden and model.refinement is None
    drawn = model.sample(5000, seed=1)
    assert len(drawn) == 5000
    compressed, sizes = _compressed(model, drawn)
    assert allowed(compressed, model.forbidden, sizes).all()
    unchecked, _ = _compressed(model, replace(model, forbidden=None).sample(5000, 1))
    assert not allowed(unchecked, model.forbidden, sizes).all()


def test_values_stay_valid_and_the_spend_is_unchanged(
    forbidding: SynthesisModel, domain: Domain, ctdc_training: pd.DataFrame
) -> None:
    drawn = forbidding.sample(5000, seed=2)
    values = forbidding.values()
    for column in domain.columns:
        assert set(drawn[column]) <= set(values[column])
    # Every rare-value bucket is forbidden, and values() leaves its values out.
    buckets = [j for j, (_, rare, _) in enumerate(forbidding.expand) if rare.size]
    assert buckets
    assert [f.columns for f in forbidding.forbidden or () if len(f.columns) == 1] == [
        (j,) for j in buckets
    ]
    for j in buckets:
        _, rare, _ = forbidding.expand[j]
        shown = set(values[domain.columns[j]])
        assert not shown & {domain.codes[j][c] if c < len(domain.codes[j]) else "" for c in rare}
    plain = MarginalSynthesizer(domain, rho=0.5).fit(ctdc_training)
    assert plain.forbidden is None
    # Forbidding is post-processing: as many measurements, at the same rho each (which
    # marginals they are is the noisy selection's choice and differs between fits).
    rhos = [part.rho for _, part in forbidding.spend.measurements]
    assert rhos == [part.rho for _, part in plain.spend.measurements]
    assert forbidding.spend.rho == plain.spend.rho


def test_a_saved_model_keeps_its_forbidden_combinations(
    forbidding: SynthesisModel, domain: Domain
) -> None:
    loaded = SynthesisModel.from_json(forbidding.to_json(), domain)
    assert loaded.forbidden is not None and forbidding.forbidden is not None
    assert [f.columns for f in loaded.forbidden] == [f.columns for f in forbidding.forbidden]
    pd.testing.assert_frame_equal(loaded.sample(3000, 9), forbidding.sample(3000, 9))


def test_forbidding_every_record_is_refused_clearly(forbidding: SynthesisModel) -> None:
    sizes = [len(kept) + (1 if rare.size else 0) for kept, rare, _ in forbidding.expand]
    everything = [ForbiddenCells((0,), np.arange(sizes[0], dtype=np.int64))]
    with pytest.raises(ValueError, match="leave \\(almost\\) no record to draw"):
        replace(forbidding, forbidden=everything).sample(100, seed=0)
    network = replace(forbidding, forbidden=everything, refinement=None)
    with pytest.raises(ValueError, match="leave \\(almost\\) no record to draw"):
        network.sample(100, seed=0)
