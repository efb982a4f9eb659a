"""Fixtures: small deterministic samples of the CTDC case records, read in place."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

CTDC_FILE = (
    Path(__file__).resolve().parents[2]
    / ".."
    / "shared"
    / "data"
    / "ctdc"
    / "ctdc_global_kanon_2021.csv"
)

#: A 12-column slice: the demographic columns plus a few correlated indicator columns.
SMALL_COLUMNS = [
    "yearOfRegistration",
    "Datasource",
    "gender",
    "ageBroad",
    "majorityStatus",
    "citizenship",
    "CountryOfExploitation",
    "isForcedLabour",
    "isSexualExploit",
    "typeOfSexProstitution",
    "meansOfControlThreats",
    "meansOfControlPsychologicalAbuse",
]


def read_ctdc_sample(every: int, offset: int = 0) -> pd.DataFrame:
    """Read every ``every``-th CTDC record (from ``offset``), as strings."""
    return pd.read_csv(
        CTDC_FILE,
        dtype="string",
        keep_default_na=False,
        usecols=SMALL_COLUMNS,
        skiprows=lambda i: i > 0 and (i - 1 - offset) % every != 0,
    )[SMALL_COLUMNS]


@pytest.fixture(scope="session")
def ctdc_training() -> pd.DataFrame:
    """Return about 2,400 CTDC records (every 40th)."""
    return read_ctdc_sample(40)


@pytest.fixture(scope="session")
def ctdc_control() -> pd.DataFrame:
    """Return about 2,400 other CTDC records (every 40th, shifted), none in the training set."""
    return read_ctdc_sample(40, offset=20)
