"""Every string of the portal's templates has a translation in French, Spanish and Arabic."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from contributors.schema import load_schema
from hub.portal.i18n import DEFAULT_LANGUAGE, LANGUAGES, catalogue_path, compiled, sentences

ROOT = Path(__file__).resolve().parents[2]
#: The extraction's own mapping, as pybabel reads it.
MAPPING = ROOT / "hub" / "translations" / "babel.cfg"
_PLACEHOLDER = re.compile(r"%(?:\([a-z_]+\))?[sd%]")


def portal_strings() -> set[str]:
    """Return every message id the portal asks to be translated: its modules' and templates'
    strings, and the record schema's field titles and descriptions (the data dictionary's)."""
    with MAPPING.open(encoding="utf-8") as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_the_extraction_finds_the_templates_strings() -> None:
    strings = portal_strings()
    assert "Skip to the main content" in strings and "Data dictionary" in strings
    assert {spec.title for spec in load_schema().fields} <= strings
    # The data dictionary's descriptions too, sentence by sentence.
    assert {s for spec in load_schema().fields for s in sentences(spec.description)} <= strings
    assert len(strings) > 100


@pytest.mark.parametrize("language", [code for code in LANGUAGES if code != DEFAULT_LANGUAGE])
def test_every_string_has_a_translation(language: str) -> None:
    with catalogue_path(language).open("rb") as handle:
        catalogue = read_po(handle, locale=language)
    # A plural message is translated when every one of the language's plural forms is.
    translated = {
        message.id if isinstance(message.id, str) else message.id[0]: message
        for message in catalogue
        if message.id and message.string and all(message.string) and not message.fuzzy
    }
    missing = sorted(portal_strings() - set(translated))
    assert missing == [], f"{language}: untranslated strings {missing}"
    for message in translated.values():
        sources = [message.id] if isinstance(message.id, str) else list(message.id)
        targets = [message.string] if isinstance(message.string, str) else list(message.string)
        if len(targets) > 1:
            assert len(targets) == catalogue.num_plurals, f"{language}: {sources[0]!r}'s forms"
        for target in targets:
            assert sorted(_PLACEHOLDER.findall(sources[-1])) == sorted(
                _PLACEHOLDER.findall(target)
            ), f"{language}: the placeholders of {sources[-1]!r} differ in {target!r}"


def test_a_missing_translation_is_caught(tmp_path: Path) -> None:
    """The check is not vacuous: a catalogue lacking one string fails it."""
    with catalogue_path("fr").open("rb") as handle:
        catalogue = read_po(handle, locale="fr")
    catalogue.delete("Data dictionary")
    assert "Data dictionary" in portal_strings() - {m.id for m in catalogue if m.string}


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_catalogues_compile(language: str) -> None:
    translations = compiled(language)
    expected = {"en": "Home", "fr": "Accueil", "es": "Inicio", "ar": "الصفحة الرئيسية"}
    assert translations.gettext("Home") == expected[language]
