"""Hierarchies: the declarations in config/ load, cover the data, order, and fail clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contributors.schema import COUNTRIES_PATH
from disclosure_control.sdc.hierarchies import (
    TOP,
    Hierarchy,
    HierarchyError,
    load_hierarchies,
    load_hierarchy_file,
)
from tests.sdc.conftest import CTDC_PUBLISHED_QIS


def test_every_quasi_identifier_of_the_schema_has_a_hierarchy(
    quasi_identifiers: list[str], hierarchies: dict[str, Hierarchy]
) -> None:
    assert quasi_identifiers, "the record schema declares no quasi-identifier"
    assert set(quasi_identifiers) <= set(hierarchies)


def test_country_hierarchy_is_derived_from_the_country_list(
    hierarchies: dict[str, Hierarchy],
) -> None:
    countries = pd.read_csv(COUNTRIES_PATH, dtype="string", keep_default_na=False)
    for field in ("citizenship", "CountryOfExploitation"):
        h = hierarchies[field]
        assert set(countries["alpha2"]) | {""} == set(h.leaves)
        # NA is Namibia, never a missing value.
        namibia = pd.Series(["NA"])
        assert h.generalise(namibia, 1).tolist() == ["Sub-Saharan Africa"]
        assert h.generalise(namibia, 2).tolist() == ["Africa"]
        assert h.generalise(namibia, 3).tolist() == [TOP]


def test_declared_levels_follow_the_issue(hierarchies: dict[str, Hierarchy]) -> None:
    age = hierarchies["ageBroad"]
    ages = pd.Series(["0--8", "24--26", "48+", ""])
    assert age.generalise(ages, 1).tolist() == ["0--17", "18--29", "48+", ""]
    assert age.generalise(ages, 2).tolist() == ["Minor", "Adult", "Adult", ""]
    assert age.generalise(ages, 3).tolist() == [TOP] * 4
    year = hierarchies["yearOfRegistration"]
    years = pd.Series(["2002", "2003", "2019", ""])
    assert year.generalise(years, 1).tolist() == ["2002-2003", "2002-2003", "2018-2019", ""]
    assert year.generalise(years, 2).tolist() == ["2000-2004", "2000-2004", "2015-2019", ""]
    assert year.generalise(years, 3).tolist() == [TOP] * 4
    assert year.level_names == ("year", "2-year period", "5-year period", "any")
    # Heights decide Sweeney's precision (level over height), so they are part of the contract.
    heights = {q: hierarchies[q].height for q in CTDC_PUBLISHED_QIS}
    assert heights == {
        "gender": 1,
        "ageBroad": 3,
        "citizenship": 3,
        "CountryOfExploitation": 3,
        "yearOfRegistration": 3,
    }


def test_hierarchies_cover_every_ctdc_value(
    ctdc_sample: pd.DataFrame, hierarchies: dict[str, Hierarchy], quasi_identifiers: list[str]
) -> None:
    for field in quasi_identifiers:
        codes = hierarchies[field].encode(ctdc_sample[field], field)
        assert (codes >= 0).all()


def test_unknown_value_names_field_row_and_value(hierarchies: dict[str, Hierarchy]) -> None:
    values = pd.Series(["Female", "Robot"], index=[10, 11], name="gender")
    with pytest.raises(HierarchyError, match=r"'gender'.*row 11: 'Robot'"):
        hierarchies["gender"].encode(values)


def test_levels_that_do_not_nest_are_accepted_with_their_true_order() -> None:
    # "A" at level 1 splits into "P" and "Q" at level 2: level 2 does not generalise level 1.
    h = Hierarchy.from_mapping("odd", ["v", "a", "b", "any"], {"x": ["A", "P"], "y": ["A", "Q"]})
    assert h.generalise(pd.Series(["x", "y"]), 2).tolist() == ["P", "Q"]
    assert not h.generalises(1, 2)
    assert h.generalises(2, 1)  # level 2 is as fine as the leaves here, so level 1 coarsens it
    with pytest.raises(HierarchyError, match="does not generalise level 'a'"):
        h.level_map(1, 2)
    assert h.level_map(2, 1).tolist() == [0, 0, 1]  # P -> A, Q -> A, missing -> missing


def test_five_year_periods_over_two_year_periods_are_ordered_from_the_labels(
    tmp_path: Path,
) -> None:
    spec = {
        "fields": ["year"],
        "levels": ["year", "2-year", "5-year", "any"],
        "periods": {"first": 2000, "last": 2010, "origin": 2000, "widths": [2, 5]},
    }
    (tmp_path / "year.json").write_text(json.dumps(spec))
    h = load_hierarchies(tmp_path)["year"]
    years = pd.Series(["2004", "2005", "2010"])
    assert h.generalise(years, 1).tolist() == ["2004-2005", "2004-2005", "2010-2011"]
    assert h.generalise(years, 2).tolist() == ["2000-2004", "2005-2009", "2010-2014"]
    order = {(a, b) for a in range(4) for b in range(4) if h.generalises(a, b)}
    # The issue's example: 0<=1, 0<=2, 0<=3, 1<=3, 2<=3 (and each level itself), never 1<=2.
    assert order == {(0, 1), (0, 2), (0, 3), (1, 3), (2, 3)} | {(a, a) for a in range(4)}


def brute_force_order(h: Hierarchy) -> set[tuple[int, int]]:
    """Pairs (a, b) where b generalises a, by checking every pair of leaves."""
    pairs = set()
    for a in range(h.height + 1):
        for b in range(h.height + 1):
            if all(r[b] == s[b] for r in h.labels for s in h.labels if r[a] == s[a]):
                pairs.add((a, b))
    return pairs


@settings(max_examples=60, deadline=None)
@given(
    columns=st.lists(
        st.lists(st.sampled_from(["A", "B", "C"]), min_size=5, max_size=5), min_size=1, max_size=3
    )
)
def test_generalisation_order_agrees_with_leaf_pairs(columns: list[list[str]]) -> None:
    leaves = ["v", "w", "x", "y", "z"]
    mapping = {leaf: [column[i] for column in columns] for i, leaf in enumerate(leaves)}
    h = Hierarchy.from_mapping("t", [f"l{i}" for i in range(len(columns) + 2)], mapping)
    computed = {
        (a, b) for a in range(h.height + 1) for b in range(h.height + 1) if h.generalises(a, b)
    }
    assert computed == brute_force_order(h)
    for a, b in computed:
        codes = h.level_map(a, b)[h.level_codes(a)]
        assert (codes == h.level_codes(b)).all()


def test_a_field_claimed_twice_is_refused(tmp_path: Path) -> None:
    spec = {"fields": ["g"], "levels": ["g", "any"], "mapping": {"F": []}}
    (tmp_path / "a.json").write_text(json.dumps(spec))
    (tmp_path / "b.json").write_text(json.dumps(spec))
    with pytest.raises(HierarchyError, match="'g' has hierarchies in both"):
        load_hierarchies(tmp_path)


def test_table_declaration_errors_name_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text("code,region\nNA,Africa\nFR,\n")
    spec = {
        "fields": ["country"],
        "levels": ["country", "region", "any"],
        "table": {"path": "c.csv", "columns": ["code", "region"]},
    }
    path = tmp_path / "country.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(HierarchyError, match="line 3 has an empty 'region'"):
        load_hierarchy_file(path)
    spec["table"] = {"path": "c.csv", "columns": ["code", "continent"]}
    path.write_text(json.dumps(spec))
    with pytest.raises(HierarchyError, match=r"no column\(s\) \['continent'\]"):
        load_hierarchy_file(path)


def test_wrong_number_of_labels_is_refused(tmp_path: Path) -> None:
    spec = {"fields": ["a"], "levels": ["a", "b", "any"], "mapping": {"x": []}}
    (tmp_path / "a.json").write_text(json.dumps(spec))
    with pytest.raises(HierarchyError, match="value 'x' lists 0 labels, expected 1"):
        load_hierarchies(tmp_path)


def test_missing_folder_and_bad_json_are_reported(tmp_path: Path) -> None:
    with pytest.raises(HierarchyError, match="does not exist"):
        load_hierarchies(tmp_path / "nowhere")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(HierarchyError, match="not valid JSON"):
        load_hierarchies(tmp_path)


def test_the_withheld_label_is_refused_below_the_top() -> None:
    with pytest.raises(HierarchyError, match="label '\\*' below the top level"):
        Hierarchy.from_mapping("bad", ["v", "band", "any"], {"x": ["*"], "y": ["Y"]})
