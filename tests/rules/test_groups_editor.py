"""The rule editor edits groups (JSON editor on the rule-set page) and each rule's group (its
form), with the engine's errors shown and nothing half-saved; only marketing ops may."""

from __future__ import annotations

import json

from scoring.models import Rule
from scoring.services.rulesets import ruleset_export
from tests.rules.test_pages import HTMX, rule_post

GROUPS = {
    "groups": [
        {"name": "fit", "cap": 50, "floor": 0, "bands": [
            {"name": "A", "min_score": 40}, {"name": "B", "min_score": 0}]},
        {"name": "engagement", "cap": 60, "bands": [
            {"name": "1", "min_score": 30}, {"name": "2", "min_score": 0}]},
    ],
    "grid": ["fit", "engagement"],
}  # fmt: skip


def test_ops_saves_groups_then_puts_a_rule_in_one(client_as, draft):
    ops = client_as("ops")
    response = ops.post(f"/rules/{draft.pk}/groups/", {"document": json.dumps(GROUPS)})
    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.grid == ["fit", "engagement"] and draft.groups[0]["cap"] == 50

    page = ops.get(f"/rules/{draft.pk}/").content.decode()
    assert '<option value="fit">fit</option>' in page  # the rule form offers the groups
    assert "grade = fit \N{MULTIPLICATION SIGN} engagement" in page

    response = ops.post(f"/rules/{draft.pk}/rules/add/", rule_post(group="fit"), **HTMX)
    assert response.status_code == 200
    assert Rule.objects.filter(rule_set=draft).order_by("-position").first().group == "fit"
    exported = ruleset_export(draft)
    assert exported["grid"] == ["fit", "engagement"]
    assert exported["rules"][-1]["group"] == "fit"

    # A group a rule still uses cannot be removed: the engine's error, nothing saved.
    response = ops.post(f"/rules/{draft.pk}/groups/", {"document": json.dumps({"groups": []})})
    assert response.status_code == 400
    assert "names no defined group" in response.content.decode()
    draft.refresh_from_db()
    assert len(draft.groups) == 2


def test_bad_groups_json_is_refused_beside_the_field(client_as, draft):
    ops = client_as("ops")
    bad = {**GROUPS, "grid": ["fit", "intent"]}
    response = ops.post(f"/rules/{draft.pk}/groups/", {"document": json.dumps(bad)})
    assert response.status_code == 400
    assert "$.grid[1]: names no defined group" in response.content.decode()
    response = ops.post(f"/rules/{draft.pk}/groups/", {"document": "{not json"})
    assert response.status_code == 400 and "is not valid JSON" in response.content.decode()
    draft.refresh_from_db()
    assert draft.groups == [] and draft.grid is None


def test_only_ops_may_edit_groups_and_published_versions_stay_immutable(client_as, draft, live):
    for user in ("sales1", "manager"):
        response = client_as(user).post(
            f"/rules/{draft.pk}/groups/", {"document": json.dumps(GROUPS)}
        )
        assert response.status_code == 403
    response = client_as("ops").post(f"/rules/{live.pk}/groups/", {"document": json.dumps(GROUPS)})
    assert response.status_code == 302
    live.refresh_from_db()
    assert live.groups == []


def test_an_operator_where_shows_as_json_in_the_rule_form_and_saves_back(client_as, draft):
    ops = client_as("ops")
    where = {"question": "nps", "score": {"gte": 9}}
    response = ops.post(
        f"/rules/{draft.pk}/rules/add/",
        rule_post(kind="event", event_type="survey_response", where=json.dumps(where),
                  window_days="180", field="", op="", value=""),
        **HTMX,
    )  # fmt: skip
    assert response.status_code == 200, response.content.decode()[:2000]
    rule = Rule.objects.filter(rule_set=draft).order_by("-position").first()
    assert rule.where == where
    index = Rule.objects.filter(rule_set=draft).count() - 1
    form = ops.get(f"/rules/{draft.pk}/rules/{index}/edit/", **HTMX).content.decode()
    assert "&quot;gte&quot;: 9" in form
