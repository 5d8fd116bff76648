"""Bulk probabilities of the active model, stored in `LeadProbability` (a narrow table of its
own: `scoring.ml.probabilities`).

Per chunk of leads (an id range): the lead columns and the events are read straight into the
model's input matrix (`features.MatrixReader`: on PostgreSQL one query for the lead columns,
grouped by value, and one for the events, which the lead/type/time index answers), and the
model predicts over blocks of rows with the pipeline's `predict_proba` (the default install:
no compiler at run time), or, when `ML_COMPILED_TREES` is on and they can be used, a
gradient-boosting model through its trees compiled to native code (`scoring.ml.compiled`,
opt-in). On PostgreSQL outside a transaction, `WORKERS` threads score chunks side by side,
each with its own connection (while one waits for PostgreSQL, another predicts: NumPy,
scikit-learn's tree code and the compiled trees release the GIL), COPY'ing them into a
new table that is swapped in at the end (`probabilities.Replacement`). Otherwise the chunks
run in line and each id range is replaced in one transaction. The loaded artifact is cached
per process by (model id, hash).

Hooking into the rescore: `refresh_probabilities(first_id, last_id, as_of=...)` inside the
chunk's transaction, before the rule scores are read, makes the blend use fresh
probabilities; it does nothing (returns 0) when no model is active."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.utils import timezone
from threadpoolctl import threadpool_limits

from leadscoring.db import parallel_connections_allowed
from scoring.ml import feature_frame as F
from scoring.ml import registry
from scoring.ml.compiled import CompiledForest, compiled_forest
from scoring.ml.probabilities import Replacement, clear_probabilities, write_probabilities
from scoring.ml.training import BOOSTING
from scoring.models import MLModel
from scoring.threads import in_threads

logger = logging.getLogger(__name__)

DEFAULT_CHUNK = 50000
# Rows per predict_proba call: a block's rows stay in the CPU cache while every tree walks
# them (one call per 50,000-row chunk was twice as slow at 1,000,000 leads).
PREDICT_BLOCK = 4096
# Scoring threads on PostgreSQL: on a 2-core machine, three keep both cores busy (one thread
# usually waits for PostgreSQL, whose work runs in its own process).
WORKERS = 3


@dataclass(frozen=True, eq=False)
class LoadedModel:
    pk: int
    sha256: str
    algorithm: str
    spec: F.FeatureSpec
    estimator: Any
    reference: list[float | None]
    compiled_library: dict[str, str] | None = None  # `compiled.store_library`'s record

    def predict(self, raw: F.RawFrame) -> np.ndarray:
        return self.predict_matrix(F.encode(self.spec, raw))

    def predict_matrix(self, matrix: np.ndarray, *, bulk: bool = False) -> np.ndarray:
        """The positive class's probability for each row of an encoded matrix, from
        scikit-learn. `bulk` runs a gradient-boosting model's compiled trees instead when the
        opt-in `ML_COMPILED_TREES` is on and they can be used (the library stored with the
        model, or one built in the process on first use: worth it for whole chunks, not for
        one lead's event); the numbers are the same."""
        n = matrix.shape[0]
        if n == 0:
            return np.zeros(0)
        forest = self.compiled() if bulk else None
        if forest is not None:
            return _in_blocks(forest.predict_proba, matrix)
        # One OpenMP thread per calling thread: gradient boosting's prediction threads spin at
        # barriers when they compete for a busy core; the parallelism is the scoring threads'.
        with threadpool_limits(limits=1, user_api="openmp"):
            return _in_blocks(lambda block: self.estimator.predict_proba(block)[:, 1], matrix)

    def compiled(self) -> CompiledForest | None:
        """This model's trees as native code (`scoring.ml.compiled`), or None."""
        if self.algorithm != BOOSTING:
            return None
        return compiled_forest(
            (self.pk, self.sha256), self.estimator, self.spec, self.compiled_library
        )


def _in_blocks(predict: Callable[[np.ndarray], np.ndarray], matrix: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [predict(matrix[i : i + PREDICT_BLOCK]) for i in range(0, matrix.shape[0], PREDICT_BLOCK)]
    )


_cache: dict[tuple[int, str], LoadedModel] = {}


def load(row: MLModel) -> LoadedModel:
    """The row's artifact with its feature spec, cached per process. Raises ModelLoadRefused."""
    key = (row.pk, row.artifact_sha256)
    loaded = _cache.get(key)
    if loaded is None:
        loaded = LoadedModel(
            pk=row.pk,
            sha256=row.artifact_sha256,
            algorithm=row.algorithm,
            spec=F.FeatureSpec.from_dict(row.features["spec"]),
            estimator=registry.load_estimator(row),
            reference=list((row.details or {}).get("reference") or []),
            compiled_library=(row.details or {}).get("compiled"),
        )
        _cache.clear()  # one model in memory at a time is enough
        _cache[key] = loaded
    return loaded


def active_loaded() -> LoadedModel | None:
    row = registry.active_model()
    return None if row is None else load(row)


def refresh_probabilities(first_id: int, last_id: int, *, as_of: dt.datetime | None = None) -> int:
    """Compute and store the active model's probability for the leads with ids in
    [first_id, last_id]; returns how many were written (0 when no model is active)."""
    loaded = active_loaded()
    if loaded is None:
        return 0
    reader = F.MatrixReader(loaded.spec)
    return _score_range(loaded, reader, as_of or timezone.now(), first_id, last_id)


def refresh_lead_probabilities(lead_ids: Sequence[int], *, as_of: dt.datetime | None = None) -> int:
    """The real-time path: compute and store the active model's probability for these leads
    (the model is loaded once per process and cached); returns how many were written (0 when
    no model is active). Same features and writes as the bulk path."""
    if not lead_ids:
        return 0
    loaded = active_loaded()
    if loaded is None:
        return 0
    ids = np.unique(np.asarray(lead_ids, dtype=np.int64))
    found, matrix = F.MatrixReader(loaded.spec).read(
        as_of or timezone.now(), int(ids[0]), int(ids[-1]), ids=ids
    )
    if found.size:
        write_probabilities(found, loaded.predict_matrix(matrix))
    return int(found.size)


def score_all(
    *,
    as_of: dt.datetime | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    progress: Callable[[float], None] | None = None,
) -> int:
    """Store the active model's probability for every lead: on PostgreSQL outside a
    transaction into a new table swapped in at the end (all or nothing), otherwise id range by
    id range; with no active model, clear every probability so no stale one is blended.
    Returns how many leads were scored."""
    loaded = active_loaded()
    if loaded is None:
        clear_probabilities()
        return 0
    as_of = as_of or timezone.now()
    ranges = F.id_ranges(chunk_size)
    loaded.compiled()  # built here, once, rather than by the first of the scoring threads
    if parallel_connections_allowed():
        replacement = Replacement.begin()
        try:
            total = _score_in_threads(loaded, as_of, ranges, progress, replacement.write)
        except BaseException:
            replacement.abandon()
            raise
        replacement.finish()
    else:
        # Inside a transaction the caller's uncommitted rows would be invisible to other
        # connections: everything runs in line on the caller's.
        reader = F.MatrixReader(loaded.spec, reuse_buffer=True)  # a chunk at a time
        total = 0
        for k, (first_id, last_id) in enumerate(ranges):
            total += _score_range(loaded, reader, as_of, first_id, last_id)
            if progress:
                progress((k + 1) / len(ranges))
    logger.info("ml.scoring.done model=%s leads=%s", loaded.pk, total)
    return total


def _score_range(
    loaded: LoadedModel,
    reader: F.MatrixReader,
    as_of: dt.datetime,
    first_id: int,
    last_id: int,
    write: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> int:
    """Score the leads with ids in [first_id, last_id] and hand their probabilities to
    `write`, or by default replace the range's stored probabilities in one transaction;
    returns how many leads were scored."""
    ids, matrix = reader.read(as_of, first_id, last_id)
    probabilities = loaded.predict_matrix(matrix, bulk=True)
    if write is not None:
        write(ids, probabilities)
        return int(ids.size)
    write_probabilities(ids, probabilities, covering=(first_id, last_id))
    return int(ids.size)


def _score_in_threads(
    loaded: LoadedModel,
    as_of: dt.datetime,
    ranges: list[tuple[int, int]],
    progress: Callable[[float], None] | None,
    write: Callable[[np.ndarray, np.ndarray], None],
) -> int:
    """Score the id ranges in `WORKERS` threads (`scoring.threads.in_threads`), each with its
    own reader, handing each chunk's probabilities to `write`."""
    readers = threading.local()

    def score(id_range: tuple[int, int]) -> int:
        if not hasattr(readers, "reader"):
            readers.reader = F.MatrixReader(loaded.spec, reuse_buffer=True)  # a chunk at a time
        first_id, last_id = id_range
        return _score_range(loaded, readers.reader, as_of, first_id, last_id, write)

    return sum(in_threads(ranges, score, workers=WORKERS, name="ml-score", progress=progress))
