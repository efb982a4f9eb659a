"""Fixtures for the policy tests: the real record schema's fields and the default policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from contributors.schema import load_schema
from policies import Policy, RecordFields, load_policy

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_POLICY = ROOT / "config" / "policies" / "default.yaml"
#: Derived attributes beside those the record schema declares (it declares exploitationType).
DERIVED: tuple[str, ...] = ()


@pytest.fixture(scope="session")
def fields() -> RecordFields:
    """Return the record schema's fields, as the hub passes them, with the derived attributes."""
    return RecordFields.from_table_schema(load_schema().as_dict(), DERIVED)


@pytest.fixture(scope="session")
def default_text() -> str:
    """Return the text of ``config/policies/default.yaml``."""
    return DEFAULT_POLICY.read_text("utf-8")


@pytest.fixture(scope="session")
def default_policy(default_text: str, fields: RecordFields) -> Policy:
    """Return the default policy, validated against the real record schema."""
    return load_policy(default_text, fields)
