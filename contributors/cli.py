"""``ctdhub-contribute``: check, prepare and upload a partner's case records, on the partner's side.

The commands run the hub's own schema, identifier screen and validation locally, so a partner
learns what the hub would reject before anything leaves their machine, and what does leave
holds no direct identifier and no case id of theirs.
"""

from __future__ import annotations

import functools
import io
import os
import secrets
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import click
import pandas as pd

from contributors.client import CSV, HubClient, HubError, HubUnavailable, Receipt
from contributors.formats import FormatError, read_table
from contributors.htcds import HtcdsMapping, HtcdsMappingError, map_htcds
from contributors.identifiers import IdentifierFinding, screen_identifiers
from contributors.normalise import (
    ValidationReport,
    ValidationResult,
    format_records,
    validate_records,
)
from contributors.pseudonym import (
    PseudonymError,
    PseudonymKeyError,
    is_pseudonym,
    key_from_env,
    pseudonymise_column,
)
from contributors.schema import RecordSchema, SchemaError, load_schema

__all__ = ["EXIT_CODES", "PreparedUpload", "cli", "main", "prepare_upload"]

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_INPUT = 2
EXIT_HUB_REFUSED = 3
EXIT_HUB_UNAVAILABLE = 4
EXIT_INTERNAL = 5

#: Exit codes, as --help shows them.
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_REJECTED: "rows would be rejected, or an identifier column was flagged",
    EXIT_INPUT: "bad command line, unreadable file, missing key or secret, unmappable value",
    EXIT_HUB_REFUSED: "the hub refused the request (its reason is printed)",
    EXIT_HUB_UNAVAILABLE: "the hub could not be reached, even after retries",
    EXIT_INTERNAL: "an unexpected failure of the toolkit itself (please report it)",
}
CLIENT_SECRET_ENV = "CTDHUB_CLIENT_SECRET"  # noqa: S105 - a variable name, not a secret
_ERRORS_SHOWN = 10

_P = ParamSpec("_P")
_R = TypeVar("_R")


class _Stop(Exception):
    """End the command with a one-line message and an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _one_line_errors(command: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn every expected failure into one line on stderr and its exit code, never a trace."""

    @functools.wraps(command)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return command(*args, **kwargs)
        except _Stop as stop:
            _fail(str(stop), stop.code)
        except HubUnavailable as error:
            _fail(f"the hub is unavailable: {error}", EXIT_HUB_UNAVAILABLE)
        except HubError as error:
            if error.report:
                _print_report_dict(error.report)
            _fail(f"the hub refused: {error}", EXIT_HUB_REFUSED)
        except (
            FormatError,
            HtcdsMappingError,
            PseudonymKeyError,
            PseudonymError,
            SchemaError,
        ) as error:
            _fail(str(error), EXIT_INPUT)
        except OSError as error:
            _fail(f"{error.filename or 'file'}: {error.strerror or error}", EXIT_INPUT)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as error:  # noqa: BLE001 - the last resort that keeps traces off screen
            _fail(f"unexpected {type(error).__name__}: {error}", EXIT_INTERNAL)

    return run


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(code)


@dataclass(frozen=True)
class PreparedUpload:
    """A partner file made hub-ready in memory, with everything the partner should be told.

    :param result: the local validation of the hub-ready table: its accepted records
        (normalised, pseudonymised caseNo), the report, and which rows were accepted.
    :param dropped: columns removed before anything leaves, each with why.
    :param mapping: the HTCDS mapping account, for an HTCDS export.
    """

    result: ValidationResult
    dropped: tuple[tuple[str, str], ...]
    mapping: HtcdsMapping | None

    @property
    def report(self) -> ValidationReport:
        """Return the local validation report."""
        return self.result.report

    @property
    def flagged(self) -> list[IdentifierFinding]:
        """Return the identifier findings still standing on the hub-ready table."""
        return self.result.report.identifier_findings

    def to_csv(self) -> bytes:
        """Write the accepted records, in the hub's canonical spelling, as UTF-8 CSV."""
        buffer = io.StringIO()
        format_records(self.result.records).to_csv(buffer, index=False, lineterminator="\n")
        return buffer.getvalue().encode("utf-8")


def prepare_upload(
    data: bytes,
    *,
    filename: str | None,
    htcds: bool,
    pseudonym_key: bytes | None,
    schema: RecordSchema | None = None,
) -> PreparedUpload:
    """Make a partner file hub-ready: map, drop identifiers, pseudonymise, validate.

    :param data: the file's bytes (CSV, XLSX or JSON).
    :param filename: its name, to tell its format.
    :param htcds: the file is an HTCDS case export rather than a hub-schema table.
    :param pseudonym_key: the partner's pseudonym key, or ``None`` when the file's case ids are
        already pseudonyms (a file made by ``prepare``).
    :param schema: the record schema (loaded if not given).
    :raises FormatError: if the file cannot be read.
    :raises HtcdsMappingError: if HTCDS values cannot be translated.
    :raises PseudonymKeyError: if a key is needed and missing or too short.
    :raises _Stop: if the case ids are in a state that contradicts the key option.
    """
    schema = schema if schema is not None else load_schema()
    frame = read_table(data, filename=filename)
    dropped: list[tuple[str, str]] = []
    mapping: HtcdsMapping | None = None
    pseudonym_fields = schema.by_role("pseudonym")
    if htcds:
        if pseudonym_key is None:
            raise PseudonymKeyError(
                "an HTCDS export holds the case system's own case numbers: give "
                "--pseudonym-key-env with the variable that holds the partner's pseudonym key"
            )
        mapping = map_htcds(frame, pseudonym_key=pseudonym_key, schema=schema)
        dropped.extend((c, "direct identifier") for c in mapping.identifiers_dropped)
        dropped.extend((c, "not in the hub schema") for c in mapping.not_in_schema_dropped)
        dropped.extend((c, "not an HTCDS field") for c in mapping.unknown_dropped)
        frame = mapping.records
    else:
        # The pseudonym column is pseudonymised below, not dropped, whatever the screen says.
        flagged_columns = {
            finding.column: finding
            for finding in screen_identifiers(frame, schema)
            if finding.column not in pseudonym_fields
        }
        dropped.extend(
            (column, f"direct identifier ({finding.kind})")
            for column, finding in flagged_columns.items()
        )
        unknown = [c for c in frame.columns if c not in schema and c not in flagged_columns]
        # Only schema columns leave: an unknown column could hold anything.
        dropped.extend((str(c), "not in the hub schema") for c in unknown)
        frame = frame.drop(columns=[*flagged_columns, *unknown])
        for name in pseudonym_fields:
            if name in frame.columns:
                frame[name] = _pseudonym_column(
                    frame[name], pseudonym_key, name, schema.missing_values
                )
    return PreparedUpload(
        result=validate_records(frame, schema), dropped=tuple(dropped), mapping=mapping
    )


def _pseudonym_column(
    values: pd.Series, key: bytes | None, name: str, missing: Sequence[str]
) -> pd.Series:
    """Pseudonymise a case-id column, or check it already holds pseudonyms when no key is given.

    A file's ids are either all raw or all pseudonyms: hashing pseudonyms again would give the
    same case two different pseudonyms across uploads, and sending raw ids would reveal them.
    """
    text = values.fillna("").astype(str).str.strip()
    present = text[~text.isin(["", *missing])]
    made_here = present.map(is_pseudonym)
    if key is None:
        if not bool(made_here.all()):
            raise _Stop(
                f"column {name} holds the partner's own case ids ({int((~made_here).sum())} "
                "rows): give --pseudonym-key-env with the variable that holds the pseudonym key",
                EXIT_INPUT,
            )
        return values
    if len(present) and bool(made_here.all()):
        raise _Stop(
            f"column {name} already holds pseudonyms (was this file made by prepare?); "
            "leave out --pseudonym-key-env so they are not hashed twice",
            EXIT_INPUT,
        )
    # A missing case id stays missing, so validation rejects that row alone (caseNo is
    # required) instead of the whole file failing here.
    pseudonyms = dict(zip(present.index, pseudonymise_column(present.tolist(), key), strict=True))
    return pd.Series(
        [pseudonyms.get(index, "") for index in text.index], index=values.index, dtype="string"
    )


# -- printing ------------------------------------------------------------------------------


def _print_report(prepared: PreparedUpload) -> None:
    for column, why in prepared.dropped:
        click.echo(f"dropped column {column}: {why}")
    if prepared.mapping is not None:
        for note, count in prepared.mapping.notes.items():
            click.echo(f"note: {note}: {count} row(s)")
    for finding in prepared.flagged:
        click.echo(
            f"flagged column {finding.column}: {finding.kind} in {finding.rows_flagged} row(s): "
            f"{finding.reason}"
        )
    _print_report_dict(prepared.report.as_dict())


def _print_report_dict(report: dict[str, Any]) -> None:
    click.echo(
        f"rows: {report.get('rows_total', '?')} total, {report.get('rows_accepted', '?')} "
        f"accepted, {report.get('rows_rejected', '?')} rejected"
    )
    for key, label in (("unknown_columns", "unknown columns"), ("missing_columns", "missing")):
        if report.get(key):
            click.echo(f"{label}: {', '.join(map(str, report[key]))}")
    errors: Sequence[dict[str, Any]] = report.get("errors") or []
    for error in errors[:_ERRORS_SHOWN]:
        click.echo(
            f"  row {error.get('row')}, field {error.get('field')} "
            f"({error.get('value_class')}): {error.get('reason')}"
        )
    if len(errors) > _ERRORS_SHOWN:
        click.echo(f"  ... and {len(errors) - _ERRORS_SHOWN} more errors")


def _print_receipt(receipt: Receipt) -> None:
    seen = " (already received before: same receipt)" if receipt.replayed else ""
    click.echo(f"upload {receipt.id}: {receipt.status}{seen}")
    click.echo(f"  organisation: {receipt.organisation}")
    click.echo(f"  sha256: {receipt.sha256}")
    click.echo(
        f"  rows: {receipt.rows_total} total, {receipt.rows_accepted} accepted, "
        f"{receipt.rows_rejected} rejected"
    )
    click.echo(f"  created at: {receipt.created_at}")


def _read_input(path: Path) -> bytes:
    return path.read_bytes()


def _key(variable: str | None) -> bytes | None:
    return None if variable is None else key_from_env(variable)


# -- commands ------------------------------------------------------------------------------

_EPILOG = "Exit codes: " + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items())

_FILE = click.argument(
    "file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)
)
_HTCDS = click.option(
    "--htcds", is_flag=True, help="FILE is an HTCDS case export: map it to the hub's schema."
)
_KEY_ENV = click.option(
    "--pseudonym-key-env",
    metavar="VAR",
    help=(
        "Environment variable holding the partner's pseudonym key (32 bytes or more). It is "
        "read from the environment so it never lands in shell history. Leave it out only for "
        "a file whose case ids are already pseudonyms (made by prepare)."
    ),
)
_ACCEPT_VALID = click.option(
    "--accept-valid",
    is_flag=True,
    help="Go on with the valid rows when some rows are rejected (the rejected rows stay here).",
)

_HUB = click.option("--hub", "hub_url", required=True, metavar="URL", help="The hub's address.")
_CLIENT_ID = click.option("--client-id", required=True, help="The partner's OAuth 2 client id.")


@click.group(epilog=_EPILOG)
@click.version_option(package_name="ctdhub")
def cli() -> None:
    """Check, prepare and upload case records to a ctdhub, from the partner's own machine."""


@cli.command(epilog=_EPILOG)
@_FILE
@_HTCDS
@_KEY_ENV
@_one_line_errors
def validate(file: Path, htcds: bool, pseudonym_key_env: str | None) -> None:
    """Check FILE as the hub would: identifier screen and record validation.

    Nothing is written or sent. Exits 1 if any row would be rejected or any column is flagged
    as a direct identifier.
    """
    data = _read_input(file)
    schema = load_schema()
    if htcds:
        # Nothing is written, so without the partner's key a throwaway key will do.
        key = _key(pseudonym_key_env) or secrets.token_bytes(32)
        prepared = prepare_upload(data, filename=file.name, htcds=True, pseudonym_key=key)
        _print_report(prepared)
        bad = prepared.report.rows_rejected > 0 or bool(prepared.flagged)
    else:
        frame = read_table(data, filename=file.name)
        findings = screen_identifiers(frame, schema)
        for finding in findings:
            click.echo(
                f"flagged column {finding.column}: {finding.kind} in {finding.rows_flagged} "
                f"row(s): {finding.reason}"
            )
        report = validate_records(frame, schema).report
        _print_report_dict(report.as_dict())
        bad = report.rows_rejected > 0 or bool(findings)
    if bad:
        sys.exit(EXIT_REJECTED)
    click.echo("ok: every row would be accepted and no identifier column was found")


@cli.command(epilog=_EPILOG)
@_FILE
@click.option(
    "-o",
    "--output",
    "output",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Where to write the hub-ready CSV.",
)
@_HTCDS
@_KEY_ENV
@_ACCEPT_VALID
@_one_line_errors
def prepare(
    file: Path, output: Path, htcds: bool, pseudonym_key_env: str | None, accept_valid: bool
) -> None:
    """Write a hub-ready CSV of FILE: identifiers dropped, case ids pseudonymised, validated.

    Without --accept-valid nothing is written when a row would be rejected.
    """
    if output.resolve() == file.resolve():
        raise _Stop("the output must not overwrite the input file", EXIT_INPUT)
    prepared = prepare_upload(
        _read_input(file), filename=file.name, htcds=htcds, pseudonym_key=_key(pseudonym_key_env)
    )
    _print_report(prepared)
    _refuse_if_unsafe(prepared, accept_valid)
    output.write_bytes(prepared.to_csv())
    click.echo(f"wrote {prepared.report.rows_accepted} case records to {output}")


def _refuse_if_unsafe(prepared: PreparedUpload, accept_valid: bool) -> None:
    """Stop when an identifier is still flagged, or rows are rejected without --accept-valid."""
    if prepared.flagged:
        columns = ", ".join(sorted({f.column for f in prepared.flagged}))
        raise _Stop(f"identifier screen still flags column(s) {columns}", EXIT_REJECTED)
    if prepared.report.rows_rejected and not accept_valid:
        raise _Stop(
            f"{prepared.report.rows_rejected} row(s) would be rejected; fix them, or give "
            "--accept-valid to go on with the valid rows only",
            EXIT_REJECTED,
        )
    if not prepared.report.rows_accepted:
        raise _Stop("no row would be accepted", EXIT_REJECTED)


@cli.command(epilog=_EPILOG)
@_FILE
@_HUB
@_CLIENT_ID
@_ACCEPT_VALID
@click.option(
    "--idempotency-key",
    metavar="K",
    help="Reuse the key of an earlier attempt whose answer was lost (default: a new one).",
)
@_HTCDS
@_KEY_ENV
@_one_line_errors
def upload(
    file: Path,
    hub_url: str,
    client_id: str,
    accept_valid: bool,
    idempotency_key: str | None,
    htcds: bool,
    pseudonym_key_env: str | None,
) -> None:
    """Prepare FILE in memory, check it locally, and upload it to the hub.

    The client secret is read from the environment variable CTDHUB_CLIENT_SECRET. A file with
    rows that would be rejected is not sent, unless --accept-valid, and then only its valid
    rows are sent.
    """
    client = _client(hub_url, client_id)
    prepared = prepare_upload(
        _read_input(file), filename=file.name, htcds=htcds, pseudonym_key=_key(pseudonym_key_env)
    )
    _print_report(prepared)
    _refuse_if_unsafe(prepared, accept_valid)
    with client:
        # No file name is sent: a partner's file names can hold a person's name.
        receipt = client.upload(
            prepared.to_csv(),
            media_type=CSV,
            accept_valid=accept_valid,
            idempotency_key=idempotency_key,
            progress=True,
        )
    _print_receipt(receipt)


def _client(hub_url: str, client_id: str) -> HubClient:
    """Make a hub client, the secret read from the environment (never from the command line)."""
    secret = os.environ.get(CLIENT_SECRET_ENV, "")
    if not secret:
        raise _Stop(f"set {CLIENT_SECRET_ENV} to the partner's client secret", EXIT_INPUT)
    try:
        return HubClient(hub_url, client_id, secret)
    except ValueError as error:
        raise _Stop(str(error), EXIT_INPUT) from None


@cli.command("uploads", epilog=_EPILOG)
@_HUB
@_CLIENT_ID
@_one_line_errors
def list_uploads(hub_url: str, client_id: str) -> None:
    """List the partner's uploads on the hub, newest first (secret from CTDHUB_CLIENT_SECRET)."""
    with _client(hub_url, client_id) as client:
        receipts = client.list_uploads()
    for receipt in receipts:
        click.echo(
            f"{receipt.id}  {receipt.status:<9}  {receipt.created_at}  "
            f"{receipt.rows_accepted}/{receipt.rows_total} rows accepted"
        )
    if not receipts:
        click.echo("no uploads")


@cli.command(epilog=_EPILOG)
@click.argument("upload_id")
@_HUB
@_CLIENT_ID
@_one_line_errors
def withdraw(upload_id: str, hub_url: str, client_id: str) -> None:
    """Withdraw the upload UPLOAD_ID from the hub (secret from CTDHUB_CLIENT_SECRET)."""
    with _client(hub_url, client_id) as client:
        receipt = client.withdraw(upload_id)
    if receipt is None:
        click.echo(f"upload {upload_id}: withdrawn")
    else:
        _print_receipt(receipt)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``ctdhub-contribute`` command line.

    :param argv: the arguments (``sys.argv[1:]`` when not given).
    """
    cli.main(args=list(argv) if argv is not None else None, prog_name="ctdhub-contribute")


if __name__ == "__main__":
    main()
