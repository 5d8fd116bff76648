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

**New rules** (at most `MAX_NEW_RULES`, strongest first, |points| >= 2): a category value
(`field eq value`, effect = its coefficient minus the mean coefficient of the other values of
the feature, weighted by frequency), a number at or above its training 75th percentile
(`field gte q75`), or an event type no rule uses (an event rule over 30 days, half-life 15,
capped at twice the points of a typical active lead)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np

from scoring.engine import AttributeRule, EventRule, InactivityRule, parse_ruleset, rule_label
from scoring.ml import feature_frame as F

MIN_SUPPORT = 10
MAX_NEW_RULES = 5
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
) -> dict[str, Any]:
    """The suggestion stored with the logistic model: per live rule its live and suggested
    points, proposed new rules, the scale used, and the draft document (validated)."""
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

    proposals = _new_rules(estimator, spec, X_train, contributions, covered, scale, ceiling - floor)
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


def _new_rules(
    estimator: Any,
    spec: F.FeatureSpec,
    X: np.ndarray,
    contributions: np.ndarray,
    covered: set[str],
    scale: float,
    limit: float,
) -> list[dict[str, Any]]:
    from scoring.ml.training import inner_pipeline, logistic_columns

    pipeline = inner_pipeline(estimator)
    coef = pipeline.named_steps["model"].coef_[0]
    _, sources = logistic_columns(pipeline, spec)
    n = X.shape[0]
    support = max(MIN_SUPPORT, math.ceil(0.01 * n))
    p_num = len(spec.numeric_names)
    candidates: list[tuple[float, dict[str, Any]]] = []
    rule_fields = {f.name for f in spec.numeric} | {
        f.name for f in spec.categorical if f.source != "derived" or f.key == "email_domain_type"
    }
    # Categories.
    column_of = {}
    for column, source in enumerate(sources):
        if source >= p_num:
            column_of.setdefault(source, []).append(column)
    for c, feature in enumerate(spec.categorical):
        j = p_num + c
        if feature.name in covered or feature.name not in rule_fields:
            continue
        codes = X[:, j].astype(np.int64)
        counts = np.bincount(codes, minlength=len(feature.vocabulary) + 2)
        columns = column_of.get(j, [])
        weights = counts[: len(columns)]
        for code, column in enumerate(columns):
            if code < 2 or counts[code] < support:
                continue
            others = np.delete(np.arange(len(columns)), code)
            other_weight = weights[others].sum()
            if other_weight == 0:
                continue
            baseline = float((coef[columns][others] * weights[others]).sum() / other_weight)
            effect = float(coef[column] - baseline)
            points = _round_points(effect * scale, limit)
            value = F.category_label(feature, code)
            candidates.append(
                (
                    abs(points),
                    {
                        "kind": "attribute",
                        "field": feature.name,
                        "op": "eq",
                        "value": value,
                        "points": points,
                        "name": f"ML: {feature.name} = {value}",
                    },
                )
            )
    # Numbers.
    for j, feature in enumerate(spec.numeric):
        if feature.name in covered:
            continue
        column = X[:, j]
        finite = np.isfinite(column)
        if finite.sum() < 2 * support:
            continue
        q75 = float(np.percentile(column[finite], 75))
        high = finite & (column >= q75)
        if high.sum() < support or (~high).sum() < support:
            continue
        effect = float(contributions[high, j].mean() - contributions[~high, j].mean())
        points = _round_points(effect * scale, limit)
        threshold = int(q75) if q75.is_integer() else round(q75, 3)
        candidates.append(
            (
                abs(points),
                {
                    "kind": "attribute",
                    "field": feature.name,
                    "op": "gte",
                    "value": threshold,
                    "points": points,
                    "name": f"ML: {feature.name} ≥ {threshold}",
                },
            )
        )
    # Event types no rule uses.
    names = spec.names
    for event_type in spec.event_types:
        mapped = [k for k, name in enumerate(names) if name.startswith(f"events.{event_type}.")]
        if not mapped or any(names[k] in covered for k in mapped):
            continue
        count_90 = names.index(f"events.{event_type}.count_90d")
        decayed_30 = names.index(f"events.{event_type}.decayed_30d")
        active = X[:, count_90] > 0
        if active.sum() < support or (~active).sum() < support:
            continue
        summed = contributions[:, mapped].sum(axis=1)
        effect = float(summed[active].mean() - summed[~active].mean())
        per_event = max(float(X[active, decayed_30].mean()), 1.0)
        points = _round_points(effect * scale / per_event, limit)
        cap = _round_points(abs(effect * scale) * 2, limit)
        if points == 0 or cap == 0:
            continue
        candidates.append(
            (
                abs(effect * scale),
                {
                    "kind": "event",
                    "event_type": event_type,
                    "points": points,
                    "window_days": 30,
                    "half_life_days": 15,
                    "cap": abs(cap),
                    "name": f"ML: {event_type} (30 days)",
                },
            )
        )
    candidates.sort(key=lambda item: -item[0])
    return [rule for weight, rule in candidates if weight >= 2][:MAX_NEW_RULES]


def _draft_document(
    rules: Any, rows: list[dict[str, Any]], proposals: list[dict[str, Any]]
) -> dict[str, Any]:
    from scoring.engine import ruleset_to_document

    if rules is not None:
        document = ruleset_to_document(rules.spec)
        document["name"] = f"{rules.spec.name} + ML suggestions"
        document["model_weight"] = rules.model_weight
        for row in rows:
            if row["suggested_points"] is not None:
                document["rules"][row["index"]]["points"] = row["suggested_points"]
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
