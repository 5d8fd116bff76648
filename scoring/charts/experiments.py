"""The experiment page's charts: the running estimate of the difference with its always-valid
interval over time, and a threshold test's MQLs per week per arm against capacity. Selector
output in, plotly figure dicts out."""

from __future__ import annotations

from typing import Any

ARM_COLOURS = {"champion": "#5b6474", "challenger": "#1f77b4"}


def running_estimate_figure(series: dict[str, Any], relevant_difference: float) -> dict[str, Any]:
    """The difference (challenger - champion, in percentage points) day by day, with the
    always-valid interval as a band, zero, and +- the relevant difference."""
    days = series["days"]

    def points(values: list[float | None]) -> list[float | None]:
        return [None if v is None else round(100 * v, 3) for v in values]

    band = 100 * relevant_difference
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "lines",
            "x": days,
            "y": points(series["hi"]),
            "line": {"width": 0},
            "hoverinfo": "skip",
            "showlegend": False,
        },
        {
            "type": "scatter",
            "mode": "lines",
            "x": days,
            "y": points(series["lo"]),
            "fill": "tonexty",
            "fillcolor": "rgba(31,119,180,0.2)",
            "line": {"width": 0},
            "name": "always-valid interval",
            "hoverinfo": "skip",
        },
        {
            "type": "scatter",
            "mode": "lines+markers",
            "x": days,
            "y": points(series["estimate"]),
            "name": "difference (challenger - champion)",
            "line": {"color": ARM_COLOURS["challenger"]},
            "hovertemplate": "%{x}<br>%{y:.2f} points<extra></extra>",
        },
    ]
    shapes = [
        {
            "type": "line",
            "xref": "paper",
            "x0": 0,
            "x1": 1,
            "y0": y,
            "y1": y,
            "line": {"color": "#999", "dash": "dash" if y else "solid", "width": 1},
        }
        for y in (0, band, -band)
    ]
    return {
        "data": data,
        "layout": {
            "yaxis": {"title": {"text": "difference in rate (percentage points)"}},
            # One category per day: a date axis with a single day shows milliseconds.
            "xaxis": {"title": {"text": "as of the end of day"}, "type": "category"},
            "shapes": shapes,
            "margin": {"t": 20, "r": 10},
            "height": 360,
            "legend": {"orientation": "h"},
        },
    }


def mqls_per_week_figure(weekly: dict[str, Any]) -> dict[str, Any]:
    """MQLs per week each arm's threshold would send if applied to every lead (the arm's
    count divided by its share), with the team's weekly capacity when it is set."""
    data: list[dict[str, Any]] = [
        {
            "type": "bar",
            "name": f"{arm} (scaled to all leads)",
            "x": weekly["weeks"],
            "y": values["scaled"],
            "text": [f"{m} in the arm" for m in values["mqls"]],
            "marker": {"color": ARM_COLOURS[arm]},
            "hovertemplate": "week of %{x}<br>%{y} MQLs/week<br>%{text}<extra></extra>",
        }
        for arm, values in weekly["arms"].items()
    ]
    shapes = []
    if weekly["capacity"]:
        shapes.append(
            {
                "type": "line",
                "xref": "paper",
                "x0": 0,
                "x1": 1,
                "y0": weekly["capacity"],
                "y1": weekly["capacity"],
                "line": {"color": "#c0392b", "dash": "dash"},
            }
        )
    return {
        "data": data,
        "layout": {
            "barmode": "group",
            "yaxis": {"title": {"text": "MQLs per week"}},
            "shapes": shapes,
            "margin": {"t": 20, "r": 10},
            "height": 320,
            "legend": {"orientation": "h"},
        },
    }
