"""Explanations: human labels for rules and the per-lead score breakdown.

A breakdown lists, in rule order, every rule whose contribution to the lead is nonzero:

    {"rule": <index in spec.rules>, "kind": "attribute" | "event" | "inactivity",
     "label": <rule_label(rule)>, "points": <contribution rounded to 2 decimals>}

Event entries add `"count"` (matching events in the window), `"decayed_sum"` (4 decimals),
`"capped"` (the cap changed the contribution) and `"points_per_event"` (the rule's points).
Entries of named rules add `"name"`. When the model blend applied to the lead, a final entry

    {"rule": None, "kind": "model", "label": "model probability 0.73 at weight 0.3",
     "points": <blended total minus rule total, 2 decimals>, "probability": <4 decimals>,
     "weight": w}

follows. Values are plain Python types, ready for JSON.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .scorer import ScoreResult
from .spec import AttributeRule, EventRule, Rule

_OP_TEXT = {
    "eq": "is",
    "neq": "is not",
    "in": "is one of",
    "not_in": "is not one of",
    "contains": "contains",
    "not_contains": "does not contain",
    "gte": ">=",
    "lte": "<=",
}


def _number_text(value: float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, int | float):
        return _number_text(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_value_text(v) for v in value) + "]"
    return str(value)


def rule_label(rule: Rule) -> str:
    """A short human description of what a rule tests, e.g. "title contains 'engineer'",
    "pricing_page_visit in 30 d (half-life 14 d, cap 20)", "no activity for 45 d"."""
    if isinstance(rule, AttributeRule):
        if rule.op == "is_set":
            return f"{rule.field} is set"
        if rule.op == "is_not_set":
            return f"{rule.field} is not set"
        if rule.op == "between":
            low, high = rule.value
            return f"{rule.field} between {_value_text(low)} and {_value_text(high)}"
        return f"{rule.field} {_OP_TEXT[rule.op]} {_value_text(rule.value)}"
    if isinstance(rule, EventRule):
        label = rule.event_type
        if rule.where:
            label += " where " + " and ".join(f"{k} = {_value_text(v)}" for k, v in rule.where)
        label += f" in {_number_text(rule.window_days)} d"
        extras = []
        if rule.half_life_days is not None:
            extras.append(f"half-life {_number_text(rule.half_life_days)} d")
        if rule.cap is not None:
            extras.append(f"cap {_number_text(rule.cap)}")
        if extras:
            label += f" ({', '.join(extras)})"
        return label
    return f"no activity for {_number_text(rule.days)} d"


def _templates(result: ScoreResult) -> list[dict[str, Any]]:
    templates = []
    for r, rule in enumerate(result.compiled.rules):
        entry: dict[str, Any] = {"rule": r, "kind": rule.kind, "label": rule_label(rule)}
        if rule.name is not None:
            entry["name"] = rule.name
        templates.append(entry)
    return templates


def _model_entry(result: ScoreResult, i: int, effect: float) -> dict[str, Any]:
    p = float(result.model_probability[i])
    w = result.compiled.spec.model_weight
    return {
        "rule": None,
        "kind": "model",
        "label": f"model probability {p:.2f} at weight {_number_text(w)}",
        "points": effect,
        "probability": round(p, 4),
        "weight": w,
    }


def breakdown(result: ScoreResult, i: int) -> list[dict[str, Any]]:
    """The breakdown of lead `i` (see the module docstring); equal to `breakdowns(result)[i]`."""
    row = result.contributions[i]
    nonzero = np.flatnonzero(row)
    if not nonzero.size and not result.model_applied[i]:
        return []
    templates = _templates(result)
    event_column = {r: j for j, (r, _) in enumerate(result.compiled.event_rules)}
    points = np.round(row[nonzero], 2).tolist()
    entries = []
    for r, p in zip(nonzero.tolist(), points, strict=True):
        entry = {**templates[r], "points": p}
        if r in event_column:
            j = event_column[r]
            entry["count"] = int(result.counts[i, j])
            entry["decayed_sum"] = float(np.round(result.decayed[i, j], 4))
            entry["capped"] = bool(result.capped[i, r])
            entry["points_per_event"] = result.compiled.rules[r].points
        entries.append(entry)
    if result.model_applied[i]:
        effect = float(np.round(result.model_effect[i], 2))
        entries.append(_model_entry(result, i, effect))
    return entries


def breakdowns(result: ScoreResult) -> list[list[dict[str, Any]]]:
    """The breakdown of every lead, in lead order; `breakdowns(result)[i] == breakdown(result, i)`.

    Works on the nonzero entries of the contribution matrix: NumPy finds and rounds them, and
    one dict is built per nonzero entry.
    """
    n = result.n
    contributions = result.contributions
    templates = _templates(result)
    compiled = result.compiled

    # Row-major nonzero order = grouped by lead, rules ascending within a lead.
    rows, cols = np.nonzero(contributions)
    points = np.round(contributions[rows, cols], 2).tolist()
    entries: list[dict[str, Any]] = [
        {**templates[c], "points": p} for c, p in zip(cols.tolist(), points, strict=True)
    ]

    # Event entries get their extra keys, one event rule at a time (vectorised gathers).
    for j, (r, rule) in enumerate(compiled.event_rules):
        at = np.flatnonzero(cols == r)
        if at.size:
            leads = rows[at]
            counts = result.counts[leads, j].tolist()
            decayed = np.round(result.decayed[leads, j], 4).tolist()
            capped = result.capped[leads, r].tolist()
            per_event = rule.points
            for e, count, dsum, cap in zip(at.tolist(), counts, decayed, capped, strict=True):
                entry = entries[e]
                entry["count"] = count
                entry["decayed_sum"] = dsum
                entry["capped"] = cap
                entry["points_per_event"] = per_event

    # Split the flat list into one list per lead.
    ends = np.cumsum(np.bincount(rows, minlength=n)).tolist()
    starts = [0, *ends[:-1]] if ends else []
    per_lead = [entries[a:b] for a, b in zip(starts, ends, strict=True)]

    if result.model_applied.any():
        applied = np.flatnonzero(result.model_applied)
        effects = np.round(result.model_effect[applied], 2).tolist()
        for i, effect in zip(applied.tolist(), effects, strict=True):
            per_lead[i].append(_model_entry(result, i, effect))
    return per_lead
