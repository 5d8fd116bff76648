"""The interfaces: `manage.py experiment start|report|stop`, `/api/v1/experiments/` with its
roles, the lead detail's `experiments`, and the `arm` column of `export_scores`."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.management import CommandError, call_command

from scoring.experiments.assignment import arm_of
from scoring.models import Experiment, Lead, RuleSet
from scoring.services.rescore import rescore_chunk
from tests.factories import LeadFactory

pytestmark = pytest.mark.django_db


def _command(*args: str) -> str:
    out = io.StringIO()
    call_command("experiment", *args, stdout=out)
    return out.getvalue().strip()


@pytest.fixture
def challenger_file(tmp_path, challenger_document):
    path = tmp_path / "challenger.json"
    path.write_text(json.dumps(challenger_document))
    return str(path)


def test_the_command_starts_reports_and_stops(live, challenger_file):
    LeadFactory.create_batch(20, employees=500)
    started = json.loads(
        _command(
            "start",
            "--kind",
            "ruleset",
            "--name",
            "w",
            "--challenger-file",
            challenger_file,
            "--population",
            "all",
            "--min-sample",
            "5",
            "--split",
            "0.5",
        )
    )
    assert started["started"] is True and started["leads"] == 20
    report = json.loads(_command("report", "w", "--json"))
    assert set(report) >= {"name", "kind", "arms", "difference", "decision"}
    assert report["name"] == "w" and report["kind"] == "ruleset"
    assert [arm["name"] for arm in report["arms"]] == ["champion", "challenger"]
    for arm in report["arms"]:
        assert set(arm) >= {"name", "leads", "qualified", "converted", "rate", "ci"}
        assert len(arm["ci"]) == 2
    assert set(report["difference"]) == {"estimate", "ci"}
    assert report["decision"] == "continue"
    assert "decision: continue" in _command("report", "w")
    stopped = json.loads(_command("stop", "w"))
    assert stopped["status"] == "stopped"
    assert set(Lead.objects.values_list("score", flat=True)) == {40}


def test_the_command_refuses_an_invalid_challenger_file_and_writes_nothing(live, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "bad", "rules": [{"kind": "attribute", "points": 1}]}))
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command(
            "experiment",
            "start",
            "--kind",
            "ruleset",
            "--name",
            "x",
            "--challenger-file",
            str(path),
            stdout=out,
        )
    errors = json.loads(out.getvalue())["errors"]
    assert "$.rules[0]" in errors["challenger_document"]
    assert not Experiment.objects.exists()
    with pytest.raises(CommandError, match="no experiment named"):
        _command("report", "nope")


def test_stop_with_promote_publishes_the_challenger_and_rescores(live, challenger_file):
    LeadFactory.create_batch(10, employees=500)
    _command(
        "start",
        "--kind",
        "ruleset",
        "--name",
        "w",
        "--challenger-file",
        challenger_file,
        "--population",
        "all",
    )
    assert json.loads(_command("stop", "w", "--promote"))["status"] == "promoted"
    new_live = RuleSet.objects.get(status=RuleSet.Status.PUBLISHED)
    assert new_live.name == "Challenger" and new_live.version > live.version
    assert set(Lead.objects.values_list("score", flat=True)) == {70}
    history = Experiment.history.filter(name="w").order_by("history_date")
    assert [h.status for h in history] == ["running", "promoted"]


def test_a_threshold_promotion_applies_the_threshold_to_the_live_rule_set(live):
    LeadFactory.create_batch(10, employees=500)
    _command("start", "--kind", "threshold", "--name", "t", "--threshold", "35")
    _command("stop", "t", "--promote")
    new_live = RuleSet.objects.get(status=RuleSet.Status.PUBLISHED)
    assert new_live.bands.get(qualifies=True).min_score == 35
    assert set(Lead.objects.values_list("qualified", flat=True)) == {True}


def test_the_api_starts_reads_and_stops_by_role(
    live, challenger_document, client_as, sent_tasks, django_capture_on_commit_callbacks
):
    LeadFactory.create_batch(12, employees=500)
    body = {
        "name": "api test",
        "kind": "ruleset",
        "challenger": challenger_document,
        "population": "all",
        "min_sample": 3,
    }
    assert (
        client_as("manager").post("/api/v1/experiments/", body, "application/json").status_code
        == 403
    )
    assert client_as("sales1").get("/api/v1/experiments/").status_code == 403
    # The rescore the start asks for runs as bulk tasks: here the chunk runs when sent.
    sent_tasks.handlers["scoring.tasks.rescore_chunk_task"] = rescore_chunk
    with django_capture_on_commit_callbacks(execute=True):
        response = client_as("ops").post("/api/v1/experiments/", body, "application/json")
    assert response.status_code == 201, response.content
    assert response.json()["name"] == "api test"
    listed = client_as("manager").get("/api/v1/experiments/").json()
    assert [row["name"] for row in listed] == ["api test"]
    # The rescore ran after the commit: every lead is in an arm now.
    report = client_as("manager").get("/api/v1/experiments/api test/").json()
    assert report["arms"][0]["leads"] + report["arms"][1]["leads"] == 12
    assert report["decision"] == "continue"
    assert (
        client_as("manager")
        .post("/api/v1/experiments/api test/stop/", {}, "application/json")
        .status_code
        == 403
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = client_as("ops").post(
            "/api/v1/experiments/api test/stop/", {}, "application/json"
        )
    assert response.status_code == 200 and response.json()["status"] == "stopped"
    assert set(Lead.objects.values_list("score", flat=True)) == {40}
    again = client_as("ops").post("/api/v1/experiments/api test/promote/", {}, "application/json")
    assert again.status_code == 409
    assert client_as("manager").get("/api/v1/experiments/nope/").status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"split": 0}, "split"),
        ({"challenger": None}, "challenger"),
        ({"challenger": {"name": "x", "rules": [{"kind": "bogus"}]}}, "challenger"),
        ({"kind": "model", "challenger_model": 12345}, "challenger_model"),
        ({"kind": "nope"}, "kind"),
        ({"name": "a/b"}, "name"),
    ],
)
def test_the_api_answers_bad_requests_with_400_and_a_reason(
    live, challenger_document, client_as, change, field
):
    body = {"name": "x", "kind": "ruleset", "challenger": challenger_document, **change}
    response = client_as("ops").post("/api/v1/experiments/", body, "application/json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not Experiment.objects.exists()


def test_the_lead_detail_and_the_export_show_the_arm(
    live, challenger_document, client_as, tmp_path
):
    leads = LeadFactory.create_batch(6, employees=500)
    outsider = LeadFactory(employees=500)
    _command_start = {"population": "all"}
    from scoring.services.experiments import ExperimentRequest, experiment_start

    experiment = experiment_start(
        ExperimentRequest(
            name="shown", kind="ruleset", challenger_document=challenger_document, **_command_start
        ),
        inline=True,
    )
    lead = leads[0]
    arm = arm_of(experiment.salt, lead.pk, experiment.split)
    detail = client_as("ops").get(f"/api/v1/leads/{lead.pk}/").json()
    assert detail["experiments"] == [
        {"name": "shown", "arm": arm, "shadow_score": 40 if arm == "challenger" else 70}
    ]
    path = tmp_path / "scores.csv"
    call_command("export_scores", str(path), stdout=io.StringIO())
    rows = {row["email"]: row for row in csv.DictReader(path.open())}
    assert rows[lead.email]["arm"] == arm
    from scoring.services.experiments import experiment_stop

    experiment_stop(experiment, inline=True)
    call_command("export_scores", str(path), stdout=io.StringIO())
    rows = {row["email"]: row for row in csv.DictReader(path.open())}
    assert {row["arm"] for row in rows.values()} == {""}
    assert outsider.email in rows


def test_a_promotion_that_cannot_apply_changes_nothing(live):
    _command("start", "--kind", "threshold", "--name", "t", "--threshold", "35")
    # Meanwhile a new champion went live with a band at 35: the threshold cannot move there.
    from scoring.services.rulesets import ruleset_import

    ruleset_import(
        {
            "name": "New live",
            "bands": [
                {"name": "Cold", "min_score": 0},
                {"name": "Warm", "min_score": 35},
                {"name": "MQL", "min_score": 50, "qualifies": True},
            ],
            "rules": [],
        },
        publish=True,
    )
    with pytest.raises(CommandError, match="min_score"):
        _command("stop", "t", "--promote")
    assert Experiment.objects.get(name="t").status == Experiment.Status.RUNNING
    assert RuleSet.objects.get(status=RuleSet.Status.PUBLISHED).name == "New live"
