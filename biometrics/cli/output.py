"""How the client commands print: rich tables and colour on a terminal; the same rows as
plain, unwrapped lines in a pipe or a file (one line per row, for grep and awk); JSON with
``--json``, in the API's own forms (RFC 3339 UTC times), for scripts."""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.table import Table

from biometrics.clock import isoformat

# Lines printed to a pipe are never wrapped, however long a row is.
UNWRAPPED_WIDTH = 100_000

DECISION_STYLES = {"ACCEPT": "bold green", "REJECT": "bold red"}
STATUS_STYLES = {
    "ENROLLED": "green",
    "PENDING_ENROLLMENT": "yellow",
    "OPTED_OUT": "magenta",
    "EXPIRED": "dim",
}


def console(stream: TextIO | None = None) -> Console:
    """A console on ``stream`` (stdout): the terminal's width and colours on a terminal,
    plain unwrapped text anywhere else."""
    stream = sys.stdout if stream is None else stream
    if stream.isatty():
        return Console(file=stream, highlight=False)
    return Console(
        file=stream, width=UNWRAPPED_WIDTH, no_color=True, highlight=False, soft_wrap=True
    )


def table(*columns: str, right: tuple[str, ...] = ()) -> Table:
    """Columns under a header line, no frame: readable, and each row one line to split."""
    shown = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for column in columns:
        shown.add_column(column, justify="right" if column in right else "left", no_wrap=True)
    return shown


def print_table(shown: Table, stream: TextIO | None = None) -> None:
    out = console(stream)
    if out.is_terminal:
        out.print(shown)
        return
    # Elsewhere without the padding after each row's last cell, so that a line ends with
    # its text.
    with out.capture() as captured:
        out.print(shown)
    for line in captured.get().splitlines():
        print(line.rstrip(), file=out.file)


def print_json(value: object) -> None:
    print(json.dumps(jsonable(value), indent=2, ensure_ascii=False))


def jsonable(value: object) -> Any:
    """The client's dataclasses as the API writes them: times RFC 3339 UTC, tuples lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: jsonable(getattr(value, field.name)) for field in dataclasses.fields(value)
        }
    if isinstance(value, datetime):
        return isoformat(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value


def when(moment: datetime | None, never: str = "-") -> str:
    """A time for a table: RFC 3339 UTC to the second."""
    shown = isoformat(moment)
    return never if shown is None else shown[:19] + "Z"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
