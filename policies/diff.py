"""A readable difference between two policy versions, for the board.

Each change is one line, ``key.path: old -> new``. Lists of named items (tables) are matched by
name, so a table moved in the list is no change and a changed spend reads
``release.dp_tables[counts_by_year].rho: 0.005 -> 0.01``; lists of field names show what was
added and removed. A change to a rho shows epsilon beside it, at the policy's display delta.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from disclosure_control.dp.accounting import rho_to_epsilon
from policies.document import Policy

__all__ = ["Change", "diff_policies", "format_diff"]

_ABSENT = object()


@dataclass(frozen=True)
class Change:
    """One difference between two versions.

    :param path: the key path (named list items in brackets by name).
    :param old: the old value (``None`` for a key that was added).
    :param new: the new value (``None`` for a key that was removed).
    :param note: what a reader needs beside the values (items added and removed, epsilon).
    """

    path: str
    old: Any
    new: Any
    note: str = ""

    def __str__(self) -> str:
        line = f"{self.path}: {_show(self.old)} -> {_show(self.new)}"
        return f"{line} ({self.note})" if self.note else line


def _show(value: Any) -> str:
    if value is _ABSENT or value is None:
        return "(none)"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _named(items: list[Any]) -> dict[str, Any] | None:
    """Return the items by name when every one is a mapping with a distinct ``name``."""
    if not items:
        return {}
    if not all(isinstance(i, Mapping) and isinstance(i.get("name"), str) for i in items):
        return None
    by_name = {i["name"]: i for i in items}
    return by_name if len(by_name) == len(items) else None


def _sectioned(value: Any) -> bool:
    """Return whether a value is shown key by key: a mapping, or a list of named items."""
    return isinstance(value, Mapping) or (isinstance(value, list) and bool(_named(value)))


def _walk(path: str, old: Any, new: Any, out: list[Change], delta: float) -> None:
    if old == new:
        return
    # A section or list added or removed as a whole is shown key by key, like any change.
    if old is _ABSENT and _sectioned(new):
        old = {} if isinstance(new, Mapping) else []
    if new is _ABSENT and _sectioned(old):
        new = {} if isinstance(old, Mapping) else []
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in [*old, *(k for k in new if k not in old)]:
            sub = f"{path}.{key}" if path else str(key)
            _walk(sub, old.get(key, _ABSENT), new.get(key, _ABSENT), out, delta)
        return
    if isinstance(old, list) and isinstance(new, list):
        old_named, new_named = _named(old), _named(new)
        if old_named is not None and new_named is not None:
            for name in [*old_named, *(n for n in new_named if n not in old_named)]:
                _walk(
                    f"{path}[{name}]",
                    old_named.get(name, _ABSENT),
                    new_named.get(name, _ABSENT),
                    out,
                    delta,
                )
            return
        if all(isinstance(v, str) for v in [*old, *new]):
            added = [v for v in new if v not in old]
            removed = [v for v in old if v not in new]
            parts = []
            if added:
                parts.append("added " + ", ".join(added))
            if removed:
                parts.append("removed " + ", ".join(removed))
            out.append(Change(path, old, new, "; ".join(parts) or "reordered"))
            return
    note = ""
    if path.endswith("rho") and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in (old, new)
    ):
        note = (
            f"epsilon {rho_to_epsilon(float(old), delta):.4g} -> "
            f"{rho_to_epsilon(float(new), delta):.4g} at delta {delta:g}"
        )
    out.append(Change(path, None if old is _ABSENT else old, None if new is _ABSENT else new, note))


def diff_policies(old: Policy | None, new: Policy) -> list[Change]:
    """Return what changes from ``old`` (the active version, if any) to ``new``.

    Defaults count as stated: a key left out and its default written out are the same policy.
    The ``version`` is left out (it always changes).

    :param old: the active policy, or ``None`` when there is none (every key is then added).
    :param new: the proposed policy.
    """
    before = {} if old is None else old.to_json()
    after = new.to_json()
    before.pop("version", None)
    after.pop("version", None)
    changes: list[Change] = []
    _walk("", before, after, changes, new.privacy.display_delta)
    return changes


def format_diff(changes: list[Change]) -> str:
    """Return the changes as text, one per line (``no changes`` when there are none)."""
    return "\n".join(str(c) for c in changes) if changes else "no changes"
