"""Marketing ops' main flow in a real browser: copy the live rule set to a draft, change a
rule's points inline, preview the impact (on a real Celery worker), publish, and watch the
bulk rescore finish."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone

from scoring.models import RescoreRun, RuleSet
from scoring.services.rulesets import ruleset_import
from tests.factories import EventFactory, LeadFactory
from tests.rules.conftest import LIVE_DOCUMENT

pytestmark = pytest.mark.browser


@pytest.fixture
def broker_folders(settings):
    """kombu's filesystem transport (the SQLite default) needs its folders before the shared
    `celery_worker` fixture purges the queue; they are otherwise made only once the Celery
    app is finalized."""
    import os

    for key in ("data_folder_in", "data_folder_out", "processed_folder"):
        folder = (getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None) or {}).get(key)
        if folder:
            os.makedirs(folder, exist_ok=True)


@pytest.fixture
def scored_world(role_users):
    live = ruleset_import(LIVE_DOCUMENT, publish=True)  # no worker yet: the rescore waits
    now = timezone.now()
    for i in range(12):
        lead = LeadFactory(
            employees=500 if i % 2 else 20,
            converted_at=now - dt.timedelta(days=5) if i % 3 == 2 else None,
            created_at=now - dt.timedelta(days=20 + 10 * i),
        )
        for _ in range(i % 3):
            EventFactory(lead=lead, event_type="demo_request")
    return live


def test_marketing_ops_edits_previews_and_publishes_a_draft(
    page, login, screenshot, scored_world, broker_folders, celery_worker, live_server
):
    login(page, "ops")
    page.goto(live_server.url + "/rules/")
    screenshot(page, "1-rules")

    page.get_by_role("button", name="New draft from live").click()
    page.wait_for_url(re.compile(r".*/rules/\d+/$"))
    draft = RuleSet.objects.get(status="draft")
    screenshot(page, "2-draft")

    # Rule 4 is "demo_request in 60 d" worth 30 points: make it 45, inline.
    page.get_by_role("link", name="Edit rule 4").click()
    form = page.get_by_role("form", name="Rule 4")
    points = form.get_by_label("Points")
    points.fill("45")
    screenshot(page, "3-editing")
    form.get_by_role("button", name="Save rule").click()
    row = page.locator("#rule-3")
    row.locator("[data-points]").filter(has_text="45 pts").wait_for()
    assert draft.rules.get(position=3).points == 45
    screenshot(page, "4-saved")

    page.get_by_role("button", name=re.compile("Preview impact")).click()
    page.wait_for_url(re.compile(r".*/rules/previews/\d+/$"))
    page.locator("#preview-result").wait_for(timeout=30_000)
    page.locator("[data-figure='fig-distribution'][data-rendered]").wait_for()
    assert "leads scored" in page.locator("#preview-result").inner_text()
    screenshot(page, "5-preview")

    page.get_by_label("Change note (required)").fill("Demo requests weigh 45")
    dialogs: list[str] = []

    def accept(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    page.get_by_role("button", name=re.compile("Publish .* and rescore")).click()
    page.wait_for_url(re.compile(r".*/rules/runs/\d+/$"))
    page.get_by_text("Rescore finished").wait_for(timeout=30_000)
    # The confirmation stated the preview's impact before anything changed.
    assert "change band" in dialogs[0] and "newly qualify" in dialogs[0]
    draft.refresh_from_db()
    assert draft.status == "published" and draft.version == 2
    assert draft.change_note == "Demo requests weigh 45"
    run = RescoreRun.objects.filter(rule_set=draft).get()
    assert run.status == "done" and run.leads_scored == 12
    screenshot(page, "6-rescored")

    page.goto(f"{live_server.url}/rules/{draft.pk}/history/")
    audit = page.locator("table.audit").inner_text()
    assert "ops" in audit and "30.0 → 45.0" in audit
    screenshot(page, "7-history")

    # Roll back to v1: the dialog says which MQL times stay; v3 is a copy of v1.
    page.goto(live_server.url + "/rules/")
    page.get_by_role("button", name="Roll back to v1").click()
    page.wait_for_url(re.compile(r".*/rules/runs/\d+/$"))
    page.get_by_text("Rescore finished").wait_for(timeout=30_000)
    assert "Roll back to v1" in dialogs[-1] and "MQL time" in dialogs[-1]
    current = RuleSet.objects.get(status="published")
    assert current.version == 3 and current.change_note == "Rollback to v1"
    screenshot(page, "8-rolled-back")
