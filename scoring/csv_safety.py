"""The one way the product writes CSV: every cell through :func:`safe_cell`.

Spreadsheet programs run a cell that begins with ``=``, ``+``, ``-`` or ``@`` (and, in some,
a tab or carriage return, which they skip before looking) as a formula, so a lead named
``=HYPERLINK(...)`` would execute in the spreadsheet of whoever opens the export. Every CSV
the product writes (the lead list export, ``export_scores``, the KPI tables) goes through
:func:`csv_lines`, which escapes each cell, so no writer can forget to.
"""

from __future__ import annotations

import csv
import datetime as dt
import numbers
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """The value to write into a CSV cell.

    Text beginning with a formula trigger gets a leading single quote. Numbers are returned
    unchanged (a negative number is data, not a formula: csv writes it as digits), None is
    the empty cell, booleans are ``true``/``false``, dates and times are ISO 8601."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Number):  # int, float, Decimal, NumPy scalars
        return value
    if isinstance(value, dt.date):  # datetime is a date too
        return value.isoformat()
    text = value if isinstance(value, str) else str(value)
    if text.startswith(FORMULA_TRIGGERS):
        return "'" + text
    return text


def safe_row(values: Sequence[Any]) -> list[Any]:
    """safe_cell applied to every cell of a row."""
    return [safe_cell(value) for value in values]


class _Echo:
    """A file-like object whose write returns the line, so csv.writer can feed a stream."""

    def write(self, value: str) -> str:
        return value


def csv_lines(rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """Each row (the header included) as one CSV line, every cell escaped with safe_cell.
    Lazy, so a StreamingHttpResponse or a file can take millions of rows in constant
    memory."""
    writer = csv.writer(_Echo())
    for row in rows:
        yield writer.writerow(safe_row(row))
