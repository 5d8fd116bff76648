"""MixpanelConnector: requests against a fake Mixpanel export and engage API on loopback."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from integrations.connectors.base import (
    AuthFailed,
    PermanentError,
    RateLimited,
    RetryPolicy,
    ScoreUpdate,
)
from integrations.connectors.mixpanel import (
    MixpanelConfig,
    MixpanelConnector,
    default_event_type,
)

from .conftest import load_bytes, load_json

NOW = datetime(2024, 3, 20, 9, 0, tzinfo=UTC)
EXPORT = "/api/2.0/export"
ENGAGE = "/api/query/engage"
WEB_EVENTS = load_bytes("mixpanel/export_web_events.jsonl").splitlines(keepends=True)
# export_web_events.jsonl: three events on 2024-03-18 (UTC), one on 2024-03-19.
DAYS = {
    "2024-03-18": b"".join(WEB_EVENTS[:3]),
    "2024-03-19": WEB_EVENTS[3],
    "2024-03-20": b"",
}


def make_connector(server: HTTPServer, sleeps, **overrides: Any) -> MixpanelConnector:
    base = server.url_for("/").rstrip("/")
    options: dict[str, Any] = {
        "project_id": 2526451,
        "username": "leadscore.svc",
        "secret": "svc-secret",
        "from_date": date(2024, 3, 18),
        "api_base": base,
        "query_base": base,
        "sync_profiles": False,
        "timeout": 5,
    }
    options.update(overrides)
    return MixpanelConnector(
        MixpanelConfig(**options),
        retry=RetryPolicy(attempts=3, base_delay=0.5, max_delay=90),
        sleep=sleeps,
        clock=lambda: NOW,
    )


class FakeExport:
    """Serves JSONL per day and checks the request the way Mixpanel would."""

    def __init__(self, server: HTTPServer, days: dict[str, bytes], *, gzipped: bool = False):
        self.days = days
        self.gzipped = gzipped
        self.requests: list[dict[str, str]] = []
        server.expect_request(EXPORT, method="GET").respond_with_handler(self)

    def __call__(self, request: Request) -> Response:
        expected = "Basic " + base64.b64encode(b"leadscore.svc:svc-secret").decode()
        assert request.headers.get("Authorization") == expected
        assert request.args["project_id"] == "2526451"
        assert request.args["from_date"] == request.args["to_date"]
        self.requests.append(
            {
                "day": request.args["from_date"],
                "accept_encoding": request.headers.get("Accept-Encoding", ""),
            }
        )
        body = self.days.get(request.args["from_date"], b"")
        if self.gzipped:
            return Response(
                gzip.compress(body),
                content_type="application/x-ndjson",
                headers={"Content-Encoding": "gzip"},
            )
        return Response(body, content_type="application/x-ndjson")


def events_of(batches) -> list:
    return [event for batch in batches for event in batch.events]


def test_it_exports_one_batch_per_day_and_advances_the_cursor_to_the_last_completed_day(
    http_server, sleeps
):
    fake = FakeExport(http_server, DAYS)
    connector = make_connector(http_server, sleeps)

    batches = list(connector.fetch(None))

    assert [r["day"] for r in fake.requests] == ["2024-03-18", "2024-03-19", "2024-03-20"]
    assert all("gzip" in r["accept_encoding"] for r in fake.requests)
    assert [len(b.events) for b in batches] == [3, 1, 0]
    # Today (2024-03-20) is still filling up: exported, but the cursor stays on yesterday.
    assert [b.cursor_after for b in batches] == ["2024-03-18", "2024-03-19", "2024-03-19"]
    assert [b.done for b in batches] == [False, False, True]
    assert sleeps.calls == []


def test_it_maps_events_to_our_types_identities_and_utc_times(http_server, sleeps):
    FakeExport(http_server, DAYS)
    connector = make_connector(http_server, sleeps, event_map={"Trial Started": "trial_signup"})

    events = events_of(connector.fetch(None))

    page_view, signed_up, trial, docs = events
    assert page_view.event_type == "page_view"
    assert page_view.lead_external_id.startswith("$device:")
    assert page_view.occurred_at == datetime(2024, 3, 18, 11, 6, 40, tzinfo=UTC)
    assert page_view.properties["utm_source"] == "google"
    assert page_view.properties["mp_event_name"] == "$mp_web_page_view"
    assert signed_up.event_type == "signed_up"
    assert signed_up.lead_external_id == "dana.okafor@example.com"
    assert trial.event_type == "trial_signup"
    assert docs.event_type == "viewed_integration_docs"
    assert {e.source for e in events} == {"mixpanel"}
    assert len({e.external_id for e in events}) == 4


def test_an_event_email_property_links_the_event_to_a_lead(http_server, sleeps):
    line = {
        "event": "Pricing Page Viewed",
        "properties": {
            "time": 1710760200,
            "distinct_id": "42",
            "$insert_id": "abc",
            "$email": " Dana.Okafor@Example.com ",
        },
    }
    FakeExport(http_server, {"2024-03-20": json.dumps(line).encode()})
    connector = make_connector(http_server, sleeps, from_date=date(2024, 3, 20))

    (event,) = events_of(connector.fetch(None))

    assert event.event_type == "pricing_page_viewed"
    assert event.email == "dana.okafor@example.com"
    assert event.lead_external_id == "42"


def test_an_incremental_run_starts_the_day_after_the_cursor(http_server, sleeps):
    fake = FakeExport(http_server, DAYS)
    connector = make_connector(http_server, sleeps)

    batches = list(connector.fetch("2024-03-18"))

    assert [r["day"] for r in fake.requests] == ["2024-03-19", "2024-03-20"]
    assert len(events_of(batches)) == 1
    assert batches[-1].cursor_after == "2024-03-19"


def test_a_run_that_is_up_to_date_still_exports_today_without_moving_the_cursor(
    http_server, sleeps
):
    fake = FakeExport(http_server, DAYS)
    connector = make_connector(http_server, sleeps)

    (batch,) = list(connector.fetch("2024-03-19"))

    assert [r["day"] for r in fake.requests] == ["2024-03-20"]
    assert batch.cursor_after == "2024-03-19"
    assert batch.done is True


def test_a_full_sync_ignores_the_cursor(http_server, sleeps):
    fake = FakeExport(http_server, DAYS)
    connector = make_connector(http_server, sleeps)

    list(connector.fetch("2024-03-19", full=True))

    assert fake.requests[0]["day"] == "2024-03-18"


def test_a_gzip_export_is_decoded_while_streaming(http_server, sleeps):
    FakeExport(http_server, DAYS, gzipped=True)
    connector = make_connector(http_server, sleeps)

    events = events_of(connector.fetch(None))

    assert len(events) == 4


def test_duplicates_in_the_export_collapse_to_one_stable_event(http_server, sleeps):
    FakeExport(http_server, {"2024-03-18": load_bytes("mixpanel/export_duplicates.jsonl")})
    connector = make_connector(http_server, sleeps, from_date=date(2024, 3, 18))

    first_run = list(connector.fetch(None))
    FakeExport(http_server, DAYS)
    second_run = list(make_connector(http_server, sleeps).fetch(None))

    events = events_of(first_run)
    assert len(events) == 4
    assert first_run[0].usage["duplicates"] == 3
    # A re-export of the same events yields the same external ids, so upserts ignore them.
    assert {e.external_id for e in events} == {e.external_id for e in events_of(second_run)}


def test_events_without_insert_id_collapse_only_when_identical(http_server, sleeps):
    lines = [
        {"event": "Clicked", "properties": {"time": 1710760000, "distinct_id": "u1", "x": 1}},
        {"event": "Clicked", "properties": {"time": 1710760000, "distinct_id": "u1", "x": 1}},
        {"event": "Clicked", "properties": {"time": 1710760000, "distinct_id": "u1", "x": 2}},
    ]
    body = b"\n".join(json.dumps(line).encode() for line in lines)
    FakeExport(http_server, {"2024-03-18": body})
    connector = make_connector(http_server, sleeps)

    assert len(events_of(connector.fetch(None))) == 2


def test_malformed_lines_are_reported_with_their_line_numbers(http_server, sleeps):
    FakeExport(http_server, {"2024-03-18": load_bytes("mixpanel/export_malformed.jsonl")})
    connector = make_connector(http_server, sleeps)

    batches = list(connector.fetch(None))

    assert len(events_of(batches)) == 2
    failed = [f for batch in batches for f in batch.failed]
    assert [(f.line, f.reason) for f in failed] == [
        (2, "line 2: invalid JSON"),
        (3, "line 3: properties.time: missing or not a number"),
        (4, "line 4: not a JSON object"),
        (5, "line 5: event: missing"),
    ]
    assert failed[1].external_id == "f6c8b4d7acc59b6d4e5f708192a3b4c5"
    assert failed[0].external_id is None


def test_a_big_day_is_split_into_batches_that_only_advance_the_cursor_at_the_end(
    http_server, sleeps
):
    FakeExport(http_server, DAYS)
    connector = make_connector(http_server, sleeps, max_batch_events=2)

    batches = list(connector.fetch(None))

    assert [(len(b.events), b.cursor_after) for b in batches] == [
        (2, None),
        (1, "2024-03-18"),
        (1, "2024-03-19"),
        (0, "2024-03-19"),
    ]


def test_a_stream_cut_mid_day_is_exported_again_without_duplicates(http_server, sleeps):
    calls = {"n": 0}

    def flaky(request: Request) -> Response:
        calls["n"] += 1
        if calls["n"] > 1:
            return Response(DAYS["2024-03-18"], content_type="application/x-ndjson")

        def cut() -> Iterator[bytes]:
            yield WEB_EVENTS[0]
            yield WEB_EVENTS[1]
            raise ConnectionAbortedError("simulated connection drop")

        return Response(cut(), content_type="application/x-ndjson")

    http_server.expect_request(EXPORT).respond_with_handler(flaky)
    connector = make_connector(http_server, sleeps, from_date=date(2024, 3, 18), max_batch_events=1)

    events = []
    for batch in connector.fetch("2024-03-17"):
        events.extend(batch.events)
        if batch.cursor_after == "2024-03-18":
            break

    assert calls["n"] == 2
    assert len(events) == 3
    assert len({e.external_id for e in events}) == 3
    assert len(sleeps.calls) == 1


def test_a_429_waits_the_retry_after_hint_then_succeeds(http_server, sleeps):
    rate_limited = load_json("mixpanel/error_429_query_rate_limit__real.json")
    http_server.expect_oneshot_request(EXPORT).respond_with_json(
        rate_limited["body"], status=429, headers={"Retry-After": "30"}
    )
    FakeExport(http_server, DAYS)
    connector = make_connector(http_server, sleeps)

    assert len(events_of(connector.fetch(None))) == 4
    assert sleeps.calls == [30.0]


def test_a_429_asking_for_longer_than_max_delay_is_raised_for_the_caller_to_reschedule(
    http_server, sleeps
):
    http_server.expect_request(EXPORT).respond_with_json(
        {"error": "rate limit"}, status=429, headers={"Retry-After": "3600"}
    )
    connector = make_connector(http_server, sleeps)

    with pytest.raises(RateLimited) as caught:
        list(connector.fetch(None))

    assert caught.value.scope == "burst"
    assert caught.value.retry_after == 3600
    assert sleeps.calls == []


def test_a_500_is_retried_with_backoff_then_succeeds(http_server, sleeps):
    http_server.expect_oneshot_request(EXPORT).respond_with_data("upstream error", status=503)
    FakeExport(http_server, DAYS)
    connector = make_connector(http_server, sleeps)

    assert len(events_of(connector.fetch(None))) == 4
    assert len(sleeps.calls) == 1 and 0 <= sleeps.calls[0] <= 0.5


def test_rejected_credentials_are_a_permanent_auth_failure(http_server, sleeps):
    http_server.expect_request(EXPORT).respond_with_json(
        {"error": "Invalid credentials"}, status=401
    )
    connector = make_connector(http_server, sleeps)

    with pytest.raises(AuthFailed, match="Invalid credentials"):
        list(connector.fetch(None))

    assert len(http_server.log) == 1


def test_engage_profiles_are_paged_with_session_id_and_become_leads(http_server, sleeps):
    forms: list[dict[str, str]] = []
    pages = [load_json("mixpanel/engage_page0.json"), load_json("mixpanel/engage_page1.json")]

    def engage(request: Request) -> Response:
        assert request.args["project_id"] == "2526451"
        forms.append(request.form.to_dict())
        return Response(json.dumps(pages.pop(0)), content_type="application/json")

    http_server.expect_request(ENGAGE, method="POST").respond_with_handler(engage)
    FakeExport(http_server, {})
    connector = make_connector(http_server, sleeps, sync_profiles=True, from_date=date(2024, 3, 20))

    batches = list(connector.fetch(None))

    assert forms == [{}, {"session_id": "1234567890-EXAMPL", "page": "1"}]
    profile_batches = [b for b in batches if b.leads or b.failed]
    assert len(profile_batches) == 2
    leads = [lead for b in profile_batches for lead in b.leads]
    assert [lead.external_id for lead in leads] == [
        "dana.okafor@example.com",
        "4",
        "lferreira@example.org",
    ]
    dana = leads[0]
    assert dana.source == "mixpanel"
    assert dana.email == "dana.okafor@example.com"
    assert (dana.first_name, dana.last_name, dana.country) == ("Dana", "Okafor", "PT")
    assert dana.created_at == datetime(2024, 3, 18, 11, 20, 47, tzinfo=UTC)
    assert dana.attributes == {"$last_seen": "2024-03-19T09:00:00", "plan": "pro_trial"}
    (failure,) = [f for b in profile_batches for f in b.failed]
    assert failure.external_id is None and "$distinct_id" in failure.reason
    # Profiles come first so that their leads exist before the events; the events finish.
    assert batches[-1].done is True and not batches[-1].leads


def test_the_docs_engage_example_is_a_single_short_page(http_server, sleeps):
    http_server.expect_request(ENGAGE, method="POST").respond_with_json(
        load_json("mixpanel/engage_query_response__docs_example.json")
    )
    connector = make_connector(http_server, sleeps, sync_profiles=True, from_date=date(2024, 3, 21))

    (batch,) = list(connector.fetch(None))

    assert [lead.external_id for lead in batch.leads] == ["4"]
    assert batch.leads[0].email == "example@mixpanel.com"
    assert batch.done is True


def test_push_scores_is_refused_because_mixpanel_has_no_write_back(http_server, sleeps):
    connector = make_connector(http_server, sleeps)

    with pytest.raises(PermanentError, match="no score write-back"):
        connector.push_scores([ScoreUpdate("x", 1, "Cold")])


def test_test_connection_exports_at_most_one_event(http_server, sleeps):
    http_server.expect_request(
        EXPORT,
        query_string={
            "project_id": "2526451",
            "from_date": "2024-03-20",
            "to_date": "2024-03-20",
            "limit": "1",
        },
    ).respond_with_data(WEB_EVENTS[0])
    connector = make_connector(http_server, sleeps)

    assert connector.test_connection()["ok"] is True


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Pricing Page Viewed", "pricing_page_viewed"),
        ("SignedUp", "signed_up"),
        ("$signup", "signup"),
        ("API call / v2", "api_call_v2"),
        ("$$$", ""),
    ],
)
def test_default_event_types_are_lower_snake_case(name, expected):
    assert default_event_type(name) == expected
