"""Hypothesis strategies: random rule-set documents, leads and events aimed at the edges.

Values come from small pools chosen to collide with each other: the same word in different
case and padding, numbers as strings, bools next to 1 and "true", blanks, NaN, ages exactly on
window edges, points that sum to halves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from .naive_reference import DAY, Event

AS_OF = 1_700_000_000.0
NAN = math.nan

LEAD_VALUES: dict[str, list[Any]] = {
    "title": [
        "Engineer",
        " engineer ",
        "ENGINEER",
        "Senior Software Engineer",
        "CEO",
        "ceo",
        "Marketing Manager",
        "GROSS",
        "",
        "   ",
        None,
    ],
    "employees": [None, NAN, 0, 50, 199, 200, 200.0, 199.5, "200", " 150 ", "abc", "", True, 1e6],
    "country": ["US", "us", " US ", "DE", "Germany", None, "", 1],
    "attributes.plan": ["pro", "Pro", "PRO ", "free", True, False, "true", "True", 1, 1.0, 0, None],
    "email": ["a@acme.com", "B@Gmail.COM", " c@yahoo.com ", "d@example.org", "nobody", "", None],
}
NUMERIC_EMPLOYEES = [NAN, 0.0, 50.0, 199.0, 200.0, 199.5, 1e6, -5.0]

RULE_VALUES: dict[str, list[Any]] = {
    "title": ["engineer", "Engineer", "CEO", "manager", "senior", "software engineer", "groß"],
    "employees": [0, 150, 199.5, 200, 200.0, 1000, -5, "200", "abc", True],
    "country": ["us", "DE", "germany", 1],
    "attributes.plan": ["pro", "true", True, False, 1, 1.0, "1", "PRO"],
    "attributes.absent": ["x", 1],
    "email": ["gmail", "acme.com", "@"],
    "email_domain_type": ["business", "free", "FREE"],
}
NUMBERS = [-5, 0, 150, 199.5, 200, 1000]
FIELDS = sorted(RULE_VALUES)
OPS = [
    "eq",
    "neq",
    "in",
    "not_in",
    "contains",
    "not_contains",
    "gte",
    "lte",
    "between",
    "is_set",
    "is_not_set",
]
POINTS = [-20, -10, -2.5, -0.5, 0, 0.1, 0.2, 0.25, 0.3, 0.5, 1, 2.5, 5, 15]
PERSONA_NAMES = ["Developer", "Marketer", "Exec"]
EVENT_TYPES = ["page_view", "pricing_page_visit", "api_call", "survey_response"]
AGES = [-1, -0.001, 0, 0.5, 3.5, 7, 14, 29.999, 30, 30.001, 100]
PROPERTIES: list[dict[str, Any] | None] = [
    None,
    {},
    {"plan": "pro"},
    {"plan": "Pro"},
    {"plan": 1},
    {"plan": 1.0},
    {"plan": True},
    {"plan": None},
    {"plan": "pro", "tier": 2},
    {"plan": "pro", "tier": 2.0},
    {"tier": "2"},
    # Survey answers and usage counts: numbers, numeric strings, blanks, lists, bools.
    {"question": "nps", "score": 9},
    {"question": "NPS ", "score": "10"},
    {"question": "nps", "score": 6.5},
    {"question": "csat", "score": " 8 "},
    {"question": "nps", "score": "abc"},
    {"question": "nps", "score": ""},
    {"question": "nps", "score": None},
    {"question": "nps", "score": [9]},
    {"question": {"id": "nps"}, "score": True},
    {"feature": "Reports", "count": 12},
    {"feature": "reports export", "count": 3.0},
]
WHERES = [
    {"plan": "pro"},
    {"plan": 1},
    {"plan": True},
    {"plan": None},
    {"plan": "pro", "tier": 2},
    # Operators: every attribute operator, on the same colliding values.
    {"question": "nps", "score": {"gte": 9}},
    {"score": {"lte": 6.5}},
    {"score": {"between": [7, 9]}},
    {"plan": {"in": ["PRO", 1]}},
    {"plan": {"not_in": ["pro", True]}},
    {"question": {"eq": "nps"}, "score": {"neq": 9}},
    {"feature": {"contains": "REPORT"}, "count": {"gte": 3}},
    {"feature": {"not_contains": "export"}},
    {"score": {"is_set": True}},
    {"score": {"is_set": False}},
    {"score": {"is_not_set": True}},
    {"question": {"is_not_set": False}},
    {"tier": {"eq": 2}},
    {"tier": {"in": ["2", 3]}},
]


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, Any]:
    field = draw(st.sampled_from(FIELDS))
    op = draw(st.sampled_from(OPS))
    cond: dict[str, Any] = {"field": field, "op": op}
    pool = RULE_VALUES[field]
    if op in ("eq", "neq", "contains", "not_contains"):
        cond["value"] = draw(st.sampled_from(pool))
    elif op in ("in", "not_in"):
        cond["value"] = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3))
    elif op in ("gte", "lte"):
        cond["value"] = draw(st.sampled_from(NUMBERS))
    elif op == "between":
        cond["value"] = sorted(draw(st.lists(st.sampled_from(NUMBERS), min_size=2, max_size=2)))
    return cond


@st.composite
def rules(
    draw: st.DrawFn,
    personas: list[str],
    kinds: tuple[str, ...] = ("attribute", "event", "inactivity"),
    points: list[float] | None = None,
) -> dict[str, Any]:
    kind = draw(st.sampled_from(kinds))
    rule: dict[str, Any] = {"kind": kind, "points": draw(st.sampled_from(points or POINTS))}
    if personas and draw(st.booleans()):
        rule["persona"] = draw(st.sampled_from(personas))
    if kind == "attribute":
        rule.update(draw(conditions()))
    elif kind == "event":
        rule["event_type"] = draw(st.sampled_from(EVENT_TYPES))
        rule["window_days"] = draw(st.sampled_from([7, 14, 30, 0.5]))
        if draw(st.booleans()):
            rule["half_life_days"] = draw(st.sampled_from([3.5, 7, 14]))
        if draw(st.booleans()):
            rule["cap"] = draw(st.sampled_from([-20, 0.25, 1, 2.5, 5, 10]))
        if draw(st.booleans()):
            rule["where"] = draw(st.sampled_from(WHERES))
    else:
        rule["days"] = draw(st.sampled_from([7, 14, 30, 45]))
    return rule


@st.composite
def band_lists(draw: st.DrawFn, persona: str | None) -> list[dict[str, Any]]:
    mins = draw(
        st.lists(st.sampled_from([-60, -10, 0, 1, 3, 10, 25, 50, 80]), unique=True, max_size=4)
    )
    qualifying = draw(st.none() | st.integers(0, max(len(mins) - 1, 0)))
    bands = []
    for i, m in enumerate(mins):
        band: dict[str, Any] = {"name": f"{persona or 'All'}-{i}", "min_score": m}
        if qualifying == i:
            band["qualifies"] = True
        if persona is not None:
            band["persona"] = persona
        bands.append(band)
    return bands


GROUP_NAMES = ["fit", "engagement", "intent"]


@st.composite
def group_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Groups with caps and floors that bite on the POINTS pool (halves, negatives), bands
    whose edges sit on reachable group scores, and sometimes none at all."""
    names = draw(st.lists(st.sampled_from(GROUP_NAMES), unique=True, max_size=3))
    groups = []
    for name in names:
        group: dict[str, Any] = {"name": name}
        cap = draw(st.sampled_from([None, 0.5, 2.5, 5, 10]))
        floor = draw(st.sampled_from([None, -10, -2.5, 0]))
        if cap is not None:
            group["cap"] = cap
        if floor is not None:
            group["floor"] = floor
        mins = draw(st.lists(st.sampled_from([-10, -3, 0, 1, 3, 5, 10]), unique=True, max_size=4))
        group["bands"] = [
            {"name": f"{name[0].upper()}{i}", "min_score": m} for i, m in enumerate(mins)
        ]
        groups.append(group)
    return groups


@st.composite
def documents(
    draw: st.DrawFn,
    kinds: tuple[str, ...] = ("attribute", "event", "inactivity"),
    event_points: list[float] | None = None,
    with_model: bool = True,
) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(PERSONA_NAMES), unique=True, max_size=3))
    personas = [
        {
            "name": name,
            "priority": draw(st.integers(0, 2)),
            "match": draw(st.lists(conditions(), max_size=2)),
        }
        for name in names
    ]
    bands = draw(band_lists(None))
    for name in names:
        if draw(st.booleans()):
            bands += draw(band_lists(name))
    rule_list = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(kinds))
        pts = event_points if kind == "event" else None
        rule_list.append(draw(rules(names, kinds=(kind,), points=pts)))
    groups = draw(group_lists())
    if groups:
        names_of_groups = [g["name"] for g in groups]
        for rule in rule_list:
            if draw(st.booleans()):
                rule["group"] = draw(st.sampled_from(names_of_groups))
    floor, ceiling = draw(st.sampled_from([(0, 100), (-50, 50), (-3, 3), (0, 10)]))
    doc: dict[str, Any] = {
        "name": "random",
        "floor": floor,
        "ceiling": ceiling,
        "personas": personas,
        "bands": bands,
        "rules": rule_list,
    }
    if groups:
        doc["groups"] = groups
        banded = [g["name"] for g in groups if g["bands"]]
        if len(banded) >= 2 and draw(st.booleans()):
            doc["grid"] = draw(st.permutations(banded))[:2]
    if with_model and draw(st.booleans()):
        doc["model_weight"] = draw(st.sampled_from([0, 0.25, 0.5, 1]))
    return doc


@dataclass
class Scenario:
    """Leads (as dicts), their events and creation times, and model probabilities."""

    leads: list[dict[str, Any]]
    events: list[Event]
    created_at: list[float]
    probabilities: list[float]
    numeric_employees: bool

    @property
    def n(self) -> int:
        return len(self.leads)

    def columns(self) -> dict[str, np.ndarray]:
        """Column arrays as the caller of `score_leads` would pass them."""
        out: dict[str, np.ndarray] = {}
        for name in LEAD_VALUES:
            values = [lead.get(name) for lead in self.leads]
            if name == "employees" and self.numeric_employees:
                out[name] = np.array(values, dtype=np.float64)
            else:
                out[name] = np.array(values, dtype=object)
        return out

    def event_arrays(self) -> dict[str, Any]:
        return {
            "lead_index": np.array([e.lead for e in self.events], dtype=np.int64),
            "event_types": np.array([e.type for e in self.events], dtype=object),
            "occurred_at": np.array([e.at for e in self.events], dtype=np.float64),
            "properties": [e.properties for e in self.events],
            "created_at": np.array(self.created_at, dtype=np.float64),
        }


@st.composite
def scenarios(draw: st.DrawFn, max_leads: int = 12, max_events: int = 30) -> Scenario:
    n = draw(st.integers(1, max_leads))
    numeric_employees = draw(st.booleans())
    leads = []
    for _ in range(n):
        lead = {name: draw(st.sampled_from(pool)) for name, pool in LEAD_VALUES.items()}
        if numeric_employees:
            lead["employees"] = draw(st.sampled_from(NUMERIC_EMPLOYEES))
        leads.append(lead)
    events = [
        Event(
            lead=draw(st.integers(0, n - 1)),
            type=draw(st.sampled_from(EVENT_TYPES)),
            at=AS_OF - draw(st.sampled_from(AGES)) * DAY,
            properties=draw(st.sampled_from(PROPERTIES)),
        )
        for _ in range(draw(st.integers(0, max_events)))
    ]
    created_at = [AS_OF - draw(st.sampled_from([-5, 0, 10, 45, 100])) * DAY for _ in range(n)]
    probabilities = [draw(st.sampled_from([NAN, 0.0, 0.5, 0.123, 0.995, 1.0])) for _ in range(n)]
    return Scenario(leads, events, created_at, probabilities, numeric_employees)
