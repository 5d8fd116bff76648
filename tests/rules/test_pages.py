"""The rule pages through the test client: inline editing of a draft, errors beside the
field, import/export, publish, rollback and history."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from scoring.models import Band, Persona, RescoreRun, Rule, RuleSet
from scoring.services.rulesets import ruleset_export
from tests.factories import EventFactory, LeadFactory
from tests.rules.conftest import LIVE_DOCUMENT

HTMX = {"HTTP_HX_REQUEST": "true"}


def rules_of(rule_set):
    return list(rule_set.rules.order_by("position", "id"))


def rule_post(**overrides):
    data = {
        "kind": "attribute",
        "name": "",
        "persona": "",
        "points": "10",
        "field": "country",
        "op": "eq",
        "value": "Germany",
        "event_type": "",
        "where": "",
        "window_days": "",
        "half_life_days": "",
        "cap": "",
        "days": "",
    }
    data.update(overrides)
    return data


def test_ops_adds_edits_reorders_and_deletes_rules_of_a_draft(client_as, draft):
    ops = client_as("ops")
    base = f"/rules/{draft.pk}/rules"

    response = ops.post(f"{base}/add/", rule_post(), **HTMX)
    assert response.status_code == 200
    assert response["HX-Retarget"] == "#rules-section"
    assert "country is &#x27;Germany&#x27;" in response.content.decode()
    rules = rules_of(draft)
    assert len(rules) == 6 and rules[-1].field == "country" and rules[-1].points == 10

    # Edit the points of the demo_request rule (index 3).
    edit_form = ops.get(f"{base}/3/edit/", **HTMX)
    assert edit_form.status_code == 200 and 'name="window_days"' in edit_form.content.decode()
    response = ops.post(
        f"{base}/3/",
        rule_post(kind="event", event_type="demo_request", window_days="60", points="45", field=""),
        **HTMX,
    )
    assert response.status_code == 200
    assert rules_of(draft)[3].points == 45 and rules_of(draft)[3].field == ""

    # Move the new country rule (index 5) up, then delete the inactivity rule.
    ops.post(f"{base}/5/move/", {"direction": "up"}, **HTMX)
    assert [r.kind for r in rules_of(draft)][-2:] == ["attribute", "inactivity"]
    assert [r.position for r in rules_of(draft)] == list(range(6))
    ops.post(f"{base}/5/delete/", **HTMX)
    assert [r.kind for r in rules_of(draft)] == [
        "attribute",
        "event",
        "event",
        "event",
        "attribute",
    ]

    # Plain form posts (no htmx) work too and redirect back to the editor.
    response = ops.post(f"{base}/0/move/", {"direction": "down"})
    assert response.status_code == 302 and response["Location"] == f"/rules/{draft.pk}/"
    assert rules_of(draft)[1].field == "employees"


def test_engine_errors_are_shown_beside_the_field_and_nothing_is_saved(client_as, draft):
    ops = client_as("ops")
    before = ruleset_export(draft)
    response = ops.post(
        f"/rules/{draft.pk}/rules/add/",
        rule_post(op="between", value="50", field="employees"),
        **HTMX,
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-field="value"' in html and "between takes a list of two numbers" in html
    response = ops.post(
        f"/rules/{draft.pk}/rules/1/",
        rule_post(kind="event", event_type="", window_days="-3", field=""),
        **HTMX,
    )
    html = response.content.decode()
    assert 'data-field="event_type"' in html and "is required" in html
    assert 'data-field="window_days"' in html and "must be greater than 0" in html
    assert ruleset_export(draft) == before


def test_the_field_picker_lists_lead_fields_attribute_keys_and_event_types(client_as, draft):
    from django.core.cache import cache

    cache.clear()
    LeadFactory(attributes={"plan": "pro", "seats": 3})
    EventFactory(event_type="webinar_attended")
    html = client_as("ops").get(f"/rules/{draft.pk}/").content.decode()
    for value in ("employees", "email_domain_type", "attributes.plan", "attributes.seats"):
        assert f'<option value="{value}">' in html
    assert '<option value="webinar_attended">' in html


def test_personas_and_bands_are_edited_the_same_way(client_as, draft):
    ops = client_as("ops")
    base = f"/rules/{draft.pk}"
    page = ops.get(f"/personas/?rule_set={draft.pk}")
    assert page.status_code == 200 and "Developer" in page.content.decode()

    response = ops.post(
        f"{base}/personas/add/",
        {"name": "Executive", "priority": "2", "match": "title in CEO, CTO\nemployees gte 50"},
        **HTMX,
    )
    assert response.status_code == 200
    executive = Persona.objects.get(rule_set=draft, name="Executive")
    assert executive.match == [
        {"field": "title", "op": "in", "value": ["CEO", "CTO"]},
        {"field": "employees", "op": "gte", "value": 50},
    ]
    # A bad operator on line 2 is reported beside the conditions, naming the line.
    response = ops.post(
        f"{base}/personas/1/",
        {"name": "Executive", "priority": "2", "match": "title eq CEO\nemployees bigger 5"},
        **HTMX,
    )
    assert "condition 2 (op): must be one of" in response.content.decode()
    # Renaming a persona renames it in the rules that use it.
    ops.post(
        f"{base}/personas/0/",
        {"name": "Dev", "priority": "1", "match": "title contains engineer"},
        **HTMX,
    )
    assert Rule.objects.get(rule_set=draft, event_type="api_call").persona == "Dev"
    # A persona that rules still use cannot be deleted.
    response = ops.post(f"{base}/personas/0/delete/", **HTMX)
    assert "Not deleted" in response.content.decode()
    assert Persona.objects.filter(rule_set=draft, name="Dev").exists()

    # Bands: move the MQL threshold, then a duplicate min_score is refused.
    mql_index = [b.name for b in draft.bands.all()].index("MQL")
    ops.post(
        f"{base}/bands/{mql_index}/", {"name": "MQL", "min_score": "45", "qualifies": "on"}, **HTMX
    )
    assert Band.objects.get(rule_set=draft, name="MQL").min_score == 45
    response = ops.post(f"{base}/bands/add/", {"name": "Lukewarm", "min_score": "25"}, **HTMX)
    assert "duplicates the min_score" in response.content.decode()
    assert not Band.objects.filter(rule_set=draft, name="Lukewarm").exists()


def test_published_versions_cannot_be_edited(client_as, live):
    response = client_as("ops").post(f"/rules/{live.pk}/rules/add/", rule_post())
    assert response.status_code == 302
    assert live.rules.count() == len(LIVE_DOCUMENT["rules"])


def test_import_and_export_round_trip_through_the_pages(client_as, live):
    ops = client_as("ops")
    exported = ops.get(f"/rules/{live.pk}/export.json")
    assert exported.status_code == 200
    assert exported["Content-Disposition"] == f'attachment; filename="ruleset-v{live.version}.json"'
    document = json.loads(exported.content)
    upload = SimpleUploadedFile("rules.json", exported.content, content_type="application/json")
    response = ops.post("/rules/import/", {"document": upload})
    assert response.status_code == 302
    imported = RuleSet.objects.get(pk=int(response["Location"].strip("/").split("/")[-1]))
    assert imported.status == "draft"
    assert json.loads(ops.get(f"/rules/{imported.pk}/export.json").content) == document


def test_an_invalid_import_lists_every_problem_and_writes_nothing(client_as, live):
    bad = {"name": "Bad", "rules": [{"kind": "attribute", "field": "x", "op": "nope", "points": 1}]}
    upload = SimpleUploadedFile("bad.json", json.dumps(bad).encode())
    count = RuleSet.objects.count()
    response = client_as("ops").post("/rules/import/", {"document": upload})
    assert response.status_code == 400
    assert "$.rules[0].op" in response.content.decode()
    not_json = SimpleUploadedFile("bad.json", b"{not json")
    response = client_as("ops").post("/rules/import/", {"document": not_json})
    assert response.status_code == 400 and "not valid JSON" in response.content.decode()
    assert RuleSet.objects.count() == count


@pytest.fixture
def inline_rescore(monkeypatch):
    """Run the chunks of a publish's rescore here instead of on a worker."""
    from scoring.services import rescore

    monkeypatch.setattr(
        rescore, "_enqueue_chunks", lambda run, ids: [rescore.rescore_chunk(i) for i in ids]
    )


def test_publishing_creates_a_version_and_a_rescore_run_whose_progress_the_page_shows(
    client_as, draft, inline_rescore, django_capture_on_commit_callbacks
):
    LeadFactory.create_batch(3)
    ops = client_as("ops")
    with django_capture_on_commit_callbacks(execute=True):
        response = ops.post(f"/rules/{draft.pk}/publish/", {"note": "Tighter MQL"})
    draft.refresh_from_db()
    assert draft.status == "published" and draft.version == 2
    assert draft.published_by.username == "ops"
    run = RescoreRun.objects.get(rule_set=draft)
    # Outside a test transaction the run exists before the redirect and the page follows it.
    assert response["Location"] in (f"/rules/runs/{run.pk}/", f"/rules/{draft.pk}/")
    assert f"Rescore #{run.pk}" in ops.get(f"/rules/{draft.pk}/").content.decode()
    status = ops.get(f"/rules/runs/{run.pk}/status/", **HTMX).content.decode()
    assert "Rescore finished: 3 leads scored" in status
    assert 'hx-trigger="every 1s"' not in status


def test_publishing_with_the_broker_down_goes_live_and_says_the_rescore_waits(
    client_as, draft, broker_down, transactional_db
):
    # transactional_db: no surrounding transaction, so the tasks are sent during the request.
    LeadFactory.create_batch(3)
    response = client_as("ops").post(
        f"/rules/{draft.pk}/publish/", {"note": "Broker down"}, follow=True
    )

    assert response.status_code == 200
    assert "Rescore queued; will start when the worker is reachable" in response.content.decode()
    draft.refresh_from_db()
    run = RescoreRun.objects.get(rule_set=draft)
    assert draft.status == "published" and run.status == "queued"
    assert run.chunks.filter(status="queued").exclude(task_name="").exists()


def test_rollback_republishes_a_copy_of_an_earlier_version(
    client_as, live, draft, inline_rescore, django_capture_on_commit_callbacks
):
    ops = client_as("ops")
    with django_capture_on_commit_callbacks(execute=True):
        ops.post(f"/rules/{draft.pk}/publish/", {"note": "Tighter MQL"})
    live.refresh_from_db()
    assert live.status == "archived"
    with django_capture_on_commit_callbacks(execute=True):
        response = ops.post(f"/rules/{live.pk}/rollback/")
    assert response.status_code == 302
    current = RuleSet.objects.get(status="published")
    assert current.version == 3 and current.based_on_id == live.pk
    assert ruleset_export(current)["rules"] == ruleset_export(live)["rules"]


def test_history_shows_the_diff_against_the_previous_version_and_who_changed_what(
    client_as, live, draft
):
    ops = client_as("ops")
    ops.post(
        f"/rules/{draft.pk}/rules/3/",
        rule_post(kind="event", event_type="demo_request", window_days="60", points="45", field=""),
        **HTMX,
    )
    html = ops.get(f"/rules/{draft.pk}/history/").content.decode()
    assert "demo_request in 60 d" in html
    assert "<code>points</code>: 30 → 45" in html
    # The audit trail: the edit, by ops, with old and new value.
    assert "<td>ops</td>" in html
    assert "<code>points</code>: 30.0 → 45.0" in html


def test_a_preview_page_polls_until_done_and_then_shows_results(
    client_as, draft, django_capture_on_commit_callbacks, sent_tasks
):
    from scoring.services.preview import preview_execute

    LeadFactory.create_batch(4)
    ops = client_as("ops")
    with django_capture_on_commit_callbacks(execute=True):
        response = ops.post(f"/rules/{draft.pk}/preview/")
    preview_id = int(response["Location"].strip("/").split("/")[-1])
    waiting = ops.get(f"/rules/previews/{preview_id}/status/", **HTMX).content.decode()
    assert 'hx-trigger="every 1s"' in waiting and "<progress" in waiting
    preview_execute(preview_id)
    done = ops.get(f"/rules/previews/{preview_id}/").content.decode()
    assert 'hx-trigger="every 1s"' not in done
    assert 'id="fig-distribution"' in done and "Band changes" in done
    assert "vendor/plotly-cartesian/plotly-cartesian.min.js" in done
    # Managers may look at it, too.
    assert client_as("manager").get(f"/rules/previews/{preview_id}/").status_code == 200


def test_a_failed_run_can_be_rescored_again_from_its_page(
    client_as, live, sent_tasks, django_capture_on_commit_callbacks
):
    from scoring.jobs import job_fail
    from scoring.services.rescore import CHUNK_TASK, rescore_all

    LeadFactory.create_batch(3)
    run = rescore_all(rule_set=live, inline=False)
    job_fail(RescoreRun.objects.filter(pk=run.pk), "Stalled: sent 6 times without finishing")
    ops, manager = client_as("ops"), client_as("manager")

    assert "Rescore again" in ops.get(f"/rules/runs/{run.pk}/").content.decode()
    assert "Rescore again" not in manager.get(f"/rules/runs/{run.pk}/").content.decode()
    assert manager.post(f"/rules/{live.pk}/rescore/").status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        response = ops.post(f"/rules/{live.pk}/rescore/")

    again = RescoreRun.objects.exclude(pk=run.pk).get()
    assert response["Location"] == f"/rules/runs/{again.pk}/"
    assert sent_tasks.named(CHUNK_TASK) == [[chunk.pk] for chunk in again.chunks.order_by("pk")]


def test_the_rule_editor_names_operators_in_words():
    from scoring.engine import OPERATORS
    from scoring.forms import RuleForm

    labels = dict(RuleForm.base_fields["op"].choices)
    # Every engine operator has words, and none is shown as its code.
    assert set(OPERATORS) <= set(labels)
    assert labels["gte"] == "at least" and labels["in"] == "is one of"
    assert labels["is_not_set"] == "is not set"
    assert all(labels[op] != op for op in OPERATORS if "_" in op or op in ("gte", "lte", "eq"))


def test_publishing_needs_a_change_note_and_takes_a_version_name(client_as, draft, live):
    ops = client_as("ops")
    refused = ops.post(f"/rules/{draft.pk}/publish/", {"note": "  "}, follow=True)
    draft.refresh_from_db()
    assert draft.status == "draft"
    assert "write a change note" in refused.content.decode()
    ops.post(f"/rules/{draft.pk}/publish/", {"name": "Q4 rules", "note": "Demo requests x2"})
    draft.refresh_from_db()
    assert (draft.status, draft.name, draft.change_note) == (
        "published",
        "Q4 rules",
        "Demo requests x2",
    )
    index = ops.get("/rules/").content.decode()
    assert "Demo requests x2" in index and "Q4 rules" in index
    ops.post(f"/rules/{live.pk}/rollback/")
    rolled = RuleSet.objects.get(status="published")
    assert rolled.change_note == f"Rollback to v{live.version}"
