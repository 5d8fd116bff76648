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

follows. Entries of grouped rules add `"group"`. When the rule set has groups, one entry per
group (in group order) precedes the model entry:

    {"rule": None, "kind": "group", "label": "fit 50 (A)", "group": "fit",
     "points": <clamped group sum minus unclamped sum, 2 decimals>, "score": 50, "band": "A"}

so the entries' points still add up to the total; with a grid and a grade, a
`{"rule": None, "kind": "grade", "label": "grade A1", "points": 0.0, "grade": "A1"}` entry
follows them. Values are plain Python types, ready for JSON. Points are rounded for display only;
scores come from the unrounded contributions.

`breakdowns` (bulk) shares one entry dict per attribute/inactivity rule among the leads of a
result, so its entries are read-only; `breakdowns_json` renders the same breakdowns as JSON.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ._bulk import gc_paused
from .scorer import ScoreResult
from .spec import AttributeRule, EventRule, PropertyTest, Rule

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


def _predicate_text(field: str, op: str, value: Any) -> str:
    if op == "is_set":
        return f"{field} is set"
    if op == "is_not_set":
        return f"{field} is not set"
    if op == "between":
        low, high = value
        return f"{field} between {_value_text(low)} and {_value_text(high)}"
    return f"{field} {_OP_TEXT[op]} {_value_text(value)}"


def rule_label(rule: Rule) -> str:
    """A short human description of what a rule tests, e.g. "title contains 'engineer'",
    "pricing_page_visit in 30 d (half-life 14 d, cap 20)", "no activity for 45 d"."""
    if isinstance(rule, AttributeRule):
        return _predicate_text(rule.field, rule.op, rule.value)
    if isinstance(rule, EventRule):
        label = rule.event_type
        if rule.where:
            label += " where " + " and ".join(
                _predicate_text(k, v.op, v.value)
                if isinstance(v, PropertyTest)
                else f"{k} = {_value_text(v)}"
                for k, v in rule.where
            )
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
        if rule.group is not None:
            entry["group"] = rule.group
        templates.append(entry)
    return templates


def _rounded(values: np.ndarray, decimals: int) -> np.ndarray:
    # Adding 0.0 turns -0.0 into 0.0: a tiny negative contribution shows as 0.0, not -0.0.
    return np.round(values, decimals) + 0.0


def _model_entries(result: ScoreResult, leads: np.ndarray) -> list[dict[str, Any]]:
    """The final "model" entry of each of `leads` (leads the blend applied to)."""
    w = result.compiled.spec.model_weight
    weight_text = _number_text(w)
    probabilities = result.model_probability[leads]
    return [
        {
            "rule": None,
            "kind": "model",
            "label": f"model probability {p:.2f} at weight {weight_text}",
            "points": effect,
            "probability": rounded_p,
            "weight": w,
        }
        for p, rounded_p, effect in zip(
            probabilities.tolist(),
            _rounded(probabilities, 4).tolist(),
            _rounded(result.model_effect[leads], 2).tolist(),
            strict=True,
        )
    ]


def breakdown(result: ScoreResult, i: int) -> list[dict[str, Any]]:
    """The breakdown of lead `i` (see the module docstring); equal to `breakdowns(result)[i]`."""
    row = result.contributions[i]
    nonzero = np.flatnonzero(row)
    templates = _templates(result)
    event_column = {r: j for j, (r, _) in enumerate(result.compiled.event_rules)}
    entries = []
    for r, p in zip(nonzero.tolist(), _rounded(row[nonzero], 2).tolist(), strict=True):
        entry = {**templates[r], "points": p}
        if r in event_column:
            j = event_column[r]
            entry["count"] = int(result.counts[i, j])
            entry["decayed_sum"] = float(_rounded(result.decayed[i, j], 4))
            entry["capped"] = bool(result.capped[i, r])
            entry["points_per_event"] = result.compiled.rules[r].points
        entries.append(entry)
    entries += _group_entries(result, np.array([i]))[0]
    if result.model_applied[i]:
        entries += _model_entries(result, np.array([i]))
    return entries


def _group_entries(result: ScoreResult, leads: np.ndarray) -> list[list[dict[str, Any]]]:
    """Per lead of `leads`, its group entries and grade entry (empty lists without groups)."""
    if result.group_scores is None:
        return [[] for _ in range(leads.shape[0])]
    compiled = result.compiled
    per_group = []
    for g, name in enumerate(result.group_names):
        columns = [r for r, group in enumerate(compiled.rule_group) if group == g]
        raw = np.zeros(leads.shape[0])
        for r in columns:
            raw += result.contributions[leads, r]
        adjustment = _rounded(result.group_totals[leads, g] - raw, 2).tolist()
        scores = result.group_scores[leads, g].tolist()
        bands = result.group_bands[leads, g].tolist()
        per_group.append(
            [
                {
                    "rule": None,
                    "kind": "group",
                    "label": _group_label(name, s, b),
                    "group": name,
                    "points": a,
                    "score": s,
                    "band": b,
                }
                for a, s, b in zip(adjustment, scores, bands, strict=True)
            ]
        )
    entries = [list(lead) for lead in zip(*per_group, strict=True)]
    if compiled.grid is not None:
        for lead_entries, grade in zip(entries, result.grades[leads].tolist(), strict=True):
            if grade is not None:
                lead_entries.append(
                    {"rule": None, "kind": "grade", "label": f"grade {grade}", "points": 0.0,
                     "grade": grade}
                )  # fmt: skip
    return entries


def _group_label(name: str, score: int, band: str | None) -> str:
    return f"{name} {score}" if band is None else f"{name} {score} ({band})"


def _with_group_items(items: list[Any], model: bool, extra: list[Any]) -> list[Any]:
    """A lead's items with its group items placed before the model item (always last)."""
    if not extra:
        return items
    if model:
        return [*items[:-1], *extra, items[-1]]
    return [*items, *extra]


class _Placement:
    """Where each breakdown item goes, so items can be built rule by rule.

    Items are built per rule, where the rule's constant parts are known, and written straight
    to their place in the lead-major sequence: lead by lead, rules ascending, the model entry
    last. Column `n_rules` stands for the model entry (leads the blend applied to).
    """

    def __init__(self, result: ScoreResult) -> None:
        n, n_rules = result.contributions.shape
        self.model = n_rules
        # The transpose of the column-major contribution matrix is contiguous; its nonzeros come
        # out rule by rule, each rule's leads ascending.
        rule_of, rule_leads = np.nonzero(result.contributions.T)
        model_leads = np.flatnonzero(result.model_applied)
        self.lead_of = np.concatenate([rule_leads, model_leads])
        bounds = np.searchsorted(rule_of, np.arange(n_rules + 1))
        self.bounds = [*bounds.tolist(), self.lead_of.shape[0]]
        per_lead = np.bincount(self.lead_of, minlength=n)
        self.ends = np.cumsum(per_lead)
        # An item's slot: its lead's first slot plus the number of earlier columns that also
        # have an item for that lead.
        next_slot = self.ends - per_lead
        self.slot = np.empty(self.lead_of.shape[0], dtype=np.intp)
        for column in range(n_rules + 1):
            a, b = self.bounds[column], self.bounds[column + 1]
            leads = self.lead_of[a:b]
            self.slot[a:b] = next_slot[leads]
            next_slot[leads] += 1  # a column has one item per lead: no repeated indices
        self.items = np.empty(self.lead_of.shape[0], dtype=object)

    def leads(self, column: int) -> np.ndarray:
        return self.lead_of[self.bounds[column] : self.bounds[column + 1]]

    def count(self, column: int) -> int:
        return self.bounds[column + 1] - self.bounds[column]

    def place(self, column: int, items: list[Any] | None = None, shared: Any = None) -> None:
        """Put a column's items in place: one per lead, or one `shared` object for all."""
        slots = self.slot[self.bounds[column] : self.bounds[column + 1]]
        if items is None:
            self.items[slots] = shared
        else:
            # Built element by element so that NumPy never looks inside the items.
            array = np.empty(len(items), dtype=object)
            array[:] = items
            self.items[slots] = array

    def ranges(self) -> tuple[list[Any], list[tuple[int, int]]]:
        """The items in lead-major order, and each lead's (start, end) in it."""
        ends = self.ends.tolist()
        starts = [0, *ends[:-1]] if ends else []
        return self.items.tolist(), list(zip(starts, ends, strict=True))


def _event_columns(result: ScoreResult, at: _Placement, r: int, j: int) -> tuple[np.ndarray, ...]:
    """For the leads event rule r (aggregate column j) moved: points, count, decayed, capped."""
    leads = at.leads(r)
    return (
        _rounded(result.contributions[leads, r], 2),
        result.counts[leads, j],
        _rounded(result.decayed[leads, j], 4),
        result.capped[leads, r],
    )


@gc_paused()
def breakdowns(result: ScoreResult) -> list[list[dict[str, Any]]]:
    """The breakdown of every lead, in lead order; `breakdowns(result)[i] == breakdown(result, i)`.

    Built from the nonzero entries of the contribution matrix, one rule at a time. For speed,
    the entries of attribute and inactivity rules (which are the same for every lead the rule
    applies to) are ONE dict per rule, shared by all leads of this result: treat the entries as
    read-only, and copy one (`dict(entry)`) before changing it. Event and model entries are
    built per lead. For storage, `breakdowns_json` avoids the dicts altogether.
    """
    compiled = result.compiled
    templates = _templates(result)
    at = _Placement(result)
    event_column = {r: j for j, (r, _) in enumerate(compiled.event_rules)}

    for r, rule in enumerate(compiled.rules):
        if not at.count(r):
            continue
        template = templates[r]
        if r not in event_column:
            # An attribute or inactivity rule contributes exactly its points wherever it fires.
            at.place(r, shared={**template, "points": float(_rounded(rule.points, 2))})
            continue
        columns = [c.tolist() for c in _event_columns(result, at, r, event_column[r])]
        ppe = rule.points
        if "name" in template or "group" in template:
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
        at.place(r, entries)
    if at.count(at.model):
        at.place(at.model, _model_entries(result, at.leads(at.model)))

    items, ranges = at.ranges()
    if result.group_scores is None:
        return [items[a:b] for a, b in ranges]
    extras = _group_entries(result, np.arange(result.n))
    model = result.model_applied.tolist()
    return [
        _with_group_items(items[a:b], m, extra)
        for (a, b), m, extra in zip(ranges, model, extras, strict=True)
    ]


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _json_numbers(values: np.ndarray) -> list[str]:
    """JSON text of each float (json.dumps writes repr), rendering each distinct value once."""
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
    at = _Placement(result)
    event_column = {r: j for j, (r, _) in enumerate(compiled.event_rules)}

    for r, rule in enumerate(compiled.rules):
        if not at.count(r):
            continue
        if r not in event_column:
            points = float(_rounded(rule.points, 2))
            at.place(r, shared=_json({**templates[r], "points": points}))
            continue
        points, counts, decayed, capped = _event_columns(result, at, r, event_column[r])
        head = _json(templates[r])[:-1] + ',"points":'
        tail = f',"points_per_event":{_json(rule.points)}}}'
        at.place(
            r,
            [
                f'{head}{p},"count":{c},"decayed_sum":{d},"capped":{cap}{tail}'
                for p, c, d, cap in zip(
                    _json_numbers(points),
                    counts.tolist(),
                    _json_numbers(decayed),
                    np.where(capped, "true", "false").tolist(),
                    strict=True,
                )
            ],
        )
    if at.count(at.model):
        at.place(at.model, _model_json(result, at.leads(at.model)))

    items, ranges = at.ranges()
    if result.group_scores is None:
        return ["[" + ",".join(items[a:b]) + "]" for a, b in ranges]
    extras = [
        [_json(entry) for entry in lead] for lead in _group_entries(result, np.arange(result.n))
    ]
    model = result.model_applied.tolist()
    return [
        "[" + ",".join(_with_group_items(items[a:b], m, extra)) + "]"
        for (a, b), m, extra in zip(ranges, model, extras, strict=True)
    ]


def _model_json(result: ScoreResult, leads: np.ndarray) -> list[str]:
    """`_model_entries` as JSON, without json.dumps per lead."""
    w = result.compiled.spec.model_weight
    # The label holds only letters, digits, dots and spaces: nothing JSON would escape.
    head = '{"rule":null,"kind":"model","label":"model probability '
    tail = f',"weight":{_json(w)}}}'
    weight_text = _number_text(w)
    probabilities = result.model_probability[leads]
    return [
        f'{head}{p:.2f} at weight {weight_text}","points":{effect},"probability":{rounded_p}{tail}'
        for p, rounded_p, effect in zip(
            probabilities.tolist(),
            _json_numbers(_rounded(probabilities, 4)),
            _json_numbers(_rounded(result.model_effect[leads], 2)),
            strict=True,
        )
    ]
