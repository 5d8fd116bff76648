"""parse_ruleset validation (every error with its JSON path) and the document round trip."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings

from scoring.engine import (
    AttributeRule,
    Band,
    Condition,
    EventRule,
    InactivityRule,
    Persona,
    RuleSetInvalid,
    RuleSetSpec,
    ValidationIssue,
    compile_ruleset,
    parse_ruleset,
    ruleset_to_document,
)

from .strategies import documents
from .test_score_leads import design_example


def issues_of(document: Any) -> list[tuple[str, str]]:
    with pytest.raises(RuleSetInvalid) as caught:
        parse_ruleset(document)
    return [(e.path, e.message) for e in caught.value.errors]


def paths_of(document: Any) -> list[str]:
    return [path for path, _ in issues_of(document)]


def with_changes(**changes: Any) -> dict[str, Any]:
    """The design example with top-level keys replaced (None deletes)."""
    doc = copy.deepcopy(design_example())
    for key, value in changes.items():
        if value is None:
            del doc[key]
        else:
            doc[key] = value
    return doc


def with_rule(rule: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(design_example())
    doc["rules"].append(rule)
    return doc


def test_the_design_example_parses():
    spec = parse_ruleset(design_example())
    assert spec.name == "Q3 rules"
    assert (spec.floor, spec.ceiling, spec.model_weight) == (0, 100, 0.0)
    assert spec.personas == (
        Persona("Developer", 1, (Condition("title", "contains", "engineer"),)),
    )
    assert spec.bands[2] == Band("MQL", 50, qualifies=True)
    assert spec.rules == (
        AttributeRule("employees", "gte", 200, 15),
        EventRule("pricing_page_visit", 5, 30, half_life_days=14, cap=20),
        EventRule("api_call", 1, 30, cap=25, persona="Developer"),
        EventRule("unsubscribe", -20, 365),
        InactivityRule(45, -10),
    )


def test_optional_keys_take_their_defaults():
    spec = parse_ruleset({"name": "minimal", "rules": []})
    assert spec == RuleSetSpec(name="minimal")
    assert (spec.floor, spec.ceiling, spec.personas, spec.bands) == (0, 100, (), ())


def test_values_are_normalised_to_tuples_and_sorted_where():
    spec = parse_ruleset(
        {
            "name": "n",
            "rules": [
                {
                    "kind": "attribute",
                    "field": "country",
                    "op": "in",
                    "value": ["US", "CA"],
                    "points": 1,
                },
                {
                    "kind": "attribute",
                    "field": "employees",
                    "op": "between",
                    "value": [1, 9],
                    "points": 1,
                },
                {
                    "kind": "event",
                    "event_type": "x",
                    "where": {"b": 1, "a": "z"},
                    "points": 1,
                    "window_days": 3,
                },
                {
                    "kind": "attribute",
                    "field": "title",
                    "op": "is_set",
                    "value": None,
                    "points": 1,
                    "name": "has title",
                },
            ],
        }
    )
    assert spec.rules[0].value == ("US", "CA")
    assert spec.rules[1].value == (1, 9)
    assert spec.rules[2].where == (("a", "z"), ("b", 1))
    assert spec.rules[3] == AttributeRule("title", "is_set", None, 1, name="has title")


@pytest.mark.parametrize(
    ("document", "path", "fragment"),
    [
        ([], "$", "object"),
        (with_changes(name=None), "$.name", "required"),
        (with_changes(rules=None), "$.rules", "required"),
        (with_changes(name=""), "$.name", "non-empty string"),
        (with_changes(floor=True), "$.floor", "number"),
        (with_changes(floor="0"), "$.floor", "number"),
        (with_changes(floor=0.5), "$.floor", "whole number"),
        (with_changes(floor=100), "$.ceiling", "greater than floor"),
        (with_changes(model_weight=1.5), "$.model_weight", "between 0 and 1"),
        (with_changes(model_weight=False), "$.model_weight", "number"),
        (with_changes(extra=1), "$.extra", "not a known key"),
        (with_changes(rules={}), "$.rules", "list"),
        (with_changes(bands=[{"name": "A"}]), "$.bands[0].min_score", "required"),
        (with_changes(bands=[{"name": "A", "min_score": True}]), "$.bands[0].min_score", "number"),
        (
            with_changes(bands=[{"name": "A", "min_score": 0, "qualifies": "yes"}]),
            "$.bands[0].qualifies",
            "true or false",
        ),
        (
            with_changes(bands=[{"name": "A", "min_score": 0}, {"name": "A", "min_score": 5}]),
            "$.bands[1].name",
            "duplicates",
        ),
        (
            with_changes(bands=[{"name": "A", "min_score": 0}, {"name": "B", "min_score": 0}]),
            "$.bands[1].min_score",
            "duplicates",
        ),
        (
            with_changes(
                bands=[
                    {"name": "A", "min_score": 0, "qualifies": True},
                    {"name": "B", "min_score": 5, "qualifies": True},
                ]
            ),
            "$.bands[1].qualifies",
            "only one",
        ),
        (
            with_changes(bands=[{"name": "A", "min_score": 0, "persona": "Nobody"}]),
            "$.bands[0].persona",
            "no defined persona",
        ),
        (
            with_changes(personas=[{"name": "P", "priority": 1.5, "match": []}]),
            "$.personas[0].priority",
            "integer",
        ),
        (
            with_changes(personas=[{"name": "P", "priority": True, "match": []}]),
            "$.personas[0].priority",
            "integer",
        ),
        (
            with_changes(
                personas=[
                    {"name": "Developer", "priority": 1, "match": []},
                    {"name": "Developer", "priority": 2, "match": []},
                ]
            ),
            "$.personas[1].name",
            "duplicates",
        ),
        (
            with_changes(personas=[{"name": "Developer", "priority": 1, "match": {}}]),
            "$.personas[0].match",
            "list",
        ),
        (
            with_changes(
                personas=[
                    {
                        "name": "Developer",
                        "priority": 1,
                        "match": [{"field": "title", "op": "like", "value": "x"}],
                    }
                ]
            ),
            "$.personas[0].match[0].op",
            "must be one of",
        ),
        (with_rule({"points": 1}), "$.rules[5].kind", "required"),
        (with_rule({"kind": "score", "points": 1}), "$.rules[5].kind", "must be one of"),
        (
            with_rule({"kind": "attribute", "field": "title", "op": "eq", "value": "x"}),
            "$.rules[5].points",
            "required",
        ),
        (
            with_rule(
                {"kind": "attribute", "field": "title", "op": "eq", "value": "x", "points": False}
            ),
            "$.rules[5].points",
            "number",
        ),
        (
            with_rule(
                {"kind": "attribute", "field": "title", "op": "like", "value": "x", "points": 1}
            ),
            "$.rules[5].op",
            "must be one of",
        ),
        (
            with_rule({"kind": "attribute", "field": "", "op": "eq", "value": "x", "points": 1}),
            "$.rules[5].field",
            "non-empty",
        ),
        (
            with_rule(
                {"kind": "attribute", "field": "first name", "op": "eq", "value": "x", "points": 1}
            ),
            "$.rules[5].field",
            "lead field",
        ),
        (
            with_rule(
                {"kind": "attribute", "field": "attributes.", "op": "eq", "value": "x", "points": 1}
            ),
            "$.rules[5].field",
            "attributes.<key>",
        ),
        (
            with_rule({"kind": "attribute", "field": "title", "op": "eq", "points": 1}),
            "$.rules[5].value",
            "required for eq",
        ),
        (
            with_rule(
                {"kind": "attribute", "field": "title", "op": "eq", "value": None, "points": 1}
            ),
            "$.rules[5].value",
            "string, number or boolean",
        ),
        (
            with_rule(
                {"kind": "attribute", "field": "title", "op": "eq", "value": "  ", "points": 1}
            ),
            "$.rules[5].value",
            "blank",
        ),
        (
            with_rule(
                {"kind": "attribute", "field": "title", "op": "eq", "value": ["x"], "points": 1}
            ),
            "$.rules[5].value",
            "string, number or boolean",
        ),
        (
            with_rule(
                {"kind": "attribute", "field": "title", "op": "in", "value": "x", "points": 1}
            ),
            "$.rules[5].value",
            "list",
        ),
        (
            with_rule(
                {"kind": "attribute", "field": "title", "op": "not_in", "value": [], "points": 1}
            ),
            "$.rules[5].value",
            "non-empty list",
        ),
        (
            with_rule(
                {"kind": "attribute", "field": "title", "op": "in", "value": ["a", {}], "points": 1}
            ),
            "$.rules[5].value[1]",
            "string, number or boolean",
        ),
        (
            with_rule(
                {"kind": "attribute", "field": "employees", "op": "gte", "value": "10", "points": 1}
            ),
            "$.rules[5].value",
            "number",
        ),
        (
            with_rule(
                {
                    "kind": "attribute",
                    "field": "employees",
                    "op": "between",
                    "value": [1],
                    "points": 1,
                }
            ),
            "$.rules[5].value",
            "two numbers",
        ),
        (
            with_rule(
                {
                    "kind": "attribute",
                    "field": "employees",
                    "op": "between",
                    "value": [1, True],
                    "points": 1,
                }
            ),
            "$.rules[5].value",
            "two numbers",
        ),
        (
            with_rule(
                {
                    "kind": "attribute",
                    "field": "employees",
                    "op": "between",
                    "value": [9, 1],
                    "points": 1,
                }
            ),
            "$.rules[5].value",
            "low <= high",
        ),
        (
            with_rule(
                {"kind": "attribute", "field": "title", "op": "is_set", "value": "x", "points": 1}
            ),
            "$.rules[5].value",
            "takes no value",
        ),
        (
            with_rule(
                {
                    "kind": "attribute",
                    "field": "email_domain_type",
                    "op": "eq",
                    "value": "corporate",
                    "points": 1,
                }
            ),
            "$.rules[5].value",
            "'business' or 'free'",
        ),
        (
            with_rule({"kind": "event", "event_type": "x", "points": 1, "window_days": 0}),
            "$.rules[5].window_days",
            "greater than 0",
        ),
        (
            with_rule({"kind": "event", "event_type": "x", "points": 1}),
            "$.rules[5].window_days",
            "required",
        ),
        (
            with_rule(
                {
                    "kind": "event",
                    "event_type": "x",
                    "points": 1,
                    "window_days": 5,
                    "half_life_days": -1,
                }
            ),
            "$.rules[5].half_life_days",
            "greater than 0",
        ),
        (
            with_rule(
                {"kind": "event", "event_type": "x", "points": 1, "window_days": 5, "cap": "5"}
            ),
            "$.rules[5].cap",
            "number",
        ),
        (
            with_rule(
                {
                    "kind": "event",
                    "event_type": "x",
                    "points": 1,
                    "window_days": 5,
                    "where": ["plan"],
                }
            ),
            "$.rules[5].where",
            "object",
        ),
        (
            with_rule(
                {
                    "kind": "event",
                    "event_type": "x",
                    "points": 1,
                    "window_days": 5,
                    "where": {"plan": {"a": 1}},
                }
            ),
            "$.rules[5].where.plan",
            "string, number",
        ),
        (
            with_rule(
                {
                    "kind": "event",
                    "event_type": "x",
                    "points": 1,
                    "window_days": 5,
                    "halflife_days": 3,
                }
            ),
            "$.rules[5].halflife_days",
            "not a known key",
        ),
        (
            with_rule({"kind": "event", "event_type": "", "points": 1, "window_days": 5}),
            "$.rules[5].event_type",
            "non-empty",
        ),
        (
            with_rule({"kind": "inactivity", "days": 0, "points": 1}),
            "$.rules[5].days",
            "greater than 0",
        ),
        (
            with_rule({"kind": "inactivity", "days": 5, "points": 1, "persona": "Nobody"}),
            "$.rules[5].persona",
            "no defined persona",
        ),
        (
            with_rule({"kind": "inactivity", "days": 5, "points": 1, "name": 3}),
            "$.rules[5].name",
            "non-empty string",
        ),
    ],
)
def test_each_kind_of_error_is_reported_with_its_json_path(document, path, fragment):
    issues = issues_of(document)
    assert path in [p for p, _ in issues], issues
    assert any(fragment in message for p, message in issues if p == path), issues


def test_every_error_is_reported_not_just_the_first():
    doc = {
        "name": "",
        "floor": 10,
        "ceiling": 5,
        "personas": [{"name": "P", "priority": 1, "match": []}],
        "bands": [{"name": "A", "min_score": "low", "persona": "Q"}],
        "rules": [
            {"kind": "attribute", "field": "title", "op": "nope", "value": 1, "points": 1},
            {"kind": "event", "event_type": "x", "points": "1", "window_days": -1},
            {"kind": "inactivity", "days": 3, "points": 1, "persona": "P"},
        ],
    }
    assert paths_of(doc) == [
        "$.name",
        "$.ceiling",
        "$.bands[0].min_score",
        "$.bands[0].persona",
        "$.rules[0].op",
        "$.rules[1].points",
        "$.rules[1].window_days",
    ]


def test_the_error_carries_issues_and_a_readable_message():
    with pytest.raises(RuleSetInvalid) as caught:
        parse_ruleset(with_changes(floor=True))
    assert caught.value.errors == [ValidationIssue("$.floor", "must be a number")]
    assert "$.floor: must be a number" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_band_names_and_qualifying_bands_are_unique_per_persona_scope_only():
    doc = with_changes(
        bands=[
            {"name": "MQL", "min_score": 50, "qualifies": True},
            {"name": "MQL", "min_score": 50, "qualifies": True, "persona": "Developer"},
        ]
    )
    assert len(parse_ruleset(doc).bands) == 2


def test_compile_validates_specs_built_in_code():
    spec = RuleSetSpec(name="x", floor=5, ceiling=5)
    with pytest.raises(RuleSetInvalid):
        compile_ruleset(spec)


@settings(max_examples=200, deadline=None)
@given(doc=documents())
def test_parse_and_export_round_trip(doc):
    spec = parse_ruleset(doc)
    exported = ruleset_to_document(spec)
    assert parse_ruleset(exported) == spec
    assert ruleset_to_document(parse_ruleset(exported)) == exported


def test_export_omits_defaults_and_writes_lists():
    spec = parse_ruleset(design_example())
    exported = ruleset_to_document(spec)
    assert exported["rules"][2] == {
        "kind": "event",
        "persona": "Developer",
        "event_type": "api_call",
        "window_days": 30,
        "cap": 25,
        "points": 1,
    }
    assert exported["bands"][0] == {"name": "Cold", "min_score": 0}
    in_rule = AttributeRule("country", "in", ("US",), 2)
    assert ruleset_to_document(RuleSetSpec(name="x", rules=(in_rule,)))["rules"][0]["value"] == [
        "US"
    ]
