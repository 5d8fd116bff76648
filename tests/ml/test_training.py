"""Training end to end on synthetic leads with a known signal: both pipelines learn it, the
evaluation is on test leads beside the live rules, leakage columns are left out."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from scoring.ml import metrics as M
from scoring.ml.training import BOOSTING, LOGISTIC, train_models
from scoring.models import MLModel
from tests.ml.conftest import make_dated, make_dateless


def test_both_pipelines_learn_a_real_signal_on_a_time_split(db, live_rules):
    data = make_dated(1500)
    report = train_models(cutoff=data["cutoff"])
    assert report.split == "time"
    assert report.n_train == 1050 and report.n_test == 450
    by_name = {m["name"]: m for m in report.models}
    assert set(by_name) == {LOGISTIC, BOOSTING}
    for model in by_name.values():
        assert model["roc_auc"] > 0.7, model
        assert 0 <= model["brier"] < 0.25 and 0 <= model["ece"] < 0.2
        assert model["lift_top_decile"] > 1.5
    assert report.rules_roc_auc is not None and report.rules_roc_auc > 0.6
    # Events recorded after the cut-off (a demo request burst by every converter) are unseen.
    assert not any(name.startswith("events.demo_request") for name in report.features)
    row = MLModel.objects.get(algorithm=LOGISTIC)
    assert row.status == MLModel.Status.DONE and row.split == "time"
    assert row.train_end <= row.cutoff
    assert row.metrics["per_persona"][0]["n"] == report.n_test
    assert row.metrics["calibration_curve"] and row.artifact_sha256


def test_a_leakage_column_equal_to_the_label_is_not_used_and_auc_stays_honest(db):
    # The shipped mapping names Tags and Lead Quality as leakage.
    make_dateless(1200)
    report = train_models()
    assert report.split == "stratified"
    assert "attributes.Tags" not in report.features
    assert "attributes.Lead Quality" not in report.features
    for model in report.models:
        assert 0.6 < model["roc_auc"] < 0.95, model


def test_without_the_exclusion_the_same_data_would_score_a_perfect_auc(db, no_mappings):
    """The control for the test above: the leak is real, so excluding it is what keeps the
    evaluation honest."""
    make_dateless(600)
    report = train_models(allow=["Tags", "Lead Quality"])  # past the data-driven guard too
    assert "attributes.Tags" in report.features
    assert max(m["roc_auc"] for m in report.models) > 0.99
    assert MLModel.objects.filter(details__allowed=["Tags", "Lead Quality"]).count() == 2


def test_the_leakage_guard_drops_a_column_no_mapping_names_and_says_why(db, no_mappings):
    make_dateless(600)
    report = train_models()
    assert "attributes.Tags" not in report.features
    reasons = {item["feature"]: item["reason"] for item in report.as_json()["excluded"]}
    assert "probable leakage" in reasons["attributes.Tags"]
    assert "--allow attributes.Tags" in reasons["attributes.Tags"]
    for model in report.models:
        assert 0.6 < model["roc_auc"] < 0.95, model


def test_a_failed_run_is_recorded_on_its_rows(db):
    with pytest.raises(Exception, match="no leads"):
        train_models()
    assert set(MLModel.objects.values_list("status", flat=True)) == {MLModel.Status.FAILED}


def test_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(3)
    y = (rng.random(500) < 0.3).astype(int)
    p = np.clip(0.3 + 0.3 * (y - 0.3) + rng.normal(0, 0.2, 500), 0, 1)
    got = M.probability_metrics(y, p)
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-6)
    assert got["pr_auc"] == pytest.approx(average_precision_score(y, p), abs=1e-6)
    assert got["brier"] == pytest.approx(brier_score_loss(y, p), abs=1e-6)
    top = np.argsort(-p, kind="stable")[:50]
    assert got["lift_top_decile"] == pytest.approx(y[top].mean() / y.mean(), abs=1e-6)
    bins = np.minimum((p * 10).astype(int), 9)
    ece = sum(
        (bins == b).mean() * abs(p[bins == b].mean() - y[bins == b].mean())
        for b in range(10)
        if (bins == b).any()
    )
    assert got["ece"] == pytest.approx(ece, abs=1e-6)
    curve = M.calibration_curve(y, p)
    assert sum(point["n"] for point in curve) == 500
    assert M.roc_auc(np.ones(5), np.arange(5)) is None
