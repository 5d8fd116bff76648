"""The Segment tracking API against the real database: mapping, identity stitching, the edge
(sizes, per-call errors, duplicates), authentication, throttling and broker independence."""

from __future__ import annotations

import datetime as dt
import gzip
import json

import pytest

from integrations.models import SegmentGroup, SourceKey
from integrations.segment.auth import WriteKeyThrottle
from scoring.models import Event, Identity, Lead, LeadMerge, PendingRescore

TS = "2025-05-01T10:00:00.000Z"


def track(message_id: str, **fields) -> dict:
    return {
        "type": "track",
        "messageId": message_id,
        "event": "Demo Requested",
        "timestamp": TS,
        **fields,
    }


def page(message_id: str, **fields) -> dict:
    return {
        "type": "page",
        "messageId": message_id,
        "name": "Pricing",
        "properties": {"path": "/pricing", "url": "https://example.com/pricing"},
        "timestamp": TS,
        **fields,
    }


# ---------------------------------------------------------------- mapping


def test_identify_maps_traits_to_lead_fields_and_the_rest_to_attributes(segment):
    response = segment(
        "identify",
        {
            "userId": "u1",
            "traits": {
                "email": " Ada@Example.COM ",
                "firstName": "Ada",
                "lastName": "Lovelace",
                "title": "CTO",
                "company": {"name": "Engines Ltd", "employee_count": 250, "plan": "pro"},
                "industry": "Software",
                "address": {"country": "UK", "city": "London"},
                "favourite_colour": "green",
            },
        },
    )
    assert response.status_code == 200
    assert response.json()["success"] is True
    lead = Lead.objects.get()
    assert (lead.email, lead.first_name, lead.last_name, lead.title) == (
        "ada@example.com",
        "Ada",
        "Lovelace",
        "CTO",
    )
    assert (lead.company, lead.employees, lead.industry, lead.country) == (
        "Engines Ltd",
        250,
        "Software",
        "UK",
    )
    assert lead.attributes == {
        "favourite_colour": "green",
        "company": {"plan": "pro"},
        "address": {"city": "London"},
    }
    assert Identity.objects.filter(source="segment", external_id="u1", lead=lead).exists()


def test_identify_takes_snake_case_names_a_company_string_and_employees(segment):
    segment(
        "identify",
        {
            "userId": "u1",
            "traits": {
                "first_name": "Grace",
                "last_name": "Hopper",
                "company": "Navy",
                "employees": "1200",
                "country": "US",
            },
        },
    )
    lead = Lead.objects.get()
    assert (lead.first_name, lead.last_name, lead.company, lead.employees, lead.country) == (
        "Grace",
        "Hopper",
        "Navy",
        1200,
        "US",
    )


def test_identify_with_a_known_email_joins_the_existing_lead(segment):
    crm_lead = Lead.objects.create(email="ada@example.com", company="From the CRM")
    segment("identify", {"userId": "u1", "traits": {"email": "ADA@example.com", "title": "CTO"}})
    assert Lead.objects.count() == 1
    crm_lead.refresh_from_db()
    assert crm_lead.title == "CTO"
    assert Identity.objects.get(source="segment", external_id="u1").lead == crm_lead


def test_track_stores_an_event_with_its_type_properties_and_time(segment):
    response = segment(
        "track",
        {
            "userId": "u1",
            "messageId": "m1",
            "event": "Demo Requested",
            "properties": {"plan": "pro"},
            "timestamp": "2025-05-01T12:00:00+02:00",
        },
    )
    assert response.status_code == 200
    event = Event.objects.get()
    assert (event.source, event.external_id) == ("segment", "m1")
    assert event.event_type == "Demo Requested"
    assert event.properties == {"plan": "pro"}
    assert event.occurred_at == dt.datetime(2025, 5, 1, 10, tzinfo=dt.UTC)
    assert event.lead.identities.get().external_id == "u1"


def test_a_call_without_message_id_sent_twice_is_stored_once(segment):
    call = {"userId": "u1", "event": "Signed Up", "timestamp": TS}
    segment("track", call)
    again = segment("track", {**call, "sentAt": "2025-05-01T10:00:05Z"})
    assert again.json()["duplicate"] == 1
    assert Event.objects.count() == 1


def test_page_and_screen_are_page_view_and_screen_view_with_their_properties(segment):
    segment("page", page("m1", userId="u1", category="Docs"))
    segment("screen", {"userId": "u1", "messageId": "m2", "name": "Home", "timestamp": TS})
    events = {e.event_type: e.properties for e in Event.objects.all()}
    assert events["page_view"] == {
        "path": "/pricing",
        "url": "https://example.com/pricing",
        "name": "Pricing",
        "category": "Docs",
    }
    assert events["screen_view"] == {"name": "Home"}
    assert set(Event.objects.values_list("external_id", flat=True)) == {"m1", "m2"}


def test_a_call_without_a_timestamp_is_dated_when_it_arrives(segment):
    before = dt.datetime.now(dt.UTC)
    segment("track", {"userId": "u1", "messageId": "m1", "event": "x"})
    assert Event.objects.get().occurred_at >= before - dt.timedelta(seconds=1)


def test_original_timestamp_is_corrected_for_the_devices_clock_skew(segment):
    # The device's clock is 1 hour fast: it sent the call "at" 12:00 and it happened 11:59.
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    device = now + dt.timedelta(hours=1)
    segment(
        "track",
        {
            "userId": "u1",
            "messageId": "m1",
            "event": "x",
            "originalTimestamp": (device - dt.timedelta(minutes=1)).isoformat(),
            "sentAt": device.isoformat(),
        },
    )
    occurred = Event.objects.get().occurred_at
    assert abs(occurred - (now - dt.timedelta(minutes=1))) < dt.timedelta(seconds=5)


@pytest.mark.parametrize("employees", ["many", 12.5, True, -1, [3]])
def test_a_head_count_that_is_not_a_whole_number_is_rejected(segment, employees):
    response = segment("identify", {"userId": "u1", "traits": {"employees": employees}})
    assert response.status_code == 400
    assert response.json()["message"].startswith("traits.employees: must be")
    assert Lead.objects.count() == 0


def test_group_ties_the_lead_to_its_account_and_keeps_the_traits(segment):
    response = segment(
        "group",
        {
            "userId": "u1",
            "groupId": "acme-1",
            "traits": {
                "name": "Acme",
                "employees": 500,
                "industry": "Retail",
                "website": "https://acme.example",
                "plan": "enterprise",
            },
        },
    )
    assert response.status_code == 200
    lead = Lead.objects.get()
    assert lead.attributes["segment_group_id"] == "acme-1"
    assert (lead.company, lead.employees, lead.industry) == ("Acme", 500, "Retail")
    group = SegmentGroup.objects.get()
    assert (group.group_id, group.name, group.employees, group.website) == (
        "acme-1",
        "Acme",
        500,
        "https://acme.example",
    )
    assert group.traits["plan"] == "enterprise"
    # A later call adds to the traits it keeps.
    segment("group", {"userId": "u2", "groupId": "acme-1", "traits": {"seats": 40}})
    group.refresh_from_db()
    assert (group.name, group.traits["plan"], group.traits["seats"]) == ("Acme", "enterprise", 40)


# ---------------------------------------------------------------- anonymous history


def test_anonymous_calls_are_kept_and_identify_moves_them_onto_the_lead(segment):
    crm_lead = Lead.objects.create(email="ada@example.com")
    segment("page", page("p1", anonymousId="anon-1"))
    segment("track", track("t1", anonymousId="anon-1"))
    anonymous = Identity.objects.get(source="segment_anonymous", external_id="anon-1").lead
    assert anonymous.email is None
    assert anonymous.events.count() == 2

    segment(
        "identify",
        {"userId": "u1", "anonymousId": "anon-1", "traits": {"email": "ada@example.com"}},
    )
    assert not Lead.objects.filter(pk=anonymous.pk).exists()
    assert set(crm_lead.events.values_list("external_id", flat=True)) == {"p1", "t1"}
    assert set(crm_lead.identities.values_list("source", "external_id")) == {
        ("segment", "u1"),
        ("segment_anonymous", "anon-1"),
    }
    merge = LeadMerge.objects.get()
    assert (merge.survivor_id, merge.merged_lead_id, merge.events_moved) == (
        crm_lead.pk,
        anonymous.pk,
        2,
    )
    assert "segment identify" in merge.details["reason"]
    # Later anonymous calls of the same visitor land on the lead directly.
    segment("page", page("p2", anonymousId="anon-1"))
    assert crm_lead.events.count() == 3


def test_alias_moves_the_previous_ids_history_onto_the_user(segment):
    segment("track", track("t1", anonymousId="visitor-9"))
    segment("identify", {"userId": "u1", "traits": {"email": "bob@example.com"}})
    response = segment("alias", {"previousId": "visitor-9", "userId": "u1"})
    assert response.status_code == 200
    lead = Lead.objects.get()
    assert lead.email == "bob@example.com"
    assert lead.events.get().external_id == "t1"
    assert LeadMerge.objects.count() == 1


@pytest.mark.parametrize("one_batch", [False, True])
def test_a_shared_devices_anonymous_id_never_merges_two_users(segment, one_batch):
    calls = [
        {
            "type": "identify",
            "userId": "u1",
            "anonymousId": "kiosk",
            "traits": {"email": "a@example.com"},
        },
        {
            "type": "identify",
            "userId": "u2",
            "anonymousId": "kiosk",
            "traits": {"email": "b@example.com"},
        },
    ]
    if one_batch:
        segment("batch", {"batch": calls})
    else:
        for call in calls:
            segment("identify", call)
    segment("track", track("t1", anonymousId="kiosk"))
    assert Lead.objects.count() == 2
    assert LeadMerge.objects.count() == 0
    first = Identity.objects.get(source="segment_anonymous", external_id="kiosk").lead
    assert first.email == "a@example.com"
    assert first.events.get().external_id == "t1"


def test_alias_does_merge_two_user_ids(segment):
    segment("identify", {"userId": "old-id", "traits": {"email": "a@example.com"}})
    segment("track", track("t1", userId="old-id"))
    segment("identify", {"userId": "new-id", "traits": {"title": "CTO"}})
    segment("alias", {"previousId": "old-id", "userId": "new-id"})
    lead = Lead.objects.get()
    assert (lead.email, lead.title) == ("a@example.com", "CTO")
    assert lead.events.get().external_id == "t1"


def test_in_one_batch_anonymous_calls_before_identify_need_no_anonymous_lead(segment):
    response = segment(
        "batch",
        {
            "batch": [
                page("p1", anonymousId="anon-2"),
                track("t1", anonymousId="anon-2"),
                {
                    "type": "identify",
                    "userId": "u2",
                    "anonymousId": "anon-2",
                    "traits": {"email": "cy@example.com"},
                },
            ]
        },
    )
    assert response.json()["accepted"] == 3
    lead = Lead.objects.get()
    assert lead.email == "cy@example.com"
    assert lead.events.count() == 2
    assert LeadMerge.objects.count() == 0


# ---------------------------------------------------------------- the edge


def test_a_batch_answers_success_with_its_counts(segment):
    response = segment("batch", {"batch": [track("a", userId="u1"), page("b", userId="u1")]})
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "accepted": 2,
        "duplicate": 0,
        "rejected": 0,
        "errors": [],
    }


def test_a_retried_batch_is_stored_once(segment):
    body = {"batch": [track("a", userId="u1"), page("b", anonymousId="v1")]}
    assert segment("batch", body).json()["accepted"] == 2
    again = segment("batch", body).json()
    assert (again["success"], again["accepted"], again["duplicate"]) == (True, 0, 2)
    assert Event.objects.count() == 2


def test_invalid_calls_are_reported_per_call_and_the_good_ones_stored(segment):
    response = segment(
        "batch",
        {
            "batch": [
                track("ok-1", userId="u1"),
                {"type": "track", "messageId": "no-one", "event": "x"},
                {"type": "launch", "userId": "u1"},
                track("bad-time", userId="u1", timestamp="yesterday"),
                "not a call",
                {"type": "identify", "userId": "u1", "traits": {"email": "nope"}},
                {"type": "group", "userId": "u1"},
                {"type": "alias", "userId": "u1"},
                track("ok-2", userId="u1", event=""),
            ]
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["accepted"] == 1
    reasons = {e["index"]: e["reasons"] for e in body["errors"]}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert reasons[1] == ["userId or anonymousId: one is required"]
    assert reasons[2][0].startswith("type: must be one of")
    assert reasons[3][0].startswith("timestamp: ")
    assert reasons[4] == ["each call must be a JSON object"]
    assert "is not an email address" in reasons[5][0]
    assert reasons[6] == ["groupId: this field is required"]
    assert reasons[7] == ["previousId: this field is required"]
    assert reasons[8] == ["event: this field is required"]
    assert body["errors"][0]["messageId"] == "no-one"
    assert list(Event.objects.values_list("external_id", flat=True)) == ["ok-1"]


def test_a_request_with_no_valid_call_is_a_400_with_a_code_and_message(segment):
    response = segment("track", {"userId": "u1", "messageId": "m"})
    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False
    assert body["code"] == "invalid_request"
    assert body["message"] == "event: this field is required"


@pytest.mark.parametrize(
    "raw", [b"{not json", b"[]", b'{"batch": []}', b'{"batch": "x"}', b'{"x": NaN}']
)
def test_a_body_that_is_not_a_batch_is_a_400(segment, raw):
    response = segment("batch", raw)
    assert response.status_code == 400
    assert response.json()["success"] is False
    assert Event.objects.count() == 0


def test_a_call_over_32_kb_is_a_413(segment):
    big = track("m", userId="u1", properties={"blob": "x" * (33 * 1024)})
    response = segment("track", big)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert Event.objects.count() == 0


def test_inside_a_batch_a_call_over_32_kb_is_rejected_alone(segment):
    big = track("big", userId="u1", properties={"blob": "x" * (33 * 1024)})
    response = segment("batch", {"batch": [big, track("small", userId="u1")]})
    assert response.status_code == 200
    assert response.json()["errors"] == [
        {"index": 0, "reasons": ["the call is larger than 32 KB"], "messageId": "big"}
    ]
    assert list(Event.objects.values_list("external_id", flat=True)) == ["small"]


def test_a_batch_over_500_kb_is_a_413(segment):
    calls = [track(f"m{i}", userId="u1", properties={"blob": "x" * 20_000}) for i in range(27)]
    response = segment("batch", {"batch": calls})
    assert response.status_code == 413
    assert Event.objects.count() == 0


def test_a_gzipped_batch_is_accepted(segment):
    raw = gzip.compress(json.dumps({"batch": [track("g1", userId="u1")]}).encode())
    response = segment("batch", raw, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 200
    assert Event.objects.get().external_id == "g1"


def test_a_gzip_bomb_is_a_413_not_a_memory_spike(segment):
    raw = gzip.compress(b'{"batch": ["' + b"x" * (2 * 1024 * 1024) + b'"]}')
    response = segment("batch", raw, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 413


# ---------------------------------------------------------------- authentication


def test_the_write_key_may_come_in_the_body(segment, source_key):
    response = segment(
        "batch", {"writeKey": source_key, "batch": [track("w", userId="u1")]}, key=None
    )
    assert response.status_code == 200
    assert Event.objects.count() == 1


def test_an_api_token_of_a_user_who_may_ingest_is_a_write_key(segment, ops_token):
    response = segment("track", track("m", userId="u1"), key=ops_token)
    assert response.status_code == 200


def test_a_token_of_a_user_without_the_ingest_capability_is_refused(segment, role_users):
    from tests.factories import api_token

    response = segment("track", track("m", userId="u1"), key=api_token(role_users["sales1"]))
    assert response.status_code == 403
    assert response.json()["success"] is False
    assert Event.objects.count() == 0


@pytest.mark.parametrize("key", [None, "lsk_wrong", "0123456789abcdef" * 4])
def test_a_missing_or_wrong_write_key_is_a_401(segment, key):
    response = segment("track", track("m", userId="u1"), key=key)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert Event.objects.count() == 0


def test_a_revoked_source_key_is_refused(segment):
    from integrations.segment.services import source_key_revoke

    source_key_revoke(SourceKey.objects.get().pk)
    assert segment("track", track("m", userId="u1")).status_code == 401


def test_the_source_key_is_stored_hashed_and_counts_its_calls(segment, source_key):
    row = SourceKey.objects.get()
    assert source_key not in (row.digest, row.prefix) and source_key.startswith(row.prefix)
    segment("batch", {"batch": [track("a", userId="u1"), {"type": "track"}]})
    segment("batch", {"batch": [track("a", userId="u1")]})
    row.refresh_from_db()
    assert (row.requests, row.accepted, row.duplicate, row.rejected) == (2, 1, 1, 1)
    assert row.last_call_at is not None
    assert row.last_error


def test_repeated_bad_write_keys_are_throttled_like_bad_tokens(segment, settings):
    settings.API_AUTH_FAILURE_LIMIT = 2
    for _ in range(2):
        assert segment("track", track("m", userId="u1"), key="lsk_guess").status_code == 401
    assert segment("track", track("m", userId="u1"), key="lsk_guess").status_code == 429


def test_writes_are_throttled_per_source_key(segment, monkeypatch):
    monkeypatch.setattr(WriteKeyThrottle, "THROTTLE_RATES", {"ingest": "2/min"})
    assert segment("track", track("a", userId="u1")).status_code == 200
    assert segment("track", track("b", userId="u1")).status_code == 200
    limited = segment("track", track("c", userId="u1"))
    assert limited.status_code == 429
    assert "Retry-After" in limited.headers
    assert limited.json()["code"] == "throttled"


def test_a_browsers_preflight_is_answered_without_a_key(client):
    response = client.options(
        "/segment/v1/batch",
        HTTP_ORIGIN="https://www.example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization,content-type",
    )
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "authorization" in response["Access-Control-Allow-Headers"].lower()
    assert "Access-Control-Allow-Credentials" not in response


def test_answers_carry_cors_headers_for_browser_sdks(segment):
    response = segment("track", track("m", userId="u1"), HTTP_ORIGIN="https://www.example.com")
    assert response["Access-Control-Allow-Origin"] == "*"


# ---------------------------------------------------------------- rescoring


def test_calls_mark_their_leads_for_a_real_time_rescore(segment):
    segment("batch", {"batch": [track("a", userId="u1"), page("b", anonymousId="v1")]})
    assert PendingRescore.objects.count() == 2


def test_calls_are_stored_and_marked_when_the_broker_is_down(
    segment, broker_down, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = segment("track", track("a", userId="u1"))
    assert response.status_code == 200
    assert Event.objects.count() == 1
    assert PendingRescore.objects.filter(lead=Event.objects.get().lead).exists()
