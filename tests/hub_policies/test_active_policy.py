"""The active release policy: the first version adopted from the default, once, and checked."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from fractions import Fraction

import pytest
from apiflask import APIFlask
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from hub import create_app
from hub.crypto import Keyring
from hub.domain_errors import ServiceUnavailable
from hub.models import AuditEvent, PolicyVersion
from hub.services import policies as service
from hub.settings import load_settings
from policies import PolicyState, load_policy
from tests.hub_policies.conftest import policy_text

ADOPT = "policies:version:adopt_default"


def _count(session: Session, model: type[PolicyVersion] | type[AuditEvent], *where: object) -> int:
    return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


@pytest.fixture
def capped_app(database_url: str, test_keyring: Keyring, app: APIFlask) -> Iterator[APIFlask]:
    """A second hub on the same database (``app`` empties it) with caps unlike the defaults."""
    other = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": database_url,
            "KEYRING": test_keyring.to_json(),
            "DP_DATASET_RHO_CAP": "0.5",
            "DP_DATASET_DELTA_CAP": "2e-7",
            "DP_RESEARCHER_RHO_ALLOWANCE": "0.125",
            "DP_RESEARCHER_DELTA_ALLOWANCE": "3e-9",
            "DP_DISPLAY_DELTA": "1e-5",
        }
    )
    yield other
    other.extensions["ctdhub.engine"].dispose()


def test_record_fields_are_the_schema_fields_and_derived_attributes() -> None:
    fields = service.record_fields()
    assert fields.is_attribute("gender")
    assert "exploitationType" in fields.derived
    assert not fields.is_attribute("caseNo") and fields.known("caseNo")


def test_the_first_call_adopts_the_default_with_the_settings_caps(
    capped_app: APIFlask,
) -> None:
    with capped_app.extensions["ctdhub.sessionmaker"]() as session:
        active = service.active_policy(session, capped_app.config)
        privacy = active.policy.privacy
        assert (active.version, privacy.dataset_cap.rho, privacy.dataset_cap.delta) == (
            1,
            0.5,
            2e-7,
        )
        assert (privacy.researcher_allowance.rho, privacy.researcher_allowance.delta) == (
            0.125,
            3e-9,
        )
        assert privacy.display_delta == 1e-5
        row = session.scalars(select(PolicyVersion)).one()
        assert row.state == PolicyState.ACTIVE.value and row.id == active.id
        assert active.digest == row.sha256 == hashlib.sha256(row.document.encode()).hexdigest()
        # Only the numbers changed: the default's comments and the rest are kept.
        assert row.document.startswith("# ctdhub release policy")
        assert "rho: 0.5\n" in row.document and "k: 11\n" in row.document
        event = session.scalars(select(AuditEvent).where(AuditEvent.tag == ADOPT)).one()
        assert (event.actor_name, event.actor_id, event.subject_id) == ("operator", None, row.id)
        assert event.details["dataset_cap_rho"] == 0.5 and event.details["sha256"] == row.sha256

        # Later calls read it; they neither adopt again nor audit again, whatever the settings.
        again = service.active_policy(session, {**capped_app.config, "DP_DATASET_RHO_CAP": "0.9"})
        assert (again.version, again.digest, again.policy.privacy.dataset_cap.rho) == (
            1,
            active.digest,
            0.5,
        )
        assert _count(session, PolicyVersion) == 1
        assert _count(session, AuditEvent, AuditEvent.tag == ADOPT) == 1


def test_concurrent_first_calls_store_one_version(app: APIFlask) -> None:
    makers = app.extensions["ctdhub.sessionmaker"]
    callers = 6
    barrier = threading.Barrier(callers)
    digests: list[str] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            with makers() as session:
                barrier.wait()
                digests.append(service.active_policy(session, app.config).digest)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(digests) == callers and len(set(digests)) == 1
    with makers() as session:
        assert _count(session, PolicyVersion) == 1
        assert _count(session, AuditEvent, AuditEvent.tag == ADOPT) == 1


def test_a_call_that_lost_the_race_keeps_nothing_of_its_own(
    app: APIFlask, db_session: Session
) -> None:
    # What the losing caller of a race does: version 1 appeared after it found none active.
    first = service.active_policy(db_session, app.config)
    with app.extensions["ctdhub.sessionmaker"]() as late:
        service._adopt_default(late, app.config)
        assert service.active_policy(late, app.config).digest == first.digest
    assert _count(db_session, PolicyVersion) == 1
    assert _count(db_session, AuditEvent, AuditEvent.tag == ADOPT) == 1


def test_settings_the_default_policy_cannot_hold_are_refused_and_store_nothing(
    database_url: str, test_keyring: Keyring, app: APIFlask
) -> None:
    # The default release spends rho 0.05 in all: a cap of 0.01 cannot hold it.
    other = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": database_url,
            "KEYRING": test_keyring.to_json(),
            "DP_DATASET_RHO_CAP": "0.01",
            "DP_RESEARCHER_RHO_ALLOWANCE": "0.01",
        }
    )
    try:
        with other.extensions["ctdhub.sessionmaker"]() as session:
            with pytest.raises(ServiceUnavailable, match="DP_DATASET_RHO_CAP") as refused:
                service.active_policy(session, other.config)
            assert "release" in refused.value.detail
            assert _count(session, PolicyVersion) == 0
            assert _count(session, AuditEvent) == 0
    finally:
        other.extensions["ctdhub.engine"].dispose()


def test_a_stored_version_changed_behind_the_hubs_back_is_refused(
    app: APIFlask, db_session: Session
) -> None:
    active = service.active_policy(db_session, app.config)
    db_session.execute(
        update(PolicyVersion)
        .where(PolicyVersion.id == active.id)
        .values(document=PolicyVersion.document + "\n# edited")
    )
    db_session.commit()
    with pytest.raises(ServiceUnavailable, match="does not match its stored SHA-256"):
        service.active_policy(db_session, app.config)


def test_active_policy_will_not_commit_a_callers_pending_change(
    app: APIFlask, db_session: Session
) -> None:
    db_session.add(AuditEvent(tag="test:pending:change", details={}))
    with pytest.raises(RuntimeError, match="before changing anything"):
        service.active_policy(db_session, app.config)
    db_session.rollback()
    assert _count(db_session, PolicyVersion) == 0


def test_the_caps_are_read_as_written_once_per_document() -> None:
    """Each version's caps are its own text's, exactly; re-reading a version parses nothing."""
    config = load_settings(environ={})
    service._written_caps.cache_clear()

    def active(text: str) -> service.ActivePolicy:
        policy = load_policy(text, service.record_fields())
        return service.ActivePolicy(policy.version, policy, service.digest(text), "x", text)

    first, second = active(policy_text(cap_rho="0.3")), active(policy_text(3, cap_rho="0.7"))
    assert service.budget_policy(first, config).dataset_rho == Fraction(3, 10)
    parsed = service._written_caps.cache_info().misses
    again = service.budget_policy(first, config)
    assert service._written_caps.cache_info().misses == parsed == 1
    assert (again.dataset_rho, again.policy_version) == (Fraction(3, 10), 2)
    # Another document is read afresh: a cached version never answers for another.
    other = service.budget_policy(second, config)
    assert (other.dataset_rho, other.policy_version) == (Fraction(7, 10), 3)
    assert service._written_caps.cache_info().misses == parsed + 1
