"""The board's decision on release candidates, and immutable published releases.

A full release candidate (:func:`hub.services.releases.build_release`) that passed every policy
check goes to the board. Members vote with a reason code (:mod:`policies.board`: the candidate's
builder never votes, one vote per member, a quorum of approvals publishes it, one rejection or
request for changes stops it). The vote that meets the quorum publishes the candidate in its
own transaction: the files are copied into ``<published>/<release id>`` beside a SHA-256
manifest, a Frictionless ``datapackage.json`` described from the record schema, and privacy
notes; the release row, the vote and their audit events commit together, or nothing does.

A published release is never modified. Retraction (the same quorum, motion ``retract``) hides
its files and keeps its record, notes and audit trail.

Files are written three ways: CSV, XLSX and Parquet. In CSV and XLSX a text cell beginning with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return is written with a leading apostrophe, so a
spreadsheet never runs it as a formula (OWASP's advice on CSV injection); Parquet keeps the
values as they are, typed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import xlsxwriter
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contributors.schema import load_schema
from disclosure_control.dp import Release as DPRelease
from disclosure_control.dp import rho_to_epsilon
from disclosure_control.sdc import SafeTable
from hub import audit
from hub.actors import Actor, PrincipalActor, acting_principal, authorize
from hub.domain_errors import Conflict, InvalidInput, NotAuthorized, NotFound
from hub.models import (
    Principal,
    PublishedRelease,
    RecordBatch,
    ReleaseCandidate,
    ReleaseVote,
    Upload,
    new_id,
    utcnow,
)
from hub.services import transparency
from hub.services.policies import record_fields
from policies import Decision, Policy, Review, ReviewState, Vote, VoteRefused, validate_policy
from policies.document import MAX_SHEET_RECORDS

if TYPE_CHECKING:
    from hub.services.releases import BuiltRelease

APPROVE_SCOPE = "releases:approve"
PUBLISH, RETRACT = "publish", "retract"
#: The board's role, whose enabled principals vote.
BOARD_ROLE = "board"

#: The first characters that make a spreadsheet read a cell as a formula (or hide one).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
NEUTRALISATION = (
    "In the CSV and XLSX files, a text cell that begins with =, +, -, @, a tab or a carriage"
    " return is written with a leading apostrophe (') so that no spreadsheet reads it as a"
    " formula; remove that one apostrophe to get the value. The Parquet file holds every value"
    " unchanged, typed."
)
FORMATS = ("csv", "xlsx", "parquet")
MEDIA_TYPES = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "parquet": "application/vnd.apache.parquet",
}
MANIFEST = "manifest-sha256.txt"
DATAPACKAGE = "datapackage.json"
NOTES = "privacy-notes.md"


# --- writing data files ---------------------------------------------------------------------


def _text_columns(frame: pd.DataFrame) -> list[str]:
    return [
        name
        for name in frame.columns
        if not (
            pd.api.types.is_numeric_dtype(frame[name]) or pd.api.types.is_bool_dtype(frame[name])
        )
    ]


def neutralised(frame: pd.DataFrame) -> pd.DataFrame:
    """Return the frame with every text cell neutralised (numbers stay numbers): a text cell
    that begins with one of :data:`FORMULA_STARTS` gets a leading apostrophe.

    >>> frame = pd.DataFrame({"text": ["=HYPERLINK(1)", "-", "Female", None], "n": [1, -2, 3, 4]})
    >>> neutralised(frame).to_dict("list")
    {'text': ["'=HYPERLINK(1)", "'-", 'Female', None], 'n': [1, -2, 3, 4]}
    """
    out = frame.copy(deep=False)
    for name in _text_columns(frame):
        column = frame[name].astype("string")
        risky = column.str.startswith(FORMULA_STARTS, na=False)
        out[name] = column.where(~risky, "'" + column) if risky.any() else column
    return out


#: The most rows a worksheet holds, its header included (Excel's limit).
XLSX_MAX_ROWS = MAX_SHEET_RECORDS + 1  # the header's row and the records'
#: xlsxwriter's options for published sheets: every ``str`` is written as text (never read as a
#: formula, a URL or a number), rows stream to disk as they are written (constant memory).
_XLSX_OPTIONS = {
    "constant_memory": True,
    "strings_to_formulas": False,
    "strings_to_urls": False,
    "strings_to_numbers": False,
}


def write_xlsx(path: Path, sheet_name: str, frame: pd.DataFrame) -> None:
    """Write ``frame`` as one worksheet, its header first, missing values as empty cells.

    :param frame: already neutralised (:func:`neutralised`): every text value is written as
        text as it is.
    :raises ValueError: if the frame has more rows, or a row more than, a worksheet holds.
    """
    if len(frame) >= XLSX_MAX_ROWS:
        raise ValueError(f"{len(frame)} rows do not fit in one worksheet ({XLSX_MAX_ROWS - 1})")
    book = xlsxwriter.Workbook(str(path), _XLSX_OPTIONS)
    try:
        sheet = book.add_worksheet(sheet_name)
        sheet.write_row(0, 0, [str(name) for name in frame.columns])
        # Python objects (int, float, str, None for a missing value), one array per column.
        columns = [
            # pandas-stubs leave out na_value=None, which pandas documents and accepts
            frame[name].to_numpy(dtype=object, na_value=None)  # type: ignore[call-overload]
            for name in frame.columns
        ]
        write_row = sheet.write_row
        for row, values in enumerate(zip(*columns, strict=True), start=1):
            # XlsxWriter answers a cell it cannot write (a text over 32,767 characters, a
            # column past the sheet's last) with a code and leaves the rest of the row out.
            if write_row(row, 0, values):
                raise ValueError(
                    f"row {row} of {sheet_name} does not fit in a worksheet (a text over 32,767"
                    f" characters, or more than 16,384 columns)"
                )
    finally:
        book.close()


def write_data_files(directory: Path, stem: str, frame: pd.DataFrame) -> list[str]:
    """Write ``frame`` as ``stem``.csv, .xlsx and .parquet under ``directory``; return the paths.

    :param stem: the relative path without suffix (``tables/by_year``).
    """
    (directory / stem).parent.mkdir(parents=True, exist_ok=True)
    safe = neutralised(frame)
    # CRLF, as RFC 4180 has it: the writer then quotes every field holding a CR or an LF.
    safe.to_csv(directory / f"{stem}.csv", index=False, lineterminator="\r\n")
    write_xlsx(directory / f"{stem}.xlsx", Path(stem).name[:31], safe)
    frame.to_parquet(directory / f"{stem}.parquet", index=False)
    return [f"{stem}.{suffix}" for suffix in FORMATS]


def sha256_file(path: Path) -> str:
    """Return the SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _safe_table_frame(table: SafeTable) -> pd.DataFrame:
    """Return a safe table as published: its cells, ``count`` hidden where suppressed.

    Whether a suppressed cell was primary or secondary is not published: "primary" would say
    the count is small.
    """
    cells = table.cells
    frame = cells[list(table.dimensions)].astype("string").copy()
    frame["count"] = cells["value"]
    frame["status"] = pd.array(
        ["published" if s == "published" else "suppressed" for s in cells["status"].astype(str)],
        dtype="string",
    )
    return frame


def _dp_table_frame(answer: DPRelease) -> pd.DataFrame:
    """Return a DP table: each cell's key, its count and the 95% interval around it."""
    data: dict[str, Any] = {}
    for position, name in enumerate(answer.group_by):
        data[name] = pd.array(
            [
                "" if cell.key[position] is None else str(cell.key[position])
                for cell in answer.cells
            ],
            dtype="string",
        )
    data["count"] = pd.array([cell.value for cell in answer.cells], dtype="Int64")
    # A count's interval is always given (only a quantile has none).
    data["lower_95"] = [None if c.interval is None else c.interval[0] for c in answer.cells]
    data["upper_95"] = [None if c.interval is None else c.interval[1] for c in answer.cells]
    frame = pd.DataFrame(data)
    return frame


def write_candidate_files(directory: Path, built: BuiltRelease) -> dict[str, Any]:
    """Write a candidate's publishable files and its board-only report; return their index.

    :returns: ``files`` (relative path -> SHA-256), ``data`` (per data file stem: its kind,
        columns, rows and privacy note), ``tables`` (what each safe table publishes, kept for
        later differencing checks).
    """
    from hub.services.releases import PublishedTable  # releases imports this module lazily

    policy = built.policy
    privacy = policy.privacy
    display_delta = privacy.display_delta
    data: dict[str, dict[str, Any]] = {}
    files: list[str] = []

    def add(stem: str, kind: str, frame: pd.DataFrame, note: dict[str, Any]) -> None:
        files.extend(f"files/{path}" for path in write_data_files(directory / "files", stem, frame))
        data[stem] = {
            "kind": kind,
            "columns": [str(c) for c in frame.columns],
            "types": {str(c): _frictionless_type(frame[c]) for c in frame.columns},
            "rows": len(frame),
            "note": note,
        }

    if built.microdata is not None:
        micro = policy.microdata
        summary = built.report.get("microdata", {})
        rule = micro.l_diversity
        add(
            "microdata",
            "k-anonymous microdata",
            built.microdata,
            {
                "guarantee": "k-anonymity and l-diversity (no differential privacy)",
                "k": micro.k,
                "l": None if rule is None else rule.l,
                "l_kind": None if rule is None else rule.kind,
                "quasi_identifiers": list(micro.quasi_identifiers),
                "sensitive_attributes": [] if rule is None else list(rule.attributes),
                "generalisation": summary.get("levels", {}),
                "suppressed": (
                    f"{summary.get('records_suppressed', 0)} records were withheld whole and"
                    f" {summary.get('cells_suppressed', 0)} quasi-identifier values were"
                    f" withheld because their equivalence class was smaller than k = {micro.k}"
                    " or lacked l-diverse sensitive values; every other field of the record"
                    " schema is left out, since only these are covered by the k and l checks"
                ),
            },
        )
    tables = policy.tables
    kept_tables = []
    for name, table in built.safe_tables.items():
        add(
            f"tables/{name}",
            "safe frequency table",
            _safe_table_frame(table),
            {
                "guarantee": f"suppressed below {tables.cell_threshold}",
                "threshold": tables.cell_threshold,
                "zero_rule": tables.zero_rule,
                "rounding_base": tables.rounding_base,
                "suppressed": (
                    f"{table.primary} cell(s) counting from 1 to {tables.cell_threshold - 1}"
                    f"{' or 0' if tables.zero_rule == 'suppress' else ''} are suppressed, and"
                    f" {table.secondary} more so that the margins cannot give them back"
                    " (secondary suppression, hypercube method); the table was checked"
                    " against differencing with every table the hub had published"
                ),
            },
        )
        kept_tables.append(PublishedTable.record(name, table))
    for name, answer in built.dp_tables.items():
        add(
            f"dp/{name}",
            "differentially private table",
            _dp_table_frame(answer),
            _dp_note(
                answer.spend.rho,
                answer.spend.delta,
                display_delta,
                privacy.privacy_unit.description,
            )
            | {
                "mechanism": answer.mechanism,
                "interval": "95% confidence interval for each true count (lower_95, upper_95)",
                "post_processing": "counts made non-negative integers keeping the noisy total",
            },
        )
    if built.linkage_count is not None:
        _add_linkage_count(add, built.linkage_count, display_delta)
    if built.synthetic is not None:
        spend = built.charged["synthetic"]
        add(
            "synthetic",
            "differentially private synthetic records",
            built.synthetic,
            _dp_note(spend.rho, spend.delta, display_delta, privacy.privacy_unit.description)
            | {
                "records": len(built.synthetic),
                "how": "drawn from a model fitted to noisy marginals of the case records",
            },
        )
    report_dir = directory / "board"
    report_dir.mkdir()
    (report_dir / "report.json").write_text(json.dumps(built.report, allow_nan=False))
    (report_dir / "checks.json").write_text(json.dumps(built.checks.to_json(), allow_nan=False))
    files += ["board/report.json", "board/checks.json"]
    if built.model_text is not None:
        (report_dir / "model.json").write_text(built.model_text)
        files.append("board/model.json")
    return {
        "files": {path: sha256_file(directory / path) for path in files},
        "data": data,
        "tables": kept_tables,
    }


def _add_linkage_count(
    add: Callable[[str, str, pd.DataFrame, dict[str, Any]], None],
    count: dict[str, Any],
    display_delta: float,
) -> None:
    """Publish the DP count of people recorded by more than one partner, with its note."""
    frame = pd.DataFrame(
        {
            "statistic": pd.array([count["statistic"]], dtype="string"),
            "count": pd.array([count["count"]], dtype="Int64"),
            "lower_95": pd.array([count["lower_95"]], dtype="Int64"),
            "upper_95": pd.array([count["upper_95"]], dtype="Int64"),
        }
    )
    note = _dp_note(count["rho"], 0.0, display_delta, count["privacy_unit"]) | {
        "mechanism": count["mechanism"],
        "assumes": count["assumes"],
        "interval": "95% confidence interval for the true count (lower_95, upper_95)",
        "post_processing": "the count and its interval made non-negative",
    }
    add("dp/people_in_several_sources", "differentially private count", frame, note)


def _dp_note(rho: float, delta: float, display_delta: float, unit: str) -> dict[str, Any]:
    epsilon = rho_to_epsilon(rho, display_delta)
    return {
        "guarantee": "differential privacy (zero-concentrated)",
        "privacy_unit": unit,
        "rho": rho,
        "epsilon": epsilon,
        "delta": display_delta + delta,
        "stated_as": f"rho = {rho:g}, that is epsilon = {epsilon:.4g} at delta = {display_delta:g}",
    }


def _frictionless_type(column: pd.Series) -> str:
    if pd.api.types.is_integer_dtype(column):
        return "integer"
    if pd.api.types.is_float_dtype(column):
        return "number"
    return "string"


# --- the board's votes ----------------------------------------------------------------------


def board_members(session: Session) -> set[str]:
    """Return the ids of the enabled principals holding the board's role."""
    rows = session.execute(
        select(Principal.id, Principal.roles).where(Principal.disabled_at.is_(None))
    ).all()
    return {principal_id for principal_id, roles in rows if BOARD_ROLE in roles.split()}


def _refused(refusal: VoteRefused) -> Exception:
    """Map a refused vote to the hub's error: who may not vote 403, a bad vote 400, else 409."""
    if refusal.code == "not_board_member":
        return NotAuthorized(str(refusal), code=refusal.code)
    if refusal.code in ("bad_decision", "bad_reason"):
        return InvalidInput(str(refusal), code=refusal.code)
    return Conflict(str(refusal), code=refusal.code)


def _review(session: Session, motion: str, subject_id: str, proposer: str, quorum: int) -> Review:
    rows = session.execute(
        select(ReleaseVote)
        .where(ReleaseVote.motion == motion, ReleaseVote.subject_id == subject_id)
        .order_by(ReleaseVote.id)
    ).scalars()
    votes = tuple(Vote(r.member_id, Decision(r.decision), r.reason_code, r.remark) for r in rows)
    return Review(proposer, quorum, votes)


def _cast(
    session: Session,
    member: PrincipalActor,
    motion: str,
    subject_id: str,
    review: Review,
    ballot: Ballot,
) -> Review:
    """Record a member's vote on a motion (checked by the board's rules); return the review."""
    try:
        vote = Vote(member.id, Decision(ballot.decision), ballot.reason_code, ballot.remark)
    except ValueError as error:
        if isinstance(error, VoteRefused):
            raise _refused(error) from None
        known = ", ".join(d.value for d in Decision)
        raise InvalidInput(
            f"{ballot.decision!r} is not a decision; use one of {known}", code="bad_decision"
        ) from None
    try:
        after = review.cast(vote, board_members(session))
    except VoteRefused as refusal:
        raise _refused(refusal) from None
    session.add(
        ReleaseVote(
            motion=motion,
            subject_id=subject_id,
            member_id=member.id,
            decision=vote.decision.value,
            reason_code=vote.reason_code,
            remark=vote.text,
            counts=vote.counts,
        )
    )
    try:
        session.flush()
    except IntegrityError:
        # A second vote by the same member, cast concurrently: the index refused it.
        raise Conflict(
            "this member already voted; one vote per member", code="second_vote"
        ) from None
    return after


@dataclass(frozen=True)
class Ballot:
    """A member's vote or comment: the decision, its reason code, and words if needed.

    :param decision: ``approve``, ``request_changes``, ``reject`` or ``comment``.
    :param reason_code: one of :data:`policies.REASON_CODES` for the decision.
    :param remark: the member's words (required with ``other`` and with comments).
    """

    decision: str
    reason_code: str
    remark: str = ""

    def __post_init__(self) -> None:
        if len(self.remark) > 2000:
            raise InvalidInput("a remark is at most 2000 characters", code="bad_reason")


@dataclass(frozen=True)
class Places:
    """Where candidates' and published releases' files are kept.

    :param candidates: the release candidates' folder (``RELEASE_DIRECTORY``).
    :param published: the published releases' folder.
    """

    candidates: Path
    published: Path

    @classmethod
    def under(cls, directory: Path) -> Places:
        """Return the places under the release directory: candidates in it, releases in
        its ``published`` folder."""
        return cls(candidates=directory, published=directory / "published")


def _lock(session: Session, model: Any, key: str) -> None:
    """Lock one row until the transaction ends (a no-op write: every database locks it)."""
    column = model.id
    changed = session.execute(
        update(model)
        .where(column == key)
        .values(id=column)
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        raise NotFound(
            "no such release candidate" if model is ReleaseCandidate else "no such release"
        )


_NOT_VOTABLE = {
    "building": "the candidate is still being built",
    "blocked": "the candidate failed the policy's checks: it cannot be approved",
    "failed": "the candidate's build failed: it cannot be approved",
    "published": "the candidate is already published",
    "rejected": "the board already decided against this candidate",
}


def vote_on_candidate(
    session: Session,
    actor: Actor,
    candidate_id: str,
    ballot: Ballot,
    *,
    quorum: int,
    places: Places,
    request_id: str | None = None,
) -> dict[str, Any]:
    """Record a board member's vote on a release candidate; the quorum's vote publishes it.

    :param quorum: approvals needed besides the candidate's builder's.
    :returns: the review's state, approvals still needed, and the release if published.
    :raises hub.domain_errors.NotAuthorized: for anyone but a board member (nothing recorded).
    :raises hub.domain_errors.Conflict: for a second vote by one member, a vote on a blocked,
        failed, decided or already published candidate, or by its builder (nothing recorded).
    """
    member = acting_principal(actor, APPROVE_SCOPE)
    from hub.services.releases import RELEASE

    published_path: Path | None = None
    try:
        _lock(session, ReleaseCandidate, candidate_id)
        candidate = session.get_one(ReleaseCandidate, candidate_id, populate_existing=True)
        if candidate.kind != RELEASE:
            raise Conflict(
                f"a {candidate.kind} candidate is not a full release: only full releases are"
                " published",
                code="not_a_release",
            )
        if candidate.status != "candidate":
            raise Conflict(
                _NOT_VOTABLE.get(candidate.status, candidate.status), code=candidate.status
            )
        proposer = candidate.created_by or "operator"
        review = _cast(
            session,
            member,
            PUBLISH,
            candidate_id,
            _review(session, PUBLISH, candidate_id, proposer, quorum),
            ballot,
        )
        audit.record(
            session,
            "releases:candidate:vote",
            actor=member,
            request_id=request_id,
            subject_id=candidate_id,
            details={"decision": ballot.decision, "reason_code": ballot.reason_code},
        )
        state = review.state
        release: PublishedRelease | None = None
        if state is ReviewState.APPROVED:
            release = _publish(session, candidate, places, member, request_id)
            published_path = places.published / release.id
        elif state in (ReviewState.REJECTED, ReviewState.CHANGES_REQUESTED):
            candidate.status = "rejected"
            audit.record(
                session,
                "releases:candidate:reject",
                actor=member,
                request_id=request_id,
                subject_id=candidate_id,
                details={"state": state.value},
            )
        outcome = {
            "candidate": candidate_id,
            "state": state.value,
            "approvals": list(review.approvals),
            "needed": review.needed(),
            "release": None if release is None else release.id,
        }
        session.commit()
        return outcome
    except BaseException:
        session.rollback()
        if published_path is not None:
            shutil.rmtree(published_path, ignore_errors=True)
        raise


def publish(
    session: Session,
    actor: Actor,
    candidate_id: str,
    places: Places,
    *,
    request_id: str | None = None,
) -> PublishedRelease:
    """Publish a candidate whose board review is approved (the step the quorum's vote takes).

    :raises hub.domain_errors.Conflict: if it is already published, or not approved.
    """
    member = acting_principal(actor, APPROVE_SCOPE)
    try:
        _lock(session, ReleaseCandidate, candidate_id)
        candidate = session.get_one(ReleaseCandidate, candidate_id, populate_existing=True)
        if candidate.status != "candidate":
            raise Conflict(
                _NOT_VOTABLE.get(candidate.status, candidate.status), code=candidate.status
            )
        proposer = candidate.created_by or "operator"
        review = _review(session, PUBLISH, candidate_id, proposer, 1)
        if len(review.approvals) == 0 or review.state is not ReviewState.APPROVED:
            raise Conflict("the board has not approved this candidate", code="not_approved")
        release = _publish(session, candidate, places, member, request_id)
        session.commit()
        return release
    except BaseException:
        session.rollback()
        raise


def _publish(
    session: Session,
    candidate: ReleaseCandidate,
    places: Places,
    actor: PrincipalActor,
    request_id: str | None,
) -> PublishedRelease:
    """Write the release's files into place and add its row, in the caller's transaction."""
    if session.scalar(
        select(PublishedRelease.id).where(PublishedRelease.candidate_id == candidate.id)
    ):
        raise Conflict("the candidate is already published", code="published")
    artefacts = candidate.artefacts or {}
    source = places.candidates / candidate.id
    for path, digest in artefacts.get("files", {}).items():
        if not path.startswith("files/"):
            continue
        if not (source / path).is_file() or sha256_file(source / path) != digest:
            raise Conflict(
                f"the candidate's file {path} is missing or changed since it was built",
                code="candidate_files",
            )
    latest = session.scalar(select(func.max(PublishedRelease.version)))
    release = PublishedRelease(
        id=new_id(),
        version=(latest or 0) + 1,
        candidate_id=candidate.id,
        policy_version=int(candidate.policy_version or 0),
        policy_digest=candidate.policy_digest or "",
        snapshot_id=candidate.snapshot_id,
        batch_ids=list(candidate.batch_ids or []),
        manifest={},
        notes={},
        tables=list(artefacts.get("tables", [])),
        published_at=utcnow(),
    )
    earlier = _built_before_withdrawal(session)
    places.published.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{release.id}-", dir=places.published))
    try:
        shutil.copytree(source / "files", staging, dirs_exist_ok=True)
        policy = _policy_of(candidate)
        notes = _notes(release, artefacts.get("data", {}), policy, earlier)
        (staging / NOTES).write_text(_notes_markdown(notes))
        manifest = {path: sha256_file(staging / path) for path in _files_under(staging)}
        package = _datapackage(release, artefacts.get("data", {}), manifest, policy, notes)
        (staging / DATAPACKAGE).write_text(json.dumps(package, indent=2, allow_nan=False))
        manifest[DATAPACKAGE] = sha256_file(staging / DATAPACKAGE)
        (staging / MANIFEST).write_text(
            "".join(f"{digest}  {path}\n" for path, digest in sorted(manifest.items()))
        )
        os.rename(staging, places.published / release.id)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    release.manifest = manifest
    release.notes = notes
    session.add(release)
    try:
        session.flush()
    except IntegrityError:
        shutil.rmtree(places.published / release.id, ignore_errors=True)
        raise Conflict("another release was published at the same moment; try again") from None
    candidate.status = "published"
    transparency.log_release(session, release, candidate)
    audit.record(
        session,
        "releases:release:publish",
        actor=actor,
        request_id=request_id,
        subject_id=release.id,
        details={
            "candidate": candidate.id,
            "version": release.version,
            "policy_version": release.policy_version,
            "snapshot_id": release.snapshot_id,
            "files": len(manifest),
        },
    )
    return release


def _files_under(directory: Path) -> list[str]:
    return sorted(
        str(path.relative_to(directory)) for path in directory.rglob("*") if path.is_file()
    )


def _policy_of(candidate: ReleaseCandidate) -> Policy:
    """Return the policy a candidate was built under (its document is kept with it)."""
    return validate_policy(candidate.parameters["policy"], record_fields())


def _built_before_withdrawal(session: Session) -> list[dict[str, Any]]:
    """Return the releases holding records of an upload withdrawn since (id and version)."""
    withdrawn = set(
        session.execute(
            select(RecordBatch.id)
            .join(Upload, Upload.id == RecordBatch.upload_id)
            .where(Upload.withdrawn_at.is_not(None))
        ).scalars()
    )
    if not withdrawn:
        return []
    rows = session.execute(select(PublishedRelease).order_by(PublishedRelease.version)).scalars()
    return [
        {"id": row.id, "version": row.version}
        for row in rows
        if withdrawn.intersection(row.batch_ids)
    ]


def _citation(policy: Policy, release: PublishedRelease) -> str:
    return policy.publication.citation.format(
        release_id=release.id,
        release_version=release.version,
        published=release.published_at.date().isoformat(),
        policy_version=release.policy_version,
    )


def _notes(
    release: PublishedRelease,
    data: Mapping[str, Mapping[str, Any]],
    policy: Policy,
    earlier: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """Return the release's privacy notes: per file, its guarantee and what was suppressed."""
    withdrawal = (
        "No earlier release holds records of a withdrawn upload."
        if not earlier
        else "Release(s) "
        + ", ".join(f"version {e['version']} ({e['id']})" for e in earlier)
        + " were built before a partner withdrew an upload; this release leaves the withdrawn"
        " records out, those releases still hold them."
    )
    return {
        "release": release.id,
        "version": release.version,
        "policy_version": release.policy_version,
        "policy_digest": release.policy_digest,
        "batch_set_digest": release.snapshot_id,
        "privacy_unit": policy.privacy.privacy_unit.description,
        "files": {stem: dict(item["note"]) for stem, item in data.items()},
        "formula_neutralisation": NEUTRALISATION,
        "withdrawals": {"built_before_a_withdrawal": list(earlier), "note": withdrawal},
        "licence": policy.publication.licence.model_dump(),
        "citation": _citation(policy, release),
        "terms": policy.publication.terms,
    }


def _notes_markdown(notes: Mapping[str, Any]) -> str:
    lines = [
        f"# Privacy notes: release {notes['version']} ({notes['release']})",
        "",
        f"Built under release policy version {notes['policy_version']} (SHA-256"
        f" {notes['policy_digest']}) from the batch set {notes['batch_set_digest']}.",
        f"Privacy unit: {notes['privacy_unit']}.",
        "",
    ]
    for stem, note in notes["files"].items():
        lines.append(f"## {stem}")
        lines.append("")
        for key, value in note.items():
            lines.append(f"- {key}: {value}")
        lines.append("")
    lines += [
        "## Spreadsheet formulas",
        "",
        notes["formula_neutralisation"],
        "",
        "## Withdrawn uploads",
        "",
        notes["withdrawals"]["note"],
        "",
        "## Licence and citation",
        "",
        f"{notes['licence']['title']} ({notes['licence']['path']}).",
        "",
        notes["citation"],
        "",
        notes["terms"],
        "",
    ]
    return "\n".join(lines)


def _field_description(name: str, derived: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Return a column's title and description from the record schema (the data dictionary)."""
    schema = load_schema()
    if name in schema:
        spec = schema.field(name)
        return {"title": spec.title, "description": spec.description}
    if name in derived:
        entry = derived[name]
        return {
            "title": str(entry.get("title", name)),
            "description": str(entry.get("description", "")),
        }
    return {"description": _OWN_COLUMNS.get(name, "")}


_OWN_COLUMNS = {
    "count": "The number of case records in the cell (empty where suppressed).",
    "status": "published, or suppressed (the count is hidden).",
    "lower_95": "Lower end of the 95% confidence interval for the true count.",
    "upper_95": "Upper end of the 95% confidence interval for the true count.",
}


def _resource_name(stem: str) -> str:
    return stem.replace("/", "-").lower()


def _datapackage(
    release: PublishedRelease,
    data: Mapping[str, Mapping[str, Any]],
    manifest: Mapping[str, str],
    policy: Policy,
    notes: Mapping[str, Any],
) -> dict[str, Any]:
    """Return the Frictionless data package of a release: one CSV resource per data file,
    its fields described from the record schema, its XLSX and Parquet twins beside it."""
    derived = {
        str(entry["name"]): entry
        for entry in load_schema().as_dict().get("ctdhub:derivedAttributes", [])
    }
    resources = []
    for stem, item in data.items():
        fields = [
            {"name": column, "type": item["types"][column], **_field_description(column, derived)}
            for column in item["columns"]
        ]
        note = item["note"]
        resources.append(
            {
                "name": _resource_name(stem),
                "path": f"{stem}.csv",
                "profile": "tabular-data-resource",
                "format": "csv",
                "mediatype": MEDIA_TYPES["csv"],
                "encoding": "utf-8",
                "hash": f"sha256:{manifest[f'{stem}.csv']}",
                "title": f"{item['kind']}: {stem}",
                "description": f"{note['guarantee']}. {NEUTRALISATION}",
                "schema": {"fields": fields},
                "ctdhub:privacy": dict(note),
                "ctdhub:formats": [
                    {
                        "path": f"{stem}.{suffix}",
                        "format": suffix,
                        "mediatype": MEDIA_TYPES[suffix],
                        "hash": f"sha256:{manifest[f'{stem}.{suffix}']}",
                    }
                    for suffix in FORMATS
                ],
            }
        )
    licence = policy.publication.licence
    return {
        "profile": "tabular-data-package",
        "name": f"ctdhub-release-{release.version}",
        "id": release.id,
        "title": f"ctdhub release {release.version}",
        "version": f"{release.version}.0.0",
        "created": release.published_at.isoformat().replace("+00:00", "Z"),
        "description": notes["citation"],
        "licenses": [{"name": licence.name, "title": licence.title, "path": licence.path}],
        "resources": resources,
        "ctdhub:release": {
            "version": release.version,
            "policy_version": release.policy_version,
            "policy_digest": release.policy_digest,
            "batch_set_digest": release.snapshot_id,
            "privacy_notes": NOTES,
            "manifest": MANIFEST,
        },
    }


# --- retraction -----------------------------------------------------------------------------


def vote_on_retraction(
    session: Session,
    actor: Actor,
    release_id: str,
    ballot: Ballot,
    *,
    quorum: int,
    request_id: str | None = None,
) -> dict[str, Any]:
    """Propose or vote on retracting a published release; the quorum's vote retracts it.

    The first member to speak on a release's retraction proposes it (a comment with their
    reason); the others vote as on a candidate. Retraction hides the files and keeps the
    release's record, notes and audit trail.

    :raises hub.domain_errors.Conflict: if the release is already retracted, or for a second
        vote by one member.
    """
    member = acting_principal(actor, APPROVE_SCOPE)
    try:
        _lock(session, PublishedRelease, release_id)
        release = session.get_one(PublishedRelease, release_id, populate_existing=True)
        if release.retracted_at is not None:
            raise Conflict("the release is already retracted", code="retracted")
        first = session.execute(
            select(ReleaseVote.member_id)
            .where(ReleaseVote.motion == RETRACT, ReleaseVote.subject_id == release_id)
            .order_by(ReleaseVote.id)
            .limit(1)
        ).scalar_one_or_none()
        proposer = first or member.id
        if first is None and ballot.decision != Decision.COMMENT.value:
            raise InvalidInput(
                "a retraction is proposed with a comment (reason code 'note' and the reason)",
                code="bad_decision",
            )
        review = _cast(
            session,
            member,
            RETRACT,
            release_id,
            _review(session, RETRACT, release_id, proposer, quorum),
            ballot,
        )
        audit.record(
            session,
            "releases:retraction:vote",
            actor=member,
            request_id=request_id,
            subject_id=release_id,
            details={"decision": ballot.decision, "reason_code": ballot.reason_code},
        )
        if review.state is ReviewState.APPROVED:
            release.retracted_at = utcnow()
            transparency.log_retraction(session, release)
            audit.record(
                session,
                "releases:release:retract",
                actor=member,
                request_id=request_id,
                subject_id=release_id,
                details={"version": release.version},
            )
        outcome = {
            "release": release_id,
            "state": review.state.value,
            "approvals": list(review.approvals),
            "needed": review.needed(),
            "retracted": release.retracted_at is not None,
        }
        session.commit()
        return outcome
    except BaseException:
        session.rollback()
        raise


# --- the board's reads ----------------------------------------------------------------------


def motion_review(
    session: Session, actor: Actor, motion: str, subject_id: str, *, quorum: int
) -> dict[str, Any]:
    """Return where the board's review of a candidate (``publish``) or a retraction stands.

    :returns: ``state``, ``approvals``, ``needed``, ``proposer`` and the ``votes`` (member, their
        name, decision, reason code, words, time), in the order cast, with the ``trail`` of
        audit events about the subject (a candidate's and, once published, its release's).
    :raises hub.domain_errors.NotFound: if there is no such candidate or release.
    """
    from hub.services.releases import CANDIDATES_READ_SCOPE

    authorize(actor, CANDIDATES_READ_SCOPE)
    subjects = [subject_id]
    if motion == PUBLISH:
        candidate = session.get(ReleaseCandidate, subject_id)
        if candidate is None:
            raise NotFound("no such release candidate")
        proposer = candidate.created_by or "operator"
        subjects += list(
            session.scalars(
                select(PublishedRelease.id).where(PublishedRelease.candidate_id == subject_id)
            )
        )
    else:
        if session.get(PublishedRelease, subject_id) is None:
            raise NotFound("no such release")
        first = session.scalar(
            select(ReleaseVote.member_id)
            .where(ReleaseVote.motion == RETRACT, ReleaseVote.subject_id == subject_id)
            .order_by(ReleaseVote.id)
            .limit(1)
        )
        proposer = first or ""
    review = _review(session, motion, subject_id, proposer, quorum)
    rows = session.execute(
        select(ReleaseVote, Principal.name)
        .outerjoin(Principal, Principal.id == ReleaseVote.member_id)
        .where(ReleaseVote.motion == motion, ReleaseVote.subject_id == subject_id)
        .order_by(ReleaseVote.id)
    ).all()
    shown = {
        "state": review.state.value,
        "approvals": list(review.approvals),
        "needed": review.needed(),
        "proposer": proposer,
        "votes": [
            {
                "member_id": vote.member_id,
                "member_name": name or "",
                "decision": vote.decision,
                "reason_code": vote.reason_code,
                "text": vote.remark,
                "at": vote.cast_at,
            }
            for vote, name in rows
        ],
        "trail": audit.trail(session, subjects),
    }
    session.rollback()  # read only
    return shown


# --- public reads (no login) ----------------------------------------------------------------


def _withdrawn_batches(session: Session) -> set[str]:
    return set(
        session.execute(
            select(RecordBatch.id)
            .join(Upload, Upload.id == RecordBatch.upload_id)
            .where(Upload.withdrawn_at.is_not(None))
        ).scalars()
    )


def describe_release(release: PublishedRelease, withdrawn: Iterable[str] = ()) -> dict[str, Any]:
    """Return a published release as the public API shows it."""
    hidden = release.retracted_at is not None
    base = f"/v1/releases/{release.id}"
    return {
        "id": release.id,
        "version": release.version,
        "policy_version": release.policy_version,
        "policy_digest": release.policy_digest,
        "batch_set_digest": release.snapshot_id,
        "published_at": release.published_at.isoformat(),
        "retracted_at": None if release.retracted_at is None else release.retracted_at.isoformat(),
        "built_before_a_withdrawal": bool(set(withdrawn).intersection(release.batch_ids)),
        "notes": release.notes,
        "datapackage": None if hidden else f"{base}/datapackage.json",
        "files": []
        if hidden
        else [
            {"path": path, "sha256": digest, "url": f"{base}/files/{path}"}
            for path, digest in sorted(release.manifest.items())
        ],
    }


def list_releases(session: Session) -> list[dict[str, Any]]:
    """Return every published release, newest first (retracted ones without their files)."""
    withdrawn = _withdrawn_batches(session)
    rows = session.execute(
        select(PublishedRelease).order_by(PublishedRelease.version.desc())
    ).scalars()
    return [describe_release(row, withdrawn) for row in rows]


def get_release(session: Session, release_id: str) -> dict[str, Any]:
    """Return one published release.

    :raises hub.domain_errors.NotFound: if there is none with that id.
    """
    row = session.get(PublishedRelease, release_id)
    if row is None:
        raise NotFound("no such release")
    return describe_release(row, _withdrawn_batches(session))


def release_file(session: Session, release_id: str, path: str, published: Path) -> Path:
    """Return the file of a published release named by its manifest path.

    Only paths the manifest lists are served (so no path leads outside the release), and the
    file must still match its SHA-256.

    :raises hub.domain_errors.NotFound: for an unknown release or path, or a retracted release.
    :raises hub.domain_errors.Conflict: if the file on disk is missing or no longer matches its
        manifest.
    """
    row = session.get(PublishedRelease, release_id)
    if row is None:
        raise NotFound("no such release")
    if row.retracted_at is not None:
        raise NotFound("the release was retracted: its files are no longer published")
    manifest = dict(row.manifest)
    manifest[MANIFEST] = ""
    if path not in manifest:
        raise NotFound("the release has no such file")
    file = published / row.id / path
    if not file.is_file():
        raise Conflict("the release's file is missing from the hub's store", code="missing")
    if path != MANIFEST and sha256_file(file) != manifest[path]:
        raise Conflict("the file no longer matches the release's manifest", code="tampered")
    return file
