"""Public, content-free endpoints: health."""

from __future__ import annotations

from apiflask import APIBlueprint
from sqlalchemy import text

from hub import __version__
from hub.db import get_session

bp = APIBlueprint("meta", __name__, tag="Meta")


@bp.get("/health")
@bp.doc(summary="Report that the hub and its database answer")
def health() -> dict[str, str]:
    """Answer 200 when the database answers; holds no data."""
    get_session().execute(text("SELECT 1"))
    return {"status": "ok", "version": __version__}
