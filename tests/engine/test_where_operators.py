"""`where` operator objects: validation, normal form, and what they match on event properties.

The random comparison against the naive reference runs in test_aggregate_events and
test_score_leads (the strategies draw operator `where`s); these are the named cases."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from scoring.engine import (
    EventRule,
    PropertyTest,
    RuleSetInvalid,
    aggregate_events,
    compile_ruleset,
    parse_ruleset,
    ruleset_to_document,
)

from .strategies import AS_OF


def survey_rule(where: Any) -> dict[str, Any]:
    return {
        "name": "Survey",
        "rules": [
            {
                "kind": "event",
                "event_type": "survey_response",
                "where": where,
                "points": 10,
                "window_days": 180,
                "half_life_days": 60,
            }
        ],
    }


def matched(where: dict[str, Any], properties: list[Any]) -> list[int]:
    compiled = compile_ruleset(parse_ruleset(survey_rule(where)))
    m = len(properties)
    got = aggregate_events(
        compiled,
        np.arange(m),
        np.array(["survey_response"] * m, dtype=object),
        np.full(m, AS_OF),
        properties,
        np.full(m, AS_OF),
        AS_OF,
        m,
    )
    return got.counts[:, 0].tolist()


def test_operator_objects_parse_to_property_tests_and_round_trip():
    spec = parse_ruleset(
        survey_rule(
            {
                "question": "nps",
                "score": {"between": [7, 8]},
                "channel": {"in": ["app", "email"]},
                "comment": {"is_set": False},
            }
        )
    )
    rule = spec.rules[0]
    assert isinstance(rule, EventRule)
    assert rule.where == (
        ("channel", PropertyTest("in", ("app", "email"))),
        ("comment", PropertyTest("is_not_set")),
        ("question", "nps"),
        ("score", PropertyTest("between", (7, 8))),
    )
    document = ruleset_to_document(spec)
    assert document["rules"][0]["where"] == {
        "channel": {"in": ["app", "email"]},
        "comment": {"is_not_set": True},
        "question": "nps",
        "score": {"between": [7, 8]},
    }
    assert parse_ruleset(document) == spec


@pytest.mark.parametrize(
    ("where", "fragment"),
    [
        ({"score": {"gte": "9"}}, "gte takes a number"),
        ({"score": {"between": [9, 7]}}, "low <= high"),
        ({"score": {"in": []}}, "non-empty list"),
        ({"score": {"is_set": 1}}, "true or false"),
        ({"score": {"greater": 9}}, "one operator object"),
        ({"score": {"gte": 9, "lte": 10}}, "one operator object"),
        ({"score": {"contains": "  "}}, "must not be blank"),
        ({"score": [9]}, "one operator object"),
    ],
)
def test_bad_operator_objects_are_refused_with_their_path(where, fragment):
    with pytest.raises(RuleSetInvalid) as caught:
        parse_ruleset(survey_rule(where))
    messages = [(e.path, e.message) for e in caught.value.errors]
    assert any(path.startswith("$.rules[0].where.score") for path, _ in messages), messages
    assert any(fragment in message for _, message in messages), messages


def test_numbers_compare_as_numbers_and_numeric_strings_parse():
    props = [
        {"score": 9},
        {"score": 10.0},
        {"score": " 9 "},
        {"score": "8.99"},
        {"score": "nine"},
        {"score": True},
        {"score": None},
        {},
        None,
        {"score": [10]},
    ]
    assert matched({"score": {"gte": 9}}, props) == [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert matched({"score": {"between": [8.99, 9]}}, props) == [1, 0, 1, 1, 0, 0, 0, 0, 0, 0]


def test_strings_compare_case_insensitively_and_missing_meets_only_is_not_set():
    props = [{"q": "NPS"}, {"q": " nps "}, {"q": "csat"}, {"q": ""}, {}, {"q": {"id": 1}}]
    assert matched({"q": {"eq": "nps"}}, props) == [1, 1, 0, 0, 0, 0]
    assert matched({"q": {"neq": "nps"}}, props) == [0, 0, 1, 0, 0, 0]
    assert matched({"q": {"not_in": ["nps"]}}, props) == [0, 0, 1, 0, 0, 0]
    assert matched({"q": {"contains": "P"}}, props) == [1, 1, 0, 0, 0, 0]
    assert matched({"q": {"not_contains": "p"}}, props) == [0, 0, 1, 0, 0, 0]
    assert matched({"q": {"is_set": True}}, props) == [1, 1, 1, 0, 0, 0]
    assert matched({"q": {"is_not_set": True}}, props) == [0, 0, 0, 1, 1, 1]
    # A plain value stays exact JSON equality, as before operators existed.
    assert matched({"q": "nps"}, props) == [0, 0, 0, 0, 0, 0]
