"""A model experiment runs like a rule-set one: the challenger arm's stored score blends the
challenger model's probability, the champion arm's the active model's, each keeping the other
as its shadow; promoting activates the challenger model."""

from __future__ import annotations

import re

import numpy as np
import pytest

from scoring.experiments.assignment import arm_of
from scoring.ml import feature_frame as F
from scoring.ml import registry
from scoring.ml.scoring import load
from scoring.ml.training import BOOSTING, LOGISTIC, train_models
from scoring.models import ExperimentLead, Lead, MLModel, RescoreRun
from scoring.services.experiments import (
    ExperimentInvalid,
    ExperimentRequest,
    experiment_start,
    experiment_stop,
)
from scoring.services.rulesets import ruleset_import
from tests.ml.conftest import LIVE_RULES, make_dated

pytestmark = pytest.mark.django_db

PROBABILITY = re.compile(r"model probability (\d\.\d\d)")


def _probability_in(breakdown: list[dict]) -> str:
    labels = [entry["label"] for entry in breakdown if entry.get("kind") == "model"]
    return PROBABILITY.search(labels[0]).group(1)


@pytest.fixture
def models(db):
    make_dated(600)
    ruleset_import({**LIVE_RULES, "model_weight": 0.5}, publish=True)
    rows = {row.algorithm: row for row in train_models().rows}
    registry.activate(rows[LOGISTIC])
    return rows


def _probabilities(row: MLModel, ids: np.ndarray, as_of) -> dict[int, str]:
    loaded = load(row)
    found, matrix = F.MatrixReader(loaded.spec).read(as_of, int(ids[0]), int(ids[-1]), ids=ids)
    return {
        int(i): f"{p:.2f}"
        for i, p in zip(found.tolist(), loaded.predict_matrix(matrix), strict=True)
    }


def test_each_arm_blends_its_own_model_and_keeps_the_other_as_shadow(models):
    experiment = experiment_start(
        ExperimentRequest(
            name="boosting",
            kind="model",
            challenger_model_id=models[BOOSTING].pk,
            population="all",
        ),
        inline=True,
    )
    as_of = RescoreRun.objects.latest("id").as_of
    ids = np.asarray(sorted(Lead.objects.values_list("id", flat=True)))
    champion = _probabilities(models[LOGISTIC], ids, as_of)
    challenger = _probabilities(models[BOOSTING], ids, as_of)
    assert sum(champion[i] != challenger[i] for i in champion) > len(ids) // 4
    shadows = dict(
        ExperimentLead.objects.filter(experiment=experiment).values_list(
            "lead_id", "shadow_breakdown"
        )
    )
    arms = set()
    for lead_id, breakdown in Lead.objects.values_list("id", "breakdown"):
        arm = arm_of(experiment.salt, lead_id, experiment.split)
        arms.add(arm)
        own, other = (challenger, champion) if arm == "challenger" else (champion, challenger)
        assert _probability_in(breakdown) == own[lead_id]
        assert _probability_in(shadows[lead_id]) == other[lead_id]
    assert arms == {"champion", "challenger"}
    experiment_stop(experiment, promote=True, inline=True)
    assert registry.active_model().pk == models[BOOSTING].pk


def test_a_model_experiment_needs_a_blend_and_another_model(models):
    with pytest.raises(ExperimentInvalid) as raised:
        experiment_start(
            ExperimentRequest(name="same", kind="model", challenger_model_id=models[LOGISTIC].pk)
        )
    assert "already the active model" in raised.value.errors["challenger_model_id"]
