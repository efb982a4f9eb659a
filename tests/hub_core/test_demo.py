"""``make demo`` as a newcomer meets it: a taken port, re-runs, and Ctrl-C.

The demo runs as a real process on a small CTDC-format file made from the CTDC file here (every
200th record), in a temporary instance folder.
"""

from __future__ import annotations

import json
import signal
import socket
import stat
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.hub_core.processes import Running, free_port, hub_environment, port_is_free, start

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_ctdc(ctdc_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every 200th record of the CTDC file (about 490, both data sources), in its own format."""
    lines = ctdc_file.read_text(encoding="utf-8").splitlines(keepends=True)
    path = tmp_path_factory.mktemp("data") / "ctdc_small.csv"
    path.write_text("".join([lines[0], *lines[1::200]]), encoding="utf-8")
    return path


def demo(
    instance: Path, data: Path, port: int, *options: str, synthetic_records: int = 0
) -> Running:
    args = [sys.executable, "-m", "hub.demo", "--port", str(port), "--data", str(data)]
    args += ["--credentials", str(instance / "demo-credentials.json")]
    args += ["--synthetic-records", str(synthetic_records), *options]
    # The embedded queue's file too, so that each test's demo has its own.
    queue = {"CTDHUB_QUEUE_URL": f"sqlite:///{instance / 'queue.sqlite3'}"}
    return start(args, hub_environment(instance, queue))


def counts(instance: Path) -> dict[str, object]:
    engine = sa.create_engine(f"sqlite:///{instance / 'hub.sqlite3'}")
    with engine.connect() as connection:
        found: dict[str, object] = {
            table: connection.scalar(sa.text(f"SELECT count(*) FROM {table}"))  # noqa: S608
            for table in ("oauth_client", "upload", "record_batch", "release_candidate", "person")
        }
        found["ledger"] = connection.execute(
            sa.text("SELECT spent_rho, spent_delta, charges FROM privacy_ledger")
        ).all()
        found["candidates"] = connection.execute(
            sa.text("SELECT kind, status FROM release_candidate ORDER BY kind")
        ).all()
    engine.dispose()
    return found


def test_a_taken_port_is_one_line_naming_port_and_makes_nothing(
    small_ctdc: Path, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = demo(tmp_path, small_ctdc, port)
        status = run.finish()
    assert status == 2
    assert len(run.lines) == 1, run.lines
    assert run.lines[0].startswith("demo: error:") and "PORT=" in run.lines[0]
    assert str(port) in run.lines[0]
    # Checked before anything was made: no database, no credentials.
    assert not (tmp_path / "hub.sqlite3").exists()
    assert not (tmp_path / "demo-credentials.json").exists()


def test_a_rerun_reuses_credentials_uploads_and_the_release(
    small_ctdc: Path, tmp_path: Path
) -> None:
    first = demo(tmp_path, small_ctdc, free_port(), "--no-serve", synthetic_records=300)
    # The credentials are shown, and kept, before any data is loaded.
    first.wait_for("demo: credentials")
    assert not any("records stored" in line for line in first.lines)
    assert first.finish() == 0, first.lines[-20:]
    stored = tmp_path / "demo-credentials.json"
    credentials = json.loads(stored.read_text())
    assert len(credentials) == 7  # three partners, a researcher, three board members
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    # The portal's demo people: one per role, board members and the admin with a TOTP secret.
    people_file = tmp_path / "demo-people.json"
    people = json.loads(people_file.read_text())
    assert sorted(p["role"] for p in people) == [
        "admin",
        "board",
        "board",
        "board",
        "partner",
        "researcher",
    ]
    assert all((p["totp_secret"] is not None) == (p["role"] in {"board", "admin"}) for p in people)
    assert stat.S_IMODE(people_file.stat().st_mode) == 0o600
    shown_first = "\n".join(first.lines)
    assert "Portal:" in shown_first and all(p["password"] in shown_first for p in people)
    after_first = counts(tmp_path)
    assert after_first["oauth_client"] == 7 and after_first["upload"] == 3
    # The release candidate was built as a job and checked: about 490 records are too few for
    # the default policy's tables, so it is blocked (the full CTDC file passes and is published).
    candidates = after_first["candidates"]
    assert candidates == [("dp-synthetic", "candidate"), ("release", "blocked")], candidates
    assert any("failed checks" in line for line in first.lines)
    # Two case-management partners link their cases (encodings made by the toolkit's own
    # prepare), and partner A forgets one case a survivor asked to be forgotten.
    assert sum("linkage encodings made on the partner's side" in line for line in first.lines) == 2
    assert any("forgets one case on a survivor's request" in line for line in first.lines)
    # The query, the synthetic candidate and the release: three charges.
    assert after_first["ledger"] and after_first["ledger"][0][2] == 3  # type: ignore[index]

    second = demo(tmp_path, small_ctdc, free_port(), "--no-serve", synthetic_records=300)
    assert second.finish() == 0, second.lines[-20:]
    assert json.loads(stored.read_text()) == credentials
    assert json.loads(people_file.read_text()) == people  # the same people, passwords, secrets
    shown = "\n".join(second.lines)
    assert all(c["client_secret"] in shown for c in credentials)
    assert sum("already stored" in line for line in second.lines) == 3
    assert any("reusing the synthetic release candidate" in line for line in second.lines)
    assert any("reusing release candidate" in line for line in second.lines)
    assert any("forgot one case before" in line for line in second.lines)
    # No new credentials, no upload stored twice, no second charge to the ledger.
    assert counts(tmp_path) == after_first


def test_the_first_ctrl_c_stops_a_serving_demo(small_ctdc: Path, tmp_path: Path) -> None:
    port = free_port()
    run = demo(tmp_path, small_ctdc, port)
    run.wait_for("Press Ctrl-C to stop")
    assert not port_is_free(port)
    run.process.send_signal(signal.SIGINT)
    assert run.finish() == 130
    assert run.lines[-1] == "demo: stopped"
    assert port_is_free(port)


def test_the_first_ctrl_c_stops_the_synthesis_cleanly(small_ctdc: Path, tmp_path: Path) -> None:
    """A Ctrl-C inside OpenDP's callbacks was swallowed and then crashed the process (134)."""
    port = free_port()
    run = demo(tmp_path, small_ctdc, port, synthetic_records=300)
    run.wait_for("builds a DP synthetic release candidate")
    run.process.send_signal(signal.SIGINT)
    assert run.finish() == 130, run.lines[-20:]
    assert run.lines[-1] == "demo: stopped"
    assert port_is_free(port)
    # Stopped mid-build, the candidate is marked failed (its charge stands, as the ledger says);
    # stopped after it, it is whole. Never left half-built.
    statuses = {status for (_kind, status) in counts(tmp_path)["candidates"]}  # type: ignore[attr-defined]
    assert statuses <= {"failed", "candidate"}
