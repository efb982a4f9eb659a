"""Fixtures for the DP tests: a small CTDC-like schema and the real CTDC file's location."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from disclosure_control.dp import Field, schema_of

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
CTDC = DATA / "ctdc" / "ctdc_global_kanon_2021.csv"

GENDERS = ("Female", "Male", "Transgender/NonConforming")
AGES = ("0--8", "9--17", "18--20", "21--23", "24--26", "27--29", "30--38", "39--47", "48+")


@pytest.fixture(scope="session")
def ctdc_schema() -> dict[str, Field]:
    """Return a schema for a few CTDC columns, with the domains the data README documents."""
    return schema_of(
        [
            Field("gender", "string", GENDERS),
            Field("ageBroad", "string", AGES),
            Field("Datasource", "string", ("Case Management", "Hotline")),
            Field("yearOfRegistration", "integer", bounds=(2002, 2021)),
            Field("citizenship", "string"),
            Field("isAbduction", "boolean"),
        ]
    )


@pytest.fixture(scope="session")
def ctdc_records() -> pd.DataFrame:
    """Return the whole CTDC k-anonymised file, read as strings (``NA`` is Namibia)."""
    return pd.read_csv(CTDC, dtype="string", keep_default_na=False)
