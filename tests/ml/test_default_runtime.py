"""The default install's model scoring (`ML_COMPILED_TREES` off, no `compiled` extra, no
compiler): training stores no compiled library, a process that trains and scores never
imports treelite or tl2cgen, and bulk scoring stores scikit-learn's probabilities. The opt-in
compiled trees are tested in test_compiled.py."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from django.utils import timezone

from scoring.ml import compiled, registry
from scoring.ml import feature_frame as F
from scoring.ml import scoring as ml_scoring
from scoring.ml.training import BOOSTING, train_models
from scoring.models import Lead, LeadProbability
from tests.ml.conftest import make_dated

ROOT = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter with the default settings: everything the training and scoring
# paths import, then the bulk prediction of the artifact given as JSON, then which of the
# compiled extra's packages got imported on the way.
PROBE_SCRIPT = """
import json, sys
import django
django.setup()
import numpy as np
import scoring.ml.compiled, scoring.ml.training, scoring.tasks
from scoring.ml import scoring as ml_scoring
from scoring.models import MLModel
given = json.load(open(sys.argv[1]))
loaded = ml_scoring.load(MLModel(**given["row"]))
matrix = np.load(sys.argv[2])
probabilities = loaded.predict_matrix(matrix, bulk=True)
print(json.dumps({
    "compiled": loaded.compiled() is not None,
    "same": bool(np.array_equal(probabilities, np.load(sys.argv[3]))),
    "imported": sorted(m for m in sys.modules if m.split(".")[0] in ("treelite", "tl2cgen")),
}))
"""


@pytest.fixture(autouse=True)
def _fresh_processes(settings):
    settings.ML_COMPILED_TREES = False  # the default, whatever the environment says
    compiled._built.clear()
    ml_scoring._cache.clear()
    yield
    compiled._built.clear()
    ml_scoring._cache.clear()


def _trained_boosting_without_building(monkeypatch):
    # With the option off nothing of the compiled path is even tried.
    monkeypatch.setattr(compiled, "runtime_missing", lambda: pytest.fail("checked the extra"))
    monkeypatch.setattr(compiled, "_build", lambda *args: pytest.fail("tried to build"))
    make_dated(700)
    rows = {row.algorithm: row for row in train_models().rows}
    return rows[BOOSTING]


def _sklearn(loaded, matrix):
    return loaded.estimator.predict_proba(matrix)[:, 1]


def test_a_process_with_the_default_settings_never_imports_treelite_or_tl2cgen(
    db, live_rules, monkeypatch, tmp_path
):
    row = _trained_boosting_without_building(monkeypatch)
    assert "compiled" not in row.details
    loaded = ml_scoring.load(row)
    ids = sorted(Lead.objects.values_list("id", flat=True))
    matrix = F.MatrixReader(loaded.spec).read(timezone.now(), ids[0], ids[-1])[1]
    fields = [
        "id",
        "algorithm",
        "artifact_path",
        "artifact_sha256",
        "sklearn_version",
        "numpy_version",
        "features",
        "details",
    ]
    (tmp_path / "row.json").write_text(
        json.dumps({"row": {f: getattr(row, f) for f in fields}}, default=str)
    )
    np.save(tmp_path / "matrix.npy", matrix)
    np.save(tmp_path / "expected.npy", _sklearn(loaded, matrix))
    env = {k: v for k, v in os.environ.items() if k != "ML_COMPILED_TREES"}
    env.update(
        DJANGO_SETTINGS_MODULE="leadscoring.settings", VAR_DIR=str(registry.models_dir().parent)
    )
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            PROBE_SCRIPT,
            *(str(tmp_path / n) for n in ("row.json", "matrix.npy", "expected.npy")),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result == {"compiled": False, "same": True, "imported": []}
    assert "ml.compiled" not in completed.stderr  # nothing tried, nothing logged


@pytest.mark.django_db(transaction=True)
def test_default_bulk_scoring_stores_scikit_learns_probabilities(live_rules, monkeypatch, caplog):
    row = registry.activate(_trained_boosting_without_building(monkeypatch))
    as_of = timezone.now()
    with caplog.at_level(logging.INFO, logger="scoring.ml.compiled"):
        assert ml_scoring.score_all(as_of=as_of, chunk_size=90) == Lead.objects.count()
    assert not [r for r in caplog.records if r.name == "scoring.ml.compiled"]
    loaded = ml_scoring.load(row)
    assert compiled._built[(row.pk, row.artifact_sha256)] is None
    stored = dict(LeadProbability.objects.values_list("lead_id", "probability"))
    ids = sorted(stored)
    found, matrix = F.MatrixReader(loaded.spec).read(as_of, ids[0], ids[-1])
    assert len(found) == len(stored) == Lead.objects.count()
    expected = _sklearn(loaded, matrix)
    assert np.array_equal(loaded.predict_matrix(matrix, bulk=True), expected)
    assert np.allclose([stored[i] for i in found.tolist()], expected, rtol=0, atol=1e-12)
