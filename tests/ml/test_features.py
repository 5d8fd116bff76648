"""The feature frame: as of a cut-off, never forbidden or leaking columns, categories coded."""

import datetime as dt
import json

import numpy as np
from django.utils import timezone

from scoring.ml import features as F
from tests.factories import EventFactory, LeadFactory
from tests.ml.conftest import make_dateless


def test_events_after_the_cutoff_never_count(db):
    cutoff = timezone.now() - dt.timedelta(days=10)
    lead = LeadFactory(created_at=cutoff - dt.timedelta(days=100))
    for days in (1, 5, 20, 60, 200):  # before the cut-off
        EventFactory(
            lead=lead, event_type="pricing_page_visit", occurred_at=cutoff - dt.timedelta(days=days)
        )
    for days in (1, 3):  # after it
        EventFactory(
            lead=lead, event_type="pricing_page_visit", occurred_at=cutoff + dt.timedelta(days=days)
        )
    EventFactory(lead=lead, event_type="demo_request", occurred_at=cutoff + dt.timedelta(days=2))

    spec = F.discover_spec(cutoff)
    assert spec.event_types == ("pricing_page_visit",)  # demo_request only happened later
    frame = F.read_frame(spec, cutoff, lead.pk, lead.pk)
    values = dict(zip(spec.numeric_names, frame.numeric[0], strict=True))
    assert values["events.pricing_page_visit.count_7d"] == 2
    assert values["events.pricing_page_visit.count_30d"] == 3
    assert values["events.pricing_page_visit.count_90d"] == 4
    expected = sum(0.5 ** (d / 15) for d in (1, 5, 20))
    assert abs(values["events.pricing_page_visit.decayed_30d"] - expected) < 1e-3
    assert abs(values["events.pricing_page_visit.days_since_last"] - 1) < 1e-3
    assert abs(values["days_since_last_activity"] - 1) < 1e-3
    assert abs(values["lead_age_days"] - 100) < 1e-3


def test_a_lead_without_events_reads_days_since_creation(db):
    cutoff = timezone.now()
    active = LeadFactory(created_at=cutoff - dt.timedelta(days=50))
    EventFactory(lead=active, event_type="page_view", occurred_at=cutoff - dt.timedelta(days=2))
    quiet = LeadFactory(created_at=cutoff - dt.timedelta(days=30))
    spec = F.discover_spec(cutoff)
    frame = F.read_frame(spec, cutoff, quiet.pk, quiet.pk)
    values = dict(zip(spec.numeric_names, frame.numeric[0], strict=True))
    assert values["events.page_view.count_90d"] == 0
    assert abs(values["days_since_last_activity"] - 30) < 1e-3


def test_forbidden_columns_and_mapping_leakage_are_never_features(db, no_mappings):
    (no_mappings / "crm.json").write_text(
        json.dumps(
            {
                "label": {"column": "Converted"},
                "leakage": ["Tags", "Lead Quality"],
                "doubtful": ["City"],
            }
        )
    )
    make_dateless(300)
    spec = F.discover_spec(timezone.now())
    names = set(spec.names)
    for forbidden in (
        "lifecycle_stage",
        "owner",
        "score",
        "band",
        "model_probability",
        "revenue",
        "converted_at",
        "email",
        "company",
    ):
        assert forbidden not in names
    assert "attributes.Tags" not in names
    assert "attributes.Lead Quality" not in names
    assert "attributes.City" not in names  # doubtful: left out unless opted in
    assert "attributes.Lead Number" not in names  # an identifier
    assert "attributes.Lead Origin" in names
    assert "attributes.Total Time Spent on Website" in names
    assert "attributes.City" in F.discover_spec(timezone.now(), include_doubtful=True).names


def test_an_explicit_exclude_list_is_honoured(db, no_mappings):
    make_dateless(200)
    spec = F.discover_spec(timezone.now(), exclude=["Tags", "attributes.Lead Origin"])
    assert "attributes.Tags" not in spec.names
    assert "attributes.Lead Origin" not in spec.names


def test_the_shipped_mapping_leakage_columns_are_excluded():
    excluded = F.excluded_keys()
    for column in ("Tags", "Lead Quality", "Asymmetrique Activity Score", "Lead Profile"):
        assert F.normalise_key(column) in excluded


def test_categories_group_rare_values_and_keep_missing_apart(db, no_mappings):
    make_dateless(300)
    spec = F.discover_spec(timezone.now())
    frame = F.RawFrame.concat([F.read_frame(spec, timezone.now(), 0, 10**9)], spec)
    fitted = F.fit_spec(spec, frame, min_count=20)
    frame = F.project(frame, spec, fitted)
    source = next(f for f in fitted.categorical if f.name == "source")
    # "Google" and "google" are one value; every source here is common.
    assert "google" in source.vocabulary and "Google" not in source.vocabulary
    city = next(f for f in fitted.categorical if f.name == "attributes.City")
    assert "select" not in city.vocabulary  # "Select" means not filled in
    X = F.encode(fitted, frame)
    j = fitted.names.index("attributes.City")
    raw_city = frame.categorical[:, [f.name for f in fitted.categorical].index("attributes.City")]
    assert set(X[raw_city == F.MISSING, j]) == {F.MISSING_CODE}
    unseen = frame.take(np.arange(1))
    unseen.categorical[0, [f.name for f in fitted.categorical].index("source")] = "never seen"
    assert F.encode(fitted, unseen)[0, fitted.names.index("source")] == F.OTHER_CODE
