"""The PostgreSQL-only paths: two identical batches arriving at the same moment store each
event once, and large lead chunks go through COPY with the same results as the generic path."""

from __future__ import annotations

import json
import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from integrations import imports
from integrations.imports import import_file
from scoring.models import Event, Identity, Lead
from scoring.services import leads as lead_service
from tests.factories import api_token

pytestmark = pytest.mark.postgres


@pytest.mark.django_db(transaction=True)
def test_two_identical_batches_at_the_same_moment_store_each_event_once(role_users):
    token = api_token(role_users["ops"])
    batch = [
        {
            "external_id": f"evt-{i}",
            "event_type": "page_view",
            "occurred_at": "2025-01-02T10:00:00Z",
            "email": f"new{i % 20}@example.com",
        }
        for i in range(300)
    ]
    barrier = threading.Barrier(2)
    results: list[dict] = []
    failures: list[BaseException] = []

    def send() -> None:
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
            barrier.wait()
            response = client.post(
                "/api/v1/events/", data=json.dumps(batch), content_type="application/json"
            )
            results.append(response.json())
        except BaseException as exc:  # surfaced in the main thread below
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    assert sorted(r["accepted"] for r in results) == [0, 300]
    assert sorted(r["duplicate"] for r in results) == [0, 300]
    assert Event.objects.count() == 300
    assert Lead.objects.count() == 20


def test_a_large_chunk_goes_through_copy_and_reimports_unchanged(tmp_path, db, monkeypatch):
    # The chunked generic path (the staged path has its own tests in test_lead_staging.py).
    monkeypatch.setattr(imports, "STAGED_LEADS", False)
    calls = []
    original = lead_service._copy_rows
    monkeypatch.setattr(
        lead_service, "_copy_rows", lambda *a, **k: calls.append(a[1]) or original(*a, **k)
    )
    rows = ["external_id,email,company,employees,seats"]
    rows += [f"x-{i},p{i}@example.com,Co {i},{i},{i % 7}" for i in range(600)]
    path = tmp_path / "big.csv"
    path.write_text("\n".join(rows) + "\n")

    first = import_file(path, "leads", source="bulk")
    assert (first.created, first.rejected) == (600, 0)
    assert calls == ["scoring_lead"]
    lead = Lead.objects.get(email="p42@example.com")
    assert (lead.company, lead.employees, lead.attributes) == ("Co 42", 42, {"seats": 0})
    assert Identity.objects.get(source="bulk", external_id="x-42").lead == lead
    # The sequence moved past the ids COPY used, so ordinary inserts still work.
    Lead.objects.create(email="after@example.com")

    again = import_file(path, "leads", source="bulk")
    assert (again.created, again.updated, again.unchanged) == (0, 0, 600)

    path.write_text("\n".join(r.replace("Co ", "Company ") for r in rows) + "\n")
    changed = import_file(path, "leads", source="bulk")
    assert changed.updated == 600
    assert calls == ["scoring_lead", "lead_update_tmp"]
    assert Lead.objects.get(email="p42@example.com").company == "Company 42"
