"""Reads behind the lead queue, the lead page and the feedback review.

The queue is sorted by score (highest first, unscored leads last) and then by id, and pages
with a keyset cursor instead of OFFSET/COUNT, so every page costs the same at 1,000,000 leads:
the scored part walks the `lead_score_idx` (-score, -id) index, or `lead_owner_score_idx` when
the rows are one rep's. No page counts the whole result; it says whether there is more.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.paginator import Page, Paginator
from django.db import connection
from django.db.models import BooleanField, Count, Exists, OuterRef, Q, QuerySet
from django.db.models.expressions import F, RawSQL
from django.db.models.functions import TruncWeek
from django.utils import timezone

from scoring.models import (
    STAGE_TIME_FIELDS,
    Feedback,
    Identity,
    Lead,
    LeadMerge,
    LifecycleStage,
    RescoreRun,
    RuleSet,
    ScoreHistory,
    normalise_email,
)
from scoring.roles import SALES

QUEUE_PAGE_SIZE = 50
EVENTS_PAGE_SIZE = 25
# Above this many scored leads the review's baseline rule frequencies come from a sample.
RULE_BASELINE_SAMPLE = 200_000
CHOICES_CACHE_SECONDS = 600

QUEUE_FIELDS = (
    "id",
    "email",
    "first_name",
    "last_name",
    "company",
    "title",
    "score",
    "band",
    "persona",
    "lifecycle_stage",
    "source",
    "created_at",
    "owner__username",
)


# ---------------------------------------------------------------------------------------------
# Queue filters


@dataclass(frozen=True)
class QueueFilters:
    """The queue's filters as parsed from the query string; empty means not filtered.

    `owner` is a user id or "none" (unassigned). The feedback filters (`feedback`, `reason`,
    `feedback_band`, `flagged_from`, `flagged_to`) keep leads with at least one feedback that
    matches all of them; `rule` keeps leads whose breakdown has an entry with that label.
    Dates are calendar days in the site's time zone, both ends included. `q` matches words
    in the email, first or last name or company (every word must match); a word that is a
    whole email address matches that address exactly."""

    q: str = ""
    band: str = ""
    persona: str = ""
    stage: str = ""
    source: str = ""
    owner: str = ""
    created_from: dt.date | None = None
    created_to: dt.date | None = None
    feedback: str = ""
    reason: str = ""
    feedback_band: str = ""
    flagged_from: dt.date | None = None
    flagged_to: dt.date | None = None
    rule: str = ""

    def as_params(self) -> dict[str, str]:
        """The non-empty filters as query parameters (for links and the export)."""
        params = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value not in ("", None):
                params[f.name] = value.isoformat() if isinstance(value, dt.date) else value
        return params

    @property
    def active(self) -> bool:
        return bool(self.as_params())


_FULL_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_DATE_FIELDS = ("created_from", "created_to", "flagged_from", "flagged_to")
_MAX_TEXT = 200


def parse_queue_filters(params: Any) -> tuple[QueueFilters, dict[str, str]]:
    """QueueFilters from a QueryDict (or any mapping), and the problems found, by parameter.
    A parameter with a problem is left out of the filters, so the page still renders."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for f in fields(QueueFilters):
        raw = (params.get(f.name) or "").strip()
        if not raw:
            continue
        if f.name in _DATE_FIELDS:
            try:
                values[f.name] = dt.date.fromisoformat(raw)
            except ValueError:
                errors[f.name] = "Use a date like 2025-01-31."
            continue
        if len(raw) > _MAX_TEXT:
            errors[f.name] = f"At most {_MAX_TEXT} characters."
            continue
        values[f.name] = raw
    if "stage" in values and values["stage"] not in LifecycleStage.values:
        errors["stage"] = "Unknown lifecycle stage."
        del values["stage"]
    if "feedback" in values and values["feedback"] not in Feedback.Verdict.values:
        errors["feedback"] = "Choose good or bad."
        del values["feedback"]
    if "reason" in values and values["reason"] not in Feedback.Reason.values:
        errors["reason"] = "Unknown reason."
        del values["reason"]
    if "owner" in values and values["owner"] != "none" and not values["owner"].isdigit():
        errors["owner"] = "Unknown owner."
        del values["owner"]
    for start, end in (("created_from", "created_to"), ("flagged_from", "flagged_to")):
        if start in values and end in values and values[start] > values[end]:
            errors[end] = "The end is before the start."
            del values[end]
    return QueueFilters(**values), errors


def _day_start(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def _has_rule_label(label: str) -> Q | RawSQL:
    """Leads whose breakdown has an entry labelled `label` (JSON containment on PostgreSQL,
    where the planner can use it on the row; json_each elsewhere)."""
    if connection.vendor == "postgresql":
        return Q(breakdown__contains=[{"label": label}])
    table = Lead._meta.db_table
    # The table name comes from the model, the label is a bound parameter.
    expression = RawSQL(  # noqa: S611
        f'EXISTS (SELECT 1 FROM json_each("{table}"."breakdown") AS e '
        "WHERE json_extract(e.value, '$.label') = %s)",
        (label,),
        output_field=BooleanField(),
    )
    return expression


# Up to this many matches, a search is answered from its matching ids (found through the
# trigram index) rather than by walking the score order and testing every lead on the way: with
# a LIMIT, PostgreSQL trusts its (poor) trigram estimate and walks the score index through the
# whole table when the word is rare. Above it the word is common and that walk ends quickly.
SEARCH_CANDIDATES = 5000


def _search(words: Q) -> Q:
    if connection.vendor != "postgresql":
        return words
    ids = list(Lead.objects.filter(words).values_list("id", flat=True)[: SEARCH_CANDIDATES + 1])
    if len(ids) > SEARCH_CANDIDATES:
        return words
    return Q(id__in=ids)


def filter_leads(queryset: QuerySet[Lead], filters: QueueFilters) -> QuerySet[Lead]:
    """`queryset` narrowed by `filters` (see QueueFilters). The caller passes the leads the
    user may see (`visible_leads`); this never widens them."""
    if filters.band:
        queryset = queryset.filter(band=filters.band)
        bounds = band_score_bounds(filters.band)
        if bounds is not None:
            # Redundant with the band, but it lets the (-score, -id) index scan start at the
            # band's scores instead of walking past every higher-scored lead (seconds for
            # a low band at a million leads, because the planner cannot know that band
            # follows score).
            low, high = bounds
            if low is not None:
                queryset = queryset.filter(score__gte=math.floor(low))
            if high is not None:
                queryset = queryset.filter(score__lt=math.ceil(high))
    if filters.persona:
        queryset = queryset.filter(persona=filters.persona)
    if filters.stage:
        queryset = queryset.filter(lifecycle_stage=filters.stage)
    if filters.source:
        queryset = queryset.filter(source=filters.source)
    if filters.owner == "none":
        queryset = queryset.filter(owner__isnull=True)
    elif filters.owner:
        queryset = queryset.filter(owner_id=int(filters.owner))
    if filters.created_from:
        queryset = queryset.filter(created_at__gte=_day_start(filters.created_from))
    if filters.created_to:
        end = _day_start(filters.created_to + dt.timedelta(days=1))
        queryset = queryset.filter(created_at__lt=end)
    words = Q()
    for term in filters.q.split()[:5]:
        if _FULL_EMAIL.fullmatch(term):
            # A whole address is looked up through the unique email index, not by scanning.
            queryset = queryset.filter(email=normalise_email(term))
            continue
        # Every word must match one of the fields, so "ada lovelace" finds Ada Lovelace.
        words &= (
            Q(email__icontains=term)
            | Q(first_name__icontains=term)
            | Q(last_name__icontains=term)
            | Q(company__icontains=term)
        )
    if words:
        queryset = queryset.filter(_search(words))
    if filters.rule:
        queryset = queryset.filter(_has_rule_label(filters.rule))
    if (
        filters.feedback
        or filters.reason
        or filters.feedback_band
        or filters.flagged_from
        or filters.flagged_to
    ):
        feedback = Feedback.objects.filter(lead=OuterRef("pk"))
        if filters.feedback:
            feedback = feedback.filter(verdict=filters.feedback)
        if filters.reason:
            feedback = feedback.filter(reason=filters.reason)
        if filters.feedback_band:
            feedback = feedback.filter(band=filters.feedback_band)
        if filters.flagged_from:
            feedback = feedback.filter(created_at__gte=_day_start(filters.flagged_from))
        if filters.flagged_to:
            end = _day_start(filters.flagged_to + dt.timedelta(days=1))
            feedback = feedback.filter(created_at__lt=end)
        queryset = queryset.filter(Exists(feedback))
    return queryset


def band_score_bounds(band: str) -> tuple[float | None, float | None] | None:
    """The scores a lead in `band` can have, as [low, high) (None = unbounded on that side),
    from the live rule set's band thresholds (the union over its per-persona band lists).

    None, meaning "no safe bound", unless the live rule set's latest rescore run is done: only
    then was every lead's band computed by these thresholds (a band follows from the score,
    DESIGN.md section 4)."""
    live = RuleSet.objects.filter(status=RuleSet.Status.PUBLISHED).first()
    if live is None:
        return None
    last_run = RescoreRun.objects.filter(rule_set=live).order_by("-id").first()
    if last_run is None or last_run.status != RescoreRun.Status.DONE:
        return None
    scopes: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for name, min_score, persona in live.bands.values_list("name", "min_score", "persona"):
        scopes[persona].append((min_score, name))
    lows: list[float] = []
    highs: list[float | None] = []
    for thresholds in scopes.values():
        thresholds.sort()
        for i, (min_score, name) in enumerate(thresholds):
            if name == band:
                lows.append(min_score if i else -math.inf)  # the lowest band takes the rest
                highs.append(thresholds[i + 1][0] if i + 1 < len(thresholds) else None)
    if not lows:
        return None
    low = None if -math.inf in lows else min(lows)
    high = None if None in highs else max(h for h in highs if h is not None)
    return low, high


def queue_filter_choices() -> dict[str, list]:
    """Options for the queue's filter pickers: the bands, personas and sources present in the
    data (cached for a few minutes: a DISTINCT over a million leads is not free), the lifecycle
    stages, and the sales reps who can own leads."""

    def distinct(column: str) -> list[str]:
        return sorted(
            v for v in Lead.objects.order_by().values_list(column, flat=True).distinct() if v
        )

    key = f"lead_queue.choices.{connection.settings_dict['NAME']}"
    data = cache.get(key)
    if data is None:
        data = {c: distinct(c) for c in ("band", "persona", "source")}
        cache.set(key, data, CHOICES_CACHE_SECONDS)
    # Only the sales reps: asking which users own any lead would join a million rows.
    owners = list(
        get_user_model()
        .objects.filter(groups__name=SALES, is_active=True)
        .distinct()
        .order_by("username")
        .values("id", "username")[:500]
    )
    return {
        "bands": data["band"],
        "personas": data["persona"],
        "sources": data["source"],
        "stages": LifecycleStage.choices,
        "owners": owners,
        "verdicts": Feedback.Verdict.choices,
        "reasons": Feedback.Reason.choices,
    }


# ---------------------------------------------------------------------------------------------
# Queue pages


@dataclass(frozen=True)
class QueueCursor:
    """Where the next page starts: after (score, id) among scored leads, or after id among
    unscored ones (score None)."""

    score: int | None
    id: int

    def encode(self) -> str:
        return f"{'n' if self.score is None else self.score}_{self.id}"

    @classmethod
    def decode(cls, text: str) -> QueueCursor:
        """Raises ValueError on anything that is not a cursor this module wrote."""
        match = re.fullmatch(r"(n|-?\d{1,10})_(\d{1,19})", text or "")
        if not match:
            raise ValueError(f"not a queue cursor: {text!r}")
        score = None if match[1] == "n" else int(match[1])
        return cls(score=score, id=int(match[2]))


@dataclass
class QueuePage:
    rows: list[dict[str, Any]]
    next_cursor: str | None
    has_more: bool
    is_first: bool


def queue_page(
    queryset: QuerySet[Lead], after: QueueCursor | None = None, size: int = QUEUE_PAGE_SIZE
) -> QueuePage:
    """One page of the queue: `size` rows sorted by score desc then id desc, unscored leads
    after every scored one, starting after `after`. Two bounded index scans at most (scored,
    then unscored when the scored leads run out); never a COUNT."""
    rows: list[dict[str, Any]] = []
    if after is None or after.score is not None:
        scored = queryset.filter(score__isnull=False)
        if after is not None:
            # score <= s bounds the index scan; the OR settles ties on id.
            scored = scored.filter(score__lte=after.score).filter(
                Q(score__lt=after.score) | Q(id__lt=after.id)
            )
        rows = list(scored.order_by("-score", "-id").values(*QUEUE_FIELDS)[: size + 1])
    if len(rows) <= size:
        unscored = queryset.filter(score__isnull=True)
        if after is not None and after.score is None:
            unscored = unscored.filter(id__lt=after.id)
        rows += list(unscored.order_by("-id").values(*QUEUE_FIELDS)[: size + 1 - len(rows)])
    has_more = len(rows) > size
    rows = rows[:size]
    next_cursor = None
    if has_more:
        last = rows[-1]
        next_cursor = QueueCursor(score=last["score"], id=last["id"]).encode()
    return QueuePage(rows=rows, next_cursor=next_cursor, has_more=has_more, is_first=after is None)


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
# CSV export

EXPORT_COLUMNS = (
    ("id", "id"),
    ("email", "email"),
    ("first_name", "first_name"),
    ("last_name", "last_name"),
    ("company", "company"),
    ("title", "title"),
    ("score", "score"),
    ("band", "band"),
    ("persona", "persona"),
    ("lifecycle_stage", "lifecycle_stage"),
    ("source", "source"),
    ("owner", "owner__username"),
    ("created_at", "created_at"),
    ("scored_at", "scored_at"),
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """A cell that a spreadsheet will not run as a formula: text beginning with = + - @ (or a
    tab or carriage return, which some spreadsheets skip before looking) gets a leading
    single quote. Numbers and dates are left alone."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return "" if value is None else value


def export_rows(queryset: QuerySet[Lead]) -> Iterator[list[Any]]:
    """The header, then one row per lead of `queryset` in queue order, escaped with csv_safe.
    Streams from the database in chunks (a server-side cursor on PostgreSQL)."""
    yield [name for name, _ in EXPORT_COLUMNS]
    ordered = queryset.order_by(F("score").desc(nulls_last=True), "-id")
    for row in ordered.values_list(*(column for _, column in EXPORT_COLUMNS)).iterator(
        chunk_size=2000
    ):
        yield [csv_safe(value) for value in row]


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
        flags = flags.filter(created_at__gte=_day_start(since))
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
        if connection.vendor == "postgresql":
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
