"""A query worker run in its own process by the concurrency test (spawned, not forked)."""

from __future__ import annotations

from typing import Any


def run_queries(
    overrides: dict[str, Any], headers: dict[str, str], specs: list[dict[str, Any]], barrier: Any
) -> list[tuple[int, float | None, str | None]]:
    """Post each spec through a hub of this process's own; return (status, rho, problem slug).

    :param overrides: the hub's settings (database, keyring, caps)
    :param headers: the researcher's bearer header
    :param specs: the query specs, posted in order
    :param barrier: every worker waits here so the charges race for real
    """
    from hub import create_app

    app = create_app(overrides)
    client = app.test_client()
    barrier.wait(timeout=120)
    outcomes: list[tuple[int, float | None, str | None]] = []
    for spec in specs:
        response = client.post("/v1/queries", json=spec, headers=headers)
        body = response.get_json()
        if response.status_code == 201:
            outcomes.append((201, float(body["spend"]["rho"]), None))
        else:
            outcomes.append((response.status_code, None, str(body.get("type"))))
    app.extensions["ctdhub.engine"].dispose()
    return outcomes


def run_into(
    overrides: dict[str, Any],
    headers: dict[str, str],
    specs: list[dict[str, Any]],
    barrier: Any,
    results: Any,
) -> None:
    """Run :func:`run_queries` and put its outcomes (or the error's text) on ``results``."""
    try:
        results.put(run_queries(overrides, headers, specs, barrier))
    except BaseException as error:  # reported to the test, which fails on it
        results.put(f"{type(error).__name__}: {error}")
        raise
