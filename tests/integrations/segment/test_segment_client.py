"""The done test of the Segment source: Segment's official Python client
(`segment-analytics-python`), pointed at the live server's /segment, sends a visitor's
anonymous page views, identify, alias, track and group calls; they arrive as one lead with its
events, the anonymous history included, stored once even when the client retries."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from segment.analytics import request as segment_request
from segment.analytics.client import Client

from integrations.models import SegmentGroup
from scoring.models import Event, Lead, LeadMerge
from tests.factories import api_token


class FlakyProxy:
    """A loopback proxy in front of the live server that passes every request on but answers
    the first one 503, as if the response had been lost after the server stored the batch:
    the client must retry the same batch."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.bodies: list[bytes] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                proxy.bodies.append(body)
                headers = {
                    name: self.headers[name]
                    for name in ("Authorization", "Content-Type", "Content-Encoding")
                    if self.headers.get(name)
                }
                request = urllib.request.Request(
                    proxy.upstream + self.path, data=body, headers=headers, method="POST"
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        status, payload = response.status, response.read()
                except urllib.error.HTTPError as exc:
                    status, payload = exc.code, exc.read()
                if len(proxy.bodies) == 1:
                    status = 503
                    payload = json.dumps({"code": "unavailable", "message": "lost"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FlakyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def _close_client_connections() -> Iterator[None]:
    """The client keeps one HTTP session for the process; its kept-alive connection holds a
    live-server thread, and that thread's database connection, open past the test database's
    teardown unless it is closed."""
    yield
    segment_request._session.close()


@pytest.fixture
def write_key(role_users) -> str:
    # The done test uses an API token of a user who may ingest as the write key.
    return api_token(role_users["ops"])


@pytest.fixture
def proxy(live_server) -> Iterator[FlakyProxy]:
    with FlakyProxy(live_server.url) as running:
        yield running


def test_the_official_client_builds_one_lead_with_its_anonymous_history(live_server, write_key):
    errors: list = []
    client = Client(
        write_key=write_key,
        host=live_server.url + "/segment",
        sync_mode=True,
        on_error=lambda e, batch: errors.append(e),
    )
    # Before sign-up: a visitor on two devices.
    client.page(anonymous_id="browser-1", name="Pricing", properties={"path": "/pricing"})
    client.page(anonymous_id="browser-1", name="Docs", properties={"path": "/docs"})
    client.track(anonymous_id="browser-1", event="Docs Searched", properties={"q": "api"})
    client.page(anonymous_id="phone-1", name="Home", properties={"path": "/"})
    # Sign-up ties the browser; the phone is aliased later.
    client.identify(
        user_id="user-42",
        anonymous_id="browser-1",
        traits={
            "email": "Ada@Example.com",
            "firstName": "Ada",
            "lastName": "Lovelace",
            "title": "CTO",
            "company": {"name": "Engines Ltd", "employee_count": 250},
            "plan": "trial",
        },
    )
    client.alias(previous_id="phone-1", user_id="user-42")
    client.track(user_id="user-42", event="Demo Requested", properties={"seats": 20})
    client.group(
        user_id="user-42",
        group_id="engines",
        traits={"name": "Engines Ltd", "employees": 250, "industry": "Machinery"},
    )
    assert errors == []

    lead = Lead.objects.get()
    assert (lead.email, lead.first_name, lead.company, lead.employees, lead.industry) == (
        "ada@example.com",
        "Ada",
        "Engines Ltd",
        250,
        "Machinery",
    )
    assert lead.attributes["plan"] == "trial"
    assert lead.attributes["segment_group_id"] == "engines"
    assert sorted(lead.events.values_list("event_type", flat=True)) == [
        "Demo Requested",
        "Docs Searched",
        "page_view",
        "page_view",
        "page_view",
    ]
    assert set(lead.identities.values_list("source", "external_id")) == {
        ("segment", "user-42"),
        ("segment_anonymous", "browser-1"),
        ("segment_anonymous", "phone-1"),
    }
    # The two anonymous leads were folded in, each merge recorded.
    assert LeadMerge.objects.filter(survivor=lead).count() == 2
    assert SegmentGroup.objects.get().name == "Engines Ltd"


def test_a_batch_the_client_retries_is_stored_once(live_server, write_key, proxy):
    client = Client(
        write_key=write_key,
        host=proxy.url + "/segment",
        max_retries=3,
        upload_interval=0.05,
        upload_size=100,
    )
    client.identify(user_id="user-7", traits={"email": "retry@example.com"})
    for n in range(5):
        client.track(user_id="user-7", event="Feature Used", properties={"n": n})
    client.page(anonymous_id="visitor-7", name="Pricing")
    client.flush()
    client.join()

    # The first upload was stored, answered 503 by the proxy, and sent again.
    assert len(proxy.bodies) >= 2
    first, retry = json.loads(proxy.bodies[0]), json.loads(proxy.bodies[1])
    assert [c["messageId"] for c in first["batch"]] == [c["messageId"] for c in retry["batch"]]
    assert Event.objects.filter(source="segment").count() == 6
    lead = Lead.objects.get(email="retry@example.com")
    assert lead.events.count() == 5


RULES = {
    "name": "Segment rules",
    "bands": [{"name": "Cold", "min_score": 0}, {"name": "MQL", "min_score": 30}],
    "rules": [
        {"kind": "attribute", "field": "employees", "op": "gte", "value": 200, "points": 10},
        {"kind": "event", "event_type": "page_view", "points": 5, "window_days": 30},
        {"kind": "event", "event_type": "Demo Requested", "points": 20, "window_days": 30},
    ],
}


def test_the_lead_is_rescored_in_real_time_with_its_pre_signup_page_views(
    live_server, write_key, celery_worker
):
    from scoring.services.rulesets import ruleset_import

    ruleset_import(RULES, publish=True)
    client = Client(write_key=write_key, host=live_server.url + "/segment", sync_mode=True)
    client.page(anonymous_id="browser-5", name="Pricing")
    client.page(anonymous_id="browser-5", name="Docs")
    client.identify(
        user_id="user-5",
        anonymous_id="browser-5",
        traits={"email": "eve@example.com", "company": {"name": "Big", "employee_count": 900}},
    )
    client.track(user_id="user-5", event="Demo Requested")

    # A real worker on the real broker rescores the lead: 10 (employees) + 2 x 5 (the
    # anonymous page views) + 20 (the demo request).
    deadline = time.monotonic() + 30
    lead = None
    while time.monotonic() < deadline:
        lead = Lead.objects.filter(email="eve@example.com", score=40).first()
        if lead is not None:
            break
        time.sleep(0.1)
    assert lead is not None, Lead.objects.values("email", "score").first()
    assert lead.band == "MQL"
