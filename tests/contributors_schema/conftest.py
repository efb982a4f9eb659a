"""Fixtures shared by the schema, format, normalisation and identifier-screen tests."""

from __future__ import annotations

import csv
from io import BytesIO
from pathlib import Path

import pandas as pd
import pytest

from contributors.pseudonym import pseudonymise_column
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


#: A pseudonym key for tests only (the toolkit's minimum length).
TEST_PSEUDONYM_KEY = "test-partner-key-" + "k" * 32


def pseudonymised(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with its case numbers replaced by the toolkit's case pseudonyms.

    CTDC's own case numbers (1, 2, ...) are not pseudonyms, so the hub refuses them as case ids.
    """
    out = frame.copy()
    out["caseNo"] = pd.array(
        pseudonymise_column(out["caseNo"].tolist(), TEST_PSEUDONYM_KEY), dtype="string"
    )
    return out


@pytest.fixture(scope="session")
def ctdc_sample_raw_bytes() -> bytes:
    """A deterministic sample of the CTDC file: its header and every 250th line (~390 rows)."""
    with CTDC_PATH.open("rb") as handle:
        lines = handle.read().splitlines(keepends=True)
    return b"".join([lines[0], *lines[1::250]])


@pytest.fixture(scope="session")
def ctdc_sample_raw(ctdc_sample_raw_bytes: bytes) -> pd.DataFrame:
    """The CTDC sample as a frame of strings, with CTDC's own case numbers."""
    return pd.read_csv(BytesIO(ctdc_sample_raw_bytes), dtype="string", keep_default_na=False)


@pytest.fixture(scope="session")
def ctdc_sample(ctdc_sample_raw: pd.DataFrame) -> pd.DataFrame:
    """The CTDC sample as the toolkit's prepare leaves it: case numbers pseudonymised."""
    return pseudonymised(ctdc_sample_raw)


@pytest.fixture(scope="session")
def ctdc_sample_bytes(ctdc_sample: pd.DataFrame) -> bytes:
    """The pseudonymised CTDC sample as CSV bytes."""
    return ctdc_sample.to_csv(index=False, lineterminator="\n").encode("utf-8")


@pytest.fixture(scope="session")
def ctdc_whole() -> pd.DataFrame:
    """The whole CTDC file as a frame of strings (only for tests marked slow)."""
    return pd.read_csv(CTDC_PATH, dtype="string", keep_default_na=False)


@pytest.fixture(scope="session")
def ctdc_whole_pseudonymised(ctdc_whole: pd.DataFrame) -> pd.DataFrame:
    """The whole CTDC file with its case numbers pseudonymised (only for slow tests)."""
    return pseudonymised(ctdc_whole)
