"""Reads for experiments: the report (per-arm counts and rates, the primary metric's difference
with its always-valid interval, the decision), its running estimate over time, MQLs per week
per arm, and a lead's arms. Aggregated in SQL (one row per arm, day or week), so the report
costs a few grouped scans of the experiment's rows, not a read of every lead into Python.

A lead *enters* an experiment when it is created, or at the start for leads that existed
before (population `all`): `ExperimentLead.assigned_at`. Outcomes count from entry, within
the horizon: converted (`converted_at`), sales-accepted (the first of `sql_at`,
`opportunity_at`, `converted_at`), a bad-lead verdict from sales (its first `bad` feedback)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection
from django.utils import timezone

from leadscoring.db import epoch_seconds_sql
from scoring.experiments.assignment import CHALLENGER, CHAMPION
from scoring.experiments.stats import arm_rate, decide, difference_sequence, median_days
from scoring.models import Experiment, ExperimentLead

DAY = 86400.0
WEEK = 7 * DAY


def _lead_outcomes_sql(experiment: Experiment) -> tuple[str, list[Any]]:
    """One row per member: arm, entry, qualified (0/1) and the Unix time of each outcome
    within the horizon (NULL when none)."""
    entry = epoch_seconds_sql("el.assigned_at")
    horizon = experiment.horizon_days * DAY

    def within(column: str) -> str:
        moment = epoch_seconds_sql(column)
        return (
            f"CASE WHEN {moment} >= {entry} AND {moment} <= {entry} + {horizon} THEN {moment} END"
        )

    accepted = "COALESCE(l.sql_at, l.opportunity_at, l.converted_at)"
    bad = (
        "(SELECT MIN(f.created_at) FROM scoring_feedback f"
        " WHERE f.lead_id = l.id AND f.verdict = 'bad')"
    )
    mql = epoch_seconds_sql("l.mql_at")
    sql = (
        f"SELECT el.arm AS arm, {entry} AS entry,"
        f" CASE WHEN l.qualified OR {mql} >= {entry} THEN 1 ELSE 0 END AS qualified,"
        f" CASE WHEN {mql} >= {entry} THEN {mql} END AS mql,"
        f" {within('l.converted_at')} AS converted, {within(accepted)} AS accepted,"
        f" {within(bad)} AS bad"
        " FROM scoring_experimentlead el JOIN scoring_lead l ON l.id = el.lead_id"
        " WHERE el.experiment_id = %s"
    )
    return sql, [experiment.pk]


SUCCESS_COLUMN = {
    Experiment.Metric.CONVERSION: "converted",
    Experiment.Metric.SQL: "accepted",
    Experiment.Metric.BAD_LEAD_RATE: "bad",
}


def experiment_report(experiment: Experiment) -> dict[str, Any]:
    """The report (`manage.py experiment report --json`, the API, the page):
    `{"name", "kind", "metric", "status", "arms": [{"name", "leads", "qualified",
    "sales_accepted", "converted", "bad_leads", "rate", "ci", "median_days_to_convert"}],
    "difference": {"estimate", "ci"}, "decision", ...}` where `rate` and `ci` (95 % Wilson)
    are the primary metric's, and the difference (challenger - champion) carries the
    always-valid interval at 1 - alpha (`scoring.experiments.stats`)."""
    inner, params = _lead_outcomes_sql(experiment)
    success = SUCCESS_COLUMN[experiment.metric]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT arm, COUNT(*), SUM(qualified), COUNT(accepted), COUNT(converted),"
            f" COUNT(bad), COUNT({success}) FROM ({inner}) o GROUP BY arm",
            params,
        )
        counts = {row[0]: [int(v or 0) for v in row[1:]] for row in cursor.fetchall()}
        cursor.execute(
            f"SELECT arm, converted - entry FROM ({inner}) o WHERE converted IS NOT NULL", params
        )
        durations: dict[str, list[float]] = {CHAMPION: [], CHALLENGER: []}
        for arm, seconds in cursor.fetchall():
            durations[arm].append(float(seconds) / DAY)
    arms = []
    for name in (CHAMPION, CHALLENGER):
        leads, qualified, accepted, converted, bad, successes = counts.get(name, [0] * 6)
        primary = arm_rate(successes, leads)
        arms.append(
            {
                "name": name,
                "leads": leads,
                "qualified": qualified,
                "sales_accepted": accepted,
                "converted": converted,
                "bad_leads": bad,
                "rate": primary.rate,
                "ci": list(primary.ci),
                "median_days_to_convert": median_days(durations[name]),
            }
        )
    champion, challenger = arms
    estimate, lo, hi = (
        float(v[()])
        for v in difference_sequence(
            _successes(champion, experiment),
            champion["leads"],
            _successes(challenger, experiment),
            challenger["leads"],
            alpha=experiment.alpha,
            tau=experiment.relevant_difference,
        )
    )
    decision = decide(
        champion["leads"],
        challenger["leads"],
        lo,
        hi,
        min_sample=experiment.min_sample,
        relevant_difference=experiment.relevant_difference,
        higher_is_better=experiment.metric != Experiment.Metric.BAD_LEAD_RATE,
    )
    return {
        "name": experiment.name,
        "kind": experiment.kind,
        "metric": experiment.metric,
        "status": experiment.status,
        "split": experiment.split,
        "min_sample": experiment.min_sample,
        "alpha": experiment.alpha,
        "relevant_difference": experiment.relevant_difference,
        "arms": arms,
        "difference": {"estimate": _number(estimate), "ci": [_number(lo), _number(hi)]},
        "decision": decision,
    }


def _successes(arm: dict[str, Any], experiment: Experiment) -> int:
    key = {"converted": "converted", "accepted": "sales_accepted", "bad": "bad_leads"}
    return arm[key[SUCCESS_COLUMN[experiment.metric]]]


def _number(value: float) -> float | None:
    return None if np.isnan(value) else value


def experiment_series(
    experiment: Experiment, *, until: dt.datetime | None = None
) -> dict[str, Any]:
    """The running estimate: for each day from the start, the difference of the primary
    metric's rate and its always-valid interval on the data as it stood at the end of that
    day (leads entered by then, outcomes by then). `{"days": [ISO date], "estimate", "lo",
    "hi", "leads": {arm: [...]}}`; empty lists before the first day ends."""
    inner, params = _lead_outcomes_sql(experiment)
    success = SUCCESS_COLUMN[experiment.metric]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT arm, CAST(entry / {DAY} AS INTEGER), 1 FROM ({inner}) o"
            f" UNION ALL SELECT arm, CAST({success} / {DAY} AS INTEGER), 0 FROM ({inner}) o"
            f" WHERE {success} IS NOT NULL",
            params + params,
        )
        rows = cursor.fetchall()
    first = int(experiment.started_at.timestamp() // DAY)
    end = until or experiment.stopped_at or timezone.now()
    last = max(first, int(end.timestamp() // DAY))
    size = last - first + 1
    n = {CHAMPION: np.zeros(size), CHALLENGER: np.zeros(size)}
    x = {CHAMPION: np.zeros(size), CHALLENGER: np.zeros(size)}
    for arm, day, is_entry in rows:
        position = min(max(int(day) - first, 0), size - 1)
        (n if is_entry else x)[arm][position] += 1
    cumulative_n = {arm: np.cumsum(values) for arm, values in n.items()}
    cumulative_x = {arm: np.cumsum(values) for arm, values in x.items()}
    estimate, lo, hi = difference_sequence(
        cumulative_x[CHAMPION],
        cumulative_n[CHAMPION],
        cumulative_x[CHALLENGER],
        cumulative_n[CHALLENGER],
        alpha=experiment.alpha,
        tau=experiment.relevant_difference,
    )
    days = [
        (dt.datetime.fromtimestamp((first + i) * DAY, tz=dt.UTC)).date().isoformat()
        for i in range(size)
    ]
    return {
        "days": days,
        "estimate": [_number(v) for v in estimate.tolist()],
        "lo": [_number(v) for v in lo.tolist()],
        "hi": [_number(v) for v in hi.tolist()],
        "leads": {arm: [int(v) for v in values.tolist()] for arm, values in cumulative_n.items()},
    }


def mqls_per_week(experiment: Experiment) -> dict[str, Any]:
    """For threshold tests: each arm's MQLs per week since the start, and the same scaled to
    the whole population (divided by the arm's share: what the team would receive if that
    arm's threshold applied to every lead), beside the team's weekly capacity
    (`SALES_WEEKLY_MQL_CAPACITY`, 0 = not set). `{"weeks": [ISO date of each week's start],
    "arms": {arm: {"mqls": [...], "scaled": [...]}}, "capacity"}`."""
    inner, params = _lead_outcomes_sql(experiment)
    start = experiment.started_at.timestamp()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT arm, CAST((mql - %s) / {WEEK} AS INTEGER), COUNT(*) FROM ({inner}) o"
            " WHERE mql IS NOT NULL GROUP BY 1, 2",
            [start, *params],
        )
        rows = cursor.fetchall()
    end = (experiment.stopped_at or timezone.now()).timestamp()
    size = max(1, int((end - start) // WEEK) + 1)
    mqls = {CHAMPION: [0] * size, CHALLENGER: [0] * size}
    for arm, week, count in rows:
        mqls[arm][min(max(int(week), 0), size - 1)] += int(count)
    share = {CHAMPION: 1 - experiment.split, CHALLENGER: experiment.split}
    return {
        "weeks": [
            dt.datetime.fromtimestamp(start + i * WEEK, tz=dt.UTC).date().isoformat()
            for i in range(size)
        ],
        "arms": {
            arm: {"mqls": values, "scaled": [round(v / share[arm], 1) for v in values]}
            for arm, values in mqls.items()
        },
        "capacity": settings.SALES_WEEKLY_MQL_CAPACITY,
    }


def lead_experiments(lead_id: int) -> list[dict[str, Any]]:
    """The lead's arms, newest experiment first: `[{"name", "arm", "shadow_score", "status"}]`."""
    return [
        {"name": name, "arm": arm, "shadow_score": shadow, "status": status}
        for name, arm, shadow, status in ExperimentLead.objects.filter(lead_id=lead_id)
        .order_by("-experiment__started_at", "-experiment_id")
        .values_list("experiment__name", "arm", "shadow_score", "experiment__status")
    ]


def running_arms(lead_ids: list[int]) -> dict[int, str]:
    """lead id -> its arm in the running experiment (absent: not in one)."""
    return dict(
        ExperimentLead.objects.filter(
            lead_id__in=lead_ids, experiment__status=Experiment.Status.RUNNING
        ).values_list("lead_id", "arm")
    )


def experiment_list() -> list[Experiment]:
    return list(Experiment.objects.order_by("-started_at", "-id"))
