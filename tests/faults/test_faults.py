"""The fault suite (issue #20): faults done for real to a running stack, then the promises of
docs/operations.md checked: every lead carries the live version, no run or job is stuck, and
nothing was lost or done twice.

- A worker's main process killed (SIGKILL) mid-run: its chunk's message stays unacked in
  Redis until the visibility timeout (half an hour); the runs sweep sends it again.
- Chunks delivered after a newer version was published (the killed worker's run, superseded
  while its messages waited) write nothing.
- The worker's database connections terminated mid-run (pg_terminate_backend): the chunk is
  retried, not failed.
- The broker stopped (a Redis of the test's own, no persistence) during publish, sync now,
  webhook intake and event ingest: no 500, each says it waits, and all of it is done once the
  broker is back, by the beat jobs alone.
- Concurrent publishes: tests/scoring/test_rescore_fencing.py (marked `faults` too).

"Mid-run" is made certain, not hoped for: a second connection holds the row locks of one
chunk's leads, so the worker is blocked inside that chunk's write when the fault strikes."""

from __future__ import annotations

import json
import time

import psycopg
import pytest
from django.db import connection
from django.db.models import Count

from leadscoring.celery import app
from leadscoring.schedules import CELERY_BEAT_SCHEDULE
from scoring.jobs import ACTIVE, JobStatus
from scoring.models import (
    Event,
    Identity,
    Lead,
    LeadTransition,
    PendingRescore,
    PreviewRun,
    RescoreChunk,
    RescoreRun,
    RuleSet,
    ScoreHistory,
)
from scoring.services.rescore import rescore_runs_sweep
from scoring.services.rulesets import ruleset_import, ruleset_publish
from tests.faults.conftest import bulk_leads, database_url, thread_worker, wait_for

# The integration tests' fake-vendor environment, reused as it is.
from tests.integrations.conftest import (  # noqa: F401
    _integration_env,
    _loopback_only,
    _plain_server,
    http_server,
    hubspot_crm,
    hubspot_env,
    sleeps,
)
from tests.scoring.test_rescore import DOCUMENT

pytestmark = pytest.mark.faults

CHUNK = 50
N_LEADS = 600  # 12 chunks
GENEROUS = {**DOCUMENT, "name": "Generous", "rules": [{**DOCUMENT["rules"][0], "points": 90}]}
LESS = {**DOCUMENT, "name": "Less", "rules": [{**DOCUMENT["rules"][0], "points": 30}]}


def live_version() -> int:
    return RuleSet.objects.get(status=RuleSet.Status.PUBLISHED).version


def assert_every_lead_carries(version: int, n_leads: int) -> None:
    assert Lead.objects.count() == n_leads
    versions = dict(Lead.objects.values_list("rule_set_version").annotate(n=Count("id")))
    assert versions == {version: n_leads}, versions


def assert_nothing_doubled(version: int) -> None:
    doubled = (
        ScoreHistory.objects.filter(rule_set_version=version)
        .values("lead_id", "as_of")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    assert not doubled.exists(), list(doubled[:5])
    twice = (
        LeadTransition.objects.filter(rule_set_version=version)
        .values("lead_id", "kind")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    assert not twice.exists(), list(twice[:5])


def assert_no_run_stuck() -> None:
    assert not RescoreRun.objects.filter(status__in=ACTIVE).exists()


class LeadLock:
    """A second connection holding the row locks of some leads, so that a chunk covering them
    blocks in its write (UPDATE) until `release()`."""

    def __init__(self, first_id: int, last_id: int) -> None:
        self.connection = psycopg.connect(database_url().replace("postgres://", "postgresql://"))
        self.pid = self.connection.info.backend_pid
        self.connection.execute(
            "SELECT id FROM scoring_lead WHERE id BETWEEN %s AND %s FOR UPDATE",
            [first_id, last_id],
        )

    def someone_waits(self) -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'"
            )
            return cursor.fetchone()[0] > 0

    def release(self) -> None:
        self.connection.rollback()
        self.connection.close()


def chunk_range(ids: list[int], index: int) -> tuple[int, int]:
    """The lead ids of chunk `index` (0-based), as the planner splits dense ids."""
    return ids[index * CHUNK], ids[index * CHUNK + CHUNK - 1]


def run_progress(run_id: int) -> int:
    return RescoreRun.objects.values_list("progress_done", flat=True).get(pk=run_id)


@pytest.fixture
def bulk(transactional_db, settings):
    """N_LEADS leads and a live v1 (scored by nobody yet); chunks of CHUNK leads."""
    settings.RESCORE_CHUNK_SIZE = CHUNK
    ids = bulk_leads(N_LEADS)
    ruleset_publish(ruleset_import(DOCUMENT), rescore=False)
    return ids


def publish(document: dict) -> RescoreRun:
    published = ruleset_publish(ruleset_import(document))
    return RescoreRun.objects.get(rule_set=published)


@pytest.mark.postgres  # the worker subprocess shares the test database through the server
def test_a_worker_killed_mid_run_loses_no_chunk_the_sweep_sends_it_again(
    bulk, own_broker, worker_processes, quick_sweeps
):
    lock = LeadLock(*chunk_range(bulk, 5))
    run = publish(GENEROUS)
    worker = worker_processes.start(own_broker.url)
    wait_for(lambda: run_progress(run.pk) == 5 and lock.someone_waits(), 60, "chunk 6 blocked")

    worker_processes.kill(worker)
    lock.release()
    worker_processes.start(own_broker.url)
    # Chunks 7-12 were still queued; chunk 6's message is unacked, lost for half an hour.
    wait_for(lambda: run_progress(run.pk) == 11, 60, "the queued chunks")
    run.refresh_from_db()
    assert run.status == JobStatus.RUNNING

    wait_for(lambda: rescore_runs_sweep().resent, 10, "the sweep to find the stalled chunk")
    wait_for(lambda: RescoreRun.objects.get(pk=run.pk).finished, 60, "the run to finish")

    run.refresh_from_db()
    assert run.status == JobStatus.DONE, (run.error, worker_processes.logs()[-3000:])
    assert run.leads_scored == N_LEADS and run.progress_done == 12
    assert_every_lead_carries(live_version(), N_LEADS)
    assert_nothing_doubled(live_version())
    assert_no_run_stuck()


@pytest.mark.postgres  # the worker subprocess shares the test database through the server
def test_chunks_delivered_after_a_newer_publish_write_nothing(
    bulk, own_broker, worker_processes, quick_sweeps
):
    lock = LeadLock(*chunk_range(bulk, 5))
    stale = publish(GENEROUS)
    worker = worker_processes.start(own_broker.url)
    wait_for(lambda: run_progress(stale.pk) == 5 and lock.someone_waits(), 60, "chunk 6 blocked")
    worker_processes.kill(worker)
    lock.release()

    # Published while the old run's chunks 7-12 still wait in the queue, ahead of the new ones.
    fresh = publish(LESS)
    worker_processes.start(own_broker.url)
    wait_for(lambda: RescoreRun.objects.get(pk=fresh.pk).finished, 60, "the new run")

    stale.refresh_from_db()
    assert stale.status == JobStatus.SUPERSEDED
    fresh.refresh_from_db()
    assert fresh.status == JobStatus.DONE and fresh.leads_scored == N_LEADS
    assert_every_lead_carries(live_version(), N_LEADS)
    # The old version wrote chunks 1-5 before the crash, and nothing after it.
    first_unwritten = chunk_range(bulk, 5)[0]
    old = stale.rule_set.version
    assert not ScoreHistory.objects.filter(
        rule_set_version=old, lead_id__gte=first_unwritten
    ).exists()
    assert not LeadTransition.objects.filter(
        rule_set_version=old, lead_id__gte=first_unwritten
    ).exists()
    assert set(
        RescoreChunk.objects.filter(run=stale, first_lead_id__gte=first_unwritten).values_list(
            "status", flat=True
        )
    ) == {JobStatus.SUPERSEDED}
    assert_nothing_doubled(live_version())
    assert_no_run_stuck()


@pytest.mark.postgres  # pg_terminate_backend
def test_terminated_database_connections_mid_run_are_retried_not_failed(
    bulk, own_broker, worker_processes, quick_sweeps
):
    lock = LeadLock(*chunk_range(bulk, 3))
    run = publish(GENEROUS)
    worker_processes.start(own_broker.url)
    wait_for(lambda: run_progress(run.pk) == 3 and lock.someone_waits(), 60, "chunk 4 blocked")

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid NOT IN (pg_backend_pid(), %s)",
            [lock.pid],
        )
        assert cursor.fetchone()[0] >= 1  # the worker's
    lock.release()
    wait_for(lambda: RescoreRun.objects.get(pk=run.pk).finished, 90, "the run to finish")

    run.refresh_from_db()
    assert run.status == JobStatus.DONE, (run.error, worker_processes.logs()[-3000:])
    retried = RescoreChunk.objects.get(run=run, first_lead_id=chunk_range(bulk, 3)[0])
    assert retried.attempts >= 2  # failed once (transient), then done
    assert "AdminShutdown" in worker_processes.logs() or "terminat" in worker_processes.logs()
    assert_every_lead_carries(live_version(), N_LEADS)
    assert_nothing_doubled(live_version())
    assert_no_run_stuck()


def run_beat_once() -> None:
    """What beat sends each period: the three sweeps (through the broker, to the worker)."""
    for name in ("rescore-runs-sweep", "jobs-resend", "rescore-pending-sweep"):
        app.send_task(CELERY_BEAT_SCHEDULE[name]["task"])


def test_with_the_broker_stopped_publish_sync_webhook_and_ingest_are_done_once_it_is_back(
    bulk,
    own_broker,
    quick_sweeps,
    client_as,
    role_users,
    hubspot_env,  # noqa: F811
    monkeypatch,
):
    from rest_framework.test import APIClient
    from werkzeug import Response

    from integrations.models import SyncRun
    from scoring.services.preview import preview_start
    from tests.connectors.test_hubspot import BATCH_UPDATE, FakeSearch, payload_contacts
    from tests.integrations.test_webhooks import SECRET
    from tests.integrations.test_webhooks import post as webhook_post

    FakeSearch(hubspot_env, payload_contacts(), result_limit=10_000)

    def batch_update(request):  # the scores pushed back once the run is done (timing varies)
        inputs = request.get_json()["inputs"]
        return Response(
            json.dumps({"status": "COMPLETE", "results": inputs}), content_type="application/json"
        )

    hubspot_env.expect_request(BATCH_UPDATE, method="POST").respond_with_handler(batch_update)
    monkeypatch.setenv("HUBSPOT_APP_SECRET", SECRET)
    draft = ruleset_import(GENEROUS)
    ops, admin = client_as("ops"), client_as("admin")
    api = APIClient()
    api.force_authenticate(role_users["ops"])

    own_broker.stop()

    published = ops.post(f"/rules/{draft.pk}/publish/", {"note": "Broker down"}, follow=True)
    assert published.status_code == 200
    assert "Rescore queued; will start when the worker is reachable" in published.text
    synced = admin.post("/integrations/hubspot/sync", follow=True)
    assert synced.status_code == 200
    assert "sync queued; will start when the worker is reachable" in synced.text
    hooked = webhook_post()
    assert hooked.status_code == 202 and hooked.json()["queued"] is True
    event = {
        "external_id": "fault-event-1",
        "event_type": "demo_request",
        "occurred_at": "2026-01-02T10:00:00Z",
        "email": "fault0@example.com",
    }
    ingested = api.post("/api/v1/events/", data=json.dumps(event), content_type="application/json")
    assert ingested.status_code < 300, ingested.content
    assert PendingRescore.objects.filter(lead__email="fault0@example.com").exists()
    preview = preview_start(ruleset_import(LESS))
    preview.refresh_from_db()
    assert preview.status == JobStatus.QUEUED
    assert preview.error.startswith("Queued; will start when the worker is reachable")

    own_broker.start()  # empty: whatever was queued before the outage is gone too
    app._pool = app.amqp._producer_pool = None  # connections to the old server are dead
    version = live_version()

    def everything_done() -> bool:
        return not (
            RescoreRun.objects.filter(status__in=ACTIVE).exists()
            or SyncRun.objects.filter(status__in=ACTIVE).exists()
            or PreviewRun.objects.filter(status__in=ACTIVE).exists()
            or PendingRescore.objects.exists()
        )

    with thread_worker():
        for _ in range(60):  # beats, a second apart
            if everything_done():
                break
            run_beat_once()
            time.sleep(1)
        assert everything_done(), "not all done 60 beats after the broker came back"

    assert RescoreRun.objects.get(rule_set__version=version).status == JobStatus.DONE
    # The three HubSpot contacts the syncs brought in are scored in real time.
    assert_every_lead_carries(version, N_LEADS + 3)
    assert_nothing_doubled(version)
    runs = sorted(SyncRun.objects.values_list("trigger", "status"))
    assert runs == [("manual", JobStatus.DONE), ("webhook", JobStatus.DONE)], runs
    assert Identity.objects.filter(source="hubspot").count() == 3
    assert Event.objects.filter(external_id="fault-event-1").count() == 1
    preview.refresh_from_db()
    assert preview.status == JobStatus.DONE and preview.result
