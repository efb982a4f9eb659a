"""The hub's database in the Flask app: an engine per app and a session per request.

The declarative base and the engine factory live in :mod:`hub.storage`, free of Flask.
"""

from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy.orm import Session, sessionmaker

from hub.storage import make_engine


def init_app(app: Flask) -> None:
    """Attach an engine and a session factory to ``app`` and close sessions after requests."""
    engine = make_engine(app.config["DATABASE_URL"])
    app.extensions["ctdhub.engine"] = engine
    app.extensions["ctdhub.sessionmaker"] = sessionmaker(engine, expire_on_commit=False)
    app.teardown_appcontext(_close_session)


def session_factory(app: Flask | None = None) -> sessionmaker[Session]:
    """Return the app's session factory (for CLI commands and jobs)."""
    factory: sessionmaker[Session] = (app or current_app).extensions["ctdhub.sessionmaker"]
    return factory


def get_session() -> Session:
    """Return this request's session, opening it on first use."""
    if "db_session" not in g:
        g.db_session = session_factory()()
    session: Session = g.db_session
    return session


def _close_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()
