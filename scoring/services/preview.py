"""Impact preview: score every lead with a draft and with the live rule set, side by side,
without writing any score.

The leads are read in id-range chunks like the bulk rescore. Each chunk is read once (one
query for the lead columns both rule sets need, one for the behaviour aggregates of the union
of their event rules, one narrow query for the outcomes) and scored twice in NumPy; only
fixed-size counters are kept between chunks (histograms, the band matrix, per-band counts),
so memory does not grow with the number of leads. On PostgreSQL, outside a transaction, the
next chunks are read by helper threads while this one is scored, so the database and NumPy
work at the same time.

What the result (`PreviewRun.result`, JSON) holds:

- `leads`, `as_of`, `weeks`, `maturity_days`, `sides` (["live", "draft"] or ["draft"]),
  `rule_sets`: {side: {id, name, version, thresholds: {scope: min_score}}}.
- `bands`: band names in matrix order ("" = no band); `matrix[i][j]`: leads in live band i and
  draft band j; `band_changed`, `score_changed`, `persona_changed`, `mean_abs_change`.
- `crossing_up` / `falling_below`: leads that newly qualify / stop qualifying under the draft
  (score at or above the qualifying band's min_score in the lead's band scope; without the
  rescore's hysteresis).
- `qualified`: {side: leads at or above their qualifying threshold}.
- `histogram`: {`edges`: bin lower edges (score units), `width`, side: counts}.
- `mql_per_week`: {`thresholds`: edges, side: expected MQLs per week if the threshold were
  that score, `current`: {side: per week at the rule set's own qualifying bands}}: leads
  created in the last `weeks` weeks, scored as of now, divided by `weeks`.
- `outcomes`: {`positives`, `negatives`, `definition`, side: {`roc_auc` (None without both
  classes), `by_band`: [{band, leads, converted, rate}]}}. A lead is positive when it has
  `converted_at`; negative when it is disqualified, or is older than `maturity_days` and has
  not converted; every other lead (young, still open) is left out.

Caveat shown with the numbers: every lead is scored as of now, so a converted lead's score
includes behaviour after its conversion, which flatters both rule sets alike.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection
from django.utils import timezone

from leadscoring.db import parallel_connections_allowed
from scoring.engine import (
    BehaviourAggregates,
    CompiledRuleSet,
    EventRule,
    InactivityRule,
    LeadTable,
    ScoreResult,
    gc_paused,
    score_leads,
)
from scoring.jobs import (
    ACTIVE,
    PROGRESS_SCALE,
    UNREACHABLE_KEEP,
    dispatch,
    job_claim,
    job_claimable,
    job_fail,
    job_finish,
    job_heartbeat,
)
from scoring.ml.metrics import roc_auc_from_counts
from scoring.models import PreviewRun, RuleSet
from scoring.rule_inputs import (
    LeadColumns,
    LeadSelection,
    fetch_per_lead,
    positions_in,
    read_behaviour,
    read_lead_columns,
)
from scoring.selectors.rules import live_rule_set
from scoring.services.rescore import compiled_rule_set
from scoring.services.rulesets import ruleset_to_spec

logger = logging.getLogger(__name__)

DEFAULT_WEEKS = 12
DEFAULT_MATURITY_DAYS = 90
MAX_HISTOGRAM_BINS = 200
READ_AHEAD_THREADS = 2
PREVIEW_TASK = "scoring.preview_tasks.preview_task"
NO_BAND = ""


# ---------------------------------------------------------------------------------------------
# Runs


def preview_start(rule_set: RuleSet, *, user: Any = None) -> PreviewRun:
    """Queue an impact preview of `rule_set` against the live rule set; the task is sent after
    the commit. Raises `RuleSetInvalid` when the rule set does not validate."""
    ruleset_to_spec(rule_set)
    run = PreviewRun.objects.create(
        rule_set=rule_set,
        baseline=live_rule_set(),
        requested_by=user if getattr(user, "is_authenticated", False) else None,
    )
    # A broker outage leaves the preview queued, saying it will start when the worker is
    # reachable; the jobs sweep sends it once the broker is back. Never a 500.
    dispatch(
        PREVIEW_TASK,
        [run.pk],
        jobs=PreviewRun.objects.filter(pk=run.pk),
        unreachable=UNREACHABLE_KEEP,
    )
    logger.info("preview.queued preview=%s ruleset=%s", run.pk, rule_set.pk)
    return run


def preview_execute(preview_id: int) -> PreviewRun:
    """Run a queued preview and store its result. A preview already finished is returned as
    is; one left running by a lost worker (no heartbeat for the task time limit) is run again
    (it writes nothing but its own row), one running elsewhere is left alone."""
    run = PreviewRun.objects.select_related("rule_set", "baseline").get(pk=preview_id)
    this = PreviewRun.objects.filter(pk=run.pk)
    claimable = job_claimable(this)
    if not job_claim(claimable, statuses=ACTIVE, progress_done=0, progress_total=PROGRESS_SCALE):
        return run

    def progress(fraction: float) -> None:
        job_heartbeat(this, fraction=fraction)

    try:
        draft = compiled_rule_set(run.rule_set)
        live = compiled_rule_set(run.baseline) if run.baseline is not None else None
        result = preview_compute(draft, live, as_of=timezone.now(), on_progress=progress)
        result["rule_sets"] = {
            side: _describe(rule_set, compiled)
            for side, rule_set, compiled in (
                ("draft", run.rule_set, draft),
                ("live", run.baseline, live),
            )
            if rule_set is not None
        }
    except Exception as exc:
        job_fail(this, repr(exc))
        logger.exception("preview.failed preview=%s", run.pk)
        raise
    job_finish(this, result=result)
    logger.info("preview.done preview=%s leads=%s", run.pk, result["leads"])
    run.refresh_from_db()
    return run


def _describe(rule_set: RuleSet, compiled: CompiledRuleSet) -> dict[str, Any]:
    return {
        "id": rule_set.pk,
        "name": rule_set.name,
        "version": rule_set.version,
        "status": rule_set.status,
        "thresholds": {
            scope or "": float(table.min_scores[table.qualifies][0])
            for scope, table in compiled.band_tables.items()
            if table.qualifies.any()
        },
    }


# ---------------------------------------------------------------------------------------------
# The computation


@dataclass
class _SideTotals:
    """Counters for one rule set; every array has a fixed size, whatever the lead count."""

    histogram: np.ndarray
    recent: np.ndarray
    positive: np.ndarray
    negative: np.ndarray
    band_leads: np.ndarray
    band_known: np.ndarray
    band_converted: np.ndarray
    qualified: int = 0
    recent_qualified: int = 0


@dataclass
class _Totals:
    sides: dict[str, _SideTotals]
    matrix: np.ndarray
    leads: int = 0
    score_changed: int = 0
    persona_changed: int = 0
    crossing_up: int = 0
    falling_below: int = 0
    abs_change: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Chunk:
    leads: LeadColumns
    behaviour: BehaviourAggregates
    converted: np.ndarray
    disqualified: np.ndarray


def preview_compute(
    draft: CompiledRuleSet,
    live: CompiledRuleSet | None,
    *,
    as_of: dt.datetime,
    weeks: int = DEFAULT_WEEKS,
    maturity_days: int = DEFAULT_MATURITY_DAYS,
    chunk_size: int | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Score every lead with `draft` (and `live`, when given) as of `as_of` and return the
    comparison described in the module docstring. Writes nothing."""
    sides = {"draft": draft} if live is None else {"live": live, "draft": draft}
    reader, columns = _reader_rule_set(list(sides.values()))
    floors = [c.spec.floor for c in sides.values()]
    ceilings = [c.spec.ceiling for c in sides.values()]
    low, high = int(min(floors)), int(max(ceilings))
    width = max(1, math.ceil((high - low + 1) / MAX_HISTOGRAM_BINS))
    n_bins = math.ceil((high - low + 1) / width)
    band_names = _band_order(list(sides.values()))
    band_index = {name: i for i, name in enumerate(band_names)}
    nb = len(band_names)
    totals = _Totals(
        sides={
            side: _SideTotals(
                histogram=np.zeros(n_bins, np.int64),
                recent=np.zeros(n_bins, np.int64),
                positive=np.zeros(n_bins, np.int64),
                negative=np.zeros(n_bins, np.int64),
                band_leads=np.zeros(nb, np.int64),
                band_known=np.zeros(nb, np.int64),
                band_converted=np.zeros(nb, np.int64),
            )
            for side in sides
        },
        matrix=np.zeros((nb, nb), np.int64),
    )
    recent_after = (as_of - dt.timedelta(weeks=weeks)).timestamp()
    mature_before = (as_of - dt.timedelta(days=maturity_days)).timestamp()

    grades = GradeMoves()
    selections = _plan(chunk_size or settings.RESCORE_CHUNK_SIZE)
    # Reading a chunk builds some 300,000 short-lived Python values; with the collector on,
    # each burst set off full collections (a quarter of the Python time, measured).
    with gc_paused():
        for done, chunk in enumerate(_read_chunks(reader, selections, as_of), start=1):
            n = chunk.leads.n
            if n:
                recent = chunk.leads.created_epoch >= recent_after
                positive = chunk.converted
                negative = ~positive & (
                    chunk.disqualified | (chunk.leads.created_epoch < mature_before)
                )
                results: dict[str, ScoreResult] = {}
                codes: dict[str, np.ndarray] = {}
                qualified: dict[str, np.ndarray] = {}
                table = LeadTable(chunk.leads.fields, n)  # each column prepared once, for both
                for side, compiled in sides.items():
                    behaviour = BehaviourAggregates(
                        chunk.behaviour.counts[:, columns[side]],
                        chunk.behaviour.decayed[:, columns[side]],
                        chunk.behaviour.days_since_activity,
                    )
                    result = score_leads(compiled, table, behaviour, chunk.leads.model_probability)
                    results[side] = result
                    qualified[side] = qualifying(compiled, result)
                    codes[side] = _band_codes(result.bands, band_index)
                    bins = (result.scores - low) // width
                    _accumulate(
                        totals.sides[side],
                        qualified[side],
                        bins,
                        codes[side],
                        recent,
                        positive,
                        negative,
                    )
                totals.leads += n
                grades.add(results)
                if live is not None:
                    before, after = results["live"], results["draft"]
                    totals.matrix += _pair_counts(codes["live"], codes["draft"], nb)
                    delta = after.scores - before.scores
                    totals.score_changed += int(np.count_nonzero(delta))
                    totals.abs_change += float(np.abs(delta).sum())
                    totals.persona_changed += int(
                        np.count_nonzero(before.personas != after.personas)
                    )
                    was, becomes = qualified["live"], qualified["draft"]
                    totals.crossing_up += int(np.count_nonzero(~was & becomes))
                    totals.falling_below += int(np.count_nonzero(was & ~becomes))
                else:
                    totals.matrix += _pair_counts(codes["draft"], codes["draft"], nb)
            if on_progress is not None:
                on_progress(done / len(selections))
    result = _result(totals, sides, band_names, low, width, n_bins, as_of, weeks, maturity_days)
    return result | grades.result()


class GradeMoves:
    """Grades (fit x engagement) per side, and how many leads move from each live grade to
    each draft grade; counted per chunk over the distinct pairs, never per lead in Python."""

    def __init__(self) -> None:
        self.by_side: dict[str, Counter[str]] = {}
        self.moves: Counter[tuple[str, str]] = Counter()

    @staticmethod
    def _grades(result: ScoreResult) -> np.ndarray:
        if result.grades is None:
            return np.full(result.n, "", dtype=object)
        return np.where(result.grades == None, "", result.grades)  # noqa: E711 (elementwise)

    def add(self, results: dict[str, ScoreResult]) -> None:
        grades = {side: self._grades(result) for side, result in results.items()}
        for side, values in grades.items():
            names, counts = np.unique(values.astype(str), return_counts=True)
            self.by_side.setdefault(side, Counter()).update(
                dict(zip(names.tolist(), counts.tolist(), strict=True))
            )
        if "live" in grades:
            pairs = grades["live"].astype(str) + "\x1f" + grades["draft"].astype(str)
            names, counts = np.unique(pairs, return_counts=True)
            for pair, count in zip(names.tolist(), counts.tolist(), strict=True):
                before, after = pair.split("\x1f")
                self.moves[before, after] += count

    def result(self) -> dict[str, Any]:
        """`leads_by_grade` {side: {grade: leads}} ("" = no grade), `grade_changed` and
        `grade_moves` [{from, to, leads}] (changed pairs, most leads first); empty when
        neither side has a grid."""
        if not any(g for counter in self.by_side.values() for g in counter):
            return {"leads_by_grade": {}, "grade_changed": 0, "grade_moves": []}
        moved = [
            {"from": before, "to": after, "leads": leads}
            for (before, after), leads in self.moves.items()
            if before != after
        ]
        moved.sort(key=lambda m: (-m["leads"], m["from"], m["to"]))
        return {
            "leads_by_grade": {side: dict(sorted(c.items())) for side, c in self.by_side.items()},
            "grade_changed": sum(m["leads"] for m in moved),
            "grade_moves": moved,
        }


def _accumulate(
    totals: _SideTotals,
    qualified: np.ndarray,
    bins: np.ndarray,
    codes: np.ndarray,
    recent: np.ndarray,
    positive: np.ndarray,
    negative: np.ndarray,
) -> None:
    n_bins = totals.histogram.shape[0]
    nb = totals.band_leads.shape[0]
    totals.histogram += np.bincount(bins, minlength=n_bins)
    totals.recent += np.bincount(bins[recent], minlength=n_bins)
    totals.positive += np.bincount(bins[positive], minlength=n_bins)
    totals.negative += np.bincount(bins[negative], minlength=n_bins)
    known = positive | negative
    totals.band_leads += np.bincount(codes, minlength=nb)
    totals.band_known += np.bincount(codes[known], minlength=nb)
    totals.band_converted += np.bincount(codes[positive], minlength=nb)
    qualifies = qualified
    totals.qualified += int(np.count_nonzero(qualifies))
    totals.recent_qualified += int(np.count_nonzero(qualifies & recent))


def _result(
    totals: _Totals,
    sides: dict[str, CompiledRuleSet],
    band_names: list[str],
    low: int,
    width: int,
    n_bins: int,
    as_of: dt.datetime,
    weeks: int,
    maturity_days: int,
) -> dict[str, Any]:
    edges = [low + i * width for i in range(n_bins)]
    any_side = next(iter(totals.sides.values()))
    positives = int(any_side.positive.sum())
    negatives = int(any_side.negative.sum())
    result: dict[str, Any] = {
        "leads": totals.leads,
        "as_of": as_of.isoformat(),
        "weeks": weeks,
        "maturity_days": maturity_days,
        "sides": list(sides),
        "bands": band_names,
        "matrix": totals.matrix.tolist(),
        "band_changed": int(totals.matrix.sum() - np.trace(totals.matrix)),
        "score_changed": totals.score_changed,
        "persona_changed": totals.persona_changed,
        "mean_abs_change": round(totals.abs_change / totals.leads, 3) if totals.leads else 0.0,
        "crossing_up": totals.crossing_up,
        "falling_below": totals.falling_below,
        "qualified": {side: t.qualified for side, t in totals.sides.items()},
        "histogram": {"edges": edges, "width": width}
        | {side: t.histogram.tolist() for side, t in totals.sides.items()},
        "mql_per_week": {
            "thresholds": edges,
            "current": {
                side: round(t.recent_qualified / weeks, 2) for side, t in totals.sides.items()
            },
        }
        | {
            side: [round(float(v) / weeks, 2) for v in t.recent[::-1].cumsum()[::-1]]
            for side, t in totals.sides.items()
        },
        "outcomes": {
            "positives": positives,
            "negatives": negatives,
            "definition": (
                "converted = has a conversion date; not converted = disqualified, or created "
                f"more than {maturity_days} days ago without converting; younger open leads "
                "are left out"
            ),
            "auc_exact": width == 1,
        },
    }
    for side, t in totals.sides.items():
        result["outcomes"][side] = {
            "roc_auc": _rounded(
                roc_auc_from_counts(np.arange(t.positive.size), t.positive, t.negative)
            ),
            "by_band": [
                {
                    "band": name,
                    "leads": int(t.band_known[i]),
                    "converted": int(t.band_converted[i]),
                    "rate": round(float(t.band_converted[i] / t.band_known[i]), 4)
                    if t.band_known[i]
                    else None,
                }
                for i, name in enumerate(band_names)
                if t.band_leads[i]
            ],
            "leads_by_band": {
                name: int(t.band_leads[i]) for i, name in enumerate(band_names) if t.band_leads[i]
            },
        }
    return result


def qualifying(compiled: CompiledRuleSet, result: ScoreResult) -> np.ndarray:
    """Whether each lead is at or above the qualifying threshold of its band scope (its
    persona's bands when the persona has its own, else the shared ones). Not the band's own
    `qualifies` flag: a lead in a band above the qualifying one (e.g. Hot) qualifies too."""
    threshold = np.full(result.n, _threshold(compiled, None))
    for scope in compiled.band_tables:
        if scope is not None:
            threshold[result.personas == scope] = _threshold(compiled, scope)
    return result.scores >= threshold


def _threshold(compiled: CompiledRuleSet, scope: str | None) -> float:
    table = compiled.band_tables.get(scope)
    if table is None or not table.qualifies.any():
        return math.inf
    return float(table.min_scores[table.qualifies][0])


def _rounded(auc: float | None) -> float | None:
    return None if auc is None else round(auc, 4)


def _band_order(compiled_sets: list[CompiledRuleSet]) -> list[str]:
    """ "" (no band) first, then every band name by its lowest min_score in any rule set."""
    lowest: dict[str, float] = {}
    for compiled in compiled_sets:
        for band in compiled.spec.bands:
            lowest[band.name] = min(lowest.get(band.name, math.inf), band.min_score)
    return [NO_BAND, *sorted(lowest, key=lambda name: (lowest[name], name))]


def _pair_counts(rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    return np.bincount(rows * size + cols, minlength=size * size).reshape(size, size)


def _band_codes(bands: np.ndarray, index: dict[str, int]) -> np.ndarray:
    codes = np.zeros(bands.shape[0], dtype=np.intp)
    for name, code in index.items():
        if name != NO_BAND:
            codes[bands == name] = code
    return codes


def _reader_rule_set(
    compiled_sets: list[CompiledRuleSet],
) -> tuple[CompiledRuleSet, dict[str, list[int]]]:
    """A compiled rule set used only to read: the union of the fields and of the distinct
    behaviour aggregates the given rule sets need (an event rule's points, cap, persona and
    name do not change its aggregate, so a rule both sets share is aggregated once). Returns
    it with, per side, the reader's aggregate column of each of that side's event rules."""
    unique: dict[EventRule, int] = {}
    columns: dict[str, list[int]] = {}
    sides = ["live", "draft"] if len(compiled_sets) == 2 else ["draft"]
    for side, compiled in zip(sides, compiled_sets, strict=True):
        columns[side] = []
        for _, rule in compiled.event_rules:
            key = replace(rule, points=1.0, cap=None, persona=None, name=None)
            columns[side].append(unique.setdefault(key, len(unique)))
    event_rules = tuple(unique)
    rules: list[Any] = list(event_rules)
    if any(isinstance(r, InactivityRule) for c in compiled_sets for r in c.rules):
        rules.append(InactivityRule(days=1, points=0))
    first = compiled_sets[0]
    reader = CompiledRuleSet(
        spec=first.spec,
        rules=tuple(rules),
        event_rules=tuple(enumerate(event_rules)),
        fields=frozenset().union(*(c.fields for c in compiled_sets)),
        persona_order=(),
        rule_persona=(),
        band_tables={},
    )
    return reader, columns


def _plan(size: int) -> list[LeadSelection]:
    """Even id ranges of about `size` leads, as the bulk rescore plans them."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT MIN(id), MAX(id), COUNT(*) FROM scoring_lead")
        low, high, count = cursor.fetchone()
    if not count:
        return []
    n_chunks = max(1, math.ceil(count / size))
    span = math.ceil((high - low + 1) / n_chunks)
    return [
        LeadSelection(first_id=start, last_id=min(start + span - 1, high))
        for start in range(low, high + 1, span)
    ]


def _read_chunk(reader: CompiledRuleSet, selection: LeadSelection, as_of: dt.datetime) -> _Chunk:
    leads = read_lead_columns(reader, selection, with_state=False)
    behaviour = read_behaviour(
        reader, selection, leads.ids, leads.created_epoch, as_of, with_counts=False
    )
    converted = np.zeros(leads.n, dtype=bool)
    disqualified = np.zeros(leads.n, dtype=bool)
    if leads.n:
        where, params = selection.where("id")
        ids, flags = fetch_per_lead(
            "SELECT id AS lead_id, CASE WHEN converted_at IS NULL THEN 0 ELSE 1 END, "
            "CASE WHEN lifecycle_stage IN ('disqualified', 'lost') OR disqualified_at IS NOT NULL "
            "OR lost_at IS NOT NULL "
            f"THEN 1 ELSE 0 END FROM scoring_lead WHERE {where}",
            params,
            2,
        )
        # A lead inserted between the two reads is not in `leads`: place by id, not order.
        position, inside = positions_in(leads.ids, ids)
        converted[position[inside]] = flags[inside, 0] == 1
        disqualified[position[inside]] = flags[inside, 1] == 1
    return _Chunk(leads, behaviour, converted, disqualified)


def _read_chunk_in_thread(
    reader: CompiledRuleSet, selection: LeadSelection, as_of: dt.datetime
) -> _Chunk:
    try:
        return _read_chunk(reader, selection, as_of)
    finally:
        connection.close()  # this thread's own connection


def _read_chunks(
    reader: CompiledRuleSet, selections: list[LeadSelection], as_of: dt.datetime
) -> Iterator[_Chunk]:
    """The chunks in order. On PostgreSQL outside a transaction, helper threads (each with its
    own connection) read ahead; inside a transaction (tests) or on SQLite, reads happen here,
    because other connections would not see uncommitted rows or would lock the file."""
    if not parallel_connections_allowed() or len(selections) < 2:
        for selection in selections:
            yield _read_chunk(reader, selection, as_of)
        return
    with ThreadPoolExecutor(max_workers=READ_AHEAD_THREADS) as pool:
        pending: list[Future[_Chunk]] = []
        upcoming = iter(selections)
        for selection in upcoming:
            pending.append(pool.submit(_read_chunk_in_thread, reader, selection, as_of))
            if len(pending) >= READ_AHEAD_THREADS:
                break
        while pending:
            chunk = pending.pop(0).result()
            following = next(upcoming, None)
            if following is not None:
                pending.append(pool.submit(_read_chunk_in_thread, reader, following, as_of))
            yield chunk
