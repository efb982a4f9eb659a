"""The board's pages: policy proposals with their diff, votes, candidates, publication, retraction.

People are made and signed in through the real services and pages (second factor included);
the candidate is built by the release service from a sample of the CTDC file uploaded over the
API, as the release tests build one. Every refusal of the board's rules is a page saying why,
in the API's status, and records nothing.
"""

from __future__ import annotations

import html
import re
from typing import Any

from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.models import AuditEvent, PolicyVote, PublishedRelease, ReleaseVote
from tests.hub_policies.conftest import policy_text
from tests.hub_portal.conftest import MakePerson, Someone, csrf_token, sign_in


def _client(app: APIFlask, someone: Someone) -> FlaskClient:
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    sign_in(client, someone)
    return client


def _count(db_session: Session, model: Any) -> int:
    db_session.expire_all()
    return int(db_session.scalar(select(func.count()).select_from(model)) or 0)


def _ballot(client: FlaskClient, path: str, form_path: str, ballot: str, **extra: str) -> Any:
    return client.post(
        path,
        data={
            "ballot": ballot,
            "text": "read it",
            "csrf_token": csrf_token(client, form_path),
            **extra,
        },
    )


def _etag(page: str) -> str:
    """Return the ETag a policy page's form sends back (as the browser reads the attribute)."""
    found = re.search(r'name="etag" value="([^"]+)"', page)
    assert found is not None, "the review form carries the version's ETag"
    return html.unescape(found.group(1))


def test_a_candidate_is_reviewed_published_and_retracted_through_the_pages(
    app: APIFlask,
    client: FlaskClient,
    db_session: Session,
    board_people: list[Someone],
    candidate_id: str,
) -> None:
    builder, second, third = (_client(app, someone) for someone in board_people)
    path = f"/board/candidates/{candidate_id}"
    page = second.get(path)
    assert page.status_code == 200
    text = page.text
    # Its checks, each with its verdict and reason; the report's tables and charts.
    assert "Every check passed." in text
    assert text.count('class="check passed"') >= 10 and 'class="check failed"' not in text
    assert "k_anonymity" in text and "secondary_suppression" in text
    assert 'id="report-utility"' in text and 'id="report-risk"' in text
    assert 'id="tvd-by-order"' in text and 'id="attacks"' in text
    assert "Privacy unit: one person, up to 3 records" in text, "the policy it was built under"
    assert "releases:release:charge" in text, "the audit trail shows the charge"
    overview = second.get("/board").text
    assert path in overview

    votes = f"{path}/votes"
    # The builder's vote is refused by the service, on the page, recording nothing.
    before = (_count(db_session, ReleaseVote), _count(db_session, AuditEvent))
    own = _ballot(builder, votes, path, "approve:meets_policy")
    assert own.status_code == 409 and "you may comment, not vote" in own.text
    assert (_count(db_session, ReleaseVote), _count(db_session, AuditEvent)) == before

    first = _ballot(second, votes, path, "approve:meets_policy")
    assert first.status_code == 303 and first.headers["Location"].endswith("recorded=1")
    assert _count(db_session, PublishedRelease) == 0
    again = _ballot(second, votes, path, "reject:disclosure_risk")
    assert again.status_code == 409 and "already voted" in again.text
    assert _count(db_session, ReleaseVote) == 1
    # A ballot the rules cannot read is refused plainly, never a 500.
    garbled = _ballot(third, votes, path, "approve:not_a_reason")
    assert garbled.status_code == 400 and 'role="alert"' in garbled.text
    # A member's comment is shown to the others as text: markup in it never runs.
    hostile = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    assert _ballot(third, votes, path, "comment:note", text=hostile).status_code == 303
    shown = second.get(path).text
    assert "<script>alert(1)" not in shown and "<img src=x" not in shown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown  # shown, escaped
    # Words beyond what the API takes are refused, never cut short in silence.
    long = _ballot(third, votes, path, "comment:note", text="x" * 5001)
    assert long.status_code == 400 and "at most 5000 characters" in long.text
    # An unknown candidate or release is not found, not an error.
    assert second.get("/board/candidates/00000000-0000-0000-0000-000000000000").status_code == 404
    assert second.get("/board/releases/00000000-0000-0000-0000-000000000000").status_code == 404

    done = _ballot(third, votes, path, "approve:risk_acceptable")
    assert done.status_code == 303
    release_id = done.headers["Location"].rsplit("/", 1)[1]
    listed = client.get("/v1/releases").get_json()
    assert [r["id"] for r in listed] == [release_id]
    shown = second.get(f"/board/candidates/{candidate_id}").text
    assert "releases:candidate:vote" in shown and "releases:release:publish" in shown
    assert "awaiting the board" not in shown

    # Retraction: proposed with a comment, then the quorum's approvals.
    release_path = f"/board/releases/{release_id}"
    retract = f"{release_path}/retraction"
    proposed = _ballot(second, retract, release_path, "comment:note")
    assert proposed.status_code == 303
    assert _ballot(third, retract, release_path, "approve:meets_policy").status_code == 303
    assert client.get(f"/v1/releases/{release_id}").get_json()["retracted_at"] is None
    assert _ballot(builder, retract, release_path, "approve:meets_policy").status_code == 303
    assert client.get(f"/v1/releases/{release_id}").get_json()["retracted_at"] is not None
    page = second.get(release_path).text
    assert "releases:release:retract" in page and 'id="release-status">retracted<' in page
    late = _ballot(second, retract, release_path, "approve:meets_policy")
    assert late.status_code == 409 and "already retracted" in late.text


def test_a_policy_is_proposed_with_its_errors_per_key_then_voted_into_force(
    app: APIFlask, db_session: Session, board_people: list[Someone]
) -> None:
    proposer, second, third = (_client(app, someone) for someone in board_people)
    form = proposer.get("/board/policies/new")
    assert form.status_code == 200 and "version: 2" in form.text
    token = csrf_token(proposer, "/board/policies/new")
    bad = (
        policy_text(2).replace("  k: 12", "  k: eleven").replace("display_delta:", "display_delt:")
    )
    refused = proposer.post(
        "/board/policies/new",
        data={"document": bad, "rationale": "tighter", "csrf_token": token},
    )
    assert refused.status_code == 422
    problems = re.findall(
        r'<tr class="policy-problem" data-key="([^"]*)">'
        r"<td><code>[^<]*</code></td><td>(\d+|—)</td>",
        refused.text,
    )
    named = dict(problems)
    # Each problem by its key and line: the mistyped number, the misspelt and the missing key.
    assert any(key.endswith(".k") and line.isdigit() for key, line in named.items()), problems
    assert named.get("privacy.display_delt", "—").isdigit(), problems
    assert "privacy.display_delta" in named, problems
    assert "k: eleven" in refused.text, "the document is kept for correcting"
    assert _count(db_session, PolicyVote) == 0

    done = proposer.post(
        "/board/policies/new",
        data={"document": policy_text(2, k=12), "rationale": "tighter k", "csrf_token": token},
    )
    assert done.status_code == 303 and done.headers["Location"].endswith(
        "/board/policies/2?recorded=1"
    )
    page = second.get("/board/policies/2").text
    diff = page.split('id="policy-diff"')[1].split("</table>")[0]
    assert "<code>microdata.k</code>" in diff or ".k</code>" in diff
    assert '<code class="wrap">11</code>' in diff and '<code class="wrap">12</code>' in diff
    etag = _etag(page)
    reviews, review_page = "/board/policies/2/reviews", "/board/policies/2"

    own = _ballot(proposer, reviews, review_page, "approve:meets_policy", etag=etag)
    assert own.status_code == 409 and "you may comment, not vote" in own.text
    comment = _ballot(proposer, reviews, review_page, "comment:note", etag=etag)
    assert comment.status_code == 303
    # The ETag read before the comment is stale now: refused, nothing recorded.
    stale = _ballot(second, reviews, review_page, "approve:meets_policy", etag=etag)
    assert stale.status_code == 412 and "changed since you opened the page" in stale.text
    assert _count(db_session, PolicyVote) == 1

    for member in (second, third):
        fresh = _etag(member.get(review_page).text)
        voted = _ballot(member, reviews, review_page, "approve:meets_policy", etag=fresh)
        assert voted.status_code == 303
    page = second.get("/board/policies/2").text
    assert 'id="policy-state">active<' in page
    assert "policies:version:activate" in page and "policies:version:propose" in page


def test_board_pages_are_refused_to_researchers_and_partners(
    app: APIFlask, make_person: MakePerson
) -> None:
    pages = [
        ("GET", "/board"),
        ("GET", "/board/policies/1"),
        ("GET", "/board/policies/new"),
        ("GET", "/board/candidates/00000000-0000-4000-8000-000000000000"),
        ("GET", "/board/releases/00000000-0000-4000-8000-000000000000"),
        ("POST", "/board/policies/1/reviews"),
        ("POST", "/board/candidates/00000000-0000-4000-8000-000000000000/votes"),
        ("POST", "/board/releases/00000000-0000-4000-8000-000000000000/retraction"),
    ]
    for roles in (["researcher"], ["partner"], ["partner", "researcher"]):
        client = _client(app, make_person(f"Not board {'-'.join(roles)}", roles))
        token = csrf_token(client, "/account")
        for method, path in pages:
            response = client.open(
                path, method=method, data={"csrf_token": token, "ballot": "approve:meets_policy"}
            )
            assert response.status_code == 403, (roles, method, path, response.status_code)
            assert "Your roles do not give access to this page." in response.text
        assert 'href="/board"' not in client.get("/account").text
