"""The experiments pages and the lead page's arm: roles, the report, the charts' data, and the
stop and promote buttons."""

from __future__ import annotations

import json
import re

import pytest

from scoring.charts.experiments import mqls_per_week_figure, running_estimate_figure
from scoring.experiments.assignment import arm_of
from scoring.models import Experiment, Lead
from scoring.services.experiments import ExperimentRequest, experiment_start
from tests.factories import LeadFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def running(live, challenger_document):
    LeadFactory.create_batch(8, employees=500)
    return experiment_start(
        ExperimentRequest(
            name="page test",
            kind="ruleset",
            challenger_document=challenger_document,
            population="all",
            hypothesis="More weight on size converts better",
        ),
        inline=True,
    )


def _figure(html: str, element_id: str) -> dict:
    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html)
    return json.loads(match.group(1))


def test_managers_read_the_report_with_its_running_estimate(running, client_as):
    page = client_as("manager").get(f"/experiments/{running.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-testid="decision">continue<' in html
    assert "More weight on size converts better" in html
    figure = _figure(html, "fig-estimate")
    assert [trace["name"] for trace in figure["data"][1:]] == [
        "always-valid interval",
        "difference (challenger - champion)",
    ]
    # No stop or promote buttons for a reader.
    assert "Promote the challenger" not in html
    assert 'href="/experiments/' in client_as("manager").get("/experiments/").content.decode()


def test_sales_reps_see_no_experiments(running, client_as):
    assert client_as("sales1").get("/experiments/").status_code == 403
    assert client_as("sales1").get(f"/experiments/{running.pk}/").status_code == 403


def test_marketing_ops_stop_with_the_button_and_managers_cannot(
    running, client_as, sent_tasks, django_capture_on_commit_callbacks
):
    url = f"/experiments/{running.pk}/end/"
    assert client_as("manager").post(url, {"action": "stop"}).status_code == 403
    assert (
        "Promote the challenger"
        in client_as("ops").get(f"/experiments/{running.pk}/").content.decode()
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = client_as("ops").post(url, {"action": "stop"})
    assert response.status_code == 302
    running.refresh_from_db()
    assert running.status == Experiment.Status.STOPPED
    assert running.stopped_by.username == "ops"
    # The rescore back to the champion went to the workers.
    assert "scoring.tasks.rescore_chunk_task" in [name for name, _ in sent_tasks]
    again = client_as("ops").post(url, {"action": "promote"}, follow=True)
    assert "is not running" in again.content.decode()


def test_the_lead_page_shows_the_arm(running, client_as):
    lead = Lead.objects.first()
    arm = arm_of(running.salt, lead.pk, running.split)
    html = client_as("ops").get(f"/leads/{lead.pk}/").content.decode()
    assert f"Experiment page test (running): {arm} arm" in html


def test_a_threshold_experiment_page_draws_mqls_per_week(live, client_as, settings):
    settings.SALES_WEEKLY_MQL_CAPACITY = 25
    LeadFactory.create_batch(8, employees=500)
    experiment = experiment_start(
        ExperimentRequest(name="bar", kind="threshold", threshold=35, population="all"),
        inline=True,
    )
    html = client_as("manager").get(f"/experiments/{experiment.pk}/").content.decode()
    figure = _figure(html, "fig-weekly")
    assert figure["layout"]["shapes"][0]["y0"] == 25
    challengers = experiment.leads.filter(arm="challenger").count()
    assert figure["data"][1]["name"].startswith("challenger")
    assert figure["data"][1]["text"][0] == f"{challengers} in the arm"


def test_the_running_estimate_figure_is_in_percentage_points():
    series = {
        "days": ["2026-01-01", "2026-01-02"],
        "estimate": [None, 0.05],
        "lo": [None, 0.01],
        "hi": [None, 0.09],
    }
    figure = running_estimate_figure(series, 0.02)
    assert figure["data"][2]["y"] == [None, 5.0]
    assert figure["data"][1]["y"] == [None, 1.0]
    assert [shape["y0"] for shape in figure["layout"]["shapes"]] == [0, 2.0, -2.0]


def test_the_weekly_figure_has_no_capacity_line_when_none_is_set():
    weekly = {
        "weeks": ["2026-01-01"],
        "capacity": 0,
        "arms": {
            "champion": {"mqls": [3], "scaled": [6.0]},
            "challenger": {"mqls": [5], "scaled": [10.0]},
        },
    }
    figure = mqls_per_week_figure(weekly)
    assert figure["layout"]["shapes"] == []
    assert [trace["y"] for trace in figure["data"]] == [[6.0], [10.0]]
