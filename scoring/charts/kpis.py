"""KPI data -> plotly figure dicts (`{"data": [...], "layout": {...}}`), plain JSON that
`static/js/charts.js` hands to `Plotly.newPlot`. No template: the dicts stay small and are
unit-tested as dicts (and validated against plotly's schema in the tests).

Click-through: a point's `customdata` is the URL of the leads behind it; charts.js follows it
on click."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from scoring import formatting
from scoring.kpis.report import SMALL_N, UNSCORED_LABEL

Figure = dict[str, Any]
LinkFor = Callable[[str | None], str]

BAND_COLOURS = ["#8da0cb", "#66c2a5", "#fdd36b", "#fc8d62", "#e15759", "#b07aa1", "#9c755f"]
UNSCORED_COLOUR = "#bbbbbb"


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": title},
        "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
        "hovermode": "closest",
        "showlegend": False,
    }
    layout.update(extra)
    return layout


def _pct(value: float | None) -> str:
    return formatting.percent(value)


def _hatch(ns: Sequence[int]) -> dict[str, Any]:
    """Bars resting on fewer than SMALL_N cases are drawn hatched."""
    return {"shape": ["/" if n < SMALL_N else "" for n in ns]}


def _n(n: int) -> str:
    return f"n={n:,}{'*' if n < SMALL_N else ''}"


def is_empty(figure: Figure) -> bool:
    """Whether a figure has nothing to draw: no trace with a point, reference lines (traces
    with hoverinfo "skip", e.g. the diagonal of a calibration plot) not counted."""
    for trace in figure.get("data", []):
        if trace.get("hoverinfo") == "skip":
            continue
        # The values drawn: y (x for horizontal bars, the medians for a box). Categories on
        # the other axis do not count: bands with no leads have names but no rates.
        if trace.get("type") == "box":
            values = trace.get("median") or []
        elif trace.get("orientation") == "h":
            values = trace.get("x") or []
        else:
            values = trace.get("y") or []
        if any(v is not None for v in values):
            return False
    return True


def mark_empty(figures: dict[str, Figure]) -> dict[str, Figure]:
    """Each figure with `"empty": true` when it has nothing to draw: charts.js then says "No data
    yet" instead of drawing empty axes."""
    for figure in figures.values():
        figure["empty"] = is_empty(figure)
    return figures


def band_colours(bands: Sequence[str]) -> dict[str, str]:
    colours, i = {}, 0
    for band in bands:
        if band == UNSCORED_LABEL:
            colours[band] = UNSCORED_COLOUR
        else:
            colours[band] = BAND_COLOURS[i % len(BAND_COLOURS)]
            i += 1
    return colours


def _band_link(link_for: LinkFor, band: str) -> str:
    return link_for(None if band == UNSCORED_LABEL else band)


def conversion_by_band(rows: Sequence[dict[str, Any]], link_for: LinkFor) -> Figure:
    """Bars of conversion rate with Wilson 95 % error bars; each bar labelled with its n, and
    bars of bands under SMALL_N leads drawn hatched and marked with an asterisk."""
    bands = [r["band"] for r in rows]
    colours = band_colours(bands)
    rates = [r["conversion_rate"] for r in rows]
    plus = [
        (r["ci_high"] - r["conversion_rate"]) if r["conversion_rate"] is not None else None
        for r in rows
    ]
    minus = [
        (r["conversion_rate"] - r["ci_low"]) if r["conversion_rate"] is not None else None
        for r in rows
    ]
    text = [f"{_pct(r['conversion_rate'])}<br>{_n(r['leads'])}" for r in rows]
    return {
        "data": [
            {
                "type": "bar",
                "x": bands,
                "y": rates,
                "error_y": {"type": "data", "array": plus, "arrayminus": minus, "visible": True},
                "text": text,
                "textposition": "outside",
                "marker": {
                    "color": [colours[b] for b in bands],
                    "pattern": _hatch([r["leads"] for r in rows]),
                },
                "customdata": [_band_link(link_for, b) for b in bands],
                "hovertemplate": "%{x}: %{y:.1%}<extra></extra>",
            }
        ],
        "layout": _layout(
            "Conversion rate by band before conversion",
            yaxis={"title": {"text": "Converted"}, "tickformat": ".1%", "rangemode": "tozero"},
            xaxis={"title": {"text": f"Band (* fewer than {SMALL_N} leads)"}},
        ),
    }


def funnel(rows: Sequence[dict[str, Any]], link_for: LinkFor) -> Figure:
    """The funnel as horizontal bars, first stage on top (the shipped plotly bundle is the
    cartesian one, which has no funnel trace)."""
    text = [
        f"{r['leads']:,}"
        + (
            f" ({_pct(r['rate_from_previous'])} of previous, n={r['previous_stage_leads']:,})"
            if r["previous_stage_leads"]
            else ""
        )
        for r in rows
    ]
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "y": [r["stage"] for r in rows],
                "x": [r["leads"] for r in rows],
                "text": text,
                "textposition": "auto",
                "customdata": [link_for(None) for _ in rows],
                "hovertemplate": "%{y}: %{x:,}<extra></extra>",
            }
        ],
        "layout": _layout(
            "Funnel: lead → customer",
            yaxis={"autorange": "reversed"},
            xaxis={"title": {"text": "Leads"}, "rangemode": "tozero"},
        ),
    }


def cycle_box(rows: Sequence[dict[str, Any]], link_for: LinkFor) -> Figure:
    """Box plot from precomputed quartiles; whiskers span min to max."""
    bands = [r["band"] for r in rows]
    colours = band_colours(bands)
    return {
        "data": [
            {
                "type": "box",
                "name": f"{r['band']} (n={r['n']})",
                "x": [f"{r['band']} (n={r['n']})"],
                "q1": [r["q1"]],
                "median": [r["median"]],
                "q3": [r["q3"]],
                "lowerfence": [r["min"]],
                "upperfence": [r["max"]],
                "marker": {"color": colours[r["band"]]},
                "customdata": [_band_link(link_for, r["band"])],
            }
            for r in rows
        ],
        "layout": _layout(
            "Sales cycle: days from creation to customer",
            yaxis={"title": {"text": "Days"}, "rangemode": "tozero"},
        ),
    }


def qualification_curve(result: dict[str, Any]) -> Figure:
    curve = result["curve"]
    thresholds = [r["threshold"] for r in curve]
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "Precision",
            "x": thresholds,
            "y": [r["precision"] for r in curve],
            "text": [f"n={r['mqls']}" for r in curve],
            "hovertemplate": "≥ %{x}: precision %{y:.1%} (%{text})<extra></extra>",
        },
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "Recall",
            "x": thresholds,
            "y": [r["recall"] for r in curve],
            "text": [f"n={result['converters']}" for _ in curve],
            "hovertemplate": "≥ %{x}: recall %{y:.1%} (%{text})<extra></extra>",
        },
        {
            "type": "bar",
            "name": "MQLs per week",
            "x": thresholds,
            "y": [r["mqls_per_week"] for r in curve],
            "yaxis": "y2",
            "opacity": 0.35,
            "hovertemplate": "≥ %{x}: %{y:.1f} MQLs/week<extra></extra>",
        },
    ]
    shapes = []
    if result["threshold"] is not None:
        shapes.append(
            {
                "type": "line",
                "x0": result["threshold"],
                "x1": result["threshold"],
                "yref": "paper",
                "y0": 0,
                "y1": 1,
                "line": {"dash": "dot", "color": "#444"},
            }
        )
    return {
        "data": data,
        "layout": _layout(
            "Qualification accuracy by score threshold",
            showlegend=True,
            xaxis={"title": {"text": "Score threshold (dotted: current)"}},
            yaxis={"title": {"text": "Precision / recall"}, "tickformat": ".1%", "range": [0, 1]},
            yaxis2={
                "title": {"text": "MQLs per week"},
                "overlaying": "y",
                "side": "right",
                "rangemode": "tozero",
            },
            shapes=shapes,
        ),
    }


def lift_and_gains(result: dict[str, Any]) -> Figure:
    deciles = result["deciles"]
    auc = result["roc_auc"]
    title = "Lift and cumulative gains by score decile"
    title += f" — ROC AUC {auc:.3f} (n={result['leads']})" if auc is not None else " — AUC n/a"
    return {
        "data": [
            {
                "type": "bar",
                "name": "Lift",
                "x": [d["decile"] for d in deciles],
                "y": [d["lift"] for d in deciles],
                "text": [_n(d["leads"]) for d in deciles],
                "marker": {"pattern": _hatch([d["leads"] for d in deciles])},
                "hovertemplate": "decile %{x}: lift %{y:.2f} (%{text})<extra></extra>",
            },
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "Cumulative gain",
                "x": [d["decile"] for d in deciles],
                "y": [d["cumulative_gain"] for d in deciles],
                "yaxis": "y2",
                "hovertemplate": "top %{x} deciles: %{y:.1%} of conversions<extra></extra>",
            },
            {
                "type": "scatter",
                "mode": "lines",
                "name": "Random",
                "x": [d["decile"] for d in deciles],
                "y": [d["cumulative_leads_share"] for d in deciles],
                "yaxis": "y2",
                "line": {"dash": "dot", "color": "#999"},
                "hoverinfo": "skip",
            },
        ],
        "layout": _layout(
            title,
            showlegend=True,
            xaxis={"title": {"text": "Decile (1 = highest scores)"}, "dtick": 1},
            yaxis={"title": {"text": "Lift"}, "rangemode": "tozero"},
            yaxis2={
                "title": {"text": "Cumulative gain"},
                "overlaying": "y",
                "side": "right",
                "tickformat": ".1%",
                "range": [0, 1.05],
            },
        ),
    }


def calibration(result: dict[str, Any]) -> Figure:
    deciles = result["deciles"]
    source = "model probability" if result["source"] == "model" else "band's historical rate"
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "markers",
                "name": "Deciles",
                "x": [d["predicted"] for d in deciles],
                "y": [d["observed"] for d in deciles],
                "error_y": {
                    "type": "data",
                    "array": [d["ci_high"] - d["observed"] for d in deciles],
                    "arrayminus": [d["observed"] - d["ci_low"] for d in deciles],
                },
                "text": [f"decile {d['decile']}, n={d['leads']}" for d in deciles],
                "hovertemplate": "%{text}: predicted %{x:.1%}, observed %{y:.1%}<extra></extra>",
            },
            {
                "type": "scatter",
                "mode": "lines",
                "name": "Perfect",
                "x": [0, 1],
                "y": [0, 1],
                "line": {"dash": "dot", "color": "#999"},
                "hoverinfo": "skip",
            },
        ],
        "layout": _layout(
            f"Calibration: predicted ({source}) vs observed",
            xaxis={"title": {"text": "Predicted"}, "tickformat": ".1%", "range": [0, 1]},
            yaxis={"title": {"text": "Observed"}, "tickformat": ".1%", "range": [0, 1]},
        ),
    }


def revenue_by_band(rows: Sequence[dict[str, Any]], link_for: LinkFor) -> Figure:
    bands = [r["band"] for r in rows]
    colours = band_colours(bands)
    return {
        "data": [
            {
                "type": "bar",
                "x": bands,
                # No customers, no revenue to draw (not a bar of 0).
                "y": [r["revenue"] if r["converted"] else None for r in rows],
                "text": [_n(r["converted"]) for r in rows],
                "hovertext": [formatting.money(r["revenue"]) for r in rows],
                "textposition": "outside",
                "marker": {"color": [colours[b] for b in bands]},
                "customdata": [_band_link(link_for, b) for b in bands],
                "hovertemplate": "%{x}: %{hovertext} (%{text} customers)<extra></extra>",
            }
        ],
        "layout": _layout(
            "Revenue by band before conversion",
            yaxis={
                "title": {"text": f"Revenue ({formatting.currency_label()})"},
                "tickformat": ",.0f",
                "rangemode": "tozero",
            },
        ),
    }


def band_entries_area(rows: Sequence[dict[str, Any]], band_order: Sequence[str]) -> Figure:
    """Stacked area: one trace per band (band order), weeks on x."""
    weeks = sorted({r["week"] for r in rows})
    counts = {(r["week"], r["band"]): r["leads"] for r in rows}
    present = {r["band"] for r in rows}
    bands = [b for b in band_order if b in present] + sorted(present - set(band_order))
    colours = band_colours(bands)
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines",
                "stackgroup": "bands",
                "name": band,
                "x": weeks,
                "y": [counts.get((w, band), 0) for w in weeks],
                "line": {"color": colours[band]},
                "hovertemplate": f"{band}, week of %{{x}}: %{{y:,}} leads<extra></extra>",
            }
            for band in bands
        ],
        "layout": _layout(
            "Leads entering each band per week",
            showlegend=True,
            # Weeks are calendar days: no time of day on the axis or in the hover.
            xaxis={
                "title": {"text": "Week"},
                "type": "date",
                "tickformat": "%Y-%m-%d",
                "hoverformat": "%Y-%m-%d",
            },
            yaxis={"title": {"text": "Leads entering"}, "rangemode": "tozero"},
        ),
    }


def feedback_share(rows: Sequence[dict[str, Any]], link_for: LinkFor) -> Figure:
    bands = [r["band"] for r in rows]
    colours = band_colours(bands)
    return {
        "data": [
            {
                "type": "bar",
                "x": bands,
                "y": [r["bad_share"] for r in rows],
                "error_y": {
                    "type": "data",
                    "array": [r["ci_high"] - r["bad_share"] for r in rows],
                    "arrayminus": [r["bad_share"] - r["ci_low"] for r in rows],
                },
                "text": [_n(r["reviewed"]) for r in rows],
                "textposition": "outside",
                "marker": {
                    "color": [colours[b] for b in bands],
                    "pattern": _hatch([r["reviewed"] for r in rows]),
                },
                "customdata": [_band_link(link_for, b) for b in bands],
                "hovertemplate": "%{x}: %{y:.1%} flagged bad (%{text})<extra></extra>",
            }
        ],
        "layout": _layout(
            "Share flagged bad by sales, by band at the verdict",
            xaxis={"title": {"text": f"Band (* fewer than {SMALL_N} verdicts)"}},
            yaxis={"title": {"text": "Flagged bad"}, "tickformat": ".1%", "rangemode": "tozero"},
        ),
    }


def conversion_by_grade(grid: Any, link_for: LinkFor) -> Figure:
    """A heat map of conversion rate per grade (rows: the first grid group's bands, columns:
    the second's, best first); each cell shows its rate, n and Wilson 95 % interval, and an
    empty cell (n = 0) stays blank rather than reading as 0 %."""
    by_cell = {(c["row"], c["column"]): c for c in grid.cells}
    z, text, links = [], [], []
    for row in grid.rows:
        z_row, text_row, link_row = [], [], []
        for column in grid.columns:
            cell = by_cell[row, column]
            z_row.append(cell["conversion_rate"])
            interval = "no leads"
            if cell["leads"]:
                interval = f"{_pct(cell['ci_low'])} to {_pct(cell['ci_high'])}"
            small = "*" if 0 < cell["leads"] < SMALL_N else ""
            text_row.append(
                f"{cell['grade']}{small}<br>{_pct(cell['conversion_rate'])}"
                f"<br>n={cell['leads']}<br>{interval}"
            )
            link_row.append(link_for(cell["grade"]))
        z.append(z_row)
        text.append(text_row)
        links.append(link_row)
    return {
        "data": [
            {
                "type": "heatmap",
                "x": list(grid.columns),
                "y": list(grid.rows),
                "z": z,
                "text": text,
                "texttemplate": "%{text}",
                "hoverinfo": "text",
                "customdata": links,
                "colorscale": "Blues",
                "zmin": 0,
                "colorbar": {"title": {"text": "conversion"}, "tickformat": ".0%"},
            }
        ],
        "layout": _layout(
            "Conversion by grade",
            xaxis={"title": {"text": grid.column_group}, "type": "category"},
            yaxis={"title": {"text": grid.row_group}, "type": "category", "autorange": "reversed"},
        ),
    }
