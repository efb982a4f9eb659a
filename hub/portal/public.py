"""Public pages: home, the data dictionary, how privacy is protected, the language switch."""

from __future__ import annotations

import json
from datetime import datetime
from fractions import Fraction
from typing import Any

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext

from contributors.schema import SchemaField, load_schema
from hub.db import get_session
from hub.portal import i18n, releases
from hub.portal.access import local_path, public
from hub.services import ledger, policies


def register(bp: Blueprint) -> None:
    """Attach the public pages to the portal's blueprint."""
    bp.add_url_rule("/", "home", home)
    bp.add_url_rule("/dictionary", "dictionary", dictionary)
    bp.add_url_rule("/privacy", "privacy", privacy)
    bp.add_url_rule("/language", "set_language", set_language, methods=["POST"])


@public
def home() -> ResponseReturnValue:
    """What the hub is; the latest published release's headline figures once there is one."""
    release, headlines = releases.latest_release(get_session())
    return render_template(
        "portal/home.html",
        release=release,
        published=None if release is None else datetime.fromisoformat(release["published_at"]),
        headlines=headlines,
    )


def _dictionary_entry(spec: SchemaField, document: dict[str, Any]) -> dict[str, Any]:
    raw = document.get("ctdhub:codeDescriptions", {})
    countries = spec.aliases and spec.codes is not None and all(len(c) == 2 for c in spec.codes)
    return {
        "spec": spec,
        # The schema's titles are in the catalogues too (tests/hub_portal/test_translations.py).
        "title": gettext(spec.title),
        "quasi_identifier": spec.role == "quasi_identifier",
        "countries": bool(countries),
        "codes": [
            {
                "code": code,
                "description": raw.get(code),
                "band": dict((b[0], (b[1], b[2])) for b in spec.band_bounds or ()).get(code),
            }
            for code in (spec.codes or ())
        ],
    }


def group_titles() -> dict[str, str]:
    """Return the data dictionary's group headings in the request's language, by schema group."""
    return {
        "case": gettext("The case"),
        "person": gettext("The person"),
        "exploitation": gettext("Exploitation"),
        "type of exploitation": gettext("Type of exploitation"),
        "type of forced labour": gettext("Type of forced labour"),
        "type of sexual exploitation": gettext("Type of sexual exploitation"),
        "means of control": gettext("Means of control"),
        "recruitment": gettext("Recruitment"),
        "recruiter relation": gettext("Relation to the recruiter"),
    }


@public
def dictionary() -> ResponseReturnValue:
    """The data dictionary, generated from the record schema."""
    schema = load_schema()
    documents = {item["name"]: item for item in json.loads(schema.document)["fields"]}
    groups: dict[str, list[dict[str, Any]]] = {}
    for spec in schema.fields:
        groups.setdefault(spec.group, []).append(_dictionary_entry(spec, documents[spec.name]))
    return render_template(
        "portal/dictionary.html",
        schema=schema,
        groups=groups,
        group_titles=group_titles(),
        quasi_identifiers=schema.quasi_identifiers,
    )


@public
def privacy() -> ResponseReturnValue:
    """How the hub applies k-anonymity, suppression and differential privacy."""
    # The caps of the release policy in force (its first version is adopted from the settings).
    policy = policies.budget_policy(
        policies.active_policy(get_session(), current_app.config), current_app.config
    )
    display_delta = policy.display_delta
    schema = load_schema()
    return render_template(
        "portal/privacy.html",
        dataset_cap=ledger.amount_json(Fraction(policy.dataset_rho), Fraction(0), display_delta),
        allowance=ledger.amount_json(Fraction(policy.researcher_rho), Fraction(0), display_delta),
        quasi_identifiers=[gettext(schema.field(name).title) for name in schema.quasi_identifiers],
        policy_version=policy.policy_version,
        privacy_unit=policy.unit,
    )


@public
def set_language() -> ResponseReturnValue:
    """Keep the language chosen with the switch, and go back to the page it was chosen on."""
    chosen = request.form.get("language", "")
    if chosen in i18n.LANGUAGES:
        session[i18n.SESSION_KEY] = chosen
    back = local_path(request.form.get("next")) or url_for("portal.home")
    return redirect(back, 303)
