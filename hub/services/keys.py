"""Key management: re-wrap every data key under the active key-encryption key, retire the rest.

Withdrawing an upload destroys its wrapped data key in the database, but a copy of the
database taken before (a backup, a replica, PostgreSQL's dead tuples before VACUUM) still holds
it, wrapped by a key-encryption key (KEK) of the keyring. Retiring that KEK makes every such copy
undecryptable: all live data keys are re-wrapped under a new KEK first, then every other KEK is
destroyed from the keyring.

Sealing and retirement are ordered by one row, ``keyring_state``. An upload's transaction holds
a shared lock on it from the check of its seal's key to its commit (:func:`hold_seal_key`), and
retirement an exclusive one while it re-wraps the last data keys and records the retired key ids
(:func:`retire_keys`). So an upload sealed under a key by a hub that had not yet read the new
keyring either commits first (and retirement re-wraps its data key) or sees the key retired and
is refused with a retryable 503: it is never accepted with a data key nobody can unwrap. On
PostgreSQL the shared lock is ``FOR SHARE``, so uploads do not wait for one another; SQLite
serialises every write transaction behind its one write lock, which the upload takes here.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from hub import audit
from hub.actors import Actor, authorize
from hub.crypto import Keyring, associated_data, rewrap
from hub.domain_errors import Conflict, ServiceUnavailable
from hub.models import KeyringState, RecordBatch, RetiredKey, Upload, utcnow

#: The seconds a refused upload is asked to wait: the next request reads the new keyring.
RETRY_AFTER_SECONDS = 1
_STATE_ID = 1


def _lock_keyring_state(session: Session, *, exclusive: bool) -> None:
    """Lock the keyring-state row until the session's transaction ends (shared or exclusive).

    The row is made first if it is missing (the migration writes it). The insert also starts
    SQLite's write transaction, whose lock is the one SQLite has: held until commit.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(
        insert(KeyringState)
        .values(id=_STATE_ID, retirements=0)
        .on_conflict_do_nothing(index_elements=["id"])
    )
    session.execute(
        select(KeyringState.id)
        .where(KeyringState.id == _STATE_ID)
        .with_for_update(read=not exclusive)
    )


def hold_seal_key(session: Session, key_id: str) -> None:
    """In the caller's transaction, check that ``key_id`` is not retired and keep it so.

    Call it after sealing and before committing: the lock taken here is held until the commit,
    so no retirement of ``key_id`` can slip in between (see the module's docstring).

    :raises hub.domain_errors.ServiceUnavailable: (503 with Retry-After) if ``key_id`` was
        retired meanwhile; the caller rolls back, so nothing is stored, and a retry is sealed
        under the new key.
    """
    _lock_keyring_state(session, exclusive=False)
    if session.scalar(select(RetiredKey.key_id).where(RetiredKey.key_id == key_id)) is not None:
        raise ServiceUnavailable(
            "the key-encryption key this upload was sealed under was retired while it was "
            "being stored; nothing was stored: send it again after the seconds in Retry-After",
            retry_after=RETRY_AFTER_SECONDS,
        )


def refuse_retired_id(session: Session, key_id: str) -> None:
    """Refuse to wrap under, or name a new key, ``key_id`` if it was retired.

    :raises hub.domain_errors.Conflict: if ``key_id`` was retired before.
    """
    if session.scalar(select(RetiredKey.key_id).where(RetiredKey.key_id == key_id)) is not None:
        raise Conflict(
            f"key id {key_id!r} names a retired key: nothing is wrapped under it again; "
            "make a new key with a new id"
        )


def _rewrap(session: Session, keyring: Keyring) -> int:
    """Re-wrap every live data key under another KEK of ``keyring``; no commit."""
    rows = session.execute(
        select(RecordBatch, Upload.organisation_id)
        .join(Upload, Upload.id == RecordBatch.upload_id)
        .where(
            RecordBatch.wrapped_key.is_not(None),
            RecordBatch.key_id != keyring.active,
            RecordBatch.key_id.in_(list(keyring.keys)),
        )
    ).all()
    for batch, organisation_id in rows:
        assert batch.wrapped_key is not None  # noqa: S101  (filtered in the query)
        batch.wrapped_key, batch.key_id = rewrap(
            keyring,
            batch.wrapped_key,
            batch.key_id,
            associated_data(batch.upload_id, organisation_id),
        )
    return len(rows)


def rewrap_all(session: Session, actor: Actor, keyring: Keyring) -> int:
    """Re-wrap every live data key not yet under the active KEK; return how many changed.

    The record ciphertexts are not touched. One transaction: all or none are re-wrapped.

    :param actor: who rotates keys (``admin:keys``), usually :data:`hub.actors.OPERATOR`.
    :raises hub.domain_errors.Conflict: if the active key was retired (a stale keyring).
    """
    authorize(actor, "admin:keys")
    try:
        # Like an upload, it wraps under the active key: a retirement must not slip in.
        _lock_keyring_state(session, exclusive=False)
        refuse_retired_id(session, keyring.active)
    except BaseException:
        session.rollback()
        raise
    count = _rewrap(session, keyring)
    audit.record(
        session,
        "admin:keys:rotate",
        actor=actor,
        request_id=None,
        details={"active_key_id": keyring.active, "rewrapped": count},
    )
    session.commit()
    return count


def unused_keys(session: Session, keyring: Keyring) -> list[str]:
    """Return the ids of the keyring's KEKs that wrap no live data key (ready to retire)."""
    used = set(
        session.scalars(
            select(RecordBatch.key_id).where(RecordBatch.wrapped_key.is_not(None)).distinct()
        )
    )
    return sorted(key_id for key_id in keyring.keys if key_id not in used)


def retire_keys(
    session: Session,
    actor: Actor,
    keyring: Keyring,
    destroy: Callable[[Keyring], object],
    *,
    rewrap_stragglers: bool = False,
) -> list[str]:
    """Record every KEK but the active one as retired, then destroy them; return their ids.

    Under the keyring-state row's exclusive lock, in one transaction: the data keys still under
    an older KEK are re-wrapped (if ``rewrap_stragglers``: uploads that committed after
    :func:`rewrap_all`), every live data key is checked to be under the active KEK, and the
    retired ids are written, so an upload still sealing under one of them is refused from then
    on. Only after that commit is ``destroy`` called. If it fails, the keys stay recorded as
    retired and every data key stays under the active KEK: running it again completes it.

    :param actor: who rotates keys (``admin:keys``), usually :data:`hub.actors.OPERATOR`.
    :param keyring: the keyring, its active key wrapping every live data key.
    :param destroy: writes the keyring that remains (only the active key) in place of the old.
    :param rewrap_stragglers: re-wrap data keys still under another KEK of ``keyring`` first;
        without it such a data key refuses the retirement.
    :raises hub.domain_errors.Conflict: if some live data key is not under the active KEK;
        nothing was retired or written.
    """
    authorize(actor, "admin:keys")
    retired = sorted(key_id for key_id in keyring.keys if key_id != keyring.active)
    try:
        _lock_keyring_state(session, exclusive=True)
        refuse_retired_id(session, keyring.active)
        stragglers = _rewrap(session, keyring) if rewrap_stragglers else 0
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
        now = utcnow()
        session.execute(
            update(KeyringState)
            .where(KeyringState.id == _STATE_ID)
            .values(retirements=KeyringState.retirements + 1, changed_at=now)
        )
        for key_id in retired:
            session.merge(RetiredKey(key_id=key_id, retired_at=now))
        # The event is written with the retirement it records; the keys' destruction follows.
        audit.record(
            session,
            "admin:keys:retire",
            actor=actor,
            request_id=None,
            details={"active_key_id": keyring.active, "retired": retired, "rewrapped": stragglers},
        )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    destroy(keyring.only_active())
    return retired
