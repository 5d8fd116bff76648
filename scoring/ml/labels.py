"""What a model learns to predict: did the lead reach a lifecycle stage (customer by default)?

Two regimes, chosen from the data:

- **dated** (some lead has a time for the stage or a later one): a global cut-off T (default
  derived from the data: its latest creation or stage time minus the horizon, the latest
  cut-off whose label window is fully observed; not the wall clock, so a historical funnel
  trains without flags). The population is the
  leads created at or before T that had not reached the stage by T; the label is 1 when the
  lead reached it in (T, T + horizon]. Leads that are at or past the stage but have no time
  for it cannot be placed in time and are left out.
- **dateless** (no lead has such a time, e.g. the imported `Leads.csv`, where converted leads
  have `lifecycle_stage = customer` and no `converted_at`): the label is "ever reached the
  stage", the cut-off is the latest creation time and every lead is in the population.

Errors that a flag of `train_model` fixes name the flag (`--cutoff`, `--horizon-days`,
`--label`).

"Reached" a funnel stage means being at it or beyond it (a lead that went straight to
customer reached MQL); `disqualified` is off the funnel and means exactly that stage."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
from django.db import connection
from django.utils import timezone

from leadscoring.db import epoch_seconds_sql, is_postgres
from scoring.models import FUNNEL_STAGES, STAGE_TIME_FIELDS

DEFAULT_STAGE = "customer"
DEFAULT_HORIZON_DAYS = 90


class LabelError(ValueError):
    """The label cannot be built (unknown stage, no leads, or only one class)."""


@dataclass(frozen=True, eq=False)
class Labels:
    """The population to learn from: lead ids (ascending), 0/1 labels, creation times
    (epoch seconds), and how the label was defined."""

    ids: np.ndarray
    y: np.ndarray
    created_epoch: np.ndarray
    stage: str
    cutoff: dt.datetime
    horizon_days: int | None  # None when dateless ("ever")
    dated: bool

    @property
    def n(self) -> int:
        return int(self.ids.shape[0])

    def latest(self, n: int) -> Labels:
        """The `n` most recently created leads of the population (ties by id), still in id
        order: a training window ending at the cut-off. Raises LabelError when one outcome
        is left out."""
        if n <= 0 or n >= self.n:
            return self
        order = np.lexsort((self.ids, self.created_epoch))
        rows = np.sort(order[-n:])
        kept = Labels(
            ids=self.ids[rows],
            y=self.y[rows],
            created_epoch=self.created_epoch[rows],
            stage=self.stage,
            cutoff=self.cutoff,
            horizon_days=self.horizon_days,
            dated=self.dated,
        )
        _check_both_outcomes(kept)
        return kept

    def describe(self) -> str:
        if not self.dated:
            return f"reached {self.stage} (ever; the data has no stage dates)"
        return (
            f"reached {self.stage} within {self.horizon_days} days after "
            f"{self.cutoff:%Y-%m-%d %H:%M} UTC"
        )


def reached_stages(stage: str) -> tuple[str, ...]:
    """The lifecycle stages that count as having reached `stage`."""
    if stage in FUNNEL_STAGES:
        return FUNNEL_STAGES[FUNNEL_STAGES.index(stage) :]
    if stage == "disqualified":
        return ("disqualified",)
    raise LabelError(
        f"Unknown stage {stage!r}: choose one of {', '.join((*FUNNEL_STAGES, 'disqualified'))}."
    )


def build_labels(
    stage: str = DEFAULT_STAGE,
    *,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    cutoff: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> Labels:
    """The labelled population (one query over the lead table). Raises LabelError."""
    stages = reached_stages(stage)
    if horizon_days <= 0:
        raise LabelError("The horizon must be a positive number of days.")
    time_columns = [STAGE_TIME_FIELDS[s] for s in stages if s in STAGE_TIME_FIELDS]
    postgres = is_postgres()
    # NULL times as NaN in SQL, so NumPy reads the columns without a Python check per value.
    timed = (
        (lambda c: f"COALESCE({epoch_seconds_sql(c)}, 'NaN'::float8)")
        if postgres
        else epoch_seconds_sql
    )
    select = ["id", epoch_seconds_sql("created_at"), "lifecycle_stage"]
    select += [timed(c) for c in time_columns]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(select)} FROM scoring_lead ORDER BY id")
        rows = cursor.fetchall()
    if not rows:
        raise LabelError("There are no leads to learn from.")
    columns = list(zip(*rows, strict=True))
    ids = np.asarray(columns[0], dtype=np.int64)
    created = np.asarray(columns[1], dtype=np.float64)
    at_stage = np.isin(np.asarray(columns[2], dtype=object), np.asarray(stages, dtype=object))
    times = np.array(
        [
            np.asarray(col, dtype=np.float64)
            if postgres
            else [np.nan if v is None else float(v) for v in col]
            for col in columns[3:]
        ],
        dtype=np.float64,
    ).reshape(len(time_columns), len(ids))
    reached_at = np.full(len(ids), np.nan)
    if time_columns:
        with np.errstate(invalid="ignore"):
            reached_at = np.fmin.reduce(times, axis=0)
    now = now or timezone.now()
    dated = bool(np.isfinite(reached_at).any())
    if not dated:
        latest = _whole_second_after(float(np.nanmax(created)))
        labels = Labels(
            ids=ids,
            y=at_stage.astype(np.int64),
            created_epoch=created,
            stage=stage,
            cutoff=cutoff or min(now, latest),
            horizon_days=None,
            dated=False,
        )
    else:
        if cutoff is None:
            cutoff = min(now, data_end()) - dt.timedelta(days=horizon_days)
        t = cutoff.timestamp()
        end = t + horizon_days * 86400.0
        placed = np.isfinite(reached_at) | ~at_stage
        before = np.isfinite(reached_at) & (reached_at <= t)
        keep = (created <= t) & placed & ~before
        y = (np.isfinite(reached_at) & (reached_at > t) & (reached_at <= end)).astype(np.int64)
        labels = Labels(
            ids=ids[keep],
            y=y[keep],
            created_epoch=created[keep],
            stage=stage,
            cutoff=cutoff,
            horizon_days=horizon_days,
            dated=True,
        )
    _check_both_outcomes(labels)
    return labels


def data_end() -> dt.datetime:
    """The latest time the leads' data shows: their latest creation or stage time (one
    query). Falls back to now when there are no leads."""
    columns = ["created_at", *STAGE_TIME_FIELDS.values()]
    select = ", ".join(f"MAX({epoch_seconds_sql(column)})" for column in columns)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {select} FROM scoring_lead")
        values = [float(v) for v in cursor.fetchone() if v is not None]
    if not values:
        return timezone.now()
    return _whole_second_after(max(values))


def _whole_second_after(epoch: float) -> dt.datetime:
    """The epoch rounded up to a whole second: epochs read back from the database carry float
    rounding (SQLite's julianday keeps milliseconds), so a cut-off at the latest time itself
    could fall a microsecond before the lead it was read from."""
    return dt.datetime.fromtimestamp(math.ceil(epoch), tz=dt.UTC)


def _fix_hint(labels: Labels) -> str:
    """What to change, naming the flags of `train_model`."""
    if not labels.dated:
        return "choose another stage with --label"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT MIN({epoch_seconds_sql('created_at')}) FROM scoring_lead")
        (first,) = cursor.fetchone()
    start = dt.datetime.fromtimestamp(float(first), tz=dt.UTC) if first is not None else None
    span = f"the leads' data runs from {start:%Y-%m-%d} to {data_end():%Y-%m-%d}" if start else ""
    return (
        f"choose a cut-off with --cutoff ISO8601 ({span}), a longer --horizon-days, or another "
        "stage with --label"
    )


def _check_both_outcomes(labels: Labels) -> None:
    if labels.n == 0:
        raise LabelError(
            f"No leads are left to learn from ({labels.describe()}): {_fix_hint(labels)}."
        )
    positives = int(labels.y.sum())
    if positives == 0 or positives == labels.n:
        raise LabelError(
            f"Every lead has the same label ({positives} of {labels.n} {labels.describe()}); "
            f"a model needs both outcomes: {_fix_hint(labels)}."
        )
