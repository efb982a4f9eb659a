"""The hub's log lines: one JSON object per line on standard error, configured at start.

Security events (refused client authentications, rate limits, refused bodies, an unreachable
database, unexpected errors) are written by the ``ctdhub.*`` loggers. A line names ids, codes,
counts and addresses only, never a record value; each line made inside a request carries that
request's id, the one its answer sends as ``X-Request-ID``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

from flask import has_request_context

from hub.errors import request_id

HUB_LOGGER = "ctdhub"


class JsonLines(logging.Formatter):
    """Format a record as one JSON object: time, level, logger, message, request_id.

    >>> record = logging.LogRecord("ctdhub.auth", logging.WARNING, "", 0, "refused %s", ("x",),
    ...                            None)
    >>> line = json.loads(JsonLines().format(record))
    >>> line["level"], line["logger"], line["message"]
    ('WARNING', 'ctdhub.auth', 'refused x')
    """

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a JSON line (an exception as its type only)."""
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            line["request_id"] = request_id
        if record.exc_info and record.exc_info[0] is not None:
            # The type only: an exception's message may quote a value.
            line["exception"] = record.exc_info[0].__name__
        return json.dumps(line, ensure_ascii=True)


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]  # a TextIO stream
    """A handler writing to whatever ``sys.stderr`` is when a line is written."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


class _RequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            record.request_id = request_id()
        return True


def configure(level: str) -> None:
    """Give the ``ctdhub`` loggers one JSON-lines handler on stderr at ``level`` (idempotent).

    :param level: DEBUG, INFO, WARNING or ERROR
    """
    logger = logging.getLogger(HUB_LOGGER)
    logger.setLevel(level.upper())
    if any(isinstance(h.formatter, JsonLines) for h in logger.handlers):
        return
    handler = _Stderr()
    handler.setFormatter(JsonLines())
    handler.addFilter(_RequestId())
    logger.addHandler(handler)
