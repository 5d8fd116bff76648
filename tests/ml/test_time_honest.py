"""Training that holds up on a customer's own data: on a time-drifted funnel with a planted
leak the models match a plain scikit-learn baseline fitted on the same split, the leak and the
date-like attribute are left out with their reasons, historical data trains without flags,
and the final model keeps all the training leads."""

import datetime as dt
import io
import json

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from scoring.ml import feature_frame as F
from scoring.ml import registry
from scoring.ml.labels import LabelError, build_labels
from scoring.ml.training import BOOSTING, LOGISTIC, choose_split, inner_pipeline, train_models
from scoring.models import Lead, LeadProbability, MLModel
from tests.factories import EventFactory, LeadFactory
from tests.ml.funnel import baseline_test_auc, make_drifted_funnel


def test_a_time_split_matches_a_plain_baseline_and_drops_the_leak_and_the_date(db, no_mappings):
    data = make_drifted_funnel(3000)
    report = train_models()
    assert report.split == "time"
    labels = build_labels(cutoff=report.cutoff)
    split = choose_split(labels)
    baseline = baseline_test_auc(data, labels.ids, labels.y, split)
    by_name = {m["name"]: m for m in report.models}
    assert by_name[LOGISTIC]["roc_auc"] >= baseline - 0.02, (by_name, baseline)
    assert max(m["roc_auc"] for m in report.models) >= baseline - 0.02
    reasons = {item["feature"]: item["reason"] for item in report.as_json()["excluded"]}
    assert "probable leakage" in reasons["attributes.Call Duration"]
    assert "depends on when the split was cut" in reasons["attributes.Days Since Launch"]
    assert "attributes.Call Duration" not in report.features
    assert "attributes.Days Since Launch" not in report.features
    # The control: the leak, kept on purpose, would make the evaluation look far better.
    assert max(m["roc_auc"] for m in report.models) < 0.95


def test_the_leak_kept_with_allow_is_recorded_on_the_rows(db, no_mappings):
    make_drifted_funnel(1200)
    report = train_models(allow=["Call Duration"])
    assert "attributes.Call Duration" in report.features
    assert max(m["roc_auc"] for m in report.models) > 0.95
    for row in MLModel.objects.all():
        assert row.details["allowed"] == ["Call Duration"]


def test_historical_data_trains_without_flags_at_a_cutoff_from_the_data(db, no_mappings):
    make_drifted_funnel(1500, dated=True)
    last_time = max(
        max(lead.converted_at or lead.created_at, lead.created_at) for lead in Lead.objects.all()
    )
    report = train_models()
    # The data's last time, rounded up to a whole second, minus the horizon.
    whole = last_time.replace(microsecond=0) + dt.timedelta(seconds=bool(last_time.microsecond))
    assert report.cutoff == whole - dt.timedelta(days=90)
    result = report.as_json()
    assert result["cutoff"] == report.cutoff.isoformat()
    assert result["excluded"] and {"feature", "reason"} == set(result["excluded"][0])
    for model in result["models"]:
        assert {"roc_auc", "pr_auc", "brier", "calibration"} <= set(model)


def test_an_error_a_flag_can_fix_names_the_flag(db):
    LeadFactory(created_at=dt.datetime(2018, 1, 1, tzinfo=dt.UTC))
    LeadFactory(
        created_at=dt.datetime(2018, 1, 2, tzinfo=dt.UTC),
        lifecycle_stage="customer",
        converted_at=dt.datetime(2018, 1, 20, tzinfo=dt.UTC),
    )
    with pytest.raises(LabelError, match="--cutoff") as error:
        build_labels(cutoff=dt.datetime(2018, 6, 1, tzinfo=dt.UTC))
    assert "2018-01-01 to 2018-01-20" in str(error.value)


def test_every_feature_can_be_excluded(db):
    cutoff = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    lead = LeadFactory(created_at=cutoff - dt.timedelta(days=20), attributes={"Score X": 3})
    EventFactory(lead=lead, event_type="page_view", occurred_at=cutoff - dt.timedelta(days=1))
    EventFactory(lead=lead, event_type="webinar", occurred_at=cutoff - dt.timedelta(days=2))
    names = F.discover_spec(cutoff).names
    assert {"lead_age_days", "days_since_last_activity", "persona", "industry"} <= set(names)
    spec = F.discover_spec(
        cutoff,
        exclude=[
            "lead_age_days",
            "days_since_last_activity",
            "persona",
            "industry",
            "events.webinar",
            "events.page_view.count_7d",
            "Score X",
        ],
    )
    left = set(spec.names)
    for gone in ("lead_age_days", "days_since_last_activity", "persona", "industry"):
        assert gone not in left
    assert not any(name.startswith("events.webinar") for name in left)
    assert "events.page_view.count_7d" not in left and "events.page_view.count_30d" in left
    assert "attributes.Score X" not in left
    assert all(reason == "excluded by --exclude" for _, reason in spec.exclusions)
    # The columns left out are still computed and dropped: the rest keep their values.
    frame = F.read_frame(spec, cutoff, lead.pk, lead.pk)
    values = dict(zip(spec.numeric_names, frame.numeric[0], strict=True))
    assert values["events.page_view.count_30d"] == 1
    reader = F.MatrixReader(F.fit_vocabularies(spec, frame, 1))
    _, matrix = reader.read(cutoff, lead.pk, lead.pk)
    assert np.array_equal(matrix, F.encode(reader.spec, frame))


def test_the_final_model_is_fitted_on_every_training_lead(db, no_mappings):
    make_drifted_funnel(1200)
    report = train_models()
    for row in MLModel.objects.all():
        pipeline = inner_pipeline(registry.load_estimator(row))
        if row.algorithm == LOGISTIC:
            scaler = pipeline.named_steps["prepare"].named_transformers_["num"]["scale"]
            assert scaler.n_samples_seen_ == report.n_train
        model = next(m for m in report.models if m["name"] == row.algorithm)
        assert f"final model fitted on all {report.n_train} training leads" in model["calibration"]
        assert "time order" in model["calibration"]
    assert {m["name"] for m in report.models} == {LOGISTIC, BOOSTING}


def test_scoring_as_of_the_models_cutoff_needs_no_published_rule_set(db, no_mappings):
    make_drifted_funnel(900)
    report = train_models()
    registry.activate(report.rows[0])
    out = io.StringIO()
    call_command("rescore", "--all", "--as-of", "cutoff", stdout=out)
    summary = json.loads(out.getvalue())
    assert summary["rule_set_version"] is None
    assert summary["as_of"] == report.cutoff.isoformat()
    assert summary["probabilities"] == Lead.objects.count() == LeadProbability.objects.count()


def test_as_of_cutoff_without_an_active_model_names_the_fix(db):
    with pytest.raises(CommandError, match="train_model --activate"):
        call_command("rescore", "--all", "--as-of", "cutoff")
