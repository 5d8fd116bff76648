"""Shared set-up of the experiment tests: a live rule set where employees decide the score,
and a challenger document that scores differently (so every lead's arm is visible in its
stored score)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

CHAMPION_DOCUMENT: dict[str, Any] = {
    "name": "Champion",
    "bands": [
        {"name": "Cold", "min_score": 0},
        {"name": "MQL", "min_score": 50, "qualifies": True},
    ],
    "rules": [
        {"kind": "attribute", "field": "employees", "op": "gte", "value": 100, "points": 40},
    ],
}
CHALLENGER_DOCUMENT: dict[str, Any] = {
    "name": "Challenger",
    "bands": [
        {"name": "Cold", "min_score": 0},
        {"name": "MQL", "min_score": 50, "qualifies": True},
    ],
    "rules": [
        {"kind": "attribute", "field": "employees", "op": "gte", "value": 100, "points": 70},
    ],
}


@pytest.fixture
def live(db):
    from scoring.services.rulesets import ruleset_import

    return ruleset_import(copy.deepcopy(CHAMPION_DOCUMENT), publish=True)


@pytest.fixture
def challenger_document() -> dict[str, Any]:
    return copy.deepcopy(CHALLENGER_DOCUMENT)
