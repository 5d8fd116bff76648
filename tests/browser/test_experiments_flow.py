"""Experiments in a real browser: a manager reads the report and its running-estimate chart
(drawn by plotly.js under the CSP, no inline script); marketing ops promote the challenger with
one click."""

from __future__ import annotations

import pytest

from scoring.models import Experiment, RuleSet
from scoring.services.experiments import ExperimentRequest, experiment_start
from scoring.services.rulesets import ruleset_import
from tests.experiments.conftest import CHALLENGER_DOCUMENT, CHAMPION_DOCUMENT
from tests.factories import LeadFactory

pytestmark = pytest.mark.browser


@pytest.fixture
def experiment(role_users):
    ruleset_import(dict(CHAMPION_DOCUMENT), publish=True)
    LeadFactory.create_batch(10, employees=500)
    return experiment_start(
        ExperimentRequest(
            name="bigger weight",
            kind="ruleset",
            challenger_document=dict(CHALLENGER_DOCUMENT),
            population="all",
        ),
        inline=True,
    )


def test_a_manager_reads_the_chart_and_ops_promote_the_challenger(
    page, login, screenshot, experiment, live_server
):
    login(page, "manager")
    page.goto(live_server.url + "/experiments/")
    page.get_by_role("link", name="bigger weight").click()
    page.wait_for_selector(".kpi-chart[data-rendered]")
    assert page.get_by_test_id("decision").inner_text() == "continue"
    assert page.get_by_role("button", name="Promote the challenger").count() == 0
    screenshot(page, "1-report")

    page.context.clear_cookies()
    login(page, "ops")
    page.goto(live_server.url + f"/experiments/{experiment.pk}/")
    with page.expect_navigation():
        page.get_by_role("button", name="Promote the challenger").click()
    assert page.get_by_text("Promoted: the challenger is live").is_visible()
    experiment.refresh_from_db()
    assert experiment.status == Experiment.Status.PROMOTED
    assert RuleSet.objects.get(status=RuleSet.Status.PUBLISHED).name == "Challenger"
    screenshot(page, "2-promoted")
