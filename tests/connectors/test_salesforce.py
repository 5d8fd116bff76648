"""SalesforceConnector: simple-salesforce against a fake Salesforce over TLS on loopback."""

from __future__ import annotations

import copy
import json
import threading
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

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
from integrations.connectors.salesforce import SalesforceConfig, SalesforceConnector

from .conftest import load_json

NOW = datetime(2024, 3, 18, 12, 0, tzinfo=UTC)
API = "/services/data/v59.0"
QUERY = f"{API}/query/"
DELETED = f"{API}/sobjects/Lead/deleted/"
LIMITS = f"{API}/limits/"
TOKEN = "/services/oauth2/token"
NEXT_PAGE = "/services/data/v60.0/query/01gRO0000016PIAYA2-2"
USAGE_HEADER = {"Sforce-Limit-Info": "api-usage=18/5000"}


def make_connector(server: HTTPServer, ca_bundle: str, sleeps, **overrides: Any):
    options: dict[str, Any] = {
        "instance_url": server.url_for("/").rstrip("/"),
        "access_token": "old-token",
        "client_id": "client-id",
        "client_secret": "client-secret",
        "refresh_token": "refresh-token",
        "verify": ca_bundle,
        "timeout": 5,
        # The lead tests read leads only; the outcome tests switch opportunities on.
        "fetch_opportunities": False,
    }
    options.update(overrides)
    refreshed: list[str] = []
    connector = SalesforceConnector(
        SalesforceConfig(**options),
        retry=RetryPolicy(attempts=3, base_delay=0.5, max_delay=30),
        sleep=sleeps,
        clock=lambda: NOW,
        on_token_refresh=refreshed.append,
    )
    connector.refreshed = refreshed  # type: ignore[attr-defined]
    return connector


def error_response(payload: str) -> Response:
    data = load_json(payload)
    return Response(
        json.dumps(data["body"]), status=data["status"], content_type="application/json"
    )


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body),
        status=status,
        content_type="application/json",
        headers={**USAGE_HEADER, **(headers or {})},
    )


def lead_pages() -> tuple[dict[str, Any], dict[str, Any]]:
    page1 = load_json("salesforce/query_lead_page1.json")
    page2 = load_json("salesforce/query_lead_page2.json")
    # The shared page 2 is older than page 1 (it documents paging, not ordering); a real
    # "ORDER BY SystemModstamp" result is ascending, so move it after page 1.
    page2["records"][0]["SystemModstamp"] = "2024-03-18T11:40:00.000+0000"
    return page1, page2


EMPTY_QUERY = {"totalSize": 0, "done": True, "records": []}


class FakeSalesforce:
    """Routes SOQL queries on /query/ by their FROM clause and records every query.

    Lead queries take the next of ``lead_pages``; Opportunity queries the next of
    ``opportunity_pages`` (no opportunities once they run out); User queries get ``users``."""

    def __init__(self, server: HTTPServer):
        self.server = server
        self.soql: list[str] = []
        self.lead_pages: list[Response] = []
        self.opportunity_pages: list[dict[str, Any]] = []
        self.users = load_json("salesforce/query_user.json")
        self.usage = USAGE_HEADER["Sforce-Limit-Info"]
        server.expect_request(QUERY, method="GET").respond_with_handler(self._query)

    def _query(self, request: Request) -> Response:
        soql = request.args["q"]
        self.soql.append(soql)
        headers = {"Sforce-Limit-Info": self.usage}
        if " FROM Opportunity" in soql:
            page = self.opportunity_pages.pop(0) if self.opportunity_pages else EMPTY_QUERY
            return json_response(page, headers=headers)
        if " FROM User" in soql:
            return json_response(self.users, headers=headers)
        assert " FROM Lead" in soql
        return self.lead_pages.pop(0)

    def lead_queries(self) -> list[str]:
        return [q for q in self.soql if " FROM Lead" in q]


def expect_deleted(server: HTTPServer, body: dict[str, Any] | None = None) -> None:
    server.expect_request(DELETED, method="GET").respond_with_response(
        json_response(body or load_json("salesforce/getdeleted_lead.json"))
    )


def test_it_fetches_every_page_once_and_advances_the_cursor_per_page(
    https_server, ca_bundle, sleeps
):
    page1, page2 = lead_pages()
    fake = FakeSalesforce(https_server)
    fake.lead_pages.append(json_response(page1))
    https_server.expect_request(NEXT_PAGE, method="GET").respond_with_response(json_response(page2))
    expect_deleted(https_server)
    connector = make_connector(https_server, ca_bundle, sleeps)

    batches = list(connector.fetch(None))

    assert len(batches) == 2
    ids = [lead.external_id for batch in batches for lead in batch.leads]
    assert ids == ["00Q5g0000040001EAA", "00Q5g0000040002EAA", "00Q5g0000040003EAA"]
    assert [b.done for b in batches] == [False, True]
    first, second = (json.loads(b.cursor_after) for b in batches)
    assert first["modstamp"] == "2024-03-18T11:22:34Z"
    assert first["id"] == "00Q5g0000040002EAA"
    assert second["modstamp"] == "2024-03-18T11:40:00Z"
    assert second["id"] == "00Q5g0000040003EAA"
    # Deletions arrive once, with the first page, and move their own watermark.
    assert [d.external_id for d in batches[0].deleted] == ["00Q5g0000040009EAA"]
    assert batches[1].deleted == []
    assert first["deleted_until"] == "2024-03-18T11:15:00Z"
    assert sleeps.calls == []
    # A first run reads everything, ordered for the keyset cursor.
    (soql,) = fake.lead_queries()
    assert " WHERE " not in soql
    assert soql.endswith("FROM Lead ORDER BY SystemModstamp, Id")
    assert "SystemModstamp" in soql and "ConvertedOpportunityId" in soql


def test_it_maps_leads_and_leaves_a_converted_leads_outcome_to_its_opportunity(
    https_server, ca_bundle, sleeps
):
    page1, _ = lead_pages()
    page1["done"] = True
    fake = FakeSalesforce(https_server)
    fake.lead_pages.append(json_response(page1))
    expect_deleted(https_server)
    connector = make_connector(
        https_server, ca_bundle, sleeps, custom_fields=("Rating",), fetch_opportunities=True
    )

    lead_batch, opportunity_batch = list(connector.fetch(None))

    open_lead, converted = lead_batch.leads
    assert open_lead.email == "dana.okafor@example.com"
    assert open_lead.employees == 250
    assert open_lead.lifecycle_stage == "lead"
    assert open_lead.lead_source == "Web"
    assert open_lead.attributes == {"status": "Open - Not Contacted", "Rating": None}
    assert open_lead.created_at == datetime(2024, 3, 4, 9, 12, 44, tzinfo=UTC)
    assert open_lead.related_ids == {"owner_id": "0055g00000AaBbCAAV"}
    # Conversion is not a sale: the lead became an opportunity, and only its opportunity
    # says whether it was won.
    assert converted.lifecycle_stage is None
    assert converted.stage_times == {"opportunity_at": datetime(2024, 3, 18, tzinfo=UTC)}
    assert converted.revenue is None
    assert converted.related_ids["converted_opportunity_id"] == "0065g00000AbCdEAAV"
    assert not any(key.startswith("opportunity_") for key in converted.attributes)
    assert lead_batch.done is False and opportunity_batch.done is True
    assert opportunity_batch.leads == [] and opportunity_batch.outcomes == []


def test_it_reads_the_users_that_own_leads_once_per_run(https_server, ca_bundle, sleeps):
    page1, page2 = lead_pages()
    fake = FakeSalesforce(https_server)
    fake.lead_pages.append(json_response(page1))
    https_server.expect_request(NEXT_PAGE, method="GET").respond_with_response(json_response(page2))
    expect_deleted(https_server)
    connector = make_connector(https_server, ca_bundle, sleeps)

    first, second = list(connector.fetch(None))

    assert [(o.external_id, o.email) for o in first.owners] == [
        ("0055g00000AaBbCAAV", "sales1@example.com"),
        ("0055g00000AaBbDAAV", "outside.rep@partner.example.net"),
        ("0055g00000AaBbEAAV", "integration.user@example.com"),
    ]
    assert second.owners == []
    assert [q for q in fake.soql if " FROM User" in q] == ["SELECT Id, Email FROM User ORDER BY Id"]


def test_opportunities_become_outcomes_from_their_won_and_closed_flags(
    https_server, ca_bundle, sleeps
):
    page1, _ = lead_pages()
    page1["done"] = True
    fake = FakeSalesforce(https_server)
    fake.lead_pages.append(json_response(page1))
    fake.opportunity_pages.append(load_json("salesforce/query_opportunity.json"))
    expect_deleted(https_server)
    connector = make_connector(https_server, ca_bundle, sleeps, fetch_opportunities=True)

    _, batch = list(connector.fetch(None))

    won, lost, still_open, won_later = batch.outcomes
    assert (won.status, won.amount) == ("won", 48000.0)
    assert won.closed_at == datetime(2024, 4, 2, tzinfo=UTC)
    assert won.opened_at == datetime(2024, 3, 18, 11, 22, 30, tzinfo=UTC)
    assert won.links == (
        ("converted_opportunity_id", "0065g00000AbCdEAAV"),
        ("converted_contact_id", "0035g00000QrS34AAC"),
        ("converted_account_id", "0015g00000XyZ12AAB"),
    )
    assert (lost.status, lost.closed_at) == ("lost", datetime(2024, 4, 3, tzinfo=UTC))
    # "Closed Won - Pending Review" is only a stage name: the flags say it is still open.
    assert (still_open.status, still_open.closed_at, still_open.amount) == ("open", None, None)
    assert still_open.links == (
        ("converted_opportunity_id", "0065g00000AbCgHAAV"),
        ("converted_account_id", "0015g00000XyZ14AAB"),
    )
    assert (won_later.status, won_later.amount) == ("won", 9000.0)
    cursor = json.loads(batch.cursor_after)
    assert cursor["opp_modstamp"] == "2024-05-10T09:30:00Z"
    assert cursor["opp_id"] == "0065g00000AbCiJAAV"
    # The lead cursor is untouched by the opportunity pages.
    assert cursor["id"] == "00Q5g0000040002EAA"
    (soql,) = [q for q in fake.soql if " FROM Opportunity" in q]
    assert soql.endswith("FROM Opportunity ORDER BY SystemModstamp, Id")
    assert "IsWon" in soql and "ContactId" in soql and "AccountId" in soql


def test_an_incremental_run_reads_opportunities_changed_after_their_own_cursor(
    https_server, ca_bundle, sleeps
):
    fake = FakeSalesforce(https_server)
    fake.lead_pages.append(json_response(EMPTY_QUERY))
    changed = load_json("salesforce/query_opportunity.json")
    changed["records"] = changed["records"][1:2]
    changed["records"][0].update(
        IsWon=True,
        StageName="Closed Won",
        Amount=15000.0,
        SystemModstamp="2024-05-01T08:00:00.000+0000",
    )
    fake.opportunity_pages.append(changed)
    expect_deleted(https_server)
    connector = make_connector(https_server, ca_bundle, sleeps, fetch_opportunities=True)
    cursor = json.dumps(
        {
            "modstamp": "2024-03-18T11:40:00Z",
            "id": "00Q5g0000040003EAA",
            "deleted_until": "2024-03-18T11:15:00Z",
            "opp_modstamp": "2024-04-04T12:00:00Z",
            "opp_id": "0065g00000AbCgHAAV",
        }
    )

    batches = list(connector.fetch(cursor))

    (outcome,) = batches[-1].outcomes
    assert (outcome.external_id, outcome.status, outcome.amount) == (
        "0065g00000AbCeFAAV",
        "won",
        15000.0,
    )
    (soql,) = [q for q in fake.soql if " FROM Opportunity" in q]
    assert (
        "WHERE SystemModstamp > 2024-04-04T12:00:00Z OR (SystemModstamp = 2024-04-04T12:00:00Z "
        "AND Id > '0065g00000AbCgHAAV')" in soql
    )
    assert json.loads(batches[-1].cursor_after)["opp_modstamp"] == "2024-05-01T08:00:00Z"


def test_an_incremental_run_resumes_after_the_cursor_with_a_keyset_condition(
    https_server, ca_bundle, sleeps
):
    _, page2 = lead_pages()
    fake = FakeSalesforce(https_server)
    fake.lead_pages.append(json_response(page2))
    expect_deleted(
        https_server, {"deletedRecords": [], "latestDateCovered": "2024-03-18T11:59:00Z"}
    )
    cursor = json.dumps(
        {
            "modstamp": "2024-03-18T11:22:34Z",
            "id": "00Q5g0000040002EAA",
            "deleted_until": "2024-03-17T00:00:00Z",
        }
    )
    connector = make_connector(https_server, ca_bundle, sleeps)

    (batch,) = list(connector.fetch(cursor))

    (soql,) = fake.lead_queries()
    assert soql.endswith(
        " FROM Lead WHERE SystemModstamp > 2024-03-18T11:22:34Z OR "
        "(SystemModstamp = 2024-03-18T11:22:34Z AND Id > '00Q5g0000040002EAA') "
        "ORDER BY SystemModstamp, Id"
    )
    deleted_request = next(r for r, _ in https_server.log if r.path == DELETED)
    assert deleted_request.args["start"] == "2024-03-17T00:00:00+00:00"
    assert deleted_request.args["end"] == "2024-03-18T12:00:00+00:00"
    assert [lead.external_id for lead in batch.leads] == ["00Q5g0000040003EAA"]
    assert json.loads(batch.cursor_after)["deleted_until"] == "2024-03-18T11:59:00Z"


def test_a_bare_timestamp_cursor_and_an_old_deleted_watermark_are_accepted(
    https_server, ca_bundle, sleeps
):
    _, page2 = lead_pages()
    fake = FakeSalesforce(https_server)
    fake.lead_pages.append(json_response(page2))
    expect_deleted(https_server)
    connector = make_connector(https_server, ca_bundle, sleeps)

    list(connector.fetch("2024-01-01T00:00:00Z"))

    (soql,) = fake.lead_queries()
    assert " WHERE SystemModstamp > 2024-01-01T00:00:00Z ORDER BY SystemModstamp, Id" in soql
    # No deletion watermark yet: ask for what Salesforce still keeps (15 days, minus margin).
    deleted_request = next(r for r, _ in https_server.log if r.path == DELETED)
    assert deleted_request.args["start"] == "2024-03-03T12:05:00+00:00"


def test_a_full_sync_ignores_the_cursor(https_server, ca_bundle, sleeps):
    _, page2 = lead_pages()
    fake = FakeSalesforce(https_server)
    fake.lead_pages.append(json_response(page2))
    expect_deleted(https_server)
    connector = make_connector(https_server, ca_bundle, sleeps)

    list(connector.fetch('{"modstamp":"2024-03-18T11:22:34Z","id":null}', full=True))

    (soql,) = fake.lead_queries()
    assert " WHERE " not in soql


def test_an_expired_query_locator_requeries_from_the_keyset_cursor(https_server, ca_bundle, sleeps):
    page1, page2 = lead_pages()
    fake = FakeSalesforce(https_server)
    fake.lead_pages += [json_response(page1), json_response(page2)]
    https_server.expect_request(NEXT_PAGE).respond_with_json(
        [{"message": "invalid query locator", "errorCode": "INVALID_QUERY_LOCATOR"}], status=400
    )
    expect_deleted(https_server)
    connector = make_connector(https_server, ca_bundle, sleeps)

    batches = list(connector.fetch(None))

    assert [lead.external_id for b in batches for lead in b.leads][-1] == "00Q5g0000040003EAA"
    assert "Id > '00Q5g0000040002EAA'" in fake.lead_queries()[1]


def test_a_401_refreshes_the_token_once_then_succeeds(https_server, ca_bundle, sleeps):
    token_body = load_json("salesforce/oauth_token_refresh_response.json")
    token_body["instance_url"] = https_server.url_for("/").rstrip("/")
    https_server.expect_oneshot_request(
        LIMITS, headers={"Authorization": "Bearer old-token"}
    ).respond_with_response(error_response("salesforce/error_401_invalid_session.json"))
    https_server.expect_oneshot_request(TOKEN, method="POST").respond_with_json(token_body)
    https_server.expect_request(
        LIMITS, headers={"Authorization": f"Bearer {token_body['access_token']}"}
    ).respond_with_response(
        json_response(load_json("salesforce/limits_response__simple_salesforce_tests.json"))
    )
    connector = make_connector(https_server, ca_bundle, sleeps)

    result = connector.test_connection()

    assert result["ok"] is True
    assert result["daily_api_requests"] == {"max": 15000, "remaining": 14998}
    assert result["api_used"] == 18 and result["api_limit"] == 5000
    token_request = next(r for r, _ in https_server.log if r.path == TOKEN)
    assert parse_qs(token_request.get_data(as_text=True)) == {
        "grant_type": ["refresh_token"],
        "client_id": ["client-id"],
        "client_secret": ["client-secret"],
        "refresh_token": ["refresh-token"],
    }
    assert connector.refreshed == [token_body["access_token"]]
    assert sleeps.calls == []


def test_a_second_401_after_the_refresh_is_a_permanent_auth_failure(
    https_server, ca_bundle, sleeps
):
    token_body = load_json("salesforce/oauth_token_refresh_response.json")
    token_body["instance_url"] = https_server.url_for("/").rstrip("/")
    https_server.expect_request(LIMITS).respond_with_response(
        error_response("salesforce/error_401_invalid_session.json")
    )
    https_server.expect_request(TOKEN, method="POST").respond_with_json(token_body)
    connector = make_connector(https_server, ca_bundle, sleeps)

    with pytest.raises(AuthFailed, match="rejected the access token again") as caught:
        connector.test_connection()

    assert "reconnect the Salesforce integration" in str(caught.value)
    assert isinstance(caught.value, PermanentError)
    assert sum(1 for r, _ in https_server.log if r.path == TOKEN) == 1
    assert sum(1 for r, _ in https_server.log if r.path == LIMITS) == 2
    assert sleeps.calls == []


def test_a_refused_refresh_token_is_a_permanent_auth_failure(https_server, ca_bundle, sleeps):
    https_server.expect_request(LIMITS).respond_with_response(
        error_response("salesforce/error_401_invalid_session.json")
    )
    https_server.expect_request(TOKEN, method="POST").respond_with_response(
        error_response("salesforce/oauth_token_invalid_grant.json")
    )
    connector = make_connector(https_server, ca_bundle, sleeps)

    with pytest.raises(AuthFailed, match="invalid_grant"):
        connector.test_connection()


def test_without_an_access_token_it_refreshes_before_the_first_call(
    https_server, ca_bundle, sleeps
):
    token_body = load_json("salesforce/oauth_token_refresh_response.json")
    token_body["instance_url"] = https_server.url_for("/").rstrip("/")
    https_server.expect_ordered_request(TOKEN, method="POST").respond_with_json(token_body)
    https_server.expect_ordered_request(
        LIMITS, headers={"Authorization": f"Bearer {token_body['access_token']}"}
    ).respond_with_response(json_response({"DailyApiRequests": {"Max": 10, "Remaining": 9}}))
    connector = make_connector(https_server, ca_bundle, sleeps, access_token=None)

    assert connector.test_connection()["daily_api_requests"] == {"max": 10, "remaining": 9}


def test_request_limit_exceeded_is_a_daily_rate_limit_raised_without_retrying(
    https_server, ca_bundle, sleeps
):
    https_server.expect_request(DELETED).respond_with_response(
        error_response("salesforce/error_403_request_limit_exceeded.json")
    )
    connector = make_connector(https_server, ca_bundle, sleeps)

    with pytest.raises(RateLimited) as caught:
        list(connector.fetch(None))

    assert caught.value.scope == "daily"
    assert caught.value.code == "REQUEST_LIMIT_EXCEEDED"
    assert caught.value.retry_after > 0
    assert len(https_server.log) == 1
    assert sleeps.calls == []


def test_the_concurrent_request_limit_is_a_burst_retried_after_a_pause(
    https_server, ca_bundle, sleeps
):
    https_server.expect_oneshot_request(LIMITS).respond_with_response(
        error_response("salesforce/error_403_concurrent_limit.json")
    )
    https_server.expect_request(LIMITS).respond_with_response(json_response({}))
    connector = make_connector(https_server, ca_bundle, sleeps)

    assert connector.test_connection()["ok"] is True
    assert sleeps.calls == [10.0]


def test_a_500_is_retried_with_backoff_then_succeeds(https_server, ca_bundle, sleeps):
    page1, _ = lead_pages()
    page1["done"] = True
    fake = FakeSalesforce(https_server)
    fake.lead_pages += [
        error_response("salesforce/error_500_unknown.json"),
        json_response(page1),
    ]
    expect_deleted(https_server)
    connector = make_connector(https_server, ca_bundle, sleeps)

    (batch,) = list(connector.fetch(None))

    assert len(batch.leads) == 2
    assert len(sleeps.calls) == 1
    assert 0 <= sleeps.calls[0] <= 0.5
    assert len(fake.lead_queries()) == 2


def test_a_timeout_is_retried(https_server, ca_bundle, sleeps):
    finished = threading.Event()

    def slow(request: Request) -> Response:
        time.sleep(0.6)
        finished.set()
        return json_response({})

    https_server.expect_oneshot_request(LIMITS).respond_with_handler(slow)
    https_server.expect_request(LIMITS).respond_with_response(json_response({}))
    connector = make_connector(https_server, ca_bundle, sleeps, timeout=0.2)

    assert connector.test_connection()["ok"] is True
    assert len(sleeps.calls) == 1
    # Let the abandoned slow request finish so it cannot land in the next test's log.
    assert finished.wait(5)


def test_a_malformed_query_is_permanent_and_not_retried(https_server, ca_bundle, sleeps):
    https_server.expect_request(QUERY).respond_with_response(
        error_response("salesforce/error_400_malformed_query.json")
    )
    expect_deleted(https_server)
    connector = make_connector(https_server, ca_bundle, sleeps)

    with pytest.raises(PermanentError, match="MALFORMED_QUERY") as caught:
        list(connector.fetch(None))

    assert caught.value.status == 400
    assert sleeps.calls == []


def test_malformed_records_are_reported_and_the_rest_of_the_page_returned(
    https_server, ca_bundle, sleeps
):
    fake = FakeSalesforce(https_server)
    fake.lead_pages.append(json_response(load_json("salesforce/query_lead_malformed.json")))
    expect_deleted(https_server, {"deletedRecords": [{"deletedDate": "2024-03-17T22:07:19Z"}]})
    connector = make_connector(https_server, ca_bundle, sleeps)

    (batch,) = list(connector.fetch(None))

    assert [lead.external_id for lead in batch.leads] == [
        "00Q5g0000040001EAA",
        "00Q5g0000040002EAA",
    ]
    assert sorted((f.external_id or "", f.reason) for f in batch.failed) == [
        ("", "Id: missing"),
        ("", "deleted record: id: missing"),
        ("00Q5g0000040005EAA", "SystemModstamp: not an ISO 8601 date-time"),
        ("00Q5g0000040006EAA", "NumberOfEmployees: not an integer"),
    ]
    # The cursor stops at the last good record, which is also the last one of the page.
    assert json.loads(batch.cursor_after)["id"] == "00Q5g0000040002EAA"


def test_usage_reports_the_daily_quota_and_throttles_above_the_threshold(
    https_server, ca_bundle, sleeps
):
    page1, _ = lead_pages()
    page1["done"] = True
    fake = FakeSalesforce(https_server)
    fake.lead_pages.append(
        json_response(page1, headers={"Sforce-Limit-Info": "api-usage=4100/5000"})
    )
    fake.usage = "api-usage=4100/5000"
    https_server.expect_request(DELETED).respond_with_response(
        json_response({"deletedRecords": []}, headers={"Sforce-Limit-Info": "api-usage=4100/5000"})
    )
    connector = make_connector(https_server, ca_bundle, sleeps)

    (batch,) = list(connector.fetch(None))

    assert batch.usage["api_limit"] == 5000
    assert batch.usage["throttle"] is True
    assert batch.usage["requests"] >= 2
    relaxed = make_connector(https_server, ca_bundle, sleeps, throttle_threshold=0.9)
    fake.lead_pages.append(
        json_response(page1, headers={"Sforce-Limit-Info": "api-usage=4100/5000"})
    )
    (batch,) = list(relaxed.fetch(None))
    assert batch.usage["throttle"] is False


def test_push_scores_sends_200_records_per_call_and_reports_per_record_failures(
    https_server, ca_bundle, sleeps
):
    template = load_json("salesforce/composite_sobjects_patch_response.json")
    bodies: list[dict[str, Any]] = []

    def composite(request: Request) -> Response:
        body = request.get_json()
        bodies.append(body)
        results = []
        for record in body["records"]:
            if int(record["id"][9:15]) % 50 == 7:
                results.append(copy.deepcopy(template[1]))
            else:
                results.append({"id": record["id"], "success": True, "errors": []})
        return json_response(results)

    https_server.expect_request(f"{API}/composite/sobjects", method="PATCH").respond_with_handler(
        composite
    )
    updates = [ScoreUpdate(f"00Q5g0000{n:06d}EAA", n % 101, "Warm") for n in range(450)]
    connector = make_connector(https_server, ca_bundle, sleeps)

    result = connector.push_scores(updates)

    assert [len(body["records"]) for body in bodies] == [200, 200, 50]
    assert all(body["allOrNone"] is False for body in bodies)
    assert bodies[0]["records"][3] == {
        "attributes": {"type": "Lead"},
        "id": "00Q5g0000000003EAA",
        "Lead_Score__c": 3,
        "Lead_Band__c": "Warm",
    }
    expected_failures = [f"00Q5g0000{n:06d}EAA" for n in range(450) if n % 50 == 7]
    assert [f.external_id for f in result.failed] == expected_failures
    assert all(f.reason == "ENTITY_IS_DELETED: entity is deleted" for f in result.failed)
    assert result.pushed == 450 - len(expected_failures)
    assert sleeps.calls == []


def test_push_scores_reports_rejected_records_by_id(https_server, ca_bundle, sleeps):
    https_server.expect_request(f"{API}/composite/sobjects", method="PATCH").respond_with_response(
        json_response(load_json("salesforce/composite_sobjects_patch_response.json"))
    )
    updates = [
        ScoreUpdate("00Q5g0000040001EAA", 80, "Hot"),
        ScoreUpdate("00Q5g0000040009EAA", 10, "Cold"),
        ScoreUpdate("00Q5g0000040002EAA", 55, "MQL"),
    ]
    connector = make_connector(https_server, ca_bundle, sleeps)

    result = connector.push_scores(updates)

    assert result.pushed == 1
    assert [(f.external_id, f.reason) for f in result.failed] == [
        ("00Q5g0000040009EAA", "ENTITY_IS_DELETED: entity is deleted"),
        ("00Q5g0000040002EAA", "CANNOT_UPDATE_CONVERTED_LEAD: cannot reference converted lead"),
    ]


def test_an_untrusted_certificate_is_a_permanent_error(https_server, sleeps):
    # verify=True means the system CA bundle, which does not know the throwaway test CA.
    connector = make_connector(https_server, True, sleeps)

    with pytest.raises(PermanentError, match="certificate verification failed"):
        connector.test_connection()

    assert sleeps.calls == []


def test_config_rejects_field_names_that_are_not_api_names():
    with pytest.raises(ValueError, match="field API name"):
        SalesforceConfig("https://x.my.salesforce.com", "t", "c", "s", "r", custom_fields=("a b",))
    assert "secret" not in repr(
        SalesforceConfig("https://x.my.salesforce.com", "token", "c", "secret", "refresh")
    )
