"""k-anonymity and risk count distinct persons per class when records carry the person key."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from disclosure_control.person import PERSON_COLUMN
from disclosure_control.sdc import TablePolicy, frequency_table
from disclosure_control.sdc.measures import class_sizes, k_anonymity, reidentification_risk
from policies.checks import check_microdata
from policies.document import Microdata, RecordFields


def duplicated_class() -> pd.DataFrame:
    """One class of 11 records from 3 people, and one of 11 records from 11 people."""
    return pd.DataFrame(
        {
            "gender": ["Female"] * 11 + ["Male"] * 11,
            PERSON_COLUMN: [1] * 5 + [2] * 4 + [3] * 2 + list(range(10, 21)),
        }
    )


def test_a_class_of_11_records_from_3_people_is_3_anonymous() -> None:
    frame = duplicated_class()
    assert k_anonymity(frame, ["gender"]) == 3
    assert class_sizes(frame, ["gender"]).tolist() == [3] * 11 + [11] * 11
    # Without the key every record is its own person: 11-anonymous, as before.
    assert k_anonymity(frame.drop(columns=PERSON_COLUMN), ["gender"]) == 11


def test_prosecutor_risk_is_one_over_the_persons_in_the_class() -> None:
    risk = reidentification_risk(duplicated_class(), ["gender"], threshold=0.2)
    assert risk.prosecutor.share_above == 0.5  # the 11 records of the 3-person class
    assert risk.prosecutor.highest == 1 / 3


def test_records_without_a_key_are_each_their_own_person() -> None:
    frame = pd.DataFrame({"gender": ["Female"] * 4, PERSON_COLUMN: [7, 7, None, None]})
    assert k_anonymity(frame, ["gender"]) == 3


def test_the_candidates_microdata_check_counts_persons() -> None:
    rules = Microdata.model_validate(
        {"quasi_identifiers": ["gender"], "k": 11, "record_risk": {"threshold": 0.1}},
        context={"fields": RecordFields({"gender": "string"})},
    )
    frame = duplicated_class()
    k_result = check_microdata(frame, rules)[0]
    assert not k_result.passed
    assert k_result.figures["smallest_class"] == 3
    assert "3 persons, under k = 11" in k_result.reason
    assert check_microdata(frame.drop(columns=PERSON_COLUMN), rules)[0].passed


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 6)), min_size=1, max_size=60))
def test_class_sizes_match_a_pandas_count_of_distinct_persons(
    rows: list[tuple[int, int]],
) -> None:
    frame = pd.DataFrame(rows, columns=["g", PERSON_COLUMN]).astype({"g": str})
    expected = frame.groupby("g")[PERSON_COLUMN].transform("nunique").to_numpy()
    assert np.array_equal(class_sizes(frame, ["g"]), expected)


def test_a_table_cell_of_11_records_from_3_people_is_below_a_threshold_of_11() -> None:
    frame = duplicated_class()
    table = frequency_table(frame, ["gender"], TablePolicy(threshold=11))
    status = dict(zip(table.cells["gender"], table.cells["status"].astype(str), strict=True))
    assert status["Female"] != "published" and status["Male"] != "published"  # hidden by it
    assert table.cells["value"].isna().sum() >= 2
    # Without the key the same records are 11 people in each cell: every cell is published.
    plain = frequency_table(frame.drop(columns=PERSON_COLUMN), ["gender"], TablePolicy(11))
    assert set(plain.cells["status"].astype(str)) == {"published"}
