"""The public transparency log: complete, without identities, hash-chained and verifiable."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import sqlalchemy as sa
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from hub.cli import main
from hub.models import QueryAnswer, TransparencyEntry
from hub.services import transparency
from tests.conftest import Bearer, MakeClient
from tests.hub_releases.test_release import (  # noqa: F401 - fixtures
    download,
    places,
    published,
)

QUERY = {"measure": {"kind": "count"}, "group_by": ["gender"], "spend": {"rho": 0.005}}


def test_the_log_holds_every_release_policy_and_spend_and_detects_a_rewrite(
    app: APIFlask,
    client: FlaskClient,
    db_session: Session,
    make_client: MakeClient,
    bearer: Bearer,
    published: dict[str, Any],  # noqa: F811
) -> None:
    cid, secret, researcher = make_client("University", ["researcher"])
    asked = client.post("/v1/queries", json=QUERY, headers=bearer(cid, secret))
    assert asked.status_code == 201, asked.get_json()

    log = client.get("/v1/transparency")  # public: no token
    assert log.status_code == 200
    entries = log.get_json()
    kinds = [e["kind"] for e in entries]
    assert kinds.count("release") == 1 and kinds.count("policy_version") == 1
    assert kinds.count("privacy_spend") == 2  # the release candidate's charge and the query
    release = next(e for e in entries if e["kind"] == "release")["body"]
    assert release["release"] == published["release"] and release["version"] == 1
    assert release["seconds_from_request_to_decision"] >= 0
    query = next(e["body"] for e in entries if e["body"].get("spender") == "researcher query")
    # The log states the unit the charge was made under (the default policy's), and the
    # charge is OpenDP's for one person of up to 3 records, within the decimal 0.005 asked.
    unit = "one person, up to 3 records"
    assert query["privacy_unit"] == unit and 0.005 * (1 - 1e-12) <= query["rho"] <= 0.005
    build = next(e["body"] for e in entries if e["body"].get("spender") == "release candidate")
    assert build["privacy_unit"] == unit
    assert query["epsilon"] > 0 and query["cap_rho"] == 1.0
    text = str(entries)
    assert researcher.id not in text and "gender" not in text  # neither who nor what
    # Each entry chains to the one before it.
    previous = transparency.GENESIS
    for entry in entries:
        assert entry["previous_hash"] == previous
        assert entry["entry_hash"] == transparency.chain(previous, entry["body"])
        previous = entry["entry_hash"]
    spends = [e["body"] for e in entries if e["kind"] == "privacy_spend"]
    left = Fraction(1) - sum(Fraction(s["rho_exact"]) for s in spends)
    assert Fraction(spends[-1]["left_rho_exact"]) == left
    # Reading again appends nothing new.
    assert client.get("/v1/transparency").get_json() == entries

    runner = app.test_cli_runner()
    intact = runner.invoke(main, ["transparency", "verify"])
    assert intact.exit_code == 0, intact.output
    assert f"{len(entries)} entries, chain intact" in intact.output

    # Rewriting an entry's history in the database is detected.
    with app.extensions["ctdhub.engine"].begin() as connection:
        row = connection.execute(
            sa.select(TransparencyEntry.seq, TransparencyEntry.body)
            .where(TransparencyEntry.kind == "privacy_spend")
            .order_by(TransparencyEntry.seq)
        ).first()
        assert row is not None
        connection.execute(
            sa.update(TransparencyEntry)
            .where(TransparencyEntry.seq == row.seq)
            .values(body={**row.body, "rho": "0.0001"})
        )
    broken = runner.invoke(main, ["transparency", "verify"])
    assert broken.exit_code == 1
    assert f"entry {row.seq}: its body does not match its hash" in broken.output

    # So is a rewrite of the records beneath an intact log.
    with app.extensions["ctdhub.engine"].begin() as connection:
        connection.execute(
            sa.update(TransparencyEntry)
            .where(TransparencyEntry.seq == row.seq)
            .values(body=row.body)
        )
        connection.execute(sa.update(QueryAnswer).values(rho="1/1000000"))
    db_session.expire_all()
    problems = transparency.verify(db_session)
    assert problems and all("differs from the hub's record" in p for p in problems)


def _spends(session: Session) -> list[dict[str, Any]]:
    session.rollback()  # see what the requests committed
    return [e["body"] for e in transparency.entries(session) if e["kind"] == "privacy_spend"]


def test_each_entry_is_written_in_the_transaction_of_what_it_records(
    app: APIFlask,
    client: FlaskClient,
    db_session: Session,
    make_client: MakeClient,
    bearer: Bearer,
    published: dict[str, Any],  # noqa: F811
) -> None:
    # Nobody has read the log yet: the build's charge and the publication are in.
    db_session.rollback()
    kinds = [e["kind"] for e in transparency.entries(db_session)]
    assert kinds == ["privacy_spend", "release"]

    # A researcher's charge is logged by the query's own transaction, after the adoption of
    # the first policy version the query needed.
    cid, secret, _ = make_client("University", ["researcher"])
    headers = bearer(cid, secret)
    assert client.post("/v1/queries", json=QUERY, headers=headers).status_code == 201
    assert [e["kind"] for e in transparency.entries(db_session)][2:] == [
        "policy_version",
        "privacy_spend",
    ]
    assert len(_spends(db_session)) == 2
    # Re-served free: no charge, no entry.
    assert client.post("/v1/queries", json=QUERY, headers=headers).status_code == 200
    assert len(_spends(db_session)) == 2
    # A query the policy refuses charges nothing and logs nothing.
    refused = {**QUERY, "group_by": ["meansOfControlThreats"]}
    assert client.post("/v1/queries", json=refused, headers=headers).status_code in (403, 422)
    assert len(_spends(db_session)) == 2

    # A retraction is logged when the quorum's vote retracts.
    url = f"/v1/releases/{published['release']}/retraction/votes"
    builder, second, third = published["board"]
    note = {"decision": "comment", "reason_code": "note", "remark": "consent withdrawn"}
    approve = {"decision": "approve", "reason_code": "meets_policy"}
    assert client.post(url, json=note, headers=builder).status_code == 201
    assert client.post(url, json=approve, headers=second).status_code == 201
    db_session.rollback()
    assert transparency.entries(db_session)[-1]["kind"] == "privacy_spend"
    assert client.post(url, json=approve, headers=third).get_json()["retracted"] is True
    db_session.rollback()
    last = transparency.entries(db_session)[-1]
    assert last["kind"] == "retraction" and last["body"]["release"] == published["release"]
    assert last["body"]["seconds_from_request_to_decision"] >= 0

    # Reading the public log changes nothing, and it is the database's, entry for entry.
    shown = client.get("/v1/transparency").get_json()
    assert shown == client.get("/v1/transparency").get_json()
    db_session.rollback()
    assert shown == transparency.entries(db_session)
    assert transparency.verify(db_session) == []


def test_a_log_written_before_the_rule_is_completed_once_by_the_upgrade(
    app: APIFlask,
    client: FlaskClient,
    db_session: Session,
    database_url: str,
    make_client: MakeClient,
    bearer: Bearer,
    published: dict[str, Any],  # noqa: F811
) -> None:
    from hub import migrate

    cid, secret, _ = make_client("University", ["researcher"])
    assert client.post("/v1/queries", json=QUERY, headers=bearer(cid, secret)).status_code == 201
    db_session.rollback()
    written = transparency.entries(db_session)
    assert len(written) == 4
    # A log synced lazily, last when it held only the release candidate's charge.
    with app.extensions["ctdhub.engine"].begin() as connection:
        connection.execute(sa.delete(TransparencyEntry).where(TransparencyEntry.seq > 1))
    problems = transparency.verify(db_session)
    assert len(problems) == 3 and all("has no entry in the log" in p for p in problems)

    migrate.upgrade(database_url)  # what `ctdhub db upgrade` runs
    db_session.rollback()
    completed = transparency.entries(db_session)
    assert completed[0] == written[0]
    # The records' entries again, oldest first: the same bodies, the running figures aside.
    assert [e["kind"] for e in completed[1:]] == ["release", "policy_version", "privacy_spend"]
    assert [e["body"]["rho_exact"] for e in completed if e["kind"] == "privacy_spend"] == [
        e["body"]["rho_exact"] for e in written if e["kind"] == "privacy_spend"
    ]
    assert transparency.verify(db_session) == []
    assert transparency.backfill(db_session) == 0  # once
