"""The policy document: the default policy, and every problem named by key path and reason."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from contributors.schema import load_schema
from disclosure_control.dp.accounting import rho_to_epsilon
from disclosure_control.sdc import PrivacyModel, TablePolicy
from policies import PolicyError, RecordFields, load_policy, policy_json_schema, validate_policy
from policies.document import Policy
from tests.policies.conftest import DEFAULT_POLICY, DERIVED


def document(default_text: str) -> dict[str, Any]:
    data = yaml.safe_load(default_text)
    assert isinstance(data, dict)
    return data


def problems(data: Any, fields: RecordFields) -> dict[str, str]:
    with pytest.raises(PolicyError) as caught:
        validate_policy(data, fields)
    return {p.path: p.reason for p in caught.value.problems}


def test_the_default_policy_is_ctdcs_practice(default_policy: Policy) -> None:
    micro = default_policy.microdata
    assert micro.k == 11
    assert set(micro.quasi_identifiers) == {
        "gender",
        "ageBroad",
        "citizenship",
        "CountryOfExploitation",
        "yearOfRegistration",
    }
    assert micro.l_diversity is not None
    assert micro.l_diversity.attributes == ("exploitationType",)
    assert micro.l_diversity.l == 2
    assert micro.l_diversity.kind == "distinct"
    assert micro.privacy_model() == PrivacyModel(
        k=11, max_suppression=0.05, sensitive=("exploitationType",), l=2, l_kind="distinct"
    )
    assert default_policy.tables.table_policy() == TablePolicy(threshold=11)


def test_the_default_policy_names_only_schema_fields_and_derived_attributes(
    default_policy: Policy,
) -> None:
    schema = load_schema()
    named = [
        *default_policy.microdata.quasi_identifiers,
        *default_policy.researchers.group_by,
        *default_policy.researchers.filter_by,
        *(d for t in default_policy.tables.frequency_tables for d in t.dimensions),
    ]
    assert all(name in schema for name in named)
    assert set(default_policy.microdata.quasi_identifiers) <= set(schema.quasi_identifiers)


def test_the_default_policy_needs_its_derived_attributes(default_text: str) -> None:
    document = load_schema().as_dict()
    assert [d["name"] for d in document.pop("ctdhub:derivedAttributes")] == ["exploitationType"]
    bare = RecordFields.from_table_schema(document)
    with pytest.raises(PolicyError) as caught:
        load_policy(default_text, bare)
    found = {p.path for p in caught.value.problems}
    assert found == {"microdata.l_diversity.attributes[0]", "release.dp_tables[2].group_by[0]"}
    assert all(p.line is not None for p in caught.value.problems)
    assert "'exploitationType' is not a record schema field" in str(caught.value)
    # The caller may name derived attributes the document does not declare.
    load_policy(default_text, RecordFields.from_table_schema(document, ["exploitationType"]))


def test_release_spends_sum_within_the_cap_and_show_epsilon(default_policy: Policy) -> None:
    total = default_policy.release.total()
    assert total.rho <= default_policy.privacy.dataset_cap.rho
    assert set(default_policy.release.spends()) == {
        *(f"dp_tables.{t.name}" for t in default_policy.release.dp_tables),
        "synthetic",
        "linkage_count",
    }
    allowance = default_policy.privacy.researcher_allowance
    epsilon, delta = allowance.epsilon_delta(default_policy.privacy.display_delta)
    assert epsilon == rho_to_epsilon(0.25, 1e-6)
    assert delta == pytest.approx(1e-6 + 1e-8)


def test_every_problem_is_reported_at_once(default_text: str, fields: RecordFields) -> None:
    data = document(default_text)
    data["version"] = 0
    data["microdata"]["k"] = 1
    data["microdata"]["quasi_identifiers"][1] = "ageBraod"
    data["tables"]["zero_rule"] = "sometimes"
    data["privacy"]["researcher_allowance"]["rho"] = 2.0
    data["researchers"]["group_by"].append("caseNo")
    data["publication"]["licence"]["path"] = "http://insecure.example"
    data["publication"]["citation"] = "see {doi}"
    del data["publication"]["licence"]["title"]
    data["release"]["synthetic"]["shares"]["model"] = 0.5
    found = problems(data, fields)
    assert set(found) == {
        "version",
        "microdata.k",
        "microdata.quasi_identifiers[1]",
        "tables.zero_rule",
        "privacy",
        "researchers.group_by[14]",
        "publication.licence.path",
        "publication.licence.title",
        "release.synthetic.shares",
    }
    assert "did you mean 'ageBroad'" in found["microdata.quasi_identifiers[1]"]
    assert "pseudonymous case number" in found["researchers.group_by[14]"]
    assert found["privacy"].startswith("a researcher's allowance must lie within the dataset's cap")
    assert found["publication.licence.title"] == "required key is missing"
    assert "add up to 1" in found["release.synthetic.shares"]


def test_a_check_across_sections_is_reported_beside_other_problems(
    default_text: str, fields: RecordFields
) -> None:
    data = document(default_text)
    data["release"]["synthetic"]["rho"] = 0.99
    data["microdata"]["k"] = 1
    found = problems(data, fields)
    assert set(found) == {"microdata.k", "release"}
    assert "spend rho 1.02 in all" in found["release"]
    assert "over the dataset's cap privacy.dataset_cap.rho = 1.0" in found["release"]
    del data["microdata"]["k"]
    data["microdata"]["k"] = 11
    assert set(problems(data, fields)) == {"release"}


def test_the_pseudonym_is_refused_wherever_a_field_is_named(
    default_text: str, fields: RecordFields
) -> None:
    data = document(default_text)
    data["microdata"]["quasi_identifiers"].append("caseNo")
    data["tables"]["frequency_tables"][0]["dimensions"] = ["caseNo"]
    data["release"]["dp_tables"][0]["group_by"] = ["caseNo"]
    data["release"]["synthetic"]["columns"] = ["caseNo", "gender"]
    data["researchers"]["filter_by"].append("caseNo")
    found = problems(data, fields)
    assert set(found) == {
        "microdata.quasi_identifiers[5]",
        "tables.frequency_tables[0].dimensions[0]",
        "release.dp_tables[0].group_by[0]",
        "release.synthetic.columns[0]",
        "researchers.filter_by[9]",
    }
    assert all("never released" in reason for reason in found.values())


def test_derived_attributes_are_sensitive_but_never_quasi_identifiers(
    default_text: str, fields: RecordFields
) -> None:
    data = document(default_text)
    data["microdata"]["quasi_identifiers"].append("exploitationType")
    found = problems(data, fields)
    assert found == {
        "microdata.quasi_identifiers[5]": "'exploitationType' is a derived attribute; only"
        " record schema fields are allowed here"
    }


def test_a_sensitive_attribute_cannot_be_a_quasi_identifier(
    default_text: str, fields: RecordFields
) -> None:
    data = document(default_text)
    data["microdata"]["l_diversity"]["attributes"] = ["gender"]
    assert problems(data, fields) == {
        "microdata": "['gender'] cannot be both a quasi-identifier and a sensitive attribute"
    }


def test_repeated_names_are_refused(default_text: str, fields: RecordFields) -> None:
    data = document(default_text)
    data["researchers"]["group_by"].append("gender")
    data["release"]["dp_tables"][1]["name"] = "counts_by_year"
    found = problems(data, fields)
    assert found == {
        "researchers.group_by": "names ['gender'] more than once",
        "release": "DP table name(s) ['counts_by_year'] used twice",
    }


def test_types_are_strict(default_text: str, fields: RecordFields) -> None:
    data = document(default_text)
    data["microdata"]["k"] = "11"
    data["tables"]["cell_threshold"] = True
    data["privacy"]["dataset_cap"]["rho"] = "1.0"
    data["privacy"]["display_delta"] = float("nan")
    found = problems(data, fields)
    assert set(found) == {
        "microdata.k",
        "tables.cell_threshold",
        "privacy.dataset_cap.rho",
        "privacy.display_delta",
    }


def test_unknown_and_missing_keys(default_text: str, fields: RecordFields) -> None:
    data = document(default_text)
    data["microdata"]["kk"] = 11
    data["microdata"]["mystery"] = 1
    del data["researchers"]
    found = problems(data, fields)
    assert found["microdata.kk"] == "unknown key (did you mean 'k'?)"
    assert found["microdata.mystery"].startswith("unknown key (expected one of: k, l_diversity")
    assert found["researchers"] == "required key is missing"


def test_yaml_problems_carry_their_line(default_text: str, fields: RecordFields) -> None:
    text = default_text.replace("  k: 11\n", "  k: 11\n  k: 12\n", 1)
    with pytest.raises(PolicyError) as caught:
        load_policy(text, fields)
    (problem,) = caught.value.problems
    assert problem.path == "microdata.k"
    assert problem.reason == "key 'k' is repeated"
    assert text.splitlines()[problem.line - 1 if problem.line else 0] == "  k: 12"

    with pytest.raises(PolicyError) as caught:
        load_policy("format: 1\nversion: [1\n", fields)
    (problem,) = caught.value.problems
    assert problem.reason.startswith("not valid YAML") and problem.line == 3

    line = default_text.splitlines().index("  cell_threshold: 11") + 1
    with pytest.raises(PolicyError) as caught:
        load_policy(default_text.replace("cell_threshold: 11", "cell_threshold: 0"), fields)
    assert [(p.path, p.line) for p in caught.value.problems] == [("tables.cell_threshold", line)]
    assert f"tables.cell_threshold (line {line}): Input should be greater" in str(caught.value)

    # More synthetic records than a worksheet holds: refused before any build is charged.
    with pytest.raises(PolicyError) as caught:
        load_policy(default_text.replace("records: 100000", "records: 2000000"), fields)
    assert [p.path for p in caught.value.problems] == ["release.synthetic.records"]
    assert "less than or equal to 1048575" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "a policy must be a mapping of sections to settings"),
        ("- a\n- b\n", "a policy must be a mapping of sections to settings"),
        ("format: 2\n", "this hub reads policy format 1, not 2"),
    ],
)
def test_documents_that_are_not_policies(text: str, reason: str, fields: RecordFields) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(text, fields)
    assert [p.reason for p in caught.value.problems] == [reason]


def test_yaml_1_2_scalars(default_text: str, fields: RecordFields) -> None:
    # YAML 1.1 reads 1e-6 as a string and "no" as False; a policy reads them as written.
    text = default_text.replace("display_delta: 1.0e-6", "display_delta: 1e-6")
    assert load_policy(text, fields).privacy.display_delta == 1e-6
    title = next(line for line in default_text.splitlines() if line.startswith("title:"))
    text = default_text.replace(title, "title: no")
    assert load_policy(text, fields).title == "no"
    with pytest.raises(PolicyError) as caught:
        load_policy(text.replace("version: 1", "version: -1"), fields)
    assert [p.path for p in caught.value.problems] == ["version"]
    with pytest.raises(PolicyError) as caught:
        load_policy(default_text.replace("margins: true", "margins: yes"), fields)
    assert [p.path for p in caught.value.problems] == ["tables.secondary_suppression.margins"]


def test_record_fields_refuse_a_derived_name_that_is_a_field() -> None:
    with pytest.raises(ValueError, match=r"\['gender'\] share a name"):
        RecordFields.from_table_schema(load_schema().as_dict(), ["gender"])


def test_the_json_schema_describes_every_section() -> None:
    schema = policy_json_schema()
    assert set(schema["required"]) >= {"microdata", "tables", "privacy", "release"}


# Independent mistakes, each with the one path it must be reported at.
MISTAKES: dict[str, tuple[tuple[str, ...], Any, str]] = {
    "k": (("microdata", "k"), 0, "microdata.k"),
    "l": (("microdata", "l_diversity", "l"), 0.5, "microdata.l_diversity.l"),
    "risk": (("microdata", "record_risk", "threshold"), 1.5, "microdata.record_risk.threshold"),
    "suppression": (("microdata", "max_suppression"), -0.1, "microdata.max_suppression"),
    "threshold": (("tables", "cell_threshold"), 0, "tables.cell_threshold"),
    "rounding": (("tables", "rounding_base"), 1, "tables.rounding_base"),
    "delta": (("privacy", "display_delta"), 1.0, "privacy.display_delta"),
    "records": (("release", "synthetic", "records"), 0, "release.synthetic.records"),
    "holdout": (("release", "synthetic", "holdout"), 0.5, "release.synthetic.holdout"),
    "licence": (("publication", "licence", "name"), "CC BY", "publication.licence.name"),
    "title": (("title",), "", "title"),
    "unit": (("privacy", "unit"), "household", "privacy.unit"),
}


@settings(max_examples=40, deadline=None)
@given(st.sets(st.sampled_from(sorted(MISTAKES)), min_size=1))
def test_any_set_of_mistakes_is_reported_whole(chosen: set[str]) -> None:
    fields = RecordFields.from_table_schema(load_schema().as_dict(), DERIVED)
    data = copy.deepcopy(yaml.safe_load(DEFAULT_POLICY.read_text("utf-8")))
    for name in chosen:
        keys, value, _ = MISTAKES[name]
        target = data
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    assert set(problems(data, fields)) == {MISTAKES[name][2] for name in chosen}
