"""The benchmark's 40-rule set: the demo starter rules plus behaviour rules over every event
type the demo generator produces, with windows, half-lives and caps."""

from __future__ import annotations

import copy
from typing import Any

from scoring.demo.seed import starter_ruleset_document

EXTRA_EVENT_TYPES = (
    "page_view",
    "pricing_page_visit",
    "demo_request",
    "trial_signup",
    "api_call",
    "feature_used",
    "email_open",
    "email_click",
    "webinar_attended",
)


def bench_ruleset(n_rules: int = 40) -> dict[str, Any]:
    document = copy.deepcopy(starter_ruleset_document())
    document["name"] = f"Benchmark rules ({n_rules})"
    rules = document["rules"]
    i = 0
    while len(rules) < n_rules:
        event_type = EXTRA_EVENT_TYPES[i % len(EXTRA_EVENT_TYPES)]
        window = (7, 30, 90)[i % 3]
        rule: dict[str, Any] = {
            "kind": "event",
            "event_type": event_type,
            "points": (1, 2, 3)[i % 3],
            "window_days": window,
            "name": f"bench {event_type} {window}d #{i}",
        }
        if i % 2 == 0:
            rule["half_life_days"] = window / 2
        if i % 3 != 1:
            rule["cap"] = 10
        rules.append(rule)
        i += 1
    del rules[n_rules:]
    return document
