"""HubSpotConnector: hubspot-api-client (urllib3) against a fake HubSpot on loopback."""

from __future__ import annotations

import copy
import json
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
    TransientError,
)
from integrations.connectors.hubspot import HubSpotConfig, HubSpotConnector

from .conftest import load_json

NOW = datetime(2024, 3, 19, 8, 0, tzinfo=UTC)
SEARCH = "/crm/v3/objects/contacts/search"
DEALS_SEARCH = "/crm/v3/objects/deals/search"
OWNERS = "/crm/v3/owners/"
PIPELINES = "/crm/v3/pipelines/deals"
ASSOCIATIONS = "/crm/v4/associations/deals/contacts/batch/read"
CONTACT_COMPANIES = "/crm/v4/associations/contacts/companies/batch/read"
BATCH_UPDATE = "/crm/v3/objects/contacts/batch/update"
CONTACTS = "/crm/v3/objects/contacts"
TOKEN = "/oauth/v1/token"


def make_connector(server: HTTPServer, sleeps, **overrides: Any) -> HubSpotConnector:
    options: dict[str, Any] = {
        "access_token": "old-token",
        "base_url": server.url_for("/").rstrip("/"),
        "page_size": 2,
        "timeout": 5,
        # The contact tests read contacts only; the outcome and company tests switch deals,
        # owners and company associations on.
        "fetch_deals": False,
        "fetch_owners": False,
        "fetch_companies": False,
    }
    options.update(overrides)
    return HubSpotConnector(
        HubSpotConfig(**options),
        retry=RetryPolicy(attempts=3, base_delay=0.5, max_delay=30),
        sleep=sleeps,
        clock=lambda: NOW,
    )


def payload_contacts() -> list[dict[str, Any]]:
    """The three composed contacts of the shared list pages (ids 151, 152, 153)."""
    page1 = load_json("hubspot/contacts_list_page1.json")
    page2 = load_json("hubspot/contacts_list_page2.json")
    return page1["results"] + page2["results"]


def make_contact(contact_id: int, modified: str) -> dict[str, Any]:
    contact = copy.deepcopy(payload_contacts()[0])
    contact["id"] = str(contact_id)
    contact["properties"].update(
        hs_object_id=str(contact_id),
        lastmodifieddate=modified,
        email=f"contact{contact_id}@example.com",
    )
    contact["updatedAt"] = modified
    return contact


def millis(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


class FakeSearch:
    """The CRM search endpoint's semantics: GTE filter, ascending sort, ``after`` offsets,
    and a 400 past ``result_limit`` results, as HubSpot answers past 10,000."""

    def __init__(
        self,
        server: HTTPServer,
        contacts: list[dict[str, Any]],
        result_limit: int,
        *,
        path: str = SEARCH,
        modified_property: str = "lastmodifieddate",
    ):
        self.contacts = contacts
        self.result_limit = result_limit
        self.modified_property = modified_property
        self.bodies: list[dict[str, Any]] = []
        self.tokens: list[str | None] = []
        server.expect_request(path, method="POST").respond_with_handler(self)

    def __call__(self, request: Request) -> Response:
        body = request.get_json()
        self.bodies.append(body)
        self.tokens.append(request.headers.get("Authorization"))
        limit, after = body["limit"], int(body["after"])
        if after + limit > self.result_limit:
            return Response(
                json.dumps(
                    {
                        "status": "error",
                        "message": "Search can only page through 10,000 results",
                        "category": "VALIDATION_ERROR",
                    }
                ),
                status=400,
                content_type="application/json",
            )
        since = None
        for group in body.get("filterGroups", []):
            for condition in group["filters"]:
                assert condition["propertyName"] == self.modified_property
                assert condition["operator"] == "GTE"
                since = int(condition["value"])
        assert body["sorts"] == [{"propertyName": self.modified_property, "direction": "ASCENDING"}]
        modified = self.modified_property
        matching = sorted(
            (
                c
                for c in self.contacts
                if since is None or millis(c["properties"][modified]) >= since
            ),
            key=lambda c: (millis(c["properties"][modified]), int(c["id"])),
        )
        page = matching[after : after + limit]
        data: dict[str, Any] = {"total": len(matching), "results": page}
        if after + limit < len(matching):
            data["paging"] = {"next": {"after": str(after + limit), "link": "?after=x"}}
        return Response(
            json.dumps(data),
            content_type="application/json",
            headers={
                "X-HubSpot-RateLimit-Daily": "250000",
                "X-HubSpot-RateLimit-Daily-Remaining": "249000",
            },
        )


def payload_deals() -> list[dict[str, Any]]:
    """The composed deals: 9001 won (contact 152), 9002 lost (153), 9003 open (151)."""
    return load_json("hubspot/deals_search_response.json")["results"]


def payload_contact_companies() -> dict[str, list[dict[str, Any]]]:
    """Contact id -> its v4 association targets (151: primary 5001; 152: no primary)."""
    results = load_json("hubspot/associations_contacts_companies.json")["results"]
    return {r["from"]["id"]: r["to"] for r in results}


class FakeHubSpotCrm:
    """Owners (paged), deal pipelines, deal search, deal -> contact and contact -> company
    associations, as the CRM v3/v4 APIs answer them. ``deals`` is searched like contacts are;
    ``associations`` maps a deal id to its contact ids (the shared payload's by default);
    ``companies`` maps a contact id to its v4 association targets (none by default)."""

    def __init__(
        self,
        server: HTTPServer,
        deals: list[dict[str, Any]] | None = None,
        *,
        owners: bool = True,
        associations: dict[str, list[int]] | None = None,
    ):
        self.deals = FakeSearch(
            server,
            deals if deals is not None else [],
            result_limit=10_000,
            path=DEALS_SEARCH,
            modified_property="hs_lastmodifieddate",
        )
        if associations is None:
            shared = load_json("hubspot/associations_deals_contacts.json")["results"]
            associations = {r["from"]["id"]: [t["toObjectId"] for t in r["to"]] for r in shared}
        self.associations = associations
        self.association_requests: list[list[str]] = []
        self.companies: dict[str, list[dict[str, Any]]] = {}
        self.company_requests: list[list[str]] = []
        self.owner_requests: list[dict[str, str]] = []
        self.serve_owners = owners
        server.expect_request(OWNERS, method="GET").respond_with_handler(self._owners)
        server.expect_request(PIPELINES, method="GET").respond_with_json(
            load_json("hubspot/pipelines_deals.json")
        )
        server.expect_request(ASSOCIATIONS, method="POST").respond_with_handler(self._associations)
        server.expect_request(CONTACT_COMPANIES, method="POST").respond_with_handler(
            self._contact_companies
        )

    def _owners(self, request: Request) -> Response:
        self.owner_requests.append(dict(request.args))
        if not self.serve_owners:
            return Response(json.dumps({"results": []}), content_type="application/json")
        page = "owners_page2.json" if request.args.get("after") else "owners_page1.json"
        return Response(json.dumps(load_json(f"hubspot/{page}")), content_type="application/json")

    def _associations(self, request: Request) -> Response:
        ids = [item["id"] for item in request.get_json()["inputs"]]
        self.association_requests.append(ids)
        results = [
            {
                "from": {"id": deal_id},
                "to": [
                    {
                        "toObjectId": contact_id,
                        "associationTypes": [
                            {"category": "HUBSPOT_DEFINED", "typeId": 3, "label": None}
                        ],
                    }
                    for contact_id in self.associations[deal_id]
                ],
            }
            for deal_id in ids
            if deal_id in self.associations
        ]
        return batch_read_response(results)

    def _contact_companies(self, request: Request) -> Response:
        ids = [item["id"] for item in request.get_json()["inputs"]]
        self.company_requests.append(ids)
        # As HubSpot does, contacts without a company are left out of the results.
        results = [
            {"from": {"id": contact_id}, "to": self.companies[contact_id]}
            for contact_id in ids
            if self.companies.get(contact_id)
        ]
        return batch_read_response(results)


def batch_read_response(results: list[dict]) -> Response:
    """A v4 batch association read's answer, as HubSpot wraps its results."""
    body = {
        "status": "COMPLETE",
        "results": results,
        "startedAt": "2024-04-05T08:00:00.101Z",
        "completedAt": "2024-04-05T08:00:00.152Z",
    }
    return Response(json.dumps(body), content_type="application/json")


def error_response(payload: str, headers: dict[str, str] | None = None) -> Response:
    data = load_json(payload)
    return Response(
        json.dumps(data["body"]),
        status=data["status"],
        content_type="application/json",
        headers={**data.get("headers", {}), **(headers or {})},
    )


def all_ids(batches) -> list[str]:
    return [lead.external_id for batch in batches for lead in batch.leads]


def test_it_pages_through_search_results_and_advances_the_cursor_per_page(http_server, sleeps):
    fake = FakeSearch(http_server, payload_contacts(), result_limit=10_000)
    connector = make_connector(http_server, sleeps)

    batches = list(connector.fetch(None))

    assert all_ids(batches) == ["153", "151", "152"]
    assert [b.done for b in batches] == [False, True]
    assert [json.loads(b.cursor_after) for b in batches] == [
        {"since": "2024-03-06T10:00:01.532Z", "ids": ["151"]},
        {"since": "2024-03-18T11:22:33.871Z", "ids": ["152"]},
    ]
    # Request shape as in the saved contacts_search_request.json, without a filter on a
    # first run.
    saved = load_json("hubspot/contacts_search_request.json")
    first = fake.bodies[0]
    assert "filterGroups" not in first
    assert first["sorts"] == saved["sorts"]
    assert first["limit"] == 2 and first["after"] == "0"
    assert set(saved["properties"]) - {"hubspotscore", "hs_analytics_num_page_views"} - {
        "hs_analytics_num_visits"
    } <= set(first["properties"])
    assert fake.bodies[1]["after"] == "2"
    assert fake.tokens[0] == "Bearer old-token"
    assert batches[0].usage["api_limit"] == 250000
    assert batches[0].usage["api_used"] == 1000
    assert batches[0].usage["throttle"] is False


def test_it_maps_contact_properties_to_a_lead(http_server, sleeps):
    contacts = payload_contacts()
    contacts[0]["properties"].update(
        numberofemployees="250",
        industry="Transportation",
        country="Portugal",
        hs_analytics_source="ORGANIC_SEARCH",
        hs_lifecyclestage_marketingqualifiedlead_date="2024-03-06T10:00:01.532Z",
        total_revenue="1200.50",
    )
    FakeSearch(http_server, contacts, result_limit=10_000)
    connector = make_connector(http_server, sleeps, page_size=10, properties=("hubspotscore",))

    (batch,) = list(connector.fetch(None))

    leads = {lead.external_id: lead for lead in batch.leads}
    dana = leads["151"]
    assert dana.email == "dana.okafor@example.com"
    assert (dana.first_name, dana.last_name) == ("Dana", "Okafor")
    assert dana.title == "VP Operations"
    assert dana.company == "Brightline Logistics"
    assert dana.employees == 250
    assert dana.country == "Portugal"
    assert dana.lead_source == "ORGANIC_SEARCH"
    assert dana.lifecycle_stage == "mql"
    assert dana.stage_times == {"mql_at": datetime(2024, 3, 6, 10, 0, 1, 532000, tzinfo=UTC)}
    assert dana.revenue == 1200.5
    assert dana.attributes == {
        "numemployees": "100-500",
        "hs_lead_status": "OPEN",
        "hubspotscore": "45",
    }
    assert dana.modified_at == datetime(2024, 3, 6, 10, 0, 1, 532000, tzinfo=UTC)
    assert leads["152"].lifecycle_stage == "opportunity"
    # An unqualified lead is disqualified; null properties stay None.
    nguyen = leads["153"]
    assert nguyen.lifecycle_stage == "disqualified"
    assert nguyen.first_name is None and nguyen.employees is None


def test_an_incremental_run_filters_from_the_cursor_and_skips_what_it_already_delivered(
    http_server, sleeps
):
    fake = FakeSearch(http_server, payload_contacts(), result_limit=10_000)
    connector = make_connector(http_server, sleeps)
    cursor = json.dumps({"since": "2024-03-06T10:00:01.532Z", "ids": ["151"]})

    (batch,) = list(connector.fetch(cursor))

    assert fake.bodies[0]["filterGroups"] == [
        {
            "filters": [
                {"propertyName": "lastmodifieddate", "operator": "GTE", "value": "1709719201532"}
            ]
        }
    ]
    # 151 comes back (GTE) but was delivered by the previous run at that exact timestamp.
    assert all_ids([batch]) == ["152"]
    assert batch.done is True


def test_a_full_sync_ignores_the_cursor(http_server, sleeps):
    fake = FakeSearch(http_server, payload_contacts(), result_limit=10_000)
    connector = make_connector(http_server, sleeps, page_size=10)

    (batch,) = list(connector.fetch('{"since":"2024-03-18T11:22:33.871Z","ids":[]}', full=True))

    assert "filterGroups" not in fake.bodies[0]
    assert len(batch.leads) == 3


def test_it_starts_a_new_query_before_the_search_result_limit_and_loses_nothing(
    http_server, sleeps
):
    stamps = [
        "2024-03-01T00:00:00.000Z",
        "2024-03-02T00:00:00.000Z",
        "2024-03-03T00:00:00.000Z",
        "2024-03-03T00:00:00.000Z",
        "2024-03-03T00:00:00.000Z",
        "2024-03-04T00:00:00.000Z",
        "2024-03-05T00:00:00.000Z",
        "2024-03-05T00:00:00.000Z",
        "2024-03-06T00:00:00.000Z",
    ]
    contacts = [make_contact(200 + n, stamp) for n, stamp in enumerate(stamps)]
    # A fake 5-result cap stands in for HubSpot's 10,000.
    fake = FakeSearch(http_server, contacts, result_limit=5)
    connector = make_connector(http_server, sleeps, search_result_limit=5)

    batches = list(connector.fetch(None))

    ids = all_ids(batches)
    assert sorted(ids) == sorted(c["id"] for c in contacts)
    assert len(ids) == len(set(ids)), "a contact was delivered twice"
    assert [(b.get("filterGroups") is not None, b["after"]) for b in fake.bodies] == [
        (False, "0"),
        (False, "2"),
        (True, "0"),
        (True, "2"),
        (True, "0"),
        (True, "2"),
    ]
    restarts = [
        b["filterGroups"][0]["filters"][0]["value"] for b in fake.bodies if "filterGroups" in b
    ]
    assert restarts[0] == str(millis("2024-03-03T00:00:00.000Z"))
    assert batches[-1].done is True
    assert json.loads(batches[-1].cursor_after) == {
        "since": "2024-03-06T00:00:00.000Z",
        "ids": ["208"],
    }


def test_it_refuses_to_loop_when_a_whole_query_shares_one_timestamp(http_server, sleeps):
    contacts = [make_contact(300 + n, "2024-03-03T00:00:00.000Z") for n in range(8)]
    FakeSearch(http_server, contacts, result_limit=4)
    connector = make_connector(http_server, sleeps, search_result_limit=4)

    with pytest.raises(PermanentError, match="share lastmodifieddate"):
        list(connector.fetch(None))


def test_a_secondly_429_is_retried_after_the_retry_after_hint(http_server, sleeps):
    http_server.expect_oneshot_request(SEARCH, method="POST").respond_with_response(
        error_response("hubspot/error_429_secondly__real.json", headers={"Retry-After": "2"})
    )
    FakeSearch(http_server, payload_contacts(), result_limit=10_000)
    connector = make_connector(http_server, sleeps, page_size=10)

    (batch,) = list(connector.fetch(None))

    assert len(batch.leads) == 3
    assert sleeps.calls == [2.0]


def test_a_ten_secondly_429_without_retry_after_waits_the_policy_interval(http_server, sleeps):
    http_server.expect_oneshot_request(SEARCH, method="POST").respond_with_response(
        error_response("hubspot/error_429_ten_secondly_rolling.json")
    )
    FakeSearch(http_server, payload_contacts(), result_limit=10_000)
    connector = make_connector(http_server, sleeps, page_size=10)

    list(connector.fetch(None))

    assert sleeps.calls == [10.0]


def test_a_daily_429_raises_a_daily_rate_limit_without_retrying(http_server, sleeps):
    http_server.expect_request(SEARCH, method="POST").respond_with_response(
        error_response("hubspot/error_429_daily.json")
    )
    connector = make_connector(http_server, sleeps)

    with pytest.raises(RateLimited) as caught:
        list(connector.fetch(None))

    assert caught.value.scope == "daily"
    assert caught.value.retry_after > 0
    assert len(http_server.log) == 1
    assert sleeps.calls == []


def test_a_429_with_no_daily_calls_remaining_is_daily_whatever_the_policy(http_server, sleeps):
    http_server.expect_request(SEARCH, method="POST").respond_with_response(
        error_response(
            "hubspot/error_429_ten_secondly_rolling.json",
            headers={"X-HubSpot-RateLimit-Daily-Remaining": "0"},
        )
    )
    connector = make_connector(http_server, sleeps)

    with pytest.raises(RateLimited) as caught:
        list(connector.fetch(None))

    assert caught.value.scope == "daily"
    assert sleeps.calls == []


def test_a_401_without_refresh_credentials_is_a_permanent_auth_failure(http_server, sleeps):
    http_server.expect_request(SEARCH, method="POST").respond_with_response(
        error_response("hubspot/error_401_expired.json")
    )
    connector = make_connector(http_server, sleeps)

    with pytest.raises(AuthFailed, match="private app token"):
        list(connector.fetch(None))

    assert len(http_server.log) == 1


def test_a_401_refreshes_the_oauth_token_once_then_succeeds(http_server, sleeps):
    http_server.expect_oneshot_request(
        SEARCH, method="POST", headers={"Authorization": "Bearer old-token"}
    ).respond_with_response(error_response("hubspot/error_401_expired.json"))
    http_server.expect_oneshot_request(TOKEN, method="POST").respond_with_json(
        load_json("hubspot/oauth_token_refresh_response.json")
    )
    fake = FakeSearch(http_server, payload_contacts(), result_limit=10_000)
    refreshed: list[str] = []
    connector = HubSpotConnector(
        HubSpotConfig(
            access_token="old-token",
            base_url=http_server.url_for("/").rstrip("/"),
            page_size=10,
            client_id="app-id",
            client_secret="app-secret",
            refresh_token="refresh-me",
            fetch_deals=False,
            fetch_owners=False,
            fetch_companies=False,
        ),
        sleep=sleeps,
        on_token_refresh=refreshed.append,
    )

    (batch,) = list(connector.fetch(None))

    assert len(batch.leads) == 3
    assert fake.tokens == ["Bearer CN_refreshed_access_token"]
    assert refreshed == ["CN_refreshed_access_token"]
    token_request = next(r for r, _ in http_server.log if r.path == TOKEN)
    assert parse_qs(token_request.get_data(as_text=True)) == {
        "grant_type": ["refresh_token"],
        "client_id": ["app-id"],
        "client_secret": ["app-secret"],
        "refresh_token": ["refresh-me"],
    }


def test_a_second_401_after_the_refresh_is_a_permanent_auth_failure(http_server, sleeps):
    http_server.expect_request(SEARCH, method="POST").respond_with_response(
        error_response("hubspot/error_401_expired.json")
    )
    http_server.expect_request(TOKEN, method="POST").respond_with_json(
        load_json("hubspot/oauth_token_refresh_response.json")
    )
    connector = make_connector(
        http_server, sleeps, client_id="a", client_secret="b", refresh_token="c"
    )

    with pytest.raises(AuthFailed, match="again right after refreshing"):
        list(connector.fetch(None))

    assert sum(1 for r, _ in http_server.log if r.path == TOKEN) == 1


def test_a_500_is_retried_with_backoff_then_succeeds(http_server, sleeps):
    http_server.expect_oneshot_request(SEARCH, method="POST").respond_with_json(
        {"status": "error", "message": "internal error", "category": "INTERNAL_ERROR"}, status=502
    )
    FakeSearch(http_server, payload_contacts(), result_limit=10_000)
    connector = make_connector(http_server, sleeps, page_size=10)

    (batch,) = list(connector.fetch(None))

    assert len(batch.leads) == 3
    assert len(sleeps.calls) == 1 and 0 <= sleeps.calls[0] <= 0.5


def test_a_refused_connection_is_transient_and_eventually_raised(sleeps):
    # Port 9 on loopback: nothing listens, so every attempt is refused.
    connector = HubSpotConnector(
        HubSpotConfig(access_token="t", base_url="http://127.0.0.1:9"),
        retry=RetryPolicy(attempts=2, base_delay=0.1),
        sleep=sleeps,
    )

    with pytest.raises(TransientError, match="network error"):
        list(connector.fetch(None))

    assert len(sleeps.calls) == 1


def test_malformed_contacts_are_reported_and_the_rest_of_the_page_returned(http_server, sleeps):
    http_server.expect_request(SEARCH, method="POST").respond_with_json(
        load_json("hubspot/contacts_search_malformed.json")
    )
    connector = make_connector(http_server, sleeps, page_size=10)

    (batch,) = list(connector.fetch(None))

    assert [lead.external_id for lead in batch.leads] == ["151", "162"]
    assert [(f.external_id, f.reason) for f in batch.failed] == [
        ("160", "lastmodifieddate: not an ISO 8601 date-time"),
        ("161", "properties: not an object"),
    ]
    odd = batch.leads[1]
    # Not numbers, but not failures either: the raw value is kept for rules and humans.
    assert odd.employees is None
    assert odd.attributes["numberofemployees"] == "about 40"
    assert odd.lifecycle_stage is None
    assert odd.attributes["lifecyclestage"] == "1234567"
    assert odd.stage_times == {
        "mql_at": datetime(2024, 3, 1, tzinfo=UTC),
        "opportunity_at": datetime(2024, 3, 15, 10, tzinfo=UTC),
    }


def test_push_scores_sends_100_per_call_and_reports_per_record_errors(http_server, sleeps):
    bodies: list[dict[str, Any]] = []

    def batch_update(request: Request) -> Response:
        body = request.get_json()
        bodies.append(body)
        results, errors = [], []
        for item in body["inputs"]:
            if item["id"].endswith("7"):
                errors.append(
                    {
                        "status": "error",
                        "category": "OBJECT_NOT_FOUND",
                        "message": "Could not get some CONTACT objects",
                        "context": {"ids": [item["id"]]},
                    }
                )
            else:
                results.append({"id": item["id"], "properties": item["properties"]})
        status = 207 if errors else 200
        data: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if errors:
            data.update(numErrors=len(errors), errors=errors)
        return Response(json.dumps(data), status=status, content_type="application/json")

    http_server.expect_request(BATCH_UPDATE, method="POST").respond_with_handler(batch_update)
    updates = [ScoreUpdate(str(1000 + n), n % 101, "Warm") for n in range(250)]
    connector = make_connector(http_server, sleeps)

    result = connector.push_scores(updates)

    assert [len(body["inputs"]) for body in bodies] == [100, 100, 50]
    assert bodies[0]["inputs"][0] == {
        "id": "1000",
        "properties": {"lead_score": "0", "lead_band": "Warm"},
    }
    expected_failures = [u.external_id for u in updates if u.external_id.endswith("7")]
    assert [f.external_id for f in result.failed] == expected_failures
    assert all(f.reason.startswith("OBJECT_NOT_FOUND") for f in result.failed)
    assert result.pushed == 250 - len(expected_failures)


def test_push_scores_reads_the_saved_207_response(http_server, sleeps):
    http_server.expect_request(BATCH_UPDATE, method="POST").respond_with_json(
        load_json("hubspot/batch_update_response_207.json"), status=207
    )
    connector = make_connector(http_server, sleeps)

    result = connector.push_scores([ScoreUpdate("151", 72, "MQL"), ScoreUpdate("999", 5, "Cold")])

    assert result.pushed == 1
    assert [(f.external_id, f.reason.split(":")[0]) for f in result.failed] == [
        ("999", "OBJECT_NOT_FOUND")
    ]


def test_push_scores_reports_a_batch_refused_as_a_whole_record_by_record(http_server, sleeps):
    http_server.expect_request(BATCH_UPDATE, method="POST").respond_with_json(
        {
            "status": "error",
            "message": 'Property "lead_band" does not exist',
            "category": "VALIDATION_ERROR",
        },
        status=400,
    )
    connector = make_connector(http_server, sleeps)

    result = connector.push_scores([ScoreUpdate("151", 72, "MQL"), ScoreUpdate("152", 5, "Cold")])

    assert result.pushed == 0
    assert [f.external_id for f in result.failed] == ["151", "152"]
    assert "VALIDATION_ERROR" in result.failed[0].reason
    assert sleeps.calls == []


def test_test_connection_reports_the_daily_quota(http_server, sleeps):
    http_server.expect_request(
        CONTACTS, method="GET", query_string={"limit": "1"}
    ).respond_with_json(
        {"results": []},
        headers={
            "X-HubSpot-RateLimit-Daily": "250000",
            "X-HubSpot-RateLimit-Daily-Remaining": "25000",
        },
    )
    connector = make_connector(http_server, sleeps)

    assert connector.test_connection() == {
        "ok": True,
        "requests": 1,
        "throttle": True,
        "api_used": 225000,
        "api_limit": 250000,
    }


def test_config_rejects_page_sizes_the_search_api_refuses_and_hides_secrets():
    with pytest.raises(ValueError, match="page_size"):
        HubSpotConfig(access_token="t", page_size=500)
    assert "pat-secret" not in repr(HubSpotConfig(access_token="pat-secret"))


# ---------------------------------------------------------------------------------------------
# Deals and owners


def test_deals_become_outcomes_from_their_pipeline_stage_metadata(http_server, sleeps):
    FakeSearch(http_server, payload_contacts(), result_limit=10_000)
    crm = FakeHubSpotCrm(http_server, payload_deals())
    connector = make_connector(http_server, sleeps, fetch_deals=True, fetch_owners=True)

    batches = list(connector.fetch(None))

    contact_batches = [b for b in batches if b.leads]
    deal_batches = [b for b in batches if b.outcomes]
    assert [b.done for b in batches] == [False] * (len(batches) - 1) + [True]
    outcomes = {o.external_id: o for b in deal_batches for o in b.outcomes}
    assert set(outcomes) == {"9001", "9002", "9003"}
    won, lost, still_open = outcomes["9001"], outcomes["9002"], outcomes["9003"]
    assert (won.status, won.amount, won.lead_external_ids) == ("won", 48000.0, ("152",))
    assert won.closed_at == datetime(2024, 4, 2, tzinfo=UTC)
    assert (lost.status, lost.amount, lost.lead_external_ids) == ("lost", 7500.5, ("153",))
    # "Won - awaiting signature" is a stage *label*; its metadata says it is not closed.
    assert (still_open.status, still_open.closed_at) == ("open", None)
    assert still_open.lead_external_ids == ("151",)
    # Owners arrive once, in the first batch, both pages of them, e-mails normalised.
    assert [(o.external_id, o.email) for o in contact_batches[0].owners] == [
        ("41629779", "sales1@example.com"),
        ("52730101", "agency.rep@partner.example.net"),
    ]
    assert all(b.owners == [] for b in batches[1:])
    assert crm.owner_requests[1]["after"] == "41629779"
    cursor = json.loads(batches[-1].cursor_after)
    assert cursor["deals"]["since"] == "2024-04-04T12:00:00.000Z"
    assert cursor["deals"]["ids"] == ["9003"]
    assert cursor["since"] == "2024-03-18T11:22:33.871Z"  # the contacts' own cursor


def test_an_incremental_run_reads_only_deals_changed_since_their_cursor(http_server, sleeps):
    FakeSearch(http_server, payload_contacts(), result_limit=10_000)
    deals = payload_deals()
    deals[1]["properties"].update(
        dealstage="closedwon", amount="9100", hs_lastmodifieddate="2024-04-10T09:00:00.000Z"
    )
    crm = FakeHubSpotCrm(http_server, deals)
    connector = make_connector(http_server, sleeps, fetch_deals=True)
    cursor = json.dumps(
        {
            "since": "2024-03-18T11:22:33.871Z",
            "ids": ["152"],
            "deals": {"since": "2024-04-04T12:00:00.000Z", "ids": ["9003"]},
        }
    )

    batches = list(connector.fetch(cursor))

    (outcome,) = [o for b in batches for o in b.outcomes]
    assert (outcome.external_id, outcome.status, outcome.amount) == ("9002", "won", 9100.0)
    (body,) = crm.deals.bodies
    assert body["filterGroups"][0]["filters"][0] == {
        "propertyName": "hs_lastmodifieddate",
        "operator": "GTE",
        "value": str(millis("2024-04-04T12:00:00.000Z")),
    }
    assert crm.association_requests == [["9002"]]


def test_a_deal_in_a_stage_no_pipeline_lists_fails_alone(http_server, sleeps):
    FakeSearch(http_server, [], result_limit=10_000)
    deals = payload_deals()
    deals[0]["properties"]["dealstage"] = "retired_stage"
    FakeHubSpotCrm(http_server, deals)
    connector = make_connector(http_server, sleeps, fetch_deals=True)

    batches = list(connector.fetch(None))

    failed = [f for b in batches for f in b.failed]
    assert [(f.external_id, f.reason) for f in failed] == [
        ("9001", "dealstage: not a stage of any deal pipeline")
    ]
    assert {o.external_id for b in batches for o in b.outcomes} == {"9002", "9003"}


def test_each_contact_page_brings_its_primary_company_else_the_lowest_company_id(
    http_server, sleeps
):
    FakeSearch(http_server, payload_contacts(), result_limit=10_000)
    crm = FakeHubSpotCrm(http_server)
    crm.companies = payload_contact_companies()
    connector = make_connector(http_server, sleeps, fetch_companies=True)

    batches = list(connector.fetch(None))

    companies = {
        lead.external_id: lead.related_ids.get("company_id")
        for batch in batches
        for lead in batch.leads
    }
    # 151: the HubSpot-defined primary (type 1), though listed second; 152: no primary (a
    # user-defined label's type 1 is not it), so the lowest id; 153: no company at all.
    assert companies == {"151": "5001", "152": "5002", "153": None}
    # One batch association read per search page, naming that page's contacts.
    assert crm.company_requests == [["153", "151"], ["152"]]


def test_company_associations_are_not_read_when_switched_off(http_server, sleeps):
    FakeSearch(http_server, payload_contacts(), result_limit=10_000)
    crm = FakeHubSpotCrm(http_server)
    crm.companies = payload_contact_companies()
    connector = make_connector(http_server, sleeps)

    batches = list(connector.fetch(None))

    assert all("company_id" not in lead.related_ids for b in batches for lead in b.leads)
    assert crm.company_requests == []
