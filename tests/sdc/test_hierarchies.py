"""Hierarchies: the declarations in config/ load, cover the data, nest, and fail clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from disclosure_control.sdc.hierarchies import (
    TOP,
    Hierarchy,
    HierarchyError,
    load_hierarchies,
    load_hierarchy_file,
)
from tests.sdc.conftest import CONFIG


def test_every_quasi_identifier_of_the_schema_has_a_hierarchy(
    quasi_identifiers: list[str], hierarchies: dict[str, Hierarchy]
) -> None:
    assert quasi_identifiers, "the record schema declares no quasi-identifier"
    assert set(quasi_identifiers) <= set(hierarchies)


def test_country_hierarchy_is_derived_from_the_country_list(
    hierarchies: dict[str, Hierarchy],
) -> None:
    countries = pd.read_csv(CONFIG / "countries.csv", dtype="string", keep_default_na=False)
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
    assert year.generalise(years, 2).tolist() == ["2000-2009", "2000-2009", "2010-2019", ""]
    assert hierarchies["gender"].height == 1


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


def test_levels_that_do_not_nest_are_refused() -> None:
    with pytest.raises(HierarchyError, match="levels must nest"):
        Hierarchy.from_mapping("bad", ["v", "a", "b", "any"], {"x": ["A", "P"], "y": ["A", "Q"]})


def test_five_year_periods_over_two_year_periods_do_not_nest(tmp_path: Path) -> None:
    spec = {
        "fields": ["year"],
        "levels": ["year", "2-year", "5-year", "any"],
        "periods": {"first": 2000, "last": 2010, "origin": 2000, "widths": [2, 5]},
    }
    (tmp_path / "year.json").write_text(json.dumps(spec))
    with pytest.raises(HierarchyError, match=r"year\.json.*must nest"):
        load_hierarchies(tmp_path)


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
