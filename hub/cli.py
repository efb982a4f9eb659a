"""The ``ctdhub`` admin command: database, keys, accounts and serving."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from hub import create_app, crypto, migrate
from hub.cli_admin import admin
from hub.db import session_factory
from hub.errors import HubError


@click.group(cls=FlaskGroup, create_app=lambda: create_app(), add_default_commands=False)
def main() -> None:
    """Administer a ctdhub instance (settings come from config/ and CTDHUB_* variables)."""


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
@with_appcontext
def keys_rotate(key_id: str) -> None:
    """Add a new active key and re-wrap every data key under it (data is not touched)."""
    from hub.services.keys import rewrap_all

    if current_app.config["KEYRING"]:
        raise click.ClickException(
            "CTDHUB_KEYRING is set: add the key in your secret store, then run `ctdhub keys rewrap`"
        )
    try:
        ring = crypto.keyring().with_new_active_key(key_id)
    except (crypto.KeyringError, HubError) as error:
        raise click.ClickException(str(error)) from None
    # Write the new keyring first: old keys stay in it, so every batch stays readable
    # whether or not the re-wrap below completes.
    crypto.write_keyring(current_app, ring)
    with session_factory()() as session:
        count = rewrap_all(session, ring)
    click.echo(f"key {key_id} is active; re-wrapped {count} data key(s)")


@keys.command("rewrap")
@with_appcontext
def keys_rewrap() -> None:
    """Re-wrap every data key under the keyring's active key."""
    from hub.services.keys import rewrap_all

    try:
        ring = crypto.keyring()
    except HubError as error:
        raise click.ClickException(str(error)) from None
    with session_factory()() as session:
        count = rewrap_all(session, ring)
    click.echo(f"re-wrapped {count} data key(s)")


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--threads", default=4, show_default=True, type=int)
@with_appcontext
def serve(host: str, port: int, threads: int) -> None:
    """Serve the hub with waitress."""
    from hub.serving import make_server

    server = make_server(current_app._get_current_object(), host, port, threads)  # type: ignore[attr-defined]
    click.echo(f"ctdhub serving on http://{host}:{port} (docs at /docs)")
    server.run()


main.add_command(admin)


if __name__ == "__main__":
    main()
