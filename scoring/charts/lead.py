"""The lead page's chart: its score over time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from django.utils import timezone


def score_history_figure(rows: Sequence[tuple[dt.datetime, int, str]]) -> dict[str, Any] | None:
    """A step line through the (as_of, score, band) points of
    `scoring.selectors.lead_page.score_history_points`; None when there is nothing to draw.
    The times are written in the current time zone (the user's): plotly ignores an offset
    in a date string and shows its wall-clock time."""
    if not rows:
        return None
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "line": {"shape": "hv"},
                "name": "score",
                "x": [timezone.localtime(as_of).isoformat() for as_of, _, _ in rows],
                "y": [score for _, score, _ in rows],
                "text": [band for _, _, band in rows],
                "hovertemplate": "%{x}<br>score %{y} (%{text})<extra></extra>",
            }
        ],
        "layout": {
            "height": 280,
            "margin": {"l": 48, "r": 16, "t": 16, "b": 40},
            "xaxis": {"type": "date"},
            "yaxis": {"title": {"text": "score"}, "rangemode": "tozero"},
            "showlegend": False,
        },
    }
