"""Compiled trees (opt-in): a gradient-boosting artifact's forest as native code, for bulk
scoring.

The default install has no compiler at run time and scikit-learn predicts. This module is used
only with `ML_COMPILED_TREES=true`, the `compiled` extra installed (`pip install
'leadscoring[compiled]'`: treelite and tl2cgen) and a C compiler (`ML_COMPILER`, default
`gcc`) where the model is trained, or where a process first scores with a model whose stored
library it cannot use. treelite imports the fitted trees (it follows scikit-learn's internals,
categorical splits and their re-encoding included) and tl2cgen writes them out as C, one
if/else nest per tree, which the compiler builds into a shared library: about five times
faster than scikit-learn's walk of the same trees, with the same numbers. (onnxruntime through
skl2onnx was measured as the compiler-free alternative and rejected: it predicts in float32,
and skl2onnx reads a categorical split as a numeric threshold.)

- Built where the model is trained (`store_library`, about a second) and kept beside its
  artifact under VAR_DIR/models, its SHA-256 on the model's row with the platform it was built
  for (`details["compiled"]`). A process that scores with the model reads the file, checks
  the hash before anything of it is loaded (as the registry does for the artifact), and loads
  it from a private temporary directory. On another platform, or when the file is missing or
  changed, the process builds its own copy there instead, once per process and model.
- Checked before use, however it was obtained: on a probe matrix made of the model's own split
  thresholds (ties included), the values just above them, missing numbers and every category
  code the feature coding produces, its probabilities must equal scikit-learn's within
  `TOLERANCE`.
- Where it cannot be used (`ML_COMPILED_TREES` off, which is the default; treelite or tl2cgen
  not installed; no stored library for this platform and no compiler; an artifact that is not
  a binary gradient-boosting pipeline; a failed check), `compiled_forest` returns None and the
  caller predicts with scikit-learn: slower, the same numbers. With the option on, the reason
  is logged once per model and process; with it off nothing is logged and nothing is tried.

treelite and tl2cgen are imported only where they are used, and only with the option on: the
default install does not have them, and a process that never scores in bulk (the web server)
does not load their native libraries."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import logging
import os
import platform
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from scipy.special import expit
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline

from scoring.ml import feature_frame as F
from scoring.ml import registry
from scoring.models import MLModel

logger = logging.getLogger(__name__)

# Largest difference from scikit-learn's probability a compiled forest may show on the probe
# (both sum the same float64 leaf values; the order of the additions can differ).
TOLERANCE = 1e-9
PROBE_ROWS = 4096
# Translation units the generated C is split into: they compile in parallel, and smaller
# units compile faster at -O1, which predicts as fast here as -O3 and compiles twice as fast.
TRANSLATION_UNITS = 4
OPTIMISATION = "-O1"


@dataclass(eq=False)
class CompiledForest:
    """The positive-class probability of a compiled forest. Each thread gets its own loaded
    library handle (a tl2cgen predictor serves one thread at a time)."""

    library: Path
    link: Callable[[np.ndarray], np.ndarray]  # raw margin -> probability
    # (matrix column, the category codes the trees know): any other code becomes NaN.
    known_codes: list[tuple[int, np.ndarray]] = field(repr=False)
    workdir: tempfile.TemporaryDirectory = field(repr=False)
    _local: threading.local = field(default_factory=threading.local, repr=False)

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        import tl2cgen

        predictor = getattr(self._local, "predictor", None)
        if predictor is None:
            predictor = self._local.predictor = tl2cgen.Predictor(str(self.library), nthread=1)
        if matrix.shape[0] == 0:
            return np.zeros(0)
        matrix = np.array(matrix, dtype=np.float64, order="C")  # a copy: codes are replaced
        for column, codes in self.known_codes:
            values = matrix[:, column]
            values[~np.isin(values, codes)] = np.nan
        data = tl2cgen.DMatrix(matrix, dtype="float64")
        margin = predictor.predict(data, pred_margin=True).reshape(-1)
        return np.asarray(self.link(margin), dtype=np.float64)


_lock = threading.Lock()
_built: dict[tuple[int, str], CompiledForest | None] = {}


def compiled_forest(
    key: tuple[int, str],
    estimator: Any,
    spec: F.FeatureSpec,
    stored: dict[str, str] | None = None,
) -> CompiledForest | None:
    """The compiled forest of the artifact identified by `key` (model id, artifact hash): the
    library `stored` with the model when it was built for this platform and is unchanged,
    else one built now; kept for the process. None when it cannot be used (logged once)."""
    with _lock:
        if key in _built:
            return _built[key]
        forest = None
        missing = runtime_missing() if settings.ML_COMPILED_TREES else None
        if missing:
            logger.warning("ml.compiled.unavailable model=%s reason=%s", key[0], missing)
        elif settings.ML_COMPILED_TREES:
            if stored:
                try:
                    if stored.get("platform") == platform_tag():
                        forest = _load_stored(key[0], stored, estimator, spec)
                except Exception as error:  # built afresh below
                    logger.warning("ml.compiled.stored_refused model=%s reason=%s", key[0], error)
            if forest is None:
                try:
                    forest = _build(estimator, spec)
                except Exception as error:  # any failure: scikit-learn predicts, same numbers
                    logger.warning("ml.compiled.unavailable model=%s reason=%s", key[0], error)
        _remember(key, forest)
        return forest


def _remember(key: tuple[int, str], forest: CompiledForest | None) -> None:
    """Keep `forest` as this process's for the artifact `key` (callers hold `_lock`)."""
    _built.clear()  # one model's library at a time is enough
    _built[key] = forest


def store_library(row: MLModel, estimator: Any, spec: F.FeatureSpec) -> None:
    """Build the trees of the row's freshly saved artifact and keep the library beside it,
    recording its file, SHA-256 and platform in `row.details["compiled"]` (saved). Nothing is
    stored when it cannot be built (logged); the process that scores then tries itself."""
    if not settings.ML_COMPILED_TREES:
        return
    missing = runtime_missing()
    if missing:
        logger.warning("ml.compiled.unavailable model=%s reason=%s", row.pk, missing)
        return
    try:
        forest = _build(estimator, spec)
    except Exception as error:
        logger.warning("ml.compiled.unavailable model=%s reason=%s", row.pk, error)
        return
    data = forest.library.read_bytes()
    name = f"{Path(row.artifact_path).stem}.so"
    registry.write_file(name, data)
    row.details = {
        **(row.details or {}),
        "compiled": {
            "file": name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "platform": platform_tag(),
        },
    }
    row.save(update_fields=["details"])
    with _lock:
        _remember((row.pk, row.artifact_sha256), forest)


# The packages of the `compiled` extra, found without importing them (importing loads their
# native libraries).
RUNTIME_PACKAGES = ("treelite", "tl2cgen")


def runtime_missing() -> str | None:
    """Why this installation cannot run compiled trees at all, or None: the `compiled` extra's
    packages must be installed. (A compiler is needed only to build, see `_build`.)"""
    absent = [name for name in RUNTIME_PACKAGES if importlib.util.find_spec(name) is None]
    if absent:
        return (
            f"{' and '.join(absent)} not installed (pip install 'leadscoring[compiled]'); "
            "scikit-learn predicts"
        )
    return None


def platform_tag() -> str:
    """Where a stored library can be loaded: the same system, machine, C library and tl2cgen
    (whose loader calls into it)."""
    import tl2cgen

    libc = "".join(platform.libc_ver())
    return f"{platform.system()}-{platform.machine()}-{libc}-tl2cgen{tl2cgen.__version__}"


class NotCompilable(Exception):
    """The artifact is not a forest this module compiles, or the compiled one disagrees."""


def _build(estimator: Any, spec: F.FeatureSpec) -> CompiledForest:
    # Checked first: without a compiler tl2cgen would fail only after writing out the C.
    if shutil.which(settings.ML_COMPILER) is None:
        raise NotCompilable(
            f"no C compiler {settings.ML_COMPILER!r} on PATH (ML_COMPILER); scikit-learn predicts"
        )
    import tl2cgen

    trees = _Trees.of(estimator)
    workdir = tempfile.TemporaryDirectory(prefix="leadscoring-forest-")  # mode 0700
    library = Path(workdir.name) / "forest.so"
    # tl2cgen hands its native library's progress lines to print(): kept out of the worker's
    # output, in the debug log. (Its note that treelite's model format is newer than its own
    # reader goes straight to stderr; the probe check is what vouches for the result.)
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        tl2cgen.export_lib(
            trees.model,
            toolchain=settings.ML_COMPILER,
            libpath=str(library),
            params={"parallel_comp": TRANSLATION_UNITS},
            nthread=os.cpu_count() or 1,
            options=[OPTIMISATION],
        )
    if captured.getvalue().strip():
        logger.debug("ml.compiled.build_log %s", captured.getvalue().strip())
    return trees.checked(library, workdir, estimator, spec)


def _load_stored(
    model_id: int, stored: dict[str, str], estimator: Any, spec: F.FeatureSpec
) -> CompiledForest:
    data = registry.read_checked(model_id, stored["file"], stored["sha256"], "compiled trees")
    # Loaded from a private copy of the checked bytes, so the file cannot change in between.
    workdir = tempfile.TemporaryDirectory(prefix="leadscoring-forest-")
    library = Path(workdir.name) / "forest.so"
    library.write_bytes(data)
    return _Trees.of(estimator).checked(library, workdir, estimator, spec)


@dataclass(frozen=True)
class _Trees:
    """An artifact's gradient-boosting model, the link from its raw margin to the artifact's
    probability, and treelite's import of its trees."""

    boosting: HistGradientBoostingClassifier
    link: Callable[[np.ndarray], np.ndarray]
    model: Any

    @classmethod
    def of(cls, estimator: Any) -> _Trees:
        import treelite

        boosting, link = _boosting_and_link(estimator)
        return cls(boosting, link, treelite.sklearn.import_model(boosting))

    def checked(
        self,
        library: Path,
        workdir: tempfile.TemporaryDirectory,
        estimator: Any,
        spec: F.FeatureSpec,
    ) -> CompiledForest:
        """The forest of `library` (these trees, compiled), once its probabilities on the
        probe equal the estimator's."""
        p_num = len(spec.numeric_names)
        known_codes = [(p_num + c, codes) for c, codes in enumerate(_known_codes(self.boosting))]
        forest = CompiledForest(
            library=library, link=self.link, known_codes=known_codes, workdir=workdir
        )
        probe = probe_matrix(spec, json.loads(self.model.dump_as_json()))
        expected = estimator.predict_proba(probe)[:, 1]
        difference = float(np.max(np.abs(forest.predict_proba(probe) - expected)))
        if not difference <= TOLERANCE:
            raise NotCompilable(
                f"compiled probabilities differ from scikit-learn's by {difference}"
            )
        return forest


def _boosting_and_link(
    estimator: Any,
) -> tuple[HistGradientBoostingClassifier, Callable[[np.ndarray], np.ndarray]]:
    """The gradient-boosting model inside a training artifact and the function from its raw
    margin to the artifact's probability: the logistic function, or the sigmoid calibration
    fitted over it (`training` wraps the pipeline in `CalibratedClassifierCV(FrozenEstimator)`
    when calibrating helps)."""
    link: Callable[[np.ndarray], np.ndarray] = expit
    pipeline = estimator
    if isinstance(estimator, CalibratedClassifierCV):
        if estimator.method != "sigmoid" or len(estimator.calibrated_classifiers_) != 1:
            raise NotCompilable("not one sigmoid calibration")
        calibrated = estimator.calibrated_classifiers_[0]
        if len(calibrated.calibrators) != 1:
            raise NotCompilable("not a binary calibration")
        link = calibrated.calibrators[0].predict
        pipeline = calibrated.estimator
        if isinstance(pipeline, FrozenEstimator):
            pipeline = pipeline.estimator
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 1:
        raise NotCompilable("not a one-step pipeline")
    boosting = pipeline.steps[0][1]
    if not isinstance(boosting, HistGradientBoostingClassifier) or len(boosting.classes_) != 2:
        raise NotCompilable("not a binary gradient-boosting classifier")
    return boosting, link


def _known_codes(boosting: HistGradientBoostingClassifier) -> list[np.ndarray]:
    """Per category column, the codes the trees know. scikit-learn sends any other code (one
    that no training lead had) the way of a missing value; treelite's trees would send it to
    the "not in the split's set" side, so the compiled forest is given those codes as NaN,
    which both take as missing. Read from scikit-learn's internals, as treelite itself does:
    the codes its category encoder saw, those its binning kept."""
    preprocessor = getattr(boosting, "_preprocessor", None)
    if preprocessor is None:  # no category column
        return []
    seen = preprocessor.named_transformers_["encoder"].categories_
    # The binning's columns put the category columns first, in order.
    kept = boosting._bin_mapper.bin_thresholds_
    return [
        np.asarray(values, dtype=np.float64)[np.asarray(kept[c], dtype=np.int64)]
        for c, values in enumerate(seen)
    ]


def probe_matrix(spec: F.FeatureSpec, dump: dict[str, Any], rows: int = PROBE_ROWS) -> np.ndarray:
    """Rows that exercise every split of the forest (`dump`: treelite's JSON of it): each
    number column takes its split thresholds (a tie goes left), the values just above them,
    zero and NaN; each category column every code `features.encode` can produce (missing,
    other, each vocabulary value)."""
    p_num = len(spec.numeric_names)
    thresholds: dict[int, set[float]] = {}
    for tree in dump["trees"]:
        for node in tree["nodes"]:
            if node.get("node_type") == "numerical_test_node":
                thresholds.setdefault(node["split_feature_id"], set()).add(node["threshold"])
    rng = np.random.default_rng(0)
    probe = np.empty((rows, len(spec.names)))
    for j in range(p_num):
        cut = np.array(sorted(thresholds.get(j, ())), dtype=np.float64)
        pool = np.concatenate([cut, np.nextafter(cut, np.inf), [0.0, 1.0, np.nan]])
        probe[:, j] = rng.choice(pool, size=rows)
    for c, feature in enumerate(spec.categorical):
        # Codes are 0 (missing), 1 (other) and 2... (the vocabulary); one more, never coded,
        # stands for a value the trees never saw.
        probe[:, p_num + c] = rng.integers(0, len(feature.vocabulary) + 3, size=rows)
    return probe
