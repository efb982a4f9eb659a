"""The person as the privacy unit: the column that says which records belong to one person.

One survivor may be recorded several times, by one partner or by several. Inside the hub, record
linkage gives every record of the analysis snapshot a person key in :data:`PERSON_COLUMN`; two
records with the same key are taken to be the same person, and a record that was not linked has
a key of its own. The column is a hub-internal integer: it is never published, never returned by
an API and never written to a release file. A frame without the column means one person per
record (the privacy unit of a case record).
"""

from __future__ import annotations

__all__ = ["PERSON_COLUMN"]

PERSON_COLUMN = "_person"
