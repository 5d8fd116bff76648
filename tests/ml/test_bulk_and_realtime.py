"""Serving at scale without train/serve skew: the bulk reader (events in one pass, a subset of
leads, chunks), the single-lead reader and the real-time rescore all give the same features and
probabilities; training can be limited to the most recent leads."""

import io
import json

import numpy as np
import pytest
from django.core.management import call_command
from django.utils import timezone

from scoring.ml import feature_frame as F
from scoring.ml import registry
from scoring.ml import scoring as ml_scoring
from scoring.ml.labels import build_labels
from scoring.ml.training import BOOSTING, LOGISTIC, train_models
from scoring.models import Lead, LeadProbability
from scoring.services.rescore import rescore_leads
from tests.factories import EventFactory
from tests.ml.conftest import make_dated


@pytest.fixture
def trained(db, live_rules):
    data = make_dated(900)
    report = train_models()
    return {"rows": {row.algorithm: row for row in report.rows}, "data": data}


def _frames_equal(a: F.RawFrame, b: F.RawFrame) -> None:
    assert np.array_equal(a.ids, b.ids)
    assert np.allclose(a.numeric, b.numeric, equal_nan=True, rtol=0, atol=1e-9)
    assert np.array_equal(a.categorical, b.categorical)
    assert np.array_equal(a.persona, b.persona)


def test_bulk_chunked_subset_and_single_lead_reads_give_the_same_features(trained):
    loaded = ml_scoring.load(trained["rows"][BOOSTING])
    cutoff = trained["data"]["cutoff"]
    ids = np.asarray(sorted(Lead.objects.values_list("id", flat=True)))
    # The training read (a subset of leads, events in one pass, small chunks) ...
    subset = ids[::3]
    bulk = F.RawFrame.concat(list(F.iter_frames(loaded.spec, cutoff, 101, ids=subset)), loaded.spec)
    # ... equals the serving reads: one lead at a time, and one id range with its own query.
    single = F.RawFrame.concat(
        [F.read_frame(loaded.spec, cutoff, int(i), int(i)) for i in subset[:40]], loaded.spec
    )
    _frames_equal(bulk.take(np.arange(40)), single)
    ranged = F.read_frame(loaded.spec, cutoff, int(ids[0]), int(ids[-1]))
    _frames_equal(bulk, ranged.take(np.isin(ranged.ids, subset)))
    # The events really are in the features (not all zeros).
    names = loaded.spec.numeric_names
    column = names.index("events.pricing_page_visit.count_30d")
    assert bulk.numeric[:, column].sum() > 0


def test_events_and_ids_outside_the_selection_never_leak_into_a_chunk(trained):
    loaded = ml_scoring.load(trained["rows"][LOGISTIC])
    now = timezone.now()
    ids = sorted(Lead.objects.values_list("id", flat=True))
    before = F.read_frame(loaded.spec, now, ids[0], ids[0])
    EventFactory(lead_id=ids[1], event_type="pricing_page_visit", occurred_at=now)
    after = F.read_frame(loaded.spec, now, ids[0], ids[0])
    _frames_equal(before, after)


def test_bulk_probabilities_equal_the_per_lead_ones(trained):
    for algorithm in (BOOSTING, LOGISTIC):
        row = registry.activate(trained["rows"][algorithm])
        assert ml_scoring.score_all(chunk_size=250) == Lead.objects.count()
        stored = dict(LeadProbability.objects.values_list("lead_id", "probability"))
        loaded = ml_scoring.load(row)
        now = timezone.now()
        for lead_id in list(stored)[:: max(1, len(stored) // 25)]:
            frame = F.read_frame(loaded.spec, now, lead_id, lead_id)
            assert stored[lead_id] == pytest.approx(float(loaded.predict(frame)[0]), abs=1e-9)


def test_the_real_time_rescore_refreshes_the_active_models_probability(trained):
    row = registry.activate(trained["rows"][LOGISTIC])
    lead = Lead.objects.order_by("id").first()
    LeadProbability.objects.filter(lead=lead).delete()
    for _ in range(5):
        EventFactory(lead=lead, event_type="pricing_page_visit", occurred_at=timezone.now())
    # One moment for both sides: features with a time boundary (a window, a capped age) may
    # differ between two reads a few milliseconds apart.
    now = timezone.now()
    rescore_leads([lead.pk], as_of=now)
    lead.refresh_from_db()
    loaded = ml_scoring.load(row)
    frame = F.read_frame(loaded.spec, now, lead.pk, lead.pk)
    assert lead.model_probability == pytest.approx(float(loaded.predict(frame)[0]), abs=1e-6)


def test_without_an_active_model_the_real_time_path_writes_no_probability(trained):
    lead = Lead.objects.order_by("id").first()
    assert ml_scoring.refresh_lead_probabilities([lead.pk]) == 0
    rescore_leads([lead.pk])
    lead.refresh_from_db()
    assert lead.model_probability is None


def test_training_can_be_limited_to_the_most_recent_leads(db, live_rules):
    make_dated(1200)
    labels = build_labels()
    report = train_models(max_leads=600)
    assert report.n_train + report.n_test == 600
    assert report.population == labels.n
    newest = np.sort(labels.created_epoch)[-600]
    row = report.rows[0]
    assert row.train_start.timestamp() >= newest - 1e-3
    assert row.details["population"] == labels.n


def test_the_command_takes_max_leads(db, live_rules):
    make_dated(1000)
    out = io.StringIO()
    call_command("train_model", "--json", "--max-leads", "700", stdout=out)
    result = json.loads(out.getvalue())
    assert result["n_train"] + result["n_test"] == 700
