"""The hub's verdict on an upload's validation report, shared by the hub and the toolkit.

The hub's ingest and the toolkit's ``validate`` both ask :func:`refusal`, so a partner's local
check can never say "ok" to a file the hub would refuse, nor the other way round.
"""

from __future__ import annotations

from contributors.normalise import ValidationReport

__all__ = ["refusal"]


def refusal(report: ValidationReport, *, accept_valid: bool) -> str | None:
    """Return why the hub refuses an upload with this report, or ``None`` when it stores it.

    In order: direct identifiers, columns outside the schema, rejected rows (unless
    ``accept_valid``), and a file with no valid row (a header-only file included).

    :param report: the validation report of the whole upload.
    :param accept_valid: the uploader asked to store the valid rows when some are rejected.

    >>> from contributors.normalise import ValidationReport
    >>> empty = ValidationReport(0, 0, 0, [], [], [])
    >>> refusal(empty, accept_valid=True)
    'the upload has no valid row to store (a header alone is not an upload)'
    >>> refusal(ValidationReport(2, 1, 1, [], [], []), accept_valid=True) is None
    True
    >>> refusal(ValidationReport(2, 1, 1, [], ["nom"], []), accept_valid=True)
    "the upload has column(s) that are not in the hub's record schema: nom"
    """
    if report.identifier_findings:
        # A finding's label names a column by position unless it is a schema field: a header
        # that names no field may itself be a value.
        columns = sorted({finding.label for finding in report.identifier_findings})
        return (
            "the upload looks like it holds direct identifiers in column(s) "
            + ", ".join(columns)
            + "; remove them (the partner toolkit's `prepare` does) and upload again"
        )
    if report.unknown_columns:
        return "the upload has column(s) that are not in the hub's record schema: " + ", ".join(
            report.unknown_columns
        )
    if report.rows_rejected and not accept_valid:
        return (
            f"{report.rows_rejected} of {report.rows_total} rows failed validation; nothing was "
            "stored (fix them, or send ?accept_valid=true to store the valid rows)"
        )
    if report.rows_accepted == 0:
        return "the upload has no valid row to store (a header alone is not an upload)"
    return None
