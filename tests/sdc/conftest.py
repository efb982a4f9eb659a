"""Fixtures for the SDC tests: the hub's hierarchies and record schema, and CTDC case records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from contributors.schema import SCHEMA_PATH
from disclosure_control.sdc.hierarchies import (
    Hierarchy,
    fields_with_role,
    load_hierarchies,
    with_derived_attributes,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
DATA = ROOT / ".." / "shared" / "data"
CTDC = DATA / "ctdc" / "ctdc_global_kanon_2021.csv"
#: The quasi-identifiers CTDC k-anonymised its 2021 release on (data README).
CTDC_PUBLISHED_QIS = (
    "gender",
    "ageBroad",
    "citizenship",
    "CountryOfExploitation",
    "yearOfRegistration",
)


@pytest.fixture(scope="session")
def schema() -> dict[str, Any]:
    """Return the hub's record schema."""
    parsed: dict[str, Any] = json.loads(SCHEMA_PATH.read_text("utf-8"))
    return parsed


@pytest.fixture(scope="session")
def quasi_identifiers(schema: dict[str, Any]) -> list[str]:
    """Return the quasi-identifiers the record schema declares."""
    return fields_with_role(schema, "quasi_identifier")


@pytest.fixture(scope="session")
def hierarchies() -> dict[str, Hierarchy]:
    """Return the hierarchies declared in ``config/hierarchies``."""
    return load_hierarchies(CONFIG / "hierarchies")


@pytest.fixture(scope="session")
def ctdc_records(schema: dict[str, Any]) -> pd.DataFrame:
    """Return the whole CTDC file as strings (``NA`` is Namibia), with the derived attributes."""
    frame = pd.read_csv(CTDC, dtype="string", keep_default_na=False)
    return with_derived_attributes(frame, schema)


@pytest.fixture(scope="session")
def ctdc_sample(ctdc_records: pd.DataFrame) -> pd.DataFrame:
    """Return a deterministic eighth of the CTDC records (every eighth row)."""
    return ctdc_records.iloc[::8].copy()


def zipf_records(n: int, seed: int, countries: int = 30, years: int = 20) -> pd.DataFrame:
    """Return ``n`` skewed case records (Zipf-like, fixed seed) over a few quasi-identifiers.

    :param n: number of records.
    :param seed: seed of the generator.
    :param countries: number of distinct countries of exploitation.
    :param years: number of distinct years.
    """
    rng = np.random.default_rng(seed)

    def draw(values: list[str], exponent: float) -> pd.Series:
        weights = 1.0 / np.arange(1, len(values) + 1) ** exponent
        picks = rng.choice(len(values), size=n, p=weights / weights.sum())
        return pd.Series(np.asarray(values, dtype=object)[picks], dtype="string")

    return pd.DataFrame(
        {
            "gender": draw(["Female", "Male", "Transgender/NonConforming"], 2.0),
            "country": draw([f"C{i:03d}" for i in range(countries)], 1.3),
            "year": draw([str(2002 + i) for i in range(years)], 0.7),
        }
    )
