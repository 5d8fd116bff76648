"""Rule labels and breakdowns."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scoring.engine import (
    AttributeRule,
    BehaviourAggregates,
    EventRule,
    InactivityRule,
    breakdown,
    breakdowns,
    breakdowns_json,
    compile_ruleset,
    parse_ruleset,
    rule_label,
    score_leads,
)


@pytest.mark.parametrize(
    ("rule", "label"),
    [
        (AttributeRule("title", "contains", "engineer", 5), "title contains 'engineer'"),
        (AttributeRule("title", "not_contains", "intern", 5), "title does not contain 'intern'"),
        (AttributeRule("country", "eq", "US", 5), "country is 'US'"),
        (AttributeRule("country", "neq", "US", 5), "country is not 'US'"),
        (AttributeRule("country", "in", ("US", "CA"), 5), "country is one of ['US', 'CA']"),
        (AttributeRule("country", "not_in", ("US",), 5), "country is not one of ['US']"),
        (AttributeRule("employees", "gte", 200, 5), "employees >= 200"),
        (AttributeRule("employees", "lte", 2.5, 5), "employees <= 2.5"),
        (AttributeRule("employees", "between", (10, 50.0), 5), "employees between 10 and 50"),
        (AttributeRule("attributes.trial", "eq", True, 5), "attributes.trial is true"),
        (AttributeRule("attributes.plan", "is_set", None, 5), "attributes.plan is set"),
        (AttributeRule("revenue", "is_not_set", None, 5), "revenue is not set"),
        (
            EventRule("pricing_page_visit", 5, 30, half_life_days=14, cap=20),
            "pricing_page_visit in 30 d (half-life 14 d, cap 20)",
        ),
        (EventRule("api_call", 1, 30.0, cap=25), "api_call in 30 d (cap 25)"),
        (EventRule("unsubscribe", -20, 365), "unsubscribe in 365 d"),
        (
            EventRule("signup", 3, 7, where=(("plan", "pro"), ("seats", 2))),
            "signup where plan = 'pro' and seats = 2 in 7 d",
        ),
        (InactivityRule(45, -10), "no activity for 45 d"),
        (InactivityRule(0.5, -10), "no activity for 0.5 d"),
    ],
)
def test_rules_have_human_labels(rule, label):
    assert rule_label(rule) == label


def scored():
    doc = {
        "name": "t",
        "floor": -100,
        "rules": [
            {
                "kind": "attribute",
                "field": "title",
                "op": "is_set",
                "points": 1.005,
                "name": "Has a title",
            },
            {"kind": "event", "event_type": "visit", "points": 1.5, "window_days": 30},
            {"kind": "attribute", "field": "title", "op": "eq", "value": "x", "points": 0},
            {"kind": "inactivity", "days": 10, "points": -3},
        ],
    }
    compiled = compile_ruleset(parse_ruleset(doc))
    behaviour = BehaviourAggregates(
        counts=np.array([[2], [0], [0]]),
        decayed=np.array([[1.23456789], [0.0], [0.0]]),
        days_since_activity=np.array([1.0, 11.0, np.nan]),
    )
    titles = np.array(["x", None, None], dtype=object)
    return score_leads(compiled, {"title": titles}, behaviour)


def test_a_breakdown_lists_nonzero_contributions_in_rule_order():
    result = scored()
    assert breakdown(result, 0) == [
        {
            "rule": 0,
            "kind": "attribute",
            "label": "title is set",
            "name": "Has a title",
            "points": 1.0,
        },
        {
            "rule": 1,
            "kind": "event",
            "label": "visit in 30 d",
            "points": 1.85,
            "count": 2,
            "decayed_sum": 1.2346,
            "capped": False,
            "points_per_event": 1.5,
        },
    ]
    assert breakdown(result, 1) == [
        {"rule": 3, "kind": "inactivity", "label": "no activity for 10 d", "points": -3.0}
    ]
    # Unknown last activity (NaN) never triggers an inactivity rule.
    assert breakdown(result, 2) == []


def test_bulk_breakdowns_equal_single_ones():
    result = scored()
    assert breakdowns(result) == [breakdown(result, i) for i in range(result.n)]


def test_each_call_builds_new_entries():
    result = scored()
    bulk = breakdowns(result)
    bulk[0][0]["points"] = 99
    assert breakdowns(result)[0][0]["points"] == 1.0
    assert breakdown(result, 0)[0]["points"] == 1.0


def test_bulk_json_equals_the_dumped_breakdowns():
    result = scored()
    assert breakdowns_json(result) == [
        json.dumps(breakdown(result, i), separators=(",", ":")) for i in range(result.n)
    ]
    assert json.loads(breakdowns_json(result)[1]) == breakdown(result, 1)


def test_tiny_negative_contributions_show_as_zero_not_minus_zero():
    doc = {
        "name": "t",
        "floor": -10,
        "model_weight": 0.5,
        "rules": [{"kind": "event", "event_type": "e", "points": -0.001, "window_days": 1}],
    }
    compiled = compile_ruleset(parse_ruleset(doc))
    behaviour = BehaviourAggregates(np.array([[1]]), np.array([[1.0]]), np.zeros(1))
    result = score_leads(compiled, {}, behaviour, np.array([0.00001]))
    entries = breakdown(result, 0)
    assert [e["points"] for e in entries] == [0.0, 0.0]
    assert '"points":-0.0' not in breakdowns_json(result)[0]
    assert breakdowns_json(result)[0] == json.dumps(entries, separators=(",", ":"))
