"""The thin Celery entry points: what they enqueue and when they skip."""

from __future__ import annotations

import pytest

from integrations import tasks
from integrations.models import Connection

pytestmark = pytest.mark.django_db


def test_after_a_rescore_only_configured_enabled_crms_are_pushed(
    monkeypatch, sent_tasks, django_capture_on_commit_callbacks
):
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "hs-token")

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.push_scores_after_rescore_task.run(run_id=1) == ["hubspot"]
    assert sent_tasks == [("integrations.tasks.push_scores_task", ["hubspot"])]

    Connection.objects.create(vendor="hubspot", enabled=False)
    assert tasks.push_scores_after_rescore_task.run() == []


def test_a_scheduled_sync_of_a_disabled_connection_does_nothing():
    Connection.objects.create(vendor="mixpanel", enabled=False)
    assert tasks.sync_task.run("mixpanel", False, "schedule") is None


def test_a_sync_task_on_a_paused_connection_skips_quietly():
    from datetime import timedelta

    from django.utils import timezone

    Connection.objects.create(vendor="hubspot", paused_until=timezone.now() + timedelta(hours=1))
    assert tasks.sync_task.run("hubspot", False, "manual") is None
