"""The session-signing key: the setting, else one made once in the instance folder, owner-only."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from flask import Flask

from hub.portal import KEY_FILE_NAME, secret_key
from hub.settings import SettingsError, load_settings


def _app(tmp_path: Path, key: str = "") -> Flask:
    app = Flask("keytest", instance_path=str(tmp_path / "instance"))
    app.config["SECRET_KEY"] = key
    return app


def test_a_key_is_made_once_and_kept_owner_only(tmp_path: Path) -> None:
    first = secret_key(_app(tmp_path))
    path = tmp_path / "instance" / KEY_FILE_NAME
    assert len(first) >= 32 and path.read_text(encoding="ascii") == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret_key(_app(tmp_path)) == first, "every worker and restart reads the same key"


def test_a_configured_key_wins(tmp_path: Path) -> None:
    configured = "k" * 40
    assert secret_key(_app(tmp_path, configured)) == configured
    assert not (tmp_path / "instance" / KEY_FILE_NAME).exists()


def test_a_short_key_is_refused_at_start() -> None:
    with pytest.raises(SettingsError, match="SECRET_KEY must be 32 characters"):
        load_settings({"SECRET_KEY": "short"}, environ={})
