"""score_leads against the naive reference, plus worked examples of each semantic edge."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from scoring.engine import (
    BehaviourAggregates,
    LeadTable,
    ScoreResult,
    aggregate_events,
    breakdown,
    breakdowns,
    breakdowns_json,
    compile_ruleset,
    parse_ruleset,
    round_half_away_from_zero,
    score_leads,
)

from . import naive_reference as ref
from .strategies import AS_OF, Scenario, documents, scenarios

DAY = ref.DAY
PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def run_engine(doc: dict[str, Any], sc: Scenario, as_of: float = AS_OF) -> ScoreResult:
    compiled = compile_ruleset(parse_ruleset(doc))
    behaviour = aggregate_events(compiled, **sc.event_arrays(), as_of=as_of, n=sc.n)
    return score_leads(
        compiled, sc.columns(), behaviour, model_probability=np.array(sc.probabilities)
    )


def run_reference(doc: dict[str, Any], sc: Scenario, as_of: float = AS_OF) -> list[ref.LeadResult]:
    return ref.score_all(doc, sc.leads, sc.events, sc.created_at, as_of, sc.probabilities)


def assert_matches_reference(doc: dict[str, Any], sc: Scenario) -> None:
    result = run_engine(doc, sc)
    expected = run_reference(doc, sc)
    for i, want in enumerate(expected):
        context = f"lead {i}: {sc.leads[i]}"
        assert result.personas[i] == want.persona, context
        np.testing.assert_allclose(
            result.contributions[i], want.contributions, rtol=1e-12, atol=1e-12, err_msg=context
        )
        assert result.capped[i].tolist() == want.capped, context
        assert math.isclose(result.raw_totals[i], want.total, rel_tol=1e-12, abs_tol=1e-12)
        assert result.scores[i] == want.score, context
        assert result.bands[i] == want.band, context
        assert result.qualifies[i] == want.qualifies, context
        assert result.group_scores_of(i) == want.group_scores, context
        if result.group_totals is not None:
            np.testing.assert_allclose(
                result.group_totals[i], list(want.group_totals.values()), rtol=1e-12, atol=1e-12
            )
            assert dict(zip(result.group_names, result.group_bands[i], strict=True)) == (
                want.group_bands
            ), context
            assert result.grades[i] == want.grade, context
        else:
            assert want.group_scores == {} and want.grade is None, context
    # The breakdown lists exactly the rules the reference says contributed.
    for i, entries in enumerate(breakdowns(result)):
        rule_entries = [e for e in entries if e["rule"] is not None]
        contributed = [r for r, c in enumerate(expected[i].contributions) if c != 0]
        assert [e["rule"] for e in rule_entries] == contributed
        assert entries == breakdown(result, i)
    as_json = [json.dumps(b, separators=(",", ":")) for b in breakdowns(result)]
    assert breakdowns_json(result) == as_json


@PROPERTY_SETTINGS
@given(doc=documents(), sc=scenarios())
def test_it_matches_the_naive_reference_on_random_rule_sets(doc, sc):
    assert_matches_reference(doc, sc)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=documents(), second=documents(), sc=scenarios())
def test_one_lead_table_shared_by_two_rule_sets_scores_as_separate_calls(first, second, sc):
    # The impact preview prepares the columns once and scores a draft and the live set on them.
    table = LeadTable(sc.columns(), sc.n)
    for doc in (first, second, first):
        compiled = compile_ruleset(parse_ruleset(doc))
        behaviour = aggregate_events(compiled, **sc.event_arrays(), as_of=AS_OF, n=sc.n)
        shared = score_leads(compiled, table, behaviour)
        alone = score_leads(compiled, sc.columns(), behaviour)
        np.testing.assert_array_equal(shared.scores, alone.scores)
        np.testing.assert_array_equal(shared.contributions, alone.contributions)
        assert shared.bands.tolist() == alone.bands.tolist()
        assert shared.personas.tolist() == alone.personas.tolist()


def test_a_lead_table_of_another_size_is_refused():
    compiled = compile_ruleset(parse_ruleset(persona_doc()))
    with pytest.raises(ValueError, match="lead table has 3"):
        score_leads(compiled, LeadTable({}, 3), BehaviourAggregates.zeros(2, 0))


# --- worked examples ----------------------------------------------------------------------


def score_one_rule(rule: dict[str, Any], values: list[Any], **doc_extra: Any) -> list[int]:
    """Scores of leads whose `rule["field"]` takes `values`, under that single rule."""
    doc = {"name": "t", "floor": -100, "rules": [rule], **doc_extra}
    compiled = compile_ruleset(parse_ruleset(doc))
    n = len(values)
    result = score_leads(
        compiled,
        {rule["field"]: np.array(values, dtype=object)},
        BehaviourAggregates.zeros(n, 0),
    )
    return result.scores.tolist()


def attribute(field: str, op: str, value: Any = None) -> dict[str, Any]:
    rule = {"kind": "attribute", "field": field, "op": op, "points": 1}
    if op not in ("is_set", "is_not_set"):
        rule["value"] = value
    return rule


MISSING = [None, "", "   ", math.nan]


@pytest.mark.parametrize(
    ("op", "value"),
    [
        ("eq", "x"),
        ("neq", "x"),
        ("in", ["x"]),
        ("not_in", ["x"]),
        ("contains", "x"),
        ("not_contains", "x"),
        ("gte", 0),
        ("lte", 0),
        ("between", [-1, 1]),
        ("is_set", None),
    ],
)
def test_a_missing_value_satisfies_no_operator_but_is_not_set(op, value):
    assert score_one_rule(attribute("title", op, value), MISSING) == [0, 0, 0, 0]


def test_a_missing_value_satisfies_is_not_set():
    assert score_one_rule(attribute("title", "is_not_set"), [*MISSING, "x"]) == [1, 1, 1, 1, 0]


def test_an_absent_column_reads_as_missing():
    doc = {"name": "t", "rules": [attribute("attributes.nowhere", "is_not_set")]}
    compiled = compile_ruleset(parse_ruleset(doc))
    result = score_leads(compiled, {}, BehaviourAggregates.zeros(2, 0))
    assert result.scores.tolist() == [1, 1]


def test_string_comparisons_ignore_case_and_padding():
    values = ["Engineer", " ENGINEER ", "engineers", "Senior engineer"]
    assert score_one_rule(attribute("title", "eq", "engineer"), values) == [1, 1, 0, 0]
    assert score_one_rule(attribute("title", "contains", "ENGINEER"), values) == [1, 1, 1, 1]
    assert score_one_rule(attribute("title", "in", ["x", "Engineer"]), values) == [1, 1, 0, 0]


def test_numbers_compare_numerically_and_other_values_as_text():
    values = [200, 200.0, "200", "200.0", True, " 200 "]
    assert score_one_rule(attribute("employees", "eq", 200), values) == [1, 1, 1, 0, 0, 1]
    assert score_one_rule(attribute("employees", "eq", "200"), values) == [1, 0, 1, 0, 0, 1]


def test_bools_equal_true_and_false_text_but_not_numbers():
    values = [True, False, "true", 1, "TRUE"]
    assert score_one_rule(attribute("attributes.trial", "eq", True), values) == [1, 0, 1, 0, 1]
    assert score_one_rule(attribute("attributes.trial", "eq", "True"), values) == [1, 0, 1, 0, 1]
    assert score_one_rule(attribute("attributes.trial", "eq", 1), values) == [0, 0, 0, 1, 0]


def test_negative_operators_need_a_set_value():
    values = ["DE", "US", None, ""]
    assert score_one_rule(attribute("country", "neq", "us"), values) == [1, 0, 0, 0]
    assert score_one_rule(attribute("country", "not_in", ["us"]), values) == [1, 0, 0, 0]
    assert score_one_rule(attribute("country", "not_contains", "u"), values) == [1, 0, 0, 0]


def test_between_includes_both_ends_and_parses_numeric_strings():
    values = [10, 10.0, "20", " 15.5 ", 9.999, 20.001, "abc", True]
    rule = attribute("employees", "between", [10, 20])
    assert score_one_rule(rule, values) == [1, 1, 1, 1, 0, 0, 0, 0]


def test_numeric_operators_work_on_numeric_columns():
    doc = {"name": "t", "rules": [attribute("employees", "gte", 200)]}
    compiled = compile_ruleset(parse_ruleset(doc))
    for dtype in (np.float64, np.int64):
        column = np.array([199, 200, 5000], dtype=dtype)
        result = score_leads(compiled, {"employees": column}, BehaviourAggregates.zeros(3, 0))
        assert result.scores.tolist() == [0, 1, 1]
    column = np.array([np.nan, 200.0])
    eq = compile_ruleset(
        parse_ruleset({"name": "t", "rules": [attribute("employees", "eq", "200")]})
    )
    result = score_leads(eq, {"employees": column}, BehaviourAggregates.zeros(2, 0))
    # A float column's text form is str(200.0) == "200.0", so the text "200" does not match.
    assert result.scores.tolist() == [0, 0]


def test_email_domain_type_is_derived_from_the_email_column():
    rule = attribute("email_domain_type", "eq", "free")
    doc = {"name": "t", "rules": [rule]}
    compiled = compile_ruleset(parse_ruleset(doc))
    assert compiled.fields == frozenset({"email"})
    emails = np.array(["a@gmail.com", "b@acme.com", None, "nobody", " C@GMX.DE "], dtype=object)
    result = score_leads(compiled, {"email": emails}, BehaviourAggregates.zeros(5, 0))
    assert result.scores.tolist() == [1, 0, 0, 0, 1]


@pytest.mark.parametrize(
    ("total", "rounded"),
    [
        (2.5, 3),
        (-2.5, -3),
        (0.5, 1),
        (-0.5, -1),
        (1.4999999, 1),
        (2.4999999999999996, 3),
        (0.1 + 0.2 + 0.2, 1),
        (-0.49, 0),
        (0.0, 0),
    ],
)
def test_totals_round_half_away_from_zero(total, rounded):
    assert round_half_away_from_zero(np.array([total])).tolist() == [rounded]


def test_scores_are_clamped_to_floor_and_ceiling():
    doc = {
        "name": "t",
        "floor": -5,
        "ceiling": 5,
        "rules": [
            {"kind": "attribute", "field": "title", "op": "eq", "value": "a", "points": 7.5},
            {"kind": "attribute", "field": "title", "op": "eq", "value": "b", "points": -9},
            {"kind": "attribute", "field": "title", "op": "eq", "value": "c", "points": 4.5},
        ],
    }
    compiled = compile_ruleset(parse_ruleset(doc))
    titles = np.array(["a", "b", "c"], dtype=object)
    result = score_leads(compiled, {"title": titles}, BehaviourAggregates.zeros(3, 0))
    assert result.scores.tolist() == [5, -5, 5]
    assert result.raw_totals.tolist() == [7.5, -9.0, 4.5]


def persona_doc() -> dict[str, Any]:
    return {
        "name": "t",
        "personas": [
            {
                "name": "Exec",
                "priority": 2,
                "match": [{"field": "title", "op": "eq", "value": "ceo"}],
            },
            {
                "name": "Dev",
                "priority": 1,
                "match": [{"field": "title", "op": "contains", "value": "e"}],
            },
            {"name": "Anyone", "priority": 1, "match": []},
        ],
        "bands": [
            {"name": "Low", "min_score": 0},
            {"name": "High", "min_score": 10, "qualifies": True},
            {"name": "Dev-Low", "min_score": 0, "persona": "Dev"},
            {"name": "Dev-Top", "min_score": 30, "persona": "Dev", "qualifies": True},
        ],
        "rules": [
            {"kind": "attribute", "field": "title", "op": "is_set", "points": 20},
            {"kind": "attribute", "field": "title", "op": "is_set", "points": 5, "persona": "Dev"},
        ],
    }


def test_personas_are_tried_by_priority_then_document_order():
    compiled = compile_ruleset(parse_ruleset(persona_doc()))
    titles = np.array(["CEO", "x", None], dtype=object)
    result = score_leads(compiled, {"title": titles}, BehaviourAggregates.zeros(3, 0))
    # "CEO" contains "e": Dev (priority 1) wins over Exec (priority 2); "x" falls through to
    # the catch-all, which ties Dev on priority but comes later in the document.
    assert result.personas.tolist() == ["Dev", "Anyone", "Anyone"]
    assert result.scores.tolist() == [25, 20, 0]


def test_a_persona_with_bands_uses_its_own_bands_others_use_the_shared_ones():
    compiled = compile_ruleset(parse_ruleset(persona_doc()))
    titles = np.array(["CEO", "x"], dtype=object)
    result = score_leads(compiled, {"title": titles}, BehaviourAggregates.zeros(2, 0))
    assert result.bands.tolist() == ["Dev-Low", "High"]
    assert result.qualifies.tolist() == [False, True]


def test_a_score_below_every_band_has_no_band():
    doc = {
        "name": "t",
        "floor": -10,
        "bands": [{"name": "Cold", "min_score": 0}],
        "rules": [{"kind": "attribute", "field": "title", "op": "is_set", "points": -3}],
    }
    compiled = compile_ruleset(parse_ruleset(doc))
    result = score_leads(
        compiled, {"title": np.array(["x", None], dtype=object)}, BehaviourAggregates.zeros(2, 0)
    )
    assert result.bands.tolist() == [None, "Cold"]
    assert result.qualifies.tolist() == [False, False]


def test_caps_limit_negative_contributions_too():
    doc = {
        "name": "t",
        "floor": -100,
        "rules": [
            {"kind": "event", "event_type": "bounce", "points": -4, "window_days": 30, "cap": 10},
        ],
    }
    compiled = compile_ruleset(parse_ruleset(doc))
    behaviour = BehaviourAggregates(
        counts=np.array([[2], [3]]),
        decayed=np.array([[2.0], [3.0]]),
        days_since_activity=np.zeros(2),
    )
    result = score_leads(compiled, {}, behaviour)
    assert result.contributions[:, 0].tolist() == [-8.0, -10.0]
    assert result.capped[:, 0].tolist() == [False, True]


def test_the_model_blend_mixes_rule_total_and_probability():
    doc = {
        "name": "t",
        "model_weight": 0.25,
        "rules": [{"kind": "attribute", "field": "title", "op": "is_set", "points": 40}],
    }
    compiled = compile_ruleset(parse_ruleset(doc))
    titles = np.array(["x", "x"], dtype=object)
    result = score_leads(
        compiled, {"title": titles}, BehaviourAggregates.zeros(2, 0), np.array([0.8, np.nan])
    )
    # 0.75 * 40 + 0.25 * 80 = 50; without a prediction the rule total stands.
    assert result.scores.tolist() == [50, 40]
    assert result.model_applied.tolist() == [True, False]
    assert breakdown(result, 0)[-1] == {
        "rule": None,
        "kind": "model",
        "label": "model probability 0.80 at weight 0.25",
        "points": 10.0,
        "probability": 0.8,
        "weight": 0.25,
    }
    assert [e["kind"] for e in breakdown(result, 1)] == ["attribute"]


def test_probabilities_outside_zero_to_one_are_refused():
    compiled = compile_ruleset(parse_ruleset({"name": "t", "model_weight": 0.5, "rules": []}))
    with pytest.raises(ValueError, match="model_probability"):
        score_leads(compiled, {}, BehaviourAggregates.zeros(1, 0), np.array([1.5]))


def test_mismatched_shapes_are_refused():
    doc = {
        "name": "t",
        "rules": [{"kind": "event", "event_type": "x", "points": 1, "window_days": 1}],
    }
    compiled = compile_ruleset(parse_ruleset(doc))
    with pytest.raises(ValueError, match="event columns"):
        score_leads(compiled, {}, BehaviourAggregates.zeros(2, 0))
    with pytest.raises(ValueError, match="shape"):
        score_leads(compiled, {"title": np.array(["x"])}, BehaviourAggregates.zeros(2, 1))


def test_no_leads_score_to_empty_arrays():
    compiled = compile_ruleset(parse_ruleset(persona_doc()))
    result = score_leads(compiled, {}, BehaviourAggregates.zeros(0, 0))
    assert result.scores.shape == (0,)
    assert result.contributions.shape == (0, 2)
    assert breakdowns(result) == []


def test_the_design_example_scores_as_specified():
    doc = design_example()
    compiled = compile_ruleset(parse_ruleset(doc))
    titles = np.array(["Staff Engineer", "VP Sales"], dtype=object)
    employees = np.array([500, 50], dtype=object)
    lead_index = np.array([0] * 30 + [0, 1, 1])
    types = np.array(["api_call"] * 30 + ["pricing_page_visit"] * 2 + ["unsubscribe"], dtype=object)
    ages = np.array([1.0] * 30 + [14.0, 0.0, 2.0])
    behaviour = aggregate_events(
        compiled,
        lead_index,
        types,
        AS_OF - ages * DAY,
        [None] * 33,
        np.full(2, AS_OF - 400 * DAY),
        AS_OF,
        2,
    )
    result = score_leads(compiled, {"title": titles, "employees": employees}, behaviour)
    # Lead 0, a Developer: 15 (employees) + 5 * 0.5 (one visit, one half-life old)
    #   + 25 (30 api calls, capped) = 42.5 -> 43, Warm.
    # Lead 1: 5 (a visit today) - 20 (unsubscribed) = -15 -> clamped to 0, Cold.
    assert result.scores.tolist() == [43, 0]
    assert result.bands.tolist() == ["Warm", "Cold"]
    assert result.personas.tolist() == ["Developer", None]
    assert breakdown(result, 0) == [
        {"rule": 0, "kind": "attribute", "label": "employees >= 200", "points": 15.0},
        {
            "rule": 1,
            "kind": "event",
            "label": "pricing_page_visit in 30 d (half-life 14 d, cap 20)",
            "points": 2.5,
            "count": 1,
            "decayed_sum": 0.5,
            "capped": False,
            "points_per_event": 5,
        },
        {
            "rule": 2,
            "kind": "event",
            "label": "api_call in 30 d (cap 25)",
            "points": 25.0,
            "count": 30,
            "decayed_sum": 30.0,
            "capped": True,
            "points_per_event": 1,
        },
    ]


def design_example() -> dict[str, Any]:
    return {
        "name": "Q3 rules",
        "floor": 0,
        "ceiling": 100,
        "personas": [
            {
                "name": "Developer",
                "priority": 1,
                "match": [{"field": "title", "op": "contains", "value": "engineer"}],
            }
        ],
        "bands": [
            {"name": "Cold", "min_score": 0},
            {"name": "Warm", "min_score": 25},
            {"name": "MQL", "min_score": 50, "qualifies": True},
            {"name": "Hot", "min_score": 80},
        ],
        "rules": [
            {"kind": "attribute", "field": "employees", "op": "gte", "value": 200, "points": 15},
            {
                "kind": "event",
                "event_type": "pricing_page_visit",
                "points": 5,
                "window_days": 30,
                "half_life_days": 14,
                "cap": 20,
            },
            {
                "kind": "event",
                "event_type": "api_call",
                "points": 1,
                "window_days": 30,
                "cap": 25,
                "persona": "Developer",
            },
            {"kind": "event", "event_type": "unsubscribe", "points": -20, "window_days": 365},
            {"kind": "inactivity", "days": 45, "points": -10},
        ],
    }
