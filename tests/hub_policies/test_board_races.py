"""Concurrent votes on one policy version, against a real server: no lost vote, one activation.

Members vote from threads released together by a barrier, each over its own HTTP connection
to a hub served by waitress with several threads, so their requests really overlap.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import requests
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.models import AuditEvent, PolicyVersion, PolicyVote
from tests.conftest import LiveHub
from tests.hub_policies.conftest import Member, policy_text
from tests.hub_policies.test_board_api import propose


def _together(members: list[Member], act: Callable[[Member], Any]) -> list[Any]:
    """Run ``act`` for every member at once; return the results in the members' order."""
    barrier = threading.Barrier(len(members))
    results: list[Any] = [None] * len(members)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = act(members[index])
        except BaseException as error:  # noqa: BLE001 - reported by the caller's assertions
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(members))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _vote(hub: LiveHub, member: Member, etag: str, decision: str = "approve") -> Any:
    return requests.post(
        f"{hub.url}/v1/policies/2/reviews",
        json={"decision": decision, "reason_code": "meets_policy"},
        headers={**member.headers, "If-Match": etag},
        timeout=60,
    )


def _count(session: Session, model: Any, *where: Any) -> int:
    session.rollback()
    return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_votes_with_the_same_etag_count_once(
    client: FlaskClient, board: list[Member], live_hub: LiveHub, db_session: Session
) -> None:
    proposer, *voters = board
    etag = propose(client, proposer, policy_text()).headers["ETag"]
    answers = _together(voters, lambda member: _vote(live_hub, member, etag))
    statuses = sorted(answer.status_code for answer in answers)
    # Whatever the interleaving, one vote was cast on the state all three read; the others
    # are told it changed, and nothing of theirs is kept.
    assert statuses == [200, 412, 412], [a.text for a in answers]
    assert _count(db_session, PolicyVote) == 1
    assert _count(db_session, AuditEvent, AuditEvent.tag == "policies:version:vote") == 1


def test_racing_approvals_activate_the_version_once(
    client: FlaskClient, board: list[Member], live_hub: LiveHub, db_session: Session
) -> None:
    proposer, *voters = board
    propose(client, proposer, policy_text())

    def approve_until_answered(member: Member) -> tuple[int, str | None, int]:
        """Read, vote; on 412 read again and vote again (what a client is told to do)."""
        stale = 0
        while True:
            shown = requests.get(
                f"{live_hub.url}/v1/policies/2", headers=member.headers, timeout=60
            )
            answer = _vote(live_hub, member, shown.headers["ETag"])
            if answer.status_code != 412:
                return answer.status_code, answer.json().get("code"), stale
            stale += 1

    results = _together(voters, approve_until_answered)
    assert all(isinstance(result, tuple) for result in results), results
    outcomes = sorted((status, code) for status, code, _ in results)
    # Quorum 2: two approvals count and activate it; the third finds it decided.
    assert outcomes == [(200, None), (200, None), (409, "decided")]
    db_session.rollback()
    states = dict(db_session.execute(select(PolicyVersion.version, PolicyVersion.state)).all())
    assert states == {1: "superseded", 2: "active"}
    assert _count(db_session, PolicyVote, PolicyVote.decision == "approve") == 2
    assert _count(db_session, AuditEvent, AuditEvent.tag == "policies:version:activate") == 1
