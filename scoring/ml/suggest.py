"""Suggested rule weights from the logistic regression, and proposed rules for strong features
the live rules do not cover; applied as a new *draft* rule set (never published here).

**The model's view of a rule.** On the training leads, each model column's contribution to
the log-odds is coefficient x standardised value; contributions are summed per feature (a
number with its missing indicator, a category's one-hot columns). A rule maps to features:
an attribute rule to its field, an event rule to every behaviour feature of its event type,
an inactivity rule to `days_since_last_activity`. The rule's effect is the mean summed
contribution of its features over the leads where the rule fires minus over the leads where
it does not (in log-odds), needing at least `MIN_SUPPORT` leads on each side.

**Scaling into points.** One log-odds unit is worth `S = (ceiling - floor) / (q95 - q05)`
points, where q05 and q95 are the 5th and 95th percentiles of the model's log-odds over the
training leads: the model's spread over typical leads spans the rule set's score range. An
attribute or inactivity rule's suggested points are effect x S; an event rule's points are
per event, so effect x S is divided by the rule's mean multiplier (its contribution over its
points, i.e. the mean capped, decayed event count) on the leads where it fires.

**The draft** is learned, not patched (`rule_candidates`, `learn_rules`): engine-expressible
0/1 rules over the training leads (numbers split at their deciles, a zero-heavy number at
"> 0"; category values; an event type in the last 30 days; inactivity), at most `max_rules`
(default 12) picked by an L1-penalised logistic regression, weighed by a plain one, negative
weights swapped for the complementary rule so every point is positive and the floor is the
base, scaled so the training leads spread over the score range. The draft keeps the live rule
set's floor, ceiling, bands and personas. Training scores the draft with the engine on the
test leads, as of the cut-off, and stores its ROC AUC beside the logistic model's
(`test_roc_auc`, `model_test_roc_auc`); `manage.py suggest_weights` recomputes it."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from scoring.engine import AttributeRule, EventRule, InactivityRule, parse_ruleset, rule_label
from scoring.ml import feature_frame as F

MIN_SUPPORT = 10
DEFAULT_MAX_RULES = 12
# A number with at least this share of its leads at its lowest value (zero, mostly) also gets
# the candidate "> lowest".
ZERO_HEAVY_SHARE = 0.3
# Where a number is split into candidate rules: its deciles (a step per decile lets a few
# rules follow a smooth effect).
QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_BANDS = [
    {"name": "Cold", "min_score": 0},
    {"name": "Warm", "min_score": 25},
    {"name": "MQL", "min_score": 50, "qualifies": True},
    {"name": "Hot", "min_score": 80},
]


def feature_contributions(estimator: Any, spec: F.FeatureSpec, X: np.ndarray) -> np.ndarray:
    """(n, len(spec.names)) log-odds contributions of the logistic regression, per feature."""
    from scoring.ml.training import inner_pipeline, logistic_columns

    pipeline = inner_pipeline(estimator)
    model = pipeline.named_steps["model"]
    transformed = pipeline.named_steps["prepare"].transform(X)
    _, sources = logistic_columns(pipeline, spec)
    per_column = transformed * model.coef_[0]
    out = np.zeros((X.shape[0], len(spec.names)))
    np.add.at(out.T, np.asarray(sources), per_column.T)
    return out


def suggest_from_training(
    estimator: Any,
    spec: F.FeatureSpec,
    X_train: np.ndarray,
    rules: Any,  # training.RuleScores | None
    train_rows: np.ndarray,
    y_train: np.ndarray | None = None,
    *,
    max_rules: int = DEFAULT_MAX_RULES,
) -> dict[str, Any]:
    """The suggestion stored with the logistic model: per live rule its live and suggested
    points (what the model thinks of each), the learned rules (`learn_rules`, at most
    `max_rules`) as `new_rules`, the scale used, and the draft document (validated): the live
    rule set's floor, ceiling, bands and personas with the learned rules. The caller adds the
    draft's test ROC AUC beside the model's."""
    from scoring.ml.training import inner_pipeline

    pipeline = inner_pipeline(estimator)
    contributions = feature_contributions(estimator, spec, X_train)
    logits = contributions.sum(axis=1) + float(pipeline.named_steps["model"].intercept_[0])
    low, high = np.percentile(logits, [5, 95])
    floor, ceiling = (float(rules.spec.floor), float(rules.spec.ceiling)) if rules else (0.0, 100.0)
    scale = (ceiling - floor) / max(high - low, 1e-6)
    names = spec.names
    index = {name: j for j, name in enumerate(names)}

    rows: list[dict[str, Any]] = []
    covered: set[str] = set()
    if rules is not None:
        contributions_rules = rules.contributions[train_rows]
        for r, rule in enumerate(rules.spec.rules):
            mapped = _rule_features(rule, spec)
            covered |= set(mapped)
            row = {
                "rule": rule_label(rule),
                # Two rules may test the same thing (for two personas, say): the page tells
                # their rows apart by name, persona and position.
                "name": rule.name or "",
                "persona": rule.persona or "",
                "index": r,
                "live_points": rule.points,
                "suggested_points": None,
                "effect_log_odds": None,
                "fired": None,
                "note": "",
            }
            fired = contributions_rules[:, r] != 0
            row["fired"] = int(fired.sum())
            if not mapped:
                row["note"] = "no model feature for this rule"
            elif fired.sum() < MIN_SUPPORT or (~fired).sum() < MIN_SUPPORT:
                row["note"] = f"fires for too few or too many leads (n={int(fired.sum())})"
            else:
                summed = contributions[:, [index[m] for m in mapped]].sum(axis=1)
                effect = float(summed[fired].mean() - summed[~fired].mean())
                multiplier = 1.0
                if isinstance(rule, EventRule) and rule.points:
                    multiplier = float(
                        np.mean(np.abs(contributions_rules[fired, r]) / abs(rule.points))
                    )
                points = _round_points(effect * scale / max(multiplier, 1e-6), ceiling - floor)
                row.update(effect_log_odds=round(effect, 4), suggested_points=points)
            rows.append(row)

    proposals = (
        learn_rules(
            rule_candidates(spec, X_train), y_train, max_rules=max_rules, span=ceiling - floor
        )
        if y_train is not None
        else []
    )
    document = _draft_document(rules, rows, proposals)
    parse_ruleset(document)  # a suggestion the engine would refuse is a bug here
    return {
        "based_on_version": rules.version if rules else None,
        "scale_points_per_log_odds": round(float(scale), 4),
        "log_odds_q05_q95": [round(float(low), 4), round(float(high), 4)],
        "rules": rows,
        "new_rules": proposals,
        "document": document,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
    }


def _rule_features(rule: Any, spec: F.FeatureSpec) -> list[str]:
    names = set(spec.names)
    if isinstance(rule, AttributeRule):
        return [rule.field] if rule.field in names else []
    if isinstance(rule, EventRule):
        prefix = f"events.{rule.event_type}."
        return [name for name in spec.names if name.startswith(prefix)]
    if isinstance(rule, InactivityRule):
        return ["days_since_last_activity"]
    return []


def _round_points(value: float, limit: float) -> int:
    if not math.isfinite(value):
        return 0
    return int(max(-limit, min(limit, round(value))))


@dataclass(frozen=True, eq=False)
class Candidate:
    """A rule the engine can evaluate, as a 0/1 column over the training leads (`fires`,
    computed from the encoded matrix as the engine reads the lead), and the candidate that
    fires for the other leads with a value, when one is expressible (`complement`)."""

    rule: dict[str, Any]  # the rule document without points and name
    label: str
    fires: np.ndarray
    complement: int | None = None


def _threshold(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(float(value), 6)


def rule_candidates(spec: F.FeatureSpec, X: np.ndarray) -> list[Candidate]:
    """Engine-expressible 0/1 rules over the training leads `X` (encoded): per number,
    `gte`/`lte` pairs at its deciles and, when at least ZERO_HEAVY_SHARE of the leads sit at
    its lowest value (zeros, mostly), `> lowest` (so a signal carried by the few non-zero
    values is found; its 75th percentile would be the lowest value itself); per category
    value seen on MIN_SUPPORT leads, `eq`/`neq`; per event type, at least one event in 30
    days; inactivity of 7 and 30 days."""
    n = X.shape[0]
    support = max(MIN_SUPPORT, math.ceil(0.01 * n))
    out: list[Candidate] = []
    seen: set[bytes] = set()  # the same leads fire ("= false" and "≠ true"): one candidate

    def useful(fires: np.ndarray) -> bool:
        hits = int(fires.sum())
        if not support <= hits <= n - support:
            return False
        key = np.packbits(fires).tobytes()
        if key in seen:
            return False
        seen.add(key)
        return True

    def add_pair(first: Candidate, second: Candidate | None) -> None:
        if not useful(first.fires):
            return
        if second is not None and useful(second.fires):
            i = len(out)
            out.append(replace(first, complement=i + 1))
            out.append(replace(second, complement=i))
        else:
            out.append(first)

    for j, feature in enumerate(spec.numeric):
        column = X[:, j]
        finite = np.isfinite(column)
        values = column[finite]
        if np.unique(values).size < 2:
            continue
        low = float(values.min())
        cuts: list[tuple[float, str]] = []
        above = values[values > low]
        if np.mean(values == low) >= ZERO_HEAVY_SHARE and above.size:
            # "> lowest": half way to the next value, so any value above the lowest fires.
            cut = low + (float(above.min()) - low) / 2.0
            cuts.append((cut, f"> {_threshold(low)}"))
        for q in np.unique(np.quantile(values, QUANTILES, method="lower")):
            if q > low and all(abs(q - c) > 1e-12 for c, _ in cuts):
                cuts.append((float(q), f"≥ {_threshold(q)}"))
        for cut, text in cuts:
            below = values[values < cut]
            if below.size == 0:
                continue
            prev = float(below.max())
            gte = Candidate(
                {"kind": "attribute", "field": feature.name, "op": "gte", "value": _threshold(cut)},
                f"{feature.name} {text}",
                finite & (column >= cut),
            )
            lte = Candidate(
                {
                    "kind": "attribute",
                    "field": feature.name,
                    "op": "lte",
                    "value": _threshold(prev),
                },
                f"{feature.name} ≤ {_threshold(prev)}",
                finite & (column <= prev),
            )
            add_pair(gte, lte)
    p_num = len(spec.numeric_names)
    for c, feature in enumerate(spec.categorical):
        if feature.source == "derived" and feature.key != "email_domain_type":
            continue
        codes = X[:, p_num + c].astype(np.int64)
        for code in range(2, len(feature.vocabulary) + 2):
            value = F.category_label(feature, code)
            eq = Candidate(
                {"kind": "attribute", "field": feature.name, "op": "eq", "value": value},
                f"{feature.name} = {value}",
                codes == code,
            )
            neq = Candidate(
                {"kind": "attribute", "field": feature.name, "op": "neq", "value": value},
                f"{feature.name} ≠ {value}",
                (codes != code) & (codes != F.MISSING_CODE),
            )
            add_pair(eq, neq)
    names = spec.names
    for event_type in spec.event_types:
        column = f"events.{event_type}.count_30d"
        if column not in names:
            continue
        fires = X[:, names.index(column)] > 0
        add_pair(
            Candidate(
                {"kind": "event", "event_type": event_type, "window_days": 30},
                f"{event_type} in the last 30 days",
                fires,
            ),
            None,
        )
    if "days_since_last_activity" in names:
        days = X[:, names.index("days_since_last_activity")]
        for threshold in (7, 30):
            add_pair(
                Candidate(
                    {"kind": "inactivity", "days": threshold},
                    f"no activity for {threshold} days",
                    days >= threshold,
                ),
                None,
            )
    return out


def learn_rules(
    candidates: list[Candidate],
    y: np.ndarray,
    *,
    max_rules: int = DEFAULT_MAX_RULES,
    span: float = 100.0,
) -> list[dict[str, Any]]:
    """At most `max_rules` rules with positive points, fitted to the outcome `y` of the
    training leads by a logistic regression whose weights are kept non-negative (a rule and
    its complement are both candidates, so a negative effect becomes points for the other
    leads): every point is earned and no lead is pushed below the floor, which is the base.
    An L1 penalty, lowered step by step until `max_rules` rules carry weight, picks them (the
    largest standardised weights); a refit weighs them. Points are the weights scaled so the
    99th percentile of the training leads' totals is 90 % of `span`, spreading the leads over
    the bands."""
    if not candidates or y.min() == y.max():
        return []
    matrix = np.column_stack([c.fires for c in candidates]).astype(np.float64)
    y = np.asarray(y, dtype=np.float64)
    std = matrix.std(axis=0)
    standard = (matrix - matrix.mean(axis=0)) / np.where(std > 0, std, 1.0)
    selected: list[int] = []
    for penalty in np.logspace(-1, -4, 13):
        weights, _ = _non_negative_logistic(standard, y, l1=float(penalty))
        chosen = np.flatnonzero(weights > 1e-6)
        selected = chosen[np.argsort(-weights[chosen])][:max_rules].tolist()
        if chosen.size >= max_rules:
            break
    if not selected:
        return []
    weights, _ = _non_negative_logistic(matrix[:, selected], y, l1=0.0)
    kept = [(k, w) for k, w in zip(selected, weights, strict=True) if w > 1e-6]
    if not kept:
        return []
    totals = matrix[:, [k for k, _ in kept]] @ np.array([w for _, w in kept])
    scale = 0.9 * span / max(float(np.percentile(totals, 99)), 1e-9)
    rules = []
    for k, weight in sorted(kept, key=lambda kw: -kw[1]):
        points = max(1, round(float(weight) * scale))
        rule = {**candidates[k].rule, "points": points, "name": f"ML: {candidates[k].label}"}
        if rule["kind"] == "event":
            rule["cap"] = points  # at least one event in the window: the points once
        rules.append(rule)
    return rules


def _non_negative_logistic(
    X: np.ndarray, y: np.ndarray, *, l1: float, l2: float = 1e-4
) -> tuple[np.ndarray, float]:
    """(weights >= 0, intercept) minimising the mean log-loss + l1 * sum(w) + l2 * sum(w^2)
    (L-BFGS-B with bounds; for w >= 0 the L1 term is linear, so the objective stays smooth)."""
    from scipy.optimize import minimize

    n, k = X.shape

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:k], theta[k]
        z = X @ w + b
        p = 1.0 / (1.0 + np.exp(-z))
        loss = float(np.mean(np.logaddexp(0.0, z) - y * z)) + l1 * w.sum() + l2 * (w @ w)
        residual = (p - y) / n
        grad = np.concatenate([X.T @ residual + l1 + 2 * l2 * w, [residual.sum()]])
        return loss, grad

    rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    start = np.concatenate([np.zeros(k), [np.log(rate / (1 - rate))]])
    bounds = [(0.0, None)] * k + [(None, None)]
    result = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=bounds)
    return result.x[:k], float(result.x[k])


def _draft_document(
    rules: Any, rows: list[dict[str, Any]], proposals: list[dict[str, Any]]
) -> dict[str, Any]:
    from scoring.engine import ruleset_to_document

    if rules is not None:
        document = ruleset_to_document(rules.spec)
        document["name"] = f"{rules.spec.name}: ML suggested rules"
        document["model_weight"] = rules.model_weight
        document["rules"] = []
    else:
        document = {
            "name": "ML suggested rules",
            "floor": 0,
            "ceiling": 100,
            "bands": DEFAULT_BANDS,
        }
        document["rules"] = []
    document["rules"] = list(document["rules"]) + [dict(rule) for rule in proposals]
    return document


def apply_suggestion(row: Any, *, user: Any = None) -> Any:
    """Store the logistic model's suggested rule set as a new draft (never published).
    Raises ValueError when the model has no suggestion, RuleSetInvalid when it does not
    validate (e.g. the live rule set changed shape since)."""
    from scoring.models import RuleSet
    from scoring.services.rulesets import ruleset_import

    suggestion = (row.details or {}).get("suggestion")
    if not suggestion:
        raise ValueError(f"Model #{row.pk} has no suggested weights (only logistic models do).")
    based_on = None
    if suggestion.get("based_on_version") is not None:
        based_on = RuleSet.objects.filter(version=suggestion["based_on_version"]).first()
    return ruleset_import(suggestion["document"], user=user, based_on=based_on)
