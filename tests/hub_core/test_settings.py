"""Settings load in layers and fail fast with a readable message."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub import create_app
from hub.settings import SettingsError, declarations, load_settings


def test_defaults_are_declared_with_descriptions() -> None:
    for name, spec in declarations().items():
        assert spec["description"], name
        assert spec["type"] in {"int", "str"}, name


def test_environment_then_overrides() -> None:
    env = {"CTDHUB_ACCESS_TOKEN_TTL": "600", "CTDHUB_MAX_UPLOAD_BYTES": "2048"}
    values = load_settings({"ACCESS_TOKEN_TTL": 300}, environ=env)
    assert values["ACCESS_TOKEN_TTL"] == 300
    assert values["MAX_UPLOAD_BYTES"] == 2048


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CTDHUB_NO_SUCH": "1"}, "unknown setting CTDHUB_NO_SUCH"),
        ({"CTDHUB_MAX_UPLOAD_BYTES": "lots"}, "must be an integer"),
        ({"CTDHUB_ACCESS_TOKEN_TTL": "5"}, "between 60 s and 86400 s"),
        ({"CTDHUB_DATABASE_URL": "mysql://x"}, "SQLite or PostgreSQL"),
        ({"CTDHUB_TOKEN_RATE_LIMIT_PER_CLIENT": "often"}, "must be a rate limit"),
        ({"CTDHUB_RATELIMIT_STORAGE_URL": "memcached://x"}, "memory:// or a redis://"),
        ({"CTDHUB_MAX_BODIES_IN_FLIGHT": "0"}, "MAX_BODIES_IN_FLIGHT must be at least 1"),
        ({"CTDHUB_DP_QUERY_RHO_MIN": "2", "CTDHUB_DP_QUERY_RHO_MAX": "1"}, "must be below"),
        ({"CTDHUB_DP_QUERY_RHO_MIN": "0"}, "DP_QUERY_RHO_MIN must be greater than 0"),
        ({"CTDHUB_DP_SNAPSHOT_SPILL": "disk"}, "DP_SNAPSHOT_SPILL must be 'memory' or 'tmpfs'"),
        # The working tree is on a disk filesystem: a snapshot image must not go there.
        ({"CTDHUB_DP_SNAPSHOT_TMPFS_DIR": str(Path(__file__).parent)}, "not a directory on a"),
        ({"CTDHUB_DP_SNAPSHOT_TMPFS_DIR": "/no/such/folder"}, "not a directory on a"),
    ],
)
def test_bad_settings_are_refused_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(environ=env)


def test_create_app_refuses_a_malformed_keyring() -> None:
    from hub.crypto import KeyringError

    with pytest.raises(KeyringError):
        create_app({"DATABASE_URL": "sqlite://", "KEYRING": "{}"})
