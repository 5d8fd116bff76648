"""Rescoring: bulk (a run of id-range chunks, fanned out to Celery) and real-time (the leads
that just received events, debounced).

Each chunk reads its lead columns with one query and its behaviour aggregates with another,
scores in NumPy, and writes scores, bands, breakdowns, history and transitions back set-based
(PostgreSQL: COPY into a temp table + one UPDATE ... FROM). Nothing here loops over leads
issuing queries."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from leadscoring.db import copy_in, db_datetime, is_postgres, parallel_connections_allowed
from scoring.engine import (
    BehaviourAggregates,
    CompiledRuleSet,
    ScoreResult,
    breakdowns_json,
    compile_ruleset,
    gc_paused,
    next_due_epochs,
    parse_ruleset,
    rule_event_plan,
    score_leads,
)
from scoring.jobs import (
    ACTIVE,
    UNREACHABLE_KEEP,
    JobStatus,
    dispatch,
    job_claim,
    job_fail,
    job_finish,
)
from scoring.kpis.rollup import conversion_bands_refresh
from scoring.ml.scoring import refresh_lead_probabilities, refresh_probabilities
from scoring.models import (
    LeadDue,
    LeadTransition,
    PendingRescore,
    RescoreChunk,
    RescoreRun,
    RuleSet,
    ScoreHistory,
)
from scoring.rule_inputs import (
    LeadColumns,
    LeadSelection,
    read_behaviour,
    read_lead_columns,
    read_next_events,
)
from scoring.selectors.rules import live_rule_set
from scoring.services.accounts import (
    accounts_after_rescore,
    accounts_refresh,
    assign_accounts,
    roll_up,
)
from scoring.services.grades import group_columns
from scoring.services.rulesets import ruleset_document
from scoring.threads import in_threads

logger = logging.getLogger(__name__)


CHUNK_TASK = "scoring.tasks.rescore_chunk_task"
PENDING_TASK = "scoring.tasks.rescore_pending_task"
CRM_PUSH_TASK = "integrations.tasks.push_scores_after_rescore_task"
RELAY_TASK = "integrations.tasks.outbox_relay_task"
# Chunks side by side in an inline run (`manage.py rescore`, the benchmark): as for model
# scoring, three keep both cores of a 2-core machine busy, each chunk in its own transaction.
INLINE_THREADS = 3


# Lead ids (ascending) and the time -> a probability per lead (NaN: none).
ProbabilitySource = Callable[[np.ndarray, dt.datetime], np.ndarray]


class NoLiveRuleSet(Exception):
    """There is no published rule set to score with."""


class RescoreBusy(Exception):
    """The live rule set kept changing while a write tried to lock it (publishes in a row)."""


SUPERSEDED_ERROR = (
    "Superseded: a newer rule set version was published before this run finished; the new "
    "version's own run rescores every lead."
)


@dataclass(frozen=True)
class ScoringOutcome:
    scored: int
    changed: int


# ---------------------------------------------------------------------------------------------
# Scoring a selection of leads


def compiled_rule_set(rule_set: RuleSet) -> CompiledRuleSet:
    """The engine's compiled form, cached per process by the rule set's content (the rows are
    read each time, which is cheap; parsing and compiling is what the cache saves). Keyed by
    content rather than by id and version, so a reused id can never serve a stale rule set."""
    document = ruleset_document(rule_set)
    return _compiled(json.dumps(document, sort_keys=True, default=str))


@lru_cache(maxsize=16)
def _compiled(document_json: str) -> CompiledRuleSet:
    return compile_ruleset(parse_ruleset(json.loads(document_json)))


def score_selection(
    compiled: CompiledRuleSet,
    selection: LeadSelection,
    as_of: dt.datetime,
    probability: ProbabilitySource | None = None,
) -> tuple[LeadColumns, ScoreResult]:
    """Read and score the selected leads without writing anything (used by the preview and
    the experiments' shadow scores too)."""
    leads, result, _ = _score_with_behaviour(compiled, selection, as_of, probability)
    return leads, result


def _score_with_behaviour(
    compiled: CompiledRuleSet,
    selection: LeadSelection,
    as_of: dt.datetime,
    probability: ProbabilitySource | None = None,
) -> tuple[LeadColumns, ScoreResult, BehaviourAggregates]:
    leads = read_lead_columns(compiled, selection, as_of)
    if probability is not None:
        # An experiment's challenger model: its probabilities instead of the active model's.
        leads = dataclasses.replace(leads, model_probability=probability(leads.ids, as_of))
    behaviour = read_behaviour(compiled, selection, leads.ids, leads.created_epoch, as_of)
    result = score_leads(compiled, leads.fields, behaviour, leads.model_probability)
    return leads, result, behaviour


# Reading and writing a chunk builds a few hundred thousand short-lived Python values; with the
# collector on, they set off repeated full collections (as in the preview, measured).
@gc_paused()
def rescore_selection(
    rule_set: RuleSet,
    selection: LeadSelection,
    as_of: dt.datetime,
    *,
    accounts: bool = True,
) -> ScoringOutcome:
    """Score the selected leads with `rule_set` as of `as_of` and write everything back.
    Must run inside a transaction (the caller's), so the write is all or nothing.
    While an experiment runs, its leads are scored by both arms and store their own arm's
    score (`scoring.services.experiments.experiment_rescore`). With `accounts`, the leads'
    accounts and their roll-up too (a bulk chunk assigns them in a transaction of its own, and
    its run rolls every account up at its end)."""
    # Imported here: the experiments service scores its arms through this module.
    from scoring.services.experiments import experiment_rescore

    outcome = experiment_rescore(rule_set, selection, as_of)
    if outcome is None:
        outcome = rescore_arm(rule_set, selection, as_of)
    if accounts:
        accounts_after_rescore(compiled_rule_set(rule_set).spec.account, selection)
    return outcome


def rescore_arm(
    rule_set: RuleSet,
    selection: LeadSelection,
    as_of: dt.datetime,
    probability: ProbabilitySource | None = None,
) -> ScoringOutcome:
    """`rescore_selection`'s write path for one rule set (and, for a model experiment's
    challenger arm, another model's probabilities), with no experiment applied."""
    compiled = compiled_rule_set(rule_set)
    leads, result, behaviour = _score_with_behaviour(compiled, selection, as_of, probability)
    # Leads created after as_of are not scored; they come due when they are created.
    _due_on_creation(selection, as_of)
    if leads.n == 0:
        return ScoringOutcome(0, 0)
    new_band = np.array([b or "" for b in result.bands], dtype=object)
    new_persona = np.array([p or "" for p in result.personas], dtype=object)
    old_band = np.array([b or "" for b in leads.band], dtype=object)
    old_persona = np.array([p or "" for p in leads.persona], dtype=object)
    scores = result.scores.astype(np.int64)
    changed = (leads.score != scores) | (old_band != new_band) | (old_persona != new_persona)

    qualified, fired_up, fired_down = _qualification(compiled, leads, result, new_persona)
    set_mql = fired_up & ~leads.has_mql_at
    entries = breakdowns_json(result)
    due = _due_times(compiled, selection, leads, result, behaviour, as_of)

    _write_scores(
        leads.ids,
        scores,
        new_band,
        new_persona,
        entries,
        group_columns(result),
        qualified,
        set_mql,
        rule_set.version,
        as_of,
        due,
    )
    _write_history(rule_set, selection, leads.ids, scores, new_band, as_of)
    _write_transitions(rule_set, leads, scores, old_band, new_band, fired_up, fired_down, as_of)
    return ScoringOutcome(scored=leads.n, changed=int(changed.sum()))


def _qualification(
    compiled: CompiledRuleSet, leads: LeadColumns, result: ScoreResult, persona: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The qualified state with hysteresis: a lead qualifies when its score reaches the
    qualifying band's minimum (so a lead that jumps straight to a higher band qualifies too),
    and stops only when its score falls more than QUALIFY_HYSTERESIS_POINTS below it, so a lead
    hovering at the threshold does not fire a transition each time it wobbles."""
    threshold = np.full(leads.n, _qualifying_min_score(compiled, None))
    for scope in compiled.band_tables:
        if scope is not None:
            threshold[persona == scope] = _qualifying_min_score(compiled, scope)
    margin = settings.QUALIFY_HYSTERESIS_POINTS
    old = leads.qualified
    stays = old & ~(result.scores < threshold - margin)
    becomes = ~old & (result.scores >= threshold)
    new = stays | becomes
    return new, new & ~old, old & ~new


def _qualifying_min_score(compiled: CompiledRuleSet, scope: str | None) -> float:
    table = compiled.band_tables.get(scope)
    if table is None or not table.qualifies.any():
        return math.inf
    return float(table.min_scores[table.qualifies][0])


def _write_scores(
    ids: np.ndarray,
    scores: np.ndarray,
    bands: np.ndarray,
    personas: np.ndarray,
    entries: list[str],
    groups: tuple[list[str], list[str], list[str]],
    qualified: np.ndarray,
    set_mql: np.ndarray,
    version: int | None,
    as_of: dt.datetime,
    due: list[str | None],
) -> None:
    """The scores, group scores, group bands and grades (`group_columns`) in one UPDATE, and
    each lead's due time (`LeadDue`, from the same buffer). One row version per
    lead: a lead whose indexed columns (score, band, grade, stage) stay as they were is
    updated in place (a HOT update, no index entries; the lead table keeps room on each page
    for it, see migration 0014)."""
    scored_at = timezone.now()
    group_scores, group_bands, grades = groups
    stage_sql = (
        "lifecycle_stage = CASE WHEN t.set_mql AND l.lifecycle_stage = 'lead' "
        "THEN 'mql' ELSE l.lifecycle_stage END"
    )
    if is_postgres():
        rows = "".join(
            f"{i}\t{s}\t{_copy_text(b)}\t{_copy_text(p)}\t{_copy_text(e)}\t{_copy_text(gs)}"
            f"\t{_copy_text(gb)}\t{_copy_text(g)}\t{'t' if q else 'f'}\t{'t' if m else 'f'}"
            f"\t{d or NULL_COPY}\n"
            for i, s, b, p, e, gs, gb, g, q, m, d in zip(
                ids.tolist(),
                scores.tolist(),
                bands,
                personas,
                entries,
                group_scores,
                group_bands,
                grades,
                qualified,
                set_mql,
                due,
                strict=True,
            )
        )
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TEMP TABLE IF NOT EXISTS rescore_buffer (id bigint, score int, band text,"
                " persona text, breakdown jsonb, group_scores jsonb, group_bands jsonb,"
                " grade text, qualified bool, set_mql bool, due timestamptz) ON COMMIT DROP"
            )
            cursor.execute("TRUNCATE rescore_buffer")
            with copy_in(
                cursor,
                "rescore_buffer",
                [
                    "id",
                    "score",
                    "band",
                    "persona",
                    "breakdown",
                    "group_scores",
                    "group_bands",
                    "grade",
                    "qualified",
                    "set_mql",
                    "due",
                ],
            ) as copy:
                copy.write(rows)
            # A fresh temp table has no statistics; without them the planner may pick a nested
            # loop over the leads table for the UPDATE below. The join needs only the ids'
            # (sampling the breakdowns too cost more than the UPDATE).
            cursor.execute("ANALYZE rescore_buffer (id)")
            cursor.execute(
                "UPDATE scoring_lead AS l SET score = t.score, band = t.band, persona = t.persona,"
                " breakdown = t.breakdown, group_scores = t.group_scores,"
                " group_bands = t.group_bands, grade = t.grade, qualified = t.qualified,"
                " rule_set_version = %s, scored_at = %s,"
                " mql_at = CASE WHEN t.set_mql THEN %s ELSE l.mql_at END, "
                + stage_sql
                # The explicit id range keeps the planner from walking the primary key from
                # the first lead for every chunk.
                + " FROM rescore_buffer t WHERE l.id = t.id AND l.id BETWEEN %s AND %s",
                [version, scored_at, as_of, int(ids[0]), int(ids[-1])],
            )
            # The due times as an UPDATE of the rows that changed and an INSERT of the missing
            # ones, both joins: an upsert (INSERT ... ON CONFLICT) probes the index row by row,
            # three times as slow for a chunk. The id range again keeps to the chunk's rows.
            chunk_range = [int(ids[0]), int(ids[-1])]
            cursor.execute(
                "UPDATE scoring_leaddue AS d SET due_at = t.due FROM rescore_buffer t"
                " WHERE d.lead_id = t.id AND d.lead_id BETWEEN %s AND %s"
                " AND d.due_at IS DISTINCT FROM t.due",
                chunk_range,
            )
            cursor.execute(
                "INSERT INTO scoring_leaddue (lead_id, due_at) SELECT t.id, t.due"
                " FROM rescore_buffer t LEFT JOIN scoring_leaddue d ON d.lead_id = t.id"
                " AND d.lead_id BETWEEN %s AND %s WHERE d.lead_id IS NULL",
                chunk_range,
            )
        return
    # SQLite (the embedded default): one executemany, still no per-lead ORM round trip.
    with connection.cursor() as cursor:
        cursor.executemany(
            "UPDATE scoring_lead SET score = %s, band = %s, persona = %s, breakdown = %s,"
            " group_scores = %s, group_bands = %s, grade = %s,"
            " qualified = %s, rule_set_version = %s, scored_at = %s,"
            " mql_at = CASE WHEN %s THEN %s ELSE mql_at END,"
            " lifecycle_stage = CASE WHEN %s AND lifecycle_stage = 'lead' THEN 'mql'"
            " ELSE lifecycle_stage END WHERE id = %s",
            [
                (s, b, p, e, gs, gb, g, bool(q), version, scored_at, bool(m), as_of, bool(m), i)
                for i, s, b, p, e, gs, gb, g, q, m in zip(
                    ids.tolist(),
                    scores.tolist(),
                    bands,
                    personas,
                    entries,
                    group_scores,
                    group_bands,
                    grades,
                    qualified,
                    set_mql,
                    strict=True,
                )
            ],
        )
        cursor.executemany(
            UPSERT_DUE_SQL.format(rows="VALUES (%s, %s)"),
            list(zip(ids.tolist(), due, strict=True)),
        )


NULL_COPY = "\\N"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# The due time of each scored lead; a lead's row is replaced when it changed (most due times
# are moments a decay or window crosses a line, the same from one rescore to the next: an
# unchanged row is not rewritten). `rows` is a SELECT or VALUES of (lead_id, due_at). The
# WHERE true lets SQLite parse a SELECT's upsert; both databases know IS DISTINCT FROM.
UPSERT_DUE_SQL = (
    "INSERT INTO scoring_leaddue (lead_id, due_at) SELECT * FROM ({rows}) AS due_rows"
    " WHERE true ON CONFLICT (lead_id) DO UPDATE SET due_at = excluded.due_at"
    " WHERE scoring_leaddue.due_at IS DISTINCT FROM excluded.due_at"
)


def _due_times(
    compiled: CompiledRuleSet,
    selection: LeadSelection,
    leads: LeadColumns,
    result: ScoreResult,
    behaviour: BehaviourAggregates,
    as_of: dt.datetime,
) -> list[str | None]:
    """Each scored lead's due time (see `scoring.engine.next_due_epochs`) as ISO text in UTC,
    None for never: floored to the microsecond a timestamp holds (early is harmless), and at
    least a microsecond after as_of, so a second due run at the same time finds nothing."""
    upcoming = read_next_events(rule_event_plan(compiled), selection, leads.ids, as_of)
    if behaviour.next_event is not None:
        upcoming = np.fmin(upcoming, behaviour.next_event)
    timed = BehaviourAggregates(
        behaviour.counts,
        behaviour.decayed,
        behaviour.days_since_activity,
        behaviour.window_exits,
        upcoming,
    )
    epochs = next_due_epochs(result, timed, as_of.timestamp())
    never = np.isnan(epochs)
    # Exact integer microseconds: a float timestamp can land one microsecond short of as_of.
    as_of_us = (as_of - EPOCH) // dt.timedelta(microseconds=1)
    micros = np.floor(np.where(never, 0.0, epochs) * 1_000_000).astype(np.int64)
    micros = np.maximum(micros, as_of_us + 1)
    texts = np.datetime_as_string(micros.astype("datetime64[us]"), unit="us").tolist()
    if is_postgres():
        texts = [f"{text}+00:00" for text in texts]
    else:
        # As Django stores a datetime there (naive UTC, no zero fraction), so that text
        # comparisons order like time.
        texts = [text.replace("T", " ").removesuffix(".000000") for text in texts]
    return [None if gone else text for text, gone in zip(texts, never.tolist(), strict=True)]


def _due_on_creation(selection: LeadSelection, as_of: dt.datetime) -> None:
    """Leads of the selection created after `as_of` are not scored as of it; they come due
    when they are created (a rescore at a later time scores them, as a full one would)."""
    where, params = selection.where("id")
    with connection.cursor() as cursor:
        cursor.execute(
            UPSERT_DUE_SQL.format(
                rows=f"SELECT id, created_at FROM scoring_lead WHERE {where} AND created_at > %s"
            ),
            [*params, db_datetime(as_of)],
        )


def _previous_timeline(selection: LeadSelection, as_of: dt.datetime) -> dict[int, tuple[str, int]]:
    """Each selected lead's band and score in its timeline as of `as_of` (the last history row
    at or before it), so a rescore of the past lands where it belongs."""
    where, params = selection.where("lead_id")
    if is_postgres():
        sql = (
            "SELECT DISTINCT ON (lead_id) lead_id, band, score FROM scoring_scorehistory "
            f"WHERE {where} AND as_of <= %s ORDER BY lead_id, as_of DESC, id DESC"
        )
    else:
        sql = (
            "SELECT lead_id, band, score FROM (SELECT lead_id, band, score, ROW_NUMBER() OVER "
            "(PARTITION BY lead_id ORDER BY as_of DESC, id DESC) AS position "
            f"FROM scoring_scorehistory WHERE {where} AND as_of <= %s) WHERE position = 1"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, as_of])
        return {lead_id: (band, score) for lead_id, band, score in cursor.fetchall()}


def _write_history(
    rule_set: RuleSet,
    selection: LeadSelection,
    ids: np.ndarray,
    scores: np.ndarray,
    bands: np.ndarray,
    as_of: dt.datetime,
) -> None:
    previous = _previous_timeline(selection, as_of)
    delta = settings.SCORE_HISTORY_DELTA
    recorded_at = timezone.now()
    rows = []
    for lead_id, score, band in zip(ids.tolist(), scores.tolist(), bands, strict=True):
        before = previous.get(lead_id)
        if before is None or before[0] != band or abs(before[1] - score) >= delta:
            rows.append((lead_id, score, band, "" if before is None else before[0]))
    if not rows:
        return
    if is_postgres():
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(
                "COPY scoring_scorehistory (lead_id, as_of, score, band, previous_band,"
                " rule_set_version, recorded_at) FROM STDIN"
            ) as copy,
        ):
            for lead_id, score, band, previous_band in rows:
                copy.write_row(
                    (lead_id, as_of, score, band, previous_band, rule_set.version, recorded_at)
                )
        return
    ScoreHistory.objects.bulk_create(
        [
            ScoreHistory(
                lead_id=lead_id,
                as_of=as_of,
                score=score,
                band=band,
                previous_band=previous_band,
                rule_set_version=rule_set.version,
                recorded_at=recorded_at,
            )
            for lead_id, score, band, previous_band in rows
        ],
        batch_size=2000,
    )


def _write_transitions(
    rule_set: RuleSet,
    leads: LeadColumns,
    scores: np.ndarray,
    old_band: np.ndarray,
    new_band: np.ndarray,
    fired_up: np.ndarray,
    fired_down: np.ndarray,
    as_of: dt.datetime,
) -> None:
    """The outbox rows, in the same transaction as the scores they describe; the relay
    (integrations.outbound) is kicked once they commit. A first band (a lead never scored) is
    not a band change."""
    transitions = []
    band_moved = (old_band != new_band) & (old_band != "")
    for kind, mask in (
        (LeadTransition.Kind.QUALIFIED, fired_up),
        (LeadTransition.Kind.UNQUALIFIED, fired_down),
        (LeadTransition.Kind.BAND_CHANGED, band_moved),
    ):
        for position in np.flatnonzero(mask).tolist():
            transitions.append(
                LeadTransition(
                    lead_id=int(leads.ids[position]),
                    kind=kind,
                    from_band=old_band[position],
                    to_band=new_band[position],
                    score=int(scores[position]),
                    rule_set_version=rule_set.version,
                    occurred_at=as_of,
                )
            )
    if transitions:
        LeadTransition.objects.bulk_create(transitions, batch_size=2000)
        dispatch(RELAY_TASK, unreachable=UNREACHABLE_KEEP)  # the beat sweep covers an outage


def _copy_text(value: str) -> str:
    """Escape a value for PostgreSQL's COPY text format."""
    # Most values (a breakdown's JSON without escapes, a band name) need nothing: four scans
    # for the special characters cost less than four replacements building new strings.
    if "\\" not in value and "\t" not in value and "\n" not in value and "\r" not in value:
        return value
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


# ---------------------------------------------------------------------------------------------
# Bulk runs


def rescore_all(
    *,
    rule_set: RuleSet | None = None,
    as_of: dt.datetime | None = None,
    user: Any = None,
    inline: bool = True,
) -> RescoreRun:
    """Rescore every lead with `rule_set` (default: the live one) as of `as_of` (default now).

    Leads are split into id-range chunks. With `inline` the chunks run here, one after another
    (management commands); otherwise each chunk is a Celery task, so several workers share
    the work. A run already queued or running for the same rule set is returned instead of
    starting a second one (a database constraint allows one active run per rule set); with
    `as_of` given, the run under way is superseded by the new one instead. Raises
    NoLiveRuleSet when there is nothing to score with."""
    rule_set = rule_set or live_rule_set()
    if rule_set is None:
        raise NoLiveRuleSet("No rule set is published yet: import or publish one first.")
    with transaction.atomic():
        active = (
            RescoreRun.objects.select_for_update()
            .filter(rule_set=rule_set, status__in=ACTIVE)
            .first()
        )
        if active is not None and as_of is not None:
            # A rescore as of a given time replaces the run under way: it rescores every
            # lead too, and the latest request wins.
            runs_supersede(RescoreRun.objects.filter(pk=active.pk))
            active = None
        if active is None:
            try:
                # The partial unique index `one_active_run_per_rule_set` decides between two
                # callers that both found no active run: the second waits for the first's
                # commit, fails here, and joins the run the first created.
                with transaction.atomic():
                    run = RescoreRun.objects.create(
                        rule_set=rule_set,
                        as_of=as_of or timezone.now(),
                        requested_by=user if getattr(user, "is_authenticated", False) else None,
                    )
            except IntegrityError:
                active = RescoreRun.objects.get(rule_set=rule_set, status__in=ACTIVE)
        if active is not None:
            # Join the run under way instead of writing the same scores twice.
            pending = list(active.chunks.exclude(status=RescoreChunk.Status.DONE))
            if inline:
                _rescore_chunks_here([chunk.pk for chunk in pending])
                active.refresh_from_db()
            return active
        chunks = _plan_chunks(run)
        run.progress_total = len(chunks)
        if not chunks:
            run.status = RescoreRun.Status.DONE
            run.started_at = run.finished_at = timezone.now()
        run.save()
        logger.info("rescore.run.created run=%s chunks=%s", run.pk, len(chunks))
        if not inline and chunks:
            _enqueue_chunks(run, [chunk.pk for chunk in chunks])
    if inline:
        _rescore_chunks_here([chunk.pk for chunk in chunks])
        run.refresh_from_db()
    return run


def _rescore_chunks_here(chunk_ids: Sequence[int]) -> None:
    """Run these chunks in this process (an inline run): side by side in `INLINE_THREADS`
    threads where they may have connections of their own, else one after another. Each chunk
    is its own transaction either way, as it is on a worker."""
    if parallel_connections_allowed() and len(chunk_ids) > 1:
        in_threads(chunk_ids, rescore_chunk, workers=INLINE_THREADS, name="rescore")
        return
    for chunk_id in chunk_ids:
        rescore_chunk(chunk_id)


def _plan_chunks(run: RescoreRun) -> list[RescoreChunk]:
    """Even id ranges of about RESCORE_CHUNK_SIZE leads (ids are dense: leads are bulk-inserted)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT MIN(id), MAX(id), COUNT(*) FROM scoring_lead")
        low, high, count = cursor.fetchone()
    if not count:
        return []
    size = settings.RESCORE_CHUNK_SIZE
    n_chunks = max(1, math.ceil(count / size))
    span = math.ceil((high - low + 1) / n_chunks)
    chunks = [
        RescoreChunk(run=run, first_lead_id=start, last_lead_id=min(start + span - 1, high))
        for start in range(low, high + 1, span)
    ]
    return RescoreChunk.objects.bulk_create(chunks)


def _enqueue_chunks(run: RescoreRun, chunk_ids: Sequence[int]) -> None:
    """One task per chunk, after the commit. A broker outage leaves the chunks (with their
    task recorded, for a re-send) and the run queued, saying so on the run's page."""
    for chunk_id in chunk_ids:
        dispatch(
            CHUNK_TASK,
            [chunk_id],
            jobs=RescoreChunk.objects.filter(pk=chunk_id),
            waiting=RescoreRun.objects.filter(pk=run.pk),
            unreachable=UNREACHABLE_KEEP,
        )


def rescore_chunk(chunk_id: int) -> ScoringOutcome:
    """Score one chunk and record it, in one transaction. Safe to run twice: the chunk row is
    locked, and a chunk already done is skipped."""
    # The run goes to running in its own statement, committed at once: inside the chunk's
    # transaction the first chunk would hold the run's row until its commit, and every chunk
    # running beside it would wait for that.
    job_claim(RescoreRun.objects.filter(chunks__pk=chunk_id))
    first_id, last_id, status = RescoreChunk.objects.values_list(
        "first_lead_id", "last_lead_id", "status"
    ).get(pk=chunk_id)
    if status in ACTIVE or status == RescoreChunk.Status.FAILED:
        # The leads' accounts in a short transaction of their own: chunks side by side create
        # the same accounts (a domain's contacts are in every chunk), and inside the chunk's
        # transaction each would wait for the other's whole chunk to commit. Which account a
        # lead belongs to does not depend on the rule set, so a chunk fenced off below has
        # written nothing it should not have.
        with transaction.atomic():
            assign_accounts(LeadSelection(first_id, last_id))
    with transaction.atomic():
        # The rule set's lock before the chunk's, in the order a publish takes them (rule
        # set, then the runs and chunks it supersedes), so the two cannot deadlock.
        rule_set_id = RescoreChunk.objects.values_list("run__rule_set_id", flat=True).get(
            pk=chunk_id
        )
        live = rule_set_is_live(rule_set_id)
        # Only the chunk's row (`of`): locking the joined run and rule set too would make
        # every chunk of a run wait for the one before it, and upgrade the shared lock above.
        chunk = (
            RescoreChunk.objects.select_for_update(of=("self",))
            .select_related("run__rule_set")
            .get(pk=chunk_id)
        )
        if chunk.status == RescoreChunk.Status.DONE:
            return ScoringOutcome(chunk.leads_scored, chunk.leads_changed)
        run = chunk.run
        if chunk.status == JobStatus.SUPERSEDED or not live:
            # The fence: a chunk of a superseded run (redelivered late, or running while a
            # newer version was published) writes nothing; the live version's run covers it.
            runs_supersede(RescoreRun.objects.filter(pk=run.pk))
            logger.info("rescore.chunk.superseded run=%s chunk=%s", run.pk, chunk_id)
            return ScoringOutcome(0, 0)
        # The active model's probability first, so the rule set's blend uses a fresh one.
        refresh_probabilities(chunk.first_lead_id, chunk.last_lead_id, as_of=run.as_of)
        outcome = rescore_selection(
            run.rule_set,
            LeadSelection(chunk.first_lead_id, chunk.last_lead_id),
            run.as_of,
            accounts=False,  # assigned above; every account rolled up when the run is done
        )
        # The chunk row is locked, so it goes from queued (or failed, when a joining rescore
        # runs it again) straight to done: nobody could see it running.
        job_finish(
            RescoreChunk.objects.filter(pk=chunk.pk),
            statuses=(*ACTIVE, RescoreChunk.Status.FAILED),
            attempts=F("attempts") + 1,
            leads_scored=outcome.scored,
            leads_changed=outcome.changed,
            error="",
        )
        RescoreRun.objects.filter(pk=run.pk).update(
            progress_done=F("progress_done") + 1,
            heartbeat_at=timezone.now(),
            leads_scored=F("leads_scored") + outcome.scored,
            leads_changed=F("leads_changed") + outcome.changed,
        )
        finished = job_finish(
            RescoreRun.objects.filter(pk=run.pk, progress_done=F("progress_total"))
        )
    logger.info(
        "rescore.chunk.done run=%s chunk=%s scored=%s changed=%s",
        run.pk,
        chunk_id,
        outcome.scored,
        outcome.changed,
    )
    if finished:
        logger.info("rescore.run.finished run=%s", run.pk)
        # A rescore of the past may have added history before some conversions.
        conversion_bands_refresh()
        accounts_refresh(compiled_rule_set(run.rule_set).spec.account)
        _enqueue_crm_push(run.pk)
    return outcome


def rule_set_is_live(rule_set_id: int) -> bool:
    """Whether the rule set is the live one, read inside the caller's write transaction and
    locked until it commits (PostgreSQL: FOR SHARE), so a publish cannot archive it between
    this check and the write: the publish waits for the write, or the write sees the archive.
    (SQLite takes the write lock at BEGIN IMMEDIATE, which serialises the two anyway.)"""
    sql = "SELECT 1 FROM scoring_ruleset WHERE id = %s AND status = %s"
    if is_postgres():
        sql += " FOR SHARE"
    with connection.cursor() as cursor:
        cursor.execute(sql, [rule_set_id, RuleSet.Status.PUBLISHED])
        return cursor.fetchone() is not None


def live_rule_set_for_write() -> RuleSet | None:
    """The live rule set, locked as `rule_set_is_live` locks it, for a write in the caller's
    transaction. A publish that commits between reading the live rule set and locking it
    makes the lock find it archived: read the new one and try again."""
    for _ in range(5):
        rule_set = live_rule_set()
        if rule_set is None or rule_set_is_live(rule_set.pk):
            return rule_set
    raise RescoreBusy("The live rule set kept changing; try again.")


def runs_supersede(runs: QuerySet[RescoreRun]) -> int:
    """End the active runs among `runs` (and their unfinished chunks) as superseded: their
    rule set is no longer live. Returns how many runs this ended."""
    ids = list(runs.filter(status__in=ACTIVE).values_list("pk", flat=True))
    if not ids:
        return 0
    job_finish(
        RescoreChunk.objects.filter(run_id__in=ids),
        status=JobStatus.SUPERSEDED,
        error=SUPERSEDED_ERROR,
    )
    ended = job_finish(
        RescoreRun.objects.filter(pk__in=ids), status=JobStatus.SUPERSEDED, error=SUPERSEDED_ERROR
    )
    logger.info("rescore.runs.superseded runs=%s", ",".join(map(str, ids)))
    return ended


def _enqueue_crm_push(run_id: int) -> None:
    """After the run's last commit: the CRMs receive the scores it changed. A broker outage
    must not fail the rescore (dispatch only logs it); the next run pushes whatever is still
    unpushed."""
    dispatch(CRM_PUSH_TASK, [run_id])


def rescore_chunk_failed(chunk_id: int, error: str, *, final: bool) -> None:
    """Record a chunk's failure; a final one fails its run (the other chunks keep theirs)."""
    chunk = RescoreChunk.objects.filter(pk=chunk_id)
    if not final:
        chunk.update(attempts=F("attempts") + 1, error=error[:2000], status=JobStatus.QUEUED)
        return
    job_fail(chunk, error, attempts=F("attempts") + 1)
    run_id = chunk.values_list("run_id", flat=True).first()
    job_fail(RescoreRun.objects.filter(pk=run_id), error)
    logger.error("rescore.chunk.failed chunk=%s run=%s", chunk_id, run_id)


@dataclass(frozen=True)
class RunsSweep:
    superseded: int
    resent: int
    failed: int


def rescore_runs_sweep(now: dt.datetime | None = None) -> RunsSweep:
    """Beat (every RESCORE_SWEEP_SECONDS): keep bulk runs moving, so that none stays queued
    or running for ever.

    - Active runs of a rule set that is no longer live end superseded.
    - A run that has made no progress for RESCORE_STALL_SECONDS (a chunk's message was lost:
      the worker's main process was killed, the broker restarted or was down when the run
      started) has its unfinished chunks sent again, each at most once per that period. A
      chunk already done is skipped by its task, so a late redelivery of the lost message
      does nothing.
    - A chunk sent RESCORE_CHUNK_MAX_ATTEMPTS times without finishing fails, failing its run
      with a message saying so.

    So with a worker and the broker reachable, a run ends (done, failed or superseded) at
    most RESCORE_STALL_SECONDS x (RESCORE_CHUNK_MAX_ATTEMPTS + 1) plus one sweep after its
    last progress."""
    now = now or timezone.now()
    superseded = runs_supersede(
        RescoreRun.objects.exclude(rule_set__status=RuleSet.Status.PUBLISHED)
    )
    cutoff = now - dt.timedelta(seconds=settings.RESCORE_STALL_SECONDS)
    stalled_runs = (
        RescoreRun.objects.filter(status__in=ACTIVE)
        .alias(last=Coalesce("heartbeat_at", "created_at"))
        .filter(last__lt=cutoff)
    )
    stalled_chunks = (
        RescoreChunk.objects.filter(run__in=stalled_runs, status=JobStatus.QUEUED)
        .alias(last=Coalesce("heartbeat_at", "created_at"))
        .filter(last__lt=cutoff)
        .order_by("pk")
    )
    limit = settings.RESCORE_CHUNK_MAX_ATTEMPTS
    resent = failed = 0
    for chunk_id, run_id, attempts in stalled_chunks.values_list("pk", "run_id", "attempts"):
        if attempts >= limit:
            rescore_chunk_failed(
                chunk_id,
                f"Stalled: sent {attempts} times without finishing; rescore again from the "
                "rule set's page.",
                final=True,
            )
            failed += 1
            continue
        with transaction.atomic():
            chunk = RescoreChunk.objects.filter(pk=chunk_id, status=JobStatus.QUEUED)
            # heartbeat_at of a queued chunk: when it was last sent.
            if chunk.update(attempts=F("attempts") + 1, heartbeat_at=now):
                dispatch(
                    CHUNK_TASK,
                    [chunk_id],
                    jobs=chunk,
                    waiting=RescoreRun.objects.filter(pk=run_id),
                    unreachable=UNREACHABLE_KEEP,
                )
                resent += 1
    if superseded or resent or failed:
        logger.warning(
            "rescore.runs.swept superseded=%s resent=%s failed=%s", superseded, resent, failed
        )
    return RunsSweep(superseded, resent, failed)


# ---------------------------------------------------------------------------------------------
# Time-based (due) rescoring


@dataclass(frozen=True)
class DueOutcome:
    rescored: int
    changed: int
    chunks: int
    rule_set_version: int | None
    as_of: dt.datetime


def rescore_due(as_of: dt.datetime | None = None) -> DueOutcome:
    """Rescore, as of `as_of` (default now), every lead whose score, band or persona may have
    changed with time alone since its last scoring (its `LeadDue.due_at` at or before
    `as_of`), in chunks of RESCORE_CHUNK_SIZE, each its own transaction, with the same writes
    as any rescore (scores, due times, history, MQL transitions, as of `as_of`). Afterwards every
    lead scores as `rescore_all` would as of the same time, and a second run finds nothing due.
    The due leads come from the index on `due_at`, not from reading leads or events. The
    accounts the chunks touched are rolled up once, at the end.
    Raises NoLiveRuleSet when there is nothing to score with."""
    rule_set = live_rule_set()
    if rule_set is None:
        raise NoLiveRuleSet("No rule set is published yet: import or publish one first.")
    as_of = as_of or timezone.now()
    # Sorted here, not by the query: ordered by lead_id, the planner may walk the primary key
    # through every row instead of taking the few due ones from the due_at index.
    due_ids = sorted(LeadDue.objects.filter(due_at__lte=as_of).values_list("lead_id", flat=True))
    size = settings.RESCORE_CHUNK_SIZE
    rescored = changed = chunks = 0
    touched: set[int] = set()
    for start in range(0, len(due_ids), size):
        selection = LeadSelection(ids=tuple(due_ids[start : start + size]))
        with transaction.atomic():
            if not rule_set_is_live(rule_set.pk):
                # Published meanwhile: the new version's bulk run rescores every lead.
                break
            # The active model's probability first, as in a bulk chunk, so the blend is fresh.
            refresh_lead_probabilities(selection.ids, as_of=as_of)
            outcome = rescore_selection(rule_set, selection, as_of, accounts=False)
            touched |= assign_accounts(selection)
        rescored += outcome.scored
        changed += outcome.changed
        chunks += 1
    # The touched accounts rolled up once, after the chunks: a domain's contacts are due in
    # every chunk, so a roll-up per chunk read most of the accounts' contacts each time.
    # Fenced as the chunks are: once a newer version is published, its bulk run rolls every
    # account up with its own roll-up, which this older one must not overwrite.
    with transaction.atomic():
        if rule_set_is_live(rule_set.pk):
            roll_up(compiled_rule_set(rule_set).spec.account, touched)
    logger.info("rescore.due.done as_of=%s rescored=%s changed=%s", as_of, rescored, changed)
    return DueOutcome(rescored, changed, chunks, rule_set.version, as_of)


# ---------------------------------------------------------------------------------------------
# Real-time


def rescore_leads(lead_ids: Sequence[int], *, as_of: dt.datetime | None = None) -> int:
    """Rescore these leads now with the live rule set; returns how many changed (0 when no
    rule set is live)."""
    ids = sorted({int(i) for i in lead_ids})
    if not ids:
        return 0
    as_of = as_of or timezone.now()
    changed = 0
    size = settings.RESCORE_CHUNK_SIZE
    with transaction.atomic():
        rule_set = live_rule_set_for_write()
        if rule_set is None:
            return 0
        for start in range(0, len(ids), size):
            selection = LeadSelection(ids=tuple(ids[start : start + size]))
            # The active model's probability first, as in a bulk chunk, so the blend is fresh.
            refresh_lead_probabilities(selection.ids, as_of=as_of)
            changed += rescore_selection(rule_set, selection, as_of).changed
    return changed


def request_rescore(lead_ids: Iterable[int]) -> None:
    """Mark leads for a real-time rescore and enqueue it after the transaction commits.

    Debounced: a lead already waiting is not enqueued again, so a burst of events for one lead
    causes one rescore. If the broker is down the marks stay in the database and the periodic
    sweep rescoring them once it is back; nothing is lost."""
    ids = sorted({int(i) for i in lead_ids})
    if not ids:
        return
    newly_marked = _mark_pending(ids)
    if newly_marked:
        # The broker down: dispatch logs it, and the marks wait for the sweep.
        dispatch(PENDING_TASK, countdown=settings.REALTIME_RESCORE_DELAY_SECONDS)


def _mark_pending(ids: list[int]) -> int:
    now = timezone.now()
    if is_postgres():
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO scoring_pendingrescore (lead_id, requested_at) "
                "SELECT unnest(%s::bigint[]), %s ON CONFLICT (lead_id) DO NOTHING "
                "RETURNING lead_id",
                [ids, now],
            )
            return len(cursor.fetchall())
    existing = set(PendingRescore.objects.filter(lead_id__in=ids).values_list("lead_id", flat=True))
    fresh = [PendingRescore(lead_id=i, requested_at=now) for i in ids if i not in existing]
    PendingRescore.objects.bulk_create(fresh, ignore_conflicts=True)
    return len(fresh)


def rescore_pending(limit: int = 5000) -> int:
    """Claim up to `limit` waiting leads and rescore them, in one transaction (a failure puts
    the marks back). Returns how many leads were claimed."""
    with transaction.atomic():
        if is_postgres():
            with connection.cursor() as cursor:
                cursor.execute(
                    "DELETE FROM scoring_pendingrescore WHERE lead_id IN (SELECT lead_id FROM "
                    "scoring_pendingrescore ORDER BY requested_at LIMIT %s "
                    "FOR UPDATE SKIP LOCKED) RETURNING lead_id",
                    [limit],
                )
                ids = [row[0] for row in cursor.fetchall()]
        else:
            ids = list(
                PendingRescore.objects.order_by("requested_at").values_list("lead_id", flat=True)[
                    :limit
                ]
            )
            PendingRescore.objects.filter(lead_id__in=ids).delete()
        if ids:
            rescore_leads(ids)
    if ids:
        logger.info("rescore.pending.done leads=%s", len(ids))
    return len(ids)


def rescore_pending_drain(limit: int = 5000) -> int:
    """Rescore every waiting lead, `limit` at a time, until none is left; returns how many.
    Any one delivered task drains them all, so a dispatch the broker lost (its marks stay in
    the database) is covered by the next task, not only by the periodic sweep."""
    total = 0
    while claimed := rescore_pending(limit):
        total += claimed
    return total
