"""Fixtures shared by the schema, format, normalisation and identifier-screen tests."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from contributors.schema import RecordSchema, load_schema

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
CTDC_PATH = SHARED_DATA / "ctdc" / "ctdc_global_kanon_2021.csv"
HTCDS_PATH = SHARED_DATA / "htcds" / "HTCDS_Field_Standards_2.0_Field_Standards.csv"


@pytest.fixture(scope="session")
def schema() -> RecordSchema:
    """The project's record schema."""
    return load_schema()


@pytest.fixture(scope="session")
def ctdc_header() -> list[str]:
    """The CTDC file's header line (reading one line is cheap, unlike the whole file)."""
    with CTDC_PATH.open(newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle))


@pytest.fixture(scope="session")
def ctdc_sample_bytes() -> bytes:
    """A deterministic sample of the CTDC file: its header and every 250th line (~390 rows)."""
    with CTDC_PATH.open("rb") as handle:
        lines = handle.read().splitlines(keepends=True)
    return b"".join([lines[0], *lines[1::250]])


@pytest.fixture(scope="session")
def ctdc_sample(ctdc_sample_bytes: bytes) -> pd.DataFrame:
    """The CTDC sample as a frame of strings."""
    from io import BytesIO

    return pd.read_csv(BytesIO(ctdc_sample_bytes), dtype="string", keep_default_na=False)


@pytest.fixture(scope="session")
def ctdc_whole() -> pd.DataFrame:
    """The whole CTDC file as a frame of strings (only for tests marked slow)."""
    return pd.read_csv(CTDC_PATH, dtype="string", keep_default_na=False)
