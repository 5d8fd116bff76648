"""Every API endpoint, driven with hostile input (hypothesis): bodies and query parameters with
NaN, huge numbers, NUL bytes, lone surrogates, deep nesting, far-off dates and random JSON.
Whatever comes in, the answer is never a 5xx."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from django.urls import get_resolver
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import LeadFactory

POISON_TEXT = st.sampled_from(
    [
        "NaN",
        "1e400",
        "-1",
        "0",
        "\x00",
        "\ud800",
        "9999-12-31",
        "0001-01-01",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "yesterday",
        "'; DROP TABLE scoring_lead; --",
        "=HYPERLINK(1)",
        "é" * 300,
    ]
) | st.text(max_size=40)
POISON_BODIES = st.sampled_from(
    [
        '{"a": NaN}',
        '{"a": 1e400}',
        '{"a": "\\u0000"}',
        '{"a": "\\ud800"}',
        "[" * 5000 + "]" * 5000,
        '{"verdict": "bad", "reason": "\\u0000"}',
        '{"email": "x@example.com", "attributes": {"k": Infinity}}',
        '{"external_id": "e", "event_type": "x", "occurred_at": "0001-01-01T00:00:00+14:00",'
        ' "email": "a@example.com"}',
        "",
        "null",
        "\xff",
    ]
) | st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=10,
).map(lambda value: json.dumps(value, allow_nan=True))
PARAMS = [
    "start", "end", "created_from", "created_to", "created_after", "created_before", "q",
    "band", "persona", "source", "owner", "open", "score_min", "score_max", "ordering",
    "page_size", "cursor", "after", "version", "atomic", "flagged_from", "stage",
]  # fmt: skip


def api_routes() -> list[str]:
    resolver = get_resolver()
    routes = []
    for pattern in resolver.url_patterns:
        if str(pattern.pattern) == "api/v1/":
            routes = [str(p.pattern) for p in pattern.url_patterns]
    assert routes, "no API routes found"
    return routes


@pytest.fixture
def lead_id(db) -> int:
    return LeadFactory(email="fuzz@example.com").pk


@pytest.mark.parametrize("route", api_routes())
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=POISON_BODIES,
    params=st.dictionaries(st.sampled_from(PARAMS), POISON_TEXT, max_size=4),
    method=st.sampled_from(["get", "post", "patch"]),
)
def test_no_api_endpoint_answers_5xx_to_hostile_input(api_as, lead_id, route, body, params, method):
    client = api_as("ops")
    url = "/api/v1/" + route.replace("<int:lead_id>", str(lead_id))
    if method == "get":
        # As a client would send them: percent-encoded bytes, invalid UTF-8 included.
        query = urlencode({k: v.encode("utf-8", "surrogatepass") for k, v in params.items()})
        response = client.get(f"{url}?{query}")
    else:
        response = client.generic(
            method.upper(), url, body.encode("utf-8", "surrogatepass"), "application/json"
        )
    assert response.status_code < 500, (method, url, params, body[:200])
