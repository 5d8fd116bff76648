"""Bulk probabilities of the active model, stored on `Lead.model_probability`.

Per chunk of leads (an id range): one query for lead columns and one for event aggregates
(`features.read_frame`), the category coding and the pipeline's `predict_proba` vectorised
over the whole chunk, and one set-based write (PostgreSQL: COPY into a temp table + one
UPDATE ... FROM; SQLite: one executemany). The loaded artifact is cached per process by
(model id, hash), so each chunk does not unpickle it again.

Hooking into the rescore: `refresh_probabilities(first_id, last_id, as_of=...)` inside the
chunk's transaction, before the rule scores are read, makes the blend use fresh
probabilities; it does nothing (returns 0) when no model is active."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.utils import timezone
from threadpoolctl import threadpool_limits

from scoring.ml import features as F
from scoring.ml import registry
from scoring.models import Lead, MLModel
from scoring.prefetch import prefetched

logger = logging.getLogger(__name__)

DEFAULT_CHUNK = 50000
SMALL_WRITE = 1000
PREFETCH_CHUNKS = 1
COPY_NULL = "\\N"


@dataclass(frozen=True, eq=False)
class LoadedModel:
    pk: int
    sha256: str
    algorithm: str
    spec: F.FeatureSpec
    estimator: Any
    reference: list[float | None]

    def predict(self, raw: F.RawFrame) -> np.ndarray:
        if raw.n == 0:
            return np.zeros(0)
        # One OpenMP thread: gradient boosting's prediction threads spin at barriers when
        # they compete for a busy core (at 1,000,000 leads on this 2-core box: 23 s with
        # two threads); the other core is PostgreSQL's.
        with threadpool_limits(limits=1, user_api="openmp"):
            return self.estimator.predict_proba(F.encode(self.spec, raw))[:, 1]


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
    raw = F.read_frame(loaded.spec, as_of or timezone.now(), first_id, last_id)
    if raw.n == 0:
        return 0
    write_probabilities(raw.ids, loaded.predict(raw))
    return raw.n


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
    raw = F.read_frame(loaded.spec, as_of or timezone.now(), int(ids[0]), int(ids[-1]), ids=ids)
    if raw.n == 0:
        return 0
    write_probabilities(raw.ids, loaded.predict(raw))
    return raw.n


def score_all(
    *,
    as_of: dt.datetime | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    progress: Callable[[float], None] | None = None,
) -> int:
    """Store the active model's probability on every lead (chunk by chunk, one transaction per
    chunk); with no active model, clear every probability so no stale one is blended."""
    loaded = active_loaded()
    if loaded is None:
        clear_probabilities()
        return 0
    as_of = as_of or timezone.now()
    n_chunks = max(1, len(F.id_ranges(chunk_size)))
    total = 0
    # Outside a transaction on PostgreSQL, a second thread (its own connection) writes chunk k
    # while chunk k + 1 is predicted; inside one, everything runs in line on the caller's.
    background = connection.vendor == "postgresql" and not connection.in_atomic_block
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ml-score-writer")
    pending: list[Future] = []
    try:
        for i, raw in enumerate(_frames(loaded.spec, as_of, chunk_size)):
            probabilities = loaded.predict(raw)
            if background:
                while len(pending) >= PREFETCH_CHUNKS:
                    pending.pop(0).result()  # raises the writer's error, if any
                pending.append(writer.submit(_write_chunk, raw.ids, probabilities))
            else:
                _write_chunk(raw.ids, probabilities)
            total += raw.n
            if progress:
                progress(min(1.0, (i + 1) / n_chunks))
        for future in pending:
            future.result()
    finally:
        if background:
            writer.submit(_close_connection)  # the writer thread's own connection
        writer.shutdown(wait=True)
    logger.info("ml.scoring.done model=%s leads=%s", loaded.pk, total)
    return total


def _close_connection() -> None:
    # Looked up when called, so in the calling thread: `connection` is per thread.
    connection.close()


def _write_chunk(ids: np.ndarray, probabilities: np.ndarray) -> None:
    """One chunk's probabilities in one transaction."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # A derived value the next run recomputes: a crash may lose the last chunks'
            # commits (never corrupt them), so no chunk waits for its WAL flush.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit = off")
        write_probabilities(ids, probabilities)


def _frames(spec: F.FeatureSpec, as_of: dt.datetime, chunk_size: int) -> Iterator[F.RawFrame]:
    """The chunks' frames; on PostgreSQL outside a transaction they are read one chunk ahead
    by a thread with its own connection, so reading (mostly PostgreSQL's work and the decoding
    of lead columns) overlaps with prediction (which releases the GIL) and the writes. Inside
    a transaction the caller's uncommitted rows would be invisible to another connection, so
    the chunks are read in line."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield from F.iter_frames(spec, as_of, chunk_size)
        return
    yield from prefetched(
        F.iter_frames(spec, as_of, chunk_size),
        depth=PREFETCH_CHUNKS,
        name="ml-score-reader",
        on_thread_exit=_close_connection,  # the reader thread's own connection
    )


def clear_probabilities() -> int:
    return Lead.objects.filter(model_probability__isnull=False).update(model_probability=None)


def write_probabilities(ids: np.ndarray, probabilities: np.ndarray) -> None:
    """Set `model_probability` for these leads in one statement (after one COPY on
    PostgreSQL). Probabilities are clipped into [0, 1]; NaN is stored as NULL."""
    probabilities = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, 1.0)
    if connection.vendor == "postgresql" and ids.size <= SMALL_WRITE:
        # A few leads (the real-time path): one UPDATE from arrays, no temp table.
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE scoring_lead AS l SET model_probability = t.p FROM "
                "unnest(%s::bigint[], %s::float8[]) AS t (id, p) WHERE l.id = t.id "
                "AND l.model_probability IS DISTINCT FROM t.p",
                [ids.tolist(), [None if p != p else p for p in probabilities.tolist()]],
            )
        return
    if connection.vendor == "postgresql":
        text = "".join(
            f"{i}\t{COPY_NULL if p != p else repr(p)}\n"
            for i, p in zip(ids.tolist(), probabilities.tolist(), strict=True)
        )
        # ON COMMIT DROP needs a transaction: a savepoint inside the caller's, or our own.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "CREATE TEMP TABLE IF NOT EXISTS ml_probability_buffer "
                "(id bigint, p double precision) ON COMMIT DROP"
            )
            cursor.execute("TRUNCATE ml_probability_buffer")
            with cursor.cursor.copy("COPY ml_probability_buffer (id, p) FROM STDIN") as copy:
                copy.write(text)
            # Statistics for the planner (a fresh temp table has none) and an explicit id
            # range, as the rescore's write does, so the UPDATE joins by hash or merge.
            cursor.execute("ANALYZE ml_probability_buffer")
            cursor.execute(
                "UPDATE scoring_lead AS l SET model_probability = t.p "
                "FROM ml_probability_buffer t WHERE l.id = t.id "
                "AND l.id BETWEEN %s AND %s "
                "AND l.model_probability IS DISTINCT FROM t.p",
                [int(ids.min()), int(ids.max())],
            )
        return
    with connection.cursor() as cursor:
        cursor.executemany(
            "UPDATE scoring_lead SET model_probability = %s WHERE id = %s",
            [
                (None if p != p else p, i)
                for i, p in zip(ids.tolist(), probabilities.tolist(), strict=True)
            ],
        )
