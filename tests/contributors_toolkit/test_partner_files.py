"""Issue 12: partners' files arrive whole, the toolkit and the hub agree, and the toolkit says why.

Every partner file here is generated from the real CTDC file in the test (never copied).
"""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import pandas as pd
import pytest
import requests
from click.testing import CliRunner, Result
from flask.testing import FlaskClient

from contributors.cli import (
    CLIENT_ID_ENV,
    CLIENT_SECRET_ENV,
    ENV_PREFIX,
    HUB_URL_ENV,
    cli,
    prepare_upload,
)
from contributors.normalise import format_records
from contributors.pseudonym import MAPPING_COLUMNS, is_pseudonym, pseudonymise
from hub.settings import ENV_PREFIX as HUB_ENV_PREFIX
from hub.settings import load_settings
from tests.conftest import LiveHub, Partner

KEY_ENV = "TEST_PARTNER_PSEUDONYM_KEY"
KEY = "a-partner-key-that-is-long-enough-0123456789"
EVERY = 300  # every 300th CTDC record: 326 rows


@pytest.fixture(scope="module")
def ctdc_rows(ctdc_file: Path) -> pd.DataFrame:
    """Every 300th record of the real CTDC file, as strings."""
    frame = pd.read_csv(ctdc_file, dtype="string", keep_default_na=False)
    return frame.iloc[::EVERY].reset_index(drop=True)


def _write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def _run(*args: str, key: bool = True, **env: str) -> Result:
    environment = {KEY_ENV: KEY} if key else {}
    environment.update(env)
    return CliRunner().invoke(cli, list(args), env=environment)


def _last_line(result: Result) -> str:
    return result.output.strip().splitlines()[-1]


# -- 1. nothing is dropped in silence -------------------------------------------------------


def test_an_unknown_column_stops_prepare_until_dropped_on_purpose(
    ctdc_rows: pd.DataFrame, tmp_path: Path
) -> None:
    frame = ctdc_rows.assign(partnerRegion=["north"] * len(ctdc_rows))
    source = _write(frame, tmp_path / "cases.csv")
    out = tmp_path / "out.csv"
    args = ["prepare", str(source), "-o", str(out), "--pseudonym-key-env", KEY_ENV]
    result = _run(*args)
    assert result.exit_code == 2, result.output
    line = _last_line(result)
    assert line.startswith("error: column(s) 'partnerRegion' match no field")
    assert "--drop partnerRegion" in line
    assert not out.exists()

    result = _run(*args, "--drop", "partnerRegion")
    assert result.exit_code == 0, result.output
    assert "dropped column partnerRegion: left out with --drop" in result.output
    assert list(pd.read_csv(out, dtype="string").columns) == list(ctdc_rows.columns)


def test_headers_spelled_differently_are_matched_and_said(
    ctdc_rows: pd.DataFrame, tmp_path: Path
) -> None:
    # The 300-row file: three headers spelled otherwise lost 799 values in silence.
    rows = ctdc_rows.head(300)
    respelled = {
        "CountryOfExploitation": "Country of Exploitation",
        "gender": "Gender",
        "yearOfRegistration": "year of registration",
    }
    source = _write(rows.rename(columns=respelled), tmp_path / "cases.csv")
    out = tmp_path / "out.csv"
    result = _run("prepare", str(source), "-o", str(out), "--pseudonym-key-env", KEY_ENV)
    assert result.exit_code == 0, result.output
    for field, header in respelled.items():
        assert f"column {header!r} read as the schema field {field}" in result.output
    assert "dropped column" not in result.output
    sent = pd.read_csv(out, dtype="string", keep_default_na=False)
    for field in respelled:
        assert sent[field].tolist() == rows[field].tolist()
    values = int((rows[list(respelled)] != "").to_numpy().sum())
    assert values > 700  # the issue counted 799 in its file


def test_a_year_written_as_a_date_is_kept_as_its_year(
    ctdc_rows: pd.DataFrame, tmp_path: Path
) -> None:
    # The old toolkit dropped yearOfRegistration as a "birth date", uploaded, and exited 0.
    years = ctdc_rows["yearOfRegistration"]
    frame = ctdc_rows.assign(yearOfRegistration=years.where(years == "", years + "-03-15"))
    source = _write(frame, tmp_path / "cases.csv")
    out = tmp_path / "out.csv"
    result = _run("prepare", str(source), "-o", str(out), "--pseudonym-key-env", KEY_ENV)
    assert result.exit_code == 0, result.output
    assert "dropped column" not in result.output
    sent = pd.read_csv(out, dtype="string", keep_default_na=False)
    assert sent["yearOfRegistration"].tolist() == years.tolist()


def test_a_flagged_schema_field_stops_prepare_rather_than_vanishing(
    ctdc_rows: pd.DataFrame, tmp_path: Path
) -> None:
    # A phone number typed into a schema field: the old toolkit dropped the whole field.
    frame = ctdc_rows.copy()
    frame.loc[:4, "Datasource"] = "+63 917 555 0199"
    source = _write(frame, tmp_path / "cases.csv")
    out = tmp_path / "out.csv"
    result = _run("prepare", str(source), "-o", str(out), "--pseudonym-key-env", KEY_ENV)
    assert result.exit_code == 2, result.output
    line = _last_line(result)
    assert line.startswith("error: column 'Datasource' is the schema field Datasource")
    assert "--drop Datasource" in line and "555" not in result.output
    assert not out.exists()


def test_drop_of_a_missing_column_is_refused(ctdc_rows: pd.DataFrame, tmp_path: Path) -> None:
    source = _write(ctdc_rows, tmp_path / "cases.csv")
    result = _run(
        "prepare", str(source), "-o", str(tmp_path / "o.csv"), "--pseudonym-key-env", KEY_ENV,
        "--drop", "nom",
    )  # fmt: skip
    assert result.exit_code == 2
    assert _last_line(result) == (
        "error: --drop names no column of the file: nom (columns are matched exactly as the "
        "file's header spells them)"
    )


# -- 2. validate gives the hub's verdict ----------------------------------------------------


def _variants(rows: pd.DataFrame) -> dict[str, bytes]:
    """Files the hub takes or refuses, built from CTDC rows with pseudonymised case ids."""
    good = rows.head(40).assign(caseNo=[pseudonymise(c, KEY) for c in rows["caseNo"].head(40)])
    bad_row = good.copy()
    bad_row.loc[3, "gender"] = "Femme"
    phones = good.assign(caseNo=[f"+63 917 555 {n:04d}" for n in range(len(good))])

    def csv(frame: pd.DataFrame) -> bytes:
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False)
        return buffer.getvalue().encode()

    return {
        "good": csv(good),
        "unknown column": csv(good.assign(partnerRegion="north")),
        "header only": csv(good.head(0)),
        "raw case ids (phones)": csv(phones),
        "one bad row": csv(bad_row),
    }


@pytest.mark.parametrize("accept_valid", [False, True])
def test_validate_and_the_hub_give_the_same_verdict(
    client: FlaskClient,
    partner_a: Partner,
    ctdc_rows: pd.DataFrame,
    tmp_path: Path,
    accept_valid: bool,
) -> None:
    verdicts: dict[str, tuple[int, int]] = {}
    for name, body in _variants(ctdc_rows).items():
        path = tmp_path / f"{name.replace(' ', '_')}.csv"
        path.write_bytes(body)
        flags = ["--accept-valid"] if accept_valid else []
        result = _run("validate", str(path), *flags, key=False)
        answer = client.post(
            "/v1/uploads" + ("?accept_valid=true" if accept_valid else ""),
            data=body,
            headers={**partner_a.headers, "Content-Type": "text/csv"},
        )
        verdicts[name] = (result.exit_code, answer.status_code)
        if answer.status_code == 422:
            detail = answer.get_json()["detail"]
            # One error line, carrying the hub's own words.
            assert _last_line(result).startswith("error: the hub would refuse this file: ")
            assert detail in _last_line(result)
            assert sum(line.startswith("error:") for line in result.output.splitlines()) == 1
    expected_bad_row = (0, 201) if accept_valid else (1, 422)
    assert verdicts == {
        "good": (0, 201),
        "unknown column": (1, 422),
        "header only": (1, 422),
        "raw case ids (phones)": (1, 422),
        "one bad row": expected_bad_row,
    }


def test_validate_counts_every_error_not_the_capped_list(
    ctdc_rows: pd.DataFrame, tmp_path: Path
) -> None:
    # 1,200 bad cells: more than the report lists (1,000).
    rows = pd.concat([ctdc_rows] * 4, ignore_index=True).head(1200)
    frame = rows.assign(
        caseNo=[pseudonymise(str(n), KEY) for n in range(len(rows))], gender="Femme"
    )
    source = _write(frame, tmp_path / "cases.csv")
    result = _run("validate", str(source), key=False)
    assert result.exit_code == 1
    assert "  ... and 1190 more errors" in result.output
    assert _last_line(result).startswith("error: the hub would refuse this file: 1200 of 1200")


# -- 3. the receipt records the whole file ---------------------------------------------------


def test_accept_valid_upload_records_the_local_rejections(
    live_hub: LiveHub, ctdc_rows: pd.DataFrame, tmp_path: Path
) -> None:
    frame = ctdc_rows.copy()
    frame.loc[[2, 5, 9], "gender"] = "Femme"
    frame.loc[[5, 11], "ageBroad"] = "old"
    source = _write(frame, tmp_path / "cases.csv")
    env = {CLIENT_SECRET_ENV: live_hub.client_secret}
    args = ["upload", str(source), "--hub", live_hub.url, "--client-id", live_hub.client_id]
    result = _run(*args, "--pseudonym-key-env", KEY_ENV, "--accept-valid", **env)
    assert result.exit_code == 0, result.output
    kept = len(frame) - 4
    assert f"rows: {kept} total, {kept} accepted, 0 rejected" in result.output
    assert f"whole file: {len(frame)} rows, 4 refused on this machine" in result.output

    token = live_hub.token()
    listed = requests.get(
        f"{live_hub.url}/v1/uploads", headers={"Authorization": f"Bearer {token}"}, timeout=30
    ).json()["uploads"]
    (receipt,) = listed
    assert receipt["file_rows_total"] == len(frame)
    assert receipt["rows_rejected_locally"] == 4
    assert receipt["rows_total"] == kept
    local = receipt["local_rejections"]
    assert local["error_count"] == 5 and "cells_not_tallied" not in local
    tallies = {(r["field"], r["cells"]) for r in local["reasons"]}
    assert tallies == {("gender", 3), ("ageBroad", 2)}
    # Counts and reasons, never values.
    assert "Femme" not in json.dumps(receipt) and '"old"' not in json.dumps(receipt)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("not json", "Local-Rejections must be a JSON object"),
        (
            '{"file_rows_total": 10, "rows_rejected": 1, "error_count": 1, "reasons": '
            '[{"field": "nom", "reason": "x", "cells": 1}]}',
            "reason 1 must name a field of the record schema",
        ),
        (
            '{"file_rows_total": 10, "rows_rejected": 1, "error_count": 2, "reasons": []}',
            "must add up to error_count",
        ),
        (
            '{"file_rows_total": 99, "rows_rejected": 1, "error_count": 0, "reasons": []}',
            "says 98 rows were sent, but the body holds 40",
        ),
    ],
)
def test_the_hub_refuses_an_inconsistent_local_account(
    client: FlaskClient,
    partner_a: Partner,
    ctdc_rows: pd.DataFrame,
    header: str,
    message: str,
) -> None:
    body = _variants(ctdc_rows)["good"]
    answer = client.post(
        "/v1/uploads",
        data=body,
        headers={
            **partner_a.headers,
            "Content-Type": "text/csv",
            "Local-Rejections": header,
        },
    )
    assert answer.status_code == 400, answer.get_json()
    assert message in answer.get_json()["detail"]
    assert client.get("/v1/uploads", headers=partner_a.headers).get_json()["uploads"] == []


# -- 4. files without case ids ---------------------------------------------------------------


def test_assign_case_ids_keeps_the_mapping_here_and_sends_pseudonyms(
    ctdc_rows: pd.DataFrame, tmp_path: Path
) -> None:
    # CTDC's own public export has no caseNo column.
    source = _write(ctdc_rows.drop(columns="caseNo"), tmp_path / "public.csv")
    mapping, out = tmp_path / "case_ids.csv", tmp_path / "out.csv"
    args = ["prepare", str(source), "-o", str(out), "--pseudonym-key-env", KEY_ENV]

    refused = _run(*args)
    assert refused.exit_code == 1
    assert "--assign-case-ids" in _last_line(refused)

    result = _run(*args, "--assign-case-ids", str(mapping))
    assert result.exit_code == 0, result.output
    assert f"assigned a random case id to {len(ctdc_rows)} row(s)" in result.output
    kept = pd.read_csv(mapping, dtype="string", keep_default_na=False)
    assert tuple(kept.columns) == MAPPING_COLUMNS
    assert kept["row"].tolist() == [str(n) for n in range(1, len(ctdc_rows) + 1)]
    assert kept["caseNo"].is_unique
    sent = pd.read_csv(out, dtype="string", keep_default_na=False)
    assert all(is_pseudonym(value) for value in sent["caseNo"])
    assert sent["caseNo"].tolist() == [pseudonymise(c, KEY) for c in kept["caseNo"]]
    assert not set(kept["caseNo"]) & set(sent["caseNo"])

    # The same file again: the same ids, so the same bytes (an upload of it is a replay).
    first_output, first_mapping = out.read_bytes(), mapping.read_bytes()
    again = _run(*args, "--assign-case-ids", str(mapping))
    assert again.exit_code == 0, again.output
    assert out.read_bytes() == first_output and mapping.read_bytes() == first_mapping

    # Another file is appended to the same mapping, with new ids.
    other = _write(ctdc_rows.drop(columns="caseNo").head(7), tmp_path / "other.csv")
    more = _run(
        "prepare", str(other), "-o", str(tmp_path / "o2.csv"), "--pseudonym-key-env", KEY_ENV,
        "--assign-case-ids", str(mapping),
    )  # fmt: skip
    assert more.exit_code == 0, more.output
    grown = pd.read_csv(mapping, dtype="string", keep_default_na=False)
    assert len(grown) == len(ctdc_rows) + 7 and grown["caseNo"].is_unique
    assert grown.head(len(kept)).equals(kept)


def test_assign_case_ids_refuses_to_overwrite_another_file(
    ctdc_rows: pd.DataFrame, tmp_path: Path
) -> None:
    source = _write(ctdc_rows.drop(columns="caseNo"), tmp_path / "public.csv")
    precious = tmp_path / "notes.csv"
    precious.write_text("something,else\n1,2\n")
    out = tmp_path / "out.csv"
    result = _run(
        "prepare", str(source), "-o", str(out), "--pseudonym-key-env", KEY_ENV,
        "--assign-case-ids", str(precious),
    )  # fmt: skip
    assert result.exit_code == 2
    assert "is not a case-id mapping made by prepare" in _last_line(result)
    assert precious.read_text() == "something,else\n1,2\n"
    assert not out.exists()


# -- 8. the toolkit's own environment variables ------------------------------------------------


def test_the_toolkit_variables_are_not_hub_settings(tmp_path: Path) -> None:
    names = (CLIENT_SECRET_ENV, CLIENT_ID_ENV, HUB_URL_ENV)
    assert all(name.startswith(ENV_PREFIX) for name in names)
    assert not ENV_PREFIX.startswith(HUB_ENV_PREFIX)
    # The hub's settings load with every toolkit variable set (the old name crashed it).
    environ = {name: "x" for name in names}
    load_settings({"INSTANCE_PATH": str(tmp_path)}, environ=environ)


def test_the_old_secret_name_is_named_in_the_error(ctdc_rows: pd.DataFrame, tmp_path: Path) -> None:
    source = _write(ctdc_rows, tmp_path / "cases.csv")
    result = _run(
        "upload", str(source), "--hub", "https://hub.example.org", "--client-id", "p",
        CTDHUB_CLIENT_SECRET="s",
    )  # fmt: skip
    assert result.exit_code == 2
    assert _last_line(result) == (
        f"error: set {CLIENT_SECRET_ENV} to the partner's client secret (CTDHUB_CLIENT_SECRET "
        "is no longer read: the hub's own commands refuse it; rename it)"
    )


def test_hub_url_and_client_id_come_from_the_environment(
    live_hub: LiveHub, ctdc_rows: pd.DataFrame
) -> None:
    env = {
        HUB_URL_ENV: live_hub.url,
        CLIENT_ID_ENV: live_hub.client_id,
        CLIENT_SECRET_ENV: live_hub.client_secret,
    }
    result = _run("uploads", **env)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "no uploads"


# -- 9. clear words for a wrong secret and a hub that is down -----------------------------------


@pytest.mark.parametrize("wrong", ["secret", "client id"])
def test_wrong_credentials_say_so(live_hub: LiveHub, wrong: str) -> None:
    client_id = live_hub.client_id if wrong == "secret" else "no-such-client"
    secret = "not-the-secret" if wrong == "secret" else live_hub.client_secret
    result = _run(
        "uploads", "--hub", live_hub.url, "--client-id", client_id, **{CLIENT_SECRET_ENV: secret}
    )
    assert result.exit_code == 3
    assert secret not in result.output
    assert _partner_lines(result.output) == [
        "error: the hub refused the credentials: client id or secret is wrong (check "
        f"--client-id or {CLIENT_ID_ENV}, and {CLIENT_SECRET_ENV})"
    ]


def _partner_lines(output: str) -> list[str]:
    """Return what the partner sees, without the log lines of the hub this test runs in-process.

    The live hub shares this process's stderr, which the runner captures; its JSON log lines
    (logger ``ctdhub...``) would reach a hub operator, never the partner's terminal.
    """
    lines = []
    for line in output.strip().splitlines():
        try:
            logged = json.loads(line)
        except ValueError:
            logged = None
        if isinstance(logged, dict) and str(logged.get("logger", "")).startswith("ctdhub"):
            continue
        lines.append(line)
    return lines


def test_a_hub_that_is_down_shows_its_url_and_each_retry(unused_port: int) -> None:
    url = f"http://127.0.0.1:{unused_port}"
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["uploads", "--hub", url, "--client-id", "p", "--retries", "2"],
        env={CLIENT_SECRET_ENV: "s"},
    )
    assert result.exit_code == 4
    lines = result.output.strip().splitlines()
    retries = [line for line in lines if line.startswith("hub not answering:")]
    assert len(retries) == 2
    for number, line in enumerate(retries, start=1):
        assert f"POST {url}/oauth/token: connection refused; retry {number} of 2 in" in line
    assert lines[-1].startswith(f"error: the hub is unavailable: Hub unreachable: POST {url}")


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_the_receipt_tallies_every_locally_refused_cell(
    live_hub: LiveHub, ctdc_rows: pd.DataFrame, tmp_path: Path
) -> None:
    # Thousands of bad cells of several reasons: far more than the report lists (1,000), yet the
    # receipt's reasons count every one, as a count made here from the injected cells says.
    frame = pd.concat([ctdc_rows] * 10, ignore_index=True)
    frame = frame.assign(caseNo=[str(n) for n in range(len(frame))])
    number = pd.Series(range(len(frame)))
    femme, old, ancient = number % 2 == 0, number % 3 == 0, (number % 7 == 0) & (number % 3 != 0)
    maybe, words = number % 4 == 0, number % 5 == 0
    frame.loc[femme, "gender"] = "Femme"
    frame.loc[old, "ageBroad"] = "old"
    frame.loc[ancient, "ageBroad"] = "200"
    frame.loc[maybe, "isForcedLabour"] = "maybe"
    frame.loc[words, "yearOfRegistration"] = "last year"
    source = _write(frame, tmp_path / "cases.csv")
    env = {CLIENT_SECRET_ENV: live_hub.client_secret}
    args = ["upload", str(source), "--hub", live_hub.url, "--client-id", live_hub.client_id]
    result = _run(*args, "--pseudonym-key-env", KEY_ENV, "--accept-valid", **env)
    assert result.exit_code == 0, result.output

    token = live_hub.token()
    (receipt,) = requests.get(
        f"{live_hub.url}/v1/uploads", headers={"Authorization": f"Bearer {token}"}, timeout=30
    ).json()["uploads"]
    refused = femme | old | ancient | maybe | words
    assert receipt["file_rows_total"] == len(frame)
    assert receipt["rows_rejected_locally"] == int(refused.sum())
    assert receipt["rows_total"] == len(frame) - int(refused.sum())
    local = receipt["local_rejections"]
    found: dict[str, int] = {}
    for item in local["reasons"]:
        key = item["field"]
        if key == "ageBroad":
            key += "/exact" if "exact age must be" in item["reason"] else "/band"
        assert key not in found, item
        found[key] = item["cells"]
    assert found == {
        "gender": int(femme.sum()),
        "ageBroad/band": int(old.sum()),
        "ageBroad/exact": int(ancient.sum()),
        "isForcedLabour": int(maybe.sum()),
        "yearOfRegistration": int(words.sum()),
    }
    assert local["error_count"] == sum(found.values()) > 2000
    assert "cells_not_tallied" not in local
    text = json.dumps(receipt)
    assert "Femme" not in text and "maybe" not in text and "last year" not in text


def test_the_prepared_csv_spells_what_format_records_spells(ctdc_rows: pd.DataFrame) -> None:
    # The toolkit writes its CSV through Arrow's kernels; it must hold exactly the canonical
    # spelling (booleans 1/0, whole numbers, codes, empty for missing) of every accepted cell.
    frame = ctdc_rows.assign(caseNo=[str(n) for n in range(len(ctdc_rows))])
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    prepared = prepare_upload(
        buffer.getvalue().encode(), filename="cases.csv", htcds=False, pseudonym_key=KEY.encode()
    )
    records = prepared.result.records
    assert records["yearOfRegistration"].isna().any() or records["isForcedLabour"].isna().any()
    expected = io.StringIO()
    format_records(records).to_csv(expected, index=False, lineterminator="\n")
    header, body = prepared.to_csv().decode("utf-8").split("\n", 1)
    assert body == expected.getvalue().split("\n", 1)[1]
    assert header.replace('"', "") == ",".join(records.columns)
