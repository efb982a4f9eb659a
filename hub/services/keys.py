"""Key management: re-wrap every data key under the active key-encryption key, retire the rest.

Withdrawing an upload destroys its wrapped data key in the database, but a copy of the
database taken before (a backup, a replica, PostgreSQL's dead tuples before VACUUM) still holds
it, wrapped by a key-encryption key (KEK) of the keyring. Retiring that KEK makes every such copy
undecryptable: all live data keys are re-wrapped under a new KEK first, then every other KEK is
destroyed from the keyring.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub import audit
from hub.actors import Actor, authorize
from hub.crypto import Keyring, associated_data, rewrap
from hub.domain_errors import Conflict
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


def unused_keys(session: Session, keyring: Keyring) -> list[str]:
    """Return the ids of the keyring's KEKs that wrap no live data key (ready to retire)."""
    used = set(
        session.scalars(
            select(RecordBatch.key_id).where(RecordBatch.wrapped_key.is_not(None)).distinct()
        )
    )
    return sorted(key_id for key_id in keyring.keys if key_id not in used)


def retire_keys(
    session: Session, actor: Actor, keyring: Keyring, destroy: Callable[[Keyring], object]
) -> list[str]:
    """Destroy every KEK but the active one; return the retired ids.

    Refused while a live data key is still wrapped by another KEK (it would be lost with it).

    :param actor: who rotates keys (``admin:keys``), usually :data:`hub.actors.OPERATOR`.
    :param keyring: the keyring, its active key wrapping every live data key.
    :param destroy: writes the keyring that remains (only the active key) in place of the old.
    :raises hub.domain_errors.Conflict: if some live data key is not under the active KEK.
    """
    authorize(actor, "admin:keys")
    stale = session.scalar(
        select(func.count())
        .select_from(RecordBatch)
        .where(RecordBatch.wrapped_key.is_not(None), RecordBatch.key_id != keyring.active)
    )
    if stale:
        raise Conflict(
            f"{stale} live data key(s) are wrapped by a key other than {keyring.active!r}; "
            "run `ctdhub keys rewrap` first, nothing was retired"
        )
    retired = sorted(key_id for key_id in keyring.keys if key_id != keyring.active)
    session.rollback()  # end the read before the keyring changes
    destroy(keyring.only_active())
    audit.record(
        session,
        "admin:keys:retire",
        actor=actor,
        request_id=None,
        details={"active_key_id": keyring.active, "retired": retired},
    )
    session.commit()
    return retired
