"""Formula-injection escaping for CSV exports.

Spreadsheet programs run a cell that begins with ``=``, ``+``, ``-`` or ``@`` (and, in some,
a tab or carriage return) as a formula, so a lead named ``=HYPERLINK(...)`` would execute in
the exporter's spreadsheet. Every CSV export passes its cells through :func:`safe_cell`.
"""

from __future__ import annotations

from typing import Any

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """The value to write into a CSV cell: text beginning with a formula trigger gets a
    leading single quote; numbers, booleans, None and other text are returned unchanged (a
    negative number is data, not a formula)."""
    if isinstance(value, str) and value.startswith(_TRIGGERS):
        return "'" + value
    return value
