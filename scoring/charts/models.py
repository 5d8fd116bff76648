"""The Models page's chart: calibration of each model's probabilities."""

from __future__ import annotations

from typing import Any

from scoring.models import MLModel


def calibration_figure(rows: list[MLModel]) -> dict[str, Any]:
    """Plotly figure: observed conversion rate against mean predicted probability per bin, for
    each model of a run, with the diagonal of perfect calibration."""
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "lines",
            "x": [0, 1],
            "y": [0, 1],
            "name": "perfectly calibrated",
            "line": {"dash": "dot", "color": "#999"},
            "hoverinfo": "skip",
        }
    ]
    for row in rows:
        curve = (row.metrics or {}).get("calibration_curve") or []
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": f"#{row.pk} {row.algorithm}",
                "x": [point["predicted"] for point in curve],
                "y": [point["observed"] for point in curve],
                "text": [f"n={point['n']}" for point in curve],
                "hovertemplate": (
                    "predicted %{x:.2f}<br>observed %{y:.2f}<br>%{text}<extra></extra>"
                ),
            }
        )
    return {
        "data": data,
        "layout": {
            "xaxis": {"title": {"text": "mean predicted probability"}, "range": [0, 1]},
            "yaxis": {"title": {"text": "observed conversion rate (test leads)"}, "range": [0, 1]},
            "margin": {"t": 20, "r": 10},
            "height": 360,
            "legend": {"orientation": "h"},
        },
    }
