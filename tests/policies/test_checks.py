"""The checks of a release candidate against its policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from contributors.schema import SCHEMA_PATH
from disclosure_control.dp.accounting import PrivacySpend
from disclosure_control.sdc import (
    TablePolicy,
    anonymise,
    frequency_table,
    k_anonymity,
    l_diversity,
    load_hierarchies,
)
from disclosure_control.sdc.differencing import check_differencing, check_suppression, tabulate
from disclosure_control.sdc.hierarchies import with_derived_attributes
from disclosure_control.sdc.measures import recursive_diversity
from policies import (
    Policy,
    RecordFields,
    check_candidate,
    check_microdata,
    check_spend,
    check_table,
    validate_policy,
)
from policies.document import Microdata
from tests.policies.conftest import ROOT
from tests.sdc.conftest import CTDC
from tests.sdc.test_tables import linear_bounds

QIS = ["gender", "ageBroad", "citizenship", "CountryOfExploitation", "yearOfRegistration"]


def variant(default_text: str, fields: RecordFields, edit: Any) -> Policy:
    data = yaml.safe_load(default_text)
    edit(data)
    return validate_policy(data, fields)


def micro_rules(
    k: int, least: float | None = None, kind: str = "distinct", c: float | None = None, **risk: Any
) -> Microdata:
    document: dict[str, Any] = {
        "quasi_identifiers": ["q1", "q2"],
        "k": k,
        "record_risk": {"threshold": 1.0, **risk},
    }
    if least is not None:
        document["l_diversity"] = {"attributes": ["s"], "l": least, "kind": kind, "c": c}
    fields = RecordFields({"q1": "string", "q2": "string", "s": "string"})
    return Microdata.model_validate(document, context={"fields": fields})


def by_check(results: list[Any]) -> dict[str, Any]:
    return {r.check: r for r in results}


@pytest.fixture(scope="module")
def ctdc_sample() -> pd.DataFrame:
    """Every eighth CTDC record, with the record schema's derived attributes."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text("utf-8"))
    frame = pd.read_csv(CTDC, dtype="string", keep_default_na=False).iloc[::8].copy()
    return with_derived_attributes(frame, schema)


@pytest.mark.slow
def test_the_anonymisers_ctdc_release_passes_the_default_policy(
    ctdc_sample: pd.DataFrame, default_policy: Policy
) -> None:
    rules = default_policy.microdata
    hierarchies = load_hierarchies(ROOT / "config" / "hierarchies")
    result = anonymise(
        ctdc_sample,
        list(rules.quasi_identifiers),
        hierarchies,
        rules.privacy_model(),
    )
    results = by_check(check_microdata(result.data, rules))
    assert all(r.passed for r in results.values()), [r.reason for r in results.values()]
    assert set(results) == {"k_anonymity", "l_diversity", "record_risk"}
    assert results["k_anonymity"].figures["smallest_class"] == k_anonymity(
        result.data, rules.quasi_identifiers
    )
    # The raw sample is not 11-anonymous: the same check blocks it, saying how far it is off.
    raw = by_check(check_microdata(ctdc_sample, rules))
    assert not raw["k_anonymity"].passed
    assert raw["k_anonymity"].figures["smallest_class"] == k_anonymity(ctdc_sample, QIS)
    # And no record value appears in what the check says.
    said = " ".join(r.reason for r in raw.values())
    for column in QIS:
        for value in set(ctdc_sample[column].dropna()) - {""}:
            assert f"'{value}'" not in said and f" {value} " not in said


def test_a_class_under_k_fails_with_its_figures() -> None:
    frame = pd.DataFrame({"q1": list("aaaab"), "q2": list("xxxxy"), "s": list("12121")})
    (k, risk) = check_microdata(frame, micro_rules(3))
    assert not k.passed
    assert k.figures == {
        "k": 3,
        "smallest_class": 1,
        "classes": 2,
        "classes_below_k": 1,
        "records_below_k": 1,
    }
    assert "'b'" not in k.reason and "'y'" not in k.reason
    assert risk.passed  # threshold 1.0: no record above


def test_a_missing_value_is_a_class_of_its_own() -> None:
    frame = pd.DataFrame(
        {
            "q1": pd.array(["a", "a", None, None], dtype="string"),
            "q2": ["x", "x", "x", "x"],
            "s": ["1", "2", "1", "2"],
        }
    )
    assert check_microdata(frame, micro_rules(2))[0].passed
    assert not check_microdata(frame.iloc[:3], micro_rules(2))[0].passed


def test_l_diversity_distinct_and_entropy() -> None:
    even = pd.DataFrame({"q1": ["a"] * 4, "q2": ["x"] * 4, "s": ["1", "2", "1", "2"]})
    skewed = pd.DataFrame({"q1": ["a"] * 4, "q2": ["x"] * 4, "s": ["1", "1", "1", "2"]})
    single = pd.DataFrame({"q1": ["a"] * 4, "q2": ["x"] * 4, "s": ["1"] * 4})
    for frame, distinct_ok, entropy_ok in [
        (even, True, True),
        (skewed, True, False),
        (single, False, False),
    ]:
        distinct = by_check(check_microdata(frame, micro_rules(2, 2)))["l_diversity"]
        entropy = by_check(check_microdata(frame, micro_rules(2, 2, "entropy")))["l_diversity"]
        assert (distinct.passed, entropy.passed) == (distinct_ok, entropy_ok)
    failed = by_check(check_microdata(single, micro_rules(2, 2)))["l_diversity"]
    assert failed.reason == "s: 1 of 1 classes have distinct l-diversity under 2 (least 1)"


def test_recursive_c_l_diversity() -> None:
    # Counts 6, 3, 1: r1 = 6 < c * (r2 + r3) = 4c needs c > 1.5 at l = 2.
    frame = pd.DataFrame({"q1": ["a"] * 10, "q2": ["x"] * 10, "s": list("1111112223")})
    assert not by_check(check_microdata(frame, micro_rules(2, 2, "recursive", 1.5)))[
        "l_diversity"
    ].passed
    assert by_check(check_microdata(frame, micro_rules(2, 2, "recursive", 1.6)))[
        "l_diversity"
    ].passed


def test_record_risk_share_and_average() -> None:
    frame = pd.DataFrame({"q1": list("aaaaabb"), "q2": ["x"] * 7, "s": ["1"] * 7})
    risk = by_check(check_microdata(frame, micro_rules(2, threshold=0.4)))["record_risk"]
    assert not risk.passed
    assert risk.figures["records_above"] == 2  # the class of two: risk 1/2 > 0.4
    assert "2 of 7 records (28.57%)" in risk.reason
    allowed = micro_rules(2, threshold=0.4, max_share_above=0.3)
    assert by_check(check_microdata(frame, allowed))["record_risk"].passed
    average = micro_rules(2, max_average=0.2)  # 2 classes / 7 records = 0.286
    assert "average record risk is 0.2857" in check_microdata(frame, average)[-1].reason


def test_missing_columns_and_empty_microdata_fail() -> None:
    frame = pd.DataFrame({"q1": ["a"], "q2": ["x"]})
    (result,) = check_microdata(frame, micro_rules(2, 2))
    assert result.check == "columns" and "['s']" in result.reason
    (result,) = check_microdata(frame.iloc[:0].assign(s=[]), micro_rules(2))
    assert not result.passed and result.reason == "the microdata holds no records"


frames = st.integers(1, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.sampled_from(["a", "b", "c", None]), min_size=n, max_size=n),
        st.lists(st.sampled_from(["x", "y"]), min_size=n, max_size=n),
        st.lists(st.sampled_from(["1", "2", "3", None]), min_size=n, max_size=n),
    )
)


@settings(max_examples=150, deadline=None)
@given(frames, st.integers(2, 6), st.floats(1.0, 3.0))
def test_the_checks_agree_with_the_sdc_measures(
    columns: tuple[list[Any], list[Any], list[Any]], k: int, least: float
) -> None:
    q1, q2, s = columns
    frame = pd.DataFrame(
        {
            "q1": pd.array(q1, dtype="string"),
            "q2": pd.array(q2, dtype="string"),
            "s": pd.array(s, dtype="string"),
        }
    )
    for kind in ("distinct", "entropy"):
        results = by_check(check_microdata(frame, micro_rules(k, least, kind)))
        measured_k = k_anonymity(frame, ["q1", "q2"])
        measured_l = l_diversity(frame, ["q1", "q2"], "s", kind)  # type: ignore[arg-type]
        assert results["k_anonymity"].passed == (measured_k >= k)
        assert results["l_diversity"].figures["least"] == pytest.approx(measured_l, rel=1e-9)
        if not np.isclose(measured_l, least, rtol=1e-6):
            assert results["l_diversity"].passed == (measured_l >= least)
    whole = int(least)
    for c in (0.5, 1.0, 2.0, 3.0):
        result = by_check(check_microdata(frame, micro_rules(k, whole, "recursive", c)))
        least_c = recursive_diversity(frame, ["q1", "q2"], "s", whole)
        assert result["l_diversity"].passed == (c > least_c)


def records(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    weights = 1 / np.arange(1, 9) ** 1.5
    return pd.DataFrame(
        {
            "gender": rng.choice(["Female", "Male"], n),
            "ageBroad": rng.choice(
                ["9--17", "18--20", "21--23", "24--26", "27--29", "30--38", "39--47", "48+"],
                n,
                p=weights / weights.sum(),
            ),
        }
    )


def test_a_table_built_to_the_policy_passes(default_policy: Policy) -> None:
    tables = default_policy.tables
    table = frequency_table(records(400, 1), ["gender", "ageBroad"], tables.table_policy())
    assert table.primary > 0
    results = by_check(check_table(table, tables, "gender_by_age"))
    assert all(r.passed for r in results.values())
    assert results["secondary_suppression"].figures["unprotected"] == 0


def test_primary_suppression_alone_fails_the_linear_bounds(default_policy: Policy) -> None:
    data = records(400, 1)
    bare = frequency_table(data, ["gender", "ageBroad"], TablePolicy(threshold=11), secondary=False)
    result = by_check(check_table(bare, default_policy.tables, "gender_by_age"))
    bounds = result["linear_bounds"]
    assert not bounds.passed
    assert bounds.figures["primary_cells"] == bare.primary
    assert 0 < bounds.figures["cells_narrowed"] <= bare.primary
    # The hypercube method's table has the same primary cells, each free from 0 to 11.
    safe = frequency_table(data, ["gender", "ageBroad"], TablePolicy(threshold=11))
    assert safe.primary == bare.primary
    assert by_check(check_table(safe, default_policy.tables, "gender_by_age"))[
        "linear_bounds"
    ].passed


def test_linear_bounds_recover_a_lone_suppressed_cell() -> None:
    # One dimension, one small cell, total published: the cell is the total less the rest.
    data = pd.DataFrame(
        {"gender": ["Female"] * 30 + ["Male"] * 20 + ["Transgender/NonConforming"] * 2}
    )
    table = frequency_table(data, ["gender"], TablePolicy(threshold=11), secondary=False)
    assert list(linear_bounds(table).values()) == [(2.0, 2.0)]  # the plain program agrees
    (narrowed,) = check_suppression(table, 11).narrowed
    assert (narrowed.cell, narrowed.low, narrowed.high) == (("Transgender/NonConforming",), 2, 2)
    protected = frequency_table(data, ["gender"], TablePolicy(threshold=11))
    assert check_suppression(protected, 11).narrowed == ()
    ((low, high),) = [b for c, b in linear_bounds(protected).items() if protected.status[c] == 1]
    assert low <= 0 and high >= 11


def zipf_table(seed: int, dimensions: int, n: int, secondary: bool) -> Any:
    rng = np.random.default_rng(seed)
    columns = {}
    for d in range(dimensions):
        size = int(rng.integers(2, 9))
        weights = 1 / np.arange(1, size + 1) ** 1.3
        columns[f"d{d}"] = rng.choice([f"v{i}" for i in range(size)], n, p=weights / weights.sum())
    frame = pd.DataFrame(columns)
    policy = TablePolicy(threshold=11, suppress_zeros=bool(seed % 2))
    return frequency_table(frame, list(columns), policy, secondary=secondary)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 3), st.integers(20, 400), st.booleans())
def test_the_suppression_verdict_is_the_plain_linear_bounds_verdict(
    seed: int, dimensions: int, n: int, secondary: bool
) -> None:
    # The check's batched programs over the fine cells against one plain program per hidden
    # cell and side, built without the differencing module (tests/sdc/test_tables.py).
    table = zipf_table(seed, dimensions, n, secondary)
    labels = [[*c, "Total"] for c in table.categories]
    totals = np.array(table.values.shape) - 1
    expected = set()
    for cell, (low, high) in linear_bounds(table).items():
        if table.status[cell] != 1:
            continue
        margin = bool((np.array(cell) == totals).any())
        floor = max(table.values[cell] - 1, 0.0) if margin else 0.0
        if not (low <= floor + 1e-6 and high >= 11 - 1e-6):
            expected.add(tuple(labels[j][i] for j, i in enumerate(cell)))
    report = check_suppression(table, 11)
    assert report.primary == table.primary
    assert {r.cell for r in report.narrowed} == expected


def test_a_table_under_a_laxer_threshold_fails(default_policy: Policy) -> None:
    table = frequency_table(records(400, 1), ["gender", "ageBroad"], TablePolicy(threshold=3))
    result = by_check(check_table(table, default_policy.tables, "gender_by_age"))
    threshold = result["cell_threshold"]
    assert not threshold.passed
    small = (table.status == 0) & (table.values > 0) & (table.values < 11)
    assert threshold.figures["cells_below"] == int(small.sum()) > 0
    assert threshold.reason.endswith("count fewer than 11")


def test_published_zeros_fail_when_the_policy_suppresses_them(
    default_policy: Policy, default_text: str, fields: RecordFields
) -> None:
    strict = variant(default_text, fields, lambda d: d["tables"].update(zero_rule="suppress"))
    # Every combination 20 times, but none of men aged 48+: one zero, nothing small.
    cells = [(g, a) for g in ("Female", "Male") for a in ("30--38", "48+")]
    cells.remove(("Male", "48+"))
    data = pd.DataFrame([c for c in cells for _ in range(20)], columns=["gender", "ageBroad"])
    published_zeros = frequency_table(data, ["gender", "ageBroad"], TablePolicy(threshold=11))
    result = by_check(check_table(published_zeros, strict.tables, "gender_by_age"))
    assert not result["cell_threshold"].passed
    assert result["cell_threshold"].figures["cells_below"] == 1
    assert "fewer than 11 or zero" in result["cell_threshold"].reason
    hidden = frequency_table(data, ["gender", "ageBroad"], strict.tables.table_policy())
    assert by_check(check_table(hidden, strict.tables, "gender_by_age"))["cell_threshold"].passed


def test_rounding_is_checked_when_the_policy_rounds(
    default_text: str, fields: RecordFields
) -> None:
    rounded = variant(default_text, fields, lambda d: d["tables"].update(rounding_base=5))
    data = records(500, 3)
    plain = frequency_table(data, ["gender", "ageBroad"], TablePolicy(threshold=11))
    assert not by_check(check_table(plain, rounded.tables, "gender_by_age"))["rounding"].passed
    good = frequency_table(data, ["gender", "ageBroad"], rounded.tables.table_policy())
    assert by_check(check_table(good, rounded.tables, "gender_by_age"))["rounding"].passed


def test_a_table_must_be_the_one_the_policy_declares(default_policy: Policy) -> None:
    table = frequency_table(records(100, 4), ["ageBroad", "gender"])
    (wrong,) = check_table(table, default_policy.tables, "gender_by_age")
    assert wrong.check == "table_declared" and not wrong.passed
    (unknown,) = check_table(table, default_policy.tables, "secret_table")
    assert unknown.reason == "the policy declares no such table"


def test_spend_within_the_policy_and_the_cap(default_policy: Policy) -> None:
    release, privacy = default_policy.release, default_policy.privacy
    charged = {name: spend for name, spend in release.spends().items()}
    results = check_spend(charged, release, privacy, PrivacySpend(0.5))
    assert all(r.passed for r in results)
    cap = results[-1]
    assert cap.check == "dataset_cap" and cap.figures["remaining_rho"] == 0.5

    over = check_spend(charged, release, privacy, PrivacySpend(0.96))
    assert not over[-1].passed
    assert over[-1].figures["charged_rho"] == pytest.approx(0.05)
    assert "already spent exceeds the cap rho 1.0" in over[-1].reason

    greedy = {**charged, "synthetic": PrivacySpend(0.03)}
    failed = [r for r in check_spend(greedy, release, privacy, PrivacySpend(0)) if r.failed]
    assert [(r.check, r.subject) for r in failed] == [("artefact_spend", "release.synthetic")]
    assert failed[0].reason == "charged rho 0.03, the policy allows 0.02"

    stray = check_spend({"dp_tables.extra": PrivacySpend(0.001)}, release, privacy, PrivacySpend(0))
    assert stray[0].reason == "the policy declares no such DP artefact"


def test_the_whole_candidate(default_policy: Policy) -> None:
    micro = pd.DataFrame(
        {
            **{q: ["v"] * 12 for q in QIS},
            "exploitationType": ["isForcedLabour;", "isSexualExploit;"] * 6,
        }
    )
    table = frequency_table(
        records(400, 5), ["gender", "ageBroad"], default_policy.tables.table_policy()
    )
    report = check_candidate(
        default_policy,
        microdata=micro,
        tables={"gender_by_age": table},
        charged=default_policy.release.spends(),
        spent_before=PrivacySpend(0.1),
    )
    assert not report.passed
    assert {(r.check, r.subject) for r in report.failures} == {
        ("table_declared", f"tables.{name}")
        for name in (
            "by_year",
            "by_country_of_exploitation",
            "citizenship_by_country_of_exploitation",
        )
    }
    document = report.to_json()
    assert document["passed"] is False
    assert {r["check"] for r in document["results"]} >= {
        "k_anonymity",
        "l_diversity",
        "record_risk",
        "cell_threshold",
        "secondary_suppression",
        "artefact_spend",
        "dataset_cap",
    }


def test_a_report_with_no_checks_does_not_pass() -> None:
    from policies import CandidateReport

    assert not CandidateReport(()).passed


def test_the_root_is_the_checkout() -> None:
    assert Path(ROOT / "config" / "policies" / "default.yaml").is_file()


def test_the_candidate_is_checked_against_the_tables_already_published(
    default_policy: Policy,
) -> None:
    # Out already: gender by age without the three flagged records. The candidate's gender by
    # age counts everyone: the two grand totals differ by exactly the three flagged records.
    data = records(400, 5).assign(flag=[""] * 397 + ["1"] * 3)
    rules = default_policy.tables.table_policy()
    before = tabulate(data, ["gender", "ageBroad"], drop={"flag": ["1"]}, policy=rules)
    table = frequency_table(data, ["gender", "ageBroad"], rules)
    candidate = {"charged": default_policy.release.spends(), "spent_before": PrivacySpend(0)}
    tables = {"gender_by_age": table}
    alone = check_candidate(default_policy, microdata=None, tables=tables, **candidate)
    assert "differencing" not in {r.check for r in alone.results}  # no records: not checked
    fresh = check_candidate(
        default_policy, microdata=None, tables=tables, records=data, **candidate
    )
    assert by_check(list(fresh.results))["differencing"].passed
    report = check_candidate(
        default_policy,
        microdata=None,
        tables=tables,
        records=data,
        published=[before],
        **candidate,
    )
    result = by_check(list(report.results))["differencing"]
    assert not result.passed
    assert result.figures["tables"] == 2 and result.figures["published"] == 1
    assert result.figures["recovered_exactly"] >= 1
    expected = check_differencing(table, [before], data, 11)
    assert result.figures["counts_disclosed"] == len(expected.recovered) > 0
    assert "Female" not in result.reason and "Male" not in result.reason
    with pytest.raises(ValueError, match="needs their records"):
        check_candidate(
            default_policy, microdata=None, tables=tables, published=[before], **candidate
        )
