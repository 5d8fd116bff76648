"""manage.py sync mixpanel against a fake export + engage API: profiles, events, duplicates."""

from __future__ import annotations

import copy
import json

import pytest
from werkzeug import Response

from scoring.models import Event, Identity, Lead
from tests.connectors.test_mixpanel import ENGAGE, FakeExport

from .conftest import load_bytes, load_json

pytestmark = pytest.mark.django_db

WEB = load_bytes("mixpanel/export_web_events.jsonl").splitlines(keepends=True)
DUPLICATES = load_bytes("mixpanel/export_duplicates.jsonl")


def serve_profiles(server) -> None:
    page0 = load_json("mixpanel/engage_page0.json")
    page1 = load_json("mixpanel/engage_page1.json")
    pages = {"0": page0, "1": page1}

    def engage(request):
        page = request.form.get("page", "0")
        return Response(json.dumps(copy.deepcopy(pages[page])), content_type="application/json")

    server.expect_request(ENGAGE, method="POST").respond_with_handler(engage)


def test_sync_stores_profiles_and_deduplicated_events_and_changes_nothing_when_rerun(
    mixpanel_env, run_command
):
    serve_profiles(mixpanel_env)
    FakeExport(
        mixpanel_env,
        {"2024-03-18": b"".join(WEB[:3]), "2024-03-19": WEB[3] + DUPLICATES, "2024-03-20": b""},
        gzipped=True,
    )

    first, status = run_command("sync", "mixpanel")

    assert status == 0, first
    assert first["cursor_after"] == "2024-03-19"
    stored = Event.objects.filter(source="mixpanel").count()
    # Three profiles make three leads (a fourth has no distinct_id); events come on top.
    assert Lead.objects.count() == 3
    assert first["created"] == 3 + stored
    assert first["api_usage"]["duplicates"] >= 1
    # Every event is stored once however often the export repeats it.
    assert stored == len(set(Event.objects.values_list("external_id", flat=True)))
    dana = Lead.objects.get(email="dana.okafor@example.com")
    assert dana.identities.filter(source="mixpanel").exists()
    assert dana.events.filter(event_type="signed_up").count() == 1
    failures = {f["reason"] for f in first["failures"]}
    assert any("distinct_id" in reason for reason in failures)  # the profile without one
    # An anonymous visitor's event names no known lead: failed, with the reason.
    assert any("no lead with identity mixpanel:$device:" in reason for reason in failures)
    assert first["fetched"] == (
        first["created"]
        + first["updated"]
        + first["unchanged"]
        + first["deleted"]
        + first["failed"]
    )
    events_before = stored
    leads_before = list(Lead.objects.order_by("id").values_list("id", "updated_at"))
    identities_before = Identity.objects.count()

    second, status = run_command("sync", "mixpanel", "--full")

    assert status == 0
    assert (second["created"], second["updated"]) == (0, 0)
    assert Event.objects.filter(source="mixpanel").count() == events_before
    assert list(Lead.objects.order_by("id").values_list("id", "updated_at")) == leads_before
    assert Identity.objects.count() == identities_before


def test_malformed_export_lines_are_counted_failed_with_their_line(mixpanel_env, run_command):
    mixpanel_env.expect_request(ENGAGE, method="POST").respond_with_json(
        {"page": 0, "page_size": 1000, "results": [], "session_id": "", "status": "ok"}
    )
    FakeExport(mixpanel_env, {"2024-03-18": load_bytes("mixpanel/export_malformed.jsonl")})

    summary, status = run_command("sync", "mixpanel")

    assert status == 0
    lines = [f for f in summary["failures"] if f.get("line")]
    assert lines and all(f["reason"] for f in lines)
