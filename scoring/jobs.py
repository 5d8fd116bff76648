"""The one background-job behaviour: status, progress, heartbeat, error and dispatch.

Every long-running piece of work that a page or command waits on (a rescore run and its
chunks, an impact preview, a training run, a file import, a vendor sync) is a row of a model
that inherits `Job`. They share one set of statuses and one way to move between them:

- `job_claim`: queued -> running with a conditional UPDATE, so a task delivered twice runs
  the job once (the caller checks the row count);
- `job_heartbeat`: progress and "still alive", only while the row is running, so a worker
  that lost its job (reaped, failed elsewhere) learns it from the row count;
- `job_finish` / `job_fail`: the end, once (a finished row is never finished again).

`dispatch` is the one way to enqueue a Celery task: after the surrounding transaction
commits, by task name and JSON arguments. The name and arguments are stored on the job rows
it is given, so a job whose message the broker never received stays recoverable (a periodic
sweep can send `task_name(*task_args)` again for `queued` rows). When the broker cannot be
reached the caller chooses what the job becomes: failed with a clear message
(`UNREACHABLE_FAIL`), or left queued with a message saying it will start once the worker is
reachable (`UNREACHABLE_KEEP`). Either way nothing raises into the request: pages show the
job's status and error instead of a 500.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from django.conf import settings
from django.db import models, transaction
from django.db.models.functions import Coalesce
from django.utils import timezone

logger = logging.getLogger(__name__)


class JobStatus(models.TextChoices):
    """The statuses of every job. The first four are the life of any job; the others are
    ends (or pauses) that only some kinds reach: an atomic import that rejected rows rolls
    back, a sync stops at its time budget (partial), at a vendor's limit or when its worker
    disappears."""

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    ROLLED_BACK = "rolled_back", "Rolled back (atomic, rows rejected)"
    PARTIAL = "partial", "Partial (continues)"
    RATE_LIMITED = "rate_limited", "Rate limited (retrying)"
    PAUSED = "paused", "Paused (daily API limit)"
    ABANDONED = "abandoned", "Abandoned (worker stopped)"
    SUPERSEDED = "superseded", "Superseded (a newer version is live)"


#: A job in one of these is not over yet.
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
#: Progress reported as a fraction is stored in thousandths (done of PROGRESS_SCALE).
PROGRESS_SCALE = 1000

UNREACHABLE_FAIL = "fail"
UNREACHABLE_KEEP = "keep"
Unreachable = Literal["fail", "keep"]

BROKER_DOWN_FAILED = (
    "The task queue could not be reached ({error}), so this job was not started; "
    "try again once the worker is back."
)
BROKER_DOWN_QUEUED = (
    "Queued; will start when the worker is reachable (the task queue could not be reached: "
    "{error})."
)


class Job(models.Model):
    """Abstract base of every job model: the fields a page needs to show a job's state.

    `progress_done` of `progress_total` is in the job's own unit (chunks, rows) or, for jobs
    that only know a fraction, in thousandths. `task_name` and `task_args` are what
    `dispatch` sent (or tried to send) for it."""

    Status = JobStatus

    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress_done = models.BigIntegerField(default=0)
    progress_total = models.BigIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    task_name = models.CharField(max_length=200, blank=True, default="")
    task_args = models.JSONField(default=list, blank=True)

    #: Whether `jobs_resend` sends this kind's queued tasks again (a kind with its own sweep
    #: says no).
    resend_by_jobs_sweep: ClassVar[bool] = True

    class Meta:
        abstract = True

    @property
    def progress(self) -> float:
        """How far the job has got, from 0 to 1 (1 once it is done)."""
        if self.status == JobStatus.DONE:
            return 1.0
        if not self.progress_total:
            return 0.0
        return min(1.0, self.progress_done / self.progress_total)

    @property
    def finished(self) -> bool:
        """Over, one way or another (for pages: stop polling)."""
        return self.status not in ACTIVE


def _fraction(fraction: float) -> dict[str, int]:
    return {"progress_done": round(fraction * PROGRESS_SCALE), "progress_total": PROGRESS_SCALE}


def job_claim(
    jobs: models.QuerySet, *, statuses: Sequence[str] = (JobStatus.QUEUED,), **fields: Any
) -> int:
    """Move the rows of `jobs` that are in `statuses` to running, in one conditional UPDATE;
    returns how many this call claimed (0: another worker has it, or it is over)."""
    now = timezone.now()
    return jobs.filter(status__in=list(statuses)).update(
        status=JobStatus.RUNNING, started_at=now, heartbeat_at=now, error="", **fields
    )


def job_claimable(jobs: models.QuerySet) -> models.QuerySet:
    """The rows of `jobs` that a delivered task may (re)start: queued ones, and running ones
    whose heartbeat is older than the hard task time limit (their worker is certainly gone:
    a live task would have been stopped by then). A running job with a fresher heartbeat
    belongs to a live worker, so a duplicate delivery (a re-send by `jobs_resend` of a message
    that was only waiting in a busy queue) leaves it alone."""
    cutoff = timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
    return jobs.filter(
        models.Q(status=JobStatus.QUEUED)
        | models.Q(status=JobStatus.RUNNING, heartbeat_at__lt=cutoff)
    )


def job_heartbeat(
    jobs: models.QuerySet,
    *,
    done: int | None = None,
    total: int | None = None,
    fraction: float | None = None,
    **fields: Any,
) -> int:
    """Record that running jobs are alive, with their progress (`done` of `total`, or a
    `fraction`) and any other fields; returns how many rows are still running (0: the job
    was reaped or failed elsewhere, and the caller should stop)."""
    values: dict[str, Any] = {"heartbeat_at": timezone.now(), **fields}
    if fraction is not None:
        values.update(_fraction(fraction))
    if done is not None:
        values["progress_done"] = done
    if total is not None:
        values["progress_total"] = total
    return jobs.filter(status=JobStatus.RUNNING).update(**values)


def job_finish(
    jobs: models.QuerySet,
    *,
    status: str = JobStatus.DONE,
    statuses: Sequence[str] = ACTIVE,
    **fields: Any,
) -> int:
    """End the jobs in `statuses` (active ones by default) with `status` (done by default)
    and any result fields; a job already over is left alone. Returns how many rows this call
    finished."""
    now = timezone.now()
    values: dict[str, Any] = {"status": status, "finished_at": now, "heartbeat_at": now}
    if status == JobStatus.DONE and "progress_done" not in fields:
        values["progress_done"] = models.F("progress_total")
    return jobs.filter(status__in=list(statuses)).update(**{**values, **fields})


def job_fail(
    jobs: models.QuerySet, error: str, *, status: str = JobStatus.FAILED, **fields: Any
) -> int:
    """End active jobs as failed with `error` (cut to 2,000 characters)."""
    return job_finish(jobs, status=status, error=error[:2000], **fields)


# ---------------------------------------------------------------------------------------------
# Dispatch


@dataclass
class Dispatch:
    """What became of one `dispatch`: `sent` is None until the transaction commits (and for
    ever if it rolls back), then True or False; `error` says why the broker refused."""

    task_name: str
    args: list[Any]
    sent: bool | None = None
    error: str = ""
    jobs_marked: int = field(default=0, repr=False)


def dispatch(
    task_name: str,
    args: Sequence[Any] = (),
    *,
    jobs: models.QuerySet | None = None,
    waiting: models.QuerySet | None = None,
    countdown: float | None = None,
    unreachable: Unreachable = UNREACHABLE_FAIL,
) -> Dispatch:
    """Enqueue `task_name(*args)` once the current transaction commits (at once outside
    one). `jobs` are the rows the task works on: the name and arguments are stored on them
    now, and if the broker cannot be reached those still queued are failed with a clear
    message (`unreachable="fail"`) or keep a message saying they start when the worker is
    back (`"keep"`, for work a sweep re-sends). `waiting` are jobs that wait on this task
    without being its job (a rescore run on its chunks): they share the outcome of an
    unreachable broker, not the task name. Never raises for a broker outage; the
    returned `Dispatch` says what happened once the callback has run."""
    handle = Dispatch(task_name=task_name, args=list(args))
    if jobs is not None:
        jobs.update(task_name=task_name, task_args=handle.args)
    transaction.on_commit(lambda: _send(handle, (jobs, waiting), countdown, unreachable))
    return handle


def _send(
    handle: Dispatch,
    affected: tuple[models.QuerySet | None, ...],
    countdown: float | None,
    unreachable: Unreachable,
) -> None:
    from leadscoring.celery import app

    try:
        # One quick retry: a page waits on this, and a broker that is down stays down.
        app.send_task(
            handle.task_name,
            args=handle.args,
            countdown=countdown,
            retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.5},
        )
    except Exception as exc:  # kombu raises several kinds for "broker unreachable"
        handle.sent = False
        handle.error = exc.__class__.__name__
        logger.warning("jobs.dispatch.failed task=%s error=%s", handle.task_name, handle.error)
        for jobs in affected:
            if jobs is not None:
                handle.jobs_marked += _mark_unreachable(jobs, handle.error, unreachable)
        return
    handle.sent = True


def _mark_unreachable(jobs: models.QuerySet, error: str, unreachable: Unreachable) -> int:
    queued = jobs.filter(status=JobStatus.QUEUED)
    if unreachable == UNREACHABLE_KEEP:
        return queued.update(error=BROKER_DOWN_QUEUED.format(error=error))
    return job_fail(queued, BROKER_DOWN_FAILED.format(error=error))


def jobs_resend(now: datetime | None = None) -> int:
    """Beat: send again the task of every queued job whose task has not started within
    JOB_RESEND_SECONDS of its last send, for every kind of job (preview, training, import,
    sync now, webhook intake, ...). This is what makes a dispatch survive the broker: the
    intent is the job row, written in the same transaction as the action, and a message the
    broker never took (it was down) or lost (a restart without persistence) is sent again
    once it is back. Each task claims its job, so a late duplicate does nothing.

    The `heartbeat_at` of a queued row is when its task was last sent by this sweep (its
    creation before that). Rows that share one task (a training run's models) are sent
    once. Kinds with their own sweep opt out (`resend_by_jobs_sweep = False`). Returns how
    many tasks were sent."""
    from django.apps import apps

    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.JOB_RESEND_SECONDS)
    sent = 0
    for model in apps.get_models():
        if not issubclass(model, Job) or not model.resend_by_jobs_sweep:
            continue
        stale = (
            model.objects.filter(status=JobStatus.QUEUED)
            .exclude(task_name="")
            .alias(last_sent=Coalesce("heartbeat_at", "created_at"))
            .filter(last_sent__lt=cutoff)
        )
        tasks: dict[tuple[str, str], list[int]] = {}
        for pk, name, args in stale.values_list("pk", "task_name", "task_args"):
            tasks.setdefault((name, json.dumps(args)), []).append(pk)
        for (name, args_json), pks in tasks.items():
            with transaction.atomic():
                rows = model.objects.filter(pk__in=pks, status=JobStatus.QUEUED)
                if rows.update(heartbeat_at=now):
                    dispatch(name, json.loads(args_json), jobs=rows, unreachable=UNREACHABLE_KEEP)
                    sent += 1
    if sent:
        logger.warning("jobs.resent tasks=%s", sent)
    return sent
