"""The hub's database without the web framework: the declarative base and the engine.

Services, jobs, migrations and the command line use these; :mod:`hub.db` wires them into the
Flask app (a session per request).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.orm import DeclarativeBase

# Stable constraint names, so Alembic migrations can refer to them on every database.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


#: How long a checkpoint after a withdrawal waits for readers of older snapshots.
CHECKPOINT_WAIT_MS = 2000


class Base(DeclarativeBase):
    """Base of every hub model."""

    metadata = MetaData(naming_convention=NAMING)


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite gets foreign keys, WAL, secure deletion and a busy timeout.

    ``secure_delete`` makes SQLite overwrite deleted content (a withdrawn upload's wrapped key
    and ciphertext) with zeros instead of leaving it in free pages; it is set on every
    connection because it is not stored in the database file.
    """
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA secure_delete=ON")
            if ":memory:" not in url:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

    return engine


def checkpoint(engine: Engine) -> bool:
    """Copy SQLite's write-ahead log into the database file and empty it; True if complete.

    Until a checkpoint, the log still holds the pages as they were before a withdrawal. Other
    databases keep no such log in a file the hub controls: a no-op there (True).
    """
    if engine.dialect.name != "sqlite":
        return True
    # A connection of its own, outside any transaction: a checkpoint cannot run inside one.
    # It waits for readers of older snapshots only briefly: a long query must not hold up a
    # withdrawal's answer, and the next checkpoint completes what this one could not.
    with engine.connect() as connection:
        waited = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
        connection.exec_driver_sql(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS}")
        try:
            busy, _log_frames, _copied = connection.exec_driver_sql(
                "PRAGMA wal_checkpoint(TRUNCATE)"
            ).one()
        finally:
            connection.exec_driver_sql(f"PRAGMA busy_timeout={int(waited or 0)}")
        connection.commit()
    return int(busy) == 0
