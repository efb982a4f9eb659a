"""Screen a partner table for direct identifiers before anything else looks at it.

Two signals: a column NAME that says it holds a direct identifier (a person's name, e-mail,
phone, identity document, birth date, address, location, or free-text notes), and cell VALUES that
look like one (e-mail addresses, phone numbers, document-number-like tokens, exact dates, street
addresses, long free text), in any column including the schema's own. Schema columns are never
flagged by name: ``caseNo`` holds a keyed pseudonym, not an identifier, although an e-mail, phone
number or date pasted into it is still flagged. A finding names the column and the kind of
identifier and counts the rows; it never carries a value.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from contributors.headers import HeaderMatch, match_headers
from contributors.schema import RecordSchema, load_schema

__all__ = [
    "IdentifierFinding",
    "cell_limit",
    "classify_value",
    "factorize_cells",
    "identifier_kinds",
    "missing_mask",
    "name_kind",
    "screen_column",
    "screen_identifiers",
]


@dataclass(frozen=True)
class IdentifierFinding:
    """One column that looks like it carries a direct identifier.

    :param column: the column's header as written. It may itself be personal data (a file
        without a header row has a data row there): use it on the partner's machine only.
    :param kind: ``name``, ``email``, ``phone``, ``identity-document``, ``birth-date``,
        ``address``, ``location``, ``free-text``, ``date`` or ``long-value``.
    :param rows_flagged: how many rows hold a value of this kind (for a finding by column name,
        how many rows hold any value at all).
    :param reason: why the column was flagged, in words; never a value.
    :param label: how a message that may leave the machine names the column: its schema field,
        or ``column N`` by position (see :attr:`contributors.headers.HeaderMatch.label`).
    """

    column: str
    kind: str
    rows_flagged: int
    reason: str
    label: str

    def as_dict(self) -> dict[str, object]:
        """Return the finding as a JSON-ready mapping, naming the column by its label only."""
        found = asdict(self)
        found["column"] = found.pop("label")
        return found


# Whole words or word runs in a column name (after camelCase and separators are split and accents
# dropped) that mark a direct identifier, in the languages partners write in: English, French,
# Spanish, Portuguese, and Arabic (transliterated, as case systems spell it in Latin letters, and
# in Arabic script). Multi-word entries are matched against the joined words, so
# "prs_FirstName", "first_name" and "FIRSTNAME" all match "first name".
_NAME_WORDS: dict[str, tuple[str, ...]] = {
    "name": (
        # English
        "name",
        "names",
        "first name",
        "firstname",
        "last name",
        "lastname",
        "family name",
        "surname",
        "given name",
        "middle name",
        "second name",
        "full name",
        "maiden name",
        "nickname",
        "alias",
        "aliases",
        "forename",
        # French
        "nom",
        "noms",
        "prenom",
        "prenoms",
        "nom complet",
        "nom de famille",
        "surnom",
        "nom de jeune fille",
        # Spanish
        "nombre",
        "nombres",
        "nombre completo",
        "apellido",
        "apellidos",
        "primer nombre",
        "segundo nombre",
        "apodo",
        # Portuguese
        "nome",
        "nomes",
        "nome completo",
        "sobrenome",
        "apelido",
        "primeiro nome",
        "nome de familia",
        # Arabic, transliterated (ism: name; laqab: surname or title; kunya; nasab: lineage)
        "ism",
        "al ism",
        "alism",
        "ism kamil",
        "al ism al kamil",
        "ism al aila",
        "ism al ab",
        "ism al umm",
        "laqab",
        "kunya",
        "kunyah",
        "nasab",
        # Arabic script: ism, al-ism, laqab
        "\u0627\u0633\u0645",
        "\u0627\u0644\u0627\u0633\u0645",
        "\u0644\u0642\u0628",
    ),
    "email": (
        "email",
        "e mail",
        "mail address",
        "emailaddress",
        "courriel",
        "adresse electronique",
        "correo",
        "correo electronico",
        "endereco eletronico",
        "bareed",
        "barid",
        "barid iliktruni",
    ),
    "phone": (
        "phone",
        "telephone",
        "mobile",
        "cellphone",
        "cell phone",
        "tel",
        "fax",
        "whatsapp",
        "msisdn",
        "portable",
        "numero de telephone",
        "telefono",
        "movil",
        "celular",
        "numero de telefono",
        "telefone",
        "telemovel",
        "hatif",
        "hatef",
        "jawal",
        "jawwal",
        "raqm al hatif",
        "\u0647\u0627\u062a\u0641",  # hatif
    ),
    "identity-document": (
        "passport",
        "national id",
        "nationalid",
        "identity number",
        "identity card",
        "identity document",
        "id number",
        "idnumber",
        "id card",
        "idcard",
        "ssn",
        "social security",
        "document number",
        "tax id",
        "driving licence",
        "driver license",
        "licence number",
        "license number",
        "passeport",
        "carte d identite",
        "numero d identite",
        "piece d identite",
        "cni",
        "pasaporte",
        "cedula",
        "dni",
        "documento de identidad",
        "numero de documento",
        "passaporte",
        "bilhete de identidade",
        "cpf",
        "carteira de identidade",
        "jawaz",
        "jawaz safar",
        "bitaqa",
        "bitaqat hawiya",
        "raqm watani",
        "\u062c\u0648\u0627\u0632",  # jawaz
    ),
    "birth-date": (
        "birth date",
        "birthdate",
        "date of birth",
        "dob",
        "birthday",
        "born",
        "date de naissance",
        "naissance",
        "ne le",
        "fecha de nacimiento",
        "nacimiento",
        "data de nascimento",
        "nascimento",
        "tarikh al milad",
        "milad",
        "wilada",
        "tarikh al wilada",
    ),
    "location": (
        "latitude",
        "longitude",
        "geolocation",
        "coordinates",
        "gps",
        "lat long",
        "lat lng",
        "latitud",
        "longitud",
        "geolocalisation",
        "geolocalizacion",
        "geolocalizacao",
    ),
    "address": (
        "address",
        "street",
        "postcode",
        "post code",
        "postal code",
        "postalcode",
        "zip",
        "zipcode",
        "zip code",
        "mailing",
        "house number",
        "adresse",
        "code postal",
        "domicile",
        "coordonnees",
        "direccion",
        "domicilio",
        "codigo postal",
        "calle",
        "endereco",
        "morada",
        "rua",
        "unwan",
        "onwan",
        "sakan",
        "\u0639\u0646\u0648\u0627\u0646",  # unwan
    ),
    "free-text": (
        "notes",
        "note",
        "narrative",
        "description",
        "comment",
        "comments",
        "details",
        "remarks",
        "remark",
        "story",
        "free text",
        "freetext",
        "summary",
        "remarques",
        "commentaire",
        "commentaires",
        "observations",
        "recit",
        "histoire",
        "observaciones",
        "comentarios",
        "notas",
        "relato",
        "historia",
        "descripcion",
        "observacoes",
        "descricao",
        "mulahazat",
        "tafasil",
        "qissa",
        "\u0645\u0644\u0627\u062d\u0638\u0627\u062a",  # mulahazat
    ),
}
_NAME_REASONS = {
    "name": "the column name suggests a person's name",
    "email": "the column name suggests e-mail addresses",
    "phone": "the column name suggests phone numbers",
    "identity-document": "the column name suggests identity or travel document numbers",
    "birth-date": "the column name suggests dates of birth",
    "address": "the column name suggests postal addresses",
    "location": "the column name suggests precise geographic coordinates",
    "free-text": "the column name suggests free-text notes or narratives",
}
_VALUE_REASONS = {
    "email": "{n} row(s) hold what looks like an e-mail address",
    "phone": "{n} row(s) hold what looks like a phone number",
    "identity-document": "{n} row(s) hold what looks like an identity or document number",
    "date": "{n} row(s) hold an exact calendar date, which could be a date of birth",
    "address": "{n} row(s) hold what looks like a street address",
    "free-text": "{n} row(s) hold long multi-word text, which may describe a person",
    "long-value": (
        "{n} row(s) hold a value longer than {limit} characters, more than any field of the "
        "record schema takes, which may describe a person"
    ),
}

# Every pattern below is linear-time: each quantifier is bounded, so a match attempt from one
# position reads a bounded number of characters and a search costs at most a constant times the
# cell's length (tests/contributors_schema/test_linear_screen.py checks that every pattern has a
# finite width). Cells are also capped before any pattern runs (see screen_column).
_EMAIL = re.compile(
    r"[A-Za-z0-9._%+'-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}"
)
# a plain decimal (a coordinate, an amount) is not a phone number even with seven digits
_DECIMAL_NUMBER = re.compile(r"^[+-]?\d{1,32}[.,]\d{1,32}$")
_PHONE_SHAPE = re.compile(r"^(\+|00)?[\d\s().\-/]{6,24}$")
_MONTHS = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]{0,6}\.?"
_DATE = re.compile(
    r"^(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}"
    r"([ T]\d{1,2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?"
    r"|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}"
    rf"|\d{{1,2}}(st|nd|rd|th)?\s{{1,3}}{_MONTHS}\s{{0,3}},?\s{{1,3}}\d{{2,4}}"
    rf"|{_MONTHS}\s{{1,3}}\d{{1,2}}(st|nd|rd|th)?\s{{0,3}},?\s{{1,3}}\d{{2,4}})$",
    re.IGNORECASE,
)
_STREET_WORDS = (
    r"street|st|road|rd|avenue|ave|lane|ln|boulevard|blvd|drive|dr|way|place|pl|court|ct"
    r"|square|sq|highway|hwy|close|crescent|terrace|alley|strasse|straße|str|rue|calle|avenida"
    r"|via|ulica|ul|soi|jalan|jl|barangay|brgy|house|apartment|apt|flat|block|building"
)
_WORD = r"\S{1,40}"
_STREET = re.compile(
    rf"(^|[\s,])\d{{1,5}}[A-Za-z]?,?\s{{1,5}}({_WORD}\s{{1,5}}){{0,4}}({_STREET_WORDS})\b\.?"
    rf"|\b({_STREET_WORDS})\.?\s{{1,5}}{_WORD}(\s{{1,5}}{_WORD}){{0,3}}\s{{1,5}}\d{{1,5}}[A-Za-z]?\b"
    rf"|\b(p\.?\s?o\.?\s{{1,5}}box|postfach|apartado)\s{{1,5}}\d{{1,9}}",
    re.IGNORECASE,
)
# Vectorised pre-filters (RE2 and Python syntax alike): every value classify_value flags matches
# them, so only matching values need the exact checks. They run in pyarrow's RE2, which is
# linear-time whatever the pattern, and only over cells already capped in length.
# RE2's \d and \s are ASCII-only while Python's are not, hence the catch-all for other characters.
_UNUSUAL = r"[^\x00-\x7F]|[\x0b\x1c-\x1f]"
PREFILTER = rf"{_UNUSUAL}|@|\d\D*\d\D*\d\D*\d|\S\s+\S+\s+\S|\d[A-Za-z]?,?\s+\S|\S\s+\d"
PSEUDONYM_PREFILTER = (
    rf"{_UNUSUAL}|@|^[\d\s().+/\-]{{7,}}$|^\d{{1,4}}[-/.]\d{{1,2}}[-/.]\d{{1,4}}"
    r"|^\d{1,2}(?:st|nd|rd|th)?\s+[A-Za-z]|^[A-Za-z]{3,9}\.?\s+\d"
)
_ID_TOKEN = re.compile(r"^(?=(?:\D{0,24}\d){4})[A-Za-z0-9][A-Za-z0-9\-/ ]{4,22}[A-Za-z0-9]$")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_WORD_BREAK = re.compile(r"[\W_]{1,64}|(?<=\D)(?=\d)|(?<=\d)(?=\D)")


def _digits(value: str) -> int:
    return sum(character.isdigit() for character in value)


def _is_phone(value: str) -> bool:
    """Tell whether ``value`` is shaped like a phone number.

    Bare digit runs are phone-like only from 10 digits (or 9 with a trunk 0), so short numeric
    case numbers and counts are not mistaken for phones.

    >>> [_is_phone(v) for v in ("+254 712 345678", "0712345678", "(555) 123-4567", "97750")]
    [True, True, True, False]
    >>> _is_phone("-12.34567")
    False
    """
    if not _PHONE_SHAPE.match(value) or _DECIMAL_NUMBER.match(value):
        return False
    digits = _digits(value)
    if not 7 <= digits <= 15:
        return False
    if value.isdigit():
        return digits >= 10 or (value.startswith("0") and digits >= 9)
    return True


def _is_free_text(value: str) -> bool:
    words = value.split()
    return len(words) >= 5 or (len(words) >= 3 and len(value) >= 40)


def classify_value(value: str, *, pseudonym: bool = False) -> str | None:
    """Return the kind of direct identifier ``value`` looks like, or ``None``.

    :param value: one cell, as a string.
    :param pseudonym: the cell belongs to the pseudonym field, where long hex or alphanumeric
        tokens are expected, so only e-mails, phones and dates count.

    >>> classify_value("maria.lopez@example.org")
    'email'
    >>> classify_value("+63 917 555 0199")
    'phone'
    >>> classify_value("P1234567A")
    'identity-document'
    >>> classify_value("1990-04-12")
    'date'
    >>> classify_value("12 Rizal Street, Quezon City")
    'address'
    >>> classify_value("She was recruited at a bus station by a man who promised work")
    'free-text'
    >>> [classify_value(v) for v in ("Female", "18--20", "2019", "1", "Case Management")]
    [None, None, None, None, None]
    >>> classify_value("9f2c" * 16, pseudonym=True) is None
    True
    """
    text = value.strip()
    if not text:
        return None
    if _EMAIL.search(text):
        return "email"
    if _DATE.match(text):
        return "date"
    if _is_phone(text):
        return "phone"
    if pseudonym:
        return None
    if _STREET.search(text):
        return "address"
    if _is_free_text(text):
        return "free-text"
    if _ID_TOKEN.match(text) and (_digits(text) >= 6 or any(c.isalpha() for c in text)):
        return "identity-document"
    return None


def _split_words(name: str) -> list[str]:
    """Split a column name into lower-case words at separators, camelCase and digits.

    Accents are dropped first, so ``Prénom`` and ``Prenom`` are the same word; letters of other
    scripts are kept.

    >>> _split_words("prs_FirstName")
    ['prs', 'first', 'name']
    >>> _split_words("dateOfBirth")
    ['date', 'of', 'birth']
    >>> _split_words("E-mail address")
    ['e', 'mail', 'address']
    >>> _split_words("Teléfono móvil"), _split_words("ism_al-'aila")
    (['telefono', 'movil'], ['ism', 'al', 'aila'])
    """
    decomposed = unicodedata.normalize("NFKD", name)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    spaced = _CAMEL.sub(" ", bare)
    return [word for word in _WORD_BREAK.split(spaced.casefold()) if word]


def name_kind(column: str) -> str | None:
    """Return the kind of direct identifier a column NAME announces, or ``None``.

    :param column: a column name.

    >>> [name_kind(c) for c in ("prs_FirstName", "prs_Birthdate", "vic_DetailsOfVulnerabilities")]
    ['name', 'birth-date', 'free-text']
    >>> [name_kind(c) for c in ("gender", "citizenship", "typeOfLabourOther")]
    [None, None, None]
    """
    words = _split_words(column)
    joined = " " + " ".join(words) + " "
    glued = "".join(words)
    for kind, phrases in _NAME_WORDS.items():
        for phrase in phrases:
            if " " in phrase:
                if f" {phrase} " in joined or phrase.replace(" ", "") == glued:
                    return kind
            elif phrase in words or phrase == glued:
                return kind
    return None


def identifier_kinds(texts: pd.Series, *, pseudonym: bool = False) -> list[str | None]:
    """Return :func:`classify_value` of every (stripped) string in ``texts``, quickly.

    A vectorised regular expression first keeps only the values that could be an identifier of
    any kind (a superset, checked by the tests), so only those reach the exact Python checks;
    a column of 100,000 distinct case pseudonyms then costs a few milliseconds.

    :param texts: stripped strings, without missing values.
    :param pseudonym: the values belong to the pseudonym field (see :func:`classify_value`).

    >>> identifier_kinds(pd.Series(["Female", "x@example.org", "12345"], dtype="string"))
    [None, 'email', None]
    """
    kinds: list[str | None] = [None] * len(texts)
    if not len(texts):
        return kinds
    pattern = PSEUDONYM_PREFILTER if pseudonym else PREFILTER
    # pyarrow's RE2 runs over the whole array in C++; pandas' str.contains would fall back to
    # Python's re one value at a time for this pattern
    values = texts.astype(object).tolist()
    matches = pc.match_substring_regex(pa.array(values, pa.string()), pattern)
    candidates = matches.fill_null(False).to_numpy(zero_copy_only=False)
    for index in np.flatnonzero(candidates):
        kinds[index] = classify_value(str(values[index]), pseudonym=pseudonym)
    return kinds


def factorize_cells(cells: pd.Series) -> tuple[npt.NDArray[np.intp], pd.Series]:
    """Return each row's index into the distinct values, and those values stripped.

    A true missing cell gets index ``-1``.

    :param cells: one column.

    >>> codes, uniques = factorize_cells(pd.Series([" a", "b", None, "a"], dtype="string"))
    >>> codes.tolist(), uniques.tolist()
    ([0, 1, -1, 2], ['a', 'b', 'a'])
    """
    codes, uniques = pd.factorize(cells.astype("string"), use_na_sentinel=True)
    stripped = pd.Series(uniques, dtype="string").str.strip()
    return np.asarray(codes, dtype=np.intp), stripped


def missing_mask(uniques: pd.Series, missing: Collection[str]) -> npt.NDArray[np.bool_]:
    """Tell which values case-fold to one of the ``missing`` spellings (already case-folded).

    Case folding never shortens a string (each character folds to one to three), so a value
    longer than the longest spelling cannot be one and is not folded: a column of 100,000
    distinct case pseudonyms is then decided by its lengths alone.

    :param uniques: strings (a missing cell is not a spelling).
    :param missing: the case-folded spellings of a missing value.

    >>> missing_mask(pd.Series(["NULL", "n/a", "Female", "x" * 80], dtype="string"),
    ...              {"null", "n/a"}).tolist()
    [True, True, False, False]
    """
    mask = np.zeros(len(uniques), dtype=bool)
    if not len(uniques) or not missing:
        return mask
    longest = max(len(spelling) for spelling in missing)
    lengths = uniques.str.len().to_numpy(dtype=np.int64, na_value=0)
    short = np.flatnonzero(lengths <= longest)
    if len(short):
        folded = uniques.iloc[short].str.casefold()
        mask[short] = folded.isin(missing).to_numpy(dtype=bool, na_value=False)
    return mask


def screen_column(
    match: HeaderMatch,
    codes: npt.NDArray[np.intp],
    uniques: pd.Series,
    schema: RecordSchema,
) -> list[IdentifierFinding]:
    """Screen one column, given as :func:`factorize_cells` returns it.

    Every column is screened by its values, the schema's own included (``caseNo`` too); only a
    column that names no schema field is also screened by its header. No pattern ever sees a
    cell longer than :func:`cell_limit`: a longer cell in a schema column is refused by
    validation, and in any other column it is itself a finding (``long-value``).

    :param match: the column's header and the schema field it names, if any.
    :param codes: each row's index into ``uniques`` (``-1`` for a missing cell).
    :param uniques: the column's distinct values, stripped.
    :param schema: the record schema.
    """
    findings: list[IdentifierFinding] = []
    present = ~missing_mask(uniques, {value.casefold() for value in schema.missing_values})
    counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
    spec = schema.field(match.field) if match.field is not None else None
    kind = None if spec is not None else name_kind(match.header)
    label = match.label
    if kind is not None:
        findings.append(
            IdentifierFinding(
                column=match.header,
                kind=kind,
                rows_flagged=int(counts[present].sum()),
                reason=_NAME_REASONS[kind],
                label=label,
            )
        )
    limit = cell_limit(schema, match.field)
    fits = uniques.str.len().to_numpy(dtype=np.int64, na_value=0) <= limit
    per_kind: dict[str, int] = {}
    if spec is None and (present & ~fits).any():
        per_kind["long-value"] = int(counts[present & ~fits].sum())
    candidates = present & fits
    if spec is not None and spec.pattern is not None and candidates.any():
        # a value of the field's declared form (a case pseudonym: 64 hex digits) is no identifier
        formed = uniques.str.fullmatch(spec.pattern).to_numpy(dtype=bool, na_value=False)
        candidates &= ~formed
    positions = np.flatnonzero(candidates)
    kinds = identifier_kinds(uniques.iloc[positions])
    for position, value_kind in zip(positions, kinds, strict=True):
        if value_kind is None or (value_kind == "date" and spec is not None and spec.date_as_year):
            continue  # a date in a year field is read as its year; the rest is never kept
        per_kind[value_kind] = per_kind.get(value_kind, 0) + int(counts[position])
    for value_kind, rows in per_kind.items():
        if value_kind == kind:
            continue  # the name already flagged this column for the same kind
        findings.append(
            IdentifierFinding(
                column=match.header,
                kind=value_kind,
                rows_flagged=rows,
                reason=_VALUE_REASONS[value_kind].format(n=rows, limit=limit),
                label=label,
            )
        )
    return findings


def cell_limit(schema: RecordSchema, field: str | None) -> int:
    """Return the longest cell a column may hold before any pattern looks at it.

    A schema field's limit is its :attr:`~contributors.schema.SchemaField.longest_input`; a
    column that names no field gets the largest of those, since no field would take more.

    :param schema: the record schema.
    :param field: the schema field the column names, or ``None``.

    >>> schema = load_schema()
    >>> cell_limit(schema, "isAbduction"), cell_limit(schema, None)
    (37, 160)
    """
    if field is not None:
        return schema.field(field).longest_input
    return max(spec.longest_input for spec in schema.fields)


def screen_identifiers(
    frame: pd.DataFrame, schema: RecordSchema | None = None
) -> list[IdentifierFinding]:
    """Flag the columns of ``frame`` that look like they carry direct identifiers.

    Headers are matched to the schema first (:func:`contributors.headers.match_headers`), so a
    schema field under another spelling is screened as that field. Values are examined once per
    distinct value, so the whole CTDC file is screened quickly.

    :param frame: a partner table, every column as strings.
    :param schema: the record schema; defaults to :func:`~contributors.schema.load_schema`.
    :returns: one finding per column and kind, in column order.

    >>> frame = pd.DataFrame({"gender": ["Female"], "Phone": ["+1 555 0100 22"]}, dtype="string")
    >>> [(f.column, f.label, f.kind, f.rows_flagged) for f in screen_identifiers(frame)]
    [('Phone', 'column 2', 'phone', 1)]
    """
    schema = schema or load_schema()
    findings: list[IdentifierFinding] = []
    mapping = match_headers(frame.columns, schema)
    for position, match in enumerate(mapping.matches):
        codes, uniques = factorize_cells(frame.iloc[:, position])
        findings.extend(screen_column(match, codes, uniques, schema))
    return findings
