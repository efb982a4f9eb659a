"""Release policies in the hub: the stored versions, the active one, and the board's review.

The policy document and the board's rules are pure (:mod:`policies`); this module stores the
versions (:class:`hub.models.PolicyVersion`) and tells every other service which version is
active. The first version is adopted from ``config/policies/default.yaml`` the first time any
service asks, with the settings' DP caps (``DP_DATASET_*_CAP``, ``DP_RESEARCHER_*_ALLOWANCE``,
``DP_DISPLAY_DELTA``) written into its privacy section: those settings are only the defaults
of the first policy; from then on the board's versions set the caps.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from contributors.schema import load_schema
from hub import audit
from hub.actors import OPERATOR
from hub.domain_errors import ServiceUnavailable
from hub.models import PolicyVersion, new_id, utcnow
from policies import Policy, PolicyError, PolicyState, RecordFields, load_policy

#: The document the first policy version is made from.
DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "config" / "policies" / "default.yaml"

#: Where in a policy each DP setting goes when the first version is adopted.
_SETTINGS_IN_POLICY: dict[tuple[str, ...], str] = {
    ("privacy", "display_delta"): "DP_DISPLAY_DELTA",
    ("privacy", "dataset_cap", "rho"): "DP_DATASET_RHO_CAP",
    ("privacy", "dataset_cap", "delta"): "DP_DATASET_DELTA_CAP",
    ("privacy", "researcher_allowance", "rho"): "DP_RESEARCHER_RHO_ALLOWANCE",
    ("privacy", "researcher_allowance", "delta"): "DP_RESEARCHER_DELTA_ALLOWANCE",
}


@lru_cache(maxsize=1)
def record_fields() -> RecordFields:
    """Return what a policy may name: the record schema's fields and its derived attributes."""
    return RecordFields.from_table_schema(load_schema().as_dict())


@dataclass(frozen=True)
class ActivePolicy:
    """The release policy in force.

    :param version: its version number.
    :param policy: the validated document.
    :param digest: the SHA-256 of its YAML text, as stored.
    :param id: the id of its :class:`~hub.models.PolicyVersion` row.
    """

    version: int
    policy: Policy
    digest: str
    id: str


def digest(text: str) -> str:
    """Return the SHA-256 of a policy document's text (UTF-8), in hex.

    >>> digest("format: 1\\n")[:12]
    '1f7b96350b26'
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@lru_cache(maxsize=8)
def _parsed(text: str, sha256: str) -> Policy:
    """Validate a stored document once per text (a stored version never changes)."""
    return load_policy(text, record_fields())


def parse_stored(row: PolicyVersion) -> Policy:
    """Return the policy a stored version holds, after checking its digest.

    :raises hub.domain_errors.ServiceUnavailable: if the stored text no longer matches its
        digest, or no longer validates (the record schema changed under it).
    """
    if digest(row.document) != row.sha256:
        raise ServiceUnavailable(
            f"release policy version {row.version} does not match its stored SHA-256; the "
            "policy table was changed outside the hub"
        )
    try:
        return _parsed(row.document, row.sha256)
    except PolicyError as error:
        raise ServiceUnavailable(
            f"release policy version {row.version} no longer validates against the record "
            f"schema: {error}"
        ) from None


def _yaml_float(text: str) -> str:
    """Write a DP setting as a YAML 1.2 float the policy reads (the nearest double).

    >>> _yaml_float("1"), _yaml_float("1e-7"), _yaml_float("0.25")
    ('1.0', '1e-07', '0.25')
    """
    return repr(float(Fraction(str(text).strip())))


def default_document(config: Mapping[str, Any]) -> str:
    """Return the first policy's YAML text: the default document with the settings' DP caps.

    Only the five numbers are replaced, where they stand in the text, so the document keeps its
    comments and layout. A setting that no double holds exactly (more than 17 significant
    digits) becomes the nearest double, as the policy document stores its numbers.

    :param config: the hub's settings (the ``DP_*`` ones are read).
    :raises ValueError: if the default document lacks one of the five keys.
    """
    text = DEFAULT_POLICY.read_text("utf-8")
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    spans: list[tuple[int, int, str]] = []
    for path, setting in _SETTINGS_IN_POLICY.items():
        node = root
        for key in path:
            if not isinstance(node, yaml.MappingNode):
                node = None
                break
            node = next((v for k, v in node.value if k.value == key), None)
        if not isinstance(node, yaml.ScalarNode):
            raise ValueError(f"{DEFAULT_POLICY} has no {'.'.join(path)} to set from {setting}")
        spans.append((node.start_mark.index, node.end_mark.index, _yaml_float(config[setting])))
    for start, end, value in sorted(spans, reverse=True):
        text = text[:start] + value + text[end:]
    return text


def _active_row(session: Session) -> PolicyVersion | None:
    return session.scalars(
        select(PolicyVersion)
        .where(PolicyVersion.state == PolicyState.ACTIVE.value)
        .execution_options(populate_existing=True)
    ).one_or_none()


def _adopt_default(session: Session, config: Mapping[str, Any]) -> None:
    """Store version 1 from the default document, unless a concurrent call already did.

    The insert does nothing when version 1 exists (the unique version number decides between
    concurrent first calls: PostgreSQL makes the second wait for the first's commit, SQLite
    serialises them), and only the call that inserted writes the audit event and commits.
    """
    text = default_document(config)
    try:
        policy = load_policy(text, record_fields())
    except PolicyError as error:
        raise ServiceUnavailable(
            "the first release policy, config/policies/default.yaml with the settings' DP caps "
            f"(DP_DATASET_RHO_CAP and others), is invalid: {error}"
        ) from None
    now, version_id, sha256 = utcnow(), new_id(), digest(text)
    values = {
        "id": version_id,
        "version": policy.version,
        "document": text,
        "sha256": sha256,
        "state": PolicyState.ACTIVE.value,
        "proposed_by": None,
        "proposer_name": OPERATOR.name,
        "rationale": "adopted from config/policies/default.yaml with the settings' DP caps",
        "created_at": now,
        "decided_at": now,
        "activated_at": now,
        "revision": 1,
    }
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    # RETURNING names the row only when this call inserted it (rowcount is not reliable for an
    # ORM insert on every driver).
    inserted = session.execute(
        module.insert(PolicyVersion)
        .values(**values)
        .on_conflict_do_nothing()
        .returning(PolicyVersion.id)
    ).scalar_one_or_none()
    if inserted is None:
        session.rollback()  # a concurrent call adopted it first; nothing of ours to keep
        return
    audit.record(
        session,
        "policies:version:adopt_default",
        actor=OPERATOR,
        request_id=None,
        subject_id=version_id,
        details={
            "version": policy.version,
            "sha256": sha256,
            "dataset_cap_rho": policy.privacy.dataset_cap.rho,
            "dataset_cap_delta": policy.privacy.dataset_cap.delta,
            "researcher_allowance_rho": policy.privacy.researcher_allowance.rho,
            "researcher_allowance_delta": policy.privacy.researcher_allowance.delta,
        },
    )
    session.commit()


def active_policy(session: Session, config: Mapping[str, Any]) -> ActivePolicy:
    """Return the release policy in force, adopting the first version if there is none yet.

    Adopting the first version commits its own transaction (the version and its audit event,
    made by the operator's system actor), so call this before changing anything in
    ``session``. Concurrent first calls store one version 1 between them.

    :param config: the hub's settings; their DP caps are read only to adopt the first version.
    :raises hub.domain_errors.ServiceUnavailable: if the first version cannot be made from the
        settings, or the stored active version fails its digest or validation.
    """
    with session.no_autoflush:
        row = _active_row(session)
    if row is None:
        if session.new or session.dirty or session.deleted:
            # Adopting commits: it must not commit a caller's half-made change with it.
            raise RuntimeError("call active_policy before changing anything in the session")
        _adopt_default(session, config)
        row = _active_row(session)
        if row is None:
            raise ServiceUnavailable(
                "no release policy is active although versions exist; the board must approve one"
            )
    return ActivePolicy(version=row.version, policy=parse_stored(row), digest=row.sha256, id=row.id)
