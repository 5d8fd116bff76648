"""The lead page's, the feedback review's and the Models page's figures: what they draw, and
that plotly accepts them (its schema validates)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import plotly.graph_objects as go

from scoring.charts.feedback import flags_per_week_figure
from scoring.charts.lead import score_history_figure
from scoring.charts.models import calibration_figure

T0 = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)


def test_a_lead_without_history_has_no_score_chart():
    assert score_history_figure([]) is None


def test_the_score_chart_steps_through_each_point_in_order():
    points = [(T0, 10, "Cold"), (T0 + dt.timedelta(days=3), 55, "MQL")]

    figure = score_history_figure(points)

    go.Figure(figure)
    trace = figure["data"][0]
    assert trace["y"] == [10, 55] and trace["text"] == ["Cold", "MQL"]
    assert trace["line"]["shape"] == "hv"


def test_flags_stack_good_and_bad_per_week():
    weeks = [
        {"week": T0.date(), "good": 2, "bad": 1},
        {"week": (T0 + dt.timedelta(days=7)).date(), "good": 0, "bad": 4},
    ]

    figure = flags_per_week_figure(weeks)

    go.Figure(figure)
    by_name = {trace["name"]: trace["y"] for trace in figure["data"]}
    assert by_name == {"good": [2, 0], "bad": [1, 4]}
    assert figure["layout"]["barmode"] == "stack"


def test_calibration_draws_the_diagonal_and_one_curve_per_model():
    model = SimpleNamespace(
        pk=7,
        algorithm="gradient_boosting",
        metrics={"calibration_curve": [{"predicted": 0.1, "observed": 0.12, "n": 50}]},
    )

    figure = calibration_figure([model])

    go.Figure(figure)
    assert [trace["name"] for trace in figure["data"]] == [
        "perfectly calibrated",
        "#7 gradient_boosting",
    ]
