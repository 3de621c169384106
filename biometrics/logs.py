"""Structured logs: JSON lines in production, readable lines on a terminal.

Fields passed with ``extra={...}`` become keys of the JSON object (or ``key=value`` pairs
on a terminal). So do the fields of the log context: what is known of the work at hand
where it becomes known, a request's id (``api.request_id``), a socket's call
(``streaming.endpoint``), a participant's (``streaming.participant``), kept in a context
variable, so that every line logged meanwhile carries them, in tasks started from there
and in the threads they hand work to, without passing them from call to call. A field
given in ``extra`` wins over the context's.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime

from biometrics.clock import isoformat

# The context's fields, in the order a terminal line shows them.
CONTEXT_FIELDS = ("request_id", "call_id", "participant")

_context: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "biometrics_log_context", default=None
)

_CREDENTIAL = re.compile(r"([?&](?:token|api_key|key)=)[^&\s\"']+")

# Attributes every LogRecord has; anything else came from ``extra`` or the context.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's duplicate of the message
}


def _merged(fields: Mapping[str, str | None]) -> Mapping[str, str]:
    given = {name: value for name, value in fields.items() if value is not None}
    return {**_fields(), **given}


def _fields() -> Mapping[str, str]:
    return _context.get() or {}


@contextlib.contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Every line logged in this block, and in tasks and threads started from it, carries
    ``fields`` (None values are left out)."""
    token = _context.set(_merged(fields))
    try:
        yield
    finally:
        _context.reset(token)


def bind_log_context(**fields: str | None) -> None:
    """:func:`log_context` for the rest of the current task, for what becomes known midway
    (a socket's call, once its metadata names it); whoever set the context before this task
    still restores theirs when it ends."""
    _context.set(_merged(fields))


class ContextFilter(logging.Filter):
    """Adds the log context's fields to each record that does not carry them already, and
    masks a credential in a URL's query (uvicorn logs a socket's path, and ACS may send its
    key as ``?token=``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _fields().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        message = record.getMessage()
        masked = _CREDENTIAL.sub(r"\1***", message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def _extras(record: logging.LogRecord) -> dict[str, object]:
    """The record's own fields: the context's first, in their order, then ``extra``'s."""
    fields = {key: value for key, value in vars(record).items() if key not in _STANDARD}
    ordered = {name: fields.pop(name) for name in CONTEXT_FIELDS if name in fields}
    return {**ordered, **fields}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": isoformat(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ConsoleFormatter(logging.Formatter):
    """``12:00:01 INFO    streaming.endpoint: call socket open  call_id=c1 sockets=1``:
    the package's prefix left off the logger, values with spaces quoted, fields without a
    value left out."""

    def format(self, record: logging.LogRecord) -> str:
        time = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        name = record.name.removeprefix("biometrics.")
        fields = " ".join(
            f"{key}={_shown(value)}" for key, value in _extras(record).items() if value is not None
        )
        line = f"{time} {record.levelname:<7} {name}: {record.getMessage()}"
        line = f"{line}  {fields}" if fields else line
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def _shown(value: object) -> str:
    text = str(value)
    return json.dumps(text) if not text or any(c.isspace() or c == '"' for c in text) else text


def configure_logging(level: str = "INFO", log_format: str = "auto") -> None:
    if log_format == "auto":
        log_format = "console" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else ConsoleFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's and the libraries' loggers go through the same handler.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    for noisy in ("speechbrain", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
