"""Experiments: start, stop and promote a champion/challenger test, and the hook that scores an
experiment's leads with both arms during every rescore (bulk, due and real-time alike).

A lead's arm is fixed by a hash of (the experiment's salt, its id): see
`scoring.experiments.assignment`. Both arms score every lead of the experiment; the lead's own
arm writes its stored score, band, breakdown, qualification and MQL time (so routing and CRM
write-back, which read those, follow the arm), and the other arm's score is kept as the shadow
score, with its breakdown, in `ExperimentLead`. Stopping returns every lead to the champion by
rescoring them with no experiment running."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import secrets
from typing import Any

import numpy as np
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from leadscoring.db import copy_in, db_datetime, epoch_seconds_sql, is_postgres, temp_table
from scoring.engine import RuleSetInvalid, breakdowns_json, parse_ruleset
from scoring.experiments.assignment import CHALLENGER, CHAMPION, challenger_mask
from scoring.ml import feature_frame as F
from scoring.ml import registry
from scoring.ml.scoring import LoadedModel, load
from scoring.models import Experiment, MLModel, RuleSet
from scoring.rule_inputs import LeadSelection
from scoring.selectors.experiments import experiment_report
from scoring.selectors.rules import live_rule_set
from scoring.services.ml_models import model_activate
from scoring.services.rescore import (
    ProbabilitySource,
    ScoringOutcome,
    compiled_rule_set,
    rescore_all,
    rescore_arm,
    score_selection,
)
from scoring.services.rulesets import (
    ruleset_document,
    ruleset_freeze_challenger,
    ruleset_import,
    ruleset_publish,
)

logger = logging.getLogger(__name__)


class ExperimentInvalid(Exception):
    """A request the experiments cannot take; `errors` maps each field to its reason."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {reason}" for field, reason in errors.items()))
        self.errors = errors


@dataclasses.dataclass(frozen=True)
class ExperimentRequest:
    """What starting an experiment takes (the command's and the API's options)."""

    name: str
    kind: str
    hypothesis: str = ""
    split: float = 0.5
    metric: str = Experiment.Metric.CONVERSION
    horizon_days: int = 90
    population: str = Experiment.Population.NEW
    min_sample: int = 1000
    relevant_difference: float = 0.02
    alpha: float = 0.05
    challenger_document: Any = None
    challenger_model_id: int | None = None
    threshold: float | None = None


def running_experiment() -> Experiment | None:
    return (
        Experiment.objects.filter(status=Experiment.Status.RUNNING)
        .select_related("challenger_rule_set", "challenger_model")
        .first()
    )


# ---------------------------------------------------------------------------------------------
# Start, stop, promote


def experiment_start(
    request: ExperimentRequest, *, user: Any = None, inline: bool = False
) -> Experiment:
    """Validate and start an experiment. A `ruleset` challenger is frozen as a rule-set version
    of its own (status `challenger`, never live); a `threshold` challenger is the live rule set
    with its qualifying bands' minimum moved, frozen the same way. With population `all`, every
    lead is rescored (so its arm acts at once: in line, or by the bulk tasks after the commit);
    with `new`, leads enter as they are created and scored.
    Raises `ExperimentInvalid` (field -> reason) before anything is written."""
    errors = _request_errors(request)
    live = live_rule_set()
    if live is None:
        errors["kind"] = "no rule set is live: publish one first"
    if Experiment.objects.filter(status=Experiment.Status.RUNNING).exists():
        errors["name"] = "an experiment is already running; stop it first"
    if Experiment.objects.filter(name=request.name).exists():
        errors["name"] = f"an experiment named {request.name!r} exists"
    challenger_document = None
    challenger_model = None
    if not errors:
        assert live is not None
        if request.kind == Experiment.Kind.RULESET:
            challenger_document = _checked_document(request.challenger_document, errors)
        elif request.kind == Experiment.Kind.THRESHOLD:
            challenger_document = _threshold_document(live, request.threshold, errors)
        else:
            challenger_model = _checked_model(request.challenger_model_id, live, errors)
    if errors:
        raise ExperimentInvalid(errors)
    user = user if getattr(user, "is_authenticated", False) else None
    try:
        with transaction.atomic():
            challenger_rule_set = (
                None
                if challenger_document is None
                else ruleset_freeze_challenger(challenger_document, user=user)
            )
            experiment = Experiment(
                name=request.name,
                hypothesis=request.hypothesis,
                kind=request.kind,
                metric=request.metric,
                horizon_days=request.horizon_days,
                population=request.population,
                split=request.split,
                min_sample=request.min_sample,
                relevant_difference=request.relevant_difference,
                alpha=request.alpha,
                salt=secrets.token_hex(16),
                champion_rule_set=live,
                challenger_rule_set=challenger_rule_set,
                champion_model=registry.active_model(),
                challenger_model=challenger_model,
                threshold=request.threshold if request.kind == Experiment.Kind.THRESHOLD else None,
                started_by=user,
            )
            experiment._history_user = user
            experiment.save()
    except IntegrityError as error:  # another start won the race for the one running slot
        raise ExperimentInvalid(
            {"name": "an experiment is already running; stop it first"}
        ) from error
    logger.info("experiment.started experiment=%s kind=%s", experiment.pk, experiment.kind)
    if experiment.population == Experiment.Population.ALL:
        _rescore_everyone(user, inline)
    return experiment


def experiment_stop(
    experiment: Experiment, *, user: Any = None, promote: bool = False, inline: bool = False
) -> Experiment:
    """End a running experiment: every lead goes back to the champion (a full rescore with no
    experiment running). With `promote`, the challenger first becomes the champion: the rule
    set is published, the model activated, or the threshold applied to the live rule set.
    Who and when are recorded (and the history table keeps each change), with the decision
    the report showed at that moment. Raises `ExperimentInvalid` when it is not running, or
    when the promotion cannot be applied (nothing is changed then)."""
    user = user if getattr(user, "is_authenticated", False) else None
    with transaction.atomic():
        experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
        if experiment.status != Experiment.Status.RUNNING:
            raise ExperimentInvalid({"name": f"experiment {experiment.name!r} is not running"})
        decision = experiment_report(experiment)["decision"]
        experiment.status = Experiment.Status.PROMOTED if promote else Experiment.Status.STOPPED
        experiment.stopped_at = timezone.now()
        experiment.stopped_by = user
        experiment.final_decision = decision
        experiment._history_user = user
        experiment.save()
        if promote:
            try:
                _promote(experiment, user)
            except (registry.ModelLoadRefused, registry.ModelNotReady, RuleSetInvalid) as error:
                # Nothing is changed: the transaction rolls back, the experiment keeps running.
                raise ExperimentInvalid({"promote": str(error)}) from error
    logger.info(
        "experiment.%s experiment=%s decision=%s",
        "promoted" if promote else "stopped",
        experiment.pk,
        decision,
    )
    _rescore_everyone(user, inline)
    return experiment


def _promote(experiment: Experiment, user: Any) -> None:
    if experiment.kind == Experiment.Kind.MODEL:
        model_activate(experiment.challenger_model)
        return
    if experiment.kind == Experiment.Kind.THRESHOLD:
        # Applied to the rule set live now (which may have been republished meanwhile).
        live = live_rule_set()
        errors: dict[str, str] = {}
        document = _threshold_document(live, experiment.threshold, errors)
        if errors:
            raise ExperimentInvalid(errors)
        ruleset_publish(
            ruleset_import(document, user=user, based_on=live), user=user, rescore=False
        )
        return
    # A published version is a fresh copy of the frozen challenger (versions are immutable).
    ruleset_publish(experiment.challenger_rule_set, user=user, rescore=False)


def _rescore_everyone(user: Any, inline: bool) -> None:
    """A new full run as of now (not joining one under way, which may have scored some chunks
    under the previous arms)."""
    live = live_rule_set()
    if live is None:
        return
    if inline:
        rescore_all(rule_set=live, as_of=timezone.now(), user=user, inline=True)
        return
    live_id = live.pk
    transaction.on_commit(
        lambda: rescore_all(
            rule_set=RuleSet.objects.get(pk=live_id), as_of=timezone.now(), user=user, inline=False
        )
    )


def _request_errors(request: ExperimentRequest) -> dict[str, str]:
    errors: dict[str, str] = {}
    if not request.name or len(request.name) > 100 or "/" in request.name:
        # The name is part of the API's URLs.
        errors["name"] = "a name of 1 to 100 characters, without '/', is required"
    if request.kind not in Experiment.Kind.values:
        errors["kind"] = f"must be one of {', '.join(Experiment.Kind.values)}"
    if request.metric not in Experiment.Metric.values:
        errors["metric"] = f"must be one of {', '.join(Experiment.Metric.values)}"
    if request.population not in Experiment.Population.values:
        errors["population"] = f"must be one of {', '.join(Experiment.Population.values)}"
    if not 0 < request.split < 1:
        errors["split"] = "must be strictly between 0 and 1"
    if request.horizon_days < 1:
        errors["horizon_days"] = "must be at least 1"
    if request.min_sample < 1:
        errors["min_sample"] = "must be at least 1"
    if not 0 < request.relevant_difference < 1:
        errors["relevant_difference"] = "must be strictly between 0 and 1"
    if not 0 < request.alpha < 0.5:
        errors["alpha"] = "must be strictly between 0 and 0.5"
    needs = {
        Experiment.Kind.RULESET: ("challenger_document", "a challenger rule set is required"),
        Experiment.Kind.MODEL: ("challenger_model_id", "a challenger model id is required"),
        Experiment.Kind.THRESHOLD: ("threshold", "a threshold score is required"),
    }
    if request.kind in needs:
        field, reason = needs[request.kind]
        if getattr(request, field) is None:
            errors[field] = reason
    return errors


def _checked_document(document: Any, errors: dict[str, str]) -> Any:
    try:
        parse_ruleset(document)
    except RuleSetInvalid as error:
        # Each problem with its JSON path, as `ruleset import` reports them.
        errors["challenger_document"] = "; ".join(f"{e.path}: {e.message}" for e in error.errors)
    return document


def _threshold_document(
    live: RuleSet | None, threshold: float | None, errors: dict[str, str]
) -> dict[str, Any] | None:
    """The live rule set's document with every qualifying band's minimum at `threshold`."""
    if live is None or threshold is None:
        errors["threshold"] = "a threshold and a live rule set are required"
        return None
    document = ruleset_document(live)
    qualifying = [band for band in document["bands"] if band.get("qualifies")]
    if not qualifying:
        errors["threshold"] = "the live rule set has no qualifying band to move"
        return None
    if not live.floor <= threshold <= live.ceiling:
        errors["threshold"] = f"must be within the rule set's [{live.floor:g}, {live.ceiling:g}]"
        return None
    for band in qualifying:
        band["min_score"] = threshold
    return _checked_document(document, errors)


def _checked_model(model_id: int | None, live: RuleSet, errors: dict[str, str]) -> MLModel | None:
    row = MLModel.objects.filter(pk=model_id).first() if model_id is not None else None
    if row is None:
        errors["challenger_model_id"] = f"no model #{model_id}"
    elif row.status != MLModel.Status.DONE or not row.artifact_path:
        errors["challenger_model_id"] = f"model #{row.pk} is not a trained model"
    elif row.is_active:
        errors["challenger_model_id"] = f"model #{row.pk} is already the active model"
    elif not live.model_weight:
        # Without a blend the model cannot change a stored score: both arms would be one.
        errors["challenger_model_id"] = (
            "the live rule set does not blend the model into the score (model_weight is 0)"
        )
    return row if not errors else None


# ---------------------------------------------------------------------------------------------
# The rescore hook


@dataclasses.dataclass(frozen=True)
class _Arm:
    rule_set: RuleSet
    probability: ProbabilitySource | None = None


def experiment_rescore(
    rule_set: RuleSet, selection: LeadSelection, as_of: dt.datetime
) -> ScoringOutcome | None:
    """While an experiment runs and some selected leads are in it: write each lead's score
    from its arm (leads outside the experiment get the champion's), and record every member's
    arm and shadow score. None when there is nothing to do, so the caller scores as usual."""
    experiment = running_experiment()
    if experiment is None:
        return None
    ids, entry = _members(experiment, selection, as_of)
    member = ~np.isnan(entry)
    if not member.any():
        return None
    in_experiment = ids[member]
    challenger_ids = in_experiment[
        challenger_mask(experiment.salt, in_experiment, experiment.split)
    ]
    champion, challenger = _arms(experiment, rule_set)
    first = rescore_arm(
        champion.rule_set, _ids(np.setdiff1d(ids, challenger_ids)), as_of, champion.probability
    )
    second = rescore_arm(challenger.rule_set, _ids(challenger_ids), as_of, challenger.probability)
    entries = dict(zip(in_experiment.tolist(), entry[member].tolist(), strict=True))
    _record_shadows(
        experiment,
        np.setdiff1d(in_experiment, challenger_ids),
        challenger,
        CHAMPION,
        entries,
        as_of,
    )
    _record_shadows(experiment, challenger_ids, champion, CHALLENGER, entries, as_of)
    return ScoringOutcome(first.scored + second.scored, first.changed + second.changed)


def _ids(ids: np.ndarray) -> LeadSelection:
    return LeadSelection(ids=tuple(int(i) for i in ids.tolist()))


def _members(
    experiment: Experiment, selection: LeadSelection, as_of: dt.datetime
) -> tuple[np.ndarray, np.ndarray]:
    """Every selected lead's id (ascending) and, for the experiment's members, the Unix time
    it entered (its creation, or the start for leads that existed before it); NaN for the
    others (created after `as_of`, or before the start when the population is new leads)."""
    where, params = selection.where("id")
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, {epoch_seconds_sql('created_at')} FROM scoring_lead WHERE {where}"
            " ORDER BY id",
            params,
        )
        rows = cursor.fetchall()
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    created = np.fromiter((row[1] for row in rows), dtype=np.float64, count=len(rows))
    started = experiment.started_at.timestamp()
    member = created <= as_of.timestamp()
    if experiment.population == Experiment.Population.NEW:
        member &= created >= started
    return ids, np.where(member, np.maximum(created, started), np.nan)


def _arms(experiment: Experiment, rule_set: RuleSet) -> tuple[_Arm, _Arm]:
    champion = _Arm(rule_set)
    if experiment.kind == Experiment.Kind.MODEL:
        return champion, _Arm(rule_set, _model_probability(experiment.challenger_model))
    return champion, _Arm(experiment.challenger_rule_set)


def _record_shadows(
    experiment: Experiment,
    ids: np.ndarray,
    other: _Arm,
    arm: str,
    entries: dict[int, float],
    as_of: dt.datetime,
) -> None:
    """Score `ids` (members of `arm`) with the other arm, without writing their scores, and
    upsert their rows in one statement: arm and shadow score with its breakdown (the first
    entry time stays)."""
    if ids.size == 0:
        return
    leads, result = score_selection(
        compiled_rule_set(other.rule_set), _ids(ids), as_of, other.probability
    )
    rows = [
        (
            lead_id,
            arm,
            dt.datetime.fromtimestamp(entries[lead_id], tz=dt.UTC),
            score,
            breakdown,
        )
        for lead_id, score, breakdown in zip(
            leads.ids.tolist(), result.scores.tolist(), breakdowns_json(result), strict=True
        )
    ]
    upsert = (
        "INSERT INTO scoring_experimentlead"
        " (experiment_id, lead_id, arm, assigned_at, shadow_score, shadow_breakdown)"
        " {rows} ON CONFLICT (experiment_id, lead_id) DO UPDATE SET arm = excluded.arm,"
        " shadow_score = excluded.shadow_score, shadow_breakdown = excluded.shadow_breakdown"
        # A row that did not change is not rewritten (most of them, on a time rescore).
        " WHERE scoring_experimentlead.shadow_score {differs} excluded.shadow_score"
        " OR scoring_experimentlead.shadow_breakdown {differs} excluded.shadow_breakdown"
        " OR scoring_experimentlead.arm <> excluded.arm"
    ).replace("{differs}", "IS DISTINCT FROM" if is_postgres() else "IS NOT")
    if not is_postgres():
        with connection.cursor() as cursor:
            cursor.executemany(
                upsert.format(rows="VALUES (%s, %s, %s, %s, %s, %s)"),
                [
                    (experiment.pk, lead_id, arm_name, db_datetime(entry), score, breakdown)
                    for lead_id, arm_name, entry, score, breakdown in rows
                ],
            )
        return
    columns = ("lead_id", "arm", "assigned_at", "shadow_score", "shadow_breakdown")
    with (
        temp_table(
            "experiment_buffer",
            "(lead_id bigint, arm text, assigned_at timestamptz, shadow_score int,"
            " shadow_breakdown jsonb)",
        ) as buffer,
        connection.cursor() as cursor,
    ):
        with copy_in(cursor, buffer, columns) as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(
            upsert.format(rows=f"SELECT %s, {', '.join(columns)} FROM {buffer} WHERE true"),
            [experiment.pk],
        )


# One challenger model kept loaded per process (`scoring.ml.scoring.load` keeps only one model,
# the active one, and would otherwise reload both for every chunk).
_challenger_models: dict[tuple[int, str], LoadedModel] = {}


def _model_probability(row: MLModel) -> ProbabilitySource:
    key = (row.pk, row.artifact_sha256)
    loaded = _challenger_models.get(key)
    if loaded is None:
        _challenger_models.clear()
        loaded = _challenger_models[key] = load(row)
    reader = F.MatrixReader(loaded.spec)

    def probability(ids: np.ndarray, as_of: dt.datetime) -> np.ndarray:
        values = np.full(ids.size, np.nan)
        if ids.size:
            found, matrix = reader.read(as_of, int(ids[0]), int(ids[-1]), ids=ids)
            if found.size:
                values[np.searchsorted(ids, found)] = loaded.predict_matrix(matrix)
        return values

    return probability
