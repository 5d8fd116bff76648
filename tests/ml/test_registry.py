"""The registry: artifacts saved with hash and versions, refused when either does not match,
one active model, activation and rollback."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from scoring.ml import registry
from scoring.models import MLModel


def _saved(run_key="r1", algorithm="logistic_regression"):
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    estimator = Pipeline([("model", LogisticRegression())]).fit(X, [0, 0, 1, 1])
    row = MLModel.objects.create(run_key=run_key, algorithm=algorithm, status="done")
    return registry.save_artifact(row, estimator)


def test_a_saved_artifact_loads_back_with_its_hash_and_versions(db):
    row = _saved()
    path = registry.models_dir() / row.artifact_path
    assert path.exists() and len(row.artifact_sha256) == 64
    assert row.sklearn_version and row.numpy_version
    estimator = registry.load_estimator(row)
    assert estimator.predict_proba(np.array([[3.0]]))[0, 1] > 0.5


def test_a_changed_artifact_is_refused(db):
    row = _saved()
    path = registry.models_dir() / row.artifact_path
    path.write_bytes(path.read_bytes() + b"tampered")
    with pytest.raises(registry.ModelLoadRefused, match="SHA-256"):
        registry.load_estimator(row)


def test_an_artifact_from_another_scikit_learn_version_is_refused_naming_both(db):
    import sklearn

    row = _saved()
    row.sklearn_version = "0.24.2"
    with pytest.raises(registry.ModelLoadRefused) as caught:
        registry.load_estimator(row)
    assert "0.24.2" in str(caught.value) and sklearn.__version__ in str(caught.value)


def test_one_model_is_active_and_rollback_restores_the_previous(db):
    first, second = _saved("a"), _saved("b")
    registry.activate(first)
    registry.activate(second)
    assert list(MLModel.objects.filter(is_active=True)) == [second]
    assert registry.rollback() == first
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.is_active and not second.is_active


def test_rollback_without_history_and_activating_an_unfinished_model_are_refused(db):
    with pytest.raises(registry.NothingToRollBack):
        registry.rollback()
    queued = MLModel.objects.create(run_key="q", algorithm="logistic_regression")
    with pytest.raises(registry.ModelNotReady):
        registry.activate(queued)
