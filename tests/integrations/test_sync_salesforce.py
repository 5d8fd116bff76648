"""manage.py sync salesforce / push_scores salesforce against a fake Salesforce over TLS."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.utils import timezone

from integrations import services
from integrations.models import Connection, SyncRun
from scoring.models import Identity, Lead
from tests.connectors.test_salesforce import (
    NEXT_PAGE,
    TOKEN,
    FakeSalesforce,
    error_response,
    expect_deleted,
    json_response,
    lead_pages,
)

from .conftest import load_json

pytestmark = pytest.mark.django_db

COMPOSITE = "/services/data/v59.0/composite/sobjects"


def serve_two_pages(server, fake: FakeSalesforce) -> None:
    page1, page2 = lead_pages()
    fake.lead_pages.append(json_response(page1))
    server.expect_request(NEXT_PAGE, method="GET").respond_with_response(json_response(page2))


def snapshot() -> list[tuple]:
    leads = list(Lead.objects.order_by("id").values_list("id", "email", "updated_at"))
    identities = list(Identity.objects.order_by("id").values_list("source", "external_id"))
    return leads + identities


def test_sync_brings_in_exactly_the_records_served(salesforce_env, run_command):
    fake = FakeSalesforce(salesforce_env)
    serve_two_pages(salesforce_env, fake)
    expect_deleted(salesforce_env)

    summary, status = run_command("sync", "salesforce")

    assert status == 0
    assert summary["status"] == "succeeded"
    # Three leads on two pages, one deletion of a record we never had.
    assert (summary["fetched"], summary["created"], summary["failed"]) == (4, 3, 0)
    assert summary["unchanged"] == 1
    assert summary["cursor_before"] is None
    assert json.loads(summary["cursor_after"])["id"] == "00Q5g0000040003EAA"
    assert summary["api_usage"]["api_used"] == 18
    assert set(Identity.objects.values_list("source", "external_id")) == {
        ("salesforce", "00Q5g0000040001EAA"),
        ("salesforce", "00Q5g0000040002EAA"),
        ("salesforce", "00Q5g0000040003EAA"),
    }
    dana = Lead.objects.get(email="dana.okafor@example.com")
    assert dana.first_name == "Dana"
    assert Connection.objects.get(vendor="salesforce").cursor == summary["cursor_after"]
    run = SyncRun.objects.get()
    assert run.status == "done" and run.finished_at is not None


def test_running_the_sync_again_changes_nothing(salesforce_env, run_command):
    fake = FakeSalesforce(salesforce_env)
    page1, page2 = lead_pages()
    # The vendor hands the same records over twice (as a full resync would).
    fake.lead_pages.extend([json_response(page1), json_response(page1)])
    salesforce_env.expect_request(NEXT_PAGE, method="GET").respond_with_response(
        json_response(page2)
    )
    expect_deleted(salesforce_env)
    run_command("sync", "salesforce", "--full")
    before = snapshot()

    summary, status = run_command("sync", "salesforce", "--full")

    assert status == 0
    assert (summary["created"], summary["updated"], summary["deleted"]) == (0, 0, 0)
    assert summary["unchanged"] == summary["fetched"] == 4
    assert snapshot() == before


def test_a_deleted_record_detaches_its_identity_and_keeps_the_lead(salesforce_env, run_command):
    lead = Lead.objects.create(email="gone@example.com")
    Identity.objects.create(source="salesforce", external_id="00Q5g0000040009EAA", lead=lead)
    fake = FakeSalesforce(salesforce_env)
    fake.lead_pages.append(json_response({"totalSize": 0, "done": True, "records": []}))
    expect_deleted(salesforce_env)

    summary, _ = run_command("sync", "salesforce")

    assert summary["deleted"] == 1
    assert not Identity.objects.filter(external_id="00Q5g0000040009EAA").exists()
    assert Lead.objects.filter(pk=lead.pk).exists()


def test_a_401_refreshes_once_and_stores_the_new_token_encrypted(salesforce_env, run_command):
    token_body = load_json("salesforce/oauth_token_refresh_response.json")
    token_body["instance_url"] = salesforce_env.url_for("/").rstrip("/")
    salesforce_env.expect_oneshot_request(
        "/services/data/v59.0/sobjects/Lead/deleted/"
    ).respond_with_response(error_response("salesforce/error_401_invalid_session.json"))
    salesforce_env.expect_oneshot_request(TOKEN, method="POST").respond_with_json(token_body)
    fake = FakeSalesforce(salesforce_env)
    serve_two_pages(salesforce_env, fake)
    expect_deleted(salesforce_env)

    summary, status = run_command("sync", "salesforce")

    assert status == 0 and summary["created"] == 3
    stored = Connection.objects.get(vendor="salesforce")
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT secrets FROM integrations_connection WHERE id = %s", [stored.pk])
        (raw,) = cursor.fetchone()
    assert token_body["access_token"] not in raw
    from integrations.config import decrypt_secrets

    assert decrypt_secrets(raw)["access_token"] == token_body["access_token"]


def test_a_second_401_fails_the_run_with_a_clear_message(salesforce_env, run_command):
    token_body = load_json("salesforce/oauth_token_refresh_response.json")
    token_body["instance_url"] = salesforce_env.url_for("/").rstrip("/")
    salesforce_env.expect_request(
        "/services/data/v59.0/sobjects/Lead/deleted/"
    ).respond_with_response(error_response("salesforce/error_401_invalid_session.json"))
    salesforce_env.expect_request(TOKEN, method="POST").respond_with_json(token_body)

    summary, status = run_command("sync", "salesforce")

    assert status == 1
    assert summary["status"] == "failed"
    assert summary["error_kind"] == "auth"
    assert "reconnect the Salesforce integration" in summary["error"]
    assert Connection.objects.get(vendor="salesforce").current_run is None


def test_request_limit_exceeded_pauses_the_connection_without_a_tight_loop(
    salesforce_env, run_command
):
    salesforce_env.expect_request(
        "/services/data/v59.0/sobjects/Lead/deleted/"
    ).respond_with_response(error_response("salesforce/error_403_request_limit_exceeded.json"))

    summary, status = run_command("sync", "salesforce")

    assert status == 1
    assert summary["status"] == "paused"
    connection = Connection.objects.get(vendor="salesforce")
    assert connection.paused_until > timezone.now() + timedelta(minutes=50)
    requests_before = len(salesforce_env.log)

    again, status = run_command("sync", "salesforce")

    assert status == 1 and again["status"] == "paused"
    assert len(salesforce_env.log) == requests_before  # no call while paused
    assert SyncRun.objects.count() == 1


def test_a_500_is_retried_with_backoff(salesforce_env, run_command, sleeps):
    salesforce_env.expect_oneshot_request(
        "/services/data/v59.0/sobjects/Lead/deleted/"
    ).respond_with_response(error_response("salesforce/error_500_unknown.json"))
    fake = FakeSalesforce(salesforce_env)
    serve_two_pages(salesforce_env, fake)
    expect_deleted(salesforce_env)

    summary, status = run_command("sync", "salesforce")

    assert status == 0 and summary["created"] == 3
    assert len(sleeps.calls) == 1


def test_malformed_records_are_counted_failed_with_id_and_reason(salesforce_env, run_command):
    fake = FakeSalesforce(salesforce_env)
    fake.lead_pages.append(json_response(load_json("salesforce/query_lead_malformed.json")))
    expect_deleted(salesforce_env)

    summary, status = run_command("sync", "salesforce")

    assert status == 0
    assert summary["failed"] >= 1
    assert all(f["reason"] for f in summary["failures"])
    assert summary["fetched"] == (
        summary["created"]
        + summary["updated"]
        + summary["unchanged"]
        + summary["deleted"]
        + summary["failed"]
    )
    assert Lead.objects.count() == summary["created"]


class WorkerKilled(BaseException):
    """Stands in for SIGKILL: nothing after it runs (not even our error handling)."""


def test_a_killed_worker_leaves_the_run_resumable_from_the_last_committed_cursor(
    salesforce_env, monkeypatch
):
    fake = FakeSalesforce(salesforce_env)
    serve_two_pages(salesforce_env, fake)
    expect_deleted(salesforce_env)
    real_commit = services._commit_batch

    def commit_then_die(run, batch, usage):
        real_commit(run, batch, usage)
        raise WorkerKilled

    monkeypatch.setattr(services, "_commit_batch", commit_then_die)
    with pytest.raises(WorkerKilled):
        services.sync_run("salesforce")
    monkeypatch.setattr(services, "_commit_batch", real_commit)

    killed = SyncRun.objects.get()
    assert killed.status == "running"
    committed_cursor = Connection.objects.get(vendor="salesforce").cursor
    assert json.loads(committed_cursor)["id"] == "00Q5g0000040002EAA"
    assert set(Identity.objects.values_list("external_id", flat=True)) == {
        "00Q5g0000040001EAA",
        "00Q5g0000040002EAA",
    }
    # While its heartbeat is fresh nobody else may run the connection.
    with pytest.raises(services.SyncBusy):
        services.sync_run("salesforce")

    SyncRun.objects.filter(pk=killed.pk).update(heartbeat_at=timezone.now() - timedelta(hours=2))
    fake.lead_pages.append(json_response(lead_pages()[1]))
    resumed = services.sync_run("salesforce")

    killed.refresh_from_db()
    assert killed.status == "abandoned" and killed.finished_at is not None
    assert resumed.status == "done"
    assert resumed.cursor_before == committed_cursor
    assert "Id > '00Q5g0000040002EAA'" in fake.lead_queries()[-1]
    assert resumed.created == 1
    assert Identity.objects.filter(source="salesforce").count() == 3


def test_push_sends_only_changed_scores_and_a_second_push_sends_nothing(
    salesforce_env, run_command
):
    leads = []
    for n, external_id in enumerate(("00Q5g0000040001EAA", "00Q5g0000040002EAA")):
        lead = Lead.objects.create(email=f"p{n}@example.com", score=40 + n, band="Warm")
        Identity.objects.create(source="salesforce", external_id=external_id, lead=lead)
        leads.append(lead)
    Identity.objects.create(
        source="salesforce", external_id="00Q5g0000040003EAA", lead=Lead.objects.create()
    )  # never scored: nothing to push
    bodies: list[dict] = []

    def composite(request):
        body = request.get_json()
        bodies.append(body)
        return json_response(
            [{"id": r["id"], "success": True, "errors": []} for r in body["records"]]
        )

    salesforce_env.expect_request(COMPOSITE, method="PATCH").respond_with_handler(composite)

    first, status = run_command("push_scores", "salesforce")
    assert status == 0 and first["pushed"] == 2
    assert bodies[0]["records"][0]["Lead_Score__c"] == 40
    assert bodies[0]["records"][0]["Lead_Band__c"] == "Warm"

    Lead.objects.filter(pk=leads[1].pk).update(score=85, band="Hot")
    second, _ = run_command("push_scores", "salesforce")
    assert second["pushed"] == 1
    assert [r["id"] for r in bodies[1]["records"]] == ["00Q5g0000040002EAA"]
    assert Identity.objects.get(external_id="00Q5g0000040002EAA").pushed_score == 85

    third, _ = run_command("push_scores", "salesforce")
    assert third["pushed"] == 0 and len(bodies) == 2


def test_records_the_vendor_rejects_stay_unpushed(salesforce_env, run_command):
    for n, external_id in enumerate(("00Q5g0000040001EAA", "00Q5g0000040002EAA")):
        lead = Lead.objects.create(email=f"r{n}@example.com", score=50, band="MQL")
        Identity.objects.create(source="salesforce", external_id=external_id, lead=lead)
    salesforce_env.expect_request(COMPOSITE, method="PATCH").respond_with_response(
        json_response(load_json("salesforce/composite_sobjects_patch_response.json")[:2])
    )

    summary, _ = run_command("push_scores", "salesforce")

    assert (summary["pushed"], summary["failed"]) == (1, 1)
    assert "ENTITY_IS_DELETED" in summary["failures"][0]["reason"]
    assert Identity.objects.get(external_id="00Q5g0000040002EAA").pushed_score is None


def test_usage_above_the_threshold_slows_the_run_down(salesforce_env, run_command, sleeps):
    busy = {"Sforce-Limit-Info": "api-usage=4900/5000"}
    fake = FakeSalesforce(salesforce_env)
    fake.usage = busy["Sforce-Limit-Info"]
    page1, page2 = lead_pages()
    fake.lead_pages.append(json_response(page1, headers=busy))
    salesforce_env.expect_request(NEXT_PAGE, method="GET").respond_with_response(
        json_response(page2, headers=busy)
    )
    salesforce_env.expect_request(
        "/services/data/v59.0/sobjects/Lead/deleted/"
    ).respond_with_response(
        json_response(load_json("salesforce/getdeleted_lead.json"), headers=busy)
    )

    summary, status = run_command("sync", "salesforce")

    assert status == 0 and summary["api_usage"]["throttled"] is True
    assert summary["api_usage"]["api_used"] == 4900
    # Between the lead pages and before the opportunity page, none after the last.
    assert sleeps.calls == [2.0, 2.0]
