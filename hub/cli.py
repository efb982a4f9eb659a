"""The ``ctdhub`` admin command: database, keys, accounts, releases and serving."""

from __future__ import annotations

import os
import socket
import sys
from fractions import Fraction
from pathlib import Path

import click
from apiflask import APIFlask
from flask import current_app
from flask.cli import ScriptInfo, with_appcontext

from hub import __version__, create_app, crypto, migrate
from hub.actors import OPERATOR
from hub.cli_admin import admin
from hub.db import session_factory
from hub.domain_errors import HubError
from hub.models import Job, ReleaseCandidate


def load_hub() -> APIFlask:
    """Create the hub for a command; a bad setting is one line, never a traceback."""
    from hub.settings import SettingsError

    try:
        return create_app()
    except SettingsError as error:
        raise click.ClickException(str(error)) from None


# A plain click group, not Flask's: `ctdhub --help` lists ctdhub's commands (Flask's group would
# add --app, --env-file and --debug, which mean nothing here) and `--version` is ctdhub's.
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ctdhub", message="%(prog)s %(version)s")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Administer a ctdhub hub: its database, keys, accounts, releases, and serving it.

    Settings come from config/settings.toml and CTDHUB_<NAME> environment variables
    (README: "Running a hub"). Run it as .venv/bin/ctdhub, or activate the environment first
    with `source .venv/bin/activate`.
    """
    # Commands marked @with_appcontext build the hub from this on first use, so `--help` and
    # `--version` never need a database or valid settings. A caller's own ScriptInfo (Flask's
    # test runner passes one for its app) is kept.
    if ctx.obj is None:
        ctx.obj = ScriptInfo(create_app=load_hub, set_debug_flag=False)


@main.group()
def db() -> None:
    """Manage the database schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@with_appcontext
def db_upgrade(revision: str) -> None:
    """Upgrade the database schema."""
    migrate.upgrade(current_app.config["DATABASE_URL"], revision)
    click.echo(f"database at revision {migrate.current(current_app.config['DATABASE_URL'])}")


@db.command("current")
@with_appcontext
def db_current() -> None:
    """Print the schema revision of the database."""
    click.echo(migrate.current(current_app.config["DATABASE_URL"]) or "(not initialised)")


@main.group()
def keys() -> None:
    """Manage key-encryption keys."""


@keys.command("init")
@with_appcontext
def keys_init() -> None:
    """Create the keyring file with a fresh key, if there is none."""
    if current_app.config["KEYRING"]:
        raise click.ClickException("CTDHUB_KEYRING is set: the keyring is managed outside the hub")
    path = crypto.keyring_path(current_app)
    if path.exists():
        click.echo(f"keyring already exists at {path}")
        return
    crypto.write_keyring(current_app, crypto.Keyring.generate())
    click.echo(f"created keyring at {path} (owner-only); back it up apart from the database")


@keys.command("rotate")
@click.option("--key-id", required=True, help="Id of the new key-encryption key.")
@click.option(
    "--retire",
    is_flag=True,
    help=(
        "Then destroy every other key-encryption key: uploads withdrawn before, and every copy "
        "of the database made before (backups, replicas, dead rows), can never be decrypted "
        "again with the keyring that remains. Back the database up again afterwards."
    ),
)
@with_appcontext
def keys_rotate(key_id: str, retire: bool) -> None:
    """Add a new active key and re-wrap every data key under it (data is not touched).

    Withdrawing an upload destroys its data key in the database; with --retire the key that
    wrapped it in any older copy is destroyed too. Run it after withdrawals. A running hub
    reads the new keyring on its next request; an upload already sealed under an old key
    either commits before the retirement (its data key is re-wrapped) or is refused with a
    retryable 503, never stored with a key that is gone.
    """
    from hub.services.keys import refuse_retired_id, retire_keys, rewrap_all

    if current_app.config["KEYRING"]:
        raise click.ClickException(
            "CTDHUB_KEYRING is set: add the key in your secret store and make it active, then "
            "run `ctdhub keys rewrap` (with --retire to retire the others)"
        )
    try:
        ring = crypto.keyring(current_app).with_new_active_key(key_id)
        with session_factory()() as session:
            refuse_retired_id(session, key_id)
    except (crypto.KeyringError, HubError) as error:
        raise click.ClickException(str(error)) from None
    # Write the new keyring first: old keys stay in it, so every batch stays readable
    # whether or not the re-wrap below completes.
    crypto.write_keyring(current_app, ring)
    with session_factory()() as session:
        count = rewrap_all(session, OPERATOR, ring)
        click.echo(f"key {key_id} is active; re-wrapped {count} data key(s)")
        if not retire:
            return
        try:
            retired = retire_keys(
                session,
                OPERATOR,
                ring,
                lambda kept: crypto.write_keyring(current_app, kept),
                rewrap_stragglers=True,  # uploads sealed under an old key since the re-wrap
            )
        except HubError as error:
            raise click.ClickException(error.detail) from None
    click.echo(
        f"retired and destroyed key(s) {', '.join(retired) or '(none)'}: withdrawn uploads and "
        "older copies of the database can no longer be decrypted; back the database up again"
    )


@keys.command("rewrap")
@click.option(
    "--retire",
    is_flag=True,
    help=(
        "Then record every other key as retired: from then on nothing sealed under one is "
        "stored (a hub still holding it answers uploads with a retryable 503). With "
        "CTDHUB_KEYRING, delete those keys from the secret store afterwards; with a keyring "
        "file they are destroyed from it."
    ),
)
@with_appcontext
def keys_rewrap(retire: bool) -> None:
    """Re-wrap every data key under the keyring's active key; name the keys left unused.

    With CTDHUB_KEYRING (a keyring kept in a secret store), retire a key by running this with
    --retire, then deleting the keys it names from the secret store.
    """
    from hub.services.keys import retire_keys, rewrap_all, unused_keys

    try:
        ring = crypto.keyring(current_app)
    except HubError as error:
        raise click.ClickException(str(error)) from None
    in_store = bool(current_app.config["KEYRING"])
    with session_factory()() as session:
        try:
            count = rewrap_all(session, OPERATOR, ring)
            click.echo(f"re-wrapped {count} data key(s)")
            if retire:
                retired = retire_keys(
                    session,
                    OPERATOR,
                    ring,
                    (lambda _kept: None)
                    if in_store
                    else (lambda kept: crypto.write_keyring(current_app, kept)),
                    rewrap_stragglers=True,
                )
                click.echo(
                    f"retired key(s) {', '.join(retired) or '(none)'}: "
                    + (
                        "now delete them from your secret store"
                        if in_store
                        else "destroyed from the keyring file; back the database up again"
                    )
                )
                return
        except HubError as error:
            raise click.ClickException(error.detail) from None
        unused = [key_id for key_id in unused_keys(session, ring) if key_id != ring.active]
    if unused:
        click.echo(
            f"key(s) {', '.join(unused)} wrap no live data key: delete them from the keyring "
            "to retire them (older copies of the database then stay sealed for good)"
        )


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", type=int, help="Worker processes [default: SERVER_WORKERS]")
@click.option("--threads", type=int, help="Threads per worker [default: SERVER_THREADS]")
@with_appcontext
def serve(host: str, port: int, workers: int | None, threads: int | None) -> None:
    """Serve the hub with gunicorn (bodies are streamed, never buffered before the token)."""
    from hub.serving import serve as run

    # Bind once before gunicorn starts, so a taken port is one clear line, not a retry loop.
    try:
        socket.create_server((host, port)).close()
    except OSError as error:
        raise click.ClickException(
            f"cannot serve on {host}:{port} ({error.strerror}); choose a free port with --port"
        ) from None
    config = current_app.config
    master = os.getpid()
    # QUEUE_CONSUMER=in-process: this command also runs queued jobs (single machine), with
    # `ctdhub worker` as a child of gunicorn's master, never as threads of the master that
    # forks the workers (hub.serving.HubArbiter says why).
    consumer = None
    if config["QUEUE_CONSUMER"] == "in-process":
        consumer = [sys.executable, "-m", "hub.cli", "worker"]
    try:
        run(
            create_app,
            host,
            port,
            workers or config["SERVER_WORKERS"],
            threads or config["SERVER_THREADS"],
            # Said once the port is really bound, so whoever waits for the line can connect.
            on_ready=lambda: click.echo(
                f"ctdhub serving on http://{host}:{port} (docs at /docs); Ctrl-C stops it"
            ),
            consumer=consumer,
        )
    except SystemExit as stop:
        # Gunicorn ends its master and its workers (forked from here) by SystemExit.
        if os.getpid() != master or stop.code not in (0, None):
            raise
    click.echo("ctdhub stopped")


@main.command("budget")
@with_appcontext
def budget() -> None:
    """Show the dataset's privacy ledger: cap, spent and remaining, as exact decimals."""
    from hub.services import ledger, policies

    with session_factory()() as session:
        caps = policies.budget_policy(
            policies.active_policy(session, current_app.config), current_app.config
        )
        shown = ledger.dataset_budget(session, OPERATOR, caps)
    state = shown["dataset_ledger"]
    click.echo(f"dataset {shown['dataset']}: {state['charges']} charge(s)")
    for name in ("allowance", "spent", "remaining"):
        amount = state[name]
        click.echo(
            f"  {name:<9}  rho {amount['rho_exact']}  key-selection delta "
            f"{amount['key_selection_delta_exact']}  (epsilon {amount['epsilon']:.4g} at delta "
            f"{amount['delta_exact']})"
        )


@main.group()
def release() -> None:
    """Build and inspect release candidates (for the governance board; nothing is published)."""


def _candidate_line(row: ReleaseCandidate) -> str:
    epsilon = (row.spend or {}).get("epsilon")
    shown = (
        f"epsilon {epsilon:.3g}" if epsilon is not None else f"rho {float(Fraction(row.rho)):.4g}"
    )
    return f"{row.id}  {row.kind}  {row.status:<9}  {shown}  snapshot {row.snapshot_id[:12]}"


@release.command("synthetic")
@click.option("--records", required=True, type=int, help="Synthetic records to draw.")
@click.option("--epsilon", type=float, help="Privacy loss as epsilon at --delta.")
@click.option(
    "--rho", type=float, help="Privacy loss in zero-concentrated DP (instead of epsilon)."
)
@click.option("--delta", default=1e-6, show_default=True, type=float)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--holdout",
    default=0.1,
    show_default=True,
    type=float,
    help="Share held out for the risk report.",
)
@click.option(
    "--column", "columns", multiple=True, help="A column to synthesise (repeat); all by default."
)
@click.option("--queue", is_flag=True, help="Only queue the build for a `ctdhub worker`.")
@with_appcontext
def release_synthetic(
    records: int,
    epsilon: float | None,
    rho: float | None,
    delta: float,
    seed: int,
    holdout: float,
    columns: tuple[str, ...],
    queue: bool,
) -> None:
    """Build a DP synthetic release candidate, charged to the dataset's privacy ledger.

    The build is a job: by default this command runs it here and waits; with --queue it only
    queues it for a `ctdhub worker` and prints the job's id.
    """
    from hub import jobs
    from hub.services import jobs as job_service
    from hub.services import releases

    request = releases.SyntheticRequest(
        records=records, epsilon=epsilon, rho=rho, delta=delta, seed=seed, holdout=holdout,
        columns=columns,
    )  # fmt: skip
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        with session_factory()() as session:
            job = releases.submit_synthetic(
                session, OPERATOR, request, queue=jobs.queue(app) if queue else None
            )
    except HubError as error:
        raise click.ClickException(str(error)) from None
    if queue:
        click.echo(f"queued job {job.id}; follow it at /v1/jobs/{job.id}")
        return
    from tqdm import tqdm

    bar = tqdm(total=0, unit="step", disable=None)

    def progress(stage: str, done: int, total: int) -> None:
        bar.set_description(stage)
        bar.total = total
        bar.update(done - bar.n)

    try:
        state = jobs.run_job(app, job.id, observe=progress)
    finally:
        bar.close()
    with session_factory()() as session:
        row = session.get_one(Job, job.id)
        if state != job_service.SUCCEEDED or row.result is None:
            if (row.error or "").startswith("files-not-written"):
                # The candidate is recorded as failed and its charge stands (records measured).
                raise click.ClickException(
                    f"job {job.id} failed: the candidate's files could not be written ({row.error})"
                )
            raise click.ClickException(f"job {job.id} {row.state}: {row.error}")
        candidate = session.get_one(ReleaseCandidate, row.result["release_candidate"])
        click.echo(_candidate_line(candidate))
    click.echo(f"files in {releases_directory() / candidate.id}")


@release.command("list")
@with_appcontext
def release_list() -> None:
    """List release candidates, newest first."""
    from hub.services import releases

    with session_factory()() as session:
        for row in releases.list_candidates(session, OPERATOR):
            click.echo(_candidate_line(row))


@release.command("redraw")
@click.argument("candidate_id")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@with_appcontext
def release_redraw(candidate_id: str, out: Path) -> None:
    """Draw a synthetic candidate's table again from its stored model and seed (no new spend)."""
    from hub.services import releases

    try:
        with session_factory()() as session:
            table = releases.redraw(session, OPERATOR, candidate_id)
    except HubError as error:
        raise click.ClickException(str(error)) from None
    table.to_csv(out, index=False)
    click.echo(f"wrote {len(table)} records to {out}")


def releases_directory() -> Path:
    """Return where release candidates' files are kept (the RELEASE_DIRECTORY setting)."""
    return Path(current_app.instance_path) / str(current_app.config["RELEASE_DIRECTORY"])


@main.command("worker")
@click.option("--workers", default=1, show_default=True, type=int, help="Jobs run at once.")
@with_appcontext
def worker(workers: int) -> None:
    """Run queued jobs (Huey's consumer), reaping jobs whose worker died, until stopped."""
    from hub import jobs

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    reaper = jobs.Reaper(app).start()
    click.echo(f"ctdhub worker: {workers} thread(s) on queue {app.config['QUEUE_NAME']!r}")
    try:
        jobs.consumer(app, workers).run()
    finally:
        reaper.stop()


@main.group()
def transparency() -> None:
    """The public transparency log of releases, policy versions and privacy spends."""


@transparency.command("verify")
@with_appcontext
def transparency_verify() -> None:
    """Check the log's hash chain and every entry against the hub's records; exit 1 if broken."""
    from hub.services import transparency as log

    with session_factory()() as session:
        problems = log.verify(session)
        count = len(log.entries(session))
    if problems:
        for problem in problems:
            click.echo(problem, err=True)
        raise click.ClickException(
            f"the transparency log was rewritten: {len(problems)} problem(s)"
        )
    click.echo(f"transparency log: {count} entries, chain intact, every entry matches the records")


main.add_command(admin)


if __name__ == "__main__":
    main()
