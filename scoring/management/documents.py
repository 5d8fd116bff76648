"""Reading the JSON documents that commands import (`ruleset import`, `routing import`,
`experiment start --challenger-file`): one place, one strictness."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError

from scoring import strict_json


def read_json_document(file: str) -> Any:
    """The JSON document in `file` ('-' reads standard input), parsed like every other JSON edge of
    the product (`scoring.strict_json`: no NaN, no NUL bytes, bounded nesting). A file that
    cannot be read or parsed is a CommandError naming it and the problem."""
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"Cannot read {file}: {exc}") from None
    try:
        return strict_json.loads(text)
    except strict_json.StrictJSONError as exc:
        raise CommandError(f"{file} is not JSON the product accepts: {exc}") from None
