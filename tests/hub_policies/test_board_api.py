"""The board's review of release policies over the API: propose, vote, quorum, ETags, audit."""

from __future__ import annotations

from typing import Any

import yaml
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from disclosure_control.dp import PrivacySpend
from hub.models import AuditEvent, PolicyVersion, PolicyVote
from hub.services import ledger
from tests.hub_policies.conftest import MakeMember, Member, policy_text

YAML = {"Content-Type": "application/yaml"}


def _count(session: Session, model: Any, *where: Any) -> int:
    session.rollback()  # see what other connections committed
    return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _tags(session: Session) -> list[str]:
    session.rollback()
    tags = session.scalars(
        select(AuditEvent.tag).where(AuditEvent.tag.startswith("policies:")).order_by(AuditEvent.id)
    )
    return list(tags)


def propose(client: FlaskClient, member: Member, text: str, rationale: str = "tighter k") -> Any:
    return client.post(
        f"/v1/policies?rationale={rationale}", data=text, headers={**member.headers, **YAML}
    )


def vote(
    client: FlaskClient,
    member: Member,
    version: int,
    decision: str,
    reason_code: str,
    etag: str | None,
    text: str = "",
) -> Any:
    headers = dict(member.headers)
    if etag is not None:
        headers["If-Match"] = etag
    return client.post(
        f"/v1/policies/{version}/reviews",
        json={"decision": decision, "reason_code": reason_code, "text": text},
        headers=headers,
    )


def etag_of(client: FlaskClient, member: Member, version: int) -> str:
    response = client.get(f"/v1/policies/{version}", headers=member.headers)
    assert response.status_code == 200, response.get_json()
    return response.headers["ETag"]


def test_a_proposal_reaches_the_quorum_and_becomes_active(
    client: FlaskClient, board: list[Member], db_session: Session
) -> None:
    proposer, first, second, _ = board
    proposed = propose(client, proposer, policy_text(k=12))
    assert proposed.status_code == 201, proposed.get_json()
    body = proposed.get_json()
    assert proposed.headers["Location"] == "/v1/policies/2"
    assert proposed.headers["ETag"] == body["etag"]
    assert (body["version"], body["state"], body["active_version"]) == (2, "proposed", 1)
    # The readable diff against the active version names the change, old -> new.
    assert body["diff_against_active"]["text"] == "microdata.k: 11 -> 12"
    assert body["review"]["needed"] == 2

    # The proposer's own approval never counts: it is refused, not recorded.
    refused = vote(client, proposer, 2, "approve", "meets_policy", etag_of(client, proposer, 2))
    assert refused.status_code == 409 and refused.get_json()["code"] == "proposer_votes"

    approved = vote(client, first, 2, "approve", "meets_policy", etag_of(client, first, 2))
    assert approved.status_code == 200, approved.get_json()
    assert (approved.get_json()["state"], approved.get_json()["review"]["needed"]) == (
        "proposed",
        1,
    )
    # One vote per member, whatever it says.
    again = vote(client, first, 2, "reject", "other", etag_of(client, first, 2), text="no")
    assert again.status_code == 409 and again.get_json()["code"] == "second_vote"

    final = vote(client, second, 2, "approve", "risk_acceptable", etag_of(client, second, 2))
    assert final.status_code == 200 and final.get_json()["state"] == "active"
    active = client.get("/v1/policies/active", headers=second.headers).get_json()
    assert (active["version"], active["policy"]["microdata"]["k"]) == (2, 12)
    listed = client.get("/v1/policies", headers=first.headers).get_json()
    assert [(v["version"], v["state"]) for v in listed["versions"]] == [
        (2, "active"),
        (1, "superseded"),
    ]
    assert _tags(db_session) == [
        "policies:version:adopt_default",
        "policies:version:propose",
        "policies:version:vote",
        "policies:version:vote",
        "policies:version:activate",
    ]
    # A decided version takes comments, not votes.
    late = vote(client, board[3], 2, "approve", "meets_policy", etag_of(client, board[3], 2))
    assert late.status_code == 409 and late.get_json()["code"] == "decided"
    note = vote(client, board[3], 2, "comment", "note", etag_of(client, board[3], 2), text="ok")
    assert note.status_code == 200


def test_a_proposal_may_come_as_json_and_one_objection_decides(
    client: FlaskClient, board: list[Member], db_session: Session
) -> None:
    proposer, objector = board[:2]

    document = yaml.safe_load(policy_text(k=13))
    proposed = client.post(
        "/v1/policies",
        json={"document": document, "rationale": "k of 13"},
        headers=proposer.headers,
    )
    assert proposed.status_code == 201, proposed.get_json()
    assert proposed.get_json()["policy"]["microdata"]["k"] == 13
    changed = vote(
        client, objector, 2, "request_changes", "utility", proposed.headers["ETag"], text="why"
    )
    assert changed.status_code == 200 and changed.get_json()["state"] == "changes_requested"
    assert "policies:version:changes_requested" in _tags(db_session)
    # The active version is still the first.
    assert client.get("/v1/policies/active", headers=proposer.headers).get_json()["version"] == 1


def test_an_invalid_document_is_refused_naming_key_and_reason_and_stores_nothing(
    client: FlaskClient, board: list[Member], db_session: Session
) -> None:
    text = (
        policy_text(k=12)
        .replace("  k: 12", "  k: 1")
        .replace("gender, ageBroad", "gendr, ageBroad")
    )
    refused = propose(client, board[0], text)
    assert refused.status_code == 422
    problems = {p["path"]: p["reason"] for p in refused.get_json()["problems"]}
    assert "microdata.k" in problems and "greater than or equal to 2" in problems["microdata.k"]
    assert "gendr" in problems["microdata.quasi_identifiers[0]"]
    assert _count(db_session, PolicyVersion, PolicyVersion.version == 2) == 0
    assert "policies:version:propose" not in _tags(db_session)
    wrong_version = propose(client, board[0], policy_text(version=3))
    assert wrong_version.status_code == 422
    assert "propose version 2" in wrong_version.get_json()["detail"]


def test_non_board_principals_are_refused(
    client: FlaskClient, board: list[Member], make_member: MakeMember, db_session: Session
) -> None:
    researcher = make_member(("researcher",), "University")
    assert client.get("/v1/policies", headers=researcher.headers).status_code == 403
    assert propose(client, researcher, policy_text()).status_code == 403
    assert propose(client, board[0], policy_text()).status_code == 201
    etag = etag_of(client, board[1], 2)
    assert vote(client, researcher, 2, "approve", "meets_policy", etag).status_code == 403
    assert _count(db_session, PolicyVote) == 0


def test_writes_need_the_current_etag(
    client: FlaskClient, board: list[Member], db_session: Session
) -> None:
    proposer, first, second, _ = board
    etag = propose(client, proposer, policy_text()).headers["ETag"]
    missing = vote(client, first, 2, "approve", "meets_policy", None)
    assert missing.status_code == 428
    commented = vote(client, proposer, 2, "comment", "note", etag, text="see the rationale")
    assert commented.status_code == 200 and commented.headers["ETag"] != etag
    stale = vote(client, first, 2, "approve", "meets_policy", etag)
    assert stale.status_code == 412 and stale.get_json()["etag"] == commented.headers["ETag"]
    assert _count(db_session, PolicyVote) == 1
    bad_reason = vote(client, second, 2, "approve", "looks_fine", commented.headers["ETag"])
    assert bad_reason.status_code == 422 and bad_reason.get_json()["code"] == "bad_reason"
    assert _count(db_session, PolicyVote) == 1


def test_a_cap_below_what_is_spent_is_refused_with_the_figures(
    client: FlaskClient, board: list[Member], db_session: Session
) -> None:
    # The active policy exists before the ledger is charged, as in a running hub.
    assert client.get("/v1/policies/active", headers=board[0].headers).status_code == 200
    ledger.lock_dataset(db_session)
    ledger.charge(db_session, None, PrivacySpend(0.5))
    db_session.commit()
    refused = propose(client, board[0], policy_text(cap_rho="0.4"))
    assert refused.status_code == 422
    detail = refused.get_json()["detail"]
    assert "rho 0.4" in detail and "already spent" in detail and "rho 0.5" in detail
    assert _count(db_session, PolicyVersion) == 1

    # A cap that fits when proposed but not when the quorum is reached is refused then.
    etag = propose(client, board[0], policy_text(cap_rho="0.6")).headers["ETag"]
    etag = vote(client, board[1], 2, "approve", "meets_policy", etag).headers["ETag"]
    ledger.lock_dataset(db_session)
    ledger.charge(db_session, None, PrivacySpend(0.25))
    db_session.commit()
    late = vote(client, board[2], 2, "approve", "meets_policy", etag)
    assert late.status_code == 422 and "already spent" in late.get_json()["detail"]
    shown = client.get("/v1/policies/2", headers=board[0].headers)
    assert shown.get_json()["state"] == "proposed" and shown.headers["ETag"] == etag
    assert _count(db_session, PolicyVote) == 1


def test_an_activated_version_governs_what_researchers_may_ask(
    client: FlaskClient, board: list[Member], make_member: MakeMember
) -> None:
    researcher = make_member(("researcher",), "University")
    spec = {"measure": {"kind": "count"}, "group_by": ["Datasource"], "spend": {"rho": 0.01}}
    allowed = client.post("/v1/queries/preview", json=spec, headers=researcher.headers)
    assert allowed.status_code == 200, allowed.get_json()
    text = policy_text().replace("    - Datasource\n", "", 1)  # from researchers.group_by
    etag = propose(client, board[0], text).headers["ETag"]
    for member in board[1:3]:
        etag = vote(client, member, 2, "approve", "meets_policy", etag).headers["ETag"]
    refused = client.post("/v1/queries/preview", json=spec, headers=researcher.headers)
    assert refused.status_code == 403 and refused.get_json()["field"] == "group_by[0]"
    assert "(version 2)" in refused.get_json()["detail"]
    budget = client.get("/v1/budget", headers=researcher.headers).get_json()
    assert budget["policy_version"] == 2
