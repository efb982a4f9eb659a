"""Key management: re-wrap every data key under the active key-encryption key."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub import audit
from hub.actors import Actor, authorize
from hub.crypto import Keyring, associated_data, rewrap
from hub.models import RecordBatch, Upload


def rewrap_all(session: Session, actor: Actor, keyring: Keyring) -> int:
    """Re-wrap every live data key not yet under the active KEK; return how many changed.

    The record ciphertexts are not touched. One transaction: all or none are re-wrapped.

    :param actor: who rotates keys (``admin:keys``), usually :data:`hub.actors.OPERATOR`.
    """
    authorize(actor, "admin:keys")
    rows = session.execute(
        select(RecordBatch, Upload.organisation_id)
        .join(Upload, Upload.id == RecordBatch.upload_id)
        .where(RecordBatch.wrapped_key.is_not(None), RecordBatch.key_id != keyring.active)
    ).all()
    for batch, organisation_id in rows:
        assert batch.wrapped_key is not None  # noqa: S101  (filtered in the query)
        batch.wrapped_key, batch.key_id = rewrap(
            keyring,
            batch.wrapped_key,
            batch.key_id,
            associated_data(batch.upload_id, organisation_id),
        )
    audit.record(
        session,
        "admin:keys:rotate",
        actor=actor,
        request_id=None,
        details={"active_key_id": keyring.active, "rewrapped": len(rows)},
    )
    session.commit()
    return len(rows)
