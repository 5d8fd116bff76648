"""Reads behind the lead page and the queue's verdict column.

The lead list itself (filters, search, sort, keyset pages, CSV export) is
`scoring.selectors.leads`; the feedback review is `scoring.selectors.feedback`."""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.core.paginator import Page, Paginator

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


def short_number(value: float, places: int = 2) -> str:
    """A number with at most `places` decimals and no trailing zeros: 12.05, 15, -20."""
    text = f"{value:.{places}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _signed(value: float) -> str:
    text = short_number(value)
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
            total = short_number(count * per_event)
            text = f"{events} {_TIMES} {short_number(per_event)} pts = {total}"
        else:
            text = (
                f"{events}, decayed sum {short_number(decayed, 4)} {_TIMES}"
                f" {short_number(per_event)} pts"
                f" = {short_number(decayed * per_event)}"
            )
        if entry.get("capped"):
            text += f", capped at {short_number(points)}"
        return text
    if kind == "inactivity":
        return f"inactive: {_signed(points)} pts"
    if kind == "model":
        return f"blend effect {_signed(points)} pts"
    if kind == "group":
        clamp = f", clamped by {_signed(points)} pts" if points else ""
        return f"group score {entry.get('score')}{clamp}"
    if kind == "grade":
        return "fit \N{MULTIPLICATION SIGN} engagement grade"
    return f"matched: {_signed(points)} pts"


def grade_axes(lead: Lead) -> list[dict[str, Any]]:
    """The lead's group scores with their bands, for the page's two axes, in the rule set's
    group order (the breakdown's group entries keep it; the JSON columns need not)."""
    breakdown = lead.breakdown if isinstance(lead.breakdown, list) else []
    return [
        {"group": e.get("group"), "score": e.get("score"), "band": e.get("band") or ""}
        for e in breakdown
        if isinstance(e, dict) and e.get("kind") == "group"
    ]


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


def score_history_points(lead: Lead) -> list[tuple[dt.datetime, int, str]]:
    """The lead's score over time, oldest first: its newest 2000 ScoreHistory rows as
    (as_of, score, band), extended to its current score when that is newer."""
    rows = list(
        ScoreHistory.objects.filter(lead=lead)
        .order_by("-as_of", "-id")
        .values_list("as_of", "score", "band")[:2000]
    )[::-1]
    current_is_newer = lead.scored_at is not None and (not rows or rows[-1][0] < lead.scored_at)
    if lead.score is not None and current_is_newer:
        rows.append((lead.scored_at, lead.score, lead.band))
    return rows


def score_history_rows(lead: Lead, limit: int = 20) -> list[ScoreHistory]:
    """The latest score history rows, newest first (the chart's table for screen readers)."""
    return list(ScoreHistory.objects.filter(lead=lead).order_by("-as_of", "-id")[:limit])
