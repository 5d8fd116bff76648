"""The compiled forest (`scoring.ml.compiled`, opt-in: `ML_COMPILED_TREES=true` and the
`compiled` extra, which `dev` installs): a gradient-boosting artifact's trees built into native
code give scikit-learn's probabilities, for plain and calibrated artifacts, for codes the trees
never saw, and for the split thresholds themselves; bulk scoring uses it; and where it cannot
be built or disagrees, or its packages are missing, scikit-learn predicts. The default path
(option off) is tested in test_default_runtime.py."""

import hashlib
import json
import logging

import numpy as np
import pytest
import tl2cgen
import treelite
from django.utils import timezone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator

from scoring.ml import compiled, registry
from scoring.ml import feature_frame as F
from scoring.ml import scoring as ml_scoring
from scoring.ml.training import BOOSTING, LOGISTIC, inner_pipeline, train_models
from scoring.models import Lead, LeadProbability
from tests.ml.conftest import make_dated


@pytest.fixture(autouse=True)
def _fresh_processes(settings):
    settings.ML_COMPILED_TREES = True  # the opt-in path (off by default)
    # As in a newly started process: no model loaded, no forest built.
    compiled._built.clear()
    ml_scoring._cache.clear()
    yield
    compiled._built.clear()
    ml_scoring._cache.clear()


def _as_a_new_process(row):
    compiled._built.clear()
    ml_scoring._cache.clear()
    row.refresh_from_db()
    return ml_scoring.load(row)


def _no_compiler(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the compiler ran")

    monkeypatch.setattr(tl2cgen, "export_lib", refuse)


@pytest.fixture
def trained(db, live_rules):
    data = make_dated(700)
    report = train_models()
    rows = {row.algorithm: row for row in report.rows}
    return {"rows": rows, "data": data}


def _matrix(loaded):
    ids = sorted(Lead.objects.values_list("id", flat=True))
    return F.MatrixReader(loaded.spec).read(timezone.now(), ids[0], ids[-1])[1]


def _sklearn(loaded, matrix):
    return loaded.estimator.predict_proba(matrix)[:, 1]


def test_the_compiled_forest_gives_scikit_learns_probabilities(trained, monkeypatch):
    loaded = ml_scoring.load(trained["rows"][BOOSTING])
    forest = loaded.compiled()
    assert forest is not None
    matrix = _matrix(loaded)
    assert np.allclose(forest.predict_proba(matrix), _sklearn(loaded, matrix), rtol=0, atol=1e-9)
    assert forest.predict_proba(matrix[:0]).shape == (0,)
    # The bulk path goes through it, a block at a time; the one-lead path stays with
    # scikit-learn.
    blocks = []
    predict = compiled.CompiledForest.predict_proba
    monkeypatch.setattr(
        compiled.CompiledForest,
        "predict_proba",
        lambda self, block: blocks.append(len(block)) or predict(self, block),
    )
    monkeypatch.setattr(ml_scoring, "PREDICT_BLOCK", 100)
    bulk = loaded.predict_matrix(matrix, bulk=True)
    assert blocks == [len(matrix[i : i + 100]) for i in range(0, len(matrix), 100)]
    assert np.allclose(bulk, _sklearn(loaded, matrix), rtol=0, atol=1e-9)
    assert np.array_equal(loaded.predict_matrix(matrix), _sklearn(loaded, matrix))
    assert len(blocks) == -(-len(matrix) // 100)  # no more calls: scikit-learn did that one


def test_codes_the_trees_never_saw_go_the_way_of_a_missing_value(trained):
    # scikit-learn sends a category code no training lead had the missing value's way; the
    # compiled trees must too (left alone, treelite's would take the "not in the set" side).
    loaded = ml_scoring.load(trained["rows"][BOOSTING])
    forest = loaded.compiled()
    matrix = _matrix(loaded)[:200].copy()
    p_num = len(loaded.spec.numeric_names)
    for c, feature in enumerate(loaded.spec.categorical):
        unseen = len(feature.vocabulary) + 2  # never produced by the coding, never trained on
        matrix[::2, p_num + c] = unseen
        matrix[1::4, p_num + c] = F.OTHER_CODE
    expected = _sklearn(loaded, matrix)
    assert np.allclose(forest.predict_proba(matrix), expected, rtol=0, atol=1e-9)
    # ... which differs from what the trees alone would say: the case is a real one.
    unmapped = compiled.CompiledForest(forest.library, forest.link, [], forest.workdir)
    assert not np.allclose(unmapped.predict_proba(matrix), expected, rtol=0, atol=1e-9)


def test_the_probe_hits_the_split_thresholds_and_every_category_code(trained):
    loaded = ml_scoring.load(trained["rows"][BOOSTING])
    boosting = inner_pipeline(loaded.estimator).steps[0][1]
    dump = json.loads(treelite.sklearn.import_model(boosting).dump_as_json())
    probe = compiled.probe_matrix(loaded.spec, dump)
    nodes = [n for t in dump["trees"] for n in t["nodes"] if "threshold" in n]
    assert nodes
    ties = sum(np.any(probe[:, n["split_feature_id"]] == n["threshold"]) for n in nodes)
    assert ties == len(nodes)  # every numeric split is tested on its own threshold
    p_num = len(loaded.spec.numeric_names)
    for c, feature in enumerate(loaded.spec.categorical):
        codes = set(np.unique(probe[:, p_num + c]).tolist())
        assert codes == set(range(len(feature.vocabulary) + 3))
    assert np.isnan(probe[:, :p_num]).any()
    forest = loaded.compiled()
    assert np.allclose(forest.predict_proba(probe), _sklearn(loaded, probe), rtol=0, atol=1e-9)


def test_a_calibrated_artifact_compiles_with_its_sigmoid(trained):
    loaded = ml_scoring.load(trained["rows"][BOOSTING])
    matrix = _matrix(loaded)
    outcome = (np.arange(matrix.shape[0]) % 3 == 0).astype(int)  # any labels will do
    pipeline = inner_pipeline(loaded.estimator)
    calibrated = CalibratedClassifierCV(FrozenEstimator(pipeline), method="sigmoid")
    calibrated.fit(matrix, outcome)
    forest = compiled.compiled_forest((0, "calibrated"), calibrated, loaded.spec)
    assert forest is not None
    expected = calibrated.predict_proba(matrix)[:, 1]
    # It did calibrate (differently from the artifact's own sigmoid, if it has one).
    assert not np.allclose(expected, pipeline.predict_proba(matrix)[:, 1], atol=1e-3)
    assert np.allclose(forest.predict_proba(matrix), expected, rtol=0, atol=1e-9)


def test_training_keeps_the_library_and_a_new_process_loads_it_without_compiling(
    trained, monkeypatch
):
    row = trained["rows"][BOOSTING]
    record = row.details["compiled"]
    data = (registry.models_dir() / record["file"]).read_bytes()
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert record["platform"] == compiled.platform_tag()
    assert "compiled" not in trained["rows"][LOGISTIC].details
    _no_compiler(monkeypatch)
    loaded = _as_a_new_process(row)
    forest = loaded.compiled()
    assert forest is not None and forest.library.read_bytes() == data
    assert not forest.library.is_relative_to(registry.models_dir())  # a private copy
    matrix = _matrix(loaded)
    assert np.allclose(forest.predict_proba(matrix), _sklearn(loaded, matrix), rtol=0, atol=1e-9)


def test_a_changed_stored_library_is_never_loaded(trained, monkeypatch, caplog):
    row = trained["rows"][BOOSTING]
    path = registry.models_dir() / row.details["compiled"]["file"]
    path.write_bytes(path.read_bytes() + b"\0")
    loaded = _as_a_new_process(row)
    with caplog.at_level(logging.WARNING, logger="scoring.ml.compiled"):
        forest = loaded.compiled()  # built afresh in the process instead
    assert "changed or corrupt" in caplog.text
    assert forest is not None and forest.library.read_bytes() != path.read_bytes()
    # Without a compiler either, scikit-learn predicts.
    _no_compiler(monkeypatch)
    loaded = _as_a_new_process(row)
    assert loaded.compiled() is None
    matrix = _matrix(loaded)
    assert np.array_equal(loaded.predict_matrix(matrix, bulk=True), _sklearn(loaded, matrix))


def test_a_library_built_for_another_platform_is_rebuilt_here(trained, monkeypatch):
    row = trained["rows"][BOOSTING]
    row.details["compiled"]["platform"] = "Plan9-mips-uclibc-tl2cgen0"
    row.save(update_fields=["details"])
    built = []
    build = compiled._build
    monkeypatch.setattr(compiled, "_build", lambda *args: built.append(1) or build(*args))
    monkeypatch.setattr(compiled, "_load_stored", lambda *args: pytest.fail("loaded"))
    assert _as_a_new_process(row).compiled() is not None
    assert built == [1]


def test_other_artifacts_and_a_missing_compiler_leave_scikit_learn_to_predict(
    trained, settings, caplog
):
    assert ml_scoring.load(trained["rows"][LOGISTIC]).compiled() is None
    row = trained["rows"][BOOSTING]
    row.details.pop("compiled")  # as if trained where there was no compiler
    row.save(update_fields=["details"])
    loaded = _as_a_new_process(row)
    settings.ML_COMPILED_TREES = False
    assert loaded.compiled() is None
    compiled._built.clear()
    settings.ML_COMPILED_TREES = True
    settings.ML_COMPILER = "no-such-compiler"
    with caplog.at_level(logging.WARNING, logger="scoring.ml.compiled"):
        assert loaded.compiled() is None
        assert loaded.compiled() is None  # remembered: tried, and logged, once per model
    warnings = [
        r.getMessage() for r in caplog.records if "ml.compiled.unavailable" in r.getMessage()
    ]
    assert len(warnings) == 1 and "no-such-compiler" in warnings[0]
    matrix = _matrix(loaded)
    assert np.array_equal(loaded.predict_matrix(matrix, bulk=True), _sklearn(loaded, matrix))


def test_without_the_compiled_extra_scikit_learn_predicts_and_says_so_once(
    trained, monkeypatch, caplog
):
    # As if `pip install .` without `[compiled]`: the option on, a package absent.
    monkeypatch.setattr(compiled, "RUNTIME_PACKAGES", ("treelite", "no_such_tree_compiler"))
    monkeypatch.setattr(compiled, "_build", lambda *args: pytest.fail("tried to build"))
    monkeypatch.setattr(compiled, "_load_stored", lambda *args: pytest.fail("tried to load"))
    loaded = _as_a_new_process(trained["rows"][BOOSTING])
    with caplog.at_level(logging.WARNING, logger="scoring.ml.compiled"):
        assert loaded.compiled() is None
        assert loaded.compiled() is None
    warnings = [r.getMessage() for r in caplog.records if r.name == "scoring.ml.compiled"]
    assert len(warnings) == 1
    assert "no_such_tree_compiler not installed" in warnings[0]
    assert "leadscoring[compiled]" in warnings[0]
    matrix = _matrix(loaded)
    assert np.array_equal(loaded.predict_matrix(matrix, bulk=True), _sklearn(loaded, matrix))


def test_training_without_the_compiled_extra_stores_no_library(db, live_rules, monkeypatch, caplog):
    monkeypatch.setattr(compiled, "RUNTIME_PACKAGES", ("no_such_tree_compiler",))
    monkeypatch.setattr(compiled, "_build", lambda *args: pytest.fail("tried to build"))
    make_dated(700)
    with caplog.at_level(logging.WARNING, logger="scoring.ml.compiled"):
        rows = {row.algorithm: row for row in train_models().rows}
    assert "compiled" not in rows[BOOSTING].details
    assert "no_such_tree_compiler not installed" in caplog.text


def test_a_forest_that_disagrees_with_scikit_learn_is_not_used(trained, monkeypatch, caplog):
    # Without the unseen-code mapping the probe (which has such codes) catches the difference,
    # for the stored library and for one built afresh alike.
    monkeypatch.setattr(compiled, "_known_codes", lambda boosting: [])
    loaded = _as_a_new_process(trained["rows"][BOOSTING])
    with caplog.at_level(logging.WARNING, logger="scoring.ml.compiled"):
        assert loaded.compiled() is None
    assert "differ from scikit-learn" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_bulk_scoring_stores_the_compiled_forests_probabilities(live_rules):
    make_dated(700)
    report = train_models()
    row = registry.activate(next(r for r in report.rows if r.algorithm == BOOSTING))
    as_of = timezone.now()
    assert ml_scoring.score_all(as_of=as_of, chunk_size=90) == Lead.objects.count()
    loaded = ml_scoring.load(row)
    assert compiled._built[(row.pk, row.artifact_sha256)] is loaded.compiled() is not None
    stored = dict(LeadProbability.objects.values_list("lead_id", "probability"))
    ids = sorted(stored)
    found, matrix = F.MatrixReader(loaded.spec).read(as_of, ids[0], ids[-1])
    expected = _sklearn(loaded, matrix)
    assert np.allclose([stored[i] for i in found.tolist()], expected, rtol=0, atol=1e-9)
