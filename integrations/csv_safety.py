"""CSV cells that spreadsheets would run as formulas are neutralised on the way out."""

from __future__ import annotations

from typing import Any

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """A text cell beginning with = + - @ (or a tab / carriage return) gets a leading single
    quote so a spreadsheet shows it as text; other values pass through unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value
