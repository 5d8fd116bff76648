"""Fenced bulk writes and one run per version (issue #20 items 1 and 6): a chunk of a run whose
rule set is no longer live writes nothing; the runs sweep sends stalled chunks again within
minutes and ends hopeless runs; one active run per rule set and one version per draft, even
when two callers race."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection, connections
from django.utils import timezone

from scoring.jobs import JobStatus
from scoring.models import Lead, LeadTransition, RescoreChunk, RescoreRun, RuleSet, ScoreHistory
from scoring.services import rescore
from scoring.services.rescore import CHUNK_TASK
from scoring.services.rulesets import ruleset_import, ruleset_publish
from tests.factories import LeadFactory
from tests.scoring.test_rescore import DOCUMENT

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
# Every lead qualifies under this one: a stale write would leave history and transitions.
GENEROUS = {**DOCUMENT, "name": "Generous", "rules": [{**DOCUMENT["rules"][0], "points": 90}]}


@pytest.fixture
def leads(db, settings):
    settings.RESCORE_CHUNK_SIZE = 50
    return LeadFactory.create_batch(150, employees=500, created_at=NOW - dt.timedelta(days=5))


def test_publishing_supersedes_the_previous_versions_run_and_its_chunks(leads):
    old = ruleset_import(GENEROUS, publish=True)
    run = RescoreRun.objects.get(rule_set=old, status=JobStatus.QUEUED)

    new = ruleset_import(DOCUMENT, publish=True)

    run.refresh_from_db()
    assert run.status == JobStatus.SUPERSEDED and "Superseded" in run.error
    assert set(run.chunks.values_list("status", flat=True)) == {JobStatus.SUPERSEDED}
    assert RescoreRun.objects.get(rule_set=new).status == JobStatus.QUEUED


def test_a_late_chunk_of_an_archived_version_writes_nothing(leads):
    old = ruleset_import(GENEROUS, publish=True)
    run = RescoreRun.objects.get(rule_set=old)
    chunk = run.chunks.order_by("pk").first()
    ruleset_import(DOCUMENT, publish=True)
    # As if the redelivered message came before anything marked the run: only the live check
    # in the write's transaction stands between it and the leads.
    RescoreRun.objects.filter(pk=run.pk).update(status=JobStatus.RUNNING)
    RescoreChunk.objects.filter(pk=chunk.pk).update(status=JobStatus.QUEUED)

    assert rescore.rescore_chunk(chunk.pk).scored == 0

    assert not Lead.objects.filter(rule_set_version=old.version).exists()
    assert not ScoreHistory.objects.filter(rule_set_version=old.version).exists()
    assert not LeadTransition.objects.filter(rule_set_version=old.version).exists()
    run.refresh_from_db()
    assert run.status == JobStatus.SUPERSEDED


def test_the_live_versions_chunks_still_write(leads):
    live = ruleset_import(GENEROUS, publish=True)
    run = RescoreRun.objects.get(rule_set=live)
    for chunk in run.chunks.all():
        rescore.rescore_chunk(chunk.pk)
    assert Lead.objects.filter(rule_set_version=live.version).count() == 150
    run.refresh_from_db()
    assert run.status == JobStatus.DONE


def test_the_sweep_resends_a_stalled_runs_chunks_and_they_finish(
    leads, settings, sent_tasks, django_capture_on_commit_callbacks
):
    settings.RESCORE_STALL_SECONDS = 60
    live = ruleset_import(GENEROUS, publish=True)
    run = RescoreRun.objects.get(rule_set=live)
    # One chunk done, then the worker's main process died: the others' messages are gone.
    first = run.chunks.order_by("pk").first()
    rescore.rescore_chunk(first.pk)
    sent_tasks.on(CHUNK_TASK, rescore.rescore_chunk)

    with django_capture_on_commit_callbacks(execute=True):
        # Too early: a run that progressed a moment ago is left alone.
        assert rescore.rescore_runs_sweep().resent == 0
        later = timezone.now() + dt.timedelta(seconds=61)
        assert rescore.rescore_runs_sweep(later).resent == 2

    run.refresh_from_db()
    assert run.status == JobStatus.DONE and run.progress_done == 3
    assert sorted(args[0] for args in sent_tasks.named(CHUNK_TASK)) == sorted(
        run.chunks.exclude(pk=first.pk).values_list("pk", flat=True)
    )
    assert Lead.objects.filter(rule_set_version=live.version).count() == 150


def test_a_chunk_that_never_finishes_fails_its_run_after_the_attempts(
    leads, settings, sent_tasks, django_capture_on_commit_callbacks
):
    settings.RESCORE_STALL_SECONDS = 60
    settings.RESCORE_CHUNK_MAX_ATTEMPTS = 2
    live = ruleset_import(GENEROUS, publish=True)
    run = RescoreRun.objects.get(rule_set=live)
    moment = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(2):
            moment += dt.timedelta(seconds=61)
            assert rescore.rescore_runs_sweep(moment).resent == 3
        # Each chunk re-sent once per stall period, not at every sweep.
        assert rescore.rescore_runs_sweep(moment + dt.timedelta(seconds=30)).resent == 0
        outcome = rescore.rescore_runs_sweep(moment + dt.timedelta(seconds=61))
    assert (outcome.resent, outcome.failed) == (0, 3)
    run.refresh_from_db()
    assert run.status == JobStatus.FAILED and "Stalled" in run.error
    assert len(sent_tasks.named(CHUNK_TASK)) == 6  # two sends of each of the three


def test_the_sweep_ends_active_runs_of_archived_rule_sets(leads):
    old = ruleset_import(GENEROUS, publish=True)
    run = RescoreRun.objects.get(rule_set=old)
    # An archive that did not go through publish (e.g. an older release's publish).
    RuleSet.objects.filter(pk=old.pk).update(status=RuleSet.Status.ARCHIVED)
    assert rescore.rescore_runs_sweep().superseded == 1
    run.refresh_from_db()
    assert run.status == JobStatus.SUPERSEDED


def test_a_database_constraint_allows_one_active_run_per_rule_set(leads):
    from django.db import IntegrityError, transaction

    live = ruleset_import(GENEROUS, publish=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        RescoreRun.objects.create(rule_set=live)
    # An ended run does not count.
    RescoreRun.objects.filter(rule_set=live).update(status=JobStatus.DONE)
    RescoreRun.objects.create(rule_set=live)


def test_a_rescore_as_of_a_given_time_supersedes_the_run_under_way(leads):
    live = ruleset_import(GENEROUS, publish=True)
    queued = RescoreRun.objects.get(rule_set=live)

    run = rescore.rescore_all(as_of=NOW, inline=True)

    queued.refresh_from_db()
    assert queued.status == JobStatus.SUPERSEDED
    assert run.status == JobStatus.DONE and run.leads_scored == 150


def test_publishing_a_draft_twice_gives_one_version_and_one_run(leads):
    draft = ruleset_import(GENEROUS)
    stale = RuleSet.objects.get(pk=draft.pk)  # a second request's copy, still a draft
    first = ruleset_publish(draft)
    again = ruleset_publish(stale)
    assert first.version == again.version == 1
    assert RuleSet.objects.exclude(version=None).count() == 1
    assert RescoreRun.objects.filter(rule_set=draft).count() == 1


def _race(target, count: int = 2) -> list:
    """Run `target()` in `count` threads released together; their results (or errors)."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def worker(index: int) -> None:
        try:
            barrier.wait()
            results[index] = target()
        except Exception as exc:  # reported to the test
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


@pytest.mark.faults
@pytest.mark.postgres  # concurrent writers; SQLite serialises them anyway
def test_two_processes_publishing_one_draft_at_once_give_one_version(transactional_db):
    LeadFactory.create_batch(20)
    draft = ruleset_import(GENEROUS)

    results = _race(lambda: ruleset_publish(RuleSet.objects.get(pk=draft.pk)).version)

    assert results == [1, 1], results
    assert list(RuleSet.objects.exclude(version=None).values_list("version", flat=True)) == [1]
    assert RescoreRun.objects.count() == 1
    connection.close()


@pytest.mark.faults
@pytest.mark.postgres  # concurrent writers; SQLite serialises them anyway
def test_two_processes_starting_a_rescore_at_once_get_one_run(transactional_db):
    LeadFactory.create_batch(20)
    ruleset_import(GENEROUS, publish=True, user=None)
    RescoreRun.objects.update(status=JobStatus.DONE)

    results = _race(lambda: rescore.rescore_all(inline=False).pk)

    assert results[0] == results[1] and isinstance(results[0], int), results
    assert RescoreRun.objects.filter(status__in=["queued", "running"]).count() == 1
