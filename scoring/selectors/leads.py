"""The one lead list: the queue page (/leads/), the API (/api/v1/leads/) and the CSV exports
(/leads/export.csv, `manage.py export_scores`) filter, search, sort and page leads here.

- `LeadListFilter` is the one FilterSet. It takes both the page's and the API's parameter
  names (they differed before the two were merged), so every name either of them took still
  works in all three places.
- `lead_list_query` validates a query string into a `LeadListQuery` (the filter set plus the
  sort and the keyset cursor); `lead_list` applies it to the leads a user may see;
  `lead_list_page` reads one keyset page; `lead_list_csv_rows` streams every page as CSV rows.

The list is sorted by score (highest first by default, unscored leads last either way) and then
by id; the work queue's order (`ordering=queue`, the page's and the export's default) puts the
untouched newly qualified leads (`new_mql`) first, each part by score. The page and the export
list open leads only unless a stage or `open` is asked for; the API lists every stage unless
asked (`?open=true`), as its clients always had.

The list pages with a keyset cursor instead of OFFSET/COUNT, so every page costs the same at
1,000,000 leads: the scored part walks the `lead_score_idx` (-score, -id) index, or
`lead_owner_score_idx` / `lead_band_score_idx` when the rows are one rep's or one band's (the
new MQLs walk the small partial `lead_new_mql_idx`). No page counts the whole result; it says
whether there is more.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import django_filters
from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.db.models import (
    BigIntegerField,
    BooleanField,
    Case,
    Exists,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.expressions import RawSQL
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Greatest, Least
from django.utils import timezone

from leadscoring.db import is_postgres
from scoring.kpis.filters import FILTER_DATE_MAX, FILTER_DATE_MIN
from scoring.models import (
    STAGE_TIME_FIELDS,
    Feedback,
    Identity,
    Lead,
    LeadAssignment,
    LifecycleStage,
    RescoreRun,
    RuleSet,
    normalise_email,
)
from scoring.roles import SALES, can
from scoring.selectors.experiments import running_arms
from scoring.selectors.rules import grades_best_first, live_rule_set

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
# The exports read the list a keyset page at a time, in pages this big.
EXPORT_PAGE_SIZE = 2000
CHOICES_CACHE_SECONDS = 600
MAX_TEXT = 200
# Up to this many matches, a search is answered from its matching ids (found through the
# trigram index) rather than by walking the score order and testing every lead on the way: with
# a LIMIT, PostgreSQL trusts its (poor) trigram estimate and walks the score index through the
# whole table when the word is rare. Above it the word is common and that walk ends quickly.
SEARCH_CANDIDATES = 5000
# Not open: a deal won or lost, or a lead disqualified (DESIGN.md §9: `?open=true`).
CLOSED_STAGES = (LifecycleStage.CUSTOMER, LifecycleStage.LOST, LifecycleStage.DISQUALIFIED)
OPEN_STAGES = tuple(code for code, _ in LifecycleStage.choices if code not in CLOSED_STAGES)
# The stage picker's presets; "all" is every stage.
STAGE_PRESETS = {
    "open": OPEN_STAGES,
    "won": (LifecycleStage.CUSTOMER,),
    "all": tuple(code for code, _ in LifecycleStage.choices),
}
# A lead that qualified this recently and nobody has touched yet (no feedback, still a lead or
# an MQL) heads the work queue.
NEW_MQL_DAYS = 7
NEW_MQL_STAGES = (LifecycleStage.LEAD, LifecycleStage.MQL)
# Parameters that pick stages; without any of them the page and the export list open leads.
STAGE_PARAMS = ("stage", "lifecycle_stage", "open")

# One row of the list, as the page, the API and the queue export read it.
LIST_FIELDS = (
    "id",
    "email",
    "first_name",
    "last_name",
    "company",
    "title",
    "score",
    "band",
    "grade",
    "group_scores",
    "persona",
    "lifecycle_stage",
    "source",
    "created_at",
    "scored_at",
    "owner__username",
    "model_probability",
)
# The queue export's columns: (CSV header, LIST_FIELDS name).
EXPORT_COLUMNS = (
    ("id", "id"),
    ("email", "email"),
    ("first_name", "first_name"),
    ("last_name", "last_name"),
    ("company", "company"),
    ("title", "title"),
    ("score", "score"),
    ("band", "band"),
    ("grade", "grade"),
    ("persona", "persona"),
    ("lifecycle_stage", "lifecycle_stage"),
    ("source", "source"),
    ("owner", "owner__username"),
    ("created_at", "created_at"),
    ("scored_at", "scored_at"),
)
# Parameters that say how to read the list rather than which leads are in it.
PAGING_PARAMS = ("ordering", "page_size", "cursor", "after")
# The annotation a list sorted by a group's score is paged by (see lead_list).
SORT_KEY = "sort_key"
_FULL_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


# ---------------------------------------------------------------------------------------------
# The cursor


@dataclass(frozen=True)
class LeadCursor:
    """Where the next page starts: after (score, id) among scored leads, or after id among
    unscored ones (score None); `first` when that lead is in the work queue's leading part
    (the new MQLs). Opaque to clients; the same text for the page and the API."""

    score: int | None
    id: int
    first: bool = False

    def encode(self) -> str:
        return f"{'f' if self.first else ''}{'n' if self.score is None else self.score}_{self.id}"

    @classmethod
    def decode(cls, text: str) -> LeadCursor:
        """Raises ValueError on anything that is not a cursor this module wrote."""
        match = re.fullmatch(r"(f?)(n|-?\d{1,10})_(\d{1,19})", text or "")
        if not match:
            raise ValueError(f"not a lead list cursor: {text!r}")
        score = None if match[2] == "n" else int(match[2])
        return cls(score=score, id=int(match[3]), first=bool(match[1]))


class _CursorField(forms.CharField):
    def to_python(self, value: Any) -> LeadCursor | None:
        text = super().to_python(value)
        if not text:
            return None
        try:
            return LeadCursor.decode(text)
        except ValueError:
            raise forms.ValidationError(
                "That page link is not valid any more.", code="invalid"
            ) from None


class _CursorFilter(django_filters.Filter):
    field_class = _CursorField


# ---------------------------------------------------------------------------------------------
# The FilterSet


def _in_filter_range(value: dt.date | dt.datetime) -> None:
    """Dates near the ends of the calendar overflow when a day is added (9999-12-31 was a
    500); the lead list takes the KPI filters' range."""
    day = value.date() if isinstance(value, dt.datetime) else value
    if not FILTER_DATE_MIN <= day <= FILTER_DATE_MAX:
        raise forms.ValidationError(
            f"{day} is out of range ({FILTER_DATE_MIN} to {FILTER_DATE_MAX})."
        )


def day_start(day: dt.date) -> dt.datetime:
    """The first instant of a calendar day in the site's time zone (TIME_ZONE), whoever asks:
    the page, the API and the exports give the same leads for the same days, and the KPI
    page's links (site days) open the list they counted."""
    return timezone.make_aware(
        dt.datetime.combine(day, dt.time.min), timezone.get_default_timezone()
    )


def _search(words: Q) -> Q:
    if not is_postgres():
        return words
    ids = list(Lead.objects.filter(words).values_list("id", flat=True)[: SEARCH_CANDIDATES + 1])
    if len(ids) > SEARCH_CANDIDATES:
        return words
    return Q(id__in=ids)


def _has_rule_label(label: str) -> Q | RawSQL:
    """Leads whose breakdown has an entry labelled `label` (JSON containment on PostgreSQL,
    where the planner can use it on the row; json_each elsewhere)."""
    if is_postgres():
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


def new_mql_q(now: dt.datetime | None = None) -> Q:
    """Untouched newly qualified leads: qualified now, first qualified in the last NEW_MQL_DAYS,
    still a lead or an MQL (sales has not moved it on), and nobody has given feedback on it.
    The first three conditions are `lead_new_mql_idx`'s, so the planner can walk that index."""
    since = (now or timezone.now()) - dt.timedelta(days=NEW_MQL_DAYS)
    flagged = Feedback.objects.filter(lead=OuterRef("pk"))
    return Q(qualified=True, lifecycle_stage__in=NEW_MQL_STAGES, mql_at__gte=since) & ~Exists(
        flagged
    )


def awaiting_feedback_q() -> Q:
    """Open leads that have qualified (an MQL time) and that nobody has flagged yet."""
    flagged = Feedback.objects.filter(lead=OuterRef("pk"))
    return Q(mql_at__isnull=False, lifecycle_stage__in=OPEN_STAGES) & ~Exists(flagged)


def sla_deadline_passed_by(moment: dt.datetime) -> dt.datetime:
    """The latest `assigned_at` whose SLA deadline (assigned_at + ROUTING_SLA_HOURS) has
    passed by `moment`: an assignment made at or before it is due by then. The one place the
    deadline is computed (the sweep, the workload page and the queue's "SLA due")."""
    return moment - dt.timedelta(hours=settings.ROUTING_SLA_HOURS)


def sla_running_assignments() -> QuerySet[LeadAssignment]:
    """Assignments whose SLA clock still runs: open (not ended), not accepted, not breached
    yet, the rep has not acted since the assignment (no feedback of theirs written or edited,
    no stage after MQL reached), and the lead is still qualified and open. `sla_sweep`
    breaches those past their deadline; anything else here will be breached unless the rep
    acts."""
    stage_acted = Q()
    for stage, column in STAGE_TIME_FIELDS.items():
        if stage != "mql":
            stage_acted |= Q(**{f"lead__{column}__gte": F("assigned_at")})
    feedback = Feedback.objects.filter(
        lead=OuterRef("lead"), author=OuterRef("user"), updated_at__gte=OuterRef("assigned_at")
    )
    return (
        LeadAssignment.objects.filter(ended_at=None, accepted_at=None, sla_breached_at=None)
        .exclude(Exists(feedback))
        .exclude(stage_acted)
        .filter(lead__qualified=True)
        .exclude(lead__lifecycle_stage__in=CLOSED_STAGES)
    )


def sla_due_q(now: dt.datetime | None = None) -> Q:
    """Leads whose open assignment is "SLA due": its clock still runs
    (`sla_running_assignments`) and its deadline is at most ROUTING_SLA_DUE_SOON_HOURS away,
    or already passed (the sweep, every 5 minutes, has not breached and reassigned it yet).
    A set of lead ids from the open assignments (few), not a test on every lead."""
    soon = (now or timezone.now()) + dt.timedelta(hours=settings.ROUTING_SLA_DUE_SOON_HOURS)
    due = sla_running_assignments().filter(assigned_at__lte=sla_deadline_passed_by(soon))
    return Q(pk__in=due.values("lead_id"))


class _StageField(forms.CharField):
    """Stage codes separated by commas (the page's multi-select sends the parameter once per
    stage; `lead_list_query` joins them), or one preset: open, won, all. A preset among the
    values wins over the single stages (the page's preset buttons send one beside the
    multi-select's stages)."""

    def to_python(self, value: Any) -> tuple[str, ...] | None:
        text = super().to_python(value)
        if not text:
            return None
        names = [part.strip() for part in text.split(",") if part.strip()]
        codes = dict(LifecycleStage.choices)
        unknown = [name for name in names if name not in codes and name not in STAGE_PRESETS]
        if unknown:
            raise forms.ValidationError(
                f"Unknown stage {unknown[0]!r}: use open, won, all or a stage "
                f"({', '.join(codes)}).",
                code="invalid_choice",
            )
        presets = [name for name in names if name in STAGE_PRESETS]
        if presets:
            return STAGE_PRESETS[presets[-1]]
        return tuple(dict.fromkeys(names))


class _StageFilter(django_filters.Filter):
    field_class = _StageField

    def filter(self, qs: QuerySet, value: tuple[str, ...] | None) -> QuerySet:
        if not value or set(value) == set(STAGE_PRESETS["all"]):
            return qs
        return qs.filter(lifecycle_stage__in=value)


class _LeadListForm(forms.Form):
    """Checks across parameters: a range whose end is before its start is an error on the
    end (the page then ignores the end and keeps the start)."""

    RANGES = (
        ("created_from", "created_to"),
        ("created_after", "created_before"),
        ("flagged_from", "flagged_to"),
        ("score_min", "score_max"),
        ("group_score_min", "group_score_max"),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        for name in ("group_score_min", "group_score_max"):
            if data.get(name) is not None and not data.get("group"):
                self.add_error(name, "Name the group too (group=fit).")
        for start, end in self.RANGES:
            low, high = data.get(start), data.get(end)
            if low is not None and high is not None and low > high:
                self.add_error(end, "The end is before the start.")
        return data


def group_score(group: str) -> Cast:
    """The lead's score in `group` (NULL when it has none): a JSON key of `group_scores`,
    the same expression on PostgreSQL and SQLite."""
    return Cast(KeyTextTransform(group, "group_scores"), IntegerField())


GRADE_ORDERINGS = ("grade", "-grade")


def ordering_key(ordering: str | None) -> tuple[str | None, bool]:
    """`ordering` -> (group name or None for the score, descending)."""
    text = ordering or "-score"
    if text == "queue":  # the work queue: by score, highest first, after its new MQLs
        return None, True
    if text in GRADE_ORDERINGS:  # grade_sort_key folds the direction in; the walk descends
        return None, True
    descending = text.startswith("-")
    key = text.lstrip("-")
    return (key[len("group:") :] if key.startswith("group:") else None), descending


def _ordering(value: str) -> None:
    if value == "queue" or value in GRADE_ORDERINGS:
        return
    key = value.lstrip("-") if value.count("-") <= 1 else ""
    if key != "score" and not (key.startswith("group:") and key[len("group:") :].strip()):
        raise forms.ValidationError(
            "Use -score, score, queue, grade, -grade, -group:NAME or group:NAME."
        )


def grade_sort_key(rule_set: RuleSet | None, *, worst_first: bool = False) -> Any:
    """One integer per lead that, sorted descending, lists the leads by grade (best first, or
    worst first), then by score (highest first either way); NULL for leads without a grade
    of `rule_set`'s grid (or for every lead without a grid), which the walk puts last.

    Best is the grid's band order (`grades_best_first`), not the alphabet. The key is
    `score - rank * stride` (`score + rank * stride` worst first) with `stride` wider than the
    rule set's score range, so one keyset cursor (key, id) pages it like a group's score.
    A score outside the range (left by an older rule set) is clamped into it for the key."""
    grades = grades_best_first(rule_set)
    if rule_set is None or not grades:
        return Value(None, output_field=BigIntegerField())
    floor, ceiling = int(rule_set.floor), int(rule_set.ceiling)
    stride = ceiling - floor + 1
    sign = 1 if worst_first else -1
    # Each grade once, at its best rank (two band names could concatenate alike).
    ranks: dict[str, int] = {}
    for rank, grade in enumerate(grades):
        ranks.setdefault(grade, rank)
    offset = Case(
        *(When(grade=grade, then=Value(sign * rank * stride)) for grade, rank in ranks.items()),
        default=Value(None),
        output_field=BigIntegerField(),
    )
    clamped = Greatest(Least(F("score"), Value(ceiling)), Value(floor))
    return ExpressionWrapper(
        Cast(clamped, BigIntegerField()) + offset, output_field=BigIntegerField()
    )


def _text(**kwargs: Any) -> django_filters.CharFilter:
    return django_filters.CharFilter(max_length=MAX_TEXT, **kwargs)


class LeadListFilter(django_filters.FilterSet):
    """The lead list's filters, the same for the page, the API and the CSV export. Every
    filter narrows `queryset` (the leads the user may see); none widens it.

    - `q`: every word must match the email, first or last name or company (contains, any
      case); a word that is a whole email address matches that address exactly.
    - `band`: the band, exactly when some lead has that exact band (then the band's score
      range from the live rule set lets the score index start at the band), else any case.
    - `persona`, `source`: any case. `stage`: lifecycle stage codes (comma-separated or the
      parameter repeated) or a preset: `open`, `won` (customers), `all`. `lifecycle_stage`:
      one stage code.
    - `owner`: "none" (unassigned), a user id (digits, as the page's picker sends) or a
      username (as the API took).
    - `open=true`: not customer, lost or disqualified (`open=false`: those only).
    - `new_mql=true`: untouched newly qualified leads (`new_mql_q`); `awaiting_feedback=true`:
      qualified open leads nobody has flagged yet (`awaiting_feedback_q`); `sla_due=true`:
      leads whose routing SLA deadline is near or past and the rep has not acted (`sla_due_q`).
    - `score_min`, `score_max`: inclusive score range (unscored leads never match).
    - `created_from`, `created_to`: calendar days in the site's time zone, both included;
      `created_after` (inclusive), `created_before` (exclusive): ISO 8601 instants.
    - `feedback` (good/bad), `reason`, `feedback_band`, `flagged_from`, `flagged_to`: leads
      with at least one feedback matching all of the given ones (the review's links).
    - `rule`: leads whose breakdown has an entry with that label.
    - `grade`: the grade (fit x engagement, e.g. `A1`), any case; `group` with
      `group_score_min` / `group_score_max`: that group's score in the inclusive range.
    - `ordering` (`-score` default, `score`, `queue`: the new MQLs first, then by score,
      `-group:NAME` / `group:NAME` for a group's score, leads without it last, or `grade` /
      `-grade`: the live grid's grades best / worst first by band order, each grade by score
      highest first, then id; leads without a grade of the live grid last),
      `page_size` (1..500), `cursor` or `after` (the keyset cursor from the previous page)
      say how to read the list.
    """

    q = _text(method="filter_search", label="search email, name, company")
    band = _text(method="filter_band")
    persona = _text(field_name="persona", lookup_expr="iexact")
    source = _text(field_name="source", lookup_expr="iexact")
    stage = _StageFilter(label="stages (comma-separated) or open, won, all")
    lifecycle_stage = django_filters.ChoiceFilter(
        field_name="lifecycle_stage", choices=LifecycleStage.choices
    )
    owner = _text(method="filter_owner", label="user id, username, or none")
    open = django_filters.BooleanFilter(method="filter_open")
    new_mql = django_filters.BooleanFilter(method="filter_new_mql")
    awaiting_feedback = django_filters.BooleanFilter(method="filter_awaiting_feedback")
    sla_due = django_filters.BooleanFilter(method="filter_sla_due")
    score_min = django_filters.NumberFilter(field_name="score", lookup_expr="gte")
    score_max = django_filters.NumberFilter(field_name="score", lookup_expr="lte")
    created_from = django_filters.DateFilter(
        method="filter_created_from", validators=[_in_filter_range]
    )
    created_to = django_filters.DateFilter(
        method="filter_created_to", validators=[_in_filter_range]
    )
    created_after = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", validators=[_in_filter_range]
    )
    created_before = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt", validators=[_in_filter_range]
    )
    # The feedback filters are applied together in filter_queryset (one feedback row must
    # match all of them), so their own methods do nothing.
    feedback = django_filters.ChoiceFilter(choices=Feedback.Verdict.choices, method="_later")
    reason = django_filters.ChoiceFilter(choices=Feedback.Reason.choices, method="_later")
    feedback_band = _text(method="_later")
    flagged_from = django_filters.DateFilter(method="_later", validators=[_in_filter_range])
    flagged_to = django_filters.DateFilter(method="_later", validators=[_in_filter_range])
    rule = _text(method="filter_rule")
    grade = _text(field_name="grade", lookup_expr="iexact")
    group = django_filters.CharFilter(max_length=100, method="_later")
    group_score_min = django_filters.NumberFilter(method="_later")
    group_score_max = django_filters.NumberFilter(method="_later")
    # How to read the list: validated here with the filters, applied by lead_list_page.
    ordering = django_filters.CharFilter(max_length=110, method="_later", validators=[_ordering])
    page_size = django_filters.NumberFilter(method="_later", min_value=1)
    cursor = _CursorFilter(method="_later")
    after = _CursorFilter(method="_later")

    class Meta:
        model = Lead
        fields: list[str] = []
        form = _LeadListForm

    def _later(self, queryset: QuerySet, name: str, value: Any) -> QuerySet:
        return queryset

    def filter_search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        words = Q()
        for term in value.split()[:5]:
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
        return queryset.filter(_search(words)) if words else queryset

    def filter_band(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        # An exact band keeps the (band, -score, -id) index usable; a case-insensitive match
        # (API callers typing "hot") cannot use it, so it is only the fallback. The existence
        # check is one index probe.
        if not Lead.objects.filter(band=value).exists():
            return queryset.filter(band__iexact=value)
        queryset = queryset.filter(band=value)
        bounds = band_score_bounds(value)
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
        return queryset

    def filter_owner(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        if value == "none":
            return queryset.filter(owner__isnull=True)
        if value.isdigit():
            return queryset.filter(owner_id=int(value))
        return queryset.filter(owner__username=value)

    def filter_open(self, queryset: QuerySet, name: str, value: bool | None) -> QuerySet:
        if value is None:
            return queryset
        closed = Q(lifecycle_stage__in=CLOSED_STAGES)
        return queryset.exclude(closed) if value else queryset.filter(closed)

    def filter_new_mql(self, queryset: QuerySet, name: str, value: bool | None) -> QuerySet:
        if value is None:
            return queryset
        return queryset.filter(new_mql_q()) if value else queryset.exclude(new_mql_q())

    def filter_awaiting_feedback(
        self, queryset: QuerySet, name: str, value: bool | None
    ) -> QuerySet:
        if value is None:
            return queryset
        wanted = awaiting_feedback_q()
        return queryset.filter(wanted) if value else queryset.exclude(wanted)

    def filter_sla_due(self, queryset: QuerySet, name: str, value: bool | None) -> QuerySet:
        if value is None:
            return queryset
        wanted = sla_due_q()
        return queryset.filter(wanted) if value else queryset.exclude(wanted)

    def filter_created_from(self, queryset: QuerySet, name: str, value: dt.date) -> QuerySet:
        return queryset.filter(created_at__gte=day_start(value))

    def filter_created_to(self, queryset: QuerySet, name: str, value: dt.date) -> QuerySet:
        return queryset.filter(created_at__lt=day_start(value + dt.timedelta(days=1)))

    def filter_rule(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(_has_rule_label(value))

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = super().filter_queryset(queryset)
        data = self.form.cleaned_data
        if data.get("group"):
            score = group_score(data["group"])
            queryset = queryset.alias(group_score=score).filter(group_score__isnull=False)
            if data.get("group_score_min") is not None:
                queryset = queryset.filter(group_score__gte=data["group_score_min"])
            if data.get("group_score_max") is not None:
                queryset = queryset.filter(group_score__lte=data["group_score_max"])
        names = ("feedback", "reason", "feedback_band", "flagged_from", "flagged_to")
        if not any(data.get(name) for name in names):
            return queryset
        feedback = Feedback.objects.filter(lead=OuterRef("pk"))
        if data.get("feedback"):
            feedback = feedback.filter(verdict=data["feedback"])
        if data.get("reason"):
            feedback = feedback.filter(reason=data["reason"])
        if data.get("feedback_band"):
            feedback = feedback.filter(band=data["feedback_band"])
        if data.get("flagged_from"):
            feedback = feedback.filter(created_at__gte=day_start(data["flagged_from"]))
        if data.get("flagged_to"):
            end = day_start(data["flagged_to"] + dt.timedelta(days=1))
            feedback = feedback.filter(created_at__lt=end)
        return queryset.filter(Exists(feedback))


# ---------------------------------------------------------------------------------------------
# The query


@dataclass(frozen=True)
class LeadListQuery:
    """A validated lead list request. `params` are its non-empty, valid parameters as given
    (for links, the export and the page's form), paging ones included; `filterset` is the
    bound, valid LeadListFilter that `lead_list` applies."""

    params: dict[str, str]
    filterset: LeadListFilter = field(compare=False, repr=False)
    descending: bool = True
    after: LeadCursor | None = None
    size: int = PAGE_SIZE
    # The work queue's order: the new MQLs first (`new_mql_q`), then the rest, each by score.
    queue: bool = False
    # Whether the work queue's default (open leads only) applies: no stage was asked for.
    default_open: bool = False

    @property
    def first(self) -> Q | None:
        """The leads that head the list (for `lead_list_page`'s `first`), None for a plain
        score order."""
        return new_mql_q() if self.queue else None

    @property
    def filter_params(self) -> dict[str, str]:
        """The parameters that choose leads (no sort, size or cursor)."""
        return {k: v for k, v in self.params.items() if k not in PAGING_PARAMS}

    @property
    def active(self) -> bool:
        return bool(self.filter_params)


def _param(params: Mapping[str, Any], name: str) -> str:
    """One parameter's text; a repeated `stage` (the page's multi-select) is joined with
    commas, any other repeated parameter is its last value."""
    if name == "stage" and hasattr(params, "getlist"):
        values = [str(v).strip() for v in params.getlist(name) if str(v).strip()]
        return ",".join(values)
    raw = params.get(name)
    return "" if raw is None else str(raw).strip()


def lead_list_query(
    params: Mapping[str, Any], *, lenient: bool = False, work_queue: bool = False
) -> tuple[LeadListQuery, dict[str, str]]:
    """The request's parameters validated into a LeadListQuery, and the problems found, by
    parameter. With `lenient` (the page) a parameter with a problem is left out and the rest
    still apply; otherwise (the API) the caller answers 400 when there are problems.

    `work_queue` (the page and its export) lists open leads when no stage parameter is given
    (`stage=all` lists every stage) and orders by `queue` unless another order is asked for.
    The default is applied to the filter set, not added to `params`, so links stay short and
    a cleared filter returns to it."""
    given = {}
    for name in LeadListFilter.base_filters:
        raw = _param(params, name)
        if raw:
            given[name] = raw

    def bind(given: dict[str, str]) -> LeadListFilter:
        defaults = {}
        if work_queue and not any(name in given for name in STAGE_PARAMS):
            defaults["stage"] = "open"
        return LeadListFilter({**defaults, **given}, queryset=Lead.objects.none())

    filterset = bind(given)
    errors = {name: " ".join(messages) for name, messages in filterset.errors.items()}
    if errors and lenient:
        given = {k: v for k, v in given.items() if k not in errors}
        filterset = bind(given)
        if not filterset.is_valid():  # cannot happen: every field validates on its own
            given, filterset = {}, bind({})
    data = filterset.form.cleaned_data if filterset.is_valid() else {}
    size = int(data["page_size"]) if data.get("page_size") else PAGE_SIZE
    ordering = data.get("ordering") or ("queue" if work_queue else "-score")
    query = LeadListQuery(
        params=given,
        filterset=filterset,
        descending=ordering_key(ordering)[1],
        after=data.get("cursor") or data.get("after"),
        size=min(size, MAX_PAGE_SIZE),
        queue=ordering == "queue",
        default_open=work_queue and not any(name in given for name in STAGE_PARAMS),
    )
    return query, errors


def lead_list(visible: QuerySet[Lead], query: LeadListQuery) -> QuerySet[Lead]:
    """`visible` (the leads the user may see: `selectors.visible_leads`) narrowed by the
    query's filters; never wider than `visible`. Raises ValueError for a query with errors
    (the API answers those with 400 before it gets here)."""
    if not query.filterset.is_valid():
        raise ValueError(f"invalid lead list query: {dict(query.filterset.errors)}")
    leads = query.filterset.filter_queryset(visible)
    ordering = query.filterset.form.cleaned_data.get("ordering")
    group, _ = ordering_key(ordering)
    if group is not None:
        # lead_list_page sorts (and pages) by SORT_KEY instead of the score when it is there.
        leads = leads.annotate(**{SORT_KEY: group_score(group)})
    elif ordering in GRADE_ORDERINGS:
        key = grade_sort_key(live_rule_set(), worst_first=ordering == "-grade")
        leads = leads.annotate(**{SORT_KEY: key})
    return leads


# ---------------------------------------------------------------------------------------------
# Pages


@dataclass
class LeadListPage:
    rows: list[dict[str, Any]]
    next_cursor: str | None
    has_more: bool
    is_first: bool


def _rows(queryset: QuerySet[Lead], fields: tuple[str, ...]) -> QuerySet:
    named = [f for f in fields if f != "model_probability"]
    extra = {}
    if "model_probability" in fields:
        extra["model_probability"] = F("probability_row__probability")
    return queryset.values(*named, **extra)


def _walk(
    queryset: QuerySet[Lead],
    after: LeadCursor | None,
    limit: int,
    descending: bool,
    fields: tuple[str, ...],
    key: str = "score",
) -> list[dict[str, Any]]:
    """Up to `limit` rows of `queryset` after `after` in `key` order (the score, or a
    group's score): two bounded index scans at most (scored, then unscored when the
    scored leads run out)."""
    rows: list[dict[str, Any]] = []
    before, order = ("lt", "-") if descending else ("gt", "")
    if after is None or after.score is not None:
        scored = queryset.filter(**{f"{key}__isnull": False})
        if after is not None:
            # score <= s (>= s ascending) bounds the index scan; the OR settles ties on id.
            scored = scored.filter(**{f"{key}__{before}e": after.score}).filter(
                Q(**{f"{key}__{before}": after.score}) | Q(**{f"id__{before}": after.id})
            )
        ordered = scored.order_by(f"{order}{key}", f"{order}id")
        rows = list(_rows(ordered, fields)[:limit])
    if len(rows) < limit:
        unscored = queryset.filter(**{f"{key}__isnull": True})
        if after is not None and after.score is None:
            unscored = unscored.filter(**{f"id__{before}": after.id})
        ordered = unscored.order_by(f"{order}id")
        rows += list(_rows(ordered, fields)[: limit - len(rows)])
    return rows


def lead_list_page(
    queryset: QuerySet[Lead],
    after: LeadCursor | None = None,
    size: int = PAGE_SIZE,
    *,
    descending: bool = True,
    fields: tuple[str, ...] = LIST_FIELDS,
    first: Q | None = None,
) -> LeadListPage:
    """One page of `queryset` as dicts of `fields`: `size` rows sorted by score (descending
    unless told otherwise) then id the same way, unscored leads after every scored one (by id
    the same way), starting after `after`. Never a COUNT.

    With `first` (the work queue: `LeadListQuery.first`), the leads matching it come first,
    then the others, each part in that order; every row then carries `first` (True for the
    leading part), and the cursor says which part it points into."""
    # A list sorted by a group's score (lead_list annotates SORT_KEY) pages by that key the
    # same way: leads without it come last, like unscored ones.
    key = SORT_KEY if SORT_KEY in queryset.query.annotations else "score"
    for needed in ("score", "id", key):
        if needed not in fields:
            fields = (needed, *fields)
    if first is None:
        rows = _walk(queryset, after, size + 1, descending, fields, key)
        marks = [after is not None and after.first] * len(rows)
    else:
        rows = []
        if after is None or after.first:
            rows = _walk(queryset.filter(first), after, size + 1, descending, fields, key)
        marks = [True] * len(rows)
        if len(rows) <= size:
            rest_after = None if after is None or after.first else after
            rest = _walk(
                queryset.exclude(first), rest_after, size + 1 - len(rows), descending, fields, key
            )
            rows += rest
            marks += [False] * len(rest)
        for row, mark in zip(rows, marks, strict=True):
            row["first"] = mark
    has_more = len(rows) > size
    rows = rows[:size]
    next_cursor = None
    if has_more:
        last = rows[-1]
        next_cursor = LeadCursor(
            score=last[key], id=last["id"], first=marks[size - 1] and first is not None
        ).encode()
    return LeadListPage(
        rows=rows, next_cursor=next_cursor, has_more=has_more, is_first=after is None
    )


def lead_after(
    queryset: QuerySet[Lead], lead: Lead, *, first: Q | None = None
) -> dict[str, Any] | None:
    """The lead that follows `lead` in `queryset`'s list order (the lead page's "next lead"),
    as a row of id, score, email, first and last name, or None when `lead` is the last.
    `lead` need not be in the list (it may have been flagged or closed since): the next one
    is then where it would have been."""
    in_first = first is not None and queryset.filter(first, pk=lead.pk).exists()
    after = LeadCursor(score=lead.score, id=lead.pk, first=in_first)
    # The few fields the link shows: no join to the model's probabilities.
    fields = ("id", "score", "email", "first_name", "last_name")
    page = lead_list_page(queryset, after, 1, first=first, fields=fields)
    return page.rows[0] if page.rows else None


def lead_list_pages(
    queryset: QuerySet[Lead],
    *,
    descending: bool = True,
    size: int = EXPORT_PAGE_SIZE,
    fields: tuple[str, ...] = LIST_FIELDS,
    first: Q | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Every page of `queryset` in list order, `size` rows at a time (the exports: short
    keyset queries instead of one cursor held open for the whole file)."""
    after = None
    while True:
        page = lead_list_page(
            queryset, after, size, descending=descending, fields=fields, first=first
        )
        if page.rows:
            yield page.rows
        if not page.has_more:
            return
        after = LeadCursor.decode(page.next_cursor or "")


def lead_list_csv_rows(
    queryset: QuerySet[Lead], *, descending: bool = True, first: Q | None = None
) -> Iterator[list]:
    """The queue export: the header, then one row per lead of `queryset` in list order (write
    them with `scoring.csv_safety.csv_lines`, which escapes every cell)."""
    yield [header for header, _ in EXPORT_COLUMNS]
    for rows in lead_list_pages(queryset, descending=descending, first=first):
        for row in rows:
            yield [row[name] for _, name in EXPORT_COLUMNS]


SCORE_EXPORT_COLUMNS = (
    "email",
    "external_id",
    "persona",
    "score",
    "band",
    "rule_set_version",
    "breakdown",
    "group_scores",
    "grade",
    "arm",
)


def score_export_rows(queryset: QuerySet[Lead] | None = None) -> Iterator[list[Any]]:
    """`manage.py export_scores`: the header SCORE_EXPORT_COLUMNS, then one row per lead of
    `queryset` (every lead by default) in list order: email, external_id (the lead's first
    identity, by source then id), persona, score, band, rule-set version, breakdown JSON,
    group scores (a JSON object, `{}` without groups), grade (empty without a grid) and
    the lead's arm in the running experiment (empty outside one).
    Write them with `scoring.csv_safety.csv_lines`."""
    yield list(SCORE_EXPORT_COLUMNS)
    fields = (
        "id",
        "score",
        "email",
        "persona",
        "band",
        "rule_set_version",
        "breakdown",
        "group_scores",
        "grade",
    )
    for rows in lead_list_pages(
        Lead.objects.all() if queryset is None else queryset, fields=fields
    ):
        external: dict[int, str] = {}
        for lead_id, external_id in (
            Identity.objects.filter(lead_id__in=[row["id"] for row in rows])
            .order_by("lead_id", "source", "id")
            .values_list("lead_id", "external_id")
        ):
            external.setdefault(lead_id, external_id)
        arms = running_arms([row["id"] for row in rows])
        for row in rows:
            yield [
                row["email"],
                external.get(row["id"], ""),
                row["persona"],
                row["score"],
                row["band"],
                row["rule_set_version"],
                json.dumps(row["breakdown"], separators=(",", ":")),
                json.dumps(row["group_scores"] or {}, separators=(",", ":")),
                row["grade"],
                arms.get(row["id"], ""),
            ]


# A rep's to-do counts stop here ("1,000+"): past it a count is no longer worth a visit to
# every one of the rep's qualified leads (1.2 s for a rep with 97,000 of them at 1M leads).
QUEUE_COUNT_CAP = 1000


@dataclass(frozen=True)
class QueueCounts:
    """A rep's to-do counts above the queue, each at most QUEUE_COUNT_CAP + 1 (`shown` says
    "1,000+" for that)."""

    new_mqls: int
    awaiting_feedback: int
    sla_due: int

    @property
    def shown(self) -> dict[str, str]:
        return {
            name: f"{QUEUE_COUNT_CAP:,}+" if count > QUEUE_COUNT_CAP else str(count)
            for name, count in dataclasses.asdict(self).items()
        }


def queue_counts(visible: QuerySet[Lead], *, now: dt.datetime | None = None) -> QueueCounts:
    """How many of `visible` (one rep's leads) are untouched new MQLs, how many qualified
    open leads still wait for feedback (the new MQLs included), and how many are SLA due
    (`sla_due_q`), each counted up to QUEUE_COUNT_CAP + 1. The page asks only for a rep,
    never for a million leads at once."""

    # Each count stops at the cap (a LIMIT under the COUNT), so its cost is bounded whatever
    # the rep owns; the feedback counts walk `lead_owner_mql_idx` (a rep's qualified leads).
    def count(condition: Q) -> int:
        return visible.filter(condition).values("id")[: QUEUE_COUNT_CAP + 1].count()

    qualified = Q(mql_at__isnull=False)
    return QueueCounts(
        new_mqls=count(qualified & new_mql_q(now)),
        awaiting_feedback=count(qualified & awaiting_feedback_q()),
        sla_due=count(sla_due_q(now)),
    )


# ---------------------------------------------------------------------------------------------
# What the page's pickers offer


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


def lead_list_choices() -> dict[str, list]:
    """Options for the page's filter pickers: the bands, personas and sources present in the
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


def lead_sort_choices(rule_set: RuleSet | None) -> list[tuple[str, str]]:
    """The page's sort picker: (ordering, label), the work queue first; the grade orders and
    each group's score when `rule_set` (the live one) has a grid or groups."""
    choices = [
        ("queue", "Work queue (new MQLs, then score)"),
        ("-score", "Score, highest first"),
        ("score", "Score, lowest first"),
    ]
    if grades_best_first(rule_set):
        choices += [("grade", "Grade, best first"), ("-grade", "Grade, worst first")]
    for group in (rule_set.groups or []) if rule_set is not None else []:
        name = group.get("name")
        if name:
            choices.append((f"-group:{name}", f"{name.capitalize()} score, highest first"))
    return choices


def visible_leads(user: Any):
    """The leads a user may see: all of them for roles with `view_all_leads`, otherwise only
    the leads the user owns. Callers that need 404 for another rep's lead rely on this."""
    queryset = Lead.objects.all()
    if can(user, "view_all_leads"):
        return queryset
    if can(user, "view_leads"):
        return queryset.filter(owner=user)
    return queryset.none()
