"""`next_due_epochs` against the naive reference: between the scoring time and the due time,
time alone changes no lead's score, band or persona; and the bound is not uselessly early."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring.engine import aggregate_events, compile_ruleset, next_due_epochs, parse_ruleset
from scoring.engine.scorer import score_leads

from . import naive_reference as ref
from .naive_reference import DAY
from .strategies import AS_OF, Scenario, documents, scenarios


def _due(doc: dict, sc: Scenario, as_of: float = AS_OF) -> np.ndarray:
    compiled = compile_ruleset(parse_ruleset(doc))
    behaviour = aggregate_events(compiled, **sc.event_arrays(), as_of=as_of, n=sc.n)
    result = score_leads(compiled, sc.columns(), behaviour, np.array(sc.probabilities))
    return next_due_epochs(result, behaviour, as_of)


def _reference(doc: dict, sc: Scenario, i: int, at: float) -> tuple:
    events = [e for e in sc.events if e.lead == i]
    got = ref.score_lead(doc, sc.leads[i], events, sc.created_at[i], at, sc.probabilities[i])
    # Group scores, group bands and the grade are stored too: they must not move either.
    groups = tuple(sorted(got.group_scores.items())), tuple(sorted(got.group_bands.items()))
    return got.score, got.band, got.persona, groups, got.grade


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    doc=documents(),
    sc=scenarios(),
    fractions=st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=4),
)
def test_nothing_changes_before_the_due_time(doc, sc, fractions):
    due = _due(doc, sc)
    for i in range(sc.n):
        assert math.isnan(due[i]) or due[i] > AS_OF
        at_scoring = _reference(doc, sc, i, AS_OF)
        # Never due: any later time at all; otherwise times in [as_of, due), less the
        # microsecond of stored times' resolution (a change right after as_of is due then).
        span = 2000 * DAY if math.isnan(due[i]) else due[i] - AS_OF - 1e-6
        for fraction in [0.0, *fractions]:
            at = AS_OF + fraction * span
            assert _reference(doc, sc, i, at) == at_scoring, (i, fraction, due[i] - AS_OF)


def _one_lead(rules: list[dict], events: list[tuple[float, str]], created_days_ago: float = 5):
    doc = {
        "name": "t",
        "floor": 0,
        "ceiling": 100,
        "personas": [],
        "bands": [{"name": "warm", "min_score": 0}],
        "rules": rules,
    }
    sc = Scenario(
        leads=[{}],
        events=[
            ref.Event(lead=0, type=t, at=AS_OF - age * DAY, properties={}) for age, t in events
        ],
        created_at=[AS_OF - created_days_ago * DAY],
        probabilities=[math.nan],
        numeric_employees=False,
    )
    return doc, sc


def test_attribute_rules_never_come_due():
    doc, sc = _one_lead(
        [{"kind": "attribute", "field": "title", "op": "is_set", "points": 5}], [(3, "page_view")]
    )
    assert math.isnan(_due(doc, sc)[0])


def test_a_window_exit_is_due_when_the_event_leaves():
    rule = {"kind": "event", "event_type": "page_view", "window_days": 30, "points": 4}
    doc, sc = _one_lead([rule], [(10, "page_view"), (2, "page_view")])
    assert _due(doc, sc)[0] == AS_OF + 20 * DAY - 1e-3


def test_a_later_event_and_an_inactivity_threshold_are_due():
    inactive = {"kind": "inactivity", "days": 14, "points": -10}
    doc, sc = _one_lead([inactive], [(3, "page_view"), (-2, "api_call")])
    assert _due(doc, sc)[0] == AS_OF + 2 * DAY - 1e-3  # the event two days ahead
    doc, sc = _one_lead([inactive], [(3, "page_view")])
    assert _due(doc, sc)[0] == AS_OF + 11 * DAY - 1e-3


def test_decay_is_due_before_the_rounded_score_moves_but_not_long_before():
    rule = {
        "kind": "event",
        "event_type": "page_view",
        "window_days": 365,
        "half_life_days": 7,
        "points": 40,
    }
    doc, sc = _one_lead([rule], [(0, "page_view")])
    due = _due(doc, sc)[0]
    # 40 * 0.5 ** (d / 7) first rounds to 39 once below 39.5: d = 7 * log2(40 / 39.5).
    change = AS_OF + 7 * math.log2(40 / 39.5) * DAY
    assert AS_OF < due <= change
    assert due > AS_OF + 0.5 * (change - AS_OF)


def test_a_blended_model_probability_makes_the_lead_due_at_once():
    doc, sc = _one_lead([], [])
    doc["model_weight"] = 0.5
    sc.probabilities[0] = 0.3
    due = _due(doc, sc)[0]
    assert due == AS_OF + 1e-6
