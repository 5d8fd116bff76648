"""The serving path: `features.MatrixReader` builds exactly the matrix training encodes
(`encode(spec, read_frame(...))`), blocked prediction equals one whole call, and the bulk
scoring in threads (PostgreSQL, outside a transaction) stores every chunk and stops cleanly on
an error."""

import threading

import numpy as np
import pytest
from django.db import connection
from django.utils import timezone

from leadscoring.db import is_postgres
from scoring.engine import email_domain_type
from scoring.ml import feature_frame as F
from scoring.ml import registry
from scoring.ml import scoring as ml_scoring
from scoring.ml.probabilities import STAGING
from scoring.ml.training import BOOSTING, LOGISTIC, train_models
from scoring.models import Lead, LeadProbability
from tests.ml.conftest import make_dated

# Odd values the category coding must treat exactly as training does: booleans, whole floats,
# the CRM "Select" placeholder, padding and case, a JSON list, and missing.
PLAN_VALUES = [True, 7.0, "Select", " Pro ", "pro", ["a", "b"], None, "Basic", "basic", 3]
ODD_EMAILS = ["NO-AT-SIGN", " x@GMAIL.COM. ", "y@", "z@@corp1.com", "w@Example.ORG"]


def _with_odd_values() -> dict:
    data = make_dated(600)
    leads = list(Lead.objects.order_by("id"))
    for i, lead in enumerate(leads):
        value = PLAN_VALUES[i % len(PLAN_VALUES)]
        lead.attributes = {} if value is None else {"plan": value}
        if i < len(ODD_EMAILS):
            lead.email = ODD_EMAILS[i]
        if i % 7 == 0:
            lead.title = ["VP Sales", " vp sales", "", "Head of Ops"][i % 4]
    Lead.objects.bulk_update(leads, ["attributes", "email", "title"])
    return data


@pytest.fixture
def trained(db, live_rules):
    data = _with_odd_values()
    report = train_models()
    return {"rows": {row.algorithm: row for row in report.rows}, "data": data}


def _encoded(loaded, cutoff, first_id, last_id, ids=None):
    raw = F.read_frame(loaded.spec, cutoff, first_id, last_id, ids=ids)
    return raw.ids, F.encode(loaded.spec, raw)


def test_the_matrix_reader_builds_exactly_the_training_encoding(trained):
    loaded = ml_scoring.load(trained["rows"][BOOSTING])
    spec = loaded.spec
    assert "attributes.plan" in [f.name for f in spec.categorical]
    cutoff = trained["data"]["cutoff"]
    # A value first seen at serving time is "other", as in training's encoding.
    lead = Lead.objects.order_by("id").last()
    Lead.objects.filter(pk=lead.pk).update(attributes={"plan": "never seen before"})
    ids = np.asarray(sorted(Lead.objects.values_list("id", flat=True)))
    reader = F.MatrixReader(spec)  # one reader for every chunk: its memo carries over
    middle = int(ids[len(ids) // 2])
    for first_id, last_id in ((int(ids[0]), middle), (middle + 1, int(ids[-1]))):
        found, matrix = reader.read(cutoff, first_id, last_id)
        expected_ids, expected = _encoded(loaded, cutoff, first_id, last_id)
        assert np.array_equal(found, expected_ids)
        assert np.array_equal(matrix, expected, equal_nan=True)
    subset = ids[::5]
    found, matrix = reader.read(cutoff, int(ids[0]), int(ids[-1]), ids=subset)
    expected_ids, expected = _encoded(loaded, cutoff, int(ids[0]), int(ids[-1]), ids=subset)
    assert np.array_equal(found, subset) and np.array_equal(found, expected_ids)
    assert np.array_equal(matrix, expected, equal_nan=True)
    # The odd values really were coded (not all "missing" or "other").
    _, everything = reader.read(cutoff, int(ids[0]), int(ids[-1]))
    names = [f.name for f in spec.categorical]
    plan = len(spec.numeric_names) + names.index("attributes.plan")
    assert len(np.unique(everything[:, plan])) >= 5
    domain = len(spec.numeric_names) + names.index("email_domain_type")
    assert F.MISSING_CODE in everything[:, domain] and len(np.unique(everything[:, domain])) >= 2
    # Both read the domain type from the part after the last "@": it is the engine's type of
    # the whole address.
    raw = F.read_frame(spec, cutoff, int(ids[0]), int(ids[-1]))
    emails = dict(Lead.objects.values_list("id", "email"))
    kinds = [email_domain_type(emails[i]) or F.MISSING for i in raw.ids.tolist()]
    assert raw.categorical[:, names.index("email_domain_type")].tolist() == kinds


def test_a_reader_that_reuses_its_buffer_reads_the_same_matrices(trained):
    loaded = ml_scoring.load(trained["rows"][BOOSTING])
    ids = sorted(Lead.objects.values_list("id", flat=True))
    middle, now = ids[len(ids) // 2], timezone.now()
    fresh, reusing = F.MatrixReader(loaded.spec), F.MatrixReader(loaded.spec, reuse_buffer=True)
    for first_id, last_id in ((ids[0], middle), (middle + 1, ids[-1]), (ids[0], ids[-1])):
        expected = fresh.read(now, first_id, last_id)[1]
        matrix = reusing.read(now, first_id, last_id)[1]
        assert np.array_equal(matrix, expected, equal_nan=True)
    again = reusing.read(now, ids[0], middle)[1]
    assert np.shares_memory(again, matrix)  # the next read overwrites: one buffer per reader


def test_an_empty_range_and_a_selection_outside_it_give_empty_matrices(trained):
    loaded = ml_scoring.load(trained["rows"][LOGISTIC])
    reader = F.MatrixReader(loaded.spec)
    top = int(Lead.objects.order_by("-id").values_list("id", flat=True)[0])
    found, matrix = reader.read(timezone.now(), top + 1, top + 100)
    assert found.size == 0 and matrix.shape == (0, len(loaded.spec.names))
    found, matrix = reader.read(timezone.now(), 1, top, ids=np.array([top + 5]))
    assert found.size == 0 and matrix.shape == (0, len(loaded.spec.names))


def test_blocked_prediction_equals_one_whole_call(trained, monkeypatch):
    loaded = ml_scoring.load(trained["rows"][BOOSTING])
    ids = sorted(Lead.objects.values_list("id", flat=True))
    _, matrix = F.MatrixReader(loaded.spec).read(timezone.now(), ids[0], ids[-1])
    monkeypatch.setattr(ml_scoring, "PREDICT_BLOCK", 7)  # blocks that do not divide n
    blocked = loaded.predict_matrix(matrix)
    assert np.array_equal(blocked, loaded.estimator.predict_proba(matrix)[:, 1])


@pytest.mark.django_db(transaction=True)
def test_bulk_scoring_stores_every_chunk_with_the_per_lead_probability(live_rules):
    # On PostgreSQL outside a transaction the chunks are scored by WORKERS threads, each with
    # its own connection; on SQLite in line. Either way every lead gets exactly its own
    # probability, and a stale row of a deleted lead inside a range is replaced.
    make_dated(700)
    report = train_models()
    row = registry.activate(next(r for r in report.rows if r.algorithm == BOOSTING))
    assert ml_scoring.score_all(chunk_size=60) == Lead.objects.count()
    stored = dict(LeadProbability.objects.values_list("lead_id", "probability"))
    assert set(stored) == set(Lead.objects.values_list("id", flat=True))
    loaded = ml_scoring.load(row)
    now = timezone.now()
    for lead_id in list(stored)[::29]:
        frame = F.read_frame(loaded.spec, now, lead_id, lead_id)
        assert stored[lead_id] == pytest.approx(float(loaded.predict(frame)[0]), abs=1e-9)
    assert not [t for t in threading.enumerate() if t.name.startswith("ml-score-")]


@pytest.mark.django_db(transaction=True)
def test_a_failure_while_scoring_is_raised_and_every_scoring_thread_ends(live_rules, monkeypatch):
    make_dated(700)
    report = train_models()
    registry.activate(next(r for r in report.rows if r.algorithm == BOOSTING))
    original = ml_scoring.LoadedModel.predict_matrix
    calls = {"n": 0}
    lock = threading.Lock()

    def failing_predict(self, matrix, **options):
        with lock:
            calls["n"] += 1
            failing = calls["n"] == 3
        if failing:
            raise RuntimeError("prediction failed")
        return original(self, matrix, **options)

    monkeypatch.setattr(ml_scoring.LoadedModel, "predict_matrix", failing_predict)
    with pytest.raises(RuntimeError, match="prediction failed"):
        ml_scoring.score_all(chunk_size=50)
    assert not [t for t in threading.enumerate() if t.name.startswith("ml-score-")]
    stored = LeadProbability.objects.count()
    if is_postgres():
        # The run's new table is dropped: the live probabilities (none) are untouched.
        assert stored == 0
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass(%s)", [STAGING])
            assert cursor.fetchone()[0] is None
    else:
        # In line, each range of 50 leads is replaced in one transaction: the chunks before
        # the failure are stored whole, the failed one not at all.
        assert 0 < stored < Lead.objects.count() and stored % 50 == 0
