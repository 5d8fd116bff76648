"""Figure dicts: what they show, and that plotly accepts them (its schema validates)."""

from __future__ import annotations

import inspect
import re

import plotly.graph_objects as go
import pytest
from django.conf import settings

from scoring.charts import feedback as feedback_charts
from scoring.charts import kpis as charts
from scoring.charts import lead as lead_charts
from scoring.charts import models as model_charts
from scoring.charts import preview as preview_charts


def link_for(band):
    return f"/leads/?band={band}" if band else "/leads/"


BANDS = [
    {
        "band": "Cold",
        "leads": 120,
        "converted": 6,
        "conversion_rate": 0.05,
        "ci_low": 0.02,
        "ci_high": 0.1,
        "revenue": 100.0,
        "median_cycle_days": 30.0,
    },
    {
        "band": "Hot",
        "leads": 12,
        "converted": 6,
        "conversion_rate": 0.5,
        "ci_low": 0.25,
        "ci_high": 0.75,
        "revenue": 900.0,
        "median_cycle_days": 9.0,
    },
    {
        "band": "Unscored",
        "leads": 0,
        "converted": 0,
        "conversion_rate": None,
        "ci_low": None,
        "ci_high": None,
        "revenue": 0.0,
        "median_cycle_days": None,
    },
]


def test_conversion_chart_shows_rates_with_wilson_error_bars_n_and_small_bands_marked():
    figure = charts.conversion_by_band(BANDS, link_for)
    bar = figure["data"][0]
    assert bar["x"] == ["Cold", "Hot", "Unscored"]
    assert bar["y"] == [0.05, 0.5, None]
    assert bar["error_y"]["array"][:2] == pytest.approx([0.05, 0.25])
    assert bar["error_y"]["array"][2] is None
    assert bar["error_y"]["arrayminus"][:2] == pytest.approx([0.03, 0.25])
    assert bar["text"][0].endswith("n=120")
    assert bar["text"][1].endswith("n=12*")
    assert bar["marker"]["pattern"]["shape"] == ["", "/", "/"]
    assert bar["customdata"] == ["/leads/?band=Cold", "/leads/?band=Hot", "/leads/"]
    go.Figure(figure)


def test_every_chart_is_a_valid_plotly_figure():
    figures = [
        charts.conversion_by_band(BANDS, link_for),
        charts.funnel(
            [
                {
                    "stage": "Lead",
                    "leads": 10,
                    "previous_stage_leads": None,
                    "rate_from_previous": None,
                },
                {"stage": "MQL", "leads": 4, "previous_stage_leads": 10, "rate_from_previous": 0.4},
            ],
            link_for,
        ),
        charts.cycle_box(
            [{"band": "Hot", "n": 3, "min": 1.0, "q1": 2.0, "median": 3.0, "q3": 4.0, "max": 9.0}],
            link_for,
        ),
        charts.qualification_curve(
            {
                "threshold": 50.0,
                "converters": 4,
                "curve": [
                    {
                        "threshold": 0.0,
                        "mqls": 10,
                        "precision": 0.4,
                        "recall": 1.0,
                        "mqls_per_week": 2.5,
                    },
                    {
                        "threshold": 50.0,
                        "mqls": 3,
                        "precision": 0.66,
                        "recall": 0.5,
                        "mqls_per_week": 0.75,
                    },
                ],
            }
        ),
        charts.lift_and_gains(
            {
                "roc_auc": 0.8,
                "leads": 10,
                "deciles": [
                    {
                        "decile": 1,
                        "leads": 1,
                        "lift": 2.5,
                        "cumulative_gain": 0.25,
                        "cumulative_leads_share": 0.1,
                    }
                ],
            }
        ),
        charts.calibration(
            {
                "source": "band_rate",
                "deciles": [
                    {
                        "decile": 1,
                        "leads": 5,
                        "predicted": 0.4,
                        "observed": 0.6,
                        "ci_low": 0.2,
                        "ci_high": 0.9,
                    }
                ],
            }
        ),
        charts.revenue_by_band([{"band": "Hot", "converted": 2, "revenue": 10.0}], link_for),
        charts.band_entries_area(
            [
                {"week": "2024-01-01", "band": "Hot", "leads": 2},
                {"week": "2024-01-08", "band": "Cold", "leads": 1},
            ],
            ["Cold", "Warm", "Hot"],
        ),
        charts.feedback_share(
            [
                {
                    "band": "Hot",
                    "reviewed": 4,
                    "bad": 1,
                    "bad_share": 0.25,
                    "ci_low": 0.05,
                    "ci_high": 0.7,
                }
            ],
            link_for,
        ),
    ]
    for figure in figures:
        assert set(figure) == {"data", "layout"}
        go.Figure(figure)  # raises on any property plotly does not know


def test_band_entries_are_stacked_in_band_order_with_zero_filled_weeks():
    figure = charts.band_entries_area(
        [
            {"week": "2024-01-01", "band": "Hot", "leads": 2},
            {"week": "2024-01-08", "band": "Cold", "leads": 1},
        ],
        ["Cold", "Warm", "Hot"],
    )
    assert [t["name"] for t in figure["data"]] == ["Cold", "Hot"]
    assert all(t["stackgroup"] == "bands" for t in figure["data"])
    assert figure["data"][0]["y"] == [0, 1]
    assert figure["data"][1]["y"] == [2, 0]


def test_lift_chart_title_says_the_auc_and_its_n():
    figure = charts.lift_and_gains({"roc_auc": 0.8123, "leads": 42, "deciles": []})
    assert "ROC AUC 0.812 (n=42)" in figure["layout"]["title"]["text"]
    assert (
        "n/a"
        in charts.lift_and_gains({"roc_auc": None, "leads": 0, "deciles": []})["layout"]["title"][
            "text"
        ]
    )


def test_every_chart_uses_only_trace_types_of_the_shipped_plotly_bundle():
    # static/vendor/plotly-cartesian is the cartesian partial bundle: a chart with another
    # trace type (a funnel, say) would draw nothing in the browser.
    bundle = (
        settings.BASE_DIR / "static/vendor/plotly-cartesian/plotly-cartesian.min.js"
    ).read_text()
    shipped = set(re.findall(r'moduleType:"trace",name:"([a-z0-9]+)"', bundle))
    assert {"bar", "box", "scatter"} <= shipped
    for module in (charts, lead_charts, preview_charts, model_charts, feedback_charts):
        used = set(re.findall(r'"type": "([a-z0-9]+)"', inspect.getsource(module)))
        # Error bars ("data"), axes ("date") and shapes ("line") have types too.
        traces = used - {"data", "date", "line", "linear", "category", "log"}
        assert traces <= shipped, (module.__name__, traces - shipped)
