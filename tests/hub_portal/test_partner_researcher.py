"""Partner and researcher pages: the API's services behind them, rendered for people."""

from __future__ import annotations

import io
import re

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient

from examples.make_examples import CTDC_FILE
from hub.services import uploads
from tests.hub_portal.conftest import MakePerson, csrf_token, sign_in


def _client(app: APIFlask) -> FlaskClient:
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    return client


def _upload(client: FlaskClient, name: str, body: bytes, accept_valid: bool = False) -> object:
    form: dict[str, object] = {
        "csrf_token": csrf_token(client, "/partner/uploads/new"),
        "file": (io.BytesIO(body), name),
    }
    if accept_valid:
        form["accept_valid"] = "yes"
    return client.post("/partner/uploads/new", data=form, content_type="multipart/form-data")


def _with_bad_gender_on_row(row: int) -> bytes:
    lines = CTDC_FILE.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    cells = lines[row].split(",")
    cells[header.index("gender")] = "Unicorn"
    lines[row] = ",".join(cells)
    return ("\n".join(lines) + "\n").encode()


def test_an_invalid_row_is_shown_by_row_and_field(app: APIFlask, make_person: MakePerson) -> None:
    client = _client(app)
    sign_in(client, make_person("Upload NGO", ["partner"]))
    refused = _upload(client, "cases.csv", _with_bad_gender_on_row(3))
    assert refused.status_code == 422  # type: ignore[attr-defined]
    page = refused.get_data(as_text=True)  # type: ignore[attr-defined]
    assert 'class="row-error" data-row="3" data-field="gender"' in page
    assert "Unicorn" not in page, "a record value is never shown"
    assert "The file was not stored." in page
    assert "Your organisation has not uploaded anything yet." in client.get("/partner/uploads").text


def test_a_partner_uploads_sees_the_receipt_and_withdraws(
    app: APIFlask, make_person: MakePerson
) -> None:
    client = _client(app)
    sign_in(client, make_person("Upload NGO", ["partner"]))
    stored = _upload(client, "cases.csv", _with_bad_gender_on_row(5), accept_valid=True)
    assert stored.status_code == 303  # type: ignore[attr-defined]
    receipt = client.get(stored.headers["Location"]).text  # type: ignore[attr-defined]
    assert "The file was checked and stored." in receipt
    assert 'data-row="5" data-field="gender"' in receipt
    upload_id = re.search(r"<dd><code>([0-9a-f-]{36})</code></dd>", receipt)
    assert upload_id is not None
    listing = client.get("/partner/uploads").text
    assert f"/partner/uploads/{upload_id.group(1)}" in listing

    withdraw = client.post(
        f"/partner/uploads/{upload_id.group(1)}/withdraw",
        data={"csrf_token": csrf_token(client, "/partner/uploads")},
    )
    assert withdraw.status_code == 303
    assert "withdrawn on" in client.get(f"/partner/uploads/{upload_id.group(1)}").text


def test_a_partner_never_sees_another_partners_upload(
    app: APIFlask, make_person: MakePerson
) -> None:
    first, second = _client(app), _client(app)
    sign_in(first, make_person("First NGO", ["partner"]))
    sign_in(second, make_person("Second NGO", ["partner"]))
    stored = _upload(first, "cases.csv", CTDC_FILE.read_bytes())
    path = stored.headers["Location"].split("?")[0]  # type: ignore[attr-defined]
    assert first.get(path).status_code == 200
    assert second.get(path).status_code == 404
    assert path not in second.get("/partner/uploads").text
    withdraw = second.post(
        path + "/withdraw", data={"csrf_token": csrf_token(second, "/partner/uploads")}
    )
    assert withdraw.status_code == 404
    assert "withdrawn on" not in first.get(path).text


def test_a_researcher_previews_runs_and_spends(app: APIFlask, make_person: MakePerson) -> None:
    partner, researcher = _client(app), _client(app)
    sign_in(partner, make_person("Data NGO", ["partner"]))
    assert _upload(partner, "cases.csv", CTDC_FILE.read_bytes()).status_code == 303  # type: ignore[attr-defined]
    sign_in(researcher, make_person("University", ["researcher"]))
    page = researcher.get("/researcher/queries").text
    assert 'id="budget-spent" data-rho="0"' in page
    assert "You have not run a query yet." in page

    form = {
        "measure": "count",
        "group_by": "gender",
        "spend_kind": "rho",
        "spend": "0.05",
        "csrf_token": csrf_token(researcher, "/researcher/queries"),
    }
    preview = researcher.post("/researcher/queries", data={**form, "action": "preview"})
    assert preview.status_code == 200
    shown = preview.text
    assert 'id="preview-cost">rho 0.05' in shown and 'id="preview-width">±' in shown
    assert 'id="budget-spent" data-rho="0"' in shown, "a preview spends nothing"

    ran = researcher.post("/researcher/queries", data={**form, "action": "run"})
    assert ran.status_code == 303
    answer = researcher.get(ran.headers["Location"]).text
    assert 'id="answer-table"' in answer and "Female" in answer
    # The chart draws each row of the table: the same value and interval, read from its bars.
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in answer and 'id="answer-chart"' in answer
    drawn = re.findall(r'aria-label="([^":]+): ([-\d.e]+) \(95% interval ([-\d.e]+) to ', answer)
    rows = re.findall(r"<tr><td>(?:<em>)?([^<]+)<", answer)
    assert {label for label, _, _ in drawn} == set(rows) and "Female" in rows
    spent = re.search(r'id="budget-spent" data-rho="([^"]+)"', answer)
    assert spent is not None and float(spent.group(1)) == pytest.approx(0.05, rel=1e-9)
    # The default policy's unit, the person, on the answer's table and on the budget.
    assert "95% intervals (privacy unit: one person, up to 3 records)</caption>" in answer
    assert "Privacy unit: one person, up to 3 records. Zero-concentrated" in answer
    assert "one case record" not in answer
    assert "You have not run a query yet." not in researcher.get("/researcher/queries").text

    download = researcher.get(ran.headers["Location"] + ".csv")
    assert download.status_code == 200 and download.mimetype == "text/csv"
    lines = download.text.splitlines()
    assert lines[0] == "gender,value,ci95_low,ci95_high,rho,epsilon,delta,privacy_unit"
    assert any(line.startswith("Female,") for line in lines[1:])
    assert all(line.endswith(',"one person, up to 3 records"') for line in lines[1:])
    other = _client(app)
    sign_in(other, make_person("Other University", ["researcher"]))
    assert other.get(ran.headers["Location"]).status_code == 404
    assert other.get(ran.headers["Location"] + ".csv").status_code == 404


def test_a_refused_query_says_why_and_spends_nothing(
    app: APIFlask, make_person: MakePerson
) -> None:
    researcher = _client(app)
    sign_in(researcher, make_person("University", ["researcher"]))
    form = {
        "measure": "count",
        "group_by": "noSuchField",
        "spend_kind": "rho",
        "spend": "0.05",
        "action": "run",
        "csrf_token": csrf_token(researcher, "/researcher/queries"),
    }
    refused = researcher.post("/researcher/queries", data=form)
    assert refused.status_code == 400
    assert "The query was refused." in refused.text and "group_by" in refused.text
    assert 'id="budget-spent" data-rho="0"' in refused.text


def test_an_unexpected_error_shows_a_page_without_its_message(
    app: APIFlask, make_person: MakePerson, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("case 1618c7ce has gender Female")

    client = _client(app)
    sign_in(client, make_person("Broken NGO", ["partner"]))
    monkeypatch.setattr(uploads, "list_uploads", broken)
    page = client.get("/partner/uploads")
    assert page.status_code == 500 and page.mimetype == "text/html"
    assert "1618c7ce" not in page.text and "Female" not in page.text
    assert page.headers["X-Request-ID"] in page.text, "the page names the request for operators"


def test_a_file_over_the_size_cap_is_refused_plainly(
    app: APIFlask, make_person: MakePerson
) -> None:
    client = _client(app)
    sign_in(client, make_person("Big NGO", ["partner"]))
    token = csrf_token(client, "/partner/uploads/new")
    app.config["MAX_UPLOAD_BYTES"] = 4096
    body = CTDC_FILE.read_bytes()
    assert len(body) > 4096
    refused = client.post(
        "/partner/uploads/new",
        data={"csrf_token": token, "file": (io.BytesIO(body), "cases.csv")},
        content_type="multipart/form-data",
    )
    assert refused.status_code == 413 and refused.mimetype == "text/html"
    assert "larger than the hub accepts" in refused.text
    assert "Your organisation has not uploaded anything yet." in client.get("/partner/uploads").text


def test_the_form_offers_only_what_the_release_policy_lists(
    app: APIFlask, make_person: MakePerson
) -> None:
    researcher = _client(app)
    sign_in(researcher, make_person("University", ["researcher"]))
    page = researcher.get("/researcher/queries").text
    group_select = page.split('id="group_by"', 1)[1].split("</select>", 1)[0]
    assert 'value="gender"' in group_select
    assert 'value="meansOfControlThreats"' not in group_select, "not in the default policy"
    assert "release policy version 1" in page
    # Sent anyway, the unlisted field is refused by the service, inline, and nothing is spent.
    refused = researcher.post(
        "/researcher/queries",
        data={
            "measure": "count",
            "group_by": "meansOfControlThreats",
            "spend_kind": "rho",
            "spend": "0.05",
            "action": "run",
            "csrf_token": csrf_token(researcher, "/researcher/queries"),
        },
    )
    assert refused.status_code == 403
    assert "The query was refused." in refused.text and "meansOfControlThreats" in refused.text
    assert 'id="budget-spent" data-rho="0"' in refused.text


def _run_query(
    app: APIFlask, make_person: MakePerson, org: str, group_by: str
) -> tuple[FlaskClient, str]:
    """A partner of ``org`` uploads the example file; a researcher runs a count by ``group_by``.

    Returns the researcher's client and the answer's page.
    """
    partner, researcher = _client(app), _client(app)
    sign_in(partner, make_person(f"{org} NGO", ["partner"]))
    assert _upload(partner, "cases.csv", CTDC_FILE.read_bytes()).status_code == 303  # type: ignore[attr-defined]
    sign_in(researcher, make_person(f"{org} University", ["researcher"]))
    form = {
        "measure": "count",
        "group_by": group_by,
        "spend_kind": "rho",
        "spend": "0.05",
        "action": "run",
        "csrf_token": csrf_token(researcher, "/researcher/queries"),
    }
    ran = researcher.post("/researcher/queries", data=form)
    assert ran.status_code == 303, ran.text[:300]
    return researcher, ran.headers["Location"]


def test_an_answer_by_country_is_a_map_of_its_released_values(
    app: APIFlask, make_person: MakePerson
) -> None:
    researcher, location = _run_query(app, make_person, "Map", "CountryOfExploitation")
    page = researcher.get(location).text
    assert 'id="answer-chart"' in page and "Darker countries have larger released values" in page
    drawn = dict(
        re.findall(
            r'aria-label="([^"]+?): ([^" ]+)[^"]*" [^>]*aria-roledescription="geoshape"', page
        )
    )
    # Each country of the CSV download is drawn with its released value, named in English.
    lines = researcher.get(location + ".csv").text.splitlines()[1:]
    released = {line.split(",")[0]: line.split(",")[1] for line in lines}
    names = {"UA": "Ukraine", "PH": "Philippines", "US": "United States"}
    shown = [code for code in released if code in names]
    assert shown, "the example file has cases in these countries"
    for code in shown:
        value = released[code]
        if value == "":
            assert drawn[names[code]] == "suppressed"
        else:
            assert float(drawn[names[code]]) == float(value)


@pytest.mark.usefixtures("case_record_policy")
def test_an_answer_under_a_case_record_policy_states_that_unit(
    app: APIFlask, make_person: MakePerson
) -> None:
    researcher, location = _run_query(app, make_person, "Case", "gender")
    answer = researcher.get(location).text
    assert "95% intervals (privacy unit: one case record)</caption>" in answer
    assert "Privacy unit: one case record. Zero-concentrated" in answer
    assert "one person" not in answer
    lines = researcher.get(location + ".csv").text.splitlines()
    assert len(lines) > 1 and all(line.endswith(",one case record") for line in lines[1:])
    french = researcher.get(location, headers={"Accept-Language": "fr"}).text
    assert "(unité de confidentialité : un dossier de cas)</caption>" in french
