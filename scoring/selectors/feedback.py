"""The feedback review: sales flags by week, reason, band and persona, and which rules
the flagged leads carry more often than the rest."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q
from django.db.models.functions import TruncWeek

from leadscoring.db import is_postgres
from scoring.charts import feedback as charts
from scoring.formatting import MIN_N
from scoring.models import (
    Feedback,
    Lead,
)
from scoring.selectors.lead_page import short_number
from scoring.selectors.leads import day_start

# Above this many scored leads the review's baseline rule frequencies come from a sample.
RULE_BASELINE_SAMPLE = 200_000


# ---------------------------------------------------------------------------------------------
# The feedback review


@dataclass
class FeedbackReview:
    since: dt.date | None
    total_flags: int
    over_time: list[dict[str, Any]]
    over_time_figure: dict[str, Any] | None
    by_reason: list[dict[str, Any]]
    by_band: list[dict[str, Any]]
    by_persona: list[dict[str, Any]]
    band_share: list[dict[str, Any]]
    rule_lift: list[dict[str, Any]]
    baseline_leads: int
    baseline_sampled: bool
    notes: list[str] = field(default_factory=list)


def _leads_link(**params: Any) -> str:
    from urllib.parse import urlencode

    # Every stage: a lead flagged bad is often disqualified since, which the queue's default
    # (open leads) would hide.
    clean = {"stage": "all"} | {
        k: (v.isoformat() if isinstance(v, dt.date) else v)
        for k, v in params.items()
        if v not in (None, "")
    }
    return "/leads/?" + urlencode(clean)


def feedback_review(since: dt.date | None = None, rule_limit: int = 15) -> FeedbackReview:
    """What the feedback review page shows, over feedback given on or after `since` (all
    time when None). Every row carries `link`: the lead queue filtered to the leads behind it.

    - over_time: flags per week, good and bad;
    - by_reason / by_band / by_persona: bad flags by reason, by the band the lead had when it
      was flagged, and by the lead's persona;
    - band_share: per current band, the leads in it and how many of them are flagged bad;
    - rule_lift: per rule label in the breakdowns, its frequency among bad-flagged leads over
      its frequency among all scored leads (a sample above RULE_BASELINE_SAMPLE scored leads),
      highest lift first: the rules most over-represented among bad leads."""
    flags = Feedback.objects.all()
    if since is not None:
        flags = flags.filter(created_at__gte=day_start(since))
    bad = flags.filter(verdict=Feedback.Verdict.BAD)
    reason_labels = dict(Feedback.Reason.choices)

    weekly: dict[dt.date, dict[str, int]] = defaultdict(lambda: {"good": 0, "bad": 0})
    for row in (
        flags.annotate(week=TruncWeek("created_at"))
        .values("week", "verdict")
        .annotate(n=Count("id"))
        .order_by()
    ):
        week = row["week"].date() if isinstance(row["week"], dt.datetime) else row["week"]
        weekly[week][row["verdict"]] = row["n"]
    over_time = [
        {
            "week": week,
            "good": counts["good"],
            "bad": counts["bad"],
            "link": _leads_link(
                feedback="bad", flagged_from=week, flagged_to=week + dt.timedelta(days=6)
            ),
        }
        for week, counts in sorted(weekly.items())
    ]
    total_flags = sum(r["good"] + r["bad"] for r in over_time)
    total_bad = sum(r["bad"] for r in over_time)

    by_reason = [
        {
            "reason": row["reason"],
            "label": reason_labels.get(row["reason"], row["reason"] or "(none)"),
            "count": row["n"],
            "share": row["n"] / total_bad if total_bad else 0.0,
            # The share's n: every bad flag of the period.
            "n": total_bad,
            "link": _leads_link(feedback="bad", reason=row["reason"], flagged_from=since),
        }
        for row in bad.values("reason").annotate(n=Count("id")).order_by("-n", "reason")
    ]
    by_band = [
        {
            "band": row["band"] or "(unscored)",
            "bad": row["bad"],
            "good": row["good"],
            "link": _leads_link(feedback="bad", feedback_band=row["band"], flagged_from=since),
        }
        for row in flags.values("band")
        .annotate(
            bad=Count("id", filter=Q(verdict="bad")), good=Count("id", filter=Q(verdict="good"))
        )
        .order_by("-bad", "band")
    ]
    by_persona = [
        {
            "persona": row["lead__persona"] or "(none)",
            "bad": row["bad"],
            "good": row["good"],
            "link": _leads_link(feedback="bad", persona=row["lead__persona"], flagged_from=since),
        }
        for row in flags.values("lead__persona")
        .annotate(
            bad=Count("id", filter=Q(verdict="bad")), good=Count("id", filter=Q(verdict="good"))
        )
        .order_by("-bad", "lead__persona")
    ]

    bad_exists = Exists(bad.filter(lead=OuterRef("pk")))
    flagged_per_band = dict(
        Lead.objects.filter(bad_exists)
        .values("band")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("band", "n")
    )
    band_share = []
    for band, n in (
        Lead.objects.exclude(band="").values("band").annotate(n=Count("id")).order_by()
    ).values_list("band", "n"):
        flagged = flagged_per_band.get(band, 0)
        band_share.append(
            {
                "band": band,
                "leads": n,
                "flagged_bad": flagged,
                "share": flagged / n if n else 0.0,
                "link": _leads_link(band=band, feedback="bad", flagged_from=since),
            }
        )
    band_share.sort(key=lambda r: (-r["share"], r["band"]))

    rule_lift, baseline_leads, sampled = _rule_lift(bad_exists, since, rule_limit)
    figure = charts.flags_per_week_figure(over_time) if over_time else None
    return FeedbackReview(
        since=since,
        total_flags=total_flags,
        over_time=over_time,
        over_time_figure=figure,
        by_reason=by_reason,
        by_band=by_band,
        by_persona=by_persona,
        band_share=band_share,
        rule_lift=rule_lift,
        baseline_leads=baseline_leads,
        baseline_sampled=sampled,
    )


def _labels_of(breakdown: Any) -> set[str]:
    if not isinstance(breakdown, list):
        return set()
    return {
        e["label"]
        for e in breakdown
        if isinstance(e, dict) and e.get("label") and e.get("kind") != "model"
    }


def _rule_baseline() -> tuple[int, Counter, bool]:
    """How many scored leads there are, and per rule label in how many of their breakdowns
    it appears; from a table sample on PostgreSQL when there are more than
    RULE_BASELINE_SAMPLE of them (one set-based query either way)."""
    table = connection.ops.quote_name(Lead._meta.db_table)
    counts: Counter = Counter()
    total = 0
    sampled = False
    with connection.cursor() as cursor:
        if is_postgres():
            cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                           [Lead._meta.db_table])  # fmt: skip
            estimate = (cursor.fetchone() or [0])[0] or 0
            sample = ""
            if estimate > RULE_BASELINE_SAMPLE:
                percent = max(0.01, min(100.0, 100.0 * RULE_BASELINE_SAMPLE / estimate))
                sample = f"TABLESAMPLE SYSTEM ({percent:.4f}) REPEATABLE (7)"
                sampled = True
            cursor.execute(
                f"""
                WITH s AS MATERIALIZED (
                    SELECT id, breakdown FROM {table} {sample} WHERE score IS NOT NULL
                )
                SELECT NULL, COUNT(*) FROM s
                UNION ALL
                SELECT label, COUNT(*) FROM (
                    SELECT DISTINCT s.id, e->>'label' AS label
                    FROM s CROSS JOIN LATERAL jsonb_array_elements(
                        CASE WHEN jsonb_typeof(s.breakdown) = 'array'
                             THEN s.breakdown ELSE '[]'::jsonb END) AS e
                    WHERE e->>'label' IS NOT NULL AND e->>'kind' IS DISTINCT FROM 'model'
                ) t GROUP BY label
                """
            )
        else:
            cursor.execute(
                f"""
                SELECT NULL, COUNT(*) FROM {table} WHERE score IS NOT NULL
                UNION ALL
                SELECT label, COUNT(*) FROM (
                    SELECT DISTINCT l.id, json_extract(e.value, '$.label') AS label
                    FROM {table} AS l, json_each(
                        CASE WHEN json_type(l.breakdown) = 'array'
                             THEN l.breakdown ELSE '[]' END) AS e
                    WHERE l.score IS NOT NULL
                      AND json_extract(e.value, '$.label') IS NOT NULL
                      AND COALESCE(json_extract(e.value, '$.kind'), '') <> 'model'
                ) GROUP BY label
                """
            )
        for label, n in cursor.fetchall():
            if label is None:
                total = n
            else:
                counts[label] = n
    return total, counts, sampled


def _rule_lift(
    bad_exists: Exists, since: dt.date | None, limit: int
) -> tuple[list[dict[str, Any]], int, bool]:
    bad_breakdowns = Lead.objects.filter(bad_exists, score__isnull=False).values_list(
        "breakdown", flat=True
    )
    bad_total = 0
    bad_counts: Counter = Counter()
    bad_points: dict[str, list[float]] = defaultdict(list)
    for breakdown in bad_breakdowns.iterator(chunk_size=2000):
        bad_total += 1
        bad_counts.update(_labels_of(breakdown))
        for entry in breakdown if isinstance(breakdown, list) else []:
            if isinstance(entry, dict) and entry.get("label") in bad_counts:
                bad_points[entry["label"]].append(float(entry.get("points") or 0))
    if not bad_total:
        return [], 0, False
    all_total, all_counts, sampled = _rule_baseline()
    rows = []
    for label, n_bad in bad_counts.items():
        bad_share = n_bad / bad_total
        all_share = all_counts.get(label, 0) / all_total if all_total else 0.0
        points = bad_points.get(label) or [0.0]
        rows.append(
            {
                "label": label,
                "bad_leads": n_bad,
                "bad_share": bad_share,
                "all_share": all_share,
                "lift": bad_share / all_share if all_share else None,
                "mean_points": short_number(sum(points) / len(points)),
                "link": _leads_link(feedback="bad", rule=label, flagged_from=since),
            }
        )
    # Lifts on fewer than MIN_N bad leads are hidden on the page (noise: a lift of 14.76 from
    # one flag), so they go last rather than leading the list.
    rows.sort(
        key=lambda r: (
            r["bad_leads"] < MIN_N,
            -(r["lift"] or math.inf),
            -r["bad_leads"],
            r["label"],
        )
    )
    return rows[:limit], all_total, sampled
