"""Tests of saving and loading a fitted synthesis model: a release is its model and seed."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from disclosure_control.synth import Domain, MarginalSynthesizer, SynthesisModel
from disclosure_control.synth.model import MODEL_VERSION, _digest

from .conftest import SMALL_COLUMNS, read_ctdc_sample


@pytest.fixture(scope="module")
def domain() -> Domain:
    wide = read_ctdc_sample(5)
    return Domain.from_schema({c: tuple(sorted(set(wide[c]) - {""})) for c in SMALL_COLUMNS})


@pytest.fixture(scope="module")
def model(domain: Domain, ctdc_training: pd.DataFrame) -> SynthesisModel:
    return MarginalSynthesizer(domain, rho=1.0).fit(ctdc_training)


def _resealed(document: dict[str, object]) -> str:
    """Return a document with its digest recomputed, to reach the checks behind the digest."""
    document["sha256"] = _digest(document["model"])
    return json.dumps(document)


@pytest.mark.parametrize("seed", [0, 7, 2**40])
def test_loaded_model_samples_exactly_the_same_table(
    model: SynthesisModel, domain: Domain, seed: int
) -> None:
    loaded = SynthesisModel.from_json(model.to_json(), domain)
    pd.testing.assert_frame_equal(loaded.sample(3000, seed), model.sample(3000, seed))


def test_loaded_model_keeps_every_released_value(model: SynthesisModel, domain: Domain) -> None:
    text = model.to_json()
    loaded = SynthesisModel.from_json(text, domain)
    assert loaded.to_json() == text
    assert loaded.order == model.order
    assert loaded.tree == model.tree
    assert loaded.parents() == model.parents()
    assert loaded.spend == model.spend
    for mine, theirs in zip(loaded.factors, model.factors, strict=True):
        assert mine.table.tobytes() == theirs.table.tobytes()
    for (k1, r1, w1), (k2, r2, w2) in zip(loaded.expand, model.expand, strict=True):
        assert k1.tolist() == k2.tolist() and r1.tolist() == r2.tolist()
        assert w1.tobytes() == w2.tobytes()
    document = json.loads(text)
    assert document["version"] == MODEL_VERSION
    assert document["model"]["domain"]["columns"] == SMALL_COLUMNS


def test_truncated_file_is_refused(model: SynthesisModel, domain: Domain) -> None:
    text = model.to_json()
    with pytest.raises(ValueError, match="not valid JSON"):
        SynthesisModel.from_json(text[: len(text) // 2], domain)


def test_altered_file_is_refused_by_its_digest(model: SynthesisModel, domain: Domain) -> None:
    document = json.loads(model.to_json())
    table = document["model"]["factors"][1]["table"]
    table[0] = (float.fromhex(table[0]) * 0.5).hex()
    with pytest.raises(ValueError, match="does not match its SHA-256 digest"):
        SynthesisModel.from_json(json.dumps(document), domain)


def test_other_version_is_refused(model: SynthesisModel, domain: Domain) -> None:
    document = json.loads(model.to_json())
    document["version"] = MODEL_VERSION + 1
    with pytest.raises(ValueError, match=f"format version {MODEL_VERSION + 1} is not supported"):
        SynthesisModel.from_json(json.dumps(document), domain)


@pytest.mark.parametrize("text", ["[]", '{"format": "something else"}', "null"])
def test_other_json_is_refused(text: str, domain: Domain) -> None:
    with pytest.raises(ValueError, match="not a 'ctdhub-synthesis-model' file"):
        SynthesisModel.from_json(text, domain)


def test_other_codes_are_refused(model: SynthesisModel, domain: Domain) -> None:
    codes = {c: v for c, v in zip(domain.columns, domain.codes, strict=True)}
    codes["gender"] = (*codes["gender"], "Another")
    other = Domain.from_schema(codes)
    with pytest.raises(ValueError, match="column 'gender' was fitted over other codes"):
        SynthesisModel.from_json(model.to_json(), other)


def test_other_columns_are_refused(model: SynthesisModel, domain: Domain) -> None:
    codes = dict(zip(domain.columns, domain.codes, strict=True))
    other = Domain.from_schema(codes, list(reversed(domain.columns)))
    with pytest.raises(ValueError, match="fitted over columns"):
        SynthesisModel.from_json(model.to_json(), other)


def test_inconsistent_content_is_refused_even_with_a_matching_digest(
    model: SynthesisModel, domain: Domain
) -> None:
    document = json.loads(model.to_json())
    document["model"]["factors"][1]["shape"][0] += 1
    with pytest.raises(ValueError, match="factor 1 has the wrong shape"):
        SynthesisModel.from_json(_resealed(document), domain)
    document = json.loads(model.to_json())
    table = document["model"]["factors"][1]["table"]
    table[0] = (float.fromhex(table[0]) + 0.5).hex()
    with pytest.raises(ValueError, match="factor 1 rows are not distributions"):
        SynthesisModel.from_json(_resealed(document), domain)
    document = json.loads(model.to_json())
    document["model"]["order"] = document["model"]["order"][::-1]
    with pytest.raises(ValueError, match="does not follow the sampling order"):
        SynthesisModel.from_json(_resealed(document), domain)
    document = json.loads(model.to_json())
    entry = next(e for e in document["model"]["expand"] if e["rare"])
    entry["weights"][0] = "-0x1.0p+0"
    with pytest.raises(ValueError, match=r"expand\[\d+\] weights are not a distribution"):
        SynthesisModel.from_json(_resealed(document), domain)
    document = json.loads(model.to_json())
    del document["model"]["spend"]
    with pytest.raises(ValueError, match="malformed content"):
        SynthesisModel.from_json(_resealed(document), domain)


def test_a_version_1_model_without_refinement_still_loads(
    model: SynthesisModel, domain: Domain
) -> None:
    # Models saved before the refinement hold no "refinement" and sample the network itself.
    document = json.loads(model.to_json())
    assert document["model"]["refinement"] is not None
    del document["model"]["refinement"]
    document["version"] = 1
    loaded = SynthesisModel.from_json(_resealed(document), domain)
    assert loaded.refinement is None
    assert len(loaded.sample(100, seed=1)) == 100


def test_a_refinement_of_the_wrong_shape_is_refused(model: SynthesisModel, domain: Domain) -> None:
    document = json.loads(model.to_json())
    document["model"]["refinement"]["marginals"][0]["counts"].pop()
    with pytest.raises(ValueError, match="refinement 0 has the wrong shape"):
        SynthesisModel.from_json(_resealed(document), domain)
