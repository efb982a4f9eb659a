"""Run Alembic migrations: the only way the hub's schema changes."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    """Return an Alembic configuration for the database at ``url``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation would choke on '%' in URL-encoded passwords.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision``.

    At the head, the transparency log then gains, once, the entries a log written before they
    were made in their records' transactions lacks (:func:`hub.services.transparency.backfill`;
    a no-op on a log that lacks none).
    """
    command.upgrade(alembic_config(url), revision)
    if revision == "head":
        from sqlalchemy.orm import Session

        from hub.services import transparency
        from hub.storage import make_engine

        engine = make_engine(url)
        try:
            with Session(engine) as session:
                transparency.backfill(session)
        finally:
            engine.dispose()


def downgrade(url: str, revision: str) -> None:
    """Downgrade the database at ``url`` to ``revision``."""
    command.downgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    """Return the revision the database at ``url`` is at, or None if it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    from hub.storage import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
