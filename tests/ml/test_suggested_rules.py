"""Suggested rules that work: thresholds that split the data (a zero-heavy number at "> 0"),
positive points that spread leads over the bands, at most --max-rules rules, and a draft whose
test ROC AUC, scored by the engine, is within 0.05 of the logistic regression's."""

import io
import json

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from scoring.engine import parse_ruleset
from scoring.ml import feature_frame as F
from scoring.ml.suggest import learn_rules, rule_candidates
from scoring.ml.training import LOGISTIC, train_models
from scoring.models import MLModel
from tests.ml.funnel import make_drifted_funnel


def _spec(*numeric: str, categorical: tuple[F.CategoricalFeature, ...] = ()) -> F.FeatureSpec:
    return F.FeatureSpec(
        numeric=tuple(F.NumericFeature(f"attributes.{k}", "attribute", k) for k in numeric),
        categorical=categorical,
        event_types=(),
        age_cap_days=90.0,
        dropped=tuple(F.FeatureSpec((), (), (), age_cap_days=90.0).all_behaviour_names),
    )


def test_a_zero_heavy_signal_is_split_at_zero_and_found():
    rng = np.random.default_rng(5)
    n = 4000
    # Three quarters zero: its 75th percentile is 0, yet the non-zero values carry the signal.
    page_values = np.where(rng.random(n) < 0.75, 0.0, rng.gamma(2.0, 20.0, n))
    noise = rng.normal(0, 1, n)
    y = (rng.random(n) < np.where(page_values > 0, 0.6, 0.08)).astype(int)
    spec = _spec("PageValues", "Noise")
    X = np.column_stack([page_values, noise])
    candidates = rule_candidates(spec, X)
    labels = [c.label for c in candidates]
    assert "attributes.PageValues > 0" in labels
    rules = learn_rules(candidates, y, max_rules=3)
    assert rules[0]["name"] == "ML: attributes.PageValues > 0"
    assert rules[0]["op"] == "gte" and 0 < rules[0]["value"] <= page_values[page_values > 0].min()
    assert all(rule["points"] > 0 for rule in rules)
    assert len(rules) <= 3


def test_rules_stay_within_max_rules_and_spread_over_the_bands():
    rng = np.random.default_rng(6)
    n = 5000
    X = rng.normal(0, 1, (n, 6))
    y = (
        rng.random(n) < 1 / (1 + np.exp(-(X @ np.array([1.2, -0.9, 0.7, 0.5, -0.4, 0.3]))))
    ).astype(int)
    spec = _spec(*(f"x{i}" for i in range(6)))
    candidates = rule_candidates(spec, X)
    for limit in (1, 4, 12):
        rules = learn_rules(candidates, y, max_rules=limit)
        assert 1 <= len(rules) <= limit
    parse_ruleset({"name": "draft", "rules": rules})  # the engine accepts every rule
    fired = {c.label: c.fires for c in candidates}
    totals = sum(r["points"] * fired[r["name"].removeprefix("ML: ")] for r in rules)
    # Negative effects became points for the other leads: no lead is pushed below the floor.
    assert any(r["op"] == "lte" for r in rules)
    bands = np.digitize(np.clip(totals, 0, 100), [25, 50, 80])
    shares = np.bincount(bands, minlength=4) / n
    assert (shares >= 0.05).sum() >= 3, shares


@pytest.fixture
def funnel_model(db, no_mappings):
    make_drifted_funnel(3000)
    train_models()
    return MLModel.objects.get(algorithm=LOGISTIC)


def test_the_draft_is_within_005_of_the_logistic_regression_on_the_same_test_leads(
    funnel_model, client_as
):
    suggestion = funnel_model.details["suggestion"]
    assert suggestion["model_test_roc_auc"] == funnel_model.metrics["overall"]["roc_auc"]
    assert suggestion["test_roc_auc"] >= suggestion["model_test_roc_auc"] - 0.05, suggestion
    assert 1 <= len(suggestion["document"]["rules"]) <= 12
    body = client_as("manager").get("/models/").content.decode()
    assert 'data-testid="suggestion-auc"' in body
    assert f"{suggestion['test_roc_auc']:.3f}" in body
    assert f"{suggestion['model_test_roc_auc']:.3f}" in body


def test_suggest_weights_json_recomputes_with_max_rules(funnel_model):
    out = io.StringIO()
    call_command("suggest_weights", "--json", "--max-rules", "4", stdout=out)
    result = json.loads(out.getvalue())
    assert set(result) == {"rules", "test_roc_auc", "model_test_roc_auc", "model"}
    assert 1 <= len(result["rules"]) <= 4 and result["model"] == funnel_model.pk
    assert result["model_test_roc_auc"] == funnel_model.metrics["overall"]["roc_auc"]
    assert 0.6 < result["test_roc_auc"] <= 1
    funnel_model.refresh_from_db()
    assert funnel_model.details["suggestion"]["document"]["rules"] == result["rules"]


def test_suggest_weights_without_a_model_says_what_to_run(db):
    with pytest.raises(CommandError, match="run train_model first"):
        call_command("suggest_weights", "--json")
