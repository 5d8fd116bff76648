"""Strict JSON: what Python's json takes but the product cannot store is refused, with a
message that is itself safe to send back."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scoring import strict_json
from scoring.strict_json import StrictJSONError


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ('{"a": NaN}', "NaN"),
        ('{"a": Infinity}', "Infinity"),
        ('{"a": -Infinity}', "Infinity"),
        ('{"a": 1e400}', "too large"),
        ('{"a": "x\\u0000y"}', "NUL"),
        ('{"a\\u0000": 1}', "NUL"),
        ('{"a": "\\ud800"}', "surrogate"),
        ('{"\\udfff": 1}', "surrogate"),
        ("[" * 100_000 + "]" * 100_000, "nested deeper"),
        ("[" * 40 + "]" * 40, "nested deeper"),
        (b"\xff\xfe", "not UTF-8"),
        ("{", "not valid JSON"),
    ],
)
def test_it_refuses_what_cannot_be_stored(raw, reason):
    with pytest.raises(StrictJSONError, match=reason) as error:
        strict_json.loads(raw)
    str(error.value).encode("utf-8")  # the message can be sent back as it is


def test_it_reads_ordinary_json_unchanged():
    document = {"a": [1, 2.5, -3e10, "ü ✓", None, True], "b": {"c": {"d": []}}}
    assert strict_json.loads(json.dumps(document).encode()) == document


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
                children,
                max_size=4,
            )
        ),
        max_leaves=20,
    )
)
def test_any_storable_value_round_trips(value):
    assert strict_json.loads(json.dumps(value)) == value


@given(st.text())
def test_check_text_refuses_exactly_nul_and_lone_surrogates(text):
    storable = "\x00" not in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)
    try:
        strict_json.check_text(text, "$")
    except StrictJSONError:
        assert not storable
    else:
        assert storable
