"""Load the hub's settings in layers and check them once, at start.

Order: the declared defaults in ``config/settings.toml``, then ``CTDHUB_*`` environment
variables, then the overrides given to :func:`hub.create_app` (tests use these).
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

from limits import parse_many

from disclosure_control.dp.snapshot import on_tmpfs

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
SETTINGS_FILE = CONFIG_DIR / "settings.toml"
ENV_PREFIX = "CTDHUB_"


class SettingsError(Exception):
    """Raised when a setting is unknown, of the wrong type or out of range."""


def declarations() -> dict[str, dict[str, Any]]:
    """Return the declared settings: name -> {type, default, description}."""
    with SETTINGS_FILE.open("rb") as handle:
        return tomllib.load(handle)


def unknown_setting_message(key: str, declared: Mapping[str, Any]) -> str:
    """Say, on one line, that ``key`` is no hub setting and what to do about it.

    >>> declared = {"LOG_LEVEL": {}, "DATABASE_URL": {}}
    >>> unknown_setting_message("CTDHUB_LOG_LEVL", declared).split(":")[0]
    'unknown setting CTDHUB_LOG_LEVL in the environment (did you mean CTDHUB_LOG_LEVEL?)'
    """
    known = sorted(ENV_PREFIX + name for name in declared)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return (
        f"unknown setting {key} in the environment{hint}: unset it or correct its name; "
        f"the hub's settings are {', '.join(known)} (see config/settings.toml)"
    )


def _coerce(name: str, kind: str, value: Any) -> Any:
    if kind == "int":
        if isinstance(value, bool):
            raise SettingsError(f"{name} must be an integer, not a boolean")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{name} must be an integer, got {value!r}") from None
    if kind == "str":
        if not isinstance(value, str):
            raise SettingsError(f"{name} must be a string")
        return value
    raise SettingsError(f"{name} is declared with an unknown type {kind!r}")


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Merge defaults, ``CTDHUB_*`` variables and overrides, and validate the result.

    :param overrides: settings that win over everything else (e.g. from tests).
    :param environ: the environment to read; ``os.environ`` by default.
    :raises SettingsError: with a message naming the setting at fault.
    """
    declared = declarations()
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {name: spec["default"] for name, spec in declared.items()}
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :]
        if name.startswith("TEST_"):
            continue  # the test suite's own variables, not hub settings
        if name not in declared:
            raise SettingsError(unknown_setting_message(key, declared))
        values[name] = _coerce(key, declared[name]["type"], raw)
    extra: dict[str, Any] = {}
    for name, value in (overrides or {}).items():
        if name in declared:
            values[name] = _coerce(name, declared[name]["type"], value)
        else:
            extra[name] = value  # Flask's own keys (TESTING, ...) pass through untouched
    _validate(values)
    values.update(extra)
    return values


def _validate(values: Mapping[str, Any]) -> None:
    if values["MAX_UPLOAD_BYTES"] < 1024:
        raise SettingsError("MAX_UPLOAD_BYTES must be at least 1024 bytes")
    if not 60 <= values["ACCESS_TOKEN_TTL"] <= 86400:
        raise SettingsError("ACCESS_TOKEN_TTL must be between 60 s and 86400 s")
    if values["SNAPSHOT_CACHE_SIZE"] < 0:
        raise SettingsError("SNAPSHOT_CACHE_SIZE must not be negative")
    if values["DP_SNAPSHOT_SPILL"] not in {"memory", "tmpfs"}:
        raise SettingsError("DP_SNAPSHOT_SPILL must be 'memory' or 'tmpfs'")
    if values["SNAPSHOT_MAX_RECORDS"] < 0:
        raise SettingsError("SNAPSHOT_MAX_RECORDS must not be negative")
    if not on_tmpfs(values["DP_SNAPSHOT_TMPFS_DIR"]):
        # Checked whatever DP_SNAPSHOT_SPILL says: a snapshot past SNAPSHOT_MAX_RECORDS is
        # always scanned from there.
        raise SettingsError(
            f"DP_SNAPSHOT_TMPFS_DIR ({values['DP_SNAPSHOT_TMPFS_DIR']}) is not a directory on a"
            " RAM-backed filesystem (tmpfs): decrypted records would reach a disk; point it at"
            " one"
        )
    url = values["DATABASE_URL"]
    if url and not url.startswith(("sqlite", "postgresql")):
        raise SettingsError(
            "DATABASE_URL must be a SQLite or PostgreSQL SQLAlchemy URL "
            "(sqlite:///path or postgresql+psycopg://user@host/db)"
        )
    if values["LOG_LEVEL"].upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise SettingsError("LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
    if values["QUEUE_URL"] and not values["QUEUE_URL"].startswith(
        ("sqlite:///", "redis://", "rediss://", "unix://")
    ):
        raise SettingsError("QUEUE_URL must be empty, sqlite:///path or redis://host:port/db")
    if values["QUEUE_URL"].startswith(("redis://", "rediss://", "unix://")) and (
        len(values["QUEUE_SECRET"]) < 32
    ):
        raise SettingsError(
            "QUEUE_SECRET (32 characters or more) is required with a Redis queue: messages are "
            "signed so that whoever can write to Redis cannot run code in the workers"
        )
    if values["QUEUE_CONSUMER"] not in {"worker", "in-process"}:
        raise SettingsError("QUEUE_CONSUMER must be 'worker' or 'in-process'")
    if values["JOB_LEASE_SECONDS"] < 1 or values["JOB_MAX_ATTEMPTS"] < 1:
        raise SettingsError("JOB_LEASE_SECONDS and JOB_MAX_ATTEMPTS must be at least 1")
    if values["BOARD_QUORUM"] < 1:
        raise SettingsError("BOARD_QUORUM must be at least 1")
    _validate_privacy_budget(values)
    _validate_limits(values)


def _exact(name: str, text: str) -> Fraction:
    """Parse a budget setting as an exact rational (a decimal string: "0.25", "1e-6")."""
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise SettingsError(f"{name} must be a decimal number such as 0.25, got {text!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be greater than 0, got {text!r}")
    return value


def _validate_privacy_budget(values: Mapping[str, Any]) -> None:
    rho_cap = _exact("DP_DATASET_RHO_CAP", values["DP_DATASET_RHO_CAP"])
    delta_cap = _exact("DP_DATASET_DELTA_CAP", values["DP_DATASET_DELTA_CAP"])
    rho_allowance = _exact("DP_RESEARCHER_RHO_ALLOWANCE", values["DP_RESEARCHER_RHO_ALLOWANCE"])
    delta_allowance = _exact(
        "DP_RESEARCHER_DELTA_ALLOWANCE", values["DP_RESEARCHER_DELTA_ALLOWANCE"]
    )
    display_delta = _exact("DP_DISPLAY_DELTA", values["DP_DISPLAY_DELTA"])
    if rho_allowance > rho_cap:
        raise SettingsError("DP_RESEARCHER_RHO_ALLOWANCE must not exceed DP_DATASET_RHO_CAP")
    if delta_allowance > delta_cap:
        raise SettingsError("DP_RESEARCHER_DELTA_ALLOWANCE must not exceed DP_DATASET_DELTA_CAP")
    if delta_cap >= 1 or display_delta >= 1:
        raise SettingsError("DP_DATASET_DELTA_CAP and DP_DISPLAY_DELTA must be below 1")
    if _exact("DP_QUERY_RHO_MIN", values["DP_QUERY_RHO_MIN"]) >= _exact(
        "DP_QUERY_RHO_MAX", values["DP_QUERY_RHO_MAX"]
    ):
        raise SettingsError("DP_QUERY_RHO_MIN must be below DP_QUERY_RHO_MAX")


def _validate_limits(values: Mapping[str, Any]) -> None:
    for name in ("MAX_JSON_BODY_BYTES", "MAX_BODIES_IN_FLIGHT", "RETRY_AFTER_SECONDS"):
        if values[name] < 1:
            raise SettingsError(f"{name} must be at least 1")
    for name in ("SERVER_WORKERS", "SERVER_THREADS"):
        if not 1 <= values[name] <= 64:
            raise SettingsError(f"{name} must be between 1 and 64")
    if values["SECRET_KEY"] and len(values["SECRET_KEY"]) < 32:
        raise SettingsError("SECRET_KEY must be 32 characters or more (or empty: made for you)")
    if not 0 <= values["TRUSTED_PROXY_HOPS"] <= 5:
        raise SettingsError("TRUSTED_PROXY_HOPS must be between 0 and 5 (0: no proxy)")
    if values["PORTAL_COOKIE_SECURE"] not in {0, 1}:
        raise SettingsError("PORTAL_COOKIE_SECURE must be 1 or 0")
    for name in ("PORTAL_SESSION_SECONDS", "PORTAL_LINK_SECONDS"):
        if values[name] < 60:
            raise SettingsError(f"{name} must be at least 60 seconds")
    if values["PORTAL_OIDC_METADATA_URL"]:
        if not values["PORTAL_OIDC_METADATA_URL"].startswith(("https://", "http://127.0.0.1:")):
            raise SettingsError(
                "PORTAL_OIDC_METADATA_URL must be an https:// URL (http only on 127.0.0.1)"
            )
        if not values["PORTAL_OIDC_CLIENT_ID"] or not values["PORTAL_OIDC_CLIENT_SECRET"]:
            raise SettingsError(
                "PORTAL_OIDC_CLIENT_ID and PORTAL_OIDC_CLIENT_SECRET are needed with "
                "PORTAL_OIDC_METADATA_URL"
            )
        if not values["PORTAL_OIDC_CLAIM"].strip():
            raise SettingsError("PORTAL_OIDC_CLAIM must name an id_token claim, such as email")
    for name in (
        "TOKEN_RATE_LIMIT_PER_CLIENT",
        "TOKEN_RATE_LIMIT_PER_ADDRESS",
        "PORTAL_SIGN_IN_RATE_LIMIT",
    ):
        try:
            parse_many(values[name])
        except ValueError:
            raise SettingsError(
                f"{name} must be a rate limit such as '20 per minute', got {values[name]!r}"
            ) from None
    if not values["RATELIMIT_STORAGE_URL"].startswith(("memory://", "redis://", "rediss://")):
        raise SettingsError("RATELIMIT_STORAGE_URL must be memory:// or a redis:// URL")
