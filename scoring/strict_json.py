"""JSON from outside the product, read strictly, so that bad input is a 400 and never a 500.

Python's `json` accepts what PostgreSQL and the rest of the product cannot store or use: `NaN`
and `Infinity`, numbers such as `1e400` that become infinite, strings with NUL bytes (PostgreSQL
text and jsonb refuse them) or lone UTF-16 surrogates (not encodable as UTF-8), and nesting deep
enough to exhaust the recursion limit. `loads` refuses each with a `StrictJSONError` that says
what and where; `check` does the same for a value that arrived another way (a CSV row, a form).
The API's parser (`scoring.api.parsers`), the event and lead ingest, the HubSpot webhook and the
file imports all read through here."""

from __future__ import annotations

import json
import math
from typing import Any

#: Deeper than any document the product takes (rule sets nest about 5 levels).
MAX_DEPTH = 32


class StrictJSONError(ValueError):
    """The input is not JSON the product accepts; the message says why, for the client."""


def _reject_constant(name: str) -> float:
    raise StrictJSONError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJSONError(f"the number {text[:40]} is too large")
    return value


def loads(raw: bytes | bytearray | str) -> Any:
    """Parse `raw` (UTF-8 bytes or text), then `check` the result; raises StrictJSONError."""
    if isinstance(raw, bytes | bytearray):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StrictJSONError(f"the body is not UTF-8 ({exc.reason})") from None
    try:
        value = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise StrictJSONError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except StrictJSONError:
        raise
    except ValueError as exc:
        raise StrictJSONError(f"not valid JSON: {exc}") from None
    check(value)
    return value


def check(value: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise StrictJSONError if `value` nests deeper than `max_depth`, holds a non-finite
    number, or a string (key or value) with a NUL byte or a lone surrogate. Iterative, so a
    deep value cannot exhaust the stack here either."""
    stack: list[tuple[Any, int, str]] = [(value, 0, "$")]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, str):
            check_text(item, path)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise StrictJSONError(f"{path}: numbers must be finite")
        elif isinstance(item, dict | list):
            if depth >= max_depth:
                raise StrictJSONError(f"JSON nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    where = f"{path}.{_printable(str(key))}"
                    check_text(str(key), where)
                    stack.append((child, depth + 1, where))
            else:
                stack.extend((child, depth + 1, f"{path}[{i}]") for i, child in enumerate(item))


def _printable(key: str) -> str:
    """A key as it can appear in an error message (which must itself be valid UTF-8)."""
    return key[:40].encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\0")


def check_text(text: str, where: str) -> None:
    """Raise StrictJSONError if `text` holds a NUL byte or a lone surrogate."""
    if "\x00" in text:
        raise StrictJSONError(f"{where}: text must not contain NUL bytes")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise StrictJSONError(f"{where}: text holds an unpaired surrogate") from None
