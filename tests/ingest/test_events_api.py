"""POST /api/v1/events/: the response contract of DESIGN §9, every bad input, atomic
batches, duplicates, size limits and throttling."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.test import override_settings

from scoring.api.ingest import IngestThrottle
from scoring.models import Event, Identity, Lead, PendingRescore
from tests.factories import IdentityFactory, LeadFactory

URL = "/api/v1/events/"


def event(n: int, **overrides) -> dict:
    body = {
        "external_id": f"e-{n}",
        "event_type": "page_view",
        "occurred_at": "2025-01-02T10:00:00Z",
        "email": f"person{n % 3}@example.com",
        "properties": {"path": "/pricing"},
    }
    body.update(overrides)
    return body


def post(client, payload, query: str = ""):
    return client.post(URL + query, data=json.dumps(payload), content_type="application/json")


def test_a_valid_batch_is_accepted_with_the_contract_shape(api_as):
    response = post(api_as("ops"), [event(i) for i in range(5)])
    assert response.status_code == 200
    assert response.json() == {"accepted": 5, "duplicate": 0, "rejected": 0, "errors": []}
    assert Event.objects.count() == 5


def test_one_event_object_is_accepted_without_a_list(api_as):
    response = post(api_as("ops"), event(1))
    assert response.status_code == 200
    assert response.json()["accepted"] == 1


def test_an_unknown_email_creates_a_lead_with_a_normalised_email(api_as):
    post(api_as("ops"), [event(1, email="  New.Person@Example.COM ")])
    lead = Lead.objects.get()
    assert lead.email == "new.person@example.com"
    assert lead.events.count() == 1


def test_events_go_to_the_lead_of_a_known_email(api_as, db):
    lead = LeadFactory(email="known@example.com")
    post(api_as("ops"), [event(1, email="KNOWN@example.com")])
    assert Lead.objects.count() == 1
    assert lead.events.count() == 1


def test_events_find_their_lead_by_source_identity(api_as, db):
    identity = IdentityFactory(source="mixpanel", external_id="distinct-9")
    response = post(
        api_as("ops"),
        [event(1, email=None, lead_source="mixpanel", lead_external_id="distinct-9")],
    )
    assert response.json()["accepted"] == 1
    assert identity.lead.events.count() == 1


def test_an_unknown_identity_with_an_email_attaches_the_identity_to_that_lead(api_as, db):
    lead = LeadFactory(email="known@example.com")
    post(
        api_as("ops"),
        [event(1, email="known@example.com", lead_source="mixpanel", lead_external_id="d-1")],
    )
    assert Identity.objects.get(source="mixpanel", external_id="d-1").lead == lead


def test_the_same_batch_sent_twice_stores_each_event_once(api_as):
    client = api_as("ops")
    batch = [event(i) for i in range(10)]
    first = post(client, batch).json()
    second = post(client, batch).json()
    assert first["accepted"] == 10
    assert second == {"accepted": 0, "duplicate": 10, "rejected": 0, "errors": []}
    assert Event.objects.count() == 10


def test_a_key_repeated_inside_one_batch_is_stored_once(api_as):
    response = post(api_as("ops"), [event(1), event(1)])
    assert response.json() == {"accepted": 1, "duplicate": 1, "rejected": 0, "errors": []}


def test_the_same_external_id_from_two_sources_is_two_events(api_as):
    response = post(api_as("ops"), [event(1, source="web"), event(1, source="mixpanel")])
    assert response.json()["accepted"] == 2


def test_the_source_defaults_to_api(api_as):
    post(api_as("ops"), [event(1)])
    assert Event.objects.get().source == "api"


BAD_ITEMS = [
    ({"external_id": None}, "external_id: this field is required"),
    ({"external_id": ""}, "external_id: this field is required"),
    ({"external_id": "x" * 256}, "external_id: at most 255 characters"),
    ({"event_type": None}, "event_type: this field is required"),
    ({"occurred_at": None}, "occurred_at: this field is required"),
    ({"occurred_at": "yesterday"}, "occurred_at: 'yesterday' is not an ISO 8601 date-time"),
    ({"occurred_at": "2025-01-02T10:00:00"}, "has no time zone"),
    ({"occurred_at": 1735812000}, "occurred_at: must be an ISO 8601 date-time string"),
    ({"occurred_at": "2999-01-01T00:00:00Z"}, "more than a day in the future"),
    ({"email": "not-an-email"}, "is not an email address"),
    ({"email": None}, "lead: give email or lead_source + lead_external_id"),
    ({"email": None, "lead_source": "crm"}, "lead_external_id: required with lead_source"),
    ({"properties": [1, 2]}, "properties: must be a JSON object"),
    ({"properties": "x"}, "properties: must be a JSON object"),
    ({"source": {"a": 1}}, "source: must be a string"),
]


@pytest.mark.parametrize(("overrides", "reason"), BAD_ITEMS)
def test_each_bad_item_is_rejected_with_its_index_and_reason(api_as, overrides, reason):
    response = post(api_as("ops"), [event(1), event(2, **overrides), event(3)])
    assert response.status_code == 400
    body = response.json()
    assert body["accepted"] == 2
    assert body["rejected"] == 1
    assert [e["index"] for e in body["errors"]] == [1]
    assert any(reason in r for r in body["errors"][0]["reasons"]), body
    assert Event.objects.count() == 2


def test_an_item_that_is_not_an_object_is_rejected(api_as):
    response = post(api_as("ops"), [event(1), "nope", 3])
    body = response.json()
    assert response.status_code == 400
    assert [e["index"] for e in body["errors"]] == [1, 2]
    assert body["errors"][0]["reasons"] == ["each event must be a JSON object"]


def test_an_unknown_lead_identity_without_email_is_rejected(api_as):
    response = post(
        api_as("ops"), [event(1), event(2, email=None, lead_source="crm", lead_external_id="zz")]
    )
    assert response.status_code == 400
    body = response.json()
    assert body["accepted"] == 1
    assert body["errors"][0]["index"] == 1
    assert "crm:zz" in body["errors"][0]["reasons"][0]


def test_a_rejected_item_reports_its_external_id(api_as):
    body = post(api_as("ops"), [event(7, occurred_at="nope")]).json()
    assert body["errors"][0]["external_id"] == "e-7"


def test_an_atomic_batch_with_one_bad_item_stores_nothing(api_as):
    response = post(api_as("ops"), [event(1), event(2, occurred_at="bad")], "?atomic=true")
    assert response.status_code == 400
    body = response.json()
    assert body["accepted"] == 0
    assert body["rejected"] == 2
    assert [e["index"] for e in body["errors"]] == [1]
    assert Event.objects.count() == 0
    assert Lead.objects.count() == 0


def test_an_atomic_batch_with_an_unknown_lead_stores_nothing(api_as):
    response = post(
        api_as("ops"),
        [event(1), event(2, email=None, lead_source="crm", lead_external_id="zz")],
        "?atomic=true",
    )
    assert response.status_code == 400
    assert Event.objects.count() == 0
    assert Lead.objects.count() == 0


def test_a_valid_atomic_batch_is_stored(api_as):
    response = post(api_as("ops"), [event(1), event(2)], "?atomic=true")
    assert response.status_code == 200
    assert response.json()["accepted"] == 2


def test_a_body_that_is_not_json_is_a_400(api_as):
    response = api_as("ops").post(URL, data="{nope", content_type="application/json")
    assert response.status_code == 400


@pytest.mark.parametrize("payload", [[], 42, "text"])
def test_an_empty_or_scalar_body_is_a_400(api_as, payload):
    assert post(api_as("ops"), payload).status_code == 400


def test_more_than_ten_thousand_events_is_a_413(api_as):
    response = post(api_as("ops"), [{}] * 10_001)
    assert response.status_code == 413
    assert Event.objects.count() == 0


def test_an_oversized_body_is_a_413(api_as):
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=2048):
        response = post(api_as("ops"), [event(i) for i in range(50)])
    assert response.status_code == 413
    assert Event.objects.count() == 0


def test_a_gzipped_body_is_inflated_within_the_same_limit(api_as):
    import gzip

    client = api_as("ops")
    raw = gzip.compress(json.dumps([event(1), event(2)]).encode())
    response = client.post(
        URL, data=raw, content_type="application/json", HTTP_CONTENT_ENCODING="gzip"
    )
    assert response.status_code == 200
    assert Event.objects.count() == 2
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=2048):
        bomb = gzip.compress(json.dumps([event(i) for i in range(50)]).encode())
        assert len(bomb) < 2048
        response = client.post(
            URL, data=bomb, content_type="application/json", HTTP_CONTENT_ENCODING="gzip"
        )
    assert response.status_code == 413


def test_ingest_schedules_a_rescore_of_the_touched_leads(api_as):
    post(api_as("ops"), [event(1, email="a@example.com"), event(2, email="b@example.com")])
    assert PendingRescore.objects.count() == 2


def test_a_sales_rep_and_a_manager_may_not_ingest(api_as):
    for username in ("sales1", "manager"):
        assert post(api_as(username), [event(1)]).status_code == 403
    assert Event.objects.count() == 0


def test_anonymous_callers_are_refused(db, client):
    response = client.post(URL, data="[]", content_type="application/json")
    assert response.status_code in (401, 403)


def test_ingest_is_throttled_per_token(api_as, role_users, monkeypatch):
    monkeypatch.setattr(IngestThrottle, "THROTTLE_RATES", {"ingest": "2/min"})
    ops, admin = api_as("ops"), api_as("admin")
    assert post(ops, [event(1)]).status_code == 200
    assert post(ops, [event(2)]).status_code == 200
    limited = post(ops, [event(3)])
    assert limited.status_code == 429
    assert "Retry-After" in limited.headers
    # Another token has its own budget.
    assert post(admin, [event(4)]).status_code == 200


def test_occurred_at_keeps_its_offset_as_an_instant(api_as):
    post(api_as("ops"), [event(1, occurred_at="2025-01-02T12:00:00+02:00")])
    assert Event.objects.get().occurred_at == dt.datetime(2025, 1, 2, 10, tzinfo=dt.UTC)


def test_events_are_stored_and_their_leads_marked_when_the_broker_is_down(
    api_as, broker_down, django_capture_on_commit_callbacks
):
    client = api_as("ops")
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, [event(1, email="a@example.com")])
    assert response.status_code == 200
    assert Event.objects.count() == 1
    # The mark stays in the database; the periodic sweep rescoring it once the broker is back.
    assert PendingRescore.objects.filter(lead__email="a@example.com").exists()


def test_the_schema_serializer_names_the_fields_the_validator_reads():
    from scoring.api.serializers import EventInSerializer

    assert set(EventInSerializer().fields) == {
        "external_id",
        "source",
        "event_type",
        "occurred_at",
        "email",
        "lead_source",
        "lead_external_id",
        "properties",
    }
