import datetime as dt

import pytest

from scoring.services.rulesets import ruleset_import

LIVE_DOCUMENT = {
    "name": "Live rules",
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
        {"kind": "event", "event_type": "demo_request", "points": 30, "window_days": 60},
        {"kind": "inactivity", "days": 45, "points": -10},
    ],
}


@pytest.fixture
def live(db):
    """The published champion (no rescore: the tests that need one start it themselves)."""
    rule_set = ruleset_import(LIVE_DOCUMENT)
    from scoring.services.rulesets import ruleset_publish

    return ruleset_publish(rule_set, rescore=False)


@pytest.fixture
def draft(live, role_users):
    from scoring.services.rulesets import ruleset_copy

    return ruleset_copy(live, user=role_users["ops"])


def days_ago(days: float) -> dt.datetime:
    from django.utils import timezone

    return timezone.now() - dt.timedelta(days=days)
