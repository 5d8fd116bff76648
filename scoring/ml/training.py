"""Training: label, features, split, two pipelines, calibration, honest evaluation, registry.

- **Split**: by time when the population's creation times are spread (the 10th to 90th
  percentile span at least `TIME_SPLIT_MIN_SPREAD_DAYS`): the earliest 70 % train, the latest
  30 % test. Otherwise (e.g. an import where every lead was created the same minute) a
  stratified random 70/30 split with a fixed seed.
- **Checks** (`feature_checks`): a feature whose test values mostly lie outside its training
  range (it depends on when the split was cut) and a feature whose ROC AUC on its own is above
  `ML_LEAKAGE_AUC` on the training leads (a probable leak; `allow` keeps it) are left out, each
  with its reason in the report's `excluded`, as are the connectors' outcome fields and the
  columns the mappings of past imports list as leakage, label or doubtful.
- **Models**: logistic regression (median-imputed numbers with missing indicators, scaled;
  one-hot categories) and `HistGradientBoostingClassifier` (native categories, NaN as missing),
  each one whole scikit-learn `Pipeline` over the encoded feature matrix.
- **Calibration**: the final pipeline is fitted on all training leads. Out-of-fold predictions
  cross-fitted in time order (the training leads in `CALIBRATION_BLOCKS` blocks by creation
  time, each predicted by a pipeline fitted on the blocks before it; two blocks from
  `LARGE_DATA_ROWS` leads on) decide: when a sigmoid on them lowers their Brier score, the
  artifact is `CalibratedClassifierCV(FrozenEstimator(final))` with that sigmoid. Each model's
  `calibration` in the report says which happened.
- **Size**: at most `max_leads` (default `DEFAULT_MAX_LEADS`, 200,000) leads, the most
  recently created of the labelled population.
- **Evaluation** on test leads only, beside the live rule set's score on the same leads (its
  rules alone, as of the cut-off; the model blend is switched off for the comparison)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.apps import apps
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from scoring.jobs import ACTIVE, PROGRESS_SCALE, job_claim, job_fail, job_heartbeat
from scoring.ml import compiled, registry
from scoring.ml import feature_frame as F
from scoring.ml import metrics as M
from scoring.ml.feature_checks import leakage_drops, range_overlap_drops
from scoring.ml.labels import DEFAULT_HORIZON_DAYS, DEFAULT_STAGE, Labels, build_labels
from scoring.ml.suggest import DEFAULT_MAX_RULES
from scoring.models import MLModel

logger = logging.getLogger(__name__)

SEED = 42
TEST_SHARE = 0.3
VALIDATION_SHARE = 0.2
TIME_SPLIT_MIN_SPREAD_DAYS = 7.0
SMALL_DATA_ROWS = 50000
# Blocks of training leads (in time order) for the cross-fitted calibration: each block after
# the first is predicted by a pipeline fitted on the blocks before it.
CALIBRATION_BLOCKS = 4
LARGE_DATA_ROWS = 100_000
# Training reads at most this many leads by default: the most recently created ones before the
# cut-off (a training window ending there), so a run's time and memory stay bounded (about a
# minute and well under 1.5 GB at 200,000 leads). 0 or None means every labelled lead.
DEFAULT_MAX_LEADS = 200_000
SUGGESTION_SAMPLE = 50_000
LOGISTIC = "logistic_regression"
BOOSTING = "hist_gradient_boosting"
ALGORITHMS = (LOGISTIC, BOOSTING)
NO_PERSONA = "(no persona)"

Progress = Callable[[float, str], None]


@dataclass(frozen=True, eq=False)
class Split:
    kind: str  # "time" or "stratified"
    train: np.ndarray  # row indices into the population
    test: np.ndarray
    fit: np.ndarray  # the training rows minus validation
    validation: np.ndarray
    note: str = ""
    train_order: np.ndarray | None = None  # training rows by creation time (time split)


@dataclass(eq=False)
class TrainingReport:
    """What `train_models` returns; `as_json()` is the `train_model --json` contract."""

    split: str
    n_train: int
    n_test: int
    features: list[str]
    models: list[dict[str, Any]]
    rules_roc_auc: float | None
    label: str
    cutoff: dt.datetime
    excluded: list[str]
    seconds: float
    rows: list[MLModel]
    population: int = 0  # labelled leads before `max_leads` kept the latest ones
    exclusions: list[dict[str, str]] = dataclasses.field(default_factory=list)
    allowed: list[str] = dataclasses.field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "features": self.features,
            "models": self.models,
            "rules_roc_auc": self.rules_roc_auc,
            "label": self.label,
            "cutoff": self.cutoff.isoformat(),
            "population": self.population,
            "excluded_attributes": self.excluded,
            "excluded": self.exclusions,
            "allowed": self.allowed,
            "seconds": round(self.seconds, 2),
        }


# ---------------------------------------------------------------------------------------------
# Split


def outcome_attribute_exclusions() -> set[str]:
    """Lead attributes that connectors derive from the outcome (a CRM status, a deal stage,
    an owner): never features, whatever a mapping or the caller says. Each installed app may
    declare them as ``outcome_attributes`` on its AppConfig (the integrations app collects
    its connectors' declarations), so scoring reads them without importing integrations."""
    names: set[str] = set()
    for config in apps.get_app_configs():
        names |= set(getattr(config, "outcome_attributes", ()) or ())
    return names


def import_leakage_reasons(*, include_doubtful: bool = False) -> dict[str, str]:
    """Column -> reason for the columns that the mappings of past imports list as leakage or
    label (and doubtful unless `include_doubtful`), wherever the mapping file was: each
    installed app may provide them as ``ml_feature_exclusions`` (column -> (kind, reason)) on
    its AppConfig (the integrations app reads its import jobs), so scoring reads them without
    importing integrations."""
    reasons: dict[str, str] = {}
    for config in apps.get_app_configs():
        provided = getattr(config, "ml_feature_exclusions", None) or {}
        for name, (kind, why) in provided.items():
            if kind == "doubtful" and include_doubtful:
                continue
            reasons.setdefault(name, why)
    return reasons


def choose_split(labels: Labels, *, seed: int = SEED) -> Split:
    """Time split when creation times are spread, stratified random split otherwise."""
    n = labels.n
    created = labels.created_epoch
    spread_days = (np.percentile(created, 90) - np.percentile(created, 10)) / 86400.0 if n else 0.0
    rows = np.arange(n)
    if spread_days >= TIME_SPLIT_MIN_SPREAD_DAYS:
        order = np.lexsort((labels.ids, created))
        n_test = max(1, math.ceil(TEST_SHARE * n))
        train, test = np.sort(order[: n - n_test]), np.sort(order[n - n_test :])
        train_order = order[: n - n_test]
        n_val = max(1, math.ceil(VALIDATION_SHARE * train.size))
        fit, validation = np.sort(train_order[:-n_val]), np.sort(train_order[-n_val:])
        if _both_classes(labels.y, train, test, fit, validation):
            return Split("time", train, test, fit, validation, train_order=train_order)
        note = "the time split left one outcome out of a part, so the split is stratified"
    else:
        note = ""
    train, test = train_test_split(rows, test_size=TEST_SHARE, stratify=labels.y, random_state=seed)
    fit, validation = train_test_split(
        train, test_size=VALIDATION_SHARE, stratify=labels.y[train], random_state=seed
    )
    return Split(
        "stratified", np.sort(train), np.sort(test), np.sort(fit), np.sort(validation), note
    )


def _both_classes(y: np.ndarray, *parts: np.ndarray) -> bool:
    return all(part.size and 0 < y[part].sum() < part.size for part in parts)


# ---------------------------------------------------------------------------------------------
# Pipelines


def make_pipeline(algorithm: str, spec: F.FeatureSpec) -> Pipeline:
    """One whole scikit-learn pipeline over `features.encode` output."""
    p_num = len(spec.numeric_names)
    cat_columns = list(range(p_num, p_num + len(spec.categorical)))
    if algorithm == LOGISTIC:
        numeric = Pipeline(
            [
                (
                    "impute",
                    SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                ),
                ("scale", StandardScaler()),
            ]
        )
        categories = [np.arange(len(f.vocabulary) + 2, dtype=np.float64) for f in spec.categorical]
        prepare = ColumnTransformer(
            [
                ("num", numeric, list(range(p_num))),
                (
                    "cat",
                    OneHotEncoder(
                        categories=categories, handle_unknown="ignore", sparse_output=False
                    ),
                    cat_columns,
                ),
            ],
            sparse_threshold=0.0,
        )
        return Pipeline([("prepare", prepare), ("model", LogisticRegression(C=1.0, max_iter=2000))])
    if algorithm == BOOSTING:
        mask = spec.categorical_mask
        return Pipeline(
            [
                (
                    "model",
                    HistGradientBoostingClassifier(
                        learning_rate=0.1,
                        max_iter=300,
                        max_leaf_nodes=31,
                        l2_regularization=1.0,
                        categorical_features=mask if mask.any() else None,
                        early_stopping=True,
                        validation_fraction=0.1,
                        n_iter_no_change=20,
                        random_state=SEED,
                    ),
                )
            ]
        )
    raise ValueError(f"unknown algorithm {algorithm!r}")


def inner_pipeline(estimator: Any) -> Pipeline:
    """The fitted pipeline inside a calibrated artifact (or the artifact itself)."""
    if isinstance(estimator, CalibratedClassifierCV):
        inner = estimator.calibrated_classifiers_[0].estimator
        return inner.estimator if isinstance(inner, FrozenEstimator) else inner
    return estimator


def logistic_columns(pipeline: Pipeline, spec: F.FeatureSpec) -> tuple[list[str], list[int]]:
    """For a fitted logistic pipeline: a readable label per model column and the index of the
    spec feature each column comes from (numbers, their missing indicators, one-hot values)."""
    names = spec.names
    p_num = len(spec.numeric_names)
    prepare = pipeline.named_steps["prepare"]
    imputer = prepare.named_transformers_["num"].named_steps["impute"]
    labels = list(names[:p_num])
    sources = list(range(p_num))
    if imputer.indicator_ is not None:
        for j in imputer.indicator_.features_:
            labels.append(f"{names[j]} is missing")
            sources.append(int(j))
    encoder = prepare.named_transformers_["cat"]
    for c, (feature, codes) in enumerate(zip(spec.categorical, encoder.categories_, strict=True)):
        for code in codes:
            labels.append(f"{feature.name} = {F.category_label(feature, int(code))}")
            sources.append(p_num + c)
    return labels, sources


# ---------------------------------------------------------------------------------------------
# Fitting one algorithm


def fit_and_calibrate(
    algorithm: str, spec: F.FeatureSpec, X: np.ndarray, y: np.ndarray, split: Split
) -> tuple[Any, bool, dict[str, Any]]:
    """The artifact to keep, whether it is calibrated, and the validation Brier scores."""
    with _threads(split.train.size):
        return _fit_and_calibrate(algorithm, spec, X, y, split)


def _threads(n_rows: int) -> Any:
    """OpenMP threads for gradient boosting: one below SMALL_DATA_ROWS, where thread start-up
    and spinning cost more than they save (on a busy 2-core box, 30x more); otherwise all
    cores but one, which is left to PostgreSQL and the web processes: threads that compete
    for a busy core spin at every barrier (on this 2-core box, 112,000 leads: one thread
    4-7 s, two threads 3-23 s)."""
    cores = os.cpu_count() or 1
    limit = 1 if n_rows < SMALL_DATA_ROWS else max(1, cores - 1)
    return threadpool_limits(limits=limit, user_api="openmp") if limit < cores else nullcontext()


def _fit_and_calibrate(
    algorithm: str, spec: F.FeatureSpec, X: np.ndarray, y: np.ndarray, split: Split
) -> tuple[Any, bool, dict[str, Any]]:
    """The final pipeline is always fitted on every training lead (the newest included).
    Whether to calibrate it is decided on out-of-fold predictions, cross-fitted in time order
    (`forward_folds`): each later block of training leads is predicted by a pipeline fitted on
    the blocks before it, as the final model will predict leads newer than its data. When a
    sigmoid on those predictions lowers their (itself cross-fitted) Brier score, the artifact
    is the final pipeline with that sigmoid on top."""
    final = make_pipeline(algorithm, spec).fit(X[split.train], y[split.train])
    oof_rows, oof = _out_of_fold(algorithm, spec, X, y, split)
    scores: dict[str, Any] = {"fitted_on": int(split.train.size)}
    if oof_rows.size == 0:
        scores["calibration"] = "none: too few leads of each outcome to cross-fit"
        return final, False, scores
    y_oof = y[oof_rows]
    p_oof = 1.0 / (1.0 + np.exp(-oof))
    raw_brier = brier_score_loss(y_oof, p_oof)
    calibrated_brier = _cross_fitted_sigmoid_brier(y_oof, p_oof)
    scores["validation_brier"] = round(raw_brier, 6)
    scores["validation_leads"] = int(oof_rows.size)
    if calibrated_brier is not None:
        scores["validation_brier_calibrated"] = round(calibrated_brier, 6)
    order = "time order" if split.kind == "time" else "stratified folds"
    if calibrated_brier is None or calibrated_brier >= raw_brier - 1e-4:
        scores["calibration"] = (
            f"none (a sigmoid did not lower the Brier score of {oof_rows.size} out-of-fold "
            f"predictions, cross-fitted in {order}); final model fitted on all "
            f"{split.train.size} training leads"
        )
        return final, False, scores
    calibrated = CalibratedClassifierCV(FrozenEstimator(final), method="sigmoid")
    calibrated.fit(X[oof_rows], y_oof)
    # The sigmoid the structure got was fitted on the final model's own training leads
    # (over-confident there); it is replaced by one fitted on the out-of-fold predictions.
    chain = calibrated.calibrated_classifiers_[0]
    chain.calibrators[0] = clone(chain.calibrators[0]).fit(oof, y_oof)
    scores["calibration"] = (
        f"sigmoid fitted on {oof_rows.size} out-of-fold predictions cross-fitted in {order}; "
        f"final model fitted on all {split.train.size} training leads"
    )
    return calibrated, True, scores


def forward_folds(order: np.ndarray, n_blocks: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit rows, predict rows) pairs over the rows in `order` (by creation time for a time
    split): block k is predicted from blocks 0..k-1."""
    blocks = np.array_split(order, n_blocks)
    return [(np.concatenate(blocks[:k]), blocks[k]) for k in range(1, n_blocks)]


def _out_of_fold(
    algorithm: str, spec: F.FeatureSpec, X: np.ndarray, y: np.ndarray, split: Split
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, decision values) of the training leads predicted out of fold; empty when a
    fold lacks an outcome."""
    n_blocks = 2 if split.train.size >= LARGE_DATA_ROWS else CALIBRATION_BLOCKS
    if split.kind == "time" and split.train_order is not None:
        order = split.train_order
    else:
        order = np.random.default_rng(SEED).permutation(split.train)
    rows, values = [], []
    for fit_rows, predict_rows in forward_folds(order, n_blocks):
        if not _both_classes(y, fit_rows, predict_rows):
            continue
        pipeline = make_pipeline(algorithm, spec).fit(X[fit_rows], y[fit_rows])
        rows.append(predict_rows)
        values.append(pipeline.decision_function(X[predict_rows]))
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.concatenate(rows), np.concatenate(values)


def _cross_fitted_sigmoid_brier(y: np.ndarray, p: np.ndarray) -> float | None:
    """Brier score of a Platt (sigmoid) calibration of `p`, each fold calibrated on the
    others, so the estimate is not flattered by fitting and scoring the same leads."""
    positives = int(y.sum())
    folds = min(5, positives, y.size - positives)
    if folds < 2:
        return None
    logit = np.log(np.clip(p, 1e-6, 1 - 1e-6) / np.clip(1 - p, 1e-6, 1)).reshape(-1, 1)
    out = np.empty_like(p)
    for fit_rows, test_rows in StratifiedKFold(folds, shuffle=True, random_state=SEED).split(
        logit, y
    ):
        platt = LogisticRegression(C=1e6).fit(logit[fit_rows], y[fit_rows])
        out[test_rows] = platt.predict_proba(logit[test_rows])[:, 1]
    return float(brier_score_loss(y, out))


# ---------------------------------------------------------------------------------------------
# The whole run


def start_training(
    *, label_stage: str = DEFAULT_STAGE, user: Any = None, algorithms: Iterable[str] = ALGORITHMS
) -> str:
    """Create the queued rows of a training run and return its key (the task fills them)."""
    run_key = str(uuid.uuid4())
    MLModel.objects.bulk_create(
        [
            MLModel(
                run_key=run_key,
                algorithm=algorithm,
                label_stage=label_stage,
                created_by=user if getattr(user, "is_authenticated", False) else None,
                message="queued",
            )
            for algorithm in algorithms
        ]
    )
    return run_key


def training_in_progress() -> bool:
    return MLModel.objects.filter(status__in=ACTIVE).exists()


def train_models(
    *,
    label_stage: str = DEFAULT_STAGE,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    cutoff: dt.datetime | None = None,
    exclude: Iterable[str] = (),
    user: Any = None,
    run_key: str | None = None,
    chunk_size: int = 50000,
    include_doubtful: bool = False,
    max_leads: int | None = DEFAULT_MAX_LEADS,
    allow: Iterable[str] = (),
) -> TrainingReport:
    """Train and evaluate both models and store them in the registry (inactive).

    With `max_leads`, only the most recently created `max_leads` leads of the labelled
    population are used (the training window then starts later; it is recorded on the rows).
    Progress goes to the run's rows. On any error the rows are marked failed with the message
    and the error is raised again; artifacts are written only after everything succeeded."""
    run_key = run_key or start_training(label_stage=label_stage, user=user)
    rows = list(MLModel.objects.filter(run_key=run_key).order_by("pk"))
    if not rows:
        raise ValueError(f"No training run {run_key!r}.")
    # A run left running by a lost worker is trained again (it writes only its own rows).
    job_claim(
        MLModel.objects.filter(run_key=run_key),
        statuses=ACTIVE,
        progress_done=0,
        progress_total=PROGRESS_SCALE,
        message="starting",
    )

    def progress(fraction: float, message: str) -> None:
        job_heartbeat(
            MLModel.objects.filter(run_key=run_key), fraction=fraction, message=message[:200]
        )

    try:
        return _train(
            rows,
            label_stage,
            horizon_days,
            cutoff,
            exclude,
            chunk_size,
            progress,
            include_doubtful,
            max_leads,
            tuple(allow),
        )
    except Exception as error:
        job_fail(
            MLModel.objects.filter(run_key=run_key),
            f"{error.__class__.__name__}: {error}",
            message="failed",
        )
        logger.warning("ml.training.failed run=%s error=%s", run_key, error.__class__.__name__)
        raise


def _train(
    rows: list[MLModel],
    label_stage: str,
    horizon_days: int,
    cutoff: dt.datetime | None,
    exclude: Iterable[str],
    chunk_size: int,
    progress: Progress,
    include_doubtful: bool = False,
    max_leads: int | None = None,
    allow: Iterable[str] = (),
) -> TrainingReport:
    started = time.perf_counter()
    progress(0.02, "labelling leads")
    labels = build_labels(label_stage, horizon_days=horizon_days, cutoff=cutoff)
    population = labels.n
    if max_leads:
        labels = labels.latest(max_leads)
    allowed = {F.normalise_key(name.removeprefix("attributes.")) for name in allow}
    reasons = {
        name: "a connector declares it an outcome field (known only after the outcome)"
        for name in outcome_attribute_exclusions()
        if F.normalise_key(name) not in allowed
    }
    for name, why in import_leakage_reasons(include_doubtful=include_doubtful).items():
        reasons.setdefault(name, why)
    spec = F.discover_spec(
        labels.cutoff, exclude=exclude, include_doubtful=include_doubtful, reasons=reasons
    )
    raw = _population_frame(spec, labels, chunk_size, progress)
    y = labels.y
    split = choose_split(labels)
    progress(0.45, f"{split.kind} split: {split.train.size} train, {split.test.size} test")
    min_count = max(10, math.ceil(0.002 * split.train.size))
    fitted_spec = F.fit_spec(spec, raw.take(split.train), min_count)
    raw = F.project(raw, spec, fitted_spec)
    spec = fitted_spec
    X = F.encode(spec, raw)
    # Features that depend on when the split was cut, then probable leaks (on training leads).
    drops = range_overlap_drops(spec, X, raw, split.train, split.test)
    kept = F.drop_features(spec, drops)
    X = F.encode(kept, F.project(raw, spec, kept))
    leaks = leakage_drops(
        kept, X[split.train], y[split.train], settings.ML_LEAKAGE_AUC, allow=set(allow)
    )
    checked = F.drop_features(kept, leaks)
    raw = F.project(raw, spec, checked)
    spec = checked
    X = F.encode(spec, raw)
    persona = np.array([NO_PERSONA if p == F.MISSING else p for p in raw.persona], dtype=object)

    fitted: dict[str, tuple[Any, bool, dict[str, float]]] = {}
    results: dict[str, dict[str, Any]] = {}
    step = 0.35 / len(rows)
    for i, row in enumerate(rows):
        progress(0.45 + i * step, f"fitting {row.algorithm}")
        estimator, calibrated, validation = fit_and_calibrate(row.algorithm, spec, X, y, split)
        with _threads(split.train.size):
            p_test = estimator.predict_proba(X[split.test])[:, 1]
        fitted[row.algorithm] = (estimator, calibrated, validation)
        results[row.algorithm] = {
            "overall": M.probability_metrics(y[split.test], p_test),
            "per_persona": M.per_persona(y[split.test], p_test, persona[split.test]),
            "calibration_curve": M.calibration_curve(y[split.test], p_test),
            "calibrated": calibrated,
            **validation,
        }

    progress(0.82, "scoring the same leads with the live rules")
    suggest_rows = _suggestion_rows(split.train)
    rules = _rule_scores(labels.ids, labels.cutoff, np.union1d(split.test, suggest_rows))
    rules_metrics = None
    if rules is not None:
        rule_scores = np.nan_to_num(rules.scores[split.test], nan=float(rules.spec.floor))
        rules_metrics = M.probability_metrics(
            y[split.test], np.clip((rule_scores - rules.spec.floor) / max(rules.scale, 1.0), 0, 1)
        )
        # Brier / ECE of a score read as a probability mean little; AUC and lift are the
        # comparable numbers.
        rules_metrics = {
            key: rules_metrics[key] for key in ("n", "positives", "roc_auc", "lift_top_decile")
        }
        rules_metrics["rule_set_version"] = rules.version

    progress(0.9, "suggesting rule weights and saving")
    suggestion = None
    if LOGISTIC in fitted:
        from scoring.ml.suggest import suggest_from_training

        suggestion = suggest_from_training(
            fitted[LOGISTIC][0], spec, X[suggest_rows], rules, suggest_rows, y[suggest_rows]
        )
        suggestion.update(
            draft_test_auc(suggestion["document"], labels, split),
            model_test_roc_auc=results[LOGISTIC]["overall"]["roc_auc"],
        )
    reference = _reference_row(spec, X[split.train])
    train_created = labels.created_epoch[split.train]
    common = {
        "label": labels.describe()[:200],
        "label_stage": labels.stage,
        "horizon_days": labels.horizon_days,
        "cutoff": labels.cutoff,
        "train_start": dt.datetime.fromtimestamp(float(train_created.min()), tz=dt.UTC),
        "train_end": dt.datetime.fromtimestamp(float(train_created.max()), tz=dt.UTC),
        "split": split.kind,
        "n_train": int(split.train.size),
        "n_test": int(split.test.size),
        "features": {"names": spec.names, "spec": spec.to_dict()},
    }
    models_json = []
    with transaction.atomic():
        for row in rows:
            estimator, calibrated, _ = fitted[row.algorithm]
            for key, value in common.items():
                setattr(row, key, value)
            row.metrics = {
                **results[row.algorithm],
                "rules": rules_metrics,
                "split_note": split.note,
            }
            row.details = {
                "reference": reference,
                "suggestion": suggestion if row.algorithm == LOGISTIC else None,
                "seconds": round(time.perf_counter() - started, 2),
                "population": population,
                "allowed": list(allow),
                "excluded": [{"feature": n, "reason": r} for n, r in spec.exclusions],
            }
            row.status = MLModel.Status.DONE
            row.progress_done = row.progress_total = PROGRESS_SCALE
            row.message = "done"
            row.finished_at = timezone.now()
            row.save()
            registry.save_artifact(row, estimator)
            if row.algorithm == BOOSTING:
                # Its trees compiled once here, not by every process that scores with it.
                compiled.store_library(row, estimator, spec)
            overall = results[row.algorithm]["overall"]
            models_json.append(
                {
                    "name": row.algorithm,
                    "id": row.pk,
                    "roc_auc": overall["roc_auc"],
                    "pr_auc": overall["pr_auc"],
                    "brier": overall["brier"],
                    "ece": overall["ece"],
                    "lift_top_decile": overall["lift_top_decile"],
                    "accuracy_at_0_5": overall["accuracy_at_0_5"],
                    "calibrated": calibrated,
                    "calibration": results[row.algorithm].get("calibration", ""),
                }
            )
    seconds = time.perf_counter() - started
    logger.info(
        "ml.training.done run=%s leads=%s features=%s seconds=%.1f",
        rows[0].run_key,
        labels.n,
        len(spec.names),
        seconds,
    )
    return TrainingReport(
        split=split.kind,
        n_train=int(split.train.size),
        n_test=int(split.test.size),
        features=spec.names,
        models=models_json,
        rules_roc_auc=rules_metrics["roc_auc"] if rules_metrics else None,
        label=labels.describe(),
        cutoff=labels.cutoff,
        excluded=list(spec.excluded),
        seconds=seconds,
        rows=rows,
        population=population,
        exclusions=[{"feature": name, "reason": why} for name, why in spec.exclusions],
        allowed=list(allow),
    )


def suggest_weights(row: MLModel, *, max_rules: int = DEFAULT_MAX_RULES) -> dict[str, Any]:
    """Recompute a logistic model's suggested rules (at most `max_rules`) on the training
    leads it was trained on, score the draft on its test leads, store the suggestion on the
    row and return it (with "test_roc_auc" and "model_test_roc_auc" on the same test split).
    Raises ValueError when the row is not a finished logistic model or its leads changed."""
    from scoring.ml.suggest import suggest_from_training

    if row.algorithm != LOGISTIC or row.status != MLModel.Status.DONE:
        raise ValueError(f"Model #{row.pk} is not a trained logistic regression.")
    if max_rules < 1:
        raise ValueError("--max-rules must be at least 1.")
    labels = build_labels(
        row.label_stage,
        horizon_days=row.horizon_days or DEFAULT_HORIZON_DAYS,
        cutoff=row.cutoff,
    )
    labels = labels.latest(row.n_train + row.n_test)
    split = choose_split(labels)
    if (split.train.size, split.test.size) != (row.n_train, row.n_test):
        raise ValueError(
            f"The leads changed since model #{row.pk} was trained ({split.train.size} train, "
            f"{split.test.size} test now against {row.n_train} and {row.n_test}); train again."
        )
    spec = F.FeatureSpec.from_dict(row.features["spec"])
    raw = _population_frame(spec, labels, 50000, lambda fraction, message: None)
    X = F.encode(spec, raw)
    suggest_rows = _suggestion_rows(split.train)
    rules = _rule_scores(labels.ids, labels.cutoff, suggest_rows)
    suggestion = suggest_from_training(
        registry.load_estimator(row),
        spec,
        X[suggest_rows],
        rules,
        suggest_rows,
        labels.y[suggest_rows],
        max_rules=max_rules,
    )
    suggestion.update(
        draft_test_auc(suggestion["document"], labels, split),
        model_test_roc_auc=(row.metrics or {}).get("overall", {}).get("roc_auc"),
    )
    row.details = {**(row.details or {}), "suggestion": suggestion}
    row.save(update_fields=["details"])
    return suggestion


def _population_frame(
    spec: F.FeatureSpec, labels: Labels, chunk_size: int, progress: Progress
) -> F.RawFrame:
    """The raw features of the labelled leads, in `labels.ids` order (chunk by chunk, reading
    only the population's leads; the events in one pass)."""
    frames = []
    n_chunks = max(1, len(F.id_ranges(chunk_size)))
    for i, frame in enumerate(F.iter_frames(spec, labels.cutoff, chunk_size, ids=labels.ids)):
        frames.append(frame)
        progress(0.05 + 0.4 * min(1.0, (i + 1) / n_chunks), "reading features")
    raw = F.RawFrame.concat(frames, spec)
    if raw.n != labels.n or not np.array_equal(raw.ids, labels.ids):
        # Leads deleted or merged while training.
        keep = np.isin(labels.ids, raw.ids)
        raise RuntimeError(
            f"The leads changed while training ({int((~keep).sum())} vanished); train again."
        )
    return raw


@dataclass(frozen=True, eq=False)
class RuleScores:
    """The live rule set's scores (rules only) on the population, in `labels.ids` order."""

    scores: np.ndarray
    contributions: np.ndarray  # (n, R)
    spec: Any  # scoring.engine.RuleSetSpec
    version: int | None
    scale: float  # ceiling - floor
    model_weight: float  # the live rule set's blend weight (0 in `spec`, for the comparison)


def _suggestion_rows(train: np.ndarray) -> np.ndarray:
    """The training rows the suggested weights are computed on: all of them up to
    SUGGESTION_SAMPLE, else a fixed-seed sample of that size (means and percentiles over
    50,000 leads are as good as over 140,000, and the live rules need not score the rest)."""
    if train.size <= SUGGESTION_SAMPLE:
        return train
    rng = np.random.default_rng(SEED)
    return np.sort(rng.choice(train, SUGGESTION_SAMPLE, replace=False))


def draft_test_auc(document: dict[str, Any], labels: Labels, split: Split) -> dict[str, Any]:
    """{"test_roc_auc"}: the ROC AUC of a rule set document's scores (rules alone, as of the
    cut-off, by the engine) on the split's test leads."""
    from scoring.engine import parse_ruleset

    spec = dataclasses.replace(parse_ruleset(document), model_weight=0.0)
    scores, _ = _spec_scores(spec, labels.ids, labels.cutoff, split.test)
    return {"test_roc_auc": M.roc_auc(labels.y[split.test], scores[split.test])}


def _spec_scores(
    spec: Any, ids: np.ndarray, as_of: dt.datetime, rows: np.ndarray, chunk: int = 60000
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, contributions) of a rule set spec on the population's `rows` (elsewhere the
    score is NaN and the contributions 0)."""
    from scoring.engine import compile_ruleset
    from scoring.rule_inputs import LeadSelection
    from scoring.services.rescore import score_selection

    compiled = compile_ruleset(spec)
    scores = np.full(ids.size, np.nan)
    contributions = np.zeros((ids.size, len(spec.rules)), dtype=np.float64)
    rows = np.asarray(rows, dtype=np.int64)
    for start in range(0, rows.size, chunk):
        part_rows = rows[start : start + chunk]
        part = ids[part_rows]
        leads, result = score_selection(compiled, LeadSelection(ids=tuple(part.tolist())), as_of)
        position = part_rows[np.searchsorted(part, leads.ids)]
        scores[position] = result.scores
        contributions[position] = result.contributions
    return scores, contributions


def _rule_scores(
    ids: np.ndarray, as_of: dt.datetime, rows: np.ndarray | None = None, chunk: int = 60000
) -> RuleScores | None:
    """The live rules' scores of the population (only at `rows` when given: elsewhere the
    score is NaN and the contributions 0)."""
    from scoring.selectors.rules import live_rule_set
    from scoring.services.rulesets import ruleset_to_spec

    live = live_rule_set()
    if live is None:
        return None
    live_spec = ruleset_to_spec(live)
    spec = dataclasses.replace(live_spec, model_weight=0.0)
    rows = np.arange(ids.size) if rows is None else np.asarray(rows, dtype=np.int64)
    scores, contributions = _spec_scores(spec, ids, as_of, rows, chunk)
    return RuleScores(
        scores=scores,
        contributions=contributions,
        spec=spec,
        version=live.version,
        scale=float(spec.ceiling - spec.floor),
        model_weight=float(live_spec.model_weight),
    )


def _reference_row(spec: F.FeatureSpec, X_train: np.ndarray) -> list[float | None]:
    """Per feature, the training median (numbers) or most frequent code (categories): the
    value the gradient-boosting explanation perturbs a feature to."""
    p_num = len(spec.numeric_names)
    reference: list[float | None] = []
    for j in range(X_train.shape[1]):
        column = X_train[:, j]
        if j < p_num:
            finite = column[np.isfinite(column)]
            reference.append(float(np.median(finite)) if finite.size else None)
        else:
            values, counts = np.unique(column, return_counts=True)
            reference.append(float(values[np.argmax(counts)]) if values.size else 0.0)
    return reference
