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

import json
from typing import Any

import numpy as np

from ._bulk import gc_paused
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


class _NonzeroByRule:
    """The nonzero contributions, walked rule by rule and placed in lead order.

    Entries are built per rule (where the rule's constant parts are known), and each is
    written straight to its place in the lead-major result: lead by lead, rules ascending.
    """

    def __init__(self, result: ScoreResult) -> None:
        n, n_rules = result.contributions.shape
        # The transpose of the column-major contribution matrix is contiguous; its nonzeros come
        # out rule by rule, each rule's leads ascending.
        rule_of, self.lead_of = np.nonzero(result.contributions.T)
        self.bounds = np.searchsorted(rule_of, np.arange(n_rules + 1)).tolist()
        per_lead = np.bincount(self.lead_of, minlength=n)
        self.ends = np.cumsum(per_lead)
        # Where each nonzero goes in the lead-major sequence: its lead's first slot plus the
        # number of earlier rules that also moved that lead.
        next_slot = self.ends - per_lead
        self.slot = np.empty(self.lead_of.shape[0], dtype=np.intp)
        for r in range(n_rules):
            a, b = self.bounds[r], self.bounds[r + 1]
            leads = self.lead_of[a:b]
            self.slot[a:b] = next_slot[leads]
            next_slot[leads] += 1  # a rule moves each lead once: no repeated indices
        self.items = np.empty(self.lead_of.shape[0], dtype=object)

    def leads(self, r: int) -> np.ndarray:
        return self.lead_of[self.bounds[r] : self.bounds[r + 1]]

    def count(self, r: int) -> int:
        return self.bounds[r + 1] - self.bounds[r]

    def place(self, r: int, items: object) -> None:
        """Put rule r's items (a list, one per lead, or one object for all) in place."""
        self.items[self.slot[self.bounds[r] : self.bounds[r + 1]]] = items

    def per_lead(self) -> list[list[Any]]:
        flat = self.items.tolist()
        ends = self.ends.tolist()
        starts = [0, *ends[:-1]] if ends else []
        return [flat[a:b] for a, b in zip(starts, ends, strict=True)]


def _event_columns(result: ScoreResult, nz: _NonzeroByRule, r: int, j: int) -> tuple[list, ...]:
    """Per nonzero lead of event rule r (aggregate column j): points, count, decayed, capped."""
    leads = nz.leads(r)
    return (
        np.round(result.contributions[leads, r], 2).tolist(),
        result.counts[leads, j].tolist(),
        np.round(result.decayed[leads, j], 4).tolist(),
        result.capped[leads, r].tolist(),
    )


def _list_of(items: list[Any]) -> np.ndarray:
    # An object array built element by element: NumPy must not look inside the items.
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


@gc_paused()
def breakdowns(result: ScoreResult) -> list[list[dict[str, Any]]]:
    """The breakdown of every lead, in lead order; `breakdowns(result)[i] == breakdown(result, i)`.

    Built from the nonzero entries of the contribution matrix, one rule at a time. For speed,
    the entries of attribute and inactivity rules (which are the same for every lead the rule
    applies to) are ONE dict per rule, shared by all leads of this result: treat the entries as
    read-only, and copy one (`dict(entry)`) before changing it. Event and model entries are
    built per lead. For storage, `breakdowns_json` is faster still.
    """
    compiled = result.compiled
    templates = _templates(result)
    nz = _NonzeroByRule(result)
    event_column = {r: j for j, (r, _) in enumerate(compiled.event_rules)}

    for r, rule in enumerate(compiled.rules):
        if not nz.count(r):
            continue
        template = templates[r]
        if r not in event_column:
            # An attribute or inactivity rule contributes exactly its points wherever it fires.
            nz.place(r, {**template, "points": float(np.round(rule.points, 2))})
            continue
        columns = _event_columns(result, nz, r, event_column[r])
        ppe = rule.points
        if "name" in template:
            entries = [
                {**template, "points": p, "count": c, "decayed_sum": d, "capped": cap,
                 "points_per_event": ppe}
                for p, c, d, cap in zip(*columns, strict=True)
            ]  # fmt: skip
        else:
            # A literal with every key is presized: ~30% faster than spreading the template.
            label = template["label"]
            entries = [
                {"rule": r, "kind": "event", "label": label, "points": p, "count": c,
                 "decayed_sum": d, "capped": cap, "points_per_event": ppe}
                for p, c, d, cap in zip(*columns, strict=True)
            ]  # fmt: skip
        nz.place(r, _list_of(entries))
    per_lead = nz.per_lead()

    if result.model_applied.any():
        applied = np.flatnonzero(result.model_applied)
        effects = np.round(result.model_effect[applied], 2).tolist()
        for i, effect in zip(applied.tolist(), effects, strict=True):
            per_lead[i].append(_model_entry(result, i, effect))
    return per_lead


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _json_numbers(values: np.ndarray) -> list[str]:
    """JSON text of each float, rendering each distinct value once (json.dumps uses repr)."""
    distinct, inverse = np.unique(values, return_inverse=True)
    texts = np.array(list(map(repr, distinct.tolist())), dtype=object)
    return texts[inverse.reshape(-1)].tolist()


@gc_paused()
def breakdowns_json(result: ScoreResult) -> list[str]:
    """Each lead's breakdown as compact JSON, in lead order, for bulk storage.

    `breakdowns_json(result)[i] == json.dumps(breakdown(result, i), separators=(",", ":"))`,
    assembled from pre-rendered fragments without building the dicts.
    """
    compiled = result.compiled
    templates = _templates(result)
    nz = _NonzeroByRule(result)
    event_column = {r: j for j, (r, _) in enumerate(compiled.event_rules)}

    for r, rule in enumerate(compiled.rules):
        if not nz.count(r):
            continue
        if r not in event_column:
            nz.place(r, _json({**templates[r], "points": float(np.round(rule.points, 2))}))
            continue
        j = event_column[r]
        leads = nz.leads(r)
        points = _json_numbers(np.round(result.contributions[leads, r], 2))
        counts = result.counts[leads, j].tolist()
        decayed = _json_numbers(np.round(result.decayed[leads, j], 4))
        capped = np.where(result.capped[leads, r], "true", "false").astype(object).tolist()
        head = _json(templates[r])[:-1] + ',"points":'
        tail = f',"points_per_event":{_json(rule.points)}}}'
        fragments = [
            f'{head}{p},"count":{c},"decayed_sum":{d},"capped":{cap}{tail}'
            for p, c, d, cap in zip(points, counts, decayed, capped, strict=True)
        ]
        nz.place(r, _list_of(fragments))
    per_lead = nz.per_lead()

    if result.model_applied.any():
        applied = np.flatnonzero(result.model_applied)
        effects = np.round(result.model_effect[applied], 2).tolist()
        for i, effect in zip(applied.tolist(), effects, strict=True):
            per_lead[i].append(_json(_model_entry(result, i, effect)))
    return ["[" + ",".join(fragments) + "]" for fragments in per_lead]
