"""The readable diff of two policy versions."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from contributors.schema import load_schema
from disclosure_control.dp.accounting import rho_to_epsilon
from policies import Policy, RecordFields, diff_policies, format_diff, validate_policy
from tests.policies.conftest import DEFAULT_POLICY, DERIVED


def changed(default_text: str, fields: RecordFields, edit: Any) -> Policy:
    data = yaml.safe_load(default_text)
    edit(data)
    return validate_policy(data, fields)


def test_the_same_policy_has_no_changes(default_policy: Policy) -> None:
    assert diff_policies(default_policy, default_policy) == []
    assert format_diff([]) == "no changes"


def test_a_changed_value_reads_path_old_new(
    default_policy: Policy, default_text: str, fields: RecordFields
) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["version"] = 2
        data["microdata"]["k"] = 15
        data["tables"]["zero_rule"] = "suppress"

    new = changed(default_text, fields, edit)
    assert format_diff(diff_policies(default_policy, new)).splitlines() == [
        "microdata.k: 11 -> 15",
        'tables.zero_rule: "publish" -> "suppress"',
    ]


def test_named_items_are_matched_by_name_and_rho_shows_epsilon(
    default_policy: Policy, default_text: str, fields: RecordFields
) -> None:
    def edit(data: dict[str, Any]) -> None:
        tables = data["release"]["dp_tables"]
        tables.reverse()  # order alone is no change
        tables[-1]["rho"] = 0.01  # counts_by_year, now last
        tables.pop(0)
        tables.append({"name": "counts_by_gender", "group_by": ["gender"], "rho": 0.001})

    lines = format_diff(diff_policies(default_policy, changed(default_text, fields, edit)))
    eps_old, eps_new = rho_to_epsilon(0.005, 1e-6), rho_to_epsilon(0.01, 1e-6)
    gone = "release.dp_tables[counts_by_citizenship_and_country_of_exploitation]"
    assert lines.splitlines() == [
        f"release.dp_tables[counts_by_year].rho: 0.005 -> 0.01 (epsilon {eps_old:.4g} ->"
        f" {eps_new:.4g} at delta 1e-06)",
        f'{gone}.name: "counts_by_citizenship_and_country_of_exploitation" -> (none)',
        f'{gone}.group_by: ["citizenship", "CountryOfExploitation"] -> (none)',
        f"{gone}.rho: 0.005 -> (none)",
        'release.dp_tables[counts_by_gender].name: (none) -> "counts_by_gender"',
        'release.dp_tables[counts_by_gender].group_by: (none) -> ["gender"]',
        "release.dp_tables[counts_by_gender].rho: (none) -> 0.001",
    ]


def test_field_lists_say_what_was_added_and_removed(
    default_policy: Policy, default_text: str, fields: RecordFields
) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["researchers"]["filter_by"].remove("citizenship")
        data["researchers"]["filter_by"].append("isAbduction")

    (change,) = diff_policies(default_policy, changed(default_text, fields, edit))
    assert change.path == "researchers.filter_by"
    assert change.note == "added isAbduction; removed citizenship"


def test_the_first_version_is_all_additions(default_policy: Policy) -> None:
    changes = diff_policies(None, default_policy)
    assert all(c.old is None for c in changes)
    paths = {c.path for c in changes}
    assert {"microdata.k", "privacy.dataset_cap.rho", "publication.licence.name"} <= paths
    assert "version" not in paths


@settings(max_examples=30, deadline=None)
@given(k=st.integers(2, 50), threshold=st.integers(1, 50), rho=st.floats(0.25, 5.0))
def test_a_diff_names_exactly_the_keys_that_differ(k: int, threshold: int, rho: float) -> None:
    fields = RecordFields.from_table_schema(load_schema().as_dict(), DERIVED)
    text = DEFAULT_POLICY.read_text("utf-8")
    old = validate_policy(yaml.safe_load(text), fields)

    def edit(data: dict[str, Any]) -> None:
        data["microdata"]["k"] = k
        data["tables"]["cell_threshold"] = threshold
        data["privacy"]["dataset_cap"]["rho"] = rho

    new = changed(text, fields, edit)
    expected = {
        path
        for path, before, after in [
            ("microdata.k", 11, k),
            ("tables.cell_threshold", 11, threshold),
            ("privacy.dataset_cap.rho", 1.0, rho),
        ]
        if before != after
    }
    assert {c.path for c in diff_policies(old, new)} == expected
    assert {c.path for c in diff_policies(new, old)} == expected
