"""Serving: bulk probabilities of the active model, explanations, suggested weights."""

import numpy as np
import pytest
from django.utils import timezone

from scoring.engine import parse_ruleset
from scoring.ml import feature_frame as F
from scoring.ml import registry
from scoring.ml import scoring as ml_scoring
from scoring.ml.explain import _perturbation_effects, explain_frame, explain_lead
from scoring.ml.suggest import apply_suggestion
from scoring.ml.training import BOOSTING, LOGISTIC, inner_pipeline, train_models
from scoring.models import Lead, LeadProbability, MLModel, RuleSet
from tests.ml.conftest import make_dated


@pytest.fixture
def trained(db, live_rules):
    make_dated(1000)
    report = train_models()
    return {row.algorithm: row for row in report.rows}


def test_bulk_scoring_stores_the_active_models_probability_on_every_lead(trained):
    row = registry.activate(trained[BOOSTING])
    written = ml_scoring.score_all(chunk_size=300)
    assert written == Lead.objects.count()
    stored = dict(LeadProbability.objects.values_list("lead_id", "probability"))
    assert all(p is not None and 0 <= p <= 1 for p in stored.values())
    loaded = ml_scoring.load(row)
    frame = F.read_frame(loaded.spec, timezone.now(), 0, 10**9)
    expected = loaded.predict(frame)
    got = np.array([stored[i] for i in frame.ids.tolist()])
    assert np.allclose(got, expected, atol=1e-9)


def test_with_no_active_model_probabilities_are_cleared(trained):
    registry.activate(trained[LOGISTIC])
    ml_scoring.score_all()
    registry.deactivate()
    assert ml_scoring.score_all() == 0
    assert not LeadProbability.objects.exists()


def test_logistic_explanations_add_up_to_the_models_log_odds(trained):
    loaded = ml_scoring.load(trained[LOGISTIC])
    frame = F.read_frame(loaded.spec, timezone.now(), 0, 10**9).take(np.arange(20))
    pipeline = inner_pipeline(loaded.estimator)
    logits = pipeline.decision_function(F.encode(loaded.spec, frame))
    for explanation, logit in zip(explain_frame(loaded, frame), logits, strict=True):
        total = sum(explanation.contributions.values()) + explanation.intercept
        assert total == pytest.approx(logit, abs=1e-6)
        assert len(explanation.up) <= 3 and len(explanation.down) <= 3
        assert all(v > 0 for _, v in explanation.up) and all(v < 0 for _, v in explanation.down)


def test_gradient_boosting_explanations_name_the_features_that_move_the_probability(trained):
    registry.activate(trained[BOOSTING])
    lead = Lead.objects.order_by("id").first()
    explanation = explain_lead(lead.pk)
    assert explanation.algorithm == BOOSTING and explanation.unit == "probability"
    assert 0 <= explanation.probability <= 1
    for label, value in explanation.up + explanation.down:
        assert " = " in label or "missing" in label
        assert -1 <= value <= 1


def test_gradient_boosting_effects_are_each_feature_made_typical_alone(trained):
    # The batched perturbation against its definition: one feature at a time set to its
    # reference value, the probability's change.
    loaded = ml_scoring.load(trained[BOOSTING])
    frame = F.read_frame(loaded.spec, timezone.now(), 0, 10**9).take(np.arange(7))
    X = F.encode(loaded.spec, frame)
    p = loaded.estimator.predict_proba(X)[:, 1]
    expected = np.zeros(X.shape)
    for j, reference in enumerate(loaded.reference):
        changed = X.copy()
        changed[:, j] = np.nan if reference is None else reference
        expected[:, j] = p - loaded.estimator.predict_proba(changed)[:, 1]
    assert np.count_nonzero(expected) > 0
    assert np.allclose(_perturbation_effects(loaded, X, p), expected, atol=1e-12)


def test_suggested_weights_become_a_valid_draft_rule_set(trained):
    suggestion = trained[LOGISTIC].details["suggestion"]
    assert suggestion["based_on_version"] == 1
    rows = {row["rule"]: row for row in suggestion["rules"]}
    assert len(rows) == 3
    pricing = next(r for r in suggestion["rules"] if "pricing_page_visit" in r["rule"])
    assert pricing["suggested_points"] > 0  # the model agrees pricing visits matter
    spec = parse_ruleset(suggestion["document"])
    assert len(spec.rules) >= 3
    draft = apply_suggestion(trained[LOGISTIC])
    assert draft.status == RuleSet.Status.DRAFT
    assert RuleSet.objects.filter(status=RuleSet.Status.PUBLISHED).count() == 1
    with pytest.raises(ValueError, match="no suggested weights"):
        apply_suggestion(MLModel.objects.get(algorithm=BOOSTING))
