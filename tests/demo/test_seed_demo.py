"""`manage.py seed_demo` and the writer, end to end on the configured database (SQLite by
default, PostgreSQL with DATABASE_URL: the COPY path)."""

from __future__ import annotations

import datetime as dt
import json
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection

from scoring.demo import writer
from scoring.demo.writer import generate_and_write
from scoring.models import Event, Identity, Lead, RuleSet

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
ROLES = {
    "ops": "marketing_ops",
    "sales1": "sales",
    "sales2": "sales",
    "manager": "manager",
    "admin": "admin",
}


def seed(*args: str) -> dict:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


def lead_snapshot() -> list[tuple]:
    return list(
        Lead.objects.order_by("email").values_list(
            "email", "title", "company", "employees", "owner__username", "lifecycle_stage",
            "created_at", "mql_at", "converted_at", "revenue", "attributes",
        )
    )  # fmt: skip


def event_snapshot() -> list[tuple]:
    return list(
        Event.objects.order_by("source", "external_id").values_list(
            "source", "external_id", "lead__email", "event_type", "occurred_at", "properties"
        )
    )


@pytest.mark.django_db
def test_seed_demo_creates_users_data_and_a_live_scored_rule_set(settings):
    settings.DEMO_PASSWORD = "a-demo-password"
    summary = seed("--leads", "300", "--seed", "5", "--events-per-lead", "6")

    assert summary["skipped"] is False
    assert summary["leads"] == Lead.objects.count() == 300
    assert summary["events"] == Event.objects.count() > 1000
    assert summary["identities"] == Identity.objects.count() > 300
    assert summary["users"] >= 5
    assert summary["seconds"] >= 0
    for username, role in ROLES.items():
        user = User.objects.get(username=username)
        assert user.check_password("a-demo-password")
        assert user.groups.filter(name=role).exists()
    assert User.objects.get(username="admin").is_superuser

    live = RuleSet.objects.get(status=RuleSet.Status.PUBLISHED)
    assert summary["rule_set_version"] == live.version
    assert live.rules.count() >= 10
    assert {band.name for band in live.bands.all()} == {"Cold", "Warm", "MQL", "Hot"}
    assert not Lead.objects.filter(score__isnull=True).exists()
    assert summary["scored"] == 300
    assert Lead.objects.exclude(band="").count() == 300
    assert Lead.objects.exclude(persona="").exists()
    for rep in ("sales1", "sales2"):
        assert Lead.objects.filter(owner__username=rep).count() > 50
    assert not Lead.objects.filter(owner__isnull=True).exists()


@pytest.mark.django_db
def test_seed_demo_if_empty_does_nothing_when_leads_exist():
    seed("--leads", "40", "--seed", "1")
    before = (Lead.objects.count(), Event.objects.count(), RuleSet.objects.count())

    summary = seed("--leads", "40", "--seed", "2", "--if-empty")

    assert summary["skipped"] is True
    assert summary["leads"] == 0
    assert (Lead.objects.count(), Event.objects.count(), RuleSet.objects.count()) == before


@pytest.mark.django_db
def test_seed_demo_refuses_a_database_with_leads_without_if_empty():
    seed("--leads", "30", "--seed", "1")
    with pytest.raises(CommandError, match="already has 30 leads"):
        seed("--leads", "30", "--seed", "2")
    assert Lead.objects.count() == 30


@pytest.mark.django_db
def test_seed_demo_rejects_negative_sizes():
    with pytest.raises(CommandError, match="--leads"):
        call_command("seed_demo", "--leads", "-3", stdout=StringIO(), stderr=StringIO())
    with pytest.raises(CommandError, match="--events-per-lead"):
        call_command("seed_demo", "--events-per-lead", "nan", stdout=StringIO(), stderr=StringIO())
    assert not Lead.objects.exists()


@pytest.mark.django_db
def test_seed_demo_keeps_the_password_of_an_existing_user(settings):
    User.objects.create_user("admin", password="the-real-admins-password")
    seed("--leads", "10")
    admin = User.objects.get(username="admin")
    assert admin.check_password("the-real-admins-password")
    assert admin.groups.filter(name="admin").exists()


@pytest.mark.django_db
def test_seed_demo_uses_the_live_rule_set_when_there_is_one():
    from scoring.demo.seed import starter_ruleset_document
    from scoring.services.rulesets import ruleset_import, ruleset_publish

    document = starter_ruleset_document() | {"name": "Our own rules"}
    ruleset_publish(ruleset_import(document), rescore=False)

    summary = seed("--leads", "20")

    assert RuleSet.objects.count() == 1
    assert summary["rule_set_version"] == RuleSet.objects.get().version
    assert not Lead.objects.filter(score__isnull=True).exists()


@pytest.mark.django_db
def test_the_writer_stores_the_same_company_for_the_same_seed():
    first = generate_and_write(120, seed=9, events_per_lead=5.0, owners=[], now=NOW)
    leads, events = lead_snapshot(), event_snapshot()
    Lead.objects.all().delete()

    second = generate_and_write(120, seed=9, events_per_lead=5.0, owners=[], now=NOW)

    assert (second["leads"], second["events"]) == (first["leads"], first["events"])
    assert lead_snapshot() == leads
    assert event_snapshot() == events
    assert len(events) == first["events"] > 0


@pytest.mark.django_db
def test_written_rows_keep_their_links_and_times():
    owner = User.objects.create_user("rep")
    summary = generate_and_write(200, seed=4, events_per_lead=8.0, owners=[owner.pk], now=NOW)

    assert Lead.objects.filter(owner=owner).count() == 200
    assert summary["last_lead_id"] - summary["first_lead_id"] == 199
    lead = Lead.objects.filter(events__isnull=False).order_by("id").first()
    first_event = lead.events.order_by("occurred_at").first()
    assert first_event.occurred_at >= lead.created_at
    assert not Event.objects.filter(occurred_at__gt=NOW).exists()
    customers = Lead.objects.filter(lifecycle_stage="customer")
    assert not customers.filter(revenue__isnull=True).exists()
    assert (
        not Lead.objects.exclude(lifecycle_stage="customer").filter(revenue__isnull=False).exists()
    )
    assert (
        Identity.objects.filter(source="salesforce").count()
        >= Lead.objects.filter(mql_at__isnull=False).count()
    )
    assert isinstance(lead.attributes["trial_signup"], bool)
    assert isinstance(first_event.properties, dict)


@pytest.mark.django_db
def test_a_failure_while_writing_events_leaves_nothing_behind(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(writer, "_copy_events", broken)
    monkeypatch.setattr(writer, "_bulk_events", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_and_write(50, seed=1, events_per_lead=3.0, owners=[], now=NOW)
    assert not Lead.objects.exists()
    assert not Identity.objects.exists()


def _event_schema() -> list[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'scoring_event'"
            " UNION ALL SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'scoring_event'::regclass ORDER BY 1"
        )
        return cursor.fetchall()


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_big_load_on_postgres_rebuilds_exactly_the_indexes_and_constraints(monkeypatch):
    before = _event_schema()
    monkeypatch.setattr(writer, "REBUILD_INDEXES_MIN_ROWS", 1)

    summary = generate_and_write(150, seed=2, events_per_lead=4.0, owners=[], now=NOW)

    assert _event_schema() == before
    assert Event.objects.count() == summary["events"] > 0
    # The rebuilt foreign key and unique constraint still hold.
    with pytest.raises(Exception, match=r"event_source_uniq|duplicate key"):
        first = Event.objects.order_by("id").first()
        Event.objects.create(
            source=first.source,
            external_id=first.external_id,
            lead=first.lead,
            event_type="x",
            occurred_at=NOW,
        )


@pytest.mark.postgres
@pytest.mark.django_db
def test_lead_ids_on_postgres_come_from_the_sequence_and_later_inserts_follow():
    summary = generate_and_write(30, seed=3, events_per_lead=1.0, owners=[], now=NOW)
    later = Lead.objects.create(email="someone@example.com")
    assert later.pk > summary["last_lead_id"]
