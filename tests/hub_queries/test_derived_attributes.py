"""Derived attributes (``exploitationType``) in researcher queries: grouped and filtered on,
from the one definition the release tables use, with the guarantee of a plain field."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from flask.testing import FlaskClient

from disclosure_control.dp import Measure, QuerySpec, Snapshot, SpendRequest, plan_query, release
from hub.services import queries
from hub.services.policies import DEFAULT_POLICY
from tests.dp.test_privacy import DELTA, RHO, RUNS, observed_loss
from tests.hub_queries.conftest import Researcher, SetCaps
from tests.hub_uploads.test_uploads_api import sample_csv

DERIVED = "exploitationType"
#: The flags exploitationType is made of, as the record schema lists them.
TYPE_FLAGS = queries.derived()[DERIVED].flags
TARGET = "isForcedLabour;isSexualExploit"  # a combination few cases have


def allow_derived(text: str) -> str:
    """Add exploitationType to the fields researchers may group and filter by."""
    for key in ("group_by", "filter_by"):
        text, found = re.subn(
            rf"(?m)^(researchers:\n(?:  .*\n)*?  {key}:\n)", rf"\1    - {DERIVED}\n", text
        )
        assert found == 1, key
    return text


def test_the_query_schema_holds_every_attribute_the_release_tables_use() -> None:
    schema = queries.query_schema()
    release_tables = yaml.safe_load(DEFAULT_POLICY.read_text("utf-8"))["release"]["dp_tables"]
    used = {name for table in release_tables for name in table["group_by"]}
    assert DERIVED in used and used <= set(schema)
    codes = schema[DERIVED].domain
    assert codes is not None and len(codes) == 2 ** len(TYPE_FLAGS)
    assert "none recorded" in codes and TARGET in codes


def _combination(row: pd.Series) -> str:
    """The test's own reading of a record's exploitation types (not the hub's code)."""
    chosen = [flag for flag in TYPE_FLAGS if str(row[flag]).strip().lower() in ("1", "true")]
    return ";".join(chosen) or "none recorded"


def test_a_researcher_groups_and_filters_by_the_exploitation_type(
    client: FlaskClient,
    researcher: Researcher,
    set_caps: SetCaps,
    accepted_records: int,
    ctdc_file: Path,
) -> None:
    spec: dict[str, Any] = {
        "measure": {"kind": "count"},
        "group_by": [DERIVED],
        "spend": {"rho": 0.02},
    }
    # The default policy does not list it: refused, naming the field, charging nothing.
    refused = client.post("/v1/queries", json=spec, headers=researcher.headers)
    assert refused.status_code == 403, refused.get_json()
    assert DERIVED in refused.get_json()["detail"]

    set_caps(edit=allow_derived)
    preview = client.post("/v1/queries/preview", json=spec, headers=researcher.headers).get_json()
    answer = client.post("/v1/queries", json=spec, headers=researcher.headers)
    assert answer.status_code == 201, answer.get_json()
    cells = {cell["key"][DERIVED]: cell["value"] for cell in answer.get_json()["cells"]}
    # Every public combination, and the missing key every coded field has (never taken here).
    assert set(cells) == {*(queries.query_schema()[DERIVED].domain or ()), None}

    # Within 6 standard deviations of the true counts, read independently from the file.
    sample = pd.read_csv(
        io.BytesIO(sample_csv(ctdc_file, step=250)),
        dtype="string",
        keep_default_na=False,
    )
    truth = sample.apply(_combination, axis=1).value_counts()
    (statistic,) = preview["statistics"]
    bound = 6 * statistic["scale"]
    assert truth.sum() == accepted_records
    for code, value in cells.items():
        assert abs(value - (0 if code is None else int(truth.get(code, 0)))) <= bound, code

    filtered = {
        "measure": {"kind": "count"},
        "group_by": ["gender"],
        "filters": [{"field": DERIVED, "values": ["isSexualExploit"]}],
        "spend": {"rho": 0.02},
    }
    shown = client.post("/v1/queries", json=filtered, headers=researcher.headers)
    assert shown.status_code == 201, shown.get_json()
    total = sum(cell["value"] for cell in shown.get_json()["cells"])
    cells_shown = len(shown.get_json()["cells"])
    expected = int(truth.get("isSexualExploit", 0))
    assert abs(total - expected) <= 6 * statistic["scale"] * np.sqrt(cells_shown)


def test_every_record_has_exactly_one_exploitation_type() -> None:
    # The guarantee rests on this: one case record, one cell of a derived group-by (as of a
    # plain field's), whatever its flags hold, missing and unknown spellings included.
    flags = {flag: ["1", "0", "", "yes?", "1"] for flag in TYPE_FLAGS}
    flags[TYPE_FLAGS[0]] = ["1", "0", "", "", pd.NA]
    records = pd.DataFrame(flags, dtype="string")
    derived = queries.with_derived(records)[DERIVED]
    assert derived.notna().all() and len(derived) == len(records)
    assert derived.iloc[1] == derived.iloc[2] == "none recorded"


def _snapshot(records: pd.DataFrame) -> Snapshot:
    schema = queries.query_schema()
    return Snapshot(queries.with_derived(records), {DERIVED: schema[DERIVED]})


def _records(count: int, combination: str) -> pd.DataFrame:
    chosen = set(combination.split(";"))
    return pd.DataFrame(
        {flag: ["1" if flag in chosen else "0"] * count for flag in TYPE_FLAGS}, dtype="string"
    )


@pytest.mark.slow
def test_a_derived_group_by_spends_and_protects_as_a_plain_field() -> None:
    schema = queries.query_schema()
    derived = plan_query(QuerySpec(Measure("count"), SpendRequest(rho=RHO), (DERIVED,)), schema)
    plain = plan_query(QuerySpec(Measure("count"), SpendRequest(rho=RHO), ("gender",)), schema)
    # The same spend and the same noise as a plain field's group-by at the same rho.
    assert derived.preview.spend == plain.preview.spend
    assert [s.scale for s in derived.preview.statistics] == [
        s.scale for s in plain.preview.statistics
    ]

    # An intruder who knows every case but one asks for the count of its rare combination, on
    # the hub's own derivation: D, and D' with the target's case added. The loss the releases
    # show stays within the claim, as for a plain field (tests/dp/test_privacy.py).
    base = pd.concat([_records(10, TARGET), _records(4, "isForcedLabour")], ignore_index=True)
    with_target = pd.concat([base, _records(1, TARGET)], ignore_index=True)
    samples = []
    for records in (base, with_target):
        snapshot = _snapshot(records)
        position = next(
            index
            for index, cell in enumerate(release(derived, snapshot).cells)
            if cell.key == (TARGET,)
        )
        samples.append(
            np.array(
                [release(derived, snapshot).cells[position].noisy for _ in range(RUNS)],
                dtype=float,
            )
        )
    loss = observed_loss(samples[0], samples[1], DELTA)
    assert 0 < loss <= derived.preview.epsilon
