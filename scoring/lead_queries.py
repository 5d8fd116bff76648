"""Reads behind the lead page, the queue's verdict column and the feedback review.

The lead list itself (filters, search, sort, keyset pages, CSV export) is `scoring.lead_list`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.paginator import Page, Paginator
from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q
from django.db.models.functions import TruncWeek

from leadscoring.db import is_postgres
from scoring.lead_list import day_start
from scoring.models import (
    STAGE_TIME_FIELDS,
    Feedback,
    Identity,
    Lead,
    LeadMerge,
    LifecycleStage,
    ScoreHistory,
)

EVENTS_PAGE_SIZE = 25
# Above this many scored leads the review's baseline rule frequencies come from a sample.
RULE_BASELINE_SAMPLE = 200_000


def verdicts_by_lead(user: Any, lead_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """The user's own feedback on these leads: lead id -> {verdict, reason, reason_label}."""
    labels = dict(Feedback.Reason.choices)
    return {
        row["lead_id"]: {**row, "reason_label": labels.get(row["reason"], "")}
        for row in Feedback.objects.filter(author=user, lead_id__in=list(lead_ids)).values(
            "lead_id", "verdict", "reason", "note"
        )
    }


# ---------------------------------------------------------------------------------------------
# The lead page


def _num(value: float, places: int = 2) -> str:
    """A number with at most `places` decimals and no trailing zeros: 12.05, 15, -20."""
    text = f"{value:.{places}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _signed(value: float) -> str:
    text = _num(value)
    return text if text.startswith("-") else f"+{text}"


_TIMES = "\N{MULTIPLICATION SIGN}"


def breakdown_line(entry: dict[str, Any]) -> str:
    """One breakdown entry as arithmetic a rep can check, e.g.
    "3 events, decayed sum 2.4137 \N{MULTIPLICATION SIGN} 5 pts = 12.07, capped at 20"."""
    kind = entry.get("kind")
    points = float(entry.get("points") or 0)
    if kind == "event" and "count" in entry:
        count = int(entry.get("count") or 0)
        per_event = float(entry.get("points_per_event") or 0)
        decayed = float(entry.get("decayed_sum") or 0)
        events = f"{count} event{'s' if count != 1 else ''}"
        if math.isclose(decayed, count, abs_tol=5e-5):
            text = f"{events} {_TIMES} {_num(per_event)} pts = {_num(count * per_event)}"
        else:
            text = (
                f"{events}, decayed sum {_num(decayed, 4)} {_TIMES} {_num(per_event)} pts"
                f" = {_num(decayed * per_event)}"
            )
        if entry.get("capped"):
            text += f", capped at {_num(points)}"
        return text
    if kind == "inactivity":
        return f"inactive: {_signed(points)} pts"
    if kind == "model":
        return f"blend effect {_signed(points)} pts"
    return f"matched: {_signed(points)} pts"


def breakdown_rows(breakdown: Any) -> tuple[list[dict[str, Any]], float]:
    """The breakdown prepared for the page (label, arithmetic, signed points) and the sum of
    the contributions. Tolerates a malformed stored breakdown by skipping bad entries."""
    rows = []
    total = 0.0
    for entry in breakdown if isinstance(breakdown, list) else []:
        if not isinstance(entry, dict):
            continue
        points = float(entry.get("points") or 0)
        total += points
        rows.append(
            {
                "label": entry.get("label") or f"rule {entry.get('rule')}",
                "name": entry.get("name") or "",
                "kind": entry.get("kind") or "",
                "arithmetic": breakdown_line(entry),
                "points": _signed(points),
                "negative": points < 0,
                "capped": bool(entry.get("capped")),
            }
        )
    return rows, round(total, 2)


def lifecycle_timeline(lead: Lead) -> list[dict[str, Any]]:
    """The lifecycle stages the lead reached, in funnel order, with the time of each."""
    stages = [{"stage": "Lead", "at": lead.created_at, "current": lead.lifecycle_stage == "lead"}]
    labels = dict(LifecycleStage.choices)
    for stage, column in STAGE_TIME_FIELDS.items():
        at = getattr(lead, column)
        if at is not None or lead.lifecycle_stage == stage:
            stages.append(
                {"stage": labels[stage], "at": at, "current": lead.lifecycle_stage == stage}
            )
    return stages


def identities_by_source(lead: Lead) -> list[dict[str, Any]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for source, external_id in (
        Identity.objects.filter(lead=lead)
        .order_by("source", "id")
        .values_list("source", "external_id")
    ):
        grouped[source].append(external_id)
    return [{"source": s, "external_ids": ids} for s, ids in sorted(grouped.items())]


def lead_merges(lead: Lead) -> list[LeadMerge]:
    return list(LeadMerge.objects.filter(survivor=lead).order_by("-merged_at")[:50])


def lead_feedback(lead: Lead) -> list[dict[str, Any]]:
    """Everyone's feedback on the lead, newest first, with who and when."""
    labels = dict(Feedback.Reason.choices)
    return [
        {**row, "reason_label": labels.get(row["reason"], ""), "edited": _edited(row)}
        for row in Feedback.objects.filter(lead=lead)
        .order_by("-updated_at", "-id")
        .values(
            "id",
            "author_id",
            "author__username",
            "verdict",
            "reason",
            "note",
            "band",
            "score",
            "created_at",
            "updated_at",
        )
    ]


def _edited(row: dict[str, Any]) -> bool:
    return (row["updated_at"] - row["created_at"]) > dt.timedelta(seconds=1)


def lead_events_page(lead: Lead, page_number: Any) -> Page:
    """The lead's events, newest first, EVENTS_PAGE_SIZE per page (out-of-range pages give
    the last page). Counting one lead's events uses the (lead, type, time) index."""
    events = lead.events.order_by("-occurred_at", "-id").only(
        "id", "event_type", "occurred_at", "source", "properties"
    )
    return Paginator(events, EVENTS_PAGE_SIZE).get_page(page_number)


def score_history_figure(lead: Lead) -> dict[str, Any] | None:
    """A plotly figure dict of the lead's score over time: a step line through its
    ScoreHistory rows, extended to its current score. None when there is nothing to draw."""
    # The newest 2000 changes, drawn oldest first.
    rows = list(
        ScoreHistory.objects.filter(lead=lead)
        .order_by("-as_of", "-id")
        .values_list("as_of", "score", "band")[:2000]
    )[::-1]
    current_is_newer = lead.scored_at is not None and (not rows or rows[-1][0] < lead.scored_at)
    if lead.score is not None and current_is_newer:
        rows.append((lead.scored_at, lead.score, lead.band))
    if not rows:
        return None
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "line": {"shape": "hv"},
                "name": "score",
                "x": [as_of.isoformat() for as_of, _, _ in rows],
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


def score_history_rows(lead: Lead, limit: int = 20) -> list[ScoreHistory]:
    """The latest score history rows, newest first (the chart's table for screen readers)."""
    return list(ScoreHistory.objects.filter(lead=lead).order_by("-as_of", "-id")[:limit])


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

    clean = {
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
    figure = _flags_figure(over_time) if over_time else None
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


def _flags_figure(over_time: list[dict[str, Any]]) -> dict[str, Any]:
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
                "mean_points": _num(sum(points) / len(points)),
                "link": _leads_link(feedback="bad", rule=label, flagged_from=since),
            }
        )
    rows.sort(key=lambda r: (-(r["lift"] or math.inf), -r["bad_leads"], r["label"]))
    return rows[:limit], all_total, sampled
