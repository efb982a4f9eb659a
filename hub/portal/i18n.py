"""The portal's languages: English, French, Spanish and Arabic, from the ``.po`` files in the repo.

The catalogues are compiled in memory from ``hub/translations/<lang>/LC_MESSAGES/messages.po``
when first used, so no compiled ``.mo`` file is kept in the repository or has to be built before
the hub starts. Numbers, dates and country names come from CLDR through Babel in the chosen
language. A person chooses a language with the switch (kept in their session) or their browser's
``Accept-Language``.
"""

from __future__ import annotations

import functools
import io
import json
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import IO, Any

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from flask import Flask, request, session
from flask_babel import Babel, Domain, get_locale, gettext, ngettext

from disclosure_control.person import PrivacyUnit
from hub.services.releases import LINKAGE_UNIT

#: The portal's languages, in the order the switch lists them: IOM's official languages and
#: Arabic (CTDC's own pages are in French and Arabic too).
LANGUAGES: tuple[str, ...] = ("en", "fr", "es", "ar")
#: Languages written right to left.
RIGHT_TO_LEFT = frozenset({"ar"})
DEFAULT_LANGUAGE = "en"
SESSION_KEY = "language"


def translations_directory() -> Path:
    """Return the folder of the ``.po`` catalogues (package data of ``hub``)."""
    return Path(str(resources.files("hub") / "translations"))


def catalogue_path(language: str) -> Path:
    """Return the ``.po`` file of one language."""
    return translations_directory() / language / "LC_MESSAGES" / "messages.po"


@functools.cache
def compiled(language: str) -> NullTranslations:
    """Compile a language's catalogue in memory (English, the source language, needs none)."""
    if language == DEFAULT_LANGUAGE:
        return Translations()
    with catalogue_path(language).open("rb") as handle:
        catalogue = read_po(handle, locale=language)
    buffer = io.BytesIO()
    write_mo(buffer, catalogue)  # fuzzy entries are left out: they are not translations yet
    buffer.seek(0)
    return Translations(fp=buffer)


class CatalogueDomain(Domain):  # type: ignore[misc]  # flask-babel ships no type hints
    """Flask-Babel's message domain, reading the catalogues compiled by :func:`compiled`."""

    def get_translations(self) -> NullTranslations:
        """Return the translations of the request's language."""
        locale = get_locale()
        return compiled(locale.language if locale is not None else DEFAULT_LANGUAGE)


class PortalBabel(Babel):  # type: ignore[misc]  # flask-babel ships no type hints
    """Flask-Babel with the in-memory catalogues."""

    @functools.cached_property
    def domain_instance(self) -> CatalogueDomain:
        """Return the one message domain."""
        return CatalogueDomain()


def select_language() -> str:
    """Return the request's language: the person's choice, else their browser's, else English."""
    chosen = session.get(SESSION_KEY)
    if chosen in LANGUAGES:
        return str(chosen)
    return request.accept_languages.best_match(LANGUAGES) or DEFAULT_LANGUAGE


def current_language() -> str:
    """Return the language the current page is rendered in."""
    locale = get_locale()
    return locale.language if locale is not None else DEFAULT_LANGUAGE


def language_name(language: str) -> str:
    """Return a language's name in that language (how the switch shows it).

    >>> language_name("ar"), language_name("fr")
    ('العربية', 'français')
    """
    name: str = Locale.parse(language).get_display_name(language) or language
    return name


def country_name(alpha2: str, language: str) -> str:
    """Return a country's name from CLDR in ``language`` (the code itself if CLDR has none).

    >>> country_name("CI", "fr"), country_name("DE", "es")
    ('Côte d’Ivoire', 'Alemania')
    """
    name: str = Locale.parse(language).territories.get(alpha2.upper(), alpha2)
    return name


#: Where a description's sentence ends: after a full stop (or one closing a parenthesis), before
#: the capital letter or parenthesis that opens the next ("e.g. broker" does not end one).
_SENTENCE_END = re.compile(r"(?<=\.)\s+(?=[A-Z(])|(?<=\.\))\s+(?=[A-Z])")


def sentences(text: str) -> list[str]:
    """Split a record schema description into its sentences, each a message to translate.

    Descriptions share sentences (every flag's coding note), so each is translated once.

    >>> sentences("The person was tricked. Coded 1 (yes) or 0 (no); e.g. broker. (A note.) End.")
    ['The person was tricked.', 'Coded 1 (yes) or 0 (no); e.g. broker.', '(A note.)', 'End.']
    """
    return [part for part in _SENTENCE_END.split(text.strip()) if part]


def translated_description(text: str) -> str:
    """Return a record schema description in the request's language, sentence by sentence."""
    return " ".join(gettext(sentence) for sentence in sentences(text))


def extract_schema_texts(
    fileobj: IO[bytes], keywords: object, comment_tags: object, options: object
) -> Iterator[tuple[int, None, str, list[str]]]:
    """Yield the record schema's texts for pybabel (a Babel extraction method).

    The data dictionary shows each field by its title and description, and release pages name
    derived attributes by their titles: each title, and each sentence of each description, is
    a message to translate.
    """
    document = json.load(fileobj)
    for item in document["fields"]:
        name = item["name"]
        yield 1, None, item["title"], [f"title of the record schema's field {name}"]
        for sentence in sentences(item.get("description", "")):
            yield 1, None, sentence, [f"from the description of the record schema's field {name}"]
    for item in document.get("ctdhub:derivedAttributes", []):
        yield 1, None, item["title"], [f"title of the record schema's derived {item['name']}"]


def unit_words(unit: PrivacyUnit | str | None) -> str:
    """Return a privacy unit in words in the request's language ("one person, up to 3 records").

    :param unit: the unit, or its description as an answer or a release's notes stored it
        (:attr:`PrivacyUnit.description`); None is the case record, the unit of everything
        stored before the unit was recorded. A description this function does not know is
        returned as stored, in English, rather than named wrongly.
    """
    if isinstance(unit, str):
        if unit == LINKAGE_UNIT:  # the linkage count's: every record of a person, not c
            linked: str = gettext("one person (all their records, as the hub links them)")
            return linked
        named = PrivacyUnit.from_description(unit)
        if named is None:
            return unit
        unit = named
    c = None if unit is None else unit.records_per_person
    words: str = (
        gettext("one case record")
        if c is None
        else ngettext("one person, up to %(num)d record", "one person, up to %(num)d records", c)
    )
    return words


def init_app(app: Flask) -> None:
    """Install Flask-Babel and the page helpers that need the language."""
    PortalBabel(app, locale_selector=select_language)

    @app.context_processor
    def _language() -> dict[str, Any]:
        language = current_language()
        return {
            "language": language,
            "direction": "rtl" if language in RIGHT_TO_LEFT else "ltr",
            "languages": [(code, language_name(code)) for code in LANGUAGES],
            "country_name": lambda code: country_name(code, language),
            "translated_description": translated_description,
            "unit_words": unit_words,
        }
