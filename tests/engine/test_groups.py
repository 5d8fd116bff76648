"""Rule groups: caps and floors per group, group scores and bands, the fit x engagement grade.

The random comparison with the naive reference is in test_score_leads (the strategies draw
groups, grouped rules and grids); these are the named cases."""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from scoring.engine import (
    BehaviourAggregates,
    RuleSetInvalid,
    breakdown,
    breakdowns,
    breakdowns_json,
    compile_ruleset,
    parse_ruleset,
    ruleset_to_document,
    score_leads,
)

from .strategies import documents, scenarios
from .test_score_leads import run_engine

FIT_BANDS = [
    {"name": "A", "min_score": 40},
    {"name": "B", "min_score": 25},
    {"name": "C", "min_score": 10},
    {"name": "D", "min_score": 0},
]
ENGAGEMENT_BANDS = [
    {"name": "1", "min_score": 40},
    {"name": "2", "min_score": 15},
    {"name": "3", "min_score": 0},
]
DOCUMENT: dict[str, Any] = {
    "name": "Fit x engagement",
    "groups": [
        {"name": "fit", "cap": 50, "floor": 0, "bands": FIT_BANDS},
        {"name": "engagement", "cap": 60, "bands": ENGAGEMENT_BANDS},
    ],
    "grid": ["fit", "engagement"],
    "rules": [
        {"kind": "attribute", "field": "employees", "op": "gte", "value": 200, "points": 30,
         "group": "fit"},
        {"kind": "attribute", "field": "title", "op": "contains", "value": "vp", "points": 25.5,
         "group": "fit"},
        {"kind": "attribute", "field": "country", "op": "eq", "value": "xx", "points": -40,
         "group": "fit"},
        {"kind": "event", "event_type": "pricing_page_visit", "points": 7.5, "window_days": 30,
         "group": "engagement"},
        {"kind": "attribute", "field": "country", "op": "eq", "value": "us", "points": 2.5},
    ],
}  # fmt: skip


def score(doc: dict[str, Any], leads: list[dict[str, Any]], visits: list[int]):
    compiled = compile_ruleset(parse_ruleset(doc))
    n = len(leads)
    columns = {
        name: np.array([lead.get(name) for lead in leads], dtype=object)
        for name in ("employees", "title", "country")
    }
    k = len(compiled.event_rules)
    counts = np.array(visits, dtype=np.int64).reshape(n, k)
    behaviour = BehaviourAggregates(counts, counts.astype(float), np.zeros(n))
    return score_leads(compiled, columns, behaviour)


def test_groups_clamp_round_band_and_grade_as_the_issue_defines():
    leads = [
        {"employees": 500, "title": "VP Sales", "country": "us"},  # fit 55.5 -> cap 50
        {"employees": 10, "title": "vp", "country": "xx"},  # fit 25.5 - 40 -> floor 0
        {"employees": 10, "title": "VP", "country": "de"},  # fit 25.5 -> 26 (half away)
        {"employees": 10, "title": "intern", "country": "de"},
    ]
    result = score(DOCUMENT, leads, [9, 2, 3, 0])  # engagement 67.5 (cap 60), 15, 22.5, 0
    assert result.group_scores.tolist() == [[50, 60], [0, 15], [26, 23], [0, 0]]
    np.testing.assert_allclose(result.group_totals, [[50, 60], [0, 15], [25.5, 22.5], [0, 0]])
    assert result.group_bands.tolist() == [["A", "1"], ["D", "2"], ["B", "2"], ["D", "3"]]
    assert result.grades.tolist() == ["A1", "D2", "B2", "D3"]
    # score: clamped groups plus ungrouped rules, then rounded and clamped to [0, 100]:
    # 50 + 60 + 2.5 = 112.5 -> 100; 0 + 15; 25.5 + 22.5 = 48; 0.
    assert result.scores.tolist() == [100, 15, 48, 0]
    assert result.group_scores_of(2) == {"fit": 26, "engagement": 23}


def test_the_breakdown_names_each_rules_group_and_lists_group_scores_and_the_grade():
    result = score(DOCUMENT, [{"employees": 500, "title": "VP", "country": "us"}], [9])
    entries = breakdowns(result)[0]
    grouped = [e for e in entries if e["rule"] is not None]
    assert [e.get("group") for e in grouped] == ["fit", "fit", "engagement", None]
    groups = [e for e in entries if e["kind"] == "group"]
    assert [(e["group"], e["score"], e["band"], e["points"]) for e in groups] == [
        ("fit", 50, "A", -5.5),
        ("engagement", 60, "1", -7.5),
    ]
    # Every entry's points sum to the total: the clamping shows as the group entry's points.
    assert sum(e["points"] for e in entries) == pytest.approx(result.raw_totals[0])
    assert [e for e in entries if e["kind"] == "grade"] == [
        {"rule": None, "kind": "grade", "label": "grade A1", "points": 0.0, "grade": "A1"}
    ]


def test_a_rule_set_without_groups_has_no_group_results_and_the_same_scores():
    plain = copy.deepcopy(DOCUMENT)
    del plain["groups"], plain["grid"]
    for rule in plain["rules"]:
        rule.pop("group", None)
    result = score(plain, [{"employees": 500, "title": "VP", "country": "us"}], [9])
    assert result.group_scores is None and result.grades is None
    assert result.scores.tolist() == [100]  # 30 + 25.5 + 67.5 + 2.5, clamped
    assert all(e["kind"] not in ("group", "grade") for e in breakdowns(result)[0])
    assert "groups" not in ruleset_to_document(parse_ruleset(plain))


def test_groups_round_trip_through_the_document():
    spec = parse_ruleset(DOCUMENT)
    assert parse_ruleset(ruleset_to_document(spec)) == spec
    assert ruleset_to_document(spec)["grid"] == ["fit", "engagement"]


@pytest.mark.parametrize(
    ("change", "path", "fragment"),
    [
        ({"grid": ["fit", "fit"]}, "$.grid", "two different groups"),
        ({"grid": ["fit", "nope"]}, "$.grid[1]", "no defined group"),
        ({"grid": "fit"}, "$.grid", "two group names"),
        ({"groups": [{"name": "fit", "cap": 1, "floor": 2}]}, "$.groups[0].floor", "exceed cap"),
        ({"groups": [{"name": "fit"}, {"name": "fit"}]}, "$.groups[1].name", "duplicates"),
        (
            {"groups": [{"name": "fit", "bands": [{"name": "A", "min_score": 1}] * 2}]},
            "$.groups[0].bands[1].name",
            "duplicates",
        ),
        ({"groups": [{"name": "fit", "size": 1}]}, "$.groups[0].size", "not a known key"),
    ],
)
def test_bad_groups_are_refused_with_their_path(change, path, fragment):
    doc = {**copy.deepcopy(DOCUMENT), **change}
    if "groups" in change:
        doc.pop("grid")
        for rule in doc["rules"]:
            rule.pop("group", None)
    with pytest.raises(RuleSetInvalid) as caught:
        parse_ruleset(doc)
    issues = [(e.path, e.message) for e in caught.value.errors]
    assert any(p == path and fragment in m for p, m in issues), issues


def test_a_rule_naming_an_undefined_group_is_refused():
    doc = copy.deepcopy(DOCUMENT)
    doc["rules"][0]["group"] = "intent"
    with pytest.raises(RuleSetInvalid) as caught:
        parse_ruleset(doc)
    assert [e.path for e in caught.value.errors] == ["$.rules[0].group"]


def test_a_grid_group_without_bands_is_refused():
    doc = copy.deepcopy(DOCUMENT)
    doc["groups"][1]["bands"] = []
    with pytest.raises(RuleSetInvalid) as caught:
        parse_ruleset(doc)
    assert [e.path for e in caught.value.errors] == ["$.grid[1]"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents(), sc=scenarios())
def test_bulk_breakdowns_and_json_equal_single_ones_with_groups(doc, sc):
    result = run_engine(doc, sc)
    single = [breakdown(result, i) for i in range(result.n)]
    assert breakdowns(result) == single
    assert breakdowns_json(result) == [json.dumps(b, separators=(",", ":")) for b in single]
    for i, entries in enumerate(single):
        # The model entry stays last; group entries come right before it, in group order.
        kinds = [e["kind"] for e in entries]
        if result.model_applied[i]:
            assert kinds[-1] == "model"
        groups = [e["group"] for e in entries if e["kind"] == "group"]
        assert groups == list(result.group_names)
