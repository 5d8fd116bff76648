"""Vectorised predicates: `field op value` over a prepared `ColumnView`.

Semantics (DESIGN.md §4, made precise):

- A missing value (None, NaN, blank string) satisfies only `is_not_set`; every other operator,
  including the negative ones (`neq`, `not_in`, `not_contains`), is false on it.
- `eq`: when the lead's value and the rule's value are both numbers (bools are not numbers)
  they are compared numerically; otherwise their text forms `str(x).strip().casefold()` are
  compared, a bool rendering as "true" / "false". `neq` is "set and not eq"; `in` is eq to any
  element; `not_in` is "set and eq to none".
- `contains` / `not_contains`: substring of the text forms (the rule value normalised the same
  way: stripped and casefolded); `not_contains` is "set and not contains".
- `gte` / `lte` / `between [low, high]` (both ends included): numeric, on values that are
  numbers or strings that `float()` parses; anything else is false.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .columns import ColumnView
from .spec import is_number


def value_text(value: Any) -> str:
    """The text form of a rule value, as compared with a lead value's text form."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip().casefold()


def _eq(view: ColumnView, value: Any) -> np.ndarray:
    """eq per entry of the view (missing entries are False)."""
    if is_number(value):
        numeric_equal = view.number == float(value)
        if view.is_numeric:
            # Every present entry is a number: no text needed (and none built).
            return numeric_equal
        is_num = ~np.isnan(view.number)
        result = np.where(is_num, numeric_equal, view.text == value_text(value))
    else:
        result = view.text == value_text(value)
    return result & ~view.missing


def _per_entry(view: ColumnView, op: str, value: Any) -> np.ndarray:
    present = ~view.missing
    if op == "is_set":
        return present
    if op == "is_not_set":
        return view.missing.copy()
    if op == "eq":
        return _eq(view, value)
    if op == "neq":
        return present & ~_eq(view, value)
    if op in ("in", "not_in"):
        hit = np.zeros(view.missing.shape, dtype=bool)
        for item in value:
            hit |= _eq(view, item)
        return hit if op == "in" else present & ~hit
    if op in ("contains", "not_contains"):
        found = np.strings.find(view.text, value_text(value)) >= 0
        return present & (found if op == "contains" else ~found)
    # NaN compares False, so values that are neither numbers nor numeric strings drop out.
    if op == "gte":
        return view.parsed >= value
    if op == "lte":
        return view.parsed <= value
    if op == "between":
        low, high = value
        return (view.parsed >= low) & (view.parsed <= high)
    raise ValueError(f"unknown operator {op!r}")


def evaluate(view: ColumnView, op: str, value: Any) -> np.ndarray:
    """Boolean array, one entry per lead: does `field op value` hold?"""
    return view.gather(_per_entry(view, op, value))
