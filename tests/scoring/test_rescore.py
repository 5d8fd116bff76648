"""Bulk and real-time rescoring against the real database (and a real worker where it says)."""

from __future__ import annotations

import datetime as dt
import json
import time

import numpy as np
import psycopg
import pytest
from django.core.management import call_command
from django.utils import timezone

from scoring.engine import aggregate_events
from scoring.models import (
    Event,
    Lead,
    LeadTransition,
    PendingRescore,
    RescoreChunk,
    RescoreRun,
    ScoreHistory,
)
from scoring.rule_inputs import LeadSelection, read_behaviour, read_lead_columns
from scoring.services import rescore
from scoring.services.rescore import compiled_rule_set
from scoring.services.rulesets import ruleset_import
from tests.factories import EventFactory, LeadFactory

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)

DOCUMENT = {
    "name": "Test rules",
    "bands": [
        {"name": "Cold", "min_score": 0},
        {"name": "Warm", "min_score": 25},
        {"name": "MQL", "min_score": 50, "qualifies": True},
        {"name": "Hot", "min_score": 80},
    ],
    "rules": [
        {"kind": "attribute", "field": "employees", "op": "gte", "value": 200, "points": 10},
        {"kind": "event", "event_type": "demo_request", "points": 20, "window_days": 30},
        {
            "kind": "event",
            "event_type": "pricing_page_visit",
            "points": 5,
            "window_days": 30,
            "half_life_days": 14,
            "cap": 20,
        },
        {"kind": "inactivity", "days": 45, "points": -10},
    ],
}


@pytest.fixture
def live(db):
    return ruleset_import(DOCUMENT, publish=True)


def add_events(lead, event_type, days_ago, count=1):
    for _ in range(count):
        EventFactory(
            lead=lead, event_type=event_type, occurred_at=NOW - dt.timedelta(days=days_ago)
        )


WHERE_RULES = [
    {
        "kind": "event",
        "event_type": "page_view",
        "points": 3,
        "window_days": 60,
        "where": {"path": "/pricing"},
    },
    {
        "kind": "event",
        "event_type": "page_view",
        "points": 2,
        "window_days": 30,
        "half_life_days": 10,
        "where": {"path": "/pricing", "trial": True},
    },
    {
        "kind": "event",
        "event_type": "email_click",
        "points": 1,
        "window_days": 90,
        "where": {"campaign": 7},
    },
    {
        # The same key as a rule above with 1 for True: a condition of its own.
        "kind": "event",
        "event_type": "page_view",
        "points": 4,
        "window_days": 60,
        "where": {"trial": 1},
    },
]
PROPERTIES = [
    {},
    {"path": "/pricing"},
    {"path": "/pricing", "trial": True},
    {"path": "/pricing", "trial": 1},
    {"path": "/docs", "trial": True},
    {"campaign": 7},
    {"campaign": 7.0},
    {"campaign": "7"},
]


# Operator conditions: PostgreSQL evaluates them in SQL, the engine in Python; the values sit on
# the edges (numeric strings, padding, case, casefolding, blanks, lists, bools, huge exponents).
OPERATOR_RULES = [
    {
        "kind": "event",
        "event_type": "page_view",
        "points": 1,
        "window_days": 60,
        "where": {key: test},
    }
    for key, test in [
        ("score", {"gte": 9}),
        ("score", {"lte": 6.5}),
        ("score", {"between": [7, 8]}),
        ("score", {"eq": 9}),
        ("score", {"neq": "9"}),
        ("score", {"in": [9, "ten", True]}),
        ("score", {"not_in": [9]}),
        ("score", {"is_set": True}),
        ("score", {"is_not_set": True}),
        ("path", {"contains": "PRICING"}),
        ("path", {"not_contains": "docs"}),
        ("path", {"eq": "/pricing"}),
        ("word", {"eq": "strasse"}),
        ("word", {"in": ["GROSS", "x"]}),
    ]
]
OPERATOR_PROPERTIES = [
    {},
    {"score": 9},
    {"score": 9.0},
    {"score": "9"},
    {"score": " 10 "},
    {"score": "6.5"},
    {"score": 7.5},
    {"score": "1e999"},
    {"score": "-inf"},
    {"score": "NaN"},
    {"score": "ten"},
    {"score": "TEN "},
    {"score": ""},
    {"score": "   "},
    {"score": None},
    {"score": True},
    {"score": [9]},
    {"score": {"value": 9}},
    {"path": "/Pricing"},
    {"path": " /pricing "},
    {"path": "/docs/pricing"},
    {"word": "Straße"},
    {"word": "groß"},
]


@pytest.mark.parametrize("where_rules", ["none", "equality", "operators"])
def test_sql_aggregates_equal_the_engines_numpy_reference(live, where_rules):
    properties = PROPERTIES
    if where_rules == "equality":
        # Property conditions (several per rule, shared between rules, bools that must not
        # equal 1, numbers that equal across int and float) on top of the plain rules.
        live = ruleset_import({**DOCUMENT, "rules": DOCUMENT["rules"] + WHERE_RULES})
    elif where_rules == "operators":
        live = ruleset_import({**DOCUMENT, "rules": DOCUMENT["rules"] + OPERATOR_RULES})
        properties = OPERATOR_PROPERTIES
    rng = np.random.default_rng(7)
    leads = LeadFactory.create_batch(12, created_at=NOW - dt.timedelta(days=200))
    types = ["demo_request", "pricing_page_visit", "page_view", "email_click"]
    for lead in leads:
        for _ in range(int(rng.integers(0, 12 if where_rules != "operators" else 40))):
            EventFactory(
                lead=lead,
                event_type=types[int(rng.integers(0, len(types)))],
                occurred_at=NOW - dt.timedelta(days=float(rng.uniform(-5, 80))),
                properties=properties[int(rng.integers(0, len(properties)))],
            )
    compiled = compiled_rule_set(live)
    selection = LeadSelection(first_id=leads[0].pk, last_id=leads[-1].pk)
    columns = read_lead_columns(compiled, selection)
    from_sql = read_behaviour(compiled, selection, columns.ids, columns.created_epoch, NOW)

    events = list(
        Event.objects.order_by("id").values("lead_id", "event_type", "occurred_at", "properties")
    )
    position = {lead_id: i for i, lead_id in enumerate(columns.ids.tolist())}
    reference = aggregate_events(
        compiled,
        np.array([position[e["lead_id"]] for e in events], dtype=np.int64),
        np.array([e["event_type"] for e in events], dtype=object),
        np.array([e["occurred_at"].timestamp() for e in events], dtype=np.float64),
        [e["properties"] for e in events],
        columns.created_epoch,
        NOW.timestamp(),
        columns.n,
    )
    # SQLite's julianday() carries times to about a millisecond: ages agree to ~1e-8 days.
    close = {"rtol": 1e-7, "atol": 1e-6}
    np.testing.assert_array_equal(from_sql.counts, reference.counts)
    np.testing.assert_allclose(from_sql.decayed, reference.decayed, **close)
    np.testing.assert_allclose(from_sql.days_since_activity, reference.days_since_activity, **close)
    # The preview asks for the decayed sums alone: the same sums.
    without_counts = read_behaviour(
        compiled, selection, columns.ids, columns.created_epoch, NOW, with_counts=False
    )
    np.testing.assert_allclose(without_counts.decayed, reference.decayed, **close)
    np.testing.assert_allclose(
        without_counts.days_since_activity, reference.days_since_activity, **close
    )


def test_lead_columns_read_each_attribute_with_its_json_type(db):
    compiled = compiled_rule_set(
        ruleset_import(
            {
                "name": "Attributes",
                "bands": [{"name": "Cold", "min_score": 0}],
                "rules": [
                    {"kind": "attribute", "field": f"attributes.{key}", "op": "is_set", "points": 1}
                    for key in ("plan", "seats", "trial", "nested")
                ],
            }
        )
    )
    documents = [
        {"plan": "team", "seats": 12, "trial": True, "nested": {"a": [1, 2]}},
        {"plan": "team", "seats": 2.5, "trial": False, "nested": None},
        {"plan": "enterprise", "seats": "12"},
        {},
        {"plan": None, "seats": 0, "trial": True},
    ]
    leads = [LeadFactory(attributes=document) for document in documents]
    columns = read_lead_columns(compiled, LeadSelection(first_id=leads[0].pk, last_id=leads[-1].pk))
    for key in ("plan", "seats", "trial", "nested"):
        read = columns.fields[f"attributes.{key}"].tolist()
        expected = [document.get(key) for document in documents]
        assert read == expected, key
        # bools stay bools and numbers stay numbers: 1 == True in Python, so compare types too
        assert [type(v) for v in read] == [type(v) for v in expected], key


def test_a_bulk_rescore_writes_scores_bands_breakdowns_and_history(live):
    hot = LeadFactory(employees=500, created_at=NOW - dt.timedelta(days=10))
    add_events(hot, "demo_request", 2, count=3)
    cold = LeadFactory(employees=10, created_at=NOW - dt.timedelta(days=100))

    run = rescore.rescore_all(as_of=NOW, inline=True)

    assert run.status == RescoreRun.Status.DONE
    assert run.leads_scored == 2
    hot.refresh_from_db()
    cold.refresh_from_db()
    assert (hot.score, hot.band) == (70, "MQL")
    assert (cold.score, cold.band) == (0, "Cold")  # -10 inactivity clamped at the floor
    assert hot.rule_set_version == live.version
    demo = next(entry for entry in hot.breakdown if entry["kind"] == "event")
    assert demo["count"] == 3
    assert demo["points"] == 60
    assert ScoreHistory.objects.filter(lead=hot, band="MQL", as_of=NOW).exists()


def test_crossing_the_threshold_sets_mql_time_once_and_writes_an_outbox_row(live):
    lead = LeadFactory(employees=500, created_at=NOW - dt.timedelta(days=10))
    add_events(lead, "demo_request", 1, count=2)
    rescore.rescore_all(as_of=NOW, inline=True)
    lead.refresh_from_db()
    assert lead.qualified and lead.mql_at == NOW
    assert lead.lifecycle_stage == "mql"
    assert LeadTransition.objects.filter(lead=lead, kind="qualified").count() == 1

    later = NOW + dt.timedelta(days=5)
    rescore.rescore_all(as_of=later, inline=True)
    lead.refresh_from_db()
    assert lead.mql_at == NOW  # set once
    assert LeadTransition.objects.filter(lead=lead).count() == 1


def test_a_lead_that_jumps_straight_past_the_threshold_qualifies(live):
    lead = LeadFactory(employees=500, created_at=NOW - dt.timedelta(days=10))
    add_events(lead, "demo_request", 1, count=4)  # 10 + 80 points: Hot, above MQL
    rescore.rescore_all(as_of=NOW, inline=True)
    lead.refresh_from_db()
    assert lead.band == "Hot"
    assert lead.qualified and lead.mql_at == NOW
    assert LeadTransition.objects.filter(lead=lead, kind="qualified").count() == 1


def test_falling_just_below_the_threshold_and_back_does_not_fire_again(live, settings):
    settings.QUALIFY_HYSTERESIS_POINTS = 5
    lead = LeadFactory(employees=10, created_at=NOW - dt.timedelta(days=10))
    add_events(lead, "demo_request", 25, count=2)  # 40 points
    add_events(lead, "pricing_page_visit", 0, count=2)  # 10 points, decaying
    rescore.rescore_all(as_of=NOW, inline=True)
    lead.refresh_from_db()
    assert lead.score == 50 and lead.qualified

    # Two days later the pricing visits have decayed a little: 49 points, within the margin.
    rescore.rescore_all(as_of=NOW + dt.timedelta(days=2), inline=True)
    lead.refresh_from_db()
    assert lead.score < 50 and lead.qualified
    # The demo requests leave the 30-day window: far below the threshold, it stops qualifying.
    rescore.rescore_all(as_of=NOW + dt.timedelta(days=6), inline=True)
    lead.refresh_from_db()
    assert not lead.qualified
    kinds = list(
        LeadTransition.objects.filter(lead=lead)
        .exclude(kind="band_changed")  # the bands moved too: MQL -> Warm -> MQL -> Warm
        .order_by("pk")
        .values_list("kind", flat=True)
    )
    assert kinds == ["qualified", "unqualified"]


def test_a_rescore_of_the_past_inserts_history_where_it_belongs(live):
    lead = LeadFactory(employees=500, created_at=NOW - dt.timedelta(days=60))
    add_events(lead, "demo_request", 5, count=2)  # within 30 days of NOW only
    rescore.rescore_all(as_of=NOW, inline=True)
    past = NOW - dt.timedelta(days=40)
    rescore.rescore_all(as_of=past, inline=True)
    timeline = list(
        ScoreHistory.objects.filter(lead=lead).order_by("as_of").values_list("as_of", "band")
    )
    assert timeline == [(past, "Cold"), (NOW, "MQL")]


def test_an_unchanged_band_writes_no_history_row(live):
    lead = LeadFactory(employees=500, created_at=NOW - dt.timedelta(days=5))
    rescore.rescore_all(as_of=NOW, inline=True)
    rescore.rescore_all(as_of=NOW + dt.timedelta(hours=1), inline=True)
    assert ScoreHistory.objects.filter(lead=lead).count() == 1


def test_leads_are_split_into_chunks_and_a_done_chunk_is_not_redone(live, settings):
    settings.RESCORE_CHUNK_SIZE = 100
    LeadFactory.create_batch(250, created_at=NOW - dt.timedelta(days=5))
    run = rescore.rescore_all(as_of=NOW, inline=True)
    assert run.progress_total == 3 and run.progress_done == 3
    assert run.leads_scored == 250
    chunk = RescoreChunk.objects.filter(run=run).first()
    assert rescore.rescore_chunk(chunk.pk).scored == chunk.leads_scored
    run.refresh_from_db()
    assert run.progress_done == 3  # counted once


def test_a_second_request_joins_the_run_under_way_instead_of_starting_another(live):
    LeadFactory.create_batch(3)
    first = rescore.rescore_all(inline=False)
    second = rescore.rescore_all(inline=False)
    assert first.pk == second.pk
    # The publish's own run (no leads then, done at once) and this one.
    assert RescoreRun.objects.filter(rule_set=live).count() == 2
    assert RescoreRun.objects.filter(rule_set=live, status__in=["queued", "running"]).count() == 1


def test_a_failed_chunk_fails_its_run_but_keeps_the_other_chunks(live, settings):
    settings.RESCORE_CHUNK_SIZE = 100
    LeadFactory.create_batch(150)
    run = rescore.rescore_all(inline=False)
    chunks = list(run.chunks.order_by("id"))
    rescore.rescore_chunk(chunks[0].pk)
    rescore.rescore_chunk_failed(chunks[1].pk, "boom", final=True)
    run.refresh_from_db()
    assert run.status == RescoreRun.Status.FAILED
    assert run.progress_done == 1
    assert RescoreChunk.objects.get(pk=chunks[0].pk).status == RescoreChunk.Status.DONE


def test_request_rescore_marks_each_lead_once(live, django_capture_on_commit_callbacks):
    lead = LeadFactory()
    with django_capture_on_commit_callbacks() as callbacks:
        rescore.request_rescore([lead.pk, lead.pk])
        rescore.request_rescore([lead.pk])
    assert PendingRescore.objects.filter(lead=lead).count() == 1
    assert len(callbacks) == 1  # debounced: one task for the burst


def test_marks_left_while_the_broker_was_down_are_rescored_by_the_sweep(live):
    lead = LeadFactory(employees=500, created_at=timezone.now() - dt.timedelta(days=1))
    rescore.request_rescore([lead.pk])
    from scoring.tasks.rescore import rescore_pending_sweep_task

    assert rescore_pending_sweep_task() == 1
    lead.refresh_from_db()
    assert lead.score == 10
    assert not PendingRescore.objects.exists()


def test_the_rescore_command_prints_a_json_summary(live, capsys):
    LeadFactory.create_batch(2, created_at=NOW - dt.timedelta(days=40))
    call_command("rescore", "--all", "--as-of", "2026-06-01T00:00:00Z")
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["scored"] == 2 and summary["status"] == "done"
    assert summary["as_of"].startswith("2026-06-01T00:00:00")


@pytest.mark.broker
def test_an_event_stored_gets_its_lead_rescored_by_a_real_worker(celery_worker):
    ruleset_import(DOCUMENT, publish=False)
    from scoring.models import RuleSet
    from scoring.services.rulesets import ruleset_publish

    ruleset_publish(RuleSet.objects.get(), rescore=False)
    lead = LeadFactory(employees=10, created_at=timezone.now() - dt.timedelta(days=3))
    EventFactory(lead=lead, event_type="demo_request", occurred_at=timezone.now())
    rescore.request_rescore([lead.pk])  # autocommit: enqueued at once

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lead.refresh_from_db()
        if lead.score is not None:
            break
        time.sleep(0.1)
    assert lead.score == 20
    assert not PendingRescore.objects.exists()


@pytest.mark.broker
def test_publishing_fans_out_chunk_tasks_that_a_real_worker_completes(celery_worker, settings):
    settings.RESCORE_CHUNK_SIZE = 100
    LeadFactory.create_batch(230, employees=500, created_at=timezone.now())
    rule_set = ruleset_import(DOCUMENT, publish=True)  # rescore enqueued after commit
    deadline = time.monotonic() + 60
    run = None
    while time.monotonic() < deadline:
        run = RescoreRun.objects.filter(rule_set=rule_set).first()
        if run and run.status == RescoreRun.Status.DONE:
            break
        time.sleep(0.2)
    assert run is not None and run.status == RescoreRun.Status.DONE
    assert run.progress_total == 3 and run.leads_scored == 230
    assert Lead.objects.filter(score=10).count() == 230


def test_a_rescore_of_the_past_leaves_out_leads_created_after_it(live):
    old = LeadFactory(employees=500, created_at=NOW - dt.timedelta(days=30))
    new = LeadFactory(employees=500, created_at=NOW - dt.timedelta(days=1))
    add_events(new, "demo_request", 0)
    run = rescore.rescore_all(as_of=NOW - dt.timedelta(days=10), inline=True)
    assert run.leads_scored == 1
    old.refresh_from_db()
    new.refresh_from_db()
    assert old.score == 10
    assert new.score is None
    assert not ScoreHistory.objects.filter(lead=new).exists()


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.errors.SerializationFailure("could not serialize access"),
        psycopg.errors.DeadlockDetected("deadlock detected"),
        psycopg.OperationalError("connection lost"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_dropped_connection_in_a_chunk_is_retried_not_final(live, monkeypatch, error):
    from celery.exceptions import Retry

    from scoring.tasks.rescore import rescore_chunk_task

    failures = []
    monkeypatch.setattr(rescore, "rescore_chunk", lambda chunk_id: (_ for _ in ()).throw(error))
    monkeypatch.setattr(
        rescore, "rescore_chunk_failed", lambda *args, final: failures.append(final)
    )

    with pytest.raises(Retry):
        rescore_chunk_task.apply(args=[1], throw=True).get()

    assert failures and failures[0] is False


def test_a_bug_in_a_chunk_is_final_at_once(live, monkeypatch):
    from scoring.tasks.rescore import rescore_chunk_task

    failures = []
    monkeypatch.setattr(
        rescore, "rescore_chunk", lambda chunk_id: (_ for _ in ()).throw(KeyError("x"))
    )
    monkeypatch.setattr(
        rescore, "rescore_chunk_failed", lambda *args, final: failures.append(final)
    )

    with pytest.raises(KeyError):
        rescore_chunk_task.apply(args=[1], throw=True).get()

    assert failures == [True]


def test_one_real_time_task_drains_every_waiting_lead_even_if_other_dispatches_were_lost(
    live, monkeypatch
):
    leads = LeadFactory.create_batch(5, employees=500)
    rescore.request_rescore([lead.pk for lead in leads])
    from scoring.tasks.rescore import rescore_pending_task

    monkeypatch.setattr(rescore, "rescore_pending", _claiming_at_most(2, rescore.rescore_pending))

    assert rescore_pending_task() == 5
    assert not PendingRescore.objects.exists()


def _claiming_at_most(limit, claim):
    return lambda _limit=5000: claim(limit)
