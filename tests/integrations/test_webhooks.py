"""POST /integrations/hubspot/webhook: v3 signature, freshness, replay, enqueue."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from django.test import Client

from integrations.models import SyncRun, WebhookDelivery
from scoring.models import Identity, Lead

from .conftest import load_json

pytestmark = pytest.mark.django_db

SECRET = "test-client-secret"
URL = "/integrations/hubspot/webhook"
SAVED = load_json("hubspot/webhook_v3_request.json")
BODY = SAVED["raw_body"].encode()


def sign(body: bytes, timestamp: str, uri: str = f"http://testserver{URL}") -> str:
    message = b"POST" + uri.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(SECRET.encode(), message, hashlib.sha256).digest()).decode()


def post(body: bytes = BODY, *, offset_ms: int = 0, signature: str | None = None):
    timestamp = str(int(time.time() * 1000) + offset_ms)
    return Client().post(
        URL,
        data=body,
        content_type="application/json",
        headers={
            "X-HubSpot-Request-Timestamp": timestamp,
            "X-HubSpot-Signature-v3": signature or sign(body, timestamp),
        },
    )


@pytest.fixture
def enqueued(monkeypatch, sent_tasks) -> list:
    monkeypatch.setenv("HUBSPOT_APP_SECRET", SECRET)
    return sent_tasks


def test_a_signed_delivery_is_accepted_and_enqueues_a_sync_of_the_contacts(
    enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = post()

    assert response.status_code == 200
    assert response.json()["new"] == 2
    run = SyncRun.objects.get()  # the sync, recorded with the delivery
    assert (run.status, run.trigger) == ("queued", "webhook")
    assert enqueued == [("integrations.tasks.hubspot_webhook_sync_task", [["152", "154"], run.pk])]


def test_a_bad_signature_is_refused_with_401(enqueued):
    response = post(signature=sign(b"something else", "1"))

    assert response.status_code == 401
    assert enqueued == [] and not WebhookDelivery.objects.exists()


def test_a_stale_signature_is_refused(enqueued):
    assert post(offset_ms=-301_000).status_code == 401


def test_a_signature_dated_more_than_a_minute_in_the_future_is_refused(enqueued):
    assert post(offset_ms=61_000).status_code == 401


def test_a_signature_a_few_seconds_in_the_future_is_accepted_as_clock_skew(
    enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(offset_ms=2_000)

    assert response.status_code == 200
    run = SyncRun.objects.get()  # the sync, recorded with the delivery
    assert (run.status, run.trigger) == ("queued", "webhook")
    assert enqueued == [("integrations.tasks.hubspot_webhook_sync_task", [["152", "154"], run.pk])]


def test_a_replayed_event_id_is_ignored(enqueued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        post()
    with django_capture_on_commit_callbacks(execute=True):
        again = post()

    assert again.status_code == 200
    assert again.json() == {
        "received": 2,
        "new": 0,
        "replayed": 2,
        "contacts": 0,
        "deleted": 0,
        "queued": False,
    }
    assert len(enqueued) == 1


def test_a_deletion_event_detaches_the_contact_at_once(enqueued):
    lead = Lead.objects.create(email="x@example.com")
    Identity.objects.create(source="hubspot", external_id="777", lead=lead)
    body = json.dumps(
        [{"eventId": 5, "subscriptionType": "contact.deletion", "objectId": 777}]
    ).encode()

    assert post(body).status_code == 200
    assert not Identity.objects.filter(source="hubspot").exists()


def test_without_an_app_secret_webhooks_are_refused(monkeypatch):
    monkeypatch.delenv("HUBSPOT_APP_SECRET", raising=False)
    assert post().status_code == 503


def test_a_delivery_with_the_broker_down_is_accepted_with_202_and_its_sync_waits(
    monkeypatch, broker_down, transactional_db
):
    # transactional_db: no surrounding transaction, so the task is sent during the request.
    monkeypatch.setenv("HUBSPOT_APP_SECRET", SECRET)
    response = post()
    retried = post()  # HubSpot's retry of a delivery it thinks failed

    assert response.status_code == 202 and response.json()["queued"] is True
    assert retried.status_code == 200 and retried.json()["replayed"] == 2
    # Recorded with the delivery, so the jobs sweep sends it once the broker is back.
    run = SyncRun.objects.get()
    assert (run.status, run.trigger) == ("queued", "webhook")
    assert run.task_name == "integrations.tasks.hubspot_webhook_sync_task"
    assert run.error.startswith("Queued; will start when the worker is reachable")
