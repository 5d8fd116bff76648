"""The KPIs, computed from the selectors' aggregates for one set of filters.

`KpiReport(filters)` runs each query at most once, so the page (every KPI) and an API endpoint
(one KPI) share the code and the page does not repeat the history probe per chart. Every
method returns plain JSON-ready data; `TABLES` flattens each KPI into CSV-ready rows."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from functools import cached_property
from typing import Any, TypedDict

import numpy as np

from scoring.formatting import MIN_N
from scoring.kpis import cube, selectors, stats
from scoring.kpis.filters import KpiFilters
from scoring.kpis.selectors import UNSCORED, BandScheme, OutcomeCell
from scoring.ml.metrics import roc_auc_from_counts

UNSCORED_LABEL = "Unscored"
# Bands with fewer leads than this are marked on the page: their rates are noise. The one
# minimum n of every page (scoring.formatting).
SMALL_N = MIN_N

# One line each, shown in the page's help and the README.
DEFINITIONS: dict[str, str] = {
    "bands": "Conversion rate by band: of the leads created in the period, the share that "
    "became customers, grouped by the band each lead had just before it converted (or at the "
    "end of the period if it has not), with 95 % Wilson intervals.",
    "funnel": "Funnel: leads created in the period that reached each lifecycle stage (a later "
    "stage implies the earlier ones), and the share of each stage that reached the next.",
    "cycle": "Sales cycle: days from lead creation to conversion, per band before conversion "
    "(median, quartiles, min and max).",
    "qualification": "Qualification accuracy: precision is the share of MQLs that converted, "
    "recall the share of converters that were MQL before converting; the curve repeats both "
    "for every score threshold, beside the MQLs per week it would have produced.",
    "lift": "Lift and gains: leads with a known outcome ranked by their score before "
    "conversion and cut into deciles; lift is a decile's conversion rate over the average, gain "
    "the share of all conversions captured down to that decile; ROC AUC is the chance a "
    "converter outscored a non-converter.",
    "calibration": "Calibration: predicted conversion probability (the model's when every lead "
    "has one, otherwise the historical rate of the lead's band) against the observed rate, per "
    "decile of prediction.",
    "revenue": "Revenue by band: the revenue of the period's converted leads, by band before "
    "conversion.",
    "band_entries": "Band entries per week: how many times the period's leads entered each band "
    "in each week (from the score history).",
    "feedback": "Flagged bad by sales: of the leads sales gave a verdict on while in a band, "
    "the share flagged bad.",
}


class BandRow(TypedDict):
    """The `/api/v1/kpis/bands/` contract: exactly these keys."""

    band: str
    leads: int
    converted: int
    conversion_rate: float | None
    ci_low: float | None
    ci_high: float | None
    revenue: float
    median_cycle_days: float | None


def band_label(band: str) -> str:
    return UNSCORED_LABEL if band == UNSCORED else band


class KpiReport:
    """All KPIs for one `KpiFilters`; each query runs lazily and once."""

    def __init__(self, filters: KpiFilters):
        self.filters = filters
        self._read_cube = False

    # -- cached reads -----------------------------------------------------------------------

    @cached_property
    def _cube_reader(self) -> cube.CubeReader | None:
        return cube.reader(self.filters)

    def _source(self) -> cube.CubeReader | None:
        """The cube reader every cube-backed KPI of this report uses (None: direct)."""
        reader = self._cube_reader
        self._read_cube = self._read_cube or reader is not None
        return reader

    def stale_as_of(self) -> dt.datetime | None:
        """When some figure read so far came from a cube refreshed before the latest writes:
        its refresh time (writes since then are not included). None when every figure read so
        far is current (a fresh cube, or computed directly)."""
        if not self._read_cube or self._cube_reader is None:
            return None
        return self._cube_reader.as_of

    def as_of(self) -> dt.datetime:
        """The moment the figures read so far describe: `stale_as_of`, else the report's now."""
        return self.stale_as_of() or self.filters.now

    @cached_property
    def scheme(self) -> BandScheme:
        return selectors.band_scheme(self.filters)

    @cached_property
    def cells(self) -> list[OutcomeCell]:
        return selectors.outcome_cells(self.filters, self._source())

    @cached_property
    def cycle_by_band(self) -> dict[str, dict[str, Any]]:
        return selectors.cycle_days_by_band(self.filters, self._source())

    @cached_property
    def funnel_raw(self) -> dict[str, Any]:
        return selectors.funnel_counts(self.filters, self._source())

    def band_order(self, present: set[str]) -> list[str]:
        """The scheme's bands lowest first; then bands found in the history but not in the
        scheme (older rule sets, persona bands), by name; then unscored if present."""
        names = [b.name for b in self.scheme.bands]
        extras = sorted(b for b in present if b not in names and b != UNSCORED)
        tail = [UNSCORED] if UNSCORED in present else []
        return names + extras + tail

    # -- KPIs --------------------------------------------------------------------------------

    def bands(self) -> list[BandRow]:
        """One row per band in band order (see `band_order`), zero-lead scheme bands
        included; the unscored row ("Unscored") only when it has leads."""
        leads: dict[str, int] = defaultdict(int)
        converted: dict[str, int] = defaultdict(int)
        revenue: dict[str, float] = defaultdict(float)
        for cell in self.cells:
            leads[cell.band] += cell.leads
            if cell.converted:
                converted[cell.band] += cell.leads
                revenue[cell.band] += cell.revenue or 0.0
        rows: list[BandRow] = []
        for band in self.band_order(set(leads)):
            n, k = leads.get(band, 0), converted.get(band, 0)
            low, high = stats.wilson_interval(k, n)
            rows.append(
                BandRow(
                    band=band_label(band),
                    leads=n,
                    converted=k,
                    conversion_rate=stats.rate(k, n),
                    ci_low=low,
                    ci_high=high,
                    revenue=round(revenue.get(band, 0.0), 2),
                    median_cycle_days=self.cycle_by_band.get(band, {}).get("median"),
                )
            )
        return rows

    def funnel(self) -> list[dict[str, Any]]:
        """Per stage: leads reaching it, the share of the previous stage (rate_from_previous),
        the share of all leads (rate_from_lead), each with its n and Wilson interval."""
        raw = self.funnel_raw
        rows = []
        previous = None
        total = raw["lead"]
        for stage, label in (
            ("lead", "Lead"),
            ("mql", "MQL"),
            ("sql", "SQL"),
            ("opportunity", "Opportunity"),
            ("customer", "Customer"),
        ):
            n = raw[stage]
            base = previous if previous is not None else n
            low, high = stats.wilson_interval(n, base) if previous is not None else (None, None)
            rows.append(
                {
                    "stage": label,
                    "leads": n,
                    "previous_stage_leads": previous,
                    "rate_from_previous": stats.rate(n, base) if previous is not None else None,
                    "ci_low": low,
                    "ci_high": high,
                    "rate_from_lead": stats.rate(n, total),
                }
            )
            previous = n
        return rows

    def cycle(self) -> list[dict[str, Any]]:
        """Per band with converters: n, min, q1, median, q3, max of days created -> customer."""
        present = set(self.cycle_by_band)
        return [
            {"band": band_label(band), **self.cycle_by_band[band]}
            for band in self.band_order(present)
            if band in self.cycle_by_band
        ]

    def _histogram(self, *, known_only: bool) -> stats.ScoreHistogram:
        cells = [
            (c.score, c.leads, c.leads if c.converted else 0)
            for c in self.cells
            if c.score is not None and (c.known or not known_only)
        ]
        return stats.ScoreHistogram.from_cells(cells)

    def weeks_in_period(self) -> float:
        start = self.filters.created_from() or self.funnel_raw.get("first_created")
        if start is None:
            return 0.0
        days = (self.filters.cutoff() - start).total_seconds() / 86400.0
        return max(days, 1.0) / 7.0

    def qualification(self) -> dict[str, Any]:
        """At the current threshold, a lead is an MQL when its band before conversion (end of
        period for non-converters) qualifies, or when it reached MQL (mql_at) before it
        converted. precision = converted MQLs / MQLs; recall = converted MQLs / converters.
        The curve: the same with "MQL" meaning "score before conversion >= threshold", and
        the MQLs per week each threshold would have produced over the period."""
        qualifying = self.scheme.qualifying_names
        mqls = hits = converters = 0
        for cell in self.cells:
            is_mql = cell.band in qualifying or cell.mql_first
            if is_mql:
                mqls += cell.leads
            if cell.converted:
                converters += cell.leads
                if is_mql:
                    hits += cell.leads
        p_low, p_high = stats.wilson_interval(hits, mqls)
        r_low, r_high = stats.wilson_interval(hits, converters)
        histogram = self._histogram(known_only=False)
        scheme = self.scheme
        step = 5
        thresholds = sorted(
            set(np.arange(scheme.floor, scheme.ceiling + step, step).tolist())
            | ({scheme.threshold} if scheme.threshold is not None else set())
        )
        weeks = self.weeks_in_period()
        curve = stats.threshold_curve(histogram, thresholds, total_positives=converters)
        for row in curve:
            row["mqls_per_week"] = row["mqls"] / weeks if weeks else None
        return {
            "threshold": scheme.threshold,
            "qualifying_bands": sorted(qualifying),
            "mqls": mqls,
            "converters": converters,
            "converted_mqls": hits,
            "precision": stats.rate(hits, mqls),
            "precision_ci": [p_low, p_high],
            "recall": stats.rate(hits, converters),
            "recall_ci": [r_low, r_high],
            "weeks": weeks,
            "curve": curve,
        }

    def lift(self) -> dict[str, Any]:
        """Deciles of the score before conversion over scored leads with a known outcome,
        their lift and cumulative gains, the ROC curve and its AUC."""
        histogram = self._histogram(known_only=True)
        unscored_known = sum(c.leads for c in self.cells if c.known and c.score is None)
        return {
            "leads": histogram.total,
            "converted": histogram.total_positives,
            "unscored_excluded": unscored_known,
            "roc_auc": roc_auc_from_counts(
                histogram.scores, histogram.positives, histogram.leads - histogram.positives
            ),
            "deciles": stats.decile_table(histogram),
            "roc": stats.roc_points(histogram),
        }

    def calibration(self) -> dict[str, Any]:
        """Predicted vs observed per decile. With a model probability on every known-outcome
        lead, deciles of that probability; otherwise deciles of the score before conversion,
        each lead predicted at its band's conversion rate over the same leads."""
        model = selectors.model_calibration_deciles(self.filters, self._source())
        if model["deciles"]:
            rows = []
            for d in model["deciles"]:
                low, high = stats.wilson_interval(d["converted"], d["leads"])
                rows.append(
                    {
                        "decile": d["decile"],
                        "leads": d["leads"],
                        "predicted": d["predicted"],
                        "observed": stats.rate(d["converted"], d["leads"]),
                        "ci_low": low,
                        "ci_high": high,
                    }
                )
            return {"source": "model", "deciles": rows}
        known = [c for c in self.cells if c.known and c.score is not None]
        band_n: dict[str, int] = defaultdict(int)
        band_k: dict[str, int] = defaultdict(int)
        for c in known:
            band_n[c.band] += c.leads
            band_k[c.band] += c.leads if c.converted else 0
        histogram = self._histogram(known_only=True)
        # Expected band rate per distinct score (a score can carry several bands across
        # rule-set versions), weighted by leads.
        predicted_sum: dict[float, float] = defaultdict(float)
        for c in known:
            predicted_sum[float(c.score)] += c.leads * (band_k[c.band] / band_n[c.band])
        mean_prediction = np.array(
            [
                predicted_sum[float(s)] / n if n else 0.0
                for s, n in zip(histogram.scores, histogram.leads, strict=True)
            ]
        )
        overlaps = stats.decile_overlaps(histogram)
        deciles = stats.decile_table(histogram)
        rows = []
        for row in deciles:
            weights = overlaps[row["decile"] - 1]
            predicted = float((weights * mean_prediction).sum() / weights.sum())
            k = row["converted"]
            low, high = stats.wilson_interval(round(k), row["leads"])
            rows.append(
                {
                    "decile": row["decile"],
                    "leads": row["leads"],
                    "predicted": predicted,
                    "observed": row["conversion_rate"],
                    "ci_low": low,
                    "ci_high": high,
                }
            )
        return {"source": "band_rate", "deciles": rows}

    def revenue(self) -> list[dict[str, Any]]:
        """Revenue of converted leads per band before conversion, with the converters' n and
        the mean revenue per converter."""
        return [
            {
                "band": row["band"],
                "converted": row["converted"],
                "revenue": row["revenue"],
                "revenue_per_converter": (
                    round(row["revenue"] / row["converted"], 2) if row["converted"] else None
                ),
            }
            for row in self.bands()
        ]

    def band_entries(self) -> list[dict[str, Any]]:
        return [
            {
                "week": row["week"].isoformat(),
                "band": band_label(row["band"]),
                "leads": row["leads"],
            }
            for row in selectors.band_entries_by_week(self.filters, self._source())
        ]

    def feedback(self) -> list[dict[str, Any]]:
        raw = selectors.feedback_by_band(self.filters)
        rows = []
        for band in self.band_order(set(raw)):
            if band not in raw:
                continue
            reviewed, bad = raw[band]["reviewed"], raw[band]["bad"]
            low, high = stats.wilson_interval(bad, reviewed)
            rows.append(
                {
                    "band": band_label(band),
                    "reviewed": reviewed,
                    "bad": bad,
                    "bad_share": stats.rate(bad, reviewed),
                    "ci_low": low,
                    "ci_high": high,
                }
            )
        return rows


def _decile_rows(report: KpiReport) -> list[dict[str, Any]]:
    lift = report.lift()
    return [{**row, "roc_auc": lift["roc_auc"]} for row in lift["deciles"]]


def _qualification_rows(report: KpiReport) -> list[dict[str, Any]]:
    result = report.qualification()
    return [
        {**row, "current_threshold": row["threshold"] == result["threshold"]}
        for row in result["curve"]
    ]


def _calibration_rows(report: KpiReport) -> list[dict[str, Any]]:
    result = report.calibration()
    return [{**row, "source": result["source"]} for row in result["deciles"]]


# Table name -> (rows builder, columns in CSV order). Every table on the page exports.
TABLES: dict[str, tuple[Callable[[KpiReport], list[dict[str, Any]]], tuple[str, ...]]] = {
    "bands": (
        KpiReport.bands,
        (
            "band",
            "leads",
            "converted",
            "conversion_rate",
            "ci_low",
            "ci_high",
            "revenue",
            "median_cycle_days",
        ),
    ),
    "funnel": (
        KpiReport.funnel,
        (
            "stage",
            "leads",
            "previous_stage_leads",
            "rate_from_previous",
            "ci_low",
            "ci_high",
            "rate_from_lead",
        ),
    ),
    "cycle": (KpiReport.cycle, ("band", "n", "min", "q1", "median", "q3", "max")),
    "qualification": (
        _qualification_rows,
        (
            "threshold",
            "current_threshold",
            "mqls",
            "converted",
            "precision",
            "recall",
            "mqls_per_week",
        ),
    ),
    "lift": (
        _decile_rows,
        (
            "decile",
            "leads",
            "converted",
            "conversion_rate",
            "lift",
            "cumulative_leads_share",
            "cumulative_gain",
            "min_score",
            "max_score",
            "roc_auc",
        ),
    ),
    "calibration": (
        _calibration_rows,
        ("decile", "source", "leads", "predicted", "observed", "ci_low", "ci_high"),
    ),
    "revenue": (KpiReport.revenue, ("band", "converted", "revenue", "revenue_per_converter")),
    "band_entries": (KpiReport.band_entries, ("week", "band", "leads")),
    "feedback": (KpiReport.feedback, ("band", "reviewed", "bad", "bad_share", "ci_low", "ci_high")),
}


def table_rows(report: KpiReport, name: str) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
    """(columns, rows) of one exportable table; KeyError for an unknown name."""
    builder, columns = TABLES[name]
    return columns, builder(report)
