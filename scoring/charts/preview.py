"""Impact-preview result (see scoring.services.preview) -> plotly figure dicts and table rows
for the preview page."""

from __future__ import annotations

from typing import Any

COLOURS = {"live": "#8a94a6", "draft": "#2457c5"}
NAMES = {"live": "Live", "draft": "Draft"}
LAYOUT = {
    "margin": {"l": 50, "r": 20, "t": 40, "b": 45},
    "height": 320,
    "legend": {"orientation": "h", "y": -0.2},
    "paper_bgcolor": "rgba(0,0,0,0)",
}


def score_distribution_figure(result: dict[str, Any]) -> dict[str, Any]:
    histogram = result["histogram"]
    return {
        "data": [
            {
                "type": "bar",
                "name": NAMES[side],
                "x": histogram["edges"],
                "y": histogram[side],
                "marker": {"color": COLOURS[side]},
                "opacity": 0.65,
            }
            for side in result["sides"]
        ],
        "layout": {
            **LAYOUT,
            "title": {"text": "Score distribution"},
            "barmode": "overlay",
            "xaxis": {"title": {"text": "score"}},
            "yaxis": {"title": {"text": "leads"}},
        },
    }


def mql_per_week_figure(result: dict[str, Any]) -> dict[str, Any]:
    weekly = result["mql_per_week"]
    shapes = []
    for side in result["sides"]:
        threshold = result.get("rule_sets", {}).get(side, {}).get("thresholds", {}).get("")
        if threshold is not None:
            shapes.append(
                {
                    "type": "line",
                    "x0": threshold,
                    "x1": threshold,
                    "yref": "paper",
                    "y0": 0,
                    "y1": 1,
                    "line": {"color": COLOURS[side], "dash": "dot"},
                }
            )
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines",
                "name": NAMES[side],
                "x": weekly["thresholds"],
                "y": weekly[side],
                "line": {"color": COLOURS[side], "shape": "hv"},
            }
            for side in result["sides"]
        ],
        "layout": {
            **LAYOUT,
            "title": {"text": "MQLs per week by threshold"},
            "xaxis": {"title": {"text": "qualifying threshold (score)"}},
            "yaxis": {"title": {"text": "MQLs per week"}, "rangemode": "tozero"},
            "shapes": shapes,
        },
    }


def conversion_by_band_figure(result: dict[str, Any]) -> dict[str, Any]:
    data = []
    for side in result["sides"]:
        rows = [r for r in result["outcomes"][side]["by_band"] if r["rate"] is not None]
        data.append(
            {
                "type": "bar",
                "name": NAMES[side],
                "x": [r["band"] or "(no band)" for r in rows],
                "y": [r["rate"] for r in rows],
                "text": [f"{r['converted']}/{r['leads']}" for r in rows],
                "marker": {"color": COLOURS[side]},
            }
        )
    return {
        "data": data,
        "layout": {
            **LAYOUT,
            "title": {"text": "Conversion rate by band"},
            "barmode": "group",
            "yaxis": {"title": {"text": "conversion rate"}, "tickformat": ".0%"},
        },
    }


def band_matrix_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the from (live) / to (draft) table, empty rows and columns left out."""
    names = result["bands"]
    matrix = result["matrix"]
    used_rows = [i for i in range(len(names)) if any(matrix[i])]
    used_cols = [j for j in range(len(names)) if any(row[j] for row in matrix)]
    return [
        {
            "band": names[i] or "(no band)",
            "cells": [
                {"count": matrix[i][j], "moved": i != j and matrix[i][j] > 0} for j in used_cols
            ],
            "total": sum(matrix[i]),
        }
        for i in used_rows
    ], [names[j] or "(no band)" for j in used_cols]


def preview_figures(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        "distribution": score_distribution_figure(result),
        "mql_per_week": mql_per_week_figure(result),
        "conversion": conversion_by_band_figure(result),
    }
