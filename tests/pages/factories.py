"""Factories for the lead pages: scored leads with a breakdown, their score history, and
feedback. The browser tests build their data with these too."""

from __future__ import annotations

import datetime as dt

import factory
from django.utils import timezone

from scoring.models import Feedback, ScoreHistory
from tests.factories import LeadFactory

# A breakdown in the shape the scoring engine stores (scoring/engine/explain.py):
# 15 + 12 + 20 (decayed 4.3125 x 5 = 21.56, capped at 20) - 10 = 37.
SAMPLE_BREAKDOWN = [
    {"rule": 0, "kind": "attribute", "label": "employees >= 200", "points": 15.0},
    {"rule": 1, "kind": "attribute", "label": "title contains 'director'", "points": 12.0},
    {
        "rule": 2,
        "kind": "event",
        "label": "pricing_page_visit in 30 d (half-life 14 d, cap 20)",
        "points": 20.0,
        "count": 5,
        "decayed_sum": 4.3125,
        "capped": True,
        "points_per_event": 5.0,
    },
    {"rule": 4, "kind": "inactivity", "label": "no activity for 45 d", "points": -10.0},
]


class ScoredLeadFactory(LeadFactory):
    """A lead scored by the live rules: score, band, persona and the breakdown behind them."""

    score = 37
    band = "Warm"
    persona = "Executive"
    breakdown = factory.LazyFunction(lambda: [dict(e) for e in SAMPLE_BREAKDOWN])
    rule_set_version = 1
    scored_at = factory.LazyFunction(timezone.now)


class ScoreHistoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ScoreHistory

    lead = factory.SubFactory(ScoredLeadFactory)
    as_of = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(days=10))
    score = 20
    band = "Cold"
    previous_band = ""
    rule_set_version = 1


class FeedbackFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Feedback

    lead = factory.SubFactory(ScoredLeadFactory)
    verdict = Feedback.Verdict.BAD
    reason = Feedback.Reason.NO_BUDGET
    note = ""
    band = factory.LazyAttribute(lambda o: o.lead.band)
    score = factory.LazyAttribute(lambda o: o.lead.score)
