"""Build a fake HTCDS case export from the HTCDS field standard itself (for the tests).

Every field of the standard (v1.0 and v2.0) becomes a column. Picklists get valid codes drawn at
random, ISO country fields real country codes, dates ISO dates, and every free field a unique
"canary" text, so a test can prove that no identifier value reaches the hub-ready records.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pandas as pd

from contributors.htcds import CASE_ID_FIELD, REGISTRATION_DATE_FIELD
from contributors.schema import load_countries

HTCDS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "htcds"
STANDARDS = tuple(
    HTCDS_DIR / f"HTCDS_Field_Standards_{version}_Field_Standards.csv" for version in ("1.0", "2.0")
)
CANARY = "CANARY"


def field_standard() -> pd.DataFrame:
    """Return one row per HTCDS field (both versions; v2.0 wins where both define a field)."""
    frames = [pd.read_csv(path, dtype="string", keep_default_na=False) for path in STANDARDS]
    fields = pd.concat(frames, ignore_index=True)
    fields = fields.loc[fields["Field Name including Prefix"].str.strip() != ""]
    return fields.drop_duplicates("Field Name including Prefix", keep="last").reset_index(drop=True)


def picklist_codes(value_names: str) -> list[str]:
    """Return a picklist's codes from the standard's "Value Names" cell (one per line)."""
    if value_names.strip().startswith("Use ISO"):
        return []
    return [code.strip() for code in value_names.splitlines() if code.strip()]


def _date(rng: random.Random, first: int, last: int) -> dt.date:
    start = dt.date(first, 1, 1).toordinal()
    return dt.date.fromordinal(rng.randint(start, dt.date(last, 12, 31).toordinal()))


def fake_export(rows: int, seed: int) -> pd.DataFrame:
    """Return a fake HTCDS export of ``rows`` cases, all cells strings."""
    rng = random.Random(seed)
    countries = load_countries()["alpha2"].tolist()
    columns: dict[str, list[str]] = {
        CASE_ID_FIELD: [f"{CANARY}-CASE-{n:05d}" for n in range(rows)],
    }
    registered = [_date(rng, 2016, 2021) for _ in range(rows)]
    columns[REGISTRATION_DATE_FIELD] = [f"{d.isoformat()}T09:30:00.000+0000" for d in registered]
    for _, spec in field_standard().iterrows():
        name = str(spec["Field Name including Prefix"])
        kind = str(spec["Field Type"])
        codes = picklist_codes(str(spec["Value Names (if picklist)"]))
        iso = "ISO 3166" in str(spec["Value Labels (if picklist)"]) + str(
            spec["Value Names (if picklist)"]
        )
        values: list[str] = []
        for row in range(rows):
            if name == "prs_Birthdate":
                # Ages 0 to 60 at registration, so every band is reachable.
                born = registered[row] - dt.timedelta(days=rng.randint(0, 60 * 365))
                values.append(born.isoformat())
            elif name == "hte_Country" or iso:
                picked = rng.sample(countries, rng.choice((1, 1, 2)))
                values.append(";".join(picked) if kind.startswith("Multiselect") else picked[0])
            elif codes and kind.startswith("Multiselect"):
                values.append(";".join(rng.sample(codes, rng.randint(0, min(3, len(codes))))))
            elif codes:
                values.append(rng.choice([*codes, ""]))
            elif kind == "Date":
                values.append(_date(rng, 2010, 2021).isoformat())
            elif kind == "Checkbox":
                values.append(rng.choice(("true", "false")))
            elif kind == "Number":
                values.append(str(rng.randint(0, 40)))
            elif kind == "Picklist" and "language" in str(spec["Value Names (if picklist)"]):
                values.append("eng")
            else:
                values.append(f"{CANARY} {name} {row}")
        columns[name] = values
    return pd.DataFrame(columns, dtype="string")
