"""Properties of the whole scoring pipeline that hold for any rule set."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring.engine import breakdowns

from .naive_reference import DAY
from .strategies import AS_OF, POINTS, Scenario, documents, rules, scenarios
from .test_score_leads import run_engine

PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(doc=documents(), sc=scenarios(), data=st.data())
def test_a_zero_point_rule_changes_nothing(doc, sc, data):
    persona_names = [p["name"] for p in doc["personas"]]
    extra = {**data.draw(rules(persona_names)), "points": 0}
    at = data.draw(st.integers(0, len(doc["rules"])))
    widened = {**doc, "rules": [*doc["rules"][:at], extra, *doc["rules"][at:]]}

    before, after = run_engine(doc, sc), run_engine(widened, sc)
    np.testing.assert_array_equal(before.scores, after.scores)
    np.testing.assert_array_equal(before.raw_totals, after.raw_totals)
    assert before.bands.tolist() == after.bands.tolist()
    assert before.personas.tolist() == after.personas.tolist()
    np.testing.assert_array_equal(before.contributions, np.delete(after.contributions, at, axis=1))
    assert not after.contributions[:, at].any()

    # The breakdowns agree once rule indices past the inserted rule are shifted back.
    def unshift(entries):
        return [
            {**e, "rule": e["rule"] - 1} if e["rule"] is not None and e["rule"] > at else e
            for e in entries
        ]

    assert [unshift(b) for b in breakdowns(after)] == breakdowns(before)


@PROPERTY_SETTINGS
@given(
    doc=documents(
        kinds=("attribute", "event"),
        event_points=[p for p in POINTS if p >= 0],
        with_model=False,
    ),
    sc=scenarios(),
    later=st.sampled_from([0.0, 0.001, 0.5, 1, 7, 13.999, 30, 400]),
)
def test_without_new_events_scores_never_rise_as_time_passes(doc, sc, later):
    # Only events at or before the first as_of: "no new events" between the two times.
    past_only = Scenario(
        sc.leads,
        [e for e in sc.events if e.at <= AS_OF],
        sc.created_at,
        sc.probabilities,
        sc.numeric_employees,
    )
    now = run_engine(doc, past_only, AS_OF)
    then = run_engine(doc, past_only, AS_OF + later * DAY)
    assert (then.scores <= now.scores).all()
    assert (then.raw_totals <= now.raw_totals + 1e-12).all()
