"""The analysis snapshot: every accepted, not withdrawn record, as one data frame.

Disclosure control, queries and releases read this; it is decrypted in memory only and cached
by the exact set of batches it was built from, so a new or withdrawn upload makes a new one.
Each record carries a hub-internal person key (:data:`disclosure_control.person.PERSON_COLUMN`)
from record linkage of the partners' linkage encodings (:mod:`hub.services.linkage`), made
with the snapshot and cached with it, so the persons are linked again whenever the batches
change; the encodings themselves go no further than this module.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contributors.linkage import ENCODING_COLUMN
from contributors.normalise import validate_records
from contributors.schema import load_schema
from disclosure_control.person import PERSON_COLUMN
from hub.crypto import Keyring
from hub.models import RecordBatch, Upload
from hub.services.linkage import link_persons, people_in_several_sources
from hub.services.uploads import open_record_batch


@dataclass(frozen=True)
class Snapshot:
    """Records of a fixed set of batches; ``snapshot_id`` names that set.

    ``people_in_several_sources`` is the exact number of persons (by the person key) with
    records of more than one partner: hub-internal, released only as a DP count.
    """

    snapshot_id: str
    batch_ids: tuple[str, ...]
    records: pd.DataFrame
    people_in_several_sources: int = 0


class SnapshotCache:
    """A small LRU of snapshots keyed by their batch set, safe across request threads."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, Snapshot] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, snapshot_id: str) -> Snapshot | None:
        """Return a cached snapshot and mark it recently used."""
        with self._lock:
            item = self._items.get(snapshot_id)
            if item is not None:
                self._items.move_to_end(snapshot_id)
            return item

    def put(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot``, evicting the least recently used beyond the size."""
        if self.size == 0:
            return
        with self._lock:
            self._items[snapshot.snapshot_id] = snapshot
            self._items.move_to_end(snapshot.snapshot_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def snapshot_id(batch_ids: tuple[str, ...]) -> str:
    """Name a set of batches (order-independent).

    >>> snapshot_id(("b", "a")) == snapshot_id(("a", "b"))
    True
    """
    return hashlib.sha256("\n".join(sorted(batch_ids)).encode()).hexdigest()


def live_batches(session: Session) -> list[tuple[str, str]]:
    """Return (batch id, organisation id) of every live batch, oldest upload first."""
    rows = session.execute(
        select(RecordBatch.id, Upload.organisation_id)
        .join(Upload, Upload.id == RecordBatch.upload_id)
        .where(Upload.withdrawn_at.is_(None), RecordBatch.wrapped_key.is_not(None))
        .order_by(Upload.created_at, Upload.id)
    ).all()
    return [(row[0], row[1]) for row in rows]


def live_record_count(session: Session) -> int:
    """Return how many records the live batches hold, without decrypting any of them."""
    total = session.scalar(
        select(func.coalesce(func.sum(RecordBatch.row_count), 0))
        .join(Upload, Upload.id == RecordBatch.upload_id)
        .where(Upload.withdrawn_at.is_(None), RecordBatch.wrapped_key.is_not(None))
    )
    return int(total or 0)


def live_record_parts(
    session: Session, keyring: Keyring, rows: list[tuple[str, str]]
) -> Iterator[pd.DataFrame]:
    """Decrypt the given live batches one at a time, in order (for a lazily scanned snapshot).

    Each part carries its records' person keys, linked over the whole snapshot as
    :func:`analysis_snapshot` links them: a first pass reads only what linkage needs (the
    encodings, about 128 bytes a record), a second yields the records batch by batch.

    :param rows: (batch id, organisation id) pairs, as :func:`live_batches` returns them
    """
    (case_field,) = load_schema().by_role("pseudonym")
    encodings: list[bytes | None] = []
    sources: list[str] = []
    cases: list[tuple[str, str] | None] = []
    for batch_id, organisation_id in rows:
        frame = open_record_batch(keyring, session.get_one(RecordBatch, batch_id), organisation_id)
        _linkage_inputs(frame, batch_id, organisation_id, case_field, encodings, sources, cases)
        del frame
    keys = link_persons(encodings, sources, cases)
    del encodings
    start = 0
    for batch_id, organisation_id in rows:
        frame = open_record_batch(keyring, session.get_one(RecordBatch, batch_id), organisation_id)
        if ENCODING_COLUMN in frame.columns:
            del frame[ENCODING_COLUMN]
        part_keys = keys[start : start + len(frame)]
        frame[PERSON_COLUMN] = pd.Series(part_keys, index=frame.index, dtype="int64")
        start += len(frame)
        yield frame


def _linkage_inputs(
    frame: pd.DataFrame,
    batch_id: str,
    organisation_id: str,
    case_field: str,
    encodings: list[bytes | None],
    sources: list[str],
    cases: list[tuple[str, str] | None],
) -> None:
    """Take a decrypted batch's encodings off it and append what linkage reads of each record."""
    if ENCODING_COLUMN in frame.columns:
        encodings.extend(frame.pop(ENCODING_COLUMN).tolist())
    else:
        encodings.extend([None] * len(frame))
    sources.extend([batch_id] * len(frame))
    cases.extend(
        None if pd.isna(case) else (organisation_id, str(case)) for case in frame[case_field]
    )


def live_snapshot_id(session: Session) -> str:
    """Name the current set of live record batches without decrypting any of them."""
    return snapshot_id(tuple(batch_id for batch_id, _ in live_batches(session)))


def analysis_snapshot(session: Session, keyring: Keyring, cache: SnapshotCache) -> Snapshot:
    """Return all live records as one frame: the record schema's columns and the person key."""
    rows = live_batches(session)
    batch_ids = tuple(row[0] for row in rows)
    key = snapshot_id(batch_ids)
    cached = cache.get(key)
    if cached is not None:
        return cached
    frames = []
    encodings: list[bytes | None] = []
    sources: list[str] = []
    cases: list[tuple[str, str] | None] = []
    partners: list[str] = []
    (case_field,) = load_schema().by_role("pseudonym")
    for batch_id, organisation_id in rows:
        batch = session.get_one(RecordBatch, batch_id)
        frame = open_record_batch(keyring, batch, organisation_id)
        _linkage_inputs(frame, batch_id, organisation_id, case_field, encodings, sources, cases)
        partners.extend([organisation_id] * len(frame))
        frames.append(frame)
    if frames:
        records = pd.concat(frames, ignore_index=True)
    else:
        records = _empty_frame()
    keys = link_persons(encodings, sources, cases)
    records[PERSON_COLUMN] = pd.Series(keys, index=records.index, dtype="int64")
    several = people_in_several_sources(keys, partners)
    snapshot = Snapshot(
        snapshot_id=key, batch_ids=batch_ids, records=records, people_in_several_sources=several
    )
    cache.put(snapshot)
    return snapshot


def _empty_frame() -> pd.DataFrame:
    # Typed by the normaliser itself, so an empty snapshot has exactly a batch's dtypes.
    schema = load_schema()
    strings = pd.DataFrame({name: pd.Series([], dtype="string") for name in schema.names})
    return validate_records(strings, schema).records
