"""The report on the real database: a challenger that truly converts better for its arm is
found; the running estimate and the MQLs per week are computed from the stored outcomes."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from django.utils import timezone

from scoring.models import Experiment, ExperimentLead, Feedback, Lead
from scoring.selectors.experiments import (
    experiment_report,
    experiment_series,
    lead_experiments,
    mqls_per_week,
)
from scoring.services.experiments import ExperimentRequest, experiment_start

pytestmark = pytest.mark.django_db


def _leads(n: int) -> None:
    created = timezone.now() - dt.timedelta(days=30)
    Lead.objects.bulk_create(
        [Lead(email=f"l{i}@example.com", employees=500, created_at=created) for i in range(n)]
    )


def _convert(ids: list[int], *, after: dt.datetime, days: float) -> None:
    Lead.objects.filter(pk__in=ids).update(
        converted_at=after + dt.timedelta(days=days), lifecycle_stage="customer"
    )


def _start(document, **overrides) -> Experiment:
    options = {
        "name": "weights",
        "kind": "ruleset",
        "population": "all",
        "min_sample": 200,
        "challenger_document": document,
    }
    options.update(overrides)
    return experiment_start(ExperimentRequest(**options), inline=True)


def _simulate_sales(experiment: Experiment, seed: int) -> None:
    """Sales work the qualified leads: 35 % of them convert, 10 % of the others, 12 days
    after entering."""
    rng = np.random.default_rng(seed)
    rows = list(
        ExperimentLead.objects.filter(experiment=experiment).values_list(
            "lead_id", "lead__qualified"
        )
    )
    draws = rng.random(len(rows))
    winners = [
        lead_id
        for (lead_id, qualified), u in zip(rows, draws, strict=True)
        if u < (0.35 if qualified else 0.1)
    ]
    _convert(winners, after=experiment.started_at, days=12)


def test_a_challenger_that_truly_converts_better_is_found(live, challenger_document):
    _leads(1200)
    experiment = _start(challenger_document)
    _simulate_sales(experiment, seed=7)
    report = experiment_report(experiment)
    assert report["decision"] == "challenger_better"
    champion, challenger = report["arms"]
    assert (champion["name"], challenger["name"]) == ("champion", "challenger")
    assert champion["leads"] + challenger["leads"] == 1200
    assert challenger["qualified"] == challenger["leads"] and champion["qualified"] == 0
    assert challenger["rate"] > champion["rate"]
    assert champion["ci"][0] < champion["rate"] < champion["ci"][1]
    assert report["difference"]["ci"][0] > 0
    assert challenger["median_days_to_convert"] == pytest.approx(12, abs=0.01)


def test_identical_arms_are_not_called_different(live):
    _leads(1200)
    same = {
        "name": "Same",
        "bands": [
            {"name": "Cold", "min_score": 0},
            {"name": "MQL", "min_score": 50, "qualifies": True},
        ],
        "rules": [
            {"kind": "attribute", "field": "employees", "op": "gte", "value": 100, "points": 40}
        ],
    }
    experiment = _start(same)
    _simulate_sales(experiment, seed=11)
    report = experiment_report(experiment)
    assert report["decision"] in ("continue", "no_difference")
    low, high = report["difference"]["ci"]
    assert low < 0 < high


def test_conversions_outside_the_horizon_or_before_entry_do_not_count(live, challenger_document):
    _leads(10)
    experiment = _start(challenger_document, horizon_days=30)
    ids = list(Lead.objects.values_list("pk", flat=True))
    _convert(ids[:3], after=experiment.started_at, days=5)
    _convert(ids[3:5], after=experiment.started_at, days=45)
    _convert(ids[5:6], after=experiment.started_at, days=-2)
    report = experiment_report(experiment)
    assert sum(arm["converted"] for arm in report["arms"]) == 3
    assert report["decision"] == "continue"  # below the minimum sample


def test_the_bad_lead_rate_counts_sales_verdicts(live, challenger_document, role_users):
    _leads(4)
    experiment = _start(challenger_document, metric="bad_lead_rate")
    lead = Lead.objects.first()
    Feedback.objects.create(lead=lead, author=role_users["sales1"], verdict="bad")
    report = experiment_report(experiment)
    assert sum(arm["bad_leads"] for arm in report["arms"]) == 1
    arm = lead_experiments(lead.pk)[0]["arm"]
    row = next(a for a in report["arms"] if a["name"] == arm)
    assert row["rate"] == pytest.approx(1 / row["leads"])


def test_the_running_estimate_has_one_point_per_day(live, challenger_document):
    _leads(300)
    experiment = _start(challenger_document)
    _simulate_sales(experiment, seed=3)
    series = experiment_series(experiment, until=experiment.started_at + dt.timedelta(days=20))
    assert len(series["days"]) == 21
    assert series["leads"]["champion"][-1] + series["leads"]["challenger"][-1] == 300
    # Conversions arrive on day 12: before it the estimate is 0, afterwards the interval
    # contains the final estimate.
    assert series["estimate"][5] == 0
    assert series["lo"][-1] <= series["estimate"][-1] <= series["hi"][-1]


def test_mqls_per_week_are_scaled_by_the_arms_share(live, settings):
    settings.SALES_WEEKLY_MQL_CAPACITY = 40
    _leads(60)
    experiment = _start(None, kind="threshold", threshold=35, split=0.25)
    weekly = mqls_per_week(experiment)
    challengers = experiment.leads.filter(arm="challenger").count()
    assert weekly["arms"]["challenger"]["mqls"][0] == challengers
    assert weekly["arms"]["challenger"]["scaled"][0] == pytest.approx(challengers / 0.25, abs=0.1)
    assert weekly["arms"]["champion"]["mqls"] == [0]
    assert weekly["capacity"] == 40
