"""The public pages: what they show, in which language and direction, and what they never show."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient

from contributors.schema import load_schema
from hub.portal.i18n import LANGUAGES
from hub.portal.public import group_titles
from tests.hub_portal.conftest import csrf_token

PUBLIC_PAGES = ("/", "/dictionary", "/privacy", "/sign-in")


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("path", PUBLIC_PAGES)
def test_public_pages_in_each_language(client: FlaskClient, path: str, language: str) -> None:
    response = client.get(path, headers={"Accept-Language": f"{language},en;q=0.5"})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    direction = "rtl" if language == "ar" else "ltr"
    assert f'<html lang="{language}" dir="{direction}">' in page
    # Landmarks and the skip link a keyboard or screen-reader user needs.
    assert '<a class="skip-link" href="#content">' in page and '<main id="content"' in page
    assert "<nav aria-label=" in page
    # Every asset is the hub's own, and nothing runs inline.
    assert "<script" not in page
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page), "an asset from another site"


def test_home_says_no_release_is_published_yet(client: FlaskClient) -> None:
    english = client.get("/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    french = client.get("/", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert "No release has been published yet." in english
    assert "Aucune publication n’a encore été faite." in french


def test_dictionary_lists_every_field_and_marks_quasi_identifiers(client: FlaskClient) -> None:
    page = client.get("/dictionary").get_data(as_text=True)
    schema = load_schema()
    for spec in schema.fields:
        assert f'id="field-{spec.name}"' in page, spec.name
    for name in schema.quasi_identifiers:
        article = page.split(f'id="field-{name}"', 1)[1].split("</article>", 1)[0]
        assert '<strong class="badge">yes</strong>' in article, name
    not_quasi = next(f.name for f in schema.fields if f.role != "quasi_identifier")
    article = page.split(f'id="field-{not_quasi}"', 1)[1].split("</article>", 1)[0]
    assert '<strong class="badge">' not in article


def test_country_names_come_from_cldr_in_the_chosen_language(client: FlaskClient) -> None:
    french = client.get("/dictionary", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    arabic = client.get("/dictionary", headers={"Accept-Language": "ar"}).get_data(as_text=True)
    assert "<td><code>DE</code></td><td>Allemagne</td>" in french
    assert "<td><code>DE</code></td><td>ألمانيا</td>" in arabic
    # The dictionary's labels (the schema's field titles) are translated too.
    assert 'id="field-CountryOfExploitation">Pays d’exploitation <code>' in french
    assert 'id="field-CountryOfExploitation">بلد الاستغلال <code>' in arabic


def test_privacy_page_states_the_budget_from_the_settings(client: FlaskClient) -> None:
    page = client.get("/privacy", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "<td>1</td>" in page  # DP_DATASET_RHO_CAP = 1.0
    assert "<td>0.25</td>" in page  # DP_RESEARCHER_RHO_ALLOWANCE
    for name in load_schema().quasi_identifiers:
        assert f"<li>{load_schema().field(name).title}</li>" in page
    spanish = client.get("/privacy", headers={"Accept-Language": "es"}).get_data(as_text=True)
    assert "<li>Tramo de edad</li>" in spanish


def test_language_switch_keeps_the_choice(client: FlaskClient) -> None:
    token = csrf_token(client, "/privacy")
    switched = client.post(
        "/language", data={"language": "ar", "next": "/privacy", "csrf_token": token}
    )
    assert switched.status_code == 303 and switched.headers["Location"] == "/privacy"
    page = client.get("/privacy", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert '<html lang="ar" dir="rtl">' in page, "the switch wins over the browser's language"


@pytest.mark.parametrize(
    "target", ["https://elsewhere.example/", "//elsewhere.example/", "/\\elsewhere.example/"]
)
def test_language_switch_never_redirects_off_the_hub(client: FlaskClient, target: str) -> None:
    token = csrf_token(client, "/")
    switched = client.post(
        "/language", data={"language": "es", "next": target, "csrf_token": token}
    )
    assert switched.status_code == 303 and switched.headers["Location"] == "/"


def test_a_form_without_its_csrf_token_is_refused(client: FlaskClient) -> None:
    client.get("/")
    refused = client.post("/language", data={"language": "ar", "next": "/"})
    assert refused.status_code == 400
    page = client.get("/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert 'dir="ltr"' in page, "the refused form changed nothing"


def test_every_schema_group_has_a_translated_heading(client: FlaskClient) -> None:
    groups = {spec.group for spec in load_schema().fields}
    with client.application.test_request_context(headers={"Accept-Language": "es"}):
        titles = group_titles()
    assert groups <= set(titles), f"groups without a heading: {sorted(groups - set(titles))}"
    page = client.get("/dictionary", headers={"Accept-Language": "es"}).get_data(as_text=True)
    assert '<h2 id="group-means-of-control">Medios de control</h2>' in page


def test_a_browser_gets_an_error_page_in_its_language(client: FlaskClient) -> None:
    html = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8", "Accept-Language": "es"}
    page = client.get("/no-such-page", headers=html)
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert '<html lang="es" dir="ltr">' in page.text and "Error 404" in page.text
    # The API's clients keep their problem+json, whatever they accept.
    assert client.get("/v1/no-such-thing", headers=html).mimetype == "application/problem+json"
    assert client.get("/no-such-page").mimetype == "application/problem+json"


def test_the_privacy_page_explains_the_policys_person_unit(client: FlaskClient) -> None:
    page = client.get("/privacy", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "adding or removing any one person changes" in page
    assert "The privacy unit is one person, up to 3 records: records that the hub links" in page
    assert "at most 3 records of a person are counted" in page
    assert "one case record" not in page
    french = client.get("/privacy", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert "L’unité de confidentialité est une personne, jusqu’à 3 dossiers :" in french
    arabic = client.get("/privacy", headers={"Accept-Language": "ar"}).get_data(as_text=True)
    assert "وحدة الخصوصية هي شخص واحد، بحد أقصى 3 سجلات:" in arabic


@pytest.mark.usefixtures("case_record_policy")
def test_the_privacy_page_explains_a_case_record_unit(client: FlaskClient) -> None:
    page = client.get("/privacy", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "The privacy unit is one case record: one victim as reported by one partner." in page
    assert "one person" not in page
