"""The feedback review's chart: sales flags per week."""

from __future__ import annotations

from typing import Any


def flags_per_week_figure(over_time: list[dict[str, Any]]) -> dict[str, Any]:
    """Stacked bars of good and bad flags per week (rows of `feedback_review().over_time`)."""
    weeks = [row["week"].isoformat() for row in over_time]
    return {
        "data": [
            {"type": "bar", "name": "bad", "x": weeks, "y": [r["bad"] for r in over_time],
             "marker": {"color": "#b42318"}},
            {"type": "bar", "name": "good", "x": weeks, "y": [r["good"] for r in over_time],
             "marker": {"color": "#1e7a3c"}},
        ],
        "layout": {
            "barmode": "stack",
            "height": 260,
            "margin": {"l": 40, "r": 16, "t": 16, "b": 40},
            "xaxis": {"type": "date", "title": {"text": "week"}},
            "yaxis": {"title": {"text": "flags"}},
        },
    }  # fmt: skip
