"""Make the sample files in ``examples/``: small, synthetic, reproducible (fixed seed).

Nothing here comes from real case records. ``ctdc_cases.csv`` draws every field at random from
the hub's record schema (``contributors/resources/record_schema.json``), with case ids already
pseudonymised as the toolkit's ``prepare`` writes them, so it is a CTDC-format file the hub
accepts whole. ``htcds_export.csv`` is a case-management export in HTCDS field names, with the
made-up names and birth dates a real export carries, for ``ctdhub-contribute prepare --htcds``
to map, screen and pseudonymise. Run ``.venv/bin/python examples/make_examples.py`` to remake
them; a test checks the committed files are exactly what it makes.
"""

from __future__ import annotations

import datetime as dt
import random
import sys
from pathlib import Path

import pandas as pd

from contributors.htcds import (
    CASE_ID_FIELD,
    EXPLOITATION_CODES,
    GENDER_CODES,
    MEANS_OF_CONTROL_CODES,
    REGISTRATION_DATE_FIELD,
)
from contributors.pseudonym import pseudonymise
from contributors.schema import load_countries, load_schema

HERE = Path(__file__).resolve().parent
CTDC_FILE = HERE / "ctdc_cases.csv"
HTCDS_FILE = HERE / "htcds_export.csv"
ROWS = 40
SEED = 2026
#: The key that pseudonymises the sample's made-up case ids, as ``ctdhub-contribute prepare`` does
#: with a partner's own secret key: the hub accepts only pseudonyms as case ids.
EXAMPLE_PSEUDONYM_KEY = "examples only: never use as a partner's key"
#: Made-up given and family names: the export's identifiers, which never reach the hub.
GIVEN = ("Ana", "Binh", "Chidi", "Dara", "Elif", "Farah", "Goran", "Hana", "Ivan", "Jomo")
FAMILY = ("Alvarez", "Bui", "Cohen", "Diallo", "Eze", "Fonseca", "Garcia", "Haddad", "Ito")


def ctdc_cases(rows: int = ROWS, seed: int = SEED) -> pd.DataFrame:
    """Return ``rows`` random case records in the hub's own format, one column per field."""
    rng = random.Random(seed)
    schema = load_schema()
    columns: dict[str, list[str]] = {}
    for field in schema.fields:
        if field.derived_from is not None:
            continue  # follows from its source field, below
        values: list[str] = []
        for row in range(rows):
            if field.unique:
                values.append(pseudonymise(f"example-{seed}-{row:04d}", EXAMPLE_PSEUDONYM_KEY))
            elif field.codes is not None:
                values.append(rng.choice([*field.codes, *([] if field.required else [""])]))
            elif field.type == "boolean":
                values.append(rng.choice(("1", "0", "0", "")))
            elif field.type == "integer":
                low = field.minimum if field.minimum is not None else 0
                high = field.maximum if field.maximum is not None else low + 20
                values.append(str(rng.randint(max(low, high - 10), high)))
            else:
                values.append("")
        columns[field.name] = values
    for field in schema.fields:
        if field.derived_from is None:
            continue
        source, threshold, below, at_or_above = field.derived_from
        bounds = dict((band, low) for band, low, _high in schema.field(source).band_bounds or ())
        columns[field.name] = [
            "" if not band else below if bounds[band] < threshold else at_or_above
            for band in columns[source]
        ]
    return pd.DataFrame({name: columns[name] for name in schema.names})


def _date(rng: random.Random, first: int, last: int) -> dt.date:
    start = dt.date(first, 1, 1).toordinal()
    return dt.date.fromordinal(rng.randint(start, dt.date(last, 12, 31).toordinal()))


def htcds_export(rows: int = ROWS, seed: int = SEED) -> pd.DataFrame:
    """Return ``rows`` made-up cases as a case-management system exports them in HTCDS."""
    rng = random.Random(seed)
    countries = load_countries()["alpha2"].tolist()
    records = []
    for row in range(rows):
        registered = _date(rng, 2016, 2021)
        born = registered - dt.timedelta(days=rng.randint(8 * 365, 50 * 365))
        records.append(
            {
                CASE_ID_FIELD: f"CM-{seed}-{row:05d}",
                REGISTRATION_DATE_FIELD: f"{registered.isoformat()}T09:30:00.000+0000",
                "prs_FirstName": rng.choice(GIVEN),
                "prs_SecondName": rng.choice(FAMILY),
                "prs_Birthdate": born.isoformat(),
                "prs_Gender": rng.choice(sorted(GENDER_CODES)),
                "prs_Citizenship": rng.choice(countries),
                "vic_MethodsOfControl": ";".join(
                    rng.sample(sorted(MEANS_OF_CONTROL_CODES), rng.randint(0, 3))
                ),
                "vic_TypeOfExploitation": ";".join(
                    rng.sample(sorted(EXPLOITATION_CODES), rng.randint(1, 2))
                ),
                "hte_Type": "Exploitation",
                "hte_Country": rng.choice(countries),
                # Every person here agreed to research use: the walk-through sends every case
                # (a record without consent stays on the partner's machine).
                "con_UseOfData": "true",
                "con_DataForResearch": "true",
            }
        )
    return pd.DataFrame.from_records(records)


def main() -> int:
    """Write both sample files."""
    ctdc_cases().to_csv(CTDC_FILE, index=False, lineterminator="\n")
    htcds_export().to_csv(HTCDS_FILE, index=False, lineterminator="\n")
    print(f"wrote {CTDC_FILE} and {HTCDS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
