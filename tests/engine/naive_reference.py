"""A naive, obviously-correct scorer written straight from DESIGN.md §4.

It reads the rule-set JSON document (plain dicts) and works one lead and one event at a time
with plain Python. It shares no code with `scoring.engine` on purpose: the engine is checked
against it, so it must not inherit the engine's mistakes. Slow by design.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

DAY = 86_400.0
# The tests only use these free-mail domains; the engine ships a longer list.
FREE_DOMAINS = {"gmail.com", "yahoo.com", "hotmail.com"}


@dataclass
class Event:
    lead: int
    type: str
    at: float
    properties: dict[str, Any] | None = None


@dataclass
class LeadResult:
    persona: str | None
    contributions: list[float]
    capped: list[bool]
    total: float
    score: int
    band: str | None
    qualifies: bool
    counts: list[int] = field(default_factory=list)
    decayed: list[float] = field(default_factory=list)
    days_since_activity: float = math.nan
    group_totals: dict[str, float] = field(default_factory=dict)
    group_scores: dict[str, int] = field(default_factory=dict)
    group_bands: dict[str, str | None] = field(default_factory=dict)
    grade: str | None = None


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def text(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value).strip().casefold()


def as_float(value: Any) -> float | None:
    if is_number(value):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def equals(lead_value: Any, rule_value: Any) -> bool:
    if is_number(lead_value) and is_number(rule_value):
        return lead_value == rule_value
    return text(lead_value) == text(rule_value)


def holds(lead_value: Any, op: str, rule_value: Any) -> bool:
    if op == "is_not_set":
        return is_missing(lead_value)
    if is_missing(lead_value):
        return False
    if op == "is_set":
        return True
    if op == "eq":
        return equals(lead_value, rule_value)
    if op == "neq":
        return not equals(lead_value, rule_value)
    if op == "in":
        return any(equals(lead_value, v) for v in rule_value)
    if op == "not_in":
        return not any(equals(lead_value, v) for v in rule_value)
    if op == "contains":
        return text(rule_value) in text(lead_value)
    if op == "not_contains":
        return text(rule_value) not in text(lead_value)
    number = as_float(lead_value)
    if number is None:
        return False
    if op == "gte":
        return number >= rule_value
    if op == "lte":
        return number <= rule_value
    if op == "between":
        return rule_value[0] <= number <= rule_value[1]
    raise AssertionError(op)


def lead_value(lead: dict[str, Any], name: str) -> Any:
    if name == "email_domain_type":
        email = lead.get("email")
        if not isinstance(email, str) or "@" not in email:
            return None
        domain = email.strip().lower().split("@")[-1]
        if not domain:
            return None
        return "free" if domain in FREE_DOMAINS else "business"
    return lead.get(name)


def json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def where_holds(props: dict[str, Any], key: str, wanted: Any) -> bool:
    """A value asks for JSON equality; an operator object `{op: value}` is the attribute
    predicate on the property (an object or list value reads as missing)."""
    if not isinstance(wanted, dict):
        return key in props and json_equal(props[key], wanted)
    ((op, value),) = wanted.items()
    if op in ("is_set", "is_not_set") and value is False:
        op = "is_not_set" if op == "is_set" else "is_set"
    found = props.get(key)
    if isinstance(found, dict | list):
        found = None
    return holds(found, op, value)


def round_half_away(x: float) -> int:
    # The engine's documented choice: halves (and anything within 1e-9 below one) go away
    # from zero.
    magnitude = math.floor(abs(x) + 0.5 + 1e-9)
    return int(math.copysign(magnitude, x)) if magnitude else 0


def score_lead(
    doc: dict[str, Any],
    lead: dict[str, Any],
    events: list[Event],
    created_at: float,
    as_of: float,
    probability: float | None = None,
) -> LeadResult:
    """Score one lead. `events` are this lead's events, in input order."""
    persona = None
    ordered = sorted(enumerate(doc.get("personas", [])), key=lambda t: (t[1]["priority"], t[0]))
    for _, p in ordered:
        if all(holds(lead_value(lead, c["field"]), c["op"], c.get("value")) for c in p["match"]):
            persona = p["name"]
            break

    contributions: list[float] = []
    capped: list[bool] = []
    counts: list[int] = []
    decayed_sums: list[float] = []
    before = [e.at for e in events if e.at <= as_of]
    last = max(before) if before else created_at
    days_since = (as_of - last) / DAY

    for rule in doc["rules"]:
        applies = rule.get("persona") is None or rule["persona"] == persona
        value = 0.0
        was_capped = False
        if rule["kind"] == "attribute":
            if holds(lead_value(lead, rule["field"]), rule["op"], rule.get("value")):
                value = float(rule["points"])
        elif rule["kind"] == "event":
            count = 0
            decayed = 0.0
            for e in events:
                age = (as_of - e.at) / DAY
                if e.type != rule["event_type"] or not 0 <= age <= rule["window_days"]:
                    continue
                props = e.properties or {}
                where = rule.get("where") or {}
                if not all(where_holds(props, k, v) for k, v in where.items()):
                    continue
                count += 1
                half_life = rule.get("half_life_days")
                decayed += 0.5 ** (age / half_life) if half_life else 1.0
            counts.append(count)
            decayed_sums.append(decayed)
            value = rule["points"] * decayed
            if rule.get("cap") is not None:
                limit = abs(rule["cap"])
                if value > limit or value < -limit:
                    was_capped = True
                    value = max(-limit, min(limit, value))
        else:
            if days_since >= rule["days"]:
                value = float(rule["points"])
        if not applies:
            value, was_capped = 0.0, False
        contributions.append(value)
        capped.append(was_capped)

    # Groups: grouped rules sum into their group, clamped to [floor, cap]; the total is the
    # ungrouped contributions (in rule order) plus the clamped groups (in group order).
    groups = doc.get("groups") or []
    sums = {g["name"]: 0.0 for g in groups}
    total = 0.0
    for rule, value in zip(doc["rules"], contributions, strict=True):
        if rule.get("group") is None:
            total += value
        else:
            sums[rule["group"]] += value
    group_totals, group_scores, group_bands = {}, {}, {}
    for g in groups:
        value = sums[g["name"]]
        if g.get("floor") is not None and value < g["floor"]:
            value = float(g["floor"])
        if g.get("cap") is not None and value > g["cap"]:
            value = float(g["cap"])
        total += value
        group_totals[g["name"]] = value
        group_scores[g["name"]] = round_half_away(value)
        reached = [b for b in g.get("bands", []) if b["min_score"] <= group_scores[g["name"]]]
        best = max(reached, key=lambda b: b["min_score"]) if reached else None
        group_bands[g["name"]] = best["name"] if best else None
    grade = None
    grid = doc.get("grid")
    if grid and group_bands[grid[0]] is not None and group_bands[grid[1]] is not None:
        grade = group_bands[grid[0]] + group_bands[grid[1]]
    w = doc.get("model_weight", 0)
    if w > 0 and probability is not None and not math.isnan(probability):
        total = (1 - w) * total + w * 100 * probability
    score = max(doc.get("floor", 0), min(doc.get("ceiling", 100), round_half_away(total)))

    bands = doc.get("bands", [])
    own = [b for b in bands if persona is not None and b.get("persona") == persona]
    scope = own or [b for b in bands if b.get("persona") is None]
    reached = [b for b in scope if b["min_score"] <= score]
    band = max(reached, key=lambda b: b["min_score"]) if reached else None
    return LeadResult(
        persona=persona,
        contributions=contributions,
        capped=capped,
        total=total,
        score=score,
        band=band["name"] if band else None,
        qualifies=bool(band and band.get("qualifies", False)),
        counts=counts,
        decayed=decayed_sums,
        days_since_activity=days_since,
        group_totals=group_totals,
        group_scores=group_scores,
        group_bands=group_bands,
        grade=grade,
    )


def score_all(
    doc: dict[str, Any],
    leads: list[dict[str, Any]],
    events: list[Event],
    created_at: list[float],
    as_of: float,
    probabilities: list[float] | None = None,
) -> list[LeadResult]:
    return [
        score_lead(
            doc,
            lead,
            [e for e in events if e.lead == i],
            created_at[i],
            as_of,
            None if probabilities is None else probabilities[i],
        )
        for i, lead in enumerate(leads)
    ]
