"""``ctdhub-contribute``: check, prepare and upload a partner's case records, on the partner's side.

The commands run the hub's own schema, identifier screen and validation locally, so a partner
learns what the hub would reject before anything leaves their machine, and what does leave
holds no direct identifier and no case id of theirs.
"""

# ruff: noqa: E402 - the cyclic garbage collector is paused before the imports (see below)

from __future__ import annotations

import gc

# Start-up: the imports below (pandas, pyarrow, requests, authlib ...) make a few hundred
# thousand long-lived objects, and the cyclic garbage collector would walk them again and again
# while they load and once more when the process ends; none of them is garbage. It is paused
# while they load, and main() moves them out of its way (gc.freeze): about 0.1 s of CPU of a
# 0.5 s start.
_COLLECTING = gc.isenabled()
gc.disable()

import functools
import hashlib
import io
import os
import secrets
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import click
import numpy as np
import pandas as pd
import pyarrow
import pyarrow.compute
import pyarrow.csv

from contributors.client import CSV, HubAuthError, HubClient, HubError, HubUnavailable, Receipt
from contributors.consent import CONSENT_GIVEN, DEFAULT_LAWFUL_BASIS, LAWFUL_BASES
from contributors.formats import FormatError, read_table
from contributors.headers import match_headers
from contributors.htcds import (
    LINKAGE_FIELDS,
    HtcdsMapping,
    HtcdsMappingError,
    linkage_people,
    map_htcds,
)
from contributors.identifiers import IdentifierFinding, screen_identifiers
from contributors.linkage import (
    ENCODING_COLUMN,
    LinkageError,
    LinkageSecretError,
    check_secret,
    encode_all,
    encoding_text,
    read_encodings,
)
from contributors.normalise import (
    BOOLEAN_SPELLING,
    ValidationReport,
    ValidationResult,
    format_records,
    row_numbers,
    validate_records,
)
from contributors.pseudonym import (
    PSEUDONYM_PATTERN,
    CaseIdMapping,
    PseudonymError,
    PseudonymKeyError,
    key_from_env,
    pseudonymise,
    pseudonymise_column,
)
from contributors.schema import RecordSchema, SchemaError, load_schema
from contributors.verdict import refusal

if _COLLECTING:
    gc.enable()

__all__ = [
    "CLIENT_ID_ENV",
    "CLIENT_SECRET_ENV",
    "ENV_PREFIX",
    "EXIT_CODES",
    "HUB_URL_ENV",
    "LINKAGE_SECRET_ENV",
    "RETRIES_ENV",
    "ColumnError",
    "PreparedUpload",
    "cli",
    "main",
    "prepare_upload",
]

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
    EXIT_INPUT: (
        "bad command line, unreadable file, missing key or secret, unmappable value, a column "
        "that matches no schema field or a schema field that would be removed"
    ),
    EXIT_HUB_REFUSED: "the hub refused the request (its reason is printed)",
    EXIT_HUB_UNAVAILABLE: "the hub could not be reached, even after retries",
    EXIT_INTERNAL: "an unexpected failure of the toolkit itself (please report it)",
}
#: The toolkit's environment variables start with this, never with the hub's ``CTDHUB_``: the
#: hub refuses a ``CTDHUB_*`` setting it does not know, and both can run on one machine.
ENV_PREFIX = "CTDC_PARTNER_"
CLIENT_SECRET_ENV = ENV_PREFIX + "CLIENT_SECRET"  # noqa: S105 - a variable name, not a secret
CLIENT_ID_ENV = ENV_PREFIX + "CLIENT_ID"
HUB_URL_ENV = ENV_PREFIX + "HUB_URL"
RETRIES_ENV = ENV_PREFIX + "RETRIES"
#: The linkage secret the partners share (never the hub), when no --linkage-secret-file is given.
LINKAGE_SECRET_ENV = ENV_PREFIX + "LINKAGE_SECRET"  # noqa: S105 - a variable name, not a secret
# The name the toolkit documented before it had its own prefix (it broke the hub's commands).
_OLD_SECRET_ENV = "CTDHUB_CLIENT_SECRET"  # noqa: S105 - a variable name, not a secret
_ERRORS_SHOWN = 10
_CSV_SLICE_ROWS = 20_000

_P = ParamSpec("_P")
_R = TypeVar("_R")


class _Stop(Exception):
    """End the command with a one-line message and an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class ColumnError(ValueError):
    """A column of the partner's file matches no schema field, or a schema field would be lost.

    Nothing is dropped without the partner saying so (``--drop COLUMN``).
    """


def _one_line_errors(command: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn every expected failure into one line on stderr and its exit code, never a trace."""

    @functools.wraps(command)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return command(*args, **kwargs)
        except _Stop as stop:
            _fail(str(stop), stop.code)
        except HubAuthError:
            _fail(
                f"the hub refused the credentials: client id or secret is wrong (check "
                f"--client-id or {CLIENT_ID_ENV}, and {CLIENT_SECRET_ENV})",
                EXIT_HUB_REFUSED,
            )
        except HubUnavailable as error:
            _fail(f"the hub is unavailable: {error}", EXIT_HUB_UNAVAILABLE)
        except HubError as error:
            if error.report:
                _print_report_dict(error.report)
            _fail(f"the hub refused: {error}", EXIT_HUB_REFUSED)
        except (
            ColumnError,
            FormatError,
            HtcdsMappingError,
            LinkageError,
            LinkageSecretError,
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
    :param matched: each header that was read as a schema field under another spelling, with
        that field.
    :param assigned: how many rows were given a new random case id (``--assign-case-ids``).
    :param held_back: records kept on this machine because their consent to research use is
        not given, as ``(reason code, records)`` (:data:`contributors.consent.CONSENT_REASONS`).
    :param lawful_basis: the lawful basis the records are sent under.
    :param encodings: one linkage encoding per accepted record (``None`` for a case without
        identifying fields), or ``None`` when the upload carries no encodings.
    """

    result: ValidationResult
    dropped: tuple[tuple[str, str], ...]
    mapping: HtcdsMapping | None
    matched: tuple[tuple[str, str], ...] = ()
    assigned: int = 0
    held_back: tuple[tuple[str, int], ...] = ()
    lawful_basis: str = DEFAULT_LAWFUL_BASIS
    encodings: tuple[bytes | None, ...] | None = None

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
        records = self.result.records
        if self.encodings is not None:
            # The encodings ride in a column of their own, which the hub takes off before it
            # validates the records and seals with them.
            records = records.assign(
                **{
                    ENCODING_COLUMN: pd.array(
                        [encoding_text(e) for e in self.encodings], dtype="string"
                    )
                }
            )
        sink = io.BytesIO()
        try:
            # Arrow's writer is an order of magnitude faster than pandas'; canonical values
            # (codes, numbers, pseudonyms) never need quotes, and one that would is refused by
            # this quoting style, so the slower writer takes over rather than write it wrong.
            # Rows are spelled out a slice at a time, to keep the partner's memory low.
            writer: pyarrow.csv.CSVWriter | None = None
            for start in range(0, len(records), _CSV_SLICE_ROWS):
                table = _spelled(records.iloc[start : start + _CSV_SLICE_ROWS])
                if writer is None:
                    options = pyarrow.csv.WriteOptions(quoting_style="none")
                    writer = pyarrow.csv.CSVWriter(sink, table.schema, write_options=options)
                writer.write_table(table)
            if writer is None:
                raise pyarrow.ArrowInvalid("no row to write")  # the header alone: pandas' job
            writer.close()
        except pyarrow.ArrowInvalid:
            buffer = io.StringIO()
            format_records(records).to_csv(buffer, index=False, lineterminator="\n")
            return buffer.getvalue().encode("utf-8")
        return sink.getvalue()

    def local_rejections(self) -> dict[str, Any] | None:
        """Return the account of the rows refused here, for the hub's receipt (never a value).

        ``None`` when every row is sent. The reasons tally every bad cell of the file by field
        and reason (the validation report's complete tally, not its capped list), so their cells
        add up to ``error_count``. Records held back for want of consent count among the rows
        refused, and ``held_back`` tallies them by reason code.
        """
        report = self.report
        held = sum(rows for _, rows in self.held_back)
        if not report.rows_rejected and not held:
            return None
        account: dict[str, Any] = {
            "file_rows_total": report.rows_total + held,
            "rows_rejected": report.rows_rejected + held,
            "error_count": report.error_count,
            "reasons": [tally.as_dict() for tally in report.error_tally],
        }
        if held:
            account["held_back"] = [
                {"reason": reason, "rows": rows} for reason, rows in self.held_back
            ]
        return account


def _spelled(records: pd.DataFrame) -> pyarrow.Table:
    """Spell typed records in the hub's canonical form as an Arrow table of strings, in Arrow's
    compute kernels (what :func:`~contributors.normalise.format_records` writes, without building
    Python strings per cell); a missing value stays null, which Arrow's writer leaves empty."""
    false, true = BOOLEAN_SPELLING
    columns: dict[str, pyarrow.Array] = {}
    for name in records.columns:
        cells = pyarrow.array(records[name])
        if pyarrow.types.is_boolean(cells.type):
            cells = pyarrow.compute.if_else(cells, true, false)
        elif not pyarrow.types.is_string(cells.type) and not pyarrow.types.is_large_string(
            cells.type
        ):
            cells = pyarrow.compute.cast(cells, pyarrow.string())
        columns[str(name)] = cells
    return pyarrow.table(columns)


@dataclass
class _Columns:
    """How each column of a partner's file is taken: as a schema field, or dropped (and why)."""

    rename: dict[str, str] = field(default_factory=dict)
    dropped: list[tuple[str, str]] = field(default_factory=list)
    matched: list[tuple[str, str]] = field(default_factory=list)


def _take_columns(frame: pd.DataFrame, schema: RecordSchema, drop: Sequence[str]) -> _Columns:
    """Decide each column's fate; refuse to lose an unknown column silently.

    Headers are matched to fields by the schema's declared spellings
    (:func:`~contributors.headers.match_headers`). The headers are shown only here, on the
    partner's machine.

    :raises ColumnError: for a ``--drop`` naming no column, two columns for one field, or
        columns that match no schema field.
    """
    labels = [str(label) for label in frame.columns]
    absent = [name for name in drop if name not in labels]
    if absent:
        raise ColumnError(
            f"--drop names no column of the file: {', '.join(absent)} (columns are matched "
            "exactly as the file's header spells them)"
        )
    matches = match_headers(labels, schema).matches
    # Only the columns that name no field are screened here, to tell an identifier (dropped,
    # and said) from a column that would be lost; the validation screens the fields' columns.
    unmatched = [
        label
        for label, match in zip(labels, matches, strict=True)
        if label not in drop and match.field is None
    ]
    findings = {finding.column: finding for finding in screen_identifiers(frame[unmatched], schema)}
    columns = _Columns()
    unknown: list[str] = []
    for label, match in zip(labels, matches, strict=True):
        if label in drop:
            columns.dropped.append((label, "left out with --drop"))
            continue
        target = match.field
        finding = findings.get(label)
        if finding is not None:
            columns.dropped.append((label, f"direct identifier ({finding.kind})"))
            continue
        if target is None:
            unknown.append(label)
            continue
        if match.duplicate_of is not None:
            first = labels[match.duplicate_of - 1]
            raise ColumnError(
                f"columns {first!r} and {label!r} both name the schema field {target}: give "
                "--drop with the one to leave out"
            )
        columns.rename[label] = target
        if label != target:
            columns.matched.append((label, target))
    if unknown:
        drops = " ".join(f"--drop {shlex.quote(label)}" for label in unknown)
        raise ColumnError(
            f"column(s) {', '.join(map(repr, unknown))} match no field of the hub's record "
            f"schema and would be lost: rename them to a schema field, or give {drops} to send "
            "the file without them"
        )
    return columns


def prepare_upload(
    data: bytes,
    *,
    filename: str | None,
    htcds: bool,
    pseudonym_key: bytes | None,
    schema: RecordSchema | None = None,
    drop: Sequence[str] = (),
    case_ids: CaseIdMapping | None = None,
    lawful_basis: str = DEFAULT_LAWFUL_BASIS,
    linkage_secret: bytes | None = None,
) -> PreparedUpload:
    """Make a partner file hub-ready: map, drop identifiers, pseudonymise, validate.

    No column is dropped in silence: an identifier column that is no schema field is dropped
    and reported; any other column must match a schema field or be named in ``drop``.

    :param data: the file's bytes (CSV, XLSX or JSON).
    :param filename: its name, to tell its format.
    :param htcds: the file is an HTCDS case export rather than a hub-schema table.
    :param pseudonym_key: the partner's pseudonym key, or ``None`` when the file's case ids are
        already pseudonyms (a file made by ``prepare``).
    :param schema: the record schema (loaded if not given).
    :param drop: columns the partner chose to leave out.
    :param case_ids: give each row without a case id one from this mapping (new ones random);
        the ids are then pseudonymised like any other.
    :param lawful_basis: the basis the records are sent under (:data:`LAWFUL_BASES`). Under
        the default, consent, an HTCDS export's records whose consent to research use is not
        given are held back (counted by reason, never sent); under another basis they are sent.
        A table in the hub's own schema has no consent field: the partner vouches for its basis.
    :param linkage_secret: the linkage secret the partners share: each record then carries the
        linkage encoding of its person (HTCDS person fields: names, birth date, with the
        record's gender and citizenship), made here; the names and birth date are dropped.
        A hub-schema table gives them in columns named as the HTCDS fields
        (:data:`~contributors.htcds.LINKAGE_FIELDS`). A file made by ``prepare`` carries its
        encodings already and needs no secret.
    :raises FormatError: if the file cannot be read.
    :raises ColumnError: if a column would be lost without being named in ``drop``.
    :raises HtcdsMappingError: if HTCDS values cannot be translated.
    :raises PseudonymKeyError: if a key is needed and missing or too short.
    :raises LinkageError: naming the row and field of a person that cannot be encoded, or of a
        bad encoding in a prepared file.
    :raises _Stop: if the case ids are in a state that contradicts the key option.
    """
    schema = schema if schema is not None else load_schema()
    if lawful_basis not in LAWFUL_BASES:
        raise _Stop(f"--lawful-basis must be one of {', '.join(LAWFUL_BASES)}", EXIT_INPUT)
    frame = read_table(data, filename=filename)
    carried: pd.Series | None = None
    if ENCODING_COLUMN in frame.columns:
        # A file made by prepare sends its own encodings: a secret (say, one exported in the
        # environment for prepare) is not used again, so nothing is encoded twice.
        linkage_secret = None
        carried = pd.Series(
            read_encodings(
                frame[ENCODING_COLUMN].fillna("").astype(str).tolist(),
                rows=row_numbers(frame).tolist(),
            ),
            index=frame.index,
            dtype=object,
        )
        frame = frame.drop(columns=[ENCODING_COLUMN])
    # The person fields the encoding is made of, kept on this machine only. The HTCDS mapping
    # numbers its records 0, 1, ... as the export's data rows come.
    person_fields = frame[[c for c in LINKAGE_FIELDS if c in frame.columns]]
    if htcds:
        person_fields = person_fields.reset_index(drop=True)
    held_back: list[tuple[str, int]] = []
    dropped: list[tuple[str, str]] = []
    matched: list[tuple[str, str]] = []
    mapping: HtcdsMapping | None = None
    pseudonym_fields = schema.by_role("pseudonym")
    if case_ids is not None and htcds:
        raise _Stop(
            "--assign-case-ids is for files without case ids; an HTCDS export has its own",
            EXIT_INPUT,
        )
    if case_ids is not None and pseudonym_key is None:
        raise PseudonymKeyError(
            "--assign-case-ids makes new case ids, which must be pseudonymised: give "
            "--pseudonym-key-env with the variable that holds the partner's pseudonym key"
        )
    if htcds:
        if pseudonym_key is None:
            raise PseudonymKeyError(
                "an HTCDS export holds the case system's own case numbers: give "
                "--pseudonym-key-env with the variable that holds the partner's pseudonym key"
            )
        absent = [name for name in drop if name not in frame.columns]
        if absent:
            raise ColumnError(f"--drop names no column of the file: {', '.join(absent)}")
        mapping = map_htcds(
            frame.drop(columns=[c for c in drop if c in frame.columns]),
            pseudonym_key=pseudonym_key,
            schema=schema,
        )
        if mapping.unknown_dropped:
            drops = " ".join(f"--drop {c}" for c in mapping.unknown_dropped)
            raise ColumnError(
                f"column(s) {', '.join(mapping.unknown_dropped)} are no HTCDS field and would be "
                f"lost: rename them to their HTCDS field, or give {drops} to leave them out"
            )
        dropped.extend((c, "left out with --drop") for c in drop)
        dropped.extend((c, "direct identifier") for c in mapping.identifiers_dropped)
        dropped.extend(
            (c, "HTCDS field the hub does not collect") for c in mapping.not_in_schema_dropped
        )
        frame = mapping.records
        if lawful_basis == DEFAULT_LAWFUL_BASIS:
            frame, held_back = _hold_back_without_consent(frame, mapping.consent)
    else:
        if linkage_secret is not None:
            dropped.extend(
                (str(c), "person field: encoded for linkage here") for c in person_fields.columns
            )
            frame = frame.drop(columns=list(person_fields.columns))
        columns = _take_columns(frame, schema, drop)
        dropped.extend(columns.dropped)
        matched.extend(columns.matched)
        frame = frame[list(columns.rename)].rename(columns=columns.rename)
    assigned = 0
    if case_ids is not None:
        frame, assigned = _assign_case_ids(frame, data, case_ids, pseudonym_fields, schema)
    if mapping is None:  # the HTCDS mapping pseudonymised its case ids already
        for name in pseudonym_fields:
            if name in frame.columns:
                frame[name] = _pseudonym_column(
                    frame[name], pseudonym_key, name, schema.missing_values
                )
    result = validate_records(frame, schema)
    if mapping is None:
        _refuse_flagged_fields(result.report.identifier_findings, matched, pseudonym_fields)
    sent = frame.index[result.accepted_mask]
    encodings: tuple[bytes | None, ...] | None = None
    if carried is not None:
        encodings = tuple(carried.loc[sent])
    elif linkage_secret is not None:
        encodings = _encodings(person_fields.loc[sent], result.records, sent, linkage_secret)
    return PreparedUpload(
        result=result,
        dropped=tuple(dropped),
        mapping=mapping,
        matched=tuple(matched),
        assigned=assigned,
        held_back=tuple(held_back),
        lawful_basis=lawful_basis,
        encodings=encodings,
    )


def _encodings(
    person_fields: pd.DataFrame, records: pd.DataFrame, index: pd.Index, secret: bytes
) -> tuple[bytes | None, ...]:
    """Encode the person of each record sent; ``None`` where no identifying field is given.

    :param index: the rows' labels in the file (data rows counted from 0), to name a bad row.
    """
    people = linkage_people(person_fields.reset_index(drop=True), records.reset_index(drop=True))
    rows = [int(label) + 1 for label in index]
    encoded = encode_all(people, secret, rows=rows)
    return tuple(e if any(e) else None for e in encoded)


def _hold_back_without_consent(
    records: pd.DataFrame, consent: Sequence[str]
) -> tuple[pd.DataFrame, list[tuple[str, int]]]:
    """Keep the records whose consent to research use is given; count the rest by reason.

    The kept rows keep their index, so validation still names each by its row in the export.
    """
    verdicts = pd.Series(list(consent), index=records.index, dtype="string")
    given = (verdicts == CONSENT_GIVEN).to_numpy(dtype=bool)
    counts = verdicts[~given].value_counts()
    held = [(str(reason), int(counts[reason])) for reason in sorted(counts.index)]
    return records[given], held


def _refuse_flagged_fields(
    findings: Sequence[IdentifierFinding],
    matched: Sequence[tuple[str, str]],
    pseudonym_fields: Sequence[str],
) -> None:
    """Stop when the identifier screen flags a schema field: dropping it would lose the field.

    :raises ColumnError: naming the column as the partner's file spells it.
    """
    header_of = {name: header for header, name in matched}
    for finding in findings:
        if finding.column in pseudonym_fields:
            continue  # its rows are rejected by validation, with the rule named
        label = header_of.get(finding.column, finding.column)
        raise ColumnError(
            f"column {label!r} is the schema field {finding.column}, but the identifier screen "
            f"flags it: {finding.kind} in {finding.rows_flagged} row(s) ({finding.reason}); "
            f"correct those values, or give --drop {shlex.quote(label)} to send the file "
            "without it"
        )


def _assign_case_ids(
    frame: pd.DataFrame,
    data: bytes,
    case_ids: CaseIdMapping,
    pseudonym_fields: Sequence[str],
    schema: RecordSchema,
) -> tuple[pd.DataFrame, int]:
    """Give each row without a case id one from the mapping; return the frame and the count."""
    (name,) = pseudonym_fields
    frame = frame.copy()
    if name in frame.columns:
        text = frame[name].fillna("").astype(str).str.strip()
        lacking = text.isin(["", *schema.missing_values]).to_numpy()
        values = text.to_numpy(dtype=object)
    else:
        lacking = pd.Series(True, index=frame.index).to_numpy()
        values = pd.Series("", index=frame.index).to_numpy(dtype=object)
    rows = [int(position) + 1 for position in lacking.nonzero()[0]]
    if rows:
        values[lacking] = case_ids.assign(hashlib.sha256(data).hexdigest(), rows)
    frame[name] = pd.Series(values, index=frame.index, dtype="string")
    return frame, len(rows)


def _pseudonym_column(
    values: pd.Series, key: bytes | None, name: str, missing: Sequence[str]
) -> pd.Series:
    """Pseudonymise a case-id column, or check it already holds pseudonyms when no key is given.

    A file's ids are either all raw or all pseudonyms: hashing pseudonyms again would give the
    same case two different pseudonyms across uploads, and sending raw ids would reveal them.
    """
    text = values.fillna("").astype(str).str.strip()
    given = ~text.isin(["", *missing]).to_numpy(dtype=bool)
    present = text[given]
    made_here = present.str.fullmatch(PSEUDONYM_PATTERN.pattern).astype(bool)
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
    pseudonyms = np.full(len(text), "", dtype=object)
    pseudonyms[given] = pseudonymise_column(present.tolist(), key)
    return pd.Series(pseudonyms, index=values.index, dtype="string")


# -- printing ------------------------------------------------------------------------------


def _print_report(prepared: PreparedUpload) -> None:
    for header, name in prepared.matched:
        click.echo(f"column {header!r} read as the schema field {name}")
    for column, why in prepared.dropped:
        click.echo(f"dropped column {column}: {why}")
    if prepared.encodings is not None:
        encoded = sum(e is not None for e in prepared.encodings)
        click.echo(
            f"linkage encodings: {encoded} of {len(prepared.encodings)} record(s) (the others "
            "have no name or birth date)"
        )
    if prepared.assigned:
        click.echo(f"assigned a random case id to {prepared.assigned} row(s) without one")
    if prepared.mapping is not None:
        for note, count in prepared.mapping.notes.items():
            click.echo(f"note: {note}: {count} row(s)")
    for reason, count in prepared.held_back:
        click.echo(f"held back on this machine: {count} record(s), {reason} (not sent)")
    if prepared.mapping is not None and prepared.lawful_basis != DEFAULT_LAWFUL_BASIS:
        click.echo(
            f"lawful basis {prepared.lawful_basis}: records are sent whatever their consent "
            "fields say"
        )
    _print_findings(prepared.flagged)
    _print_report_dict(prepared.report.as_dict())


def _print_findings(findings: Sequence[IdentifierFinding]) -> None:
    for finding in findings:
        click.echo(
            f"flagged column {finding.column}: {finding.kind} in {finding.rows_flagged} row(s): "
            f"{finding.reason}"
        )


def _print_report_dict(report: Mapping[str, Any]) -> None:
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
    # The list the report carries is capped; its error_count counts every bad cell.
    total = report.get("error_count")
    if not isinstance(total, int):
        total = len(errors) + int(report.get("errors_not_listed") or 0)
    if total > min(len(errors), _ERRORS_SHOWN):
        click.echo(f"  ... and {total - min(len(errors), _ERRORS_SHOWN)} more errors")


def _print_receipt(receipt: Receipt) -> None:
    seen = " (already received before: same receipt)" if receipt.replayed else ""
    click.echo(f"upload {receipt.id}: {receipt.status}{seen}")
    click.echo(f"  organisation: {receipt.organisation}")
    click.echo(f"  sha256: {receipt.sha256}")
    click.echo(
        f"  rows: {receipt.rows_total} total, {receipt.rows_accepted} accepted, "
        f"{receipt.rows_rejected} rejected"
    )
    if receipt.file_rows_total is not None:
        click.echo(
            f"  whole file: {receipt.file_rows_total} rows, {receipt.rows_rejected_locally} "
            "refused on this machine (not sent; recorded on the receipt)"
        )
    if receipt.rows_held_back:
        click.echo(
            f"  held back for want of consent to research use: {receipt.rows_held_back} "
            "record(s) (among those refused on this machine)"
        )
    if receipt.lawful_basis is not None:
        click.echo(f"  lawful basis: {receipt.lawful_basis}")
    if receipt.rows_forgotten:
        click.echo(f"  forgotten since: {receipt.rows_forgotten} record(s)")
    click.echo(f"  created at: {receipt.created_at}")


def _read_input(path: Path) -> bytes:
    return path.read_bytes()


def _key(variable: str | None) -> bytes | None:
    return None if variable is None else key_from_env(variable)


def _linkage_secret(path: Path | None) -> bytes | None:
    """Read the linkage secret: from ``path``, else from :data:`LINKAGE_SECRET_ENV`, else none.

    A file's trailing line break is not part of the secret.
    """
    if path is not None:
        return check_secret(path.read_bytes().rstrip(b"\r\n"))
    value = os.environ.get(LINKAGE_SECRET_ENV, "")
    return check_secret(value) if value else None


# -- commands ------------------------------------------------------------------------------

_EPILOG = (
    "Exit codes: "
    + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items())
    + f". Environment: {HUB_URL_ENV}, {CLIENT_ID_ENV} (defaults of --hub, --client-id), "
    f"{CLIENT_SECRET_ENV} (the client secret), {RETRIES_ENV} (default of --retries)."
)

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
_DROP = click.option(
    "--drop",
    "drop",
    multiple=True,
    metavar="COLUMN",
    help=(
        "Leave COLUMN out of what is sent (repeatable). Without it, a column that matches no "
        "schema field, or a schema field the identifier screen flags, stops the command."
    ),
)
_ASSIGN = click.option(
    "--assign-case-ids",
    "assign_case_ids",
    metavar="MAPPING.csv",
    type=click.Path(dir_okay=False, path_type=Path),
    help=(
        "Give each row without a caseNo a random case id, kept in MAPPING.csv on this machine "
        "(file digest, row, case id) so the case can be found and withdrawn later; the hub "
        "receives only its pseudonym. An existing mapping is reused and appended to, never "
        "overwritten. Needs --pseudonym-key-env."
    ),
)
_LAWFUL_BASIS = click.option(
    "--lawful-basis",
    type=click.Choice(list(LAWFUL_BASES)),
    default=DEFAULT_LAWFUL_BASIS,
    show_default=True,
    help=(
        "The lawful basis the records are sent under. Under consent, an HTCDS export's records "
        "whose consent to research use (con_DataForResearch, con_UseOfData) is not given stay "
        "on this machine and only their count and reason go on the receipt; another basis "
        "sends them, and the hub records the basis on the receipt and in its audit trail."
    ),
)

_LINKAGE = click.option(
    "--linkage-secret-file",
    "linkage_secret_file",
    metavar="PATH",
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
    help=(
        "File holding the linkage secret the partners share and the hub never holds (32 bytes "
        f"or more; default: the environment variable {LINKAGE_SECRET_ENV}). With a secret, each "
        "record carries a keyed linkage encoding of its person (HTCDS person fields: names, "
        "birth date, gender, citizenship), made here so the hub can count people across "
        "partners; the names and birth date are dropped. Without one, no encoding is sent."
    ),
)

_HUB = click.option(
    "--hub",
    "hub_url",
    required=True,
    metavar="URL",
    envvar=HUB_URL_ENV,
    show_envvar=True,
    help="The hub's address.",
)
_RETRIES = click.option(
    "--retries",
    type=click.IntRange(0, 20),
    default=5,
    show_default=True,
    envvar=RETRIES_ENV,
    show_envvar=True,
    help="How often to retry when the hub cannot be reached or asks to wait (each is shown).",
)
_CLIENT_ID = click.option(
    "--client-id",
    required=True,
    envvar=CLIENT_ID_ENV,
    show_envvar=True,
    help="The partner's OAuth 2 client id.",
)


def _version() -> str:
    """Return the installed toolkit's version (or the hub's, in a checkout of the whole hub)."""
    from importlib import metadata

    for distribution in ("ctdhub-contribute", "ctdhub"):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def _print_version(context: click.Context, _: click.Parameter, value: bool) -> None:
    # looked up only when asked for: reading the installed distributions takes start-up time
    if value and not context.resilient_parsing:
        click.echo(f"ctdhub-contribute, version {_version()}")
        context.exit()


@click.group(epilog=_EPILOG)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and exit.",
)
def cli() -> None:
    """Check, prepare and upload case records to a ctdhub, from the partner's own machine."""


@cli.command(epilog=_EPILOG)
@_FILE
@_HTCDS
@_KEY_ENV
@_ACCEPT_VALID
@_LAWFUL_BASIS
@_one_line_errors
def validate(
    file: Path, htcds: bool, pseudonym_key_env: str | None, accept_valid: bool, lawful_basis: str
) -> None:
    """Give the hub's verdict on FILE, sent as it is: the hub's own checks, run here.

    Nothing is written or sent. Exits 1, ending with one error line, whenever the hub would
    refuse the file: an identifier column, a column outside the schema, a rejected row (unless
    --accept-valid) or no row at all. With --htcds the export is first mapped, as upload does.
    """
    data = _read_input(file)
    if htcds:
        # Nothing is written, so without the partner's key a throwaway key will do.
        key = _key(pseudonym_key_env) or secrets.token_bytes(32)
        prepared = prepare_upload(
            data, filename=file.name, htcds=True, pseudonym_key=key, lawful_basis=lawful_basis
        )
        _print_report(prepared)
        report = prepared.report
    else:
        report = validate_records(read_table(data, filename=file.name), load_schema()).report
        _print_findings(report.identifier_findings)
        _print_report_dict(report.as_dict())
    reason = refusal(report, accept_valid=accept_valid)
    if reason is not None:
        hint = "; `prepare` maps headers, drops identifiers and pseudonymises case ids"
        raise _Stop(
            f"the hub would refuse this file: {reason}{hint if not htcds else ''}", EXIT_REJECTED
        )
    click.echo("ok: the hub would accept this file")


def _open_case_ids(path: Path | None, output: Path | None) -> CaseIdMapping | None:
    if path is None:
        return None
    if output is not None and path.resolve() == output.resolve():
        raise _Stop("the case-id mapping and the output must be different files", EXIT_INPUT)
    return CaseIdMapping(path)


def _prepare_checked(
    file: Path,
    htcds: bool,
    pseudonym_key_env: str | None,
    drop: tuple[str, ...],
    case_ids: CaseIdMapping | None,
    accept_valid: bool,
    lawful_basis: str = DEFAULT_LAWFUL_BASIS,
    linkage_secret_file: Path | None = None,
) -> PreparedUpload:
    """Prepare FILE in memory, print its report, and stop if it is not safe to send."""
    prepared = prepare_upload(
        _read_input(file),
        filename=file.name,
        htcds=htcds,
        pseudonym_key=_key(pseudonym_key_env),
        drop=drop,
        case_ids=case_ids,
        lawful_basis=lawful_basis,
        linkage_secret=_linkage_secret(linkage_secret_file),
    )
    _print_report(prepared)
    _refuse_if_unsafe(prepared, accept_valid)
    return prepared


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
@_DROP
@_ASSIGN
@_LAWFUL_BASIS
@_LINKAGE
@_one_line_errors
def prepare(
    file: Path,
    output: Path,
    htcds: bool,
    pseudonym_key_env: str | None,
    accept_valid: bool,
    drop: tuple[str, ...],
    assign_case_ids: Path | None,
    lawful_basis: str,
    linkage_secret_file: Path | None,
) -> None:
    """Write a hub-ready CSV of FILE: identifiers dropped, case ids pseudonymised, validated.

    Without --accept-valid nothing is written when a row would be rejected.
    """
    if output.resolve() == file.resolve():
        raise _Stop("the output must not overwrite the input file", EXIT_INPUT)
    case_ids = _open_case_ids(assign_case_ids, output)
    prepared = _prepare_checked(
        file,
        htcds,
        pseudonym_key_env,
        drop,
        case_ids,
        accept_valid,
        lawful_basis,
        linkage_secret_file,
    )
    # Both files are whole or untouched: the output goes to a temporary name first.
    temporary = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    temporary.write_bytes(prepared.to_csv())
    try:
        _save_case_ids(case_ids, assign_case_ids)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, output)
    click.echo(f"wrote {prepared.report.rows_accepted} case records to {output}")


def _save_case_ids(case_ids: CaseIdMapping | None, path: Path | None) -> None:
    if case_ids is None or not case_ids.added:
        return
    added = case_ids.added
    case_ids.save()
    click.echo(f"kept {added} new case id(s) in {path} (keep it: it is how to find these cases)")


def _refuse_if_unsafe(prepared: PreparedUpload, accept_valid: bool) -> None:
    """Stop when the hub would refuse what would be sent, or rows are rejected unasked."""
    if prepared.flagged:
        columns = ", ".join(sorted({f.column for f in prepared.flagged}))
        raise _Stop(f"identifier screen still flags column(s) {columns}", EXIT_REJECTED)
    report = prepared.report
    if report.rows_rejected and not accept_valid:
        hint = (
            "; the file has no caseNo column: give --assign-case-ids MAPPING.csv to give each "
            "row a random case id"
            if "caseNo" in report.missing_columns
            else ""
        )
        raise _Stop(
            f"{report.rows_rejected} of {report.rows_total} row(s) would be rejected; fix them, or "
            f"give --accept-valid to go on with the valid rows only{hint}",
            EXIT_REJECTED,
        )
    # What is sent is the accepted rows alone, so the hub's verdict is on them.
    reason = refusal(report, accept_valid=True)
    if reason is not None:
        raise _Stop(f"the hub would refuse this file: {reason}", EXIT_REJECTED)


@cli.command(epilog=_EPILOG)
@_FILE
@_HUB
@_CLIENT_ID
@_RETRIES
@_ACCEPT_VALID
@click.option(
    "--idempotency-key",
    metavar="K",
    help="Reuse the key of an earlier attempt whose answer was lost (default: a new one).",
)
@_HTCDS
@_KEY_ENV
@_DROP
@_ASSIGN
@_LAWFUL_BASIS
@_LINKAGE
@_one_line_errors
def upload(
    file: Path,
    hub_url: str,
    client_id: str,
    accept_valid: bool,
    idempotency_key: str | None,
    htcds: bool,
    pseudonym_key_env: str | None,
    drop: tuple[str, ...],
    assign_case_ids: Path | None,
    retries: int,
    lawful_basis: str,
    linkage_secret_file: Path | None,
) -> None:
    """Prepare FILE in memory, check it locally, and upload it to the hub.

    The client secret is read from the environment variable CTDC_PARTNER_CLIENT_SECRET. A file
    with rows that would be rejected is not sent, unless --accept-valid, and then only its
    valid rows are sent, and the hub's receipt records how many rows were refused here and why.
    """
    client = _client(hub_url, client_id, retries)
    case_ids = _open_case_ids(assign_case_ids, None)
    prepared = _prepare_checked(
        file,
        htcds,
        pseudonym_key_env,
        drop,
        case_ids,
        accept_valid,
        lawful_basis,
        linkage_secret_file,
    )
    # The mapping is kept before sending: the hub may store the upload even if its answer is
    # lost, and the same file prepared again reuses these ids (a replay, not a second upload).
    _save_case_ids(case_ids, assign_case_ids)
    body, local_rejections = prepared.to_csv(), prepared.local_rejections()
    # The typed records are no longer needed: their memory serves the upload instead.
    del prepared
    with client:
        # No file name is sent: a partner's file names can hold a person's name.
        receipt = client.upload(
            body,
            media_type=CSV,
            accept_valid=accept_valid,
            idempotency_key=idempotency_key,
            progress=True,
            local_rejections=local_rejections,
            lawful_basis=lawful_basis,
        )
    _print_receipt(receipt)


def _client(hub_url: str, client_id: str, retries: int) -> HubClient:
    """Make a hub client, the secret read from the environment (never from the command line)."""
    secret = os.environ.get(CLIENT_SECRET_ENV, "")
    if not secret:
        renamed = (
            f" ({_OLD_SECRET_ENV} is no longer read: the hub's own commands refuse it; rename it)"
            if os.environ.get(_OLD_SECRET_ENV)
            else ""
        )
        raise _Stop(f"set {CLIENT_SECRET_ENV} to the partner's client secret{renamed}", EXIT_INPUT)
    try:
        return HubClient(hub_url, client_id, secret, retries=retries, on_retry=_say_retry)
    except ValueError as error:
        raise _Stop(str(error), EXIT_INPUT) from None


def _say_retry(line: str) -> None:
    click.echo(f"hub not answering: {line}", err=True)


@cli.command("uploads", epilog=_EPILOG)
@_HUB
@_CLIENT_ID
@_RETRIES
@_one_line_errors
def list_uploads(hub_url: str, client_id: str, retries: int) -> None:
    """List the partner's uploads on the hub, newest first.

    The client secret is read from CTDC_PARTNER_CLIENT_SECRET.
    """
    with _client(hub_url, client_id, retries) as client:
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
@_RETRIES
@_one_line_errors
def withdraw(upload_id: str, hub_url: str, client_id: str, retries: int) -> None:
    """Withdraw the upload UPLOAD_ID from the hub (secret from CTDC_PARTNER_CLIENT_SECRET)."""
    with _client(hub_url, client_id, retries) as client:
        receipt = client.withdraw(upload_id)
    if receipt is None:
        click.echo(f"upload {upload_id}: withdrawn")
    else:
        _print_receipt(receipt)


@cli.command(epilog=_EPILOG)
@click.argument("case_id")
@click.option(
    "--pseudonym-key-env",
    metavar="VAR",
    required=True,
    help="Environment variable holding the partner's pseudonym key (the one uploads used).",
)
@_HUB
@_CLIENT_ID
@_RETRIES
@_one_line_errors
def forget(
    case_id: str, pseudonym_key_env: str, hub_url: str, client_id: str, retries: int
) -> None:
    """Have the hub forget the case CASE_ID: every record of it leaves every upload.

    For a survivor who withdrew consent or asked to be forgotten. CASE_ID is the case system's
    own case number (or the id --assign-case-ids kept); only its pseudonym, made here with the
    partner's key, is sent. The hub re-seals each upload that held it without it, under a new
    data key, so it is in no later snapshot or release. Asking again is harmless. The client
    secret is read from CTDC_PARTNER_CLIENT_SECRET.
    """
    pseudonym = pseudonymise(case_id, key_from_env(pseudonym_key_env))
    with _client(hub_url, client_id, retries) as client:
        outcome = client.forget(pseudonym)
    if outcome.repeated:
        click.echo("the case was forgotten before: nothing of it is held")
    else:
        click.echo(
            f"forgotten: {outcome.records_removed} record(s) removed from "
            f"{len(outcome.uploads)} upload(s): {', '.join(outcome.uploads)}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``ctdhub-contribute`` command line.

    :param argv: the arguments (``sys.argv[1:]`` when not given).
    """
    gc.freeze()  # what start-up made lives as long as the process (see the imports)
    cli.main(args=list(argv) if argv is not None else None, prog_name="ctdhub-contribute")


if __name__ == "__main__":
    main()
