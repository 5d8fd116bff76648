"""Poison input at every JSON edge is a 400 that names the problem, and nothing is stored."""

from __future__ import annotations

import json

import pytest

from scoring.models import Event, Lead

EVENTS = "/api/v1/events/"
GOOD = (
    '{"external_id": "e-1", "event_type": "page_view", "occurred_at": "2025-01-02T10:00:00Z",'
    ' "email": "a@example.com", "properties": PROPERTIES}'
)


def event_body(properties: str = "{}") -> str:
    return GOOD.replace("PROPERTIES", properties)


def post_raw(client, url: str, body: str | bytes):
    return client.generic("POST", url, body, content_type="application/json")


@pytest.mark.parametrize(
    ("occurred_at", "reason"),
    [
        ("0001-01-01T00:00:00+14:00", "out of range"),
        ("1969-12-31T23:59:59Z", "before 1970"),
        ("9999-12-31T23:00:00-14:00", "out of range"),
        ("9999-06-01T00:00:00Z", "in the future"),
    ],
)
def test_an_event_time_outside_1970_to_tomorrow_is_rejected_naming_the_field(
    api_as, occurred_at, reason
):
    body = event_body().replace("2025-01-02T10:00:00Z", occurred_at)
    response = post_raw(api_as("ops"), EVENTS, body)

    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert any(r.startswith("occurred_at:") and reason in r for r in error["reasons"])
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    "properties",
    [
        '{"a": NaN}',
        '{"a": Infinity}',
        '{"a": 1e400}',
        '{"a": "x\\u0000y"}',
        '{"a": "\\ud800"}',
        "[" * 100_000 + "]" * 100_000,
    ],
)
def test_a_body_with_values_the_database_cannot_store_is_a_400(api_as, properties):
    response = post_raw(api_as("ops"), EVENTS, event_body(properties))

    assert response.status_code == 400
    assert "JSON this API accepts" in response.json()["detail"]
    assert not Event.objects.exists() and not Lead.objects.exists()


@pytest.mark.parametrize("field", ["event_type", "external_id", "email"])
def test_a_nul_byte_in_any_event_field_is_a_400(api_as, field):
    body = event_body()
    body = body.replace(f'"{field}": "', f'"{field}": "\\u0000', 1)
    response = post_raw(api_as("ops"), EVENTS, body)

    assert response.status_code == 400
    assert not Event.objects.exists()


def test_the_lead_api_refuses_poison_with_a_400(api_as):
    response = post_raw(api_as("ops"), "/api/v1/leads/", '{"email": "a@example.com", "x": NaN}')
    assert response.status_code == 400


def test_the_feedback_api_refuses_poison_with_a_400(api_as):
    lead = Lead.objects.create(email="f@example.com")
    response = post_raw(
        api_as("ops"),
        f"/api/v1/leads/{lead.pk}/feedback/",
        '{"verdict": "good", "note": "\\ud800"}',
    )
    assert response.status_code == 400


def test_a_jsonl_import_reports_a_poisoned_line_and_keeps_the_good_ones(tmp_path, db):
    from integrations.imports import import_file

    path = tmp_path / "events.jsonl"
    good = event_body()
    path.write_text(good + "\n" + good.replace("e-1", "e-2").replace("{}", '{"a": NaN}') + "\n")

    summary = import_file(path, kind="events")

    assert Event.objects.count() == 1
    assert summary.rejected == 1
    assert summary.errors[0]["line"] == 2 and "NaN" in summary.errors[0]["reasons"][0]


@pytest.mark.parametrize("param", ["created_from", "created_to", "created_before", "flagged_to"])
def test_a_date_at_the_end_of_the_calendar_is_refused_by_the_lead_list(api_as, client_as, param):
    value = "9999-12-31T23:59:59Z" if param == "created_before" else "9999-12-31"

    api = api_as("ops").get("/api/v1/leads/", {param: value})
    page = client_as("ops").get("/leads/", {param: value})
    export = client_as("ops").get("/leads/export.csv", {param: value})

    assert api.status_code == 400 and "out of range" in json.dumps(api.json())
    assert page.status_code == 200 and "out of range" in page.content.decode()
    assert export.status_code < 500
