"""aggregate_events against the naive reference, and its invariances."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.engine import BehaviourAggregates, aggregate_events, compile_ruleset, parse_ruleset

from . import naive_reference as ref
from .strategies import AS_OF, Scenario, documents, scenarios

DAY = ref.DAY


def aggregates(doc, sc: Scenario, as_of: float = AS_OF) -> BehaviourAggregates:
    compiled = compile_ruleset(parse_ruleset(doc))
    return aggregate_events(compiled, **sc.event_arrays(), as_of=as_of, n=sc.n)


def event_rule_doc() -> st.SearchStrategy:
    return documents(kinds=("event",), with_model=False)


@settings(max_examples=200, deadline=None)
@given(doc=event_rule_doc(), sc=scenarios())
def test_it_matches_the_naive_reference(doc, sc):
    got = aggregates(doc, sc)
    # The reference counts every event rule for every lead, whatever the rule's persona.
    expected = ref.score_all(doc, sc.leads, sc.events, sc.created_at, AS_OF)
    assert got.counts.tolist() == [e.counts for e in expected]
    np.testing.assert_allclose(
        got.decayed,
        np.array([e.decayed for e in expected]).reshape(got.decayed.shape),
        rtol=1e-12,
    )
    np.testing.assert_array_equal(
        got.days_since_activity, [e.days_since_activity for e in expected]
    )


@settings(max_examples=200, deadline=None)
@given(doc=event_rule_doc(), sc=scenarios(), data=st.data())
def test_event_order_does_not_matter(doc, sc, data):
    order = data.draw(st.permutations(range(len(sc.events))))
    shuffled = Scenario(
        sc.leads, [sc.events[i] for i in order], sc.created_at, sc.probabilities, False
    )
    a, b = aggregates(doc, sc), aggregates(doc, shuffled)
    np.testing.assert_array_equal(a.counts, b.counts)
    np.testing.assert_allclose(a.decayed, b.decayed, rtol=1e-12)
    np.testing.assert_array_equal(a.days_since_activity, b.days_since_activity)


@settings(max_examples=200, deadline=None)
@given(doc=event_rule_doc(), sc=scenarios(), data=st.data())
def test_duplicated_and_permuted_input_doubles_counts_and_sums(doc, sc, data):
    doubled_events = sc.events + sc.events
    order = data.draw(st.permutations(range(len(doubled_events))))
    doubled = Scenario(
        sc.leads, [doubled_events[i] for i in order], sc.created_at, sc.probabilities, False
    )
    a, b = aggregates(doc, sc), aggregates(doc, doubled)
    np.testing.assert_array_equal(2 * a.counts, b.counts)
    np.testing.assert_allclose(2 * a.decayed, b.decayed, rtol=1e-12)
    np.testing.assert_array_equal(a.days_since_activity, b.days_since_activity)


def one_rule(**rule) -> dict:
    return {"name": "t", "rules": [{"kind": "event", "points": 1, **rule}]}


def test_window_edges_include_age_zero_and_exactly_window_days_but_not_the_future():
    compiled = compile_ruleset(parse_ruleset(one_rule(event_type="visit", window_days=30)))
    ages = np.array([0.0, 30.0, 30.0001, -0.0001, 15.0])
    got = aggregate_events(
        compiled,
        np.arange(5),
        np.array(["visit"] * 5, dtype=object),
        AS_OF - ages * DAY,
        [None] * 5,
        np.full(5, AS_OF - 100 * DAY),
        AS_OF,
        5,
    )
    assert got.counts[:, 0].tolist() == [1, 1, 0, 0, 1]
    # A future event is not activity either: lead 3 falls back to its creation time.
    np.testing.assert_allclose(got.days_since_activity, [0, 30, 30.0001, 100, 15])


def test_decay_halves_each_half_life():
    rule = one_rule(event_type="visit", window_days=60, half_life_days=10)
    compiled = compile_ruleset(parse_ruleset(rule))
    ages = np.array([0.0, 10.0, 20.0])
    got = aggregate_events(
        compiled,
        np.zeros(3, dtype=int),
        np.array(["visit"] * 3),
        AS_OF - ages * DAY,
        [{}] * 3,
        np.full(1, AS_OF),
        AS_OF,
        1,
    )
    assert got.counts.tolist() == [[3]]
    assert got.decayed.tolist() == [[1.75]]


def test_where_needs_json_equal_properties():
    rule = one_rule(event_type="signup", window_days=5, where={"plan": "pro", "seats": 2})
    compiled = compile_ruleset(parse_ruleset(rule))
    props = [
        {"plan": "pro", "seats": 2},
        {"plan": "pro", "seats": 2.0, "extra": 1},
        {"plan": "Pro", "seats": 2},
        {"plan": "pro", "seats": "2"},
        {"plan": "pro"},
        None,
        {"plan": "pro", "seats": True},
    ]
    m = len(props)
    got = aggregate_events(
        compiled,
        np.arange(m),
        np.array(["signup"] * m, dtype=object),
        np.full(m, AS_OF),
        props,
        np.full(m, AS_OF),
        AS_OF,
        m,
    )
    assert got.counts[:, 0].tolist() == [1, 1, 0, 0, 0, 0, 0]


def test_bool_where_values_match_only_bools():
    compiled = compile_ruleset(
        parse_ruleset(one_rule(event_type="e", window_days=1, where={"x": True}))
    )
    props = [{"x": True}, {"x": 1}, {"x": "true"}]
    got = aggregate_events(
        compiled,
        np.arange(3),
        np.array(["e"] * 3),
        np.full(3, AS_OF),
        props,
        np.full(3, AS_OF),
        AS_OF,
        3,
    )
    assert got.counts[:, 0].tolist() == [1, 0, 0]


def test_leads_without_events_count_inactivity_from_creation():
    compiled = compile_ruleset(parse_ruleset({"name": "t", "rules": []}))
    got = aggregate_events(
        compiled,
        np.array([], dtype=int),
        np.array([], dtype=object),
        np.array([]),
        [],
        np.array([AS_OF - 3 * DAY, np.nan]),
        AS_OF,
        2,
    )
    assert got.counts.shape == (2, 0)
    assert got.days_since_activity[0] == 3.0
    assert np.isnan(got.days_since_activity[1])


def test_bad_inputs_are_refused():
    compiled = compile_ruleset(parse_ruleset({"name": "t", "rules": []}))
    with pytest.raises(ValueError, match="lead_index"):
        aggregate_events(
            compiled,
            np.array([2]),
            np.array(["x"]),
            np.array([AS_OF]),
            [None],
            np.zeros(2),
            AS_OF,
            2,
        )
    with pytest.raises(ValueError, match="length"):
        aggregate_events(
            compiled,
            np.array([0]),
            np.array(["x", "y"]),
            np.array([AS_OF]),
            [None],
            np.zeros(1),
            AS_OF,
            1,
        )


def test_conditions_past_the_first_word_of_bits_still_match():
    # 70 distinct `where` conditions need two int64 words of bits (63 per word).
    doc = {
        "name": "many conditions",
        "rules": [
            {
                "kind": "event",
                "event_type": "page_view",
                "where": {"k": i},
                "points": 1,
                "window_days": 30,
            }
            for i in range(70)
        ],
    }
    compiled = compile_ruleset(parse_ruleset(doc))
    values = [0, 62, 63, 64, 69, 69]
    got = aggregate_events(
        compiled,
        np.zeros(len(values), dtype=np.int64),
        np.array(["page_view"] * len(values), dtype=object),
        np.full(len(values), AS_OF - DAY),
        [{"k": v} for v in values],
        np.array([AS_OF - 100 * DAY]),
        AS_OF,
        1,
    )
    expected = np.zeros(70, dtype=np.int64)
    for v in values:
        expected[v] += 1
    assert got.counts[0].tolist() == expected.tolist()
