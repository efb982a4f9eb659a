"""The toolkit's linkage encoder: keyed, salted, typo-tolerant, and pure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import contributors.linkage as linkage
from bench.linkage_people import duplicates, people
from contributors.linkage import (
    BITS,
    LinkageError,
    LinkageSecretError,
    Person,
    dice,
    encode,
    encode_all,
)

SECRET = "linkage-secret-shared-by-partners-0001"
OTHER = "another-secret-of-other-partners-00002"


def test_same_person_same_encoding_and_folding() -> None:
    a = encode(Person("Zoë", "O'Brien", "1990-05-17", "female", "BR"), SECRET)
    b = encode(Person(" zoe ", "OBRIEN", "19900517", "F", "br"), SECRET)
    assert a == b
    assert len(a) == BITS // 8


def test_typo_keeps_most_bits_another_person_does_not() -> None:
    a = encode(Person("Maria", "Silva", "1990-05-17"), SECRET)
    typo = encode(Person("Mraia", "Silva", "1990-05-17"), SECRET)
    stranger = encode(Person("Joana", "Pereira", "1990-11-02"), SECRET)
    assert dice(a, typo) > 0.8
    assert dice(a, stranger) < 0.5


def test_the_secret_keys_every_bit() -> None:
    person = Person("Maria", "Silva", "1990-05-17")
    a, b = encode(person, SECRET), encode(person, OTHER)
    # Under another secret the bits are unrelated: the overlap of two random sets of this
    # density, far below what a typo leaves.
    assert dice(a, b) < 0.5


def test_salt_moves_every_token_with_the_year() -> None:
    born_90 = Person("Maria", "Silva", "1990-05-17")
    born_91 = Person("Maria", "Silva", "1991-05-17")
    salted = dice(encode(born_90, SECRET), encode(born_91, SECRET))
    plain = dice(encode(born_90, SECRET, salted=False), encode(born_91, SECRET, salted=False))
    assert plain > 0.85  # without the salt, only the year's own bits differ
    assert salted < 0.3  # with it, the names no longer share bits across birth years


def test_short_secret_refused() -> None:
    with pytest.raises(LinkageSecretError, match="at least 32 bytes"):
        encode(Person("Maria"), "short")


def test_bad_birth_date_names_row_and_field_never_the_value() -> None:
    rows = [Person("Ana", birth_date="1990"), Person("Bea", birth_date="31/02/1990")]
    with pytest.raises(LinkageError) as error:
        encode_all(rows, SECRET)
    assert str(error.value).startswith("row 2, field birth date:")
    assert "31/02" not in str(error.value)


def test_generated_duplicates_are_closer_than_strangers() -> None:
    originals = people(300, seed=7)
    copies = duplicates(originals, seed=8)
    a, b = encode_all(originals, SECRET), encode_all(copies, SECRET)
    same = sorted(dice(x, y) for x, y in zip(a, b, strict=True))
    strangers = sorted(dice(x, y) for x, y in zip(a, b[1:] + b[:1], strict=True))
    # Most duplicates (all but those whose year of birth was mistyped) stay close; almost no
    # pair of strangers does.
    assert same[len(same) // 4] > 0.7
    assert strangers[int(len(strangers) * 0.99)] < 0.6


def test_encoder_is_pure() -> None:
    source = Path(linkage.__file__).read_text(encoding="utf-8")
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert imported <= {
        "__future__",
        "base64",
        "binascii",
        "hashlib",
        "hmac",
        "itertools",
        "re",
        "unicodedata",
        "collections",
        "dataclasses",
    }
