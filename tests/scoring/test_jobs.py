"""The one job behaviour (scoring.jobs): claim, heartbeat, finish, fail, and the one dispatch
helper with a real broker, with the broker down (a closed port), and used by every job kind."""

from __future__ import annotations

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from integrations.imports import IMPORT_TASK, import_job_create
from integrations.models import ImportJob, SyncRun
from integrations.services import sync_enqueue
from scoring.jobs import (
    PROGRESS_SCALE,
    UNREACHABLE_KEEP,
    JobStatus,
    dispatch,
    job_claim,
    job_fail,
    job_finish,
    job_heartbeat,
)
from scoring.models import MLModel, PreviewRun, RescoreChunk, RescoreRun, RuleSet
from scoring.services import ml_models
from scoring.services.preview import PREVIEW_TASK, preview_start
from scoring.services.rescore import CHUNK_TASK, rescore_all
from scoring.services.rulesets import ruleset_import
from tests.factories import LeadFactory

DOCUMENT = {
    "name": "Job rules",
    "bands": [{"name": "Cold", "min_score": 0}, {"name": "MQL", "min_score": 50}],
    "rules": [{"kind": "attribute", "field": "employees", "op": "gte", "value": 200, "points": 10}],
}


def a_job(**fields) -> ImportJob:
    return ImportJob.objects.create(file_name="f.csv", kind="leads", **fields)


def this(job):
    return type(job).objects.filter(pk=job.pk)


# ---------------------------------------------------------------------------------------------
# The base


def test_a_job_is_claimed_once(db):
    job = a_job()
    assert job_claim(this(job)) == 1
    assert job_claim(this(job)) == 0  # a task delivered twice runs the job once
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    assert job.started_at is not None and job.heartbeat_at is not None


def test_a_running_job_is_claimable_again_only_once_its_worker_is_surely_gone(db, settings):
    from datetime import timedelta

    from django.utils import timezone

    from scoring.jobs import job_claimable

    queued, running = a_job(), a_job()
    job_claim(this(running))
    assert job_claimable(this(queued)).exists()
    # A live worker's job: a duplicate delivery (a re-send) leaves it alone.
    assert not job_claimable(this(running)).exists()
    old = timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 1)
    this(running).update(heartbeat_at=old)
    assert job_claimable(this(running)).exists()


def test_a_claim_clears_the_message_a_job_waited_with(db):
    job = a_job(error="Queued; will start when the worker is reachable")
    job_claim(this(job))
    job.refresh_from_db()
    assert job.error == ""


def test_a_heartbeat_records_progress_only_while_the_job_runs(db):
    job = a_job()
    assert job_heartbeat(this(job), done=1, total=4) == 0  # not claimed yet
    job_claim(this(job))
    before = ImportJob.objects.get(pk=job.pk).heartbeat_at
    assert job_heartbeat(this(job), done=1, total=4, created=7) == 1
    job.refresh_from_db()
    assert (job.progress_done, job.progress_total, job.created) == (1, 4, 7)
    assert job.progress == 0.25 and job.heartbeat_at >= before
    job_fail(this(job), "boom")
    assert job_heartbeat(this(job), done=2) == 0  # the worker learns it lost the job


def test_a_fraction_of_progress_is_stored_in_thousandths(db):
    job = a_job()
    job_claim(this(job))
    job_heartbeat(this(job), fraction=0.4567)
    job.refresh_from_db()
    assert (job.progress_done, job.progress_total) == (457, PROGRESS_SCALE)
    assert job.progress == pytest.approx(0.457)


def test_finishing_completes_the_progress_and_happens_once(db):
    job = a_job()
    job_claim(this(job))
    job_heartbeat(this(job), done=3, total=10)
    assert job_finish(this(job), created=10) == 1
    job.refresh_from_db()
    assert job.status == JobStatus.DONE and job.finished_at is not None
    assert (job.progress_done, job.progress, job.finished) == (10, 1.0, True)
    assert job_finish(this(job), status=JobStatus.FAILED) == 0
    assert job_fail(this(job), "too late") == 0
    job.refresh_from_db()
    assert job.status == JobStatus.DONE and job.error == ""


def test_failing_records_the_error_cut_to_size(db):
    job = a_job()
    assert job_fail(this(job), "x" * 5000) == 1
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and len(job.error) == 2000
    assert job.finished and job.finished_at is not None


def test_a_job_can_end_in_a_kind_specific_status(db):
    job = a_job()
    job_claim(this(job))
    job_finish(this(job), status=JobStatus.ROLLED_BACK)
    job.refresh_from_db()
    assert job.get_status_display() == "Rolled back (atomic, rows rejected)"
    assert job.finished


# ---------------------------------------------------------------------------------------------
# Dispatch


def test_dispatch_sends_after_the_commit_and_records_the_task_on_the_job(
    db, sent_tasks, django_capture_on_commit_callbacks
):
    job = a_job()
    with django_capture_on_commit_callbacks(execute=True):
        handle = dispatch(IMPORT_TASK, [job.pk], jobs=this(job))
        assert sent_tasks == [] and handle.sent is None  # not before the commit
    assert sent_tasks == [(IMPORT_TASK, [job.pk])] and handle.sent is True
    job.refresh_from_db()
    assert (job.task_name, job.task_args, job.status) == (IMPORT_TASK, [job.pk], "queued")


def test_a_rolled_back_dispatch_sends_nothing(db, sent_tasks, django_capture_on_commit_callbacks):
    from django.db import transaction

    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        dispatch(IMPORT_TASK, [1])
        raise RuntimeError
    assert sent_tasks == []


def test_with_the_broker_down_the_job_fails_with_a_clear_message(
    db, broker_down, django_capture_on_commit_callbacks
):
    job = a_job()
    with django_capture_on_commit_callbacks(execute=True):
        handle = dispatch(IMPORT_TASK, [job.pk], jobs=this(job))
    assert handle.sent is False and handle.error == "OperationalError"
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.finished_at is not None
    assert "task queue could not be reached" in job.error
    # What was to be sent stays on the row.
    assert (job.task_name, job.task_args) == (IMPORT_TASK, [job.pk])


def test_with_the_broker_down_a_job_can_stay_queued_for_a_re_send(
    db, broker_down, django_capture_on_commit_callbacks
):
    job, waiting = a_job(), a_job()
    with django_capture_on_commit_callbacks(execute=True):
        dispatch(
            IMPORT_TASK,
            [job.pk],
            jobs=this(job),
            waiting=this(waiting),
            unreachable=UNREACHABLE_KEEP,
        )
    for row in (job, waiting):
        row.refresh_from_db()
        assert row.status == JobStatus.QUEUED
        assert row.error.startswith("Queued; will start when the worker is reachable")
    assert job.task_name == IMPORT_TASK and waiting.task_name == ""


def test_a_dispatch_without_a_job_only_logs_a_broker_outage(
    db, broker_down, caplog, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        handle = dispatch("scoring.tasks.rescore_pending_task")
    assert handle.sent is False
    assert "jobs.dispatch.failed task=scoring.tasks.rescore_pending_task" in caplog.text


@pytest.mark.broker
def test_a_dispatched_job_is_run_by_a_real_worker(celery_worker, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    upload = SimpleUploadedFile("leads.csv", b"email\na@example.com\nb@example.com\n")
    job = import_job_create(upload, kind="leads", user=None)  # no transaction: sent at once
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.finished:
            break
        time.sleep(0.1)
    assert job.status == JobStatus.DONE, job.error
    assert (job.created, job.progress_done, job.task_name) == (2, 2, IMPORT_TASK)
    assert job.started_at is not None and job.heartbeat_at is not None


# ---------------------------------------------------------------------------------------------
# Every job kind dispatches through it


def _preview(user):
    live = ruleset_import(DOCUMENT, publish=True)
    draft = ruleset_import({**DOCUMENT, "name": "Draft"})
    assert live.status == RuleSet.Status.PUBLISHED
    return lambda: preview_start(draft, user=user), PreviewRun, PREVIEW_TASK


def _import(user):
    upload = SimpleUploadedFile("leads.csv", b"email\na@example.com\n")
    return lambda: import_job_create(upload, kind="leads", user=user), ImportJob, IMPORT_TASK


def _training(user):
    return (
        lambda: ml_models.training_request(label_stage="customer", user=user),
        MLModel,
        ml_models.TRAIN_TASK,
    )


DEACTIVATE_URL = "/models/deactivate/"

KINDS = {"preview": _preview, "import": _import, "training": _training}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_job_kind_is_sent_with_its_task_recorded(
    kind, role_users, settings, tmp_path, sent_tasks, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = tmp_path
    start, model, task = KINDS[kind](role_users["ops"])
    with django_capture_on_commit_callbacks(execute=True):
        start()
    row = model.objects.latest("pk")
    assert [name for name, _ in sent_tasks] == [task]
    assert row.task_name == task and row.task_args == sent_tasks[0][1]
    assert row.status == JobStatus.QUEUED


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_job_kind_waits_queued_with_a_clear_message_when_the_broker_is_down(
    kind, role_users, settings, tmp_path, broker_down, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = tmp_path
    start, model, _ = KINDS[kind](role_users["ops"])
    with django_capture_on_commit_callbacks(execute=True):
        start()
    assert model.objects.exists()
    for row in model.objects.all():
        # Kept, for the jobs sweep to send once the broker is back (tests/faults).
        assert row.status == JobStatus.QUEUED and row.task_name
        assert row.error.startswith("Queued; will start when the worker is reachable")


def test_a_rescore_run_sends_a_task_per_chunk(
    db, settings, sent_tasks, django_capture_on_commit_callbacks
):
    settings.RESCORE_CHUNK_SIZE = 2
    ruleset_import(DOCUMENT, publish=True)
    LeadFactory.create_batch(3)
    with django_capture_on_commit_callbacks(execute=True):
        run = rescore_all(inline=False)
    chunks = list(RescoreChunk.objects.filter(run=run).order_by("pk"))
    assert sent_tasks.named(CHUNK_TASK) == [[chunk.pk] for chunk in chunks]
    assert all(chunk.task_name == CHUNK_TASK for chunk in chunks)


def test_a_rescore_run_waits_queued_when_the_broker_is_down(
    db, settings, broker_down, django_capture_on_commit_callbacks
):
    settings.RESCORE_CHUNK_SIZE = 2
    ruleset_import(DOCUMENT, publish=True)
    LeadFactory.create_batch(3)
    with django_capture_on_commit_callbacks(execute=True):
        run = rescore_all(inline=False)
    run.refresh_from_db()
    assert run.status == RescoreRun.Status.QUEUED
    assert "will start when the worker is reachable" in run.error
    # Its chunks keep their task, for a re-send; running one claims the run again.
    chunk = RescoreChunk.objects.filter(run=run).order_by("pk").first()
    assert (chunk.status, chunk.task_args) == ("queued", [chunk.pk])
    from scoring.services.rescore import rescore_chunk

    rescore_chunk(chunk.pk)
    run.refresh_from_db()
    assert run.status == RescoreRun.Status.RUNNING and run.error == ""


def test_the_model_page_jobs_go_through_the_service(
    client_as, role_users, sent_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_as("ops").post("/models/", {"label": "customer"})
    assert response.status_code == 302
    run_key = MLModel.objects.values_list("run_key", flat=True).first()
    ops_id = role_users["ops"].pk
    assert sent_tasks.named(ml_models.TRAIN_TASK) == [[ops_id, "customer", run_key]]
    with django_capture_on_commit_callbacks(execute=True):
        client_as("ops").post(DEACTIVATE_URL)
    assert sent_tasks.named(ml_models.SCORE_TASK) == [[]]


def test_training_with_the_broker_down_says_it_waits_on_the_page(
    client_as, broker_down, transactional_db
):
    # transactional_db: no surrounding transaction, so the task is sent during the request.
    response = client_as("ops").post("/models/", {"label": "customer"}, follow=True)
    assert response.status_code == 200
    assert "will start when the worker is reachable" in response.content.decode()


def test_a_sync_is_sent_by_name_and_reported_when_the_broker_is_down(
    db, broker_down, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        handle = sync_enqueue("mixpanel")
    assert handle.sent is False and handle.task_name == "integrations.tasks.sync_task"
    # The request is a queued run, kept for the jobs sweep while the broker is down.
    run = SyncRun.objects.get()
    assert (run.status, run.trigger, run.task_args) == ("queued", "manual", handle.args)
    assert handle.args == ["mixpanel", False, "manual", run.pk]
    assert run.error.startswith("Queued; will start when the worker is reachable")


# ---------------------------------------------------------------------------------------------
# The migrations keep every job's data


@pytest.mark.django_db(transaction=True)
def test_the_migrations_keep_each_jobs_data():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("scoring", "0010_leadprobability"), ("integrations", "0002_sync")]
    after = [("scoring", "0011_job_base"), ("integrations", "0003_job_base")]
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    try:
        executor.migrate(before)
        old = executor.loader.project_state(before).apps
        rule_set = old.get_model("scoring", "RuleSet").objects.create(name="r")
        run = old.get_model("scoring", "RescoreRun").objects.create(
            rule_set=rule_set, status="running", chunks_total=4, chunks_done=3
        )
        preview = old.get_model("scoring", "PreviewRun").objects.create(
            rule_set=rule_set, status="running", progress=0.25
        )
        model = old.get_model("scoring", "MLModel").objects.create(
            run_key="k", algorithm="logistic", status="training", progress=0.5
        )
        job = old.get_model("integrations", "ImportJob").objects.create(
            file_name="f.csv", kind="leads", rows_total=10, rows_done=7
        )
        connection_row = old.get_model("integrations", "Connection").objects.create(
            vendor="mixpanel"
        )
        sync = old.get_model("integrations", "SyncRun").objects.create(
            connection=connection_row, status="succeeded"
        )

        executor = MigrationExecutor(connection)
        executor.migrate(after)
        new = executor.loader.project_state(after).apps

        def row(app, name, pk):
            return new.get_model(app, name).objects.get(pk=pk)

        migrated = row("scoring", "RescoreRun", run.pk)
        assert (migrated.progress_done, migrated.progress_total) == (3, 4)
        migrated = row("scoring", "PreviewRun", preview.pk)
        assert (migrated.progress_done, migrated.progress_total) == (250, PROGRESS_SCALE)
        migrated = row("scoring", "MLModel", model.pk)
        assert (migrated.status, migrated.progress_done) == ("running", 500)
        migrated = row("integrations", "ImportJob", job.pk)
        assert (migrated.progress_done, migrated.progress_total) == (7, 10)
        migrated = row("integrations", "SyncRun", sync.pk)
        assert migrated.status == "done" and migrated.created_at == sync.started_at
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(latest)
