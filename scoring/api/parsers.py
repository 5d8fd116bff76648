"""The API's JSON parser: DRF's, reading through `scoring.strict_json`, so NaN, huge numbers,
NUL bytes, lone surrogates and deep nesting are a 400 that says why, never a 500."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from scoring import strict_json


class StrictJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        try:
            return strict_json.loads(stream.read() if stream is not None else b"")
        except strict_json.StrictJSONError as exc:
            raise ParseError(f"The body is not JSON this API accepts: {exc}") from None
